import { randomUUID } from 'node:crypto';
import { stat, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ShuttleError, errnoCode, throwIfAborted, type ErrorCode } from '../errors.js';
import { volumeOf, type VolumeInfo } from '../device/card/volume.js';
import { tempPathFor, writeNewFile } from '../io/durable.js';
import { MARKER_DIR, MARKER_FILE, createMarker, destinationFailure, freeBytes, markerPath, readMarker, type DestinationMarker } from '../io/local-destination.js';

/**
 * Whether ingest may write to a destination: the marker it carries (src/io/local-destination.ts) is the
 * one the journal expects, the volume the one the config requires, and a real write succeeds.
 */

export interface CheckDestinationOptions {
  /** The marker id the journal recorded for this path; absent for a destination never used before. */
  expectedId?: string | undefined;
  /** From config `require_volume_uuid`: refuse unless the filesystem holding the path has this UUID. */
  requireVolumeUuid?: string | undefined;
  /** Create the marker when there is none and no id is expected. */
  create: boolean;
  /** Recorded in a new marker; defaults to the hostname. */
  station?: string | undefined;
  signal?: AbortSignal | undefined;
}

export interface CheckedDestination {
  id: string;
  /** UUID of the filesystem holding the destination now, when known. */
  volumeUuid?: string;
  /** Whether this check created the marker. */
  created: boolean;
  /** Bytes available to Shuttle there. */
  free: number;
}

/** Writes, fsyncs and removes a small file: only a real write proves a destination writable (read-only mounts, root vs mode bits, full disks). */
async function probeWritable(root: string): Promise<void> {
  // A temp name, so that a crash between write and unlink leaves a file every later run knows to ignore.
  const probe = tempPathFor(join(root, '.shuttle-probe'));
  try {
    await writeNewFile(probe, 'shuttle write probe\n');
  } catch (err) {
    const errno = errnoCode(err);
    const code: ErrorCode = errno === 'ENOSPC' || errno === 'EDQUOT' ? 'DEST_NO_SPACE' : 'DEST_NOT_WRITABLE';
    throw destinationFailure(code, root, `cannot write to it (${errno ?? String(err)})`, { errno }, err);
  } finally {
    await unlink(probe).catch(() => {});
  }
}

function sameUuid(a: string | undefined, b: string): boolean {
  return a !== undefined && a.toLowerCase() === b.toLowerCase();
}

function describeVolume(v: VolumeInfo | undefined): string {
  if (v === undefined) return 'an unknown volume';
  const where = `${v.device || 'unknown device'} mounted at ${v.mountPoint}`;
  return v.uuid === undefined ? `a volume with no known UUID (${where})` : `volume ${v.uuid} (${where})`;
}

/**
 * Makes sure `path` is the destination it should be, and usable: in order, it exists; it is on the
 * required volume; its marker is there and has the expected id (or, for a new destination, is created
 * when `create`); a real write succeeds. Returns the marker id and the free space.
 */
export async function checkDestination(path: string, options: CheckDestinationOptions): Promise<CheckedDestination> {
  const { expectedId, requireVolumeUuid, create, signal } = options;
  throwIfAborted(signal);
  try {
    if (!(await stat(path)).isDirectory()) throw destinationFailure('DEST_NOT_WRITABLE', path, 'is not a folder');
  } catch (err) {
    if (err instanceof ShuttleError) throw err;
    const errno = errnoCode(err);
    if (expectedId !== undefined && errno === 'ENOENT') {
      throw destinationFailure(
        'DEST_MARKER_MISSING',
        path,
        `does not exist, but the journal knows it as destination ${expectedId}; is its drive mounted?`,
        { expectedId, errno },
        err,
      );
    }
    throw destinationFailure('DEST_NOT_WRITABLE', path, `cannot use it (${errno ?? String(err)})`, { errno }, err);
  }

  const volume = await volumeOf(path, { signal }).catch((err: unknown) => {
    if (signal?.aborted) throw err;
    return undefined; // identity unknown: only a required UUID makes that fatal, below
  });
  if (requireVolumeUuid !== undefined && !sameUuid(volume?.uuid, requireVolumeUuid)) {
    throw destinationFailure('DEST_VOLUME_MISMATCH', path, `is on ${describeVolume(volume)}, but the config requires volume ${requireVolumeUuid}`, {
      expected: requireVolumeUuid,
      actual: volume?.uuid,
      device: volume?.device,
      mountPoint: volume?.mountPoint,
    });
  }

  let marker = await readMarker(path);
  if (expectedId !== undefined) {
    if (marker === undefined) {
      throw destinationFailure(
        'DEST_MARKER_MISSING',
        path,
        `has no marker ${MARKER_DIR}/${MARKER_FILE}, but the journal knows it as destination ${expectedId}; is its drive mounted?`,
        {
          expectedId,
          actualId: undefined,
          marker: markerPath(path),
        },
      );
    }
    if (marker.id !== expectedId) {
      throw destinationFailure('DEST_MARKER_MISMATCH', path, `carries marker ${marker.id}, but the journal knows it as destination ${expectedId}; was the drive swapped?`, {
        expectedId,
        actualId: marker.id,
        marker: markerPath(path),
      });
    }
  } else if (marker === undefined && !create) {
    throw destinationFailure('DEST_MARKER_MISSING', path, `has no marker ${MARKER_DIR}/${MARKER_FILE} and creating one was not asked for`, { marker: markerPath(path) });
  }

  throwIfAborted(signal);
  await probeWritable(path);

  let created = false;
  if (marker === undefined) {
    const fresh: DestinationMarker = { id: randomUUID(), createdAt: new Date().toISOString(), station: options.station ?? hostname() };
    if (volume?.uuid !== undefined) fresh.volumeUuid = volume.uuid;
    try {
      ({ marker, created } = await createMarker(path, fresh));
    } catch (err) {
      if (err instanceof ShuttleError) throw err;
      throw destinationFailure('DEST_NOT_WRITABLE', path, `cannot create its marker (${errnoCode(err) ?? String(err)})`, { errno: errnoCode(err) }, err);
    }
  }

  const result: CheckedDestination = { id: marker.id, created, free: await freeBytes(path) };
  if (volume?.uuid !== undefined) result.volumeUuid = volume.uuid;
  return result;
}

function bytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} bytes` : `${v.toFixed(2)} ${units[u]} (${n} bytes)`;
}

/**
 * Refuses with DEST_NO_SPACE unless `neededBytes` fit with `minFreeBytes` left over. Returns the bytes
 * available.
 */
export async function checkFreeSpace(path: string, neededBytes: number, minFreeBytes = 0): Promise<number> {
  const available = await freeBytes(path);
  if (available - neededBytes < minFreeBytes) {
    const keep = minFreeBytes > 0 ? ` and ${bytes(minFreeBytes)} kept free` : '';
    throw destinationFailure('DEST_NO_SPACE', path, `needs ${bytes(neededBytes)}${keep}, but only ${bytes(available)} is available`, {
      neededBytes,
      minFreeBytes,
      availableBytes: available,
    });
  }
  return available;
}
