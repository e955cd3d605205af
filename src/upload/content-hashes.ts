import { ShuttleError, abortReason, isShuttleError } from '../errors.js';
import type { HashAlgorithm } from '../io/hashing.js';
import { readBack } from '../io/readback.js';

export interface CopyContent {
  size: number;
  /** What ingest verified the copy against: the read must give this, or the copy is damaged. */
  xxh128: string;
}

export interface CloudHashes {
  sha256: string;
  md5?: string | undefined;
}

/**
 * The cloud's hashes of a verified local copy whose SHA-256 ingest did not take: one read of the copy
 * past the page cache, hashed in the hash workers with xxh128 as well, so that the SHA-256 describes the
 * very bytes that ingest proved equal to the source's (xxh128 of the copy's read-back) and that the
 * upload then sends (the server checks them against this SHA-256). The MD5 is for a single-request
 * upload, which sends it as Content-MD5 instead of hashing the file once more.
 *
 * Throws UPLOAD_VERIFY (with the copy's path) when the bytes are not the journal's, and SOURCE_UNREADABLE
 * (with the path and the errno as cause) when the copy cannot be read: the upload worker's damaged and
 * unavailable local copies.
 */
export async function hashLocalCopy(path: string, expected: CopyContent, withMd5: boolean, signal?: AbortSignal): Promise<CloudHashes> {
  const algorithms: HashAlgorithm[] = withMd5 ? ['xxh128', 'sha256', 'md5'] : ['xxh128', 'sha256'];
  let read;
  try {
    read = await readBack(path, algorithms, signal === undefined ? {} : { signal });
  } catch (error) {
    if (signal?.aborted) throw abortReason(signal);
    if (isShuttleError(error, 'DEST_WRITE_FAILED')) {
      throw new ShuttleError('SOURCE_UNREADABLE', `cannot read ${path} to hash it for upload`, { context: { path }, cause: error.cause });
    }
    throw error;
  }
  const { xxh128, sha256, md5 } = read.hashes;
  if (read.size !== expected.size || xxh128 !== expected.xxh128.toLowerCase()) {
    throw new ShuttleError(
      'UPLOAD_VERIFY',
      `local copy ${path} read as ${read.size} bytes with xxh128 ${xxh128 ?? '(none)'}, the journal recorded ${expected.size} bytes with ${expected.xxh128}; not uploading it`,
      { context: { path, algorithm: 'xxh128', expected: expected.xxh128, actual: xxh128 } },
    );
  }
  if (sha256 === undefined || (withMd5 && md5 === undefined)) throw new ShuttleError('INTERNAL', `hashing ${path} gave no ${sha256 === undefined ? 'sha256' : 'md5'}`);
  return withMd5 ? { sha256, md5 } : { sha256 };
}
