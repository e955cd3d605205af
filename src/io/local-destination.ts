import { mkdir, readFile, statfs, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ShuttleError, errnoCode, type ErrorCode } from '../errors.js';
import { fsyncDir, publishNoReplace, tempPathFor, writeNewFile } from './durable.js';

/**
 * A destination is recognised by a marker file it carries, `<dest>/.shuttle/destination.json`, whose
 * random id the journal remembers. So an empty mount point (drive not mounted) or a swapped drive is
 * refused instead of written to, and a required volume UUID pins the destination to one filesystem.
 * Ingest checks it before copying (src/ingest/destination.ts); upload before reading a copy or pruning one.
 */

export const MARKER_DIR = '.shuttle';
export const MARKER_FILE = 'destination.json';

export interface DestinationMarker {
  id: string;
  createdAt: string;
  volumeUuid?: string;
  station: string;
}

export function markerPath(root: string): string {
  return join(root, MARKER_DIR, MARKER_FILE);
}

export function destinationFailure(code: ErrorCode, path: string, message: string, context: Record<string, unknown> = {}, cause?: unknown): ShuttleError {
  return new ShuttleError(code, `destination ${path}: ${message}`, { context: { path, ...context }, cause });
}

/** The marker at `root`, undefined when there is none. A marker that cannot be parsed is refused. */
export async function readMarker(root: string): Promise<DestinationMarker | undefined> {
  const file = markerPath(root);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const errno = errnoCode(err);
    if (errno === 'ENOENT') return undefined;
    throw destinationFailure('DEST_NOT_WRITABLE', root, `cannot read its marker ${file} (${errno ?? String(err)})`, { marker: file, errno }, err);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const m = parsed as Partial<DestinationMarker> | undefined;
  if (m === null || typeof m !== 'object' || typeof m.id !== 'string' || m.id === '') {
    throw destinationFailure('DEST_MARKER_MISMATCH', root, `its marker ${file} is not a Shuttle destination marker: ${JSON.stringify(text.slice(0, 80))}`, { marker: file });
  }
  const marker: DestinationMarker = { id: m.id, createdAt: String(m.createdAt ?? ''), station: String(m.station ?? '') };
  if (typeof m.volumeUuid === 'string') marker.volumeUuid = m.volumeUuid;
  return marker;
}

/**
 * Publishes the marker without ever replacing one: temp file, fsync, hard link to the final name (which
 * fails if another process got there first; then its marker is the one), fsync the folder. FAT and
 * exFAT have no hard links; there it checks and renames.
 */
export async function createMarker(root: string, marker: DestinationMarker): Promise<{ marker: DestinationMarker; created: boolean }> {
  const dir = join(root, MARKER_DIR);
  try {
    await mkdir(dir);
    await fsyncDir(root);
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') throw err;
  }
  const final = join(dir, MARKER_FILE);
  const temp = tempPathFor(final);
  await writeNewFile(temp, `${JSON.stringify(marker, null, 2)}\n`);
  try {
    if ((await publishNoReplace(temp, final)) === 'exists') return { marker: (await readMarker(root)) ?? marker, created: false };
  } finally {
    await unlink(temp).catch(() => {});
  }
  return { marker, created: true };
}

/** Bytes available to an unprivileged writer on the filesystem holding `path`. */
/** Bytes free for unprivileged writers; Infinity where the filesystem keeps no count (ramfs, some FUSE report 0 blocks in all). */
export async function freeBytes(path: string): Promise<number> {
  try {
    const s = await statfs(path);
    if (Number(s.blocks) === 0) return Number.POSITIVE_INFINITY;
    return Number(s.bavail) * Number(s.bsize);
  } catch (err) {
    throw destinationFailure('DEST_NOT_WRITABLE', path, `cannot read its free space (${errnoCode(err) ?? String(err)})`, { errno: errnoCode(err) }, err);
  }
}
