import { constants as fsConstants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { lstat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ShuttleError, abortReason, errnoCode, throwIfAborted } from '../errors.js';
import { DIRECT_ALIGN, giveBackAlignedBlock, openDirect, takeAlignedBlock } from '../io/direct.js';
import type { Source, SourceItem } from '../device/source.js';
import type { HashAlgorithm, HashSet } from '../io/hashing.js';
import { IngestHasher } from '../io/hash-worker-client.js';
import { openTemp, fsyncDir, fsyncFile, applyTestFault, destinationError, writeAll } from '../io/durable.js';
import { ProgressiveReadBack, readBack, readBackThrough, type ReadBackResult } from '../io/readback.js';
import { nativeFs } from '../io/native-fs.js';
import { sameBytes, type SameBytes } from '../io/same-bytes.js';

/**
 * One destination's share of a single-read copy: a temp file written at increasing offsets. Whole blocks
 * go through `direct` (O_DIRECT, past the page cache) where the filesystem allows; the last partial
 * block, times and fsync through `handle`. A file big enough is read back while it is written (`verify`).
 */
export interface TempTarget {
  readonly tempPath: string;
  readonly handle: FileHandle;
  direct?: FileHandle | undefined;
  written: number;
  error?: ShuttleError;
  /** Follows the writes, reading back each block once written (see ProgressiveReadBack). */
  verify?: ProgressiveReadBack | undefined;
  /**
   * `handle` is open to read too, and stays open past the seal for the read-back (readBackThrough): a file
   * read back whole after its seal, where the addon can turn O_DIRECT on for it.
   */
  readsBack?: boolean;
}

export interface ReadResult {
  size: number;
  hashes: HashSet;
}

/**
 * Creates the temp file for a copy of `expectedSize` bytes (the source's listed size). From
 * PROGRESSIVE_FROM bytes on, it is read back as it is written, which leaves only its last block to read
 * once sealed; the test fault hook may damage each block between its write and its read.
 */
export async function createTempTarget(finalPath: string, expectedSize = 0): Promise<TempTarget> {
  let t: TempTarget | undefined;
  try {
    // Read back whole once sealed, through the handle it was written with where it can be (see readsBack).
    const readsBack = expectedSize < PROGRESSIVE_FROM && nativeFs() !== undefined;
    const { path, handle } = await openTemp(finalPath, undefined, { readable: readsBack });
    t = { tempPath: path, handle, written: 0, readsBack };
    if (takesDirectWrites(expectedSize)) t.direct = await openDirect(path, fsConstants.O_WRONLY).catch(() => undefined);
    if (expectedSize >= PROGRESSIVE_FROM) {
      // A file that cannot be opened to read now is read back whole once sealed, which reports why.
      t.verify = await ProgressiveReadBack.open(path, VERIFY_ALGORITHMS, {
        blockSize: PROGRESSIVE_BLOCK,
        beforeRead: (from, to) => applyTestFault(path, { from, to, size: expectedSize }),
        expectedSize,
      }).catch(() => undefined);
    }
    return t;
  } catch (cause) {
    if (t) await discardTemp(t);
    throw destinationError(cause, 'write', finalPath);
  }
}

/**
 * Whether a copy of `expectedSize` bytes (0: not known) writes any block through O_DIRECT: whole staged
 * blocks, and a last block of whole aligned sectors. A smaller file of another size goes through the page
 * cache whole, and a direct handle would be an open and a close per file for nothing.
 */
function takesDirectWrites(expectedSize: number): boolean {
  return expectedSize === 0 || expectedSize >= STAGE_BLOCK || expectedSize % DIRECT_ALIGN === 0;
}

/** Closes and removes a temp file; never throws (it runs on error paths). */
export async function discardTemp(t: TempTarget): Promise<void> {
  // First, as its reads may still be in flight into the file.
  await t.verify?.dispose();
  await t.direct?.close().catch(() => {});
  await t.handle.close().catch(() => {});
  await unlink(t.tempPath).catch(() => {});
}

/**
 * Blocks a fan-out lets run ahead of the slowest destination's writes: reading and hashing the next
 * blocks overlaps the writes of earlier ones.
 */
export const WRITE_AHEAD = 4;
/** The unit of writing: whole aligned blocks, so destinations can take them with O_DIRECT. */
export const STAGE_BLOCK = 1024 * 1024;
/** Bytes per read of a read-back that follows the writes: one staged block, so each write is followed at once. */
export const PROGRESSIVE_BLOCK = STAGE_BLOCK;
/**
 * Files below this size are read back whole after they are sealed, as before: a read-back during the
 * copy would find at most one block to read early, and holds a file handle for the whole copy.
 */
export const PROGRESSIVE_FROM = 2 * PROGRESSIVE_BLOCK;

/**
 * What fanOut hashes with: MultiHasher (in this thread), or WorkerHasher / IngestHasher (in the hash
 * worker: a promise that resolves once the worker is done with the bytes).
 */
export interface BlockHasher {
  update(data: Uint8Array): void | Promise<void>;
}

/**
 * Reads `chunks` once, staging them into aligned blocks that are hashed and written to every live
 * target. Blocks live in shared memory, so a WorkerHasher hashes them in its thread while this one reads
 * on; a block is refilled only after its writes and its hash update have both ended. Hashing whole
 * staged blocks in order gives the same digests as hashing the chunks. Writes to one target run in
 * order, at most WRITE_AHEAD blocks behind the read, so the slowest destination paces the read; a target
 * that fails drops out with its error (its temp removed at once, giving the space back to other
 * destinations on the same volume) and the others carry on. `head`
 * holds chunks already read (for metadata) that are written first. Each chunk is copied out before the
 * next is pulled, so a source may reuse its buffer for the next one, except when the stream was opened
 * with `recycle` ≥ LENT_BLOCKS (`lent`): then the whole sectors of a chunk in page-aligned shared memory
 * laid out like the file (a folder source's blocks, a USB camera's reads; see alignedLead) are written and
 * hashed from where they are, only its unaligned edges are copied, and it is kept no longer than that
 * promise allows.
 */
export async function fanOut(
  chunks: AsyncIterable<Buffer>,
  head: readonly Buffer[],
  targets: readonly TempTarget[],
  hasher: BlockHasher,
  signal: AbortSignal,
  lent = 1,
): Promise<void> {
  const queues = targets.map(() => Promise.resolve());
  // Hash updates not yet known to be over; the blocks go back to the pool only after them.
  const hashing = new Set<Promise<unknown>>();
  const window: Array<Promise<unknown>> = [];
  // One block filling, up to WRITE_AHEAD being written and hashed: block i is refilled only after both ended.
  // Taken on first use: a source that lends whole blocks never needs them.
  const ring: Array<Buffer | undefined> = Array.from({ length: WRITE_AHEAD + 1 }, () => undefined);
  const staging = (): Buffer => (ring[slot] ??= takeAlignedBlock(STAGE_BLOCK, { shared: true }));
  // Pulling chunk i + 1 waits until at most WRITE_AHEAD - 1 blocks are in flight, so chunk i + 1 - WRITE_AHEAD is done with.
  const adopt = lent >= LENT_BLOCKS;
  let slot = 0;
  let fill = 0;
  let offset = 0;
  const writeTo = async (t: TempTarget, data: Buffer, at: number): Promise<void> => {
    if (t.error) return;
    try {
      if (t.direct && data.length % DIRECT_ALIGN === 0 && at % DIRECT_ALIGN === 0) {
        try {
          await writeAll(t.direct, data, at);
        } catch (err) {
          // Accepted at open, refused at the first transfer: this filesystem has no direct I/O after all.
          if (errnoCode(err) !== 'EINVAL' || at !== 0) throw err;
          await t.direct.close().catch(() => {});
          t.direct = undefined;
          await writeAll(t.handle, data, at);
        }
      } else {
        await writeAll(t.handle, data, at);
      }
      t.written = at + data.length;
      t.verify?.advance(t.written);
    } catch (cause) {
      t.error = destinationError(cause, 'write', t.tempPath);
      // Nothing else is in flight for this target (its writes are queued in order): safe to drop now.
      await discardTemp(t);
    }
  };
  /**
   * Writes and hashes `data` (the staged block, or lent bytes) at the current offset; resolves once it may
   * pull on, with the promise of this block's writes and hash.
   */
  const dispatch = async (data: Buffer): Promise<{ done: Promise<unknown> }> => {
    const at = offset;
    offset += data.length;
    const hashed = Promise.resolve(hasher.update(data));
    hashing.add(hashed);
    void hashed.then(
      () => hashing.delete(hashed),
      () => {},
    );
    const step = Promise.all([hashed, ...targets.map((t, i) => (queues[i] = queues[i]!.then(() => writeTo(t, data, at))))]);
    // Awaited below in order; until then a failed hash must not count as an unhandled rejection.
    step.catch(() => {});
    window.push(step);
    if (window.length >= WRITE_AHEAD) await window.shift();
    return { done: step };
  };
  const staged = async (): Promise<void> => {
    const data = staging().subarray(0, fill);
    slot = (slot + 1) % ring.length;
    fill = 0;
    await dispatch(data);
  };
  /** Copies `chunk[from, to)` into staging blocks, dispatching each one filled. */
  const copyOut = async (chunk: Buffer, from: number, to: number): Promise<void> => {
    for (let off = from; off < to; ) {
      const n = Math.min(to - off, STAGE_BLOCK - fill);
      chunk.copy(staging(), fill, off, off + n);
      fill += n;
      off += n;
      if (fill === STAGE_BLOCK) await staged();
    }
  };
  // Lent chunks whose blocks may still be in flight, oldest first, each as the promise of its blocks' ends.
  const held: Array<Promise<unknown>> = [];
  /** Writes and hashes what it can of a chunk where it is; resolves with the promise of those blocks' ends. */
  const adoptOrCopy = async (chunk: Buffer): Promise<{ done: Promise<unknown> }> => {
    const lead = alignedLead(chunk, offset + fill);
    if (lead === undefined || lead >= chunk.length) {
      await copyOut(chunk, 0, chunk.length);
      return { done: Promise.resolve() };
    }
    // A whole lent block goes as it is; otherwise the bytes before the first aligned offset end the block
    // being staged, and the tail short of a whole sector is staged for the next chunk. The pages between go
    // as one block, however long: each block costs a write and a message to the hash worker.
    const whole = fill === 0 && chunk.byteOffset === 0 && chunk.length <= STAGE_BLOCK;
    const tail = whole ? chunk.length : lead + Math.floor((chunk.length - lead) / DIRECT_ALIGN) * DIRECT_ALIGN;
    await copyOut(chunk, 0, lead);
    if (fill > 0) await staged();
    const { done } = tail > lead ? await dispatch(chunk.subarray(lead, tail)) : { done: Promise.resolve() };
    await copyOut(chunk, tail, chunk.length);
    return { done };
  };
  const take = async (chunk: Buffer): Promise<void> => {
    throwIfAborted(signal);
    if (!adopt) return copyOut(chunk, 0, chunk.length);
    held.push((await adoptOrCopy(chunk)).done);
    // The source may reuse a chunk once `lent` more are pulled: the oldest must be done with by then.
    while (held.length >= lent) await held.shift();
  };
  try {
    for (const c of head) await take(c);
    for await (const c of chunks) await take(c as Buffer);
    if (fill > 0) await staged();
    await Promise.all(window);
  } finally {
    // No write nor hash may still be reading a block when it goes back to the pool.
    await Promise.all(queues);
    await Promise.allSettled(hashing);
    for (const b of ring) if (b) giveBackAlignedBlock(b);
  }
}

/**
 * The `recycle` a stream must be opened with for fanOut to keep its whole blocks instead of copying them:
 * a lent block is in flight until WRITE_AHEAD more are pulled.
 */
export const LENT_BLOCKS = WRITE_AHEAD;

/**
 * How many bytes of `chunk`, which continues the file at offset `at`, come before the first one at an
 * aligned file offset, when from there on its memory and the file's offsets are aligned alike, so that its
 * whole sectors can be written with O_DIRECT and hashed in the worker where they are; undefined when they
 * cannot (private memory, or memory offset from the file's grid). Only takeAlignedBlock makes shared
 * memory here, so shared memory is page-aligned.
 */
function alignedLead(chunk: Buffer, at: number): number | undefined {
  if (!(chunk.buffer instanceof SharedArrayBuffer) || chunk.byteLength === 0) return undefined;
  const lead = (DIRECT_ALIGN - (at % DIRECT_ALIGN)) % DIRECT_ALIGN;
  return (chunk.byteOffset + lead) % DIRECT_ALIGN === 0 ? lead : undefined;
}

/**
 * fsync, preserve the source's mtime, close. The read-back, if it follows the writes, stays open, and so
 * does the handle of a temp read back through it (readsBack).
 */
export async function sealTemp(t: TempTarget, mtimeMs: number): Promise<void> {
  try {
    await t.direct?.close();
    t.direct = undefined;
    const when = new Date(mtimeMs);
    await t.handle.utimes(when, when);
    await fsyncFile(t.handle);
    if (!t.readsBack) await t.handle.close();
  } catch (cause) {
    await t.handle.close().catch(() => {});
    throw destinationError(cause, 'write', t.tempPath);
  }
}

export interface ReadBackCheck {
  ok: boolean;
  direct: boolean;
  actual: { size: number; xxh128: string | undefined };
}

/** What a read-back compares with the source read. */
const VERIFY_ALGORITHMS: readonly HashAlgorithm[] = ['xxh128'];

/** Reads a written copy back past the page cache and compares size and xxh128 with the source read. */
export async function checkCopy(path: string, expected: ReadResult, signal: AbortSignal): Promise<ReadBackCheck> {
  return compare(await readBack(path, VERIFY_ALGORITHMS, { signal, expectedSize: expected.size }), expected);
}

/**
 * Checks a sealed temp as checkCopy does: a read-back that followed the writes reads the rest of the file;
 * otherwise the whole file is read now, after (tests only) damaging it on request.
 */
export async function checkTemp(t: TempTarget, expected: ReadResult, signal: AbortSignal): Promise<ReadBackCheck> {
  const verify = t.verify;
  if (verify === undefined) {
    await applyTestFault(t.tempPath);
    if (!t.readsBack) return checkCopy(t.tempPath, expected, signal);
    try {
      return compare(await readBackThrough(t.handle, t.tempPath, VERIFY_ALGORITHMS, { signal, expectedSize: expected.size }), expected);
    } finally {
      await t.handle.close();
    }
  }
  t.verify = undefined;
  return compare(await verify.finish(signal), expected);
}

function compare(rb: ReadBackResult, expected: ReadResult): ReadBackCheck {
  const ok = rb.size === expected.size && rb.hashes.xxh128 !== undefined && rb.hashes.xxh128 === expected.hashes.xxh128;
  return { ok, direct: rb.direct, actual: { size: rb.size, xxh128: rb.hashes.xxh128 } };
}

/**
 * Whether a file already at the destination (an earlier copy of the same content, or what an interrupted
 * run published at the target name) may stand for this copy: it must be a regular file of the same size
 * whose bytes, read past the page cache, equal the verified temp's byte for byte. Equal hashes are not
 * enough: xxh128 finds the candidate, but a crafted source could hold two different files with one
 * xxh128, and adopting the other would lose this one. A match is then fsync'd with its folder, since the
 * run that made it may have died before its name was durable. A file that cannot be read is not adopted
 * (it is someone else's to sort out); failing to sync one that matched is an error.
 */
export async function adoptExisting(path: string, temp: { path: string; size: number }, signal: AbortSignal): Promise<SameBytes | undefined> {
  let check: SameBytes | undefined;
  try {
    // Not a link's target: the copy must be the file at this name, not wherever a link leads.
    const st = await lstat(path);
    if (st.isFile()) check = st.size === temp.size ? await sameBytes(path, temp.path, signal) : { same: false, differsAt: Math.min(st.size, temp.size) };
  } catch {
    if (signal.aborted) throw abortReason(signal);
  }
  if (check === undefined || !check.same) return check;
  await fsyncFile(path);
  await fsyncDir(dirname(path));
  return check;
}

/**
 * Reads the head of a stream (at least `cap` bytes or all of it) without losing the rest. A chunk is
 * copied only when another is pulled after it, since the pull lets the source reuse its buffer
 * (OpenOptions.recycle); the last one stays the source's until the caller pulls again. Most files' first
 * chunk covers the head, so nothing is copied (under emulation, copying into fresh memory was a
 * noticeable part of a small file's cost).
 */
export async function readHead(iter: AsyncIterator<Buffer>, cap: number): Promise<{ head: Buffer[]; bytes: number; ended: boolean }> {
  const head: Buffer[] = [];
  let bytes = 0;
  for (;;) {
    const r = await iter.next();
    if (r.done) return { head, bytes, ended: true };
    bytes += r.value.length;
    if (bytes >= cap) {
      head.push(r.value);
      return { head, bytes, ended: false };
    }
    head.push(Buffer.from(r.value));
  }
}

/** The head as one buffer: the chunk itself when there is one (no copy). */
export function joinHead(head: readonly Buffer[]): Buffer {
  return head.length === 1 ? (head[0] as Buffer) : Buffer.concat(head);
}

/** A one-destination rewrite from a fresh read of the source, after a read-back mismatch. */
export async function rewriteFromSource(source: Source, item: SourceItem, target: TempTarget, algorithms: readonly HashAlgorithm[], signal: AbortSignal): Promise<ReadResult> {
  const hasher = new IngestHasher(algorithms);
  try {
    const lent = source.lendsBlocks ? LENT_BLOCKS : 1;
    const stream = await source.open(item, { recycle: lent, chunkSize: STAGE_BLOCK, signal });
    try {
      await fanOut(stream, [], [target], hasher, signal, lent);
    } finally {
      stream.destroy();
    }
    if (target.error) throw target.error;
    return { size: hasher.bytes, hashes: await hasher.digest() };
  } finally {
    hasher.dispose();
  }
}
