import { abortable } from '../async.js';
import { ShuttleError, isShuttleError } from '../errors.js';
import type { Logger } from '../log.js';
import { FINAL_STATES, RateMeter, etaSeconds, type JobKind, type JobProgress, type JobResultFigures, type JobSnapshot, type JobState } from './status.js';

/**
 * The daemon's job scheduler. A job is one piece of work on one source (a card, a camera, a batch of
 * hot-folder files), with its own AbortController and child logger, so that unplugging a device or
 * cancelling a request stops that job and nothing else.
 *
 * - A job's `key` names its source: a second submit with the key of a queued or running job returns
 *   that job instead of starting the work twice.
 * - A job lists the `resources` it writes to (destinations). Jobs sharing a resource take turns: the
 *   ingest pipeline holds each destination's lock for a whole run, and one destination being written
 *   by two jobs of this process would only make them wait on each other's lock.
 * - At most `maxRunning` jobs run at once; the rest wait in submission order (a job whose resources
 *   are busy does not hold back a later job whose resources are free).
 * - Every state change is a log line and part of the job's history.
 */

export interface JobContext {
  id: number;
  signal: AbortSignal;
  logger: Logger;
  /** Reports progress; the scheduler derives rates and ETA from it. */
  progress(p: JobProgress): void;
}

export interface JobOutcome {
  status: 'complete' | 'failed' | 'interrupted';
  result?: JobResultFigures | undefined;
}

export interface JobSpec {
  key: string;
  kind: JobKind;
  label: string;
  origin: string;
  resources?: readonly string[] | undefined;
  run(ctx: JobContext): Promise<JobOutcome>;
}

export interface SchedulerOptions {
  logger: Logger;
  maxRunning?: number | undefined;
  /** Finished jobs kept for status. */
  keepFinished?: number | undefined;
  /** Called after every state change (the daemon refreshes its systemd STATUS line). */
  onChange?: ((job: JobSnapshot) => void) | undefined;
  /**
   * Called on every progress report of a running job; `snapshot` gives its figures at the time it is
   * called. `phaseChanged` when the job entered or left a phase (which must not wait for a throttle).
   */
  onProgress?: ((id: number, snapshot: () => JobSnapshot, phaseChanged: boolean) => void) | undefined;
}

/** Why a job was stopped; decides whether it ends `cancelled` (someone meant it) or `interrupted` (shutdown). */
export type StopKind = 'cancel' | 'detach' | 'shutdown';

interface Job {
  id: number;
  spec: JobSpec;
  state: JobState;
  ac: AbortController;
  stopKind?: StopKind;
  logger: Logger;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  waitingFor?: string;
  progress?: JobProgress;
  meter: RateMeter;
  result?: JobResultFigures;
  error?: { code: string; message: string };
  history: JobSnapshot['history'];
  done: Promise<JobSnapshot>;
  settle: (s: JobSnapshot) => void;
}

const iso = (): string => new Date().toISOString();

export class JobScheduler {
  readonly #logger: Logger;
  readonly #maxRunning: number;
  readonly #keepFinished: number;
  readonly #onChange: ((job: JobSnapshot) => void) | undefined;
  readonly #onProgress: SchedulerOptions['onProgress'];
  readonly #jobs = new Map<number, Job>();
  /** Queued and running jobs, in submission order. */
  readonly #active: Job[] = [];
  readonly #finished: Job[] = [];
  #nextId = 1;
  #closed = false;
  readonly #totals = { jobs: 0, filesCopied: 0, bytesCopied: 0, failedJobs: 0 };

  constructor(opts: SchedulerOptions) {
    this.#logger = opts.logger;
    this.#maxRunning = Math.max(1, opts.maxRunning ?? 4);
    this.#keepFinished = Math.max(0, opts.keepFinished ?? 50);
    this.#onChange = opts.onChange;
    this.#onProgress = opts.onProgress;
  }

  /** Queues the work, or returns the queued or running job that already has this key. */
  submit(spec: JobSpec): { job: JobSnapshot; created: boolean } {
    if (this.#closed) throw new ShuttleError('ABORTED', 'the daemon is shutting down; no new jobs', { context: { key: spec.key } });
    const existing = this.#active.find((j) => j.spec.key === spec.key);
    if (existing) {
      existing.logger.info({ state: existing.state }, 'job already queued or running for this source; not starting it twice');
      return { job: this.#snapshot(existing), created: false };
    }
    const id = this.#nextId++;
    let settle!: (s: JobSnapshot) => void;
    const done = new Promise<JobSnapshot>((r) => (settle = r));
    const job: Job = {
      id,
      spec,
      state: 'queued',
      ac: new AbortController(),
      logger: this.#logger.child({ job: id, jobKey: spec.key }),
      createdAt: iso(),
      meter: new RateMeter(),
      history: [],
      done,
      settle,
    };
    this.#jobs.set(id, job);
    this.#active.push(job);
    this.#totals.jobs++;
    this.#transition(job, 'queued');
    this.#pump();
    return { job: this.#snapshot(job), created: true };
  }

  /** Stops one job: a queued one ends at once, a running one once its work has unwound. */
  cancel(id: number, kind: StopKind = 'cancel', reason?: string): JobSnapshot | undefined {
    const job = this.#jobs.get(id);
    if (!job) return undefined;
    this.#stop(job, kind, reason);
    return this.#snapshot(job);
  }

  /** Stops the queued or running job with this key (a device went away); returns it if there was one. */
  cancelKey(key: string, kind: StopKind, reason?: string): JobSnapshot | undefined {
    const job = this.#active.find((j) => j.spec.key === key);
    if (!job) return undefined;
    this.#stop(job, kind, reason);
    return this.#snapshot(job);
  }

  get(id: number): JobSnapshot | undefined {
    const job = this.#jobs.get(id);
    return job ? this.#snapshot(job) : undefined;
  }

  /** Resolves with the job's final snapshot; rejects when the id is unknown, or with the abort reason when `signal` aborts first. */
  wait(id: number, signal?: AbortSignal): Promise<JobSnapshot> {
    const job = this.#jobs.get(id);
    if (!job) return Promise.reject(noSuchJob(id));
    return abortable(job.done, signal);
  }

  snapshot(): { active: JobSnapshot[]; recent: JobSnapshot[] } {
    return { active: this.#active.map((j) => this.#snapshot(j)), recent: this.#finished.map((j) => this.#snapshot(j)).reverse() };
  }

  get totals(): { jobs: number; filesCopied: number; bytesCopied: number; failedJobs: number } {
    return { ...this.#totals };
  }

  get activeCount(): number {
    return this.#active.length;
  }

  /** Refuses new jobs, stops every queued and running one, and resolves when all have unwound. */
  async shutdown(reason = 'the daemon is stopping'): Promise<void> {
    this.#closed = true;
    const pending = [...this.#active];
    // Queued ones first, so that stopping a running job does not start a queued one.
    for (const j of pending.filter((j) => j.state === 'queued')) this.#stop(j, 'shutdown', reason);
    for (const j of pending) this.#stop(j, 'shutdown', reason);
    await Promise.all(pending.map((j) => j.done));
  }

  #stop(job: Job, kind: StopKind, reason: string | undefined): void {
    if (FINAL_STATES.has(job.state) || job.ac.signal.aborted) return;
    job.stopKind = kind;
    const text = reason ?? (kind === 'detach' ? 'device went away' : kind === 'shutdown' ? 'the daemon is stopping' : 'cancelled on request');
    const err =
      kind === 'detach'
        ? new ShuttleError('DEVICE_GONE', text, { context: { job: job.id, key: job.spec.key } })
        : new ShuttleError('ABORTED', text, { context: { job: job.id, key: job.spec.key, by: kind } });
    job.logger.info({ state: job.state, stop: kind, reason: text }, 'stopping job');
    job.ac.abort(err);
    if (job.state === 'queued') this.#finish(job, kind === 'shutdown' ? 'interrupted' : 'cancelled', text);
  }

  #pump(): void {
    const running = this.#active.filter((j) => j.state === 'running');
    const busy = new Map<string, number>();
    for (const j of running) for (const r of j.spec.resources ?? []) busy.set(r, j.id);
    let slots = this.#maxRunning - running.length;
    for (const job of this.#active) {
      if (job.state !== 'queued') continue;
      const blocked = (job.spec.resources ?? []).find((r) => busy.has(r));
      const waitingFor = blocked !== undefined ? `${blocked} (used by job ${busy.get(blocked)})` : slots <= 0 ? `a free slot (${this.#maxRunning} jobs running)` : undefined;
      if (waitingFor !== undefined) {
        if (job.waitingFor !== waitingFor) {
          job.waitingFor = waitingFor;
          job.logger.info({ waitingFor }, 'job waiting');
        }
        // Resources a queued job wants are not reserved: a later job on other resources may pass it.
        continue;
      }
      delete job.waitingFor;
      slots--;
      for (const r of job.spec.resources ?? []) busy.set(r, job.id);
      this.#start(job);
    }
  }

  #start(job: Job): void {
    job.startedAt = iso();
    this.#transition(job, 'running');
    const ctx: JobContext = {
      id: job.id,
      signal: job.ac.signal,
      logger: job.logger,
      progress: (p) => {
        const phaseChanged = job.progress?.phase !== p.phase;
        job.progress = { ...p };
        job.meter.sample(p.bytesDone);
        this.#onProgress?.(job.id, () => this.#snapshot(job), phaseChanged);
      },
    };
    // Started on the next turn so that submit() returns (and callers log) before the work logs anything.
    void Promise.resolve()
      .then(() => job.spec.run(ctx))
      .then(
        (outcome) => this.#completed(job, outcome),
        (err: unknown) => this.#crashed(job, err),
      );
  }

  #completed(job: Job, outcome: JobOutcome): void {
    if (outcome.result) {
      job.result = outcome.result;
      this.#totals.filesCopied += outcome.result.copied;
      this.#totals.bytesCopied += outcome.result.bytes;
    }
    if (outcome.status === 'complete') this.#finish(job, 'done');
    else if (outcome.status === 'failed') this.#finish(job, 'failed', outcome.result?.errors[0]?.message);
    else this.#finish(job, this.#stoppedState(job), this.#stopReason(job));
  }

  #crashed(job: Job, err: unknown): void {
    if (job.ac.signal.aborted && (isShuttleError(err, 'ABORTED') || isShuttleError(err, 'DEVICE_GONE') || err === job.ac.signal.reason)) {
      this.#finish(job, this.#stoppedState(job), this.#stopReason(job));
      return;
    }
    job.error = isShuttleError(err) ? { code: err.code, message: err.message } : { code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) };
    job.logger.error({ err }, 'job failed');
    this.#finish(job, 'failed', job.error.message);
  }

  #stoppedState(job: Job): JobState {
    // A pipeline that stopped on its own (no one aborted it) calls itself interrupted: report that.
    return job.stopKind === 'cancel' || job.stopKind === 'detach' ? 'cancelled' : 'interrupted';
  }

  #stopReason(job: Job): string | undefined {
    const r: unknown = job.ac.signal.reason;
    return r instanceof Error ? r.message : undefined;
  }

  #finish(job: Job, state: JobState, reason?: string): void {
    if (FINAL_STATES.has(job.state)) return;
    job.finishedAt = iso();
    if (state === 'failed') this.#totals.failedJobs++;
    this.#transition(job, state, reason);
    this.#active.splice(this.#active.indexOf(job), 1);
    this.#finished.push(job);
    while (this.#finished.length > this.#keepFinished) {
      const old = this.#finished.shift()!;
      this.#jobs.delete(old.id);
    }
    job.settle(this.#snapshot(job));
    if (!this.#closed) this.#pump();
  }

  #transition(job: Job, state: JobState, reason?: string): void {
    job.state = state;
    job.history.push(reason === undefined ? { state, at: iso() } : { state, at: iso(), reason });
    const fields: Record<string, unknown> = { state, kind: job.spec.kind, source: job.spec.label, origin: job.spec.origin };
    if (reason !== undefined) fields['reason'] = reason;
    if (job.result)
      fields['result'] = {
        status: job.result.status,
        files: job.result.files,
        copied: job.result.copied,
        alreadyVerified: job.result.alreadyVerified,
        skipped: job.result.skipped.length,
        failed: job.result.failed,
        bytes: job.result.bytes,
      };
    if (job.startedAt && FINAL_STATES.has(state)) fields['durationMs'] = Date.now() - Date.parse(job.startedAt);
    const level = state === 'failed' ? 'warn' : 'info';
    job.logger[level](fields, `job ${state}`);
    this.#onChange?.(this.#snapshot(job));
  }

  #snapshot(job: Job): JobSnapshot {
    const running = job.state === 'running';
    const rate = running ? job.meter.rate() : undefined;
    return {
      id: job.id,
      key: job.spec.key,
      kind: job.spec.kind,
      label: job.spec.label,
      origin: job.spec.origin,
      state: job.state,
      createdAt: job.createdAt,
      startedAt: job.startedAt,
      finishedAt: job.finishedAt,
      waitingFor: job.state === 'queued' ? job.waitingFor : undefined,
      progress: job.progress ? { ...job.progress } : undefined,
      rateBytesPerSec: rate === undefined ? undefined : Math.round(rate),
      etaSeconds: running ? etaSeconds(job.progress, rate) : undefined,
      result: job.result,
      error: job.error,
      history: job.history.map((h) => ({ ...h })),
    };
  }
}

export function noSuchJob(id: number): ShuttleError {
  return new ShuttleError('USAGE', `no job ${id} (finished jobs are forgotten after a while, and on restart)`, { context: { reason: 'no-such-job', job: id } });
}
