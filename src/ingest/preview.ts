/**
 * Previews of tethered shots: a small JPEG per shot for the photographer's screen, made from the verified
 * copy at a destination (never a second read of the camera) and kept in the state folder, out of the
 * library, since it can always be made again.
 */
import { rename, unlink } from 'node:fs/promises';
import { dirname, extname, join } from 'node:path';
import sharp from 'sharp';
import { ensureDir, tempPathFor, writeNewFile } from '../io/durable.js';

const JPEG = /^\.(jpe?g)$/i;

/** Whether a preview can be made of this file (a JPEG; RAW files get none yet). */
export function hasPreview(name: string): boolean {
  return JPEG.test(extname(name));
}

/** Where the preview of a copy at `rel` below a library goes: the same path below `<stateDir>/previews`, as .jpg. */
export function previewPathFor(stateDir: string, rel: string): string {
  const safe = rel.split('/').filter((p) => p !== '' && p !== '.' && p !== '..');
  const last = safe.pop() ?? 'preview';
  return join(stateDir, 'previews', ...safe, `${last.slice(0, last.length - extname(last).length)}.jpg`);
}

/**
 * Writes a JPEG of `source` turned upright (EXIF orientation) and scaled to fit `longEdge` on its longer
 * side (never enlarged) at `target`, replacing an older one.
 */
export async function writePreview(source: string, target: string, longEdge: number): Promise<void> {
  const data = await sharp(source).rotate().resize({ width: longEdge, height: longEdge, fit: 'inside', withoutEnlargement: true }).jpeg({ quality: 85 }).toBuffer();
  await ensureDir(dirname(target));
  const temp = tempPathFor(target);
  try {
    await writeNewFile(temp, data);
    await rename(temp, target);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}
