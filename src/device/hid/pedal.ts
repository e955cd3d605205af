/**
 * Foot pedals and buttons: every HID keyboard interface that a binding names is opened as it appears
 * (hotplug by polling), its boot-keyboard reports are read, and each key newly pressed that a binding
 * maps to an action fires that action once. An absent pedal is normal (logged once); an unplugged one is
 * closed and opened again when it comes back.
 */
import type { PedalAction } from '../../hid-vocabulary.js';
import { silentLogger, type Logger } from '../../log.js';
import { ShuttleError } from '../../errors.js';
import { nodeHidBackend, type HidBackend, type HidConnection, type HidDeviceInfo } from './backend.js';
import { KeyEdges } from './keys.js';
import { describeHid, HidMonitor, isKeyboard } from './monitor.js';
import { readReports } from './reports.js';

/** A device, a key on it, and what pressing the key asks for. */
export interface PedalBinding {
  /** A USB id, or `keyboard`: any device whose HID interface enumerates as a keyboard. */
  device: { vendorId: number; productId: number } | 'keyboard';
  /** A key name of hid-vocabulary (`b`, `space`, `pageup`, `f13`, `leftshift`…). */
  key: string;
  action: PedalAction;
}

/** One press that fired an action. */
export interface PedalPress {
  action: PedalAction;
  key: string;
  device: HidDeviceInfo;
}

/** `0627:0001` → ids; `keyboard` stays as it is. USAGE for anything else. */
export function parsePedalDevice(text: string): PedalBinding['device'] {
  const t = text.trim().toLowerCase();
  if (t === 'keyboard') return 'keyboard';
  const m = /^([0-9a-f]{4}):([0-9a-f]{4})$/.exec(t);
  if (!m) throw new ShuttleError('USAGE', `not a pedal device: "${text}" (VID:PID in hex, like 0627:0001, or "keyboard")`);
  return { vendorId: Number.parseInt(m[1] as string, 16), productId: Number.parseInt(m[2] as string, 16) };
}

function boundTo(binding: PedalBinding, d: HidDeviceInfo): boolean {
  // Only keyboard interfaces send boot-keyboard reports; a pedal's mouse or consumer interface would be misread.
  const keyboardLike = isKeyboard(d) || d.usagePage === undefined;
  if (binding.device === 'keyboard') return isKeyboard(d);
  return keyboardLike && d.vendorId === binding.device.vendorId && d.productId === binding.device.productId;
}

export interface PedalWatcherOptions {
  bindings: readonly PedalBinding[];
  backend?: HidBackend;
  /** Shared with a status light in the same process; else the watcher polls on its own. */
  monitor?: HidMonitor;
  pollMs?: number;
  logger?: Logger;
}

interface OpenPedal {
  device: HidDeviceInfo;
  conn: HidConnection;
  stop: AbortController;
  reading: Promise<void>;
}

export class PedalWatcher {
  private readonly bindings: readonly PedalBinding[];
  private readonly backend: HidBackend;
  private readonly monitor: HidMonitor;
  private readonly ownMonitor: boolean;
  private readonly log: Logger;
  private readonly listeners = new Set<(press: PedalPress) => void>();
  private readonly open = new Map<string, OpenPedal>();
  private readonly opening = new Set<string>();
  private readonly failedOpen = new Set<string>();
  private unwatch: (() => void) | undefined;
  private closed = false;

  constructor(opts: PedalWatcherOptions) {
    this.bindings = opts.bindings;
    this.backend = opts.backend ?? nodeHidBackend();
    this.ownMonitor = opts.monitor === undefined;
    this.monitor = opts.monitor ?? new HidMonitor(this.backend, { pollMs: opts.pollMs, logger: opts.logger });
    this.log = opts.logger ?? silentLogger;
  }

  /** Calls `listener` once per press of a bound key; returns the function that stops it. */
  onAction(listener: (press: PedalPress) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Devices open now. */
  get connected(): HidDeviceInfo[] {
    return [...this.open.values()].map((p) => p.device);
  }

  /** Starts watching; resolves once the devices present now were looked at (and the bound ones opened). */
  async start(): Promise<void> {
    if (this.bindings.length === 0) return;
    let present: Array<Promise<void>> | undefined = [];
    this.unwatch = this.monitor.watch({
      attach: (d) => {
        const opened = this.attach(d);
        present?.push(opened);
      },
      detach: (d) => void this.detach(d),
    });
    if (this.ownMonitor) await this.monitor.start();
    await Promise.all(present);
    present = undefined;
    if (this.open.size === 0) this.log.info({ bindings: this.bindings.length }, 'no pedal connected yet: waiting for one');
  }

  async close(): Promise<void> {
    this.closed = true;
    this.unwatch?.();
    if (this.ownMonitor) this.monitor.stop();
    await Promise.all([...this.open.values()].map((p) => this.release(p)));
  }

  private async attach(d: HidDeviceInfo): Promise<void> {
    const path = d.path;
    if (path === undefined || this.closed || this.open.has(path) || this.opening.has(path)) return;
    if (!this.bindings.some((b) => boundTo(b, d))) return;
    this.opening.add(path);
    let conn: HidConnection;
    try {
      conn = await this.backend.open(path);
    } catch (err) {
      // Once per device: a pedal the user may not open (permissions) would otherwise warn every poll.
      if (!this.failedOpen.has(path)) this.log.warn({ err, device: describeHid(d) }, 'cannot open pedal');
      this.failedOpen.add(path);
      return;
    } finally {
      this.opening.delete(path);
    }
    if (this.closed) {
      await conn.close();
      return;
    }
    this.failedOpen.delete(path);
    const edges = new KeyEdges();
    const stop = new AbortController();
    const reading = readReports(conn, stop.signal, (report) => this.onReport(d, edges, report));
    const pedal: OpenPedal = { device: d, conn, stop, reading };
    this.open.set(path, pedal);
    this.log.info({ device: describeHid(d) }, 'pedal connected');
    reading.then(
      () => undefined,
      (err: unknown) => {
        // Unplugged (or broken): closed now, opened again when the monitor sees it return.
        this.log.info({ err, device: describeHid(d) }, 'pedal gone');
        this.monitor.forget(path);
        void this.release(pedal);
      },
    );
  }

  private async detach(d: HidDeviceInfo): Promise<void> {
    const pedal = d.path === undefined ? undefined : this.open.get(d.path);
    if (pedal) await this.release(pedal);
  }

  private async release(pedal: OpenPedal): Promise<void> {
    if (pedal.device.path !== undefined && this.open.get(pedal.device.path) === pedal) this.open.delete(pedal.device.path);
    pedal.stop.abort();
    await pedal.reading.catch(() => undefined);
    await pedal.conn.close();
  }

  private onReport(device: HidDeviceInfo, edges: KeyEdges, report: Uint8Array): void {
    for (const key of edges.update(report)) {
      const actions = new Set(this.bindings.filter((b) => b.key === key && boundTo(b, device)).map((b) => b.action));
      for (const action of actions) {
        this.log.info({ action, key, device: describeHid(device) }, 'pedal pressed');
        for (const l of this.listeners) {
          try {
            l({ action, key, device });
          } catch (err) {
            // A listener's fault is not the pedal's: reading goes on.
            this.log.error({ err, action }, 'pedal action listener failed');
          }
        }
      }
    }
  }
}
