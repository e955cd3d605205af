import type { Logger } from '../log.js';
import type { CameraFacts } from '../camera-names.js';
import type { SourceOpener } from '../device/detect.js';
import { runIngestJob, type IngestEnvironment } from './ingest-job.js';
import type { JobContext, JobOutcome, JobScheduler } from './jobs.js';
import type { DeviceStatus } from './status.js';

/**
 * Devices that come and go: USB cameras (libusb hotplug, src/device/usb), mounted cards. A watcher
 * reports attach and detach; the registry turns an attach into an ingest job and a detach into the
 * cancellation of that job only.
 */

export interface AttachedDevice {
  /** Unique while attached, stable across its events: `usb:1-2.3`, `mount:8:17:/media/card`. */
  id: string;
  kind: 'camera' | 'card';
  label: string;
  /** How a person would name the source (`/media/card`, `usb:04a9:3294`). */
  uri: string;
  /**
   * The key of the work: two reports of one source (a watcher and a control request for the same
   * mount point) share it, so the scheduler runs it once. See `pathJobKey`.
   */
  jobKey: string;
  open: SourceOpener;
  /** A camera's ids and address, for `[tether] cameras` to match. */
  camera?: CameraFacts | undefined;
}

export interface DeviceEvents {
  attach(device: AttachedDevice): void;
  /** The device with this id is gone; its job, if any, is cancelled. */
  detach(id: string, reason?: string): void;
}

/** What the USB hotplug (and any later device source) implements to plug into the daemon. */
export interface DeviceWatcher {
  /** Short name for logs and status (`usb`, `mounts`). */
  readonly name: string;
  /** Starts watching. Devices already present are reported as attached before it resolves. */
  start(events: DeviceEvents): Promise<void>;
  /** Stops watching; no events after it resolves. Does not report detaches. */
  close(): Promise<void>;
}

/** The job key of a folder source: the same folder is the same work, however it was asked for. */
export function pathJobKey(absPath: string): string {
  return `path:${absPath}`;
}

interface Attached {
  device: AttachedDevice;
  watcher: string;
  attachedAt: string;
  job?: number | undefined;
}

export interface DeviceRegistryOptions {
  scheduler: JobScheduler;
  env: IngestEnvironment;
  resources: readonly string[];
  logger: Logger;
  /** The job body for a device that is not ingested once (a camera kept in a tethering session). */
  sessionFor?: ((device: AttachedDevice) => ((ctx: JobContext) => Promise<JobOutcome>) | undefined) | undefined;
  /** Called after a device was attached (with its job, if one started) and after it went away. */
  onChange?: ((change: 'connected' | 'gone', device: DeviceStatus, reason?: string) => void) | undefined;
}

export class DeviceRegistry {
  readonly #opts: DeviceRegistryOptions;
  readonly #watchers: DeviceWatcher[] = [];
  readonly #attached = new Map<string, Attached>();

  constructor(opts: DeviceRegistryOptions) {
    this.#opts = opts;
  }

  async add(watcher: DeviceWatcher): Promise<void> {
    this.#watchers.push(watcher);
    await watcher.start(this.events(watcher.name));
    this.#opts.logger.info({ watcher: watcher.name }, 'device watcher started');
  }

  /** The callbacks one watcher reports to (exposed for watchers started elsewhere, and tests). */
  events(watcherName: string): DeviceEvents {
    return {
      attach: (device) => this.#attach(watcherName, device),
      detach: (id, reason) => this.#detach(watcherName, id, reason),
    };
  }

  async close(): Promise<void> {
    await Promise.all(this.#watchers.map((w) => w.close().catch((err: unknown) => this.#opts.logger.warn({ err, watcher: w.name }, 'closing a device watcher failed'))));
  }

  /** Drops a watcher whose start failed (it is closed by the caller), so status does not list it. */
  forget(watcher: DeviceWatcher): void {
    const i = this.#watchers.indexOf(watcher);
    if (i >= 0) this.#watchers.splice(i, 1);
  }

  get watchers(): string[] {
    return this.#watchers.map((w) => w.name);
  }

  status(): DeviceStatus[] {
    return [...this.#attached.values()].map(describe);
  }

  #attach(watcher: string, device: AttachedDevice): void {
    const log = this.#opts.logger.child({ device: device.id, watcher });
    if (this.#attached.has(device.id)) {
      log.debug('device reported attached twice; ignoring');
      return;
    }
    const entry: Attached = { device, watcher, attachedAt: new Date().toISOString() };
    this.#attached.set(device.id, entry);
    log.info({ kind: device.kind, label: device.label, uri: device.uri }, 'device attached');
    try {
      const session = this.#opts.sessionFor?.(device);
      const { job } = this.#opts.scheduler.submit({
        key: device.jobKey,
        kind: device.kind,
        label: device.label,
        origin: session ? `tether:${watcher}` : `device:${watcher}`,
        // A session holds its destinations' locks while the camera stays (one run, as with `shuttle
        // tether`): other jobs on them wait in the queue, saying for which job, not on a lock file.
        resources: this.#opts.resources,
        run: session ?? ((ctx) => runIngestJob(this.#opts.env, device.open, ctx, { kind: device.kind })),
      });
      entry.job = job.id;
    } catch (err) {
      log.warn({ err }, 'no job for the attached device');
    }
    this.#opts.onChange?.('connected', describe(entry));
  }

  #detach(watcher: string, id: string, reason?: string): void {
    const entry = this.#attached.get(id);
    if (!entry) return;
    this.#attached.delete(id);
    this.#opts.logger.info({ device: id, watcher, reason }, 'device detached');
    this.#opts.scheduler.cancelKey(entry.device.jobKey, 'detach', reason ?? `${entry.device.label} went away`);
    this.#opts.onChange?.('gone', describe(entry), reason);
  }
}

function describe(a: Attached): DeviceStatus {
  return { id: a.device.id, kind: a.device.kind, label: a.device.label, uri: a.device.uri, watcher: a.watcher, attachedAt: a.attachedAt, job: a.job };
}
