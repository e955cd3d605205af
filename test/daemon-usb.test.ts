import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { normalizeConfig } from '../src/config/index.js';
import { Daemon } from '../src/daemon/daemon.js';
import { DeviceRegistry, type AttachedDevice, type DeviceEvents } from '../src/daemon/devices.js';
import { DAEMON_LOCK_WAIT_MS, type IngestEnvironment } from '../src/daemon/ingest-job.js';
import { JobScheduler } from '../src/daemon/jobs.js';
import { UsbCameraWatcher } from '../src/daemon/usb-cameras.js';
import type { Source, SourceIdentity, SourceItem } from '../src/device/source.js';
import type { UsbCameraInfo } from '../src/device/usb/discovery.js';
import type { UsbHotplugBus, UsbPlugListener } from '../src/device/usb/hotplug.js';
import { ShuttleError, abortReason, isShuttleError } from '../src/errors.js';
import { destinationsFromConfig, ingestSettingsFromConfig } from '../src/ingest/settings.js';
import { Journal } from '../src/store/journal.js';
import { runCli } from './support/cli.js';
import { captureLog, spawnDaemon, tempDirWithOwnLocks, type CapturedLog } from './support/daemon-helpers.js';
import { tempDir } from './support/tree.js';

/**
 * The USB camera watcher against a fake of the one layer below it (the bus: plug events and "is the
 * device at this port a camera"), which stands for libusb here; a real camera is plugged into the QEMU
 * guest in test/box-e2e.test.ts.
 */

function camera(location: string, overrides: Partial<UsbCameraInfo> = {}): UsbCameraInfo {
  const [bus, port] = location.split('-') as [string, string];
  return {
    vendorId: 0x04a9,
    productId: 0x32d4,
    busNumber: Number(bus),
    deviceAddress: 7,
    portPath: port,
    location,
    interfaceNumber: 0,
    protocol: 'ptp',
    manufacturer: 'Canon Inc.',
    product: 'Canon EOS R6',
    ...overrides,
  };
}

/** What is plugged in where; a device that is not a camera has no camera info. */
class FakeBus implements UsbHotplugBus {
  readonly mode = 'libusb' as const;
  readonly plugged = new Map<string, { vendorId: number; productId: number; camera?: UsbCameraInfo }>();
  readonly lookups: string[] = [];
  listener: UsbPlugListener | undefined;
  /** Makes cameraAt wait for this before answering. */
  lookupGate: Promise<void> | undefined;

  async cameras(): Promise<UsbCameraInfo[]> {
    return [...this.plugged.values()].flatMap((d) => (d.camera ? [d.camera] : []));
  }

  async cameraAt(location: string): Promise<UsbCameraInfo | undefined> {
    this.lookups.push(location);
    // Read first, answer later: as libusb does, the device may go while its descriptors are read.
    const found = this.plugged.get(location)?.camera;
    await this.lookupGate;
    return found;
  }

  watch(listener: UsbPlugListener): () => void {
    this.listener = listener;
    return () => (this.listener = undefined);
  }

  plugCamera(info: UsbCameraInfo): void {
    this.plugged.set(info.location, { vendorId: info.vendorId, productId: info.productId, camera: info });
    this.listener?.attach({ location: info.location, vendorId: info.vendorId, productId: info.productId });
  }

  plugOther(location: string, vendorId = 0x046d, productId = 0xc52b): void {
    this.plugged.set(location, { vendorId, productId });
    this.listener?.attach({ location, vendorId, productId });
  }

  unplug(location: string): void {
    const d = this.plugged.get(location);
    this.plugged.delete(location);
    this.listener?.detach({ location, vendorId: d?.vendorId ?? 0, productId: d?.productId ?? 0 });
  }
}

/** Records what the watcher reports. */
function recorder(): { events: DeviceEvents; log: string[]; devices: AttachedDevice[] } {
  const log: string[] = [];
  const devices: AttachedDevice[] = [];
  return {
    log,
    devices,
    events: {
      attach: (d) => {
        devices.push(d);
        log.push(`attach ${d.id}`);
      },
      detach: (id) => log.push(`detach ${id}`),
    },
  };
}

const SETTLE = 150;
let watchers: UsbCameraWatcher[] = [];
let log: CapturedLog;

function watcher(bus: FakeBus, extra: Partial<ConstructorParameters<typeof UsbCameraWatcher>[0]> = {}): UsbCameraWatcher {
  const w = new UsbCameraWatcher({ logger: log.logger, settleMs: SETTLE, bus: async () => bus, ...extra });
  watchers.push(w);
  return w;
}

beforeEach(() => {
  log = captureLog();
});
afterEach(async () => {
  for (const w of watchers.splice(0)) await w.close();
});

describe('USB camera watcher', () => {
  test('cameras-present-at-start-are-reported-before-start-resolves-and-logged-with-vendor-product-and-port', async () => {
    const bus = new FakeBus();
    bus.plugged.set('1-2', { vendorId: 0x04a9, productId: 0x32d4, camera: camera('1-2') });
    bus.plugged.set('1-3', { vendorId: 0x046d, productId: 0xc52b });
    const r = recorder();
    await watcher(bus).start(r.events);
    expect(r.log).toEqual(['attach usb:1-2']);
    expect(r.devices[0]).toMatchObject({ id: 'usb:1-2', kind: 'camera', uri: 'usb:1-2', jobKey: 'usb:1-2', label: 'Canon Inc. Canon EOS R6 (usb:1-2)' });
    const line = log.lines.find((l) => l.msg === 'camera attached');
    expect(line).toMatchObject({ vendorId: '04a9', productId: '32d4', location: '1-2', protocol: 'ptp', present: true });
    expect(log.lines.find((l) => l.msg === 'watching USB for cameras')).toMatchObject({ mode: 'libusb', cameras: 1 });
  });

  test('a-camera-plugged-in-is-reported-after-it-settles-and-one-that-re-enumerates-meanwhile-only-once', async () => {
    const bus = new FakeBus();
    const r = recorder();
    await watcher(bus).start(r.events);
    bus.plugCamera(camera('2-1.4'));
    await sleep(SETTLE / 3);
    expect(r.log).toEqual([]); // still settling: nothing looked at yet
    bus.unplug('2-1.4');
    bus.plugCamera(camera('2-1.4', { deviceAddress: 8 }));
    await sleep(SETTLE * 3);
    expect(r.log).toEqual(['attach usb:2-1.4']);
    expect(bus.lookups).toEqual(['2-1.4']);
    expect(log.lines.filter((l) => l.msg === 'camera attached').map((l) => [l['location'], l['present']])).toEqual([['2-1.4', false]]);
  });

  test('a-usb-device-that-is-not-a-camera-is-not-reported', async () => {
    const bus = new FakeBus();
    const r = recorder();
    await watcher(bus).start(r.events);
    bus.plugOther('1-5');
    await sleep(SETTLE * 3);
    expect(bus.lookups).toEqual(['1-5']);
    expect(r.log).toEqual([]);
    bus.unplug('1-5');
    expect(r.log).toEqual([]);
  });

  test('a-camera-unplugged-before-it-settled-is-never-reported', async () => {
    const bus = new FakeBus();
    const r = recorder();
    await watcher(bus).start(r.events);
    bus.plugCamera(camera('1-2'));
    await sleep(SETTLE / 3);
    bus.unplug('1-2');
    await sleep(SETTLE * 3);
    expect(bus.lookups).toEqual([]);
    expect(r.log).toEqual([]);
  });

  test('a-camera-unplugged-while-it-is-being-identified-is-not-reported', async () => {
    const bus = new FakeBus();
    const r = recorder();
    let open!: () => void;
    bus.lookupGate = new Promise((resolve) => (open = resolve));
    await watcher(bus).start(r.events);
    bus.plugCamera(camera('1-2'));
    while (bus.lookups.length === 0) await sleep(10);
    bus.unplug('1-2');
    open();
    await sleep(50);
    expect(r.log).toEqual([]);
  });

  test('unplugging-a-camera-reports-its-detach-and-logs-it-and-plugging-it-back-attaches-it-again', async () => {
    const bus = new FakeBus();
    bus.plugged.set('1-2', { vendorId: 0x04a9, productId: 0x32d4, camera: camera('1-2') });
    const r = recorder();
    const w = watcher(bus);
    await w.start(r.events);
    bus.unplug('1-2');
    expect(r.log).toEqual(['attach usb:1-2', 'detach usb:1-2']);
    expect(log.lines.find((l) => l.msg === 'camera detached')).toMatchObject({ vendorId: '04a9', productId: '32d4', location: '1-2' });
    bus.plugCamera(camera('1-2'));
    await sleep(SETTLE * 3);
    expect(r.log).toEqual(['attach usb:1-2', 'detach usb:1-2', 'attach usb:1-2']);
    expect(w.attached.map((c) => c.location)).toEqual(['1-2']);
  });

  test('after-close-the-bus-is-no-longer-watched-and-a-settling-camera-is-dropped', async () => {
    const bus = new FakeBus();
    const r = recorder();
    const w = watcher(bus);
    await w.start(r.events);
    bus.plugCamera(camera('1-2'));
    await w.close();
    expect(bus.listener).toBeUndefined();
    await sleep(SETTLE * 3);
    expect(bus.lookups).toEqual([]);
    expect(r.log).toEqual([]);
  });
});

/** A camera that lists nothing until its job is cancelled. */
class StuckCamera implements Source {
  closed = false;
  signal: AbortSignal | undefined;
  constructor(readonly uri: string) {}
  async identity(): Promise<SourceIdentity> {
    return { kind: 'camera', key: `camera:Test:Stuck:${this.uri}`, label: this.uri, details: {} };
  }
  async *list(signal?: AbortSignal): AsyncIterable<SourceItem> {
    this.signal = signal;
    await new Promise((r) => signal!.addEventListener('abort', r, { once: true }));
    throw abortReason(signal!);
  }
  open(): never {
    throw new Error('nothing to open');
  }
  async stat(): Promise<undefined> {
    return undefined;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

describe('USB cameras in the daemon', () => {
  const testDir = tempDirWithOwnLocks('shuttle-usb-');
  let dir: string;
  beforeEach(() => {
    dir = testDir();
  });

  test('unplugging-one-of-two-cameras-cancels-only-its-job', async () => {
    const dest = join(dir, 'dest');
    const config = normalizeConfig({ destinations: [{ path: dest }], daemon: { max_jobs: 4 } });
    const journal = Journal.open(join(dir, 'state'));
    const env: IngestEnvironment = {
      journal,
      destinations: destinationsFromConfig(config),
      settings: ingestSettingsFromConfig(config, DAEMON_LOCK_WAIT_MS),
      stateDir: join(dir, 'state'),
    };
    const scheduler = new JobScheduler({ logger: log.logger, maxRunning: 4 });
    const registry = new DeviceRegistry({ scheduler, env, resources: [], logger: log.logger });
    const bus = new FakeBus();
    bus.plugged.set('1-2', { vendorId: 0x04a9, productId: 0x32d4, camera: camera('1-2') });
    bus.plugged.set('1-3', { vendorId: 0x04b0, productId: 0x0442, camera: camera('1-3', { vendorId: 0x04b0, productId: 0x0442, manufacturer: 'Nikon' }) });
    const sources = new Map<string, StuckCamera>();
    await registry.add(watcher(bus, { openCamera: async (uri) => sources.set(uri, new StuckCamera(uri)).get(uri)! }));
    try {
      const jobs = new Map(registry.status().map((d) => [d.id, d.job!]));
      expect([...jobs.keys()].sort()).toEqual(['usb:1-2', 'usb:1-3']);
      // One job lists its camera; the other waits for the destination that both write to.
      let listing: StuckCamera | undefined;
      while (!(listing = [...sources.values()].find((s) => s.signal))) await sleep(10);
      const [other] = ['usb:1-2', 'usb:1-3'].filter((u) => u !== listing!.uri) as [string];
      bus.unplug(other.slice('usb:'.length));
      const gone = await scheduler.wait(jobs.get(other)!);
      expect(gone.state).toBe('cancelled');
      expect(gone.history.at(-1)?.reason).toContain(`unplugged from ${other.slice('usb:'.length)}`);
      await sleep(50);
      expect(scheduler.get(jobs.get(listing.uri)!)?.state).toBe('running');
      expect(listing.signal!.aborted).toBe(false);
      expect(registry.status().map((d) => d.id)).toEqual([listing.uri]);
      // And the one still running goes when its own camera is unplugged.
      bus.unplug(listing.uri.slice('usb:'.length));
      expect((await scheduler.wait(jobs.get(listing.uri)!)).state).toBe('cancelled');
      expect(isShuttleError(listing.signal!.reason, 'DEVICE_GONE')).toBe(true);
      expect(listing.closed).toBe(true);
    } finally {
      await scheduler.shutdown();
      await registry.close();
      journal.close();
    }
  });

  async function startDaemon(daemon: Record<string, unknown>, usbWatcher?: (logger: CapturedLog['logger']) => UsbCameraWatcher): Promise<Daemon> {
    await mkdir(join(dir, 'run'), { recursive: true });
    const config = normalizeConfig({ destinations: [{ path: join(dir, 'dest') }], daemon: { control_socket: join(dir, 'run', 'control.sock'), watchdog: false, ...daemon } });
    return Daemon.start({ config, stateDir: join(dir, 'state'), logger: log.logger, env: {}, ...(usbWatcher ? { usbWatcher } : {}) });
  }

  test('the-daemon-watches-usb-cameras-by-default-and-lists-an-attached-camera-in-its-status', async () => {
    const bus = new FakeBus();
    bus.plugged.set('3-1', { vendorId: 0x04a9, productId: 0x32d4, camera: camera('3-1') });
    const opened: string[] = [];
    const d = await startDaemon(
      {},
      (logger) =>
        new UsbCameraWatcher({
          logger,
          settleMs: SETTLE,
          bus: async () => bus,
          openCamera: async (uri) => {
            opened.push(uri);
            return new StuckCamera(uri);
          },
        }),
    );
    try {
      const s = d.status();
      expect(s.watchers).toEqual(['mounts', 'usb']);
      expect(s.devices).toMatchObject([{ id: 'usb:3-1', kind: 'camera', watcher: 'usb', uri: 'usb:3-1' }]);
      expect(s.jobs.active.map((j) => [j.key, j.origin])).toEqual([['usb:3-1', 'device:usb']]);
      while (opened.length === 0) await sleep(10);
      expect(opened).toEqual(['usb:3-1']);
    } finally {
      await d.stop();
    }
  });

  test('usb-cameras-off-in-the-config-starts-no-usb-watcher', async () => {
    let built = 0;
    const d = await startDaemon({ usb_cameras: false }, (logger) => {
      built++;
      return new UsbCameraWatcher({ logger, bus: async () => new FakeBus() });
    });
    try {
      expect(d.status().watchers).toEqual(['mounts']);
      expect(built).toBe(0);
    } finally {
      await d.stop();
    }
  });

  test('a-box-without-usb-support-still-runs-the-daemon-and-says-why-cameras-are-not-watched', async () => {
    const d = await startDaemon(
      {},
      (logger) =>
        new UsbCameraWatcher({
          logger,
          bus: async () => {
            throw new ShuttleError('TRANSPORT', 'USB support is unavailable: libusb-1.0.so.0: cannot open shared object file');
          },
        }),
    );
    try {
      expect(d.status().watchers).toEqual(['mounts']);
      const warning = log.lines.find((l) => String(l.msg).startsWith('USB cameras are not watched'));
      expect(warning?.['err']).toMatchObject({ message: expect.stringContaining('libusb-1.0.so.0') });
    } finally {
      await d.stop();
    }
  });
});

describe('shuttle run with libusb', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ path: dir, cleanup } = await tempDir('shuttle-usb-run-'));
  });
  afterEach(async () => {
    await cleanup();
  });

  /** Runs the daemon until it has started, asks its status, stops it with SIGTERM. */
  async function runOnce(extraEnv: Record<string, string>): Promise<{ logs: Array<Record<string, unknown>>; watchers: string[]; code: number | null; stopMs: number }> {
    const env = { SHUTTLE_DAEMON_CONTROL_SOCKET: join(dir, 'run', 'control.sock'), SHUTTLE_LOCK_DIR: join(dir, 'locks'), ...extraEnv };
    const { child, logs, exited } = await spawnDaemon(['--state', join(dir, 'state'), '--dest', join(dir, 'dest'), '--log-level', 'info'], env);
    const r = await runCli(['status', '--json', '--state', join(dir, 'state')], { env });
    const watchers = (JSON.parse(r.stdout) as { daemon: { watchers: string[] } }).daemon.watchers;
    const t0 = Date.now();
    child.kill('SIGTERM');
    const { code } = await exited;
    return { logs, watchers, code, stopMs: Date.now() - t0 };
  }

  test('the-daemon-watches-usb-through-libusb-by-default-and-still-stops-at-once-on-sigterm', async () => {
    const run = await runOnce({});
    expect(run.watchers).toEqual(['mounts', 'usb']);
    // libusb's hotplug events where the system has them (this host: yes), else node-usb's polling.
    expect(run.logs.find((l) => l['msg'] === 'watching USB for cameras')).toMatchObject({ mode: expect.stringMatching(/^(libusb|polling)$/) });
    expect(run.code).toBe(0);
    expect(run.stopMs).toBeLessThan(5_000);
  });

  test('usb-cameras-false-in-the-environment-leaves-usb-alone', async () => {
    const run = await runOnce({ SHUTTLE_DAEMON_USB_CAMERAS: 'false' });
    expect(run.watchers).toEqual(['mounts']);
    expect(run.logs.some((l) => l['msg'] === 'watching USB for cameras')).toBe(false);
    expect(run.code).toBe(0);
  });
});
