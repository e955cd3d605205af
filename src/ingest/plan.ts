import { TIMED_OUT, within } from '../async.js';
import { ShuttleError } from '../errors.js';
import type { Logger } from '../log.js';
import { isSourceFault, isSourceSkip, type Source, type SourceIdentity, type SourceItem } from '../device/source.js';
import type { FileRow } from '../store/journal.js';
import { checkFreeSpace } from './destination.js';
import { nameFilter } from './filter.js';
import { templateUsesShot } from './naming.js';
import { groupItems, readOrder, type ItemGroup } from './pairing.js';
import type { IngestRun } from './run.js';
import type { RunDestination } from './run-destination.js';

/** One source file in the plan: its journal row, its shot, and the destinations that still need it. */
export interface PlannedFile {
  item: SourceItem;
  file: FileRow;
  group: ItemGroup;
  /** The shot's number in the source's order, for the `{seq}` of the name template. */
  seq: number;
  /** The shot's number in its shoot, kept in the journal (`{shot}`); only when the template names it. */
  shot?: number | undefined;
  wanted: RunDestination[];
}

/**
 * The look-ahead bound: items a window of the listing holds at most. Sources list each folder sorted by
 * name, so a shot's files (RAW, JPEG, sidecars) come next to one another and a window this size holds a
 * whole shot unless one name sorts between its members dozens of times.
 */
export const WINDOW_ITEMS = 64;

/**
 * How long a window waits for the listing's next item before it is planned as it is. A listing that
 * goes on (a tethered camera, a hot folder) has each file copied this long after it arrived at most,
 * while a shot's files, which a camera hands over together, still land in one window.
 */
export const GROUPING_DELAY_MS = 500;

/** Groups kept at hand, for a shot whose members a window boundary split: see groupWindows. */
const RECENT_GROUPS = 256;

function dirOf(path: string): string {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? '' : path.slice(0, slash);
}

/**
 * Groups a listing's items into shots window by window, never holding more than `maxItems` of them. A
 * window ends when the listing moves to another folder (a shot's files share one), when it ends, when no
 * item came for `delayMs`, or when it is full; a full window keeps its last item's group back for the
 * next one, as the rest of that shot may come next. A shot split anyway (its members far apart in the
 * listing, or a pause between them) comes out as two groups with the same key, which the planner and
 * the journal give the same number, name fields and collision suffix.
 */
export async function* groupWindows(
  items: AsyncIterable<SourceItem>,
  { maxItems = WINDOW_ITEMS, delayMs = GROUPING_DELAY_MS, pairsComplete = false }: { maxItems?: number; delayMs?: number; pairsComplete?: boolean } = {},
): AsyncGenerator<ItemGroup[]> {
  const listing = items[Symbol.asyncIterator]();
  // The pull under way: kept across a window handed out early, so that no item is lost or pulled twice.
  let pending: Promise<IteratorResult<SourceItem>> | undefined;
  let window: SourceItem[] = [];
  try {
    for (;;) {
      pending ??= listing.next();
      let r: Awaited<typeof pending> | typeof TIMED_OUT;
      try {
        r = window.length === 0 ? await pending : await within(pending, delayMs);
      } catch (e) {
        // The listing broke off (a camera unplugged): what it named before is still handed out.
        pending = undefined;
        if (window.length > 0) yield groupItems(window.splice(0));
        throw e;
      }
      if (r === TIMED_OUT) {
        yield groupItems(window.splice(0));
        continue;
      }
      pending = undefined;
      if (r.done) break;
      const item = r.value;
      if (window.length > 0 && dirOf(item.path) !== dirOf(window[0]!.path)) yield groupItems(window.splice(0));
      window.push(item);
      // A live source's shot is complete once its RAW and its JPEG are both here: nothing more to wait for.
      if (pairsComplete && groupItems(window).every((g) => g.members.some((m) => m.role === 'raw') && g.members.some((m) => m.role === 'image'))) {
        yield groupItems(window.splice(0));
        continue;
      }
      if (window.length >= maxItems) {
        const groups = groupItems(window);
        const open = groups.findIndex((g) => g.members.some((m) => m.item === item));
        const [held] = groups.splice(open, 1);
        window = held!.members.length < maxItems ? held!.members.map((m) => m.item) : (groups.push(held!), []);
        yield groups;
      }
    }
    if (window.length > 0) yield groupItems(window);
  } finally {
    if (pending === undefined) {
      await listing.return?.();
    } else {
      // A pull still waits on the source (a camera that has not taken another picture): the source ends
      // it on the run's signal; the listing is closed once it returns.
      pending
        .then(
          () => listing.return?.(),
          () => undefined,
        )
        .catch(() => undefined);
    }
  }
}

/**
 * Plans one source's files as its listing goes, window by window (see groupWindows): nothing holds a
 * whole listing, which may never end. What the listing cannot hand over is recorded as it comes: a fault
 * as a failed file, a skip in the summary and the log.
 */
export class SourcePlanner {
  #seq = 0;
  /** The shoot that `{shot}` counts in (job, client, session), when the template names it. */
  readonly #shoot: string | undefined;
  /** Shot numbers of recent groups, so that a split shot's later members keep their shot's number. */
  readonly #seqOf = new Map<string, number>();
  #files = 0;
  #toCopy = 0;

  constructor(
    private readonly run: IngestRun,
    private readonly source: Source,
    private readonly identity: SourceIdentity,
    private readonly sourceId: number,
    private readonly log: Logger,
  ) {
    const { template, job, client, session } = run.settings;
    this.#shoot = templateUsesShot(template) ? JSON.stringify([job, client ?? '', session ?? '']) : undefined;
  }

  /**
   * The files to copy (those some live destination lacks), one window at a time. Before a window is
   * handed out, every destination is checked for room for all the bytes planned for it and not yet
   * written, this window's included (files in flight count in full): a destination without is ended
   * there, so a card too big for it is refused before its first file when its first folder already is.
   */
  async *windows(): AsyncGenerator<PlannedFile[]> {
    const { journal } = this.run;
    let planned = false;
    const live = this.source.groupingDelayMs !== undefined;
    for await (const groups of groupWindows(this.#items(), { delayMs: this.source.groupingDelayMs ?? GROUPING_DELAY_MS, pairsComplete: live })) {
      // Committed without an fsync on this thread: nothing is reported on the strength of these rows, and
      // every file's verified record, reported only once synced, is later in the log and carries them.
      const plan = journal.txUnsynced(() => groups.flatMap((g) => this.#plan(g)));
      const todo = this.#account(plan);
      await this.#checkSpace();
      planned = true;
      yield todo;
    }
    if (!planned) await this.#checkSpace();
    this.log.info({ files: this.#files, toCopy: this.#toCopy, identity: this.identity.label }, 'plan ready');
  }

  /** The listing's files to ingest. Nothing listed is dropped unnamed: what cannot be read fails, what is left out is named as skipped. */
  async *#items(): AsyncGenerator<SourceItem> {
    const { run, log } = this;
    const { journal, summary, signal } = run;
    const wanted = nameFilter(run.settings);
    const skipped: Array<{ path: string; reason: string }> = [];
    const tellSkipped = (): void => {
      if (skipped.length > 0) log.info({ skipped: skipped.splice(0) }, 'source entries left out');
    };
    const listed = run.listings.get(this.source);
    run.listings.delete(this.source);
    // Two entries of one listing with the same name, size and time would be one journal row: the second
    // file would pass as the first, already verified, and never be copied. A source should never list
    // such twins (a folder cannot); a camera that names two objects alike gets the second failed, named.
    const keys = new Set<string>();
    try {
      for await (const listedEntry of listed ?? this.source.list(signal)) {
        let entry = listedEntry;
        if (!isSourceFault(entry) && !isSourceSkip(entry)) {
          const key = `${entry.size}:${Math.trunc(entry.mtimeMs)}:${entry.path}`;
          if (keys.has(key)) {
            const error = new ShuttleError('NAME_INVALID', `${entry.path}: the source lists a second file by this name, with the same size and time; only the first is ingested`, {
              context: { path: entry.path },
            });
            entry = { path: entry.path, error, ...(entry.pathBytes ? { pathBytes: entry.pathBytes } : {}) };
          } else keys.add(key);
        }
        if (isSourceFault(entry)) {
          journal.recordUnreadable(this.sourceId, entry.path, entry.error.message, entry.pathBytes);
          summary.failed++;
          run.recordError(entry.error, { path: entry.path });
          log.warn({ err: entry.error, path: entry.path }, 'could not read from the source');
          continue;
        }
        const skip = isSourceSkip(entry) ? entry.skipped : wanted(entry.path) ? undefined : 'excluded by include/exclude';
        if (skip === undefined) {
          tellSkipped();
          yield entry as SourceItem;
          continue;
        }
        summary.skipped.push({ path: entry.path, reason: skip });
        skipped.push({ path: entry.path, reason: skip });
      }
    } finally {
      tellSkipped();
    }
  }

  #plan(group: ItemGroup): PlannedFile[] {
    const { journal, destinations } = this.run;
    let seq = this.#seqOf.get(group.key);
    if (seq === undefined) {
      seq = ++this.#seq;
      this.#seqOf.set(group.key, seq);
      if (this.#seqOf.size > RECENT_GROUPS) this.#seqOf.delete(this.#seqOf.keys().next().value!);
    }
    // In the same transaction as the files' rows: a shot numbered is a shot planned.
    const shot = this.#shoot === undefined ? undefined : journal.shotNumber(this.#shoot, this.sourceId, group.key);
    return readOrder(group, this.source.groupingDelayMs !== undefined).map(({ item }) => {
      const file = journal.fileFor(this.sourceId, item.path, item.size, item.mtimeMs, item.pathBytes);
      // A copy pruned by the retention policy was verified here and is safe in the cloud: not copied again.
      const verified = new Set(
        journal
          .copiesOf(file.id)
          .filter((c) => c.state === 'verified' || c.state === 'pruned')
          .map((c) => c.dest_id),
      );
      return { item, file, group, seq, shot, wanted: destinations.filter((d) => !verified.has(d.id)) };
    });
  }

  /** Counts a window's files in the summary; returns those to copy, their bytes pending at each destination they need. */
  #account(plan: PlannedFile[]): PlannedFile[] {
    const { summary, destinations } = this.run;
    const todo = plan.filter((p) => p.wanted.length > 0);
    summary.files += plan.length;
    for (const p of plan) summary.fileIds.push(p.file.id);
    summary.bytes += plan.reduce((n, p) => n + p.item.size, 0);
    summary.alreadyVerified += plan.length - todo.length;
    for (const d of destinations) {
      if (!d.dead) d.summary.verified += plan.filter((p) => !p.wanted.includes(d)).length;
    }
    for (const p of todo) for (const d of p.wanted) d.pendingBytes += p.item.size;
    this.#files += plan.length;
    this.#toCopy += todo.length;
    return todo;
  }

  async #checkSpace(): Promise<void> {
    for (const d of this.run.destinations) {
      if (d.dead) continue;
      try {
        await checkFreeSpace(d.root, d.pendingBytes, d.spec.minFreeBytes ?? 0);
      } catch (e) {
        this.run.killDestination(d, e, this.log);
      }
    }
  }
}
