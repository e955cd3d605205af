import { mkdirSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { ShuttleError } from '../errors.js';
import { Checkpointer } from './checkpointer.js';
import { createJournalFile } from './journal-file.js';
import { MIGRATIONS } from './migrations.js';

export type FileState = 'seen' | 'copying' | 'verified' | 'failed';
/** `pruned`: verified here, uploaded and verified in the cloud, then removed locally by the retention policy. */
export type CopyState = 'copying' | 'verified' | 'failed' | 'pruned';

export interface CopyRow {
  id: number;
  file_id: number;
  dest_id: number;
  state: CopyState;
  dest_path: string | null;
  temp_path: string | null;
  size: number | null;
  sha256: string | null;
  xxh128: string | null;
  hashes: string | null;
  readback: string | null;
  dedup: number;
  manifest_seq: number | null;
}

export interface FileRow {
  id: number;
  source_id: number;
  rel_path: string;
  size: number;
  mtime_ms: number;
  sha256: string | null;
  xxh128: string | null;
  state: FileState;
  /** The source's bytes of a path that is not valid UTF-8; null when rel_path is the path. */
  path_bytes: Uint8Array | null;
}

/** What the journal keeps of a source: a device's SourceIdentity (src/device/source.ts) is one. */
export interface SourceRecord {
  kind: string;
  /** Stable across sessions and mounts; the row's identity. */
  key: string;
  label: string;
  details: Readonly<Record<string, string | number>>;
}

export interface DestinationRow {
  id: number;
  marker_id: string;
  path: string;
  volume_uuid: string | null;
}

export interface VerifiedCopy {
  destPath: string;
  size: number;
  /** Null from an ingest: the upload takes the SHA-256 from a verified copy and records it (UploadQueue.recordContentHashes). */
  sha256: string | null;
  xxh128: string;
  hashes: Record<string, string>;
  readback: 'direct' | 'cached' | 'existing';
  dedup: boolean;
}

const now = (): string => new Date().toISOString();

/**
 * Commits between checkpoints of the write-ahead log, which run in a worker thread (Checkpointer): about
 * as often as SQLite's own would (every 1000 pages), a file's record being a few pages. A run of fewer
 * commits starts no thread.
 */
const CHECKPOINT_EVERY = 200;
/**
 * The log's size in pages at which the journal's own connection checkpoints (SQLite's automatic
 * checkpoint, on this thread): far beyond the worker's, so it acts only if the worker fell behind or failed.
 */
const FALLBACK_CHECKPOINT_PAGES = 16_000;

/** The size of a files row for a path whose size could not be read (see recordUnreadable). */
export const UNREADABLE_SIZE = -1;

let statementOf: (journal: Journal, sql: string) => StatementSync;

/**
 * `sql` compiled once on the journal's connection: for the stores in src/store that keep tables in the
 * journal (the upload queue, multipart uploads, retention). Only src/store imports it: nothing else runs SQL.
 */
export function journalStatement(journal: Journal, sql: string): StatementSync {
  return statementOf(journal, sql);
}

/** fsync of a file or folder by path (any descriptor of a file syncs what every writer of it wrote). */
async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * The durable record of what Shuttle knows: SQLite in WAL mode with synchronous=FULL, so that every
 * committed transition survives a power cut (bar markTempFolder's, which only names temps to clean up).
 * All writes are small transactions; a state is only recorded after the fact it claims is durable on disk.
 */
export class Journal {
  readonly path: string;
  readonly #db: DatabaseSync;
  // Compiled once per connection: an ingest or upload runs the same few statements for every file, and
  // compiling SQL is most of their cost on a slow CPU.
  readonly #statements = new Map<string, StatementSync>();

  static {
    statementOf = (journal, sql) => journal.#statement(sql);
  }

  readonly #checkpoints: Checkpointer;
  #commits = 0;

  private constructor(path: string, db: DatabaseSync) {
    this.path = path;
    this.#db = db;
    this.#checkpoints = new Checkpointer(path);
  }

  /** Checkpoints the worker thread has finished (for tests). */
  get checkpointsDone(): number {
    return this.#checkpoints.done;
  }

  static open(stateDir: string): Journal {
    try {
      mkdirSync(stateDir, { recursive: true, mode: 0o750 });
    } catch (cause) {
      throw new ShuttleError('JOURNAL', `cannot create state directory ${stateDir}`, { cause, context: { stateDir } });
    }
    const path = join(stateDir, 'journal.sqlite');
    let db: DatabaseSync;
    try {
      createJournalFile(path);
      db = new DatabaseSync(path, { timeout: 10_000 });
      db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = ${FALLBACK_CHECKPOINT_PAGES};`);
    } catch (cause) {
      throw new ShuttleError('JOURNAL', `cannot open journal ${path}: ${(cause as Error).message}`, { cause, context: { path } });
    }
    const j = new Journal(path, db);
    j.#migrate();
    return j;
  }

  /** Whether the connection is open and answers a query (the daemon's health check). */
  answers(): boolean {
    if (!this.#db.isOpen) return false;
    this.#statement('SELECT 1').get();
    return true;
  }

  /** The connection's journal mode and synchronous level, which every durability claim rests on. */
  durability(): { journalMode: string; synchronous: number } {
    const mode = this.#db.prepare('PRAGMA journal_mode').get() as { journal_mode: string };
    const sync = this.#db.prepare('PRAGMA synchronous').get() as { synchronous: number };
    return { journalMode: mode.journal_mode, synchronous: sync.synchronous };
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
    // The worker's connection, closed after this one, is the last: its close checkpoints what is left.
    this.#checkpoints.close();
    // A sync still under way ends first: a file handle closes once its operations have.
    const log = this.#log;
    this.#log = undefined;
    void log?.close().catch(() => undefined);
  }

  #migrate(): void {
    const current = Number((this.#db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version);
    if (current > MIGRATIONS.length) {
      throw new ShuttleError('JOURNAL', `journal ${this.path} has schema version ${current}, newer than this Shuttle knows (${MIGRATIONS.length})`, {
        context: { path: this.path, version: current },
      });
    }
    if (current === MIGRATIONS.length) return;
    // One transaction for every step: one commit (one fsync) for a new journal instead of one per step,
    // and an upgrade is all or nothing.
    this.tx(() => {
      for (let v = current; v < MIGRATIONS.length; v++) this.#db.exec(MIGRATIONS[v]!);
      this.#db.exec(`PRAGMA user_version = ${MIGRATIONS.length}`);
    });
  }

  get schemaVersion(): number {
    return Number((this.#db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version);
  }

  /** Counts `n` commits' worth of the log towards the next checkpoint, and asks for it when due. */
  #countForCheckpoint(n: number): void {
    this.#commits += n;
    if (this.#commits >= CHECKPOINT_EVERY && this.#checkpoints.request()) this.#commits = 0;
  }

  /** Runs fn in an immediate transaction; nested calls join the outer one. */
  tx<T>(fn: () => T): T {
    if (this.#db.isTransaction) return fn();
    this.#db.exec('BEGIN IMMEDIATE');
    try {
      const r = fn();
      this.#db.exec('COMMIT');
      this.#committed++;
      this.#countForCheckpoint(1);
      return r;
    } catch (e) {
      if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
      throw e;
    }
  }

  /**
   * Runs fn in a transaction whose commit does not wait for the disk (synchronous=NORMAL: in WAL mode
   * durable against a crash of the process, not of the machine, until the next FULL commit syncs the
   * log). Inside an outer transaction it joins that one, durable as it is.
   */
  #undurable<T>(fn: () => T): T {
    if (this.#db.isTransaction) return fn();
    this.#statement('PRAGMA synchronous = NORMAL').run();
    try {
      return this.tx(fn);
    } finally {
      this.#statement('PRAGMA synchronous = FULL').run();
    }
  }

  /**
   * Runs fn in one transaction committed without waiting for the disk (see #undurable): durable once a
   * `synced()` called after it resolves. For records that many files write in a row, whose fsync would
   * otherwise stall this thread once per file.
   */
  txUnsynced<T>(fn: () => T): T {
    return this.#undurable(fn);
  }

  /**
   * Runs fn as txUnsynced does, in one transaction with the other calls made before the event loop's next
   * turn, or, while a sync of the log runs, with every call made until it has ended: the records of several
   * files that become ready together (their folders synced by one fsync), or one after another while the log
   * is being synced, cost one commit. Waiting for that sync delays no record's durability: committed while
   * it ran, a record would wait for the next sync all the same (see synced). Resolves with fn's result once
   * committed; a throw rolls back the whole batch and rejects each call of it.
   */
  txUnsyncedSoon<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#batch === undefined) {
        this.#batch = [];
        const commit = (): void => void setImmediate(() => this.#commitBatch());
        if (this.#sync === undefined) commit();
        else void this.#sync.then(commit, commit);
      }
      this.#batch.push({ fn, resolve: resolve as (v: unknown) => void, reject });
    });
  }

  #batch: Array<{ fn: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void }> | undefined;

  #commitBatch(): void {
    const batch = this.#batch ?? [];
    this.#batch = undefined;
    let results: unknown[];
    try {
      results = this.#undurable(() => batch.map((b) => b.fn()));
    } catch (e) {
      for (const b of batch) b.reject(e);
      return;
    }
    // A batch writes about as many pages to the log as its records would one commit each.
    this.#countForCheckpoint(batch.length - 1);
    batch.forEach((b, i) => b.resolve(results[i]));
  }

  /**
   * Resolves once every commit made before the call is on disk: the write-ahead log is synced from the
   * thread pool, not this thread. A sync already under way may have begun before the caller's commit, so
   * the caller waits for the next one, which then serves every commit made meanwhile (group commit).
   */
  synced(): Promise<void> {
    // A sync that began after the last commit covers it: the records of a batch share one sync.
    if (this.#sync && this.#syncCovers === this.#committed) return this.#sync;
    if (this.#nextSync) return this.#nextSync;
    if (!this.#sync) {
      this.#syncCovers = this.#committed;
      const sync: Promise<void> = this.#syncLog().finally(() => {
        if (this.#sync === sync) this.#sync = undefined;
      });
      this.#sync = sync;
      return sync;
    }
    const next = this.#sync
      .catch(() => undefined)
      .then(() => {
        this.#nextSync = undefined;
        return this.synced();
      });
    this.#nextSync = next;
    return next;
  }

  #sync: Promise<void> | undefined;
  /** Commits made since the journal opened, and how many of them had been made when `#sync` began. */
  #committed = 0;
  #syncCovers = 0;
  #nextSync: Promise<void> | undefined;
  #folderSynced = false;
  /**
   * The write-ahead log, open from the first sync until close(): SQLite keeps the log file while a
   * connection is open (it truncates or rewrites it, never removes it), so each sync is one fsync in the
   * thread pool instead of an open, an fsync and a close.
   */
  #log: FileHandle | undefined;

  async #syncLog(): Promise<void> {
    try {
      // SQLite syncs the folder when its first FULL commit syncs a new log; this makes no assumption about that.
      if (!this.#folderSynced) {
        await syncPath(dirname(this.path));
        this.#folderSynced = true;
      }
      if (this.#log === undefined) {
        const log = await open(`${this.path}-wal`, 'r').catch((e: unknown) => {
          // No log (not while a connection is open): a checkpoint moved every commit into the database file (and synced it) and removed it.
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
          return undefined;
        });
        if (log === undefined) return await syncPath(this.path);
        // Closed meanwhile: the handle is not kept.
        if (!this.#db.isOpen) {
          await log.sync().finally(() => log.close());
          return;
        }
        this.#log = log;
      }
      await this.#log.sync();
    } catch (cause) {
      throw new ShuttleError('JOURNAL', `cannot sync journal ${this.path}: ${(cause as Error).message}`, { cause, context: { path: this.path } });
    }
  }

  /** `sql` compiled on this connection, once (see journalStatement for the other stores). */
  #statement(sql: string): StatementSync {
    let st = this.#statements.get(sql);
    if (!st) this.#statements.set(sql, (st = this.#db.prepare(sql)));
    return st;
  }

  #get<T>(sql: string, ...params: SQLInputValue[]): T | undefined {
    return this.#statement(sql).get(...params) as T | undefined;
  }

  #all<T>(sql: string, ...params: SQLInputValue[]): T[] {
    return this.#statement(sql).all(...params) as T[];
  }

  #run(sql: string, ...params: SQLInputValue[]): number {
    return Number(this.#statement(sql).run(...params).lastInsertRowid);
  }

  /**
   * The source's row. Like the run's own rows (startIngest, finishIngest), committed without an fsync on
   * this thread: nothing is reported on the strength of it, and the next durable commit (a file's, see
   * synced) or the checkpoint of close() puts it on disk with everything before it.
   */
  upsertSource(id: SourceRecord): number {
    return this.#undurable(() => this.#upsertSource(id));
  }

  #upsertSource(id: SourceRecord): number {
    const t = now();
    this.#run(
      `INSERT INTO sources (key, kind, label, details, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT(key) DO UPDATE SET label = excluded.label, details = excluded.details, last_seen = excluded.last_seen`,
      id.key,
      id.kind,
      id.label,
      JSON.stringify(id.details),
      t,
      t,
    );
    return this.#get<{ id: number }>('SELECT id FROM sources WHERE key = ?', id.key)!.id;
  }

  destinationByMarker(markerId: string): DestinationRow | undefined {
    return this.#get<DestinationRow>('SELECT id, marker_id, path, volume_uuid FROM destinations WHERE marker_id = ?', markerId);
  }

  /** The marker id the journal expects at a path, if it has ever written there. */
  destinationByPath(path: string): DestinationRow | undefined {
    return this.#get<DestinationRow>('SELECT id, marker_id, path, volume_uuid FROM destinations WHERE path = ? ORDER BY id DESC LIMIT 1', path);
  }

  /**
   * The destination's row, committed without an fsync on this thread (see upsertSource): a power cut that
   * loses it loses every copy recorded there after it too, as if this run had not begun, and the next run
   * takes the destination's marker as a new destination's.
   */
  upsertDestination(markerId: string, path: string, volumeUuid: string | undefined): number {
    return this.#undurable(() => {
      this.#run(
        `INSERT INTO destinations (marker_id, path, volume_uuid, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(marker_id) DO UPDATE SET path = excluded.path, volume_uuid = COALESCE(excluded.volume_uuid, volume_uuid)`,
        markerId,
        path,
        volumeUuid ?? null,
        now(),
      );
      return this.destinationByMarker(markerId)!.id;
    });
  }

  /** The run's row, committed without an fsync on this thread (see upsertSource). */
  startIngest(sources: string[], destinations: string[]): number {
    return this.#undurable(() =>
      this.#run('INSERT INTO ingests (started_at, status, sources, destinations) VALUES (?, ?, ?, ?)', now(), 'running', JSON.stringify(sources), JSON.stringify(destinations)),
    );
  }

  /** The run's outcome, committed without an fsync on this thread (see upsertSource): its files' records are durable already. */
  finishIngest(id: number, status: string, summary: unknown): void {
    this.#undurable(() => this.#run('UPDATE ingests SET finished_at = ?, status = ?, summary = ? WHERE id = ?', now(), status, JSON.stringify(summary), id));
  }

  /**
   * Finds or creates the row for one version of a source file (path + size + mtime). `pathBytes`: the
   * path as the source has it when that is not valid UTF-8 (`relPath` is then its escaped form, which
   * is the same on every listing, so the key still finds the row).
   */
  fileFor(sourceId: number, relPath: string, size: number, mtimeMs: number, pathBytes?: Uint8Array): FileRow {
    const mt = Math.trunc(mtimeMs);
    const existing = this.#get<FileRow>('SELECT * FROM files WHERE source_id = ? AND rel_path = ? AND size = ? AND mtime_ms = ?', sourceId, relPath, size, mt);
    if (existing) return existing;
    const t = now();
    const id = this.#run(
      'INSERT INTO files (source_id, rel_path, size, mtime_ms, state, first_seen, updated_at, path_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      sourceId,
      relPath,
      size,
      mt,
      'seen',
      t,
      t,
      pathBytes ?? null,
    );
    return this.#get<FileRow>('SELECT * FROM files WHERE id = ?', id)!;
  }

  /**
   * The number of one shot (a source's group of files, by its key) in a shoot: the number it was given
   * before, else the shoot's next one. Call inside a transaction with the files' rows.
   */
  shotNumber(shoot: string, sourceId: number, groupKey: string): number {
    const known = this.#get<{ number: number }>('SELECT number FROM shot_numbers WHERE shoot = ? AND source_id = ? AND group_key = ?', shoot, sourceId, groupKey);
    if (known) return known.number;
    const last = this.#get<{ n: number | null }>('SELECT MAX(number) AS n FROM shot_numbers WHERE shoot = ?', shoot);
    const number = (last?.n ?? 0) + 1;
    this.#run('INSERT INTO shot_numbers (shoot, source_id, group_key, number) VALUES (?, ?, ?, ?)', shoot, sourceId, groupKey, number);
    return number;
  }

  /**
   * Records a path the source listed but could not read (a folder it could not list, a file it could not
   * stat) as a failed file, so that `status` counts it. Size and time are unknown: one row per path,
   * with size -1, which no file version has.
   */
  recordUnreadable(sourceId: number, relPath: string, error: string, pathBytes?: Uint8Array): FileRow {
    return this.#undurable(() => {
      const row = this.fileFor(sourceId, relPath, UNREADABLE_SIZE, 0, pathBytes);
      this.setFileState(row.id, 'failed', error);
      return { ...row, state: 'failed' as const };
    });
  }

  copiesOf(fileId: number): CopyRow[] {
    return this.#all<CopyRow>('SELECT * FROM copies WHERE file_id = ?', fileId);
  }

  /**
   * A folder of the destination (`path` relative to its root) that this run is about to make temp files
   * in, recorded before the first one exists: one record serves every temp of the run there, so a file
   * costs no commit of its own before its copy (a record per file was one commit per file). Committed without waiting for the disk: the
   * process dying loses nothing of it, and a power cut at worst a record whose folder's temps the next
   * ingest writing there sweeps (RunDestination.sweepFolder); the run's next durable commit makes it
   * durable too. The next opening of the destination removes the temps a crash left in the folders
   * recorded (tempFolders) and forgets them, as the run does with those it swept clean once it has ended (forgetTempFolder).
   */
  markTempFolder(destId: number, path: string): void {
    this.#undurable(() => this.#run('INSERT INTO temp_folders (dest_id, path) VALUES (?, ?) ON CONFLICT DO NOTHING', destId, path));
  }

  /** The folders a run recorded it was making temps in at this destination (markTempFolder) and did not forget. */
  tempFolders(destId: number): string[] {
    return this.#all<{ path: string }>('SELECT path FROM temp_folders WHERE dest_id = ? ORDER BY path', destId).map((r) => r.path);
  }

  /** Every temp in the folder is gone; committed as markTempFolder is. */
  forgetTempFolder(destId: number, path: string): void {
    this.#undurable(() => this.#run('DELETE FROM temp_folders WHERE dest_id = ? AND path = ?', destId, path));
  }

  markVerified(fileId: number, destId: number, c: VerifiedCopy, ingestId: number): void {
    const t = now();
    this.tx(() => {
      this.#run(
        `INSERT INTO copies (file_id, dest_id, state, dest_path, temp_path, size, sha256, xxh128, hashes, readback, dedup, ingest_id, updated_at)
         VALUES (?, ?, 'verified', ?, NULL, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(file_id, dest_id) DO UPDATE SET state = 'verified', dest_path = excluded.dest_path, temp_path = NULL,
           size = excluded.size, sha256 = excluded.sha256, xxh128 = excluded.xxh128, hashes = excluded.hashes, readback = excluded.readback,
           dedup = excluded.dedup, error = NULL, manifest_seq = NULL, ingest_id = excluded.ingest_id, updated_at = excluded.updated_at`,
        fileId,
        destId,
        c.destPath,
        c.size,
        c.sha256,
        c.xxh128,
        JSON.stringify(c.hashes),
        c.readback,
        c.dedup ? 1 : 0,
        ingestId,
        t,
      );
      // A SHA-256 an earlier copy recorded stays while it describes the same bytes (by xxh128).
      this.#run('UPDATE files SET sha256 = COALESCE(?, CASE WHEN xxh128 = ? THEN sha256 END), xxh128 = ?, updated_at = ? WHERE id = ?', c.sha256, c.xxh128, c.xxh128, t, fileId);
    });
  }

  /**
   * A failure, like setFileState and recordUnreadable, is committed without an fsync on this thread (see
   * synced): nothing is reported done on its strength, and a power cut that loses it leaves the copy in
   * flight (cleared as interrupted by the next run) or the file not verified, so it is copied again.
   */
  markCopyFailed(fileId: number, destId: number, error: string, ingestId: number): void {
    this.#undurable(() => this.#markCopyFailed(fileId, destId, error, ingestId));
  }

  #markCopyFailed(fileId: number, destId: number, error: string, ingestId: number): void {
    this.#run(
      `INSERT INTO copies (file_id, dest_id, state, error, ingest_id, updated_at) VALUES (?, ?, 'failed', ?, ?, ?)
       ON CONFLICT(file_id, dest_id) DO UPDATE SET state = 'failed', temp_path = NULL, error = excluded.error, ingest_id = excluded.ingest_id, updated_at = excluded.updated_at`,
      fileId,
      destId,
      error,
      ingestId,
      now(),
    );
  }

  /** A file's overall state follows its copies: verified only when every wanted destination is. */
  setFileState(fileId: number, state: FileState, error?: string): void {
    this.#undurable(() => this.#run('UPDATE files SET state = ?, error = ?, updated_at = ? WHERE id = ?', state, error ?? null, now(), fileId));
  }

  /**
   * A verified copy at this destination with the same xxh128 and size: a candidate for dedup only, since
   * xxh128 is no proof against crafted content (the caller compares the bytes).
   */
  findContent(destId: number, xxh128: string, size: number): CopyRow | undefined {
    return this.#get<CopyRow>(`SELECT * FROM copies WHERE dest_id = ? AND xxh128 = ? AND size = ? AND state = 'verified' AND dest_path IS NOT NULL LIMIT 1`, destId, xxh128, size);
  }

  groupName(sourceId: number, groupKey: string, destId: number): { fields: string; suffix: number } | undefined {
    return this.#get('SELECT fields, suffix FROM group_names WHERE source_id = ? AND group_key = ? AND dest_id = ?', sourceId, groupKey, destId);
  }

  setGroupName(sourceId: number, groupKey: string, destId: number, fields: string, suffix: number): void {
    this.#run(
      `INSERT INTO group_names (source_id, group_key, dest_id, fields, suffix) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT(source_id, group_key, dest_id) DO UPDATE SET fields = excluded.fields, suffix = excluded.suffix`,
      sourceId,
      groupKey,
      destId,
      fields,
      suffix,
    );
  }

  /**
   * Copies still marked in flight, as a crash left them before temps were recorded by folder (journals of
   * earlier versions): their temp files are to be removed.
   */
  staleCopies(destId: number): CopyRow[] {
    return this.#all<CopyRow>(`SELECT * FROM copies WHERE dest_id = ? AND state = 'copying'`, destId);
  }

  clearStale(copyId: number): void {
    this.#run(`UPDATE copies SET state = 'failed', temp_path = NULL, error = 'interrupted', updated_at = ? WHERE id = ? AND state = 'copying'`, now(), copyId);
  }

  /** Verified copies not yet written to any manifest generation (also those a crash kept out of one). */
  unmanifested(destId: number): Array<CopyRow & { mtime_ms: number }> {
    return this.#all(
      `SELECT c.*, f.mtime_ms FROM copies c JOIN files f ON f.id = c.file_id
       WHERE c.dest_id = ? AND c.state = 'verified' AND c.manifest_seq IS NULL AND c.dedup = 0 ORDER BY c.dest_path`,
      destId,
    );
  }

  markManifested(copyIds: number[], seq: number): void {
    this.tx(() => {
      const st = this.#db.prepare('UPDATE copies SET manifest_seq = ? WHERE id = ?');
      for (const id of copyIds) st.run(seq, id);
    });
  }

  stateCounts(): { files: Record<string, number>; copies: Record<string, number> } {
    const files = Object.fromEntries(this.#all<{ state: string; n: number }>('SELECT state, count(*) AS n FROM files GROUP BY state').map((r) => [r.state, r.n]));
    const copies = Object.fromEntries(this.#all<{ state: string; n: number }>('SELECT state, count(*) AS n FROM copies GROUP BY state').map((r) => [r.state, r.n]));
    return { files, copies };
  }

  lastIngests(limit: number): Array<{ id: number; started_at: string; finished_at: string | null; status: string; sources: string; destinations: string; summary: string | null }> {
    return this.#all('SELECT * FROM ingests ORDER BY id DESC LIMIT ?', limit);
  }

  destinations(): DestinationRow[] {
    return this.#all<DestinationRow>('SELECT id, marker_id, path, volume_uuid FROM destinations ORDER BY id');
  }

  /**
   * Consistency check used by tests and `status`: verified copies must have a path, a size and the xxh128
   * their read-back compared (SHA-256 is taken only for an upload).
   */
  inconsistencies(): string[] {
    const bad = this.#all<{ id: number }>(`SELECT id FROM copies WHERE state = 'verified' AND (dest_path IS NULL OR xxh128 IS NULL OR size IS NULL)`);
    return bad.map((b) => `copy ${b.id} is verified without path, size or xxh128`);
  }
}
