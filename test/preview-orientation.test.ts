import { afterEach, beforeEach, expect, test } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import type { FileOutcome } from '../src/ingest/pipeline.js';
import { renderPreview, writePreview } from '../src/ingest/preview.js';
import { TetherPreviews } from '../src/ingest/tether-previews.js';
import { silentLogger } from '../src/log.js';
import { cr3Raw, jpegWithMpf, solidJpeg, tiffRaw } from './support/preview-raws.js';
import { tempDir } from './support/tree.js';

/**
 * A RAW's embedded JPEG is stored as the sensor saw it, the RAW's EXIF orientation says how to turn it:
 * its preview is turned upright, whether made of the streamed bytes or of the verified copy.
 */
let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-preview-orientation-');
});
afterEach(async () => {
  await work.cleanup();
});

/** A 120×80 picture with a red top-left quarter, the rest blue: which way it faces shows in a preview. */
async function marked(orientation?: number): Promise<Buffer> {
  const corner = await sharp({ create: { width: 60, height: 40, channels: 3, background: { r: 255, g: 0, b: 0 } } })
    .png()
    .toBuffer();
  const img = sharp({ create: { width: 120, height: 80, channels: 3, background: { r: 0, g: 0, b: 255 } } }).composite([{ input: corner, left: 0, top: 0 }]);
  return (orientation === undefined ? img : img.withMetadata({ orientation })).jpeg({ quality: 95 }).toBuffer();
}

/** Width, height and the red of each quarter (top-left, top-right, bottom-left, bottom-right) of a preview. */
async function facing(path: string): Promise<{ width: number; height: number; red: boolean[] }> {
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  const at = (x: number, y: number): boolean => data[(Math.floor(y) * info.width + Math.floor(x)) * info.channels]! > 128;
  const [w, h] = [info.width, info.height];
  return { width: w, height: h, red: [at(w / 4, h / 4), at((3 * w) / 4, h / 4), at(w / 4, (3 * h) / 4), at((3 * w) / 4, (3 * h) / 4)] };
}

test('each-exif-orientation-given-for-a-raws-embedded-jpeg-turns-it-as-a-jpegs-own-exif-would', async () => {
  const plain = await marked();
  for (let o = 1; o <= 8; o++) {
    const byExif = join(work.path, `exif-${o}.jpg`);
    const byRaw = join(work.path, `raw-${o}.jpg`);
    await renderPreview(await marked(o), byExif, 100);
    await renderPreview(plain, byRaw, 100, o);
    const want = await facing(byExif);
    expect(await facing(byRaw), `orientation ${o}`).toEqual(want);
    expect([want.width, want.height], `orientation ${o}`).toEqual(o >= 5 ? [67, 100] : [100, 67]);
  }
});

test.each([
  // Orientation 6 (turned a quarter clockwise): portrait, red at top right.
  ['CR2', async () => tiffRaw({ preview: await marked(), orientation: 6, size: 2_000_000 }), [false, true, false, false]],
  // A CR3 keeps it in its moov's CMT1; orientation 8 (a quarter anticlockwise): red at bottom left.
  ['CR3', async () => cr3Raw(await marked(), 2_000_000, 8), [false, false, true, false]],
] as const)('a-%s-shot-upright-on-its-side-gives-an-upright-preview-from-the-stream-and-from-the-verified-copy', async (ext, make, red) => {
  const raw = await make();
  const expected = { width: 43, height: 64, red: [...red] };

  const path = join(work.path, `IMG_0001.${ext}`);
  await writeFile(path, raw);
  const fromCopy = join(work.path, 'copy.jpg');
  expect(await writePreview(path, fromCopy, 64)).toBe(true);
  expect(await facing(fromCopy)).toEqual(expected);

  const previews = new TetherPreviews({ stateDir: join(work.path, 'state'), longEdge: 64, logger: silentLogger });
  const source = `/DCIM/100CANON/IMG_0001.${ext}`;
  const tap = previews.onRead({ path: source, size: raw.length, rel: `IMG_0001.${ext}`, shot: [source] })!;
  for (let at = 0; at < raw.length; at += 64 * 1024) tap.chunk(raw.subarray(at, at + 64 * 1024));
  tap.end();
  // No verified copy to fall back on: the preview can only be the streamed one.
  const outcome = { fileId: 1, path: source, state: 'verified', size: raw.length, mtimeMs: 0, copies: [] } as unknown as FileOutcome;
  const made = await previews.forFile(outcome);
  expect(made?.path).toBe(join(work.path, 'state', 'previews', `IMG_0001.${ext}.jpg`));
  expect(await facing(made!.path)).toEqual(expected);
});

test('a-jpeg-carrying-a-screen-sized-mpf-preview-gives-its-preview-from-that-when-it-fills-the-long-edge-else-from-itself', async () => {
  // Main image red 200, its MPF preview red 50, turned by the main image's EXIF orientation (6).
  const main = await sharp(await solidJpeg(600, 400, 200))
    .withMetadata({ orientation: 6 })
    .jpeg()
    .toBuffer();
  const jpeg = jpegWithMpf(main, await solidJpeg(120, 80, 50));
  const path = join(work.path, 'DSC_0001.JPG');
  await writeFile(path, jpeg);
  const look = async (p: string): Promise<{ width: number; height: number; red: number }> => {
    const meta = await sharp(p).metadata();
    return { width: meta.width, height: meta.height, red: Math.round((await sharp(p).stats()).channels[0]!.mean) };
  };
  for (const [longEdge, red] of [
    [64, 50],
    [200, 200],
  ] as const) {
    const fromCopy = join(work.path, `copy-${longEdge}.jpg`);
    expect(await writePreview(path, fromCopy, longEdge)).toBe(true);
    const expected = { width: Math.round((longEdge * 2) / 3), height: longEdge, red: expect.closeTo(red, -1) };
    expect(await look(fromCopy), `long edge ${longEdge}`).toMatchObject(expected);

    const previews = new TetherPreviews({ stateDir: join(work.path, `state-${longEdge}`), longEdge, logger: silentLogger });
    const source = '/DCIM/100MSDCF/DSC_0001.JPG';
    const tap = previews.onRead({ path: source, size: jpeg.length, rel: 'DSC_0001.JPG', shot: [source] })!;
    tap.chunk(jpeg);
    tap.end();
    const made = await previews.forFile({ fileId: 1, path: source, state: 'verified', size: jpeg.length, mtimeMs: 0, copies: [] } as unknown as FileOutcome);
    expect(await look(made!.path), `long edge ${longEdge}, streamed`).toMatchObject(expected);
  }
});
