import { hostname } from 'node:os';
import { basename } from 'node:path';
import { SerialQueue, linkSignals } from '../async.js';
import type { Logger } from '../log.js';
import { ShuttleError, abortReason, isShuttleError } from '../errors.js';
import type { Source } from '../device/source.js';
import { sourceLockPath } from '../store/lock.js';
import type { HashSet } from '../io/hashing.js';
import { startHashWorker } from '../io/hash-worker-client.js';
import { writeGeneration } from './manifest/write.js';
import { REPORTS_FOLDER } from './naming.js';
import { crashPoint } from './crash-points.js';
import { Slots } from '../io/slots.js';
import { SourcePlanner, type PlannedFile } from './plan.js';
import { SourceReader, sourceAlgorithms, type WrittenFile } from './source-read.js';
import { IngestRun, type IngestRequest, type IngestSummary, type Progress } from './run.js';
import { RunDestination, contentId, groupId } from './run-destination.js';
import type { DestinationWriter, Placed } from './destination-writer.js';
import { listAhead, planFits } from './preflight.js';
import { settleUnfinishedWipes } from './unfinished-wipes.js';

export type { DestinationSpec, DestinationSummary, FileOutcome, FileReading, IngestRequest, IngestSettings, IngestSummary, Progress, ReadTap } from './run.js';

/**
 * check destinations → for each source: list, plan and copy as the listing goes → manifest. Every file
 * is read once from its source; the read feeds the hashers and every destination that still needs it.
 */
export async function runIngest(req: IngestRequest): Promise<IngestSummary> {
  if (req.destinations.length === 0) throw new ShuttleError('USAGE', 'no destination: give --dest DIR or configure [[destinations]]');
  const run = new IngestRun(req);
  const { signal, summary } = run;
  startHashWorker(sourceAlgorithms(run.settings));
  // Ended when the run ends before planning from the listings (a destination refused).
  const unlisted = new AbortController();
  const listing = linkSignals(signal, unlisted.signal);
  const ahead = req.refuseWhatCannotFit ? listAhead(run, listing.signal) : undefined;
  try {
    for (const spec of req.destinations) {
      try {
        run.destinations.push(await RunDestination.open(spec, run));
      } catch (e) {
        // Busy means "come back later" for the whole run; any other refusal (not mounted, swapped, not
        // writable) fails that destination only, so the card still lands on the others.
        if (isShuttleError(e, 'LOCKED') || signal.aborted) throw e;
        const d = new RunDestination(spec, -1, 0);
        run.killDestination(d, e);
        run.destinations.push(d);
      }
    }
    for (const d of run.destinations) summary.destinations.push(d.summary);
    if (ahead && !(await planFits(run, ahead))) return summary;
    for (const source of req.sources) {
      if (signal.aborted) break;
      await ingestSource(run, source);
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  } finally {
    // A listing the run did not get to use (a destination refused) ends before the source is closed.
    unlisted.abort();
    if (ahead) await Promise.allSettled([...ahead.values()].flatMap((l) => [l.settled, l.bound]));
    listing.dispose();
    for (const d of run.destinations.filter((x) => x.id >= 0)) await writeManifest(run, d).catch((e: unknown) => run.recordError(e, { destination: d.root }));
    for (const d of run.destinations) await d.folders.close();
    // Every temp of the run is published or removed by now (the writers never leave one behind).
    for (const d of run.destinations.filter((x) => x.id >= 0)) d.forgetSwept(run.journal);
    run.finish();
  }
  return summary;
}

async function ingestSource(run: IngestRun, source: Source): Promise<void> {
  const { journal, signal, summary, ingestId, request: req } = run;
  const identity = await source.identity(signal);
  const log = run.logger.child({ source: source.uri, sourceKey: identity.key });
  await run.lock(sourceLockPath(identity.key));
  const sourceId = journal.upsertSource(identity);
  await settleUnfinishedWipes(source, sourceId, journal, ingestId, log, signal);
  const planner = new SourcePlanner(run, source, identity, sourceId, log);
  const reader = new SourceReader(run, source, identity, sourceId, log);
  // The totals grow window by window as the listing goes (see Progress).
  const progress: Progress = { filesTotal: 0, filesDone: 0, bytesTotal: 0, bytesDone: 0 };
  // Written files wait here to be published, in order; their checks (fsync, read-back) already run.
  const finishes = new SerialQueue(FILES_IN_FLIGHT);
  // Files queued in `finishes`, not yet published; while some are, the names published wait for theirs.
  let queued = 0;
  const names = new NameSyncs();
  const checking = new Set<Promise<unknown>>();
  const readBacks = new Slots(READ_BACKS_AT_ONCE);
  /** A file's outcome is final: count it, and its bytes are no longer pending at the destinations it was planned for. */
  const settle = (pf: PlannedFile, plannedSize: number, failed: boolean): void => {
    if (failed) summary.failed++;
    else summary.copied++;
    for (const d of pf.wanted) d.pendingBytes -= plannedSize;
  };

  /** One file's copy: checks started, then queued to be published. Runs for one file at a time, in listing order. */
  const settleCopy = async (pf: PlannedFile, live: RunDestination[], copying: Promise<WrittenFile>): Promise<void> => {
    const plannedSize = pf.item.size;
    try {
      const w = await copying;
      // Sealing and reading back start now, beside the next files' copies and checks: with small files
      // the fsyncs and read-backs of several files overlap instead of queueing one file at a time.
      const checked = Promise.all(w.writers.map((writer) => writer.startCheck(w.read, readBacks)));
      checking.add(checked);
      void checked.finally(() => checking.delete(checked));
      // A destination ended while this file was read (its temp could not be made) failed it there too.
      const refused = live.filter((d) => !w.writers.some((writer) => writer.dest === d));
      for (const d of refused) {
        d.summary.failed++;
        journal.markCopyFailed(pf.file.id, d.id, d.dead?.message ?? 'destination ended', ingestId);
      }
      const failed = live.length < pf.wanted.length || refused.length > 0;
      queued++;
      await finishes.push(async () => {
        let recorded: Promise<() => boolean>;
        try {
          if (unsynced) throw unsynced;
          ({ recorded } = await finishFile(run, source, w, failed, names, log));
        } finally {
          queued--;
          if (queued === 0 || names.size >= UNSYNCED_NAMES) names.flush();
        }
        // Recorded once its new names' folders are synced, reported in order once the journal's log holding
        // the record is on disk: both syncs run in the thread pool while the next files publish, and each
        // serves the names and records made meanwhile.
        const durable = recorded.then(async (report) => {
          await journal.synced();
          return report;
        });
        reported = Promise.all([reported, durable]).then(([, report]) => settle(pf, plannedSize, report()));
        reported.catch((e: unknown) => {
          unsynced ??= e;
        });
      });
    } catch (e) {
      if (signal.aborted) throw abortReason(signal);
      for (const d of live) {
        d.summary.failed++;
        journal.markCopyFailed(pf.file.id, d.id, String((e as Error).message), ingestId);
      }
      journal.setFileState(pf.file.id, 'failed', (e as Error).message);
      run.recordError(e, { path: pf.item.path });
      log.warn({ err: e, path: pf.item.path }, 'file failed');
      settle(pf, plannedSize, true);
      req.onFile?.({ fileId: pf.file.id, path: pf.item.path, state: 'failed', size: pf.item.size, mtimeMs: pf.item.mtimeMs, copies: [] });
    }
    progress.filesDone++;
    progress.bytesDone += pf.item.size;
    req.onProgress?.(progress);
  };
  // Files published and journaled, reported once their records are durable; the first sync that failed.
  let reported: Promise<unknown> = Promise.resolve();
  let unsynced: unknown;
  // The newest copy's settling, chained after every earlier one's. A file's read begins as soon as the source
  // has sent the previous file's last byte, while that one's writes, digest and stat finish (a camera's link
  // and session are otherwise idle for that time); at most two copies run at once.
  let newest: Promise<void> = Promise.resolve();
  try {
    listing: for await (const todo of listedWindows(run, planner, source, log)) {
      progress.filesTotal += todo.length;
      progress.bytesTotal += todo.reduce((n, p) => n + p.item.size, 0);
      req.onProgress?.(progress);
      for (const pf of todo) {
        if (signal.aborted) break listing;
        progress.current = pf.item.path;
        const live = pf.wanted.filter((d) => !d.dead);
        for (const d of pf.wanted) if (d.dead) d.summary.failed++;
        if (live.length === 0) {
          journal.setFileState(pf.file.id, 'failed', 'no live destination');
          settle(pf, pf.item.size, true);
          req.onFile?.({ fileId: pf.file.id, path: pf.item.path, state: 'failed', size: pf.item.size, mtimeMs: pf.item.mtimeMs, copies: [] });
          progress.filesDone++;
          progress.bytesDone += pf.item.size;
          req.onProgress?.(progress);
          continue;
        }
        let sourceFree!: () => void;
        const sourceDone = new Promise<void>((resolve) => (sourceFree = resolve));
        const copying = reader.copy(pf, live, sourceFree);
        const over = copying.then(
          () => undefined,
          () => undefined,
        );
        const previous = newest;
        // Settled in listing order, whichever copy ends first; if an earlier one stops the run, this one's temps go.
        newest = previous.then(
          () => settleCopy(pf, live, copying),
          async (e: unknown) => {
            const w = await copying.catch(() => undefined);
            await Promise.all(w?.writers.map((writer) => writer.discard()) ?? []);
            throw e;
          },
        );
        newest.catch(() => {});
        await Promise.race([sourceDone, over]);
        await previous;
      }
    }
    await newest;
  } finally {
    try {
      await newest.catch(() => {});
      await finishes.drain().finally(() => names.flush());
      await reported;
    } finally {
      // A check whose file was never published (the run stopped) still ends before the run does.
      await Promise.allSettled(checking);
    }
  }
  if (signal.aborted) throw abortReason(signal);
}

/**
 * The planner's windows until the source's listing ends or breaks off. A listing that breaks off (a camera
 * unplugged, a bound passed) fails the run with the source named, but the files it had named still finish
 * and the other sources are still read: the files are listed as they are copied, so a listing error is no
 * longer one that comes before any copy.
 */
async function* listedWindows(run: IngestRun, planner: SourcePlanner, source: Source, log: Logger): AsyncIterable<PlannedFile[]> {
  try {
    yield* planner.windows();
  } catch (e) {
    if (run.signal.aborted) throw e;
    run.recordError(e, { source: source.uri });
    log.error({ err: e }, 'the listing of the source broke off; what it named is still copied');
  }
}

/** Files copied but not yet published at once; their checks overlap. */
const FILES_IN_FLIGHT = 3;
/** Read-backs at once: each holds two 4 MiB blocks. */
const READ_BACKS_AT_ONCE = 2;
/** Names published that may wait for the files queued behind them before their folders are synced. */
const UNSYNCED_NAMES = 8;

/**
 * The folder syncs of names published while more files wait to be published behind them: once the last of
 * those is published (or UNSYNCED_NAMES are waiting), one fsync of each folder serves them all, and their
 * records share one journal commit and one sync of its log, instead of one of each per file on a card of
 * small files. A lone file (a tethered shot, the end of a card) is synced at once.
 */
class NameSyncs {
  readonly #waiting: Array<{ dest: RunDestination; folder: string; done: (error: unknown) => void }> = [];

  get size(): number {
    return this.#waiting.length;
  }

  /** Resolves (never rejects) once an fsync of `folder` begun after the call has ended: undefined, or its error. */
  wait(dest: RunDestination, folder: string): Promise<unknown> {
    return new Promise((done) => this.#waiting.push({ dest, folder, done }));
  }

  /** Syncs each folder the waiting names are in, once. */
  flush(): void {
    const syncs = new Map<string, Promise<unknown>>();
    for (const { dest, folder, done } of this.#waiting.splice(0)) {
      const key = `${dest.id}\0${folder}`;
      let sync = syncs.get(key);
      if (sync === undefined) {
        sync = dest.folders.sync(folder).then(
          () => undefined,
          (e: unknown) => e,
        );
        syncs.set(key, sync);
      }
      void sync.then(done);
    }
  }
}

/**
 * Publishes one file's checked copies; resolves to a promise of its record, committed once the folders of
 * its new names are fsync'd (their shared syncs: see FolderSyncs), and of its report, to be made once the
 * record is durable (Journal.synced), which says whether the file failed (also when a destination it
 * needed was ended before its copy began). Runs one file at a time in copy order, so a group's members
 * publish in order and share a collision suffix (the destination remembers a suffix until its record is
 * committed).
 */
async function finishFile(run: IngestRun, source: Source, w: WrittenFile, failedBefore: boolean, names: NameSyncs, log: Logger): Promise<{ recorded: Promise<() => boolean> }> {
  const { journal, ingestId } = run;
  const { pf, read } = w;
  let anyFailed = false;
  const placed: Array<{ writer: DestinationWriter; done: Placed }> = [];
  for (const writer of w.writers) {
    const d = writer.dest;
    const done = await writer.finish(source, read);
    if (!done.ok) {
      anyFailed = true;
      d.summary.failed++;
      journal.markCopyFailed(pf.file.id, d.id, (done.error as Error).message, ingestId);
      run.recordError(done.error, { path: pf.item.path, destination: d.root });
      log.warn({ err: done.error, path: pf.item.path, destination: d.root }, 'copy failed');
      if (done.endsDestination) run.killDestination(d, done.error, log);
      continue;
    }
    placed.push({ writer, done });
  }
  // A name is recorded only once its folder's fsync that began after it was made has ended (see NameSyncs).
  const named = Promise.all(placed.map(({ writer, done }) => (done.unsyncedFolder === undefined ? undefined : names.wait(writer.dest, done.unsyncedFolder))));
  // Each copy's verified state, its group's naming and the file's state go to the journal in one
  // transaction (with other files' made ready by the same syncs), committed without an fsync on this
  // thread (the caller waits for Journal.synced).
  const failed = failedBefore || anyFailed;
  return {
    recorded: named.then((syncErrors) => {
      crashPoint('folder-synced');
      return journal.txUnsyncedSoon(() => record(run, source, w, placed, syncErrors, failed, log));
    }),
  };
}

/** Commits one file's records once its names are durable, or its copies' failures where their folder's fsync failed; returns its report. */
function record(
  run: IngestRun,
  source: Source,
  w: WrittenFile,
  placed: Array<{ writer: DestinationWriter; done: Placed }>,
  syncErrors: unknown[],
  failedBefore: boolean,
  log: Logger,
): () => boolean {
  const { journal, summary, ingestId } = run;
  const { pf, read } = w;
  let anyFailed = false;
  const copies: Array<{ root: string; rel: string }> = [];
  placed.forEach(({ writer, done }, i) => {
    const d = writer.dest;
    if (done.suffix !== undefined) {
      journal.setGroupName(writer.of.sourceId, writer.of.groupKey, d.id, JSON.stringify(w.fields), done.suffix);
      d.recorded(groupId(writer.of.sourceId, writer.of.groupKey), done.suffix, contentId(read.hashes.xxh128!, read.size), done.rel);
    }
    const error = syncErrors[i];
    if (error !== undefined) {
      anyFailed = true;
      d.summary.failed++;
      journal.markCopyFailed(pf.file.id, d.id, (error as Error).message, ingestId);
      run.recordError(error, { path: pf.item.path, destination: d.root });
      log.warn({ err: error, path: pf.item.path, destination: d.root }, 'copy failed');
      return;
    }
    journal.markVerified(
      pf.file.id,
      d.id,
      {
        destPath: done.rel,
        size: read.size,
        sha256: read.hashes.sha256 ?? null,
        xxh128: read.hashes.xxh128!,
        hashes: read.hashes as Record<string, string>,
        readback: done.dedup ? 'existing' : done.direct ? 'direct' : 'cached',
        dedup: done.dedup,
      },
      ingestId,
    );
    copies.push({ root: d.root, rel: done.rel });
    if (done.direct) summary.readback.direct++;
    else summary.readback.cached++;
    d.summary.verified++;
    if (!done.dedup) d.summary.bytes += read.size;
  });
  const failed = failedBefore || anyFailed;
  journal.setFileState(pf.file.id, failed ? 'failed' : 'verified', failed ? 'see copies' : undefined);
  return () => {
    crashPoint('journaled');
    run.request.onFile?.({
      fileId: pf.file.id,
      path: pf.item.path,
      state: failed ? 'failed' : 'verified',
      size: pf.item.size,
      mtimeMs: pf.item.mtimeMs,
      copies,
      source,
      item: pf.item,
    });
    // Per file, so only at debug: an operator following a card (or a test waiting for the first file) sees it.
    log.debug({ path: pf.item.path, size: pf.item.size, state: failed ? 'failed' : 'verified' }, 'file journaled');
    return failed;
  };
}

async function writeManifest(run: IngestRun, d: RunDestination): Promise<void> {
  const { journal, settings, logger } = run;
  const rows = journal.unmanifested(d.id);
  if (rows.length === 0) return;
  crashPoint('manifest-start');
  const mhlAlgs = settings.manifestHashes.filter((a) => a !== 'sha256');
  const entries = rows.map((r) => {
    const all = JSON.parse(r.hashes ?? '{}') as HashSet;
    const hashes: HashSet = {};
    for (const a of mhlAlgs) if (all[a]) hashes[a] = all[a];
    return { path: r.dest_path!, size: r.size!, lastModified: new Date(r.mtime_ms), hashes, action: 'original' as const, hashDate: new Date() };
  });
  const gen = await writeGeneration(d.root, entries, {
    tool: settings.tool,
    hostname: hostname(),
    process: 'transfer',
    ignore: ['.shuttle', '*.shuttle-tmp', `/${REPORTS_FOLDER}/`],
  });
  journal.markManifested(
    rows.map((r) => r.id),
    gen.sequence,
  );
  logger.info({ destination: d.root, generation: gen.sequence, files: rows.length, manifest: basename(gen.file) }, 'manifest written');
}
