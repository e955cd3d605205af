import { createHash } from 'node:crypto';
import type { IHasher } from 'hash-wasm';

/**
 * Hash algorithms Shuttle records. Names follow ASC MHL v2.0 (`xxh64`, `xxh128`, `md5`) plus `sha256`,
 * which MHL lacks and which lives in the journal and goes to the cloud.
 * Values are lowercase hex; xxh64/xxh128 are the canonical (big-endian) hex forms `xxhsum` prints.
 */
export type HashAlgorithm = 'sha256' | 'xxh128' | 'xxh64' | 'md5';
export type HashSet = Partial<Record<HashAlgorithm, string>>;

/** One running hash: fed chunk by chunk, read once as hex. */
export interface Updater {
  update(chunk: Uint8Array): void;
  digest(): string;
}

/**
 * Idle xxh128 hashers. Creating one instantiates a WebAssembly module, which cost more than hashing a
 * small file (0.17 ms each here, one per file); a digested hasher is reset and kept for the next file
 * instead. Bounded: more than this at once come and go.
 */
const idleXxh128: IHasher[] = [];
const MAX_IDLE_WASM = 8;

/**
 * Test hook (SHUTTLE_TEST_FAULT=xxh128-collide): every xxh128 is one value, so files of one size collide
 * as crafted content could. Off in the release build, like the other injected faults.
 */
const COLLIDING_XXH128 =
  (typeof SHUTTLE_TEST_HOOKS === 'undefined' || SHUTTLE_TEST_HOOKS) && (process.env['SHUTTLE_TEST_FAULT'] ?? '').split(',').some((f) => f.trim() === 'xxh128-collide');

/**
 * hash-wasm, loaded with the first xxh128 on this thread: an ingest hashes in its hash workers, and its
 * start-up does not wait for the module. It is CommonJS: imported at run time, its exports are the
 * default export (in the bundle and in Node alike).
 */
async function loadHashWasm(): Promise<typeof import('hash-wasm')> {
  const m = (await import('hash-wasm')) as typeof import('hash-wasm') & { default?: typeof import('hash-wasm') };
  return m.default ?? m;
}

/** Loads hash-wasm and readies one idle xxh128 state ahead of the first file that needs it. */
export async function prepareXxh128(): Promise<void> {
  const h = await (await loadHashWasm()).createXXHash128();
  if (idleXxh128.length < MAX_IDLE_WASM) idleXxh128.push(h);
}

async function xxh128Updater(): Promise<Updater> {
  if (COLLIDING_XXH128) return { update: () => {}, digest: () => '0'.repeat(32) };
  const h = idleXxh128.pop() ?? (await (await loadHashWasm()).createXXHash128());
  h.init();
  let done = false;
  return {
    update: (c) => {
      // After digest the hasher may already be hashing another file.
      if (done) throw new Error('xxh128 updated after its digest');
      h.update(c);
    },
    digest: () => {
      if (done) throw new Error('xxh128 digest taken twice');
      done = true;
      const hex = h.digest('hex');
      if (idleXxh128.length < MAX_IDLE_WASM) idleXxh128.push(h);
      return hex;
    },
  };
}

function opensslUpdater(alg: 'sha256' | 'md5'): Updater {
  const h = createHash(alg);
  return { update: (c) => void h.update(c), digest: () => h.digest('hex') };
}

/** A fresh hash state for `alg` (also what the hash worker runs, see hash-worker.ts). */
export async function makeUpdater(alg: HashAlgorithm): Promise<Updater> {
  switch (alg) {
    // OpenSSL: SHA-256 with the CPU's SHA instructions where it has them, and MD5 faster than hash-wasm's
    // (391 ms against 556 ms for 300 MB on the development host).
    case 'sha256':
    case 'md5':
      return opensslUpdater(alg);
    case 'xxh128':
      return xxh128Updater();
    case 'xxh64': {
      // A native addon that only a manifest configured for xxh64 needs: loading it costs every start-up
      // a dlopen and its loader's probing for the right binary (some 50 file lookups).
      const { Xxh64 } = await import('@node-rs/xxhash');
      const h = new Xxh64(0n);
      return { update: (c) => void h.update(c), digest: () => h.digest().toString(16).padStart(16, '0') };
    }
  }
}

/** Feeds every chunk of one read to several hash algorithms at once. */
export class MultiHasher {
  #updaters: Array<[HashAlgorithm, Updater]>;
  #bytes = 0;

  private constructor(updaters: Array<[HashAlgorithm, Updater]>) {
    this.#updaters = updaters;
  }

  static async create(algorithms: readonly HashAlgorithm[]): Promise<MultiHasher> {
    const unique = [...new Set(algorithms)];
    return new MultiHasher(await Promise.all(unique.map(async (a) => [a, await makeUpdater(a)] as [HashAlgorithm, Updater])));
  }

  update(chunk: Uint8Array): void {
    this.#bytes += chunk.byteLength;
    for (const [, u] of this.#updaters) u.update(chunk);
  }

  get bytes(): number {
    return this.#bytes;
  }

  digest(): HashSet {
    const out: HashSet = {};
    for (const [a, u] of this.#updaters) out[a] = u.digest();
    return out;
  }
}
