import type { UploadFailure } from '../upload/worker.js';
import type { DeviceStatus, JobSnapshot } from './status.js';

/**
 * The daemon's one event model. Everything that watches the station (the HTTP event stream, MQTT, the
 * status light, notifications, metrics) subscribes here instead of hooking into the scheduler, the
 * devices and the uploader one by one, so they all see the same events in the same order.
 *
 * Every event gets a sequence number: a client that lost its connection asks for what came after the
 * last number it saw (SSE's Last-Event-ID), and the hub keeps enough recent events to answer.
 */

export type StationState = 'idle' | 'ingesting' | 'verifying' | 'uploading' | 'safe-to-pull' | 'attention';

/** One verified or failed file of a job, as the ingest journaled it. */
export interface FileEventBody {
  job: number;
  /** The job's source (`/media/shuttle/EOS_DIGITAL`, `usb:04a9:3294`). */
  source: string;
  /** The file's path on the source. */
  path: string;
  fileId: number;
  /** Bytes, and the modification time on the source (epoch ms: when the shot was taken, for a camera's file). */
  size: number;
  mtimeMs: number;
  /** The verified copies' absolute paths (empty for a failed file). */
  copies: string[];
  /** A preview of the shot under the state directory, when one was made. */
  preview?: string | undefined;
}

/** Which upload failed, and how: `deferred` rows are tried again, `failed` ones wait for the operator. */
export type UploadErrorBody = Omit<UploadFailure, 'code' | 'message'>;

export type StationEventBody =
  | { type: 'job.queued' | 'job.started' | 'job.progress' | 'job.finished'; job: JobSnapshot }
  | ({ type: 'file.verified' | 'file.failed' } & FileEventBody)
  /** A verified file's preview was made: `preview` under the state directory, served at `url` by the API. */
  | { type: 'preview.ready'; job: number; fileId: number; path: string; preview: string; url: string }
  | { type: 'file.uploaded'; fileId: number; bucket: string; key: string; bytes: number; outcome: 'uploaded' | 'already-present' }
  | { type: 'device.connected' | 'device.gone'; device: DeviceStatus; reason?: string | undefined }
  /**
   * A job's error (`job`, and `path` on its source), or an upload's (`upload`). A job's errors are listed
   * up to its result's first 20, each with `jobErrors`, how many it had in all; when there were more, one
   * last event says how many were left out (`omitted`, by code in `omittedByCode`): its report names each.
   */
  | {
      type: 'error';
      code: string;
      message: string;
      job?: number | undefined;
      path?: string | undefined;
      upload?: UploadErrorBody | undefined;
      jobErrors?: number | undefined;
      omitted?: number | undefined;
      omittedByCode?: Record<string, number> | undefined;
    }
  | { type: 'station.state'; state: StationState; reason: string };

export type StationEventType = StationEventBody['type'];

export type StationEvent = StationEventBody & {
  /** Increases by one per event, from 1; restarts with the daemon. */
  id: number;
  /** ISO time the event was published. */
  at: string;
};

export type EventListener = (e: StationEvent) => void;

export interface EventHubOptions {
  /** Events kept for replay. */
  capacity?: number | undefined;
  /** A job's progress is published at most this often (the newest figures win). */
  progressMs?: number | undefined;
  onListenerError?: ((err: unknown, e: StationEvent) => void) | undefined;
}

const DEFAULT_CAPACITY = 2000;
export const PROGRESS_EVERY_MS = 250;

export class EventHub {
  readonly #capacity: number;
  readonly #progressMs: number;
  readonly #onListenerError: ((err: unknown, e: StationEvent) => void) | undefined;
  readonly #ring: StationEvent[] = [];
  readonly #listeners = new Set<EventListener>();
  /** Progress waiting for its job's next slot, by job id. */
  readonly #pendingProgress = new Map<number, () => JobSnapshot>();
  readonly #lastProgressAt = new Map<number, number>();
  #progressTimer: NodeJS.Timeout | undefined;
  /** Published but not yet delivered: an event published by a listener waits until the current one reached everyone. */
  readonly #undelivered: StationEvent[] = [];
  #delivering = false;
  #nextId = 1;
  #closed = false;

  constructor(opts: EventHubOptions = {}) {
    this.#capacity = Math.max(1, opts.capacity ?? DEFAULT_CAPACITY);
    this.#progressMs = opts.progressMs ?? PROGRESS_EVERY_MS;
    this.#onListenerError = opts.onListenerError;
  }

  /** The id of the newest event (0 before the first). */
  get lastId(): number {
    return this.#nextId - 1;
  }

  publish(body: StationEventBody): StationEvent {
    if (body.type === 'job.finished') this.#dropProgress(body.job.id);
    const event = { ...body, id: this.#nextId++, at: new Date().toISOString() } as StationEvent;
    this.#ring.push(event);
    if (this.#ring.length > this.#capacity) this.#ring.shift();
    if (this.#closed) return event;
    this.#undelivered.push(event);
    if (!this.#delivering) this.#deliver();
    return event;
  }

  #deliver(): void {
    this.#delivering = true;
    try {
      for (let e = this.#undelivered.shift(); e !== undefined; e = this.#undelivered.shift()) {
        for (const l of [...this.#listeners]) {
          try {
            l(e);
          } catch (err) {
            this.#onListenerError?.(err, e);
          }
        }
      }
    } finally {
      this.#delivering = false;
    }
  }

  /**
   * A job's progress, throttled per job: published now if its last one is old enough, else at its next
   * slot with the figures of that moment. The snapshot is taken only when published: progress is reported
   * far more often than anyone needs to see it. `urgent` publishes at once (a job entering a new phase, which
   * changes the station's state).
   */
  progress(jobId: number, snapshot: () => JobSnapshot, urgent = false): void {
    if (this.#closed) return;
    const last = this.#lastProgressAt.get(jobId) ?? -Infinity;
    const now = performance.now();
    if (urgent || (now - last >= this.#progressMs && !this.#pendingProgress.has(jobId))) {
      this.#pendingProgress.delete(jobId);
      this.#lastProgressAt.set(jobId, now);
      this.publish({ type: 'job.progress', job: snapshot() });
      return;
    }
    this.#pendingProgress.set(jobId, snapshot);
    this.#progressTimer ??= setTimeout(() => this.#flushProgress(), Math.max(0, last + this.#progressMs - now)).unref();
  }

  /**
   * The events after `lastId`, oldest first; undefined when some of them are no longer kept (the client
   * must then reload the whole state, as after a daemon restart, whose ids start again from 1).
   */
  since(lastId: number): StationEvent[] | undefined {
    if (lastId >= this.lastId) return lastId > this.lastId ? undefined : [];
    const oldest = this.#ring[0]?.id ?? this.#nextId;
    if (lastId + 1 < oldest) return undefined;
    return this.#ring.filter((e) => e.id > lastId);
  }

  /** The newest events, oldest first (for a page that just loaded). */
  recent(limit = this.#capacity, types?: ReadonlySet<StationEventType>): StationEvent[] {
    const out = types ? this.#ring.filter((e) => types.has(e.type)) : this.#ring;
    return out.slice(-limit);
  }

  subscribe(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Stops delivering (events are still numbered and kept) and drops pending progress. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#progressTimer);
    this.#progressTimer = undefined;
    this.#pendingProgress.clear();
    this.#undelivered.length = 0;
    this.#listeners.clear();
  }

  #flushProgress(): void {
    this.#progressTimer = undefined;
    const now = performance.now();
    let next = Infinity;
    for (const [id, snapshot] of [...this.#pendingProgress]) {
      const last = this.#lastProgressAt.get(id) ?? -Infinity;
      if (now - last >= this.#progressMs) {
        this.#pendingProgress.delete(id);
        this.#lastProgressAt.set(id, now);
        this.publish({ type: 'job.progress', job: snapshot() });
      } else {
        next = Math.min(next, last + this.#progressMs - now);
      }
    }
    if (next !== Infinity && !this.#closed) this.#progressTimer = setTimeout(() => this.#flushProgress(), next).unref();
  }

  #dropProgress(jobId: number): void {
    this.#pendingProgress.delete(jobId);
    this.#lastProgressAt.delete(jobId);
  }
}
