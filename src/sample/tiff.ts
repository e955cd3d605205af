import { ShuttleError } from '../errors.js';

/**
 * Adds camera EXIF to a TIFF that sharp wrote (libvips writes no EXIF into TIFF output). The original
 * bytes stay where they are, so every offset in them stays valid; a new IFD0 (the old entries plus Make,
 * Model and a pointer to a new EXIF IFD) is appended and the header is pointed at it. The result reads
 * like a TIFF-based RAW (CR2, NEF, ARW, DNG all start this way) with its metadata in the first few KiB.
 */

const ASCII = 2;
const LONG = 4;
const UNDEFINED = 7;

const TAG_MAKE = 0x010f;
const TAG_MODEL = 0x0110;
const TAG_DATETIME = 0x0132;
const TAG_EXIF_IFD = 0x8769;

export interface TiffExif {
  make: string;
  model: string;
  dateTimeOriginal: string;
  offsetTimeOriginal?: string | undefined;
  subSecTimeOriginal?: string | undefined;
  serial?: string | undefined;
  lens?: string | undefined;
}

/**
 * One IFD entry: `data` holds the value in the file's byte order (placed inline or after the IFD as
 * its size requires); `valueOffset` instead writes the given offset as is, pointing anywhere, which is
 * how tests build hostile EXIF.
 */
export type TiffEntry = { tag: number; type: number; count: number; data: Buffer } | { tag: number; type: number; count: number; valueOffset: number };
type Entry = { raw: Buffer; tag: number } | TiffEntry;

interface Endian {
  u16(b: Buffer, at: number): number;
  u32(b: Buffer, at: number): number;
  w16(b: Buffer, v: number, at: number): void;
  w32(b: Buffer, v: number, at: number): void;
}

const LE: Endian = {
  u16: (b, at) => b.readUInt16LE(at),
  u32: (b, at) => b.readUInt32LE(at),
  w16: (b, v, at) => void b.writeUInt16LE(v, at),
  w32: (b, v, at) => void b.writeUInt32LE(v, at),
};
const BE: Endian = {
  u16: (b, at) => b.readUInt16BE(at),
  u32: (b, at) => b.readUInt32BE(at),
  w16: (b, v, at) => void b.writeUInt16BE(v, at),
  w32: (b, v, at) => void b.writeUInt32BE(v, at),
};

export const asciiEntry = (tag: number, s: string): TiffEntry => {
  const data = Buffer.from(`${s}\u0000`, 'latin1');
  return { tag, type: ASCII, count: data.length, data };
};

function long(tag: number, v: number, e: Endian): TiffEntry {
  const data = Buffer.alloc(4);
  e.w32(data, v, 0);
  return { tag, type: LONG, count: 1, data };
}

const even = (n: number): number => n + (n & 1);

/** Encodes one IFD placed at file offset `start`, its out-of-line values right after it. */
function encodeIfd(entries: Entry[], start: number, next: number, e: Endian): Buffer {
  const sorted = [...entries].sort((a, b) => a.tag - b.tag);
  const headLen = 2 + 12 * sorted.length + 4;
  const values: Buffer[] = [];
  let cursor = start + headLen;
  const head = Buffer.alloc(headLen);
  e.w16(head, sorted.length, 0);
  sorted.forEach((entry, i) => {
    const at = 2 + 12 * i;
    if ('raw' in entry) {
      entry.raw.copy(head, at);
      return;
    }
    e.w16(head, entry.tag, at);
    e.w16(head, entry.type, at + 2);
    e.w32(head, entry.count, at + 4);
    if ('valueOffset' in entry) {
      e.w32(head, entry.valueOffset, at + 8);
    } else if (entry.data.length <= 4) {
      entry.data.copy(head, at + 8);
    } else {
      e.w32(head, cursor, at + 8);
      const padded = Buffer.alloc(even(entry.data.length));
      entry.data.copy(padded);
      values.push(padded);
      cursor += padded.length;
    }
  });
  e.w32(head, next, headLen - 4);
  return Buffer.concat([head, ...values]);
}

/** The EXIF IFD entries a camera writes for one shot. */
export function exifEntriesFor(exif: TiffExif): TiffEntry[] {
  const entries: TiffEntry[] = [
    { tag: 0x9000, type: UNDEFINED, count: 4, data: Buffer.from('0231', 'latin1') },
    asciiEntry(0x9003, exif.dateTimeOriginal),
    asciiEntry(0x9004, exif.dateTimeOriginal),
  ];
  if (exif.offsetTimeOriginal !== undefined) {
    entries.push(asciiEntry(0x9010, exif.offsetTimeOriginal), asciiEntry(0x9011, exif.offsetTimeOriginal), asciiEntry(0x9012, exif.offsetTimeOriginal));
  }
  if (exif.subSecTimeOriginal !== undefined) entries.push(asciiEntry(0x9291, exif.subSecTimeOriginal));
  if (exif.serial !== undefined) entries.push(asciiEntry(0xa431, exif.serial));
  if (exif.lens !== undefined) entries.push(asciiEntry(0xa434, exif.lens));
  return entries;
}

export function addExifToTiff(tiff: Buffer, exif: TiffExif): Buffer {
  const order = tiff.toString('latin1', 0, 2);
  const e = order === 'II' ? LE : order === 'MM' ? BE : undefined;
  if (e === undefined || e.u16(tiff, 2) !== 42) throw new ShuttleError('INTERNAL', 'sharp did not write a classic TIFF', { context: { signature: tiff.toString('hex', 0, 4) } });
  const oldIfd0 = e.u32(tiff, 4);
  const n = e.u16(tiff, oldIfd0);
  const replaced = new Set([TAG_MAKE, TAG_MODEL, TAG_DATETIME, TAG_EXIF_IFD]);
  const kept: Entry[] = [];
  for (let i = 0; i < n; i++) {
    const at = oldIfd0 + 2 + 12 * i;
    const tag = e.u16(tiff, at);
    if (!replaced.has(tag)) kept.push({ raw: tiff.subarray(at, at + 12), tag });
  }
  const nextIfd = e.u32(tiff, oldIfd0 + 2 + 12 * n);

  const exifEntries = exifEntriesFor(exif);

  const ifd0Start = even(tiff.length);
  const ifd0Entries = (exifAt: number): Entry[] => [
    ...kept,
    asciiEntry(TAG_MAKE, exif.make),
    asciiEntry(TAG_MODEL, exif.model),
    asciiEntry(TAG_DATETIME, exif.dateTimeOriginal),
    long(TAG_EXIF_IFD, exifAt, e),
  ];
  // The EXIF IFD follows IFD0, whose length does not depend on the pointer's value.
  const exifStart = even(ifd0Start + encodeIfd(ifd0Entries(0), ifd0Start, nextIfd, e).length);
  const ifd0 = encodeIfd(ifd0Entries(exifStart), ifd0Start, nextIfd, e);
  const exifIfd = encodeIfd(exifEntries, exifStart, 0, e);

  const out = Buffer.alloc(exifStart + exifIfd.length);
  tiff.copy(out, 0);
  ifd0.copy(out, ifd0Start);
  exifIfd.copy(out, exifStart);
  e.w32(out, ifd0Start, 4);
  return out;
}

/**
 * A minimal little-endian TIFF: header, IFD0 with `ifd0` entries and, when `exif` is given, a pointer
 * to an EXIF IFD holding those. No image data: enough for EXIF readers, and for building broken EXIF.
 */
export function buildTiff(ifd0: TiffEntry[], exif?: TiffEntry[]): Buffer {
  const header = Buffer.from([0x49, 0x49, 42, 0, 8, 0, 0, 0]);
  const pointer = (at: number): TiffEntry => long(TAG_EXIF_IFD, at, LE);
  const entries0 = (at: number): TiffEntry[] => (exif === undefined ? ifd0 : [...ifd0, pointer(at)]);
  const exifStart = even(8 + encodeIfd(entries0(0), 8, 0, LE).length);
  const parts = [header, encodeIfd(entries0(exifStart), 8, 0, LE)];
  if (exif !== undefined) parts.push(Buffer.alloc(exifStart - 8 - parts[1]!.length), encodeIfd(exif, exifStart, 0, LE));
  return Buffer.concat(parts);
}
