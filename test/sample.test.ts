import { execFile } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Command, CommanderError } from 'commander';
import exifr from 'exifr';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { parseByteSize, sampleCardCommand } from '../src/cli/sample.js';
import { isShuttleError } from '../src/errors.js';
import { readCaptureMetadata } from '../src/ingest/metadata.js';
import { groupItems } from '../src/ingest/pairing.js';
import { makeSampleCard } from '../src/sample/card.js';
import { Prng } from '../src/sample/prng.js';
import { tempDir } from './support/tree.js';

const run = promisify(execFile);

let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-sample-');
});
afterEach(async () => {
  await work.cleanup();
});

/** Every regular file under root, '/'-relative, as the filesystem lists it. */
async function filesOnDisk(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(root, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name).slice(root.length + 1));
  }
  return out.sort();
}

describe('sample card', () => {
  test('card-has-dcim-pairs-repeated-names-sidecars-voice-memo-and-misc', async () => {
    const card = await makeSampleCard(work.path, { count: 4 });
    expect(card.files.map((f) => f.path)).toEqual([
      'DCIM/100CANON/IMG_0001.CR2',
      'DCIM/100CANON/IMG_0001.JPG',
      'DCIM/100CANON/IMG_0001.WAV',
      'DCIM/100CANON/IMG_0001.XMP',
      'DCIM/100CANON/IMG_0002.CR2',
      'DCIM/100CANON/IMG_0002.JPG',
      'DCIM/101CANON/IMG_0001.CR2',
      'DCIM/101CANON/IMG_0001.CR2.xmp',
      'DCIM/101CANON/IMG_0001.JPG',
      'DCIM/101CANON/IMG_0002.CR2',
      'DCIM/101CANON/IMG_0002.JPG',
      'MISC/AUTPRINT.MRK',
    ]);
    expect(await filesOnDisk(work.path)).toEqual(card.files.map((f) => f.path));
    const hash = (p: string) => card.files.find((f) => f.path === p)!.sha256;
    expect(hash('DCIM/101CANON/IMG_0001.JPG')).not.toBe(hash('DCIM/100CANON/IMG_0001.JPG'));
    expect(hash('DCIM/101CANON/IMG_0001.CR2')).not.toBe(hash('DCIM/100CANON/IMG_0001.CR2'));
    const groups = groupItems(card.files.map((f) => ({ path: f.path, size: f.size, mtimeMs: f.mtimeMs })));
    expect(groups.map((g) => g.members.length)).toEqual([4, 2, 3, 2, 1]);
  });

  test('reported-sha256-and-sizes-match-sha256sum-and-stat', async () => {
    const card = await makeSampleCard(work.path, { count: 3, rawSize: 300_000, jpegSize: 50_000, unicodeNames: true, emptyFile: true });
    const { stdout } = await run('sha256sum', ['--', ...card.files.map((f) => f.path)], { cwd: work.path, maxBuffer: 1 << 24 });
    const fromTool = new Map(
      stdout
        .trim()
        .split('\n')
        .map((l) => [l.slice(66), l.slice(0, 64)] as const),
    );
    for (const f of card.files) {
      expect(fromTool.get(f.path), f.path).toBe(f.sha256);
      expect((await stat(join(work.path, f.path))).size, f.path).toBe(f.size);
    }
    expect(fromTool.size).toBe(card.files.length);
  });

  test('jpegs-and-raws-are-real-images-whose-exif-reads-back', async () => {
    const card = await makeSampleCard(work.path, { count: 2, rawSize: 200_000, jpegSize: 120_000, offsetTime: '-07:00', start: '2023:11:05 18:30:00' });
    for (const path of ['DCIM/100CANON/IMG_0001.JPG', 'DCIM/101CANON/IMG_0001.CR2']) {
      const buf = await readFile(join(work.path, path));
      const meta = await sharp(buf).metadata();
      expect(meta.format, path).toBe(path.endsWith('.JPG') ? 'jpeg' : 'tiff');
      const m = await readCaptureMetadata(buf.subarray(0, 4096), { mtimeMs: 0 });
      expect([m.dateSource, m.make, m.model, m.serial, m.lens]).toEqual(['exif', 'Canon', 'Canon EOS R5', '032021001234', 'RF24-70mm F2.8 L IS USM']);
      expect(m.warnings).toEqual([]);
      const expected = path.startsWith('DCIM/100') ? '2023-11-06T01:30:00.000Z' : '2023-11-06T01:30:37.000Z';
      expect(m.capturedAt.toISOString(), path).toBe(expected);
      const f = card.files.find((x) => x.path === path)!;
      expect(f.mtimeMs).toBe(Date.parse(expected));
      expect((await stat(join(work.path, path))).mtimeMs).toBe(f.mtimeMs);
    }
    // A JPEG padded past its EOI is still a whole JPEG to a decoder.
    const padded = await readFile(join(work.path, 'DCIM/100CANON/IMG_0001.JPG'));
    expect(padded.length).toBe(120_000);
    expect((await sharp(padded).raw().toBuffer({ resolveWithObject: true })).info.width).toBe(96);
    expect(await exifr.parse(padded, ['DateTimeOriginal'])).toBeDefined();
  });

  test('cr3-flavour-writes-cr3-files-whose-exif-reads-back', async () => {
    const card = await makeSampleCard(work.path, { count: 3, rawFormat: 'CR3', rawSize: 500_000 });
    const raws = card.files.filter((f) => f.path.endsWith('.CR3'));
    expect(raws.map((f) => f.path)).toEqual(['DCIM/100CANON/IMG_0001.CR3', 'DCIM/100CANON/IMG_0002.CR3', 'DCIM/101CANON/IMG_0001.CR3']);
    expect(card.files.map((f) => f.path)).toContain('DCIM/101CANON/IMG_0001.CR3.xmp');
    const buf = await readFile(join(work.path, raws[0]!.path));
    expect(buf.length).toBe(500_000);
    const m = await readCaptureMetadata(buf.subarray(0, 8192), { mtimeMs: 0 });
    expect([m.dateSource, m.model, m.capturedAt.getTime()]).toEqual(['exif', 'Canon EOS R5', raws[0]!.mtimeMs]);
  });

  test('same-seed-gives-the-same-bytes-and-another-seed-different-ones', async () => {
    const a = await makeSampleCard(join(work.path, 'a'), { count: 2, seed: 7, rawSize: 70_000 });
    const b = await makeSampleCard(join(work.path, 'b'), { count: 2, seed: 7, rawSize: 70_000 });
    const c = await makeSampleCard(join(work.path, 'c'), { count: 2, seed: 8, rawSize: 70_000 });
    expect(b.files).toEqual(a.files);
    const jpegA = a.files.find((f) => f.path.endsWith('IMG_0001.JPG'))!;
    expect(c.files.find((f) => f.path === jpegA.path)!.sha256).not.toBe(jpegA.sha256);
  });

  test('broken-exif-option-garbles-the-last-jpegs-so-metadata-falls-back-to-mtime', async () => {
    const card = await makeSampleCard(work.path, { count: 3, brokenExif: 1 });
    const broken = card.files.filter((f) => f.brokenExif === true).map((f) => f.path);
    expect(broken).toEqual(['DCIM/101CANON/IMG_0001.JPG']);
    const f = card.files.find((x) => x.path === broken[0])!;
    const m = await readCaptureMetadata(await readFile(join(work.path, f.path)), { mtimeMs: f.mtimeMs });
    expect(m.dateSource).toBe('mtime');
    expect(m.warnings.length).toBeGreaterThan(0);
    expect((await sharp(await readFile(join(work.path, f.path))).metadata()).format).toBe('jpeg');
  });

  test('unicode-empty-and-hostile-names-are-written-where-the-filesystem-allows', async () => {
    const card = await makeSampleCard(work.path, { count: 1, unicodeNames: true, emptyFile: true, hostileNames: true });
    const paths = card.files.map((f) => f.path);
    expect(paths).toContain('MISC/Été – 日本/Café_0001.JPG');
    expect(paths).toContain('MISC/Re\u0301sume\u0301 – メモ.txt'); // stays NFD on disk
    expect(card.files.find((f) => f.path === 'MISC/EMPTY.DAT')).toMatchObject({ size: 0, sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' });
    const hostile = paths.filter((p) => p.startsWith('MISC/HOSTILE/'));
    expect(hostile.length + card.skippedNames.length).toBe(12);
    expect(await filesOnDisk(work.path)).toEqual(paths);
    // ext4/tmpfs store every byte but '/' and NUL, so here nothing is refused.
    const fsType = (await run('stat', ['-f', '-c', '%T', work.path])).stdout.trim();
    if (['ext2/ext3', 'tmpfs', 'xfs', 'btrfs', 'overlayfs'].includes(fsType)) {
      expect(card.skippedNames).toEqual([]);
      expect(hostile).toContain('MISC/HOSTILE/ctrl\u0001char.JPG');
      expect(hostile).toContain('MISC/HOSTILE/a:b*c?.JPG');
    }
  });

  // How fast: bench/steps.ts.
  test('big-files-are-written-exactly-to-size', async () => {
    const card = await makeSampleCard(work.path, { count: 2, rawSize: 40 * 1024 * 1024 + 3, jpegSize: 8_000_001, sidecars: false, voiceMemo: false });
    const total = card.files.reduce((s, f) => s + f.size, 0);
    expect(total).toBe(2 * (40 * 1024 * 1024 + 3) + 2 * 8_000_001 + card.files.find((f) => f.path === 'MISC/AUTPRINT.MRK')!.size);
    for (const f of card.files) expect((await stat(join(work.path, f.path))).size, f.path).toBe(f.size);
  });

  test('bad-options-are-usage-errors', async () => {
    for (const opts of [{ count: 0 }, { count: 1.5 }, { rawSize: -1 }, { start: 'yesterday' }, { offsetTime: '2h' }, { count: 5000, perFolder: 1 }]) {
      const err = await makeSampleCard(work.path, opts).catch((e: unknown) => e);
      expect(isShuttleError(err, 'USAGE'), JSON.stringify(opts)).toBe(true);
    }
  });

  test('an-aborted-signal-stops-generation', async () => {
    const ac = new AbortController();
    ac.abort();
    const err = await makeSampleCard(work.path, { signal: ac.signal }).catch((e: unknown) => e);
    expect(isShuttleError(err, 'ABORTED')).toBe(true);
  });
});

describe('sample content generator', () => {
  test('prng-fill-matches-its-word-by-word-sequence-and-seeds-differ-by-label', () => {
    const a = Prng.from(9, 'x');
    const b = Prng.from(9, 'x');
    const buf = Buffer.alloc(4099);
    a.fill(buf);
    for (let i = 0; i < 1024; i++) expect(buf.readUInt32LE(i * 4)).toBe(b.nextU32());
    expect(a.nextU32()).not.toBe(Prng.from(9, 'y').nextU32());
  });
});

describe('shuttle sample command', () => {
  const program = (out: string[]) => {
    const p = new Command('shuttle').exitOverride();
    p.addCommand(
      sampleCardCommand((t) => out.push(t))
        .exitOverride()
        .configureOutput({ writeErr: () => {}, writeOut: () => {} }),
    );
    return p;
  };

  test('sample-command-writes-a-card-and-prints-one-summary-line', async () => {
    const out: string[] = [];
    await program(out).parseAsync(['sample', work.path, '--count', '2', '--raw-size', '100KiB', '--jpeg-size', '20kb', '--seed', '5'], { from: 'user' });
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(/^sample card: 7 files, [\d.]+ KiB in .+ \(seed 5, [\d.]+ s\)\n$/);
    expect((await stat(join(work.path, 'DCIM/100CANON/IMG_0001.CR2'))).size).toBe(102_400);
    expect((await stat(join(work.path, 'DCIM/101CANON/IMG_0001.JPG'))).size).toBe(20_000);
  });

  test('sample-command-rejects-a-bad-size', async () => {
    const err = await program([])
      .parseAsync(['sample', work.path, '--raw-size', 'huge'], { from: 'user' })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommanderError);
    expect((err as CommanderError).code).toBe('commander.invalidArgument');
    expect(await readdir(work.path)).toEqual([]);
  });

  test('byte-sizes-accept-decimal-and-binary-units', () => {
    expect(parseByteSize('25000000')).toBe(25_000_000);
    expect(parseByteSize('25MB')).toBe(25_000_000);
    expect(parseByteSize('24MiB')).toBe(24 * 1024 * 1024);
    expect(parseByteSize('8m')).toBe(8 * 1024 * 1024);
    expect(() => parseByteSize('1.5GB')).toThrow(/byte count/);
    expect(() => parseByteSize('12 parsecs')).toThrow(/byte count/);
  });
});
