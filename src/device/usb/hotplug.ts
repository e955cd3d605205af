/**
 * USB hotplug for the daemon: which devices come and go (libusb attach/detach events, or node-usb's
 * polling where libusb has no hotplug), and which of them are cameras. A camera is what `shuttle devices`
 * lists (findUsbCameras: Still Image interface 6/1/1, or an MTP interface confirmed by its string or
 * Microsoft OS descriptor), so the daemon and the CLI never disagree about what a camera is.
 *
 * Devices are named by where they are plugged in (`BUS-PORT`, e.g. `1-1.4`): that stays the same when a
 * camera re-enumerates (a new device address) and is what `usb:BUS-PORT` selects.
 */
import type { Device } from 'usb';
import { silentLogger, type Logger } from '../../log.js';
import { findUsbCameras, type UsbCameraInfo } from './discovery.js';
import { loadUsb } from './libusb.js';

/** Any USB device that appeared or went, as far as the bus tells without opening it. */
export interface UsbPlugEvent {
  /** `BUS-PORT`, e.g. `1-1.4`. */
  location: string;
  vendorId: number;
  productId: number;
}

export interface UsbPlugListener {
  attach(event: UsbPlugEvent): void;
  detach(event: UsbPlugEvent): void;
}

/** The thin layer over node-usb the camera watcher needs (and that its tests fake). */
export interface UsbHotplugBus {
  /** `libusb` when the kernel's events come through libusb, `polling` when the device list is compared periodically. */
  readonly mode: 'libusb' | 'polling';
  /** Cameras attached now, in bus/port order. */
  cameras(): Promise<UsbCameraInfo[]>;
  /** The camera plugged in at `location`, or undefined when nothing there is a camera (or nothing is there). */
  cameraAt(location: string): Promise<UsbCameraInfo | undefined>;
  /** Delivers every attach and detach until the returned function is called. */
  watch(listener: UsbPlugListener): () => void;
}

export interface UsbHotplugOptions {
  logger?: Logger;
  /** Poll the device list every this many ms instead of libusb's hotplug events (0: events where supported). */
  pollMs?: number;
}

function locationOf(device: Device): string {
  return `${device.busNumber}-${(device.portNumbers ?? []).join('.')}`;
}

function plugEvent(device: Device): UsbPlugEvent {
  const dd = device.deviceDescriptor;
  return { location: locationOf(device), vendorId: dd?.idVendor ?? 0, productId: dd?.idProduct ?? 0 };
}

/** `1-1.4` → bus 1, port path `1.4`. */
function parseLocation(location: string): { busNumber: number; portPath: string } | undefined {
  const m = /^(\d+)-([\d.]*)$/.exec(location);
  return m ? { busNumber: Number(m[1]), portPath: m[2] as string } : undefined;
}

/**
 * The bus through node-usb. Loads the native binding (TRANSPORT error when it cannot load). node-usb
 * runs libusb's hotplug only while someone listens, so an unwatched bus costs nothing.
 */
export async function openUsbHotplugBus(opts: UsbHotplugOptions = {}): Promise<UsbHotplugBus> {
  const mod = await loadUsb();
  const usb = mod.usb;
  const log = opts.logger ?? silentLogger;
  const pollMs = opts.pollMs ?? 0;
  if (pollMs > 0) {
    usb.pollHotplug = true;
    usb.pollHotplugDelay = pollMs;
  }
  // 1: libusb hotplug; 2: ids only (node-usb then compares lists); 0: node-usb polls.
  const mode = pollMs > 0 || usb._supportedHotplugEvents() === 0 ? 'polling' : 'libusb';
  return {
    mode,
    cameras: async () => (await findUsbCameras({ kind: 'any' }, { logger: log })).map((f) => f.info),
    cameraAt: async (location) => {
      const where = parseLocation(location);
      if (!where) return undefined;
      const found = await findUsbCameras({ kind: 'location', ...where }, { logger: log });
      return found[0]?.info;
    },
    watch: (listener) => {
      const onAttach = (device: Device): void => listener.attach(plugEvent(device));
      const onDetach = (device: Device): void => listener.detach(plugEvent(device));
      usb.on('attach', onAttach);
      usb.on('detach', onDetach);
      return () => {
        // The last listener removed stops libusb's hotplug (or the polling timer) in node-usb.
        usb.off('attach', onAttach);
        usb.off('detach', onDetach);
      };
    },
  };
}
