import { parentPort } from 'node:worker_threads';
// The one relative import spelled with .ts: under the tests this worker runs from its source, where Node
// strips types but does not map './x.js' to './x.ts'; the build (esbuild) resolves either. hashing.ts
// imports only packages, so it loads the same way.
import { MultiHasher, prepareXxh128, type HashAlgorithm, type HashSet } from './hashing.ts';

/**
 * The hashing thread behind WorkerHasher (hash-worker-client.ts): one MultiHasher (hashing.ts) per job,
 * so its digests are exactly those of hashing in-thread.
 *
 * Messages are handled strictly in arrival order (one promise chain), so a job's updates reach its hash
 * states in the order they were posted, and an `open` that still awaits a wasm instance holds back the
 * updates behind it.
 */

export type HashWorkerRequest =
  | { op: 'open'; job: number; algorithms: HashAlgorithm[] }
  | { op: 'update'; job: number; buffer: SharedArrayBuffer; offset: number; length: number }
  | { op: 'digest'; job: number }
  | { op: 'drop'; job: number };

export type HashWorkerReply = { op: 'done'; job: number } | { op: 'digest'; job: number; hashes: HashSet } | { op: 'failed'; job: number; message: string };

const jobs = new Map<number, MultiHasher>();
/** Jobs that failed here: their later messages are answered with the failure, never with a hash. */
const failed = new Map<number, string>();

async function handle(msg: HashWorkerRequest): Promise<HashWorkerReply | undefined> {
  const gone = failed.get(msg.job);
  if (msg.op === 'drop') {
    jobs.delete(msg.job);
    failed.delete(msg.job);
    return undefined;
  }
  if (gone !== undefined) {
    if (msg.op === 'digest') failed.delete(msg.job);
    return { op: 'failed', job: msg.job, message: gone };
  }
  if (msg.op === 'open') {
    jobs.set(msg.job, await MultiHasher.create(msg.algorithms));
    return { op: 'done', job: msg.job };
  }
  const hasher = jobs.get(msg.job);
  if (!hasher) throw new Error(`hash job ${msg.job} is not open`);
  if (msg.op === 'update') {
    hasher.update(new Uint8Array(msg.buffer, msg.offset, msg.length));
    return { op: 'done', job: msg.job };
  }
  jobs.delete(msg.job);
  return { op: 'digest', job: msg.job, hashes: hasher.digest() };
}

const port = parentPort;
if (port) {
  let chain = Promise.resolve();
  port.on('message', (msg: HashWorkerRequest) => {
    chain = chain.then(async () => {
      let reply: HashWorkerReply | undefined;
      try {
        reply = await handle(msg);
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        jobs.delete(msg.job);
        failed.set(msg.job, message);
        reply = { op: 'failed', job: msg.job, message };
      }
      if (reply) port.postMessage(reply);
    });
  });
  // The worker boots while the command starts: the first file's xxh128 should not wait for hash-wasm to
  // load. A failure here comes back with the first job that needs it.
  prepareXxh128().catch(() => undefined);
}
