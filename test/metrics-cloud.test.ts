/**
 * The cloud stage of `shuttle_verify_failures_total`: a daemon uploading to a real S3 server (Swift with
 * s3api) through the fault proxy, which answers the HEAD that checks a just-sent object with "not found".
 * Each such attempt is an error event and one more failure under stage="cloud"; the retry then succeeds.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import type { StationEvent } from '../src/daemon/events.js';
import { type ApiDaemon, nextEvent, startApiDaemon } from './support/api-daemon.js';
import type { FaultProxy, ProxiedRequest } from './support/fault-proxy.js';
import { writeJpeg } from './support/fixtures.js';
import type { SwiftServer } from './support/swift.js';
import { startSwiftBehindProxy, stopSwiftBehindProxy } from './support/swift-behind-proxy.js';
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
  test('each-upload-whose-object-the-server-does-not-show-after-the-put-is-an-error-event-and-counted-under-stage-cloud', { timeout: 120_000 }, async () => {
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

    // The check after each PUT finds nothing, twice; the third attempt's check goes through.
    const inBucket = (r: ProxiedRequest): boolean => r.url.startsWith(`/${bucket}/`);
    let putSeen = false;
    const rule = proxy.inject({
      match: (r) => {
        if (!inBucket(r)) return false;
        if (r.method === 'PUT') putSeen = true;
        if (r.method !== 'HEAD' || !putSeen) return false;
        putSeen = false;
        return true;
      },
      fault: { kind: 'respond', status: 404, code: 'NoSuchKey' },
      times: 2,
    });
    const errors: StationEvent[] = [];
    daemon.events.subscribe((e) => {
      if (e.type === 'error') errors.push(e);
    });
    const card = join(work, 'card');
    const shot = await writeJpeg(join(card, 'IMG_0001.JPG'), { seed: 1 });
    const uploaded = nextEvent(daemon.events, (e) => e.type === 'file.uploaded');
    watcher.card('card-1', card);
    const done = await uploaded;

    expect(rule.hits).toBe(2);
    expect(errors).toHaveLength(2);
    for (const e of errors) {
      expect(e).toMatchObject({ type: 'error', code: 'UPLOAD_VERIFY', upload: { bucket, outcome: 'deferred', cloudMismatch: true } });
      expect(e.type === 'error' && e.message).toMatch(/differs: existence expected object, server has nothing/);
    }
    expect(done.type === 'file.uploaded' && done.key).toBe(errors[0]?.type === 'error' ? errors[0].upload?.key : 'no key');
    const text = await scrape();
    expect(sample(text, 'shuttle_verify_failures_total{stage="cloud"}')).toBe(2);
    expect(sample(text, 'shuttle_verify_failures_total{stage="destination"}')).toBe(0);
    expect(sample(text, 'shuttle_files_uploaded_total')).toBe(1);
    // The dashboard's error list reads them from the API.
    const listed = (await (await fetch(`${url}/api/v1/errors`)).json()) as { items: Array<{ type: string; code: string }> };
    expect(listed.items.filter((e) => e.code === 'UPLOAD_VERIFY')).toHaveLength(2);
    // And the object the retry left is the shot.
    const key = done.type === 'file.uploaded' ? done.key : '';
    expect(await sha256OfObject(admin, bucket, key)).toEqual({ sha256: createHash('sha256').update(shot).digest('hex'), size: shot.length });
  });
});
