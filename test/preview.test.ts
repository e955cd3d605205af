import { afterEach, beforeEach, expect, test } from 'vitest';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import sharp from 'sharp';
import { FolderSource } from '../src/device/card/folder-source.js';
import type { OpenOptions, SourceItem } from '../src/device/source.js';
import { findEmbeddedPreview, jpegSize } from '../src/ingest/embedded-preview.js';
import { runIngest, type FileOutcome } from '../src/ingest/pipeline.js';
import { PREVIEW_HOLD_BYTES, PreviewBytes, renderPreview, sharpCpuProblem, writePreview } from '../src/ingest/preview.js';
import { silentLogger } from '../src/log.js';
import { Journal } from '../src/store/journal.js';
import { bytes, ingestSettings } from './support/fixtures.js';
import { cr3Raw, solidJpeg, tiffRaw } from './support/preview-raws.js';
import { tempDir } from './support/tree.js';

/**
 * Previews: a JPEG scaled itself, a RAW's embedded JPEG (the largest it has), made from the bytes as they
 * stream from the source when they are at hand in time and within the cap, else from the verified copy.
 */
const LONG_EDGE = 64;
let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-preview-');
});
afterEach(async () => {
  await work.cleanup();
});

/** Dimensions and red channel of a written preview (the fixtures' JPEGs differ by colour). */
async function look(path: string | Buffer): Promise<{ format: string | undefined; longEdge: number; red: number }> {
  const img = sharp(path);
  const meta = await img.metadata();
  const stats = await img.stats();
  return { format: meta.format, longEdge: Math.max(meta.width, meta.height), red: Math.round(stats.channels[0]!.mean) };
}

/** Feeds `data` to a collector in chunks, the way a source's read hands them over; stops early once it has settled. */
async function stream(p: PreviewBytes, data: Buffer, chunk = 64 * 1024): Promise<{ fed: number; maxHeld: number; jpeg: Buffer | undefined }> {
  let settled = false;
  void p.jpeg.then(() => (settled = true));
  let fed = 0;
  let maxHeld = 0;
  for (; fed < data.length && !settled; fed += chunk) {
    p.chunk(data.subarray(fed, fed + chunk));
    maxHeld = Math.max(maxHeld, p.held);
    // Lets the collector's promise settle between chunks, as the source's reads do.
    await new Promise<void>((r) => setImmediate(r));
  }
  if (!settled) p.end();
  return { fed: Math.min(fed, data.length), maxHeld, jpeg: await p.jpeg };
}

test('a-raw-gives-its-largest-embedded-jpeg-and-a-jpeg-itself-each-a-decodable-preview-of-the-configured-size', async () => {
  const preview = await solidJpeg(320, 200, 200);
  const thumbnail = await solidJpeg(80, 50, 20);
  const files = new Map([
    ['IMG_0001.CR2', tiffRaw({ preview, thumbnail, size: 2_000_000 })],
    ['IMG_0002.CR3', cr3Raw(preview, 1_000_000)],
    ['IMG_0003.JPG', preview],
  ]);
  for (const [name, data] of files) {
    const path = join(work.path, name);
    await writeFile(path, data);
    // From the verified copy: the RAW's structure and its preview read alone.
    const target = join(work.path, 'previews', `${name}.jpg`);
    expect(await writePreview(path, target, LONG_EDGE), name).toBe(true);
    expect(await look(target), name).toMatchObject({ format: 'jpeg', longEdge: LONG_EDGE, red: expect.closeTo(200, -1) });
    // From the bytes as they stream: the same JPEG.
    const streamed = await stream(PreviewBytes.forFile(name, data.length)!, data);
    expect(streamed.jpeg?.equals(preview), name).toBe(true);
  }
  // A RAW that embeds no JPEG, and a file that is no picture: no preview, and no error.
  await writeFile(join(work.path, 'IMG_0004.CR2'), tiffRaw({ preview: Buffer.alloc(0) }).subarray(0, 8));
  expect(await writePreview(join(work.path, 'IMG_0004.CR2'), join(work.path, 'p4.jpg'), LONG_EDGE)).toBe(false);
  expect(PreviewBytes.forFile('clip.WAV', 100)).toBeUndefined();
});

test('a-camera-preview-a-few-pixels-over-the-long-edge-is-written-as-it-is-unless-it-must-turn-or-carries-metadata', async () => {
  // Canon's CR3 preview: 1620 wide against the usual 1600, upright, no EXIF of its own.
  const canon = await solidJpeg(1620, 1080, 90);
  const asIs = join(work.path, 'as-is.jpg');
  await renderPreview(canon, asIs, 1600);
  expect((await readFile(asIs)).equals(canon)).toBe(true);
  await renderPreview(canon, join(work.path, 'upright.jpg'), 1600, 1);
  expect((await readFile(join(work.path, 'upright.jpg'))).equals(canon)).toBe(true);
  // Turned by the RAW's orientation, farther over the edge, or carrying EXIF (GPS, serial): made again.
  const turned = join(work.path, 'turned.jpg');
  await renderPreview(canon, turned, 1600, 6);
  expect(await sharp(turned).metadata()).toMatchObject({ width: 1067, height: 1600 });
  const wide = join(work.path, 'wide.jpg');
  await renderPreview(await solidJpeg(1700, 1080, 90), wide, 1600);
  expect(await sharp(wide).metadata()).toMatchObject({ width: 1600 });
  const tagged = await sharp(canon)
    .withExif({ IFD0: { Make: 'Canon', Artist: 'someone' } })
    .jpeg()
    .toBuffer();
  const stripped = join(work.path, 'stripped.jpg');
  await renderPreview(tagged, stripped, 1600);
  const meta = await sharp(stripped).metadata();
  expect(meta.width).toBe(1600);
  expect(meta.exif).toBeUndefined();
});

test('a-raw-preview-is-ready-once-its-bytes-have-arrived-before-the-rest-of-the-file', async () => {
  const preview = await solidJpeg(320, 200, 120);
  const raw = tiffRaw({ preview, thumbnail: await solidJpeg(40, 25, 10), size: 8_000_000 });
  const end = raw.indexOf(preview) + preview.length;
  const got = await stream(PreviewBytes.forFile('IMG_0001.NEF', raw.length)!, raw);
  expect(got.jpeg?.equals(preview)).toBe(true);
  // Settled within the chunk that completed the preview: far from the end of the 8 MB file.
  expect(got.fed).toBeLessThanOrEqual(end + 64 * 1024);
  expect(got.maxHeld).toBeLessThan(2 * 1024 * 1024);
  // What the pipeline hands a tap: the same, before the file's copies are verified. The source holds
  // the rest of the file (past its first MiB, which the metadata head takes) back until the preview is
  // out, so a preview that waited for the rest would never come.
  const card = join(work.path, 'card');
  await mkdir(join(card, 'DCIM'), { recursive: true });
  await writeFile(join(card, 'DCIM', 'IMG_0001.CR2'), raw);
  let collector: PreviewBytes | undefined;
  let tapped!: (p: PreviewBytes) => void;
  const tap = new Promise<PreviewBytes>((r) => (tapped = r));
  const order: string[] = [];
  // (The stream may read ahead before the tap is asked for: it waits for the tap first.)
  const source = new HeldBackSource(card, 1024 * 1024, () => tap.then((p) => p.jpeg).then(() => order.push('preview')));
  const journal = Journal.open(join(work.path, 'state'));
  try {
    const summary = await runIngest({
      sources: [source],
      destinations: [{ path: join(work.path, 'lib') }],
      journal,
      settings: ingestSettings('{name}'),
      logger: silentLogger,
      signal: new AbortController().signal,
      onRead: (f) => {
        collector = PreviewBytes.forFile(f.path, f.size)!;
        tapped(collector);
        return collector;
      },
      onFile: (f: FileOutcome) => order.push(f.state),
    });
    expect(summary.errors).toEqual([]);
    expect(summary.status).toBe('complete');
  } finally {
    journal.close();
  }
  expect(order).toEqual(['preview', 'verified']);
  expect((await collector!.jpeg)?.equals(preview)).toBe(true);
});

test('a-raw-whose-preview-lies-beyond-the-cap-falls-back-to-the-verified-copy-holding-no-more-than-the-cap', async () => {
  const preview = await solidJpeg(320, 200, 90);
  // IFD0's strip is the thumbnail; the next IFD, and the large preview it names, lie past the cap.
  const ifdAt = PREVIEW_HOLD_BYTES - 4096;
  const previewAt = PREVIEW_HOLD_BYTES + 1_000_000;
  const raw = bytes(previewAt + preview.length + 1_000_000, 5);
  raw.write('II', 0, 'latin1');
  raw.writeUInt16LE(42, 2);
  raw.writeUInt32LE(8, 4);
  const thumbnail = await solidJpeg(40, 25, 10);
  writeIfd(
    raw,
    8,
    [
      [0x0201, 200],
      [0x0202, thumbnail.length],
    ],
    ifdAt,
  );
  thumbnail.copy(raw, 200);
  writeIfd(
    raw,
    ifdAt,
    [
      [0x0103, 6],
      [0x0111, previewAt],
      [0x0117, preview.length],
    ],
    0,
  );
  preview.copy(raw, previewAt);
  const got = await stream(PreviewBytes.forFile('IMG_0001.ARW', raw.length)!, raw, 1024 * 1024);
  expect(got.jpeg).toBeUndefined();
  expect(got.maxHeld).toBeGreaterThan(ifdAt);
  expect(got.maxHeld).toBeLessThanOrEqual(PREVIEW_HOLD_BYTES);
  // It gave up once the cap was reached, not at the end of the file.
  expect(got.fed).toBeLessThanOrEqual(PREVIEW_HOLD_BYTES + 1024 * 1024);
  // The verified copy has it: the large preview, not the thumbnail.
  const path = join(work.path, 'IMG_0001.ARW');
  await writeFile(path, raw);
  expect(await writePreview(path, join(work.path, 'p.jpg'), LONG_EDGE)).toBe(true);
  expect(await look(join(work.path, 'p.jpg'))).toMatchObject({ longEdge: LONG_EDGE, red: expect.closeTo(90, -1) });
  // A JPEG larger than the cap is not held at all.
  const big = PreviewBytes.forFile('IMG_0002.JPG', PREVIEW_HOLD_BYTES + 1)!;
  expect(big.held).toBe(0);
  expect(await big.jpeg).toBeUndefined();
});

test('broken-raw-structure-gives-no-preview-and-no-exception', async () => {
  const preview = await solidJpeg(320, 200, 60);
  const good = tiffRaw({ preview, size: 300_000 });
  const cases = new Map<string, Buffer>();
  // IFD0 pointing past the end of the file; an IFD pointing at itself; a preview length past the end.
  const pastEnd = Buffer.from(good);
  pastEnd.writeUInt32LE(good.length + 10, 4);
  cases.set('past-end', pastEnd);
  const loop = Buffer.from(good);
  loop.writeUInt32LE(8, 8 + 2 + 3 * 12);
  cases.set('loop', loop);
  const longPreview = Buffer.from(good);
  longPreview.writeUInt32LE(good.length, 8 + 2 + 2 * 12 + 8);
  cases.set('long-preview', longPreview);
  cases.set('truncated', good.subarray(0, 20));
  for (const [name, data] of cases) {
    const read = (o: number, l: number): Buffer | undefined => (o + l <= data.length ? data.subarray(o, o + l) : undefined);
    const found = name === 'loop' ? { found: { offset: good.indexOf(preview), length: preview.length } } : { none: { beyond: false } };
    expect(findEmbeddedPreview(read, data.length), name).toEqual(found);
    const got = await stream(PreviewBytes.forFile(`${name}.CR2`, data.length)!, data);
    expect(name === 'loop' ? got.jpeg?.equals(preview) : got.jpeg, name).toBe(name === 'loop' ? true : undefined);
  }
});

/** Writes an IFD of LONG entries at `at`. */
function writeIfd(buf: Buffer, at: number, entries: Array<[number, number]>, next: number): void {
  buf.writeUInt16LE(entries.length, at);
  entries.forEach(([tag, value], i) => {
    const e = at + 2 + 12 * i;
    buf.writeUInt16LE(tag, e);
    buf.writeUInt16LE(4, e + 2);
    buf.writeUInt32LE(1, e + 4);
    buf.writeUInt32LE(value, e + 8);
  });
  buf.writeUInt32LE(next, at + 2 + 12 * entries.length);
}

/** A card whose files stream their first `first` bytes, then the rest only once `release()` has resolved. */
class HeldBackSource extends FolderSource {
  constructor(
    root: string,
    private readonly first: number,
    private readonly release: () => Promise<unknown>,
  ) {
    super(root);
  }

  override async open(item: SourceItem, opts?: OpenOptions): Promise<Readable> {
    const whole = await super.open(item, opts);
    const chunks: Buffer[] = [];
    for await (const c of whole) chunks.push(Buffer.from(c as Buffer));
    const all = Buffer.concat(chunks);
    const { first, release } = this;
    return Readable.from(
      (async function* () {
        yield all.subarray(0, first);
        await release();
        yield all.subarray(first);
      })(),
    );
  }
}

test('a-jpegs-size-is-read-from-its-frame-header-past-an-exif-segment-and-garbage-has-none', async () => {
  expect(jpegSize(await solidJpeg(320, 200, 90))).toEqual({ width: 320, height: 200 });
  // EXIF (APP1) comes before the frame header: skipped whole.
  const withExif = await sharp(await solidJpeg(120, 500, 10))
    .withMetadata({ orientation: 6 })
    .jpeg()
    .toBuffer();
  expect(withExif.indexOf('Exif')).toBeGreaterThan(0);
  expect(jpegSize(withExif)).toEqual({ width: 120, height: 500 });
  expect(jpegSize(Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xdb]), Buffer.alloc(4000, 0x5a)]))).toBeUndefined();
  expect(jpegSize(Buffer.from('not a jpeg'))).toBeUndefined();
});

test('sharp-is-not-loaded-on-an-x86-cpu-without-sse4-2-and-is-everywhere-else', () => {
  // QEMU's default CPU (qemu64): libvips dies there with SIGILL, which no catch survives.
  const qemu64 =
    'processor\t: 0\nmodel name\t: QEMU Virtual CPU version 2.5+\nflags\t\t: fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 syscall nx lm nopl cpuid pni cx16 hypervisor lahf_lm svm\n\n';
  expect(sharpCpuProblem(qemu64)).toContain('lacks SSE4.2');
  expect(sharpCpuProblem(qemu64.replace('cx16', 'cx16 sse4_1 sse4_2 popcnt'))).toBeUndefined();
  // ARM lists "Features", not "flags"; nothing to check there, nor without /proc.
  expect(sharpCpuProblem('processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n')).toBeUndefined();
  expect(sharpCpuProblem(undefined)).toBeUndefined();
});
