/**
 * A camera on a tether as a Source whose listing lasts as long as the session: it names each new shot as
 * the camera announces it, so the ingest copies and verifies shots while the photographer works.
 */
import type { Readable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { ShuttleError, isShuttleError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { PtpCameraSource } from './camera-source.js';
import { ReopeningCamera, isLinkLoss, reopenerFor, type ReopenOptions, type Reconnected } from './camera-reopen.js';
import { cameraScheme, openSource, type OpenContext } from './detect.js';
import { EventCode, OperationCode, ResponseCode } from './ptp/codes.js';
import { responseCodeOf } from './ptp/session.js';
import { CanonEosOperation, startVendorEvents, type EventStrategy, type VendorEventPoller } from './ptp/vendor-events.js';
import { NIKON_SDRAM_OBJECT_HANDLE } from './ptp/vendor-events-decode.js';
import { SONY_MEMORY_OBJECT_HANDLE, SonyOperation, sonyRelease } from './ptp/sony.js';
import type { CameraItemHandle } from './camera-source.js';
import type { UsbCameraSource } from './usb-source.js';
import type { ItemState, OpenOptions, Source, SourceEntry, SourceIdentity, SourceItem } from './source.js';

export interface TetherOptions {
  /** List what is on the camera already before the new shots. */
  existing: boolean;
  /** Ends the listing (the files already named still finish): the end of a tethering session. */
  stop: AbortSignal;
  /** Called once new shots are being watched for (before the existing files are listed). */
  onWatching?: () => void;
  /** Quiet time after which the camera is asked whether it is still there (default 3 s). */
  livenessMs?: number;
  /** Where `trigger` asks the camera to put the image: its card (default) or its memory, for the host to fetch at once. */
  captureTarget?: 'card' | 'host';
  /** Reopening a camera that drops; without it a drop ends the listing with DEVICE_GONE. */
  reopen?: ReopenOptions;
  /** The camera dropped; it is being opened again. */
  onDropped?: (cause: unknown) => void;
  onReconnected?: (info: Reconnected) => void;
  /** An attempt to open the camera again failed (it is tried again until the time runs out). */
  onReopenFailed?: (err: unknown, attempt: number) => void;
  logger?: Logger;
}

/**
 * A session that only listens would not notice a camera switched off or a network gone: events simply
 * stop. After this much quiet a cheap operation checks that the camera still answers.
 */
const LIVENESS_MS = 3000;

/**
 * How long the plan waits for a shot's next file before copying what it has: a camera announces a
 * RAW+JPEG pair's two files back to back, so they still travel as one shot (a pair is planned as soon as
 * both are in), while a single file waits no longer than this for company.
 */
export const TETHER_GROUPING_MS = 100;

/** Longest a capture may take from the shutter operation to the new object's announcement. */
const TRIGGER_TIMEOUT_MS = 30_000;

/** Vendor operations that fire the shutter (libgphoto2 ptp.h). */
const CanonEosRemoteRelease = 0x910f;
const NikonOperation = { InitiateCaptureRecInSdram: 0x90c0, DelImageSdram: 0x90c3, AfCaptureSdram: 0x90cb } as const;

/** The operation that fires the camera, with its parameters, for the camera's event strategy and the capture target. */
export function captureOperation(strategy: EventStrategy, supported: readonly number[], target: 'card' | 'host'): { code: number; params: number[] } | undefined {
  const has = (code: number): boolean => supported.includes(code);
  if (strategy.kind === 'canon-eos' && has(CanonEosRemoteRelease)) return { code: CanonEosRemoteRelease, params: [] };
  // Sony presses its shutter buttons in several operations (sonyRelease); a body that does not offer them cannot be fired.
  if (strategy.kind === 'sony') return has(SonyOperation.ControlDevice) ? { code: SonyOperation.ControlDevice, params: [] } : undefined;
  if (strategy.kind === 'nikon' && target === 'host') {
    if (has(NikonOperation.InitiateCaptureRecInSdram)) return { code: NikonOperation.InitiateCaptureRecInSdram, params: [0xffffffff] };
    if (has(NikonOperation.AfCaptureSdram)) return { code: NikonOperation.AfCaptureSdram, params: [] };
  }
  if (has(OperationCode.InitiateCapture)) return { code: OperationCode.InitiateCapture, params: [0, 0] };
  return undefined;
}

/** The same file across sessions: a camera may number its objects differently once reopened. */
function fileKey(item: SourceItem): string {
  return `${item.path}\0${item.size}\0${item.mtimeMs}`;
}

/**
 * New shots come from one place: the session's ObjectAdded events. Cameras that announce objects on their
 * event channel send them; for the others (Canon EOS, Nikon, bodies without ObjectAdded) the vendor event
 * poller turns what it polls into the same events. A file is named once, however often it is announced.
 *
 * With `reopen`, a camera that drops (off the bus, off the network, stopped answering) is opened again
 * (camera-reopen.ts): the listing goes on with the files the camera holds that the session had not named
 * (shots taken meanwhile), a file being read when it dropped is read on from where it broke off, and the
 * ingest never sees the drop.
 */
export class TetheredCameraSource implements Source {
  readonly uri: string;
  readonly #log: Logger;
  /** When the camera announced each new item (performance.now()), by path. */
  readonly #announcedAt = new Map<string, number>();
  /** Object handles of this camera session already named, so that an object announced twice is copied once. */
  #named = new Set<number>();
  /** Files named in this tethering session (fileKey), across reconnects. */
  readonly #seen = new Set<string>();
  /** Without `existing`: the files on the camera when the session began, once listed; they are not new shots after a reopen either. */
  #baseline: Set<string> | undefined;
  /** Files found on the camera at a reopen that the session has not named, in listing order. */
  #pending: SourceItem[] = [];
  /** Captures waiting for the camera to announce their image, oldest first. */
  readonly #captures: Array<(path: string) => void> = [];
  /** Shots held in camera memory (capture target host) until `release`, by path. */
  readonly #inMemory = new Map<string, CameraItemHandle>();
  /** The Sony shot named last (path, size, time), which its memory handle keeps naming until it is read. */
  #sonyLast: string | undefined;
  /** How often each camera-memory name was used this session. */
  readonly #memoryNames = new Map<string, number>();
  #strategy: EventStrategy | undefined;
  /** The camera session now, opened again when it drops (with `reopen`). */
  readonly #link: ReopeningCamera;
  readonly groupingDelayMs = TETHER_GROUPING_MS;

  constructor(
    camera: PtpCameraSource,
    private readonly opts: TetherOptions,
  ) {
    this.uri = camera.uri;
    this.#log = opts.logger ?? silentLogger;
    this.#link = new ReopeningCamera(camera, {
      reopen: opts.reopen,
      logger: this.#log,
      isNew: (item) => this.#unnamed(item),
      onReopened: (found) => {
        this.#named = new Set();
        this.#pending = found;
      },
      onDropped: opts.onDropped,
      onReconnected: opts.onReconnected,
      onReopenFailed: opts.onReopenFailed,
    });
  }

  /** The camera session now (another one after a reconnect). */
  get camera(): PtpCameraSource {
    return this.#link.camera;
  }

  /** Times the camera was reopened in this session. */
  get reconnects(): number {
    return this.#link.reconnects;
  }

  /** performance.now() of the camera's new-object event for this path; undefined for a file listed as existing. */
  announcedAt(path: string): number | undefined {
    return this.#announcedAt.get(path);
  }

  identity(signal?: AbortSignal): Promise<SourceIdentity> {
    return this.#link.run(signal, (camera) => camera.identity(signal));
  }

  async *list(signal?: AbortSignal): AsyncIterable<SourceEntry> {
    const stop = signal ? AbortSignal.any([signal, this.opts.stop]) : this.opts.stop;
    let watching = false;
    for (;;) {
      const gen = this.#link.generation;
      const camera = this.#link.camera;
      const lost = this.#link.lost;
      const session = camera.camera.session;
      // Subscribed before the existing files are listed: a shot taken meanwhile waits in the subscription.
      const events = session.subscribe();
      let poller: VendorEventPoller | undefined;
      let dropped: unknown;
      try {
        const usb = 'usb' in camera ? (camera as UsbCameraSource).usb : undefined;
        poller = await startVendorEvents(session, camera.camera.deviceInfo, {
          logger: this.#log,
          signal,
          ...(usb ? { usb: { vendorId: usb.vendorId, productId: usb.productId } } : {}),
        });
        this.#strategy = poller.strategy;
        if (!watching) {
          // Once per tethering session, not per camera session: a listing of existing files cut off by a drop
          // goes on through the files found at the reopen.
          watching = true;
          this.#log.info({ source: this.uri, eventStrategy: poller.strategy.kind }, 'watching for new shots');
          this.opts.onWatching?.();
          if (this.opts.existing) {
            // Stopped between two files, never inside a transaction (the session goes on serving the copies):
            // the files named so far still finish.
            for await (const e of camera.list(signal)) {
              if (stop.aborted) return;
              if (!this.#remember(e)) continue;
              this.#named.add((e.handle as CameraItemHandle).objectHandle);
              yield e;
            }
          } else if (this.opts.reopen) {
            void this.#takeBaseline(camera, signal);
          }
        }
        // Files the camera held when it was reopened that the session had not named: shots taken while it was away.
        while (this.#pending.length > 0 && gen === this.#link.generation) {
          if (stop.aborted) return;
          const e = this.#pending.shift()!;
          if (!this.#remember(e)) continue;
          this.#named.add((e.handle as CameraItemHandle).objectHandle);
          this.#log.debug({ path: e.path }, 'shot found on the camera after it came back');
          yield e;
        }
        const wait = AbortSignal.any([stop, lost]);
        for (;;) {
          let e: Awaited<ReturnType<typeof events.next>>;
          try {
            e = await events.next(wait, this.opts.livenessMs ?? LIVENESS_MS);
          } catch (err) {
            if (stop.aborted) return;
            if (lost.aborted) throw lost.reason;
            if (!isShuttleError(err, 'PTP_TIMEOUT')) throw err;
            await this.#checkAlive(camera, signal);
            continue;
          }
          const handle = e.params[0];
          // RequestObjectTransfer: a capture the camera holds in memory for the host (Canon EOS, capture target host).
          if ((e.code !== EventCode.ObjectAdded && e.code !== EventCode.RequestObjectTransfer) || handle === undefined || this.#named.has(handle)) continue;
          // Sony's memory handle names each waiting shot in turn, the next as soon as one was read: a shot
          // there is new when it is not the one named last (not the handle, which is announced on every poll).
          const sony = handle === SONY_MEMORY_OBJECT_HANDLE;
          if (!sony) this.#named.add(handle);
          const at = performance.now();
          const listed = await camera.itemOf(handle, signal).catch((err: unknown) => {
            // Announced by a poll that ran just before the last shot was read: nothing there now.
            if (!sony || responseCodeOf(err) !== ResponseCode.InvalidObjectHandle) throw err;
            return undefined;
          });
          if (!listed) continue;
          if (sony) {
            const key = `${listed.path}\u0000${listed.size}\u0000${listed.mtimeMs}`;
            if (key === this.#sonyLast) continue;
            this.#sonyLast = key;
          }
          // Numbered before it is remembered: a Nikon SDRAM shot that reuses a name is a new shot.
          const item = (listed.handle as CameraItemHandle).storageId === 0 ? { ...listed, path: this.#memoryPath(listed) } : listed;
          if (!this.#remember(item)) continue;
          this.#announcedAt.set(item.path, at);
          const h = item.handle as CameraItemHandle;
          if (h.storageId === 0) this.#inMemory.set(item.path, h);
          this.#log.debug({ path: item.path, handle }, 'new shot');
          this.#captures.shift()?.(item.path);
          yield item;
        }
      } catch (err) {
        if (stop.aborted) return;
        if (!this.opts.reopen || !isLinkLoss(err)) throw err;
        dropped = err;
      } finally {
        events.close();
        await poller?.stop().catch((err: unknown) => this.#log.debug({ err }, 'stopping the event poller failed'));
      }
      try {
        await this.#link.recover(gen, dropped, stop);
      } catch (err) {
        if (stop.aborted) return;
        throw err;
      }
    }
  }

  /** Notes a file as named in this session; false when it already was (announced twice, or found again at a reopen). */
  #remember(item: SourceItem): boolean {
    const key = fileKey(item);
    if (this.#seen.has(key)) return false;
    this.#seen.add(key);
    this.#link.remember(item);
    return true;
  }

  /**
   * Whether a file the reopened camera holds is one the session has not named. Without --all and before the
   * first listing finished, nothing tells old files from new: they are copied (never left behind).
   */
  #unnamed(item: SourceItem): boolean {
    const key = fileKey(item);
    if (this.#seen.has(key)) return false;
    return this.opts.existing || !this.#baseline?.has(key);
  }

  /** Lists what is on the camera as the session begins, so that a reopen can tell the shots taken meanwhile from those. */
  async #takeBaseline(camera: PtpCameraSource, signal: AbortSignal | undefined): Promise<void> {
    const keys = new Set<string>();
    try {
      for await (const e of camera.list(signal)) keys.add(fileKey(e));
      this.#baseline = keys;
      this.#log.debug({ files: keys.size }, 'listed the files on the camera at the start');
    } catch (err) {
      this.#log.debug({ err }, 'the listing of what the camera held at the start broke off; after a reopen, every file not named yet is copied');
    }
  }

  /**
   * Fires the camera (InitiateCapture, or the maker's own operation) and resolves with the source path of
   * the new shot's first file once the camera has announced it; the listing hands that file to the ingest
   * as any other new shot. Only while the listing runs.
   */
  async trigger(signal?: AbortSignal): Promise<string> {
    const strategy = this.#strategy;
    if (!strategy) throw new ShuttleError('USAGE', `${this.uri}: the tethering session is not watching for shots yet`, { context: { source: this.uri } });
    const camera = this.#link.camera.camera;
    const info = camera.deviceInfo;
    const op = captureOperation(strategy, info.operationsSupported, this.opts.captureTarget ?? 'card');
    if (!op) {
      // A Sony body offers its shutter only in PC Remote mode; in mass-storage or MTP mode it is tethered from its card.
      const hint = /sony/i.test(info.manufacturer) ? `; set the camera's USB connection to "PC Remote"` : '';
      throw new ShuttleError('PTP_RESPONSE', `${info.model} cannot be fired remotely (no InitiateCapture nor a vendor capture operation)${hint}`, {
        context: { operation: 'InitiateCapture', responseCode: 0x2005, source: this.uri },
      });
    }
    const stop = signal ? AbortSignal.any([signal, AbortSignal.timeout(TRIGGER_TIMEOUT_MS)]) : AbortSignal.timeout(TRIGGER_TIMEOUT_MS);
    let resolve!: (path: string) => void;
    const announced = new Promise<string>((r) => (resolve = r));
    // Waiting before the operation is sent: a camera may announce the image before it answers.
    this.#captures.push(resolve);
    try {
      if (strategy.kind === 'sony') await sonyRelease(camera.session, stop);
      else await camera.session.run({ code: op.code, params: op.params, signal: stop });
      return await new Promise<string>((res, rej) => {
        const onAbort = (): void =>
          rej(
            stop.reason instanceof DOMException && stop.reason.name === 'TimeoutError'
              ? new ShuttleError('PTP_TIMEOUT', `${this.uri}: no new shot within ${TRIGGER_TIMEOUT_MS} ms of the capture`, {
                  context: { timeoutMs: TRIGGER_TIMEOUT_MS },
                  retryable: true,
                })
              : stop.reason,
          );
        if (stop.aborted) return onAbort();
        stop.addEventListener('abort', onAbort, { once: true });
        void announced.then((p) => {
          stop.removeEventListener('abort', onAbort);
          res(p);
        });
      });
    } finally {
      const i = this.#captures.indexOf(resolve);
      if (i >= 0) this.#captures.splice(i, 1);
    }
  }

  /**
   * Tells the camera that a shot held in its memory (capture target host) is safe here, so it frees it:
   * Canon EOS TransferComplete, Nikon DelImageSDRAM (its one virtual handle is then free for the next
   * capture). Nothing for a file on the card.
   */
  async release(path: string, signal?: AbortSignal): Promise<void> {
    const h = this.#inMemory.get(path);
    if (!h) return;
    this.#inMemory.delete(path);
    const { objectHandle } = h;
    const kind = this.#strategy?.kind;
    const code = kind === 'canon-eos' ? CanonEosOperation.TransferComplete : kind === 'nikon' ? NikonOperation.DelImageSdram : undefined;
    // A Sony body dropped the shot when it was read to its end: nothing to send.
    if (code === undefined) return;
    await this.#link.camera.camera.session.run({ code, params: [objectHandle], signal });
    // The handle may name the next capture now (Nikon's virtual SDRAM handle always does), and so may the file name.
    if (objectHandle === NIKON_SDRAM_OBJECT_HANDLE || kind === 'canon-eos') this.#named.delete(objectHandle);
  }

  /**
   * The path of a shot in camera memory. Nikon bodies give every SDRAM capture the same name, so two
   * captures of one size within a second would be one journal row (path, size, time) and the second would
   * pass for copied: from the second use of a name in this session on, the shot goes into a numbered
   * folder (`camera-memory/2/DSC_0001.JPG`). A pair's RAW and JPEG count the same, so they stay together.
   */
  #memoryPath(item: SourceItem): string {
    const n = (this.#memoryNames.get(item.path) ?? 0) + 1;
    this.#memoryNames.set(item.path, n);
    if (n === 1) return item.path;
    const slash = item.path.lastIndexOf('/');
    return `${item.path.slice(0, slash + 1)}${n}/${item.path.slice(slash + 1)}`;
  }

  /** DEVICE_GONE unless the camera answers GetStorageIDs (any response, even busy, will do). */
  async #checkAlive(camera: PtpCameraSource, signal: AbortSignal | undefined): Promise<void> {
    try {
      await camera.camera.storageIds(signal);
    } catch (err) {
      if (responseCodeOf(err) !== undefined || signal?.aborted) return;
      const ended = this.#link.reopens ? '' : '; tethering ended';
      throw new ShuttleError('DEVICE_GONE', `${this.uri}: the camera stopped answering${ended}`, { context: { source: this.uri }, cause: err });
    }
  }

  open(item: SourceItem, options: OpenOptions = {}): Promise<Readable> {
    return this.#link.open(item, options);
  }

  stat(item: SourceItem, signal?: AbortSignal): Promise<ItemState | undefined> {
    // A Sony shot left the body's memory once read, and its handle now names the next one: what was
    // listed stands (an object in memory does not change).
    const h = this.#inMemory.get(item.path);
    if (h?.objectHandle === SONY_MEMORY_OBJECT_HANDLE) return Promise.resolve({ size: item.size, mtimeMs: item.mtimeMs });
    return this.#link.run(signal, (camera) => camera.stat(this.#link.current(item), signal));
  }

  close(): Promise<void> {
    return this.#link.close();
  }
}

/**
 * Opens the camera `name` (usb:…, ptpip:HOST[:PORT]) for tethering; USAGE for a folder or `ptpip:` alone.
 * With `reopen`, a camera that drops is opened again by itself (see TetheredCameraSource).
 */
export async function openTetheredCamera(
  name: string,
  ctx: OpenContext,
  opts: Omit<TetherOptions, 'reopen'> & { reopen?: Omit<ReopenOptions, 'open'> },
): Promise<TetheredCameraSource> {
  if (!cameraScheme(name) || name.toLowerCase() === 'ptpip:') {
    throw new ShuttleError('USAGE', `tether ${name}: name one camera (usb:, usb:VID:PID, usb:BUS-PORT or ptpip:HOST[:PORT])`, { context: { source: name } });
  }
  const source = await openSource(name, ctx);
  if (!(source instanceof PtpCameraSource)) {
    await source.close().catch(() => undefined);
    throw new ShuttleError('USAGE', `tether ${name}: not a camera`, { context: { source: name } });
  }
  const { reopen, ...rest } = opts;
  if (!reopen) return new TetheredCameraSource(source, rest);
  const open = reopenerFor(source, (signal) => openSource(name, { ...ctx, signal: AbortSignal.any([ctx.signal, signal]) }), ctx);
  return new TetheredCameraSource(source, { ...rest, reopen: { ...reopen, open } });
}
