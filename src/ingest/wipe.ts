import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import { ShuttleError, abortReason, isShuttleError, type ErrorCode } from '../errors.js';
import { DONE_MARK_NAME, isSourceFault, isSourceSkip, type Source, type SourceItem, type SourceRemoval } from '../device/source.js';
import { IngestHasher } from '../io/hash-worker-client.js';
import type { FileRow, Journal } from '../store/journal.js';
import { WipeStore, type CloudState } from '../store/wipes.js';
import { acquireLock, sourceLockPath, type Lock } from '../store/lock.js';
import { crashPoint } from './crash-points.js';
import { checkCopy, fanOut } from './copy.js';
import type { FileOutcome, IngestSummary } from './run.js';
import type { WipePolicy } from '../config/index.js';

/**
 * Verified-then-wipe: after an ingest, delete from the source exactly the files that run ingested, and
 * only when all of these hold for every one of them (the gate, decided before the first deletion):
 *
 * - the run completed: no file failed, no destination failed, nothing interrupted;
 * - every destination of the run holds the file verified (read back past the page cache: by this run
 *   for the files it copied, again now for the files an earlier run copied);
 * - with "after-cloud", the file's bytes are verified at the S3 target;
 * - a second, independent read of the source, past the page cache (a fresh GetObject on a camera),
 *   gives the size and hash the first read recorded. It may have run during the ingest, as soon as the
 *   file's copies were verified (OverlappedSecondReads); the gate waits for it either way.
 *
 * One file failing any check keeps every file on the source. Files the run left out (excluded, skipped)
 * or never listed are never touched: the candidates are the run's own journal rows, matched against a
 * fresh listing, and only files are deleted, never folders. "mark-done" passes the same gate and then
 * writes DONE_MARK_NAME at the source's root instead of deleting anything.
 */

export { WIPE_POLICIES, type WipePolicy } from '../config/index.js';

/** Why a wipe did not (fully) happen: `why` is stable for scripts, `message` for people. */
export interface WipeReason {
  code: ErrorCode;
  why: 'ingest-incomplete' | 'cannot-delete' | 'not-verified' | 'cloud-pending' | 'cloud-failed' | 'source-changed' | 'second-read-differs' | 'delete-failed' | 'interrupted';
  message: string;
  path?: string | undefined;
}

export interface WipeReport {
  source: string;
  policy: Exclude<WipePolicy, 'never'>;
  /** Files deleted from the source. */
  wiped: number;
  /** Files that passed the gate. */
  checked: number;
  /**
   * How the second reads read: past the page cache, or (where the filesystem refused O_DIRECT) maybe not;
   * `overlapped` of them ran while the ingest still copied later files.
   */
  secondRead: { direct: number; cached: number; overlapped: number };
  /** mark-done: the file written at the source's root. */
  marked?: string;
  /** Why nothing, or not everything, was deleted; absent when the gate opened and every deletion succeeded. */
  reason?: WipeReason;
}

export interface WipeRequest {
  source: Source;
  policy: Exclude<WipePolicy, 'never'>;
  /** The run that ingested the source (its files, destinations and status). */
  summary: IngestSummary;
  journal: Journal;
  logger: Logger;
  signal: AbortSignal;
  /** after-cloud: the S3 target whose verified objects count. */
  cloud?: { bucket: string; prefix: string } | undefined;
  /**
   * after-cloud: called while some files are still queued for the cloud; resolves when it is worth
   * looking again. Without it (the CLI, which uploaded before) pending files close the gate at once.
   */
  waitForCloud?: ((state: CloudState, signal: AbortSignal) => Promise<void>) | undefined;
  /** For the mark-done file. */
  station: string;
  /** Called once as the second read of the source begins (the daemon's station shows "verifying"). */
  onSecondRead?: (() => void) | undefined;
  /** Second reads started during the ingest (see OverlappedSecondReads); the gate reads any other file itself. */
  secondReads?: OverlappedSecondReads | undefined;
}

class Refused extends Error {
  constructor(readonly reason: WipeReason) {
    super(reason.message);
  }
}

function refuse(why: WipeReason['why'], message: string, path?: string, code: ErrorCode = 'WIPE_REFUSED'): Refused {
  return new Refused({ code, why, message, ...(path === undefined ? {} : { path }) });
}

/** A candidate: the run's journal row and the item a fresh listing found for it. */
interface Candidate {
  row: FileRow;
  item: SourceItem;
  secondRead?: 'direct' | 'cached';
}

/** Deletions made durable together (a card's folders synced once per batch) before the journal says so. */
const SETTLE_BATCH = 64;

/** Applies the policy to one source after its ingest; never throws (the report says what happened and why). */
export async function wipeSource(req: WipeRequest): Promise<WipeReport> {
  const { source, policy, signal } = req;
  const log = req.logger.child({ source: source.uri, wipe: policy });
  const report: WipeReport = { source: source.uri, policy, wiped: 0, checked: 0, secondRead: { direct: 0, cached: 0, overlapped: 0 } };
  const store = new WipeStore(req.journal);
  let candidates: Candidate[];
  try {
    candidates = await gate(req, store, report, log);
  } catch (e) {
    report.reason = reasonOf(e, signal);
    log.warn({ reason: report.reason }, `nothing deleted from the source: ${report.reason.message}`);
    return report;
  }
  report.checked = candidates.length;
  const removal = source.removal!;
  if (policy === 'mark-done') {
    try {
      await removal.writeRootFile!(DONE_MARK_NAME, doneText(req, candidates), signal);
      report.marked = DONE_MARK_NAME;
      log.info({ files: candidates.length, marked: DONE_MARK_NAME }, 'every file verified; the source is marked done');
    } catch (e) {
      report.reason = reasonOf(e, signal);
      log.error({ reason: report.reason }, 'the source could not be marked done');
    }
    return report;
  }
  // The deletions hold the source's lock, as its ingest did: an ingest of the source elsewhere meanwhile
  // would take this wipe's 'deleting' rows for a dead process's and settle them (see unfinished-wipes.ts).
  let lock: Lock;
  try {
    lock = await acquireLock(sourceLockPath((await source.identity(signal)).key), { owner: { command: `wipe ${source.uri}` }, signal });
  } catch (e) {
    report.reason = reasonOf(e, signal);
    log.warn({ reason: report.reason }, `nothing deleted from the source: ${report.reason.message}`);
    return report;
  }
  try {
    await deleteAll(req, store, candidates, report, log);
  } finally {
    lock.release();
  }
  return report;
}

/** Deletes the candidates, journaling each deletion before it and its outcome once it is durable. */
async function deleteAll(req: WipeRequest, store: WipeStore, candidates: Candidate[], report: WipeReport, log: Logger): Promise<void> {
  const { policy, signal } = req;
  const removal = req.source.removal!;
  // Recorded as deleted only once the deletion is durable: a card pulled before its folder was synced
  // can bring an unlinked file back, and the journal must not say it was gone. Deletions are settled in
  // batches, so that a long wipe records its progress as it goes.
  for (let at = 0; at < candidates.length; at += SETTLE_BATCH) {
    const removed: Array<{ id: number; c: Candidate }> = [];
    let failure: unknown;
    for (const c of candidates.slice(at, at + SETTLE_BATCH)) {
      const id = store.begin(c.row.id, req.summary.ingestId, policy, c.secondRead!, c.row.xxh128!);
      crashPoint('wipe-begun');
      try {
        await removal.remove(c.item, signal);
        removed.push({ id, c });
      } catch (e) {
        store.failed(id, e instanceof Error ? e.message : String(e));
        failure = e;
        break;
      }
    }
    try {
      if (removed.length > 0) await removal.settleRemovals?.(removed.map((r) => r.c.item));
      for (const r of removed) store.deleted(r.id);
      report.wiped += removed.length;
    } catch (e) {
      const why = `deleted, but not made durable (${e instanceof Error ? e.message : String(e)}): the file may come back`;
      for (const r of removed) store.failed(r.id, why);
      failure ??= e;
    }
    if (failure !== undefined) {
      // The rest stays for the next run (a card pulled now loses nothing: every file is verified).
      report.reason = reasonOf(failure, signal, 'delete-failed');
      log.error({ reason: report.reason, wiped: report.wiped, left: candidates.length - report.wiped }, 'deleting from the source failed; the rest stays on it');
      return;
    }
  }
  log.info({ wiped: report.wiped, secondRead: report.secondRead }, 'verified files deleted from the source');
}

function reasonOf(e: unknown, signal: AbortSignal, why: WipeReason['why'] = 'cannot-delete'): WipeReason {
  if (e instanceof Refused) return e.reason;
  if (signal.aborted) return { code: 'ABORTED', why: 'interrupted', message: `interrupted: ${abortReason(signal).message}` };
  const code = isShuttleError(e) ? e.code : 'INTERNAL';
  const message = e instanceof Error ? e.message : String(e);
  return { code, why, message };
}

/** Every check, in order of cost; returns the files to delete, or throws Refused. */
async function gate(req: WipeRequest, store: WipeStore, report: WipeReport, log: Logger): Promise<Candidate[]> {
  const { source, summary, signal, policy, journal } = req;
  if (summary.status !== 'complete') {
    const what = summary.status === 'interrupted' ? 'was interrupted' : `failed (${summary.failed} files failed, ${summary.errors.length} errors)`;
    throw refuse('ingest-incomplete', `the ingest ${what}; a source is wiped only when every file verified`);
  }
  const removal: SourceRemoval | undefined = source.removal;
  if (removal === undefined) throw refuse('cannot-delete', `${source.uri} is not a source Shuttle deletes from`);
  if (policy === 'mark-done' && removal.writeRootFile === undefined) throw refuse('cannot-delete', `${source.uri} cannot be marked done (no files can be written to it)`);
  await removal.ready(signal);

  const identity = await source.identity(signal);
  const sourceId = store.sourceId(identity.key);
  const rows = sourceId === undefined ? [] : store.filesOf(sourceId, summary.fileIds);
  const verified = rows.filter((r) => r.state === 'verified');
  // A file that changed while read is read again under a new row; the old row fails quietly. Any other
  // row of the run that is not verified would be a file nobody checked.
  const verifiedPaths = new Set(verified.map((r) => r.rel_path));
  const unchecked = rows.find((r) => r.state !== 'verified' && !verifiedPaths.has(r.rel_path));
  if (unchecked) throw refuse('not-verified', `${unchecked.rel_path} is not verified (${unchecked.state})`, unchecked.rel_path);

  const destIds = summary.destinations.map((d) => ({ path: d.path, id: journal.destinationByPath(d.path)?.id }));
  const copies = new Map<number, ReturnType<WipeStore['copiesOf']>>();
  for (const r of verified) {
    const of = store.copiesOf(r.id);
    for (const d of destIds) {
      const c = of.find((x) => x.dest_id === d.id);
      if (c?.state !== 'verified' || c.dest_path === null) throw refuse('not-verified', `${r.rel_path} is not verified at ${d.path}`, r.rel_path);
    }
    if (r.xxh128 === null) throw refuse('not-verified', `${r.rel_path} has no recorded source hash`, r.rel_path);
    copies.set(r.id, of);
  }

  if (policy === 'after-cloud') await cloudGate(req, store, verified, log);

  // A fresh listing: the items as they are now, for the files of the run's rows and no others.
  const byKey = new Map(verified.map((r) => [fileKey(r.rel_path, r.size, r.mtime_ms), r]));
  const candidates: Candidate[] = [];
  for await (const entry of source.list(signal)) {
    if (isSourceFault(entry) || isSourceSkip(entry)) continue;
    const row = byKey.get(fileKey(entry.path, entry.size, entry.mtimeMs));
    if (row === undefined) continue;
    byKey.delete(fileKey(entry.path, entry.size, entry.mtimeMs));
    candidates.push({ row, item: entry });
  }
  const gone = byKey.values().next();
  if (!gone.done) throw refuse('source-changed', `${gone.value.rel_path} is no longer on the source as it was ingested`, gone.value.rel_path);

  // Copies an earlier run verified are read back again now: the library may have changed since.
  for (const c of candidates) {
    for (const copy of copies.get(c.row.id)!) {
      if (copy.state !== 'verified' || copy.ingest_id === summary.ingestId || !destIds.some((d) => d.id === copy.dest_id)) continue;
      const path = join(copy.root, copy.dest_path!);
      const isFile = await lstat(path).then(
        (st) => st.isFile(),
        () => false,
      );
      const check = isFile ? await checkCopy(path, { size: copy.size ?? -1, hashes: { xxh128: copy.xxh128 ?? '' } }, signal) : undefined;
      if (!check?.ok) throw refuse('not-verified', `the copy of ${c.row.rel_path} at ${path} no longer reads back as verified`, c.row.rel_path);
    }
  }

  // The second read of the source, file by file (those read during the ingest are only waited for); the
  // first difference closes the gate.
  if (candidates.length > 0) req.onSecondRead?.();
  for (const c of candidates) {
    if (signal.aborted) throw abortReason(signal);
    let overlapped = false;
    const read = await (async () => {
      const early = await req.secondReads?.take(c.item);
      overlapped = early !== undefined;
      return early ?? (await secondRead(req.source.removal!, c.item, signal));
    })().catch((e: unknown) => {
      if (signal.aborted) throw abortReason(signal);
      throw refuse('source-changed', `second read of ${c.item.path} failed: ${e instanceof Error ? e.message : String(e)}`, c.item.path);
    });
    if (read.size !== c.row.size || read.xxh128 !== c.row.xxh128) {
      throw refuse(
        'second-read-differs',
        `second read of ${c.item.path} differs from the first: ${read.size} bytes xxh128 ${read.xxh128} vs ${c.row.size} bytes xxh128 ${c.row.xxh128}`,
        c.item.path,
        'VERIFY_MISMATCH',
      );
    }
    c.secondRead = read.direct ? 'direct' : 'cached';
    report.secondRead[c.secondRead]++;
    if (overlapped) report.secondRead.overlapped++;
  }
  if (report.secondRead.cached > 0) log.warn({ cached: report.secondRead.cached }, 'the filesystem refused O_DIRECT: some second reads may have come from the page cache');
  return candidates;
}

/** after-cloud: every file's bytes verified at the target, waiting for the uploads where the caller can. */
async function cloudGate(req: WipeRequest, store: WipeStore, files: FileRow[], log: Logger): Promise<void> {
  const { cloud, signal } = req;
  if (cloud === undefined) throw refuse('cloud-pending', 'the policy is after-cloud but no upload target is configured');
  for (;;) {
    const state = store.cloudState(files, cloud);
    if (state.failed > 0) throw refuse('cloud-failed', `${state.failed} files failed to upload and stay on the source with the rest`);
    if (state.pending === 0) return;
    if (req.waitForCloud === undefined) throw refuse('cloud-pending', `${state.pending} files are not verified in the cloud yet`);
    log.info({ pending: state.pending, verified: state.verified }, 'waiting for the cloud copies to be verified before wiping');
    await req.waitForCloud(state, signal);
    if (signal.aborted) throw abortReason(signal);
  }
}

interface SecondRead {
  size: number;
  xxh128: string | undefined;
  direct: boolean;
}

/**
 * A wipe's second reads, started while the ingest still runs: each file's as soon as the ingest reports
 * it verified at every destination (IngestRequest.onFile), so that the source is read again while later
 * files still copy and read back instead of after the whole run. The read is the gate's own (a fresh
 * open past the page cache, or a fresh GetObject), only earlier; one at a time, so it holds one read's
 * staging blocks at most. The gate takes a read only for the same version of the file (path, size,
 * time) and still decides on every file before the first deletion. A failed file ends the early reads:
 * the gate will refuse the whole source anyway.
 */
export class OverlappedSecondReads {
  readonly #reads = new Map<string, Promise<SecondRead>>();
  readonly #stop = new AbortController();
  readonly #signal: AbortSignal;
  #tail: Promise<unknown> = Promise.resolve();
  #ready: Promise<boolean> | undefined;

  constructor(
    private readonly source: Source,
    signal: AbortSignal,
  ) {
    this.#signal = AbortSignal.any([signal, this.#stop.signal]);
  }

  /** For IngestRequest.onFile: queues the second read of a file of this source once it is verified. */
  readonly fileDone = (f: FileOutcome): void => {
    if (this.#signal.aborted) return;
    // Any file of the run failing (of any source: not all outcomes name theirs) fails the run's gate.
    if (f.state === 'failed') {
      this.#stop.abort(new ShuttleError('WIPE_REFUSED', `${f.path} failed: no second reads are needed`));
      return;
    }
    if (f.source !== this.source) return;
    const removal = this.source.removal;
    const item = f.item;
    if (removal === undefined || item === undefined) return;
    // A source that cannot delete (a card mounted read-only) is refused by the gate: nothing to read early.
    const ready = (this.#ready ??= removal.ready(this.#signal).then(
      () => true,
      () => false,
    ));
    const read = this.#tail.then(async () => {
      if (!(await ready)) throw new ShuttleError('WIPE_REFUSED', `${this.source.uri} cannot be deleted from`);
      return secondRead(removal, item, this.#signal);
    });
    // Its outcome is for the gate, which may never ask (a run that failed later): never unhandled here.
    read.catch(() => {});
    this.#tail = read.catch(() => {});
    this.#reads.set(fileKey(item.path, item.size, item.mtimeMs), read);
  };

  /**
   * The second read of this version of the item, once done; undefined when none was started or it was
   * stopped before it could tell (the gate then reads the file itself). Each read is handed out once.
   */
  async take(item: SourceItem): Promise<SecondRead | undefined> {
    const key = fileKey(item.path, item.size, item.mtimeMs);
    const read = this.#reads.get(key);
    this.#reads.delete(key);
    try {
      return await read;
    } catch (e) {
      if (this.#stop.signal.aborted || isShuttleError(e, 'WIPE_REFUSED')) return undefined;
      throw e;
    }
  }

  /** Stops the reads not yet done and waits for the one under way (before the source is closed). */
  async close(): Promise<void> {
    this.#stop.abort(new ShuttleError('ABORTED', 'second reads no longer needed'));
    await this.#tail;
  }
}

async function secondRead(removal: SourceRemoval, item: SourceItem, signal: AbortSignal): Promise<SecondRead> {
  const hasher = new IngestHasher(['xxh128']);
  const read = await removal.reread(item, signal);
  try {
    // No targets: fanOut only stages the bytes into shared blocks for the hash worker.
    await fanOut(read.stream, [], [], hasher, signal);
    return { size: hasher.bytes, xxh128: (await hasher.digest()).xxh128, direct: read.direct() };
  } finally {
    read.stream.destroy();
    hasher.dispose();
  }
}

function fileKey(path: string, size: number, mtimeMs: number): string {
  return `${size}:${Math.trunc(mtimeMs)}:${path}`;
}

/** The mark-done file: what was verified where, one file a line. */
function doneText(req: WipeRequest, candidates: Candidate[]): string {
  const lines = [
    `Verified by Shuttle on ${req.station} at ${new Date().toISOString()} (ingest ${req.summary.ingestId}).`,
    `Every file below is verified at: ${req.summary.destinations.map((d) => d.path).join(', ')}${req.policy === 'after-cloud' ? ' and in the cloud' : ''}.`,
    'A second read of this card matched the first. Safe to format in the camera.',
    '',
    'size\txxh128\tpath',
    ...candidates.map((c) => `${c.row.size}\t${c.row.xxh128}\t${c.row.rel_path}`),
  ];
  return `${lines.join('\n')}\n`;
}

/** A short line for people: what the wipe did, or why it did nothing. */
export function describeWipe(r: WipeReport): string {
  if (r.marked !== undefined) return `${r.source}: ${r.checked} files verified twice; marked done (${r.marked})`;
  if (r.reason === undefined && r.checked === 0) return `${r.source}: nothing ingested in this run is left on it to wipe`;
  if (r.reason === undefined) return `${r.source}: wiped ${r.wiped} files (each verified at every destination and read a second time)`;
  if (r.wiped > 0) return `${r.source}: wiped ${r.wiped} of ${r.checked} files, then stopped: ${r.reason.message}`;
  return `${r.source}: nothing wiped: ${r.reason.message}`;
}

/** ShuttleError for a report that did not wipe (or mark) everything it gated; undefined when it did. */
export function wipeError(r: WipeReport): ShuttleError | undefined {
  if (r.reason === undefined) return undefined;
  return new ShuttleError(r.reason.code, describeWipe(r), { context: { source: r.source, why: r.reason.why, ...(r.reason.path ? { path: r.reason.path } : {}) } });
}
