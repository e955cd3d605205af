import type { CopyState, FileState } from './journal.js';
import { JournalTables } from './journal-tables.js';
import type { QueueState } from './upload-queue.js';

/**
 * Read-only views of the journal for the HTTP API: the newest files with their copies per destination
 * and their cloud state, a page at a time (newest first, by file id, so a page boundary never moves
 * while new files arrive).
 */

export interface ListedCopy {
  /** The destination's root. */
  root: string;
  /** Below the root; absent while copying or after a failure. */
  rel: string | undefined;
  state: CopyState;
  error: string | undefined;
}

export interface ListedUpload {
  bucket: string;
  key: string;
  state: QueueState;
  attempts: number;
  uploadedAt: string | undefined;
  lastError: string | undefined;
}

export interface ListedFile {
  fileId: number;
  /** The source's label (a card's volume name, a camera's model) and its stable key. */
  source: string;
  sourceKey: string;
  path: string;
  size: number;
  mtimeMs: number;
  state: FileState;
  error: string | undefined;
  firstSeen: string;
  updatedAt: string;
  copies: ListedCopy[];
  uploads: ListedUpload[];
}

interface FileJoinRow {
  id: number;
  rel_path: string;
  size: number;
  mtime_ms: number;
  state: FileState;
  error: string | null;
  first_seen: string;
  updated_at: string;
  label: string;
  key: string;
}

export class FileList extends JournalTables {
  /** Up to `limit` files with an id below `before` (all when absent), newest first. */
  page(limit: number, before?: number): ListedFile[] {
    const rows = this.selectAll<FileJoinRow>(
      `SELECT f.id, f.rel_path, f.size, f.mtime_ms, f.state, f.error, f.first_seen, f.updated_at, s.label, s.key
       FROM files f JOIN sources s ON s.id = f.source_id WHERE f.id < ? ORDER BY f.id DESC LIMIT ?`,
      before ?? Number.MAX_SAFE_INTEGER,
      limit,
    );
    return rows.map((r) => this.#describe(r));
  }

  get(fileId: number): ListedFile | undefined {
    const r = this.selectOne<FileJoinRow>(
      `SELECT f.id, f.rel_path, f.size, f.mtime_ms, f.state, f.error, f.first_seen, f.updated_at, s.label, s.key
       FROM files f JOIN sources s ON s.id = f.source_id WHERE f.id = ?`,
      fileId,
    );
    return r === undefined ? undefined : this.#describe(r);
  }

  /** The first verified copy's path below its destination (by destination), which previews are named after. */
  firstVerifiedRel(fileId: number): string | undefined {
    return this.selectOne<{ dest_path: string }>(`SELECT dest_path FROM copies WHERE file_id = ? AND state = 'verified' AND dest_path IS NOT NULL ORDER BY dest_id LIMIT 1`, fileId)
      ?.dest_path;
  }

  /** When the file was last verified at every destination it has a verified copy at (epoch ms); undefined when at none. */
  verifiedAt(fileId: number): number | undefined {
    const at = this.selectOne<{ at: string | null }>(`SELECT MAX(updated_at) AS at FROM copies WHERE file_id = ? AND state = 'verified'`, fileId)?.at;
    return at === null || at === undefined ? undefined : Date.parse(at);
  }

  #describe(r: FileJoinRow): ListedFile {
    const copies = this.selectAll<{ root: string; dest_path: string | null; state: CopyState; error: string | null }>(
      'SELECT d.path AS root, c.dest_path, c.state, c.error FROM copies c JOIN destinations d ON d.id = c.dest_id WHERE c.file_id = ? ORDER BY c.dest_id',
      r.id,
    );
    const uploads = this.selectAll<{ bucket: string; key: string; state: QueueState; attempts: number; uploaded_at: string | null; last_error: string | null }>(
      'SELECT bucket, key, state, attempts, uploaded_at, last_error FROM upload_queue WHERE file_id = ? ORDER BY id',
      r.id,
    );
    return {
      fileId: r.id,
      source: r.label,
      sourceKey: r.key,
      path: r.rel_path,
      size: r.size,
      mtimeMs: r.mtime_ms,
      state: r.state,
      error: r.error ?? undefined,
      firstSeen: r.first_seen,
      updatedAt: r.updated_at,
      copies: copies.map((c) => ({ root: c.root, rel: c.dest_path ?? undefined, state: c.state, error: c.error ?? undefined })),
      uploads: uploads.map((u) => ({
        bucket: u.bucket,
        key: u.key,
        state: u.state,
        attempts: u.attempts,
        uploadedAt: u.uploaded_at ?? undefined,
        lastError: u.last_error ?? undefined,
      })),
    };
  }
}
