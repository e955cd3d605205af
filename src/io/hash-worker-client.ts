import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ShuttleError } from '../errors.js';
import { MultiHasher, type HashAlgorithm, type HashSet } from './hashing.js';
import type { HashWorkerReply, HashWorkerRequest } from './hash-worker.js';

/**
 * Hashing off the main thread. Node runs JavaScript on one thread, and on the 2-core boxes (more so in
 * an emulated CPU without SHA instructions) SHA-256 and xxh128 of every byte cost the main thread as much
 * as moving the bytes does. One long-lived worker thread keeps the hash states of every open job; the
 * main thread posts it views of shared memory (the staging blocks, see takeAlignedBlock's `shared`), so
 * no byte is copied between threads. The worker handles messages in order, so each job's updates are
 * hashed in the order posted; the caller may reuse a block once its update() has resolved.
 *
 * Each kind of hash has a worker of its own (a lane), so that the slow cryptographic hashes never hold up
 * the verification hash: xxh128 (and xxh64) in one, SHA-256 in a second, MD5 (the upload's, see
 * src/upload/content-hashes.ts; manifests may record it too) in a third. Where the CPU lacks SHA instructions
 * SHA-256 is several times slower per byte than xxh128; in one worker, a read-back's xxh128 waited behind
 * the SHA-256 of the next file's source read, and each block waited for both hashes one after the other.
 *
 * Workers start on first use and are unref'd whenever nothing is pending, so a CLI process still
 * exits by itself. A worker that dies fails every pending and later call of the jobs it held with a
 * ShuttleError (INTERNAL): a job never yields a digest unless every one of its updates was hashed.
 */

/** The worker script: the .js beside this module when built, the .ts source when run from src/ (tests). */
function workerUrl(): URL {
  const js = new URL('./hash-worker.js', import.meta.url);
  return existsSync(fileURLToPath(js)) ? js : new URL('./hash-worker.ts', import.meta.url);
}

interface Pending {
  resolve(reply: HashWorkerReply): void;
  reject(err: Error): void;
}

/** One started worker; replaced by a fresh one after it dies. */
class HashThread {
  readonly worker: Worker;
  readonly lane: number;
  /** Per job, the replies still expected, in the order the requests were posted. */
  readonly #pending = new Map<number, Pending[]>();
  #outstanding = 0;
  dead: ShuttleError | undefined;

  constructor(lane: number) {
    this.lane = lane;
    // The worker inherits Node's flags (so --cpu-prof profiles it too), except one it refuses: --input-type.
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'));
    // It allocates little but messages: a small young generation saves ~6 MB of RSS (measured).
    this.worker = new Worker(workerUrl(), { execArgv, resourceLimits: { maxYoungGenerationSizeMb: 2 } });
    this.worker.on('message', (reply: HashWorkerReply) => this.#settle(reply));
    this.worker.on('error', (err) => this.#die(err));
    this.worker.on('exit', (code) => this.#die(new Error(`hash worker exited with code ${code}`)));
    // After the listeners: adding a 'message' listener refs the worker's port again.
    this.worker.unref();
  }

  request(msg: HashWorkerRequest): Promise<HashWorkerReply> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise<HashWorkerReply>((resolve, reject) => {
      let list = this.#pending.get(msg.job);
      if (!list) this.#pending.set(msg.job, (list = []));
      list.push({ resolve, reject });
      // Held by the event loop only while a reply is awaited: an idle worker must not keep the process alive.
      if (this.#outstanding++ === 0) this.worker.ref();
      this.worker.postMessage(msg);
    });
  }

  post(msg: HashWorkerRequest): void {
    if (!this.dead) this.worker.postMessage(msg);
  }

  #settle(reply: HashWorkerReply): void {
    const list = this.#pending.get(reply.job);
    const waiter = list?.shift();
    if (list?.length === 0) this.#pending.delete(reply.job);
    if (!waiter) return;
    if (--this.#outstanding === 0) this.worker.unref();
    if (reply.op === 'failed') {
      waiter.reject(new ShuttleError('INTERNAL', `hashing failed in the hash worker: ${reply.message}`, { context: { job: reply.job } }));
    } else {
      waiter.resolve(reply);
    }
  }

  #die(cause: unknown): void {
    if (this.dead) return;
    // Marked so that a caller can tell a lost worker (a fresh one takes the next job) from a bad input.
    this.dead = new ShuttleError('INTERNAL', `the hash worker stopped: ${cause instanceof Error ? cause.message : String(cause)}`, { cause, context: { hashWorker: 'stopped' } });
    if (threads[this.lane] === this) threads[this.lane] = undefined;
    const waiting = [...this.#pending.values()].flat();
    this.#pending.clear();
    this.#outstanding = 0;
    for (const w of waiting) w.reject(this.dead);
  }
}

/** The lane (worker) that hashes each algorithm; see the module comment. */
const LANE_OF: Record<HashAlgorithm, number> = { xxh128: 0, xxh64: 0, md5: 1, sha256: 2 };
const threads: Array<HashThread | undefined> = [undefined, undefined, undefined];
let nextJob = 1;

function currentThread(lane: number): HashThread {
  return (threads[lane] ??= new HashThread(lane));
}

/** The algorithms of a job by the lane that hashes them. */
function lanes(algorithms: readonly HashAlgorithm[]): Array<[number, HashAlgorithm[]]> {
  const byLane = new Map<number, HashAlgorithm[]>();
  for (const a of new Set(algorithms)) {
    const lane = LANE_OF[a];
    byLane.set(lane, [...(byLane.get(lane) ?? []), a]);
  }
  return [...byLane].sort(([a], [b]) => a - b);
}

/**
 * Starts the workers of `algorithms` (every ingest needs xxh128's) now rather than at the first large
 * file: booting a thread costs a second or more on a slow CPU, and an ingest can pay it while it lists
 * the source. An idle worker keeps no process alive.
 */
export function startHashWorker(algorithms: readonly HashAlgorithm[] = ['xxh128']): void {
  for (const [lane] of lanes(algorithms)) currentThread(lane);
}

/**
 * Hashes one stream of bytes with several algorithms in the hash worker; the digests are bit-identical to
 * MultiHasher's. Bytes must live in a SharedArrayBuffer (see takeAlignedBlock `shared`).
 */
export class WorkerHasher {
  /** One job per lane the algorithms need (see lanes). */
  readonly #jobs: Array<{ thread: HashThread; job: number }>;
  #bytes = 0;
  #closed = false;
  /** The first failure of this job: it sticks, so no later call can return a hash. */
  #error: Error | undefined;

  private constructor(algorithms: readonly HashAlgorithm[]) {
    this.#jobs = lanes(algorithms).map(([lane, algs]) => {
      const thread = currentThread(lane);
      const job = nextJob++;
      // Not awaited by create(): the worker holds updates back until the open is done. Its failure is seen by the next call.
      this.#track(thread.request({ op: 'open', job, algorithms: algs })).catch(() => {});
      return { thread, job };
    });
  }

  static create(algorithms: readonly HashAlgorithm[]): WorkerHasher {
    return new WorkerHasher(algorithms);
  }

  /**
   * Hashes `data` (a view of a SharedArrayBuffer) after every earlier update of this job. Resolves once
   * every worker is done with it: until then the caller must not change those bytes.
   */
  update(data: Uint8Array): Promise<void> {
    if (this.#closed) return Promise.reject(new ShuttleError('INTERNAL', 'update after digest or dispose of a hash job'));
    if (this.#error) return Promise.reject(this.#error);
    if (!(data.buffer instanceof SharedArrayBuffer)) {
      return Promise.reject(new ShuttleError('INTERNAL', 'WorkerHasher.update needs bytes in shared memory', { context: { length: data.byteLength } }));
    }
    this.#bytes += data.byteLength;
    if (data.byteLength === 0) return Promise.resolve();
    const buffer = data.buffer;
    return Promise.all(this.#jobs.map(({ thread, job }) => this.#track(thread.request({ op: 'update', job, buffer, offset: data.byteOffset, length: data.byteLength })))).then(
      () => undefined,
    );
  }

  /** Bytes passed to update() so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The hashes of all bytes updated, once each update has been hashed; ends the job. */
  async digest(): Promise<HashSet> {
    if (this.#closed) throw new ShuttleError('INTERNAL', 'digest of a finished hash job');
    if (this.#error) throw this.#error;
    this.#closed = true;
    const replies = await Promise.all(this.#jobs.map(({ thread, job }) => this.#track(thread.request({ op: 'digest', job }))));
    const hashes: HashSet = {};
    for (const reply of replies) {
      if (reply.op !== 'digest') throw new ShuttleError('INTERNAL', `hash worker answered a digest with ${reply.op}`);
      Object.assign(hashes, reply.hashes);
    }
    return hashes;
  }

  /** Ends the job without a digest (error paths); the workers forget its state. Never throws. */
  dispose(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const { thread, job } of this.#jobs) thread.post({ op: 'drop', job });
  }

  #track<T>(p: Promise<T>): Promise<T> {
    return p.catch((err: unknown) => {
      this.#error ??= err instanceof Error ? err : new Error(String(err));
      throw this.#error;
    });
  }
}

/**
 * Below this many bytes in its first update, an input is hashed on this thread: the worker's round trips
 * (a job's open, update and digest) cost more than hashing a sidecar or a thumbnail does.
 */
export const IN_THREAD_BELOW = 256 * 1024;

/**
 * Hashes in the worker or, for small inputs, on this thread; the choice is made at the first update (or
 * digest). Callers update in whole blocks until the last one, so a first update shorter than
 * IN_THREAD_BELOW means the whole input is that small. Either way the digests are MultiHasher's.
 */
export class IngestHasher {
  readonly #algorithms: readonly HashAlgorithm[];
  readonly #threshold: number;
  #chosen: Promise<MultiHasher | WorkerHasher> | undefined;
  #bytes = 0;

  constructor(algorithms: readonly HashAlgorithm[], threshold = IN_THREAD_BELOW) {
    this.#algorithms = algorithms;
    this.#threshold = threshold;
  }

  /** As WorkerHasher.update: resolves once `data` is hashed and may be reused. Updates may overlap; they are hashed in call order. */
  async update(data: Uint8Array): Promise<void> {
    this.#bytes += data.byteLength;
    // Every update awaits the same choice, and continuations run in the order they were registered.
    const h = await (this.#chosen ??= data.byteLength >= this.#threshold ? Promise.resolve(WorkerHasher.create(this.#algorithms)) : MultiHasher.create(this.#algorithms));
    await h.update(data);
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** The hashes of every byte updated; each pending update is hashed first. */
  async digest(): Promise<HashSet> {
    const h = await (this.#chosen ??= MultiHasher.create(this.#algorithms));
    return h.digest();
  }

  /** Frees the worker's state for this input if it had any (error paths). Never throws. */
  dispose(): void {
    void this.#chosen?.then(
      (h) => (h instanceof WorkerHasher ? h.dispose() : undefined),
      () => {},
    );
  }
}

/** Test hook: the worker hashing `algorithm` if one is running, to terminate it and watch the jobs fail. */
export function hashWorkerForTests(algorithm: HashAlgorithm = 'xxh128'): Worker | undefined {
  return threads[LANE_OF[algorithm]]?.worker;
}
