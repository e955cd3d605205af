import type { FileHandle } from 'node:fs/promises';
import { unlink } from 'node:fs/promises';
import { ShuttleError, throwIfAborted } from '../errors.js';
import type { Source, SourceItem } from '../device/source.js';
import { MultiHasher, type HashAlgorithm, type HashSet } from './hashing.js';
import { openTemp, fsyncFile, applyTestFault, destinationError, writeAll } from './durable.js';
import { readBack } from './readback.js';

/** One destination's share of a single-read copy: a temp file written at increasing offsets. */
export interface TempTarget {
  readonly tempPath: string;
  readonly handle: FileHandle;
  written: number;
  error?: ShuttleError;
}

export interface ReadResult {
  size: number;
  hashes: HashSet;
}

export async function createTempTarget(finalPath: string, beforeCreate?: (tempPath: string) => void): Promise<TempTarget> {
  try {
    const { path, handle } = await openTemp(finalPath, beforeCreate);
    return { tempPath: path, handle, written: 0 };
  } catch (cause) {
    throw destinationError(cause, 'write', finalPath);
  }
}

/** Closes and removes a temp file; never throws (it runs on error paths). */
export async function discardTemp(t: TempTarget): Promise<void> {
  await t.handle.close().catch(() => {});
  await unlink(t.tempPath).catch(() => {});
}

/**
 * Chunks a fan-out lets run ahead of the slowest destination's writes: reading and hashing the next
 * chunks overlaps the writes of earlier ones. A source asked to recycle buffers must keep more than this
 * many in its ring (see OpenOptions.recycle).
 */
export const WRITE_AHEAD = 4;

/**
 * Reads `stream` once, hashing every chunk and writing it to every live target. Writes to one target run
 * in order, at most WRITE_AHEAD chunks behind the read, so the slowest destination paces the read; a
 * target that fails drops out with its error (its temp removed at once, giving the space back to other
 * destinations on the same volume) and the others carry on. `head` holds chunks already read (for
 * metadata) that are written first.
 */
export async function fanOut(
  chunks: AsyncIterable<Buffer>,
  head: readonly Buffer[],
  targets: readonly TempTarget[],
  hasher: MultiHasher,
  signal?: AbortSignal,
): Promise<void> {
  const queues = targets.map(() => Promise.resolve());
  const window: Array<Promise<unknown>> = [];
  let offset = 0;
  const writeTo = async (t: TempTarget, chunk: Buffer, at: number): Promise<void> => {
    if (t.error) return;
    try {
      await writeAll(t.handle, chunk, at);
      t.written = at + chunk.length;
    } catch (cause) {
      t.error = destinationError(cause, 'write', t.tempPath);
      // Nothing else is in flight for this target (its writes are queued in order): safe to drop now.
      await discardTemp(t);
    }
  };
  const take = async (chunk: Buffer): Promise<void> => {
    throwIfAborted(signal);
    hasher.update(chunk);
    const at = offset;
    offset += chunk.length;
    window.push(Promise.all(targets.map((t, i) => (queues[i] = queues[i]!.then(() => writeTo(t, chunk, at))))));
    if (window.length >= WRITE_AHEAD) await window.shift();
  };
  for (const c of head) await take(c);
  for await (const c of chunks) await take(c as Buffer);
  await Promise.all(window);
}

/** fsync, preserve the source's mtime, close; then (tests only) corrupt on request. */
export async function sealTemp(t: TempTarget, mtimeMs: number): Promise<void> {
  try {
    const when = new Date(mtimeMs);
    await t.handle.utimes(when, when);
    await fsyncFile(t.handle);
    await t.handle.close();
  } catch (cause) {
    await t.handle.close().catch(() => {});
    throw destinationError(cause, 'write', t.tempPath);
  }
  await applyTestFault(t.tempPath);
}

export interface ReadBackCheck {
  ok: boolean;
  direct: boolean;
  actual: { size: number; xxh128: string | undefined };
}

/** Reads a written copy back past the page cache and compares size and xxh128 with the source read. */
export async function checkCopy(path: string, expected: ReadResult, signal?: AbortSignal): Promise<ReadBackCheck> {
  const rb = await readBack(path, ['xxh128'], signal ? { signal } : {});
  const ok = rb.size === expected.size && rb.hashes.xxh128 !== undefined && rb.hashes.xxh128 === expected.hashes.xxh128;
  return { ok, direct: rb.direct, actual: { size: rb.size, xxh128: rb.hashes.xxh128 } };
}

/** Reads the head of a stream (at least `cap` bytes or all of it) without losing the rest; the head is copied. */
export async function readHead(iter: AsyncIterator<Buffer>, cap: number): Promise<{ head: Buffer[]; bytes: number; ended: boolean }> {
  const head: Buffer[] = [];
  let bytes = 0;
  while (bytes < cap) {
    const r = await iter.next();
    if (r.done) return { head, bytes, ended: true };
    // A copy: the source may reuse its buffers (OpenOptions.recycle) while the head is still held.
    head.push(Buffer.from(r.value));
    bytes += r.value.length;
  }
  return { head, bytes, ended: false };
}

/** A one-destination rewrite from a fresh read of the source, after a read-back mismatch. */
export async function rewriteFromSource(
  source: Source,
  item: SourceItem,
  target: TempTarget,
  algorithms: readonly HashAlgorithm[],
  signal?: AbortSignal,
): Promise<ReadResult> {
  const hasher = await MultiHasher.create(algorithms);
  const stream = await source.open(item, { recycle: WRITE_AHEAD, ...(signal ? { signal } : {}) });
  try {
    await fanOut(stream, [], [target], hasher, signal);
  } finally {
    stream.destroy();
  }
  if (target.error) throw target.error;
  return { size: hasher.bytes, hashes: hasher.digest() };
}
