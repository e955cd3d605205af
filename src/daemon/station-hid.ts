import type { Config } from '../config/index.js';
import { HidMonitor, PedalWatcher, StatusLight, nodeHidBackend, pedalBindings, type HidBackend } from '../device/hid/index.js';
import { captureOnPedal, type PedalCaptures } from '../device/hid/pedal-capture.js';
import type { Logger } from '../log.js';
import type { EventHub, StationState } from './events.js';

/**
 * The daemon's HID devices: the `[status_light]` showing the station state, and the `[[pedals]]` whose
 * capture fires a tethered camera. One HID monitor is shared by both, so the device list is polled once.
 * HID is a nicety next to the ingest: a light or pedal that is missing, unplugged or whose backend cannot
 * load is logged and the daemon carries on.
 */

export interface StationHidOptions {
  config: Pick<Config, 'statusLight' | 'pedals'>;
  hub: EventHub;
  /** The station state now (the light shows it from the start, not only from the next change). */
  state: () => StationState;
  /** What a pedal's capture does: fire a tethered camera. */
  capture: (signal: AbortSignal) => Promise<unknown>;
  logger: Logger;
  /** Tests give a fake node-hid. */
  backend?: HidBackend | undefined;
  pollMs?: number | undefined;
}

export class StationHid {
  readonly #log: Logger;
  #monitor: HidMonitor | undefined;
  #light: StatusLight | undefined;
  #pedals: PedalWatcher | undefined;
  #captures: PedalCaptures | undefined;
  #unsubscribe: (() => void) | undefined;

  private constructor(logger: Logger) {
    this.#log = logger;
  }

  /** Undefined when the config names no HID device; never throws. */
  static async start(opts: StationHidOptions): Promise<StationHid | undefined> {
    const lightConfig = opts.config.statusLight;
    const bindings = pedalBindings(opts.config.pedals ?? []).filter((b) => b.action === 'capture');
    if (lightConfig === undefined && bindings.length === 0) return undefined;
    const log = opts.logger.child({ hid: true });
    const hid = new StationHid(log);
    try {
      const backend = opts.backend ?? nodeHidBackend();
      hid.#monitor = new HidMonitor(backend, { pollMs: opts.pollMs, logger: log });
      await hid.#monitor.start();
      if (bindings.length > 0) {
        const pedals = new PedalWatcher({ bindings, backend, monitor: hid.#monitor, logger: log });
        hid.#pedals = pedals;
        // Failures are logged by captureOnPedal; without a tethered camera a press says so there.
        hid.#captures = captureOnPedal(pedals, { capture: opts.capture, logger: log });
        await pedals.start();
      }
      if (lightConfig !== undefined) {
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
      }
    } catch (err) {
      log.warn({ err }, 'HID devices are not watched (the daemon runs without its status light and pedals)');
    }
    return hid;
  }

  #show(state: StationState): void {
    this.#light?.setState(state).catch((err: unknown) => this.#log.warn({ err, state }, 'the status light could not be set'));
  }

  /** Stops the pedals (captures in flight stop waiting), turns the light off and stops watching HID devices. */
  async close(): Promise<void> {
    this.#unsubscribe?.();
    this.#monitor?.stop();
    await this.#captures?.close();
    await this.#pedals?.close().catch((err: unknown) => this.#log.warn({ err }, 'closing the pedals failed'));
    await this.#light?.close().catch((err: unknown) => this.#log.warn({ err }, 'closing the status light failed'));
  }
}
