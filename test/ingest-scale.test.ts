import { afterEach, beforeEach, expect, test } from 'vitest';
import { closeSync, ftruncateSync, openSync } from 'node:fs';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ingestJson } from './support/cli.js';
import { tempDir, tempFilesUnder } from './support/tree.js';
import { readBack } from '../src/ingest/readback.js';

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

test('a-file-over-4-gib-is-copied-and-verified', async () => {
  const card = join(work.path, 'card');
  await mkdir(card);
  const size = 4 * 1024 ** 3 + 4097;
  // Sparse on the source (reads as zeros, costs no disk); the copy is written and read back in full.
  const fd = openSync(join(card, 'MVI_0001.MOV'), 'w');
  ftruncateSync(fd, size);
  closeSync(fd);
  const dest = join(work.path, 'lib');
  const r = await ingestJson([card, '--dest', dest, '--state', join(work.path, 'state')], { timeoutMs: 900_000, env: { SHUTTLE_LOG_LEVEL: 'info' } });
  expect(r.code, r.stderr).toBe(0);
  expect(r.summary.destinations[0]).toMatchObject({ verified: 1, bytes: size });
  const finished = r.stderr.split('\n').filter((l) => l.includes('ingest finished')).map((l) => JSON.parse(l) as { maxRssBytes: number });
  expect(finished).toHaveLength(1);
  expect(finished[0]!.maxRssBytes).toBeLessThan(200 * 1024 * 1024);
  const year = String(new Date().getUTCFullYear());
  const [day] = await readdir(join(dest, year));
  const copy = join(dest, year, day!, 'MVI_0001.MOV');
  expect((await stat(copy)).size).toBe(size);
  const [a, b] = await Promise.all([readBack(copy, ['xxh128']), readBack(join(card, 'MVI_0001.MOV'), ['xxh128'])]);
  expect(a.hashes.xxh128).toBe(b.hashes.xxh128);
  expect(await tempFilesUnder(dest)).toEqual([]);
}, 900_000);
