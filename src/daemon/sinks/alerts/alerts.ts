import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AlertKind, NotifyConfig } from '../../../config/index.js';
import { formatBytes } from '../../../bytes.js';
import { isShuttleError } from '../../../errors.js';
import { freeBytes } from '../../../io/local-destination.js';
import type { Logger } from '../../../log.js';
import { renderCardReport, reportHeadline, type CardReport } from '../../card-report.js';
import type { EventHub, StationEvent } from '../../events.js';
import type { DaemonUploadStatus, JobSnapshot } from '../../status.js';
import type { AlertChannel, AlertMessage } from './channels.js';
import { Coalescer, RepeatLimit } from './gate.js';

/**
 * What the station tells people, decided from the event hub: a card or camera done (with its report), a
 * job failed, a destination running out of space, the cloud out of reach for long. Jobs that end close
 * together share one message per window; a lasting condition is repeated at most every `repeat_ms`.
 * Delivery runs beside the jobs, never in their way: a receiver that is down costs a few logged retries
 * and nothing else.
 */

export interface AlertCenterOptions {
  config: NotifyConfig;
  station: string;
  channels: readonly AlertChannel[];
  hub: EventHub;
  destinations: readonly { path: string }[];
  uploads: () => DaemonUploadStatus | undefined;
  logger: Logger;
}

interface JobItem {
  job: JobSnapshot;
  report?: CardReport | undefined;
}

/** How long a stopping daemon waits for messages still being delivered. */
const CLOSE_WAIT_MS = 5_000;
/** Reports kept for jobs whose end has not been seen yet. */
const MAX_WAITING_REPORTS = 100;

export class AlertCenter {
  readonly #o: AlertCenterOptions;
  readonly #log: Logger;
  readonly #on: ReadonlySet<AlertKind>;
  readonly #done: Coalescer<JobItem>;
  readonly #failed: Coalescer<JobItem>;
  readonly #repeat: RepeatLimit;
  readonly #reports = new Map<number, CardReport>();
  readonly #deliveries = new Set<Promise<void>>();
  readonly #stop = new AbortController();
  #unsubscribe: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The free-space check in progress: one at a time, and a stop waits for it. */
  #diskCheck: Promise<void> | undefined;
  /** Since when files have waited for upload without one succeeding. */
  #uploadsWaitingSince: number | undefined;

  constructor(opts: AlertCenterOptions) {
    this.#o = opts;
    this.#log = opts.logger.child({ notify: opts.channels.map((c) => `${c.name} ${c.where}`).join(', ') });
    this.#on = new Set(opts.config.on);
    this.#done = new Coalescer(opts.config.windowMs, (items) => this.#send(this.#jobMessage('done', items)));
    this.#failed = new Coalescer(opts.config.windowMs, (items) => this.#send(this.#jobMessage('failed', items)));
    this.#repeat = new RepeatLimit(opts.config.repeatMs);
  }

  start(): void {
    this.#unsubscribe = this.#o.hub.subscribe((e) => this.#onEvent(e));
    this.#timer = setInterval(() => this.#check(), this.#o.config.checkMs);
    this.#timer.unref();
    this.#log.info({ on: [...this.#on] }, 'notifications on');
  }

  /** The report of a job that is about to end; sent with its done or failed message. */
  addReport(report: CardReport): void {
    this.#reports.set(report.job, report);
    if (this.#reports.size > MAX_WAITING_REPORTS) this.#reports.delete(this.#reports.keys().next().value!);
  }

  /** Sends what a window still holds, waits a little for deliveries in progress, then gives up on them. */
  async close(): Promise<void> {
    this.#unsubscribe?.();
    clearInterval(this.#timer);
    await this.#diskCheck;
    this.#done.flush();
    this.#failed.flush();
    const all = Promise.allSettled([...this.#deliveries]);
    const timer = setTimeout(() => this.#stop.abort(new Error('the daemon is stopping')), CLOSE_WAIT_MS);
    await all;
    clearTimeout(timer);
  }

  #onEvent(e: StationEvent): void {
    if (e.type === 'job.started') this.#checkDisk();
    else if (e.type === 'file.uploaded') this.#uploadsWaitingSince = undefined;
    else if (e.type === 'job.finished') this.#jobFinished(e.job);
  }

  #jobFinished(job: JobSnapshot): void {
    const report = this.#reports.get(job.id);
    this.#reports.delete(job.id);
    const item = { job, report };
    // A hot folder's batches are routine; its failures are not.
    if (job.state === 'done' && job.kind !== 'hotfolder') this.#done.push(item);
    // Interrupted: the daemon is stopping and takes the job up again at its next start.
    else if (job.state === 'failed' || job.state === 'cancelled') this.#failed.push(item);
  }

  #check(): void {
    this.#checkDisk();
    this.#checkCloud();
  }

  #checkDisk(): void {
    if (!this.#on.has('disk-low') || this.#diskCheck) return;
    this.#diskCheck = this.#diskLow().finally(() => (this.#diskCheck = undefined));
  }

  async #diskLow(): Promise<void> {
    const limit = this.#o.config.diskLowBytes;
    const low: Array<{ path: string; freeBytes: number }> = [];
    for (const d of this.#o.destinations) {
      // A destination that cannot be looked at is not mounted: its job reports that.
      const free = await freeBytes(d.path).catch(() => undefined);
      if (free !== undefined && free < limit) low.push({ path: d.path, freeBytes: free });
    }
    if (low.length === 0 || !this.#repeat.take('disk-low')) return;
    const list = low.map((l) => `${l.path}: ${formatBytes(l.freeBytes)} free`);
    this.#send(
      this.#message('disk-low', {
        title: `${this.#o.station}: destination disk low (${list.join(', ')})`,
        text: `Less than ${formatBytes(limit)} free on:\n${list.map((l) => `  ${l}`).join('\n')}\nCards that do not fit are refused.`,
        priority: 'high',
        tags: ['floppy_disk'],
        details: { thresholdBytes: limit, destinations: low },
      }),
    );
  }

  #checkCloud(): void {
    if (!this.#on.has('cloud-unreachable')) return;
    const up = this.#o.uploads();
    if (!up || up.depth === 0) {
      this.#uploadsWaitingSince = undefined;
      return;
    }
    const now = Date.now();
    this.#uploadsWaitingSince ??= now;
    const waited = now - this.#uploadsWaitingSince;
    // A long upload in progress is not an outage; a queue backing off or an uploader that cannot run is.
    if (up.state !== 'backing-off' && up.state !== 'failed') return;
    if (waited < this.#o.config.cloudUnreachableMinutes * 60_000 || !this.#repeat.take('cloud-unreachable')) return;
    const minutes = Math.round(waited / 60_000);
    const why = up.uploaderError?.message ?? up.lastError?.message ?? up.state;
    this.#send(
      this.#message('cloud-unreachable', {
        title: `${this.#o.station}: cloud unreachable for ${minutes} min, ${up.depth} files waiting`,
        text: `No upload to ${up.target} has succeeded for ${minutes} min; ${up.depth} files (${formatBytes(up.bytesPending)}) wait in the queue.\nLast error: ${why}\nThe local copies are verified; uploads resume on their own.`,
        priority: 'high',
        tags: ['cloud'],
        details: { target: up.target, state: up.state, depth: up.depth, bytesPending: up.bytesPending, waitingMinutes: minutes, lastError: why },
      }),
    );
  }

  #jobMessage(kind: 'done' | 'failed', items: JobItem[]): AlertMessage | undefined {
    if (!this.#on.has(kind)) return undefined;
    const reports = items.flatMap((i) => (i.report ? [i.report] : []));
    const lines = items.map((i) => (i.report ? reportHeadline(i.report) : jobLine(i.job)));
    const title = items.length === 1 ? `${this.#o.station}: ${lines[0]}` : `${this.#o.station}: ${items.length} ${kind === 'done' ? 'cards done' : 'jobs failed'}`;
    const text = [lines.join('\n'), ...reports.map(renderCardReport)].join('\n\n');
    return this.#message(kind, {
      title,
      text,
      priority: kind === 'done' ? 'default' : 'high',
      tags: [kind === 'done' ? 'white_check_mark' : 'x'],
      reports,
      details: { jobs: items.map((i) => ({ id: i.job.id, kind: i.job.kind, label: i.job.label, state: i.job.state, error: i.job.error })) },
    });
  }

  #message(kind: AlertKind, m: Pick<AlertMessage, 'title' | 'text' | 'priority' | 'tags' | 'details'> & { reports?: CardReport[] }): AlertMessage | undefined {
    if (!this.#on.has(kind)) return undefined;
    return { id: randomUUID(), kind, station: this.#o.station, at: new Date().toISOString(), reports: [], ...m };
  }

  #send(m: AlertMessage | undefined): void {
    if (!m) return;
    for (const channel of this.#o.channels) {
      const d = this.#deliver(channel, m).finally(() => this.#deliveries.delete(d));
      this.#deliveries.add(d);
    }
  }

  async #deliver(channel: AlertChannel, m: AlertMessage): Promise<void> {
    const retries = this.#o.config.retries;
    const base = this.#o.config.retryMs;
    const signal = this.#stop.signal;
    const fields = { channel: channel.name, where: channel.where, kind: m.kind, delivery: m.id };
    for (let attempt = 1; ; attempt++) {
      try {
        await channel.send(m, signal);
        this.#log.info({ ...fields, attempt }, 'notification sent');
        return;
      } catch (err) {
        const retryable = !isShuttleError(err) || err.retryable;
        const last = attempt > retries || !retryable || signal.aborted;
        // The message only: an error's cause may hold what the channel was given (never worth the risk).
        const error = { code: isShuttleError(err) ? err.code : 'NOTIFY_FAILED', message: err instanceof Error ? err.message : String(err) };
        if (last) {
          this.#log.error({ ...fields, attempt, error }, 'notification not delivered');
          return;
        }
        const retryInMs = base * 2 ** (attempt - 1);
        this.#log.warn({ ...fields, attempt, error, retryInMs }, 'notification failed; trying again');
        await sleep(retryInMs, undefined, { signal }).catch(() => undefined);
      }
    }
  }
}

function jobLine(job: JobSnapshot): string {
  const reason = job.error?.message ?? job.history.at(-1)?.reason;
  return `${job.label}: job ${job.id} ${job.state}${reason ? `: ${reason}` : ''}`;
}
