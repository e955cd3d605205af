import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { ShuttleError, throwIfAborted } from '../errors.js';
import { MultiHasher, type HashAlgorithm, type HashSet } from '../ingest/hashing.js';
import { bodyStream, type RateLimiter } from './rate-limit.js';
import type { PartBody } from './target.js';

/** One part read from the file: its bytes (held until sent) and the MD5 they must arrive with. */
export interface ReadPart {
  readonly offset: number;
  readonly data: Buffer;
  readonly md5: string;
}

const READ_CHUNK = 4 * 1024 * 1024;

/**
 * Reads a file front to back, one part at a time, feeding every byte to the whole-file hashers on the way:
 * the SHA-256 that decides whether the upload may complete covers exactly the bytes that were sent.
 * Memory is one part per `read` the caller still holds.
 */
export class PartReader {
  readonly #fh: FileHandle;
  readonly #path: string;
  readonly #size: number;
  readonly #hasher: MultiHasher;
  #offset = 0;

  private constructor(fh: FileHandle, path: string, size: number, hasher: MultiHasher) {
    this.#fh = fh;
    this.#path = path;
    this.#size = size;
    this.#hasher = hasher;
  }

  static async open(path: string, size: number, algorithms: readonly HashAlgorithm[]): Promise<PartReader> {
    const hasher = await MultiHasher.create(algorithms);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (error) {
      throw new ShuttleError('SOURCE_UNREADABLE', `cannot open ${path} for upload`, { context: { path }, cause: error });
    }
    return new PartReader(fh, path, size, hasher);
  }

  get offset(): number {
    return this.#offset;
  }

  /** The next `length` bytes. A file shorter than the size the journal recorded is an UPLOAD_VERIFY failure. */
  async read(length: number, signal?: AbortSignal): Promise<ReadPart> {
    const offset = this.#offset;
    const data = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      throwIfAborted(signal);
      let bytesRead: number;
      try {
        ({ bytesRead } = await this.#fh.read(data, filled, Math.min(READ_CHUNK, length - filled), offset + filled));
      } catch (error) {
        throw new ShuttleError('SOURCE_UNREADABLE', `read error in ${this.#path} at byte ${offset + filled}`, {
          context: { path: this.#path, offset: offset + filled },
          cause: error,
        });
      }
      if (bytesRead === 0) {
        throw new ShuttleError('UPLOAD_VERIFY', `local file ${this.#path} ended at byte ${offset + filled}, expected ${this.#size} bytes`, {
          context: { path: this.#path, expected: this.#size, actual: offset + filled },
        });
      }
      this.#hasher.update(data.subarray(filled, filled + bytesRead));
      filled += bytesRead;
    }
    this.#offset += length;
    return { offset, data, md5: createHash('md5').update(data).digest('hex') };
  }

  /** Digests of everything read so far. */
  digest(): HashSet {
    return this.#hasher.digest();
  }

  async close(): Promise<void> {
    await this.#fh.close();
  }
}

/** A request body over a part's bytes, throttled by the limiter, reopenable for each attempt. */
export function partBody(part: Pick<ReadPart, 'data' | 'md5'>, limiter: RateLimiter | undefined): PartBody {
  return {
    size: part.data.byteLength,
    md5: part.md5,
    open: (signal) => bodyStream(part.data, limiter, signal),
  };
}
