import { createHash } from 'node:crypto';

/**
 * S3's additional checksums (`x-amz-checksum-*`), which AWS checks on arrival, stores with the object and
 * returns on a HEAD with checksum mode on. Shuttle sends them where configured, on top of Content-MD5 and
 * the signed payload hash, so that the object in the bucket carries a checksum of the whole file that
 * outlives Shuttle's own metadata:
 * - `sha256`: the file's SHA-256 as a full-object checksum on a single PUT. AWS has no full-object SHA-256
 *   for multipart uploads: there each part carries its SHA-256 and the object a COMPOSITE checksum, the
 *   SHA-256 of the parts' digests with `-N` appended.
 * - `crc64nvme`: a full-object CRC-64/NVME on single and multipart uploads alike.
 */
export type ObjectChecksum = 'sha256' | 'crc64nvme';
export const OBJECT_CHECKSUMS: readonly ObjectChecksum[] = ['sha256', 'crc64nvme'];

export type ChecksumType = 'FULL_OBJECT' | 'COMPOSITE';

/** A checksum value as S3 carries it: base64 of the digest (a composite one ends in `-N`). */
export interface ChecksumValue {
  readonly algorithm: ObjectChecksum;
  readonly value: string;
}

export function hexToBase64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

/** The COMPOSITE SHA-256 AWS reports for a multipart object: over the parts' raw digests, in part order. */
export function compositeSha256(partSha256Hex: readonly string[]): string {
  const h = createHash('sha256');
  for (const part of partSha256Hex) h.update(Buffer.from(part, 'hex'));
  return `${h.digest('base64')}-${partSha256Hex.length}`;
}

/** A running CRC-64/NVME (the AWS SDK's), read as base64 of its 8 big-endian bytes. */
export interface Crc64Nvme {
  update(chunk: Uint8Array): void;
  digest(): Promise<string>;
}

export async function crc64Nvme(): Promise<Crc64Nvme> {
  // Loaded on first need: only uploads configured for it pay for the module.
  const { Crc64Nvme: Impl } = await import('@aws-sdk/checksums/crc');
  const crc = new Impl();
  return {
    update: (chunk) => crc.update(chunk),
    digest: async () => Buffer.from(await crc.digest()).toString('base64'),
  };
}
