import { asciiEntry, buildTiff, exifEntriesFor, type TiffExif } from './tiff.js';

/** Canon's metadata container id inside moov (public CR3 format descriptions). */
const CANON_UUID = Buffer.from('85c0b687820f11e08111f4ce462b6a48', 'hex');

/** An ISO base media box: its size, its four-letter type, then the payload. */
export function box(type: string, ...payload: Buffer[]): Buffer {
  const body = Buffer.concat(payload);
  const head = Buffer.alloc(8);
  head.writeUInt32BE(8 + body.length, 0);
  head.write(type, 4, 'latin1');
  return Buffer.concat([head, body]);
}

/**
 * The head of a CR3-shaped file of `totalSize` bytes: ftyp 'crx ', a moov holding Canon's uuid box
 * with CNCV, CMT1 (IFD0 as a TIFF) and CMT2 (EXIF IFD as a TIFF), then the header of an mdat box
 * that the caller fills with `totalSize - head.length` bytes. Shaped like Canon's layout for
 * metadata readers; there is no image track.
 */
export function cr3Head(exif: TiffExif, totalSize: number): Buffer {
  const ftyp = box('ftyp', Buffer.from('crx \u0000\u0000\u0000\u0001crx isom', 'latin1'));
  const cmt1 = buildTiff([asciiEntry(0x010f, exif.make), asciiEntry(0x0110, exif.model), asciiEntry(0x0132, exif.dateTimeOriginal)]);
  const cmt2 = buildTiff(exifEntriesFor(exif));
  const canon = box('uuid', CANON_UUID, box('CNCV', Buffer.from('CanonCR3_001/00.10.00/00.00.00', 'latin1')), box('CMT1', cmt1), box('CMT2', cmt2));
  const moov = box('moov', canon);
  const mdatHeader = Buffer.alloc(8);
  const before = ftyp.length + moov.length;
  mdatHeader.writeUInt32BE(Math.max(8, totalSize - before), 0);
  mdatHeader.write('mdat', 4, 'latin1');
  return Buffer.concat([ftyp, moov, mdatHeader]);
}
