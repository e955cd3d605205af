import type { Config } from '../config/index.js';
import { HidMonitor, StatusLight, nodeHidBackend, type HidBackend } from '../device/hid/index.js';
import type { Logger } from '../log.js';
import type { EventHub, StationState } from './events.js';

/**
 * The daemon's HID devices: the `[status_light]` showing the station state. One HID monitor is shared by
 * everything here, so the device list is polled once. HID is a nicety next to the ingest: a light that
 * is missing, unplugged or whose backend cannot load is logged and the daemon carries on.
 */

export interface StationHidOptions {
  config: Pick<Config, 'statusLight'>;
  hub: EventHub;
  /** The station state now (the light shows it from the start, not only from the next change). */
  state: () => StationState;
  logger: Logger;
  /** Tests give a fake node-hid. */
  backend?: HidBackend | undefined;
  pollMs?: number | undefined;
}

export class StationHid {
  readonly #log: Logger;
  #monitor: HidMonitor | undefined;
  #light: StatusLight | undefined;
  #unsubscribe: (() => void) | undefined;

  private constructor(logger: Logger) {
    this.#log = logger;
  }

  /** Undefined when the config names no HID device; never throws. */
  static async start(opts: StationHidOptions): Promise<StationHid | undefined> {
    const lightConfig = opts.config.statusLight;
    if (lightConfig === undefined) return undefined;
    const log = opts.logger.child({ hid: true });
    const hid = new StationHid(log);
    try {
      const backend = opts.backend ?? nodeHidBackend();
      hid.#monitor = new HidMonitor(backend, { pollMs: opts.pollMs, logger: log });
      await hid.#monitor.start();
      const light = new StatusLight({
        driver: lightConfig.driver,
        ...(lightConfig.path === undefined ? {} : { path: lightConfig.path }),
        ...(lightConfig.serial === undefined ? {} : { serialNumber: lightConfig.serial }),
        backend,
        monitor: hid.#monitor,
        logger: log,
      });
      hid.#light = light;
      // Subscribed before the light starts, so that no change between the two is missed.
      hid.#unsubscribe = opts.hub.subscribe((e) => {
        if (e.type === 'station.state') hid.#show(e.state);
      });
      hid.#show(opts.state());
      await light.start();
    } catch (err) {
      log.warn({ err }, 'the status light is not driven (the daemon runs without it)');
    }
    return hid;
  }

  #show(state: StationState): void {
    this.#light?.setState(state).catch((err: unknown) => this.#log.warn({ err, state }, 'the status light could not be set'));
  }

  /** Turns the light off and stops watching HID devices. */
  async close(): Promise<void> {
    this.#unsubscribe?.();
    this.#monitor?.stop();
    await this.#light?.close().catch((err: unknown) => this.#log.warn({ err }, 'closing the status light failed'));
  }
}
