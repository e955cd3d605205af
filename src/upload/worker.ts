import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { ShuttleError, errnoCode, isShuttleError } from '../errors.js';
import { readMarker } from '../io/local-destination.js';
import { Slots } from '../io/slots.js';
import type { Logger } from '../log.js';
import { acquireLock, destinationLockPath } from '../store/lock.js';
import type { LocalCopy, QueueRow, UploadQueue } from '../store/upload-queue.js';
import type { ObjectChecksum } from './checksum.js';
import { PROVIDERS, type ProviderName, type ProviderProfile } from './provider.js';
import type { RateLimiter } from './rate-limit.js';
import type { CloudHashes, UploadShape } from './content-hashes.js';
import { keyAlternative, keyPrecedes } from './keys.js';
import { DEFAULT_MAX_PART_SIZE, choosePartSize } from './multipart.js';
import { RemoteListing } from './remote-listing.js';
import type { RetryPolicy } from './retry.js';
import { S3Target } from './s3-target.js';
import type { UploadStateStore } from './state.js';
import { retryingTarget, type UploadTarget } from './target.js';
import { sendsInOneRequest, uploadFile } from './uploader.js';

/** How long a queued row waits after a failed attempt: doubling from `baseMs` up to `maxMs`, with jitter. */
export interface QueueBackoff {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_QUEUE_BACKOFF: Readonly<QueueBackoff> = Object.freeze({ baseMs: 2_000, maxMs: 15 * 60_000 });

/**
 * Retries of one request inside one attempt: few and short, because the queue's own backoff takes over
 * from there (an unreachable server should cost seconds per pass, not minutes).
 */
export const WORKER_REQUEST_RETRY: Readonly<Partial<RetryPolicy>> = Object.freeze({ maxAttempts: 4, baseDelayMs: 250, maxDelayMs: 4_000 });

export interface UploadWorkerOptions {
  queue: UploadQueue;
  /** Multipart progress; the journal-backed store makes uploads resume across restarts. */
  store: UploadStateStore;
  client?: S3Client;
  /** The target for a bucket; default an S3Target over `client`. */
  targetFor?: (bucket: string) => UploadTarget;
  provider: ProviderName | ProviderProfile;
  /** Requests in flight at once, shared out between files and their parts. */
  concurrency: number;
  partSize: number;
  /** An additional checksum for every object (see checksum.ts); the provider must take them. */
  checksum?: ObjectChecksum | undefined;
  rateLimit?: RateLimiter | undefined;
  requestRetry?: Partial<RetryPolicy>;
  backoff?: QueueBackoff;
  logger: Logger;
  /** Source of jitter in [0, 1). */
  random?: () => number;
}

export interface DrainOptions {
  signal?: AbortSignal | undefined;
  /** Epoch ms: uploads still running then are stopped (their multipart state resumes them later). */
  deadline?: number | undefined;
  /** Wait for rows whose backoff has not run out (until the deadline); otherwise stop once nothing is due. */
  waitForDeferred?: boolean;
  /** Stops claiming rows once this returns true (e.g. "this ingest's files are done"). */
  done?: () => boolean;
  /** Each row whose object was verified in the bucket (uploaded now, or already there). */
  onUploaded?: ((u: UploadedFile) => void) | undefined;
  /** Each failed attempt, as it happens: the report keeps only the latest errors. */
  onFailure?: ((f: UploadFailure) => void) | undefined;
}

export interface UploadedFile {
  fileId: number;
  bucket: string;
  key: string;
  bytes: number;
  outcome: 'uploaded' | 'already-present';
}

export interface UploadFailure {
  fileId: number;
  bucket: string;
  key: string;
  code: string;
  message: string;
  outcome: DrainReport['errors'][number]['outcome'];
  /** The object the server holds (or its part) did not match what was sent: the cloud's verification failed. */
  cloudMismatch: boolean;
}

export type DrainStop = 'empty' | 'idle' | 'done' | 'deadline' | 'aborted';

export interface DrainReport {
  /** Objects uploaded and verified by this drain. */
  uploaded: number;
  /** Rows whose object already held the content (nothing sent). */
  alreadyPresent: number;
  failed: number;
  /** Attempts that failed and were put back with backoff. */
  deferred: number;
  /** Rows moved to another key because theirs held different content. */
  rekeyed: number;
  /**
   * Rows queued before their SHA-256 was known that turned out to hold another row's content at the
   * key they would have shared (the same file from a camera's two cards): folded into that row, not sent.
   */
  shared: number;
  /** Damaged local copies restored from an intact one. */
  repaired: number;
  /** Damaged local copies that could not be restored (no longer counted as verified). */
  damaged: number;
  bytesSent: number;
  partsResumed: number;
  stopped: DrainStop;
  errors: Array<{ key: string; code: string; message: string; outcome: 'deferred' | 'failed' | 'damaged-copy' }>;
}

type Failure = 'local-damaged' | 'local-unavailable' | 'conflict' | 'permanent' | 'offline' | 'transient';

const CREDENTIAL_CODES = new Set(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', 'ExpiredToken', 'InvalidToken', 'RequestTimeTooSkewed']);
const PERMANENT_CODES = new Set(['USAGE', 'CONFIG_INVALID', 'NAME_INVALID', 'INTERNAL']);
/** A local copy that cannot be read for these reasons is lost or damaged, not merely out of reach. */
const LOST_ERRNOS = new Set(['ENOENT', 'EIO', 'EISDIR']);

/**
 * What a failed upload attempt means for its row. Local problems are about the copy read (another copy may
 * do); "offline" covers no answer, server errors and refused credentials, which hold for every row alike,
 * so the worker pauses the whole queue instead of trying each row in turn.
 */
export function classifyUploadFailure(error: unknown): Failure {
  if (!isShuttleError(error)) return 'transient';
  const ctx = error.context;
  const localPath = typeof ctx['path'] === 'string';
  if (error.code === 'UPLOAD_VERIFY' && localPath) return 'local-damaged';
  if (error.code === 'SOURCE_UNREADABLE' && localPath) {
    const errno = errnoCode(error.cause);
    return errno !== undefined && LOST_ERRNOS.has(errno) ? 'local-damaged' : 'local-unavailable';
  }
  if (error.code === 'UPLOAD_FAILED' && typeof ctx['expectedSha256'] === 'string') return 'conflict';
  // Retryable ones (a hash worker that stopped under the upload's read) say nothing about the row.
  if (PERMANENT_CODES.has(error.code)) return error.retryable ? 'transient' : 'permanent';
  if (error.code === 'UPLOAD_FAILED' || error.code === 'UPLOAD_VERIFY') {
    const status = typeof ctx['status'] === 'number' ? ctx['status'] : undefined;
    const s3Code = typeof ctx['s3Code'] === 'string' ? ctx['s3Code'] : undefined;
    if (status === undefined && ctx['op'] !== undefined) return 'offline';
    if (status !== undefined && (status >= 500 || status === 401 || status === 403)) return 'offline';
    if (s3Code !== undefined && CREDENTIAL_CODES.has(s3Code)) return 'offline';
  }
  return 'transient';
}

function note(error: unknown): { code: string; message: string } {
  if (isShuttleError(error)) return { code: error.code, message: error.message };
  return { code: 'INTERNAL', message: error instanceof Error ? error.message : String(error) };
}

function logError(error: unknown): unknown {
  return isShuttleError(error) ? error.toJSON() : String(error);
}

const MARKER_CACHE_MS = 10_000;
/**
 * How long a folder listing stands in for per-file HEADs. Keys this worker writes are tracked by the
 * listing itself; the age bound is for objects others write (a second box on the same bucket), and keeps
 * a drain that runs for days from growing its listings without end.
 */
export const LISTING_MAX_AGE_MS = 2 * 60_000;
/** A drain can run for days in the daemon: keep the latest errors only. */
const MAX_REPORTED_ERRORS = 100;
/**
 * Rows claimed beyond the send slots, per slot: each is read ahead (hashed) while the rows before it are
 * being sent, so that a slot that frees goes straight to the next row's first request. A row read ahead
 * holds only its digests, never its bytes.
 */
const ROWS_AHEAD_PER_SLOT = 1;
/**
 * Read aheads at once. Each hash has a single worker thread (src/io/hash-worker-client.ts), so reads
 * side by side only interleave there: one at a time gives the next row its digests soonest, and holds
 * one read's two blocks.
 */
const READ_AHEADS_AT_ONCE = 1;

/** What the rows of one drain take turns at: requests to the server, and reads ahead of the local copies. */
interface DrainLanes {
  sending: Slots;
  readAhead: Slots;
}

function noteError(report: DrainReport, entry: DrainReport['errors'][number]): void {
  report.errors.push(entry);
  if (report.errors.length > MAX_REPORTED_ERRORS) report.errors.shift();
}

/**
 * Drains the upload queue: claims due rows by priority, uploads each from a verified local copy with
 * uploadFile (which proves the object right before the row becomes `uploaded`), falls back to another
 * copy when one has rotted and then restores the rotted one from it, and puts rows back with backoff
 * when the server cannot be reached. One worker per journal at a time (the caller holds the upload lock).
 */
export class UploadWorker {
  readonly #o: UploadWorkerOptions;
  readonly #targets = new Map<string, UploadTarget>();
  /**
   * Each destination's marker id as last read, the read itself while it runs: rows claimed together that
   * ask at once share one read and go on in the order they asked, which is the queue's priority order
   * (two reads of their own could end in either order, and the later row take the lanes first).
   */
  readonly #markers = new Map<string, { id: Promise<string | undefined>; at: number }>();
  #listings = new Map<string, RemoteListing>();
  #pausedUntil = 0;
  /** Rows whose SHA-256 this worker is taking now, settled once it is recorded (or the attempt ends). */
  readonly #hashing = new Map<number, Promise<void>>();

  constructor(options: UploadWorkerOptions) {
    if (options.client === undefined && options.targetFor === undefined) throw new ShuttleError('USAGE', 'UploadWorker needs a client or targetFor');
    this.#o = options;
  }

  /** Queue-level delay before attempt `attempts + 1`: "equal jitter", so a retry never comes at once. */
  backoffMs(attempts: number): number {
    const { baseMs, maxMs } = this.#o.backoff ?? DEFAULT_QUEUE_BACKOFF;
    const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, Math.min(attempts, 30) - 1));
    return Math.round(ceiling / 2 + (this.#o.random ?? Math.random)() * (ceiling / 2));
  }

  get #profile(): ProviderProfile {
    return typeof this.#o.provider === 'string' ? PROVIDERS[this.#o.provider] : this.#o.provider;
  }

  #target(bucket: string): UploadTarget {
    let t = this.#targets.get(bucket);
    if (t === undefined) {
      t = this.#o.targetFor?.(bucket) ?? new S3Target(this.#o.client as S3Client, bucket);
      this.#targets.set(bucket, t);
    }
    return t;
  }

  async drain(options: DrainOptions = {}): Promise<DrainReport> {
    const report: DrainReport = {
      uploaded: 0,
      alreadyPresent: 0,
      failed: 0,
      deferred: 0,
      rekeyed: 0,
      shared: 0,
      repaired: 0,
      damaged: 0,
      bytesSent: 0,
      partsResumed: 0,
      stopped: 'empty',
      errors: [],
    };
    const { queue, logger } = this.#o;
    const concurrency = Math.max(1, this.#o.concurrency);
    const stop = new AbortController();
    const onAbort = (): void => stop.abort(options.signal?.reason);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (options.signal?.aborted) onAbort();
    const timer =
      options.deadline === undefined
        ? undefined
        : setTimeout(() => stop.abort(new ShuttleError('ABORTED', 'upload time limit reached')), Math.max(0, options.deadline - Date.now()));
    const running = new Map<number, Promise<void>>();
    const lanes: DrainLanes = { sending: new Slots(concurrency), readAhead: new Slots(READ_AHEADS_AT_ONCE) };
    const claimed = concurrency * (1 + ROWS_AHEAD_PER_SLOT);
    // Every drain looks at the server afresh.
    this.#listings = new Map();
    try {
      for (;;) {
        if (stop.signal.aborted) break;
        const finished = options.done?.() === true;
        const now = Date.now();
        if (!finished && now >= this.#pausedUntil) {
          while (running.size < claimed) {
            const row = queue.claimNext(now);
            if (row === undefined) break;
            // Parts per file: all slots for a file uploading alone, one each when many are due.
            const sharing = Math.min(concurrency, running.size + 1 + queue.counts().queued);
            const parts = Math.max(1, Math.floor(concurrency / Math.max(1, sharing)));
            const task = this.#process(row, parts, lanes, stop.signal, report, options).catch((error: unknown) => {
              logger.error({ err: logError(error), key: row.key }, 'upload worker error');
              queue.release(row.id);
            });
            running.set(row.id, task);
            void task.finally(() => running.delete(row.id));
          }
        }
        if (running.size > 0) {
          await Promise.race(running.values());
          continue;
        }
        if (finished) {
          report.stopped = 'done';
          break;
        }
        const next = queue.nextDueAt();
        if (next === undefined) {
          report.stopped = 'empty';
          break;
        }
        const wake = Math.max(next, this.#pausedUntil);
        if (options.waitForDeferred !== true || (options.deadline !== undefined && wake >= options.deadline)) {
          report.stopped = 'idle';
          break;
        }
        try {
          await sleep(Math.max(10, wake - Date.now()), undefined, { signal: stop.signal });
        } catch {
          break;
        }
      }
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      await Promise.allSettled(running.values());
    }
    if (stop.signal.aborted) report.stopped = options.signal?.aborted ? 'aborted' : 'deadline';
    return report;
  }

  #listing(bucket: string, signal: AbortSignal): RemoteListing {
    let listing = this.#listings.get(bucket);
    if (listing === undefined || Date.now() - listing.createdAt > LISTING_MAX_AGE_MS) {
      const target = retryingTarget(this.#target(bucket), this.#o.requestRetry ?? WORKER_REQUEST_RETRY);
      listing = new RemoteListing(target, { signal, logger: this.#o.logger });
      this.#listings.set(bucket, listing);
    }
    return listing;
  }

  async #markerMatches(copy: LocalCopy): Promise<boolean> {
    let cached = this.#markers.get(copy.root);
    const now = Date.now();
    if (cached === undefined || now - cached.at >= MARKER_CACHE_MS) {
      cached = {
        id: readMarker(copy.root).then(
          (m) => m?.id,
          () => undefined,
        ),
        at: now,
      };
      this.#markers.set(copy.root, cached);
    }
    const id = await cached.id;
    // No marker (a disk not mounted) is asked again next time: it may be mounted by then.
    if (id === undefined && this.#markers.get(copy.root) === cached) this.#markers.delete(copy.root);
    return id === copy.markerId;
  }

  async #process(row: QueueRow, partConcurrency: number, lanes: DrainLanes, signal: AbortSignal, report: DrainReport, options: DrainOptions): Promise<void> {
    const log = this.#o.logger.child({ bucket: row.bucket, key: row.key, queueId: row.id });
    // uploadFile names bucket and key itself.
    const uploadLog = this.#o.logger.child({ queueId: row.id });
    // Rows sharing this one's content wait for its SHA-256 (see #shareContent).
    let hashed: (() => void) | undefined;
    if (row.sha256 === null) {
      let resolve!: () => void;
      this.#hashing.set(row.id, new Promise<void>((r) => (resolve = r)));
      hashed = () => {
        this.#hashing.delete(row.id);
        resolve();
      };
    }
    try {
      await this.#attempt(row, partConcurrency, lanes, signal, report, options, log, uploadLog, () => hashed?.());
    } finally {
      hashed?.();
    }
  }

  async #attempt(
    row: QueueRow,
    partConcurrency: number,
    lanes: DrainLanes,
    signal: AbortSignal,
    report: DrainReport,
    options: DrainOptions,
    log: Logger,
    uploadLog: Logger,
    hashed: () => void,
  ): Promise<void> {
    const { queue } = this.#o;
    const { onUploaded, onFailure } = options;
    // Unknown until a copy is hashed below (ingest took only xxh128); known for the rest of the row's attempt.
    let sha256 = row.sha256;
    const candidates = queue.localCopies(row.fileId, row);
    const damaged: Array<{ copy: LocalCopy; error: unknown }> = [];
    let unavailable: unknown;
    for (const copy of candidates) {
      const path = join(copy.root, copy.destPath);
      if (!(await this.#markerMatches(copy))) {
        unavailable = new ShuttleError('DEST_MARKER_MISSING', `destination ${copy.root} is not mounted or is another disk; cannot read ${path}`, {
          context: { destination: copy.root, path },
        });
        continue;
      }
      try {
        let md5 = copy.md5;
        let readAhead: CloudHashes | undefined;
        if (sha256 === null) {
          readAhead = await lanes.readAhead.run(() => this.#hashCopy(row, path, md5 === undefined, signal, log), signal);
          sha256 = readAhead.sha256;
          md5 ??= readAhead.md5;
          hashed();
          if (await this.#shareContent(row, sha256, log)) {
            report.shared++;
            for (const d of damaged) await this.#restore(d.copy, path, row, sha256, signal, report, log, onFailure);
            return;
          }
        }
        const expected = { sha256, xxh128: row.xxh128 ?? undefined, md5 };
        const result = await lanes.sending.run(async () => {
          // An unreachable server paused the queue while this row waited its turn: it has not tried yet.
          if (Date.now() < this.#pausedUntil) return 'paused';
          try {
            return await uploadFile({
              target: this.#target(row.bucket),
              listing: this.#listing(row.bucket, signal),
              provider: this.#o.provider,
              bucket: row.bucket,
              key: row.key,
              path,
              size: row.size,
              expected,
              store: this.#o.store,
              signal,
              rateLimit: this.#o.rateLimit,
              partSize: this.#o.partSize,
              checksum: this.#o.checksum,
              concurrency: partConcurrency,
              retry: this.#o.requestRetry ?? WORKER_REQUEST_RETRY,
              readAhead,
              logger: uploadLog,
            });
          } catch (error) {
            if (signal.aborted || classifyUploadFailure(error) !== 'offline') throw error;
            // Before the slot passes on, so that the rows waiting in line see the pause.
            this.#settleFailure(row, 'offline', error, report, log, onFailure, isShuttleError(error, 'UPLOAD_VERIFY'));
            return 'settled';
          }
        }, signal);
        if (result === 'settled') return;
        if (result === 'paused') {
          queue.release(row.id);
          return;
        }
        queue.markUploaded(row.id, { copyId: copy.copyId, etag: result.etag });
        if (result.outcome === 'already-present') report.alreadyPresent++;
        else report.uploaded++;
        onUploaded?.({ fileId: row.fileId, bucket: row.bucket, key: row.key, bytes: row.size, outcome: result.outcome });
        report.bytesSent += result.bytesSent;
        report.partsResumed += result.partsResumed;
        for (const d of damaged) await this.#restore(d.copy, path, row, sha256, signal, report, log, onFailure);
        return;
      } catch (error) {
        if (signal.aborted) {
          queue.release(row.id);
          return;
        }
        const kind = classifyUploadFailure(error);
        if (kind === 'local-damaged') {
          log.error({ err: logError(error), path, copyId: copy.copyId }, 'local copy does not match the journal; trying another copy');
          damaged.push({ copy, error });
          continue;
        }
        if (kind === 'local-unavailable') {
          log.warn({ err: logError(error), path }, 'local copy cannot be read; trying another copy');
          unavailable = error;
          continue;
        }
        // Local mismatches were taken care of above: an UPLOAD_VERIFY here is about what the server holds.
        this.#settleFailure(row, kind, error, report, log, onFailure, isShuttleError(error, 'UPLOAD_VERIFY'));
        return;
      }
    }
    for (const d of damaged) this.#damaged(d.copy, d.error, row, report, log, onFailure);
    if (unavailable !== undefined) {
      // Some copy may come back (a drive plugged in again): wait for it rather than give up.
      this.#settleFailure(row, 'transient', unavailable, report, log, onFailure, false);
      return;
    }
    const error =
      damaged.length > 0
        ? new ShuttleError('UPLOAD_VERIFY', `every local copy of ${row.key} is damaged (${damaged.length}); not uploading it`, {
            context: { key: row.key, copies: damaged.map((d) => d.copy.copyId) },
          })
        : new ShuttleError('UPLOAD_FAILED', `no verified local copy of ${row.key} is left to upload from`, { context: { key: row.key, fileId: row.fileId } });
    this.#settleFailure(row, 'permanent', error, report, log, onFailure, false);
  }

  /**
   * Before the row's first request when its SHA-256 is unknown: hashes the copy at `path` (see
   * hashLocalCopy), which must match the journal's xxh128, and records the SHA-256 for the file, so the
   * upload, a resumed one and retention all go by the same value. The same read takes what the requests
   * will carry: the MD5 when one PUT will, each part's MD5 and SHA-256 when parts will (see uploadFile's readAhead).
   */
  async #hashCopy(row: QueueRow, path: string, needMd5: boolean, signal: AbortSignal, log: Logger): Promise<CloudHashes> {
    if (row.xxh128 === null) {
      throw new ShuttleError('INTERNAL', `upload queue row ${row.id} has neither a SHA-256 nor an xxh128`, { context: { id: row.id } });
    }
    // The parts' digests as uploadFile will cut them (a full-object CRC-64/NVME needs its own read there anyway).
    const single = sendsInOneRequest(row.size, { partSize: this.#o.partSize });
    const crc = this.#o.checksum === 'crc64nvme';
    const partSize = single || crc ? undefined : this.#partSizeFor(row.size);
    const shape: UploadShape = partSize !== undefined ? { kind: 'parts', partSize } : { kind: 'single', md5: needMd5 && single && !crc && !this.#profile.checksSignedPayload };
    // Loaded on first need: a queue whose rows all came with a SHA-256 never reads a copy ahead.
    const { hashLocalCopy } = await import('./content-hashes.js');
    const hashes = await hashLocalCopy(path, { size: row.size, xxh128: row.xxh128 }, shape, signal);
    this.#o.queue.recordContentHashes(row.id, { xxh128: row.xxh128, size: row.size, sha256: hashes.sha256, md5: hashes.md5 });
    log.info({ path, sha256: hashes.sha256 }, 'hashed the local copy for upload');
    return hashes;
  }

  /** uploadFile's part size for a new upload of `size` bytes; undefined when it would refuse the file. */
  #partSizeFor(size: number): number | undefined {
    try {
      return choosePartSize(size, { preferredPartSize: this.#o.partSize, maxPartSize: DEFAULT_MAX_PART_SIZE });
    } catch {
      return undefined;
    }
  }

  /**
   * After the row's SHA-256 became known, before its first request: a row at a key the queue tried before
   * this row's (see keyPrecedes) holding the same SHA-256 and size takes this row's place, as it would have
   * at enqueue had the SHA-256 been known then. A row there whose SHA-256 is still unknown but whose size
   * and xxh128 are this row's, and which this worker is hashing now, is waited for: xxh128 alone only
   * says that the SHA-256 is worth waiting for, never that the content is the same.
   */
  async #shareContent(row: QueueRow, sha256: string, log: Logger): Promise<boolean> {
    const { queue } = this.#o;
    const peers = (): QueueRow[] => queue.contentPeers(row.id).filter((p) => keyPrecedes(p.key, row.key));
    let found = peers();
    const hashing = found.flatMap((p) => (p.sha256 === null ? [this.#hashing.get(p.id)] : [])).filter((p) => p !== undefined);
    if (hashing.length > 0) {
      await Promise.all(hashing);
      found = peers();
    }
    const into = found.find((p) => p.sha256 === sha256);
    if (into === undefined || !queue.shareInto(row.id, into.id)) return false;
    log.info({ sharedWith: into.key, sharedRow: into.id, state: into.state }, 'the same content is queued at an earlier key; sharing its object');
    return true;
  }

  #settleFailure(row: QueueRow, kind: Failure, error: unknown, report: DrainReport, log: Logger, onFailure: DrainOptions['onFailure'], cloudMismatch: boolean): void {
    const { queue } = this.#o;
    const n = note(error);
    if (kind === 'conflict') {
      const key = queue.rekey(row.id, keyAlternative);
      report.rekeyed++;
      log.warn({ err: logError(error), newKey: key }, 'the key holds other content; queued under another key');
      return;
    }
    if (kind === 'permanent') {
      queue.markFailed(row.id, n);
      report.failed++;
      noteError(report, { key: row.key, ...n, outcome: 'failed' });
      onFailure?.({ fileId: row.fileId, bucket: row.bucket, key: row.key, ...n, outcome: 'failed', cloudMismatch });
      log.error({ err: logError(error) }, 'upload failed');
      return;
    }
    const delay = this.backoffMs(row.attempts + 1);
    const due = Date.now() + delay;
    queue.defer(row.id, n, due);
    report.deferred++;
    noteError(report, { key: row.key, ...n, outcome: 'deferred' });
    onFailure?.({ fileId: row.fileId, bucket: row.bucket, key: row.key, ...n, outcome: 'deferred', cloudMismatch });
    if (kind === 'offline') this.#pausedUntil = Math.max(this.#pausedUntil, due);
    log.warn({ err: logError(error), retryInMs: delay, attempts: row.attempts + 1, pausesQueue: kind === 'offline' }, 'upload deferred');
  }

  #damaged(copy: LocalCopy, error: unknown, row: QueueRow, report: DrainReport, log: Logger, onFailure: DrainOptions['onFailure']): void {
    const message = `content no longer matches the journal (found while uploading ${row.key}): ${note(error).message}`;
    this.#o.queue.markCopyDamaged(copy.copyId, message);
    report.damaged++;
    noteError(report, { key: row.key, code: note(error).code, message, outcome: 'damaged-copy' });
    onFailure?.({ fileId: row.fileId, bucket: row.bucket, key: row.key, code: note(error).code, message, outcome: 'damaged-copy', cloudMismatch: false });
    log.error({ copyId: copy.copyId, path: join(copy.root, copy.destPath) }, 'damaged local copy is no longer counted as verified');
  }

  /** Restores a damaged copy from the one just uploaded, under its destination's lock; else gives it up. */
  async #restore(
    copy: LocalCopy,
    goodPath: string,
    row: QueueRow,
    sha256: string,
    signal: AbortSignal,
    report: DrainReport,
    log: Logger,
    onFailure: DrainOptions['onFailure'],
  ): Promise<void> {
    const path = join(copy.root, copy.destPath);
    let lock;
    try {
      lock = await acquireLock(destinationLockPath(copy.root), { owner: { command: `upload: restore ${copy.destPath}` }, wait: 0, signal });
    } catch (error) {
      this.#damaged(copy, error, row, report, log, onFailure);
      return;
    }
    try {
      // Loaded on first need: repairs are rare, and their hashing and read-back modules cost every upload run start-up time.
      const { restoreCopy } = await import('./repair.js');
      await restoreCopy(goodPath, path, { size: row.size, sha256 }, signal);
      report.repaired++;
      log.warn({ path, from: goodPath }, 'restored a damaged local copy from an intact one');
    } catch (error) {
      this.#damaged(copy, error, row, report, log, onFailure);
    } finally {
      lock.release();
    }
  }
}
