/**
 * The station's status light: takes the station state (setState) and keeps the configured light showing
 * it. Every refresh rewrites the light (renewing the timeout of a light that has one, rewriting one that
 * has none, timing the blink of one that cannot blink by itself), so a Shuttle that died, or whose event
 * loop stalled, stops renewing and a blink(1) or Busylight goes dark by itself within seconds: a stale
 * "safe to pull" cannot outlive the process. A Luxafor or Blynclight has no such timeout and keeps its
 * last colour after a crash (documented). The light may be absent, plugged in later or unplugged: it is
 * looked for on every poll of the HID monitor.
 */
import { Mutex } from '../../async.js';
import type { LightDriverName } from '../../hid-vocabulary.js';
import { silentLogger, type Logger } from '../../log.js';
import { nodeHidBackend, type HidBackend, type HidConnection, type HidDeviceInfo } from './backend.js';
import { LIGHT_DRIVER_TABLE, STATE_SIGNALS, driverForIds, type LightDriver, type StationState } from './lights.js';
import { describeHid, HidMonitor } from './monitor.js';
import { writeReport, type HidReport } from './reports.js';

export interface StatusLightOptions {
  /** `auto`: the first light of any known kind. */
  driver: LightDriverName | 'auto';
  /** Only the light at this HID path (e.g. /dev/hidraw3). */
  path?: string;
  /** Only the light with this USB serial number. */
  serialNumber?: string;
  backend?: HidBackend;
  /** Shared with the pedal watcher in the same process; else the light polls on its own. */
  monitor?: HidMonitor;
  pollMs?: number;
  /** Rewrite period, which is also each half of a blink the host times. */
  refreshMs?: number;
  logger?: Logger;
  /** Called with every report written (for `shuttle hid light --json`). */
  onWrite?: (report: HidReport, device: HidDeviceInfo) => void;
}

export const DEFAULT_LIGHT_REFRESH_MS = 500;

interface OpenLight {
  device: HidDeviceInfo;
  driver: LightDriver;
  conn: HidConnection;
}

export class StatusLight {
  private readonly opts: StatusLightOptions;
  private readonly backend: HidBackend;
  private readonly monitor: HidMonitor;
  private readonly ownMonitor: boolean;
  private readonly log: Logger;
  private readonly writes = new Mutex();
  private light: OpenLight | undefined;
  private current: StationState = 'idle';
  private lit = true;
  private timer: NodeJS.Timeout | undefined;
  private unwatch: (() => void) | undefined;
  private closed = false;
  private warnedOpen = new Set<string>();

  constructor(opts: StatusLightOptions) {
    this.opts = opts;
    this.backend = opts.backend ?? nodeHidBackend();
    this.ownMonitor = opts.monitor === undefined;
    this.monitor = opts.monitor ?? new HidMonitor(this.backend, { pollMs: opts.pollMs, logger: opts.logger });
    this.log = opts.logger ?? silentLogger;
  }

  get state(): StationState {
    return this.current;
  }

  /** The light in use, if one is connected. */
  get device(): { device: HidDeviceInfo; driver: LightDriverName } | undefined {
    return this.light ? { device: this.light.device, driver: this.light.driver.name } : undefined;
  }

  /** Starts looking for the light and refreshing it; resolves once the devices present now were looked at. */
  async start(): Promise<void> {
    let present: Array<Promise<void>> | undefined = [];
    this.unwatch = this.monitor.watch({
      attach: (d) => {
        const opened = this.attach(d);
        present?.push(opened);
      },
      detach: (d) => {
        if (this.light && this.light.device.path === d.path) void this.drop(this.light, 'status light unplugged');
      },
    });
    if (this.ownMonitor) await this.monitor.start();
    await Promise.all(present);
    present = undefined;
    if (!this.light) this.log.info({ driver: this.opts.driver, path: this.opts.path }, 'no status light found: waiting for one');
    const refresh = this.opts.refreshMs ?? DEFAULT_LIGHT_REFRESH_MS;
    this.timer = setInterval(() => void this.refresh(), refresh);
  }

  /** Shows `state` now (and from then on). */
  setState(state: StationState): Promise<void> {
    if (state === this.current) return Promise.resolve();
    this.current = state;
    this.lit = true;
    return this.write((l) => l.driver.show(STATE_SIGNALS[state], true));
  }

  /** Turns the light off (its timeout disarmed) and closes it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.unwatch?.();
    if (this.ownMonitor) this.monitor.stop();
    const light = this.light;
    if (!light) return;
    await this.write((l) => l.driver.off());
    this.light = undefined;
    await light.conn.close();
  }

  private refresh(): Promise<void> {
    const signal = STATE_SIGNALS[this.current];
    return this.write((l) => {
      if (signal.blink && !l.driver.blinksItself) {
        this.lit = !this.lit;
        return l.driver.show(signal, this.lit);
      }
      return l.driver.keepAlive(signal, this.lit);
    });
  }

  private wanted(d: HidDeviceInfo): LightDriver | undefined {
    if (this.opts.path !== undefined && d.path !== this.opts.path) return undefined;
    if (this.opts.serialNumber !== undefined && d.serialNumber !== this.opts.serialNumber) return undefined;
    if (this.opts.driver === 'auto') return driverForIds(d.vendorId, d.productId);
    const driver = LIGHT_DRIVER_TABLE[this.opts.driver];
    // A light named by its path is driven as configured whatever its ids (a clone, a test device).
    if (this.opts.path !== undefined) return driver;
    return driver.ids.some((id) => id.vendorId === d.vendorId && id.productId === d.productId) ? driver : undefined;
  }

  private async attach(d: HidDeviceInfo): Promise<void> {
    if (this.light || this.closed || d.path === undefined) return;
    const driver = this.wanted(d);
    if (!driver) return;
    const release = await this.writes.acquire(undefined);
    try {
      if (this.light || this.closed) return;
      let conn: HidConnection;
      try {
        conn = await this.backend.open(d.path);
      } catch (err) {
        if (!this.warnedOpen.has(d.path)) this.log.warn({ err, device: describeHid(d) }, 'cannot open the status light');
        this.warnedOpen.add(d.path);
        return;
      }
      const light: OpenLight = { device: d, driver, conn };
      this.light = light;
      this.lit = true;
      this.log.info({ device: describeHid(d), driver: driver.name }, 'status light connected');
      await this.send(light, [...driver.setup(), ...driver.show(STATE_SIGNALS[this.current], true)]);
    } finally {
      release();
    }
  }

  /** Writes what `reports` makes of the open light, one write at a time; a light gone is dropped. */
  private async write(reports: (light: OpenLight) => HidReport[]): Promise<void> {
    const release = await this.writes.acquire(undefined);
    try {
      const light = this.light;
      if (light) await this.send(light, reports(light));
    } finally {
      release();
    }
  }

  private async send(light: OpenLight, reports: HidReport[]): Promise<void> {
    try {
      for (const r of reports) {
        await writeReport(light.conn, r);
        this.opts.onWrite?.(r, light.device);
      }
    } catch (err) {
      // Looked for again on the next poll: a replug between two polls is never seen as an unplug.
      if (light.device.path !== undefined) this.monitor.forget(light.device.path);
      await this.drop(light, 'status light gone', err);
    }
  }

  private async drop(light: OpenLight, why: string, err?: unknown): Promise<void> {
    if (this.light !== light) return;
    this.light = undefined;
    this.log.info({ err, device: describeHid(light.device) }, why);
    await light.conn.close();
  }
}
