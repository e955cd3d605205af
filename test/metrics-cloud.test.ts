/**
 * The cloud stage of `shuttle_verify_failures_total`: a daemon uploading to a real S3 server (Swift with
 * s3api) through the fault proxy, which answers the HEAD that checks a just-sent object with "not found".
 * Each such attempt is an error event and one more failure under stage="cloud"; the retry then succeeds.
 * More files fail than a drain's report lists (it keeps the latest 100): every one still counts.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import type { StationEvent } from '../src/daemon/events.js';
import { type ApiDaemon, events, startApiDaemon } from './support/api-daemon.js';
import type { FaultProxy } from './support/fault-proxy.js';
import { writeJpeg } from './support/fixtures.js';
import type { SwiftServer } from './support/swift.js';
import { startSwiftBehindProxy, stopSwiftBehindProxy } from './support/swift-behind-proxy.js';
import { until } from './support/daemon-helpers.js';
import { tempDir } from './support/tree.js';
import { sha256OfObject } from './support/upload-fixtures.js';

/** The value of one sample, by its name and labels as written (`name{a="b"}`). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

let swift: SwiftServer;
let proxy: FaultProxy;
let admin: S3Client;
beforeAll(async () => {
  ({ swift, proxy, admin } = await startSwiftBehindProxy());
});
afterAll(async () => {
  await stopSwiftBehindProxy({ swift, proxy, admin });
});

let work: string;
let cleanup: () => Promise<void>;
let d: ApiDaemon | undefined;
beforeEach(async () => {
  ({ path: work, cleanup } = await tempDir('shuttle-metrics-cloud-'));
  proxy.clearRules();
});
afterEach(async () => {
  await d?.daemon.stop();
  d = undefined;
  proxy.clearRules();
  await cleanup();
});

describe('cloud verification failures', () => {
  test('each-upload-whose-object-the-server-does-not-show-after-the-put-is-an-error-event-and-counted-under-stage-cloud-beyond-the-drain-reports-hundred', {
    timeout: 120_000,
  }, async () => {
    const bucket = `metrics-${process.pid}`;
    await swift.createBucket(bucket);
    // In-process, the SDK's own chain would read this process's environment: the keys go in a file.
    const credentials = join(work, 'aws-credentials');
    await writeFile(credentials, `[default]\naws_access_key_id = ${swift.accessKeyId}\naws_secret_access_key = ${swift.secretAccessKey}\n`, { mode: 0o600 });
    const env = { AWS_REGION: swift.region, AWS_ENDPOINT_URL_S3: proxy.endpoint };
    d = await startApiDaemon(work, {}, { upload: { target: `s3://${bucket}/cloud`, provider: 'swift', credentials_file: credentials } }, env);
    const { daemon, url, watcher } = d;
    const scrape = async (): Promise<string> => (await fetch(`${url}/metrics`)).text();
    expect(sample(await scrape(), 'shuttle_verify_failures_total{stage="cloud"}')).toBe(0);

    // The check after each file's first PUT finds nothing; its second attempt's check goes through.
    const FILES = 105;
    const sent = new Set<string>();
    const failed = new Set<string>();
    const rule = proxy.inject({
      match: (r) => {
        const path = r.url.split('?')[0]!;
        if (!path.startsWith(`/${bucket}/`) || failed.has(path)) return false;
        if (r.method === 'PUT') sent.add(path);
        if (r.method !== 'HEAD' || !sent.has(path)) return false;
        failed.add(path);
        return true;
      },
      fault: { kind: 'respond', status: 404, code: 'NoSuchKey' },
      times: FILES,
    });
    const errors: StationEvent[] = [];
    daemon.events.subscribe((e) => {
      if (e.type === 'error') errors.push(e);
    });
    const card = join(work, 'card');
    const shots = new Map<string, Buffer>();
    for (let i = 1; i <= FILES; i++) {
      const name = `IMG_${String(i).padStart(4, '0')}.JPG`;
      shots.set(name, await writeJpeg(join(card, name), { seed: i }));
    }
    const uploaded = events(daemon.events, (e) => e.type === 'file.uploaded', FILES);
    watcher.card('card-1', card);
    const done = await uploaded;

    expect(rule.hits).toBe(FILES);
    expect(errors).toHaveLength(FILES);
    for (const e of errors) {
      expect(e).toMatchObject({ type: 'error', code: 'UPLOAD_VERIFY', upload: { bucket, outcome: 'deferred', cloudMismatch: true } });
      expect(e.type === 'error' && e.message).toMatch(/differs: existence expected object, server has nothing/);
    }
    const keys = (list: StationEvent[]): string[] => list.map((e) => (e.type === 'error' ? e.upload?.key : e.type === 'file.uploaded' ? e.key : undefined) ?? '').sort();
    expect(keys(errors)).toEqual(keys(done));
    // More than a drain's report keeps (the drain logs its end just after the last upload).
    const drain = await until(
      'the upload drain ended',
      async () => d?.log.lines.find((l) => l.msg === 'upload drain ended'),
      (l) => l !== undefined,
    );
    expect(drain).toMatchObject({ errors: 100, deferred: FILES, stopped: 'empty' });
    const text = await scrape();
    expect(sample(text, 'shuttle_verify_failures_total{stage="cloud"}')).toBe(FILES);
    expect(sample(text, 'shuttle_verify_failures_total{stage="destination"}')).toBe(0);
    expect(sample(text, 'shuttle_files_uploaded_total')).toBe(FILES);
    // The dashboard's error list reads them from the API.
    const listed = (await (await fetch(`${url}/api/v1/errors?limit=2000`)).json()) as { items: Array<{ type: string; code: string }> };
    expect(listed.items.filter((e) => e.code === 'UPLOAD_VERIFY')).toHaveLength(FILES);
    // And the objects the retries left are the shots.
    const last = done.at(-1)!;
    const key = last.type === 'file.uploaded' ? last.key : '';
    const shot = shots.get(key.split('/').at(-1)!)!;
    expect(await sha256OfObject(admin, bucket, key)).toEqual({ sha256: createHash('sha256').update(shot).digest('hex'), size: shot.length });
  });

  test('a-local-copy-the-upload-finds-damaged-is-an-error-event-and-counted-under-stage-destination', { timeout: 60_000 }, async () => {
    const bucket = `metrics-damaged-${process.pid}`;
    await swift.createBucket(bucket);
    const credentials = join(work, 'aws-credentials');
    await writeFile(credentials, `[default]\naws_access_key_id = ${swift.accessKeyId}\naws_secret_access_key = ${swift.secretAccessKey}\n`, { mode: 0o600 });
    // Paused from the start (the pause the daemon keeps in its state folder), so that the copy can be
    // damaged after it verified and before the upload reads it.
    await mkdir(join(work, 'state'), { recursive: true });
    await writeFile(join(work, 'state', 'uploads-paused.json'), `${JSON.stringify({ pausedAt: new Date().toISOString() })}\n`);
    const env = { AWS_REGION: swift.region, AWS_ENDPOINT_URL_S3: proxy.endpoint };
    d = await startApiDaemon(work, {}, { upload: { target: `s3://${bucket}/damaged`, provider: 'swift', credentials_file: credentials } }, env);
    const { daemon, url, watcher } = d;
    const card = join(work, 'card');
    await writeJpeg(join(card, 'IMG_0001.JPG'), { seed: 1 });
    const finished = events(daemon.events, (e) => e.type === 'job.finished', 1);
    watcher.card('card-1', card);
    expect((await finished)[0]).toMatchObject({ job: { state: 'done', result: { copied: 1 } } });

    // One byte of the verified copy flipped, its size and time kept.
    const dest = join(work, 'dest');
    const copy = (await readdir(dest, { recursive: true })).find((p) => p.endsWith('IMG_0001.JPG'))!;
    const handle = await open(join(dest, copy), 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 1000);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, 1000);
    await handle.close();

    const damaged = events(daemon.events, (e) => e.type === 'error' && e.upload?.outcome === 'damaged-copy', 1);
    expect((await fetch(`${url}/api/v1/uploads/resume`, { method: 'POST' })).status).toBe(200);
    expect((await damaged)[0]).toMatchObject({ type: 'error', code: 'UPLOAD_VERIFY', upload: { bucket, outcome: 'damaged-copy', cloudMismatch: false } });
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(sample(text, 'shuttle_verify_failures_total{stage="destination"}')).toBe(1);
    expect(sample(text, 'shuttle_verify_failures_total{stage="cloud"}')).toBe(0);
    expect(sample(text, 'shuttle_files_uploaded_total')).toBe(0);
  });
});
