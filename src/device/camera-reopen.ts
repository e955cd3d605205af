/**
 * The camera of a tethering session, opened again when it drops off the bus or the network: back-off
 * between attempts, only the same body (make, model, serial) taken back, and a file cut off mid-read read
 * on from the byte it broke at. New-shot detection stays with the session (tethered-source.ts); this module
 * tells it when a camera session ended and which files the reopened one holds.
 */
import { Readable } from 'node:stream';
import { abortable, sleep, within } from '../async.js';
import { ShuttleError, abortReason, isShuttleError } from '../errors.js';
import type { Logger } from '../log.js';
import { PtpCameraSource, cameraKey } from './camera-source.js';
import type { OpenContext } from './detect.js';
import type { CameraItemHandle } from './camera-source.js';
import type { UsbCameraSource } from './usb-source.js';
import type { OpenOptions, Source, SourceItem } from './source.js';

/** What a session does when its camera drops off the bus or the network. */
export interface ReopenOptions {
  /** Opens the camera again; what answers is checked to be the same body (make, model, serial). */
  open: (signal: AbortSignal) => Promise<PtpCameraSource>;
  /** How long to keep trying before the session ends with DEVICE_GONE (default RECONNECT_TIMEOUT_MS). */
  timeoutMs?: number;
  /** The first pause between two attempts; each pause doubles, up to RECONNECT_MAX_DELAY_MS. */
  firstDelayMs?: number;
}

/** A camera that dropped and was opened again. */
export interface Reconnected {
  source: string;
  /** Attempts it took, the successful one included. */
  attempts: number;
  /** From the drop being noticed to the camera answering again. */
  downMs: number;
  /** Reconnects of this session so far. */
  reconnects: number;
  /** Files found on the camera when it came back that the session had not named yet (shots taken meanwhile). */
  found: number;
}

/** Default of ReopenOptions.timeoutMs: a battery swap or a cable reseated fits in it. */
export const RECONNECT_TIMEOUT_MS = 120_000;
const RECONNECT_FIRST_DELAY_MS = 250;
const RECONNECT_MAX_DELAY_MS = 5000;
/** A dead link's transport gets this long to close before the camera is opened again. */
const CLOSE_GRACE_MS = 2000;
/** Reads of one file resumed after drops before the file fails: a file that breaks the link each time is not read for ever. */
const MAX_RESUMES = 5;

/** Failures that mean the link to the camera is gone or wedged (not a refusal of one operation): worth reopening the camera. */
export function isLinkLoss(err: unknown): boolean {
  return isShuttleError(err, 'DEVICE_GONE') || isShuttleError(err, 'TRANSPORT') || isShuttleError(err, 'PTP_TIMEOUT');
}

function keyOf(camera: PtpCameraSource): string {
  const id = camera.camera.identity();
  return cameraKey(id.manufacturer, id.model, id.serialNumber);
}

export interface ReopeningCameraOptions {
  /** Without it a drop is final: failures pass through as they are. */
  reopen?: ReopenOptions | undefined;
  /** Whether a file found on the reopened camera is one the session has not named yet (a shot taken meanwhile). */
  isNew: (item: SourceItem) => boolean;
  /** The reopened camera is in place; `found` are its files that isNew took, in listing order. */
  onReopened: (found: SourceItem[]) => void;
  /** The camera dropped; it is being opened again. */
  onDropped?: ((cause: unknown) => void) | undefined;
  onReconnected?: ((info: Reconnected) => void) | undefined;
  /** An attempt to open the camera again failed (it is tried again until the time runs out). */
  onReopenFailed?: ((err: unknown, attempt: number) => void) | undefined;
  logger: Logger;
}

/**
 * The current camera session of a tethering session and its reopening. Object handles are only good for
 * one camera session, so files are found again by path (`current`); `generation` counts camera sessions so
 * that a failure seen in an old one does not reopen the camera twice.
 */
export class ReopeningCamera {
  readonly uri: string;
  readonly #opts: ReopeningCameraOptions;
  readonly #log: Logger;
  #camera: PtpCameraSource;
  /** Where each file named (or found at a reopen) is in the current camera session, by path. */
  #handles = new Map<string, CameraItemHandle>();
  /** Counts camera sessions: what was learnt in one (handles) is stale in the next. */
  #generation = 0;
  /** Aborted when this camera session is found dropped, so that the listing stops waiting for its events. */
  #lost = new AbortController();
  #recovering: Promise<void> | undefined;
  /** Set once the camera did not come back in time: the tethering session is over. */
  #gone: ShuttleError | undefined;
  #reconnects = 0;
  readonly #closed = new AbortController();

  constructor(camera: PtpCameraSource, opts: ReopeningCameraOptions) {
    this.#camera = camera;
    this.uri = camera.uri;
    this.#opts = opts;
    this.#log = opts.logger;
  }

  /** The camera session now (another one after a reconnect). */
  get camera(): PtpCameraSource {
    return this.#camera;
  }

  get generation(): number {
    return this.#generation;
  }

  /** Aborts once the current camera session is found dropped. */
  get lost(): AbortSignal {
    return this.#lost.signal;
  }

  /** Whether a drop is followed by a reopen. */
  get reopens(): boolean {
    return this.#opts.reopen !== undefined;
  }

  /** Times the camera was reopened in this session. */
  get reconnects(): number {
    return this.#reconnects;
  }

  /** Notes where a file named by the session is in the current camera session. */
  remember(item: SourceItem): void {
    this.#handles.set(item.path, item.handle as CameraItemHandle);
  }

  /** `item` as the current camera session knows it (its handle there). */
  current(item: SourceItem): SourceItem {
    const h = this.#handles.get(item.path);
    return h === undefined || h === item.handle ? item : { ...item, handle: h };
  }

  /** `work` against the camera; once more against the reopened camera when the link was lost meanwhile. */
  async run<T>(signal: AbortSignal | undefined, work: (camera: PtpCameraSource) => Promise<T>): Promise<T> {
    for (;;) {
      const gen = this.#generation;
      try {
        return await work(this.#camera);
      } catch (err) {
        if (!this.#opts.reopen || !isLinkLoss(err) || signal?.aborted) throw err;
        await this.recover(gen, err, signal);
      }
    }
  }

  /**
   * Waits for the camera of session `gen` to be back, reopening it if nobody is yet. Resolves at once when
   * it was already reopened since; rejects with DEVICE_GONE when it did not come back in time.
   */
  async recover(gen: number, cause: unknown, signal: AbortSignal | undefined): Promise<void> {
    if (this.#gone) throw this.#gone;
    if (gen !== this.#generation) return;
    if (this.#recovering === undefined) {
      this.#lost.abort(new ShuttleError('DEVICE_GONE', `${this.uri}: the camera dropped`, { context: { source: this.uri }, cause }));
      const recovering = this.#reconnect(cause).finally(() => {
        if (this.#recovering === recovering) this.#recovering = undefined;
      });
      recovering.catch(() => undefined);
      this.#recovering = recovering;
    }
    await abortable(this.#recovering, signal);
  }

  async #reconnect(cause: unknown): Promise<void> {
    const reopen = this.#opts.reopen!;
    const timeoutMs = reopen.timeoutMs ?? RECONNECT_TIMEOUT_MS;
    const started = Date.now();
    const old = this.#camera;
    const want = keyOf(old);
    this.#log.warn({ source: this.uri, err: cause, timeoutMs }, 'the camera dropped; opening it again');
    this.#opts.onDropped?.(cause);
    // The dead link is let go first: a USB camera's interface stays claimed while its handle is open.
    await within(
      old.camera.session.transport.close().catch(() => undefined),
      CLOSE_GRACE_MS,
    );
    void old.close().catch(() => undefined);
    let delay = reopen.firstDelayMs ?? RECONNECT_FIRST_DELAY_MS;
    for (let attempt = 1; ; attempt++) {
      const left = Math.max(1, started + timeoutMs - Date.now());
      const signal = AbortSignal.any([this.#closed.signal, AbortSignal.timeout(left)]);
      try {
        const camera = await reopen.open(signal);
        let found: { handles: Map<string, CameraItemHandle>; pending: SourceItem[] };
        try {
          if (keyOf(camera) !== want) {
            const id = camera.camera.identity();
            throw new ShuttleError('DEVICE_GONE', `${this.uri}: another camera answered (${id.manufacturer} ${id.model}, serial ${id.serialNumber})`, {
              context: { source: this.uri },
            });
          }
          found = await this.#relist(camera, signal);
        } catch (err) {
          await camera.close().catch(() => undefined);
          throw err;
        }
        this.#camera = camera;
        this.#generation++;
        this.#lost = new AbortController();
        this.#handles = found.handles;
        this.#opts.onReopened(found.pending);
        this.#reconnects++;
        const info: Reconnected = { source: this.uri, attempts: attempt, downMs: Date.now() - started, reconnects: this.#reconnects, found: found.pending.length };
        this.#log.info(info, 'camera reconnected');
        this.#opts.onReconnected?.(info);
        return;
      } catch (err) {
        if (this.#closed.signal.aborted) throw abortReason(this.#closed.signal);
        this.#log.debug({ err, attempt }, 'opening the camera again failed');
        this.#opts.onReopenFailed?.(err, attempt);
        if (Date.now() + delay >= started + timeoutMs) {
          const seconds = Math.round(timeoutMs / 1000);
          this.#gone = new ShuttleError(
            'DEVICE_GONE',
            `${this.uri}: the camera went away and did not come back within ${seconds} s (${attempt} attempts to open it again); tethering ended`,
            {
              context: { source: this.uri, attempts: attempt, waitedMs: Date.now() - started },
              cause: err,
            },
          );
          throw this.#gone;
        }
        await sleep(delay, this.#closed.signal);
        delay = Math.min(delay * 2, RECONNECT_MAX_DELAY_MS);
      }
    }
  }

  /** Where every file is in the reopened camera's session, and which of them the session has not named yet. */
  async #relist(camera: PtpCameraSource, signal: AbortSignal): Promise<{ handles: Map<string, CameraItemHandle>; pending: SourceItem[] }> {
    const handles = new Map<string, CameraItemHandle>();
    const pending: SourceItem[] = [];
    for await (const e of camera.list(signal)) {
      handles.set(e.path, e.handle as CameraItemHandle);
      if (this.#opts.isNew(e)) pending.push(e);
    }
    return { handles, pending };
  }

  /** The file's bytes; with reopen, a drop part-way waits for the camera to be back and reads on from there. */
  async open(item: SourceItem, options: OpenOptions = {}): Promise<Readable> {
    if (!this.#opts.reopen) return this.#camera.open(item, options);
    return Readable.from(this.#read(item, options), { objectMode: false, highWaterMark: 0 });
  }

  async *#read(item: SourceItem, options: OpenOptions): AsyncGenerator<Uint8Array> {
    let offset = options.offset ?? 0;
    for (let resumes = 0; ; resumes++) {
      const gen = this.#generation;
      const camera = this.#camera;
      let stream: Readable | undefined;
      try {
        if (resumes > 0) await this.#checkSame(camera, item, options.signal);
        stream = await camera.open(this.current(item), { ...options, offset });
        for await (const chunk of stream as AsyncIterable<Uint8Array>) {
          offset += chunk.length;
          yield chunk;
        }
        return;
      } catch (err) {
        if (!isLinkLoss(err) || options.signal?.aborted || resumes >= MAX_RESUMES) throw err;
        this.#log.warn({ path: item.path, offset, err }, 'the camera dropped while a file was read; reading on from there once it is back');
        await this.recover(gen, err, options.signal);
      } finally {
        stream?.destroy();
      }
    }
  }

  /** Before a read resumes in a new camera session: the path must still be the object that was being read. */
  async #checkSame(camera: PtpCameraSource, item: SourceItem, signal: AbortSignal | undefined): Promise<void> {
    if (!this.#handles.has(item.path)) {
      throw new ShuttleError('SOURCE_NOT_FOUND', `${item.path} was not on the camera when it came back`, { context: { path: item.path, source: this.uri } });
    }
    const now = await camera.stat(this.current(item), signal);
    if (now !== undefined && (now.size !== item.size || now.mtimeMs !== item.mtimeMs)) {
      throw new ShuttleError('SOURCE_CHANGED', `${item.path} is another file on the camera since it came back`, {
        context: { path: item.path, planned: item.size, now: now.size },
      });
    }
  }

  /** Stops any reopening and closes the camera session. */
  async close(): Promise<void> {
    this.#closed.abort(new ShuttleError('ABORTED', `${this.uri}: the tethering session was closed`));
    await this.#recovering?.catch(() => undefined);
    await this.#camera.close();
  }
}

/**
 * How to open `camera` again once it dropped: a USB camera is looked for on the bus again (it re-enumerates
 * under a new address; see reopenUsbCameraSource), any other through `openAgain` (a network camera at its
 * address).
 */
export function reopenerFor(camera: PtpCameraSource, openAgain: (signal: AbortSignal) => Promise<Source>, ctx: Pick<OpenContext, 'timeZone' | 'logger'>): ReopenOptions['open'] {
  if ('usb' in camera) {
    return async (signal) => {
      const { reopenUsbCameraSource } = await import('./usb-source.js');
      return reopenUsbCameraSource(camera as UsbCameraSource, { signal, logger: ctx.logger, ...(ctx.timeZone ? { timeZone: ctx.timeZone } : {}) });
    };
  }
  return async (signal) => {
    const source = await openAgain(signal);
    if (source instanceof PtpCameraSource) return source;
    await source.close().catch(() => undefined);
    throw new ShuttleError('DEVICE_GONE', `${camera.uri} is no longer a camera`, { context: { source: camera.uri } });
  };
}
