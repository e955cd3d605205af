import { createHmac } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { normalizeConfig, type ConfigInput } from '../src/config/index.js';
import type { CardReport } from '../src/daemon/card-report.js';
import { FolderSource } from '../src/device/card/folder-source.js';
import { Daemon } from '../src/daemon/daemon.js';
import { pathJobKey } from '../src/daemon/devices.js';
import { captureLog, until } from './support/daemon-helpers.js';
import { writeJpeg } from './support/fixtures.js';
import { startHttpReceiver, startSmtpServer, type HttpReceiver, type ReceivedRequest, type SmtpServer } from './support/notify-peers.js';
import { freePorts } from './support/ports.js';
import { nextEvent, TestWatcher } from './support/test-watcher.js';
import { tempDir } from './support/tree.js';

const SECRET = 'hook-Secret-0815';
const TOKEN = 'tk_ntfy-Token-42';
const STATION = 'cart-3';

/** The webhook's signature, computed here from the raw body as a receiver would. */
function expectSigned(r: ReceivedRequest): void {
  const ts = String(r.headers['x-shuttle-timestamp']);
  expect(Math.abs(Number(ts) - Date.now() / 1000)).toBeLessThan(60);
  const expected = `sha256=${createHmac('sha256', SECRET).update(`${ts}.${r.body}`).digest('hex')}`;
  expect(r.headers['x-shuttle-signature']).toBe(expected);
}

const bodyOf = (r: ReceivedRequest): { kind: string; title: string; reports: CardReport[]; details: Record<string, unknown> } => JSON.parse(r.body) as never;

describe('notifications and the card report', () => {
  let work: string;
  let cleanup: () => Promise<void>;
  let daemon: Daemon | undefined;
  const closers: Array<() => Promise<void>> = [];

  beforeEach(async () => {
    ({ path: work, cleanup } = await tempDir('shuttle-alerts-'));
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    for (const c of closers.splice(0).reverse()) await c();
    await cleanup();
  });

  async function receiver(): Promise<HttpReceiver> {
    const r = await startHttpReceiver();
    closers.push(r.close);
    return r;
  }
  async function smtp(): Promise<SmtpServer> {
    const s = await startSmtpServer();
    closers.push(s.close);
    return s;
  }

  function config(notify: Record<string, unknown>, extra: Partial<ConfigInput> = {}): ConfigInput {
    return {
      station: STATION,
      destinations: [{ path: join(work, 'dest-a') }, { path: join(work, 'dest-b') }],
      ingest: { exclude: ['*.tmp'] },
      daemon: { control_socket: join(work, 'control.sock'), watchdog: false, usb_cameras: false, network_cameras: false },
      // Only what a test asks for: a small disk here must not add "disk low" messages to the count.
      notify: { retry_ms: 100, on: ['done', 'failed'], ...notify },
      ...extra,
    };
  }

  async function start(input: ConfigInput, watcher: TestWatcher, env: NodeJS.ProcessEnv = {}): Promise<{ d: Daemon; logs: ReturnType<typeof captureLog>['lines'] }> {
    const log = captureLog();
    daemon = await Daemon.start({ config: normalizeConfig(input), stateDir: join(work, 'state'), logger: log.logger, env, watchers: [watcher] });
    return { d: daemon, logs: log.lines };
  }

  async function attachCard(watcher: TestWatcher, name: string): Promise<void> {
    const card = join(work, name);
    await writeJpeg(join(card, 'DCIM', 'IMG_0001.JPG'), { seed: name.length });
    await writeJpeg(join(card, 'DCIM', 'IMG_0002.JPG'), { seed: name.length + 1 });
    await writeFile(join(card, 'DCIM', 'junk.tmp'), 'left out');
    watcher.events.attach({ id: `mount:${name}`, kind: 'card', label: name, uri: card, jobKey: pathJobKey(card), open: async () => new FolderSource(card) });
  }

  test('a-card-done-sends-one-mail-one-signed-webhook-and-one-push-carrying-the-report-that-is-on-both-destinations', async () => {
    const [hook, push, mail] = await Promise.all([receiver(), receiver(), smtp()]);
    const watcher = new TestWatcher();
    const creds = join(work, 'creds');
    await mkdir(creds);
    await writeFile(join(creds, 'ntfy_token'), `${TOKEN}\n`);
    const { d, logs } = await start(
      config({
        webhook: { url: `${hook.url}/hooks/shuttle`, secret: SECRET },
        ntfy: { url: `${push.url}/cart-3-cards` },
        email: { smtp: `smtp://127.0.0.1:${mail.port}`, from: 'cart-3@example.net', to: ['dit@example.net'] },
      }),
      watcher,
      { CREDENTIALS_DIRECTORY: creds },
    );
    const finished = nextEvent(d.events, (e) => e.type === 'job.finished');
    await attachCard(watcher, 'EOS_DIGITAL');
    expect(await finished).toMatchObject({ job: { state: 'done' } });

    // The report is on both destinations, as text and JSON, outside the files' own folders.
    const reports: CardReport[] = [];
    for (const dest of ['dest-a', 'dest-b']) {
      const names = (await readdir(join(work, dest, 'shuttle-reports'))).sort();
      expect(names).toEqual([expect.stringMatching(/^\d{4}-\d\d-\d\d_\d{6}_EOS_DIGITAL\.json$/), expect.stringMatching(/_EOS_DIGITAL\.txt$/)]);
      const report = JSON.parse(await readFile(join(work, dest, 'shuttle-reports', names[0]!), 'utf8')) as CardReport;
      const text = await readFile(join(work, dest, 'shuttle-reports', names[1]!), 'utf8');
      reports.push(report);
      expect(report).toMatchObject({
        format: 'shuttle-card-report/1',
        station: STATION,
        status: 'complete',
        source: { uri: join(work, 'EOS_DIGITAL'), kind: 'folder' },
        files: { listed: 2, copied: 2, alreadyVerified: 0, failed: 0, skipped: 1 },
        secondSourceRead: { done: false },
        cloud: { state: 'no upload configured' },
        skipped: [{ path: 'DCIM/junk.tmp', reason: 'excluded by include/exclude' }],
        errors: [],
      });
      for (const dd of report.destinations) {
        expect(dd.verified).toBe(2);
        expect(dd.readBack.pastCache + dd.readBack.throughCache).toBe(2);
        // The generation named is the one in ascmhl/ that lists the files.
        expect(dd.manifests).toEqual([{ sequence: 1, file: expect.stringMatching(/^0001_.*\.mhl$/) }]);
        const mhl = await readFile(join(dd.path, 'ascmhl', dd.manifests[0]!.file!), 'utf8');
        expect(mhl).toContain('IMG_0001.JPG');
        expect(mhl).toContain('shuttle-reports');
      }
      expect(report.destinations.find((x) => x.path === join(work, dest))?.report?.text).toBe(`shuttle-reports/${names[1]}`);
      expect(text).toContain('Card:         ');
      expect(text).toContain('Second read:  not done');
      expect(text).toContain('DCIM/junk.tmp: excluded by include/exclude');
    }

    const [m] = await mail.mails.until('the mail', (ms) => ms.length >= 1);
    expect(m).toMatchObject({ from: 'cart-3@example.net', to: ['dit@example.net'] });
    expect(m!.subject).toMatch(/^cart-3: EOS_DIGITAL: 2 files verified \(\d+(\.\d)? [KM]?B\), safe to pull$/);
    expect(m!.text).toContain('Shuttle card report');
    for (const dest of ['dest-a', 'dest-b']) expect(m!.text).toContain(join(work, dest));
    expect(m!.attachments).toHaveLength(1);
    expect(JSON.parse(m!.attachments[0]!.content)).toMatchObject({ job: reports[0]!.job, files: { listed: 2 } });

    const [h] = await hook.requests.until('the webhook', (rs) => rs.length >= 1);
    expect(h).toMatchObject({ method: 'POST', url: '/hooks/shuttle', headers: { 'content-type': 'application/json', 'x-shuttle-event': 'done' } });
    expectSigned(h!);
    expect(bodyOf(h!)).toMatchObject({ kind: 'done', station: STATION, reports: [{ job: reports[0]!.job, status: 'complete' }] });

    const [p] = await push.requests.until('the push', (rs) => rs.length >= 1);
    expect(p).toMatchObject({ method: 'POST', url: '/cart-3-cards', headers: { priority: '3', tags: 'white_check_mark', authorization: `Bearer ${TOKEN}` } });
    expect(p!.headers['title']).toBe(m!.subject);
    expect(p!.body).toContain('EOS_DIGITAL: 2 files verified');

    // Exactly one of each, and no secret in any log line.
    await d.stop();
    daemon = undefined;
    expect([mail.mails.items.length, hook.requests.items.length, push.requests.items.length]).toEqual([1, 1, 1]);
    for (const secret of [SECRET, TOKEN]) expect(JSON.stringify(logs)).not.toContain(secret);
  });

  test('jobs-that-end-within-the-window-go-out-together-in-one-message', async () => {
    const [hook, mail] = await Promise.all([receiver(), smtp()]);
    const watcher = new TestWatcher();
    await start(
      config({ webhook: { url: hook.url, secret: SECRET }, email: { smtp: `smtp://127.0.0.1:${mail.port}`, from: 'a@example.net', to: ['b@example.net'] }, window_ms: 5_000 }),
      watcher,
    );
    for (const name of ['CARD_A', 'CARD_B', 'CARD_C']) await attachCard(watcher, name);
    // The first goes out at once; the two that end within its window come together when it closes.
    const reqs = await hook.requests.until('three reports', (rs) => rs.flatMap((r) => bodyOf(r).reports).length >= 3);
    expect(reqs.map((r) => bodyOf(r).reports.map((x) => x.source.label))).toEqual([['CARD_A'], ['CARD_B', 'CARD_C']]);
    expect(bodyOf(reqs[1]!).title).toBe(`${STATION}: 2 cards done`);
    for (const r of reqs) expectSigned(r);
    const mails = await mail.mails.until('two mails', (ms) => ms.length >= 2);
    expect(mails.map((x) => x.attachments.length)).toEqual([1, 2]);
    expect(mails[1]!.text).toContain('CARD_B: 2 files verified');
    expect(mails[1]!.text).toContain('CARD_C: 2 files verified');
  });

  test('a-dead-receiver-is-retried-and-logged-and-the-job-still-ends-safe-to-pull', async () => {
    const hook = await receiver();
    hook.status = 503;
    const [closedPort] = (await freePorts(1)) as [number];
    const watcher = new TestWatcher();
    const { d, logs } = await start(
      config({ webhook: { url: hook.url }, email: { smtp: `smtp://127.0.0.1:${closedPort}`, from: 'a@example.net', to: ['b@example.net'] }, retries: 2 }),
      watcher,
    );
    const safe = nextEvent(d.events, (e) => e.type === 'station.state' && e.state === 'safe-to-pull');
    await attachCard(watcher, 'EOS_DIGITAL');
    await safe;
    expect(d.scheduler.snapshot().recent[0]).toMatchObject({ state: 'done', result: { status: 'complete', failed: 0 } });
    // 1 + 2 retries, each answered 503.
    await hook.requests.until('three attempts', (rs) => rs.length >= 3);
    const given = (channel: string): Array<Record<string, unknown>> => logs.filter((l) => l['channel'] === channel);
    const gaveUp = (channel: string): boolean => given(channel).some((l) => l.msg === 'notification not delivered');
    await until(
      'both channels to give up',
      async () => gaveUp('webhook') && gaveUp('email'),
      (ok) => ok,
    );
    expect(hook.requests.items).toHaveLength(3);
    expect(given('webhook').filter((l) => l.msg === 'notification failed; trying again')).toHaveLength(2);
    expect(given('webhook').at(-1)).toMatchObject({ level: 50, attempt: 3, error: { code: 'NOTIFY_FAILED', message: expect.stringContaining('answered 503') } });
    expect(given('email').at(-1)).toMatchObject({ level: 50, attempt: 3, error: { message: expect.stringContaining('ECONNREFUSED') } });
  });

  test('files-waiting-for-upload-with-the-cloud-out-of-reach-are-notified-once-it-has-lasted', async () => {
    const hook = await receiver();
    const [closedPort] = (await freePorts(1)) as [number];
    const creds = join(work, 's3-credentials');
    await writeFile(creds, '[default]\naws_access_key_id = AKIDTEST\naws_secret_access_key = not-a-real-secret-key\n');
    const watcher = new TestWatcher();
    const input = config(
      { webhook: { url: hook.url, secret: SECRET }, on: ['done', 'cloud-unreachable'], cloud_unreachable_minutes: 0.1, check_ms: 100 },
      { upload: { target: 's3://bucket/shoots', endpoint: `http://127.0.0.1:${closedPort}`, region: 'us-east-1', provider: 'generic', credentials_file: creds } },
    );
    const { d } = await start(input, watcher);
    const started = nextEvent(d.events, (e) => e.type === 'job.started');
    const finished = nextEvent(d.events, (e) => e.type === 'job.finished');
    await attachCard(watcher, 'EOS_DIGITAL');
    // The job queues its files for upload after it starts and before it ends: the clock starts in between.
    const queuedAfter = Date.parse((await started).at);
    await finished;
    const reqs = await hook.requests.until('cloud unreachable', (rs) => rs.some((r) => bodyOf(r).kind === 'cloud-unreachable'));
    const cloud = reqs.find((r) => bodyOf(r).kind === 'cloud-unreachable')!;
    expectSigned(cloud);
    // Not at the first failed attempt (about 2 s in): only once no upload had succeeded for cloud_unreachable_minutes (6 s).
    expect(cloud.at - queuedAfter).toBeGreaterThanOrEqual(6_000);
    expect(bodyOf(cloud)).toMatchObject({ details: { target: 's3://bucket/shoots', state: 'backing-off', depth: 2 } });
    // The card itself is done: its report says where its files stand in the cloud.
    const done = reqs.find((r) => bodyOf(r).kind === 'done');
    expect(done && bodyOf(done).reports[0]!.cloud).toMatchObject({ target: 's3://bucket/shoots', state: expect.stringContaining('queued for upload') });
    expect(d.status().uploads).toMatchObject({ state: 'backing-off', depth: 2 });
  });

  test('a-destination-low-on-space-is-notified-at-job-start-once-per-repeat-interval', async () => {
    const hook = await receiver();
    const watcher = new TestWatcher();
    // More than any disk here has free: every destination is low (once it exists, as before the first card).
    for (const dest of ['dest-a', 'dest-b']) await mkdir(join(work, dest));
    const { d } = await start(config({ webhook: { url: hook.url, secret: SECRET }, on: ['disk-low'], disk_low_bytes: 1e15 }), watcher);
    for (const name of ['CARD_A', 'CARD_B']) {
      const done = nextEvent(d.events, (e) => e.type === 'job.finished');
      await attachCard(watcher, name);
      await done;
    }
    const [r] = await hook.requests.until('disk low', (rs) => rs.length >= 1);
    expectSigned(r!);
    const body = bodyOf(r!);
    expect(body).toMatchObject({ kind: 'disk-low', details: { thresholdBytes: 1e15 } });
    expect((body.details['destinations'] as Array<{ path: string }>).map((x) => x.path)).toEqual([join(work, 'dest-a'), join(work, 'dest-b')]);
    await d.stop();
    daemon = undefined;
    // Two job starts, one message: the second is within repeat_ms; and done was not asked for.
    expect(hook.requests.items).toHaveLength(1);
  });
});
