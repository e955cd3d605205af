/**
 * The thin layer over node-hid (its async API, HIDAsync): list HID devices, open one by path, read an
 * input report with a timeout, write output and feature reports. Everything above it (hotplug, pedals,
 * lights) talks to the HidBackend interface, which the tests fake. node-hid is loaded on first use, so
 * commands that never touch HID do not load its native binding.
 */
import type { Device, HIDAsync } from 'node-hid';
import { ShuttleError } from '../../errors.js';

type NodeHid = typeof import('node-hid');

/** One HID interface as the system lists it. */
export interface HidDeviceInfo {
  vendorId: number;
  productId: number;
  /** The handle to open it by (on Linux /dev/hidrawN); absent when the system gives none. */
  path?: string;
  serialNumber?: string;
  manufacturer?: string;
  product?: string;
  /** Top-level usage of its report descriptor: 0x01/0x06 is a keyboard. */
  usagePage?: number;
  usage?: number;
  interface: number;
}

/** An open HID device. Report buffers start with the report ID (0 for a device without report IDs). */
export interface HidConnection {
  /** The next input report, or undefined when none came within `timeoutMs`. */
  read(timeoutMs: number): Promise<Uint8Array | undefined>;
  write(report: Uint8Array): Promise<number>;
  sendFeatureReport(report: Uint8Array): Promise<number>;
  close(): Promise<void>;
}

export interface HidBackend {
  devices(): Promise<HidDeviceInfo[]>;
  open(path: string): Promise<HidConnection>;
}

/** The module loader, replaceable by a test's fake node-hid. */
export type NodeHidLoader = () => Promise<NodeHid>;

const loadNodeHid: NodeHidLoader = async () => {
  const mod = (await import('node-hid')) as NodeHid & { default?: NodeHid };
  return mod.default ?? mod;
};

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A failed read or write: hidapi says little more than "could not read", and the usual cause is an unplug. */
function gone(path: string, what: string, cause: unknown): ShuttleError {
  return new ShuttleError('DEVICE_GONE', `HID device ${path}: ${what} failed: ${messageOf(cause)}`, { cause, context: { path } });
}

function infoOf(d: Device): HidDeviceInfo {
  const info: HidDeviceInfo = { vendorId: d.vendorId, productId: d.productId, interface: d.interface };
  if (d.path) info.path = d.path;
  if (d.serialNumber) info.serialNumber = d.serialNumber;
  if (d.manufacturer) info.manufacturer = d.manufacturer;
  if (d.product) info.product = d.product;
  if (d.usagePage !== undefined) info.usagePage = d.usagePage;
  if (d.usage !== undefined) info.usage = d.usage;
  return info;
}

class NodeHidConnection implements HidConnection {
  private closed = false;

  constructor(
    private readonly device: HIDAsync,
    private readonly path: string,
  ) {}

  async read(timeoutMs: number): Promise<Uint8Array | undefined> {
    try {
      const data = await this.device.read(timeoutMs);
      // hidapi answers a timeout with an empty read.
      return data && data.length > 0 ? new Uint8Array(data) : undefined;
    } catch (err) {
      throw gone(this.path, 'read', err);
    }
  }

  async write(report: Uint8Array): Promise<number> {
    try {
      return await this.device.write(Buffer.from(report));
    } catch (err) {
      throw gone(this.path, 'write', err);
    }
  }

  async sendFeatureReport(report: Uint8Array): Promise<number> {
    try {
      return await this.device.sendFeatureReport(Buffer.from(report));
    } catch (err) {
      throw gone(this.path, 'feature report', err);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // A device unplugged before close fails to close; there is nothing left to release.
    await this.device.close().catch(() => undefined);
  }
}

/** The backend over node-hid; TRANSPORT when its native binding cannot load. */
export function nodeHidBackend(load: NodeHidLoader = loadNodeHid): HidBackend {
  let loaded: Promise<NodeHid> | undefined;
  const hid = (): Promise<NodeHid> => {
    loaded ??= load().catch((cause: unknown) => {
      loaded = undefined;
      throw new ShuttleError('TRANSPORT', `HID support is unavailable: ${messageOf(cause)} (node-hid's hidraw binding needs libudev1)`, { cause });
    });
    return loaded;
  };
  return {
    async devices() {
      const list = await (await hid()).devicesAsync();
      return list.map(infoOf);
    },
    async open(path) {
      const mod = await hid();
      try {
        // Shared, not exclusive: on macOS a keyboard pedal stays usable by the system too.
        return new NodeHidConnection(await mod.HIDAsync.open(path, { nonExclusive: true }), path);
      } catch (cause) {
        // Usually permissions: /dev/hidraw* belongs to root unless a udev rule gives it to Shuttle's user.
        throw new ShuttleError('TRANSPORT', `cannot open HID device ${path}: ${messageOf(cause)}`, { cause, context: { path } });
      }
    },
  };
}
