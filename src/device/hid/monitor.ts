/**
 * HID hotplug by polling: node-hid has no plug events, so the device list is compared at a modest
 * interval and each path that appears or goes is reported. A pedal or light plugged in later is picked
 * up on the next poll; one unplugged is reported gone (its reads and writes fail before that anyway).
 */
import { silentLogger, type Logger } from '../../log.js';
import type { HidBackend, HidDeviceInfo } from './backend.js';

/** Which HID devices a pedal binding or a light means. Every field given must match. */
export interface HidMatch {
  vendorId?: number;
  productId?: number;
  /** Any interface whose report descriptor's top-level usage is a keyboard (Generic Desktop 0x01, usage 0x06). */
  keyboard?: boolean;
  path?: string;
  serialNumber?: string;
}

export const isKeyboard = (d: HidDeviceInfo): boolean => d.usagePage === 0x01 && d.usage === 0x06;

export function matchesHid(d: HidDeviceInfo, m: HidMatch): boolean {
  if (m.vendorId !== undefined && d.vendorId !== m.vendorId) return false;
  if (m.productId !== undefined && d.productId !== m.productId) return false;
  if (m.keyboard === true && !isKeyboard(d)) return false;
  if (m.path !== undefined && d.path !== m.path) return false;
  if (m.serialNumber !== undefined && d.serialNumber !== m.serialNumber) return false;
  return true;
}

const hex4 = (n: number): string => n.toString(16).padStart(4, '0');

/** `0627:0001 QEMU USB Keyboard (/dev/hidraw0)`: for log lines and `shuttle hid list`. */
export function describeHid(d: HidDeviceInfo): string {
  const name = [d.manufacturer, d.product].filter(Boolean).join(' ');
  return `${hex4(d.vendorId)}:${hex4(d.productId)}${name ? ` ${name}` : ''}${d.path ? ` (${d.path})` : ''}`;
}

export interface HidPlugListener {
  attach(device: HidDeviceInfo): void;
  detach(device: HidDeviceInfo): void;
}

export interface HidMonitorOptions {
  pollMs?: number;
  logger?: Logger;
}

export const DEFAULT_HID_POLL_MS = 1000;

export class HidMonitor {
  private readonly known = new Map<string, HidDeviceInfo>();
  private readonly listeners = new Set<HidPlugListener>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> | undefined;
  private listFailed = false;
  private running = false;
  private readonly pollMs: number;
  private readonly log: Logger;

  constructor(
    private readonly backend: HidBackend,
    opts: HidMonitorOptions = {},
  ) {
    this.pollMs = opts.pollMs ?? DEFAULT_HID_POLL_MS;
    this.log = opts.logger ?? silentLogger;
  }

  /** Devices present at the last poll. */
  get devices(): HidDeviceInfo[] {
    return [...this.known.values()];
  }

  /** Delivers attach/detach until the returned function is called; devices already known are attached at once. */
  watch(listener: HidPlugListener): () => void {
    this.listeners.add(listener);
    for (const d of this.known.values()) listener.attach(d);
    return () => this.listeners.delete(listener);
  }

  /**
   * Forgets a device so that the next poll reports it attached again if it is still (or again) listed:
   * for a user whose device failed, since an unplug and replug between two polls never shows as a detach.
   */
  forget(path: string): void {
    this.known.delete(path);
  }

  /** Polls now and then every pollMs until stop(); resolves after the first poll. */
  start(): Promise<void> {
    this.running = true;
    const next = (): void => {
      if (this.running) this.timer = setTimeout(() => void this.poll().finally(next), this.pollMs);
    };
    return this.poll().finally(next);
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
  }

  /** One comparison of the device list with the last one; concurrent calls share one listing. */
  poll(): Promise<void> {
    this.polling ??= this.compare().finally(() => {
      this.polling = undefined;
    });
    return this.polling;
  }

  private async compare(): Promise<void> {
    let list: HidDeviceInfo[];
    try {
      list = await this.backend.devices();
      this.listFailed = false;
    } catch (err) {
      // Logged once per failure streak: a missing binding would otherwise log every poll.
      if (!this.listFailed) this.log.warn({ err }, 'listing HID devices failed');
      this.listFailed = true;
      return;
    }
    const now = new Map<string, HidDeviceInfo>();
    for (const d of list) if (d.path !== undefined) now.set(d.path, d);
    for (const [path, d] of this.known) {
      if (!now.has(path)) {
        this.known.delete(path);
        for (const l of this.listeners) l.detach(d);
      }
    }
    for (const [path, d] of now) {
      if (!this.known.has(path)) {
        this.known.set(path, d);
        for (const l of this.listeners) l.attach(d);
      }
    }
  }
}
