/**
 * What differs between S3 implementations, as data: addressing, which checksum features the SDK may use,
 * and which ETags are plain MD5s that Shuttle can recompute locally to verify an upload.
 */
import { ShuttleError } from '../errors.js';
import type { ObjectChecksum } from './checksum.js';

export type ProviderName = 'aws' | 'minio' | 'ceph' | 'swift' | 'r2' | 'b2' | 'generic';

export type ChecksumMode = 'WHEN_REQUIRED' | 'WHEN_SUPPORTED';

export interface ProviderProfile {
  readonly name: ProviderName;
  /** `https://host/bucket/key` instead of `https://bucket.host/key`. */
  readonly forcePathStyle: boolean;
  /**
   * `WHEN_SUPPORTED` makes the SDK send CRC32 trailers in `aws-chunked` bodies, which Swift, Ceph RGW, R2 and B2
   * reject or store verbatim; every profile keeps it at `WHEN_REQUIRED` and relies on Content-MD5 instead.
   */
  readonly requestChecksumCalculation: ChecksumMode;
  readonly responseChecksumValidation: ChecksumMode;
  /**
   * Refuses a request whose body does not hash to its signed payload SHA-256 (x-amz-content-sha256), as
   * SigV4 servers should: a single PUT whose hashes a read ahead just took then goes without Content-MD5
   * (and without the MD5 pass), the SHA-256 being the stronger check. Only where seen to hold (Swift's
   * s3api, test/upload-unhashed.test.ts); AWS keeps Content-MD5, which object-locked buckets require.
   */
  readonly checksSignedPayload: boolean;
  /** The ETag of a single-PUT object is the hex MD5 of its bytes (not true under SSE-KMS or SSE-C on AWS). */
  readonly singlePartEtagIsMd5: boolean;
  /** The ETag of a completed multipart object is `md5(md5(part1) ‖ … ‖ md5(partN))-N`. */
  readonly multipartEtagIsMd5OfParts: boolean;
  /** The ETag an UploadPart returns (and ListParts repeats) is the part's MD5: lets a resume adopt parts the server holds. */
  readonly partEtagIsMd5: boolean;
  /**
   * Takes S3's additional checksums (`x-amz-checksum-*`, see checksum.ts): checks them on arrival, stores
   * them, returns them on HEAD. AWS only: the other servers reject them or store nothing.
   */
  readonly additionalChecksums: boolean;
  /** Region to sign with when neither the caller nor the environment names one. */
  readonly defaultRegion?: string;
}

const md5Etags = { singlePartEtagIsMd5: true, multipartEtagIsMd5OfParts: true, partEtagIsMd5: true } as const;
const noAdditionalChecksums = { additionalChecksums: false } as const;
const whenRequired = { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' } as const;

export const PROVIDERS: Readonly<Record<ProviderName, ProviderProfile>> = Object.freeze({
  aws: {
    name: 'aws',
    forcePathStyle: false,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    // AWS returns the checksums it stores, so validating them on reads costs nothing and can catch corruption.
    responseChecksumValidation: 'WHEN_SUPPORTED',
    ...md5Etags,
    additionalChecksums: true,
    checksSignedPayload: false,
  },
  minio: { name: 'minio', forcePathStyle: true, ...whenRequired, ...md5Etags, ...noAdditionalChecksums, checksSignedPayload: false, defaultRegion: 'us-east-1' },
  ceph: { name: 'ceph', forcePathStyle: true, ...whenRequired, ...md5Etags, ...noAdditionalChecksums, checksSignedPayload: false, defaultRegion: 'us-east-1' },
  // Checked against Swift 2.30 s3api: part ETags are MD5s, the multipart ETag is md5-of-part-md5s-N.
  swift: { name: 'swift', forcePathStyle: true, ...whenRequired, ...md5Etags, ...noAdditionalChecksums, checksSignedPayload: true, defaultRegion: 'us-east-1' },
  // R2 documents S3-style part and multipart ETags for uploads created after 2023-06-21.
  r2: { name: 'r2', forcePathStyle: true, ...whenRequired, ...md5Etags, ...noAdditionalChecksums, checksSignedPayload: false, defaultRegion: 'auto' },
  // B2 documents MD5 ETags only for single-part objects; multipart objects are checked by stored metadata.
  b2: {
    name: 'b2',
    forcePathStyle: false,
    ...whenRequired,
    singlePartEtagIsMd5: true,
    multipartEtagIsMd5OfParts: false,
    partEtagIsMd5: false,
    ...noAdditionalChecksums,
    checksSignedPayload: false,
    defaultRegion: 'us-east-1',
  },
  // Unknown server: trust no ETag format, verify by size and the metadata Shuttle stored.
  generic: {
    name: 'generic',
    forcePathStyle: true,
    ...whenRequired,
    singlePartEtagIsMd5: false,
    multipartEtagIsMd5OfParts: false,
    partEtagIsMd5: false,
    ...noAdditionalChecksums,
    checksSignedPayload: false,
    defaultRegion: 'us-east-1',
  },
});

/** An additional checksum (upload.checksum) only where the profile takes them: CONFIG_INVALID naming both otherwise. */
export function checkAdditionalChecksum(profile: ProviderProfile, checksum: ObjectChecksum | undefined): void {
  if (checksum === undefined || profile.additionalChecksums) return;
  throw new ShuttleError('CONFIG_INVALID', `upload.checksum = "${checksum}" needs the aws provider; ${profile.name} does not take S3's additional checksums`, {
    context: { provider: profile.name, checksum },
  });
}

export function isProviderName(value: string): value is ProviderName {
  return Object.hasOwn(PROVIDERS, value);
}

/**
 * The profile an endpoint most likely needs when the caller did not name one: no endpoint means AWS itself,
 * well-known hosts map to their provider, anything else is `generic`.
 */
export function detectProvider(endpoint: string | undefined): ProviderName {
  if (endpoint === undefined || endpoint === '') return 'aws';
  let host: string;
  try {
    host = new URL(endpoint).hostname.toLowerCase();
  } catch {
    return 'generic';
  }
  if (host === 'amazonaws.com' || host.endsWith('.amazonaws.com')) return 'aws';
  if (host.endsWith('.r2.cloudflarestorage.com')) return 'r2';
  if (host.endsWith('.backblazeb2.com')) return 'b2';
  return 'generic';
}
