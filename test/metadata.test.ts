import fc from 'fast-check';
import sharp from 'sharp';
import { afterEach, describe, expect, test } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { canonCr3Tiffs, METADATA_HEAD_BYTES, readCaptureMetadata, type CaptureMetadata } from '../src/ingest/metadata.js';
import { instantOf, wallClockAt } from '../src/time-zone.js';
import { garbleExif, rawTiffHead, wavHeader, xmpSidecar } from '../src/sample/content.js';
import { Prng } from '../src/sample/prng.js';
import { cr3Head } from '../src/sample/cr3.js';
import { asciiEntry, buildTiff } from '../src/sample/tiff.js';

const MTIME = Date.UTC(2021, 6, 1, 12, 0, 0);
const FALLBACK = { mtimeMs: MTIME };

const camera = { make: 'Canon', model: 'Canon EOS R5', serial: '032021001234', lens: 'RF24-70mm F2.8 L IS USM' };

/** A sharp-made JPEG with the given EXIF (IFD2 is sharp's name for the EXIF IFD). */
async function jpeg(ifd0: Record<string, string>, ifd2: Record<string, string>): Promise<Buffer> {
  return sharp({ create: { width: 24, height: 16, channels: 3, background: { r: 10, g: 120, b: 200 } } })
    .jpeg({ quality: 70 })
    .withExif({ IFD0: ifd0, IFD2: ifd2 })
    .toBuffer();
}

const tiffWith = (exif: Parameters<typeof buildTiff>[1], ifd0 = [asciiEntry(0x010f, 'Canon'), asciiEntry(0x0110, 'Canon EOS R5')]): Buffer => buildTiff(ifd0, exif);

function expectMtimeFallback(m: CaptureMetadata): void {
  expect(m.dateSource).toBe('mtime');
  expect(m.capturedAt.getTime()).toBe(MTIME);
}

describe('capture metadata from a head buffer', () => {
  const savedTz = process.env['TZ'];
  afterEach(() => {
    if (savedTz === undefined) delete process.env['TZ'];
    else process.env['TZ'] = savedTz;
  });

  test('jpeg-exif-fields-are-read-back-with-the-recorded-offset', async () => {
    const buf = await jpeg(
      { Make: camera.make, Model: camera.model },
      { DateTimeOriginal: '2024:05:06 07:08:09', OffsetTimeOriginal: '+02:00', BodySerialNumber: camera.serial, LensModel: camera.lens },
    );
    const m = await readCaptureMetadata(buf, FALLBACK, { timeZone: 'America/New_York' });
    expect(m).toEqual({
      capturedAt: new Date('2024-05-06T05:08:09Z'),
      local: { year: 2024, month: 5, day: 6, hour: 7, minute: 8, second: 9, millisecond: 0 },
      utcOffsetMinutes: 120,
      offsetSource: 'exif',
      dateSource: 'exif',
      ...camera,
      warnings: [],
    });
  });

  test('tiff-based-raw-exif-is-read-back', async () => {
    const head = await rawTiffHead(Prng.from(1, 't'), { ...camera, dateTimeOriginal: '2023:12:31 23:59:58', offsetTimeOriginal: '-05:30' });
    expect((await sharp(head).metadata()).format).toBe('tiff');
    const m = await readCaptureMetadata(head, FALLBACK);
    expect(m.dateSource).toBe('exif');
    expect(m.capturedAt.toISOString()).toBe('2024-01-01T05:29:58.000Z');
    expect(m.utcOffsetMinutes).toBe(-330);
    expect([m.make, m.model, m.serial, m.lens]).toEqual([camera.make, camera.model, camera.serial, camera.lens]);
    expect(m.warnings).toEqual([]);
  });

  test('canon-cr3-exif-is-read-from-its-cmt-boxes', async () => {
    const head = cr3Head({ ...camera, dateTimeOriginal: '2024:05:06 07:08:09', offsetTimeOriginal: '+09:00' }, 1_000_000);
    expect(head.toString('latin1', 4, 12)).toBe('ftypcrx ');
    const m = await readCaptureMetadata(head, FALLBACK);
    expect([m.dateSource, m.capturedAt.toISOString(), m.utcOffsetMinutes]).toEqual(['exif', '2024-05-05T22:08:09.000Z', 540]);
    expect([m.make, m.model, m.serial, m.lens]).toEqual([camera.make, camera.model, camera.serial, camera.lens]);
    expect(m.warnings).toEqual([]);
  });

  test('a-cr3-cut-inside-its-metadata-or-without-canon-boxes-falls-back-to-mtime', async () => {
    const head = cr3Head({ ...camera, dateTimeOriginal: '2024:05:06 07:08:09' }, 1_000_000);
    const cut = await readCaptureMetadata(head.subarray(0, 150), FALLBACK);
    expectMtimeFallback(cut);
    const cmt = canonCr3Tiffs(head);
    expect(cmt.ifd0?.subarray(0, 4).toString('latin1')).toBe('II*\0');
    const bare = Buffer.from('\0\0\0\x14ftypcrx \0\0\0\x01crx \0\0\0\x08moov', 'latin1');
    const m = await readCaptureMetadata(bare, FALLBACK);
    expectMtimeFallback(m);
    expect(m.warnings).toEqual(['CR3 without Canon metadata boxes (CMT1/CMT2) in the head']);
  });

  test('a-date-without-offset-is-camera-local-time-in-the-configured-zone', async () => {
    const buf = await jpeg({ Model: 'X' }, { DateTimeOriginal: '2024:01:15 09:30:00' });
    const ny = await readCaptureMetadata(buf, FALLBACK, { timeZone: 'America/New_York' });
    expect(ny.capturedAt.toISOString()).toBe('2024-01-15T14:30:00.000Z');
    expect([ny.utcOffsetMinutes, ny.offsetSource]).toEqual([-300, 'zone']);
    expect(ny.local.hour).toBe(9);
    const tokyo = await readCaptureMetadata(buf, FALLBACK, { timeZone: 'Asia/Tokyo' });
    expect(tokyo.capturedAt.toISOString()).toBe('2024-01-15T00:30:00.000Z');
    expect(tokyo.local).toEqual(ny.local);
  });

  test('a-date-without-offset-and-without-configured-zone-uses-the-system-zone', async () => {
    process.env['TZ'] = 'Australia/Adelaide';
    const buf = await jpeg({ Model: 'X' }, { DateTimeOriginal: '2024:01:15 09:30:00' });
    const m = await readCaptureMetadata(buf, FALLBACK);
    expect(m.utcOffsetMinutes).toBe(630);
    expect(m.capturedAt.toISOString()).toBe('2024-01-14T23:00:00.000Z');
  });

  test('summer-time-is-applied-by-date-in-the-zone', async () => {
    const buf = await jpeg({ Model: 'X' }, { DateTimeOriginal: '2024:07:15 09:30:00' });
    const m = await readCaptureMetadata(buf, FALLBACK, { timeZone: 'Europe/Berlin' });
    expect([m.capturedAt.toISOString(), m.utcOffsetMinutes]).toEqual(['2024-07-15T07:30:00.000Z', 120]);
  });

  test('a-wall-time-in-a-dst-gap-or-overlap-maps-like-temporal-compatible', () => {
    const w = (hour: number, minute: number, month = 3, day = 31) => ({ year: 2024, month, day, hour, minute, second: 0, millisecond: 0 });
    // 02:30 never happened in Berlin on 2024-03-31: the pre-jump offset puts it at 03:30 CEST.
    expect(new Date(instantOf(w(2, 30), 'Europe/Berlin').epochMs).toISOString()).toBe('2024-03-31T01:30:00.000Z');
    // 02:30 happened twice on 2024-10-27: the earlier (CEST) one is taken.
    expect(instantOf(w(2, 30, 10, 27), 'Europe/Berlin')).toEqual({ epochMs: Date.parse('2024-10-27T00:30:00Z'), offsetMinutes: 120 });
    expect(instantOf(w(12, 0), 'UTC')).toEqual({ epochMs: Date.parse('2024-03-31T12:00:00Z'), offsetMinutes: 0 });
  });

  test('create-date-is-used-when-date-time-original-is-missing', async () => {
    const buf = await jpeg({ Model: 'X' }, { DateTimeDigitized: '2022:02:03 04:05:06', OffsetTimeDigitized: '+00:00' });
    const m = await readCaptureMetadata(buf, FALLBACK);
    expect([m.dateSource, m.capturedAt.toISOString()]).toEqual(['exif', '2022-02-03T04:05:06.000Z']);
  });

  test('a-broken-date-time-original-falls-through-to-create-date-with-a-warning', async () => {
    const buf = await jpeg({ Model: 'X' }, { DateTimeOriginal: '0000:00:00 00:00:00', DateTimeDigitized: '2022:02:03 04:05:06' });
    const m = await readCaptureMetadata(buf, FALLBACK, { timeZone: 'UTC' });
    expect(m.capturedAt.toISOString()).toBe('2022-02-03T04:05:06.000Z');
    expect(m.warnings).toEqual([expect.stringMatching(/^DateTimeOriginal year 0 /)]);
  });

  test('sub-seconds-are-kept', async () => {
    const buf = await jpeg({ Model: 'X' }, { DateTimeOriginal: '2022:02:03 04:05:06', SubSecTimeOriginal: '25', OffsetTimeOriginal: '+00:00' });
    expect((await readCaptureMetadata(buf, FALLBACK)).capturedAt.toISOString()).toBe('2022-02-03T04:05:06.250Z');
  });

  test('an-unknown-time-zone-is-a-config-error', async () => {
    const err = await readCaptureMetadata(Buffer.alloc(0), FALLBACK, { timeZone: 'Mars/Olympus_Mons' }).catch((e: unknown) => e);
    expect(isShuttleError(err, 'CONFIG_INVALID')).toBe(true);
    expect((err as Error).message).toContain('"Mars/Olympus_Mons"');
  });

  test('absurd-years-fall-back-to-mtime-with-a-warning', async () => {
    for (const date of ['0000:01:01 00:00:00', '9999:12:31 23:59:59', '1899:12:31 23:59:59']) {
      const m = await readCaptureMetadata(await jpeg({ Model: 'X' }, { DateTimeOriginal: date }), FALLBACK);
      expectMtimeFallback(m);
      expect(m.warnings.join(' '), date).toMatch(/DateTimeOriginal year \d+ is outside 1900–2099/);
      expect(m.model).toBe('X');
    }
  });

  test('impossible-and-unparseable-dates-fall-back-to-mtime-with-a-warning', async () => {
    for (const [date, why] of [
      ['2024:02:30 10:00:00', /impossible date/],
      ['2024:13:01 10:00:00', /impossible date/],
      ['2024:01:01 24:00:00', /impossible date/],
      ['    :  :     :  :  ', /not a date/],
      ['yesterday', /not a date/],
    ] as const) {
      const m = await readCaptureMetadata(tiffWith([asciiEntry(0x9003, date)]), FALLBACK);
      expectMtimeFallback(m);
      expect(m.warnings.join(' '), date).toMatch(why);
    }
  });

  test('a-malformed-offset-is-ignored-with-a-warning-and-the-zone-applies', async () => {
    const m = await readCaptureMetadata(tiffWith([asciiEntry(0x9003, '2024:01:01 12:00:00'), asciiEntry(0x9011, '+99:00')]), FALLBACK, { timeZone: 'UTC' });
    expect([m.dateSource, m.offsetSource, m.capturedAt.toISOString()]).toEqual(['exif', 'zone', '2024-01-01T12:00:00.000Z']);
    expect(m.warnings).toEqual([expect.stringContaining('offset "+99:00" is malformed')]);
  });

  test('a-non-string-model-is-ignored-with-a-warning', async () => {
    const shortModel = { tag: 0x0110, type: 3, count: 2, data: Buffer.from([1, 0, 2, 0]) };
    const m = await readCaptureMetadata(tiffWith([asciiEntry(0x9003, '2024:01:01 12:00:00')], [asciiEntry(0x010f, 'Canon'), shortModel]), FALLBACK);
    expect(m.model).toBeUndefined();
    expect(m.make).toBe('Canon');
    expect(m.dateSource).toBe('exif');
    expect(m.warnings).toEqual([expect.stringMatching(/^Model is not text/)]);
  });

  test('a-very-long-string-is-cut-with-a-warning', async () => {
    const m = await readCaptureMetadata(tiffWith([asciiEntry(0xa431, 'S'.repeat(5000))]), FALLBACK);
    expect(m.serial).toBe('S'.repeat(64));
    expect(m.warnings).toEqual([expect.stringContaining('BodySerialNumber is 5000 characters long')]);
  });

  test('control-characters-in-strings-are-removed', async () => {
    const m = await readCaptureMetadata(tiffWith([], [asciiEntry(0x010f, 'Can\u0001on  \u0007'), asciiEntry(0x0110, '  EOS\tR5 ')]), FALLBACK);
    expect([m.make, m.model]).toEqual(['Can on', 'EOS R5']);
  });

  test('an-exif-pointer-past-the-head-falls-back-to-mtime-with-a-warning', async () => {
    const head = buildTiff([asciiEntry(0x010f, 'Canon'), { tag: 0x8769, type: 4, count: 1, data: Buffer.from([0, 0, 0x10, 0]) }]);
    const m = await readCaptureMetadata(head, FALLBACK);
    expectMtimeFallback(m);
    expect(m.warnings.join(' ')).toMatch(/EXIF/);
  });

  test('a-value-offset-past-the-head-falls-back-to-mtime-with-a-warning', async () => {
    const m = await readCaptureMetadata(tiffWith([{ tag: 0x9003, type: 2, count: 20, valueOffset: 0x7fff_0000 }]), FALLBACK);
    expectMtimeFallback(m);
    expect(m.warnings.join(' ')).toMatch(/EXIF .*unreadable/);
  });

  test('a-truncated-head-falls-back-to-mtime-with-a-warning', async () => {
    const buf = await jpeg({ Model: 'X' }, { DateTimeOriginal: '2024:05:06 07:08:09' });
    const m = await readCaptureMetadata(buf.subarray(0, 60), FALLBACK);
    expectMtimeFallback(m);
    expect(m.warnings).toHaveLength(1);
  });

  test('garbage-inside-the-exif-segment-falls-back-to-mtime-with-a-warning', async () => {
    const buf = await jpeg({ Model: 'X' }, { DateTimeOriginal: '2024:05:06 07:08:09' });
    expect(garbleExif(buf, Prng.from(3, 'g'))).toBe(true);
    const m = await readCaptureMetadata(buf, FALLBACK);
    expectMtimeFallback(m);
    expect(m.warnings.length).toBeGreaterThan(0);
  });

  // How fast: bench/steps.ts.
  test('sidecars-and-unknown-files-fall-back-to-mtime-quietly', async () => {
    const xmp = xmpSidecar({ ...camera, dateTimeOriginal: '2024:05:06 07:08:09' }, 3);
    const wav = Buffer.concat([wavHeader(1000), Buffer.alloc(1000)]);
    for (const head of [xmp, wav, Buffer.from('hello'), Buffer.alloc(0), Prng.from(1, 'x').bytes(METADATA_HEAD_BYTES)]) {
      const m = await readCaptureMetadata(head, FALLBACK, { timeZone: 'Europe/Paris' });
      expectMtimeFallback(m);
      expect(m.warnings).toEqual([]);
      expect(m.local).toEqual({ year: 2021, month: 7, day: 1, hour: 14, minute: 0, second: 0, millisecond: 0 });
    }
  });

  test('a-jpeg-thumbnail-thm-with-exif-gives-its-capture-date', async () => {
    // Canon THM files are small JPEGs with the clip's EXIF: content decides, not the extension.
    const thm = await jpeg({ Model: 'X' }, { DateTimeOriginal: '2020:01:01 00:00:00', OffsetTimeOriginal: '+00:00' });
    expect((await readCaptureMetadata(thm, FALLBACK)).capturedAt.toISOString()).toBe('2020-01-01T00:00:00.000Z');
  });

  test('an-unusable-mtime-falls-back-to-the-epoch-with-a-warning', async () => {
    const m = await readCaptureMetadata(Buffer.alloc(0), { mtimeMs: Number.NaN }, { timeZone: 'UTC' });
    expect(m.capturedAt.getTime()).toBe(0);
    expect(m.warnings).toHaveLength(1);
    expect((await readCaptureMetadata(Buffer.alloc(0), { mtimeMs: 1e20 })).capturedAt.getTime()).toBe(0);
  });

  test('mtime-wall-clock-is-rendered-in-the-configured-zone', () => {
    expect(wallClockAt(Date.UTC(2024, 0, 1, 0, 30), 'America/Los_Angeles')).toEqual({ year: 2023, month: 12, day: 31, hour: 16, minute: 30, second: 0, millisecond: 0 });
  });

  test('arbitrary-bytes-never-throw', async () => {
    const prefixes = [
      Buffer.alloc(0),
      Buffer.from([0xff, 0xd8, 0xff, 0xe1]),
      Buffer.from('II*\0'),
      Buffer.from('MM\0*'),
      Buffer.from('\0\0\0\x18ftypheic'),
      Buffer.from('\0\0\0\x18ftypcrx '),
    ];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...prefixes), fc.uint8Array({ maxLength: 2048 }), async (prefix, body) => {
        const m = await readCaptureMetadata(Buffer.concat([prefix, body]), FALLBACK, { timeZone: 'UTC' });
        expect(Number.isFinite(m.capturedAt.getTime())).toBe(true);
        expect(m.local.year).toBeGreaterThanOrEqual(1900);
        expect(m.local.year).toBeLessThanOrEqual(2099);
      }),
      { numRuns: 400 },
    );
  });

  test('mutated-and-truncated-real-exif-never-throws', async () => {
    const base = await jpeg({ Make: 'Canon', Model: 'M' }, { DateTimeOriginal: '2024:05:06 07:08:09', OffsetTimeOriginal: '+02:00', BodySerialNumber: '1' });
    const tiff = await rawTiffHead(Prng.from(2, 'm'), { ...camera, dateTimeOriginal: '2024:05:06 07:08:09' });
    const cr3 = cr3Head({ ...camera, dateTimeOriginal: '2024:05:06 07:08:09' }, 4096);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(base, tiff, cr3),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 12 }),
        fc.option(fc.nat(), { nil: undefined }),
        async (src, flips, cut) => {
          const b = Buffer.from(src);
          // Flips land in the first 600 bytes, where the EXIF structure lives.
          for (const [at, v] of flips) b[at % Math.min(600, b.length)] = v;
          const head = cut === undefined ? b : b.subarray(0, cut % b.length);
          const m = await readCaptureMetadata(head, FALLBACK, { timeZone: 'UTC' });
          expect(Number.isFinite(m.capturedAt.getTime())).toBe(true);
          expect(m.dateSource === 'exif' || m.capturedAt.getTime() === MTIME).toBe(true);
          for (const s of [m.make, m.model, m.serial, m.lens]) if (s !== undefined) expect([...s].length).toBeLessThanOrEqual(64);
        },
      ),
      { numRuns: 400 },
    );
  });

  test('the-recommended-head-size-covers-sharp-made-jpeg-and-tiff-exif-with-room-to-spare', async () => {
    const exif = { ...camera, dateTimeOriginal: '2024:05:06 07:08:09', offsetTimeOriginal: '+02:00' };
    const files = {
      jpeg: await jpeg(
        { Make: camera.make, Model: camera.model },
        { DateTimeOriginal: exif.dateTimeOriginal, OffsetTimeOriginal: '+02:00', BodySerialNumber: camera.serial, LensModel: camera.lens },
      ),
      tiff: await rawTiffHead(Prng.from(1, 'h'), exif),
    };
    for (const [kind, buf] of Object.entries(files)) {
      // Smallest head that yields every field (binary search; results are monotonic in practice).
      let lo = 1;
      let hi = buf.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        const m = await readCaptureMetadata(buf.subarray(0, mid), FALLBACK);
        if (m.dateSource === 'exif' && m.lens !== undefined) hi = mid;
        else lo = mid + 1;
      }
      expect(lo, kind).toBeLessThan(4096);
      expect(METADATA_HEAD_BYTES, kind).toBeGreaterThanOrEqual(64 * lo);
    }
  });
});
