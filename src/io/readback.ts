import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { ShuttleError, abortReason, errnoCode } from '../errors.js';
import type { HashAlgorithm, HashSet } from './hashing.js';
import { IngestHasher } from './hash-worker-client.js';
import { nativeFs } from './native-fs.js';
import { DIRECT_ALIGN, giveBackAlignedBlock, idleAlignedBlocks, openDirect, readLength, takeAlignedBlock } from './direct.js';

/**
 * Reads a freshly written file back from the device rather than from the page cache, hashing it as it
 * goes, so that a copy is called verified only when the bytes on the disk are right.
 *
 * Node has no fadvise, so the way past the cache is `O_DIRECT` (see src/io/direct.ts). The hashing runs
 * in the hash worker (IngestHasher, bar small files) on the shared read blocks, so this thread only waits for the device.
 */

/** Default size of one read. Large reads keep the device busy; two of them are in use per read-back. */
export const DEFAULT_READBACK_BLOCK = 4 * 1024 * 1024;

export interface ReadBackOptions {
  signal?: AbortSignal;
  /** Bytes per read, a multiple of 4096. Default 4 MiB. */
  blockSize?: number;
  /**
   * Another consumer of every block read, in order (the upload hashes each part here in the same read);
   * a block is reused only once its update() has resolved, as with the hasher's.
   */
  also?: BlockSink;
  /** The size the file should have (see readLength): reads near its end ask for no more than it. */
  expectedSize?: number;
}

/** Takes the bytes read, block by block; may keep a view of a block only until its promise resolves. */
export interface BlockSink {
  update(data: Uint8Array): Promise<void>;
}

export interface ReadBackResult {
  /** Bytes read, to compare with the bytes written. */
  size: number;
  hashes: HashSet;
  /** False when the filesystem refused O_DIRECT and the bytes may have come from the page cache. */
  direct: boolean;
}

/** Idle read-back blocks held by this process, by block size (for tests and diagnostics). */
export const idleReadBackBlocks = idleAlignedBlocks;

/**
 * Reads `path` from start to end and hashes it with `algorithms`, bypassing the page cache where the
 * filesystem allows. Holds at most two blocks: one being filled by the kernel while the other is hashed.
 * The size is what the reads returned; the caller compares it with what it wrote.
 */
export async function readBack(path: string, algorithms: readonly HashAlgorithm[], options: ReadBackOptions = {}): Promise<ReadBackResult> {
  const { signal } = options;
  const blockSize = options.blockSize ?? DEFAULT_READBACK_BLOCK;
  checkBlockSize(blockSize);
  if (signal?.aborted) throw abortReason(signal);

  const hasher = new IngestHasher(algorithms);
  const also = options.also;
  const sink: BlockSink = also === undefined ? hasher : { update: (data) => Promise.all([hasher.update(data), also.update(data)]).then(() => undefined) };
  const blocks = takeBlocks(blockSize);
  try {
    const direct = await openDirectOrThrow(path);
    if (direct) {
      try {
        const size = await pump(direct, path, blocks, sink, true, signal, { expectedSize: options.expectedSize });
        return { size, hashes: await hasher.digest(), direct: true };
      } catch (err) {
        // Some filesystems accept O_DIRECT at open and refuse it at the first read; nothing has been hashed then.
        if (!(err instanceof DirectRefused)) throw err;
      } finally {
        await direct.close();
      }
    }
    const buffered = await openOrThrow(path, fsConstants.O_RDONLY);
    try {
      const size = await pump(buffered, path, blocks, sink, false, signal);
      return { size, hashes: await hasher.digest(), direct: false };
    } finally {
      await buffered.close();
    }
  } finally {
    hasher.dispose();
    giveBackBlocks(blocks);
  }
}

/**
 * As readBack, through `handle`, a file still open from its writing (opened to read as well): O_DIRECT is
 * turned on for it through the addon instead of a second open past the cache and a close, two round trips
 * through the thread pool per file. A direct read past an fsync'd write reads the device as one through a
 * handle opened afresh would: it writes back any dirty cached page of its range first and never reads the
 * cached pages. Where the addon is missing or the filesystem refuses direct I/O, the file is read through
 * the page cache (`direct` false), as readBack falls back. The caller closes the handle.
 */
export async function readBackThrough(handle: FileHandle, path: string, algorithms: readonly HashAlgorithm[], options: ReadBackOptions = {}): Promise<ReadBackResult> {
  const { signal } = options;
  const blockSize = options.blockSize ?? DEFAULT_READBACK_BLOCK;
  checkBlockSize(blockSize);
  if (signal?.aborted) throw abortReason(signal);
  const native = nativeFs();
  const hasher = new IngestHasher(algorithms);
  const blocks = takeBlocks(blockSize);
  try {
    let direct: boolean;
    try {
      direct = native?.setDirect(handle.fd, true) ?? false;
    } catch (err) {
      throw readError(err, path);
    }
    if (direct) {
      try {
        const size = await pump(handle, path, blocks, hasher, true, signal, { expectedSize: options.expectedSize });
        return { size, hashes: await hasher.digest(), direct: true };
      } catch (err) {
        if (!(err instanceof DirectRefused)) throw err;
        try {
          native!.setDirect(handle.fd, false);
        } catch (e) {
          throw readError(e, path);
        }
      }
    }
    const size = await pump(handle, path, blocks, hasher, false, signal);
    return { size, hashes: await hasher.digest(), direct: false };
  } finally {
    hasher.dispose();
    giveBackBlocks(blocks);
  }
}

/**
 * A read-back that follows a copy while it is being written, so that a big file's verification does not
 * wait for its last byte before it starts: each block is read from the device, past the page cache, once
 * the writer says it is written (advance), and hashed in order; after the file is sealed, finish() reads
 * what is left (the last blocks and the tail) and gives the same result readBack would. Holds two blocks
 * while it reads and none while it waits for the writer, whatever the file's size.
 *
 * Why a block read before the fsync is read past the cache, and why it proves what reading it after the
 * fsync would: an O_DIRECT read first writes back and waits for any dirty cached page of its range
 * (filemap_write_and_wait_range, through kiocb_write_and_wait, at the start of the kernel's direct-read
 * paths, iomap's and the generic one alike), then reads the device, never the cached pages; the copy's
 * whole blocks are written with O_DIRECT and are never in the cache at all. Those bytes are not written
 * again, so the fsync that follows changes nothing a read could see: it makes them durable (the
 * filesystem's metadata, the device's write cache), which is why the file is still fsync'd before it is
 * called verified. A block's bytes are thus checked as the device returns them after their write, as
 * before; what neither catches is a change made after the read (another writer, or a device that lets a
 * later write land on an earlier block), exactly as a change after a whole-file read-back went unseen.
 */
export class ProgressiveReadBack {
  readonly #path: string;
  readonly #algorithms: readonly HashAlgorithm[];
  readonly #options: ProgressiveOptions;
  readonly #blockSize: number;
  readonly #hasher: IngestHasher;
  #handle: FileHandle | undefined;
  /** Bytes read and hashed so far, from the start. */
  #position = 0;
  /** Bytes the writer has finished writing, from the start. */
  #written = 0;
  #following: Promise<void> | undefined;
  #error: unknown;
  /** O_DIRECT was refused at the first read: finish() reads the whole file as readBack does. */
  #refused = false;
  #closed = false;

  private constructor(path: string, algorithms: readonly HashAlgorithm[], handle: FileHandle, options: ProgressiveOptions) {
    this.#path = path;
    this.#algorithms = algorithms;
    this.#handle = handle;
    this.#options = options;
    this.#blockSize = options.blockSize ?? DEFAULT_READBACK_BLOCK;
    this.#hasher = new IngestHasher(algorithms);
  }

  /**
   * Opens `path` for a read-back that follows its writer; undefined where the filesystem refuses O_DIRECT
   * at open (the caller reads back the whole file afterwards, as readBack does, through the cache).
   */
  static async open(path: string, algorithms: readonly HashAlgorithm[], options: ProgressiveOptions = {}): Promise<ProgressiveReadBack | undefined> {
    checkBlockSize(options.blockSize ?? DEFAULT_READBACK_BLOCK);
    const handle = await openDirectOrThrow(path);
    return handle === undefined ? undefined : new ProgressiveReadBack(path, algorithms, handle, options);
  }

  /** The writer finished writing the first `written` bytes of the file; whole blocks among them are read back now. */
  advance(written: number): void {
    if (written > this.#written) this.#written = written;
    if (this.#following === undefined && this.#canRead()) this.#following = this.#follow();
  }

  #canRead(): boolean {
    return !this.#closed && !this.#refused && this.#error === undefined && this.#written - this.#position >= this.#blockSize;
  }

  async #follow(): Promise<void> {
    const handle = this.#handle!;
    const blocks = takeBlocks(this.#blockSize);
    try {
      // Re-checked after each pump in the same turn as it ends: an advance() meanwhile is never missed.
      while (this.#canRead()) {
        this.#position = await pump(handle, this.#path, blocks, this.#hasher, true, undefined, {
          start: this.#position,
          bound: () => (this.#closed ? 0 : this.#written),
          beforeRead: this.#options.beforeRead,
        });
      }
    } catch (err) {
      if (err instanceof DirectRefused) this.#refused = true;
      else this.#error = err;
    } finally {
      giveBackBlocks(blocks);
      this.#following = undefined;
    }
  }

  /**
   * Call once the file is written and fsync'd: reads it on from where the reads during the copy stopped
   * to its end and returns the size and hashes of all of it. Closes the file; dispose() is still safe.
   */
  async finish(signal?: AbortSignal): Promise<ReadBackResult> {
    try {
      await this.#following;
      if (this.#error !== undefined) throw this.#error;
      if (signal?.aborted) throw abortReason(signal);
      if (!this.#refused) {
        const blocks = takeBlocks(this.#blockSize);
        try {
          this.#position = await pump(this.#handle!, this.#path, blocks, this.#hasher, true, signal, {
            start: this.#position,
            beforeRead: this.#options.beforeRead,
            expectedSize: this.#options.expectedSize,
          });
          return { size: this.#position, hashes: await this.#hasher.digest(), direct: true };
        } catch (err) {
          if (!(err instanceof DirectRefused)) throw err;
        } finally {
          giveBackBlocks(blocks);
        }
      }
      // Refused at the first read: nothing was hashed; readBack reads it all through the cache and says so.
      const options: ReadBackOptions = {
        blockSize: this.#blockSize,
        ...(signal === undefined ? {} : { signal }),
        ...(this.#options.expectedSize === undefined ? {} : { expectedSize: this.#options.expectedSize }),
      };
      return await readBack(this.#path, this.#algorithms, options);
    } finally {
      await this.dispose();
    }
  }

  /** Stops following, waits for the read and hash in flight, closes the file. Never throws. */
  async dispose(): Promise<void> {
    this.#closed = true;
    await this.#following;
    const handle = this.#handle;
    this.#handle = undefined;
    if (handle === undefined) return;
    this.#hasher.dispose();
    await handle.close().catch(() => {});
  }
}

export interface ProgressiveOptions {
  /** Bytes per read, a multiple of 4096. Default 4 MiB. */
  blockSize?: number;
  /** Awaited before each read of the bytes [from, to) (to undefined: to the end of the file). */
  beforeRead?: (from: number, to: number | undefined) => Promise<unknown> | undefined;
  /** The size the file should have once written (see readLength). */
  expectedSize?: number;
}

function checkBlockSize(blockSize: number): void {
  if (!Number.isSafeInteger(blockSize) || blockSize <= 0 || blockSize % DIRECT_ALIGN !== 0) {
    throw new ShuttleError('INTERNAL', `read-back block size must be a positive multiple of ${DIRECT_ALIGN}`, {
      context: { blockSize },
    });
  }
}

function takeBlocks(blockSize: number): [Buffer, Buffer] {
  return [takeAlignedBlock(blockSize, { shared: true }), takeAlignedBlock(blockSize, { shared: true })];
}

/** Only once no read nor hash is in flight into them (pump waits for both). */
function giveBackBlocks(blocks: [Buffer, Buffer]): void {
  giveBackAlignedBlock(blocks[0]);
  giveBackAlignedBlock(blocks[1]);
}

/** The first read under O_DIRECT failed with EINVAL: the filesystem does not do direct I/O. */
class DirectRefused extends Error {}

async function openDirectOrThrow(path: string): Promise<FileHandle | undefined> {
  try {
    return await openDirect(path, fsConstants.O_RDONLY);
  } catch (err) {
    throw readError(err, path);
  }
}

async function openOrThrow(path: string, flags: number): Promise<FileHandle> {
  try {
    return await open(path, flags);
  } catch (err) {
    throw readError(err, path);
  }
}

function readError(err: unknown, path: string): ShuttleError {
  const code = errnoCode(err);
  return new ShuttleError('DEST_WRITE_FAILED', `reading back ${path} failed: ${code ?? String(err)}`, {
    context: { path, op: 'read-back', errno: code },
    cause: err,
    retryable: code === 'EIO' || code === 'EAGAIN' || code === 'EINTR',
  });
}

/**
 * Reads from `start` into alternating blocks, hashing one (in the worker) while the kernel fills the
 * other, to the end of the file or, given `bound`, as long as a whole block below bound() is left. Never
 * returns or throws while a read is still writing into a block or a hash still reading one. Resolves to
 * the position after the last byte read.
 */
async function pump(
  handle: FileHandle,
  path: string,
  blocks: [Buffer, Buffer],
  hasher: BlockSink,
  direct: boolean,
  signal: AbortSignal | undefined,
  from: PumpFrom = {},
): Promise<number> {
  const blockSize = blocks[0].byteLength;
  const { bound, beforeRead } = from;
  let position = from.start ?? 0;
  let which = 0;
  // Whether the next block may be read now: always to the end; within a bound only a whole block below it.
  const more = (): boolean => bound === undefined || bound() - position >= blockSize;
  const issue = (block: Buffer): Promise<number> | undefined => {
    if (!more()) return undefined;
    const at = position;
    const hook = beforeRead?.(at, bound === undefined ? undefined : at + blockSize);
    const length = readLength(blockSize, at, from.expectedSize);
    return hook === undefined ? readBlock(handle, block, at, length) : hook.then(() => readBlock(handle, block, at, length));
  };
  let pending: Promise<number> | undefined = issue(blocks[0]);
  try {
    while (pending) {
      const current = blocks[which]!;
      let n: number;
      try {
        n = await pending;
      } catch (err) {
        if (direct && position === 0 && errnoCode(err) === 'EINVAL') throw new DirectRefused();
        throw readError(err, path);
      } finally {
        pending = undefined;
      }
      if (n === 0) break;
      position += n;
      if (signal?.aborted) throw abortReason(signal);
      // A read that ends off the alignment grid can only be the end of the file; another direct read from
      // there would fail with EINVAL. A short but aligned read is followed by one more to be sure.
      // Within a bound the bytes are known to be there: a short read stops it and leaves the rest to the
      // read to the end, which sees where the file really ends.
      const whole = n === blockSize;
      if (bound === undefined ? whole || !direct || position % DIRECT_ALIGN === 0 : whole) {
        which ^= 1;
        pending = issue(blocks[which]!);
      }
      await hasher.update(current.subarray(0, n));
    }
    return position;
  } finally {
    if (pending) await pending.catch(() => undefined);
  }
}

interface PumpFrom {
  /** Where to start reading (a multiple of DIRECT_ALIGN when direct). Default 0. */
  start?: number;
  /** Read only whole blocks that end at or below bound() (asked again before each block); default: to the end. */
  bound?: () => number;
  /** Awaited before each read of [from, to) (to undefined: to the end); test hooks damage a copy here. */
  beforeRead?: ((from: number, to: number | undefined) => Promise<unknown> | undefined) | undefined;
  /** The size the file should have: reads near its end ask for no more than it (see readLength). */
  expectedSize?: number | undefined;
}

function readBlock(handle: FileHandle, block: Buffer, position: number, length: number): Promise<number> {
  return handle.read(block, 0, length, position).then((r) => r.bytesRead);
}
