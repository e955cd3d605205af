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
 * Reads `stream` once, hashing every chunk and writing it to every live target. Each chunk waits for
 * all targets to take it, so the slowest destination paces the read; a target that fails drops out
 * with its error and the others carry on. `head` holds chunks already read (for metadata) that are
 * written first.
 */
export async function fanOut(
  chunks: AsyncIterable<Buffer>,
  head: readonly Buffer[],
  targets: readonly TempTarget[],
  hasher: MultiHasher,
  signal?: AbortSignal,
): Promise<void> {
  const take = async (chunk: Buffer): Promise<void> => {
    hasher.update(chunk);
    await Promise.all(
      targets.map(async (t) => {
        if (t.error) return;
        try {
          await writeAll(t.handle, chunk, t.written);
          t.written += chunk.length;
        } catch (cause) {
          t.error = destinationError(cause, 'write', t.tempPath);
          // Give the space back now: on a full disk the other destinations may share the volume.
          await discardTemp(t);
        }
      }),
    );
  };
  for (const c of head) {
    throwIfAborted(signal);
    await take(c);
  }
  for await (const c of chunks) {
    throwIfAborted(signal);
    await take(c as Buffer);
  }
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
  const stream = await source.open(item, { recycle: true, ...(signal ? { signal } : {}) });
  try {
    await fanOut(stream, [], [target], hasher, signal);
  } finally {
    stream.destroy();
  }
  if (target.error) throw target.error;
  return { size: hasher.bytes, hashes: hasher.digest() };
}
