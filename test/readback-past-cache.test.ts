import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants, statSync } from 'node:fs';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import { FolderSource } from '../src/device/card/folder-source.js';
import { PROGRESSIVE_BLOCK, PROGRESSIVE_FROM } from '../src/ingest/copy.js';
import type { UnreadRange } from '../src/io/durable.js';
import { runIngest, type IngestSettings } from '../src/ingest/pipeline.js';
import { readBack } from '../src/io/readback.js';
import { giveBackAlignedBlock, openDirect, takeAlignedBlock } from '../src/io/direct.js';
import { Journal } from '../src/store/journal.js';
import { captureLog } from './support/daemon-helpers.js';
import { bytes, ingestSettings, writeBytes } from './support/fixtures.js';
import { tempDir } from './support/tree.js';

/**
 * Read-back must read the disk, not the page cache: a copy whose cached pages are right while the disk
 * holds something else must not be called verified. These tests change a byte on the device beneath a
 * cached page (through the loop device of an ext4 image, at the file's physical offset, so the file's
 * cache keeps the old byte), check that an ordinary read still sees the old byte, and that read-back
 * sees the new one; and, with fincore, that read-back does not pull a copy into the cache.
 *
 * The copy pipeline's fault hook (applyTestFault, called between a byte's write and its read-back: after
 * the fsync for a file read back whole, before each read for one read back as it is written) is replaced
 * here with that fault; the SHUTTLE_TEST_FAULT one writes through the cache, where any read would see it.
 */
const hook = vi.hoisted(() => ({ beforeRead: undefined as ((tempPath: string, unread?: UnreadRange) => Promise<boolean>) | undefined }));
vi.mock('../src/io/durable.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/io/durable.js')>();
  return { ...real, applyTestFault: async (tempPath: string, unread?: UnreadRange) => (hook.beforeRead ? hook.beforeRead(tempPath, unread) : false) };
});

const PAGE = 4096;
const settings: IngestSettings = ingestSettings('{name}');

let work: { path: string; cleanup: () => Promise<void> };
let mnt: string;
let device: string;

beforeAll(async () => {
  work = await tempDir('shuttle-readback-disk-');
  const img = join(work.path, 'ext4.img');
  mnt = join(work.path, 'mnt');
  await mkdir(mnt);
  execFileSync('truncate', ['-s', '128M', img]);
  execFileSync('mkfs.ext4', ['-q', '-b', String(PAGE), img]);
  execFileSync('mount', ['-o', 'loop', img, mnt]);
  device = execFileSync('findmnt', ['-n', '-o', 'SOURCE', mnt], { encoding: 'utf8' }).trim();
  expect(device).toMatch(/^\/dev\/loop\d+$/);
});

afterAll(async () => {
  execFileSync('umount', [mnt]);
  await work.cleanup();
});

afterEach(() => {
  hook.beforeRead = undefined;
});

/** Bytes of `path` held in the page cache (fincore). */
function resident(path: string): number {
  return Number(execFileSync('fincore', ['-b', '-n', '-o', 'RES', path], { encoding: 'utf8' }).trim());
}

/** Writes `path` back and drops its pages from the cache (POSIX_FADV_DONTNEED, as dd's nocache flags ask). */
function evict(path: string): void {
  execFileSync('dd', [`of=${path}`, 'oflag=nocache', 'conv=notrunc,fdatasync', 'count=0', 'status=none']);
  execFileSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']);
}

/** Where byte `offset` of `path` lies on the filesystem's device (filefrag's extent map, in bytes). */
function physicalOffset(path: string, offset: number): number {
  const out = execFileSync('filefrag', ['-e', '-b1', path], { encoding: 'utf8' });
  for (const [, lStart, lEnd, pStart] of out.matchAll(/^\s*\d+:\s+(\d+)\.\.\s*(\d+):\s+(\d+)\.\.\s*\d+:/gm)) {
    if (Number(lStart) <= offset && offset <= Number(lEnd)) return Number(pStart) + offset - Number(lStart);
  }
  throw new Error(`no extent of ${path} holds offset ${offset}:\n${out}`);
}

/** Reads one byte of `file` (a path on the mount, or the device) with O_DIRECT: what the disk holds. */
async function byteOnDisk(file: string, offset: number, change?: (b: number) => number): Promise<number> {
  const fh = await openDirect(file, change ? fsConstants.O_RDWR : fsConstants.O_RDONLY);
  if (!fh) throw new Error(`${file} does not take O_DIRECT`);
  const block = takeAlignedBlock(PAGE);
  try {
    const base = offset - (offset % PAGE);
    expect((await fh.read(block, 0, PAGE, base)).bytesRead).toBeGreaterThan(offset - base);
    const was = block[offset - base]!;
    if (change) {
      block[offset - base] = change(was);
      await fh.write(block, 0, PAGE, base);
      await fh.sync();
    }
    return was;
  } finally {
    giveBackAlignedBlock(block);
    await fh.close();
  }
}

/**
 * Flips byte `offset` of `path` on the device only, with the file's pages in the cache, and checks the
 * fault is what it should be: an ordinary read still sees `expected`, the disk its complement.
 */
async function flipBeneathTheCache(path: string, offset: number, expected: number): Promise<void> {
  const size = (await readFile(path)).length;
  expect(resident(path)).toBe(Math.ceil(size / PAGE) * PAGE);
  await byteOnDisk(device, physicalOffset(path, offset), (b) => b ^ 0xff);
  expect((await readFile(path))[offset]).toBe(expected);
  expect(await byteOnDisk(path, offset)).toBe(expected ^ 0xff);
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('readBack on an ext4 loop image', () => {
  test('sees-a-byte-changed-on-the-disk-beneath-a-cached-page-that-an-ordinary-read-does-not-see', async () => {
    const path = join(mnt, 'cached.bin');
    const original = randomBytes(5 * 1024 * 1024 + 3);
    await writeFile(path, original);
    const fh = await open(path, 'r');
    await fh.sync();
    await fh.close();
    const at = 2_500_001;
    await flipBeneathTheCache(path, at, original[at]!);
    const onDisk = Buffer.from(original);
    onDisk[at] = onDisk[at]! ^ 0xff;
    const rb = await readBack(path, ['sha256']);
    expect(rb).toEqual({ size: original.length, hashes: { sha256: sha256(onDisk) }, direct: true });
  });
});

describe('ingest read-back on an ext4 loop image', () => {
  const ingest = async (
    name: string,
    size = 3_000_000,
  ): Promise<{ summary: Awaited<ReturnType<typeof runIngest>>; logs: ReturnType<typeof captureLog>['lines']; src: string; dest: string }> => {
    const src = join(work.path, `${name}-card`);
    const dest = join(mnt, `${name}-lib`);
    for (let i = 0; i < 3; i++) await writeBytes(join(src, `f${i}.bin`), bytes(size + i * 4099, i), new Date('2026-04-01T10:00:00Z'));
    const journal = Journal.open(join(work.path, `${name}-state`));
    const { logger, lines } = captureLog('warn');
    try {
      const summary = await runIngest({ sources: [new FolderSource(src)], destinations: [{ path: dest }], journal, settings, logger, signal: new AbortController().signal });
      return { summary, logs: lines, src, dest };
    } finally {
      journal.close();
    }
  };

  // Below PROGRESSIVE_FROM a copy is read back whole after its fsync; above, block by block as it is
  // written, and the fault lands in a block written but not read yet, before the fsync.
  test.each([
    { how: 'read-back-whole-after-the-fsync', size: PROGRESSIVE_FROM - 100_000, progressive: false },
    { how: 'read-back-as-it-is-written', size: 3_000_000, progressive: true },
  ])('a-byte-flipped-on-the-disk-beneath-the-cached-copy-is-caught-and-the-copy-written-again ($how)', async ({ size, progressive }) => {
    const flipped: Array<{ tempPath: string; unread: UnreadRange | undefined }> = [];
    let claimed = false;
    hook.beforeRead = async (tempPath, unread) => {
      // The middle byte of the file, at the read that covers it (the fsync'd whole file when no range).
      const middle = Math.floor((unread?.size ?? 0) / 2);
      if (unread && (middle < unread.from || (unread.to !== undefined && middle >= unread.to))) return false;
      // Copies are read back concurrently: the first one claims the fault before anything is awaited.
      if (claimed) return false;
      claimed = true;
      const copy = await readFile(tempPath);
      const at = unread ? middle : Math.floor(copy.length / 2);
      await flipBeneathTheCache(tempPath, at, copy[at]!);
      flipped.push({ tempPath, unread });
      return true;
    };
    const { summary, logs, src, dest } = await ingest(`flip-${size}`, size);
    expect(flipped).toHaveLength(1);
    // Read as it is written: the flipped byte's block was written and not yet read, one whole block among others.
    if (progressive) expect(flipped[0]!.unread).toMatchObject({ from: PROGRESSIVE_BLOCK, to: 2 * PROGRESSIVE_BLOCK });
    else expect(flipped[0]!.unread).toBeUndefined();
    expect(summary, JSON.stringify(summary.errors)).toMatchObject({ status: 'complete', copied: 3, failed: 0, readback: { direct: 3, cached: 0 } });
    expect(logs.filter((l) => /read-back mismatch/.test(l.msg ?? ''))).toHaveLength(1);
    // What the disk holds now, read past the cache by another program, is the source.
    for (let i = 0; i < 3; i++) {
      const onDisk = execFileSync('bash', ['-o', 'pipefail', '-c', 'dd if="$1" iflag=direct bs=1M status=none | sha256sum', 'bash', join(dest, `f${i}.bin`)], { encoding: 'utf8' });
      expect(onDisk.split(/\s+/)[0]).toBe(sha256(await readFile(join(src, `f${i}.bin`))));
    }
  });

  test('a-big-copy-is-read-back-while-it-is-written-and-only-its-last-block-after-the-fsync', async () => {
    const reads = new Map<string, Array<{ from: number; to: number | undefined; sizeNow: number; size: number }>>();
    hook.beforeRead = async (tempPath, unread) => {
      // The size the copy has on disk when its read is asked for, before anything is awaited.
      const sizeNow = statSync(tempPath).size;
      if (!reads.has(tempPath)) reads.set(tempPath, []);
      reads.get(tempPath)!.push({ from: unread?.from ?? 0, to: unread?.to, sizeNow, size: unread?.size ?? sizeNow });
      return false;
    };
    const size = 5 * PROGRESSIVE_BLOCK + 12_345;
    const { summary } = await ingest('follow', size);
    expect(summary, JSON.stringify(summary.errors)).toMatchObject({ status: 'complete', copied: 3, failed: 0, readback: { direct: 3, cached: 0 } });
    expect(reads.size).toBe(3);
    for (const list of reads.values()) {
      const during = list.filter((r) => r.to !== undefined);
      const after = list.filter((r) => r.to === undefined);
      // Five whole blocks in order while the copy was written: the first asked for when little of it was there.
      expect(during.map((r) => [r.from, r.to])).toEqual([0, 1, 2, 3, 4].map((i) => [i * PROGRESSIVE_BLOCK, (i + 1) * PROGRESSIVE_BLOCK]));
      expect(during[0]!.sizeNow).toBeLessThanOrEqual(2 * PROGRESSIVE_BLOCK);
      expect(during[0]!.sizeNow).toBeLessThan(during[0]!.size);
      // Once sealed, only the partial last block is left to read.
      expect(after.length).toBeGreaterThanOrEqual(1);
      expect(after[0]!.from).toBe(5 * PROGRESSIVE_BLOCK);
      expect(after[0]!.sizeNow).toBe(after[0]!.size);
    }
  });

  test('read-back-leaves-an-evicted-copy-out-of-the-page-cache', async () => {
    const evicted: string[] = [];
    hook.beforeRead = async (tempPath, unread) => {
      // Once each temp is fsync'd: before its whole read-back, or the read of what is left of it.
      if (unread?.to !== undefined || evicted.includes(tempPath)) return false;
      evict(tempPath);
      expect(resident(tempPath)).toBe(0);
      evicted.push(tempPath);
      return false;
    };
    const { summary, dest } = await ingest('evict');
    expect(evicted).toHaveLength(3);
    expect(summary).toMatchObject({ status: 'complete', copied: 3, failed: 0, readback: { direct: 3, cached: 0 } });
    for (let i = 0; i < 3; i++) expect(resident(join(dest, `f${i}.bin`))).toBe(0);
    // fincore does see pages an ordinary read brings in.
    await readFile(join(dest, 'f0.bin'));
    expect(resident(join(dest, 'f0.bin'))).toBeGreaterThan(0);
  });
});
