/**
 * The requests an upload costs, counted at the HTTP level by a proxy in front of a real Swift s3api: new
 * keys are checked by one listing per folder rather than a HEAD and a ListMultipartUploads per file, while
 * keys with a past (a retry, an object already there, upload state in the journal) are still asked about.
 */
import { createHash } from 'node:crypto';
import { readFile, truncate, writeFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateMultipartUploadCommand, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { MiB } from '../src/upload/multipart.js';
import { PartReader, partBody, signedPart } from '../src/upload/part-reader.js';
import { RemoteListing } from '../src/upload/remote-listing.js';
import { S3Target } from '../src/upload/s3-target.js';
import { MemoryUploadStateStore } from '../src/upload/state.js';
import { uploadFile, type UploadFileOptions } from '../src/upload/uploader.js';
import { classifyUploadFailure } from '../src/upload/worker.js';
import { type FaultProxy, isPutObject, type ProxiedRequest } from './support/fault-proxy.js';
import type { SwiftServer } from './support/swift.js';
import { clientThroughProxy, startSwiftBehindProxy, stopSwiftBehindProxy } from './support/swift-behind-proxy.js';
import { sha256OfObject, swiftUploadOptions, unfinishedUploads, writeTestFile, type TestFile } from './support/upload-fixtures.js';

const BUCKET = 'shuttle-requests';
let swift: SwiftServer;
let proxy: FaultProxy;
let client: S3Client;
let admin: S3Client;
let dir: string;
let small: TestFile;
let big: TestFile;
let folderCounter = 0;

const nextFolder = (): string => `station/2026/2026-04-0${++folderCounter}/`;

function options(f: TestFile, key: string, extra: Partial<UploadFileOptions> = {}): UploadFileOptions {
  return swiftUploadOptions(client, BUCKET, f, key, { concurrency: 2, retry: { baseDelayMs: 20, maxDelayMs: 100 }, ...extra });
}

const query = (r: ProxiedRequest): URLSearchParams => new URL(r.url, 'http://x').searchParams;
const pathOf = (r: ProxiedRequest): string => decodeURIComponent(new URL(r.url, 'http://x').pathname);
const isHead = (r: ProxiedRequest): boolean => r.method === 'HEAD';
const isListUploads = (r: ProxiedRequest): boolean => r.method === 'GET' && query(r).has('uploads');
const isListObjects = (r: ProxiedRequest): boolean => r.method === 'GET' && query(r).get('list-type') === '2';
/** The first request that writes the object's bytes: a PUT of the object or of one of its parts. */
const isWrite = (r: ProxiedRequest): boolean => r.method === 'PUT' && r.contentLength > 0;
const forKey =
  (key: string) =>
  (r: ProxiedRequest): boolean =>
    pathOf(r) === `/${BUCKET}/${key}`;

function listingFor(): RemoteListing {
  return new RemoteListing(new S3Target(client, BUCKET));
}

beforeAll(async () => {
  const peers = await startSwiftBehindProxy();
  ({ swift, proxy, admin } = peers);
  await swift.createBucket(BUCKET);
  client = clientThroughProxy(peers, 5_000);
  dir = await mkdtemp(join(tmpdir(), 'shuttle-upload-requests-'));
  small = await writeTestFile(dir, 'still.jpg', 2 * MiB + 3);
  big = await writeTestFile(dir, 'clip.mov', 12 * MiB + 999);
});

afterEach(() => {
  proxy.clearRules();
  proxy.requests.length = 0;
});

afterAll(async () => {
  client?.destroy();
  await stopSwiftBehindProxy({ swift, proxy, admin });
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

describe('requests per upload', () => {
  it('new files are uploaded without a HEAD first, with one listing of objects and of uploads per folder', async () => {
    const folder = nextFolder();
    const files = [small, big, small, big, small, big];
    const keys = files.map((_, i) => `${folder}file-${i}.bin`);
    const listing = listingFor();
    const results = await Promise.all(files.map((f, i) => uploadFile(options(f, keys[i]!, { listing }))));

    expect(results.map((r) => r.outcome)).toEqual(files.map(() => 'uploaded'));
    expect(results.map((r) => r.method)).toEqual(['single', 'multipart', 'single', 'multipart', 'single', 'multipart']);
    expect(proxy.requests.filter(isListObjects)).toHaveLength(1);
    expect(proxy.requests.filter(isListUploads)).toHaveLength(1);
    for (const key of keys) {
      const mine = proxy.requests.filter(forKey(key));
      const firstWrite = mine.findIndex(isWrite);
      // One HEAD per file, the verification after the upload: none before its first byte went out.
      expect(mine.filter(isHead)).toHaveLength(1);
      expect(mine.findIndex(isHead)).toBeGreaterThan(firstWrite);
    }
    for (const [i, f] of files.entries()) expect(await sha256OfObject(admin, BUCKET, keys[i]!)).toEqual({ sha256: f.sha256, size: f.size });
  });

  it('a key uploaded before is asked about (HEAD) and not uploaded again', async () => {
    const key = `${nextFolder()}again.jpg`;
    await uploadFile(options(small, key));
    proxy.requests.length = 0;

    const result = await uploadFile(options(small, key, { listing: listingFor() }));
    expect(result.outcome).toBe('already-present');
    expect(proxy.requests.filter(forKey(key)).map((r) => r.method)).toEqual(['HEAD']);
  });

  it('a second attempt at a key in the same run checks the server before sending', async () => {
    const key = `${nextFolder()}retried.jpg`;
    const listing = listingFor();
    // The first attempt fails for good (the server answers 500 to every try of its PUT).
    proxy.inject({ match: isPutObject, fault: { kind: 'respond', status: 500 }, times: 3 });
    const first = await uploadFile(options(small, key, { listing, retry: { baseDelayMs: 10, maxDelayMs: 20, maxAttempts: 3 } })).catch((e: unknown) => e);
    expect(isShuttleError(first) && first.code).toBe('UPLOAD_FAILED');
    proxy.requests.length = 0;

    const second = await uploadFile(options(small, key, { listing }));
    expect(second.outcome).toBe('uploaded');
    const mine = proxy.requests.filter(forKey(key));
    expect(mine[0]?.method).toBe('HEAD');
    expect(mine.findIndex(isHead)).toBeLessThan(mine.findIndex(isWrite));
  });

  it('an orphaned multipart upload in the folder is aborted from the folder listing, without listing the key', async () => {
    const key = `${nextFolder()}orphaned.mov`;
    const orphan = await admin.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
    expect(await unfinishedUploads(admin, BUCKET)).toContain(`${key} ${orphan.UploadId}`);
    proxy.requests.length = 0;

    const result = await uploadFile(options(big, key, { listing: listingFor() }));
    expect(result.method).toBe('multipart');
    expect(proxy.requests.filter(isListUploads)).toHaveLength(1);
    expect(proxy.requests.filter((r) => r.method === 'DELETE' && query(r).get('uploadId') === orphan.UploadId)).toHaveLength(1);
    expect((await unfinishedUploads(admin, BUCKET)).filter((u) => u.startsWith(key))).toEqual([]);
  });

  it('an upload with state in the journal (a resume) asks the server: HEAD first, its parts and the key listed', async () => {
    const key = `${nextFolder()}resumed.mov`;
    const store = new MemoryUploadStateStore();
    const created = await admin.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key, Metadata: { sha256: big.sha256, xxh128: big.xxh128 } }));
    await store.begin({ bucket: BUCKET, key, uploadId: created.UploadId!, size: big.size, sha256: big.sha256, partSize: 5 * MiB });
    proxy.requests.length = 0;

    const result = await uploadFile(options(big, key, { listing: listingFor(), store }));
    expect(result.outcome).toBe('uploaded');
    const mine = proxy.requests.filter(forKey(key));
    expect(mine[0]?.method).toBe('HEAD');
    expect(mine.some((r) => r.method === 'GET' && query(r).get('uploadId') === created.UploadId)).toBe(true);
    expect(proxy.requests.filter(isListObjects)).toHaveLength(0);
    expect(await sha256OfObject(admin, BUCKET, key)).toEqual({ sha256: big.sha256, size: big.size });
  });

  it('signs every body with its SHA-256 (x-amz-content-sha256), which the server checks, not UNSIGNED-PAYLOAD', async () => {
    const folder = nextFolder();
    const results = await Promise.all([uploadFile(options(small, `${folder}signed.jpg`)), uploadFile(options(big, `${folder}signed.mov`))]);
    expect(results.map((r) => r.method)).toEqual(['single', 'multipart']);
    // The whole file was checked locally with the journal's xxh128; the server checked the SHA-256s.
    for (const r of results) expect(r.verifiedBy).toContain('local-xxh128');
    const single = proxy.requests.filter((r) => isWrite(r) && forKey(`${folder}signed.jpg`)(r));
    expect(single.map((r) => r.headers['x-amz-content-sha256'])).toEqual([small.sha256]);
    const parts = proxy.requests.filter((r) => isWrite(r) && forKey(`${folder}signed.mov`)(r));
    const bytes = await readFile(big.path);
    const partSize = 5 * MiB;
    expect(parts).toHaveLength(Math.ceil(big.size / partSize));
    for (const r of parts) {
      const offset = (Number(query(r).get('partNumber')) - 1) * partSize;
      const range = bytes.subarray(offset, offset + partSize);
      expect(r.contentLength).toBe(range.length);
      expect(r.headers['x-amz-content-sha256']).toBe(createHash('sha256').update(range).digest('hex'));
    }
  });

  it('with the MD5 taken at ingest, a single PUT carries the source’s hashes, and the server checks the bytes against them', async () => {
    const folder = nextFolder();
    const result = await uploadFile(options(small, `${folder}streamed.jpg`, { expected: { sha256: small.sha256, xxh128: small.xxh128, md5: small.md5 } }));
    expect(result.method).toBe('single');
    expect(result.verifiedBy).toEqual(expect.arrayContaining(['local-xxh128', 'etag', 'sha256-metadata']));
    const puts = proxy.requests.filter((r) => isWrite(r) && forKey(`${folder}streamed.jpg`)(r));
    expect(puts).toHaveLength(1);
    expect(puts[0]!.headers['content-md5']).toBe(Buffer.from(small.md5, 'hex').toString('base64'));
    expect(puts[0]!.headers['x-amz-content-sha256']).toBe(small.sha256);
    expect(await sha256OfObject(admin, BUCKET, `${folder}streamed.jpg`)).toEqual({ sha256: small.sha256, size: small.size });

    // A recorded MD5 the bytes do not have: the server refuses every attempt, and nothing is stored.
    const wrongMd5 = createHash('md5').update('other bytes').digest('hex');
    const refused = await uploadFile(
      options(small, `${folder}wrong-md5.jpg`, {
        expected: { sha256: small.sha256, xxh128: small.xxh128, md5: wrongMd5 },
        retry: { maxAttempts: 2, baseDelayMs: 10, maxDelayMs: 20 },
      }),
    ).catch((e: unknown) => e);
    expect(isShuttleError(refused) && refused.context['s3Code']).toBe('BadDigest');
    expect(await new S3Target(admin, BUCKET).head(`${folder}wrong-md5.jpg`)).toBeUndefined();
  });

  it('with the MD5 taken at ingest, a local copy that no longer matches is stopped before its last byte goes out', async () => {
    const f = await writeTestFile(dir, 'rotted.jpg', 3 * MiB + 5);
    const bytes = await readFile(f.path);
    bytes[2 * MiB + 100]! ^= 0x01;
    await writeFile(f.path, bytes);
    const key = `${nextFolder()}rotted.jpg`;
    const error = await uploadFile(options(f, key, { expected: { sha256: f.sha256, xxh128: f.xxh128, md5: f.md5 } })).catch((e: unknown) => e);
    expect(isShuttleError(error) && error.code).toBe('UPLOAD_VERIFY');
    expect(isShuttleError(error) && error.context).toMatchObject({ path: f.path, algorithm: 'xxh128', expected: f.xxh128 });
    expect(classifyUploadFailure(error)).toBe('local-damaged');
    // One attempt (a local problem is not retried), and no object.
    expect(proxy.requests.filter((r) => isWrite(r) && forKey(key)(r))).toHaveLength(1);
    expect(await new S3Target(admin, BUCKET).head(key)).toBeUndefined();
  });

  it('a file cut short after it was hashed fails its request at once as a local problem, sending nothing short', async () => {
    const f = await writeTestFile(dir, 'shrinking.bin', 3 * MiB);
    const reader = await PartReader.open(f.path, f.size, { partSha256: true });
    const part = signedPart(await reader.read(f.size));
    await reader.close();
    await truncate(f.path, 2 * MiB);
    const started = Date.now();
    const error = await new S3Target(client, BUCKET).put(`${nextFolder()}short.bin`, partBody(f.path, part), {}).catch((e: unknown) => e);
    expect(isShuttleError(error) && error.code).toBe('UPLOAD_VERIFY');
    expect(isShuttleError(error) && error.context['path']).toBe(f.path);
    // Well before the 5 s socket timeout that a request left waiting for its missing bytes would need.
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});
