import { describe, expect, it } from 'vitest';
import { isShuttleError, type ShuttleError } from '../src/errors.js';
import { contentMetadata, holdsContent, verifyLocalDigests, verifyRemoteObject } from '../src/upload/verify.js';

const sha = 'ab'.repeat(32);
const xxh = 'cd'.repeat(16);
const where = { bucket: 'b', key: 'k' };
const good = { size: 10, etag: '"0123456789abcdef0123456789abcdef-2"', metadata: { sha256: sha, xxh128: xxh } };

function failure(fn: () => void): ShuttleError {
  try {
    fn();
  } catch (error) {
    if (isShuttleError(error)) return error;
    throw error;
  }
  throw new Error('expected a failure');
}

describe('upload verification', () => {
  it('accepts an object whose size, ETag and stored hashes all match', () => {
    expect(() => verifyRemoteObject(good, { size: 10, sha256: sha, xxh128: xxh, etag: '0123456789ABCDEF0123456789ABCDEF-2' }, where)).not.toThrow();
  });

  it.each([
    ['size', { ...good, size: 11 }, '10', '11'],
    ['ETag', { ...good, etag: '"ffff-2"' }, '0123456789abcdef0123456789abcdef-2', 'ffff-2'],
    ['x-amz-meta-sha256', { ...good, metadata: { xxh128: xxh } }, sha, '(none)'],
    ['x-amz-meta-xxh128', { ...good, metadata: { sha256: sha, xxh128: 'ee'.repeat(16) } }, xxh, 'ee'.repeat(16)],
  ])('reports a %s mismatch as UPLOAD_VERIFY naming both values', (field, remote, want, got) => {
    const e = failure(() => verifyRemoteObject(remote, { size: 10, sha256: sha, xxh128: xxh, etag: good.etag }, where));
    expect(e.code).toBe('UPLOAD_VERIFY');
    expect(e.message).toContain(field);
    expect(e.message).toContain(want);
    expect(e.message).toContain(got);
  });

  it('skips the ETag comparison where the provider gives no MD5 ETag', () => {
    expect(() => verifyRemoteObject({ ...good, etag: '"opaque"' }, { size: 10, sha256: sha }, where)).not.toThrow();
  });

  it('reports a missing object', () => {
    expect(failure(() => verifyRemoteObject(undefined, { size: 10, sha256: sha }, where)).code).toBe('UPLOAD_VERIFY');
  });

  it('rejects local bytes whose SHA-256 or xxh128 differ from the journal, naming both values', () => {
    const e = failure(() => verifyLocalDigests('/card/A001.mov', { sha256: 'ff'.repeat(32) }, { size: 1, sha256: sha }, where));
    expect(e.code).toBe('UPLOAD_VERIFY');
    expect(e.message).toContain(sha);
    expect(e.message).toContain('ff'.repeat(32));
    const x = failure(() => verifyLocalDigests('/p', { sha256: sha, xxh128: '00'.repeat(16) }, { size: 1, sha256: sha, xxh128: xxh }, where));
    expect(x.context).toMatchObject({ algorithm: 'xxh128', expected: xxh, actual: '00'.repeat(16) });
  });

  it('compares the hashes that were taken, needs the journal to have each, and at least one taken', () => {
    expect(() => verifyLocalDigests('/p', { xxh128: xxh }, { size: 1, sha256: sha, xxh128: xxh }, where)).not.toThrow();
    expect(failure(() => verifyLocalDigests('/p', { xxh128: xxh }, { size: 1, sha256: sha }, where)).code).toBe('UPLOAD_VERIFY');
    expect(failure(() => verifyLocalDigests('/p', {}, { size: 1, sha256: sha, xxh128: xxh }, where)).code).toBe('INTERNAL');
  });

  it('takes an existing object for this content only when size and stored SHA-256 match', () => {
    expect(holdsContent(good, { size: 10, sha256: sha.toUpperCase() })).toBe(true);
    expect(holdsContent(good, { size: 9, sha256: sha })).toBe(false);
    expect(holdsContent({ ...good, metadata: {} }, { size: 10, sha256: sha })).toBe(false);
  });

  it('stores hashes as lowercase metadata, xxh128 only when known', () => {
    expect(contentMetadata({ size: 1, sha256: sha.toUpperCase() })).toEqual({ sha256: sha });
    expect(contentMetadata({ size: 1, sha256: sha, xxh128: xxh })).toEqual({ sha256: sha, xxh128: xxh });
  });
});
