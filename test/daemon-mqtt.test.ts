import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { normalizeConfig, type ConfigInput } from '../src/config/index.js';
import { FolderSource } from '../src/device/card/folder-source.js';
import { Daemon } from '../src/daemon/daemon.js';
import { pathJobKey } from '../src/daemon/devices.js';
import { captureLog, killLeftoverDaemons, spawnDaemon, type RunningDaemon } from './support/daemon-helpers.js';
import { writeJpeg } from './support/fixtures.js';
import { startMosquitto, subscribe, type Broker, type MqttMessage, type Subscriber } from './support/notify-peers.js';
import { freePorts } from './support/ports.js';
import { nextEvent, TestWatcher } from './support/test-watcher.js';
import { tempDir } from './support/tree.js';

const PREFIX = 'shuttle-test';
const STATION = 'cart-7';
const payload = (m: MqttMessage): Record<string, unknown> => JSON.parse(m.payload) as Record<string, unknown>;

describe('MQTT', () => {
  let work: string;
  let cleanup: () => Promise<void>;
  const closers: Array<() => Promise<void>> = [];
  const children: RunningDaemon[] = [];
  let daemon: Daemon | undefined;

  beforeEach(async () => {
    ({ path: work, cleanup } = await tempDir('shuttle-mqtt-'));
  });
  afterEach(async () => {
    killLeftoverDaemons(children);
    await daemon?.stop();
    daemon = undefined;
    for (const c of closers.splice(0).reverse()) await c();
    await cleanup();
  });

  async function broker(port?: number): Promise<Broker> {
    const b = await startMosquitto(work, port);
    closers.push(b.close);
    return b;
  }
  async function sub(b: Broker, topic: string, extra: string[] = []): Promise<Subscriber> {
    const s = await subscribe(b, topic, extra);
    closers.push(s.close);
    return s;
  }

  function configInput(port: number, b: { user: string; password: string }, events: Record<string, unknown> = {}): ConfigInput {
    return {
      station: STATION,
      destinations: [{ path: join(work, 'dest') }],
      daemon: { control_socket: join(work, 'control.sock'), watchdog: false, usb_cameras: false, network_cameras: false },
      events: { mqtt: `mqtt://${b.user}:${b.password}@127.0.0.1:${port}/${PREFIX}`, ...events },
    };
  }

  async function startDaemon(input: ConfigInput, watcher: TestWatcher): Promise<{ d: Daemon; logs: ReturnType<typeof captureLog>['lines'] }> {
    const log = captureLog();
    daemon = await Daemon.start({ config: normalizeConfig(input), stateDir: join(work, 'state'), logger: log.logger, env: {}, watchers: [watcher] });
    return { d: daemon, logs: log.lines };
  }

  async function attachCard(watcher: TestWatcher, name: string, files: number): Promise<string> {
    const card = join(work, name);
    for (let i = 1; i <= files; i++) await writeJpeg(join(card, 'DCIM', `IMG_000${i}.JPG`), { seed: i });
    watcher.events.attach({ id: `mount:${name}`, kind: 'card', label: name, uri: card, jobKey: pathJobKey(card), open: async () => new FolderSource(card) });
    return card;
  }

  test('every-event-goes-to-its-own-topic-and-a-late-subscriber-gets-the-retained-state', async () => {
    const b = await broker();
    const witness = await sub(b, `${PREFIX}/#`);
    const watcher = new TestWatcher();
    const { d, logs } = await startDaemon(configInput(b.port, b), watcher);
    const safe = nextEvent(d.events, (e) => e.type === 'station.state' && e.state === 'safe-to-pull');
    await attachCard(watcher, 'EOS_DIGITAL', 2);
    await safe;
    const hubEvents = d.events.since(0)!;
    const notProgress = hubEvents.filter((e) => e.type !== 'job.progress');

    const base = `${PREFIX}/${STATION}`;
    const isSafeState = (m: MqttMessage): boolean => m.topic === `${base}/state` && payload(m)['state'] === 'safe-to-pull';
    // Waits for each of the hub's events by id: a count would also be met by progress messages.
    const seen = await witness.messages.until('the safe-to-pull state and every event', (ms) => {
      const got = new Set(ms.filter((m) => m.topic.startsWith(`${base}/events/`)).map((m) => payload(m)['id']));
      return ms.some(isSafeState) && notProgress.every((e) => got.has(e.id));
    });
    const events = seen.filter((m) => m.topic.startsWith(`${base}/events/`)).map(payload);
    // Every event of the hub arrived in order (progress thinned out), each as the hub has it, on the topic of its type.
    const ids = events.map((e) => e['id'] as number);
    expect(ids.filter((id) => notProgress.some((e) => e.id === id))).toEqual(notProgress.map((e) => e.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    for (const m of seen.filter((x) => x.topic.startsWith(`${base}/events/`))) {
      const e = hubEvents.find((x) => x.id === payload(m)['id']);
      expect(payload(m)).toEqual({ station: STATION, ...JSON.parse(JSON.stringify(e)) });
      expect(m.topic).toBe(`${base}/events/${e!.type}`);
    }
    expect(events.filter((e) => e['type'] === 'file.verified').map((e) => e['path'])).toEqual(expect.arrayContaining(['DCIM/IMG_0001.JPG', 'DCIM/IMG_0002.JPG']));
    expect(events.find((e) => e['type'] === 'job.finished')).toMatchObject({ station: STATION, job: { state: 'done', result: { files: 2, failed: 0 } } });

    // A subscriber that comes later gets the state at once, retained: station, device and its state.
    const late = await sub(b, `${base}/state`);
    const [state] = await late.messages.until('the retained state', (ms) => ms.length >= 1);
    expect(state!.retained).toBe(true);
    expect(payload(state!)).toMatchObject({
      station: STATION,
      online: true,
      state: 'safe-to-pull',
      devices: [{ id: 'mount:EOS_DIGITAL', label: 'EOS_DIGITAL', state: 'safe-to-pull' }],
      uploads: null,
    });
    // The broker refuses clients without the password: the daemon sent it, and never logged it.
    expect(JSON.stringify(logs)).not.toContain(b.password);
    expect(logs.find((l) => l.msg === 'MQTT connected')).toMatchObject({ mqtt: `mqtt://${b.user}:***@127.0.0.1:${b.port}/${PREFIX}` });
  });

  test('the-last-will-marks-the-station-offline-when-the-daemon-is-killed', async () => {
    const b = await broker();
    const base = `${PREFIX}/${STATION}`;
    const witness = await sub(b, `${base}/state`);
    const configFile = join(work, 'config.toml');
    const input = configInput(b.port, b);
    await writeFile(
      configFile,
      [
        `station = "${STATION}"`,
        '[daemon]',
        `control_socket = "${join(work, 'control.sock')}"`,
        'watchdog = false',
        'usb_cameras = false',
        '[events]',
        `mqtt = "${String((input.events as { mqtt: string }).mqtt)}"`,
        '',
      ].join('\n'),
    );
    const child = await spawnDaemon(['--config', configFile, '--state', join(work, 'state'), '--dest', join(work, 'dest'), '--log-level', 'info'], {});
    children.push(child);
    await witness.messages.until('the station online', (ms) => ms.some((m) => payload(m)['online'] === true));
    child.child.kill('SIGKILL');
    expect(await child.exited).toMatchObject({ signal: 'SIGKILL' });
    const after = await witness.messages.until('the last will', (ms) => payload(ms.at(-1)!)['online'] === false);
    expect(payload(after.at(-1)!)).toEqual({ station: STATION, online: false, state: 'offline', reason: 'connection to the station lost' });
    // Retained: whoever looks later sees the station offline, not its last live state.
    const late = await sub(b, `${base}/state`);
    const [state] = await late.messages.until('the retained state', (ms) => ms.length >= 1);
    expect(state!.retained).toBe(true);
    expect(payload(state!)['online']).toBe(false);
  });

  test('with-the-broker-down-the-ingest-is-not-held-up-and-the-newest-events-arrive-when-it-comes-back', async () => {
    const [port] = (await freePorts(1)) as [number];
    const queue = 4;
    const watcher = new TestWatcher();
    const { d, logs } = await startDaemon(configInput(port, { user: 'station', password: 'mqtt-Secret-4711' }, { mqtt_queue: queue }), watcher);
    const finished = nextEvent(d.events, (e) => e.type === 'job.finished');
    await attachCard(watcher, 'CARD_B', 3);
    // The broker is not there: the card is ingested all the same.
    expect(await finished).toMatchObject({ job: { state: 'done' } });
    expect(logs.some((l) => l.msg === 'MQTT broker unreachable; events are queued and the connection retried')).toBe(true);

    const b = await broker(port);
    const base = `${PREFIX}/${STATION}`;
    const witness = await sub(b, `${PREFIX}/#`);
    const published = d.events.since(0)!.filter((e) => e.type !== 'job.progress');
    const seen = await witness.messages.until(
      'the queued events',
      (ms) => ms.filter((m) => m.topic.includes('/events/')).length >= queue && ms.some((m) => m.topic === `${base}/state`),
    );
    // Only the newest `queue` events were kept while the broker was away; the state came as well.
    const ids = seen.filter((m) => m.topic.includes('/events/')).map((m) => payload(m)['id']);
    expect(ids).toEqual(published.slice(-queue).map((e) => e.id));
    expect(payload(seen.find((m) => m.topic === `${base}/state`)!)).toMatchObject({ online: true, state: 'safe-to-pull' });
    // Dropped, and said so: the log counts them (progress events, thinned, count among them).
    expect(logs.some((l) => l.msg === 'MQTT queue full while the broker is unreachable; dropping the oldest events')).toBe(true);
    const back = logs.find((l) => l.msg === 'MQTT broker reachable again');
    expect(back?.['eventsDropped']).toBeGreaterThanOrEqual(published.length - queue);
  });
});
