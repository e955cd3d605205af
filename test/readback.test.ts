import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { idleReadBackBlocks, ProgressiveReadBack, readBack } from '../src/io/readback.js';
import { MAX_IDLE_BLOCKS } from '../src/io/direct.js';

const ALL = ['sha256', 'xxh128', 'xxh64', 'md5'] as const;

/** The same hashes from the system's own tools, each a separate reader of the file. */
function referenceHashes(path: string): Record<(typeof ALL)[number], string> {
  const first = (cmd: string, args: string[]) => execFileSync(cmd, [...args, path], { encoding: 'utf8' }).split(/\s+/)[0]!;
  return {
    sha256: first('sha256sum', []),
    xxh128: first('xxhsum', ['-H2']),
    xxh64: first('xxhsum', ['-H1']),
    md5: first('md5sum', []),
  };
}

function mount(args: string[]): void {
  execFileSync('mount', args, { stdio: 'pipe' });
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shuttle-readback-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('readBack on a disk-backed folder (os.tmpdir(), ext4 here)', () => {
  for (const size of [0, 1, 4095, 4096, 4097, 5 * 1024 * 1024 + 3]) {
    it(`reads ${size} bytes directly with hashes equal to sha256sum, xxhsum -H2/-H1 and md5sum`, async () => {
      const path = join(dir, `f-${size}`);
      await writeFile(path, randomBytes(size));
      const result = await readBack(path, ALL);
      expect(result).toEqual({ size, hashes: referenceHashes(path), direct: true });
    });
  }

  it('crosses many block boundaries correctly with a small block size', async () => {
    const path = join(dir, 'small-blocks');
    await writeFile(path, randomBytes(3 * 8192 + 4096 + 17));
    const result = await readBack(path, ['sha256'], { blockSize: 8192 });
    expect(result.size).toBe(3 * 8192 + 4096 + 17);
    expect(result.hashes.sha256).toBe(referenceHashes(path).sha256);
    expect(result.direct).toBe(true);
  });

  it('keeps concurrent read-backs apart (pooled blocks are never shared)', async () => {
    const paths = await Promise.all(
      [0, 1, 2, 3, 4, 5].map(async (i) => {
        const path = join(dir, `par-${i}`);
        await writeFile(path, randomBytes(300_000 + i * 4099));
        return path;
      }),
    );
    const results = await Promise.all(paths.map((p) => readBack(p, ['sha256'], { blockSize: 16384 })));
    expect(results.map((r) => r.hashes.sha256)).toEqual(paths.map((p) => referenceHashes(p).sha256));
  });

  it('keeps only a bounded number of idle blocks after heavy use', async () => {
    const path = join(dir, 'idle');
    await writeFile(path, randomBytes(20_000));
    await Promise.all(Array.from({ length: MAX_IDLE_BLOCKS }, () => readBack(path, ['md5'], { blockSize: 12288 })));
    expect(idleReadBackBlocks().get(12288)).toBe(MAX_IDLE_BLOCKS);
  });

  it('reports the bytes on disk, not what the caller hoped for: a changed byte changes the hash', async () => {
    const path = join(dir, 'changed');
    const bytes = randomBytes(10_000);
    await writeFile(path, bytes);
    const before = await readBack(path, ['xxh128']);
    bytes[5000]! ^= 1;
    await writeFile(path, bytes);
    const after = await readBack(path, ['xxh128']);
    expect(after.hashes.xxh128).not.toBe(before.hashes.xxh128);
  });

  it('rejects with ABORTED when the signal is already aborted', async () => {
    const path = join(dir, 'pre-aborted');
    await writeFile(path, 'x');
    const err = await readBack(path, ['sha256'], { signal: AbortSignal.abort() }).catch((e: unknown) => e);
    expect(isShuttleError(err, 'ABORTED')).toBe(true);
  });

  it('stops with ABORTED when aborted midway and leaves the block pool usable', async () => {
    const path = join(dir, 'aborted-midway');
    await writeFile(path, randomBytes(4 * 1024 * 1024));
    const ac = new AbortController();
    const pending = readBack(path, ['sha256'], { signal: ac.signal, blockSize: 4096 });
    setImmediate(() => ac.abort());
    const err = await pending.catch((e: unknown) => e);
    expect(isShuttleError(err, 'ABORTED')).toBe(true);
    const again = await readBack(path, ['sha256'], { blockSize: 4096 });
    expect(again.hashes.sha256).toBe(referenceHashes(path).sha256);
  });

  it('fails with DEST_WRITE_FAILED naming the path when the file is missing', async () => {
    const path = join(dir, 'missing');
    const err = await readBack(path, ['sha256']).catch((e: unknown) => e);
    expect(isShuttleError(err, 'DEST_WRITE_FAILED')).toBe(true);
    expect(isShuttleError(err) && err.context).toMatchObject({ path, errno: 'ENOENT' });
  });

  it('refuses a block size that is not a multiple of 4096', async () => {
    const err = await readBack(join(dir, 'f-1'), ['sha256'], { blockSize: 5000 }).catch((e: unknown) => e);
    expect(isShuttleError(err, 'INTERNAL')).toBe(true);
  });
});

describe('readBack where the filesystem refuses O_DIRECT', () => {
  let ramfs: string;
  let tmpfs: string;
  beforeAll(async () => {
    ramfs = join(dir, 'ramfs');
    tmpfs = join(dir, 'tmpfs');
    await mkdir(ramfs);
    await mkdir(tmpfs);
    mount(['-t', 'ramfs', 'ramfs', ramfs]);
    mount(['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', tmpfs]);
  });
  afterAll(() => {
    for (const m of [ramfs, tmpfs]) execFileSync('umount', [m], { stdio: 'ignore' });
  });

  it('falls back to a buffered read on ramfs (EINVAL at open) and says direct: false', async () => {
    const path = join(ramfs, 'f');
    await writeFile(path, randomBytes(5 * 1024 * 1024 + 3));
    const result = await readBack(path, ALL);
    expect(result).toEqual({ size: 5 * 1024 * 1024 + 3, hashes: referenceHashes(path), direct: false });
  });

  // tmpfs learned O_DIRECT in Linux 6.6; Debian 12's 6.1 kernel refuses it, this machine's newer one accepts it.
  const [major = 0, minor = 0] = release().split('.').map(Number);
  const tmpfsDirect = major > 6 || (major === 6 && minor >= 6);
  it(`reads tmpfs with direct: ${tmpfsDirect} on kernel ${release()}`, async () => {
    const path = join(tmpfs, 'f');
    await writeFile(path, randomBytes(4097));
    const result = await readBack(path, ALL);
    expect(result).toEqual({ size: 4097, hashes: referenceHashes(path), direct: tmpfsDirect });
  });
});

describe('ProgressiveReadBack: read back as the file is written', () => {
  const BLOCK = 7 * 4096;
  type Read = { from: number; to: number | undefined; written: number };

  /**
   * Writes `data` in `chunk`-byte writes through the page cache (so each read-back must write the range
   * back first), advancing after each; with `waitForReads`, the next write waits until the read of each
   * whole block written so far was asked for.
   */
  async function writeFollowed(path: string, data: Buffer, chunk: number, blockSize = BLOCK, waitForReads = false) {
    const reads: Read[] = [];
    let written = 0;
    let readAsked: (() => void) | undefined;
    const fh = await open(path, 'wx');
    const rb = (await ProgressiveReadBack.open(path, ['sha256', 'xxh128'], {
      blockSize,
      beforeRead: async (from, to) => {
        reads.push({ from, to, written });
        readAsked?.();
      },
    }))!;
    expect(rb).toBeDefined();
    for (let at = 0; at < data.length; at += chunk) {
      await fh.write(data, at, Math.min(chunk, data.length - at), at);
      written = Math.min(at + chunk, data.length);
      const asked = new Promise<void>((resolve) => (readAsked = resolve));
      rb.advance(written);
      if (waitForReads && written % blockSize === 0) await asked;
    }
    return { rb, reads, seal: () => fh.sync().then(() => fh.close()) };
  }

  it('reads each whole block once it is written and the rest after the seal, with the hashes of the whole file', async () => {
    const path = join(dir, 'progressive');
    const data = randomBytes(10 * BLOCK + 1234);
    const { rb, reads, seal } = await writeFollowed(path, data, BLOCK, BLOCK, true);
    await seal();
    const before = reads.length;
    const result = await rb.finish();
    expect(result).toEqual({ size: data.length, hashes: { sha256: referenceHashes(path).sha256, xxh128: referenceHashes(path).xxh128 }, direct: true });
    // Every block before the last was read while the file was written, each after its write; the seal left the last.
    const during = reads.slice(0, before);
    expect(during).toHaveLength(10);
    for (const [i, r] of during.entries()) expect(r).toEqual({ from: i * BLOCK, to: (i + 1) * BLOCK, written: expect.any(Number) });
    for (const r of during) expect(r.written).toBeGreaterThanOrEqual(r.to!);
    expect(reads.slice(before).map((r) => r.to)).toEqual(reads.slice(before).map(() => undefined));
    expect(reads.slice(before)[0]!.from).toBe(during.length * BLOCK);
  });

  it('holds two blocks however long the file', async () => {
    const size = 11 * 4096;
    expect(idleReadBackBlocks().get(size)).toBeUndefined();
    const path = join(dir, 'progressive-memory');
    const data = randomBytes(40 * size + 17);
    const { rb, seal } = await writeFollowed(path, data, 3 * size, size);
    await seal();
    expect((await rb.finish()).hashes.sha256).toBe(referenceHashes(path).sha256);
    expect(idleReadBackBlocks().get(size)).toBe(2);
  });

  it('sees a byte changed after its block was written and before it was read back', async () => {
    const path = join(dir, 'progressive-flip');
    const data = randomBytes(6 * BLOCK);
    const fh = await open(path, 'wx');
    let faulted!: () => void;
    const changed = new Promise<void>((resolve) => (faulted = resolve));
    const rb = (await ProgressiveReadBack.open(path, ['sha256'], {
      blockSize: BLOCK,
      beforeRead: async (from) => {
        if (from !== 2 * BLOCK) return;
        await fh.write(Buffer.from([data[from + 5]! ^ 0xff]), 0, 1, from + 5);
        faulted();
      },
    }))!;
    await fh.write(data, 0, data.length, 0);
    rb.advance(data.length);
    // The seal comes after the fault, as the copy's does after its last write.
    await changed;
    await fh.sync();
    await fh.close();
    const result = await rb.finish();
    expect(result.hashes.sha256).toBe(referenceHashes(path).sha256);
    expect(result.hashes.sha256).not.toBe(createHash('sha256').update(data).digest('hex'));
  });

  // What the read-back covers: each byte as the device returns it after its write. A change made after
  // its block was read is not its to see (as with a whole-file read-back and a change after it).
  it('reports the bytes as they were read: a change after a block was read back is not seen', async () => {
    const path = join(dir, 'progressive-after');
    const data = randomBytes(6 * BLOCK);
    const reads: number[] = [];
    let resolveRead!: () => void;
    const secondRead = new Promise<void>((resolve) => (resolveRead = resolve));
    const fh = await open(path, 'wx');
    const rb = (await ProgressiveReadBack.open(path, ['sha256'], {
      blockSize: BLOCK,
      beforeRead: async (from) => {
        reads.push(from);
        if (from === BLOCK) resolveRead();
      },
    }))!;
    await fh.write(data, 0, data.length, 0);
    rb.advance(data.length);
    // Block 0 was read once block 1's read is asked for (two blocks in turn); then it changes, then the seal.
    await secondRead;
    await fh.write(Buffer.from([data[5]! ^ 0xff]), 0, 1, 5);
    await fh.sync();
    await fh.close();
    const result = await rb.finish();
    expect(reads[0]).toBe(0);
    expect(result.hashes.sha256).toBe(createHash('sha256').update(data).digest('hex'));
    expect(result.hashes.sha256).not.toBe(referenceHashes(path).sha256);
  });

  it('stops with ABORTED when the finishing read is aborted, and dispose() mid-way leaves the block pool usable', async () => {
    const path = join(dir, 'progressive-abort');
    const data = randomBytes(8 * BLOCK + 99);
    const first = await writeFollowed(path, data, BLOCK);
    await first.seal();
    const err = await first.rb.finish(AbortSignal.abort()).catch((e: unknown) => e);
    expect(isShuttleError(err, 'ABORTED')).toBe(true);
    const second = (await ProgressiveReadBack.open(path, ['sha256'], { blockSize: BLOCK }))!;
    second.advance(data.length);
    await second.dispose();
    expect((await readBack(path, ['sha256'], { blockSize: BLOCK })).hashes.sha256).toBe(referenceHashes(path).sha256);
  });

  it('is not opened where O_DIRECT is refused at open (ramfs): the caller reads back the whole file', async () => {
    const ramfs = join(dir, 'ramfs-progressive');
    await mkdir(ramfs);
    mount(['-t', 'ramfs', 'ramfs', ramfs]);
    try {
      const path = join(ramfs, 'f');
      await writeFile(path, 'x');
      expect(await ProgressiveReadBack.open(path, ['sha256'])).toBeUndefined();
    } finally {
      execFileSync('umount', [ramfs]);
    }
  });
});
