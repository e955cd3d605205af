import { hostname } from 'node:os';
import { basename, join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from '../log.js';
import { ShuttleError, abortReason, isShuttleError } from '../errors.js';
import { isSourceFault, isSourceSkip, type ItemState, type Source, type SourceFault, type SourceIdentity, type SourceItem } from '../device/source.js';
import type { Journal, FileRow } from '../store/journal.js';
import { sourceLockPath } from '../store/lock.js';
import { checkFreeSpace } from './destination.js';
import type { HashAlgorithm, HashSet } from './hashing.js';
import { IngestHasher, startHashWorker } from './hash-worker-client.js';
import { publishNoReplace } from './durable.js';
import { readCaptureMetadata, METADATA_HEAD_BYTES, type CaptureMetadata } from './metadata.js';
import type { WallClock } from '../time-zone.js';
import { renderName, withCollisionSuffix } from './naming.js';
import { groupItems, type ItemGroup } from './pairing.js';
import { writeGeneration } from './manifest/index.js';
import { crashPoint } from './crash-points.js';
import { nameFilter } from './filter.js';
import { Slots } from '../io/slots.js';
import {
  adoptExisting,
  checkCopy,
  createTempTarget,
  discardTemp,
  fanOut,
  readHead,
  joinHead,
  rewriteFromSource,
  sealTemp,
  type ReadBackCheck,
  type ReadResult,
  type TempTarget,
} from './copy.js';

import { IngestRun, type IngestRequest, type IngestSettings, type IngestSummary, type Progress } from './run.js';
import { RunDestination } from './run-destination.js';

export type { DestinationSpec, DestinationSummary, IngestRequest, IngestSettings, IngestSummary, Progress } from './run.js';

interface PlannedFile {
  item: SourceItem;
  file: FileRow;
  group: ItemGroup;
  seq: number;
  wanted: RunDestination[];
}

/** Name fields a whole RAW+JPEG group shares, decided once from its best member. */
interface GroupFields {
  /** Capture time on the camera's clock, which names folders. */
  local: WallClock;
  make?: string | undefined;
  model?: string | undefined;
  serial?: string | undefined;
}

const SOURCE_ALGORITHMS: readonly HashAlgorithm[] = ['sha256', 'xxh128'];

/**
 * check destinations → list → plan → copy → manifest. Every file is read once from its source; the
 * read feeds the hashers and every destination that still needs it.
 */
export async function runIngest(req: IngestRequest): Promise<IngestSummary> {
  if (req.destinations.length === 0) throw new ShuttleError('USAGE', 'no destination: give --dest DIR or configure [[destinations]]');
  const run = new IngestRun(req);
  const { signal, summary } = run;
  startHashWorker();
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
    for (const source of req.sources) {
      if (signal.aborted) break;
      await ingestSource(run, source);
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  } finally {
    for (const d of run.destinations.filter((x) => x.id >= 0)) await writeManifest(run, d).catch((e: unknown) => run.recordError(e, { destination: d.root }));
    run.finish();
  }
  return summary;
}

async function ingestSource(run: IngestRun, source: Source): Promise<void> {
  const { journal, settings, signal, summary, ingestId, destinations: dests, request: req } = run;
  const identity = await source.identity(signal);
  const log = run.logger.child({ source: source.uri, sourceKey: identity.key });
  await run.lock(sourceLockPath(identity.key));
  const sourceId = journal.upsertSource(identity);

  const wanted = nameFilter(settings);
  const items: SourceItem[] = [];
  // Nothing listed is dropped unnamed: what cannot be read fails, what is left out is named as skipped.
  const faults: SourceFault[] = [];
  const skipped: Array<{ path: string; reason: string }> = [];
  for await (const entry of source.list(signal)) {
    if (isSourceFault(entry)) faults.push(entry);
    else if (isSourceSkip(entry)) skipped.push({ path: entry.path, reason: entry.skipped });
    else if (wanted(entry.path)) items.push(entry);
    else skipped.push({ path: entry.path, reason: 'excluded by include/exclude' });
  }
  summary.skipped.push(...skipped);
  if (skipped.length > 0) log.info({ skipped }, 'source entries left out');
  journal.tx(() => {
    for (const f of faults) journal.recordUnreadable(sourceId, f.path, f.error.message, f.pathBytes);
  });
  for (const f of faults) {
    summary.failed++;
    run.recordError(f.error, { path: f.path });
    log.warn({ err: f.error, path: f.path }, 'could not read from the source');
  }
  const groups = groupItems(items);
  const plan = journal.tx(() => planFiles(groups, dests, journal, sourceId));
  const todo = plan.filter((p) => p.wanted.length > 0);
  summary.files += plan.length;
  for (const p of plan) summary.fileIds.push(p.file.id);
  summary.bytes += plan.reduce((n, p) => n + p.item.size, 0);
  summary.alreadyVerified += plan.length - todo.length;
  for (const d of dests) {
    d.summary.verified += plan.filter((p) => !p.wanted.includes(d) && !d.dead).length;
  }
  log.info({ files: plan.length, toCopy: todo.length, identity: identity.label }, 'plan ready');

  for (const d of dests) {
    if (d.dead) continue;
    const needed = todo.filter((p) => p.wanted.includes(d)).reduce((n, p) => n + p.item.size, 0);
    try {
      await checkFreeSpace(d.root, needed, d.spec.minFreeBytes ?? 0);
    } catch (e) {
      run.killDestination(d, e, log);
    }
  }

  const progress: Progress = { filesTotal: todo.length, filesDone: 0, bytesTotal: todo.reduce((n, p) => n + p.item.size, 0), bytesDone: 0 };
  req.onProgress?.(progress);
  const groupFields = new Map<string, GroupFields>();
  // Written files wait here to be published, in order; their checks (fsync, read-back) already run.
  const finishes = new SerialQueue(FILES_IN_FLIGHT);
  const checking = new Set<Promise<unknown>>();
  const readBacks = new Slots(READ_BACKS_AT_ONCE);
  const outcomes = new Map<PlannedFile, { failed: boolean; copied: boolean }>();

  try {
    for (const pf of todo) {
      if (signal.aborted) break;
      progress.current = pf.item.path;
      const live = pf.wanted.filter((d) => !d.dead);
      const outcome = { failed: live.length < pf.wanted.length, copied: false };
      outcomes.set(pf, outcome);
      for (const d of pf.wanted) if (d.dead) d.summary.failed++;
      if (live.length === 0) {
        journal.setFileState(pf.file.id, 'failed', 'no live destination');
        continue;
      }
      let written: WrittenFile | undefined;
      try {
        written = await copyOnce(run, source, pf, live, identity, groupFields, sourceId);
      } catch (e) {
        if (signal.aborted) throw abortReason(signal);
        outcome.failed = true;
        for (const d of live) { d.summary.failed++; journal.markCopyFailed(pf.file.id, d.id, String((e as Error).message), ingestId); }
        journal.setFileState(pf.file.id, 'failed', (e as Error).message);
        run.recordError(e, { path: pf.item.path });
        log.warn({ err: e, path: pf.item.path }, 'file failed');
      }
      if (written) {
        const w = written;
        // Sealing and reading back start now, beside the next files' copies and checks: with small files
        // the fsyncs and read-backs of several files overlap instead of queueing one file at a time.
        const checked = checkWritten(w, readBacks, signal);
        checking.add(checked);
        void checked.finally(() => checking.delete(checked));
        await finishes.push(async () => finishFile(run, source, w, await checked, outcome, log));
      }
      progress.filesDone++;
      progress.bytesDone += pf.item.size;
      req.onProgress?.(progress);
    }
  } finally {
    try {
      await finishes.drain();
    } finally {
      // A check whose file was never published (the run stopped) still ends before the run does.
      await Promise.allSettled(checking);
    }
  }
  for (const o of outcomes.values()) {
    if (o.failed) summary.failed++;
    else if (o.copied) summary.copied++;
  }
  if (signal.aborted) throw abortReason(signal);
}

function planFiles(groups: readonly ItemGroup[], dests: RunDestination[], journal: Journal, sourceId: number): PlannedFile[] {
  const plan: PlannedFile[] = [];
  let seq = 0;
  for (const group of groups) {
    seq++;
    for (const member of group.members) {
      const file = journal.fileFor(sourceId, member.item.path, member.item.size, member.item.mtimeMs, member.item.pathBytes);
      // A copy pruned by the retention policy was verified here and is safe in the cloud: not copied again.
      const verified = new Set(journal.copiesOf(file.id).filter((c) => c.state === 'verified' || c.state === 'pruned').map((c) => c.dest_id));
      plan.push({ item: member.item, file, group, seq, wanted: dests.filter((d) => !verified.has(d.id)) });
    }
  }
  return plan;
}

interface WrittenTarget {
  dest: RunDestination;
  target: TempTarget;
  baseRel: string;
  groupKey: string;
}

interface WrittenFile {
  pf: PlannedFile;
  read: ReadResult;
  targets: WrittenTarget[];
  sourceId: number;
  fields: GroupFields;
}

/** Reads one source file once into a temp file at every live destination. Retries if the file changes under the read. */
async function copyOnce(
  run: IngestRun, source: Source, pf: PlannedFile, live: RunDestination[], identity: SourceIdentity, groupFields: Map<string, GroupFields>, sourceId: number,
): Promise<WrittenFile> {
  const { journal, settings, signal, summary, ingestId, logger } = run;
  const algorithms = [...new Set([...SOURCE_ALGORITHMS, ...settings.manifestHashes, ...(settings.forUpload === true ? (['md5'] as const) : [])])];
  let reported = false;
  /** The file changed under the plan: the next attempt reads the version there now, under its own journal row. */
  const follow = (now: ItemState | undefined, why: string): void => {
    if (!now) return;
    const item = { ...pf.item, size: now.size, mtimeMs: now.mtimeMs };
    journal.setFileState(pf.file.id, 'failed', why);
    pf.item = item;
    pf.file = journal.fileFor(sourceId, item.path, item.size, item.mtimeMs, item.pathBytes);
    summary.fileIds.push(pf.file.id);
  };
  for (let attempt = 0; ; attempt++) {
    let stream: Readable;
    try {
      // fanOut copies each chunk out before pulling the next, and readHead copies what it keeps.
      stream = await source.open(pf.item, { signal, recycle: 1 });
    } catch (e) {
      // Not the file listed any more (another size or time, or now a link or a FIFO, never followed).
      if (!isShuttleError(e, 'SOURCE_CHANGED') || attempt >= settings.changeRetries) throw e;
      logger.warn({ path: pf.item.path, attempt, err: e }, 'source file changed since it was listed; trying again');
      follow(await source.stat(pf.item, signal), 'changed since listed');
      continue;
    }
    // Hashed in the hash worker (bar small files): this thread only moves the bytes.
    const hasher = new IngestHasher(algorithms);
    const iter = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    const targets: WrittenTarget[] = [];
    try {
      const { head } = await readHead(iter, METADATA_HEAD_BYTES);
      const fields = await decideGroupFields(pf, joinHead(head), identity, groupFields, journal, sourceId, live[0]!.id, settings, logger);
      const rendered = renderName(settings.template, {
        name: posix.basename(pf.item.path), date: fields.local, make: fields.make, model: fields.model, serial: fields.serial, seq: pf.seq, job: settings.job,
      });
      if (!reported) {
        reported = true;
        if (pf.item.pathBytes) {
          const r = { from: pf.item.pathBytes.toString('utf8'), to: pf.item.path, reason: 'not-utf8' };
          summary.renamed.push(r);
          logger.info({ path: pf.item.path, from: r.from, to: r.to, reason: r.reason }, 'name sanitized');
        }
        for (const r of rendered.renamed) {
          summary.renamed.push(r);
          logger.info({ path: pf.item.path, from: r.from, to: r.to, reason: r.reason }, 'name sanitized');
        }
      }
      for (const d of live) {
        const groupKey = pf.group.key;
        const finalPath = join(d.root, rendered.path);
        await d.sweepFolder(finalPath, run);
        const target = await createTempTarget(finalPath, (temp) => journal.markCopying(pf.file.id, d.id, temp, ingestId)).catch((e: unknown) => {
          run.killDestination(d, e);
          return undefined;
        });
        if (!target) continue;
        targets.push({ dest: d, target, baseRel: rendered.path, groupKey });
        crashPoint('temp-created');
      }
      await fanOut({ [Symbol.asyncIterator]: () => iter }, head, targets.map((t) => t.target), hasher, signal);
      const read: ReadResult = { size: hasher.bytes, hashes: await hasher.digest() };
      crashPoint('written');
      const now = await source.stat(pf.item, signal);
      const changed = read.size !== pf.item.size || (now !== undefined && (now.size !== pf.item.size || now.mtimeMs !== pf.item.mtimeMs));
      if (changed) {
        await Promise.all(targets.map((t) => discardTemp(t.target)));
        if (attempt >= settings.changeRetries) {
          throw new ShuttleError('SOURCE_CHANGED', `${pf.item.path} changed while it was read (planned ${pf.item.size} bytes, read ${read.size}, now ${now?.size ?? 'gone'})`, {
            context: { path: pf.item.path, planned: pf.item.size, read: read.size, now: now?.size },
          });
        }
        logger.warn({ path: pf.item.path, attempt }, 'source file changed while read; reading again');
        follow(now, 'changed while read');
        continue;
      }
      if (targets.length === 0) throw new ShuttleError('DEST_WRITE_FAILED', `no destination could take ${pf.item.path}`, { context: { path: pf.item.path } });
      return { pf, read, targets, sourceId, fields };
    } catch (e) {
      await Promise.all(targets.map((t) => discardTemp(t.target)));
      throw e;
    } finally {
      stream.destroy();
      hasher.dispose();
    }
  }
}

async function decideGroupFields(
  pf: PlannedFile, head: Buffer, identity: SourceIdentity, memo: Map<string, GroupFields>, journal: Journal, sourceId: number, destId: number, settings: IngestSettings, log: Logger,
): Promise<GroupFields> {
  const cached = memo.get(pf.group.key);
  if (cached) return cached;
  const stored = journal.groupName(sourceId, pf.group.key, destId);
  let fields: GroupFields;
  if (stored) {
    fields = JSON.parse(stored.fields) as GroupFields;
  } else {
    const md: CaptureMetadata = await readCaptureMetadata(head, { mtimeMs: pf.item.mtimeMs }, { timeZone: settings.timeZone });
    if (md.warnings.length) log.info({ path: pf.item.path, warnings: md.warnings, dateSource: md.dateSource }, 'metadata problems; name falls back');
    fields = {
      local: md.local,
      make: md.make ?? (identity.details['manufacturer'] as string | undefined),
      model: md.model ?? (identity.details['model'] as string | undefined),
      serial: md.serial ?? (identity.details['serial'] as string | undefined),
    };
  }
  memo.set(pf.group.key, fields);
  return fields;
}

/** Files copied but not yet published at once; their checks overlap. */
const FILES_IN_FLIGHT = 3;
/** Read-backs at once: each holds two 4 MiB blocks. */
const READ_BACKS_AT_ONCE = 2;

/** What sealing and reading back one temp copy found: the check, or why there is none. */
type TargetCheck = { check: ReadBackCheck; error?: undefined } | { check?: undefined; error: unknown };

/**
 * Seals every temp copy of a written file (fsync, times) and reads it back, all destinations at once.
 * Runs as soon as the file is written, beside other files' checks; never rejects (failures are returned
 * per target for finishFile, which publishes in order).
 */
async function checkWritten(w: WrittenFile, readBacks: Slots, signal: AbortSignal): Promise<TargetCheck[]> {
  return Promise.all(
    w.targets.map(async (t): Promise<TargetCheck> => {
      try {
        if (t.target.error) throw t.target.error;
        await sealTemp(t.target, w.pf.item.mtimeMs);
        crashPoint('sealed');
        const check = await readBacks.run(() => checkCopy(t.target.tempPath, w.read, signal), signal);
        crashPoint('read-back');
        return { check };
      } catch (error) {
        return { error };
      }
    }),
  );
}

/**
 * Publishes one file's checked temp copies (rewriting a copy whose read-back did not match). Runs one
 * file at a time in copy order, so a group's members publish in order and share a collision suffix.
 */
async function finishFile(
  run: IngestRun, source: Source, w: WrittenFile, checks: readonly TargetCheck[], outcome: { failed: boolean; copied: boolean }, log: Logger,
): Promise<void> {
  const { journal, settings, signal, summary, ingestId } = run;
  const { pf } = w;
  let anyFailed = false;
  // Each copy's verified state, its group's naming and the file's state go to the journal in one
  // transaction: one fsync'd commit per file instead of several (a commit costs an fsync on the main thread).
  const records: Array<() => void> = [];
  for (const [i, t] of w.targets.entries()) {
    const d = t.dest;
    try {
      const checked = checks[i]!;
      if (checked.check === undefined) throw checked.error;
      let check = checked.check;
      for (let retry = 0; !check.ok && retry < settings.verifyRetries; retry++) {
        log.warn({ path: pf.item.path, destination: d.root, expected: w.read.hashes.xxh128, actual: check.actual.xxh128, retry }, 'read-back mismatch; writing again from the source');
        await discardTemp(t.target);
        const again = await createTempTarget(join(d.root, t.baseRel), (temp) => journal.markCopying(pf.file.id, d.id, temp, ingestId));
        t.target = again;
        const reread = await rewriteFromSource(source, pf.item, again, SOURCE_ALGORITHMS, signal);
        if (reread.hashes.sha256 !== w.read.hashes.sha256) {
          throw new ShuttleError('SOURCE_CHANGED', `${pf.item.path} read differently the second time (sha256 ${w.read.hashes.sha256} then ${reread.hashes.sha256})`, { context: { path: pf.item.path } });
        }
        await sealTemp(again, pf.item.mtimeMs);
        check = await checkCopy(again.tempPath, w.read, signal);
      }
      if (!check.ok) {
        throw new ShuttleError('VERIFY_MISMATCH', `copy of ${pf.item.path} at ${d.root} does not match the source: size ${w.read.size} vs ${check.actual.size}, xxh128 ${w.read.hashes.xxh128} vs ${check.actual.xxh128}`, {
          context: { path: pf.item.path, destination: d.root, expected: w.read.hashes.xxh128, actual: check.actual.xxh128 },
        });
      }
      const placed = await place(t, w, journal, log, signal);
      crashPoint('published');
      const direct = check.direct;
      records.push(() => {
        if (placed.suffix !== undefined) journal.setGroupName(w.sourceId, t.groupKey, d.id, JSON.stringify(w.fields), placed.suffix);
        journal.markVerified(pf.file.id, d.id, {
          destPath: placed.rel, size: w.read.size, sha256: w.read.hashes.sha256!, xxh128: w.read.hashes.xxh128!, hashes: w.read.hashes as Record<string, string>,
          readback: placed.dedup ? 'existing' : direct ? 'direct' : 'cached', dedup: placed.dedup,
        }, ingestId);
      });
      if (check.direct) summary.readback.direct++; else summary.readback.cached++;
      d.summary.verified++;
      if (!placed.dedup) d.summary.bytes += w.read.size;
    } catch (e) {
      await discardTemp(t.target);
      if (signal.aborted) throw abortReason(signal);
      anyFailed = true;
      d.summary.failed++;
      journal.markCopyFailed(pf.file.id, d.id, (e as Error).message, ingestId);
      run.recordError(e, { path: pf.item.path, destination: d.root });
      log.warn({ err: e, path: pf.item.path, destination: d.root }, 'copy failed');
      if (isShuttleError(e, 'DEST_NO_SPACE') || isShuttleError(e, 'DEST_NOT_WRITABLE')) run.killDestination(d, e, log);
    }
  }
  outcome.failed ||= anyFailed;
  outcome.copied = !outcome.failed;
  journal.tx(() => {
    for (const r of records) r();
    journal.setFileState(pf.file.id, outcome.failed ? 'failed' : 'verified', outcome.failed ? 'see copies' : undefined);
  });
  crashPoint('journaled');
  // Per file, so only at debug: an operator following a card (or a test waiting for the first file) sees it.
  log.debug({ path: pf.item.path, size: pf.item.size, state: outcome.failed ? 'failed' : 'verified' }, 'file journaled');
}

/**
 * Moves a verified temp copy to its final name, never replacing a file. Identical content already at
 * the destination (by the journal's content index, or found at the target name) is kept and the temp
 * dropped, but only once that file was read back and matched the source and was fsync'd (adoptExisting):
 * the journal says what was there, not what is there now. A different file at the name pushes this group
 * to the next collision suffix.
 */
async function place(t: WrittenTarget, w: WrittenFile, journal: Journal, log: Logger, signal: AbortSignal): Promise<{ rel: string; dedup: boolean; suffix?: number }> {
  const d = t.dest;
  const same = journal.findContent(d.id, w.read.hashes.xxh128!, w.read.hashes.sha256!, w.read.size);
  if (same?.dest_path) {
    const existing = await adoptExisting(join(d.root, same.dest_path), w.read, signal);
    if (existing?.ok) {
      await discardTemp(t.target);
      log.info({ path: w.pf.item.path, existing: same.dest_path, destination: d.root }, 'identical content already at destination');
      return { rel: same.dest_path, dedup: true };
    }
    log.warn({ path: w.pf.item.path, existing: same.dest_path, destination: d.root, actual: existing?.actual }, 'a verified copy of the same content no longer matches it; storing this one anew');
  }
  const stored = journal.groupName(w.sourceId, t.groupKey, d.id);
  let suffix = stored?.suffix ?? 0;
  for (let guard = 0; guard < 10_000; guard++, suffix++) {
    const rel = suffix === 0 ? t.baseRel : withCollisionSuffix(t.baseRel, suffix);
    const final = join(d.root, rel);
    const r = await publishNoReplace(t.target.tempPath, final);
    if (r === 'published') return { rel, dedup: false, suffix };
    // Something is already there: ours from an interrupted run (same bytes), or another file.
    if ((await adoptExisting(final, w.read, signal))?.ok) {
      await discardTemp(t.target);
      return { rel, dedup: false, suffix };
    }
  }
  throw new ShuttleError('DEST_WRITE_FAILED', `no free name for ${t.baseRel} at ${d.root}`, { context: { path: t.baseRel } });
}

async function writeManifest(run: IngestRun, d: RunDestination): Promise<void> {
  const { journal, settings, logger } = run;
  const rows = journal.unmanifested(d.id);
  if (rows.length === 0) return;
  crashPoint('manifest');
  const mhlAlgs = settings.manifestHashes.filter((a) => a !== 'sha256');
  const entries = rows.map((r) => {
    const all = JSON.parse(r.hashes ?? '{}') as HashSet;
    const hashes: HashSet = {};
    for (const a of mhlAlgs) if (all[a]) hashes[a] = all[a];
    return { path: r.dest_path!, size: r.size!, lastModified: new Date(r.mtime_ms), hashes, action: 'original' as const, hashDate: new Date() };
  });
  const gen = await writeGeneration(d.root, entries, { tool: settings.tool, hostname: hostname(), process: 'transfer', ignore: ['.shuttle', '*.shuttle-tmp'] });
  journal.markManifested(rows.map((r) => r.id), gen.sequence);
  logger.info({ destination: d.root, generation: gen.sequence, files: rows.length, manifest: basename(gen.file) }, 'manifest written');
}

/** Runs tasks one after another in the background, letting at most `depth` wait. */
class SerialQueue {
  #tail: Promise<void> = Promise.resolve();
  #pending = 0;
  #error: unknown;
  constructor(private readonly depth: number) {}
  async push(task: () => Promise<void>): Promise<void> {
    if (this.#error) throw this.#error;
    this.#pending++;
    this.#tail = this.#tail.then(task).catch((e: unknown) => { this.#error ??= e; }).finally(() => { this.#pending--; });
    while (this.#pending > this.depth) await Promise.race([this.#tail, new Promise((r) => setTimeout(r, 5))]);
    if (this.#error) throw this.#error;
  }
  async drain(): Promise<void> {
    await this.#tail;
    if (this.#error) throw this.#error;
  }
}

