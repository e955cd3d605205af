import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { normalizeConfig, type ConfigInput } from '../src/config/index.js';
import { FolderSource } from '../src/device/card/folder-source.js';
import type { Source, SourceIdentity, SourceItem } from '../src/device/source.js';
import { Daemon } from '../src/daemon/daemon.js';
import { pathJobKey } from '../src/daemon/devices.js';
import { EventHub, type StationEvent, type StationEventType } from '../src/daemon/events.js';
import type { JobSnapshot } from '../src/daemon/status.js';
import { ShuttleError } from '../src/errors.js';
import { captureLog } from './support/daemon-helpers.js';
import { writeJpeg } from './support/fixtures.js';
import { nextEvent, TestWatcher } from './support/test-watcher.js';
import { tempDir } from './support/tree.js';

const job = (id: number, bytesDone: number): JobSnapshot =>
  ({
    id,
    key: `k${id}`,
    kind: 'card',
    label: 'card',
    origin: 'test',
    state: 'running',
    createdAt: '',
    history: [],
    progress: { filesTotal: 1, filesDone: 0, bytesTotal: 100, bytesDone },
  }) as JobSnapshot;

describe('event hub', () => {
  test('events-are-numbered-and-a-reconnecting-client-gets-what-came-after-its-last-id', () => {
    const hub = new EventHub({ capacity: 3 });
    const seen: number[] = [];
    hub.subscribe((e) => seen.push(e.id));
    for (let i = 0; i < 5; i++) hub.publish({ type: 'error', code: 'SOURCE_UNREADABLE', message: `e${i}` });
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    expect(hub.since(3)?.map((e) => e.id)).toEqual([4, 5]);
    expect(hub.since(5)).toEqual([]);
    // Event 2 is no longer kept: the client must reload, not silently miss it.
    expect(hub.since(1)).toBeUndefined();
    // An id from before a restart (ids start again from 1) is not answered with a partial replay either.
    expect(hub.since(99)).toBeUndefined();
  });

  test('progress-is-published-at-most-once-per-interval-per-job-with-the-newest-figures', async () => {
    const hub = new EventHub({ progressMs: 100 });
    const progress: Array<[number, number]> = [];
    hub.subscribe((e) => {
      if (e.type === 'job.progress') progress.push([e.job.id, e.job.progress?.bytesDone ?? -1]);
    });
    let taken = 0;
    for (let b = 1; b <= 50; b++) {
      hub.progress(1, () => {
        taken++;
        return job(1, b);
      });
    }
    hub.progress(2, () => job(2, 7));
    // The first report of each job goes out at once; the rest wait for the job's next slot.
    expect(progress).toEqual([
      [1, 1],
      [2, 7],
    ]);
    const next = await nextEvent(hub, (e) => e.type === 'job.progress');
    expect(next.type === 'job.progress' && next.job.progress?.bytesDone).toBe(50);
    // Snapshots are taken only for what is published.
    expect(taken).toBe(2);
    hub.close();
  });
});

/** A card whose one file cannot be read. */
class BrokenCard implements Source {
  readonly uri = '/media/shuttle/BROKEN';
  async identity(): Promise<SourceIdentity> {
    return { kind: 'card', key: 'card:broken', label: 'BROKEN', details: {} };
  }
  async *list(): AsyncIterable<SourceItem> {
    yield { path: 'DCIM/IMG_0001.JPG', size: 10, mtimeMs: Date.now() };
  }
  async open(): Promise<Readable> {
    throw new ShuttleError('SOURCE_UNREADABLE', 'read error on the card (test)', { context: { path: 'DCIM/IMG_0001.JPG' } });
  }
  async stat(): Promise<undefined> {
    return undefined;
  }
  async close(): Promise<void> {}
}

describe('daemon events', () => {
  let work: string;
  let cleanup: () => Promise<void>;
  let daemon: Daemon | undefined;
  beforeEach(async () => {
    ({ path: work, cleanup } = await tempDir('shuttle-events-'));
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    await cleanup();
  });

  async function start(watcher: TestWatcher, extra: Partial<ConfigInput> = {}): Promise<Daemon> {
    const config = normalizeConfig({
      destinations: [{ path: join(work, 'dest') }],
      daemon: { control_socket: join(work, 'control.sock'), watchdog: false, usb_cameras: false, network_cameras: false },
      ...extra,
    });
    daemon = await Daemon.start({ config, stateDir: join(work, 'state'), logger: captureLog().logger, env: {}, watchers: [watcher] });
    return daemon;
  }

  test('a-card-goes-from-connected-through-its-verified-files-to-safe-to-pull-and-stays-so-after-its-reader-is-powered-off-until-the-next-card', async () => {
    const card = join(work, 'card');
    const a = await writeJpeg(join(card, 'DCIM', 'IMG_0001.JPG'), { seed: 1 });
    const b = await writeJpeg(join(card, 'DCIM', 'IMG_0002.JPG'), { seed: 2 });
    const watcher = new TestWatcher();
    const d = await start(watcher);
    const events: StationEvent[] = [];
    d.events.subscribe((e) => events.push(e));
    const safe = nextEvent(d.events, (e) => e.type === 'station.state' && e.state === 'safe-to-pull');
    watcher.events.attach({ id: 'mount:8:17', kind: 'card', label: 'EOS_DIGITAL', uri: card, jobKey: pathJobKey(card), open: async () => new FolderSource(card) });
    await safe;
    const types = events.map((e) => e.type).filter((t) => t !== 'job.progress');
    expect(types).toEqual<StationEventType[]>([
      'job.queued',
      'station.state', // ingesting
      'job.started',
      'device.connected',
      'file.verified',
      'file.verified',
      'job.finished',
      'station.state', // safe to pull
    ]);
    // Every listener sees every event in the order of its id, also those published from inside a listener.
    expect(events.map((e) => e.id)).toEqual(events.map((_, i) => events[0]!.id + i));
    const verified = events.flatMap((e) => (e.type === 'file.verified' ? [e] : []));
    expect(verified.map((e) => e.path).sort()).toEqual(['DCIM/IMG_0001.JPG', 'DCIM/IMG_0002.JPG']);
    // Each event names copies that exist and hold the card's bytes.
    for (const e of verified) {
      expect(e.copies).toHaveLength(1);
      expect(await readFile(e.copies[0]!)).toEqual(e.path.endsWith('1.JPG') ? a : b);
    }
    expect(d.station.view.devices).toEqual([{ id: 'mount:8:17', label: 'EOS_DIGITAL', state: 'safe-to-pull', job: expect.any(Number) }]);

    // The card unit unmounts and powers the reader off: the card leaves the device list while it still
    // sits in the reader, and the light the crew walks up to must still say what its job earned.
    watcher.events.detach('mount:8:17', 'card removed');
    expect(events.at(-1)).toMatchObject({ type: 'device.gone', reason: 'card removed', device: { id: 'mount:8:17' } });
    expect(d.station.view).toMatchObject({ state: 'safe-to-pull', reason: 'verified: EOS_DIGITAL (gone)', devices: [] });
    // The next card is the next thing the station shows.
    const next = nextEvent(d.events, (e) => e.type === 'station.state');
    const other = join(work, 'other');
    await writeJpeg(join(other, 'DCIM', 'IMG_0003.JPG'), { seed: 3 });
    watcher.events.attach({ id: 'mount:8:33', kind: 'card', label: 'OTHER', uri: other, jobKey: pathJobKey(other), open: async () => new FolderSource(other) });
    expect(await next).toMatchObject({ type: 'station.state', state: 'ingesting' });
  });

  test('previews-are-made-without-the-api-when-the-config-says-always', async () => {
    const card = join(work, 'card');
    await writeJpeg(join(card, 'DCIM', 'IMG_0001.JPG'), { seed: 1 });
    await writeJpeg(join(card, 'DCIM', 'IMG_0002.JPG'), { seed: 2 });
    const watcher = new TestWatcher();
    const d = await start(watcher, { previews: { make: 'always' } });
    expect(d.status().api).toBeUndefined();
    const ready: StationEvent[] = [];
    d.events.subscribe((e) => {
      if (e.type === 'preview.ready') ready.push(e);
    });
    const second = nextEvent(d.events, (e) => e.type === 'preview.ready' && ready.length === 2);
    watcher.card('mount:8:17', card);
    await second;
    const state = join(work, 'state');
    for (const e of ready) {
      if (e.type !== 'preview.ready') continue;
      expect(e.preview.startsWith(join(state, 'previews'))).toBe(true);
      expect((await stat(e.preview)).isFile()).toBe(true);
      expect((await stat(join(state, 'thumbnails', e.preview.slice(join(state, 'previews').length + 1)))).isFile()).toBe(true);
    }
  });

  test('a-card-with-a-file-that-failed-asks-for-attention-and-never-shows-safe-to-pull', async () => {
    const watcher = new TestWatcher();
    const d = await start(watcher);
    const events: StationEvent[] = [];
    d.events.subscribe((e) => events.push(e));
    const finished = nextEvent(d.events, (e) => e.type === 'job.finished');
    watcher.events.attach({ id: 'mount:8:33', kind: 'card', label: 'BROKEN', uri: '/media/shuttle/BROKEN', jobKey: 'broken', open: async () => new BrokenCard() });
    await finished;
    expect(events.find((e) => e.type === 'file.failed')).toMatchObject({ path: 'DCIM/IMG_0001.JPG', copies: [] });
    expect(events.find((e) => e.type === 'error')).toMatchObject({ code: 'SOURCE_UNREADABLE', path: 'DCIM/IMG_0001.JPG' });
    const states = events.filter((e) => e.type === 'station.state').map((e) => e.state);
    expect(states).toEqual(['ingesting', 'attention']);
    expect(d.station.view.state).toBe('attention');
    // Powered off or pulled, a failed card keeps the station asking for attention until the next device.
    watcher.events.detach('mount:8:33', 'card removed');
    expect(d.station.view).toMatchObject({ state: 'attention', devices: [] });
    expect(d.station.view.reason).toMatch(/^failed: BROKEN \(gone\)/);
    const next = nextEvent(d.events, (e) => e.type === 'station.state');
    const card = join(work, 'next');
    await writeJpeg(join(card, 'DCIM', 'IMG_0001.JPG'), { seed: 4 });
    watcher.card('mount:8:49', card);
    expect(await next).toMatchObject({ state: 'ingesting' });
  });
});
