import { ShuttleError } from '../errors.js';
import type { HashSet } from '../io/hashing.js';
import { normalizeEtag } from './multipart.js';
import type { ChecksumValue } from './checksum.js';
import type { RemoteObject } from './target.js';

/** What the caller (the journal) knows about the file: the hashes taken when it was ingested. */
export interface ExpectedContent {
  size: number;
  sha256: string;
  xxh128?: string | undefined;
  /** Known when an earlier hashing pass recorded it (src/upload/content-hashes.ts) or an older ingest took it. */
  md5?: string | undefined;
}

/** User metadata names (sent as `x-amz-meta-sha256`, `x-amz-meta-xxh128`). */
export const META_SHA256 = 'sha256';
export const META_XXH128 = 'xxh128';

export function contentMetadata(expected: ExpectedContent): Record<string, string> {
  const meta: Record<string, string> = { [META_SHA256]: expected.sha256.toLowerCase() };
  if (expected.xxh128 !== undefined) meta[META_XXH128] = expected.xxh128.toLowerCase();
  return meta;
}

/** An object already at the key holds this content when size and the SHA-256 Shuttle stored with it match. */
export function holdsContent(remote: RemoteObject, expected: ExpectedContent): boolean {
  return remote.size === expected.size && remote.metadata[META_SHA256]?.toLowerCase() === expected.sha256.toLowerCase();
}

interface Location {
  bucket: string;
  key: string;
}

/**
 * The local bytes read for upload must be the bytes the journal recorded: otherwise the local copy rotted
 * or changed since ingest, and uploading it would spread the damage. Every hash taken of them is compared
 * with the journal's; the journal must have each one, and at least one must have been taken.
 */
export function verifyLocalDigests(path: string, actual: HashSet, expected: ExpectedContent, where: Location): void {
  const pairs: Array<[string, string | undefined, string | undefined]> = [
    ['sha256', expected.sha256, actual.sha256],
    ['xxh128', expected.xxh128, actual.xxh128],
  ];
  const taken = pairs.filter(([, , got]) => got !== undefined);
  if (taken.length === 0) throw new ShuttleError('INTERNAL', `no hash of ${path} was taken to compare with the journal`, { context: { path } });
  for (const [alg, want, got] of taken) {
    if (want?.toLowerCase() !== got?.toLowerCase()) {
      throw new ShuttleError(
        'UPLOAD_VERIFY',
        `local file ${path} no longer matches its ${alg}: expected ${want ?? '(none in the journal)'}, read ${got}; not uploading it to s3://${where.bucket}/${where.key}`,
        {
          context: { path, algorithm: alg, expected: want, actual: got, bucket: where.bucket, key: where.key },
        },
      );
    }
  }
}

/**
 * After an upload, HEAD must show the size, the ETag Shuttle computed (where the provider's ETags are MD5s),
 * and the stored hashes. Each mismatch names both values.
 */
export function verifyRemoteObject(
  remote: RemoteObject | undefined,
  expected: ExpectedContent & { etag?: string | undefined; checksum?: ChecksumValue | undefined },
  where: Location,
): void {
  const url = `s3://${where.bucket}/${where.key}`;
  const fail = (what: string, want: string | number, got: string | number | undefined): never => {
    throw new ShuttleError('UPLOAD_VERIFY', `uploaded object ${url} differs: ${what} expected ${want}, server has ${got ?? '(none)'}`, {
      context: { bucket: where.bucket, key: where.key, field: what, expected: want, actual: got },
    });
  };
  if (remote === undefined) fail('existence', 'object', 'nothing');
  const r = remote as RemoteObject;
  if (r.size !== expected.size) fail('size', expected.size, r.size);
  if (expected.etag !== undefined && normalizeEtag(r.etag) !== normalizeEtag(expected.etag)) fail('ETag', normalizeEtag(expected.etag), normalizeEtag(r.etag));
  const sha = r.metadata[META_SHA256];
  if (sha?.toLowerCase() !== expected.sha256.toLowerCase()) fail(`x-amz-meta-${META_SHA256}`, expected.sha256, sha);
  if (expected.xxh128 !== undefined) {
    const xxh = r.metadata[META_XXH128];
    if (xxh?.toLowerCase() !== expected.xxh128.toLowerCase()) fail(`x-amz-meta-${META_XXH128}`, expected.xxh128, xxh);
  }
  if (expected.checksum !== undefined) {
    // Base64 is case-sensitive: compared as sent.
    const stored = r.checksums?.[expected.checksum.algorithm];
    if (stored !== expected.checksum.value) fail(`x-amz-checksum-${expected.checksum.algorithm}`, expected.checksum.value, stored);
  }
}
