import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { createMD5, createXXHash128, type IHasher } from 'hash-wasm';
import { Xxh64 } from '@node-rs/xxhash';

/**
 * The hashing thread behind WorkerHasher (hash-worker-client.ts). Self-contained on purpose: it is started
 * from the built .js and, under the tests, from this .ts file directly, where Node strips types but does
 * not map './x.js' imports to .ts sources; so it imports only node: modules and npm packages, and repeats
 * the few lines of hashing.ts it needs. The algorithms and the hex forms must stay exactly those of
 * MultiHasher (hashing.ts): a test compares the two.
 *
 * Messages are handled strictly in arrival order (one promise chain), so a job's updates reach its hash
 * states in the order they were posted, and an `open` that still awaits a wasm instance holds back the
 * updates behind it.
 */

type Algorithm = 'sha256' | 'xxh128' | 'xxh64' | 'md5';

export type HashWorkerRequest =
  | { op: 'open'; job: number; algorithms: Algorithm[] }
  | { op: 'update'; job: number; buffer: SharedArrayBuffer; offset: number; length: number }
  | { op: 'digest'; job: number }
  | { op: 'drop'; job: number };

export type HashWorkerReply =
  | { op: 'done'; job: number }
  | { op: 'digest'; job: number; hashes: Partial<Record<Algorithm, string>> }
  | { op: 'failed'; job: number; message: string };

interface State {
  update(chunk: Uint8Array): void;
  digest(): string;
}

function wasmState(h: IHasher): State {
  h.init();
  return { update: (c) => void h.update(c), digest: () => h.digest('hex') };
}

async function makeState(alg: Algorithm): Promise<State> {
  switch (alg) {
    case 'sha256': {
      const h = createHash('sha256');
      return { update: (c) => void h.update(c), digest: () => h.digest('hex') };
    }
    case 'xxh128':
      return wasmState(await createXXHash128());
    case 'md5':
      return wasmState(await createMD5());
    case 'xxh64': {
      const h = new Xxh64(0n);
      return { update: (c) => void h.update(c), digest: () => h.digest().toString(16).padStart(16, '0') };
    }
    default:
      throw new Error(`unknown hash algorithm ${String(alg)}`);
  }
}

const jobs = new Map<number, Array<[Algorithm, State]>>();
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
    const unique = [...new Set(msg.algorithms)];
    jobs.set(msg.job, await Promise.all(unique.map(async (a) => [a, await makeState(a)] as [Algorithm, State])));
    return { op: 'done', job: msg.job };
  }
  const states = jobs.get(msg.job);
  if (!states) throw new Error(`hash job ${msg.job} is not open`);
  if (msg.op === 'update') {
    const view = new Uint8Array(msg.buffer, msg.offset, msg.length);
    for (const [, s] of states) s.update(view);
    return { op: 'done', job: msg.job };
  }
  jobs.delete(msg.job);
  const hashes: Partial<Record<Algorithm, string>> = {};
  for (const [a, s] of states) hashes[a] = s.digest();
  return { op: 'digest', job: msg.job, hashes };
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
}
