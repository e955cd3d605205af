import { expect, test } from 'vitest';
import type { FileHandle } from 'node:fs/promises';
import { fanOut, LENT_BLOCKS, STAGE_BLOCK, WRITE_AHEAD, type TempTarget } from '../src/ingest/copy.js';
import { takeAlignedBlock } from '../src/io/direct.js';
import { MultiHasher } from '../src/io/hashing.js';

/**
 * Unit test of the fan-out alone: targets are fakes of a FileHandle whose writes complete when the test
 * says so, to observe how far the read may run ahead of the slowest destination.
 */
function fakeTarget(delayMs: number, log: Array<{ at: number; len: number }>): TempTarget {
  const handle = {
    write: async (buf: Buffer, off: number, len: number, position: number) => {
      await new Promise((r) => setTimeout(r, delayMs));
      log.push({ at: position, len });
      return { bytesWritten: len, buffer: buf };
    },
    close: async () => {},
  } as unknown as FileHandle;
  return { tempPath: `/nonexistent/${delayMs}.shuttle-tmp`, handle, written: 0 };
}

test('the-slowest-destination-paces-the-read', async () => {
  const fastLog: Array<{ at: number; len: number }> = [];
  const slowLog: Array<{ at: number; len: number }> = [];
  const targets = [fakeTarget(0, fastLog), fakeTarget(15, slowLog)];
  let pulled = 0;
  let maxAhead = 0;
  async function* source(): AsyncIterable<Buffer> {
    for (let i = 0; i < 20; i++) {
      maxAhead = Math.max(maxAhead, pulled - slowLog.length);
      pulled++;
      yield Buffer.alloc(STAGE_BLOCK, i);
    }
    // A short tail, as files end: staged and written as a last partial block.
    yield Buffer.alloc(100, 99);
  }
  await fanOut(source(), [], targets, await MultiHasher.create(['xxh128']), new AbortController().signal);
  expect(slowLog.map((w) => w.at)).toEqual(Array.from({ length: 21 }, (_, i) => i * STAGE_BLOCK));
  expect(slowLog.at(-1)!.len).toBe(100);
  expect(fastLog).toHaveLength(21);
  expect(maxAhead).toBeLessThanOrEqual(WRITE_AHEAD);
  expect(maxAhead).toBeGreaterThan(1);
  expect(targets.map((t) => t.written)).toEqual([20 * STAGE_BLOCK + 100, 20 * STAGE_BLOCK + 100]);
});

test('small-chunks-are-staged-into-whole-blocks', async () => {
  const log: Array<{ at: number; len: number }> = [];
  const t = fakeTarget(0, log);
  async function* source(): AsyncIterable<Buffer> {
    for (let i = 0; i < 3000; i++) yield Buffer.alloc(1000, i % 251);
  }
  const hasher = await MultiHasher.create(['sha256']);
  await fanOut(source(), [Buffer.from('head')], [t], hasher, new AbortController().signal);
  const whole = Math.floor(3_000_004 / STAGE_BLOCK);
  expect(log.map((w) => w.len)).toEqual([...Array<number>(whole).fill(STAGE_BLOCK), 3_000_004 - whole * STAGE_BLOCK]);
  expect(t.written).toBe(3_000_004);
});

test('a-failing-destination-drops-out-and-the-others-finish', async () => {
  const okLog: Array<{ at: number; len: number }> = [];
  const ok = fakeTarget(0, okLog);
  let writes = 0;
  const bad: TempTarget = {
    tempPath: '/nonexistent/bad.shuttle-tmp',
    written: 0,
    handle: {
      write: async () => {
        if (++writes === 3) throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
        return { bytesWritten: STAGE_BLOCK };
      },
      close: async () => {},
    } as unknown as FileHandle,
  };
  async function* source(): AsyncIterable<Buffer> {
    for (let i = 0; i < 10; i++) yield Buffer.alloc(STAGE_BLOCK, i);
  }
  await fanOut(source(), [], [bad, ok], await MultiHasher.create(['xxh128']), new AbortController().signal);
  expect(bad.error?.code).toBe('DEST_NO_SPACE');
  expect(writes).toBe(3);
  expect(ok.written).toBe(10 * STAGE_BLOCK);
});

test('whole-shared-blocks-a-source-lends-are-written-and-hashed-where-they-are-and-kept-no-longer-than-promised', async () => {
  // A folder source's recycled chunks: page-aligned shared blocks of the staging size, the last one short.
  const lentBlocks = [...Array.from({ length: 12 }, () => takeAlignedBlock(STAGE_BLOCK, { shared: true })), takeAlignedBlock(STAGE_BLOCK, { shared: true }).subarray(0, 12_288)];
  const run = async (lent: number) => {
    const written = new Map<number, ArrayBufferLike>();
    const hashed: number[] = [];
    const target = fakeTarget(2, []);
    const write = target.handle.write.bind(target.handle);
    (target.handle as unknown as { write: unknown }).write = async (buf: Buffer, off: number, len: number, position: number) => {
      const r = await write(buf, off, len, position);
      written.set(position, buf.buffer);
      return r;
    };
    // A hash that ends later than the write: a lent block must outlive both.
    const hasher = { update: (d: Uint8Array) => new Promise<void>((r) => setTimeout(() => (hashed.push(d.byteLength), r()), 5)) };
    let overdue = 0;
    async function* source(): AsyncIterable<Buffer> {
      for (let i = 0; i < lentBlocks.length; i++) {
        // The promise of recycle = lent: chunk i - lent is written and hashed before chunk i is pulled (a
        // copied chunk is let go at once; a lent one only then).
        if (lent >= LENT_BLOCKS && i >= lent && (!written.has((i - lent) * STAGE_BLOCK) || hashed.length < i - lent + 1)) overdue++;
        yield lentBlocks[i]!;
      }
    }
    await fanOut(source(), [], [target], hasher, new AbortController().signal, lent);
    expect(target.written).toBe(12 * STAGE_BLOCK + 12_288);
    expect(overdue).toBe(0);
    return [...written.values()].filter((b, i) => b === lentBlocks[i]!.buffer).length;
  };
  // Opened with recycle ≥ LENT_BLOCKS: every chunk, the short last one too, is written from the source's own memory.
  expect(await run(LENT_BLOCKS)).toBe(13);
  // A stream that only promises the next pull: every chunk is copied into a staging block first.
  expect(await run(1)).toBe(0);
});

test('a-usb-cameras-reads-are-written-and-hashed-from-where-they-are-but-for-the-bytes-around-each-reads-edge', async () => {
  // A USB camera's data phase: 4 MiB reads into page-aligned shared memory, each landing one container
  // header (12 bytes) before a page boundary, so the first read's payload starts on the boundary and each
  // later read starts 12 bytes before one: the file's page offsets sit at page-aligned addresses.
  const READ = 4 * 1024 * 1024;
  const LEAD = 4096 - 12;
  const size = 5 * READ + 3000;
  const content = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4) content.writeUInt32LE((i * 2654435761) >>> 0, i);
  const reads: Buffer[] = [];
  for (let from = -12, i = 0; from < size; from += READ, i++) {
    const block = takeAlignedBlock(LEAD + READ, { shared: true });
    const start = Math.max(from, 0);
    const end = Math.min(from + READ, size);
    // The first read's slice is its payload, past the header.
    const at = LEAD + (start - from);
    content.copy(block, at, start, end);
    reads.push(block.subarray(at, at + (end - start)));
  }
  const file = Buffer.alloc(size);
  const writes: Array<{ at: number; len: number; own: boolean }> = [];
  const target = fakeTarget(1, []);
  (target.handle as unknown as { write: unknown }).write = async (buf: Buffer, off: number, len: number, position: number) => {
    await new Promise((r) => setTimeout(r, 1));
    buf.copy(file, position, off, off + len);
    writes.push({ at: position, len, own: reads.some((r) => r.buffer === buf.buffer) });
    return { bytesWritten: len, buffer: buf };
  };
  const hasher = await MultiHasher.create(['xxh128']);
  async function* source(): AsyncIterable<Buffer> {
    for (let i = 0; i < reads.length; i++) {
      // The promise of recycle: once LENT_BLOCKS more are pulled, the source reads into the memory again.
      if (i >= LENT_BLOCKS) reads[i - LENT_BLOCKS]!.fill(0xee);
      yield reads[i]!;
    }
  }
  await fanOut(source(), [], [target], hasher, new AbortController().signal, LENT_BLOCKS);
  expect(file.equals(content)).toBe(true);
  const expected = await MultiHasher.create(['xxh128']);
  expected.update(content);
  expect((await hasher.digest()).xxh128).toBe((await expected.digest()).xxh128);
  // Every write but the last is whole pages at a page offset (O_DIRECT can take it), and all but one
  // page per read is written from the source's own memory.
  for (const w of writes.slice(0, -1)) expect([w.at % 4096, w.len % 4096]).toEqual([0, 0]);
  const copied = writes.filter((w) => !w.own).reduce((n, w) => n + w.len, 0);
  expect(copied).toBeLessThanOrEqual(reads.length * 4096);
  expect(writes.filter((w) => w.own).reduce((n, w) => n + w.len, 0)).toBe(size - copied);
});
