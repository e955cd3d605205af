import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { GiB, MiB, S3_LIMITS, choosePartSize, multipartEtag, normalizeEtag, partCount, partRange } from '../src/upload/multipart.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isShuttleError(error) ? error.code : 'other';
  }
  return undefined;
}

describe('multipart part sizing', () => {
  it('uses the preferred part size while the file fits in 10,000 parts of it', () => {
    expect(choosePartSize(40 * MiB, { preferredPartSize: 5 * MiB })).toBe(5 * MiB);
    expect(choosePartSize(10_000 * 16 * MiB)).toBe(16 * MiB);
  });

  it('grows parts in whole MiB for files too large for 10,000 preferred parts', () => {
    const size = 10_000 * 16 * MiB + 1;
    expect(choosePartSize(size)).toBe(17 * MiB);
    expect(partCount(size, 17 * MiB)).toBeLessThanOrEqual(10_000);
  });

  it('refuses parts above the memory bound or S3 limit, and preferred sizes S3 would reject', () => {
    expect(codeOf(() => choosePartSize(2_000 * GiB, { maxPartSize: 128 * MiB }))).toBe('UPLOAD_FAILED');
    expect(codeOf(() => choosePartSize(60_000 * GiB, { maxPartSize: 6 * GiB }))).toBe('UPLOAD_FAILED');
    expect(codeOf(() => choosePartSize(10 * MiB, { preferredPartSize: 4 * MiB }))).toBe('CONFIG_INVALID');
  });

  it('always yields a legal plan: ≥ 5 MiB parts, ≤ 10,000 of them, covering every byte once', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4 * 1024 * GiB }), fc.integer({ min: 5, max: 64 }), (size, preferredMiB) => {
        const partSize = choosePartSize(size, { preferredPartSize: preferredMiB * MiB, maxPartSize: 5 * GiB });
        const n = partCount(size, partSize);
        expect(partSize).toBeGreaterThanOrEqual(S3_LIMITS.minPartSize);
        expect(n).toBeLessThanOrEqual(S3_LIMITS.maxParts);
        const last = partRange(n, size, partSize);
        expect(last.offset + last.length).toBe(size);
        expect(last.length).toBeLessThanOrEqual(partSize);
        if (n > 1) expect(last.length).toBeGreaterThan(0);
      }),
    );
  });
});

describe('multipart ETag', () => {
  it('matches the ETag Swift s3api reported for a known two-part object', () => {
    // Observed on Swift 2.30: part 1 = 5 MiB of 0x01, part 2 = 1000 bytes of 0x07.
    const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');
    expect(multipartEtag([md5(Buffer.alloc(5 * MiB, 1)), md5(Buffer.alloc(1000, 7))])).toBe('1a120464470394ea3ed45da92d110cb1-2');
  });

  it('compares ETags without quotes, weak markers or case', () => {
    expect(normalizeEtag('W/"ABC-2"')).toBe('abc-2');
    expect(normalizeEtag('"d41d8cd98f00b204e9800998ecf8427e"')).toBe('d41d8cd98f00b204e9800998ecf8427e');
  });
});
