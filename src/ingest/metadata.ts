import { checkTimeZone, instantOf, wallAsUtcMs, wallClockAt, zoneOffsetMs, type WallClock } from '../time-zone.js';

/**
 * How many leading bytes of a file the pipeline buffers for readCaptureMetadata.
 * Measured (test/metadata.test.ts): sharp-made JPEGs need about 0.5 KiB and TIFF-based RAWs about
 * 3 KiB, since their EXIF follows the JPEG SOI or the TIFF header directly; CR3 keeps its CMT boxes in
 * the first KiBs as well. Camera files are bigger up front: a JPEG's EXIF APP1 may fill its 64 KiB
 * (maker notes, thumbnail) behind other APPn segments, and a TIFF-based RAW or DNG may put its EXIF IFD
 * after XMP or a preview. 256 KiB covers that with room to spare and is nothing next to a 25 MB RAW;
 * metadata stored past it (some HEIF files keep EXIF at the end) falls back to the file time, with a warning.
 */
export const METADATA_HEAD_BYTES = 256 * 1024;

export interface CaptureMetadata {
  /** The capture instant. */
  capturedAt: Date;
  /** The same moment on the camera's (or, for mtime, the configured zone's) clock. */
  local: WallClock;
  /** `local` minus UTC, in minutes. */
  utcOffsetMinutes: number;
  /** 'exif' when the camera recorded the offset (OffsetTimeOriginal); 'zone' when it came from the time zone. */
  offsetSource: 'exif' | 'zone';
  dateSource: 'exif' | 'mtime';
  make?: string | undefined;
  model?: string | undefined;
  serial?: string | undefined;
  lens?: string | undefined;
  /** What was wrong with the metadata that was found (unreadable EXIF, absurd date, bad string). */
  warnings: string[];
}

export interface MetadataOptions {
  /** IANA zone for capture times the camera recorded without an offset; the system zone when absent. */
  timeZone?: string | undefined;
}

const TAG = {
  Make: 0x010f,
  Model: 0x0110,
  DateTimeOriginal: 0x9003,
  CreateDate: 0x9004,
  OffsetTimeOriginal: 0x9011,
  OffsetTimeDigitized: 0x9012,
  SubSecTimeOriginal: 0x9291,
  SubSecTimeDigitized: 0x9292,
  BodySerialNumber: 0xa431,
  LensModel: 0xa434,
} as const;

const IFD0_TAGS = [TAG.Make, TAG.Model];
const EXIF_TAGS = [
  TAG.DateTimeOriginal,
  TAG.CreateDate,
  TAG.OffsetTimeOriginal,
  TAG.OffsetTimeDigitized,
  TAG.SubSecTimeOriginal,
  TAG.SubSecTimeDigitized,
  TAG.BodySerialNumber,
  TAG.LensModel,
];

// Only the tags we name; raw values (no translated keys, no revived dates) so that time zones stay ours.
const EXIFR_BASE = {
  tiff: true,
  gps: false,
  ifd1: false,
  interop: false,
  makerNote: false,
  userComment: false,
  xmp: false,
  icc: false,
  iptc: false,
  jfif: false,
  ihdr: false,
  translateKeys: false,
  translateValues: false,
  reviveValues: false,
  mergeOutput: true,
};

interface ExifrOptionPair {
  strict: object;
  lenient: object;
}

function optionPair(blocks: object): ExifrOptionPair {
  return { strict: { ...EXIFR_BASE, ...blocks, silentErrors: false }, lenient: { ...EXIFR_BASE, ...blocks, silentErrors: true } };
}

/** JPEG, TIFF-based RAW, HEIF, PNG: IFD0 with a pointer to the EXIF IFD. */
const FILE_OPTIONS = optionPair({ ifd0: { pick: IFD0_TAGS }, exif: { pick: EXIF_TAGS } });
/** CR3's CMT1 box: IFD0 alone (any EXIF pointer in it is not ours to follow). */
const IFD0_ONLY_OPTIONS = optionPair({ ifd0: { pick: IFD0_TAGS }, exif: false });
/** CR3's CMT2 box: a TIFF whose first IFD holds the EXIF tags. */
const EXIF_AS_IFD0_OPTIONS = optionPair({ ifd0: { pick: EXIF_TAGS }, exif: false });

/** A string longer than this (in characters) is not a camera model or serial; it is cut and flagged. */
const MAX_STRING_LENGTH = 64;
/** Dates outside these years are a broken clock or broken EXIF, not a capture time. */
const MIN_YEAR = 1900;
const MAX_YEAR = 2099;

type Tags = Record<number, unknown>;

/** Formats with EXIF we can read; anything else (WAV, XMP text, MP4, RAF) goes straight to the mtime fallback. */
function sniffFormat(head: Buffer): 'jpeg' | 'tiff' | 'heif' | 'png' | 'cr3' | undefined {
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'jpeg';
  if (head.length >= 4) {
    const sig = head.toString('latin1', 0, 4);
    // Classic TIFF, plus the TIFF variants of Olympus (IIRO/MMOR) and Panasonic (IIU\0).
    if (sig === 'II*\0' || sig === 'MM\0*' || sig === 'IIRO' || sig === 'MMOR' || sig === 'IIU\0') return 'tiff';
  }
  if (head.length >= 12 && head.toString('latin1', 4, 8) === 'ftyp') {
    const brand = head.toString('latin1', 8, 12);
    if (brand === 'crx ') return 'cr3';
    if (/^(heic|heix|heim|heis|hevc|hevx|mif1|msf1|avif)$/.test(brand)) return 'heif';
  }
  if (head.length >= 8 && head.readUInt32BE(0) === 0x89504e47 && head.readUInt32BE(4) === 0x0d0a1a0a) return 'png';
  return undefined;
}

let exifrLoaded: Promise<typeof import('exifr').parse> | undefined;

/** exifr is loaded with the first file that has EXIF to read, not while the command starts and opens its sources. */
function loadExifr(): Promise<typeof import('exifr').parse> {
  exifrLoaded ??= import('exifr').then((m) => m.default.parse);
  return exifrLoaded;
}

/**
 * exifr's silentErrors mode drops errors raised inside the EXIF block (they never reach `errors`), so
 * a strict parse comes first to learn whether anything was wrong; only when it fails does a lenient
 * parse salvage what it can (often Make and Model from IFD0).
 */
async function readTags(head: Buffer, options: ExifrOptionPair, warnings: string[]): Promise<Tags | undefined> {
  const parse = await loadExifr();
  try {
    return asTags(await parse(head, options.strict));
  } catch (err) {
    warnings.push(`EXIF unreadable: ${describe(err)}`);
  }
  try {
    return asTags(await parse(head, options.lenient));
  } catch {
    return undefined;
  }
}

function asTags(out: unknown): Tags | undefined {
  if (typeof out !== 'object' || out === null) return undefined;
  const { errors: _errors, ...tags } = out as Tags & { errors?: unknown };
  return tags;
}

function describe(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.length > 200 ? `${msg.slice(0, 200)}…` : msg;
}

/** A printable, bounded string from an EXIF value, or undefined with a warning saying why not. */
function cleanString(tags: Tags, tag: number, label: string, warnings: string[]): string | undefined {
  const v = tags[tag];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') {
    warnings.push(`${label} is not text (${Array.isArray(v) || ArrayBuffer.isView(v) ? 'array' : typeof v}); ignored`);
    return undefined;
  }
  // eslint-disable-next-line no-control-regex
  let s = v
    .replace(/[\u0000-\u001f\u007f]+/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  if (s === '') return undefined;
  const chars = [...s];
  if (chars.length > MAX_STRING_LENGTH) {
    warnings.push(`${label} is ${chars.length} characters long; cut to ${MAX_STRING_LENGTH}`);
    s = chars.slice(0, MAX_STRING_LENGTH).join('').trim();
  }
  return s;
}

const EXIF_DATE = /^\s*(\d{4})[:-](\d{2})[:-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?/;

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** Parses an EXIF date string into a wall clock, or explains why it is not a usable capture time. */
export function parseExifDate(value: unknown): WallClock | string {
  if (typeof value !== 'string') return `not text (${typeof value})`;
  const m = EXIF_DATE.exec(value);
  if (m === null) return `not a date: ${JSON.stringify(value.slice(0, 40))}`;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const millisecond = m[7] === undefined ? 0 : Number(m[7].padEnd(3, '0').slice(0, 3));
  if (year < MIN_YEAR || year > MAX_YEAR) return `year ${year} is outside ${MIN_YEAR}–${MAX_YEAR}: ${JSON.stringify(value.slice(0, 40))}`;
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month) || hour > 23 || minute > 59 || second > 59) {
    return `impossible date ${JSON.stringify(value.slice(0, 40))}`;
  }
  return { year, month, day, hour, minute, second, millisecond };
}

/** EXIF 2.31 offset ("+02:00", "-05:30") in minutes, or undefined when absent or malformed. */
export function parseExifOffset(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^\s*([+-])(\d{2}):(\d{2})\s*$/.exec(value);
  if (m === null) return undefined;
  const hours = Number(m[2]);
  const minutes = Number(m[3]);
  if (hours > 14 || minutes > 59) return undefined;
  return (m[1] === '-' ? -1 : 1) * (hours * 60 + minutes);
}

const SUBSEC = /^\s*(\d{1,9})\s*$/;

function subSecMillis(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = SUBSEC.exec(value);
  return m === null ? undefined : Number(m[1]!.padEnd(3, '0').slice(0, 3));
}

// ---- Canon CR3 ----------------------------------------------------------------------------------

/** Canon's metadata container inside CR3's moov box (ISO BMFF 'uuid' box). */
const CANON_UUID = '85c0b687820f11e08111f4ce462b6a48';

interface Box {
  type: string;
  /** Offset of the payload (after size, type, and a uuid box's 16-byte id). */
  body: number;
  /** End of the box, clamped to the buffer: a head may cut the last box short. */
  end: number;
  uuid?: string;
}

function* boxesIn(buf: Buffer, start: number, end: number): Generator<Box> {
  let at = start;
  while (at + 8 <= end) {
    let size = buf.readUInt32BE(at);
    const type = buf.toString('latin1', at + 4, at + 8);
    let header = 8;
    if (size === 1) {
      if (at + 16 > end) return;
      const big = buf.readBigUInt64BE(at + 8);
      size = big > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(big);
      header = 16;
    } else if (size === 0) {
      size = end - at;
    }
    if (size < header) return;
    const box: Box = { type, body: at + header, end: Math.min(end, at + size) };
    if (type === 'uuid') {
      if (box.body + 16 > box.end) return;
      box.uuid = buf.toString('hex', box.body, box.body + 16);
      box.body += 16;
    }
    yield box;
    if (at + size >= end) return;
    at += size;
  }
}

/**
 * The two TIFF structures of a CR3 that carry what we need: CMT1 (IFD0: Make, Model) and CMT2 (the
 * EXIF IFD), found in moov → uuid(Canon) near the start of the file.
 */
export function canonCr3Tiffs(head: Buffer): { ifd0?: Buffer; exif?: Buffer } {
  const found: { ifd0?: Buffer; exif?: Buffer } = {};
  for (const top of boxesIn(head, 0, head.length)) {
    if (top.type !== 'moov') continue;
    for (const inner of boxesIn(head, top.body, top.end)) {
      if (inner.type !== 'uuid' || inner.uuid !== CANON_UUID) continue;
      for (const b of boxesIn(head, inner.body, inner.end)) {
        if (b.type === 'CMT1') found.ifd0 = head.subarray(b.body, b.end);
        if (b.type === 'CMT2') found.exif = head.subarray(b.body, b.end);
      }
      return found;
    }
  }
  return found;
}

async function readCr3Tags(head: Buffer, warnings: string[]): Promise<Tags | undefined> {
  const { ifd0, exif } = canonCr3Tiffs(head);
  if (ifd0 === undefined && exif === undefined) {
    warnings.push('CR3 without Canon metadata boxes (CMT1/CMT2) in the head');
    return undefined;
  }
  const a = ifd0 === undefined ? undefined : await readTags(ifd0, IFD0_ONLY_OPTIONS, warnings);
  const b = exif === undefined ? undefined : await readTags(exif, EXIF_AS_IFD0_OPTIONS, warnings);
  // Each reader picks only its own block's tags, so merging cannot mix them up.
  return a === undefined && b === undefined ? undefined : { ...a, ...b };
}

// ---- the reader ---------------------------------------------------------------------------------

function fromMtime(mtimeMs: number, timeZone: string | undefined, warnings: string[], camera: Partial<CaptureMetadata>): CaptureMetadata {
  let ms = mtimeMs;
  // Date's range is ±8.64e15 ms; a source reporting more is broken, and Intl would throw on it.
  if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) {
    warnings.push(`file time ${String(mtimeMs)} is not a usable time; using 1970-01-01`);
    ms = 0;
  }
  ms = Math.trunc(ms);
  return {
    capturedAt: new Date(ms),
    local: wallClockAt(ms, timeZone),
    utcOffsetMinutes: Math.round(zoneOffsetMs(ms, timeZone) / 60_000),
    offsetSource: 'zone',
    dateSource: 'mtime',
    make: camera.make,
    model: camera.model,
    serial: camera.serial,
    lens: camera.lens,
    warnings,
  };
}

/**
 * Capture time and camera of one file, from the first bytes of it (see METADATA_HEAD_BYTES).
 * The date is DateTimeOriginal, else CreateDate; with the camera's recorded offset when there is one,
 * otherwise read as local time in `opts.timeZone` (or the system zone). Whatever the bytes hold, this
 * never throws for them: unreadable or implausible metadata falls back to `fallback.mtimeMs`, and
 * `warnings` says what was wrong. It throws only for an unknown `opts.timeZone` (CONFIG_INVALID).
 */
export async function readCaptureMetadata(head: Buffer, fallback: { mtimeMs: number }, opts: MetadataOptions = {}): Promise<CaptureMetadata> {
  const { timeZone } = opts;
  checkTimeZone(timeZone);
  const warnings: string[] = [];
  const format = sniffFormat(head);
  if (format === undefined) return fromMtime(fallback.mtimeMs, timeZone, warnings, {});

  const tags = format === 'cr3' ? await readCr3Tags(head, warnings) : await readTags(head, FILE_OPTIONS, warnings);
  if (tags === undefined) return fromMtime(fallback.mtimeMs, timeZone, warnings, {});

  const camera = {
    make: cleanString(tags, TAG.Make, 'Make', warnings),
    model: cleanString(tags, TAG.Model, 'Model', warnings),
    serial: cleanString(tags, TAG.BodySerialNumber, 'BodySerialNumber', warnings),
    lens: cleanString(tags, TAG.LensModel, 'LensModel', warnings),
  };

  const choices = [
    { label: 'DateTimeOriginal', date: TAG.DateTimeOriginal, offset: TAG.OffsetTimeOriginal, subsec: TAG.SubSecTimeOriginal },
    { label: 'CreateDate', date: TAG.CreateDate, offset: TAG.OffsetTimeDigitized, subsec: TAG.SubSecTimeDigitized },
  ];
  for (const c of choices) {
    const raw = tags[c.date];
    if (raw === undefined) continue;
    const parsed = parseExifDate(raw);
    if (typeof parsed === 'string') {
      warnings.push(`${c.label} ${parsed}`);
      continue;
    }
    const local: WallClock = { ...parsed, millisecond: parsed.millisecond || (subSecMillis(tags[c.subsec]) ?? 0) };
    const rawOffset = tags[c.offset];
    const exifOffset = parseExifOffset(rawOffset);
    if (rawOffset !== undefined && exifOffset === undefined) {
      warnings.push(`${c.label} offset ${JSON.stringify(String(rawOffset).slice(0, 20))} is malformed; using the time zone`);
    }
    const { epochMs, offsetMinutes } = exifOffset !== undefined ? { epochMs: wallAsUtcMs(local) - exifOffset * 60_000, offsetMinutes: exifOffset } : instantOf(local, timeZone);
    return {
      capturedAt: new Date(epochMs),
      local,
      utcOffsetMinutes: offsetMinutes,
      offsetSource: exifOffset !== undefined ? 'exif' : 'zone',
      dateSource: 'exif',
      ...camera,
      warnings,
    };
  }
  return fromMtime(fallback.mtimeMs, timeZone, warnings, camera);
}
