import { createHash } from 'node:crypto';
import { accessSync, chmodSync, constants as fsConstants, mkdirSync, openSync, readFileSync, closeSync, writeSync, ftruncateSync } from 'node:fs';
import { hostname, tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { ShuttleError, abortReason, errnoCode, throwIfAborted } from '../errors.js';

/**
 * Locks that keep a CLI run and the daemon off the same card or destination at once.
 *
 * The lock is a kernel lock: an SQLite file held in `BEGIN EXCLUSIVE` for the lock's lifetime. SQLite
 * takes POSIX record locks, which the kernel drops when the holder dies however it dies, so there is
 * no stale lock to guess about; and SQLite keeps its own per-process table of them, so two connections
 * in one process exclude each other too. Who holds the lock is written to a small JSON file next to it
 * after acquiring; it is only for messages, and readers tolerate it missing or half-written.
 *
 * Never open the lock file itself with anything but SQLite: closing any descriptor of a file drops
 * every POSIX lock the process holds on it.
 */

export interface LockOwner {
  /** What the holder is doing, for the message others get (`ingest /media/card`). */
  command: string;
}

export interface LockHolder {
  pid: number;
  host: string;
  user: string;
  command: string;
  /** ISO time the lock was taken. */
  since: string;
}

export interface AcquireLockOptions {
  owner: LockOwner;
  /** Milliseconds to wait for a held lock; 0 (default) fails at once, Infinity waits until aborted. */
  wait?: number | undefined;
  signal?: AbortSignal | undefined;
}

export interface Lock {
  readonly path: string;
  readonly holder: LockHolder;
  /** Releases the lock; calling it again does nothing. */
  release(): void;
}

const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const FIRST_RETRY_MS = 20;
const MAX_RETRY_MS = 250;
/** Lock and holder files are shared by the daemon and CLI users; they hold nothing worth protecting. */
const SHARED_FILE_MODE = 0o666;

export function holderFilePath(lockPath: string): string {
  return `${lockPath}.holder.json`;
}

let userName: string | undefined;

/**
 * The process's user name, looked up once: the lookup goes through NSS (passwd files, and whatever
 * nsswitch.conf adds), which costs a small box more than taking a lock, and a process's uid does not change.
 */
function currentUser(): string {
  if (userName !== undefined) return userName;
  try {
    userName = userInfo().username;
  } catch {
    // Containers may run as a uid without a passwd entry.
    userName = String(process.getuid?.() ?? 'unknown');
  }
  return userName;
}

/** Who holds the lock at `lockPath`, as far as its holder file tells; undefined when it does not. */
export function readLockHolder(lockPath: string): LockHolder | undefined {
  try {
    const parsed: unknown = JSON.parse(readFileSync(holderFilePath(lockPath), 'utf8'));
    if (parsed === null || typeof parsed !== 'object') return undefined;
    const h = parsed as Record<string, unknown>;
    if (typeof h['pid'] !== 'number' || typeof h['command'] !== 'string') return undefined;
    return {
      pid: h['pid'],
      host: String(h['host'] ?? '?'),
      user: String(h['user'] ?? '?'),
      command: h['command'],
      since: String(h['since'] ?? '?'),
    };
  } catch {
    return undefined; // missing, half-written, unreadable: the message just says less
  }
}

function describeHolder(h: LockHolder | undefined): string {
  if (h === undefined) return 'another process (it has not recorded who it is)';
  return `pid ${h.pid} on ${h.host} (user ${h.user}, command "${h.command}") since ${h.since}`;
}

function lockedError(path: string, waitedMs: number): ShuttleError {
  const holder = readLockHolder(path);
  const waited = waitedMs > 0 ? ` after waiting ${waitedMs} ms` : '';
  return new ShuttleError('LOCKED', `${path} is locked by ${describeHolder(holder)}${waited}`, {
    context: { path, holder, waitedMs },
    retryable: true,
  });
}

function isBusy(err: unknown): boolean {
  const code = (err as { errcode?: unknown }).errcode;
  return typeof code === 'number' && ((code & 0xff) === SQLITE_BUSY || (code & 0xff) === SQLITE_LOCKED);
}

function tryBegin(db: DatabaseSync): boolean {
  try {
    db.exec('BEGIN EXCLUSIVE');
    return true;
  } catch (err) {
    if (isBusy(err)) return false;
    throw err;
  }
}

function chmodShared(path: string): void {
  try {
    chmodSync(path, SHARED_FILE_MODE);
  } catch {
    // Not ours (another user created it): its mode is theirs to set.
  }
}

/** The lock's folder, created if missing but never its parents (an unmounted destination must not grow a tree). */
function ensureFolder(path: string): void {
  try {
    mkdirSync(dirname(path));
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw lockFileError(path, err);
  }
}

function lockFileError(path: string, err: unknown): ShuttleError {
  return new ShuttleError('INTERNAL', `cannot open lock ${path}: ${errnoCode(err) ?? (err instanceof Error ? err.message : String(err))}`, {
    cause: err,
    context: { path },
  });
}

function openLockDb(path: string): DatabaseSync {
  ensureFolder(path);
  try {
    const db = new DatabaseSync(path, { timeout: 0 });
    chmodShared(path);
    return db;
  } catch (err) {
    throw lockFileError(path, err);
  }
}

/** Written in place (not renamed over) so that it works in a sticky shared folder for every user. */
function writeHolder(path: string, holder: LockHolder): void {
  const file = holderFilePath(path);
  try {
    const fd = openSync(file, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC, SHARED_FILE_MODE);
    try {
      writeSync(fd, `${JSON.stringify(holder)}\n`);
    } finally {
      closeSync(fd);
    }
    chmodShared(file);
  } catch {
    // The lock is held either way; others' messages will just say less.
  }
}

function clearHolder(path: string): void {
  try {
    const fd = openSync(holderFilePath(path), fsConstants.O_WRONLY);
    try {
      ftruncateSync(fd, 0);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Missing or not writable: nothing to clear.
  }
}

class HeldLock implements Lock {
  readonly path: string;
  readonly holder: LockHolder;
  #db: DatabaseSync | undefined;

  constructor(path: string, holder: LockHolder, db: DatabaseSync) {
    this.path = path;
    this.holder = holder;
    this.#db = db;
  }

  release(): void {
    const db = this.#db;
    if (db === undefined) return;
    this.#db = undefined;
    // Clear the holder first: once the lock is free, what the file says must not be ours.
    clearHolder(this.path);
    try {
      db.exec('ROLLBACK');
    } finally {
      db.close();
    }
  }
}

/**
 * Takes the lock at `path`, waiting up to `wait` ms for its holder to let go (polling; the event loop
 * stays free). Fails with LOCKED naming the holder, or with the signal's reason when aborted.
 */
export async function acquireLock(path: string, options: AcquireLockOptions): Promise<Lock> {
  const { owner, signal } = options;
  const requested = options.wait ?? 0;
  const wait = Number.isNaN(requested) ? 0 : Math.max(0, requested); // Infinity waits for ever
  throwIfAborted(signal);
  const db = openLockDb(path);
  const started = Date.now();
  try {
    let delay = FIRST_RETRY_MS;
    while (!tryBegin(db)) {
      const left = started + wait - Date.now();
      if (left <= 0) throw lockedError(path, wait);
      try {
        await sleep(Math.min(delay, left), undefined, { signal });
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal);
        throw err;
      }
      delay = Math.min(delay * 2, MAX_RETRY_MS);
    }
  } catch (err) {
    db.close();
    throw err;
  }
  const holder: LockHolder = { pid: process.pid, host: hostname(), user: currentUser(), command: owner.command, since: new Date().toISOString() };
  writeHolder(path, holder);
  return new HeldLock(path, holder, db);
}

const RUN_LOCK_DIR = '/run/shuttle/locks';

function writable(dir: string): boolean {
  try {
    accessSync(dir, fsConstants.W_OK | fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The folder for source locks, shared by the daemon and every CLI user, created if missing:
 * `$SHUTTLE_LOCK_DIR`, else /run/shuttle/locks when writable (systemd RuntimeDirectory or tmpfiles),
 * else `<tmpdir>/shuttle-locks` (sticky and world-writable like /tmp, so every user can lock there).
 */
export function sourceLockDir(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env['SHUTTLE_LOCK_DIR'];
  if (configured !== undefined && configured !== '') {
    mkdirSync(configured, { recursive: true });
    return configured;
  }
  if (writable(RUN_LOCK_DIR)) return RUN_LOCK_DIR;
  const dir = join(tmpdir(), 'shuttle-locks');
  try {
    mkdirSync(dir, { mode: 0o1777 });
    chmodSync(dir, 0o1777); // mkdir's mode is cut by the umask
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw lockFileError(dir, err);
  }
  return dir;
}

/** The lock for one source (card, camera, folder), by its identity key: the same key, the same file. */
export function sourceLockPath(sourceKey: string, env: NodeJS.ProcessEnv = process.env): string {
  const digest = createHash('sha256').update(sourceKey).digest('hex').slice(0, 32);
  return join(sourceLockDir(env), `source-${digest}.lock`);
}

/** The lock for one destination, on the destination itself so that every host that mounts it sees it. */
export function destinationLockPath(destRoot: string): string {
  return join(destRoot, '.shuttle', 'lock');
}
