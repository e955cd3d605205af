/**
 * Previews of tethered shots: a small JPEG per shot for the photographer's screen, made from the verified
 * copy at a destination (never a second read of the camera) and kept in the state folder, out of the
 * library, since it can always be made again.
 */
import { rename, unlink } from 'node:fs/promises';
import { dirname, extname, join } from 'node:path';
import exifr from 'exifr';
import sharp from 'sharp';
import { ensureDir, tempPathFor, writeNewFile } from '../io/durable.js';

const JPEG = /^\.(jpe?g)$/i;
/** TIFF-based RAW formats: a JPEG thumbnail in their IFD1 is what exifr can take out. */
const TIFF_RAW = /^\.(cr2|nef|nrw|arw|srf|sr2|dng|orf|pef|srw|erf|3fr|iiq|tiff?)$/i;

/**
 * Where the preview of a copy at `rel` below a library goes: the same path below `<stateDir>/previews`,
 * a JPEG's as .jpg, any other file's with .jpg added (the RAW of a RAW+JPEG pair must not take the
 * JPEG's preview).
 */
export function previewPathFor(stateDir: string, rel: string): string {
  const safe = rel.split('/').filter((p) => p !== '' && p !== '.' && p !== '..');
  const last = safe.pop() ?? 'preview';
  const ext = extname(last);
  return join(stateDir, 'previews', ...safe, JPEG.test(ext) ? `${last.slice(0, last.length - ext.length)}.jpg` : `${last}.jpg`);
}

/**
 * Writes a JPEG of `source` turned upright (EXIF orientation) and scaled to fit `longEdge` on its longer
 * side (never enlarged) at `target`, replacing an older one. A JPEG is scaled itself; a TIFF-based RAW
 * gives the JPEG thumbnail it embeds (IFD1), if any. False when there is nothing to make a preview of.
 */
export async function writePreview(source: string, target: string, longEdge: number): Promise<boolean> {
  const ext = extname(source);
  let input: string | Buffer | undefined;
  if (JPEG.test(ext)) input = source;
  else if (TIFF_RAW.test(ext)) {
    const embedded = await exifr.thumbnail(source);
    input = embedded === undefined ? undefined : Buffer.from(embedded);
  }
  if (input === undefined) return false;
  const data = await sharp(input).rotate().resize({ width: longEdge, height: longEdge, fit: 'inside', withoutEnlargement: true }).jpeg({ quality: 85 }).toBuffer();
  await ensureDir(dirname(target));
  const temp = tempPathFor(target);
  try {
    await writeNewFile(temp, data);
    await rename(temp, target);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  return true;
}
