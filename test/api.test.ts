import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import sharp from 'sharp';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { formatDaemonStatus } from '../src/daemon/status-report.js';
import { type ApiDaemon, events, nextEvent, rawRequest, startApiDaemon } from './support/api-daemon.js';
import { runCli } from './support/cli.js';
import { until } from './support/daemon-helpers.js';
import { writeJpeg } from './support/fixtures.js';
import { seedVerifiedShots } from './support/journal-seed.js';
import { tempDir } from './support/tree.js';

/**
 * The daemon's HTTP API against a running daemon on a port of its own: what it shows as cards are
 * ingested, who may use it, how it refuses bad requests, and that its OpenAPI document describes what
 * it answers.
 */

const TOKEN = 'test-token-0123456789abcdef';

type Doc = { openapi: string; paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>> };

/** Checks responses against the schemas the server's own OpenAPI document gives for them. */
class DocumentCheck {
  readonly #ajv = new Ajv2020({ strict: false, allErrors: true });
  constructor(readonly doc: Doc) {
    this.#ajv.addSchema(doc as object, 'openapi');
  }

  /** Throws unless `body` matches the document's schema for this route, method and status. */
  matches(route: string, method: string, status: number, body: unknown): void {
    const response = this.doc.paths[route]?.[method]?.responses[String(status)];
    expect(response, `${method.toUpperCase()} ${route} ${status} is in the document`).toBeDefined();
    const pointer = ['paths', route, method, 'responses', String(status), 'content', 'application/json', 'schema'].map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');
    const validate = this.#ajv.compile({ $ref: `openapi#/${pointer}` });
    expect(validate(body), `${method.toUpperCase()} ${route} ${status}: ${JSON.stringify(validate.errors)}`).toBe(true);
  }
}

async function json(url: string, init?: RequestInit): Promise<{ status: number; body: unknown }> {
  const r = await fetch(url, init);
  return { status: r.status, body: await r.json() };
}

let work: string;
let cleanup: () => Promise<void>;
let d: ApiDaemon | undefined;
beforeEach(async () => {
  ({ path: work, cleanup } = await tempDir('shuttle-api-'));
});
afterEach(async () => {
  await d?.daemon.stop();
  d = undefined;
  await cleanup();
});

describe('api', () => {
  test('a-card-ingest-shows-in-station-jobs-files-and-previews-and-every-answer-matches-the-openapi-document', async () => {
    d = await startApiDaemon(work);
    const { daemon, url, watcher } = d;
    const doc = new DocumentCheck((await json(`${url}/api/v1/openapi.json`)).body as Doc);
    expect(doc.doc.openapi).toBe('3.1.0');

    const before = await json(`${url}/api/v1/station`);
    expect(before.body).toMatchObject({ state: 'idle', devices: [], destinations: [{ path: join(work, 'dest') }] });
    doc.matches('/api/v1/station', 'get', 200, before.body);

    const card = join(work, 'card');
    const a = await writeJpeg(join(card, 'DCIM', 'IMG_0001.JPG'), { seed: 1 });
    const b = await writeJpeg(join(card, 'DCIM', 'IMG_0002.JPG'), { seed: 2 });
    const safe = nextEvent(daemon.events, (e) => e.type === 'station.state' && e.state === 'safe-to-pull');
    const previews = events(daemon.events, (e) => e.type === 'preview.ready', 2);
    watcher.card('card-1', card);
    await safe;

    const station = await json(`${url}/api/v1/station`);
    doc.matches('/api/v1/station', 'get', 200, station.body);
    expect(station.body).toMatchObject({ state: 'safe-to-pull', devices: [{ id: 'card-1', kind: 'card', state: 'safe-to-pull', job: expect.any(Number) }] });
    const free = (station.body as { destinations: Array<{ freeBytes: number; totalBytes: number }> }).destinations[0]!;
    expect(free.freeBytes).toBeGreaterThan(0);
    expect(free.totalBytes).toBeGreaterThanOrEqual(free.freeBytes);

    const jobs = await json(`${url}/api/v1/jobs`);
    doc.matches('/api/v1/jobs', 'get', 200, jobs.body);
    const job = (jobs.body as { recent: Array<Record<string, unknown>> }).recent[0]!;
    expect(job).toMatchObject({
      state: 'done',
      label: 'card-1',
      progress: { filesTotal: 2, filesDone: 2, filesLeft: 0, bytesTotal: a.length + b.length, bytesDone: a.length + b.length, bytesLeft: 0 },
    });
    const one = await json(`${url}/api/v1/jobs/${String(job['id'])}`);
    doc.matches('/api/v1/jobs/{id}', 'get', 200, one.body);

    await previews;
    const files = await json(`${url}/api/v1/files?limit=1`);
    doc.matches('/api/v1/files', 'get', 200, files.body);
    const page1 = files.body as {
      items: Array<{ fileId: number; path: string; state: string; copies: Array<{ path: string; state: string }>; preview?: string; job?: number }>;
      next?: number;
    };
    expect(page1.items).toHaveLength(1);
    expect(page1.next).toBe(page1.items[0]!.fileId);
    const page2 = (await json(`${url}/api/v1/files?limit=1&before=${page1.next}`)).body as typeof page1;
    expect(page2.next).toBeUndefined();
    const both = [...page1.items, ...page2.items];
    expect(both.map((f) => f.path)).toEqual(['DCIM/IMG_0002.JPG', 'DCIM/IMG_0001.JPG']);
    for (const f of both) {
      expect(f).toMatchObject({ state: 'verified', job: job['id'], preview: `/api/v1/files/${f.fileId}/preview` });
      expect(f.copies).toEqual([{ destination: join(work, 'dest'), path: expect.stringMatching(/IMG_000[12]\.JPG$/), state: 'verified' }]);
      expect(await readFile(f.copies[0]!.path)).toEqual(f.path.endsWith('1.JPG') ? a : b);
      const img = await fetch(`${url}${f.preview!}`);
      expect(img.status).toBe(200);
      expect(img.headers.get('content-type')).toBe('image/jpeg');
      // A JPEG of its own, not the copy served back.
      const bytes = Buffer.from(await img.arrayBuffer());
      expect(bytes.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
    }
    const single = await json(`${url}/api/v1/files/${both[0]!.fileId}`);
    doc.matches('/api/v1/files/{fileId}', 'get', 200, single.body);

    const errors = await json(`${url}/api/v1/errors`);
    doc.matches('/api/v1/errors', 'get', 200, errors.body);
    expect(errors.body).toEqual({ items: [] });

    // Its job finished: the card may be ejected now, but this one is a folder, not a mount.
    const eject = await json(`${url}/api/v1/devices/card-1/eject`, { method: 'POST' });
    expect(eject).toMatchObject({ status: 404, body: { error: { code: 'USAGE', message: expect.stringContaining('no longer mounted') } } });
    doc.matches('/api/v1/devices/{id}/eject', 'post', 404, eject.body);
    const capture = await json(`${url}/api/v1/capture`, { method: 'POST' });
    // No camera is tethered (the daemon has no [tether] cameras): a conflict, not a fault.
    expect(capture).toMatchObject({ status: 409, body: { error: { code: 'SOURCE_NOT_FOUND', message: expect.stringContaining('no camera is tethered') } } });
    doc.matches('/api/v1/capture', 'post', 409, capture.body);
    // The control socket's status (`shuttle status`) shows the same station view.
    const status = daemon.status();
    expect(status.station).toEqual({ state: 'safe-to-pull', reason: expect.any(String), devices: [expect.objectContaining({ id: 'card-1', state: 'safe-to-pull' })] });
    const lines = formatDaemonStatus(status);
    expect(lines).toContain(`station: safe-to-pull — ${status.station!.reason}`);
    expect(lines).toContain(`dashboard and API: ${url}`);
    expect(lines.find((l) => l.startsWith('device card-1'))).toMatch(/: safe-to-pull$/);
  });

  test('a-preview-has-a-thumbnail-for-tiles-made-with-it-or-on-first-request-for-an-older-preview', async () => {
    const state = join(work, 'state');
    // An earlier session's shot whose preview has no thumbnail yet.
    const { fileIds } = await seedVerifiedShots(state, 1, { destination: join(work, 'earlier') });
    d = await startApiDaemon(work);
    const { daemon, url, watcher } = d;
    const shot = join(work, 'card', 'DCIM', 'IMG_0001.JPG');
    await mkdir(dirname(shot), { recursive: true });
    await sharp({ create: { width: 2400, height: 1600, channels: 3, background: { r: 30, g: 60, b: 90 } } })
      .jpeg()
      .toFile(shot);
    const ready = nextEvent(daemon.events, (e) => e.type === 'preview.ready');
    watcher.card('card-1', join(work, 'card'));
    const e = await ready;
    if (e.type !== 'preview.ready') throw new Error('unreachable');
    // Made with the preview, before it was announced: under the state directory, beside the previews.
    const thumbPath = join(state, 'thumbnails', e.preview.slice(join(state, 'previews').length + 1));
    expect(await sharp(thumbPath).metadata()).toMatchObject({ format: 'jpeg', width: 320, height: 213 });
    const item = (await json(`${url}/api/v1/files/${e.fileId}`)).body;
    expect(item).toMatchObject({ preview: `/api/v1/files/${e.fileId}/preview`, thumbnail: `/api/v1/files/${e.fileId}/preview?size=thumb` });
    const size = async (path: string): Promise<{ width?: number | undefined; type: string | null }> => {
      const r = await fetch(`${url}${path}`);
      expect(r.status).toBe(200);
      return { width: (await sharp(Buffer.from(await r.arrayBuffer())).metadata()).width, type: r.headers.get('content-type') };
    };
    expect(await size(`/api/v1/files/${e.fileId}/preview?size=thumb`)).toEqual({ width: 320, type: 'image/jpeg' });
    expect(await size(`/api/v1/files/${e.fileId}/preview`)).toEqual({ width: 1600, type: 'image/jpeg' });

    // The seeded preview (160 pixels) gets its thumbnail on the first request (never enlarged).
    const old = fileIds[0]!;
    const oldThumb = join(state, 'thumbnails', '2026', '03', '14', 'IMG_00000.jpg');
    await expect(stat(oldThumb)).rejects.toThrow(/ENOENT/);
    expect(await size(`/api/v1/files/${old}/preview?size=thumb`)).toEqual({ width: 160, type: 'image/jpeg' });
    expect((await stat(oldThumb)).isFile()).toBe(true);
    expect((await json(`${url}/api/v1/files/${old}/preview?size=huge`)).status).toBe(400);
  });

  test('a-running-job-can-be-cancelled-and-its-card-is-not-ejected-while-it-runs', async () => {
    d = await startApiDaemon(work);
    const { daemon, url } = d;
    const doc = new DocumentCheck((await json(`${url}/api/v1/openapi.json`)).body as Doc);
    const card = join(work, 'card');
    for (let i = 0; i < 3; i++) await writeJpeg(join(card, `IMG_000${i}.JPG`), { seed: i });
    // The job waits for the destination's lock, held here as a CLI ingest would: it stays queued.
    const { job, release } = await jobHeldAtLock('card-2', card);
    try {
      const eject = await json(`${url}/api/v1/devices/card-2/eject`, { method: 'POST' });
      expect(eject).toMatchObject({ status: 409, body: { error: { code: 'LOCKED', message: expect.stringContaining(`job ${job.id} is still`) } } });
      doc.matches('/api/v1/devices/{id}/eject', 'post', 409, eject.body);
      const finished = nextEvent(daemon.events, (e) => e.type === 'job.finished');
      const cancel = await json(`${url}/api/v1/jobs/${job.id}/cancel`, { method: 'POST' });
      expect(cancel.status).toBe(200);
      doc.matches('/api/v1/jobs/{id}/cancel', 'post', 200, cancel.body);
      expect(await finished).toMatchObject({ job: { id: job.id, state: 'cancelled' } });
    } finally {
      release();
    }
  });

  /** A card of its own (a mount, so that an eject unmounts it) whose job runs and waits for the destination's lock. */
  async function heldCardJob(id: string): Promise<{ card: string; job: { id: number }; release: () => void }> {
    const card = join(work, id);
    await mkdir(card);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', card]);
    for (let i = 0; i < 3; i++) await writeJpeg(join(card, `IMG_000${i}.JPG`), { seed: i });
    return { card, ...(await jobHeldAtLock(id, card)) };
  }

  /**
   * Shows `card` to the daemon as device `id` while the destination's lock is held, as a CLI ingest would:
   * its job starts and waits for the lock until release().
   */
  async function jobHeldAtLock(id: string, card: string) {
    const { daemon, watcher } = d!;
    const { acquireLock, destinationLockPath } = await import('../src/store/lock.js');
    await mkdir(join(work, 'dest'), { recursive: true });
    const lock = await acquireLock(destinationLockPath(join(work, 'dest')), { owner: { command: 'test' } });
    const started = nextEvent(daemon.events, (e) => e.type === 'job.started');
    watcher.card(id, card);
    const e = await started;
    if (e.type !== 'job.started') throw new Error(`not a job event: ${e.type}`);
    return { job: e.job, release: () => lock.release() };
  }
  const mounted = (path: string): boolean => spawnSync('mountpoint', ['-q', path]).status === 0;

  test('a-card-job-cancelled-by-hand-ends-with-the-card-ejected-after-the-job-stopped-and-the-card-never-safe-to-pull', async () => {
    d = await startApiDaemon(work);
    const { daemon, url, log } = d;
    const held = await heldCardJob('card-5');
    try {
      expect(mounted(held.card)).toBe(true);
      const finished = nextEvent(daemon.events, (e) => e.type === 'job.finished');
      const cancel = await json(`${url}/api/v1/jobs/${held.job.id}/cancel`, { method: 'POST' });
      expect(cancel.status).toBe(200);
      const ended = await finished;
      expect(ended).toMatchObject({ job: { id: held.job.id, state: 'cancelled' } });
      // Unmounted only once the job had let go of it (a busy tmpfs refuses the unmount, and the eject would fail).
      await until(
        'the card ejected',
        async () => log.lines.some((l) => typeof l.msg === 'string' && l.msg.includes('card-5: its job was cancelled by hand; the card is ejected')),
        (seen) => seen,
      );
      expect(mounted(held.card)).toBe(false);
      // Unmounted, and as far as the station goes, a card that needs a look, not one safe to pull.
      expect(daemon.status().station).toMatchObject({ state: 'attention', devices: [{ id: 'card-5', state: 'attention' }] });
    } finally {
      held.release();
      spawnSync('umount', [held.card]);
    }
  });

  /**
   * A card the card unit mounted at its kernel name (sdb1), sysfs of the test's making that knows it, and
   * a systemctl that does what shuttle-eject@sdb1 does: stop the card's unit, whose waiting `request
   * ingest --wait` cancels the job (as a request being stopped) and exits once it has ended; its release
   * unmounts; then the reader is powered off (the disk leaves sysfs). `seen` says, for each call, the job's
   * state then and whether the daemon had already asked it to stop.
   */
  async function installedCard(): Promise<{
    card: string;
    systemdEject: { systemctl: (args: string[]) => Promise<void>; sysRoot: string };
    seen: Array<{ args: string[]; job: string | undefined; stopping: boolean }>;
    setJob: (id: number) => void;
  }> {
    const card = join(work, 'sdb1');
    await mkdir(card);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', card]);
    const sys = join(work, 'sys');
    const dev = (await readFile('/proc/self/mountinfo', 'utf8'))
      .split('\n')
      .find((l) => l.split(' ')[4] === card)!
      .split(' ')[2]!;
    await mkdir(join(sys, 'devices', 'usb1', '1-2', 'sdb1'), { recursive: true });
    await mkdir(join(sys, 'class', 'block'), { recursive: true });
    await mkdir(join(sys, 'dev', 'block'), { recursive: true });
    await symlink(join(sys, 'devices', 'usb1', '1-2', 'sdb1'), join(sys, 'class', 'block', 'sdb1'));
    await symlink(join(sys, 'devices', 'usb1', '1-2', 'sdb1'), join(sys, 'dev', 'block', dev));
    let jobId = 0;
    const seen: Array<{ args: string[]; job: string | undefined; stopping: boolean }> = [];
    const systemctl = async (args: string[]): Promise<void> => {
      const stopping = d!.log.lines.some((l) => l.msg === 'stopping job' && l['job'] === jobId);
      seen.push({ args, job: d!.daemon.scheduler.get(jobId)?.state, stopping });
      const { ControlClient } = await import('../src/daemon/control.js');
      const client = await ControlClient.connect([join(work, 'control.sock')]);
      try {
        await client.request('cancel', { job: jobId, stopping: true });
        await client.request('wait', { job: jobId });
      } finally {
        client.close();
      }
      execFileSync('umount', [card]);
      await rm(join(sys, 'class', 'block', 'sdb1'));
    };
    return { card, systemdEject: { systemctl, sysRoot: sys }, seen, setJob: (id) => (jobId = id) };
  }

  test('under-the-installed-units-a-card-job-cancelled-by-hand-is-stopped-by-the-eject-unit-through-the-card-unit-and-the-reader-powered-off', async () => {
    const { card, systemdEject, seen, setJob } = await installedCard();
    try {
      d = await startApiDaemon(work, {}, {}, {}, undefined, { systemdEject });
      const { daemon, url, log } = d;
      for (let i = 0; i < 3; i++) await writeJpeg(join(card, `IMG_000${i}.JPG`), { seed: i });
      const held = await jobHeldAtLock('card-7', card);
      try {
        const jobId = held.job.id;
        setJob(jobId);
        const finished = nextEvent(daemon.events, (x) => x.type === 'job.finished');
        expect((await json(`${url}/api/v1/jobs/${jobId}/cancel`, { method: 'POST' })).status).toBe(200);
        const ended = await finished;
        // The job was still running, not yet asked to stop, when the eject unit was started: cancelled first,
        // the card's unit could have released the card before the eject unit looked, and left it powered.
        expect(seen).toEqual([{ args: ['start', '--no-ask-password', 'shuttle-eject@sdb1.service'], job: 'running', stopping: false }]);
        // Stopped by its own request, with the reason the crew's cancel gave.
        expect(ended).toMatchObject({ job: { id: jobId, state: 'cancelled' } });
        if (ended.type !== 'job.finished') throw new Error(`not a job event: ${ended.type}`);
        expect(ended.job.history.at(-1)?.reason).toBe('cancelled from the API');
        const ejected = await until(
          'the card ejected',
          async () => log.lines.find((l) => typeof l.msg === 'string' && l.msg.includes('card-7: its job was cancelled by hand; the card is ejected')) ?? null,
          (l) => l !== null,
        );
        expect(ejected).toMatchObject({ unmounted: true, poweredOff: true });
        expect(mounted(card)).toBe(false);
        expect(daemon.status().station).toMatchObject({ state: 'attention' });
      } finally {
        held.release();
      }
    } finally {
      spawnSync('umount', [card]);
    }
  });

  test('under-the-installed-units-a-card-whose-job-only-waits-for-the-cloud-is-ejected-through-the-card-unit-giving-up-its-wipe', async () => {
    const { card, systemdEject, seen, setJob } = await installedCard();
    try {
      const env = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test-secret', AWS_REGION: 'us-east-1' };
      const cloud = { cards: { wipe: 'after-cloud' as const }, upload: { target: 's3://bucket/daemon', endpoint: 'http://127.0.0.1:9', provider: 'minio' as const } };
      d = await startApiDaemon(work, {}, cloud, env, undefined, { systemdEject });
      const { daemon, url, watcher } = d;
      for (let i = 0; i < 3; i++) await writeJpeg(join(card, `IMG_000${i}.JPG`), { seed: i });
      const waiting = nextEvent(daemon.events, (e) => e.type === 'job.progress' && e.job.progress?.phase === 'waiting-for-cloud');
      watcher.card('card-8', card);
      const e = await waiting;
      if (e.type !== 'job.progress') throw new Error(`not a job event: ${e.type}`);
      setJob(e.job.id);
      const finished = nextEvent(daemon.events, (x) => x.type === 'job.finished');
      const eject = await json(`${url}/api/v1/devices/card-8/eject`, { method: 'POST' });
      expect(eject).toMatchObject({ status: 200, body: { device: 'card-8', unmounted: true, poweredOff: true } });
      expect(seen).toEqual([{ args: ['start', '--no-ask-password', 'shuttle-eject@sdb1.service'], job: 'running', stopping: false }]);
      const given = expect.stringContaining('card-8 ejected while its wipe waited for the cloud: the wipe is given up, every file stays on the card');
      expect(await finished).toMatchObject({ job: { id: e.job.id, state: 'cancelled', result: { wiped: 0, errors: [{ code: 'ABORTED', message: given }] } } });
      expect(daemon.status().station).toMatchObject({ state: 'safe-to-pull' });
    } finally {
      spawnSync('umount', [card]);
    }
  });

  test('a-card-job-cancelled-by-its-own-waiting-request-as-its-unit-stops-leaves-the-card-to-that-unit', async () => {
    d = await startApiDaemon(work);
    const { daemon, url } = d;
    const held = await heldCardJob('card-6');
    try {
      const finished = nextEvent(daemon.events, (e) => e.type === 'job.finished');
      // What `request ingest --wait` sends when systemd stops the card's unit (whose release unmounts).
      const { ControlClient } = await import('../src/daemon/control.js');
      const client = await ControlClient.connect([join(work, 'control.sock')]);
      try {
        await client.request('cancel', { job: held.job.id, stopping: true });
      } finally {
        client.close();
      }
      expect(await finished).toMatchObject({ job: { id: held.job.id, state: 'cancelled' } });
      // Still mounted for Eject (which answers 404 for a card no longer mounted).
      const eject = await json(`${url}/api/v1/devices/card-6/eject`, { method: 'POST' });
      expect(eject).toMatchObject({ status: 200, body: { device: 'card-6', unmounted: true } });
      expect(mounted(held.card)).toBe(false);
    } finally {
      held.release();
      spawnSync('umount', [held.card]);
    }
  });

  test('a-card-whose-job-only-waits-for-the-cloud-is-ejected-giving-up-its-wipe-and-saying-so', async () => {
    // after-cloud with the cloud unreachable (nothing listens on port 9): every local copy verifies and
    // the job then waits for the uploads. The card is a mount of its own, so that eject unmounts it.
    const env = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test-secret', AWS_REGION: 'us-east-1' };
    d = await startApiDaemon(work, {}, { cards: { wipe: 'after-cloud' }, upload: { target: 's3://bucket/daemon', endpoint: 'http://127.0.0.1:9', provider: 'minio' } }, env);
    const { daemon, url, watcher, log } = d;
    const doc = new DocumentCheck((await json(`${url}/api/v1/openapi.json`)).body as Doc);
    const card = join(work, 'card');
    await mkdir(card);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', card]);
    try {
      for (let i = 0; i < 3; i++) await writeJpeg(join(card, `IMG_000${i}.JPG`), { seed: i });
      const waiting = nextEvent(daemon.events, (e) => e.type === 'job.progress' && e.job.progress?.phase === 'waiting-for-cloud');
      watcher.card('card-3', card);
      const e = await waiting;
      if (e.type !== 'job.progress') throw new Error(`not a job event: ${e.type}`);
      expect(e.job).toMatchObject({ state: 'running', progress: { filesDone: 3 } });
      expect(formatDaemonStatus(daemon.status())).toContain(
        `job ${e.job.id} running: card-3 — 3 files verified here; waiting for the cloud before wiping (an eject now gives the wipe up)`,
      );
      doc.matches('/api/v1/jobs/{id}', 'get', 200, (await json(`${url}/api/v1/jobs/${e.job.id}`)).body);
      const finished = nextEvent(daemon.events, (x) => x.type === 'job.finished');
      const eject = await json(`${url}/api/v1/devices/card-3/eject`, { method: 'POST' });
      expect(eject).toMatchObject({ status: 200, body: { device: 'card-3', unmounted: true } });
      doc.matches('/api/v1/devices/{id}/eject', 'post', 200, eject.body);
      expect(mounted(card)).toBe(false);
      const given = expect.stringContaining('card-3 ejected while its wipe waited for the cloud: the wipe is given up, every file stays on the card');
      expect(await finished).toMatchObject({ job: { id: e.job.id, state: 'cancelled', result: { wiped: 0, errors: [{ code: 'ABORTED', message: given }] } } });
      expect(log.lines.some((l) => Number(l['level']) === 40 && typeof l.msg === 'string' && l.msg.includes('card-3 ejected while its wipe waited for the cloud'))).toBe(true);
      // The uploads are still queued, from the local copies; the crew pulled a card whose every file is verified here.
      expect((await json(`${url}/api/v1/uploads`)).body).toMatchObject({ depth: 3 });
      expect(daemon.status().station).toMatchObject({ state: 'safe-to-pull' });
    } finally {
      spawnSync('umount', [card]);
    }
  });

  test('the-upload-queue-is-listed-reprioritised-paused-without-claiming-new-files-and-resumed', async () => {
    // The cloud is unreachable (nothing listens on port 9): files stay queued, the uploader backs off.
    const env = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test-secret', AWS_REGION: 'us-east-1' };
    d = await startApiDaemon(work, {}, { upload: { target: 's3://bucket/daemon', endpoint: 'http://127.0.0.1:9', provider: 'minio' } }, env);
    const { daemon, url, watcher, log } = d;
    const doc = new DocumentCheck((await json(`${url}/api/v1/openapi.json`)).body as Doc);
    const ingest = async (name: string, files: string[]): Promise<void> => {
      const card = join(work, name);
      for (const [i, f] of files.entries()) await writeJpeg(join(card, f), { seed: i + 10 * name.length });
      const finished = nextEvent(daemon.events, (e) => e.type === 'job.finished');
      watcher.card(name, card);
      await finished;
    };
    await ingest('card-a', ['IMG_0001.JPG', 'IMG_0002.JPG', 'IMG_0003.JPG']);
    type Uploads = { state: string; paused: boolean; depth: number; items: Array<{ fileId: number; key: string; state: string; priority: number; attempts: number }> };
    const uploads = async (): Promise<Uploads> => {
      const r = await json(`${url}/api/v1/uploads`);
      doc.matches('/api/v1/uploads', 'get', 200, r.body);
      return r.body as Uploads;
    };
    expect((await uploads()).depth).toBe(3);

    const pause = await json(`${url}/api/v1/uploads/pause`, { method: 'POST' });
    doc.matches('/api/v1/uploads/pause', 'post', 200, pause.body);
    expect(pause.body).toMatchObject({ paused: true });
    const pausedAt = log.lines.findIndex((l) => l.msg === 'uploads paused');
    expect(pausedAt).toBeGreaterThanOrEqual(0);
    // What was in flight finishes (here: fails against the dead endpoint), then the drain ends.
    await until(
      'the drain to end after the pause',
      async () => log.lines.slice(pausedAt).some((l) => l.msg === 'upload drain ended'),
      (v) => v,
    );
    const paused = await uploads();
    expect(paused).toMatchObject({ state: 'paused', paused: true });
    expect(paused.items.map((i) => i.state)).toEqual(['queued', 'queued', 'queued']);

    // Reprioritise: the last one goes first.
    const last = paused.items[2]!;
    const moved = await json(`${url}/api/v1/uploads/${last.fileId}/priority`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"priority":-5}' });
    doc.matches('/api/v1/uploads/{fileId}/priority', 'post', 200, moved.body);
    expect(moved.body).toEqual({ fileId: last.fileId, changed: 1 });
    const reordered = await uploads();
    expect(reordered.items.map((i) => i.fileId)).toEqual([last.fileId, paused.items[0]!.fileId, paused.items[1]!.fileId]);
    expect(reordered.items[0]!.priority).toBe(-5);

    // Paused, new files are queued but not claimed.
    await ingest('card-bb', ['IMG_0004.JPG']);
    const more = await uploads();
    expect(more).toMatchObject({ state: 'paused', depth: 4 });
    const fresh = more.items.find((i) => i.key.endsWith('IMG_0004.JPG'))!;
    expect(fresh).toMatchObject({ state: 'queued', attempts: 0 });
    expect(log.lines.slice(pausedAt).filter((l) => l.msg === 'upload drain started')).toEqual([]);

    const resume = await json(`${url}/api/v1/uploads/resume`, { method: 'POST' });
    doc.matches('/api/v1/uploads/resume', 'post', 200, resume.body);
    expect(resume.body).toMatchObject({ paused: false });
    await until(
      'a drain after the resume',
      async () => log.lines.slice(pausedAt).some((l) => l.msg === 'upload drain started'),
      (v) => v,
    );
    const station = (await json(`${url}/api/v1/station`)).body as { uploads: { paused: boolean; depth: number }; network: { cloud: string } };
    expect(station.uploads).toMatchObject({ paused: false, depth: 4 });
  });

  test('paused-uploads-stay-paused-across-a-daemon-restart-until-resumed', async () => {
    const env = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test-secret', AWS_REGION: 'us-east-1' };
    const extra = { upload: { target: 's3://bucket/daemon', endpoint: 'http://127.0.0.1:9', provider: 'minio' as const } };
    const ingest = async (api: ApiDaemon, name: string): Promise<void> => {
      const card = join(work, name);
      await writeJpeg(join(card, 'IMG_0001.JPG'), { seed: name.length });
      const finished = nextEvent(api.daemon.events, (e) => e.type === 'job.finished');
      api.watcher.card(name, card);
      await finished;
    };
    d = await startApiDaemon(work, {}, extra, env);
    await ingest(d, 'card-a');
    expect((await json(`${d.url}/api/v1/uploads/pause`, { method: 'POST' })).body).toMatchObject({ paused: true });
    await d.daemon.stop();
    // With no daemon running, `shuttle status` shows the pause the next start will keep.
    const stopped = await runCli(['status', '--json', '--state', join(work, 'state')]);
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(JSON.parse(stopped.stdout)).toMatchObject({ upload: { depth: 1, paused: true, pausedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) } });
    expect((await runCli(['status', '--state', join(work, 'state')])).stdout).toMatch(/^uploads paused since \S+: the daemon starts paused/m);

    d = await startApiDaemon(work, {}, extra, env);
    const { url, log } = d;
    // Paused from the start: the file queued before the restart is not claimed.
    expect(log.lines.find((l) => l.msg?.startsWith('uploader started'))).toMatchObject({ paused: true, queued: 1 });
    expect((await json(`${url}/api/v1/station`)).body).toMatchObject({ uploads: { paused: true, state: 'paused', depth: 1 } });
    await ingest(d, 'card-bb');
    expect((await json(`${url}/api/v1/uploads`)).body).toMatchObject({ paused: true, state: 'paused', depth: 2 });
    expect(log.lines.filter((l) => l.msg === 'upload drain started')).toEqual([]);

    expect((await json(`${url}/api/v1/uploads/resume`, { method: 'POST' })).body).toMatchObject({ paused: false });
    await until(
      'a drain after the resume',
      async () => log.lines.some((l) => l.msg === 'upload drain started'),
      (v) => v,
    );
    // Resumed is kept too: the next start drains at once.
    await d.daemon.stop();
    expect(JSON.parse((await runCli(['status', '--json', '--state', join(work, 'state')])).stdout)).toMatchObject({ upload: { paused: false, pausedAt: null } });
    d = await startApiDaemon(work, {}, extra, env);
    expect(d.log.lines.find((l) => l.msg?.startsWith('uploader started'))).toMatchObject({ paused: false, queued: 2 });
    expect((await json(`${d.url}/api/v1/station`)).body).toMatchObject({ uploads: { paused: false } });
  });

  test('bad-requests-get-4xx-with-a-shuttle-error-code-and-message', async () => {
    d = await startApiDaemon(work);
    const { url } = d;
    const doc = new DocumentCheck((await json(`${url}/api/v1/openapi.json`)).body as Doc);
    const cases: Array<[string, RequestInit | undefined, number, string, string]> = [
      ['/api/v1/jobs/abc', undefined, 400, '/api/v1/jobs/{id}', 'get'],
      ['/api/v1/jobs/0', undefined, 400, '/api/v1/jobs/{id}', 'get'],
      ['/api/v1/jobs/77', undefined, 404, '/api/v1/jobs/{id}', 'get'],
      ['/api/v1/files?limit=100000', undefined, 400, '/api/v1/files', 'get'],
      ['/api/v1/files?before=-3', undefined, 400, '/api/v1/files', 'get'],
      ['/api/v1/jobs/77/cancel', { method: 'POST' }, 404, '/api/v1/jobs/{id}/cancel', 'post'],
      ['/api/v1/uploads', undefined, 404, '/api/v1/uploads', 'get'],
      [
        '/api/v1/uploads/1/priority',
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"priority":"soon"}' },
        400,
        '/api/v1/uploads/{fileId}/priority',
        'post',
      ],
      ['/api/v1/uploads/1/priority', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' }, 400, '/api/v1/uploads/{fileId}/priority', 'post'],
      ['/api/v1/devices/nothing-here/eject', { method: 'POST' }, 404, '/api/v1/devices/{id}/eject', 'post'],
    ];
    for (const [path, init, status, route, method] of cases) {
      const r = await json(`${url}${path}`, init);
      expect({ path, status: r.status }).toEqual({ path, status });
      expect(r.body).toEqual({ error: { code: 'USAGE', message: expect.any(String) } });
      doc.matches(route, method, status, r.body);
    }
    expect(await json(`${url}/api/v1/nothing`)).toEqual({ status: 404, body: { error: { code: 'USAGE', message: 'no such resource: GET /api/v1/nothing' } } });
  });

  test('with-a-token-every-request-needs-it-and-cookie-actions-need-the-csrf-header-and-the-same-origin', async () => {
    d = await startApiDaemon(work, { token: TOKEN });
    const { url, log } = d;
    const doc = new DocumentCheck((await json(`${url}/api/v1/openapi.json`, { headers: { authorization: `Bearer ${TOKEN}` } })).body as Doc);
    const station = `${url}/api/v1/station`;
    const missing = await json(station);
    expect(missing).toMatchObject({ status: 401, body: { error: { code: 'AUTH' } } });
    doc.matches('/api/v1/station', 'get', 401, missing.body);
    expect(await json(station, { headers: { authorization: 'Bearer wrong-token-0123456789' } })).toMatchObject({
      status: 401,
      body: { error: { code: 'AUTH', message: 'wrong API token' } },
    });
    expect((await fetch(`${url}/metrics`)).status).toBe(401);
    expect((await fetch(`${url}/api/v1/events`)).status).toBe(401);
    expect((await json(station, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    // A browser without a session is sent to the login form.
    const page = await fetch(`${url}/`, { headers: { accept: 'text/html' }, redirect: 'manual' });
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/login?next=%2F');
    expect(await (await fetch(`${url}/login`)).text()).toContain('name="token"');

    const badLogin = await json(`${url}/api/v1/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: 'not-the-token-at-all' }),
    });
    expect(badLogin).toMatchObject({ status: 401, body: { error: { code: 'AUTH' } } });
    // The login form's own post: cookies, then the dashboard.
    const form = await fetch(`${url}/api/v1/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: `token=${TOKEN}`,
      redirect: 'manual',
    });
    expect(form.status).toBe(303);
    expect(form.headers.get('location')).toBe('/');
    const cookies = form.headers.getSetCookie();
    const session = cookies.find((c) => c.startsWith('shuttle_session='))!;
    const csrf = cookies.find((c) => c.startsWith('shuttle_csrf='))!;
    expect(session).toMatch(/HttpOnly/i);
    expect(session).toMatch(/SameSite=Strict/i);
    expect(session).not.toContain(TOKEN);
    const csrfValue = csrf.split(';')[0]!.split('=')[1]!;
    const cookie = `${session.split(';')[0]}; ${csrf.split(';')[0]}`;
    const host = new URL(url).host;
    expect((await rawRequest(station, { headers: { cookie } })).status).toBe(200);

    const cancel = `${url}/api/v1/jobs/5/cancel`;
    const noHeader = await rawRequest(cancel, { method: 'POST', headers: { cookie, origin: url } });
    expect(noHeader.status).toBe(403);
    expect(JSON.parse(noHeader.body)).toMatchObject({ error: { code: 'AUTH', message: expect.stringContaining('x-shuttle-csrf') } });
    expect((await rawRequest(cancel, { method: 'POST', headers: { cookie, origin: url, 'x-shuttle-csrf': 'guessed' } })).status).toBe(403);
    const foreign = await rawRequest(cancel, { method: 'POST', headers: { cookie, origin: 'https://evil.example', 'x-shuttle-csrf': csrfValue } });
    expect(foreign.status).toBe(403);
    expect(JSON.parse(foreign.body)).toMatchObject({ error: { code: 'AUTH', message: expect.stringContaining('another origin') } });
    expect((await rawRequest(cancel, { method: 'POST', headers: { cookie, 'sec-fetch-site': 'cross-site', 'x-shuttle-csrf': csrfValue } })).status).toBe(403);
    // All three right: past the guard, to the route (no job 5).
    const through = await rawRequest(cancel, { method: 'POST', headers: { cookie, origin: `http://${host}`, 'x-shuttle-csrf': csrfValue } });
    expect(through.status).toBe(404);
    // A bearer token is no cookie a foreign page could ride on: no CSRF header needed.
    expect((await rawRequest(cancel, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(404);

    // The token appears in no log line.
    expect(log.lines.length).toBeGreaterThan(0);
    expect(log.lines.map((l) => JSON.stringify(l)).filter((l) => l.includes(TOKEN))).toEqual([]);
  });

  test('without-a-token-actions-from-another-origin-and-requests-for-another-host-are-refused', async () => {
    d = await startApiDaemon(work);
    const { url } = d;
    const cancel = `${url}/api/v1/jobs/5/cancel`;
    expect((await rawRequest(cancel, { method: 'POST' })).status).toBe(404);
    const foreign = await rawRequest(cancel, { method: 'POST', headers: { origin: 'http://evil.example' } });
    expect(foreign.status).toBe(403);
    expect(JSON.parse(foreign.body)).toMatchObject({ error: { code: 'AUTH' } });
    // A name of someone else's pointed at 127.0.0.1 (DNS rebinding) reads nothing.
    const rebound = await rawRequest(`${url}/api/v1/station`, { headers: { host: `evil.example:${new URL(url).port}` } });
    expect(rebound.status).toBe(403);
  });
});

describe('api token', () => {
  test('the-token-comes-from-the-config-a-file-or-the-systemd-credential-and-a-short-one-is-refused', async () => {
    const { resolveApiToken } = await import('../src/daemon/http/auth.js');
    const file = join(work, 'token');
    await writeFile(file, `${TOKEN}\n`);
    expect(await resolveApiToken({ token: TOKEN }, {})).toEqual({ token: TOKEN, origin: 'config' });
    expect(await resolveApiToken({ tokenFile: file }, {})).toEqual({ token: TOKEN, origin: `file ${file}` });
    expect(await resolveApiToken({}, {})).toBeUndefined();
    // systemd's LoadCredential=api_token:… lands in $CREDENTIALS_DIRECTORY; a directory without it means no token.
    const creds = join(work, 'credentials');
    await mkdir(creds);
    expect(await resolveApiToken({}, { CREDENTIALS_DIRECTORY: creds })).toBeUndefined();
    await writeFile(join(creds, 'api_token'), TOKEN);
    expect(await resolveApiToken({}, { CREDENTIALS_DIRECTORY: creds })).toEqual({ token: TOKEN, origin: 'systemd credential' });
    await writeFile(file, 'short\n');
    const err = await resolveApiToken({ tokenFile: file }, {}).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CONFIG_INVALID', message: `the API token in ${file} is shorter than 16 characters` });
    await expect(resolveApiToken({ tokenFile: join(work, 'missing') }, {})).rejects.toMatchObject({ code: 'CONFIG_UNREADABLE' });
  });
});

describe('api listen', () => {
  test('listening-beyond-loopback-without-a-token-is-refused-at-start-with-exit-2', async () => {
    const config = join(work, 'config.toml');
    const sock = join(work, 'control.sock');
    await writeFile(config, `[daemon]\ncontrol_socket = "${sock}"\nusb_cameras = false\nwatchdog = false\n[api]\nlisten = "0.0.0.0:0"\n`);
    const r = await runCli(['--config', config, '--state', join(work, 'state'), 'run', '--dest', join(work, 'dest')], { env: { SHUTTLE_LOG_LEVEL: 'warn' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('is reachable beyond this machine, and no token is set');
    // Nothing was started: no control socket was left behind.
    await expect(readFile(sock)).rejects.toThrow(/ENOENT/);

    // With a token (from a file) it starts, and says where it listens.
    await writeFile(join(work, 'token'), `${TOKEN}\n`);
    await writeFile(config, `[daemon]\ncontrol_socket = "${sock}"\nusb_cameras = false\nwatchdog = false\n[api]\nlisten = "0.0.0.0:0"\ntoken_file = "${join(work, 'token')}"\n`);
    const { spawnCli } = await import('./support/cli.js');
    const child = spawnCli(['--config', config, '--state', join(work, 'state'), 'run', '--dest', join(work, 'dest')], { env: { SHUTTLE_LOG_LEVEL: 'info' } });
    let out = '';
    child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    try {
      const line = await until(
        'the API listening line',
        async () => out.split('\n').find((l) => l.includes('HTTP API listening')),
        (l) => l !== undefined,
      );
      const apiUrl = (JSON.parse(line!) as { url: string }).url.replace('0.0.0.0', '127.0.0.1');
      expect((await fetch(`${apiUrl}/api/v1/station`)).status).toBe(401);
      expect((await fetch(`${apiUrl}/api/v1/station`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
      expect(out).not.toContain(TOKEN);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
});
