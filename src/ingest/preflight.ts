import { stat } from 'node:fs/promises';
import { isSourceFault, isSourceSkip, type Source, type SourceEntry } from '../device/source.js';
import { ShuttleError, abortReason } from '../errors.js';
import { formatBytes } from '../bytes.js';
import { freeBytes } from '../io/local-destination.js';
import { PlanSpaceStore } from '../store/plan-space.js';
import { nameFilter } from './filter.js';
import type { IngestRun } from './run.js';
import type { RunDestination } from './run-destination.js';

/**
 * Refuse to start what cannot fit: before the first copy, the sources' whole listings are summed, per
 * destination, over the files it does not hold verified yet, and compared with the free space of each
 * volume, less the `min_free_bytes` its destinations keep. Destinations on one volume share its space.
 * A card that does not fit at every destination is not started at all, rather than copied to some and
 * ended part-way at another: nothing is copied, and the summary, the log and the journal's run say why.
 *
 * For sources whose listing ends (cards, folders, a camera's card). A live source (a tethered camera)
 * is never summed: its listing does not end. The plan still checks each window as it goes, for what
 * this estimate cannot know (another writer filling the disk meanwhile).
 */
export async function planFits(run: IngestRun, ahead?: ListedAhead): Promise<boolean> {
  const { signal, logger } = run;
  const live = run.destinations.filter((d) => !d.dead);
  let sum: { files: number; needs: Map<RunDestination, number> };
  try {
    sum = await sumSources(run, live, ahead);
  } catch (err) {
    if (signal.aborted) throw abortReason(signal);
    // The run itself meets the same listing and reports what is wrong with it; the plan checks space as it goes.
    logger.warn({ err }, 'the sources could not be summed before copying; free space is checked as the files are planned');
    return true;
  }
  const { files, needs } = sum;

  // One volume's space is shared by the destinations on it (a destination that cannot be looked at counts alone).
  const volumes = new Map<number | string, RunDestination[]>();
  for (const d of live) {
    const dev = await stat(d.root).then(
      (st) => st.dev,
      () => d.root,
    );
    volumes.set(dev, [...(volumes.get(dev) ?? []), d]);
  }
  const refusals: Array<ShuttleError<'DEST_NO_SPACE'>> = [];
  for (const on of volumes.values()) {
    const needed = on.reduce((n, d) => n + needs.get(d)!, 0);
    const keep = Math.max(...on.map((d) => d.spec.minFreeBytes ?? 0));
    const available = await freeBytes(on[0]!.root).catch(() => undefined);
    if (available === undefined || available - needed >= keep) continue;
    const where = on.map((d) => d.root).join(' and ');
    const kept = keep > 0 ? ` and ${formatBytes(keep)} kept free (min_free_bytes)` : '';
    const message = `refused: does not fit: ${where} needs ${formatBytes(needed)}${kept}, but only ${formatBytes(available)} is free there; nothing was copied`;
    refusals.push(new ShuttleError('DEST_NO_SPACE', message, { context: { path: on[0]!.root, neededBytes: needed, minFreeBytes: keep, availableBytes: available } }));
  }
  if (refusals.length === 0) {
    logger.debug({ files, needs: live.map((d) => ({ destination: d.root, bytes: needs.get(d) })) }, 'the plan fits every destination');
    return true;
  }
  for (const e of refusals) {
    run.recordError(e, { destination: e.context.path });
    logger.error({ code: e.code, destination: e.context.path, neededBytes: e.context.neededBytes, availableBytes: e.context.availableBytes, files }, e.message);
  }
  return false;
}

/** The whole listings of the sources whose listing ends, as they were taken by listAhead. */
export type ListedAhead = ReadonlyMap<Source, Promise<SourceEntry[]>>;

/**
 * Starts listing every source whose listing ends, for planFits: a camera's listing is a round trip per
 * object, which can run while the destinations are checked. Await every promise before the run ends.
 */
export function listAhead(run: IngestRun, signal: AbortSignal): ListedAhead {
  const ahead = new Map<Source, Promise<SourceEntry[]>>();
  for (const source of run.request.sources) {
    if (source.groupingDelayMs !== undefined) continue;
    const listed = listAll(source, signal);
    // Its error is planFits' to report, if the run gets that far.
    listed.catch(() => {});
    ahead.set(source, listed);
  }
  return ahead;
}

async function listAll(source: Source, signal: AbortSignal): Promise<SourceEntry[]> {
  const entries: SourceEntry[] = [];
  for await (const entry of source.list(signal)) entries.push(entry);
  return entries;
}

/** Per live destination, the bytes of the sources' files it does not hold verified yet. */
async function sumSources(run: IngestRun, live: readonly RunDestination[], ahead: ListedAhead | undefined): Promise<{ files: number; needs: Map<RunDestination, number> }> {
  const { signal } = run;
  const needs = new Map<RunDestination, number>(live.map((d) => [d, 0]));
  const store = new PlanSpaceStore(run.journal);
  const wanted = nameFilter(run.settings);
  let files = 0;
  for (const source of run.request.sources) {
    if (source.groupingDelayMs !== undefined) continue;
    const key = (await source.identity(signal)).key;
    const entries = await (ahead?.get(source) ?? listAll(source, signal));
    for (const entry of entries) {
      if (isSourceFault(entry) || isSourceSkip(entry) || !wanted(entry.path)) continue;
      files++;
      const done = store.doneAt(key, entry.path, entry.size, entry.mtimeMs);
      for (const d of live) if (!done.has(d.id)) needs.set(d, needs.get(d)! + entry.size);
    }
    // The run plans from this listing instead of walking the source again (a camera's listing is a
    // round trip per object): a file gone since is then a failed copy, named, not a file never seen.
    if (!signal.aborted) run.listings.set(source, entries);
  }
  if (signal.aborted) throw abortReason(signal);
  return { files, needs };
}
