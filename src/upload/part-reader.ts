import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { constants as fsConstants } from 'node:fs';
import { ShuttleError, errnoCode, throwIfAborted } from '../errors.js';
import { DIRECT_ALIGN, giveBackAlignedBlock, openDirect, takeAlignedBlock } from '../io/direct.js';
// Types only: the ingest hashers (WASM and native modules) load on first need, in PartReader.open.
import type { HashSet, Updater } from '../io/hashing.js';
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

function openError(path: string, cause: unknown): ShuttleError {
  return new ShuttleError('SOURCE_UNREADABLE', `cannot open ${path} for upload`, { context: { path }, cause });
}

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
    const whole = options.whole === 'xxh128' ? await (await import('../io/hashing.js')).makeUpdater('xxh128') : nodeHash('sha256');
    const crc = options.crc64nvme === true ? await crc64Nvme() : undefined;
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (error) {
      throw openError(path, error);
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
 * A check of the bytes a body sends, made while they are read for sending instead of in a pass of their
 * own: `verify` gets the digest of the whole range before its last chunk goes out, and throws (an
 * UPLOAD_VERIFY naming the path) to fail the body, so the server never receives a complete request of
 * wrong bytes.
 */
export interface SendCheck {
  algorithm: 'sha256' | 'xxh128';
  verify(digest: HashSet): void;
}

export interface PartBodyOptions {
  /** Throttles the sending. */
  limiter?: RateLimiter | undefined;
  /** An additional checksum of the range, for the server to check and store. */
  checksum?: ChecksumValue | undefined;
  /** Checks the bytes as they are read for sending (see SendCheck). */
  check?: SendCheck | undefined;
  /**
   * Read past the page cache: for a range read once, to send (with `check`). A range a PartReader has
   * just hashed is in the cache, and reading it from there spares the disk a second read.
   */
  uncached?: boolean;
}

/**
 * A request body over a part's byte range of the file, throttled by the limiter, reopenable for each attempt.
 * A file that became unreadable or shorter fails the body (SOURCE_UNREADABLE, UPLOAD_VERIFY with the path),
 * never sends fewer bytes than announced; so does a failed `check`.
 */
export function partBody(path: string, part: Omit<SignedPart, 'md5'> & { md5?: string | undefined }, options: PartBodyOptions = {}): PartBody {
  const { limiter, checksum, check, uncached = false } = options;
  return {
    size: part.size,
    ...(part.md5 !== undefined ? { md5: part.md5 } : {}),
    sha256: part.sha256,
    ...(checksum !== undefined ? { checksum } : {}),
    open: (signal) => new RangeBody({ path, offset: part.offset, size: part.size, limiter, check, uncached, signal }),
  };
}

interface RangeSpec {
  path: string;
  offset: number;
  size: number;
  limiter: RateLimiter | undefined;
  check: SendCheck | undefined;
  uncached: boolean;
  signal: AbortSignal | undefined;
}

/** Read buffers a body piped to a request may have in flight at once: they come back as the socket takes them. */
const SEND_BUFFERS = 4;

/**
 * The byte range as a stream. Piped (which is how the HTTP client sends a body) it reads into a few
 * page-aligned blocks of its own, each reused once the request has written it out, and for an
 * `uncached` range with O_DIRECT: fresh buffers per chunk cost the upload about a tenth of its CPU in
 * allocation, page faults and garbage collection, and reading through the page cache as much again in
 * kernel time (measured, bench/upload.ts; see src/io/direct.ts). Read any other way, every chunk is a
 * fresh buffer, since the reader may keep it, read through the cache.
 */
class RangeBody extends Readable {
  readonly #spec: RangeSpec;
  #chunks: AsyncGenerator<Buffer> | undefined;
  #pool: SendBuffers | undefined;

  constructor(spec: RangeSpec) {
    super({ highWaterMark: SEND_CHUNK });
    this.#spec = spec;
  }

  override _read(): void {
    this.#chunks ??= rangeChunks(this.#spec, async (size) => Buffer.allocUnsafe(size), false);
    this.#chunks.next().then(
      (r) => void this.push(r.done === true ? null : r.value),
      (error: unknown) => this.destroy(error instanceof Error ? error : new Error(String(error))),
    );
  }

  override pipe<T extends NodeJS.WritableStream>(destination: T, options?: { end?: boolean }): T {
    // Already flowing the ordinary way: the two ways must not both read the file.
    if (this.#chunks !== undefined || this.#pool !== undefined) return super.pipe(destination, options);
    const pool = (this.#pool = new SendBuffers(SEND_BUFFERS));
    void this.#pump(destination, pool, options?.end !== false);
    return destination;
  }

  async #pump(destination: NodeJS.WritableStream, pool: SendBuffers, end: boolean): Promise<void> {
    try {
      for await (const chunk of rangeChunks(this.#spec, () => pool.take(), this.#spec.uncached)) {
        if (this.destroyed) return;
        // Back to the pool only once written out; a failed write may still hold it, so it is dropped.
        destination.write(chunk, (error) => (error ? undefined : pool.give(chunk)));
      }
      if (!this.destroyed && end) destination.end();
    } catch (error) {
      if (!this.destroyed) this.destroy(error instanceof Error ? error : new Error(String(error)));
    }
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#pool?.close();
    // Closes the file; a read under way finishes first.
    const chunks = this.#chunks;
    if (chunks !== undefined) void chunks.return(undefined).catch(() => {});
    callback(error);
  }
}

/**
 * A body's few page-aligned blocks (SEND_CHUNK bytes), handed out and given back; `take` waits while all
 * are out, which also holds back a body whose socket is slow, and fails once the pool is closed (its body
 * destroyed). Blocks given back before the close go on to later bodies (see giveBackAlignedBlock); one
 * still out at the close is never reused.
 */
class SendBuffers {
  readonly #limit: number;
  readonly #free: Buffer[] = [];
  readonly #waiting: Array<{ resolve(b: Buffer): void; reject(e: Error): void }> = [];
  #made = 0;
  #closed = false;

  constructor(limit: number) {
    this.#limit = limit;
  }

  async take(): Promise<Buffer> {
    if (this.#closed) throw new ShuttleError('ABORTED', 'request body closed');
    let block = this.#free.pop();
    if (block === undefined && this.#made < this.#limit) {
      this.#made++;
      block = takeAlignedBlock(SEND_CHUNK);
    }
    return block ?? (await new Promise<Buffer>((resolve, reject) => this.#waiting.push({ resolve, reject })));
  }

  /** Gives back the block a chunk (a view from its start) was read into. */
  give(chunk: Buffer): void {
    const block = Buffer.from(chunk.buffer, 0, SEND_CHUNK);
    const waiter = this.#waiting.shift();
    if (waiter !== undefined) waiter.resolve(block);
    else if (!this.#closed) this.#free.push(block);
  }

  close(): void {
    this.#closed = true;
    for (const block of this.#free.splice(0)) giveBackAlignedBlock(block);
    for (const w of this.#waiting.splice(0)) w.reject(new ShuttleError('ABORTED', 'request body closed'));
  }
}

/**
 * The range's bytes in chunks (at most SEND_CHUNK each) read into buffers from `buffer`, checked and
 * throttled. With `direct`, reads bypass the page cache where the filesystem allows: the buffers are then
 * page-aligned blocks of SEND_CHUNK bytes, every read starts at an aligned offset (parts start at whole
 * MiB) and asks for whole pages, so the last one may read past the range; only the range is sent.
 */
async function* rangeChunks(spec: RangeSpec, buffer: (size: number) => Promise<Buffer>, direct: boolean): AsyncGenerator<Buffer> {
  const { path, offset, size, limiter, check, signal } = spec;
  // The send check's hasher: xxh128 comes from the ingest hashers, loaded only here.
  const hasher = check === undefined ? undefined : check.algorithm === 'xxh128' ? await (await import('../io/hashing.js')).makeUpdater('xxh128') : nodeHash('sha256');
  const verify = (): void => check?.verify({ [check.algorithm]: hasher!.digest() });
  if (size === 0) {
    verify();
    return;
  }
  const openCached = (): Promise<FileHandle> =>
    open(path, 'r').catch((error: unknown) => {
      throw openError(path, error);
    });
  // Direct reads where asked and the range starts aligned; through the cache otherwise, or from the first
  // read that cannot be direct on.
  const directHandle =
    direct && offset % DIRECT_ALIGN === 0
      ? await openDirect(path, fsConstants.O_RDONLY).catch((error: unknown) => {
          throw openError(path, error);
        })
      : undefined;
  let isDirect = directHandle !== undefined;
  let fh = directHandle ?? (await openCached());
  const readThroughCache = async (): Promise<void> => {
    await fh.close();
    fh = await openCached();
    isDirect = false;
  };
  /** Bytes read into `target` at `position`: whole pages under O_DIRECT, else just `want`. */
  const readAt = async (target: Buffer, want: number, position: number): Promise<number> => {
    // A short read mid-range (never seen under O_DIRECT but at the end of the file) would leave the next
    // offset unaligned: the rest is read through the cache.
    if (isDirect && position % DIRECT_ALIGN !== 0) await readThroughCache();
    try {
      return (await fh.read(target, 0, isDirect ? Math.ceil(want / DIRECT_ALIGN) * DIRECT_ALIGN : want, position)).bytesRead;
    } catch (error) {
      // Some filesystems accept O_DIRECT at open and refuse the first transfer.
      if (!(isDirect && position === offset && errnoCode(error) === 'EINVAL')) throw readError(path, position, error);
      await readThroughCache();
      return readAt(target, want, position);
    }
  };
  const slice = limiter === undefined ? SEND_CHUNK : LIMITED_SEND_CHUNK;
  try {
    for (let done = 0; done < size; ) {
      throwIfAborted(signal);
      const position = offset + done;
      const want = Math.min(slice, size - done);
      const target = await buffer(want);
      const bytesRead = await readAt(target, want, position);
      if (bytesRead === 0) throw shortFile(path, position, offset + size);
      const chunk = target.subarray(0, Math.min(bytesRead, want));
      hasher?.update(chunk);
      done += bytesRead;
      // The last chunk goes out only if everything read hashes as the check expects.
      if (done === size) verify();
      if (limiter !== undefined) await limiter.take(bytesRead, signal);
      yield chunk;
    }
  } finally {
    await fh.close();
  }
}
