import type { IngestSummary } from '../ingest/pipeline.js';
import type { Logger } from '../log.js';
import { hotFolderBatchOpener } from '../device/detect.js';
import { HotFolderWatcher, type HotFile } from './hotfolders.js';
import { runIngestJob, type IngestEnvironment } from './ingest-job.js';
import type { JobScheduler } from './jobs.js';
import type { HotFolderStatus, JobSnapshot } from './status.js';

/**
 * Feeds one hot folder's batches to the scheduler: one job at a time per folder (files completed while
 * it runs wait for the next one), failed files tried again after `retryMs`, up to `maxAttempts` times.
 */

export interface HotFolderFeedOptions {
  root: string;
  scheduler: JobScheduler;
  env: IngestEnvironment;
  settleMs: number;
  batchMs: number;
  retryMs: number;
  maxAttempts?: number | undefined;
  resources: readonly string[];
  logger: Logger;
}

export function hotFolderJobKey(root: string): string {
  return `hotfolder:${root}`;
}

export class HotFolderFeed {
  readonly root: string;
  readonly #opts: HotFolderFeedOptions;
  readonly #watcher: HotFolderWatcher;
  readonly #waiting = new Map<string, HotFile>();
  readonly #attempts = new Map<string, number>();
  #job: number | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #retryAt: number | undefined;
  #closed = false;

  constructor(opts: HotFolderFeedOptions) {
    this.root = opts.root;
    this.#opts = opts;
    this.#watcher = new HotFolderWatcher({
      root: opts.root,
      settleMs: opts.settleMs,
      batchMs: opts.batchMs,
      logger: opts.logger,
      onBatch: (files) => this.#add(files),
    });
  }

  async start(): Promise<void> {
    await this.#watcher.start();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    await this.#watcher.close();
  }

  status(): HotFolderStatus {
    const w = this.#watcher.status;
    return {
      path: this.root,
      watching: w.watching,
      waiting: this.#waiting.size + w.waiting,
      settling: w.settling,
      delivered: w.delivered,
      retryAt: this.#retryAt === undefined ? undefined : new Date(this.#retryAt).toISOString(),
      error: w.error,
    };
  }

  #add(files: HotFile[]): void {
    for (const f of files) this.#waiting.set(f.rel, f);
    this.#kick();
  }

  #kick(): void {
    if (this.#closed || this.#job !== undefined || this.#retryTimer !== undefined || this.#waiting.size === 0) return;
    const batch = [...this.#waiting.values()];
    this.#waiting.clear();
    let summary: IngestSummary | undefined;
    const open = hotFolderBatchOpener(this.root, batch);
    let submitted: { job: JobSnapshot; created: boolean };
    try {
      submitted = this.#opts.scheduler.submit({
        key: hotFolderJobKey(this.root),
        kind: 'hotfolder',
        label: `${this.root} (${batch.length} file${batch.length === 1 ? '' : 's'})`,
        origin: 'hotfolder',
        resources: this.#opts.resources,
        run: (ctx) => runIngestJob(this.#opts.env, open, ctx, { onSummary: (s) => (summary = s) }),
      });
    } catch (err) {
      this.#opts.logger.warn({ err }, 'hot folder batch not submitted');
      return;
    }
    if (!submitted.created) {
      // Only this feed submits with this key, so this is a job still unwinding: try again after it.
      for (const f of batch) if (!this.#waiting.has(f.rel)) this.#waiting.set(f.rel, f);
    }
    const id = submitted.job.id;
    this.#job = id;
    void this.#opts.scheduler.wait(id).then((done) => {
      this.#job = undefined;
      if (submitted.created) this.#settled(done, batch, summary);
      this.#kick();
    });
  }

  #settled(job: JobSnapshot, batch: HotFile[], summary: IngestSummary | undefined): void {
    if (job.state === 'done') {
      for (const f of batch) this.#attempts.delete(f.rel);
      return;
    }
    if (job.state !== 'failed') return; // cancelled or interrupted: the next start of the daemon finds the files again
    // Per-file failures name their files; a failure of the whole job (a destination missing) concerns them all.
    const failedPaths = new Set((summary?.errors ?? []).map((e) => e.path).filter((p): p is string => p !== undefined));
    const again = failedPaths.size > 0 ? batch.filter((f) => failedPaths.has(f.rel)) : batch;
    const maxAttempts = this.#opts.maxAttempts ?? 5;
    let retry = 0;
    for (const f of again) {
      const n = (this.#attempts.get(f.rel) ?? 0) + 1;
      if (n >= maxAttempts) {
        this.#attempts.delete(f.rel);
        this.#opts.logger.error({ path: f.rel, attempts: n }, 'hot folder file failed too often; giving up until it changes or the daemon restarts');
        continue;
      }
      this.#attempts.set(f.rel, n);
      if (!this.#waiting.has(f.rel)) this.#waiting.set(f.rel, f);
      retry++;
    }
    if (retry === 0) return;
    this.#retryAt = Date.now() + this.#opts.retryMs;
    this.#opts.logger.info({ files: retry, retryInMs: this.#opts.retryMs }, 'hot folder files failed; trying again later');
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#retryAt = undefined;
      this.#kick();
    }, this.#opts.retryMs);
  }
}
