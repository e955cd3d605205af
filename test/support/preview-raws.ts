import sharp from 'sharp';
import { box } from '../../src/sample/cr3.js';
import { buildTiff } from '../../src/sample/tiff.js';
import { bytes } from './fixtures.js';

/** A real JPEG of `width`×`height` in one colour (which tells previews apart). */
export function solidJpeg(width: number, height: number, r: number, g = 0, b = 0): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r, g, b } } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

/**
 * A TIFF-based RAW stand-in shaped as a CR2 is: IFD0 names a JPEG-compressed strip (the large preview,
 * placed at `previewAt`) and, if given, the EXIF orientation; IFD1 a JPEG thumbnail right after the
 * IFDs; the rest is pseudo-random "sensor" bytes up to `size`.
 */
export function tiffRaw(o: { preview: Buffer; thumbnail?: Buffer; previewAt?: number; size?: number; seed?: number; orientation?: number }): Buffer {
  const thumb = o.thumbnail ?? Buffer.alloc(0);
  const ifd0 = 8;
  const ifd0Entries = o.orientation === undefined ? 3 : 4;
  const ifd1 = ifd0 + 2 + ifd0Entries * 12 + 4;
  const thumbAt = ifd1 + 2 + 2 * 12 + 4;
  const previewAt = Math.max(o.previewAt ?? thumbAt + thumb.length, thumbAt + thumb.length);
  const size = Math.max(o.size ?? previewAt + o.preview.length, previewAt + o.preview.length);
  const out = bytes(size, o.seed ?? 7);
  out.write('II', 0, 'latin1');
  out.writeUInt16LE(42, 2);
  out.writeUInt32LE(ifd0, 4);
  const entry = (at: number, tag: number, type: number, value: number): void => {
    out.writeUInt16LE(tag, at);
    out.writeUInt16LE(type, at + 2);
    out.writeUInt32LE(1, at + 4);
    out.writeUInt32LE(0, at + 8);
    if (type === 3) out.writeUInt16LE(value, at + 8);
    else out.writeUInt32LE(value, at + 8);
  };
  out.writeUInt16LE(ifd0Entries, ifd0);
  entry(ifd0 + 2, 0x0103, 3, 6);
  entry(ifd0 + 14, 0x0111, 4, previewAt);
  if (o.orientation !== undefined) entry(ifd0 + 26, 0x0112, 3, o.orientation);
  entry(ifd0 + 2 + (ifd0Entries - 1) * 12, 0x0117, 4, o.preview.length);
  out.writeUInt32LE(thumb.length > 0 ? ifd1 : 0, ifd0 + 2 + ifd0Entries * 12);
  out.writeUInt16LE(2, ifd1);
  entry(ifd1 + 2, 0x0201, 4, thumbAt);
  entry(ifd1 + 14, 0x0202, 4, thumb.length);
  out.writeUInt32LE(0, ifd1 + 26);
  thumb.copy(out, thumbAt);
  o.preview.copy(out, previewAt);
  return out;
}

/**
 * A CR3 stand-in: ftyp, a moov (empty, or with Canon's uuid box whose CMT1 gives `orientation`), the
 * preview uuid box with its PRVW JPEG, then `mdatBytes` of media data.
 */
export function cr3Raw(preview: Buffer, mdatBytes: number, orientation?: number): Buffer {
  const prvwHead = Buffer.alloc(16);
  prvwHead.writeUInt16BE(1, 4);
  prvwHead.writeUInt16BE(1620, 6);
  prvwHead.writeUInt16BE(1080, 8);
  prvwHead.writeUInt16BE(1, 10);
  prvwHead.writeUInt32BE(preview.length, 12);
  const uuid = box('uuid', Buffer.from('eaf42b5e1c984b88b9fbb7dc406e4d16', 'hex'), Buffer.alloc(8), box('PRVW', prvwHead, preview));
  const value = Buffer.alloc(2);
  value.writeUInt16LE(orientation ?? 1);
  const cmt1 = buildTiff([{ tag: 0x0112, type: 3, count: 1, data: value }]);
  const moov = orientation === undefined ? box('moov') : box('moov', box('uuid', Buffer.from('85c0b687820f11e08111f4ce462b6a48', 'hex'), box('CMT1', cmt1)));
  return Buffer.concat([box('ftyp', Buffer.from('crx \u0000\u0000\u0000\u0001crx isom', 'latin1')), moov, uuid, box('mdat', bytes(mdatBytes, 3))]);
}

/**
 * A camera JPEG that carries a screen-sized preview the way Sony, Nikon and Fujifilm bodies write one:
 * an APP2 MPF segment right after SOI listing the main image and `preview`, appended after the main
 * image's end.
 */
export function jpegWithMpf(main: Buffer, preview: Buffer): Buffer {
  const tiffLength = 8 + 2 + 3 * 12 + 4 + 32;
  const segmentLength = 2 + 4 + tiffLength;
  // The MPF header starts after SOI, the segment's marker and length, and 'MPF\0'.
  const headerAt = 2 + 4 + 4;
  const mainLength = main.length + 2 + segmentLength;
  const tiff = Buffer.alloc(tiffLength);
  tiff.write('II', 0, 'latin1');
  tiff.writeUInt16LE(42, 2);
  tiff.writeUInt32LE(8, 4);
  tiff.writeUInt16LE(3, 8);
  const entry = (at: number, tag: number, type: number, count: number, value: number | Buffer): void => {
    tiff.writeUInt16LE(tag, at);
    tiff.writeUInt16LE(type, at + 2);
    tiff.writeUInt32LE(count, at + 4);
    if (Buffer.isBuffer(value)) value.copy(tiff, at + 8);
    else tiff.writeUInt32LE(value, at + 8);
  };
  const entriesAt = 8 + 2 + 3 * 12 + 4;
  entry(10, 0xb000, 7, 4, Buffer.from('0100', 'latin1'));
  entry(22, 0xb001, 4, 1, 2);
  entry(34, 0xb002, 7, 32, entriesAt);
  tiff.writeUInt32LE(0x030000, entriesAt);
  tiff.writeUInt32LE(mainLength, entriesAt + 4);
  tiff.writeUInt32LE(0, entriesAt + 8);
  tiff.writeUInt32LE(0x010001, entriesAt + 16);
  tiff.writeUInt32LE(preview.length, entriesAt + 20);
  tiff.writeUInt32LE(mainLength - headerAt, entriesAt + 24);
  const segment = Buffer.alloc(4);
  segment.writeUInt16BE(0xffe2, 0);
  segment.writeUInt16BE(segmentLength, 2);
  return Buffer.concat([main.subarray(0, 2), segment, Buffer.from('MPF\u0000', 'latin1'), tiff, main.subarray(2), preview]);
}
