import { afterEach, beforeEach, expect, test } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { mkdir, open, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ingestJson } from './support/cli.js';
import { tempDir, tempFilesUnder } from './support/tree.js';
import { openDirect, takeAlignedBlock } from '../src/io/direct.js';

let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-scale-');
});
afterEach(async () => {
  await work.cleanup();
});

test('ten-thousand-files-in-one-folder-are-all-verified', async () => {
  const src = join(work.path, 'card', 'DCIM', '100MEDIA');
  await mkdir(src, { recursive: true });
  for (let i = 0; i < 10_000; i++) await writeFile(join(src, `F${String(i).padStart(5, '0')}.JPG`), `shot ${i}\n`);
  const dest = join(work.path, 'lib');
  const r = await ingestJson([join(work.path, 'card'), '--dest', dest, '--state', join(work.path, 'state')], { timeoutMs: 900_000 });
  expect(r.code, r.stderr).toBe(0);
  expect(r.summary).toMatchObject({ files: 10_000, copied: 10_000, failed: 0 });
  const days = await readdir(join(dest, String(new Date().getUTCFullYear())));
  let n = 0;
  for (const d of days) n += (await readdir(join(dest, String(new Date().getUTCFullYear()), d))).length;
  expect(n).toBe(10_000);
}, 900_000);

/**
 * Writes `size` bytes whose every 8-byte little-endian word holds its own file offset: no two words of
 * the file alike, so a block lost, repeated or written at the wrong offset (a 32-bit wrap at 4 GiB)
 * changes the file's hash, which zeros would not. Whole blocks go past the page cache (O_DIRECT), as
 * Shuttle writes, so that 4 GiB of source does not crowd the cache of the tests running beside this one;
 * every byte is also fed to `xxhsum -H2`, whose digest is returned: a witness computed by another
 * program from the bytes as generated, not as read back from any disk.
 */
async function writeStampedFile(path: string, size: number): Promise<string> {
  const block = takeAlignedBlock(STAMP_BLOCK);
  const words = new Uint32Array(block.buffer, block.byteOffset, STAMP_BLOCK / 4);
  const witness = spawn('xxhsum', ['-H2', '-'], { stdio: ['pipe', 'pipe', 'inherit'] });
  let digest = '';
  witness.stdout.on('data', (d: Buffer) => (digest += d.toString()));
  const witnessed = new Promise<number | null>((resolve, reject) => {
    witness.once('error', reject);
    witness.once('close', resolve);
  });
  const direct = await openDirect(path, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_TRUNC);
  if (!direct) throw new Error(`${path}: this filesystem does not take O_DIRECT`);
  const tail = await open(path, 'r+');
  try {
    for (let at = 0; at < size; at += STAMP_BLOCK) {
      // STAMP_BLOCK divides 2^32, so a block's high words are all alike and its low words do not wrap.
      const high = Math.floor(at / 2 ** 32);
      const low = at % 2 ** 32;
      for (let i = 0; i < words.length; i += 2) {
        words[i] = low + i * 4;
        words[i + 1] = high;
      }
      const n = Math.min(STAMP_BLOCK, size - at);
      const data = block.subarray(0, n);
      // The block is stamped again only once both the disk and the witness are done with it.
      await Promise.all([
        n === STAMP_BLOCK ? direct.write(data, 0, n, at) : tail.write(data, 0, n, at),
        new Promise<void>((resolve, reject) => witness.stdin.write(data, (err) => (err ? reject(err) : resolve()))),
      ]);
    }
    await tail.sync();
  } finally {
    await direct.close();
    await tail.close();
    witness.stdin.end();
  }
  expect(await witnessed).toBe(0);
  return digest.split(/\s+/)[0]!;
}
const STAMP_BLOCK = 1024 * 1024;

/** xxh128 of a file by `xxhsum -H2`, reading it past the page cache (dd iflag=direct). */
function xxhsumPastTheCache(path: string): string {
  const out = execFileSync('bash', ['-o', 'pipefail', '-c', 'dd if="$1" iflag=direct bs=4M status=none | xxhsum -H2 -', 'bash', path], { encoding: 'utf8' });
  return out.split(/\s+/)[0]!;
}

/** The 8-byte word at `offset`, as a normal read sees it. */
async function wordAt(path: string, offset: number): Promise<bigint> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(8);
    await fh.read(b, 0, 8, offset);
    return b.readBigUInt64LE();
  } finally {
    await fh.close();
  }
}

test('a-file-over-4-gib-is-copied-and-verified', async () => {
  const card = join(work.path, 'card');
  await mkdir(card);
  // Ends off the block grid, and past 2^32 by more than a page.
  const size = 4 * 1024 ** 3 + 4104;
  const source = join(card, 'MVI_0001.MOV');
  const expected = await writeStampedFile(source, size);
  // The source is what the test means it to be: all on the disk (not sparse) and stamped beyond 4 GiB.
  const st = await stat(source);
  expect(st.size).toBe(size);
  expect(st.blocks * 512).toBeGreaterThanOrEqual(size);
  for (const offset of [0, 2 ** 32 - 8, 2 ** 32, 2 ** 32 + 4096, size - 8]) expect(await wordAt(source, offset)).toBe(BigInt(offset));
  const dest = join(work.path, 'lib');
  const r = await ingestJson([card, '--dest', dest, '--state', join(work.path, 'state')], { timeoutMs: 900_000, env: { SHUTTLE_LOG_LEVEL: 'info' } });
  expect(r.code, r.stderr).toBe(0);
  expect(r.summary.destinations[0]).toMatchObject({ verified: 1, bytes: size });
  const finished = r.stderr
    .split('\n')
    .filter((l) => l.includes('ingest finished'))
    .map((l) => JSON.parse(l) as { maxRssBytes: number });
  expect(finished).toHaveLength(1);
  expect(finished[0]!.maxRssBytes).toBeLessThan(200 * 1024 * 1024);
  const year = String(new Date().getUTCFullYear());
  const [day] = await readdir(join(dest, year));
  const copy = join(dest, year, day!, 'MVI_0001.MOV');
  expect((await stat(copy)).size).toBe(size);
  expect(xxhsumPastTheCache(copy)).toBe(expected);
  expect(await tempFilesUnder(dest)).toEqual([]);
}, 900_000);
