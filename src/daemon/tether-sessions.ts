import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { KeyedOutcomes } from '../async.js';
import { matchesCamera, parseCameraSelector, type CameraSelector } from '../camera-names.js';
import { PtpCameraSource } from '../device/camera-source.js';
import { reopenerFor, type Reconnected } from '../device/camera-reopen.js';
import { TetheredCameraSource } from '../device/tethered-source.js';
import { ShuttleError } from '../errors.js';
import { runIngest, type FileOutcome } from '../ingest/pipeline.js';
import { TetherPreviews } from '../ingest/tether-previews.js';
import type { Logger } from '../log.js';
import type { AttachedDevice } from './devices.js';
import { resultFigures, type IngestEnvironment } from './ingest-job.js';
import type { JobContext, JobOutcome } from './jobs.js';

/**
 * The daemon's tether mode (`[tether] cameras`): a camera a selector names stays in session while it is
 * attached, as with `shuttle tether`. Its job lists what is on the camera and then every new shot as the
 * camera announces it; each goes through the verified pipeline, its events and preview follow as for any
 * job, and each is queued for upload as it lands. `capture` fires a tethered camera and answers with the
 * new shot once it is verified (the control socket's `capture`, POST /api/v1/capture, pedals).
 */

/** A captured shot, verified at every destination: the same line `shuttle tether --json` prints. */
export interface CapturedShot {
  event: 'verified';
  /** The shot's path on the camera. */
  name: string;
  /** The verified copies. */
  files: string[];
  preview: string | null;
  /** From the camera's new-object event to verified, and to the preview. */
  ms: { verified: number; preview: number | null } | null;
  job: number;
  fileId: number;
  /** The tethered camera's device id. */
  camera: string;
}

interface Session {
  job: number;
  device: AttachedDevice;
  source: TetheredCameraSource;
  shots: KeyedOutcomes<CapturedShot>;
  signal: AbortSignal;
  /** Previews made of the bytes as they stream from the camera; undefined when the daemon makes none. */
  previews: TetherPreviews | undefined;
}

export interface TetherSessionsOptions {
  env: IngestEnvironment;
  /** `[tether] cameras`. */
  cameras: readonly string[];
  captureTarget: 'card' | 'host';
  /** Longer side of the previews made as shots stream in (`[tether] preview_long_edge`); undefined: no previews. */
  previewLongEdge?: number | undefined;
  /** How long a camera that dropped is tried again before its session ends (`[tether] reconnect_timeout`). */
  reconnectTimeoutMs?: number;
  /** A tethered camera dropped and was opened again (the metrics count it). */
  onReconnect?: (camera: string, info: Reconnected) => void;
  logger: Logger;
}

export class TetherSessions {
  readonly #o: TetherSessionsOptions;
  readonly #selectors: CameraSelector[];
  /** By job id, in the order the sessions started. */
  readonly #sessions = new Map<number, Session>();

  constructor(o: TetherSessionsOptions) {
    this.#o = o;
    this.#selectors = o.cameras.map(parseCameraSelector);
  }

  /** The job body that keeps `device` in session, when a selector names it; undefined for a one-off ingest. */
  runnerFor(device: AttachedDevice): ((ctx: JobContext) => Promise<JobOutcome>) | undefined {
    const facts = device.camera;
    if (device.kind !== 'camera' || facts === undefined || !this.#selectors.some((s) => matchesCamera(s, facts))) return undefined;
    return (ctx) => this.#run(device, ctx);
  }

  /** The cameras in session now. */
  get active(): Array<{ job: number; camera: string; label: string }> {
    return [...this.#sessions.values()].map((s) => ({ job: s.job, camera: s.device.id, label: s.device.label }));
  }

  /**
   * Fires the tethered camera (`camera`: its device id or uri; else the one tethered first) and resolves
   * with the new shot once verified. SOURCE_NOT_FOUND (HTTP 409) when no camera is in session.
   */
  async capture(signal: AbortSignal, camera?: string): Promise<CapturedShot> {
    const session = [...this.#sessions.values()].find((s) => camera === undefined || s.device.id === camera || s.device.uri === camera);
    if (!session) {
      const why = camera === undefined ? 'no camera is tethered to the daemon ([tether] cameras names the cameras it keeps in session)' : `no tethered camera ${camera}`;
      throw new ShuttleError('SOURCE_NOT_FOUND', why, { context: { http: 409, ...(camera === undefined ? {} : { camera }) } });
    }
    const both = AbortSignal.any([signal, session.signal]);
    const path = await session.source.trigger(both);
    return session.shots.wait(path, both);
  }

  async #run(device: AttachedDevice, ctx: JobContext): Promise<JobOutcome> {
    const { env } = this.#o;
    const log = ctx.logger;
    const opened = await device.open({ stateDir: env.stateDir, timeZone: env.timeZone, logger: log, signal: ctx.signal });
    if (!(opened instanceof PtpCameraSource)) {
      await opened.close().catch(() => undefined);
      throw new ShuttleError('USAGE', `${device.label} is not a PTP camera: it cannot be tethered`, { context: { device: device.id } });
    }
    // What is on the camera is ingested too (the journal skips what is known): a tethered camera is never
    // a reason to leave a shot behind.
    // A camera that drops is opened again within the session (the journal keeps what was verified either
    // way): a network camera at its address, a USB camera found again on the bus.
    const open = reopenerFor(opened, (signal) => device.open({ stateDir: env.stateDir, timeZone: env.timeZone, logger: log, signal: AbortSignal.any([ctx.signal, signal]) }), {
      timeZone: env.timeZone,
      logger: log,
    });
    const source = new TetheredCameraSource(opened, {
      existing: true,
      stop: ctx.signal,
      logger: log,
      captureTarget: this.#o.captureTarget,
      reopen: { open, ...(this.#o.reconnectTimeoutMs === undefined ? {} : { timeoutMs: this.#o.reconnectTimeoutMs }) },
      onReconnected: (info) => this.#o.onReconnect?.(device.id, info),
    });
    const longEdge = this.#o.previewLongEdge;
    const previews = longEdge === undefined ? undefined : new TetherPreviews({ stateDir: env.stateDir, longEdge, logger: log });
    const session: Session = { job: ctx.id, device, source, shots: new KeyedOutcomes(), signal: ctx.signal, previews };
    this.#sessions.set(ctx.id, session);
    const followUps = new Set<Promise<void>>();
    const onFile = (f: FileOutcome): void => {
      const work = this.#shotDone(session, f, log);
      followUps.add(work);
      void work.finally(() => followUps.delete(work));
    };
    log.info({ camera: device.id, captureTarget: this.#o.captureTarget }, 'camera tethered: every new shot is copied as it is taken');
    try {
      const summary = await runIngest({
        sources: [source],
        destinations: env.destinations,
        journal: env.journal,
        settings: env.settings,
        logger: log,
        signal: ctx.signal,
        onProgress: ctx.progress,
        onFile,
        ...(previews ? { onRead: previews.onRead } : {}),
      });
      await Promise.allSettled(followUps);
      // A camera switched off or unplugged ends its session: the shots it gave are verified, nothing failed.
      const gone = summary.errors.findIndex((e) => e.code === 'DEVICE_GONE' && e.source !== undefined);
      if (gone >= 0) {
        log.info({ camera: device.id, reason: summary.errors[gone]!.message }, 'the camera went away: tethering session ended');
        summary.errors.splice(gone, 1);
        if (summary.status === 'failed' && summary.failed === 0 && summary.errors.length === 0) summary.status = 'complete';
      }
      return { status: summary.status, result: resultFigures(summary) };
    } finally {
      this.#sessions.delete(ctx.id);
      await Promise.allSettled(followUps);
      await source.close().catch((err: unknown) => log.warn({ err, camera: device.id }, 'closing the camera failed'));
    }
  }

  /** Events, preview, upload queue and the camera's memory for one shot; then whoever fired it hears. */
  async #shotDone(session: Session, f: FileOutcome, log: Logger): Promise<void> {
    const { env } = this.#o;
    const verifiedAt = performance.now();
    const streamed = session.previews?.forFile(f);
    const preview = env.onFile?.(session.job, session.source.uri, f, streamed);
    if (f.state === 'failed') {
      session.shots.settle(f.path, {
        error: new ShuttleError('DEST_WRITE_FAILED', `${f.path} was not verified at every destination (see the log)`, { context: { path: f.path } }),
      });
      return;
    }
    // A shot the camera keeps in memory for us is safe here now: the camera may free it.
    session.source.release(f.path).catch((err: unknown) => log.warn({ err, path: f.path }, 'the camera did not free a shot it held in memory'));
    // Queued as it lands: a session lasts hours, its shots must not wait for its end to reach the cloud.
    await env.queueUpload?.([f.fileId], log).catch((err: unknown) => log.error({ err, path: f.path }, 'shot not queued for upload'));
    const made = (await preview) ?? null;
    const madeAt = made === null ? undefined : ((await streamed)?.at ?? performance.now());
    const announced = session.source.announcedAt(f.path);
    const ms = announced === undefined ? null : { verified: Math.round(verifiedAt - announced), preview: madeAt === undefined ? null : Math.round(madeAt - announced) };
    session.shots.settle(f.path, {
      value: { event: 'verified', name: f.path, files: f.copies.map((c) => join(c.root, c.rel)), preview: made, ms, job: session.job, fileId: f.fileId, camera: session.device.id },
    });
  }
}
