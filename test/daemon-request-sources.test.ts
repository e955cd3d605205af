import { mkdir, symlink } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { normalizeConfig, type ConfigInput } from '../src/config/index.js';
import { ControlClient } from '../src/daemon/control.js';
import { Daemon } from '../src/daemon/daemon.js';
import type { JobSnapshot } from '../src/daemon/status.js';
import { UsbCameraWatcher } from '../src/daemon/usb-cameras.js';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import type { UsbCameraInfo } from '../src/device/usb/discovery.js';
import type { UsbHotplugBus } from '../src/device/usb/hotplug.js';
import { ShuttleError, isShuttleError } from '../src/errors.js';
import { captureLog, type CapturedLog } from './support/daemon-helpers.js';
import { writeJpeg } from './support/fixtures.js';
import { listTree, tempDir } from './support/tree.js';

/**
 * What `shuttle request ingest` may name: the daemon reads as the service user, so a request gets only
 * folders inside the allowed roots (after realpath), USB cameras attached now, and network cameras the
 * daemon discovered or whose address the config lists. Everything else is refused naming the rule.
 */

let work: string;
let cleanup: () => Promise<void>;
let dest: string;
let allowed: string;
let outside: string;
let log: CapturedLog;
let daemon: Daemon | undefined;
let client: ControlClient | undefined;

beforeEach(async () => {
  ({ path: work, cleanup } = await tempDir('shuttle-reqsrc-'));
  dest = join(work, 'dest');
  allowed = join(work, 'allowed');
  outside = join(work, 'outside');
  await writeJpeg(join(allowed, 'card', 'DCIM', 'IMG_0001.JPG'), { seed: 1 });
  await writeJpeg(join(outside, 'DCIM', 'IMG_0002.JPG'), { seed: 2 });
  log = captureLog();
});

afterEach(async () => {
  client?.close();
  client = undefined;
  await daemon?.stop();
  daemon = undefined;
  await cleanup();
});

async function start(extra: NonNullable<ConfigInput['daemon']> = {}, usbWatcher?: (logger: CapturedLog['logger']) => UsbCameraWatcher): Promise<Daemon> {
  await mkdir(join(work, 'run'), { recursive: true });
  const config = normalizeConfig({
    destinations: [{ path: dest }],
    daemon: { control_socket: join(work, 'run', 'control.sock'), watchdog: false, usb_cameras: false, allowed_sources: [allowed], ...extra },
  });
  daemon = await Daemon.start({ config, stateDir: join(work, 'state'), logger: log.logger, env: {}, ...(usbWatcher ? { usbWatcher } : {}) });
  client = await ControlClient.connect(daemon.socketPath);
  return daemon;
}

async function ingest(source: string): Promise<{ job: JobSnapshot; created: boolean }> {
  return (await client!.request('ingest', { source })) as { job: JobSnapshot; created: boolean };
}

async function refusal(source: string): Promise<ShuttleError> {
  const err = await ingest(source).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isShuttleError(err)) throw new Error(`expected ${source} to be refused, got ${JSON.stringify(err)}`);
  return err;
}

/** Nothing was queued, run or copied. */
async function nothingIngested(): Promise<void> {
  const jobs = daemon!.status().jobs;
  expect([...jobs.active, ...jobs.recent]).toEqual([]);
  expect((await listTree(dest).catch(() => new Map())).size).toBe(0);
}

describe('folders', () => {
  test('a-uri-looking-source-that-climbs-out-of-the-working-directory-is-refused-naming-the-rule-and-nothing-is-ingested', async () => {
    await start();
    // Resolved against the daemon's working directory, `x:/../..` climbs to / and then down into `outside`.
    const climb = `x:/${'../'.repeat(process.cwd().split(sep).length + 1)}${outside.slice(1)}`;
    const err = await refusal(climb);
    expect(err.code).toBe('USAGE');
    expect(err.context).toMatchObject({ reason: 'source-not-allowed', rule: 'path-or-camera', source: climb });
    expect(err.message).toMatch(/refused: a request names an absolute folder, a USB camera \(usb:.*\) or a network camera \(ptpip:HOST\[:PORT\]\)/);
    await nothingIngested();
  });

  test('a-folder-outside-every-allowed-folder-is-refused-naming-the-settings-that-allow-folders', async () => {
    await start({ hot_folders: [join(work, 'hot')] });
    const err = await refusal(outside);
    expect(err.context).toMatchObject({ reason: 'source-not-allowed', rule: 'allowed-folders' });
    expect(err.message).toContain('the daemon ingests only folders that are, or are inside, the card mount base /media/shuttle, [daemon] hot_folders, [daemon] allowed_sources');
    // The service user's own state is outside too: a request cannot make the daemon read it.
    expect((await refusal(join(work, 'state'))).context).toMatchObject({ rule: 'allowed-folders' });
    // Whether a path exists outside is not told: a missing one is refused the same way.
    expect((await refusal(join(work, 'no-such-folder'))).context).toMatchObject({ rule: 'allowed-folders' });
    await nothingIngested();
  });

  test('a-symlink-inside-an-allowed-folder-that-points-outside-is-refused-by-its-real-path', async () => {
    await start();
    await symlink(outside, join(allowed, 'link'));
    const err = await refusal(join(allowed, 'link'));
    expect(err.context).toMatchObject({ rule: 'allowed-folders', resolved: outside });
    expect(err.message).toContain(`(it resolves to ${outside})`);
    await nothingIngested();
  });

  test('a-folder-inside-an-allowed-folder-or-a-hot-folder-is-ingested', async () => {
    const hot = join(work, 'hot');
    await writeJpeg(join(hot, 'sub', 'IMG_0003.JPG'), { seed: 3 });
    await start({ hot_folders: [hot], batch_ms: 3_600_000, settle_ms: 3_600_000 });
    const { job, created } = await ingest(join(allowed, 'card'));
    expect(created).toBe(true);
    expect(job).toMatchObject({ kind: 'folder', label: join(allowed, 'card'), origin: 'request' });
    const done = (await client!.request('wait', { job: job.id })) as { job: JobSnapshot };
    expect(done.job).toMatchObject({ state: 'done', result: { copied: 1 } });
    const sub = await ingest(join(hot, 'sub'));
    expect(sub.job.label).toBe(join(hot, 'sub'));
    // A path that does not exist inside an allowed folder is simply not found.
    expect((await refusal(join(allowed, 'no-such-card'))).code).toBe('SOURCE_NOT_FOUND');
  });
});

/** The USB bus as the watcher sees it: one camera at port 1-4. */
function busWith(info: UsbCameraInfo): UsbHotplugBus {
  return {
    mode: 'libusb',
    cameras: async () => [info],
    cameraAt: async (location) => (location === info.location ? info : undefined),
    watch: () => () => undefined,
  };
}

describe('cameras', () => {
  const r6: UsbCameraInfo = {
    vendorId: 0x04a9,
    productId: 0x32d4,
    busNumber: 1,
    deviceAddress: 7,
    portPath: '4',
    location: '1-4',
    interfaceNumber: 0,
    protocol: 'ptp',
    manufacturer: 'Canon Inc.',
    product: 'Canon EOS R6',
  };

  test('a-usb-selector-that-matches-no-attached-camera-is-refused-and-one-that-does-joins-its-job', async () => {
    const opened: string[] = [];
    await start(
      { usb_cameras: true },
      (logger) =>
        new UsbCameraWatcher({
          logger,
          settleMs: 0,
          bus: async () => busWith(r6),
          openCamera: async (uri) => {
            opened.push(uri);
            throw new ShuttleError('DEVICE_GONE', 'the fake camera has no storage');
          },
        }),
    );
    for (const sel of ['usb:1-9', 'usb:04a9:ffff']) {
      const err = await refusal(sel);
      expect(err.context).toMatchObject({ reason: 'source-not-allowed', rule: 'attached-usb-camera', source: sel });
      expect(err.message).toContain('no USB camera attached now matches it');
    }
    const { job } = await ingest('usb:04a9:32d4');
    expect(job).toMatchObject({ key: 'usb:1-4', kind: 'camera', label: 'Canon Inc. Canon EOS R6 (usb:1-4)' });
    await client!.request('wait', { job: job.id });
    expect(opened.every((u) => u === 'usb:1-4')).toBe(true);
  });

  test('a-ptpip-host-neither-discovered-nor-configured-is-refused-and-a-listed-address-is-ingested', async () => {
    const card = join(work, 'camera-card');
    await writeJpeg(join(card, 'DCIM', '100CANON', 'IMG_0100.JPG'), { seed: 100 });
    const sim = await CameraSimulator.start({ dir: card, port: 0, host: '127.0.0.1', timeZone: 'UTC' });
    try {
      await start({ network_cameras: [`127.0.0.1:${sim.port}`] });
      for (const source of ['ptpip:10.1.2.3', `ptpip:127.0.0.1:${sim.port + 1}`, 'ptpip:']) {
        const err = await refusal(source);
        expect(err.context, source).toMatchObject({ reason: 'source-not-allowed', rule: 'known-network-camera' });
      }
      expect((await refusal('ptpip:10.1.2.3')).message).toContain(
        'the daemon connects only to network cameras it discovered (with [daemon] network_cameras on) or whose address [daemon] network_cameras lists',
      );
      const { job } = await ingest(`ptpip:127.0.0.1:${sim.port}`);
      expect(job).toMatchObject({ key: `ptpip:127.0.0.1:${sim.port}`, kind: 'camera' });
      const done = (await client!.request('wait', { job: job.id })) as { job: JobSnapshot };
      expect(done.job).toMatchObject({ state: 'done', result: { copied: 1 } });
    } finally {
      await sim.stop();
    }
  });

  test('without-network_cameras-no-ptpip-request-is-accepted', async () => {
    await start();
    const err = await refusal('ptpip:127.0.0.1');
    expect(err.context).toMatchObject({ rule: 'known-network-camera' });
    await nothingIngested();
  });
});
