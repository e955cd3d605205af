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
 *
 * Waiting for whole listings costs a camera's run a round trip per object before its first byte is read.
 * When every source can tell what its listing totals at most (Source.listingBound) and that fits every
 * volume, the run starts copying at once and reads the listings as they arrive; otherwise it waits.
 */
export async function planFits(run: IngestRun, ahead: ListedAhead): Promise<boolean> {
  const { signal, logger } = run;
  const live = run.destinations.filter((d) => !d.dead);
  const volumes = await volumesOf(live);
  const bounded = await boundsFit(run, volumes, ahead);
  if (bounded.fits) {
    // Copying starts now: the planner reads each listing taken ahead as it arrives.
    for (const [source, listing] of ahead) run.listings.set(source, listing);
    logger.debug({ boundBytes: bounded.bytes }, 'the sources cannot hold more than fits every destination: copying while they are listed');
    return true;
  }
  logger.debug({ why: bounded.why }, 'waiting for the whole listings to check the space the plan needs');
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
  const refusals: Array<ShuttleError<'DEST_NO_SPACE'>> = [];
  for (const on of volumes) {
    const needed = on.reduce((n, d) => n + needs.get(d)!, 0);
    const keep = keptOn(on);
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

/** The live destinations grouped by volume: one volume's space is shared by the destinations on it (a destination that cannot be looked at counts alone). */
async function volumesOf(live: readonly RunDestination[]): Promise<RunDestination[][]> {
  const volumes = new Map<number | string, RunDestination[]>();
  for (const d of live) {
    const dev = await stat(d.root).then(
      (st) => st.dev,
      () => d.root,
    );
    volumes.set(dev, [...(volumes.get(dev) ?? []), d]);
  }
  return [...volumes.values()];
}

/** The free space the destinations on one volume keep: the most any of them asks. */
function keptOn(on: readonly RunDestination[]): number {
  return Math.max(...on.map((d) => d.spec.minFreeBytes ?? 0));
}

/**
 * Whether every volume fits what the sources can hold at most (their bounds, summed, at each destination
 * on it, as if none held any file yet): if so, whatever their listings total fits too.
 */
async function boundsFit(run: IngestRun, volumes: readonly RunDestination[][], ahead: ListedAhead): Promise<{ fits: true; bytes: number } | { fits: false; why: string }> {
  const listings = [...ahead.values()];
  // Listings that end before the bounds are known leave nothing to gain from them.
  const bounds = await Promise.race([Promise.all(listings.map((l) => l.bound)), Promise.all(listings.map((l) => l.settled)).then(() => undefined)]);
  if (run.signal.aborted) throw abortReason(run.signal);
  if (bounds === undefined) return { fits: false, why: 'the listings ended before the bounds were known' };
  const unbounded = [...ahead.keys()].filter((_s, i) => bounds[i] === undefined);
  if (unbounded.length > 0) return { fits: false, why: `no bound of what ${unbounded.map((s) => s.uri).join(' and ')} can hold` };
  const bytes = bounds.reduce((n: number, b) => n + b!, 0);
  for (const on of volumes) {
    const available = await freeBytes(on[0]!.root).catch(() => undefined);
    if (available === undefined || available - bytes * on.length < keptOn(on)) {
      return { fits: false, why: `the sources can hold more than ${on.map((d) => d.root).join(' and ')} has free` };
    }
  }
  return { fits: true, bytes };
}

/**
 * One source's listing, taken ahead of the run (listAhead), and the bound of what it can total. Read
 * once: whole, for the space check (whole), and entry by entry by the planner (iterating it), which lets
 * go of each entry as it is handed over and, when copying began before the listing ended, waits for the
 * next one; a listing that broke off ends the iteration with its error, after the entries it named.
 */
export class AheadListing implements AsyncIterable<SourceEntry> {
  /** At most the bytes the listing can total (Source.listingBound); undefined when the source cannot tell. */
  readonly bound: Promise<number | undefined>;
  /** Settles (never rejects) once the listing ended, broke off or was stopped. */
  readonly settled: Promise<void>;
  #entries: Array<SourceEntry | undefined> = [];
  #head = 0;
  #ended = false;
  #error: { reason: unknown } | undefined;
  #wake: (() => void) | undefined;
  #read = false;

  constructor(source: Source, signal: AbortSignal) {
    // Asked first: a camera's session takes one request at a time, and the bound is a few round trips.
    this.bound = source.listingBound ? source.listingBound(signal).catch(() => undefined) : Promise.resolve(undefined);
    this.settled = this.#pump(source, signal);
  }

  async #pump(source: Source, signal: AbortSignal): Promise<void> {
    try {
      for await (const entry of source.list(signal)) {
        this.#entries.push(entry);
        this.#wakeReader();
      }
    } catch (reason) {
      this.#error = { reason };
    } finally {
      this.#ended = true;
      this.#wakeReader();
    }
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** The whole listing, once it ended; rejects with the error it broke off with. Before the listing is iterated. */
  async whole(): Promise<readonly SourceEntry[]> {
    await this.settled;
    if (this.#error) throw this.#error.reason;
    if (this.#read) throw new ShuttleError('INTERNAL', 'a listing taken ahead was summed after it was handed over');
    return this.#entries as readonly SourceEntry[];
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<SourceEntry> {
    if (this.#read) throw new ShuttleError('INTERNAL', 'a listing taken ahead was handed over twice');
    this.#read = true;
    for (;;) {
      while (this.#head < this.#entries.length) {
        const entry = this.#entries[this.#head]!;
        this.#entries[this.#head++] = undefined;
        yield entry;
      }
      this.#entries = [];
      this.#head = 0;
      if (this.#ended) {
        if (this.#error) throw this.#error.reason;
        return;
      }
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }
}

/** The listings of the sources whose listing ends, as listAhead started them. */
export type ListedAhead = ReadonlyMap<Source, AheadListing>;

/**
 * Starts listing every source whose listing ends, for planFits: a camera's listing is a round trip per
 * object, which can run while the destinations are checked. Await every listing's `settled` and `bound`
 * before the run ends.
 */
export function listAhead(run: IngestRun, signal: AbortSignal): ListedAhead {
  const ahead = new Map<Source, AheadListing>();
  for (const source of run.request.sources) {
    if (source.groupingDelayMs !== undefined) continue;
    ahead.set(source, new AheadListing(source, signal));
  }
  return ahead;
}

/** Per live destination, the bytes of the sources' files it does not hold verified yet. */
async function sumSources(run: IngestRun, live: readonly RunDestination[], ahead: ListedAhead): Promise<{ files: number; needs: Map<RunDestination, number> }> {
  const { signal } = run;
  const needs = new Map<RunDestination, number>(live.map((d) => [d, 0]));
  const store = new PlanSpaceStore(run.journal);
  const wanted = nameFilter(run.settings);
  let files = 0;
  for (const source of run.request.sources) {
    if (source.groupingDelayMs !== undefined) continue;
    const key = (await source.identity(signal)).key;
    const listing = ahead.get(source)!;
    const entries = await listing.whole();
    for (const entry of entries) {
      if (isSourceFault(entry) || isSourceSkip(entry) || !wanted(entry.path)) continue;
      files++;
      const done = store.doneAt(key, entry.path, entry.size, entry.mtimeMs);
      for (const d of live) if (!done.has(d.id)) needs.set(d, needs.get(d)! + entry.size);
    }
    // The run plans from this listing instead of walking the source again (a camera's listing is a
    // round trip per object): a file gone since is then a failed copy, named, not a file never seen.
    if (!signal.aborted) run.listings.set(source, listing);
  }
  if (signal.aborted) throw abortReason(signal);
  return { files, needs };
}
