import sharp from 'sharp';
import type { Prng } from './prng.js';
import { addExifToTiff, type TiffExif } from './tiff.js';

/** What a camera writes about one shot. */
export type ShotExif = TiffExif;

function noiseImage(prng: Prng, width: number, height: number): ReturnType<typeof sharp> {
  const pixels = prng.bytes(width * height * 3);
  return sharp(pixels, { raw: { width, height, channels: 3 } });
}

/** A real JPEG (decodable, with EXIF in APP1 right after SOI) of a small noise picture. */
export async function jpegWithExif(prng: Prng, exif: ShotExif): Promise<Buffer> {
  const ifd0: Record<string, string> = { Make: exif.make, Model: exif.model, DateTime: exif.dateTimeOriginal };
  const ifd2: Record<string, string> = { DateTimeOriginal: exif.dateTimeOriginal, DateTimeDigitized: exif.dateTimeOriginal };
  if (exif.offsetTimeOriginal !== undefined) {
    ifd2['OffsetTime'] = exif.offsetTimeOriginal;
    ifd2['OffsetTimeOriginal'] = exif.offsetTimeOriginal;
    ifd2['OffsetTimeDigitized'] = exif.offsetTimeOriginal;
  }
  if (exif.subSecTimeOriginal !== undefined) ifd2['SubSecTimeOriginal'] = exif.subSecTimeOriginal;
  if (exif.serial !== undefined) ifd2['BodySerialNumber'] = exif.serial;
  if (exif.lens !== undefined) ifd2['LensModel'] = exif.lens;
  const img = noiseImage(prng, 96, 64);
  return img.jpeg({ quality: 80 }).withExif({ IFD0: ifd0, IFD2: ifd2 }).toBuffer();
}

/** A small real TIFF with camera EXIF: stands in for the metadata part of a TIFF-based RAW. */
export async function rawTiffHead(prng: Prng, exif: ShotExif): Promise<Buffer> {
  const img = noiseImage(prng, 32, 24);
  return addExifToTiff(await img.tiff({ compression: 'none' }).toBuffer(), exif);
}

/**
 * Overwrites the TIFF structure inside a JPEG's EXIF APP1 segment with garbage, keeping the segment's
 * length and the "Exif\0\0II*\0" signature, so readers find EXIF and then choke on it.
 * Returns false when the JPEG has no EXIF segment.
 */
export function garbleExif(jpeg: Buffer, prng: Prng): boolean {
  let at = 2;
  while (at + 4 <= jpeg.length && jpeg[at] === 0xff) {
    const marker = jpeg[at + 1]!;
    const len = jpeg.readUInt16BE(at + 2);
    if (marker === 0xe1 && jpeg.toString('latin1', at + 4, at + 10) === 'Exif\u0000\u0000') {
      const tiffStart = at + 10;
      prng.fill(jpeg.subarray(tiffStart + 4, at + 2 + len));
      return true;
    }
    if (marker === 0xda) break;
    at += 2 + len;
  }
  return false;
}

/** A RIFF/WAVE header for 16-bit mono PCM at 8 kHz with `dataBytes` of samples following it. */
export function wavHeader(dataBytes: number): Buffer {
  const h = Buffer.alloc(44);
  h.write('RIFF', 0, 'latin1');
  h.writeUInt32LE(36 + dataBytes, 4);
  h.write('WAVEfmt ', 8, 'latin1');
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // mono
  h.writeUInt32LE(8000, 24);
  h.writeUInt32LE(16000, 28);
  h.writeUInt16LE(2, 32);
  h.writeUInt16LE(16, 34);
  h.write('data', 36, 'latin1');
  h.writeUInt32LE(dataBytes, 40);
  return h;
}

const xmlEscape = (s: string): string => s.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** An XMP sidecar like an editor leaves next to a RAW (rating, capture date, camera). */
export function xmpSidecar(exif: ShotExif, rating: number): Buffer {
  const isoDate = exif.dateTimeOriginal.replace(/^(\d{4}):(\d{2}):(\d{2}) /, '$1-$2-$3T') + (exif.offsetTimeOriginal ?? '');
  return Buffer.from(
    [
      '<?xpacket begin="\uFEFF" id="W5M0MpCehiHzreSzNTczkc9d"?>',
      '<x:xmpmeta xmlns:x="adobe:ns:meta/">',
      ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">',
      '  <rdf:Description rdf:about=""',
      '    xmlns:xmp="http://ns.adobe.com/xap/1.0/"',
      '    xmlns:tiff="http://ns.adobe.com/tiff/1.0/"',
      '    xmlns:exif="http://ns.adobe.com/exif/1.0/"',
      `   xmp:Rating="${rating}"`,
      `   tiff:Make="${xmlEscape(exif.make)}"`,
      `   tiff:Model="${xmlEscape(exif.model)}"`,
      `   exif:DateTimeOriginal="${isoDate}"/>`,
      ' </rdf:RDF>',
      '</x:xmpmeta>',
      '<?xpacket end="w"?>',
      '',
    ].join('\n'),
    'utf8',
  );
}
