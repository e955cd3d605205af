import { ptpipCameraOpener } from '../device/detect.js';
import { PtpIpDiscoverer, type DiscoveredCamera, type DiscoveryOptions } from '../device/ptpip/discovery.js';
import type { Logger } from '../log.js';
import type { AttachedDevice, DeviceEvents, DeviceWatcher } from './devices.js';
import { cameraListed } from './request-source.js';

/**
 * Network cameras for the daemon: scans the local network for PTP/IP cameras (mDNS `_ptp._tcp`, SSDP)
 * every `intervalMs` and reports a camera attached when it first answers and detached when it said
 * goodbye (mDNS) or missed `missedScans` scans in a row (Wi-Fi cameras that power off say nothing).
 */

export interface PtpIpWatcherOptions {
  logger: Logger;
  /** Time between scans (default 10 s). */
  intervalMs?: number | undefined;
  /** How long each scan listens for answers (default 2 s). */
  scanWindowMs?: number | undefined;
  /** Scans a camera may miss before it counts as gone (default 3). */
  missedScans?: number | undefined;
  /** Which discovery protocols to use (default both), and their options. */
  discovery?: DiscoveryOptions | undefined;
  /** Only these cameras become devices (the `network_cameras` allowlist, see `networkCameraFilter`); default all. */
  accept?: ((camera: DiscoveredCamera) => boolean) | undefined;
  /** The discoverer to scan with (tests give a fake); default mDNS and SSDP with `discovery`. */
  discoverer?: Pick<PtpIpDiscoverer, 'scan' | 'onGoodbye' | 'close'> | undefined;
}

const MAX_IGNORED_REMEMBERED = 256;

interface Known {
  camera: DiscoveredCamera;
  missed: number;
}

export class PtpIpWatcher implements DeviceWatcher {
  readonly name = 'ptpip';
  readonly #opts: PtpIpWatcherOptions;
  readonly #known = new Map<string, Known>();
  /** Cameras refused by `accept`, so that each is logged once (forgotten past a bound: anyone can announce many). */
  readonly #ignored = new Set<string>();
  #discoverer: Pick<PtpIpDiscoverer, 'scan' | 'onGoodbye' | 'close'> | undefined;
  #events: DeviceEvents | undefined;
  #timer: NodeJS.Timeout | undefined;
  #scanning: Promise<void> | undefined;
  readonly #stop = new AbortController();
  #offGoodbye: (() => void) | undefined;

  constructor(opts: PtpIpWatcherOptions) {
    this.#opts = opts;
  }

  async start(events: DeviceEvents): Promise<void> {
    this.#events = events;
    this.#discoverer = this.#opts.discoverer ?? new PtpIpDiscoverer({ ...this.#opts.discovery, logger: this.#opts.logger });
    this.#offGoodbye = this.#discoverer.onGoodbye((uri) => this.#gone(uri, 'the camera said goodbye on mDNS'));
    await this.scan();
    this.#timer = setInterval(() => void this.scan(), this.#opts.intervalMs ?? 10_000);
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#stop.abort();
    this.#offGoodbye?.();
    await this.#scanning;
    await this.#discoverer?.close();
    this.#events = undefined;
  }

  /** One scan now (overlapping calls share it); reports what changed. */
  scan(): Promise<void> {
    this.#scanning ??= this.#scan().finally(() => (this.#scanning = undefined));
    return this.#scanning;
  }

  async #scan(): Promise<void> {
    const d = this.#discoverer;
    if (!d || this.#stop.signal.aborted) return;
    let cameras: DiscoveredCamera[];
    try {
      cameras = await d.scan({ windowMs: this.#opts.scanWindowMs ?? 2000, signal: this.#stop.signal });
    } catch (err) {
      if (!this.#stop.signal.aborted) this.#opts.logger.warn({ err }, 'network camera scan failed');
      return;
    }
    if (this.#stop.signal.aborted || !this.#events) return;
    const seen = new Set<string>();
    for (const cam of cameras) {
      if (this.#opts.accept && !this.#opts.accept(cam)) {
        if (!this.#ignored.has(cam.uri)) {
          this.#opts.logger.info({ camera: cam.uri, guid: cam.guid, name: cam.name, via: cam.via }, 'network camera not in [daemon] network_cameras; ignored');
          if (this.#ignored.size >= MAX_IGNORED_REMEMBERED) this.#ignored.clear();
          this.#ignored.add(cam.uri);
        }
        continue;
      }
      seen.add(cam.uri);
      const k = this.#known.get(cam.uri);
      if (k) {
        k.missed = 0;
        k.camera = cam;
        continue;
      }
      this.#known.set(cam.uri, { camera: cam, missed: 0 });
      this.#events.attach(networkCamera(cam));
    }
    const limit = this.#opts.missedScans ?? 3;
    for (const [uri, k] of this.#known) {
      if (seen.has(uri)) continue;
      k.missed += 1;
      if (k.missed >= limit) this.#gone(uri, `no answer to ${k.missed} network scans`);
    }
  }

  /** The cameras attached now (announced and admitted). */
  get cameras(): DiscoveredCamera[] {
    return [...this.#known.values()].map((k) => k.camera);
  }

  #gone(uri: string, reason: string): void {
    if (!this.#known.delete(uri)) return;
    this.#events?.detach(uri, reason);
  }
}

/** `[daemon] network_cameras` as a filter: true admits every camera, a list those it names (see `cameraListed`). */
export function networkCameraFilter(setting: boolean | readonly string[]): (camera: DiscoveredCamera) => boolean {
  if (typeof setting === 'boolean') return () => setting;
  return (camera) => cameraListed(setting, camera);
}

/** A discovered camera as a daemon device; opening it connects the way `shuttle ingest ptpip:HOST:PORT` does. */
export function networkCamera(cam: DiscoveredCamera): AttachedDevice {
  const label = [cam.manufacturer, cam.model].filter(Boolean).join(' ') || cam.name;
  return {
    id: cam.uri,
    kind: 'camera',
    label: `${label} (${cam.host}, ${cam.via})`,
    uri: cam.uri,
    jobKey: cam.uri,
    open: ptpipCameraOpener(cam.host, cam.port),
    camera: { transport: 'ptpip', host: cam.host, port: cam.port, serial: cam.guid },
  };
}
