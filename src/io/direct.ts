import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { errnoCode } from '../errors.js';

/**
 * Direct I/O (O_DIRECT) for Node: past the page cache, which on small boxes and VMs costs more CPU than
 * the disk costs time (measured here: writing 2 GiB through the cache took 4.5 s of kernel CPU, 0.3 s
 * with O_DIRECT; reading, 2.5 s against 0.2 s). O_DIRECT needs the memory address, the file offset and
 * the length of each transfer aligned. Offsets and lengths are the caller's to choose (whole blocks from
 * a multiple of DIRECT_ALIGN). Addresses are not: a Buffer's can only be probed for the alignment the
 * current disk asks for, and the next disk may ask for more. A WebAssembly.Memory, however, is
 * page-mapped by V8, so its buffer starts on a page boundary, which satisfies every block device.
 */

/** File offsets and lengths of direct transfers are multiples of this (covers 512- and 4096-byte sectors). */
export const DIRECT_ALIGN = 4096;
const WASM_PAGE = 64 * 1024;

/**
 * Bytes to ask for at `position`: a whole block, but near the expected end of the file only up to the
 * first sector boundary past it. A direct read that reaches past the end of a file costs the kernel
 * zero-filling the rest of the buffer (iomap treats it as a hole): for a file of a few kilobytes read
 * into a 4 MiB block, many times the cost of the read itself. A file longer than expected is still read
 * whole: a read that returns all it asked for is followed by another, as a whole block is.
 */
export function readLength(blockSize: number, position: number, expectedSize: number | undefined): number {
  if (expectedSize === undefined || position > expectedSize) return blockSize;
  const wanted = Math.ceil((expectedSize - position + 1) / DIRECT_ALIGN) * DIRECT_ALIGN;
  return Math.min(blockSize, wanted);
}

/**
 * Idle blocks kept per size for reuse; more than that go back to the garbage collector, which frees shared
 * ones late (the hash worker holds views of them too), so a pool smaller than what is in use at once
 * grows the memory with every file. The pool only ever holds as many as were in use together: two files
 * read at once (one's read ending while the next begins) each hold a folder source's ring of LENT_BLOCKS +
 * 2 blocks (or a staging ring of WRITE_AHEAD + 1 for another source), and beside them each destination's
 * read-back that follows the copy holds two, as do the read-backs finishing earlier files.
 */
export const MAX_IDLE_BLOCKS = 24;

// The project's type libraries (es2023 + node) leave out WebAssembly; this is the one part used here.
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number; maximum?: number; shared?: boolean }) => { readonly buffer: ArrayBuffer | SharedArrayBuffer };
};

/** Idle blocks by kind (shared or not) and size. */
const idleBlocks = { private: new Map<number, Buffer[]>(), shared: new Map<number, Buffer[]>() };

export interface AlignedBlockOptions {
  /**
   * Back the block with a SharedArrayBuffer (a shared WebAssembly.Memory), so a worker thread can read it
   * without a copy (see WorkerHasher). Private by default: some APIs refuse views of shared memory.
   */
  shared?: boolean;
}

/** A page-aligned block of `size` bytes, from the pool when one is idle. */
export function takeAlignedBlock(size: number, options: AlignedBlockOptions = {}): Buffer {
  const shared = options.shared === true;
  const idle = idleBlocks[shared ? 'shared' : 'private'].get(size)?.pop();
  if (idle) return idle;
  const pages = Math.ceil(size / WASM_PAGE);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared });
  // The view keeps the buffer, and with it the mapping, alive; the memory never grows, so never detaches.
  return Buffer.from(memory.buffer, 0, size);
}

/** Returns a block to the pool; the caller must not touch it (nor have a transfer in flight into it) afterwards. */
export function giveBackAlignedBlock(block: Buffer): void {
  const pool = idleBlocks[block.buffer instanceof SharedArrayBuffer ? 'shared' : 'private'];
  let list = pool.get(block.byteLength);
  if (!list) pool.set(block.byteLength, (list = []));
  if (list.length < MAX_IDLE_BLOCKS) list.push(block);
}

/** Idle aligned blocks held by this process, by block size (shared and private together; for tests and diagnostics). */
export function idleAlignedBlocks(): ReadonlyMap<number, number> {
  const counts = new Map<number, number>();
  for (const pool of [idleBlocks.private, idleBlocks.shared]) {
    for (const [size, list] of pool) counts.set(size, (counts.get(size) ?? 0) + list.length);
  }
  return counts;
}

/**
 * Opens `path` with O_DIRECT added to `flags`; undefined where the platform or the filesystem has no
 * direct I/O (EINVAL at open). Some filesystems accept the flag and refuse the first transfer instead:
 * callers treat EINVAL on their first transfer the same way.
 */
export async function openDirect(path: string | Buffer, flags: number): Promise<FileHandle | undefined> {
  const oDirect = fsConstants.O_DIRECT;
  if (oDirect === undefined || oDirect === 0) return undefined;
  try {
    return await open(path, flags | oDirect);
  } catch (err) {
    if (errnoCode(err) === 'EINVAL') return undefined;
    throw err;
  }
}
