import { ShuttleError, abortReason, isShuttleError } from '../errors.js';
import { IngestHasher } from '../io/hash-worker-client.js';
import type { HashAlgorithm, HashSet } from '../io/hashing.js';
import { readBack, type BlockSink } from '../io/readback.js';

export interface CopyContent {
  size: number;
  /** What ingest verified the copy against: the read must give this, or the copy is damaged. */
  xxh128: string;
}

/** One part's digests: its request carries the MD5 as Content-MD5 and is signed with the SHA-256. */
export interface PartDigest {
  md5: string;
  sha256: string;
}

/** How the upload will send the file, so that one read takes every hash its requests carry. */
export type UploadShape = { kind: 'single'; md5: boolean } | { kind: 'parts'; partSize: number };

export interface CloudHashes {
  sha256: string;
  md5?: string | undefined;
  /** For a multipart upload: each part's digests, parts of `partSize` bytes (the last one shorter). */
  parts?: { partSize: number; digests: PartDigest[] } | undefined;
}

/**
 * The cloud's hashes of a verified local copy whose SHA-256 ingest did not take: one read of the copy
 * past the page cache, hashed in the hash workers with xxh128 as well, so that the SHA-256 describes the
 * very bytes that ingest proved equal to the source's (xxh128 of the copy's read-back) and that the
 * upload then sends (the server checks them against this SHA-256). The same read takes what the requests
 * carry: the MD5 of a single-request upload (its Content-MD5), or each part's MD5 and SHA-256 for a
 * multipart one, so that the upload needs no hashing pass of its own: the server checks every request's
 * bytes against digests of bytes that matched the journal.
 *
 * Throws UPLOAD_VERIFY (with the copy's path) when the bytes are not the journal's, SOURCE_UNREADABLE
 * (with the path and the errno as cause) when the copy cannot be read: the upload worker's damaged and
 * unavailable local copies; and a retryable INTERNAL when a hash worker stopped under it.
 */
export async function hashLocalCopy(path: string, expected: CopyContent, shape: UploadShape, signal?: AbortSignal): Promise<CloudHashes> {
  const withMd5 = shape.kind === 'single' && shape.md5;
  const algorithms: HashAlgorithm[] = withMd5 ? ['xxh128', 'sha256', 'md5'] : ['xxh128', 'sha256'];
  const parts = shape.kind === 'parts' ? new PartHashes(shape.partSize) : undefined;
  let read;
  let digests: PartDigest[] | undefined;
  try {
    read = await readBack(path, algorithms, { ...(signal === undefined ? {} : { signal }), ...(parts === undefined ? {} : { also: parts }) });
    digests = await parts?.digests();
  } catch (error) {
    if (signal?.aborted) throw abortReason(signal);
    if (isShuttleError(error, 'DEST_WRITE_FAILED')) {
      throw new ShuttleError('SOURCE_UNREADABLE', `cannot read ${path} to hash it for upload`, { context: { path }, cause: error.cause });
    }
    if (isShuttleError(error, 'INTERNAL') && error.context['hashWorker'] === 'stopped') {
      // Nothing about the copy or the file: a fresh worker takes the next attempt.
      throw new ShuttleError('INTERNAL', `hashing ${path} for upload was cut short: ${error.message}`, { context: { path, hashWorker: 'stopped' }, cause: error, retryable: true });
    }
    throw error;
  } finally {
    parts?.dispose();
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
  if (shape.kind === 'parts') return { sha256, parts: { partSize: shape.partSize, digests: digests ?? [] } };
  return withMd5 ? { sha256, md5 } : { sha256 };
}

/** Splits the blocks of a read at part boundaries and hashes each part with MD5 and SHA-256 as it goes. */
class PartHashes implements BlockSink {
  readonly #partSize: number;
  readonly #done: Array<Promise<HashSet>> = [];
  #current: IngestHasher | undefined;
  #filled = 0;

  constructor(partSize: number) {
    this.#partSize = partSize;
  }

  update(data: Uint8Array): Promise<void> {
    const updates: Array<Promise<void>> = [];
    for (let at = 0; at < data.byteLength; ) {
      const hasher = (this.#current ??= new IngestHasher(['md5', 'sha256']));
      const n = Math.min(this.#partSize - this.#filled, data.byteLength - at);
      updates.push(hasher.update(data.subarray(at, at + n)));
      at += n;
      this.#filled += n;
      if (this.#filled === this.#partSize) this.#finishPart();
    }
    return Promise.all(updates).then(() => undefined);
  }

  #finishPart(): void {
    const digest = (this.#current as IngestHasher).digest();
    // Awaited in digests(); a failure before then must not go unhandled.
    digest.catch(() => {});
    this.#done.push(digest);
    this.#current = undefined;
    this.#filled = 0;
  }

  async digests(): Promise<PartDigest[]> {
    if (this.#current !== undefined) this.#finishPart();
    return (await Promise.all(this.#done)).map((h, i) => {
      if (h.md5 === undefined || h.sha256 === undefined) throw new ShuttleError('INTERNAL', `part ${i + 1} was hashed without its MD5 or SHA-256`);
      return { md5: h.md5, sha256: h.sha256 };
    });
  }

  /** Frees the workers' state of a part left unfinished (error paths). */
  dispose(): void {
    this.#current?.dispose();
    this.#current = undefined;
  }
}
