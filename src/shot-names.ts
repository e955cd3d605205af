import { ShuttleError } from './errors.js';

/**
 * File names as ingest and upload both treat them: which files make one shot, the byte limits a name
 * keeps to, and the n-th alternative to a taken name (a destination path or an S3 key).
 */

/**
 * What a file is to the photographer. Files of one shot (JPEG + RAW + sidecars, or a clip + its THM)
 * share a folder and a stem, and travel together: the same destination name, the same collision suffix.
 */
export type Role = 'image' | 'raw' | 'video' | 'sidecar' | 'other';

const IMAGE_EXTS = new Set(['jpg', 'jpeg', 'heic', 'heif', 'hif', 'png', 'tif', 'tiff']);
const RAW_EXTS = new Set(['cr2', 'cr3', 'nef', 'nrw', 'arw', 'sr2', 'raf', 'orf', 'rw2', 'dng', 'pef', 'srw', '3fr', 'iiq', 'rwl', 'x3f']);
const VIDEO_EXTS = new Set(['mp4', 'mov', 'mxf', 'avi', 'mts', 'm2ts']);
const SIDECAR_EXTS = new Set(['xmp', 'thm', 'wav']);

/** The role an extension (lower case, no dot) names, if it names one. */
export function roleOfExt(ext: string): Role | undefined {
  if (IMAGE_EXTS.has(ext)) return 'image';
  if (RAW_EXTS.has(ext)) return 'raw';
  if (VIDEO_EXTS.has(ext)) return 'video';
  if (SIDECAR_EXTS.has(ext)) return 'sidecar';
  return undefined;
}

/**
 * Splits a file name into the part a shot's files share and the extension that tells them apart.
 * `IMG_0001.CR2.xmp` (a sidecar named after one member) keeps `.CR2.xmp` as its extension so that it
 * pairs with `IMG_0001.JPG`; `.hidden` has no extension. The extension keeps its leading dot.
 */
export function splitShotName(fileName: string): { stem: string; ext: string } {
  const last = fileName.lastIndexOf('.');
  if (last <= 0) return { stem: fileName, ext: '' };
  const outer = fileName.slice(last + 1).toLowerCase();
  if (SIDECAR_EXTS.has(outer)) {
    const inner = fileName.lastIndexOf('.', last - 1);
    if (inner > 0) {
      const innerRole = roleOfExt(fileName.slice(inner + 1, last).toLowerCase());
      if (innerRole !== undefined && innerRole !== 'sidecar') return { stem: fileName.slice(0, inner), ext: fileName.slice(inner) };
    }
  }
  return { stem: fileName.slice(0, last), ext: fileName.slice(last) };
}

/** Longest file or folder name in bytes (ext4, XFS, btrfs; exFAT's 255 UTF-16 units is never tighter). */
export const MAX_SEGMENT_BYTES = 255;
/** Longest relative path in bytes (Linux PATH_MAX). */
export const MAX_PATH_BYTES = 4096;

export const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

/** Longest prefix of `s` within `maxBytes` of UTF-8, never splitting a code point. */
export function truncateUtf8(s: string, maxBytes: number): string {
  let bytes = 0;
  let end = 0;
  for (const cp of s) {
    const n = utf8Bytes(cp);
    if (bytes + n > maxBytes) break;
    bytes += n;
    end += cp.length;
  }
  return s.slice(0, end);
}

/**
 * The n-th alternative name for a taken destination: `DCIM/IMG_0001.JPG`, 1 → `DCIM/IMG_0001_1.JPG`.
 * The suffix goes before the shot extension (`IMG_0001_1.CR2.xmp`), so a shot's files keep matching
 * stems. The name is shortened if needed to stay within the segment and path limits.
 */
export function withCollisionSuffix(relPath: string, n: number): string {
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new ShuttleError('INTERNAL', `collision suffix must be an integer >= 1, got ${n}`, { context: { relPath, n } });
  }
  const slash = relPath.lastIndexOf('/');
  const dir = relPath.slice(0, slash + 1);
  const { stem, ext } = splitShotName(relPath.slice(slash + 1));
  const suffix = `_${n}`;
  const budget = Math.min(MAX_SEGMENT_BYTES, MAX_PATH_BYTES - utf8Bytes(dir)) - utf8Bytes(suffix) - utf8Bytes(ext);
  const keptStem = budget >= utf8Bytes(stem) ? stem : truncateUtf8(stem, Math.max(0, budget));
  return `${dir}${keptStem}${suffix}${ext}`;
}
