import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { ShuttleError, throwIfAborted } from '../errors.js';
// Types only: the ingest hashers (WASM and native modules) load on first need, in PartReader.open.
import type { HashSet, Updater } from '../ingest/hashing.js';
import { crc64Nvme, type ChecksumValue, type Crc64Nvme } from './checksum.js';
import type { RateLimiter } from './rate-limit.js';
import type { PartBody } from './target.js';

/** One byte range of the file, hashed: the MD5 its request body must arrive with. */
export interface ReadPart {
  readonly offset: number;
  readonly size: number;
  readonly md5: string;
  /** The range's SHA-256, when the reader was asked for it (see PartReaderOptions). */
  readonly sha256?: string;
}

/** A part whose request is signed with its payload's SHA-256. */
export type SignedPart = ReadPart & { readonly sha256: string };

/** The part, checked to carry the SHA-256 a reader opened with `partSha256` takes. */
export function signedPart(part: ReadPart): SignedPart {
  if (part.sha256 === undefined) throw new ShuttleError('INTERNAL', `part at byte ${part.offset} was read without its SHA-256`, { context: { offset: part.offset } });
  return { ...part, sha256: part.sha256 };
}

export interface PartReaderOptions {
  /**
   * The whole-file hash compared with the journal's: `sha256` (the default), or `xxh128`, several times
   * cheaper, when the parts are SHA-256-hashed anyway for their signatures and the journal has an xxh128.
   */
  whole?: 'sha256' | 'xxh128';
  /** Also hash each part with SHA-256, the payload hash its request is signed with. */
  partSha256?: boolean;
  /** Also take the whole file's CRC-64/NVME, a full-object checksum S3 can store (see checksum.ts). */
  crc64nvme?: boolean;
}

function nodeHash(algorithm: 'md5' | 'sha256'): Updater {
  const h = createHash(algorithm);
  return { update: (c) => void h.update(c), digest: () => h.digest('hex') };
}

/** Bytes per read; one buffer of it per reader, reused, so that hashing a file allocates nothing more. */
const READ_CHUNK = 2 * 1024 * 1024;
/** Bytes per chunk of a request body: big enough for few writes, small enough to hold little per socket. */
const SEND_CHUNK = 1024 * 1024;
/** Under a rate limit, small slices keep the flow even. */
const LIMITED_SEND_CHUNK = 64 * 1024;

function readError(path: string, offset: number, cause: unknown): ShuttleError {
  return new ShuttleError('SOURCE_UNREADABLE', `read error in ${path} at byte ${offset}`, { context: { path, offset }, cause });
}

function shortFile(path: string, at: number, expected: number): ShuttleError {
  return new ShuttleError('UPLOAD_VERIFY', `local file ${path} ended at byte ${at}, expected ${expected} bytes`, {
    context: { path, expected, actual: at },
  });
}

/**
 * Hashes a file front to back, one part (byte range) at a time: the whole-file hash (which must equal the
 * journal's before anything is completed), each part's MD5, which its request carries as Content-MD5,
 * and, when asked, each part's SHA-256, which its request is signed with. The part's bytes are not kept:
 * its request body reads them again (see partBody), and the server recomputes the hashes of what arrives
 * and refuses the request when they differ, so the bytes stored are the bytes hashed here even if the file
 * changed in between. Memory is one read buffer, whatever the part size.
 */
export class PartReader {
  readonly #fh: FileHandle;
  readonly #path: string;
  readonly #size: number;
  readonly #whole: Updater;
  readonly #wholeAlgorithm: 'sha256' | 'xxh128';
  readonly #partSha256: boolean;
  readonly #crc: Crc64Nvme | undefined;
  readonly #buffer: Buffer;
  #offset = 0;
  #wholeDigest: string | undefined;

  private constructor(fh: FileHandle, path: string, size: number, whole: Updater, crc: Crc64Nvme | undefined, options: PartReaderOptions) {
    this.#fh = fh;
    this.#path = path;
    this.#size = size;
    this.#whole = whole;
    this.#wholeAlgorithm = options.whole ?? 'sha256';
    this.#partSha256 = options.partSha256 ?? false;
    this.#crc = crc;
    this.#buffer = Buffer.allocUnsafe(Math.max(1, Math.min(READ_CHUNK, size)));
  }

  static async open(path: string, size: number, options: PartReaderOptions = {}): Promise<PartReader> {
    // xxh128 comes from the ingest hashers, loaded only here: most upload runs never need them.
    const whole = options.whole === 'xxh128' ? await (await import('../ingest/hashing.js')).makeUpdater('xxh128') : nodeHash('sha256');
    const crc = options.crc64nvme === true ? await crc64Nvme() : undefined;
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (error) {
      throw new ShuttleError('SOURCE_UNREADABLE', `cannot open ${path} for upload`, { context: { path }, cause: error });
    }
    return new PartReader(fh, path, size, whole, crc, options);
  }

  get path(): string {
    return this.#path;
  }

  get offset(): number {
    return this.#offset;
  }

  /** Hashes the next `length` bytes. A file shorter than the size the journal recorded is an UPLOAD_VERIFY failure. */
  async read(length: number, signal?: AbortSignal): Promise<ReadPart> {
    if (this.#wholeDigest !== undefined) throw new ShuttleError('INTERNAL', `read of ${this.#path} after its digest was taken`, { context: { path: this.#path } });
    const offset = this.#offset;
    const md5 = nodeHash('md5');
    const sha256 = this.#partSha256 ? nodeHash('sha256') : undefined;
    let done = 0;
    while (done < length) {
      throwIfAborted(signal);
      const want = Math.min(this.#buffer.byteLength, length - done);
      let bytesRead: number;
      try {
        ({ bytesRead } = await this.#fh.read(this.#buffer, 0, want, offset + done));
      } catch (error) {
        throw readError(this.#path, offset + done, error);
      }
      if (bytesRead === 0) throw shortFile(this.#path, offset + done, this.#size);
      const chunk = this.#buffer.subarray(0, bytesRead);
      this.#whole.update(chunk);
      md5.update(chunk);
      sha256?.update(chunk);
      this.#crc?.update(chunk);
      done += bytesRead;
    }
    this.#offset += length;
    return sha256 === undefined ? { offset, size: length, md5: md5.digest() } : { offset, size: length, md5: md5.digest(), sha256: sha256.digest() };
  }

  /** The whole-file digest of everything read; the reader reads no more after it. */
  digest(): HashSet {
    this.#wholeDigest ??= this.#whole.digest();
    return { [this.#wholeAlgorithm]: this.#wholeDigest };
  }

  /** Base64 CRC-64/NVME of everything read, for a reader opened with `crc64nvme`. */
  async crc64nvme(): Promise<string> {
    if (this.#crc === undefined) throw new ShuttleError('INTERNAL', `${this.#path} was read without its CRC-64/NVME`, { context: { path: this.#path } });
    return this.#crc.digest();
  }

  async close(): Promise<void> {
    await this.#fh.close();
  }
}

/**
 * A request body over a part's byte range of the file, throttled by the limiter, reopenable for each attempt.
 * A file that became unreadable or shorter fails the body (SOURCE_UNREADABLE, UPLOAD_VERIFY with the path),
 * never sends fewer bytes than announced.
 */
export function partBody(path: string, part: SignedPart, limiter: RateLimiter | undefined, checksum?: ChecksumValue): PartBody {
  return {
    size: part.size,
    md5: part.md5,
    sha256: part.sha256,
    ...(checksum !== undefined ? { checksum } : {}),
    open: (signal) => Readable.from(rangeChunks(path, part, limiter, signal), { objectMode: false, highWaterMark: SEND_CHUNK }),
  };
}

async function* rangeChunks(path: string, part: SignedPart, limiter: RateLimiter | undefined, signal: AbortSignal | undefined): AsyncGenerator<Buffer> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (error) {
    throw new ShuttleError('SOURCE_UNREADABLE', `cannot open ${path} for upload`, { context: { path }, cause: error });
  }
  const slice = limiter === undefined ? SEND_CHUNK : LIMITED_SEND_CHUNK;
  try {
    for (let done = 0; done < part.size; ) {
      throwIfAborted(signal);
      const position = part.offset + done;
      // A fresh buffer per chunk: the socket may still hold the previous one.
      const buffer = Buffer.allocUnsafe(Math.min(slice, part.size - done));
      let bytesRead: number;
      try {
        ({ bytesRead } = await fh.read(buffer, 0, buffer.byteLength, position));
      } catch (error) {
        throw readError(path, position, error);
      }
      if (bytesRead === 0) throw shortFile(path, position, part.offset + part.size);
      const chunk = buffer.subarray(0, bytesRead);
      if (limiter !== undefined) await limiter.take(bytesRead, signal);
      done += bytesRead;
      yield chunk;
    }
  } finally {
    await fh.close();
  }
}
