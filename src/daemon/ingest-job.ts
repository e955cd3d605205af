import type { SourceOpener } from '../device/detect.js';
import type { SourceIdentity } from '../device/source.js';
import { isShuttleError } from '../errors.js';
import { runIngest, type DestinationSpec, type FileOutcome, type IngestSettings, type IngestSummary } from '../ingest/pipeline.js';
import type { Logger } from '../log.js';
import type { Journal } from '../store/journal.js';
import type { JobContext, JobOutcome } from './jobs.js';
import type { JobKind, JobProgress, JobResultFigures } from './status.js';
import type { Source } from '../device/source.js';
import type { MadePreview } from '../ingest/tether-previews.js';
import { OverlappedSecondReads, wipeError, wipeSource, type WipeReport } from '../ingest/wipe.js';
import { policyFor, type WipePolicies } from './wipe-policy.js';

/**
 * What every daemon job shares: the journal, the destinations and the ingest settings, all resolved
 * once from the config when the daemon starts.
 */
export interface IngestEnvironment {
  journal: Journal;
  destinations: DestinationSpec[];
  settings: IngestSettings;
  stateDir: string;
  timeZone?: string | undefined;
  /**
   * Follow-up work on every finished ingest, also an interrupted or failed one (its verified files count):
   * the daemon queues them for upload here. Awaited before the job ends, so a finished job's files are
   * durably queued; a failure fails the job (files verified here but never queued would otherwise not
   * reach the cloud without anyone being told).
   */
  afterIngest?: ((summary: IngestSummary, logger: Logger) => Promise<void>) | undefined;
  /** Queues files for upload at once (a tethering session's shots, one by one); undefined without an upload target. */
  queueUpload?: ((fileIds: readonly number[], logger: Logger) => Promise<void>) | undefined;
  /**
   * Each file a job copied, once journaled (the daemon's event stream); returns the preview being made of
   * it, if one is (its path, or undefined when none could be made). `preview`: the one a tethering session
   * made of the bytes as they streamed in (undefined: none, then it is made from the verified copy).
   */
  onFile?: ((job: number, source: string, file: FileOutcome, preview?: Promise<MadePreview | undefined>) => Promise<string | undefined> | undefined) | undefined;
  /** What card and camera jobs do with their source's files once verified (see wipe-policy.ts). */
  wipe?: WipePolicies | undefined;
  /**
   * Every ingest that ended with a summary, after afterIngest (its files are queued for upload by then):
   * the daemon writes the per-card report here. Awaited, so the report is on the destinations before the
   * job ends; a failure is logged and never changes the job's outcome.
   */
  onFinished?: ((done: FinishedIngest, logger: Logger) => Promise<void>) | undefined;
}

export interface IngestJobOptions {
  /** The job's kind: card and camera jobs follow their wipe policy; without one (a hot folder's batch) nothing is refused up front. */
  kind?: JobKind | undefined;
  onSummary?: ((s: IngestSummary) => void) | undefined;
}

/** One finished ingest of a job, for its report. */
export interface FinishedIngest {
  job: number;
  /** The source as the job named it (`/media/shuttle/EOS_DIGITAL`, `usb:04a9:3294`). */
  source: string;
  /** Undefined when the source could no longer tell (a card pulled before the end). */
  identity: SourceIdentity | undefined;
  summary: IngestSummary;
  /** What the source's wipe policy did (second read, deletions); undefined when none applies. */
  wipe: WipeReport | undefined;
  startedAt: Date;
  finishedAt: Date;
}

/** The daemon waits for a CLI run working on the same card or destination, until the job is cancelled. */
export const DAEMON_LOCK_WAIT_MS = Infinity;

export function resultFigures(s: IngestSummary, wiped?: number): JobResultFigures {
  return {
    status: s.status,
    files: s.files,
    copied: s.copied,
    alreadyVerified: s.alreadyVerified,
    failed: s.failed,
    bytes: s.destinations.reduce((n, d) => n + d.bytes, 0),
    errors: s.errors.slice(0, 20).map((e) => ({ code: e.code, message: e.message, path: e.path })),
    errorCounts: countByCode(s.errors),
    skipped: s.skipped.slice(0, 20),
    ...(wiped === undefined ? {} : { wiped }),
  };
}

function countByCode(errors: readonly { code: string }[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const e of errors) counts[e.code] = (counts[e.code] ?? 0) + 1;
  return counts;
}

/** One ingest of one source into every destination: the body of card, camera and hot-folder jobs. */
export async function runIngestJob(env: IngestEnvironment, open: SourceOpener, ctx: JobContext, opts: IngestJobOptions = {}): Promise<JobOutcome> {
  const source = await open({ stateDir: env.stateDir, timeZone: env.timeZone, logger: ctx.logger, signal: ctx.signal });
  const startedAt = new Date();
  let progress: JobProgress = { filesTotal: 0, filesDone: 0, bytesTotal: 0, bytesDone: 0 };
  const report = (p: JobProgress): void => {
    progress = { ...p };
    ctx.progress(p);
  };
  // With a wipe policy, each file's second read runs during the ingest, once it is verified (see wipe.ts).
  const secondReads = policyFor(env.wipe, opts.kind) === 'never' ? undefined : new OverlappedSecondReads(source, ctx.signal);
  try {
    const summary = await runIngest({
      sources: [source],
      destinations: env.destinations,
      journal: env.journal,
      settings: env.settings,
      logger: ctx.logger,
      signal: ctx.signal,
      onProgress: report,
      // A card, camera or requested folder that cannot fit is refused before its first copy; a hot folder's
      // batch (no kind) is not: more comes all the time, and the plan checks each window as it goes.
      refuseWhatCannotFit: opts.kind !== undefined,
      ...(env.onFile || secondReads
        ? {
            onFile: (f: FileOutcome) => {
              secondReads?.fileDone(f);
              void env.onFile?.(ctx.id, source.uri, f);
            },
          }
        : {}),
    });
    if (env.afterIngest) {
      try {
        await env.afterIngest(summary, ctx.logger);
      } catch (err) {
        ctx.logger.error({ err }, 'follow-up work after the ingest failed');
        summary.errors.push({ code: isShuttleError(err) ? err.code : 'INTERNAL', message: err instanceof Error ? err.message : String(err) });
        if (summary.status === 'complete') summary.status = 'failed';
      }
    }
    const phase = (p: JobProgress['phase']) => () => report({ ...progress, current: undefined, phase: p });
    const wipe = await applyWipePolicy(env, source, summary, ctx, opts.kind, secondReads, phase('verifying'), phase('waiting-for-cloud'));
    if (env.onFinished) {
      const identity = await source.identity().catch(() => undefined);
      const done = { job: ctx.id, source: source.uri, identity, summary, wipe, startedAt, finishedAt: new Date() };
      await env.onFinished(done, ctx.logger).catch((err: unknown) => ctx.logger.warn({ err }, 'the report of the ingest could not be made'));
    }
    opts.onSummary?.(summary);
    return { status: summary.status, result: resultFigures(summary, wipe?.wiped) };
  } finally {
    await secondReads?.close();
    await source.close().catch((e: unknown) => ctx.logger.warn({ err: e, source: source.uri }, 'closing the source failed'));
  }
}

/**
 * The job's wipe policy, after the ingest and its uploads were queued (after-cloud waits here for the
 * uploader to verify them). A wipe that did not happen after a complete ingest fails the job, named in
 * its errors: the card must not look done. Returns what the wipe did, or undefined without a policy.
 */
async function applyWipePolicy(
  env: IngestEnvironment,
  source: Source,
  summary: IngestSummary,
  ctx: JobContext,
  kind: JobKind | undefined,
  secondReads: OverlappedSecondReads | undefined,
  onSecondRead: () => void,
  onWaitForCloud: () => void,
): Promise<WipeReport | undefined> {
  const policy = policyFor(env.wipe, kind);
  if (policy === 'never' || summary.status === 'interrupted') return undefined;
  let waiting = false;
  const report = await wipeSource({
    source,
    policy,
    summary,
    journal: env.journal,
    logger: ctx.logger,
    signal: ctx.signal,
    cloud: env.wipe?.cloud,
    ...(env.wipe?.waitForCloud === undefined
      ? {}
      : {
          waitForCloud: (state: unknown, signal: AbortSignal) => {
            // Once: each look at the queue would otherwise be another progress event, for hours perhaps.
            if (!waiting) onWaitForCloud();
            waiting = true;
            return env.wipe!.waitForCloud!(state, signal);
          },
        }),
    station: env.settings.station,
    onSecondRead,
    secondReads,
  });
  const error = wipeError(report);
  if (error !== undefined && summary.status === 'complete') {
    summary.errors.push({ source: source.uri, ...(report.reason?.path ? { path: report.reason.path } : {}), code: error.code, message: error.message });
    summary.status = report.reason?.why === 'interrupted' ? 'interrupted' : 'failed';
  }
  return report;
}
