/**
 * Where a camera's "new shot" events come from, per camera, and the polling for those that do not send
 * them: Canon EOS (GetEvent 0x9116), Nikon (CheckEvent 0x90C7), and cameras that announce no ObjectAdded
 * at all (Fujifilm: libgphoto2 diffs the object handles), and Sony bodies in PC Remote mode (the
 * objects-in-memory property, read with GetAllDevicePropData 0x9209, and polled again at once when the
 * body signals a change with its DevicePropChanged 0xC203). Polled events are turned into the standard ones
 * (ObjectAdded, CaptureComplete, RequestObjectTransfer, DevicePropChanged) and delivered through the
 * session's own event listeners, so whoever listens to `session.onEvent` (capture, tethering) gets new
 * shots the same way from every camera. Cameras with standard interrupt events are never polled.
 */
import { sleep } from '../../async.js';
import { isShuttleError, throwIfAborted } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { ALL_STORAGES, EventCode, OperationCode, hex16 } from './codes.js';
import { decodeU32Array, type DeviceInfo } from './datasets.js';
import { vendorOf, type UsbDeviceIds } from './quirks.js';
import { responseCodeOf, type PtpSession } from './session.js';
import type { PtpEvent } from './transport.js';
import { SONY_MEMORY_OBJECT_HANDLE, SonyEventCode, SonyOperation, SonyProperty, objectsInMemory, sonyConnect, sonyObjectInMemory } from './sony.js';
import { decodeCanonEosEvents, decodeNikonEvents, standardEventOfCanon, standardEventOfNikon, type CanonEosEvent, type NikonEvent } from './vendor-events-decode.js';

export const CanonEosOperation = {
  SetRemoteMode: 0x9114,
  SetEventMode: 0x9115,
  GetEvent: 0x9116,
  TransferComplete: 0x9117,
  KeepDeviceOn: 0x911d,
} as const;

export type EventStrategy =
  /** Standard events on the interrupt pipe / PTP/IP event connection: nothing to poll. */
  | { kind: 'interrupt' }
  | { kind: 'canon-eos' }
  | { kind: 'nikon' }
  /** Sony in PC Remote mode: shots wait in the body's memory, counted by a property. */
  | { kind: 'sony' }
  /** No ObjectAdded from the camera: GetObjectHandles is compared between polls. */
  | { kind: 'object-handles' };

/**
 * Picks how events arrive. The maker comes from the vendor extension, else the USB vendor id (newer Canon
 * and Nikon bodies report MTP), else DeviceInfo's manufacturer (PTP/IP has no USB id); the polling
 * operation must be among the operations the camera lists.
 */
export function chooseEventStrategy(info: DeviceInfo, usb?: UsbDeviceIds): EventStrategy {
  const maker = vendorOf(info, usb) ?? info.manufacturer;
  const ops = new Set(info.operationsSupported);
  if (/canon/i.test(maker) && ops.has(CanonEosOperation.GetEvent)) return { kind: 'canon-eos' };
  if (/nikon/i.test(maker) && ops.has(OperationCode.NikonGetEvent)) return { kind: 'nikon' };
  // Without SDIOConnect the body is not in PC Remote mode (mass storage or MTP): its card is all there is.
  if (/sony/i.test(maker) && ops.has(SonyOperation.SdioConnect) && ops.has(SonyOperation.GetAllDevicePropData)) return { kind: 'sony' };
  if (!info.eventsSupported.includes(EventCode.ObjectAdded) && ops.has(OperationCode.GetObjectHandles)) return { kind: 'object-handles' };
  return { kind: 'interrupt' };
}

/** A polled event as the camera reported it, before translation (for logs and vendor-aware consumers). */
export type VendorEvent = { vendor: 'canon-eos'; event: CanonEosEvent } | { vendor: 'nikon'; event: NikonEvent };

export interface VendorEventOptions {
  /**
   * Pause after a poll that found nothing: it starts at the first value and grows by a step per empty
   * poll up to the second, and starts again from the first once something was found. Default: 50→200 ms
   * for the Canon and Nikon event queues (libgphoto2 waits the same), 100→1000 ms for the handle list,
   * whose every poll lists the whole card. One number: always that pause.
   */
  intervalMs?: number | readonly [number, number];
  /** Longest one poll may take (default 5 s). */
  pollTimeoutMs?: number;
  logger?: Logger;
  /** USB ids when the camera is on USB (decides the maker for MTP-flavoured bodies). */
  usb?: UsbDeviceIds;
  /** Overrides the choice (configuration, tests). */
  strategy?: EventStrategy;
}

/** Consecutive polls that return events before the poller waits anyway (a camera that never runs dry). */
const MAX_BACK_TO_BACK = 20;

export class VendorEventPoller {
  readonly strategy: EventStrategy;
  readonly #session: PtpSession;
  readonly #log: Logger;
  readonly #intervalMs: readonly [number, number];
  readonly #pollTimeoutMs: number;
  readonly #stop = new AbortController();
  readonly #vendorListeners = new Set<(e: VendorEvent) => void>();
  #loop: Promise<void> | undefined;
  #handles: Set<number> | undefined;
  /** Sony: the last ObjectInMemory value, and the pause between polls, which the body's change event ends. */
  #inMemory = 0;
  #wake: AbortController | undefined;
  #offSonyEvents: (() => void) | undefined;
  /** What the last poll found that the one before had not (the back-off starts again from its shortest pause). */
  #fresh = 0;

  constructor(session: PtpSession, info: DeviceInfo, opts: VendorEventOptions = {}) {
    this.#session = session;
    this.strategy = opts.strategy ?? chooseEventStrategy(info, opts.usb);
    this.#log = (opts.logger ?? silentLogger).child({ eventStrategy: this.strategy.kind });
    const interval = opts.intervalMs ?? (this.strategy.kind === 'object-handles' ? [100, 1000] : [50, 200]);
    this.#intervalMs = typeof interval === 'number' ? [interval, interval] : interval;
    this.#pollTimeoutMs = opts.pollTimeoutMs ?? 5000;
  }

  get polling(): boolean {
    return this.strategy.kind !== 'interrupt';
  }

  onVendorEvent(listener: (e: VendorEvent) => void): () => void {
    this.#vendorListeners.add(listener);
    return () => this.#vendorListeners.delete(listener);
  }

  /**
   * Prepares the camera and starts polling in the background (nothing for interrupt cameras). Canon EOS:
   * remote mode and event mode on, then the first GetEvents, which dump the camera's whole state, are
   * drained without being delivered (they are not new shots). Object handles: the first listing is the
   * baseline. Sony: the SDIO connect sequence; shots already waiting in memory are delivered (nobody
   * else will fetch them).
   */
  async start(signal?: AbortSignal): Promise<void> {
    if (!this.polling || this.#loop) return;
    if (this.strategy.kind === 'canon-eos') {
      for (const code of [CanonEosOperation.SetRemoteMode, CanonEosOperation.SetEventMode]) {
        await this.#session.run({ code, params: [1], signal }).catch((err: unknown) => {
          if (responseCodeOf(err) === undefined) throw err;
          this.#log.debug({ err, operation: hex16(code) }, 'Canon EOS setup refused; polling anyway');
        });
      }
      for (let i = 0; i < 50 && (await this.#canonBatch(signal)).length > 0; i++);
    } else if (this.strategy.kind === 'object-handles') {
      this.#handles = new Set(await this.#allHandles(signal));
    } else if (this.strategy.kind === 'sony') {
      await sonyConnect(this.#session, signal);
      // Some bodies ignore the shutter for a while after the connect; nothing is announced before it would work.
      const warmUp = this.#session.quirks.captureWarmUpMs;
      if (warmUp > 0) await sleep(warmUp, signal);
      // The body's own "something changed" cuts the pause short: a shot is fetched without waiting for the next poll.
      this.#offSonyEvents = this.#session.onEvent((e) => {
        if (e.code === SonyEventCode.DevicePropChanged && e.params[0] === SonyProperty.ObjectInMemory) this.#wake?.abort();
      });
    }
    this.#loop = this.#run();
  }

  /** Stops polling; resolves once no poll is running. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#offSonyEvents?.();
    await this.#loop;
  }

  /** One poll now: returns the standard events it delivered to the session's listeners. */
  async pollOnce(signal?: AbortSignal): Promise<PtpEvent[]> {
    const out: PtpEvent[] = [];
    switch (this.strategy.kind) {
      case 'canon-eos':
        for (const e of await this.#canonBatch(signal)) {
          this.#emitVendor({ vendor: 'canon-eos', event: e });
          const std = standardEventOfCanon(e);
          if (std) out.push(std);
        }
        break;
      case 'nikon': {
        const { data } = await this.#session.runDataIn({ code: OperationCode.NikonGetEvent, signal, timeoutMs: this.#pollTimeoutMs }, 64 * 1024);
        for (const e of decodeNikonEvents(data)) {
          this.#emitVendor({ vendor: 'nikon', event: e });
          out.push(standardEventOfNikon(e));
        }
        break;
      }
      case 'object-handles': {
        const now = await this.#allHandles(signal);
        const before = this.#handles ?? new Set<number>();
        const current = new Set(now);
        for (const h of now) if (!before.has(h)) out.push({ code: EventCode.ObjectAdded, transactionId: 0, params: [h] });
        for (const h of before) if (!current.has(h)) out.push({ code: EventCode.ObjectRemoved, transactionId: 0, params: [h] });
        this.#handles = current;
        break;
      }
      case 'sony': {
        // While shots wait, the handle is announced on every poll: it names each waiting shot in turn, and
        // the tethered source names each shot it finds there once.
        const value = await sonyObjectInMemory(this.#session, signal, this.#pollTimeoutMs);
        if (value !== this.#inMemory) this.#fresh++;
        this.#inMemory = value;
        if (objectsInMemory(value) > 0) out.push({ code: EventCode.ObjectAdded, transactionId: 0, params: [SONY_MEMORY_OBJECT_HANDLE] });
        for (const e of out) this.#session.dispatchEvent(e);
        return out;
      }
      case 'interrupt':
        break;
    }
    this.#fresh += out.length;
    for (const e of out) this.#session.dispatchEvent(e);
    return out;
  }

  async #canonBatch(signal: AbortSignal | undefined): Promise<CanonEosEvent[]> {
    const { data } = await this.#session.runDataIn({ code: CanonEosOperation.GetEvent, signal, timeoutMs: this.#pollTimeoutMs }, 4 * 1024 * 1024);
    return decodeCanonEosEvents(data);
  }

  async #allHandles(signal: AbortSignal | undefined): Promise<number[]> {
    const { data } = await this.#session.runDataIn({ code: OperationCode.GetObjectHandles, params: [ALL_STORAGES, 0, 0], signal, timeoutMs: this.#pollTimeoutMs });
    return decodeU32Array(data, 'ObjectHandles');
  }

  #emitVendor(e: VendorEvent): void {
    for (const l of this.#vendorListeners) {
      try {
        l(e);
      } catch (err) {
        this.#log.warn({ err }, 'vendor event listener failed');
      }
    }
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    const [first, longest] = this.#intervalMs;
    const step = Math.max(1, Math.round((longest - first) / 4));
    let pause = first;
    let backToBack = 0;
    while (!signal.aborted) {
      let delivered = 0;
      try {
        this.#fresh = 0;
        await this.pollOnce(signal);
        delivered = this.#fresh;
      } catch (err) {
        if (signal.aborted) return;
        if (isShuttleError(err, 'TRANSPORT') || isShuttleError(err, 'DEVICE_GONE') || responseCodeOf(err) === 0x2005) {
          this.#log.warn({ err }, 'event polling stopped');
          return;
        }
        // A bad batch or a busy camera: report it and keep polling, slowly.
        this.#log.warn({ err }, 'event poll failed');
        pause = longest;
      }
      backToBack = delivered > 0 ? backToBack + 1 : 0;
      if (backToBack > 0 && backToBack < MAX_BACK_TO_BACK) {
        pause = first;
        continue;
      }
      backToBack = 0;
      const wake = (this.#wake = new AbortController());
      await sleep(pause, AbortSignal.any([signal, wake.signal]));
      pause = wake.signal.aborted ? first : Math.min(longest, pause + step);
    }
  }
}

/** Chooses the strategy for `info` and starts it; stop the returned poller before closing the session. */
export async function startVendorEvents(session: PtpSession, info: DeviceInfo, opts: VendorEventOptions & { signal?: AbortSignal } = {}): Promise<VendorEventPoller> {
  throwIfAborted(opts.signal);
  const poller = new VendorEventPoller(session, info, opts);
  await poller.start(opts.signal);
  return poller;
}
