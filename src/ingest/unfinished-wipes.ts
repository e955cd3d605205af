import type { Logger } from '../log.js';
import { abortReason } from '../errors.js';
import { isSourceFault, isSourceSkip, type Source, type SourceItem } from '../device/source.js';
import type { Journal } from '../store/journal.js';
import { WipeStore } from '../store/wipes.js';

/**
 * Deletions from a source begun and never finished. A wipe journals 'deleting' before it deletes a file
 * and the outcome once the deletion is durable, so a process that died in between (a crash, a power cut)
 * leaves the row 'deleting'. The next ingest of the source settles it from what the source holds now,
 * under the source's lock (no wipe of it is under way then):
 *
 * - a file no longer on the source was deleted (its folder is synced first, so that a card pulled next
 *   cannot bring back a file the journal now calls deleted);
 * - a file still at its path was not: that attempt failed. The run lists it like any other file, and
 *   a wipe policy deletes it again only through the whole gate (verified at every destination, a second
 *   read matching the hash), never on the strength of the old row.
 *
 * A listing that breaks off leaves every row as it is, and a folder the listing could not read or left
 * out leaves the rows of the files below it: what it holds is not known. A later insert looks again.
 */
export async function settleUnfinishedWipes(source: Source, sourceId: number, journal: Journal, ingestId: number, log: Logger, signal: AbortSignal): Promise<void> {
  const removal = source.removal;
  if (removal === undefined) return;
  const store = new WipeStore(journal);
  const rows = store.unfinished(sourceId);
  if (rows.length === 0) return;
  const files = new Set<string>();
  const unknown: string[] = [];
  try {
    for await (const entry of source.list(signal)) {
      files.add(entry.path);
      if (isSourceFault(entry) || isSourceSkip(entry)) unknown.push(`${entry.path}/`);
    }
  } catch (e) {
    if (signal.aborted) throw abortReason(signal);
    log.warn({ err: e, unfinished: rows.length }, 'deletions left unfinished by an earlier run stay unsettled: the listing of the source broke off');
    return;
  }
  const gone = rows.filter((r) => !files.has(r.rel_path) && !unknown.some((folder) => r.rel_path.startsWith(folder)));
  const there = rows.filter((r) => files.has(r.rel_path));
  let deleted = 0;
  if (gone.length > 0) {
    const items: SourceItem[] = gone.map((r) => ({ path: r.rel_path, size: r.size, mtimeMs: r.mtime_ms, ...(r.path_bytes ? { pathBytes: Buffer.from(r.path_bytes) } : {}) }));
    try {
      await removal.settleRemovals?.(items, signal);
      for (const r of gone) store.settle(r.id, 'deleted', `its outcome was never journaled; no longer on the source at ingest ${ingestId}`);
      deleted = gone.length;
    } catch (e) {
      if (signal.aborted) throw abortReason(signal);
      log.warn({ err: e, unfinished: gone.length }, 'deletions left unfinished by an earlier run stay unsettled: the source could not be synced');
    }
  }
  for (const r of there) store.settle(r.id, 'failed', `its outcome was never journaled; still on the source at ingest ${ingestId}`);
  log.warn(
    { deleted, failed: there.length, unsettled: rows.length - deleted - there.length, paths: rows.map((r) => r.rel_path) },
    'deletions left unfinished by an earlier run settled from what the source holds now',
  );
}
