import { stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errnoCode, isShuttleError, throwIfAborted } from '../errors.js';
import { fsyncDir } from '../io/durable.js';
import { freeBytes as statFreeBytes, readMarker } from '../io/local-destination.js';
import type { Logger } from '../log.js';
import { acquireLock, destinationLockPath, type Lock } from '../store/lock.js';
import type { PruneCandidate, RetentionStore } from '../store/retention.js';

/** When local copies of uploaded files may go. Neither set: nothing is ever removed. */
export interface RetentionPolicy {
  /** Copies verified at least this many days ago. */
  keepDays?: number | undefined;
  /** Oldest copies first, while their destination has less than this free. */
  keepFreeBytes?: number | undefined;
}

export interface PrunedCopy {
  path: string;
  size: number;
  reason: 'age' | 'free-space';
  bucket: string;
  key: string;
}

export interface RetentionReport {
  pruned: PrunedCopy[];
  bytesFreed: number;
  /** Destinations left alone this time: not mounted, another disk, or locked by an ingest. */
  skippedDestinations: Array<{ path: string; reason: string }>;
}

export interface RetentionOptions {
  records: RetentionStore;
  policy: RetentionPolicy;
  logger: Logger;
  signal?: AbortSignal | undefined;
  now?: number;
  /** Free bytes at a path (injectable so tests can simulate a full disk). */
  freeBytes?: (path: string) => Promise<number>;
}

const DAY_MS = 86_400_000;

async function sizeOnDisk(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Removes local copies whose content is verified in the cloud, as the policy allows, and never a file's
 * last verified copy: the journal must know of another verified copy, that copy must be on disk with the
 * right size, and the prune is recorded (copy state 'pruned', a copy_prunes row) before the file is
 * deleted, so the journal never claims a copy that is gone. Each destination is pruned under its lock
 * and only when its marker shows it is the disk the journal knows.
 */
export async function applyRetention(options: RetentionOptions): Promise<RetentionReport> {
  const { records, policy, logger, signal } = options;
  const report: RetentionReport = { pruned: [], bytesFreed: 0, skippedDestinations: [] };
  if (policy.keepDays === undefined && policy.keepFreeBytes === undefined) return report;
  const now = options.now ?? Date.now();
  const free = options.freeBytes ?? statFreeBytes;

  const byDestination = new Map<string, PruneCandidate[]>();
  for (const c of records.pruneCandidates()) {
    const list = byDestination.get(c.root) ?? [];
    list.push(c);
    byDestination.set(c.root, list);
  }

  for (const [root, candidates] of byDestination) {
    throwIfAborted(signal);
    const markerId = candidates[0]?.markerId;
    const marker = await readMarker(root).catch(() => undefined);
    if (marker?.id !== markerId) {
      report.skippedDestinations.push({ path: root, reason: marker === undefined ? 'not mounted (no destination marker)' : 'another disk (marker differs)' });
      continue;
    }
    let lock: Lock;
    try {
      lock = await acquireLock(destinationLockPath(root), { owner: { command: 'upload: retention' }, wait: 0, signal });
    } catch (error) {
      report.skippedDestinations.push({ path: root, reason: isShuttleError(error) ? error.message : String(error) });
      continue;
    }
    try {
      let available = policy.keepFreeBytes === undefined ? Infinity : await free(root);
      for (const c of candidates) {
        throwIfAborted(signal);
        const old = policy.keepDays !== undefined && now - Date.parse(c.verifiedAt) >= policy.keepDays * DAY_MS;
        const tight = policy.keepFreeBytes !== undefined && available < policy.keepFreeBytes;
        if (!old && !tight) continue;
        if (!(await anotherCopySurvives(records, c))) continue;
        const path = join(root, c.destPath);
        const reason = old ? 'age' : 'free-space';
        if (!records.recordPrune(c, reason, now)) continue;
        try {
          await unlink(path);
        } catch (error) {
          // Recorded as pruned already; a copy that vanished on its own is simply gone.
          if (errnoCode(error) !== 'ENOENT') {
            logger.error({ path, errno: errnoCode(error) }, 'could not remove a pruned local copy; it stays on disk, recorded as pruned');
            continue;
          }
        }
        await fsyncDir(dirname(path)).catch(() => false);
        report.pruned.push({ path, size: c.size, reason, bucket: c.bucket, key: c.key });
        report.bytesFreed += c.size;
        if (policy.keepFreeBytes !== undefined) available = await free(root);
        logger.info({ path, size: c.size, reason, object: `s3://${c.bucket}/${c.key}` }, 'pruned a local copy verified in the cloud');
      }
    } finally {
      lock.release();
    }
  }
  return report;
}

/** Another verified copy of the file, on its own disk (marker matches) with the right size. */
async function anotherCopySurvives(records: RetentionStore, c: PruneCandidate): Promise<boolean> {
  for (const other of records.otherVerifiedCopies(c.fileId, c.copyId)) {
    const marker = await readMarker(other.root).catch(() => undefined);
    if (marker?.id !== other.markerId) continue;
    if ((await sizeOnDisk(join(other.root, other.destPath))) === other.size) return true;
  }
  return false;
}
