import { afterEach, beforeEach, expect, test } from 'vitest';
import { join } from 'node:path';
import sharp from 'sharp';
import type { FileOutcome, ReadTap } from '../src/ingest/pipeline.js';
import { TetherPreviews, type MadePreview } from '../src/ingest/tether-previews.js';
import { silentLogger } from '../src/log.js';
import { solidJpeg, tiffRaw } from './support/preview-raws.js';
import { tempDir } from './support/tree.js';

/**
 * Which preview a RAW+JPEG shot shows, told by the order its files' bytes arrive and are verified in:
 * the RAW's embedded one when its read is under way by the time the JPEG is verified (smaller, decoded
 * sooner), the JPEG's when the RAW is not being read then; one preview per shot, never two.
 */
const LONG_EDGE = 48;
let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-tether-previews-');
});
afterEach(async () => {
  await work.cleanup();
});

const JPG = '/DCIM/100CANON/IMG_0001.JPG';
const CR2 = '/DCIM/100CANON/IMG_0001.CR2';
const shot = [JPG, CR2];
const verified = (path: string, size: number): FileOutcome => ({ fileId: 1, path, state: 'verified', size, mtimeMs: 0, copies: [] }) as unknown as FileOutcome;
const feed = (tap: ReadTap, data: Buffer, from = 0, to = data.length): void => {
  for (let at = from; at < to; at += 64 * 1024) tap.chunk(data.subarray(at, Math.min(to, at + 64 * 1024)));
};
const red = async (p: string): Promise<number> => Math.round((await sharp(p).stats()).channels[0]!.mean);

async function pair(): Promise<{ previews: TetherPreviews; announced: Array<{ name: string; made: MadePreview }>; jpeg: Buffer; raw: Buffer }> {
  const announced: Array<{ name: string; made: MadePreview }> = [];
  const previews = new TetherPreviews({ stateDir: join(work.path, 'state'), longEdge: LONG_EDGE, logger: silentLogger, onPreview: (name, made) => announced.push({ name, made }) });
  return { previews, announced, jpeg: await solidJpeg(300, 200, 150), raw: tiffRaw({ preview: await solidJpeg(320, 200, 30), size: 2_000_000 }) };
}

test('a-jpeg-verified-while-its-raw-is-being-read-waits-for-the-raws-embedded-preview-and-the-shot-shows-that-one', async () => {
  const { previews, announced, jpeg, raw } = await pair();
  const j = previews.onRead({ path: JPG, size: jpeg.length, rel: 'IMG_0001.JPG', shot })!;
  feed(j, jpeg);
  j.end();
  // The RAW's read has begun, its embedded preview not in yet, when the JPEG is verified.
  const r = previews.onRead({ path: CR2, size: raw.length, rel: 'IMG_0001.CR2', shot })!;
  feed(r, raw, 0, 100);
  let jpegLine: MadePreview | undefined;
  const forJpeg = previews.forFile(verified(JPG, jpeg.length)).then((m) => (jpegLine = m));
  await new Promise<void>((resolve) => setImmediate(resolve));
  expect(jpegLine).toBeUndefined();
  expect(announced).toEqual([]);
  feed(r, raw, 100);
  r.end();
  await forJpeg;
  const forRaw = await previews.forFile(verified(CR2, raw.length));
  expect(announced.map((a) => a.name)).toEqual([CR2]);
  expect(jpegLine).toEqual(announced[0]!.made);
  expect(forRaw).toEqual(announced[0]!.made);
  expect(announced[0]!.made.path).toBe(join(work.path, 'state', 'previews', 'IMG_0001.CR2.jpg'));
  expect(await red(announced[0]!.made.path)).toBeCloseTo(30, -1);
});

test('a-jpeg-verified-before-its-raw-is-read-shows-its-own-preview-and-the-raws-is-never-made', async () => {
  const { previews, announced, jpeg, raw } = await pair();
  const j = previews.onRead({ path: JPG, size: jpeg.length, rel: 'IMG_0001.JPG', shot })!;
  feed(j, jpeg);
  j.end();
  const forJpeg = await previews.forFile(verified(JPG, jpeg.length));
  expect(announced.map((a) => a.name)).toEqual([JPG]);
  expect(forJpeg).toEqual(announced[0]!.made);
  expect(await red(forJpeg!.path)).toBeCloseTo(150, -1);
  const r = previews.onRead({ path: CR2, size: raw.length, rel: 'IMG_0001.CR2', shot })!;
  feed(r, raw);
  r.end();
  expect(await previews.forFile(verified(CR2, raw.length))).toEqual(forJpeg);
  expect(announced).toHaveLength(1);
});

// The RAW read while the shot lists both files (a planned pair), or while it is the shot's only file listed
// (Sony's memory hands the JPEG over next): either way it is the same shot.
for (const [when, listed] of [
  ['listed-with-its-jpeg', shot],
  ['handed-over-before-its-jpeg-is-listed', [CR2]],
] as const) {
  test(`a-raw-read-first-${when}-whose-embedded-preview-fills-is-the-shots-one-preview-and-its-jpegs-bytes-are-not-held`, async () => {
    const { previews, announced, jpeg, raw } = await pair();
    const r = previews.onRead({ path: CR2, size: raw.length, rel: 'IMG_0001.CR2', shot: listed })!;
    feed(r, raw);
    r.end();
    const forRaw = await previews.forFile(verified(CR2, raw.length));
    expect(announced.map((a) => a.name)).toEqual([CR2]);
    // The JPEG read next: no tap, so none of its bytes are copied or kept.
    expect(previews.onRead({ path: JPG, size: jpeg.length, rel: 'IMG_0001.JPG', shot })).toBeUndefined();
    expect(await previews.forFile(verified(JPG, jpeg.length))).toEqual(forRaw);
    expect(announced).toHaveLength(1);
    expect(await red(forRaw!.path)).toBeCloseTo(30, -1);
  });
}
