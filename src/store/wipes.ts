import type { FileRow } from './journal.js';
import { JournalTables } from './journal-tables.js';

/**
 * What the wipe gate (src/ingest/wipe.ts) reads from the journal, and the record of every deletion from
 * a source: a row before the file is deleted ('deleting'), then its outcome, so that a crash in between
 * leaves a trace and the history of a card's files says which were removed, when, and after what check.
 */

export interface WipeCopy {
  dest_id: number;
  state: string;
  dest_path: string | null;
  size: number | null;
  xxh128: string | null;
  /** The run that verified it last. */
  ingest_id: number | null;
  /** The destination's root. */
  root: string;
}

export interface CloudState {
  /** Files whose content is verified at the target. */
  verified: number;
  /** Queued or uploading (or not queued at all). */
  pending: number;
  /** Given up on (see the upload queue's errors). */
  failed: number;
}

export interface WipeRow {
  id: number;
  file_id: number;
  ingest_id: number | null;
  policy: string;
  second_read: string;
  xxh128: string;
  state: 'deleting' | 'deleted' | 'failed';
  /** Why it failed; for an attempt settled at a later insert of the source, what that insert found. */
  error: string | null;
  rel_path: string;
}

const iso = (): string => new Date().toISOString();

export class WipeStore extends JournalTables {
  /** The journal's id of a source, by its identity key. */
  sourceId(key: string): number | undefined {
    return this.selectOne<{ id: number }>('SELECT id FROM sources WHERE key = ?', key)?.id;
  }

  /** The rows of `fileIds` that belong to the source, in path order. */
  filesOf(sourceId: number, fileIds: readonly number[]): FileRow[] {
    return this.selectAll<FileRow>(
      'SELECT * FROM files WHERE source_id = ? AND id IN (SELECT value FROM json_each(?)) ORDER BY rel_path, id',
      sourceId,
      JSON.stringify([...new Set(fileIds)]),
    );
  }

  copiesOf(fileId: number): WipeCopy[] {
    return this.selectAll<WipeCopy>(
      'SELECT c.dest_id, c.state, c.dest_path, c.size, c.xxh128, c.ingest_id, d.path AS root FROM copies c JOIN destinations d ON d.id = c.dest_id WHERE c.file_id = ?',
      fileId,
    );
  }

  /**
   * Whether each file's content is verified at the S3 target: an `uploaded` row (set only after the
   * object was checked) with the same SHA-256 and size, its own or another file's with the same bytes.
   */
  cloudState(files: ReadonlyArray<Pick<FileRow, 'id' | 'sha256' | 'size'>>, target: { bucket: string; prefix: string }): CloudState {
    const out: CloudState = { verified: 0, pending: 0, failed: 0 };
    for (const f of files) {
      const states = this.selectAll<{ state: string }>(
        `SELECT state FROM upload_queue WHERE bucket = ? AND prefix = ? AND (file_id = ? OR (sha256 = ? AND size = ?))`,
        target.bucket,
        target.prefix,
        f.id,
        f.sha256 ?? '',
        f.size,
      ).map((r) => r.state);
      if (states.includes('uploaded')) out.verified++;
      else if (states.length > 0 && states.every((s) => s === 'failed')) out.failed++;
      else out.pending++;
    }
    return out;
  }

  /** Recorded (durably) before the file is deleted. */
  begin(fileId: number, ingestId: number, policy: string, secondRead: 'direct' | 'cached', xxh128: string): number {
    const t = iso();
    return this.exec(
      `INSERT INTO source_wipes (file_id, ingest_id, policy, second_read, xxh128, state, started_at) VALUES (?, ?, ?, ?, ?, 'deleting', ?)`,
      fileId,
      ingestId,
      policy,
      secondRead,
      xxh128,
      t,
    ).lastInsertRowid;
  }

  deleted(id: number): void {
    this.exec(`UPDATE source_wipes SET state = 'deleted', finished_at = ? WHERE id = ?`, iso(), id);
  }

  failed(id: number, error: string): void {
    this.exec(`UPDATE source_wipes SET state = 'failed', error = ?, finished_at = ? WHERE id = ?`, error, iso(), id);
  }

  /**
   * A source's deletions begun and never finished (the process died between the row and the outcome),
   * in the order they were begun.
   */
  unfinished(sourceId: number): Array<WipeRow & Pick<FileRow, 'size' | 'mtime_ms' | 'path_bytes'>> {
    return this.selectAll<WipeRow & Pick<FileRow, 'size' | 'mtime_ms' | 'path_bytes'>>(
      `SELECT w.*, f.rel_path, f.size, f.mtime_ms, f.path_bytes FROM source_wipes w JOIN files f ON f.id = w.file_id WHERE w.state = 'deleting' AND f.source_id = ? ORDER BY w.id`,
      sourceId,
    );
  }

  /** An unfinished deletion's outcome, as a later look at the source found it. */
  settle(id: number, state: 'deleted' | 'failed', found: string): void {
    this.exec(`UPDATE source_wipes SET state = ?, error = ?, finished_at = ? WHERE id = ? AND state = 'deleting'`, state, found, iso(), id);
  }

  /** The deletions of one ingest run, in the order they were made. */
  ofIngest(ingestId: number): WipeRow[] {
    return this.selectAll<WipeRow>('SELECT w.*, f.rel_path FROM source_wipes w JOIN files f ON f.id = w.file_id WHERE w.ingest_id = ? ORDER BY w.id', ingestId);
  }
}
