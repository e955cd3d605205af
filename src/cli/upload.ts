import { Command } from 'commander';
import { setTimeout as sleep } from 'node:timers/promises';
import { uploadSettings } from '../config/index.js';
import { ShuttleError, isShuttleError } from '../errors.js';
import { Journal } from '../store/journal.js';
import { acquireLock } from '../store/lock.js';
import { RetentionStore } from '../store/retention.js';
import { UploadQueue, type EnqueueResult, type QueueCounts, type QueueRow } from '../store/upload-queue.js';
import { createUploadRuntime, queueTargetFor, retentionPolicyFor, uploadLockPath } from '../upload/from-config.js';
import { PROVIDERS, isProviderName, type ProviderName } from '../upload/provider.js';
import { applyRetention, type RetentionReport } from '../upload/retention.js';
import type { DrainReport } from '../upload/worker.js';
import { commandContext, signalOnTermination, type CommandContext, type GlobalOptions } from './context.js';
import { EXIT } from './exit.js';

function providerFlag(name: string | undefined): ProviderName | undefined {
  if (name === undefined) return undefined;
  if (!isProviderName(name)) {
    throw new ShuttleError('USAGE', `--s3-provider: "${name}" is not one of ${Object.keys(PROVIDERS).join(', ')}`, { context: { provider: name } });
  }
  return name;
}

function secondsFlag(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new ShuttleError('USAGE', `${flag}: "${value}" is not a number of seconds`, { context: { value } });
  return n;
}

interface DrainRequest {
  ctx: CommandContext;
  journal: Journal;
  provider: ProviderName | undefined;
  signal: AbortSignal;
  /** Manual runs try every queued row now, whatever its backoff said. */
  retryNow: boolean;
  deadline: number | undefined;
  done?: () => boolean;
}

interface DrainOutcome {
  report: DrainReport;
  retention: RetentionReport;
}

/** Drains the queue under the upload lock the caller holds, then applies the retention policy. */
async function drainQueue(req: DrainRequest): Promise<DrainOutcome> {
  const { ctx, journal, signal } = req;
  const runtime = await createUploadRuntime({ config: ctx.config, journal, logger: ctx.logger, provider: req.provider });
  try {
    const { queue, worker } = runtime;
    const recovered = queue.recoverInterrupted();
    if (recovered > 0) ctx.logger.info({ rows: recovered }, 'uploads interrupted by an earlier run are queued again');
    if (req.retryNow) queue.retryNow();
    const report = await worker.drain({
      signal,
      deadline: req.deadline,
      // With a time limit, an unreachable server is waited for (with backoff) until it runs out.
      waitForDeferred: req.deadline !== undefined,
      ...(req.done ? { done: req.done } : {}),
    });
    ctx.logger.info({ ...report, errors: report.errors.length }, 'upload queue drained');
    const retention = signal.aborted
      ? { pruned: [], bytesFreed: 0, skippedDestinations: [] }
      : await applyRetention({ records: new RetentionStore(journal), policy: retentionPolicyFor(runtime.settings), logger: ctx.logger, signal });
    return { report, retention };
  } finally {
    runtime.close();
  }
}

export interface IngestUploadFlags {
  upload?: string | undefined;
  /** false with --no-wait. */
  uploadWait?: boolean | undefined;
  uploadTimeout?: string | undefined;
  s3Provider?: string | undefined;
}

/** What `shuttle ingest --json` reports about the run's uploads. */
export interface IngestUploadSummary {
  target: string;
  /** Files of this run in the upload queue. */
  queued: number;
  /** Of those, verified in the cloud. */
  uploaded: number;
  failed: number;
  /** Still queued (or interrupted): a later `shuttle upload` or the daemon finishes them. */
  pending: number;
  errors: Array<{ key: string; code: string; message: string }>;
  /** The run's files could not be queued (nothing was uploaded): the ingest fails with this error. */
  queueError?: { code: string; message: string };
}

export interface IngestUpload {
  /** Where this run's files go (for the after-cloud wipe gate). */
  readonly target: { bucket: string; prefix: string };
  /** Whether the run waits for its uploads (no --no-wait). */
  readonly waits: boolean;
  /** Queues the run's verified files (also those an earlier run copied) and, unless --no-wait, uploads them. */
  run(signal: AbortSignal, fileIds: readonly number[]): Promise<IngestUploadSummary>;
  /** Queues verified files now, in `journal` (JOURNAL when they cannot be queued); `run` later finds them queued. */
  queue(journal: Journal, fileIds: readonly number[]): EnqueueResult;
  /** Exit code the uploads call for (EXIT.ok when nothing is owed). */
  exitCode(summary: IngestUploadSummary): number;
}

/**
 * Validates the upload flags of `shuttle ingest` before anything is copied (a typo in the URL must not
 * surface after an hour of copying).
 * Undefined when the ingest uploads nothing (no --upload and no upload.target).
 */
export function prepareIngestUpload(ctx: CommandContext, flags: IngestUploadFlags): IngestUpload | undefined {
  const settings = uploadSettings(ctx.config);
  const url = flags.upload ?? settings.target;
  const provider = providerFlag(flags.s3Provider);
  const timeout = secondsFlag('--upload-timeout', flags.uploadTimeout);
  if (url === undefined) {
    if (flags.uploadWait === false || timeout !== undefined || provider !== undefined) {
      throw new ShuttleError('USAGE', '--no-wait, --upload-timeout and --s3-provider need --upload s3://bucket/prefix (or upload.target in the config)');
    }
    return undefined;
  }
  const target = queueTargetFor(ctx.config, url);
  const wait = flags.uploadWait !== false;
  const where = `s3://${target.bucket}${target.prefix === '' ? '' : `/${target.prefix}`}`;

  return {
    target: { bucket: target.bucket, prefix: target.prefix },
    waits: wait,
    async run(signal, fileIds) {
      const own = Journal.open(ctx.stateDir);
      try {
        const queue = new UploadQueue(own);
        let enqueued: EnqueueResult;
        try {
          enqueued = queue.enqueue(fileIds, target);
        } catch (error) {
          // Returned, not thrown: the summary of the copies made still gets printed, with this error in it.
          ctx.logger.error({ err: error, target: where }, 'files not queued for upload');
          const code = isShuttleError(error) ? error.code : 'INTERNAL';
          return {
            target: where,
            queued: 0,
            uploaded: 0,
            failed: 0,
            pending: 0,
            errors: [],
            queueError: { code, message: error instanceof Error ? error.message : String(error) },
          };
        }
        const carriers = new RunCarriers(queue, target, enqueued.rowIds);
        ctx.logger.info({ target: where, files: fileIds.length, added: enqueued.added, alreadyUploaded: enqueued.alreadyUploaded }, 'files queued for upload');
        const open = (): boolean => {
          const c = carriers.counts();
          return c.queued + c.uploading > 0;
        };
        let report: DrainReport | undefined;
        if (wait && open()) {
          const deadline = timeout === undefined ? undefined : Date.now() + timeout * 1000;
          const lock = await acquireLock(uploadLockPath(ctx.stateDir), { owner: { command: 'ingest --upload' }, wait: 0, signal }).catch((error: unknown) => {
            if (isShuttleError(error, 'LOCKED')) return undefined;
            throw error;
          });
          if (lock === undefined) {
            ctx.logger.info({ target: where }, "another process is uploading; waiting for it to upload this run's files");
            await waitForRows(carriers, deadline, signal);
          } else {
            try {
              ({ report } = await drainQueue({ ctx, journal: own, provider, signal, retryNow: false, deadline, done: () => !open() }));
            } finally {
              lock.release();
            }
          }
        }
        return summarize(where, carriers.counts(), report);
      } finally {
        own.close();
      }
    },
    queue(journal, fileIds) {
      return new UploadQueue(journal).enqueue(fileIds, target);
    },
    exitCode(summary) {
      if (summary.queueError !== undefined) return EXIT.failed;
      if (!wait) return EXIT.ok;
      if (summary.failed > 0) return EXIT.failed;
      return summary.pending > 0 ? EXIT.incomplete : EXIT.ok;
    },
  };
}

function summarize(target: string, c: QueueCounts, report: DrainReport | undefined): IngestUploadSummary {
  return {
    target,
    queued: c.queued + c.uploading + c.uploaded + c.failed,
    uploaded: c.uploaded,
    failed: c.failed,
    pending: c.queued + c.uploading,
    errors: (report?.errors ?? []).map(({ key, code, message }) => ({ key, code, message })),
  };
}

/**
 * Per file of a run, the queue row that carries it. A row folded into a twin queued before it (the same
 * content, see UploadWorker's `shared`) leaves the queue, and its file goes with the twin's row, which may
 * be an earlier run's: the run's summary, and when its uploads are done, follow the file there.
 */
class RunCarriers {
  readonly #queue: UploadQueue;
  readonly #target: { bucket: string; prefix: string };
  /** One entry per file of the run that was queued (files sharing a row each have their entry). */
  readonly #rowIds: number[];
  readonly #fileOf = new Map<number, number>();

  constructor(queue: UploadQueue, target: { bucket: string; prefix: string }, rowIds: readonly number[]) {
    this.#queue = queue;
    this.#target = target;
    this.#rowIds = [...rowIds];
    for (const r of queue.rows([...new Set(rowIds)])) this.#fileOf.set(r.id, r.fileId);
  }

  /** The rows now carrying the run's files, one per file. */
  rows(): QueueRow[] {
    const found = new Map(this.#queue.rows([...new Set(this.#rowIds)]).map((r) => [r.id, r]));
    return this.#rowIds.flatMap((id, i) => {
      let row = found.get(id);
      const fileId = this.#fileOf.get(id);
      if (row === undefined && fileId !== undefined) {
        row = this.#queue.carrierOf(fileId, this.#target);
        if (row !== undefined) {
          this.#rowIds[i] = row.id;
          this.#fileOf.set(row.id, row.fileId);
        }
      }
      return row === undefined ? [] : [row];
    });
  }

  /** The run's files by the state of the row carrying each. */
  counts(): QueueCounts {
    const out: QueueCounts = { queued: 0, uploading: 0, uploaded: 0, failed: 0 };
    for (const r of this.rows()) out[r.state]++;
    return out;
  }
}

/** Another process drains the queue: watch the journal until these rows are done, or only wait for a retry. */
async function waitForRows(carriers: RunCarriers, deadline: number | undefined, signal: AbortSignal): Promise<void> {
  for (;;) {
    const rows = carriers.rows();
    const open = rows.filter((r) => r.state === 'queued' || r.state === 'uploading');
    if (open.length === 0 || signal.aborted) return;
    const now = Date.now();
    if (deadline !== undefined && now >= deadline) return;
    if (deadline === undefined && open.every((r) => r.state === 'queued' && r.nextAttemptAt > now + 1000)) return;
    await sleep(500, undefined, { signal }).catch(() => undefined);
  }
}

interface UploadCommandOptions {
  json?: boolean;
  timeout?: string;
  s3Provider?: string;
  enqueueAll?: boolean;
  target?: string;
}

export function uploadCommand(globals: () => GlobalOptions): Command {
  return new Command('upload')
    .description('upload what the queue holds (verified local copies) to S3, verifying every object; then apply local retention')
    .option('--json', 'print one JSON summary object on stdout')
    .option('--timeout <seconds>', 'keep retrying an unreachable server until this many seconds have passed (default: stop once every remaining upload waits for a retry)')
    .option('--s3-provider <name>', `S3 flavour: ${Object.keys(PROVIDERS).join(', ')} (default: upload.provider, else guessed from the endpoint)`)
    .option('--enqueue-all', 'first queue every verified file the journal knows that is not queued for the target yet')
    .option('--target <s3url>', 'target for --enqueue-all (default: upload.target)')
    .addHelpText(
      'after',
      `
Exit codes: 0 the queue is empty (everything uploaded and verified); 1 some uploads failed (no intact local copy);
2 usage or configuration error; 3 uploads remain queued (server unreachable, time limit, or another process uploads).`,
    )
    .action(async (opts: UploadCommandOptions) => {
      const ctx = commandContext(globals());
      const provider = providerFlag(opts.s3Provider);
      const timeout = secondsFlag('--timeout', opts.timeout);
      const signal = signalOnTermination();
      const journal = Journal.open(ctx.stateDir);
      try {
        const queue = new UploadQueue(journal);
        if (opts.enqueueAll === true) {
          const settings = uploadSettings(ctx.config);
          const url = opts.target ?? settings.target;
          if (url === undefined) throw new ShuttleError('USAGE', '--enqueue-all needs --target s3://bucket/prefix or upload.target in the config');
          const r = queue.enqueue(queue.verifiedFiles(), queueTargetFor(ctx.config, url));
          ctx.logger.info({ added: r.added, alreadyUploaded: r.alreadyUploaded }, 'verified files queued');
        } else if (opts.target !== undefined) {
          throw new ShuttleError('USAGE', '--target is only used with --enqueue-all (queued files keep the target they were queued for)');
        }
        const lock = await acquireLock(uploadLockPath(ctx.stateDir), { owner: { command: 'upload' }, wait: 0, signal });
        let outcome: DrainOutcome;
        try {
          const deadline = timeout === undefined ? undefined : Date.now() + timeout * 1000;
          outcome = await drainQueue({ ctx, journal, provider, signal, retryNow: true, deadline });
        } finally {
          lock.release();
        }
        const stats = queue.stats();
        const { report, retention } = outcome;
        const out = {
          uploaded: report.uploaded,
          alreadyPresent: report.alreadyPresent,
          failed: report.failed,
          deferred: report.deferred,
          rekeyed: report.rekeyed,
          shared: report.shared,
          repaired: report.repaired,
          damaged: report.damaged,
          bytesSent: report.bytesSent,
          partsResumed: report.partsResumed,
          stopped: report.stopped,
          queue: { queued: stats.queued, uploading: stats.uploading, uploaded: stats.uploaded, failed: stats.failed, bytesPending: stats.bytesPending },
          retention: { pruned: retention.pruned.length, bytesFreed: retention.bytesFreed, skippedDestinations: retention.skippedDestinations },
          errors: report.errors,
        };
        if (opts.json) process.stdout.write(`${JSON.stringify(out)}\n`);
        else process.stdout.write(humanSummary(out));
        process.exitCode = stats.failed > 0 ? EXIT.failed : stats.depth > 0 || signal.aborted ? EXIT.incomplete : EXIT.ok;
      } finally {
        journal.close();
      }
    });
}

function humanSummary(o: {
  uploaded: number;
  alreadyPresent: number;
  failed: number;
  deferred: number;
  shared: number;
  repaired: number;
  damaged: number;
  bytesSent: number;
  queue: QueueCounts & { bytesPending: number };
  retention: { pruned: number; bytesFreed: number };
  errors: DrainReport['errors'];
}): string {
  const lines = [
    `uploaded ${o.uploaded} (${o.bytesSent} bytes sent), ${o.alreadyPresent} already there, ${o.failed} failed, ${o.deferred} retried later`,
    `queue: ${o.queue.queued + o.queue.uploading} pending (${o.queue.bytesPending} bytes), ${o.queue.failed} failed, ${o.queue.uploaded} uploaded in all`,
  ];
  if (o.shared > 0) lines.push(`${o.shared} files found to be the same as one queued before them (same SHA-256 and name), not sent again`);
  if (o.repaired > 0 || o.damaged > 0) lines.push(`local copies: ${o.repaired} damaged copies restored, ${o.damaged} damaged and not restorable`);
  if (o.retention.pruned > 0) lines.push(`retention: ${o.retention.pruned} local copies removed (${o.retention.bytesFreed} bytes)`);
  for (const e of o.errors.slice(0, 20)) lines.push(`  ${e.outcome} ${e.key}: ${e.code}: ${e.message}`);
  return `${lines.join('\n')}\n`;
}
