/**
 * Where a RAW file keeps the JPEG preview the camera embedded in it, found from the file's structure
 * alone, so that the preview can be taken from the first bytes read (as they stream from a camera) or
 * from a few small reads of a file, never the whole RAW. TIFF-based RAWs (CR2, NEF, ARW, DNG, PEF, SRW,
 * …) keep it in an IFD, as a JPEG (JPEGInterchangeFormat and its length) or as a single JPEG-compressed
 * strip; CR3 (ISO base media) keeps a 1620×1080 JPEG in the PRVW box of a uuid box before its media data.
 */

import { canonCr3Tiffs } from './metadata.js';

/** A span of the file's bytes. */
export interface ByteRange {
  offset: number;
  length: number;
}

/**
 * The file's bytes at `offset`, `length` of them, if they are at hand: undefined while they are not (not
 * read yet, or not loaded). A range past the file's end is never asked for.
 */
export type ByteSource = (offset: number, length: number) => Buffer | undefined;

/**
 * `found`: the largest embedded JPEG, which ends within the limit, and the RAW's EXIF orientation (1–8)
 * when its IFD0 (a CR3's CMT1) gives one: the camera leaves the embedded JPEG as the sensor saw it. `need`: bytes to
 * have before it can be told (they end within the limit). `none`: no embedded JPEG within the limit;
 * `beyond` when a part of the file's structure or a JPEG lay past the limit, so that reading further
 * could still find one.
 */
export type PreviewSearch = { found: ByteRange; orientation?: number } | { need: ByteRange } | { none: { beyond: boolean } };

const TAG_NEW_SUBFILE_TYPE = 0x00fe;
const TAG_ORIENTATION = 0x0112;
/** MPF's list of the file's images. */
const TAG_MP_ENTRY = 0xb002;
const TAG_COMPRESSION = 0x0103;
const TAG_STRIP_OFFSETS = 0x0111;
const TAG_STRIP_BYTE_COUNTS = 0x0117;
const TAG_SUB_IFDS = 0x014a;
const TAG_JPEG_OFFSET = 0x0201;
const TAG_JPEG_LENGTH = 0x0202;
/** Panasonic's RW2 keeps its preview JPEG as the value of this tag. */
const TAG_JPG_FROM_RAW = 0x002e;
/** CR2's raw image: a JPEG-compressed strip too, but lossless (not for a preview). */
const TAG_CR2_SLICE = 0xc640;

const COMPRESSION_OLD_JPEG = 6;
const COMPRESSION_JPEG = 7;

/** A file with more IFDs or entries than these is not a camera's: the search stops there. */
const MAX_IFDS = 32;
const MAX_ENTRIES = 1024;

const CR3_PREVIEW_UUID = Buffer.from('eaf42b5e1c984b88b9fbb7dc406e4d16', 'hex');

/** Looks for the embedded JPEG preview of a RAW of `size` bytes, reading through `read` at most up to `limit`. */
export function findEmbeddedPreview(read: ByteSource, size: number, limit: number = size): PreviewSearch {
  const end = Math.min(size, limit);
  if (size < 12) return { none: { beyond: false } };
  if (end < 12) return { none: { beyond: true } };
  const head = read(0, 12);
  if (head === undefined) return { need: { offset: 0, length: 12 } };
  if (head.toString('latin1', 4, 8) === 'ftyp') return searchBoxes(read, size, end);
  const order = head.toString('latin1', 0, 2);
  if (order !== 'II' && order !== 'MM') return { none: { beyond: false } };
  return searchTiff(read, size, end, order === 'II');
}

/** Walks the IFD chain from IFD0, with SubIFDs, and keeps the largest JPEG named by any of them. */
function searchTiff(read: ByteSource, size: number, end: number, little: boolean): PreviewSearch {
  const u16 = (b: Buffer, at: number): number => (little ? b.readUInt16LE(at) : b.readUInt16BE(at));
  const u32 = (b: Buffer, at: number): number => (little ? b.readUInt32LE(at) : b.readUInt32BE(at));
  const ifd0 = u32(read(0, 8)!, 4);
  const queue = [ifd0];
  let orientation: number | undefined;
  const seen = new Set<number>();
  let best: ByteRange | undefined;
  let beyond = false;
  /** The largest JPEG past the limit: a smaller one within it (a thumbnail) does not stand in for it. */
  let largestBeyond = 0;
  /** A JPEG to consider: kept if it lies inside the file, within the limit, and is the largest so far. */
  const consider = (offset: number, length: number): void => {
    if (length < 4 || offset <= 0 || offset + length > size) return;
    if (offset + length > end) {
      beyond = true;
      largestBeyond = Math.max(largestBeyond, length);
    } else if (best === undefined || length > best.length) best = { offset, length };
  };
  while (queue.length > 0 && seen.size < MAX_IFDS) {
    const at = queue.shift()!;
    if (at === 0 || seen.has(at) || at + 2 > size) continue;
    seen.add(at);
    if (at + 2 > end) {
      beyond = true;
      continue;
    }
    const countBytes = read(at, 2);
    if (countBytes === undefined) return { need: { offset: at, length: 2 } };
    const count = u16(countBytes, 0);
    if (count === 0 || count > MAX_ENTRIES) continue;
    const length = 2 + 12 * count + 4;
    if (at + length > size) continue;
    if (at + length > end) {
      beyond = true;
      continue;
    }
    const ifd = read(at, length);
    if (ifd === undefined) return { need: { offset: at, length } };
    const tags = new Map<number, { type: number; count: number; field: number }>();
    for (let i = 0; i < count; i++) {
      const e = 2 + 12 * i;
      tags.set(u16(ifd, e), { type: u16(ifd, e + 2), count: u32(ifd, e + 4), field: e + 8 });
    }
    /** The first value of a SHORT or LONG tag (inline when it fits in the entry's four bytes). */
    const value = (tag: number): number | undefined => {
      const t = tags.get(tag);
      if (t === undefined || t.count !== 1) return undefined;
      if (t.type === 3) return u16(ifd, t.field);
      if (t.type === 4 || t.type === 13) return u32(ifd, t.field);
      return undefined;
    };
    if (at === ifd0) {
      const o = value(TAG_ORIENTATION);
      if (o !== undefined && o >= 1 && o <= 8) orientation = o;
    }
    const jpegAt = value(TAG_JPEG_OFFSET);
    const jpegLength = value(TAG_JPEG_LENGTH);
    if (jpegAt !== undefined && jpegLength !== undefined) consider(jpegAt, jpegLength);
    const compression = value(TAG_COMPRESSION);
    // A JPEG strip is a preview when it is an old-style JPEG that is not CR2's lossless raw, or a DNG
    // JPEG marked as a reduced-resolution image.
    const stripIsPreview = (compression === COMPRESSION_OLD_JPEG && !tags.has(TAG_CR2_SLICE)) || (compression === COMPRESSION_JPEG && value(TAG_NEW_SUBFILE_TYPE) === 1);
    const stripAt = value(TAG_STRIP_OFFSETS);
    const stripLength = value(TAG_STRIP_BYTE_COUNTS);
    if (stripIsPreview && stripAt !== undefined && stripLength !== undefined) consider(stripAt, stripLength);
    const rw2 = tags.get(TAG_JPG_FROM_RAW);
    if (rw2 !== undefined && rw2.type === 7 && rw2.count > 4) consider(u32(ifd, rw2.field), rw2.count);
    const subs = tags.get(TAG_SUB_IFDS);
    if (subs !== undefined && (subs.type === 4 || subs.type === 13) && subs.count > 0 && subs.count <= MAX_IFDS) {
      if (subs.count === 1) queue.push(u32(ifd, subs.field));
      else {
        const listAt = u32(ifd, subs.field);
        const listLength = 4 * subs.count;
        if (listAt + listLength > size) {
          // A broken pointer: the other IFDs may still hold a preview.
        } else if (listAt + listLength > end) beyond = true;
        else {
          const list = read(listAt, listLength);
          if (list === undefined) return { need: { offset: listAt, length: listLength } };
          for (let i = 0; i < subs.count; i++) queue.push(u32(list, 4 * i));
        }
      }
    }
    queue.push(u32(ifd, length - 4));
  }
  if (best === undefined || best.length < largestBeyond) return { none: { beyond } };
  return orientation === undefined ? { found: best } : { found: best, orientation };
}

/** A moov box larger than this is not a camera's: its orientation is not looked for. */
const MAX_MOOV = 1024 * 1024;

/** The orientation (1–8) in IFD0 of a TIFF structure (CR3's CMT1), if it has one. */
function tiffOrientation(tiff: Buffer): number | undefined {
  if (tiff.length < 8) return undefined;
  const order = tiff.toString('latin1', 0, 2);
  if (order !== 'II' && order !== 'MM') return undefined;
  const little = order === 'II';
  const u16 = (at: number): number => (little ? tiff.readUInt16LE(at) : tiff.readUInt16BE(at));
  const ifd0 = little ? tiff.readUInt32LE(4) : tiff.readUInt32BE(4);
  if (ifd0 + 2 > tiff.length) return undefined;
  const count = Math.min(u16(ifd0), MAX_ENTRIES);
  for (let i = 0, e = ifd0 + 2; i < count && e + 12 <= tiff.length; i++, e += 12) {
    if (u16(e) !== TAG_ORIENTATION || u16(e + 2) !== 3) continue;
    const o = u16(e + 8);
    return o >= 1 && o <= 8 ? o : undefined;
  }
  return undefined;
}

/** Walks the top-level boxes of a CR3 up to its media data, for the preview box's JPEG (and the orientation in its moov's CMT1). */
function searchBoxes(read: ByteSource, size: number, end: number): PreviewSearch {
  let at = 0;
  let orientation: number | undefined;
  for (let boxes = 0; at + 8 <= size && boxes < MAX_IFDS; boxes++) {
    if (at + 8 > end) return { none: { beyond: true } };
    const header = read(at, 8);
    if (header === undefined) return { need: { offset: at, length: 8 } };
    const type = header.toString('latin1', 4, 8);
    let boxSize = header.readUInt32BE(0);
    if (boxSize === 1) {
      if (at + 16 > end) return { none: { beyond: true } };
      const large = read(at + 8, 8);
      if (large === undefined) return { need: { offset: at + 8, length: 8 } };
      boxSize = Number(large.readBigUInt64BE(0));
    } else if (boxSize === 0) boxSize = size - at;
    if (boxSize < 8 || type === 'mdat') break;
    if (type === 'moov' && boxSize <= MAX_MOOV && at + boxSize <= end) {
      const moov = read(at, boxSize);
      if (moov === undefined) return { need: { offset: at, length: boxSize } };
      const { ifd0 } = canonCr3Tiffs(moov);
      orientation = ifd0 === undefined ? undefined : tiffOrientation(ifd0);
    }
    if (type === 'uuid') {
      // The uuid, eight bytes Canon leaves unexplained, then the PRVW box: its size, 'PRVW', eight bytes,
      // width, height, one short, the JPEG's length and the JPEG.
      const want = 8 + 16 + 8 + 24;
      if (boxSize >= want) {
        if (at + want > end) return { none: { beyond: true } };
        const head = read(at, want);
        if (head === undefined) return { need: { offset: at, length: want } };
        if (head.subarray(8, 24).equals(CR3_PREVIEW_UUID) && head.toString('latin1', 36, 40) === 'PRVW') {
          const length = head.readUInt32BE(52);
          const offset = at + want;
          if (length < 4 || offset + length > at + boxSize || offset + length > size) return { none: { beyond: false } };
          if (offset + length > end) return { none: { beyond: true } };
          return orientation === undefined ? { found: { offset, length } } : { found: { offset, length }, orientation };
        }
      }
    }
    at += boxSize;
  }
  return { none: { beyond: false } };
}

/**
 * The segments of a JPEG before its image data, in order: each marker with its payload's span. Stops at
 * the frame's scan (or at bytes that are not a JPEG's).
 */
function* jpegSegments(jpeg: Buffer): Generator<{ marker: number; body: number; end: number }> {
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) return;
  let at = 2;
  while (at + 4 <= jpeg.length) {
    if (jpeg[at] !== 0xff) return;
    const marker = jpeg[at + 1]!;
    if (marker === 0xff) {
      at += 1;
      continue;
    }
    // Markers without a length: TEM, RSTn.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      at += 2;
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return;
    const end = Math.min(jpeg.length, at + 2 + jpeg.readUInt16BE(at + 2));
    yield { marker, body: at + 4, end };
    at = end;
  }
}

/**
 * The other images a camera's JPEG carries in its MPF segment (CIPA DC-007: Sony, Nikon, Fujifilm and
 * others append a screen-sized preview after the main image), within the file. A preview made of one
 * of them decodes a fraction of the pixels of the main image.
 */
export function mpfImages(jpeg: Buffer): ByteRange[] {
  for (const seg of jpegSegments(jpeg)) {
    if (seg.marker !== 0xe2 || seg.end - seg.body < 16 || jpeg.toString('latin1', seg.body, seg.body + 4) !== 'MPF\u0000') continue;
    const base = seg.body + 4;
    const tiff = jpeg.subarray(base, seg.end);
    const order = tiff.toString('latin1', 0, 2);
    if (order !== 'II' && order !== 'MM') return [];
    const little = order === 'II';
    const u16 = (at: number): number => (little ? tiff.readUInt16LE(at) : tiff.readUInt16BE(at));
    const u32 = (at: number): number => (little ? tiff.readUInt32LE(at) : tiff.readUInt32BE(at));
    const ifd = u32(4);
    if (ifd + 2 > tiff.length) return [];
    const count = Math.min(u16(ifd), MAX_ENTRIES);
    for (let i = 0, e = ifd + 2; i < count && e + 12 <= tiff.length; i++, e += 12) {
      if (u16(e) !== TAG_MP_ENTRY) continue;
      const bytes = u32(e + 4);
      const list = u32(e + 8);
      if (bytes % 16 !== 0 || list + bytes > tiff.length) return [];
      const images: ByteRange[] = [];
      // The first entry is the main image itself (offset 0); the others' offsets count from the MPF header.
      for (let at = list + 16; at < list + bytes; at += 16) {
        const length = u32(at + 4);
        const offset = base + u32(at + 8);
        if (u32(at + 8) > 0 && length >= 4 && offset + length <= jpeg.length) images.push({ offset, length });
      }
      return images;
    }
    return [];
  }
  return [];
}

/** A JPEG's EXIF orientation (1–8), from its APP1 segment, if it gives one. */
export function jpegOrientation(jpeg: Buffer): number | undefined {
  for (const seg of jpegSegments(jpeg)) {
    if (seg.marker === 0xe1 && seg.end - seg.body > 6 && jpeg.toString('latin1', seg.body, seg.body + 6) === 'Exif\u0000\u0000')
      return tiffOrientation(jpeg.subarray(seg.body + 6, seg.end));
  }
  return undefined;
}

/**
 * A JPEG's width and height from its frame header, found by walking its segments (an EXIF thumbnail
 * inside APP1 is skipped with its segment): no decoding. Undefined when the bytes are not a JPEG's.
 */
export function jpegSize(jpeg: Buffer): { width: number; height: number } | undefined {
  for (const seg of jpegSegments(jpeg)) {
    // SOF0–SOF15, except DHT (C4), JPG (C8) and DAC (CC).
    const m = seg.marker;
    if (m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc) {
      if (seg.body + 5 > seg.end) return undefined;
      return { height: jpeg.readUInt16BE(seg.body + 1), width: jpeg.readUInt16BE(seg.body + 3) };
    }
  }
  return undefined;
}

/** The RAW formats whose previews findEmbeddedPreview knows (by extension, lower case, no dot). */
export const EMBEDDED_PREVIEW_FORMATS: ReadonlySet<string> = new Set([
  'cr2',
  'cr3',
  'nef',
  'nrw',
  'arw',
  'srf',
  'sr2',
  'dng',
  'pef',
  'srw',
  'erf',
  '3fr',
  'iiq',
  'rw2',
  'tif',
  'tiff',
]);

/**
 * The size of a JPEG that can be shown as it is: one that carries no metadata (no APP1 segment: no EXIF
 * to turn it by, no GPS or serial to hand on) and is whole (ends with its EOI marker). Undefined for
 * any other.
 */
export function plainJpegSize(jpeg: Buffer): { width: number; height: number } | undefined {
  if (jpeg.length < 4 || jpeg[jpeg.length - 2] !== 0xff || jpeg[jpeg.length - 1] !== 0xd9) return undefined;
  for (const seg of jpegSegments(jpeg)) if (seg.marker === 0xe1) return undefined;
  return jpegSize(jpeg);
}
