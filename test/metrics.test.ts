import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { EventHub, type StationEvent } from '../src/daemon/events.js';
import { StationMetrics } from '../src/daemon/metrics.js';
import { FileList } from '../src/store/file-list.js';
import { Journal } from '../src/store/journal.js';
import { type ApiDaemon, nextEvent, startApiDaemon } from './support/api-daemon.js';
import { writeJpeg } from './support/fixtures.js';
import { seedVerifiedShots } from './support/journal-seed.js';
import { tempDir } from './support/tree.js';

/** /metrics: valid by Prometheus' own checker (promtool, Debian's prometheus package), and moving with the ingest. */

/** `promtool check metrics` on the text; a missing promtool fails the test (scripts/test.sh installs it). */
function promtool(text: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.on('error', (err) => reject(new Error(`promtool is needed (apt-get install prometheus): ${err.message}`)));
    child.on('close', (code) => resolve({ code, output }));
    child.stdin.end(text);
  });
}

/** The value of one sample, by its name and labels as written (`name{a="b"}`). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

let work: string;
let cleanup: () => Promise<void>;
let d: ApiDaemon | undefined;
beforeEach(async () => {
  ({ path: work, cleanup } = await tempDir('shuttle-metrics-'));
});
afterEach(async () => {
  await d?.daemon.stop();
  d = undefined;
  await cleanup();
});

describe('metrics', () => {
  test('metrics-pass-promtool-and-their-counters-move-as-a-card-is-ingested-and-a-camera-comes-back', async () => {
    d = await startApiDaemon(work);
    const { daemon, url, watcher } = d;
    const scrape = async (): Promise<string> => {
      const r = await fetch(`${url}/metrics`);
      expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      return r.text();
    };
    const before = await scrape();
    expect(await promtool(before)).toEqual({ code: 0, output: '' });
    expect(sample(before, 'shuttle_files_verified_total')).toBe(0);
    expect(sample(before, 'shuttle_verify_failures_total{stage="destination"}')).toBe(0);
    expect(before).toMatch(/^shuttle_build_info\{version="[^"]+",node="[^"]+"\} 1$/m);

    const card = join(work, 'card');
    const shots = [await writeJpeg(join(card, 'IMG_0001.JPG'), { seed: 1 }), await writeJpeg(join(card, 'IMG_0002.JPG'), { seed: 2 })];
    const safe = nextEvent(daemon.events, (e) => e.type === 'station.state' && e.state === 'safe-to-pull');
    watcher.card('card-1', card);
    await safe;
    const after = await scrape();
    expect(await promtool(after)).toEqual({ code: 0, output: '' });
    expect(sample(after, 'shuttle_files_verified_total')).toBe(2);
    expect(sample(after, 'shuttle_bytes_verified_total')).toBe(shots[0]!.length + shots[1]!.length);
    expect(sample(after, 'shuttle_shot_to_verified_seconds_count')).toBe(2);
    expect(sample(after, 'shuttle_devices_connected{kind="card"}')).toBe(1);
    expect(sample(after, 'shuttle_upload_queue_files')).toBe(0);

    // A camera that goes away and comes back is one reconnect.
    const cam = join(work, 'camera');
    await writeJpeg(join(cam, 'IMG_0100.JPG'), { seed: 3 });
    let finished = nextEvent(daemon.events, (e) => e.type === 'job.finished');
    watcher.card('usb:1-2', cam, 'camera');
    await finished;
    expect(sample(await scrape(), 'shuttle_camera_reconnects_total')).toBe(0);
    watcher.events.detach('usb:1-2', 'unplugged');
    finished = nextEvent(daemon.events, (e) => e.type === 'job.finished');
    watcher.card('usb:1-2', cam, 'camera');
    await finished;
    const last = await scrape();
    expect(sample(last, 'shuttle_camera_reconnects_total')).toBe(1);
    expect(sample(last, 'shuttle_devices_connected{kind="camera"}')).toBe(1);
    expect(sample(last, 'shuttle_files_verified_total')).toBe(3);
    expect(await promtool(last)).toEqual({ code: 0, output: '' });
  });

  test('every-verify-failure-of-a-job-is-counted-not-only-the-first-twenty-it-lists-and-its-error-events-say-how-many-were-left-out', async () => {
    // Every copy's read-back differs (a byte flipped after the write): 25 files fail verification.
    const before = process.env['SHUTTLE_TEST_FAULT'];
    process.env['SHUTTLE_TEST_FAULT'] = 'flip-byte';
    try {
      d = await startApiDaemon(work, {}, { ingest: { verify_retries: 0 } });
      const card = join(work, 'card');
      for (let i = 1; i <= 25; i++) await writeJpeg(join(card, `IMG_${String(i).padStart(4, '0')}.JPG`), { seed: i });
      const finished = nextEvent(d.daemon.events, (e) => e.type === 'job.finished');
      const errors: StationEvent[] = [];
      d.daemon.events.subscribe((e) => {
        if (e.type === 'error') errors.push(e);
      });
      d.watcher.card('card-1', card);
      const end = await finished;
      // The fault really happened, to every file; the job itself lists only 20 errors.
      expect(end.type === 'job.finished' && end.job.result).toMatchObject({ failed: 25, errorCounts: { VERIFY_MISMATCH: 25 } });
      expect(end.type === 'job.finished' && end.job.result?.errors.length).toBe(20);
      const text = await (await fetch(`${d.url}/metrics`)).text();
      expect(sample(text, 'shuttle_verify_failures_total{stage="destination"}')).toBe(25);
      expect(sample(text, 'shuttle_files_verified_total')).toBe(0);
      // Its error events: the 20 it lists, each with the job's total, and one naming the 5 left out.
      expect(errors).toHaveLength(21);
      for (const e of errors.slice(0, 20)) expect(e).toMatchObject({ code: 'VERIFY_MISMATCH', jobErrors: 25, path: expect.stringMatching(/^IMG_\d{4}\.JPG$/) });
      expect(errors[20]).toMatchObject({ code: 'VERIFY_MISMATCH', jobErrors: 25, omitted: 5, omittedByCode: { VERIFY_MISMATCH: 5 } });
      expect(errors[20]?.type === 'error' && errors[20].message).toMatch(/had 25 errors; 5 more not listed here \(VERIFY_MISMATCH 5\)/);
    } finally {
      if (before === undefined) delete process.env['SHUTTLE_TEST_FAULT'];
      else process.env['SHUTTLE_TEST_FAULT'] = before;
    }
  });

  test('an-upload-of-a-file-verified-before-the-daemon-started-is-timed-from-its-verification-in-the-journal', async () => {
    const state = join(work, 'state');
    const { fileIds } = await seedVerifiedShots(state, 2, { destination: join(work, 'earlier') });
    const journal = Journal.open(state);
    const hub = new EventHub();
    const files = new FileList(journal);
    const metrics = new StationMetrics(hub, { version: 'test', uploadQueue: () => undefined, devices: () => ({ card: 0, camera: 0 }), verifiedAt: (id) => files.verifiedAt(id) });
    try {
      const verifiedAt = files.verifiedAt(fileIds[0]!)!;
      expect(verifiedAt).toBeGreaterThan(Date.now() - 60_000);
      const e = hub.publish({ type: 'file.uploaded', fileId: fileIds[0]!, bucket: 'b', key: 'k', bytes: 1000, outcome: 'uploaded' });
      const text = await metrics.text();
      expect(sample(text, 'shuttle_verified_to_uploaded_seconds_count')).toBe(1);
      expect(sample(text, 'shuttle_verified_to_uploaded_seconds_sum')).toBeCloseTo((Date.parse(e.at) - verifiedAt) / 1000, 3);
    } finally {
      metrics.close();
      hub.close();
      journal.close();
    }
  });
});
