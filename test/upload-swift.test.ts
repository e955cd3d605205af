/**
 * Conformance of the uploader against a real S3-compatible server: OpenStack Swift with s3api, started
 * per suite on free 127.0.0.1 ports (test/support/swift.ts).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AbortMultipartUploadCommand, CreateMultipartUploadCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isShuttleError, type ShuttleError } from '../src/errors.js';
import { createS3Client } from '../src/upload/client.js';
import { MiB } from '../src/upload/multipart.js';
import { RateLimiter } from '../src/upload/rate-limit.js';
import { S3Target } from '../src/upload/s3-target.js';
import { MemoryUploadStateStore } from '../src/upload/state.js';
import type { PartBody } from '../src/upload/target.js';
import { uploadFile, type UploadFileOptions } from '../src/upload/uploader.js';
import { startSwift, type SwiftServer } from './support/swift.js';
import {
  countUploadParts,
  expectedMultipartEtag,
  headOrUndefined,
  sha256OfObject,
  swiftUploadOptions,
  unfinishedUploads,
  writeTestFile,
  type TestFile,
} from './support/upload-fixtures.js';

const BUCKET = 'shuttle-conformance';
let swift: SwiftServer;
let client: S3Client;
let admin: S3Client;
let dir: string;
let big: TestFile;
let small: TestFile;
let keyCounter = 0;

const nextKey = (label: string) => `station/2026/2026-03-07/${label}-${++keyCounter}.bin`;

function options(file: TestFile, key: string, extra: Partial<UploadFileOptions> = {}): UploadFileOptions {
  return swiftUploadOptions(client, BUCKET, file, key, { retry: { baseDelayMs: 20, maxDelayMs: 200 }, ...extra });
}

async function failureOf(p: Promise<unknown>): Promise<ShuttleError> {
  try {
    await p;
  } catch (error) {
    if (isShuttleError(error)) return error;
    throw error;
  }
  throw new Error('expected the upload to fail');
}

beforeAll(async () => {
  swift = await startSwift();
  await swift.createBucket(BUCKET);
  ({ client } = createS3Client({
    provider: 'swift',
    endpoint: swift.endpoint,
    credentials: { accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey },
  }));
  admin = swift.adminClient();
  dir = await mkdtemp(join(tmpdir(), 'shuttle-upload-swift-'));
  big = await writeTestFile(dir, 'big.bin', 40 * MiB + 12_345);
  small = await writeTestFile(dir, 'small.jpg', 3 * MiB + 7);
});

afterAll(async () => {
  client?.destroy();
  admin?.destroy();
  await swift?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('upload to a real S3 server (Swift s3api)', () => {
  it('uploads a small file in one PUT and verifies size, MD5 ETag and stored hashes', async () => {
    const key = nextKey('small');
    const result = await uploadFile(options(small, key));
    expect(result).toMatchObject({ outcome: 'uploaded', method: 'single', size: small.size, partsSent: 1 });
    expect(result.verifiedBy).toEqual(expect.arrayContaining(['etag', 'size', 'sha256-metadata', 'xxh128-metadata', 'local-xxh128']));
    const head = await headOrUndefined(admin, BUCKET, key);
    expect(head?.ETag).toBe(`"${small.md5}"`);
    expect(head?.Metadata).toMatchObject({ sha256: small.sha256, xxh128: small.xxh128 });
    expect(await sha256OfObject(admin, BUCKET, key)).toEqual({ sha256: small.sha256, size: small.size });
  });

  it('the server refuses a body that does not hash to its signed SHA-256, even with a matching Content-MD5', async () => {
    const target = new S3Target(client, BUCKET);
    const bytes = Buffer.from('the bytes on the card');
    const md5 = createHash('md5').update(bytes).digest('hex');
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const body = (signed: string): PartBody => ({ size: bytes.length, md5, sha256: signed, open: () => Readable.from([bytes]) });
    const key = nextKey('signed');
    const refused = await failureOf(target.put(key, body(createHash('sha256').update('other bytes').digest('hex')), {}));
    expect(refused.context['status']).toBe(400);
    expect(await headOrUndefined(admin, BUCKET, key)).toBeUndefined();
    await target.put(key, body(sha256), {});
    expect(await sha256OfObject(admin, BUCKET, key)).toEqual({ sha256, size: bytes.length });
  });

  it('uploads ~40 MiB in 5 MiB parts, and the server ETag is the md5-of-part-md5s computed locally', async () => {
    const key = nextKey('multipart');
    const counter = countUploadParts(client);
    try {
      const result = await uploadFile(options(big, key, { concurrency: 3 }));
      expect(result).toMatchObject({ outcome: 'uploaded', method: 'multipart', partsTotal: 9, partsSent: 9, partsResumed: 0 });
      expect(result.verifiedBy).toContain('etag');
      expect([...counter.parts].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    } finally {
      counter.stop();
    }
    const head = await headOrUndefined(admin, BUCKET, key);
    expect(head?.ETag).toBe(`"${await expectedMultipartEtag(big.path, 5 * MiB)}"`);
    expect(head?.ContentLength).toBe(big.size);
    expect(await sha256OfObject(admin, BUCKET, key)).toEqual({ sha256: big.sha256, size: big.size });
    expect(await unfinishedUploads(admin, BUCKET)).toEqual([]);
  });

  it('does not upload again when the object already holds the same size and SHA-256', async () => {
    const key = nextKey('again');
    await uploadFile(options(big, key));
    const counter = countUploadParts(client);
    try {
      const again = await uploadFile(options(big, key));
      expect(again).toMatchObject({ outcome: 'already-present', method: 'none', partsSent: 0 });
      const againSmall = await uploadFile(options(small, nextKey('again-small')));
      expect(againSmall.outcome).toBe('uploaded');
      const skipped = await uploadFile(options(small, againSmall.key));
      expect(skipped.outcome).toBe('already-present');
      expect(counter.parts).toEqual([]);
      expect(counter.puts).toBe(1);
    } finally {
      counter.stop();
    }
  });

  it('resumes after an abort mid-upload without re-sending a part whose completion was recorded', async () => {
    const key = nextKey('resume');
    const store = new MemoryUploadStateStore();
    const controller = new AbortController();
    const first = countUploadParts(client);
    const aborted = await failureOf(
      uploadFile(
        options(big, key, {
          store,
          signal: controller.signal,
          concurrency: 2,
          onProgress: (p) => {
            if (p.partsDone >= 3) controller.abort();
          },
        }),
      ),
    );
    first.stop();
    expect(aborted.code).toBe('ABORTED');
    const state = await store.load({ bucket: BUCKET, key });
    const recorded = state?.parts.map((p) => p.partNumber) ?? [];
    expect(state?.status).toBe('uploading');
    expect(recorded.length).toBeGreaterThanOrEqual(3);
    expect(recorded.length).toBeLessThan(9);
    expect(await headOrUndefined(admin, BUCKET, key)).toBeUndefined();

    const second = countUploadParts(client);
    try {
      const result = await uploadFile(options(big, key, { store, concurrency: 2 }));
      expect(result.outcome).toBe('uploaded');
      expect(second.parts.filter((n) => recorded.includes(n))).toEqual([]);
      expect(result.partsResumed).toBeGreaterThanOrEqual(recorded.length);
      expect(result.partsResumed + result.partsSent).toBe(9);
      expect(second.parts).toHaveLength(result.partsSent);
    } finally {
      second.stop();
    }
    expect(await sha256OfObject(admin, BUCKET, key)).toEqual({ sha256: big.sha256, size: big.size });
    expect((await store.load({ bucket: BUCKET, key }))?.status).toBe('completed');
    expect(await unfinishedUploads(admin, BUCKET)).toEqual([]);
  });

  it.each([
    ['a single PUT', () => small],
    ['a multipart upload', () => big],
  ])('refuses to complete %s whose bytes do not match the expected SHA-256, naming both values', async (_label, file) => {
    const f = file();
    const key = nextKey('rotten');
    const store = new MemoryUploadStateStore();
    const wrong = 'f'.repeat(64);
    const error = await failureOf(uploadFile({ ...options(f, key, { store }), expected: { sha256: wrong } }));
    expect(error.code).toBe('UPLOAD_VERIFY');
    expect(error.message).toContain(wrong);
    expect(error.message).toContain(f.sha256);
    expect(await headOrUndefined(admin, BUCKET, key)).toBeUndefined();
    expect(await unfinishedUploads(admin, BUCKET)).toEqual([]);
  });

  it('refuses a local file whose size differs from the journal before sending anything', async () => {
    const key = nextKey('resized');
    const counter = countUploadParts(client);
    try {
      const error = await failureOf(uploadFile({ ...options(small, key), size: small.size + 1 }));
      expect(error.code).toBe('UPLOAD_VERIFY');
      expect(counter.puts + counter.parts.length).toBe(0);
    } finally {
      counter.stop();
    }
  });

  it('will not overwrite a different object at the key unless told to', async () => {
    const key = nextKey('taken');
    await admin.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: 'someone else', Metadata: { sha256: '0'.repeat(64) } }));
    const error = await failureOf(uploadFile(options(small, key)));
    expect(error.code).toBe('UPLOAD_FAILED');
    expect(error.retryable).toBe(false);
    expect((await headOrUndefined(admin, BUCKET, key))?.ContentLength).toBe('someone else'.length);
    const replaced = await uploadFile(options(small, key, { overwrite: true }));
    expect(replaced.outcome).toBe('uploaded');
    expect(await sha256OfObject(admin, BUCKET, key)).toEqual({ sha256: small.sha256, size: small.size });
  });

  it('aborts abandoned uploads: one the store marked aborted, one it never recorded, one that went stale', async () => {
    const key = nextKey('abandoned');
    const store = new MemoryUploadStateStore();
    const create = async () => (await admin.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }))).UploadId as string;
    const markedAborted = await create();
    await store.begin({ bucket: BUCKET, key, uploadId: markedAborted, size: big.size, sha256: big.sha256, partSize: 5 * MiB });
    await store.setStatus({ bucket: BUCKET, key }, markedAborted, 'aborted');
    const orphan = await create();
    expect(await unfinishedUploads(admin, BUCKET)).toHaveLength(2);

    const result = await uploadFile(options(big, key, { store }));
    expect(result.partsResumed).toBe(0);
    expect(await unfinishedUploads(admin, BUCKET)).toEqual([]);
    expect((await store.load({ bucket: BUCKET, key }))?.uploadId).not.toBe(markedAborted);
    expect([markedAborted, orphan]).not.toContain((await store.load({ bucket: BUCKET, key }))?.uploadId);

    // A stored upload id the server no longer knows: start over instead of failing.
    const staleKey = nextKey('stale');
    const stale = await (async () => {
      const id = (await admin.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: staleKey }))).UploadId as string;
      await admin.send(new AbortMultipartUploadCommand({ Bucket: BUCKET, Key: staleKey, UploadId: id }));
      return id;
    })();
    await store.begin({ bucket: BUCKET, key: staleKey, uploadId: stale, size: big.size, sha256: big.sha256, partSize: 5 * MiB });
    await store.recordPart({ bucket: BUCKET, key: staleKey }, stale, { partNumber: 1, size: 5 * MiB, md5: '0'.repeat(32), etag: '"x"' });
    const restarted = await uploadFile(options(big, staleKey, { store }));
    expect(restarted).toMatchObject({ outcome: 'uploaded', partsSent: 9, partsResumed: 0 });
    expect(await sha256OfObject(admin, BUCKET, staleKey)).toEqual({ sha256: big.sha256, size: big.size });
  });

  it('holds an upload to the bandwidth limit', async () => {
    const file = await writeTestFile(dir, 'limited.bin', 6 * MiB);
    const started = performance.now();
    await uploadFile(options(file, nextKey('limited'), { rateLimit: new RateLimiter({ bytesPerSecond: 8 * MiB }), multipartThreshold: 8 * MiB }));
    // 6 MiB less a 2 MiB burst at 8 MiB/s: at least 0.5 s.
    expect(performance.now() - started).toBeGreaterThan(450);
  });

  it('reads endpoint, region and keys from the standard AWS environment variables', async () => {
    const { client: envClient, options: resolved } = createS3Client(
      { provider: 'swift' },
      {
        AWS_ENDPOINT_URL_S3: swift.endpoint,
        AWS_REGION: 'us-east-1',
      },
    );
    // Keys come from the SDK's default chain, which reads process.env itself.
    const saved = { id: process.env['AWS_ACCESS_KEY_ID'], secret: process.env['AWS_SECRET_ACCESS_KEY'] };
    process.env['AWS_ACCESS_KEY_ID'] = swift.accessKeyId;
    process.env['AWS_SECRET_ACCESS_KEY'] = swift.secretAccessKey;
    try {
      expect(resolved.endpoint).toBe(swift.endpoint);
      const file = await writeTestFile(dir, 'env.txt', 1000);
      const result = await uploadFile({ ...options(file, nextKey('env')), client: envClient });
      expect(result.outcome).toBe('uploaded');
    } finally {
      if (saved.id === undefined) delete process.env['AWS_ACCESS_KEY_ID'];
      else process.env['AWS_ACCESS_KEY_ID'] = saved.id;
      if (saved.secret === undefined) delete process.env['AWS_SECRET_ACCESS_KEY'];
      else process.env['AWS_SECRET_ACCESS_KEY'] = saved.secret;
      envClient.destroy();
    }
  });

  it('uploads an empty file', async () => {
    const path = join(dir, 'empty');
    await writeFile(path, '');
    const result = await uploadFile({
      ...options(small, nextKey('empty')),
      path,
      size: 0,
      expected: { sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' },
    });
    expect(result).toMatchObject({ outcome: 'uploaded', size: 0, etag: '"d41d8cd98f00b204e9800998ecf8427e"' });
  });
});
