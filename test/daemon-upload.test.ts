/**
 * `shuttle run` with an upload target, as the box runs it: the built CLI as a child process with a hot
 * folder, uploading what it ingests to a real S3 server (a throwaway OpenStack Swift with s3api) through a
 * fault-injecting proxy (server down, stalled parts), watched with `shuttle status --json`, stopped with
 * SIGTERM and killed with SIGKILL.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import type { DaemonStatus } from '../src/daemon/status.js';
import { acquireLock } from '../src/store/lock.js';
import { uploadLockPath } from '../src/upload/from-config.js';
import { runCli } from './support/cli.js';
import { killLeftoverDaemons, spawnDaemon, until as waitUntil, type RunningDaemon } from './support/daemon-helpers.js';
import { type FaultProxy, isUploadPart } from './support/fault-proxy.js';
import type { SwiftServer } from './support/swift.js';
import { startSwiftBehindProxy, stopSwiftBehindProxy } from './support/swift-behind-proxy.js';
import { tempDir } from './support/tree.js';
import { sha256OfObject, unfinishedUploads, writeTestFile, type TestFile } from './support/upload-fixtures.js';

const MiB = 1024 * 1024;

let swift: SwiftServer;
let proxy: FaultProxy;
let admin: S3Client;
let bucketSeq = 0;

beforeAll(async () => {
  ({ swift, proxy, admin } = await startSwiftBehindProxy());
});
afterAll(async () => {
  await stopSwiftBehindProxy({ swift, proxy, admin });
});

let work: string;
let cleanup: () => Promise<void>;
let hot: string;
let staging: string;
let state: string;
let bucket: string;
let configFile: string;
let env: Record<string, string | undefined>;
const daemons: RunningDaemon[] = [];

beforeEach(async () => {
  ({ path: work, cleanup } = await tempDir('shuttle-daemon-upload-'));
  hot = join(work, 'hot');
  staging = join(work, 'staging');
  state = join(work, 'state');
  await mkdir(hot, { recursive: true });
  await mkdir(staging, { recursive: true });
  bucket = `daemon-${process.pid}-${++bucketSeq}`;
  await swift.createBucket(bucket);
  proxy.clearRules();
  proxy.requests.length = 0;
  configFile = join(work, 'shuttle.toml');
  await writeFile(configFile, `station = "cart-test"\n[ingest]\ntime_zone = "UTC"\n[upload]\ntarget = "s3://${bucket}/daemon"\nprovider = "swift"\npart_size = ${5 * MiB}\n`);
  env = {
    SHUTTLE_DAEMON_CONTROL_SOCKET: join(work, 'run', 'control.sock'),
    SHUTTLE_LOCK_DIR: join(work, 'locks'),
    SHUTTLE_DAEMON_SETTLE_MS: '200',
    SHUTTLE_DAEMON_BATCH_MS: '100',
    SHUTTLE_DAEMON_USB_CAMERAS: 'false',
    AWS_ACCESS_KEY_ID: swift.accessKeyId,
    AWS_SECRET_ACCESS_KEY: swift.secretAccessKey,
    AWS_REGION: swift.region,
    AWS_ENDPOINT_URL_S3: proxy.endpoint,
    AWS_PROFILE: undefined,
    AWS_CONFIG_FILE: join(work, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(work, 'no-aws-credentials'),
  };
});

afterEach(async () => {
  killLeftoverDaemons(daemons);
  proxy.clearRules();
  await cleanup();
});

async function startDaemon(): Promise<RunningDaemon> {
  const d = await spawnDaemon(['--config', configFile, '--state', state, '--dest', join(work, 'dest'), '--hot-folder', hot, '--log-level', 'info'], env);
  daemons.push(d);
  return d;
}

interface StatusJson {
  copies: Record<string, number>;
  upload: { depth: number; queued: number; uploading: number; uploaded: number; failed: number; bytesPending: number };
  daemon?: DaemonStatus;
}

async function status(): Promise<StatusJson> {
  const r = await runCli(['status', '--json', '--state', state, '--config', configFile], { env });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as StatusJson;
}

/** Uploads under faults take their time: waits default to a minute, polled less often. */
const until = <T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 60_000, everyMs = 150): Promise<T> => waitUntil(what, probe, ok, timeoutMs, everyMs);

/** Writes files next to the hot folder and renames them in, as an FTP server finishing its uploads does. */
async function drop(spec: Record<string, number>): Promise<Record<string, TestFile>> {
  const files: Record<string, TestFile> = {};
  for (const [name, size] of Object.entries(spec)) files[name] = await writeTestFile(staging, name, size, `${bucket}/${name}`);
  for (const name of Object.keys(spec)) await rename(join(staging, name), join(hot, name));
  return files;
}

/** Every object in the bucket by file name, with the SHA-256 of the bytes the server returns. */
async function objectsByName(): Promise<Record<string, { key: string; sha256: string; size: number }>> {
  const listed = await admin.send(new ListObjectsV2Command({ Bucket: bucket }));
  const out: Record<string, { key: string; sha256: string; size: number }> = {};
  for (const o of listed.Contents ?? []) out[basename(o.Key!)] = { key: o.Key!, ...(await sha256OfObject(admin, bucket, o.Key!)) };
  return out;
}

function expected(files: Record<string, TestFile>): Record<string, { key: string; sha256: string; size: number }> {
  return Object.fromEntries(
    Object.entries(files).map(([name, f]) => [
      name,
      { key: expect.stringMatching(new RegExp(`^daemon/cart-test/\\d{4}/\\d{4}-\\d{2}-\\d{2}/${name}$`)) as unknown as string, sha256: f.sha256, size: f.size },
    ]),
  );
}

describe('shuttle run uploads', () => {
  test('files-ingested-while-the-server-is-down-are-uploaded-once-it-answers-and-status-shows-the-queue-draining', async () => {
    // Every request answered 503 by the proxy: the server is "down".
    proxy.inject({ match: () => true, fault: { kind: 'respond', status: 503, code: 'ServiceUnavailable' }, times: 1_000_000 });
    const d = await startDaemon();
    const files = await drop({ 'IMG_0001.JPG': 300_000, 'IMG_0002.JPG': 310_000, 'IMG_0002.CR3': 3 * MiB + 17, 'MVI_0003.MP4': 12 * MiB + 5 });
    const total = Object.values(files).reduce((n, f) => n + f.size, 0);

    const offline = await until(
      'the uploader backing off with all four files queued',
      status,
      (s) => s.copies['verified'] === 4 && s.daemon?.uploads?.state === 'backing-off' && s.daemon.uploads.depth === 4 && s.daemon.uploads.lastError !== null,
    );
    const up = offline.daemon!.uploads!;
    expect(up).toMatchObject({ target: `s3://${bucket}/daemon`, depth: 4, bytesPending: total, uploaded: 0, failed: 0 });
    expect(up.lastError?.message).toMatch(/503|ServiceUnavailable|unavailable/i);
    expect(offline.daemon!.jobs.active).toEqual([]); // ingest is done; only the uploads wait
    expect(await objectsByName()).toEqual({});
    // The uploader keeps retrying while the server is down: by the time this CLI has started (slow on a
    // loaded machine) the back-off seen above may have ended and the next attempt begun.
    const human = await runCli(['status', '--state', state, '--config', configFile], { env });
    expect(human.stdout).toMatch(new RegExp(`^uploads to s3://${bucket}/daemon: (backing off|uploading).* — 4 pending \\(`, 'm'));
    expect(human.stdout).toMatch(/^last upload error \(daemon\/cart-test\/.*\): \S+ /m);

    // The server comes back: the queue drains by itself.
    proxy.clearRules();
    const depths: number[] = [];
    const done = await until(
      'the queue drained',
      status,
      (s) => {
        // A daemon busy on a loaded machine may not answer the CLI within its 2 s: such a sample is the journal's alone.
        if (s.daemon?.uploads === undefined) return false;
        depths.push(s.daemon.uploads.depth);
        return s.daemon.uploads.depth === 0 && s.daemon.uploads.uploaded === 4;
      },
      90_000,
      100,
    );
    expect(depths[0]).toBeGreaterThan(0);
    expect(done.daemon!.uploads).toMatchObject({ state: 'idle', depth: 0, bytesPending: 0, failed: 0, sinceStart: { uploaded: 4, failed: 0 } });
    expect(done.daemon!.uploads!.sinceStart.bytesSent).toBeGreaterThanOrEqual(total);
    // The journal's own view (what `shuttle status` shows without a daemon) agrees.
    expect(done.upload).toMatchObject({ depth: 0, uploaded: 4, failed: 0, bytesPending: 0 });

    expect(await objectsByName()).toEqual(expected(files));
    expect(await unfinishedUploads(admin, bucket)).toEqual([]);
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
  });

  test('sigterm-during-an-upload-stops-at-once-keeps-the-queue-and-the-next-start-resumes-from-the-last-part', async () => {
    // Part 2 of the clip never gets through: the upload hangs there with part 1 done.
    proxy.inject({ match: isUploadPart(2), fault: { kind: 'stall', afterBodyBytes: 1000 }, times: 1_000 });
    let d = await startDaemon();
    const files = await drop({ 'MVI_0001.MP4': 12 * MiB + 5 });
    await until(
      'part 2 in flight',
      async () => proxy.requests.filter((r) => isUploadPart(2)(r)).length,
      (n) => n > 0,
    );
    const busy = await until('the daemon answering status', status, (s) => s.daemon !== undefined);
    expect(busy.daemon!.uploads).toMatchObject({ state: 'uploading', uploading: 1, depth: 1 });

    const t0 = Date.now();
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
    // No daemon now: the journal still has the file queued (not left "uploading", not lost).
    const after = await status();
    expect(after.daemon).toBeUndefined();
    expect(after.upload).toMatchObject({ depth: 1, queued: 1, uploading: 0, uploaded: 0 });

    proxy.clearRules();
    const part1Before = proxy.requests.filter((r) => isUploadPart(1)(r)).length;
    d = await startDaemon();
    await until('the queue drained', status, (s) => s.daemon?.uploads?.depth === 0 && s.daemon.uploads.uploaded === 1);
    expect(d.logs.find((l) => l.msg === 'uploader started')).toMatchObject({ queued: 1 });
    // Part 1 was not sent again: the journal's multipart state resumed the upload.
    expect(proxy.requests.filter((r) => isUploadPart(1)(r)).length).toBe(part1Before);
    // Parts go up in parallel: part 1, and maybe part 3, were done before the stop.
    expect(d.logs.find((l) => l.msg === 'upload drain ended' && l['uploaded'] === 1)?.['partsResumed']).toBeGreaterThanOrEqual(1);
    expect(await objectsByName()).toEqual(expected(files));
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
  });

  test('an-upload-cut-by-sigkill-is-recovered-at-the-next-start', async () => {
    proxy.inject({ match: isUploadPart(2), fault: { kind: 'stall', afterBodyBytes: 1000 }, times: 1_000 });
    let d = await startDaemon();
    const files = await drop({ 'MVI_0002.MP4': 11 * MiB });
    await until(
      'part 2 in flight',
      async () => proxy.requests.filter((r) => isUploadPart(2)(r)).length,
      (n) => n > 0,
    );
    d.child.kill('SIGKILL');
    await d.exited;
    expect((await status()).upload).toMatchObject({ depth: 1, uploading: 1 });

    proxy.clearRules();
    d = await startDaemon();
    await until('the queue drained', status, (s) => s.daemon?.uploads?.depth === 0 && s.daemon.uploads.uploaded === 1);
    expect(d.logs.find((l) => l.msg === 'uploads interrupted by an earlier run are queued again')).toMatchObject({ rows: 1 });
    expect(await objectsByName()).toEqual(expected(files));
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
  });

  test('while-another-process-holds-the-upload-lock-the-daemon-waits-and-uploads-after-it', async () => {
    await mkdir(state, { recursive: true });
    const lock = await acquireLock(uploadLockPath(state), { owner: { command: 'upload (test)' } });
    let released = false;
    try {
      const d = await startDaemon();
      const files = await drop({ 'IMG_0009.JPG': 200_000 });
      const waiting = await until('the uploader waiting for the lock', status, (s) => s.daemon?.uploads?.state === 'waiting-for-lock');
      expect(waiting.daemon!.uploads!.lockHolder).toContain('upload (test)');
      expect(waiting.daemon!.uploads!.depth).toBe(1);
      await sleep(500);
      expect(await objectsByName()).toEqual({});
      lock.release();
      released = true;
      await until('the queue drained', status, (s) => s.daemon?.uploads?.depth === 0 && s.daemon.uploads.uploaded === 1);
      expect(await objectsByName()).toEqual(expected(files));
      d.child.kill('SIGTERM');
      expect((await d.exited).code).toBe(0);
    } finally {
      if (!released) lock.release();
    }
  });

  test('a-new-file-is-uploaded-at-once-while-another-waits-out-its-backoff', async () => {
    // One file's PUT is refused (a 400 is not "offline": only that file backs off, doubling each time).
    proxy.inject({ match: (r) => r.method === 'PUT' && r.url.includes('IMG_0100'), fault: { kind: 'respond', status: 400, code: 'InvalidRequest' }, times: 1_000 });
    const d = await startDaemon();
    await drop({ 'IMG_0100.JPG': 100_000 });
    const rows = (): Array<{ key: string; state: string; attempts: number; next_attempt_at: number; uploaded_at: string | null }> => {
      const db = new DatabaseSync(join(state, 'journal.sqlite'), { readOnly: true });
      try {
        return db.prepare('SELECT key, state, attempts, next_attempt_at, uploaded_at FROM upload_queue ORDER BY id').all() as never;
      } finally {
        db.close();
      }
    };
    // After its third failure its next try is at least 4 s away (equal jitter on a doubling 2 s base):
    // time for the new file's settle, ingest and upload on a loaded machine.
    const [stuck] = await until(
      'the refused file deferred three times',
      async () => rows(),
      (r) => r[0]?.attempts === 3 && r[0].state === 'queued',
    );
    const files = await drop({ 'IMG_0101.JPG': 120_000 });
    const [, fresh] = await until(
      'the new file uploaded',
      async () => rows(),
      (r) => r[1]?.state === 'uploaded',
      30_000,
      50,
    );
    expect(Date.parse(fresh!.uploaded_at!)).toBeLessThan(stuck!.next_attempt_at);
    expect(rows()[0]).toMatchObject({ state: 'queued', attempts: 3 });
    expect(await objectsByName()).toEqual(expected(files));
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
  });
});
