import type { StationView } from './station-state.js';

/**
 * Live figures the daemon reports over the control socket (`shuttle status`): jobs with their progress
 * and rates, hot folders, attached devices, and what the process itself costs.
 */

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled' | 'interrupted';
export type JobKind = 'card' | 'folder' | 'camera' | 'hotfolder';

export const FINAL_STATES: ReadonlySet<JobState> = new Set(['done', 'failed', 'cancelled', 'interrupted']);

export interface JobProgress {
  filesTotal: number;
  filesDone: number;
  bytesTotal: number;
  bytesDone: number;
  current?: string | undefined;
  /**
   * `verifying` while a wipe reads the source a second time (the station shows it: not yet safe to pull);
   * `waiting-for-cloud` while an after-cloud wipe only waits for the uploads (every local copy is verified:
   * the card may be ejected, which gives up its wipe).
   */
  phase?: 'verifying' | 'waiting-for-cloud' | undefined;
}

export interface JobResultFigures {
  status: 'complete' | 'failed' | 'interrupted';
  files: number;
  copied: number;
  /** Verified by an earlier run, not copied again. */
  alreadyVerified: number;
  failed: number;
  bytes: number;
  /** The first 20 errors. */
  errors: Array<{ code: string; message: string; path?: string | undefined }>;
  /** Every error of the job, counted by code (the metrics count them all, not only the first 20). */
  errorCounts?: Record<string, number> | undefined;
  /** Source entries left out and never opened, with why (the first 20, like errors). */
  skipped: Array<{ path: string; reason: string }>;
  /** Files deleted from the source by its wipe policy (absent without one). */
  wiped?: number | undefined;
}

export interface JobSnapshot {
  id: number;
  /** What the job works on; two jobs with one key never run at once. */
  key: string;
  kind: JobKind;
  label: string;
  /** Who asked: `request`, `hotfolder`, `device:<watcher>`. */
  origin: string;
  state: JobState;
  createdAt: string;
  startedAt?: string | undefined;
  finishedAt?: string | undefined;
  /** Why a queued job has not started yet. */
  waitingFor?: string | undefined;
  progress?: JobProgress | undefined;
  /** Bytes per second over the last few seconds; absent until there are two samples. */
  rateBytesPerSec?: number | undefined;
  etaSeconds?: number | undefined;
  result?: JobResultFigures | undefined;
  error?: { code: string; message: string } | undefined;
  history: Array<{ state: JobState; at: string; reason?: string | undefined }>;
}

export interface HotFolderStatus {
  path: string;
  watching: boolean;
  /** Files that are complete and wait for the next job. */
  waiting: number;
  /** Files seen but still being written. */
  settling: number;
  /** Files handed to jobs since the daemon started. */
  delivered: number;
  retryAt?: string | undefined;
  error?: string | undefined;
}

export interface DeviceStatus {
  id: string;
  kind: 'camera' | 'card';
  label: string;
  uri: string;
  watcher: string;
  attachedAt: string;
  job?: number | undefined;
}

/** The daemon's background uploads (absent when no upload target is configured). */
export interface DaemonUploadStatus {
  /** The s3:// URL new files are queued for. */
  target: string;
  /**
   * `uploading`: objects in flight; `backing-off`: files queued but the server refused or did not answer,
   * waiting for the retry; `waiting-for-lock`: another process (`shuttle upload`) uploads; `failed`: the
   * uploader itself could not run (see uploaderError); `paused`: paused by the operator (API); `idle`:
   * nothing to do.
   */
  state: 'idle' | 'uploading' | 'backing-off' | 'waiting-for-lock' | 'failed' | 'paused' | 'stopped';
  /** Files queued or uploading. */
  depth: number;
  queued: number;
  uploading: number;
  uploaded: number;
  failed: number;
  bytesPending: number;
  /** Bytes verified in the cloud per second, over the last `rateWindowSeconds`. */
  bytesPerSecond: number;
  rateWindowSeconds: number;
  /** When backing off: when the next queued file is due. */
  retryAt?: string | undefined;
  /** When waiting for the lock: who holds it. */
  lockHolder?: string | undefined;
  /** The latest error a queued or failed file had. */
  lastError: { key: string; code: string | null; message: string; at: string | null; state: string } | null;
  uploaderError?: { message: string; at: string } | undefined;
  sinceStart: { uploaded: number; alreadyPresent: number; failed: number; deferred: number; bytesSent: number };
}

export interface DaemonStatus {
  version: string;
  pid: number;
  startedAt: string;
  uptimeSeconds: number;
  stateDir: string;
  controlSocket: string;
  destinations: string[];
  jobs: { active: JobSnapshot[]; recent: JobSnapshot[] };
  hotFolders: HotFolderStatus[];
  devices: DeviceStatus[];
  watchers: string[];
  totals: { jobs: number; filesCopied: number; bytesCopied: number; failedJobs: number };
  uploads?: DaemonUploadStatus | undefined;
  /** The station's one state (daemon.station): what the status light, the dashboard and the API show. */
  station?: StationView | undefined;
  /** The HTTP API's address, when `[api] listen` is set (with port 0: the port it got). */
  api?: { url: string } | undefined;
  process: { rssBytes: number; heapUsedBytes: number; cpuSeconds: number };
}

/**
 * Throughput over a sliding window. Samples are (time, cumulative bytes); the rate is the slope from
 * the oldest sample in the window to now, so a stall shows as a falling rate instead of hiding in the
 * average since start. Two samples are always kept, so that a slow source still has a rate.
 */
export class RateMeter {
  #samples: Array<{ t: number; bytes: number }> = [];

  constructor(
    private readonly windowMs = 10_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  sample(bytes: number): void {
    const t = this.now();
    this.#samples.push({ t, bytes });
    while (this.#samples.length > 2 && this.#samples[0]!.t < t - this.windowMs) this.#samples.shift();
  }

  /** Bytes per second, or undefined until two samples at least 100 ms apart exist. */
  rate(): number | undefined {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (!first || !last || last.t - first.t < 100) return undefined;
    // A sample taken now with no new bytes makes a stall visible at once.
    const end = Math.max(last.t, this.now());
    return Math.max(0, ((last.bytes - first.bytes) * 1000) / (end - first.t));
  }
}

/** Of the work known so far: a source still being listed (a tethered camera, a hot folder) may add more. */
export function etaSeconds(progress: JobProgress | undefined, rate: number | undefined): number | undefined {
  if (!progress || rate === undefined || rate <= 0) return undefined;
  return Math.ceil(Math.max(0, progress.bytesTotal - progress.bytesDone) / rate);
}
