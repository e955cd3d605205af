import { lstat, readdir, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Stats } from 'node:fs';
import type { HotFile } from '../device/card/hot-folder-source.js';
import type { Logger } from '../log.js';

/**
 * Hot folders: folders where cameras upload over FTP or Wi-Fi, or tethering software saves captures.
 * A file is handed on only once it is complete, and each version of a file once.
 *
 * "Complete" means its size and mtime have not changed for `settleMs` (chokidar's change events restart
 * the wait; a stat after the wait is the backstop for writers whose changes inotify misses). This is
 * done here rather than with chokidar's awaitWriteFinish because that one does not apply to files found
 * by the initial scan (a daemon started during an upload would ingest half a file) and looks at size
 * only (a preallocated file keeps its size while it fills).
 *
 * Complete files are collected into batches: a batch is handed on after `batchMs` without a new
 * complete file, or after `maxBatchWaitMs` whatever happens, so a steady stream still moves.
 * Temp names that uploaders write before renaming (`.part`, `.tmp`, hidden files) are ignored; the
 * rename makes the real name appear, which then settles like any new file.
 *
 * Log lines carry no folder name: the caller passes a child logger that has it.
 */

export type { HotFile } from '../device/card/hot-folder-source.js';

export interface HotFolderWatcherOptions {
  root: string;
  settleMs: number;
  batchMs: number;
  /** Upper bound on how long a complete file waits for its batch (default: max(10 × batchMs, 10 s)). */
  maxBatchWaitMs?: number | undefined;
  logger: Logger;
  onBatch(files: HotFile[]): void;
  /** Poll instead of inotify (network filesystems). */
  usePolling?: boolean | undefined;
  /** How often to check that the folder is (still) there (default 2 s). */
  presenceCheckMs?: number | undefined;
}

/** Suffixes of files still being uploaded or downloaded under a temporary name. */
const TEMP_SUFFIXES = ['.part', '.partial', '.tmp', '.temp', '.filepart', '.crdownload', '.download', '.upload', '.shuttle-tmp', '~'];
/** Folders an OS puts into shared folders; never photographs. */
const SYSTEM_NAMES = new Set(['System Volume Information', '$RECYCLE.BIN', 'lost+found', '@eaDir', '#recycle']);
const STAT_CONCURRENCY = 32;
/** Versions of handed-on files remembered per folder (about 100 bytes each). */
const MAX_REMEMBERED = 200_000;

/** Whether a path below a hot folder is never ingested: hidden or system entries anywhere in it, or a temp name. */
export function isIgnoredHotPath(rel: string): boolean {
  if (rel === '') return false;
  const parts = rel.split('/');
  if (parts.some((p) => p.startsWith('.') || SYSTEM_NAMES.has(p))) return true;
  const name = parts[parts.length - 1]!.toLowerCase();
  return TEMP_SUFFIXES.some((s) => name.endsWith(s));
}

interface Settling {
  size: number;
  mtimeMs: number;
  since: number;
}

export class HotFolderWatcher {
  readonly root: string;
  readonly #opts: HotFolderWatcherOptions;
  readonly #maxBatchWaitMs: number;
  #watcher: FSWatcher | undefined;
  /** Seen, not yet complete. */
  readonly #settling = new Map<string, Settling>();
  /** Complete, waiting for the batch to be handed on. */
  readonly #pending = new Map<string, HotFile>();
  /** The version of each file last handed on, so that a repeated event does not hand it on twice. */
  readonly #delivered = new Map<string, string>();
  #deliveredCount = 0;
  #tick: NodeJS.Timeout | undefined;
  #checking = false;
  #batchTimer: NodeJS.Timeout | undefined;
  #firstPendingAt = 0;
  #closed = false;
  #lastError: string | undefined;
  #presence: NodeJS.Timeout | undefined;
  #presenceCheck: Promise<void> | undefined;
  #missingLogged = false;
  /** chokidar's initial scan is done and our own walk after it too. */
  #ready = false;
  /** Walks of folders that appeared since (see #watch's addDir), still to run. */
  readonly #walksDue = new Set<NodeJS.Timeout>();

  constructor(opts: HotFolderWatcherOptions) {
    this.root = opts.root;
    this.#opts = opts;
    this.#maxBatchWaitMs = opts.maxBatchWaitMs ?? Math.max(10 * opts.batchMs, 10_000);
  }

  /**
   * Starts watching; resolves once the initial scan has been read (its files still have to settle),
   * or at once when the folder is not there. A folder that is missing (a share not mounted yet) is watched from when it appears, and one that
   * disappears is watched again when it comes back; its files are then found by the new scan, and
   * versions already handed on are not handed on again.
   */
  async start(): Promise<void> {
    await this.#checkPresence();
    this.#presence = setInterval(() => void this.#checkPresence(), this.#opts.presenceCheckMs ?? 2_000);
    this.#presence.unref();
  }

  /** Stops watching. Files not yet handed on are dropped: the next start finds them again. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#presence);
    clearInterval(this.#tick);
    clearTimeout(this.#batchTimer);
    for (const t of this.#walksDue) clearTimeout(t);
    this.#walksDue.clear();
    this.#tick = undefined;
    await this.#presenceCheck;
    await this.#watcher?.close();
  }

  get status(): { watching: boolean; settling: number; waiting: number; delivered: number; error?: string | undefined } {
    return { watching: this.#ready, settling: this.#settling.size, waiting: this.#pending.size, delivered: this.#deliveredCount, error: this.#lastError };
  }

  #checkPresence(): Promise<void> {
    this.#presenceCheck ??= (async () => {
      const exists = await stat(this.root).then(
        (st) => st.isDirectory(),
        () => false,
      );
      if (this.#closed) return;
      if (exists && !this.#watcher) await this.#watch();
      else if (!exists && this.#watcher) await this.#unwatch();
      else if (!exists && !this.#missingLogged) this.#opts.logger.warn('hot folder does not exist (yet); watching for it to appear');
      this.#missingLogged = !exists;
    })().finally(() => (this.#presenceCheck = undefined));
    return this.#presenceCheck;
  }

  async #watch(): Promise<void> {
    const watcher = watch(this.root, {
      persistent: true,
      ignoreInitial: false,
      followSymlinks: false,
      alwaysStat: true,
      atomic: false,
      ignorePermissionErrors: true,
      usePolling: this.#opts.usePolling ?? false,
      ignored: (path: string) => isIgnoredHotPath(this.#rel(path)),
    });
    this.#watcher = watcher;
    watcher.on('add', (path, stats) => this.#seen(path, stats));
    watcher.on('change', (path, stats) => this.#seen(path, stats));
    watcher.on('unlink', (path) => this.#gone(this.#rel(path)));
    watcher.on('unlinkDir', (path) => this.#goneDir(this.#rel(path)));
    // A folder made while watching has the same gap as the initial scan (see #reconcile): a file moved in
    // right after it is made can land between chokidar's read of the folder and its watch. One walk once
    // the watch is surely in place (a settle time later) finds it.
    watcher.on('addDir', (path) => {
      if (!this.#ready) return;
      const walk = setTimeout(
        () => {
          this.#walksDue.delete(walk);
          void this.#reconcile(path);
        },
        Math.max(100, this.#opts.settleMs),
      );
      walk.unref();
      this.#walksDue.add(walk);
    });
    watcher.on('error', (err) => {
      this.#lastError = err instanceof Error ? err.message : String(err);
      this.#opts.logger.warn({ err }, 'hot folder watcher error');
    });
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    await this.#reconcile(this.root);
    if (this.#watcher !== watcher) return; // it went away meanwhile
    this.#ready = true;
    this.#lastError = undefined;
    this.#opts.logger.info({ settling: this.#settling.size, settleMs: this.#opts.settleMs }, 'watching hot folder');
  }

  async #unwatch(): Promise<void> {
    const w = this.#watcher;
    this.#watcher = undefined;
    this.#settling.clear();
    this.#pending.clear();
    this.#ready = false;
    this.#opts.logger.warn('hot folder disappeared (unmounted or removed); watching for it to come back');
    await w?.close();
  }

  /**
   * chokidar reads each folder before it starts watching it, so a file created in between is neither
   * listed nor heard of (until something else changes in its folder). Once every watch is in place,
   * one walk of our own finds such files; what chokidar did report is a no-op in #seen.
   */
  async #reconcile(dir: string): Promise<void> {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return; // gone or unreadable: chokidar reports what matters about it
    }
    for (const e of entries) {
      if (this.#closed || !this.#watcher) return;
      const abs = join(dir, e.name);
      if (isIgnoredHotPath(this.#rel(abs))) continue;
      if (e.isDirectory()) await this.#reconcile(abs);
      else {
        // Not only regular files: a link or FIFO goes on to the batch too, where the listing names it as skipped.
        const st = await lstat(abs).catch(() => undefined);
        if (st) this.#seen(abs, st);
      }
    }
  }

  /** Hands on the files waiting for their batch now (shutdown paths and tests). */
  flush(): void {
    clearTimeout(this.#batchTimer);
    this.#batchTimer = undefined;
    this.#firstPendingAt = 0;
    if (this.#pending.size === 0 || this.#closed) return;
    const batch = [...this.#pending.values()].sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
    this.#pending.clear();
    for (const f of batch) {
      this.#delivered.delete(f.rel); // re-inserted at the end: the map is oldest first
      this.#delivered.set(f.rel, version(f));
    }
    // Bounded: a forgotten file that shows up again is handed on again, and the journal skips it.
    for (const k of this.#delivered.keys()) {
      if (this.#delivered.size <= MAX_REMEMBERED) break;
      this.#delivered.delete(k);
    }
    this.#deliveredCount += batch.length;
    this.#opts.logger.info({ files: batch.length }, 'hot folder batch ready');
    this.#opts.onBatch(batch);
  }

  #rel(path: string): string {
    return relative(this.root, path).split(sep).join('/');
  }

  #seen(path: string, stats: Stats | undefined): void {
    if (this.#closed || stats === undefined || stats.isDirectory()) return;
    const rel = this.#rel(path);
    if (rel.startsWith('..') || isIgnoredHotPath(rel)) return;
    const now = Date.now();
    const cur = this.#settling.get(rel);
    const mtimeMs = Math.trunc(stats.mtimeMs);
    if (cur && cur.size === stats.size && cur.mtimeMs === mtimeMs) return;
    if (!cur && this.#delivered.get(rel) === version({ rel, size: stats.size, mtimeMs })) return;
    // A newer version replaces one still waiting for its batch.
    this.#pending.delete(rel);
    this.#settling.set(rel, { size: stats.size, mtimeMs, since: now });
    this.#startTicking();
  }

  // What was handed on stays remembered when it goes: a folder that is unmounted and mounted again
  // reports every file gone and then new, and none of them is new work.
  #gone(rel: string): void {
    this.#settling.delete(rel);
    this.#pending.delete(rel);
  }

  #goneDir(rel: string): void {
    const prefix = rel === '' ? '' : `${rel}/`;
    for (const map of [this.#settling, this.#pending]) {
      for (const k of map.keys()) if (k.startsWith(prefix)) map.delete(k);
    }
  }

  #startTicking(): void {
    if (this.#tick) return;
    const every = Math.min(500, Math.max(25, Math.floor(this.#opts.settleMs / 4)));
    this.#tick = setInterval(() => void this.#check(), every);
  }

  /** Stats the files whose quiet time is over; unchanged ones are complete. */
  async #check(): Promise<void> {
    if (this.#checking || this.#closed) return;
    this.#checking = true;
    try {
      const now = Date.now();
      const due = [...this.#settling].filter(([, s]) => now - s.since >= this.#opts.settleMs);
      for (let i = 0; i < due.length; i += STAT_CONCURRENCY) {
        await Promise.all(due.slice(i, i + STAT_CONCURRENCY).map(([rel, s]) => this.#confirm(rel, s)));
      }
      if (this.#settling.size === 0) {
        clearInterval(this.#tick);
        this.#tick = undefined;
      }
    } finally {
      this.#checking = false;
    }
  }

  async #confirm(rel: string, seen: Settling): Promise<void> {
    // lstat: a symbolic link is never followed; it is handed on like a file and named as skipped by the listing.
    const st = await lstat(join(this.root, rel)).catch(() => undefined);
    if (this.#closed || this.#settling.get(rel) !== seen) return; // changed or gone meanwhile: its own event handles it
    if (st === undefined || st.isDirectory()) {
      this.#settling.delete(rel);
      return;
    }
    const mtimeMs = Math.trunc(st.mtimeMs);
    if (st.size !== seen.size || mtimeMs !== seen.mtimeMs) {
      this.#settling.set(rel, { size: st.size, mtimeMs, since: Date.now() });
      return;
    }
    this.#settling.delete(rel);
    const file: HotFile = { rel, size: st.size, mtimeMs };
    if (this.#delivered.get(rel) === version(file)) return;
    this.#pending.set(rel, file);
    this.#schedule();
  }

  #schedule(): void {
    const now = Date.now();
    if (this.#firstPendingAt === 0) this.#firstPendingAt = now;
    clearTimeout(this.#batchTimer);
    const wait = Math.max(0, Math.min(this.#opts.batchMs, this.#firstPendingAt + this.#maxBatchWaitMs - now));
    this.#batchTimer = setTimeout(() => this.flush(), wait);
  }
}

function version(f: HotFile): string {
  return `${f.size}:${f.mtimeMs}`;
}
