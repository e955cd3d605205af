import { expect, onTestFinished, test } from 'vitest';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MultiHasher, type HashAlgorithm } from '../src/io/hashing.js';
import { IN_THREAD_BELOW, IngestHasher, WorkerHasher, hashWorkerForTests } from '../src/io/hash-worker-client.js';
import { giveBackAlignedBlock, takeAlignedBlock } from '../src/io/direct.js';
import { createTempTarget, discardTemp, fanOut, STAGE_BLOCK } from '../src/ingest/copy.js';
import { readBack } from '../src/io/readback.js';
import { pauseWorker } from './support/pause-worker.js';

const ALL: HashAlgorithm[] = ['sha256', 'xxh128', 'xxh64', 'md5'];

/** Copies `bytes` into shared memory, as fanOut's staging blocks hold them. */
function shared(bytes: Uint8Array): Uint8Array {
  const view = new Uint8Array(new SharedArrayBuffer(Math.max(1, bytes.byteLength)), 0, bytes.byteLength);
  view.set(bytes);
  return view;
}

async function inThread(data: Uint8Array, algorithms: HashAlgorithm[]) {
  const h = await MultiHasher.create(algorithms);
  h.update(data);
  return h.digest();
}

/** Splits `data` at the given cut points (any order, duplicates allowed: empty pieces). */
function pieces(data: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [0, ...cuts.map((c) => c % (data.byteLength + 1)).sort((a, b) => a - b), data.byteLength];
  return at.slice(1).map((end, i) => data.subarray(at[i]!, end));
}

test('worker hashes equal in-thread hashes for any data split at any boundaries', async () => {
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 70_000, size: 'max' }), fc.array(fc.nat(), { maxLength: 8 }), async (data, cuts) => {
      const w = WorkerHasher.create(ALL);
      // Posted all at once, as fanOut does: the worker must keep them in order.
      await Promise.all(pieces(data, cuts).map((p) => w.update(shared(p))));
      expect(w.bytes).toBe(data.byteLength);
      expect(await w.digest()).toEqual(await inThread(data, ALL));
    }),
    { numRuns: 60 },
  );
});

test('empty input gives the hashes of nothing', async () => {
  const w = WorkerHasher.create(ALL);
  expect(await w.digest()).toEqual(await inThread(new Uint8Array(0), ALL));
  expect(w.bytes).toBe(0);
});

test('fanOut with a worker hasher gives the in-thread hashes for sizes off the block grid', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'shuttle-hw-'));
  try {
    for (const size of [0, 1, STAGE_BLOCK - 1, STAGE_BLOCK, 2 * STAGE_BLOCK + 4097]) {
      const data = new Uint8Array(size);
      for (let i = 0; i < size; i++) data[i] = (i * 2654435761) >>> 24;
      async function* chunks(): AsyncIterable<Buffer> {
        // Chunks of an odd size, so blocks and chunks never line up.
        for (let off = 0; off < size; off += 300_007) yield Buffer.from(data.subarray(off, off + 300_007));
      }
      const target = await createTempTarget(join(dir, `f${size}`));
      const w = WorkerHasher.create(['sha256', 'xxh128']);
      await fanOut(chunks(), [], [target], w, new AbortController().signal);
      expect(await w.digest()).toEqual(await inThread(data, ['sha256', 'xxh128']));
      expect(target.written).toBe(size);
      await target.direct?.close();
      await target.handle.close();
      const back = await readBack(target.tempPath, ['xxh128']);
      expect(back.size).toBe(size);
      expect(back.hashes.xxh128).toBe((await inThread(data, ['xxh128'])).xxh128);
      await discardTemp(target);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('several jobs hashed at once do not mix', async () => {
  const inputs = Array.from({ length: 6 }, (_, j) => Buffer.alloc(200_000 + j * 999, j + 1));
  const jobs = inputs.map(() => WorkerHasher.create(['sha256', 'xxh128']));
  // Interleaved updates of every job, posted before any is answered.
  const posted: Array<Promise<void>> = [];
  for (let off = 0; off < 210_000; off += 7_000) {
    inputs.forEach((input, j) => {
      if (off < input.length) posted.push(jobs[j]!.update(shared(input.subarray(off, off + 7_000))));
    });
  }
  await Promise.all(posted);
  const got = await Promise.all(jobs.map((j) => j.digest()));
  const want = await Promise.all(inputs.map((i) => inThread(i, ['sha256', 'xxh128'])));
  expect(got).toEqual(want);
});

test('a hash job reads the shared block in place, so a reused aligned block is hashed as it was at update', async () => {
  const block = takeAlignedBlock(8192, { shared: true });
  try {
    expect(block.buffer).toBeInstanceOf(SharedArrayBuffer);
    const w = WorkerHasher.create(['xxh128']);
    block.fill(1);
    await w.update(block);
    block.fill(2);
    await w.update(block);
    const want = await inThread(Buffer.concat([Buffer.alloc(8192, 1), Buffer.alloc(8192, 2)]), ['xxh128']);
    expect(await w.digest()).toEqual(want);
  } finally {
    giveBackAlignedBlock(block);
  }
});

test('bytes outside shared memory are refused rather than copied', async () => {
  const w = WorkerHasher.create(['sha256']);
  await expect(w.update(Buffer.from('private'))).rejects.toMatchObject({ code: 'INTERNAL' });
  w.dispose();
});

test('a killed worker fails its jobs with INTERNAL and never yields a hash; the next job gets a fresh worker', async () => {
  const w = WorkerHasher.create(['sha256', 'xxh128']);
  await w.update(shared(Buffer.alloc(1000, 5)));
  const worker = hashWorkerForTests();
  expect(worker).toBeDefined();
  // An update in flight when the worker dies (64 MiB: far from hashed when terminate() is called), and a digest asked for after.
  const inFlight = w.update(new Uint8Array(new SharedArrayBuffer(64 * 1024 * 1024)));
  inFlight.catch(() => {});
  await worker!.terminate();
  await expect(inFlight).rejects.toMatchObject({ code: 'INTERNAL' });
  await expect(w.digest()).rejects.toMatchObject({ code: 'INTERNAL' });

  const again = WorkerHasher.create(['xxh128']);
  expect(hashWorkerForTests()).not.toBe(worker);
  await again.update(shared(Buffer.from('abc')));
  expect(await again.digest()).toEqual(await inThread(Buffer.from('abc'), ['xxh128']));
});

test('md5 is hashed by a worker of its own beside the others, and the job fails if either dies', async () => {
  const data = Buffer.alloc(3 * 1024 * 1024 + 7, 9);
  const w = WorkerHasher.create(['sha256', 'md5', 'xxh128']);
  await w.update(shared(data));
  const [first, second] = [hashWorkerForTests('xxh128'), hashWorkerForTests('md5')];
  expect(first).toBeDefined();
  expect(second).toBeDefined();
  expect(second).not.toBe(first);
  expect(await w.digest()).toEqual(await inThread(data, ['sha256', 'md5', 'xxh128']));

  const doomed = WorkerHasher.create(['sha256', 'md5']);
  await doomed.update(shared(data));
  await second!.terminate();
  await expect(doomed.digest()).rejects.toMatchObject({ code: 'INTERNAL' });
  // xxh128's worker is untouched; a new md5 job gets a fresh md5 worker.
  expect(hashWorkerForTests('xxh128')).toBe(first);
  const again = WorkerHasher.create(['md5']);
  await again.update(shared(data));
  expect(await again.digest()).toEqual(await inThread(data, ['md5']));
  expect(hashWorkerForTests('md5')).not.toBe(second);
});

test("xxh128 is never held up behind SHA-256: another job's verification hash is done while SHA-256 has not even started its backlog", async () => {
  // Both workers booted first, so that the SHA-256 worker exists to be paused.
  for (const alg of ['sha256', 'xxh128'] as const) {
    const warm = WorkerHasher.create([alg]);
    await warm.update(shared(Buffer.from('warm')));
    await warm.digest();
  }
  // SHA-256 stands still rather than being given more than it can hash in time: on a loaded machine no
  // amount of work is sure to outlast the other thread's.
  const sha256 = await pauseWorker(hashWorkerForTests('sha256')!);
  // Were xxh128 behind SHA-256, the quick job would wait until the test times out: the later tests need the worker back.
  onTestFinished(() => sha256.resume());
  const slow = WorkerHasher.create(['sha256', 'xxh128']);
  const block = shared(Buffer.alloc(4 * 1024 * 1024, 1));
  const order: string[] = [];
  const backlog = Promise.all(Array.from({ length: 4 }, () => slow.update(block))).then(() => order.push('sha256 backlog'));
  const quick = WorkerHasher.create(['xxh128']);
  const data = Buffer.alloc(1024 * 1024, 3);
  await quick.update(shared(data));
  expect(await quick.digest()).toEqual(await inThread(data, ['xxh128']));
  order.push('xxh128 job');
  await sha256.resume();
  await backlog;
  expect(order).toEqual(['xxh128 job', 'sha256 backlog']);
  expect(await slow.digest()).toEqual(await inThread(Buffer.concat(Array.from({ length: 4 }, () => block)), ['sha256', 'xxh128']));
});

test('a fanOut whose worker dies fails instead of finishing', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'shuttle-hw-'));
  try {
    const target = await createTempTarget(join(dir, 'f'));
    const w = WorkerHasher.create(['sha256']);
    await w.update(shared(new Uint8Array(1)));
    const worker = hashWorkerForTests('sha256')!;
    async function* chunks(): AsyncIterable<Buffer> {
      for (let i = 0; i < 12; i++) {
        if (i === 2) await worker.terminate();
        yield Buffer.alloc(STAGE_BLOCK, i);
      }
    }
    await expect(fanOut(chunks(), [], [target], w, new AbortController().signal)).rejects.toMatchObject({ code: 'INTERNAL' });
    await expect(w.digest()).rejects.toMatchObject({ code: 'INTERNAL' });
    await discardTemp(target);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an aborted fanOut with a worker hasher gives its blocks back and throws the abort', async () => {
  const ac = new AbortController();
  const w = WorkerHasher.create(['sha256']);
  const dir = await mkdtemp(join(tmpdir(), 'shuttle-hw-'));
  try {
    const target = await createTempTarget(join(dir, 'f'));
    async function* chunks(): AsyncIterable<Buffer> {
      for (let i = 0; i < 10; i++) {
        if (i === 3) ac.abort(new Error('stop'));
        yield Buffer.alloc(STAGE_BLOCK, i);
      }
    }
    await expect(fanOut(chunks(), [], [target], w, ac.signal)).rejects.toThrow();
    w.dispose();
    await discardTemp(target);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an ingest hasher hashes small inputs on this thread and large ones in the worker, with the same digests', async () => {
  await hashWorkerForTests()?.terminate();
  await new Promise((r) => setImmediate(r));
  expect(hashWorkerForTests()).toBeUndefined();
  const small = shared(Buffer.alloc(IN_THREAD_BELOW - 1, 9));
  const h = new IngestHasher(ALL);
  await h.update(small);
  expect(await h.digest()).toEqual(await inThread(small, ALL));
  expect(hashWorkerForTests()).toBeUndefined();
  const empty = new IngestHasher(ALL);
  expect(await empty.digest()).toEqual(await inThread(new Uint8Array(0), ALL));

  const large = new Uint8Array(new SharedArrayBuffer(3 * IN_THREAD_BELOW));
  for (let i = 0; i < large.length; i++) large[i] = i % 253;
  const big = new IngestHasher(ALL);
  // Overlapping updates, as fanOut posts them: whole blocks, then a short last one.
  await Promise.all([
    big.update(large.subarray(0, IN_THREAD_BELOW)),
    big.update(large.subarray(IN_THREAD_BELOW, 2 * IN_THREAD_BELOW)),
    big.update(large.subarray(2 * IN_THREAD_BELOW, 2 * IN_THREAD_BELOW + 5)),
  ]);
  expect(hashWorkerForTests()).toBeDefined();
  expect(big.bytes).toBe(2 * IN_THREAD_BELOW + 5);
  expect(await big.digest()).toEqual(await inThread(large.subarray(0, 2 * IN_THREAD_BELOW + 5), ALL));
});

test('the built program finds its hash worker and exits by itself once the worker is idle', async () => {
  // dist/ is a bundle (scripts/build.mjs): the worker must be found beside the chunk that starts it.
  const work = await mkdtemp(join(tmpdir(), 'shuttle-hash-worker-cli-'));
  try {
    const card = join(work, 'card', 'DCIM', '100TEST');
    await mkdir(card, { recursive: true });
    const data = Buffer.alloc(4 * IN_THREAD_BELOW, 7);
    await writeFile(join(card, 'IMG_0001.JPG'), data);
    const node = fileURLToPath(new URL('../node_modules/.bin/node', import.meta.url));
    const main = fileURLToPath(new URL('../dist/main.js', import.meta.url));
    const r = spawnSync(node, [main, '--state', join(work, 'state'), '--log-level', 'warn', 'ingest', join(work, 'card'), '--dest', join(work, 'lib'), '--json'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.error).toBeUndefined();
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'complete', copied: 1, failed: 0 });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
});

test('reused WASM hashers start clean for every file and refuse use after their digest', async () => {
  const { makeUpdater } = await import('../src/io/hashing.js');
  const reference = (data: Buffer): string => spawnSync('xxhsum', ['-H2', '-'], { input: data, encoding: 'utf8' }).stdout.split(' ')[0]!;
  const files = [Buffer.from('first file, longer than the second'), Buffer.from('second'), Buffer.alloc(0), Buffer.from('first file, longer than the second')];
  const digests: string[] = [];
  for (const data of files) {
    const u = await makeUpdater('xxh128');
    u.update(data);
    digests.push(u.digest());
    expect(() => u.update(data)).toThrow(/after its digest/);
    expect(() => u.digest()).toThrow(/twice/);
  }
  expect(digests).toEqual(files.map(reference));
  // Two at once never share a state.
  const [a, b] = await Promise.all([makeUpdater('xxh128'), makeUpdater('xxh128')]);
  a.update(Buffer.from('abc'));
  b.update(Buffer.from('xyz'));
  expect([a.digest(), b.digest()]).toEqual([reference(Buffer.from('abc')), reference(Buffer.from('xyz'))]);
});
