import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Config } from '../config/index.js';
import { ShuttleError, errnoCode } from '../errors.js';
import type { Logger } from '../log.js';
import { Journal } from '../store/journal.js';
import { acquireLock, type Lock } from '../store/lock.js';
import { VERSION } from '../version.js';
import { ControlServer, type ControlHandlers } from './control.js';
import { DeviceRegistry, type DeviceWatcher } from './devices.js';
import { EventHub, type StationEventBody } from './events.js';
import { HotFolderFeed } from './hotfolder-feed.js';
import { DAEMON_LOCK_WAIT_MS, runIngestJob, type IngestEnvironment } from './ingest-job.js';
import { destinationsFromConfig, ingestSettingsFromConfig } from '../ingest/settings.js';
import { parseListen, uploadSettings } from '../config/index.js';
import { FileList } from '../store/file-list.js';
import { mayEjectDirectly, type EjectOptions, type EjectResult, type SystemdEjectOptions } from '../device/card/eject.js';
import { parseMountinfo } from '../device/card/mountinfo.js';
import type { HidBackend } from '../device/hid/index.js';
import type { ApiServer } from './http/server.js';
import type { StationMetrics } from './metrics.js';
import type { PreviewMaker } from './previews.js';
import type { CapturedShot, TetherSessions } from './tether-sessions.js';
import { JobScheduler, noSuchJob } from './jobs.js';
import { CARD_MOUNT_BASE, MountWatcher } from './mounts.js';
import { SystemdNotifier } from './notify.js';
import { PROTOCOL_VERSION } from './protocol.js';
import type { PtpIpWatcher } from './ptpip-watcher.js';
import { resolveRequestedSource, within, type AllowedRoot, type RequestedSource } from './request-source.js';
import { serverSocketPath } from './socket-path.js';
import { Sinks } from './sinks/index.js';
import { StationHid } from './station-hid.js';
import { StationStateTracker } from './station-state.js';
import type { DaemonStatus, JobSnapshot } from './status.js';
import { DaemonUploader } from './uploads.js';
import { UsbCameraWatcher } from './usb-cameras.js';
import { wipePolicies } from './wipe-policy.js';

/** Reading the mount table costs microseconds; a card is picked up within this of being mounted. */
const MOUNT_POLL_MS = 250;

/**
 * `shuttle run`, composed: journal, job scheduler, control socket, hot folders, device watchers and
 * the systemd notifier. Start order makes the daemon usable before it says READY; stop order lets
 * running jobs unwind (temp files removed, journal rows final) before the journal closes.
 */

export interface DaemonOptions {
  config: Config;
  stateDir: string;
  logger: Logger;
  env?: NodeJS.ProcessEnv | undefined;
  /** Hot folders in addition to the configured ones. */
  hotFolders?: readonly string[] | undefined;
  /** Device watchers in addition to the built-in ones (the USB hotplug plugs in here). */
  watchers?: readonly DeviceWatcher[] | undefined;
  notifier?: SystemdNotifier | undefined;
  /** Builds the USB camera watcher when `[daemon] usb_cameras` is on (tests give one over a fake bus). */
  usbWatcher?: ((logger: Logger) => UsbCameraWatcher) | undefined;
  /** The HTTP API's event-stream keep-alive interval and client buffer bound (tests make them small). */
  api?: { heartbeatMs?: number | undefined; sseMaxBufferBytes?: number | undefined } | undefined;
  /** The HID devices' backend and poll interval (tests give a fake node-hid). */
  hid?: { backend?: HidBackend | undefined; pollMs?: number | undefined } | undefined;
  /** Ejecting cards as the installed (unprivileged) daemon does, through systemd (tests give its systemctl and sysfs). */
  systemdEject?: Pick<SystemdEjectOptions, 'systemctl' | 'sysRoot' | 'mountinfo'> | undefined;
}

/** Where the daemon's single-instance lock lives: one daemon per state dir (journal). */
export function daemonLockPath(stateDir: string): string {
  return join(stateDir, 'daemon.lock');
}

const STATUS_LINE_EVERY_MS = 1_000;
const STATUS_LINE_PROGRESS_MS = 5_000;

export class Daemon {
  readonly socketPath: string;
  readonly scheduler: JobScheduler;
  /** Everything that happens, in order: the API's event stream, MQTT, the status light and notifications listen here. */
  readonly events: EventHub;
  readonly station: StationStateTracker;
  readonly #opts: DaemonOptions;
  readonly #log: Logger;
  readonly #notifier: SystemdNotifier;
  readonly #startedAt = new Date();
  readonly #feeds: HotFolderFeed[] = [];
  #usbWatcher: UsbCameraWatcher | undefined;
  #ptpipWatcher: PtpIpWatcher | undefined;
  #env!: IngestEnvironment;
  #lock: Lock | undefined;
  #journal: Journal | undefined;
  #server: ControlServer | undefined;
  #devices!: DeviceRegistry;
  #uploader: DaemonUploader | undefined;
  #api: ApiServer | undefined;
  #metrics: StationMetrics | undefined;
  #previews: PreviewMaker | undefined;
  #sinks: Sinks | undefined;
  #hid: StationHid | undefined;
  #tether: TetherSessions | undefined;
  #resources: string[] = [];
  /** Why a job is about to be cancelled by its card unit (an eject that gives up the card's wipe). */
  readonly #cancelReasons = new Map<number, string>();
  #stopping: Promise<void> | undefined;
  #statusTimer: NodeJS.Timeout | undefined;
  #resolveStopped!: () => void;
  /** Resolves once the daemon has stopped, whoever stopped it. */
  readonly stopped: Promise<void>;

  private constructor(opts: DaemonOptions) {
    this.#opts = opts;
    this.#log = opts.logger;
    this.#notifier = opts.notifier ?? new SystemdNotifier({ logger: opts.logger, env: opts.env });
    this.socketPath = serverSocketPath(opts.config.daemon.controlSocket, opts.env ?? process.env);
    this.events = new EventHub({ onListenerError: (err, e) => this.#log.warn({ err, event: e.type }, 'an event listener failed') });
    this.scheduler = new JobScheduler({
      logger: opts.logger,
      maxRunning: opts.config.daemon.maxJobs,
      onChange: (job) => {
        this.#statusLineSoon();
        this.#publishJob(job);
      },
      onProgress: (id, snapshot, phaseChanged) => this.events.progress(id, snapshot, phaseChanged),
    });
    this.station = new StationStateTracker(this.events, () => ({
      devices: this.#devices?.status() ?? [],
      jobs: this.scheduler.snapshot(),
      uploadsPending: this.#uploader?.status().depth ?? 0,
    }));
    this.stopped = new Promise((r) => (this.#resolveStopped = r));
  }

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const d = new Daemon(opts);
    try {
      await d.#start();
    } catch (err) {
      await d.#teardown();
      d.#resolveStopped();
      throw err;
    }
    return d;
  }

  async #start(): Promise<void> {
    const { config, stateDir } = this.#opts;
    const destinations = destinationsFromConfig(config);
    if (destinations.length === 0) throw new ShuttleError('USAGE', 'no destination: configure [[destinations]] (or give --dest DIR)');
    // Before anything is started: an API open to the network without a token is a configuration error.
    const api = config.api.listen === undefined ? undefined : await this.#apiSettings(config.api.listen);
    await mkdir(stateDir, { recursive: true, mode: 0o750 }).catch((cause: unknown) => {
      throw new ShuttleError('JOURNAL', `cannot create state directory ${stateDir}: ${errnoCode(cause) ?? String(cause)}`, { cause, context: { stateDir } });
    });
    this.#lock = await acquireLock(daemonLockPath(stateDir), { owner: { command: `run (control socket ${this.socketPath})` } });
    this.#journal = Journal.open(stateDir);
    const target = uploadSettings(config).target;
    if (target !== undefined) {
      this.#uploader = new DaemonUploader({
        config,
        target,
        journal: this.#journal,
        stateDir,
        logger: this.#log,
        env: this.#opts.env,
        onUploaded: (u) => this.events.publish({ type: 'file.uploaded', ...u }),
        onError: ({ code, message, ...upload }) => this.events.publish({ type: 'error', code, message, upload }),
      });
    }
    const uploader = this.#uploader;
    const env = this.#opts.env ?? process.env;
    const jobKind = (id: number): JobSnapshot['kind'] | undefined => this.scheduler.get(id)?.kind;
    const sinks = Sinks.start({
      config,
      hub: this.events,
      station: this.station,
      status: () => this.status(),
      jobKind,
      journal: this.#journal,
      destinations,
      logger: this.#log,
      env,
    });
    this.#sinks = sinks;
    this.#env = {
      journal: this.#journal,
      destinations,
      settings: ingestSettingsFromConfig(config, DAEMON_LOCK_WAIT_MS, uploader !== undefined),
      stateDir,
      timeZone: config.ingest.timeZone,
      ...(uploader ? { afterIngest: (summary, logger) => uploader.enqueue(summary.fileIds, logger), queueUpload: (ids, logger) => uploader.enqueue(ids, logger) } : {}),
      onFile: (job, source, f, preview) => {
        this.events.publish({
          type: f.state === 'verified' ? 'file.verified' : 'file.failed',
          job,
          source,
          path: f.path,
          fileId: f.fileId,
          size: f.size,
          mtimeMs: f.mtimeMs,
          copies: f.copies.map((c) => join(c.root, c.rel)),
        });
        return this.#previews?.add(job, f, preview);
      },
      wipe: wipePolicies(config),
      onFinished: (done, logger) => sinks.report(done, logger),
    };
    this.#resources = destinations.map((d) => `destination ${d.path}`);
    const previews = config.previews.make;
    if (previews === 'always' || (previews === 'auto' && (api !== undefined || config.tether.cameras.length > 0))) {
      const { PreviewMaker } = await import('./previews.js');
      this.#previews = new PreviewMaker({ stateDir, longEdge: config.tether.previewLongEdge, hub: this.events, logger: this.#log });
    }
    if (config.tether.cameras.length > 0) {
      const { TetherSessions } = await import('./tether-sessions.js');
      this.#tether = new TetherSessions({
        env: this.#env,
        cameras: config.tether.cameras,
        captureTarget: config.tether.captureTarget,
        previewLongEdge: this.#previews ? config.tether.previewLongEdge : undefined,
        reconnectTimeoutMs: config.tether.reconnectTimeout * 1000,
        onReconnect: () => this.#metrics?.cameraReconnected(),
        logger: this.#log,
      });
    }
    this.#devices = new DeviceRegistry({
      scheduler: this.scheduler,
      env: this.#env,
      resources: this.#resources,
      logger: this.#log,
      sessionFor: (device) => this.#tether?.runnerFor(device),
      onChange: (change, device, reason) => this.events.publish({ type: change === 'connected' ? 'device.connected' : 'device.gone', device, reason }),
    });

    this.#server = await ControlServer.listen({ path: this.socketPath, handlers: this.#handlers(), logger: this.#log });
    // Before the hot folders and watchers, so that metrics count their first files.
    if (api) await this.#startApi(api);

    const d = config.daemon;
    const folders = [...new Set([...d.hotFolders, ...(this.#opts.hotFolders ?? []).map((p) => resolve(p))])];
    for (const root of folders) this.#refuseOverlap(root, 'hot folder');
    for (const root of folders) {
      const feed = new HotFolderFeed({
        root,
        scheduler: this.scheduler,
        env: this.#env,
        settleMs: d.settleMs,
        batchMs: d.batchMs,
        retryMs: d.retryMs,
        resources: this.#resources,
        logger: this.#log.child({ hotFolder: root }),
      });
      this.#feeds.push(feed);
      await feed.start();
    }
    {
      // A backup drive mounted under /media is a destination, not a card to ingest into itself.
      const skip = (mountPoint: string): boolean => destinations.some((x) => overlaps(x.path, mountPoint));
      const roots = [...new Set([...d.watchMounts, CARD_MOUNT_BASE])];
      await this.#devices.add(new MountWatcher({ roots, logger: this.#log, skip, intervalMs: MOUNT_POLL_MS }));
    }
    if (d.usbCameras) await this.#startUsbWatcher();
    if (d.networkCameras !== false) {
      // Loaded on use: the mDNS library is only needed when network cameras are watched.
      const { PtpIpWatcher, networkCameraFilter } = await import('./ptpip-watcher.js');
      this.#ptpipWatcher = new PtpIpWatcher({ logger: this.#log, accept: networkCameraFilter(d.networkCameras) });
      await this.#devices.add(this.#ptpipWatcher);
    }
    for (const w of this.#opts.watchers ?? []) await this.#devices.add(w);
    this.#uploader?.start();
    this.#hid = await StationHid.start({
      config,
      capture: (signal) => this.#capture(signal),
      hub: this.events,
      state: () => this.station.view.state,
      logger: this.#log,
      backend: this.#opts.hid?.backend,
      pollMs: this.#opts.hid?.pollMs,
    });

    this.#log.info(
      {
        version: VERSION,
        socket: this.socketPath,
        stateDir,
        destinations: destinations.map((x) => x.path),
        hotFolders: folders,
        watchers: this.#devices.watchers,
        upload: this.#uploader ? target : undefined,
        api: this.#api?.url,
        maxJobs: d.maxJobs,
        systemd: this.#notifier.enabled,
        watchdogMs: this.#notifier.watchdogIntervalMs,
      },
      'daemon started',
    );
    await this.#notifier.ready(this.#statusLine());
    if (d.watchdog) this.#notifier.startWatchdog(() => this.#healthy());
  }

  /**
   * USB cameras by hotplug. A box without USB support (the native binding or libusb cannot load) still
   * runs for cards and hot folders: that is logged, not fatal.
   */
  async #startUsbWatcher(): Promise<void> {
    const d = this.#opts.config.daemon;
    const watcher = this.#opts.usbWatcher?.(this.#log) ?? new UsbCameraWatcher({ logger: this.#log, settleMs: d.usbSettleMs, pollMs: d.usbPollMs });
    try {
      await this.#devices.add(watcher);
      this.#usbWatcher = watcher;
    } catch (err) {
      this.#log.warn({ err }, 'USB cameras are not watched: USB is unavailable here (set [daemon] usb_cameras = false to silence this)');
      await watcher.close().catch(() => undefined);
      this.#devices.forget(watcher);
    }
  }

  /** Stops everything in order; resolves when done. Calling it again returns the same promise. */
  stop(reason = 'stop requested'): Promise<void> {
    this.#stopping ??= (async () => {
      this.#log.info({ reason, activeJobs: this.scheduler.activeCount }, 'daemon stopping');
      void this.#notifier.stopping(`stopping: ${reason}`);
      await this.#teardown(reason);
      this.#log.info({ uptimeSeconds: Math.round((Date.now() - this.#startedAt.getTime()) / 1000) }, 'daemon stopped');
      await this.#notifier.flush();
      this.#resolveStopped();
    })();
    return this.#stopping;
  }

  async #teardown(reason = 'the daemon is stopping'): Promise<void> {
    clearTimeout(this.#statusTimer);
    this.#notifier.stopWatchdog();
    // No new work first, then let running jobs unwind, then close what they used.
    // The upload drain stops at once (rows in flight go back to the queue, multipart state kept).
    const uploads = this.#uploader?.stop();
    await Promise.all(this.#feeds.map((f) => f.close().catch((err: unknown) => this.#log.warn({ err, hotFolder: f.root }, 'closing a hot folder failed'))));
    await this.#devices?.close();
    await this.scheduler.shutdown(reason);
    await uploads;
    // After the jobs, so that their last events are published and notified.
    await this.#sinks?.close();
    // After the jobs, so that clients waiting on one get its final state before the socket goes.
    await this.#server?.close();
    await this.#previews?.close();
    // After the jobs: the light's last state is what they ended in, then it goes dark.
    await this.#hid?.close();
    await this.#api?.close().catch((err: unknown) => this.#log.warn({ err }, 'closing the HTTP API failed'));
    this.#metrics?.close();
    this.station.close();
    this.events.close();
    this.#journal?.close();
    this.#lock?.release();
  }

  /** A job's state change as events: its new state, and the errors a finished job reports. */
  #publishJob(job: JobSnapshot): void {
    if (job.state === 'queued') this.events.publish({ type: 'job.queued', job });
    else if (job.state === 'running') this.events.publish({ type: 'job.started', job });
    else {
      for (const e of jobErrorEvents(job)) this.events.publish(e);
      if (job.error) this.events.publish({ type: 'error', code: job.error.code, message: job.error.message, job: job.id });
      this.events.publish({ type: 'job.finished', job });
    }
  }

  status(): DaemonStatus {
    const usage = process.resourceUsage();
    const mem = process.memoryUsage();
    return {
      version: VERSION,
      pid: process.pid,
      startedAt: this.#startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.#startedAt.getTime()) / 1000),
      stateDir: this.#opts.stateDir,
      controlSocket: this.socketPath,
      destinations: this.#env?.destinations.map((d) => d.path) ?? [],
      jobs: this.scheduler.snapshot(),
      hotFolders: this.#feeds.map((f) => f.status()),
      devices: this.#devices?.status() ?? [],
      watchers: this.#devices?.watchers ?? [],
      totals: this.scheduler.totals,
      ...(this.#uploader ? { uploads: this.#uploader.status() } : {}),
      station: this.station.view,
      ...(this.#api ? { api: { url: this.#api.url } } : {}),
      process: { rssBytes: mem.rss, heapUsedBytes: mem.heapUsed, cpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6 },
    };
  }

  /** Where the API listens and its token; refuses a listen beyond loopback without one (exit 2). */
  async #apiSettings(listen: string): Promise<{ host: string; port: number; token: string | undefined }> {
    const { host, port } = parseListen(listen)!;
    const { resolveApiToken, refuseOpenListen } = await import('./http/auth.js');
    const found = await resolveApiToken(this.#opts.config.api, this.#opts.env ?? process.env);
    refuseOpenListen(host, found?.token);
    if (found) this.#log.info({ from: found.origin }, 'HTTP API token loaded');
    return { host, port, token: found?.token };
  }

  /** The HTTP API, its metrics and the previews its dashboard shows (loaded only when configured). */
  async #startApi(api: { host: string; port: number; token: string | undefined }): Promise<void> {
    const [{ ApiServer }, { StationMetrics }] = await Promise.all([import('./http/server.js'), import('./metrics.js')]);
    const config = this.#opts.config;
    const files = new FileList(this.#journal!);
    this.#metrics = new StationMetrics(this.events, {
      version: VERSION,
      uploadQueue: () => {
        const u = this.#uploader?.status();
        return u && { files: u.depth, bytes: u.bytesPending };
      },
      devices: () => {
        const d = this.#devices?.status() ?? [];
        return { card: d.filter((x) => x.kind === 'card').length, camera: d.filter((x) => x.kind === 'camera').length };
      },
      verifiedAt: (fileId) => files.verifiedAt(fileId),
    });
    const uploader = this.#uploader;
    this.#api = await ApiServer.start({
      host: api.host,
      port: api.port,
      token: api.token,
      logger: this.#log,
      heartbeatMs: this.#opts.api?.heartbeatMs,
      sseMaxBufferBytes: this.#opts.api?.sseMaxBufferBytes,
      backend: {
        name: config.station,
        version: VERSION,
        startedAt: this.#startedAt.toISOString(),
        stateDir: this.#opts.stateDir,
        events: this.events,
        metrics: this.#metrics,
        files,
        view: () => this.station.view,
        devices: () => this.#devices.status(),
        jobs: () => this.scheduler.snapshot(),
        job: (id) => this.scheduler.get(id),
        cancel: (id) => this.#cancelByHand(id, 'cancelled from the API'),
        destinations: () => this.#env.destinations.map((d) => d.path),
        uploads: uploader,
        eject: (id) => this.#eject(id),
        capture: (signal) => this.#capture(signal),
      },
    });
  }

  /**
   * Unmounts a card and powers it off, unless its job still copies or reads it. A job that only waits for
   * the cloud (after-cloud: every local copy verified) is stopped first: the card keeps every file, its
   * wipe is given up and said so in the job's errors, its report, the log and the job's events, and the
   * uploads go on from the local copies.
   */
  async #eject(deviceId: string): Promise<EjectResult> {
    const { httpError } = await import('./http/errors.js');
    const device = this.#devices.status().find((d) => d.id === deviceId);
    if (!device) throw httpError(404, `no device ${deviceId} is attached`);
    if (device.kind !== 'card') throw httpError(409, `${device.label} is a camera: switch it off or unplug it`);
    const job = device.job === undefined ? undefined : this.scheduler.get(device.job);
    let forfeit: string | undefined;
    if (job && (job.state === 'queued' || job.state === 'running')) {
      if (job.progress?.phase !== 'waiting-for-cloud') {
        throw httpError(409, `job ${job.id} is still ${job.state} on ${device.label}: cancel it (which ejects the card once the job has stopped), or wait for it`, 'LOCKED', {
          job: job.id,
        });
      }
      forfeit = `${device.label} ejected while its wipe waited for the cloud: the wipe is given up, every file stays on the card (the uploads go on from the verified local copies)`;
    }
    const how = await this.#ejectHow(deviceId, device.uri);
    if (!how) throw httpError(404, `${device.uri} is no longer mounted`);
    if (job === undefined || forfeit === undefined) return this.#ejectStopped(how);
    return this.#stopAndEject(how, job.id, forfeit);
  }

  /** What ejecting the card mounted at `uri` needs; undefined when nothing is mounted there any more. */
  async #ejectHow(deviceId: string, uri: string): Promise<EjectOptions | undefined> {
    const mount = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).find((m) => m.target === uri);
    return mount && { mountPoint: mount.target, dev: `${mount.major}:${mount.minor}`, logger: this.#log.child({ device: deviceId }) };
  }

  /** Whether this process unmounts and powers off by itself, or asks systemd (as installed). */
  #ejectsDirectly(): boolean {
    return this.#opts.systemdEject === undefined && mayEjectDirectly();
  }

  /** Ejects a card whose job (if any) has ended. */
  async #ejectStopped(how: EjectOptions): Promise<EjectResult> {
    const { ejectCard, ejectThroughSystemd } = await import('../device/card/eject.js');
    return this.#ejectsDirectly() ? ejectCard(how) : ejectThroughSystemd({ ...how, ...this.#opts.systemdEject });
  }

  /** Stops a card's job with `reason` and ejects the card once the job no longer reads it. */
  async #stopAndEject(how: EjectOptions, jobId: number, reason: string): Promise<EjectResult> {
    const { ejectCard, ejectThroughSystemd } = await import('../device/card/eject.js');
    if (this.#ejectsDirectly()) {
      this.#log.warn({ job: jobId }, reason);
      this.scheduler.cancel(jobId, 'cancel', reason);
      await this.scheduler.wait(jobId);
      return ejectCard(how);
    }
    // The installed daemon has no privilege to unmount or power off: systemd's eject unit does it. It stops
    // the card's unit first, whose `request ingest --wait` then cancels the job: with this reason, and
    // while the unit still runs (cancelled here first, the unit could release the card before the eject
    // unit looks, and the card would be left powered).
    this.#cancelReasons.set(jobId, reason);
    try {
      const ejected = await ejectThroughSystemd({ ...how, ...this.#opts.systemdEject });
      this.#log.warn({ job: jobId }, reason);
      return ejected;
    } finally {
      // A card mounted without a card unit: nothing else stopped the job. One the eject failed for is
      // stopped all the same.
      this.scheduler.cancel(jobId, 'cancel', reason);
      this.#cancelReasons.delete(jobId);
    }
  }

  /**
   * A job cancelled by hand (the API, `shuttle request cancel`). A card's job ends with the card as Eject
   * leaves it, unmounted and its reader powered off, once the job no longer reads it: the crew is taking
   * the card back, and under the installed units its card unit would unmount it anyway, taking it off
   * the dashboard before Eject could be pressed and leaving the reader powered. The job still ends
   * cancelled, so the station never shows the card safe to pull for it.
   */
  #cancelByHand(id: number, reason: string | undefined): JobSnapshot | undefined {
    const job = this.scheduler.get(id);
    const device = job && (job.state === 'queued' || job.state === 'running') ? this.#devices.status().find((d) => d.job === id && d.kind === 'card') : undefined;
    if (device === undefined) return this.scheduler.cancel(id, 'cancel', reason);
    const why = reason ?? 'cancelled on request';
    // Where this process ejects by itself the job stops now; under the installed units, once the eject
    // unit has stopped the card's unit (see #stopAndEject).
    const snapshot = this.#ejectsDirectly() ? this.scheduler.cancel(id, 'cancel', why) : this.scheduler.get(id);
    const ejected = (async () => {
      const how = await this.#ejectHow(device.id, device.uri);
      if (how) return this.#stopAndEject(how, id, why);
      // Not a mount (a folder), or unmounted meanwhile: nothing to eject.
      this.scheduler.cancel(id, 'cancel', why);
      return undefined;
    })();
    ejected.then(
      (r) => r && this.#log.info({ device: device.id, job: id, ...r }, `${device.label}: its job was cancelled by hand; the card is ejected`),
      (err: unknown) => this.#log.error({ err, device: device.id, job: id }, `${device.label}: its job was cancelled by hand, but the card could not be ejected`),
    );
    return snapshot;
  }

  #handlers(): ControlHandlers {
    return {
      ping: () => ({ version: VERSION, protocol: PROTOCOL_VERSION, pid: process.pid }),
      status: () => this.status(),
      ingest: async ({ source }) => {
        const { key, kind, label, open } = await this.#requestedSource(source);
        return this.scheduler.submit({ key, kind, label, origin: 'request', resources: this.#resources, run: (ctx) => runIngestJob(this.#env, open, ctx, { kind }) });
      },
      cancel: ({ job, stopping }) => {
        const snap = stopping ? this.scheduler.cancel(job, 'cancel', this.#cancelReasons.get(job)) : this.#cancelByHand(job, this.#cancelReasons.get(job));
        if (!snap) throw noSuchJob(job);
        return { job: snap };
      },
      wait: async ({ job }, { signal }) => ({ job: await this.scheduler.wait(job, signal) }),
      capture: ({ camera }, { signal }) => this.#capture(signal, camera),
    };
  }

  /** Fires a tethered camera; SOURCE_NOT_FOUND (HTTP 409) when none is in session or tether mode is off. */
  async #capture(signal: AbortSignal, camera?: string): Promise<CapturedShot> {
    if (!this.#tether) {
      throw new ShuttleError('SOURCE_NOT_FOUND', 'no camera is tethered: the daemon keeps cameras in session only when [tether] cameras names them (or use shuttle tether)', {
        context: { http: 409 },
      });
    }
    return this.#tether.capture(signal, camera);
  }

  /** A requested source, if the configuration allows it (see request-source.ts). */
  async #requestedSource(source: string): Promise<RequestedSource> {
    const d = this.#opts.config.daemon;
    const roots: AllowedRoot[] = [
      { path: CARD_MOUNT_BASE, setting: `the card mount base ${CARD_MOUNT_BASE}` },
      ...d.watchMounts.map((path) => ({ path, setting: '[daemon] watch_mounts' })),
      ...this.#feeds.map((f) => ({ path: f.root, setting: '[daemon] hot_folders' })),
      ...d.allowedSources.map((path) => ({ path, setting: '[daemon] allowed_sources' })),
    ];
    const requested = await resolveRequestedSource(source, {
      roots,
      usbCameras: async () => {
        if (this.#usbWatcher) return this.#usbWatcher.attached;
        // Not watching USB (usb_cameras off, or it failed to start): look at the bus now.
        const { findUsbCameras } = await import('../device/usb/discovery.js');
        return (await findUsbCameras(undefined, { logger: this.#log })).map((c) => c.info);
      },
      networkCameras: () => this.#ptpipWatcher?.cameras ?? [],
      networkAddresses: typeof d.networkCameras === 'boolean' ? [] : d.networkCameras,
    });
    if (requested.kind !== 'camera') this.#refuseOverlap(requested.label, 'source');
    return requested;
  }

  /** A source inside a destination (or holding one) would ingest Shuttle's own copies, again and again. */
  #refuseOverlap(path: string, what: string): void {
    const dest = this.#env.destinations.find((x) => overlaps(x.path, path));
    if (dest) {
      throw new ShuttleError('USAGE', `${what} ${path} overlaps destination ${dest.path}: one must not be inside the other`, {
        context: { path, destination: dest.path, reason: 'bad-args' },
      });
    }
  }

  #healthy(): boolean {
    return this.#journal?.answers() ?? false;
  }

  /** Refreshes STATUS= soon after a job changes state, and every few seconds while jobs are active (progress). */
  #statusLineSoon(delay = STATUS_LINE_EVERY_MS): void {
    if (this.#statusTimer || this.#stopping || !this.#notifier.enabled) return;
    this.#statusTimer = setTimeout(() => {
      this.#statusTimer = undefined;
      if (this.#stopping) return;
      void this.#notifier.status(this.#statusLine());
      if (this.scheduler.activeCount > 0) this.#statusLineSoon(STATUS_LINE_PROGRESS_MS);
    }, delay);
    this.#statusTimer.unref();
  }

  /** The one-line STATUS= that `systemctl status shuttle` shows. */
  #statusLine(): string {
    const { active } = this.scheduler.snapshot();
    const running = active.filter((j) => j.state === 'running');
    const queued = active.length - running.length;
    const parts: string[] = [];
    if (running.length === 0 && queued === 0) parts.push('idle');
    for (const j of running.slice(0, 2)) parts.push(describeRunning(j));
    if (running.length > 2) parts.push(`${running.length - 2} more running`);
    if (queued) parts.push(`${queued} queued`);
    const up = this.#uploader?.status();
    if (up && up.depth > 0) parts.push(`${up.depth} to upload${up.state === 'backing-off' ? ' (backing off)' : ''}`);
    if (this.#feeds.length) parts.push(`${this.#feeds.length} hot folder${this.#feeds.length === 1 ? '' : 's'}`);
    return parts.join('; ');
  }
}

/** Whether one path is the other or inside it. */
export function overlaps(a: string, b: string): boolean {
  return within(a, b) || within(b, a);
}

function describeRunning(j: JobSnapshot): string {
  const p = j.progress;
  const files = p ? ` ${p.filesDone}/${p.filesTotal} files` : '';
  const rate = j.rateBytesPerSec ? ` ${(j.rateBytesPerSec / 1e6).toFixed(1)} MB/s` : '';
  return `job ${j.id} ${j.label}${files}${rate}`;
}

/**
 * A finished job's errors as events: those its result lists (the first 20), each saying how many the job
 * had in all, then, when it had more, one saying how many were left out and of which codes. Not all of
 * them: a card of thousands of failed files would flood the event history every client replays.
 */
export function jobErrorEvents(job: JobSnapshot): StationEventBody[] {
  const listed = job.result?.errors ?? [];
  const counts = job.result?.errorCounts ?? {};
  const total = Math.max(
    listed.length,
    Object.values(counts).reduce((n, c) => n + c, 0),
  );
  const events: StationEventBody[] = listed.map((e) => ({ type: 'error', code: e.code, message: e.message, job: job.id, path: e.path, jobErrors: total }));
  const omitted = total - listed.length;
  if (omitted <= 0) return events;
  const omittedByCode: Record<string, number> = { ...counts };
  for (const e of listed) omittedByCode[e.code] = (omittedByCode[e.code] ?? 0) - 1;
  for (const [code, n] of Object.entries(omittedByCode)) if (n <= 0) delete omittedByCode[code];
  const byCode = Object.entries(omittedByCode).sort((a, b) => b[1] - a[1]);
  events.push({
    type: 'error',
    // The code most of the left-out errors have, so that a list by code shows them where they belong.
    code: byCode[0]?.[0] ?? listed.at(-1)?.code ?? 'INTERNAL',
    message: `job ${job.id} (${job.label}) had ${total} errors; ${omitted} more not listed here (${byCode.map(([c, n]) => `${c} ${n}`).join(', ')}): its report names each`,
    job: job.id,
    jobErrors: total,
    omitted,
    omittedByCode,
  });
  return events;
}
