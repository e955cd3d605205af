import { posix } from 'node:path';
import { ShuttleError } from '../errors.js';
import type { Journal } from './journal.js';
import { JournalTables } from './journal-tables.js';

/**
 * The upload queue: one journal row per file and S3 target, so that what is still to upload survives
 * crashes, reboots and days offline. A row is `queued` (due at `next_attempt_at`), `uploading` (claimed by
 * the one process that holds the upload lock), `uploaded` (only after the object was verified) or `failed`
 * (no intact local copy, or the key holds other content and cannot be renamed). Which local copies were
 * pruned after upload is store/retention.ts's.
 */

export type QueueState = 'queued' | 'uploading' | 'uploaded' | 'failed';

export interface QueueRow {
  id: number;
  fileId: number;
  bucket: string;
  prefix: string;
  key: string;
  size: number;
  /**
   * Unknown (null) until the upload reads the verified local copy (ingest hashes only xxh128); then
   * xxh128 is what that copy was checked against, and the SHA-256 describes the bytes that go out.
   */
  sha256: string | null;
  xxh128: string | null;
  priority: number;
  state: QueueState;
  attempts: number;
  /** Epoch ms. */
  nextAttemptAt: number;
  lastError: string | null;
  lastErrorCode: string | null;
  copyId: number | null;
  etag: string | null;
  enqueuedAt: string;
  uploadedAt: string | null;
}

/** The n-th alternative (n >= 1) to a taken key; undefined when there is none. */
export type KeyAlternative = (key: string, n: number) => string | undefined;

/**
 * Where queued files go in S3 and how they are named. The queue stores keys but does not make them:
 * upload/keys.ts does (queueTarget there builds this from the config's template).
 */
export interface QueueTarget {
  bucket: string;
  /** Without leading or trailing slash; '' for the bucket root. */
  prefix: string;
  /** The key for a verified copy at `destPath` (relative to its destination) of a file modified at `mtimeMs`. */
  keyFor(copy: { destPath: string; mtimeMs: number }): string;
  alternativeKey: KeyAlternative;
  /** Extensions, earliest first; '*' stands for the unlisted ones. */
  priority: readonly string[];
}

export interface EnqueueResult {
  /** The rows that stand for the given files (new, reset, or already there), in the order given. */
  rowIds: number[];
  added: number;
  /** Rows already uploaded: nothing to do. */
  alreadyUploaded: number;
  /** Failed rows given another chance. */
  reset: number;
  /** Files whose content another row with the same key already carries. */
  sharedContent: number;
  /** Files with no verified copy to upload from. */
  notVerified: number;
}

/** A verified local copy that may be read for an upload (of its own file, or of another with the same content). */
export interface LocalCopy {
  copyId: number;
  fileId: number;
  destId: number;
  root: string;
  markerId: string;
  destPath: string;
  size: number;
  /** The copy's recorded MD5: from the upload's hashing pass (single PUTs), or an older ingest's. */
  md5: string | undefined;
}

export interface QueueCounts {
  queued: number;
  uploading: number;
  uploaded: number;
  failed: number;
}

export interface QueueStats extends QueueCounts {
  /** queued + uploading. */
  depth: number;
  bytesPending: number;
  /** Bytes uploaded (verified) in the last `rateWindowMs`, per second. */
  bytesPerSecond: number;
  rateWindowMs: number;
  nextAttemptAt: number | null;
  lastError: { key: string; code: string | null; message: string; at: string | null; state: QueueState } | null;
}

export interface ErrorNote {
  code: string;
  message: string;
}

interface RawRow {
  id: number;
  file_id: number;
  bucket: string;
  prefix: string;
  key: string;
  size: number;
  sha256: string | null;
  xxh128: string | null;
  priority: number;
  state: QueueState;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  last_error_code: string | null;
  copy_id: number | null;
  etag: string | null;
  enqueued_at: string;
  uploaded_at: string | null;
}

const iso = (ms: number): string => new Date(ms).toISOString();
const RATE_WINDOW_MS = 10 * 60_000;

function toRow(r: RawRow): QueueRow {
  return {
    id: r.id,
    fileId: r.file_id,
    bucket: r.bucket,
    prefix: r.prefix,
    key: r.key,
    size: r.size,
    sha256: r.sha256,
    xxh128: r.xxh128,
    priority: r.priority,
    state: r.state,
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at,
    lastError: r.last_error,
    lastErrorCode: r.last_error_code,
    copyId: r.copy_id,
    etag: r.etag,
    enqueuedAt: r.enqueued_at,
    uploadedAt: r.uploaded_at,
  };
}

/** Rank of a file name in the configured order: its extension's position, or that of '*', or after them all. */
export function priorityOf(name: string, order: readonly string[]): number {
  const dot = name.lastIndexOf('.');
  const ext = dot > 0 ? name.slice(dot + 1).toLowerCase() : '';
  const at = ext === '' ? -1 : order.indexOf(ext);
  if (at >= 0) return at;
  const star = order.indexOf('*');
  return star >= 0 ? star : order.length;
}

export class UploadQueue extends JournalTables {
  /** Every file with a verified copy anywhere. */
  verifiedFiles(): number[] {
    return this.selectAll<{ file_id: number }>(`SELECT DISTINCT file_id FROM copies WHERE state = 'verified' ORDER BY file_id`).map((r) => r.file_id);
  }

  /**
   * Queues each file for `target`, once: a file already queued for this bucket and prefix keeps its row
   * (made due now if queued, given another chance if failed). Keys come from the target; a key that
   * another file's different content already claimed gets a collision suffix (`_1`, `_2`, …), while a
   * key already carrying the same content is shared. One transaction for the lot.
   */
  enqueue(fileIds: readonly number[], target: QueueTarget, now = Date.now()): EnqueueResult {
    try {
      return this.#enqueue(fileIds, target, now);
    } catch (cause) {
      const where = `s3://${target.bucket}${target.prefix === '' ? '' : `/${target.prefix}`}`;
      throw new ShuttleError('JOURNAL', `could not queue ${fileIds.length} files for upload to ${where}: ${cause instanceof Error ? cause.message : String(cause)}`, {
        cause,
        context: { bucket: target.bucket, prefix: target.prefix, files: fileIds.length },
      });
    }
  }

  #enqueue(fileIds: readonly number[], target: QueueTarget, now: number): EnqueueResult {
    const result: EnqueueResult = { rowIds: [], added: 0, alreadyUploaded: 0, reset: 0, sharedContent: 0, notVerified: 0 };
    this.journal.tx(() => {
      for (const fileId of fileIds) {
        const existing = this.selectOne<RawRow>('SELECT * FROM upload_queue WHERE file_id = ? AND bucket = ? AND prefix = ?', fileId, target.bucket, target.prefix);
        if (existing !== undefined) {
          result.rowIds.push(existing.id);
          if (existing.state === 'uploaded') result.alreadyUploaded++;
          else if (existing.state === 'failed') {
            this.exec(`UPDATE upload_queue SET state = 'queued', attempts = 0, next_attempt_at = ?, updated_at = ? WHERE id = ?`, now, iso(now), existing.id);
            result.reset++;
          } else if (existing.state === 'queued') {
            this.exec('UPDATE upload_queue SET next_attempt_at = min(next_attempt_at, ?) WHERE id = ?', now, existing.id);
          }
          continue;
        }
        // Without a SHA-256 (the upload computes it) the copy needs the xxh128 its bytes will be checked against.
        const copy = this.selectOne<{ dest_path: string; size: number; sha256: string | null; xxh128: string | null; mtime_ms: number }>(
          `SELECT c.dest_path, c.size, c.sha256, c.xxh128, f.mtime_ms FROM copies c JOIN files f ON f.id = c.file_id
           WHERE c.file_id = ? AND c.state = 'verified' AND c.dest_path IS NOT NULL AND (c.sha256 IS NOT NULL OR c.xxh128 IS NOT NULL) AND c.size IS NOT NULL
           ORDER BY c.sha256 IS NULL, c.dedup, c.dest_id LIMIT 1`,
          fileId,
        );
        if (copy === undefined) {
          result.notVerified++;
          continue;
        }
        const name = posix.basename(copy.dest_path);
        const baseKey = target.keyFor({ destPath: copy.dest_path, mtimeMs: copy.mtime_ms });
        const placed = this.#freeKey(target.bucket, baseKey, target.alternativeKey, copy.sha256, copy.size);
        if (placed.sharedWith !== undefined) {
          result.rowIds.push(placed.sharedWith);
          result.sharedContent++;
          continue;
        }
        const id = this.exec(
          `INSERT INTO upload_queue (file_id, bucket, prefix, key, size, sha256, xxh128, priority, state, attempts, next_attempt_at, enqueued_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?)`,
          fileId,
          target.bucket,
          target.prefix,
          placed.key,
          copy.size,
          copy.sha256,
          copy.xxh128,
          priorityOf(name, target.priority),
          now,
          iso(now),
          iso(now),
        ).lastInsertRowid;
        result.rowIds.push(id);
        result.added++;
      }
    });
    return result;
  }

  /**
   * `baseKey` or the first suffixed variant no other content holds; a row with this very content is shared.
   * "This very content" is a SHA-256 match: two files' xxh128s can be made to collide on purpose (a hostile
   * card), and a shared row means one file is taken as uploaded because the other one was. A file whose
   * SHA-256 is not known yet therefore never shares: it takes the next free key.
   */
  #freeKey(bucket: string, baseKey: string, alternativeKey: KeyAlternative, sha256: string | null, size: number): { key: string; sharedWith?: number } {
    for (let n = 0; n < 10_000; n++) {
      const key = n === 0 ? baseKey : alternativeKey(baseKey, n);
      if (key === undefined) break;
      const taken = this.selectOne<{ id: number; sha256: string | null; size: number }>('SELECT id, sha256, size FROM upload_queue WHERE bucket = ? AND key = ?', bucket, key);
      if (taken === undefined) return { key };
      if (sha256 !== null && taken.sha256 === sha256 && taken.size === size) return { key, sharedWith: taken.id };
    }
    throw new ShuttleError('NAME_INVALID', `no free S3 key for ${baseKey} in bucket ${bucket}`, { context: { bucket, key: baseKey } });
  }

  /**
   * Moves a row to the next free key, after the server showed that its key holds other content that
   * Shuttle did not queue (another station, an older journal). Returns the new key.
   */
  rekey(id: number, alternativeKey: KeyAlternative, now = Date.now()): string {
    return this.journal.tx(() => {
      const row = this.#require(id);
      for (let n = 1; n < 10_000; n++) {
        const candidate = alternativeKey(row.key, n);
        if (candidate === undefined) break;
        if (this.selectOne('SELECT id FROM upload_queue WHERE bucket = ? AND key = ?', row.bucket, candidate) !== undefined) continue;
        this.exec(`UPDATE upload_queue SET key = ?, state = 'queued', next_attempt_at = ?, updated_at = ? WHERE id = ?`, candidate, now, iso(now), id);
        return candidate;
      }
      throw new ShuttleError('NAME_INVALID', `no free S3 key for ${row.key} in bucket ${row.bucket}`, { context: { bucket: row.bucket, key: row.key } });
    });
  }

  #require(id: number): RawRow {
    const row = this.selectOne<RawRow>('SELECT * FROM upload_queue WHERE id = ?', id);
    if (row === undefined) throw new ShuttleError('JOURNAL', `upload queue row ${id} does not exist`, { context: { id } });
    return row;
  }

  get(id: number): QueueRow | undefined {
    const r = this.selectOne<RawRow>('SELECT * FROM upload_queue WHERE id = ?', id);
    return r === undefined ? undefined : toRow(r);
  }

  rows(ids: readonly number[]): QueueRow[] {
    return ids.map((id) => this.get(id)).filter((r): r is QueueRow => r !== undefined);
  }

  /**
   * The row at `target` that carries file `fileId`: its own, else one holding the same content (its
   * SHA-256 and size), as a row folded into a twin leaves it (see shareInto); uploaded, then open, rows first.
   */
  carrierOf(fileId: number, target: { bucket: string; prefix: string }): QueueRow | undefined {
    const r = this.selectOne<RawRow>(
      `SELECT q.* FROM upload_queue q JOIN files f ON f.id = ?
       WHERE q.bucket = ? AND q.prefix = ? AND (q.file_id = f.id OR (q.sha256 = f.sha256 AND q.size = f.size))
       ORDER BY CASE q.state WHEN 'uploaded' THEN 0 WHEN 'failed' THEN 2 ELSE 1 END, q.id LIMIT 1`,
      fileId,
      target.bucket,
      target.prefix,
    );
    return r === undefined ? undefined : toRow(r);
  }

  /** Every row, in upload order (for status and tests). */
  all(): QueueRow[] {
    return this.selectAll<RawRow>('SELECT * FROM upload_queue ORDER BY priority, id').map(toRow);
  }

  /**
   * What is still to do, as the queue will take it: rows uploading first, then queued ones by priority
   * and age, then failed ones (for the API's queue view).
   */
  pending(limit: number): QueueRow[] {
    return this.selectAll<RawRow>(
      `SELECT * FROM upload_queue WHERE state != 'uploaded'
       ORDER BY CASE state WHEN 'uploading' THEN 0 WHEN 'queued' THEN 1 ELSE 2 END, priority, id LIMIT ?`,
      limit,
    ).map(toRow);
  }

  /**
   * Moves a file's queued rows in the upload order (lower goes first); rows already uploading, uploaded or
   * failed keep theirs. Returns how many rows changed.
   */
  setPriority(fileId: number, priority: number, now = Date.now()): number {
    return this.exec(`UPDATE upload_queue SET priority = ?, updated_at = ? WHERE file_id = ? AND state = 'queued'`, priority, iso(now), fileId).changes;
  }

  /** A manual run ("try now"): every queued row is due at once, whatever its backoff said. */
  retryNow(now = Date.now()): number {
    return this.exec(`UPDATE upload_queue SET next_attempt_at = ? WHERE state = 'queued' AND next_attempt_at > ?`, now, now).changes;
  }

  /**
   * Rows a dead process left claimed go back to the queue. Call only while holding the upload lock, which
   * guarantees that no live process is uploading them; their multipart state resumes them.
   */
  recoverInterrupted(now = Date.now()): number {
    return this.exec(`UPDATE upload_queue SET state = 'queued', next_attempt_at = min(next_attempt_at, ?), updated_at = ? WHERE state = 'uploading'`, now, iso(now)).changes;
  }

  /** Claims the first due row by priority, then age. */
  claimNext(now = Date.now()): QueueRow | undefined {
    return this.journal.tx(() => {
      const r = this.selectOne<RawRow>(`SELECT * FROM upload_queue WHERE state = 'queued' AND next_attempt_at <= ? ORDER BY priority, id LIMIT 1`, now);
      if (r === undefined) return undefined;
      this.exec(`UPDATE upload_queue SET state = 'uploading', updated_at = ? WHERE id = ?`, iso(now), r.id);
      return toRow({ ...r, state: 'uploading' });
    });
  }

  /** Recorded only after uploadFile verified the object. */
  markUploaded(id: number, done: { copyId: number | null; etag: string }, now = Date.now()): void {
    this.exec(
      `UPDATE upload_queue SET state = 'uploaded', copy_id = ?, etag = ?, uploaded_at = ?, updated_at = ?, last_error = NULL, last_error_code = NULL, last_error_at = NULL
       WHERE id = ?`,
      done.copyId,
      done.etag,
      iso(now),
      iso(now),
      id,
    );
  }

  /** Back to the queue until `nextAttemptAt`, counting the attempt and keeping the error for status. */
  defer(id: number, error: ErrorNote, nextAttemptAt: number, now = Date.now()): void {
    this.exec(
      `UPDATE upload_queue SET state = 'queued', attempts = attempts + 1, next_attempt_at = ?, last_error = ?, last_error_code = ?, last_error_at = ?, updated_at = ?
       WHERE id = ?`,
      nextAttemptAt,
      error.message,
      error.code,
      iso(now),
      iso(now),
      id,
    );
  }

  /** Back to the queue, due now, without counting an attempt (the run was stopped, not the upload refused). */
  release(id: number, now = Date.now()): void {
    this.exec(`UPDATE upload_queue SET state = 'queued', next_attempt_at = min(next_attempt_at, ?), updated_at = ? WHERE id = ? AND state = 'uploading'`, now, iso(now), id);
  }

  markFailed(id: number, error: ErrorNote, now = Date.now()): void {
    this.exec(
      `UPDATE upload_queue SET state = 'failed', attempts = attempts + 1, last_error = ?, last_error_code = ?, last_error_at = ?, updated_at = ? WHERE id = ?`,
      error.message,
      error.code,
      iso(now),
      iso(now),
      id,
    );
  }

  /** When the earliest deferred row is due (epoch ms), if any row is queued. */
  nextDueAt(): number | undefined {
    return this.selectOne<{ t: number | null }>(`SELECT min(next_attempt_at) AS t FROM upload_queue WHERE state = 'queued'`)?.t ?? undefined;
  }

  /** Rows by state: all of them, or those with the given ids. */
  counts(ids?: readonly number[]): QueueCounts {
    const out: QueueCounts = { queued: 0, uploading: 0, uploaded: 0, failed: 0 };
    if (ids === undefined) {
      for (const r of this.selectAll<{ state: QueueState; n: number }>('SELECT state, count(*) AS n FROM upload_queue GROUP BY state')) out[r.state] += r.n;
    } else {
      for (const r of this.rows([...new Set(ids)])) out[r.state]++;
    }
    return out;
  }

  stats(now = Date.now()): QueueStats {
    const counts = this.counts();
    const pending = this.selectOne<{ b: number | null }>(`SELECT sum(size) AS b FROM upload_queue WHERE state IN ('queued', 'uploading')`)?.b ?? 0;
    const recent = this.selectOne<{ b: number | null }>(`SELECT sum(size) AS b FROM upload_queue WHERE state = 'uploaded' AND uploaded_at >= ?`, iso(now - RATE_WINDOW_MS))?.b ?? 0;
    const last = this.selectOne<{ key: string; last_error: string; last_error_code: string | null; last_error_at: string | null; state: QueueState }>(
      `SELECT key, last_error, last_error_code, last_error_at, state FROM upload_queue WHERE last_error IS NOT NULL ORDER BY last_error_at DESC, id DESC LIMIT 1`,
    );
    return {
      ...counts,
      depth: counts.queued + counts.uploading,
      bytesPending: pending,
      bytesPerSecond: Math.round(recent / (RATE_WINDOW_MS / 1000)),
      rateWindowMs: RATE_WINDOW_MS,
      nextAttemptAt: this.nextDueAt() ?? null,
      lastError: last === undefined ? null : { key: last.key, code: last.last_error_code, message: last.last_error, at: last.last_error_at, state: last.state },
    };
  }

  /**
   * Verified local copies holding this content: the file's own first (by destination), then other
   * files' copies of the same bytes. Any of them can stand in for a copy that rotted. The file's own
   * copies match on xxh128 (they were verified against the same source read); another file's only on
   * SHA-256, so none while the SHA-256 is unknown (see #freeKey for why xxh128 alone is not enough).
   */
  localCopies(fileId: number, content: { sha256: string | null; xxh128: string | null; size: number }): LocalCopy[] {
    return this.selectAll<LocalCopyRow>(
      `SELECT ${LOCAL_COPY_COLUMNS} FROM copies c JOIN destinations d ON d.id = c.dest_id
       WHERE c.state = 'verified' AND c.dest_path IS NOT NULL AND c.size = ?
         AND (c.sha256 = ? OR (c.file_id = ? AND c.xxh128 = ?))
       ORDER BY c.file_id != ?, c.dedup, c.dest_id, c.id`,
      content.size,
      content.sha256,
      fileId,
      content.xxh128,
      fileId,
    ).map(toLocalCopy);
  }

  /**
   * Records the SHA-256 (and MD5) an upload computed from a verified copy of the row's file whose bytes
   * matched the journal's xxh128 and size in the same read: on the queue rows, copies and source row of
   * that file that hold the same xxh128 and size and had no SHA-256 yet. Only the file's own rows: a
   * hash read from one file never describes another.
   */
  recordContentHashes(id: number, read: { xxh128: string; size: number; sha256: string; md5?: string | undefined }, now = Date.now()): void {
    this.journal.tx(() => {
      const row = this.#require(id);
      const t = iso(now);
      this.exec(
        `UPDATE upload_queue SET sha256 = ?, updated_at = ? WHERE file_id = ? AND sha256 IS NULL AND xxh128 = ? AND size = ?`,
        read.sha256,
        t,
        row.file_id,
        read.xxh128,
        read.size,
      );
      const hashes = read.md5 === undefined ? { sha256: read.sha256 } : { sha256: read.sha256, md5: read.md5 };
      this.exec(
        // updated_at stays: it is when the copy was verified, which retention's age counts from.
        `UPDATE copies SET sha256 = ?, hashes = json_patch(coalesce(hashes, '{}'), ?)
         WHERE file_id = ? AND state = 'verified' AND sha256 IS NULL AND xxh128 = ? AND size = ?`,
        read.sha256,
        JSON.stringify(hashes),
        row.file_id,
        read.xxh128,
        read.size,
      );
      this.exec(`UPDATE files SET sha256 = ? WHERE id = ? AND sha256 IS NULL AND xxh128 = ? AND size = ?`, read.sha256, row.file_id, read.xxh128, read.size);
    });
  }

  /**
   * Other rows of row `id`'s target (bucket and prefix) that may hold its content: the same size and
   * either its SHA-256 or, while theirs is unknown, its xxh128. Only a SHA-256 match may be shared (see
   * shareInto); an xxh128 one is worth waiting for while that row is being hashed.
   */
  contentPeers(id: number): QueueRow[] {
    const r = this.#require(id);
    return this.selectAll<RawRow>(
      `SELECT * FROM upload_queue WHERE bucket = ? AND prefix = ? AND size = ? AND id != ? AND (sha256 = ? OR (sha256 IS NULL AND xxh128 = ?)) ORDER BY id`,
      r.bucket,
      r.prefix,
      r.size,
      id,
      r.sha256,
      r.xxh128,
    ).map(toRow);
  }

  /**
   * Row `id`, queued before its SHA-256 was known, turns out to hold the content of row `into` (same
   * target, SHA-256 and size): it goes, and its file is carried by `into` as a file shared at enqueue is
   * (retention and the wipe gate find it by SHA-256). A failed `into` is given another chance, since this
   * file's copies now stand in for its own. False, changing nothing, when the two do not match. Only for a
   * row that has made no request yet.
   */
  shareInto(id: number, into: number, now = Date.now()): boolean {
    return this.journal.tx(() => {
      const r = this.#require(id);
      const p = this.selectOne<RawRow>('SELECT * FROM upload_queue WHERE id = ?', into);
      if (p === undefined || p.id === r.id || r.sha256 === null || p.sha256 !== r.sha256 || p.size !== r.size || p.bucket !== r.bucket || p.prefix !== r.prefix) {
        return false;
      }
      this.exec('DELETE FROM upload_queue WHERE id = ?', id);
      if (p.state === 'failed') this.exec(`UPDATE upload_queue SET state = 'queued', attempts = 0, next_attempt_at = ?, updated_at = ? WHERE id = ?`, now, iso(now), into);
      return true;
    });
  }

  /** A copy whose bytes no longer match the journal stops counting as verified (an ingest may copy it again). */
  markCopyDamaged(copyId: number, message: string, now = Date.now()): void {
    this.exec(`UPDATE copies SET state = 'failed', error = ?, updated_at = ? WHERE id = ? AND state = 'verified'`, message, iso(now), copyId);
  }
}

/** A LocalCopy's columns, from `copies c JOIN destinations d`. */
export const LOCAL_COPY_COLUMNS = 'c.id, c.file_id, c.dest_id, d.path AS root, d.marker_id, c.dest_path, c.size, c.hashes';

export interface LocalCopyRow {
  id: number;
  file_id: number;
  dest_id: number;
  root: string;
  marker_id: string;
  dest_path: string;
  size: number;
  hashes: string | null;
}

export function toLocalCopy(c: LocalCopyRow): LocalCopy {
  return { copyId: c.id, fileId: c.file_id, destId: c.dest_id, root: c.root, markerId: c.marker_id, destPath: c.dest_path, size: c.size, md5: recordedMd5(c.hashes) };
}

/** The MD5 among a copy's recorded hashes (a JSON object by algorithm), if one is there and well-formed. */
function recordedMd5(hashes: string | null): string | undefined {
  if (hashes === null) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(hashes);
  } catch {
    return undefined;
  }
  const md5 = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>)['md5'] : undefined;
  return typeof md5 === 'string' && /^[0-9a-f]{32}$/i.test(md5) ? md5.toLowerCase() : undefined;
}
