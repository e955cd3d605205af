/**
 * Speed goals of single steps, which the tests check for correctness only (a test that fails because the
 * machine is busy proves nothing about the code):
 *   - pairing groups 10 000 card items (2 500 shots of four files) in well under a second;
 *   - the capture-date reader gives up on sidecars and unknown files at once, falling back to the mtime;
 *   - the sample-card generator writes big files at disk speed, not byte by byte.
 *
 *   ./node_modules/.bin/node bench/steps.ts
 *
 * Prints each step's best time of BENCH_RUNS (default 3) against its goal; exits 1 if one misses it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { SourceItem } from '../src/device/source.js';

// The sources import each other as './x.js'; this maps those to the .ts files Node strips and runs.
await import(new URL('../test/support/ts-resolve-hooks.mjs', import.meta.url).href);
const { groupItems } = await import('../src/ingest/pairing.js');
const { METADATA_HEAD_BYTES, readCaptureMetadata } = await import('../src/ingest/metadata.js');
const { wavHeader, xmpSidecar } = await import('../src/sample/content.js');
const { Prng } = await import('../src/sample/prng.js');
const { makeSampleCard } = await import('../src/sample/card.js');

const RUNS = Number(process.env.BENCH_RUNS ?? 3);

async function best(run: () => Promise<void> | void): Promise<number> {
  let ms = Infinity;
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    await run();
    ms = Math.min(ms, performance.now() - t);
  }
  return ms;
}

const items: SourceItem[] = [];
for (let i = 0; i < 2500; i++) {
  const dir = `DCIM/${100 + Math.floor(i / 999)}CANON`;
  const stem = `IMG_${String((i % 999) + 1).padStart(4, '0')}`;
  for (const ext of ['.JPG', '.CR2', '.XMP', '.CR2.xmp']) items.push({ path: `${dir}/${stem}${ext}`, size: 1, mtimeMs: 0 });
}

const camera = { make: 'Canon', model: 'Canon EOS R5', serial: '032021001234', lens: 'RF24-70mm F2.8 L IS USM' };
const heads = [
  xmpSidecar({ ...camera, dateTimeOriginal: '2024:05:06 07:08:09' }, 3),
  Buffer.concat([wavHeader(1000), Buffer.alloc(1000)]),
  Buffer.from('hello'),
  Buffer.alloc(0),
  Prng.from(1, 'x').bytes(METADATA_HEAD_BYTES),
];

const work = mkdtempSync(join(tmpdir(), 'shuttle-bench-steps-'));
const rows: Array<{ step: string; ms: number; goalMs: number }> = [];
try {
  rows.push({ step: 'pairing: group 10 000 items', goalMs: 500, ms: await best(() => void groupItems([...items].reverse())) });
  rows.push({
    step: 'metadata: 5 heads without a capture date',
    goalMs: 500,
    ms: await best(async () => {
      for (const head of heads) await readCaptureMetadata(head, { mtimeMs: Date.UTC(2021, 6, 1, 12) }, { timeZone: 'Europe/Paris' });
    }),
  });
  let n = 0;
  rows.push({
    step: 'sample card: 2 x 40 MiB RAW + 8 MB JPEG',
    goalMs: 10_000,
    ms: await best(async () => {
      await makeSampleCard(join(work, String(n++)), { count: 2, rawSize: 40 * 1024 * 1024 + 3, jpegSize: 8_000_001, sidecars: false, voiceMemo: false });
    }),
  });
} finally {
  rmSync(work, { recursive: true, force: true });
}

for (const r of rows) process.stdout.write(`${r.step.padEnd(44)} ${r.ms.toFixed(1).padStart(9)} ms   goal < ${r.goalMs} ms${r.ms < r.goalMs ? '' : '   MISSED'}\n`);
process.exitCode = rows.every((r) => r.ms < r.goalMs) ? 0 : 1;
