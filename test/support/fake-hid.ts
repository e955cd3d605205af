/**
 * An in-memory HidBackend for the pedal and status-light tests: devices are plugged and unplugged,
 * input reports are queued for reading, and every report written is recorded. An unplug fails the
 * pending read and later writes with DEVICE_GONE, as hidapi does.
 */
import { ShuttleError } from '../../src/errors.js';
import type { HidBackend, HidConnection, HidDeviceInfo } from '../../src/device/hid/backend.js';

export interface WrittenReport {
  kind: 'output' | 'feature';
  hex: string;
}

export class FakeHidConnection implements HidConnection {
  readonly written: WrittenReport[] = [];
  closed = false;
  private markClosed!: () => void;
  /** Resolves when the code under test closes this connection. */
  readonly whenClosed = new Promise<void>((resolve) => (this.markClosed = resolve));
  gone = false;
  private readonly queue: Uint8Array[] = [];
  private waiter: { resolve: (r: Uint8Array | undefined) => void; reject: (e: unknown) => void; timer: NodeJS.Timeout } | undefined;

  constructor(readonly path: string) {}

  push(report: Uint8Array | number[]): void {
    const r = report instanceof Uint8Array ? report : Uint8Array.from(report);
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      clearTimeout(w.timer);
      w.resolve(r);
    } else {
      this.queue.push(r);
    }
  }

  unplug(): void {
    this.gone = true;
    const w = this.waiter;
    this.waiter = undefined;
    if (w) {
      clearTimeout(w.timer);
      w.reject(this.goneError());
    }
  }

  private goneError(): ShuttleError {
    return new ShuttleError('DEVICE_GONE', `HID device ${this.path}: read failed: could not read from HID device`);
  }

  read(timeoutMs: number): Promise<Uint8Array | undefined> {
    if (this.gone) return Promise.reject(this.goneError());
    const next = this.queue.shift();
    if (next) return Promise.resolve(next);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        resolve(undefined);
      }, timeoutMs);
      this.waiter = { resolve, reject, timer };
    });
  }

  private record(kind: 'output' | 'feature', report: Uint8Array): Promise<number> {
    if (this.gone || this.closed) return Promise.reject(this.goneError());
    this.written.push({ kind, hex: Buffer.from(report).toString('hex') });
    return Promise.resolve(report.length);
  }

  write(report: Uint8Array): Promise<number> {
    return this.record('output', report);
  }

  sendFeatureReport(report: Uint8Array): Promise<number> {
    return this.record('feature', report);
  }

  close(): Promise<void> {
    this.closed = true;
    this.markClosed();
    const w = this.waiter;
    this.waiter = undefined;
    if (w) {
      clearTimeout(w.timer);
      w.resolve(undefined);
    }
    return Promise.resolve();
  }
}

export class FakeHid implements HidBackend {
  readonly present = new Map<string, HidDeviceInfo>();
  /** Every connection opened, newest last per path. */
  readonly opened: FakeHidConnection[] = [];
  private readonly openWaiters: Array<{ path: string; resolve: (c: FakeHidConnection) => void }> = [];

  plug(device: HidDeviceInfo & { path: string }): void {
    this.present.set(device.path, device);
  }

  unplug(path: string): void {
    this.present.delete(path);
    for (const c of this.opened) if (c.path === path) c.unplug();
  }

  devices(): Promise<HidDeviceInfo[]> {
    return Promise.resolve([...this.present.values()].map((d) => ({ ...d })));
  }

  open(path: string): Promise<HidConnection> {
    if (!this.present.has(path)) return Promise.reject(new ShuttleError('TRANSPORT', `cannot open HID device ${path}: No such device`));
    const conn = new FakeHidConnection(path);
    this.opened.push(conn);
    for (const w of this.openWaiters.filter((x) => x.path === path)) {
      this.openWaiters.splice(this.openWaiters.indexOf(w), 1);
      w.resolve(conn);
    }
    return Promise.resolve(conn);
  }

  /** The connection opened to `path` after this call (or the open one, when `current` and there is one). */
  nextOpen(path: string): Promise<FakeHidConnection> {
    return new Promise((resolve) => this.openWaiters.push({ path, resolve }));
  }

  /** The newest connection to `path`. */
  connection(path: string): FakeHidConnection {
    const c = this.opened.filter((x) => x.path === path).pop();
    if (!c) throw new Error(`${path} was never opened`);
    return c;
  }
}

/** QEMU's usb-kbd as hidapi lists it in the test guest. */
export const QEMU_KEYBOARD: HidDeviceInfo & { path: string } = {
  vendorId: 0x0627,
  productId: 0x0001,
  path: '/dev/hidraw0',
  manufacturer: 'QEMU',
  product: 'QEMU USB Keyboard',
  usagePage: 0x01,
  usage: 0x06,
  interface: 0,
};
