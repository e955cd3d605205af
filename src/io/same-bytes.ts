import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { abortReason, errnoCode } from '../errors.js';
import { DIRECT_ALIGN, giveBackAlignedBlock, openDirect, takeAlignedBlock } from './direct.js';

/**
 * Whether two files hold the same bytes, compared byte for byte rather than by a hash: what lets an
 * existing file stand for a new copy even when the hashes that found it (xxh128, not collision resistant)
 * could have been made to agree. Both files are read past the page cache where the filesystem allows
 * (O_DIRECT, see src/io/direct.ts), so the bytes compared are the ones on the device.
 */

/** Bytes per read of each file. */
const COMPARE_BLOCK = 1024 * 1024;

export interface SameBytes {
  same: boolean;
  /** Where the files first differ (the shorter one's size when one is a prefix of the other); absent when the same. */
  differsAt?: number;
}

/** One file read in whole blocks from the start, past the cache where the filesystem allows. */
class BlockReader {
  #handle: FileHandle;
  #direct: boolean;
  #position = 0;
  #ended = false;

  private constructor(
    private readonly path: string,
    handle: FileHandle,
    direct: boolean,
  ) {
    this.#handle = handle;
    this.#direct = direct;
  }

  static async open(path: string): Promise<BlockReader> {
    const direct = await openDirect(path, fsConstants.O_RDONLY);
    return direct ? new BlockReader(path, direct, true) : new BlockReader(path, await open(path, fsConstants.O_RDONLY), false);
  }

  /** Fills `block` from where the last fill ended; returns the bytes read, fewer than the block only at the end of the file. */
  async fill(block: Buffer): Promise<number> {
    let n = 0;
    while (n < block.length && !this.#ended) {
      let got: number;
      try {
        got = (await this.#handle.read(block, n, block.length - n, this.#position)).bytesRead;
      } catch (err) {
        // Some filesystems accept O_DIRECT at open and refuse it at the first read: read through the cache.
        if (!this.#direct || this.#position !== 0 || errnoCode(err) !== 'EINVAL') throw err;
        await this.#handle.close();
        this.#handle = await open(this.path, fsConstants.O_RDONLY);
        this.#direct = false;
        continue;
      }
      this.#position += got;
      n += got;
      // A direct read that ends off the alignment grid can only be the end of the file (another would fail).
      if (got === 0 || (this.#direct && this.#position % DIRECT_ALIGN !== 0)) this.#ended = true;
    }
    return n;
  }

  close(): Promise<void> {
    return this.#handle.close().catch(() => {});
  }
}

/** Reads `a` and `b` side by side and compares them byte for byte, stopping at the first difference. */
export async function sameBytes(a: string, b: string, signal?: AbortSignal): Promise<SameBytes> {
  const blocks = [takeAlignedBlock(COMPARE_BLOCK), takeAlignedBlock(COMPARE_BLOCK)] as const;
  const readers: BlockReader[] = [];
  try {
    readers.push(await BlockReader.open(a));
    readers.push(await BlockReader.open(b));
    const [ra, rb] = readers as [BlockReader, BlockReader];
    for (let at = 0; ; ) {
      if (signal?.aborted) throw abortReason(signal);
      const [na, nb] = await Promise.all([ra.fill(blocks[0]), rb.fill(blocks[1])]);
      const n = Math.min(na, nb);
      const x = blocks[0].subarray(0, n);
      const y = blocks[1].subarray(0, n);
      if (!x.equals(y)) {
        let i = 0;
        while (x[i] === y[i]) i++;
        return { same: false, differsAt: at + i };
      }
      if (na !== nb) return { same: false, differsAt: at + n };
      if (na < COMPARE_BLOCK) return { same: true };
      at += na;
    }
  } finally {
    await Promise.all(readers.map((r) => r.close()));
    giveBackAlignedBlock(blocks[0]);
    giveBackAlignedBlock(blocks[1]);
  }
}
