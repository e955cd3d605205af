/**
 * The daemon's HID devices over the fake node-hid: the [status_light] follows the station state (its
 * driver's report bytes for each state, in order) and goes dark when the daemon stops; a backend that
 * cannot list devices leaves the daemon running.
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { normalizeConfig, type ConfigInput } from '../src/config/index.js';
import { FolderSource } from '../src/device/card/folder-source.js';
import { LIGHT_DRIVER_TABLE, STATE_SIGNALS, type HidBackend } from '../src/device/hid/index.js';
import { Daemon } from '../src/daemon/daemon.js';
import { pathJobKey } from '../src/daemon/devices.js';
import { ShuttleError } from '../src/errors.js';
import { captureLog, type CapturedLog } from './support/daemon-helpers.js';
import { FakeHid } from './support/fake-hid.js';
import { writeJpeg } from './support/fixtures.js';
import { nextEvent, TestWatcher } from './support/test-watcher.js';
import { tempDir } from './support/tree.js';

const BUSYLIGHT = { vendorId: 0x27bb, productId: 0x3bcd, path: '/dev/hidraw4', product: 'Busylight Omega', interface: 0 };
const busylight = LIGHT_DRIVER_TABLE.busylight;
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

describe('daemon status light', () => {
  let work: string;
  let cleanup: () => Promise<void>;
  let daemon: Daemon | undefined;
  let log: CapturedLog;
  beforeEach(async () => {
    ({ path: work, cleanup } = await tempDir('shuttle-daemon-hid-'));
    log = captureLog();
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    await cleanup();
  });

  async function start(backend: HidBackend, watcher: TestWatcher, extra: ConfigInput = {}): Promise<Daemon> {
    const config = normalizeConfig({
      destinations: [{ path: join(work, 'dest') }],
      daemon: { control_socket: join(work, 'control.sock'), watchdog: false, usb_cameras: false, network_cameras: false },
      status_light: { driver: 'busylight' },
      ...extra,
    });
    daemon = await Daemon.start({ config, stateDir: join(work, 'state'), logger: log.logger, env: {}, watchers: [watcher], hid: { backend } });
    return daemon;
  }

  test('daemon-status-light-shows-idle-then-ingesting-then-safe-to-pull-and-goes-dark-on-stop', async () => {
    const card = join(work, 'card');
    await writeJpeg(join(card, 'DCIM', 'IMG_0001.JPG'), { seed: 1 });
    const hid = new FakeHid();
    hid.plug(BUSYLIGHT);
    const watcher = new TestWatcher();
    const d = await start(hid, watcher);
    const conn = hid.connection(BUSYLIGHT.path);

    const safe = nextEvent(d.events, (e) => e.type === 'station.state' && e.state === 'safe-to-pull');
    watcher.events.attach({ id: 'mount:8:17', kind: 'card', label: 'EOS_DIGITAL', uri: card, jobKey: pathJobKey(card), open: async () => new FolderSource(card) });
    await safe;
    // setState writes through the light's one write queue: stopping waits for it, and then turns it off.
    await d.stop();
    daemon = undefined;

    // Which state each "show" report means (keep-alives in between are the same bytes for every state).
    const shown = new Map<string, string>();
    for (const state of ['idle', 'ingesting', 'safe-to-pull'] as const) shown.set(hex(busylight.show(STATE_SIGNALS[state], true)[0]!.bytes), state);
    const off = hex(busylight.off()[0]!.bytes);
    shown.set(off, 'off');
    const states = conn.written.map((w) => shown.get(w.hex)).filter((s) => s !== undefined);
    expect(states).toEqual(['idle', 'ingesting', 'safe-to-pull', 'off']);
    expect(conn.written.at(-1)?.hex).toBe(off);
    expect(conn.closed).toBe(true);
  });

  test('a-card-wiped-after-its-ingest-shows-verifying-during-the-second-read-then-safe-to-pull', async () => {
    const card = join(work, 'card');
    await writeJpeg(join(card, 'DCIM', 'IMG_0001.JPG'), { seed: 1 });
    await writeJpeg(join(card, 'DCIM', 'IMG_0002.JPG'), { seed: 2 });
    const hid = new FakeHid();
    hid.plug(BUSYLIGHT);
    const watcher = new TestWatcher();
    const d = await start(hid, watcher, { cards: { wipe: 'after-local' } });
    const conn = hid.connection(BUSYLIGHT.path);
    const states: string[] = [];
    d.events.subscribe((e) => {
      if (e.type === 'station.state') states.push(e.state);
    });
    const finished = nextEvent(d.events, (e) => e.type === 'job.finished');
    watcher.events.attach({ id: 'mount:8:17', kind: 'card', label: 'EOS_DIGITAL', uri: card, jobKey: pathJobKey(card), open: async () => new FolderSource(card) });
    const job = await finished;
    expect(job.type === 'job.finished' && job.job.result).toMatchObject({ status: 'complete', wiped: 2 });
    expect(states).toEqual(['ingesting', 'verifying', 'safe-to-pull']);
    await d.stop();
    daemon = undefined;
    const verifying = busylight.show(STATE_SIGNALS.verifying, true)[0]!.bytes;
    const safe = busylight.show(STATE_SIGNALS['safe-to-pull'], true)[0]!.bytes;
    const at = (bytes: Uint8Array): number => conn.written.findIndex((w) => w.hex === hex(bytes));
    expect(at(verifying)).toBeGreaterThan(0);
    expect(at(safe)).toBeGreaterThan(at(verifying));
  });

  test('daemon-runs-on-when-hid-cannot-be-listed', async () => {
    const broken: HidBackend = {
      devices: () => Promise.reject(new ShuttleError('TRANSPORT', 'HID support is unavailable: test')),
      open: () => Promise.reject(new ShuttleError('TRANSPORT', 'no')),
    };
    const card = join(work, 'card');
    await writeJpeg(join(card, 'DCIM', 'IMG_0001.JPG'), { seed: 1 });
    const watcher = new TestWatcher();
    const d = await start(broken, watcher);
    const safe = nextEvent(d.events, (e) => e.type === 'station.state' && e.state === 'safe-to-pull');
    watcher.events.attach({ id: 'mount:8:17', kind: 'card', label: 'EOS_DIGITAL', uri: card, jobKey: pathJobKey(card), open: async () => new FolderSource(card) });
    await safe;
    expect(log.lines.some((l) => l.msg === 'listing HID devices failed')).toBe(true);
  });
});
