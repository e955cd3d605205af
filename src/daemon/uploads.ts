import { existsSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config/index.js';
import { errnoCode, isShuttleError } from '../errors.js';
import { fsyncDir, replaceFileDurably } from '../io/durable.js';
import type { Logger } from '../log.js';
import type { Journal } from '../store/journal.js';
import { acquireLock, type Lock } from '../store/lock.js';
import { RetentionStore } from '../store/retention.js';
import { UploadQueue, type QueueTarget } from '../store/upload-queue.js';
import type { UploadRuntime } from '../upload/from-config.js';
import type { DrainOptions, DrainReport, UploadFailure } from '../upload/worker.js';
import type { DaemonUploadStatus } from './status.js';

/**
 * The daemon's background uploads: every ingest job queues its verified files, and one drain at a time
 * empties the queue under the upload lock (so `shuttle upload` and the daemon never upload at once; a CLI
 * run that holds the lock is waited for). While the server is unreachable the worker's backoff applies
 * and the daemon goes on ingesting. Stopping aborts the drain at once: rows in flight go back to the
 * queue and their multipart state resumes them at the next start.
 *
 * The S3 SDK is loaded on the first upload, not at start: an idle box without queued files never pays
 * for it.
 */

type FromConfig = typeof import('../upload/from-config.js');

/** Wait before trying again after the uploader itself failed (bad credentials file, journal error). */
const FAILURE_RETRY_MS = 30_000;

/**
 * Present while the operator has paused uploads: a pause is kept across restarts (a station paused to
 * keep a metered link free must not start sending when it reboots).
 */
export function uploadsPausedPath(stateDir: string): string {
  return join(stateDir, 'uploads-paused.json');
}

export interface DaemonUploaderOptions {
  config: Pick<Config, 'station' | 'upload' | 'ingest'>;
  /** The s3:// URL new files are queued for. */
  target: string;
  journal: Journal;
  /** Holds the upload lock (`uploadLockPath`). */
  stateDir: string;
  logger: Logger;
  env?: NodeJS.ProcessEnv | undefined;
  onUploaded?: DrainOptions['onUploaded'];
  /**
   * An upload failure the operator must hear of: the cloud's object did not match, a local copy was found
   * damaged, or a file failed for good. Not every deferral: a server out of reach for a day would bury
   * everything else under them.
   */
  onError?: ((f: UploadFailure) => void) | undefined;
}

interface SinceStart {
  uploaded: number;
  alreadyPresent: number;
  failed: number;
  deferred: number;
  bytesSent: number;
}

export class DaemonUploader {
  readonly #o: DaemonUploaderOptions;
  readonly #log: Logger;
  readonly #queue: UploadQueue;
  readonly #stop = new AbortController();
  readonly #since: SinceStart = { uploaded: 0, alreadyPresent: 0, failed: 0, deferred: 0, bytesSent: 0 };
  #module: FromConfig | undefined;
  #target: QueueTarget | undefined;
  #runtime: UploadRuntime | undefined;
  #loop: Promise<void> | undefined;
  #pending = false;
  #drain: AbortController | undefined;
  #waitingForLock: string | undefined;
  #failure: { message: string; at: string } | undefined;
  #stopped = false;
  /** Paused by the operator (the API): no row is claimed until resumed; uploads in flight finish. */
  #paused: boolean;
  /** The pause written to (or removed from) the state directory, one change after the other. */
  #saved: Promise<void> = Promise.resolve();

  constructor(opts: DaemonUploaderOptions) {
    this.#o = opts;
    this.#log = opts.logger.child({ uploader: opts.target });
    this.#queue = new UploadQueue(opts.journal);
    this.#paused = existsSync(uploadsPausedPath(opts.stateDir));
  }

  /** Starts draining what earlier runs left queued (or interrupted); a queue with nothing due costs nothing. */
  start(): void {
    const { depth } = this.#queue.stats();
    this.#log.info({ target: this.#o.target, queued: depth, paused: this.#paused }, this.#paused ? 'uploader started, paused (resume from the API)' : 'uploader started');
    if (depth > 0) this.kick();
  }

  /**
   * Queues files of an ingest for upload (those with no verified copy are left out by the queue) and
   * wakes the drain. Resolves once they are durably queued.
   */
  async enqueue(fileIds: readonly number[], logger: Logger = this.#log): Promise<void> {
    if (fileIds.length === 0) return;
    const target = await this.#queueTarget();
    const r = this.#queue.enqueue(fileIds, target);
    logger.info({ target: this.#o.target, files: fileIds.length, added: r.added, alreadyUploaded: r.alreadyUploaded, notVerified: r.notVerified }, 'files queued for upload');
    if (!this.#stopped) this.kick();
  }

  /** There is new work: start a drain, or restart one that only waits out a backoff (so new files go now). */
  kick(): void {
    if (this.#stopped) return;
    this.#pending = true;
    if (this.#paused) return;
    if (this.#drain && this.#queue.counts().uploading === 0) this.#drain.abort('new files queued');
    this.#loop ??= this.#run().finally(() => (this.#loop = undefined));
  }

  /**
   * Stops claiming rows until resume(): uploads in flight finish (a pause is no reason to throw away a
   * half-sent file), the rest stays queued, durably, as before. Kept across restarts: resolves once the
   * pause is on disk.
   */
  pause(): Promise<void> {
    if (!this.#paused) {
      this.#paused = true;
      this.#log.info(this.#queue.counts(), 'uploads paused');
      // A drain that only waits out a backoff would claim again when it wakes: end it now.
      if (this.#drain && this.#queue.counts().uploading === 0) this.#drain.abort('uploads paused');
    }
    return this.#save();
  }

  resume(): Promise<void> {
    if (this.#paused) {
      this.#paused = false;
      this.#log.info(this.#queue.counts(), 'uploads resumed');
      this.kick();
    }
    return this.#save();
  }

  /** Writes the pause as it is now, after any earlier write: quick pause/resume presses end in the last one. */
  #save(): Promise<void> {
    const path = uploadsPausedPath(this.#o.stateDir);
    const write = async (): Promise<void> => {
      if (this.#paused) {
        await replaceFileDurably(path, `${JSON.stringify({ pausedAt: new Date().toISOString() })}\n`);
        return;
      }
      try {
        await unlink(path);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') return;
        throw err;
      }
      await fsyncDir(dirname(path));
    };
    const saved = this.#saved.then(write);
    this.#saved = saved.catch(() => undefined);
    return saved;
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Moves a file's queued rows in the upload order (lower first); how many rows changed. */
  setPriority(fileId: number, priority: number): number {
    const changed = this.#queue.setPriority(fileId, priority);
    if (changed > 0) this.#log.info({ fileId, priority }, 'upload priority changed');
    return changed;
  }

  /** What is still to upload, in the order it will go (uploading, queued by priority, then failed). */
  pending(limit: number): ReturnType<UploadQueue['pending']> {
    return this.#queue.pending(limit);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stop.abort('the daemon is stopping');
    await this.#loop;
    this.#runtime?.close();
    this.#runtime = undefined;
  }

  status(now = Date.now()): DaemonUploadStatus {
    const s = this.#queue.stats(now);
    const draining = this.#drain !== undefined;
    const state: DaemonUploadStatus['state'] = this.#stopped
      ? 'stopped'
      : this.#paused && s.uploading === 0
        ? 'paused'
        : this.#waitingForLock !== undefined
          ? 'waiting-for-lock'
          : draining && s.uploading > 0
            ? 'uploading'
            : draining && s.depth > 0
              ? 'backing-off'
              : this.#failure !== undefined && s.depth > 0
                ? 'failed'
                : 'idle';
    return {
      target: this.#o.target,
      state,
      depth: s.depth,
      queued: s.queued,
      uploading: s.uploading,
      uploaded: s.uploaded,
      failed: s.failed,
      bytesPending: s.bytesPending,
      bytesPerSecond: s.bytesPerSecond,
      rateWindowSeconds: Math.round(s.rateWindowMs / 1000),
      retryAt: state === 'backing-off' && s.nextAttemptAt !== null && s.nextAttemptAt > now ? new Date(s.nextAttemptAt).toISOString() : undefined,
      lockHolder: this.#waitingForLock,
      lastError: s.lastError,
      uploaderError: this.#failure,
      sinceStart: { ...this.#since },
    };
  }

  async #fromConfig(): Promise<FromConfig> {
    this.#module ??= await import('../upload/from-config.js');
    return this.#module;
  }

  async #queueTarget(): Promise<QueueTarget> {
    this.#target ??= (await this.#fromConfig()).queueTargetFor(this.#o.config, this.#o.target);
    return this.#target;
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (this.#pending && !signal.aborted && !this.#paused) {
      this.#pending = false;
      try {
        await this.#pass(signal);
        this.#failure = undefined;
      } catch (err) {
        if (signal.aborted) break;
        this.#failure = { message: err instanceof Error ? err.message : String(err), at: new Date().toISOString() };
        this.#log.error({ err, retryInMs: FAILURE_RETRY_MS }, 'uploader failed; trying again later');
        await sleep(FAILURE_RETRY_MS, undefined, { signal }).catch(() => undefined);
        this.#pending = true;
      }
    }
  }

  /** One turn under the upload lock: recover what a dead holder left, drain until empty, apply retention. */
  async #pass(signal: AbortSignal): Promise<void> {
    const m = await this.#fromConfig();
    const lock = await this.#lock(m.uploadLockPath(this.#o.stateDir), signal);
    if (!lock) return;
    try {
      this.#runtime ??= await m.createUploadRuntime({ config: this.#o.config, journal: this.#o.journal, logger: this.#log, ...(this.#o.env ? { env: this.#o.env } : {}) });
      // Stopped while the client was made (it loads the AWS SDK): a drain started now would never hear of it.
      if (signal.aborted) return;
      const recovered = this.#queue.recoverInterrupted();
      if (recovered > 0) this.#log.info({ rows: recovered }, 'uploads interrupted by an earlier run are queued again');
      let stopped: DrainReport['stopped'];
      do {
        this.#pending = false;
        const drain = new AbortController();
        const onStop = (): void => drain.abort(signal.reason);
        signal.addEventListener('abort', onStop, { once: true });
        this.#drain = drain;
        this.#log.info(this.#queue.counts(), 'upload drain started');
        let report: DrainReport;
        try {
          report = await this.#runtime.worker.drain({
            signal: drain.signal,
            waitForDeferred: true,
            done: () => this.#paused,
            onUploaded: this.#o.onUploaded,
            onFailure: (f) => {
              if (f.cloudMismatch || f.outcome !== 'deferred') this.#o.onError?.(f);
            },
          });
        } finally {
          this.#drain = undefined;
          signal.removeEventListener('abort', onStop);
        }
        this.#add(report);
        stopped = report.stopped;
        this.#log.info({ ...report, errors: report.errors.length, queue: this.#queue.stats().depth }, 'upload drain ended');
        // Aborted without the daemon stopping: new files came while the drain only waited; start over.
      } while (stopped === 'aborted' && !signal.aborted && !this.#paused);
      if (stopped === 'empty' && !signal.aborted) {
        const { applyRetention } = await import('../upload/retention.js');
        const retention = await applyRetention({ records: new RetentionStore(this.#o.journal), policy: m.retentionPolicyFor(this.#runtime.settings), logger: this.#log, signal });
        if (retention.pruned.length > 0) this.#log.info({ pruned: retention.pruned.length, bytesFreed: retention.bytesFreed }, 'local copies removed by the retention policy');
      }
    } finally {
      lock.release();
    }
  }

  /** The upload lock, waiting (as long as it takes) for a CLI upload that holds it. Undefined when stopped. */
  async #lock(path: string, signal: AbortSignal): Promise<Lock | undefined> {
    const owner = { command: 'run (background uploads)' };
    try {
      return await acquireLock(path, { owner, wait: 0, signal });
    } catch (err) {
      if (!isShuttleError(err, 'LOCKED')) throw err;
      this.#waitingForLock = err.message;
      this.#log.info({ holder: err.context['holder'] }, 'another process is uploading; waiting for it to finish');
    }
    try {
      return await acquireLock(path, { owner, wait: Infinity, signal });
    } catch (err) {
      if (signal.aborted) return undefined;
      throw err;
    } finally {
      this.#waitingForLock = undefined;
    }
  }

  #add(r: DrainReport): void {
    this.#since.uploaded += r.uploaded;
    this.#since.alreadyPresent += r.alreadyPresent;
    this.#since.failed += r.failed;
    this.#since.deferred += r.deferred;
    this.#since.bytesSent += r.bytesSent;
  }
}
