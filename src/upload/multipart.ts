import { createHash } from 'node:crypto';
import { ShuttleError } from '../errors.js';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** S3's multipart rules (AWS, and what compatible servers enforce at most). */
export const S3_LIMITS = Object.freeze({
  minPartSize: 5 * MiB,
  maxPartSize: 5 * GiB,
  maxParts: 10_000,
  maxSinglePutSize: 5 * GiB,
});

export interface PartSizeOptions {
  /** Part size for files small enough to need no more than 10,000 parts of it. */
  preferredPartSize?: number;
  /** Upper bound, since each part in flight is held in memory once. */
  maxPartSize?: number;
}

export const DEFAULT_PART_SIZE = 16 * MiB;
export const DEFAULT_MAX_PART_SIZE = 512 * MiB;

/**
 * The smallest whole-MiB part size ≥ the preferred one that fits `size` into 10,000 parts.
 * Throws when that would exceed the configured (memory) bound or S3's 5 GiB part limit.
 */
export function choosePartSize(size: number, options: PartSizeOptions = {}): number {
  const preferred = options.preferredPartSize ?? DEFAULT_PART_SIZE;
  const bound = Math.min(options.maxPartSize ?? DEFAULT_MAX_PART_SIZE, S3_LIMITS.maxPartSize);
  if (!Number.isSafeInteger(preferred) || preferred < S3_LIMITS.minPartSize || preferred > S3_LIMITS.maxPartSize) {
    throw new ShuttleError('CONFIG_INVALID', `part size ${preferred} is outside S3's 5 MiB – 5 GiB range`, { context: { partSize: preferred } });
  }
  const needed = Math.ceil(size / S3_LIMITS.maxParts);
  const partSize = needed <= preferred ? preferred : Math.ceil(needed / MiB) * MiB;
  if (partSize > bound) {
    throw new ShuttleError('UPLOAD_FAILED', `a ${size}-byte file needs parts of ${partSize} bytes, above the ${bound}-byte limit`, {
      context: { size, partSize, maxPartSize: bound },
    });
  }
  return partSize;
}

export function partCount(size: number, partSize: number): number {
  return Math.max(1, Math.ceil(size / partSize));
}

/** Byte range of a 1-based part. */
export function partRange(partNumber: number, size: number, partSize: number): { offset: number; length: number } {
  const offset = (partNumber - 1) * partSize;
  return { offset, length: Math.max(0, Math.min(partSize, size - offset)) };
}

/** An ETag without quotes or weak marker, lowercase, for comparisons. */
export function normalizeEtag(etag: string): string {
  return etag.trim().replace(/^W\//, '').replace(/^"|"$/g, '').toLowerCase();
}

/** The ETag S3 gives a multipart object: MD5 of the concatenated binary part MD5s, a dash, the part count. */
export function multipartEtag(partMd5sHex: readonly string[]): string {
  const h = createHash('md5');
  for (const md5 of partMd5sHex) h.update(Buffer.from(md5, 'hex'));
  return `${h.digest('hex')}-${partMd5sHex.length}`;
}
