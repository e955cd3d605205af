/**
 * Faults between client and a real S3 server: a TCP proxy (test/support/fault-proxy.ts) damages chosen
 * requests on their way to Swift. The server must reject damaged bytes, the uploader must retry, and the
 * object must end up exactly right.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { MiB } from '../src/upload/multipart.js';
import { MemoryUploadStateStore } from '../src/upload/state.js';
import { uploadFile, type UploadFileOptions } from '../src/upload/uploader.js';
import { type FaultProxy, isPutObject, isUploadPart, type ProxiedRequest } from './support/fault-proxy.js';
import type { SwiftServer } from './support/swift.js';
import { clientThroughProxy, startSwiftBehindProxy, stopSwiftBehindProxy } from './support/swift-behind-proxy.js';
import { sha256OfObject, swiftUploadOptions, unfinishedUploads, writeTestFile, type TestFile } from './support/upload-fixtures.js';

const BUCKET = 'shuttle-faults';
const SOCKET_TIMEOUT_MS = 1_500;
let swift: SwiftServer;
let proxy: FaultProxy;
let client: S3Client;
let admin: S3Client;
let dir: string;
let file: TestFile;
let small: TestFile;
let n = 0;
let logLines: string[] = [];

const logger = pino({ level: 'warn' }, { write: (line: string) => void logLines.push(line) });

function options(f: TestFile, extra: Partial<UploadFileOptions> = {}): UploadFileOptions {
  return swiftUploadOptions(client, BUCKET, f, `faults/${++n}.bin`, {
    expected: { sha256: f.sha256 },
    concurrency: 1,
    retry: { baseDelayMs: 20, maxDelayMs: 100, maxAttempts: 5 },
    logger,
    ...extra,
  });
}

const partRequests = (part: number): ProxiedRequest[] => proxy.requests.filter((r) => isUploadPart(part)(r));
const retryLogs = (): Array<{ err?: { message?: string; context?: { s3Code?: string; errno?: string; status?: number } } }> =>
  logLines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'S3 request failed; retrying');

async function expectObject(key: string, f: TestFile): Promise<void> {
  expect(await sha256OfObject(admin, BUCKET, key)).toEqual({ sha256: f.sha256, size: f.size });
}

beforeAll(async () => {
  const peers = await startSwiftBehindProxy();
  ({ swift, proxy, admin } = peers);
  await swift.createBucket(BUCKET);
  client = clientThroughProxy(peers, SOCKET_TIMEOUT_MS);
  dir = await mkdtemp(join(tmpdir(), 'shuttle-upload-faults-'));
  file = await writeTestFile(dir, 'clip.mov', 12 * MiB + 999);
  small = await writeTestFile(dir, 'still.jpg', 2 * MiB);
});

afterEach(() => {
  proxy.clearRules();
  proxy.requests.length = 0;
  logLines = [];
});

afterAll(async () => {
  client?.destroy();
  await stopSwiftBehindProxy({ swift, proxy, admin });
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('uploads through a faulty network', () => {
  it('a byte flipped in a part is rejected by the server (BadDigest) and the part is sent again', async () => {
    const rule = proxy.inject({ match: isUploadPart(2), fault: { kind: 'flip-byte' } });
    const o = options(file);
    const result = await uploadFile(o);
    expect(rule.hits).toBe(1);
    expect(partRequests(2)).toHaveLength(2);
    expect(retryLogs().map((l) => l.err?.context?.s3Code)).toEqual(['BadDigest']);
    expect(result.outcome).toBe('uploaded');
    await expectObject(o.key, file);
  });

  it('a byte flipped in a single PUT is rejected and the PUT sent again', async () => {
    const rule = proxy.inject({ match: isPutObject, fault: { kind: 'flip-byte', offset: 12_345 } });
    const o = options(small);
    await uploadFile(o);
    expect(rule.hits).toBe(1);
    expect(proxy.requests.filter(isPutObject)).toHaveLength(2);
    expect(retryLogs().map((l) => l.err?.context?.s3Code)).toEqual(['BadDigest']);
    await expectObject(o.key, small);
  });

  it('a connection reset in the middle of a part is retried', async () => {
    const rule = proxy.inject({ match: isUploadPart(3), fault: { kind: 'drop', afterBodyBytes: MiB } });
    const o = options(file);
    await uploadFile(o);
    expect(rule.hits).toBe(1);
    expect(partRequests(3)).toHaveLength(2);
    expect(retryLogs().map((l) => l.err?.context?.errno)).toEqual([expect.stringMatching(/^(ECONNRESET|EPIPE)$/)]);
    await expectObject(o.key, file);
    expect(await unfinishedUploads(admin, BUCKET)).toEqual([]);
  });

  it('a part that stalls mid-body times out and is retried', async () => {
    const rule = proxy.inject({ match: isUploadPart(1), fault: { kind: 'stall' } });
    const o = options(file);
    const started = performance.now();
    await uploadFile(o);
    expect(performance.now() - started).toBeGreaterThan(SOCKET_TIMEOUT_MS);
    expect(rule.hits).toBe(1);
    expect(partRequests(1)).toHaveLength(2);
    expect(retryLogs().map((l) => l.err?.message)).toEqual([expect.stringMatching(/TimeoutError.*timed out/)]);
    await expectObject(o.key, file);
  });

  it('503 answers to a part and to the completion are retried', async () => {
    proxy.inject({ match: isUploadPart(2), fault: { kind: 'respond', status: 503, code: 'SlowDown' }, times: 2 });
    const completion = proxy.inject({
      match: (r) => r.method === 'POST' && r.url.includes('uploadId='),
      fault: { kind: 'respond', status: 503 },
    });
    const o = options(file);
    const result = await uploadFile(o);
    expect(completion.hits).toBe(1);
    expect(retryLogs().map((l) => l.err?.context?.status)).toEqual([503, 503, 503]);
    expect(result.partsSent).toBe(3);
    await expectObject(o.key, file);
  });

  it('a permanent refusal (403) is not retried', async () => {
    proxy.inject({ match: isUploadPart(1), fault: { kind: 'respond', status: 403, code: 'AccessDenied' }, times: 10 });
    const o = options(file);
    let failure: unknown;
    try {
      await uploadFile(o);
    } catch (error) {
      failure = error;
    }
    expect(isShuttleError(failure, 'UPLOAD_FAILED')).toBe(true);
    expect(isShuttleError(failure) && failure.retryable).toBe(false);
    expect(partRequests(1)).toHaveLength(1);
    expect(retryLogs()).toEqual([]);
  });

  it('gives up after the configured attempts when every try is damaged, and the upload can resume later', async () => {
    proxy.inject({ match: isUploadPart(2), fault: { kind: 'flip-byte' }, times: 3 });
    const store = new MemoryUploadStateStore();
    const o = options(file, { store, retry: { baseDelayMs: 10, maxDelayMs: 20, maxAttempts: 3 } });
    let failure: unknown;
    try {
      await uploadFile(o);
    } catch (error) {
      failure = error;
    }
    expect(isShuttleError(failure, 'UPLOAD_FAILED')).toBe(true);
    expect((failure as { context: { attempts?: number; s3Code?: string } }).context).toMatchObject({ attempts: 3, s3Code: 'BadDigest' });
    expect((await store.load({ bucket: BUCKET, key: o.key }))?.parts.map((p) => p.partNumber)).toEqual([1]);
    proxy.requests.length = 0;
    const result = await uploadFile(o);
    expect(result).toMatchObject({ partsResumed: 1, partsSent: 2 });
    expect(partRequests(1)).toEqual([]);
    await expectObject(o.key, file);
  });
});
