import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeEach, describe, expect, test } from 'vitest';
import { normalizeConfig } from '../src/config/index.js';
import { FolderSource } from '../src/device/card/folder-source.js';
import type { Source, SourceIdentity, SourceItem } from '../src/device/source.js';
import { DeviceRegistry, pathJobKey, type AttachedDevice, type DeviceEvents, type DeviceWatcher } from '../src/daemon/devices.js';
import { DAEMON_LOCK_WAIT_MS, type IngestEnvironment } from '../src/daemon/ingest-job.js';
import { destinationsFromConfig, ingestSettingsFromConfig } from '../src/ingest/settings.js';
import { JobScheduler } from '../src/daemon/jobs.js';
import { MountWatcher } from '../src/daemon/mounts.js';
import { parseMountinfo } from '../src/device/card/mountinfo.js';
import { abortReason, isShuttleError } from '../src/errors.js';
import { Journal } from '../src/store/journal.js';
import { captureLog, tempDirWithOwnLocks } from './support/daemon-helpers.js';
import { listTree } from './support/tree.js';

const testDir = tempDirWithOwnLocks('shuttle-dev-');
let dir: string;
beforeEach(() => {
  dir = testDir();
});

/** A mountinfo line as the kernel writes it (spaces in paths as \040). */
const line = (id: number, dev: string, mountPoint: string, fsType: string, source: string): string =>
  `${id} 1 ${dev} / ${mountPoint.replaceAll(' ', '\\040')} rw,nosuid,nodev,relatime shared:${id} - ${fsType} ${source} rw`;

describe('mount table', () => {
  test('mountinfo-lines-parse-with-escaped-paths-and-optional-fields', () => {
    const text = [
      '22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw',
      '97 29 8:17 / /media/alice/EOS\\040DIGITAL rw,nosuid,nodev,relatime shared:52 master:3 - vfat /dev/sdb1 rw,fmask=0022',
      'garbage',
    ].join('\n');
    expect(parseMountinfo(text)).toEqual([
      { major: 0, minor: 21, target: '/proc', fsRoot: '/', fstype: 'proc', source: 'proc' },
      { major: 8, minor: 17, target: '/media/alice/EOS DIGITAL', fsRoot: '/', fstype: 'vfat', source: '/dev/sdb1' },
    ]);
  });

  test('a-filesystem-mounted-below-a-watched-root-attaches-and-its-unmount-detaches', async () => {
    const mountinfo = join(dir, 'mountinfo');
    const media = join(dir, 'media');
    const card = join(media, 'EOS_DIGITAL');
    const backup = join(media, 'BACKUP');
    const base = [
      line(1, '0:1', '/', 'ext4', '/dev/vda'),
      line(2, '0:30', join(media, 'ram'), 'tmpfs', 'tmpfs'),
      line(3, '0:2', media, 'ext4', '/dev/vda2'),
      line(6, '8:49', backup, 'ext4', '/dev/sdd1'),
    ];
    await writeFile(mountinfo, [...base, line(4, '8:17', card, 'vfat', '/dev/sdb1')].join('\n'));
    const events: string[] = [];
    const attached: AttachedDevice[] = [];
    // The backup drive is a destination: never a device to ingest.
    const w = new MountWatcher({ roots: [media], logger: captureLog().logger, mountinfo, intervalMs: 60_000, skip: (m) => m === backup });
    await w.start({
      attach: (d) => {
        attached.push(d);
        events.push(`attach ${d.id}`);
      },
      detach: (id) => events.push(`detach ${id}`),
    });
    // Only the card: not the root itself, not a tmpfs below it, not the destination.
    expect(events).toEqual([`attach mount:8:17:${card}`]);
    expect(attached[0]).toMatchObject({ kind: 'card', uri: card, jobKey: pathJobKey(card) });
    const second = join(media, 'CARD 2');
    await writeFile(mountinfo, [...base, line(4, '8:17', card, 'vfat', '/dev/sdb1'), line(5, '8:33', second, 'exfat', '/dev/sdc1')].join('\n'));
    await w.poll();
    await writeFile(mountinfo, [...base, line(5, '8:33', second, 'exfat', '/dev/sdc1')].join('\n'));
    await w.poll();
    await w.poll();
    expect(events).toEqual([`attach mount:8:17:${card}`, `attach mount:8:33:${second}`, `detach mount:8:17:${card}`]);
    await w.close();
  });
});

/** A watcher the test drives: the shape the USB hotplug implements. */
class TestWatcher implements DeviceWatcher {
  readonly name = 'test';
  events: DeviceEvents | undefined;
  async start(events: DeviceEvents): Promise<void> {
    this.events = events;
  }
  async close(): Promise<void> {}
}

/** A camera that lists nothing until it is unplugged (its job runs until then). */
class StuckCamera implements Source {
  readonly uri = 'usb:stuck';
  closed = false;
  signal: AbortSignal | undefined;
  async identity(): Promise<SourceIdentity> {
    return { kind: 'camera', key: 'camera:Test:Stuck:1', label: 'Test Stuck', details: {} };
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

describe('device registry', () => {
  test('unplugging-one-device-cancels-only-its-job-and-the-next-device-is-ingested', async () => {
    const dest = join(dir, 'dest');
    const cardDir = join(dir, 'card');
    await mkdir(join(cardDir, 'DCIM'), { recursive: true });
    await writeFile(join(cardDir, 'DCIM', 'A.JPG'), 'a'.repeat(1000));
    await writeFile(join(cardDir, 'DCIM', 'B.JPG'), 'b'.repeat(2000));
    const config = normalizeConfig({ destinations: [{ path: dest }] });
    const journal = Journal.open(join(dir, 'state'));
    const log = captureLog();
    const env: IngestEnvironment = {
      journal,
      destinations: destinationsFromConfig(config),
      settings: ingestSettingsFromConfig(config, DAEMON_LOCK_WAIT_MS),
      stateDir: join(dir, 'state'),
    };
    const scheduler = new JobScheduler({ logger: log.logger });
    const registry = new DeviceRegistry({ scheduler, env, resources: [`destination ${dest}`], logger: log.logger });
    const watcher = new TestWatcher();
    await registry.add(watcher);
    try {
      const camera = new StuckCamera();
      watcher.events!.attach({ id: 'usb:1-2', kind: 'camera', label: 'Test Stuck', uri: 'usb:1-2', jobKey: 'usb:1-2', open: async () => camera });
      watcher.events!.attach({ id: 'mount:8:17', kind: 'card', label: 'card', uri: cardDir, jobKey: pathJobKey(cardDir), open: async () => new FolderSource(cardDir) });
      const [camJob, cardJob] = registry.status().map((d) => d.job!);
      while (!camera.signal) await new Promise((r) => setTimeout(r, 10));
      expect(scheduler.get(cardJob!)?.state).toBe('queued'); // same destination: it waits its turn
      watcher.events!.detach('usb:1-2', 'camera unplugged');
      const cam = await scheduler.wait(camJob!);
      expect(cam.state).toBe('cancelled');
      expect(isShuttleError(camera.signal.reason, 'DEVICE_GONE')).toBe(true);
      expect(camera.closed).toBe(true);
      const card = await scheduler.wait(cardJob!);
      expect(card.state).toBe('done');
      expect(card.result).toMatchObject({ files: 2, copied: 2, failed: 0 });
      const tree = await listTree(dest, { skipShuttle: true });
      expect([...tree.values()].map((f) => f.size).sort()).toEqual([1000, 2000]);
      expect(journal.inconsistencies()).toEqual([]);
      expect(registry.status().map((d) => d.id)).toEqual(['mount:8:17']);
      expect(log.lines.filter((l) => l.msg === 'device detached').map((l) => l['reason'])).toEqual(['camera unplugged']);
    } finally {
      await scheduler.shutdown();
      await registry.close();
      journal.close();
    }
  });
});
