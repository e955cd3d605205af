import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { ShuttleError, abortReason, errnoCode } from '../errors.js';
import type { HashAlgorithm, HashSet } from './hashing.js';
import { IngestHasher } from './hash-worker-client.js';
import { DIRECT_ALIGN, giveBackAlignedBlock, idleAlignedBlocks, openDirect, takeAlignedBlock } from './direct.js';

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
  if (!Number.isSafeInteger(blockSize) || blockSize <= 0 || blockSize % DIRECT_ALIGN !== 0) {
    throw new ShuttleError('INTERNAL', `read-back block size must be a positive multiple of ${DIRECT_ALIGN}`, {
      context: { blockSize },
    });
  }
  if (signal?.aborted) throw abortReason(signal);

  const hasher = new IngestHasher(algorithms);
  const blocks: [Buffer, Buffer] = [takeAlignedBlock(blockSize, { shared: true }), takeAlignedBlock(blockSize, { shared: true })];
  try {
    const direct = await openDirectOrThrow(path);
    if (direct) {
      try {
        const size = await pump(direct, path, blocks, hasher, true, signal);
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
      const size = await pump(buffered, path, blocks, hasher, false, signal);
      return { size, hashes: await hasher.digest(), direct: false };
    } finally {
      await buffered.close();
    }
  } finally {
    hasher.dispose();
    // Only reached once no read nor hash is in flight (pump waits for both), so the blocks are free to reuse.
    giveBackAlignedBlock(blocks[0]);
    giveBackAlignedBlock(blocks[1]);
  }
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
 * Reads the whole file into alternating blocks, hashing one (in the worker) while the kernel fills the
 * other. Never returns or throws while a read is still writing into a block or a hash still reading one.
 */
async function pump(handle: FileHandle, path: string, blocks: [Buffer, Buffer], hasher: IngestHasher, direct: boolean, signal: AbortSignal | undefined): Promise<number> {
  const blockSize = blocks[0].byteLength;
  let position = 0;
  let which = 0;
  let pending: Promise<number> | undefined = readBlock(handle, blocks[0], position);
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
      const more = n === blockSize || !direct || position % DIRECT_ALIGN === 0;
      if (more) {
        which ^= 1;
        pending = readBlock(handle, blocks[which]!, position);
      }
      await hasher.update(current.subarray(0, n));
    }
    return position;
  } finally {
    if (pending) await pending.catch(() => undefined);
  }
}

function readBlock(handle: FileHandle, block: Buffer, position: number): Promise<number> {
  return handle.read(block, 0, block.byteLength, position).then((r) => r.bytesRead);
}
