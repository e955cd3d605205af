/**
 * A camera on a tether as a Source whose listing lasts as long as the session: it names each new shot as
 * the camera announces it, so the ingest copies and verifies shots while the photographer works.
 */
import type { Readable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { ShuttleError, isShuttleError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { PtpCameraSource } from './camera-source.js';
import { cameraScheme, openSource, type OpenContext } from './detect.js';
import { EventCode } from './ptp/codes.js';
import { responseCodeOf } from './ptp/session.js';
import { startVendorEvents } from './ptp/vendor-events.js';
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
  logger?: Logger;
}

/**
 * A session that only listens would not notice a camera switched off or a network gone: events simply
 * stop. After this much quiet a cheap operation checks that the camera still answers.
 */
const LIVENESS_MS = 3000;

/**
 * New shots come from one place: the session's ObjectAdded events. Cameras that announce objects on their
 * event channel send them; for the others (Canon EOS, Nikon, bodies without ObjectAdded) the vendor event
 * poller turns what it polls into the same events. An object is named once, however often it is announced.
 */
export class TetheredCameraSource implements Source {
  readonly uri: string;
  readonly #log: Logger;
  /** When the camera announced each new item (performance.now()), by path. */
  readonly #announcedAt = new Map<string, number>();

  constructor(
    readonly camera: PtpCameraSource,
    private readonly opts: TetherOptions,
  ) {
    this.uri = camera.uri;
    this.#log = opts.logger ?? silentLogger;
  }

  /** performance.now() of the camera's new-object event for this path; undefined for a file listed as existing. */
  announcedAt(path: string): number | undefined {
    return this.#announcedAt.get(path);
  }

  identity(signal?: AbortSignal): Promise<SourceIdentity> {
    return this.camera.identity(signal);
  }

  async *list(signal?: AbortSignal): AsyncIterable<SourceEntry> {
    const session = this.camera.camera.session;
    const stop = signal ? AbortSignal.any([signal, this.opts.stop]) : this.opts.stop;
    // Subscribed before the existing files are listed: a shot taken meanwhile waits in the subscription.
    const events = session.subscribe();
    const usb = 'usb' in this.camera ? (this.camera as UsbCameraSource).usb : undefined;
    const poller = await startVendorEvents(session, this.camera.camera.deviceInfo, {
      logger: this.#log,
      signal,
      ...(usb ? { usb: { vendorId: usb.vendorId, productId: usb.productId } } : {}),
    });
    const named = new Set<number>();
    try {
      this.#log.info({ source: this.uri, eventStrategy: poller.strategy.kind }, 'watching for new shots');
      this.opts.onWatching?.();
      if (this.opts.existing) {
        // Stopped between two files, never inside a transaction (the session goes on serving the copies):
        // the files named so far still finish.
        for await (const e of this.camera.list(signal)) {
          if (stop.aborted) return;
          named.add((e.handle as { objectHandle: number }).objectHandle);
          yield e;
        }
      }
      for (;;) {
        let e: Awaited<ReturnType<typeof events.next>>;
        try {
          e = await events.next(stop, this.opts.livenessMs ?? LIVENESS_MS);
        } catch (err) {
          if (stop.aborted) return;
          if (!isShuttleError(err, 'PTP_TIMEOUT')) throw err;
          await this.#checkAlive(signal);
          continue;
        }
        const handle = e.params[0];
        if (e.code !== EventCode.ObjectAdded || handle === undefined || named.has(handle)) continue;
        named.add(handle);
        const at = performance.now();
        const item = await this.camera.itemOf(handle, signal);
        if (!item) continue;
        this.#announcedAt.set(item.path, at);
        this.#log.debug({ path: item.path, handle }, 'new shot');
        yield item;
      }
    } finally {
      events.close();
      await poller.stop();
    }
  }

  /** DEVICE_GONE unless the camera answers GetStorageIDs (any response, even busy, will do). */
  async #checkAlive(signal: AbortSignal | undefined): Promise<void> {
    try {
      await this.camera.camera.storageIds(signal);
    } catch (err) {
      if (responseCodeOf(err) !== undefined || signal?.aborted) return;
      throw new ShuttleError('DEVICE_GONE', `${this.uri}: the camera stopped answering; tethering ended`, { context: { source: this.uri }, cause: err });
    }
  }

  open(item: SourceItem, options?: OpenOptions): Promise<Readable> {
    return this.camera.open(item, options);
  }

  stat(item: SourceItem, signal?: AbortSignal): Promise<ItemState | undefined> {
    return this.camera.stat(item, signal);
  }

  close(): Promise<void> {
    return this.camera.close();
  }
}

/** Opens the camera `name` (usb:…, ptpip:HOST[:PORT]) for tethering; USAGE for a folder or `ptpip:` alone. */
export async function openTetheredCamera(name: string, ctx: OpenContext, opts: TetherOptions): Promise<TetheredCameraSource> {
  if (!cameraScheme(name) || name.toLowerCase() === 'ptpip:') {
    throw new ShuttleError('USAGE', `tether ${name}: name one camera (usb:, usb:VID:PID, usb:BUS-PORT or ptpip:HOST[:PORT])`, { context: { source: name } });
  }
  const source = await openSource(name, ctx);
  if (!(source instanceof PtpCameraSource)) {
    await source.close().catch(() => undefined);
    throw new ShuttleError('USAGE', `tether ${name}: not a camera`, { context: { source: name } });
  }
  return new TetheredCameraSource(source, opts);
}
