import { usbCameraOpener, type OpenContext } from '../device/detect.js';
import type { Source } from '../device/source.js';
import { hex4, type UsbCameraInfo } from '../device/usb/discovery.js';
import type { UsbHotplugBus, UsbPlugEvent } from '../device/usb/hotplug.js';
import type { Logger } from '../log.js';
import type { AttachedDevice, DeviceEvents, DeviceWatcher } from './devices.js';

/**
 * USB cameras for the daemon: a camera plugged in becomes an attached device (one ingest job), a camera
 * unplugged detaches (its job, and only its, is cancelled). A device is looked at only after it has been
 * quiet for `settleMs`: cameras often enumerate, drop off and enumerate again while they switch mode, and
 * that must start one job, not two. The native `usb` binding is loaded when the watcher starts, not before.
 */

export const DEFAULT_USB_SETTLE_MS = 400;

export interface UsbCameraWatcherOptions {
  logger: Logger;
  /** Quiet time after an attach before the device is identified and reported. */
  settleMs?: number;
  /** Poll the device list every this many ms instead of libusb's hotplug events (0: events where supported). */
  pollMs?: number;
  /** The bus (tests give a fake); default node-usb, loaded on start. */
  bus?: () => Promise<UsbHotplugBus>;
  /** Opens the camera at `usb:BUS-PORT` for its job; default the libusb camera source. */
  openCamera?: (uri: string, ctx: OpenContext) => Promise<Source>;
}

/** What the logs say about a camera: the fields the box tests and a person reading journalctl look for. */
function described(info: UsbCameraInfo): Record<string, unknown> {
  return {
    vendorId: hex4(info.vendorId),
    productId: hex4(info.productId),
    location: info.location,
    protocol: info.protocol,
    manufacturer: info.manufacturer,
    product: info.product,
    problem: info.problem,
  };
}

export class UsbCameraWatcher implements DeviceWatcher {
  readonly name = 'usb';
  readonly #opts: UsbCameraWatcherOptions;
  readonly #log: Logger;
  /** Cameras reported attached, by location. */
  readonly #reported = new Map<string, UsbCameraInfo>();
  /** Attaches waiting out the settle time, by location. */
  readonly #settling = new Map<string, NodeJS.Timeout>();
  /** Bumped by every event at a location, so an identification that an event overtook is dropped. */
  readonly #generation = new Map<string, number>();
  #events: DeviceEvents | undefined;
  #bus: UsbHotplugBus | undefined;
  #unwatch: (() => void) | undefined;
  #closed = false;

  constructor(opts: UsbCameraWatcherOptions) {
    this.#opts = opts;
    this.#log = opts.logger.child({ watcher: 'usb' });
  }

  get settleMs(): number {
    return this.#opts.settleMs ?? DEFAULT_USB_SETTLE_MS;
  }

  async start(events: DeviceEvents): Promise<void> {
    this.#events = events;
    const bus = await (this.#opts.bus ?? (async () => (await import('../device/usb/hotplug.js')).openUsbHotplugBus({ logger: this.#log, pollMs: this.#opts.pollMs })))();
    this.#bus = bus;
    // Listen first, then list: a camera plugged in meanwhile is either listed or settles after.
    this.#unwatch = bus.watch({ attach: (e) => this.#onAttach(e), detach: (e) => this.#onDetach(e) });
    const before = new Map(this.#generation);
    const present = await bus.cameras();
    for (const info of present) {
      // An event at this location while listing makes the listing stale there: the event decides.
      if ((this.#generation.get(info.location) ?? 0) !== (before.get(info.location) ?? 0)) continue;
      this.#report(info, true);
    }
    this.#log.info({ mode: bus.mode, cameras: present.length, settleMs: this.settleMs }, 'watching USB for cameras');
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unwatch?.();
    this.#unwatch = undefined;
    for (const t of this.#settling.values()) clearTimeout(t);
    this.#settling.clear();
  }

  /** Cameras currently reported attached (for tests and status). */
  get attached(): UsbCameraInfo[] {
    return [...this.#reported.values()];
  }

  #bump(location: string): number {
    const g = (this.#generation.get(location) ?? 0) + 1;
    this.#generation.set(location, g);
    return g;
  }

  #onAttach(e: UsbPlugEvent): void {
    if (this.#closed) return;
    const generation = this.#bump(e.location);
    if (this.#reported.has(e.location)) {
      // Attached again without a detach between: the same camera still, its job goes on.
      this.#log.debug({ location: e.location }, "USB device at an attached camera's port enumerated again");
      return;
    }
    clearTimeout(this.#settling.get(e.location));
    this.#log.debug({ location: e.location, vendorId: hex4(e.vendorId), productId: hex4(e.productId) }, 'USB device attached; settling');
    const timer = setTimeout(() => {
      this.#settling.delete(e.location);
      void this.#identify(e, generation);
    }, this.settleMs);
    this.#settling.set(e.location, timer);
  }

  async #identify(e: UsbPlugEvent, generation: number): Promise<void> {
    let info: UsbCameraInfo | undefined;
    try {
      info = await this.#bus!.cameraAt(e.location);
    } catch (err) {
      this.#log.warn({ err, location: e.location }, 'could not look at a USB device that was plugged in');
      return;
    }
    if (this.#closed || this.#generation.get(e.location) !== generation) return;
    if (!info) {
      this.#log.debug({ location: e.location, vendorId: hex4(e.vendorId), productId: hex4(e.productId) }, 'USB device is not a camera');
      return;
    }
    this.#report(info, false);
  }

  #report(info: UsbCameraInfo, present: boolean): void {
    if (this.#reported.has(info.location)) return;
    this.#reported.set(info.location, info);
    const uri = `usb:${info.location}`;
    const name = [info.manufacturer, info.product].filter(Boolean).join(' ') || `USB camera ${hex4(info.vendorId)}:${hex4(info.productId)}`;
    this.#log.info({ ...described(info), present }, 'camera attached');
    const openCamera = this.#opts.openCamera;
    const device: AttachedDevice = {
      id: uri,
      kind: 'camera',
      label: `${name} (${uri})`,
      uri,
      jobKey: uri,
      open: openCamera ? (ctx) => openCamera(uri, ctx) : usbCameraOpener(uri),
      camera: { transport: 'usb', vendorId: info.vendorId, productId: info.productId, location: info.location, serial: info.serialNumber },
    };
    this.#events?.attach(device);
  }

  #onDetach(e: UsbPlugEvent): void {
    if (this.#closed) return;
    this.#bump(e.location);
    const settling = this.#settling.get(e.location);
    if (settling) {
      clearTimeout(settling);
      this.#settling.delete(e.location);
      this.#log.debug({ location: e.location }, 'USB device went away while settling');
    }
    const info = this.#reported.get(e.location);
    if (!info) return;
    this.#reported.delete(e.location);
    this.#log.info(described(info), 'camera detached');
    this.#events?.detach(`usb:${info.location}`, `camera ${hex4(info.vendorId)}:${hex4(info.productId)} unplugged from ${info.location}`);
  }
}
