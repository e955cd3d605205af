/**
 * `shuttle ingest --upload`, `shuttle upload` and `shuttle status` as users run them (the built CLI, as
 * a child process) against a real S3 server: a throwaway OpenStack Swift with s3api. Requests go through
 * a recording proxy (to count and order them) or a gate that can refuse connections (server down).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, mkdir, utimes, writeFile } from 'node:fs/promises';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { runCli, spawnCli, type CliResult } from './support/cli.js';
import type { FaultProxy } from './support/fault-proxy.js';
import type { SwiftServer } from './support/swift.js';
import { startSwiftBehindProxy, stopSwiftBehindProxy } from './support/swift-behind-proxy.js';
import { tempDir } from './support/tree.js';
import { headOrUndefined, sha256OfObject, unfinishedUploads, writeTestFile, type TestFile } from './support/upload-fixtures.js';

const MiB = 1024 * 1024;
const SHOT = new Date('2026-03-14T12:00:00Z');

/** A TCP forwarder that can be shut (connections refused, as when the server is down) and opened again on the same port. */
class Gate {
  readonly #upstream: number;
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  port = 0;

  constructor(upstream: number) {
    this.#upstream = upstream;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async open(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect({ host: '127.0.0.1', port: this.#upstream });
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.#server = server;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

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

let work: { path: string; cleanup: () => Promise<void> };
let card: string;
let bucket: string;
let files: Record<string, TestFile>;

beforeEach(async () => {
  work = await tempDir('shuttle-upload-cli-');
  card = join(work.path, 'card');
  bucket = `cli-${process.pid}-${++bucketSeq}`;
  await swift.createBucket(bucket);
  proxy.requests.length = 0;
  files = {};
});
afterEach(async () => {
  proxy.clearRules();
  await work.cleanup();
});

/** A card of RAW+JPEG pairs, a sidecar and a clip big enough for a multipart upload (5 MiB parts). */
async function makeCard(
  spec: Record<string, number> = {
    'DCIM/100CANON/IMG_0001.CR3': 3 * MiB + 17,
    'DCIM/100CANON/IMG_0001.JPG': 300_000,
    'DCIM/100CANON/IMG_0001.XMP': 2_000,
    'DCIM/100CANON/IMG_0002.CR3': 3 * MiB + 99,
    'DCIM/100CANON/IMG_0002.JPG': 310_000,
    'DCIM/100CANON/MVI_0003.MP4': 12 * MiB + 5,
  },
): Promise<void> {
  for (const [rel, size] of Object.entries(spec)) {
    const dir = join(card, rel.slice(0, rel.lastIndexOf('/')));
    await mkdir(dir, { recursive: true });
    const name = rel.slice(rel.lastIndexOf('/') + 1);
    files[name] = await writeTestFile(dir, name, size, `${bucket}/${rel}`);
    await utimes(join(dir, name), SHOT, SHOT);
  }
}

/** The MD5 each verified copy's recorded hashes hold, by file name (null where none was taken). */
function recordedMd5s(): Record<string, string | null> {
  const journal = new DatabaseSync(join(work.path, 'state', 'journal.sqlite'), { readOnly: true });
  try {
    const rows = journal.prepare(`SELECT dest_path, hashes FROM copies WHERE state = 'verified'`).all() as Array<{ dest_path: string; hashes: string }>;
    return Object.fromEntries(rows.map((r) => [r.dest_path.split('/').pop()!, (JSON.parse(r.hashes) as { md5?: string }).md5 ?? null]));
  } finally {
    journal.close();
  }
}

const keyOf = (prefix: string, name: string): string => `${prefix}/cart-test/2026/2026-03-14/${name}`;

async function config(extra = '', name = 'shuttle.toml'): Promise<string> {
  const file = join(work.path, name);
  await writeFile(file, `station = "cart-test"\n[ingest]\ntime_zone = "UTC"\n[upload]\nprovider = "swift"\npart_size = ${5 * MiB}\n${extra}\n`);
  return file;
}

function s3Env(endpoint = proxy.endpoint): Record<string, string | undefined> {
  return {
    AWS_ACCESS_KEY_ID: swift.accessKeyId,
    AWS_SECRET_ACCESS_KEY: swift.secretAccessKey,
    AWS_REGION: swift.region,
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_PROFILE: undefined,
    AWS_CONFIG_FILE: join(work.path, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(work.path, 'no-aws-credentials'),
  };
}

function jsonOf<T>(r: CliResult): T {
  const lines = r.stdout.trim().split('\n').filter(Boolean);
  if (lines.length !== 1) throw new Error(`expected one JSON line (exit ${r.code}):\n${r.stdout}\nstderr:\n${r.stderr.slice(-3000)}`);
  return JSON.parse(lines[0]!) as T;
}

interface IngestUploadJson {
  status: string;
  upload: { target: string; queued: number; uploaded: number; failed: number; pending: number; errors: unknown[] };
}

interface UploadJson {
  uploaded: number;
  alreadyPresent: number;
  failed: number;
  repaired: number;
  damaged: number;
  partsResumed: number;
  queue: { queued: number; uploading: number; uploaded: number; failed: number; bytesPending: number };
  retention: { pruned: number };
  errors: Array<{ key: string; code: string; outcome: string }>;
}

interface StatusJson {
  copies: Record<string, number>;
  upload: { depth: number; uploaded: number; failed: number; bytesPending: number; lastError: { message: string } | null };
}

async function ingest(args: string[], env = s3Env(), cfg?: string): Promise<CliResult & { json: IngestUploadJson }> {
  const r = await runCli(['ingest', card, '--state', join(work.path, 'state'), '--config', cfg ?? (await config()), '--json', ...args], { env });
  return { ...r, json: jsonOf<IngestUploadJson>(r) };
}

async function upload(args: string[] = [], env = s3Env(), cfg?: string): Promise<CliResult & { json: UploadJson }> {
  const r = await runCli(['upload', '--state', join(work.path, 'state'), '--config', cfg ?? (await config()), '--json', ...args], { env });
  return { ...r, json: jsonOf<UploadJson>(r) };
}

async function status(): Promise<StatusJson> {
  return jsonOf<StatusJson>(await runCli(['status', '--state', join(work.path, 'state'), '--json']));
}

async function expectObjectsMatchCard(prefix: string, names = Object.keys(files)): Promise<void> {
  for (const name of names) {
    const f = files[name]!;
    expect(await sha256OfObject(admin, bucket, keyOf(prefix, name)), name).toEqual({ sha256: f.sha256, size: f.size });
  }
}

const sha256File = async (path: string): Promise<string> =>
  createHash('sha256')
    .update(await readFile(path))
    .digest('hex');

async function flipByte(path: string, offset: number): Promise<void> {
  const data = await readFile(path);
  data[offset] = (data[offset] as number) ^ 0xff;
  await writeFile(path, data);
}

const writes = (): number => proxy.requests.filter((r) => r.method === 'PUT' || r.method === 'POST').length;

describe('shuttle ingest --upload', () => {
  test('uploads-every-verified-file-and-each-object-holds-the-source-bytes', async () => {
    await makeCard();
    const r = await ingest(['--dest', join(work.path, 'lib'), '--upload', `s3://${bucket}/run`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.upload).toMatchObject({ target: `s3://${bucket}/run`, queued: 6, uploaded: 6, failed: 0, pending: 0 });
    await expectObjectsMatchCard('run');
    // The upload took the SHA-256 of each file from the verified copy and signed each PUT with it; Swift
    // checks that, so one PUT carries no Content-MD5 and no MD5 is taken or kept (see checksSignedPayload).
    const singlePuts = proxy.requests.filter((q) => q.method === 'PUT' && q.contentLength > 0 && !q.url.includes('partNumber='));
    expect(singlePuts).toHaveLength(5);
    for (const q of singlePuts) {
      const name = decodeURIComponent(q.url.split('?')[0]!.split('/').pop()!);
      expect(q.headers['x-amz-content-sha256']).toBe(files[name]!.sha256);
      expect(q.headers['content-md5']).toBeUndefined();
    }
    expect(recordedMd5s()).toEqual(Object.fromEntries(Object.keys(files).map((name) => [name, null])));
    expect(await unfinishedUploads(admin, bucket)).toEqual([]);
    expect((await status()).upload).toMatchObject({ depth: 0, uploaded: 6, failed: 0, bytesPending: 0 });
  });

  test('a-re-run-uploads-nothing-even-from-a-fresh-journal-since-the-objects-already-hold-the-content', async () => {
    await makeCard();
    expect((await ingest(['--dest', join(work.path, 'lib'), '--upload', `s3://${bucket}/run`])).code).toBe(0);
    proxy.requests.length = 0;
    const again = await ingest(['--dest', join(work.path, 'lib'), '--upload', `s3://${bucket}/run`]);
    expect(again.code, again.stderr).toBe(0);
    // The run's files are all accounted for as already uploaded, without a request to the server.
    expect(again.json.upload).toMatchObject({ queued: 6, uploaded: 6, pending: 0 });
    expect(proxy.requests).toEqual([]);

    // A new journal and library know nothing of the first run: every file is checked (HEAD), none sent again.
    const fresh = await runCli(
      ['ingest', card, '--dest', join(work.path, 'lib2'), '--state', join(work.path, 'state2'), '--config', await config(), '--upload', `s3://${bucket}/run`, '--json'],
      { env: s3Env() },
    );
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(jsonOf<IngestUploadJson>(fresh).upload).toMatchObject({ queued: 6, uploaded: 6, pending: 0 });
    expect(proxy.requests.filter((q) => q.method === 'HEAD').length).toBeGreaterThanOrEqual(6);
    expect(writes()).toBe(0);
  });

  test('files-an-earlier-ingest-copied-without-upload-are-uploaded-by-the-next-ingest-with-upload', async () => {
    await makeCard();
    expect((await ingest(['--dest', join(work.path, 'lib')])).code).toBe(0);
    // Not bound for upload: no MD5 taken, so the upload hashes each file itself before sending it.
    expect(Object.values(recordedMd5s())).toEqual(Object.values(files).map(() => null));
    const r = await ingest(['--dest', join(work.path, 'lib'), '--upload', `s3://${bucket}/late`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ copied: 0, alreadyVerified: 6 });
    expect(r.json.upload).toMatchObject({ queued: 6, uploaded: 6, pending: 0 });
  });

  test('a-file-folded-into-the-same-content-an-earlier-run-queued-is-counted-and-waited-for-with-that-row', async () => {
    // A camera writing both slots: card B holds card A's file, the same name and bytes.
    await makeCard({ 'DCIM/100CANON/IMG_0007.CR3': 3 * MiB + 11 });
    const cardB = join(work.path, 'card-b');
    await mkdir(join(cardB, 'DCIM/100CANON'), { recursive: true });
    await writeFile(join(cardB, 'DCIM/100CANON/IMG_0007.CR3'), await readFile(files['IMG_0007.CR3']!.path));
    await utimes(join(cardB, 'DCIM/100CANON/IMG_0007.CR3'), SHOT, SHOT);
    const first = await ingest(['--dest', join(work.path, 'lib'), '--upload', `s3://${bucket}/twin`, '--no-wait']);
    expect(first.json.upload).toMatchObject({ queued: 1, uploaded: 0, pending: 1 });

    // Queued before either SHA-256 was known, card B's row gets its own key; its upload finds card A's
    // row holding the same content and folds into it: the one object is card A's row's.
    const r = await runCli(
      ['ingest', cardB, '--dest', join(work.path, 'lib'), '--state', join(work.path, 'state'), '--config', await config(), '--upload', `s3://${bucket}/twin`, '--json'],
      { env: s3Env() },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(jsonOf<IngestUploadJson>(r).upload).toMatchObject({ queued: 1, uploaded: 1, failed: 0, pending: 0 });
    expect(await sha256OfObject(admin, bucket, keyOf('twin', 'IMG_0007.CR3'))).toEqual({ sha256: files['IMG_0007.CR3']!.sha256, size: 3 * MiB + 11 });
    expect(await headOrUndefined(admin, bucket, keyOf('twin', 'IMG_0007_1.CR3'))).toBeUndefined();
    expect((await status()).upload).toMatchObject({ depth: 0, uploaded: 1, failed: 0 });
  });

  test('two-files-of-one-content-in-one-run-are-each-counted-uploaded-though-one-object-carries-both', async () => {
    await makeCard({ 'DCIM/100CANON/IMG_0008.CR3': 2 * MiB + 3 });
    await mkdir(join(card, 'DCIM/101CANON'), { recursive: true });
    await writeFile(join(card, 'DCIM/101CANON/IMG_0008.CR3'), await readFile(files['IMG_0008.CR3']!.path));
    await utimes(join(card, 'DCIM/101CANON/IMG_0008.CR3'), SHOT, SHOT);
    const r = await ingest(['--dest', join(work.path, 'lib'), '--upload', `s3://${bucket}/pair`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.upload).toMatchObject({ queued: 2, uploaded: 2, failed: 0, pending: 0 });
    expect(await sha256OfObject(admin, bucket, keyOf('pair', 'IMG_0008.CR3'))).toEqual({ sha256: files['IMG_0008.CR3']!.sha256, size: 2 * MiB + 3 });
    expect(await headOrUndefined(admin, bucket, keyOf('pair', 'IMG_0008_1.CR3'))).toBeUndefined();
  });

  test('with-no-wait-files-are-durably-queued-and-shuttle-upload-drains-them', async () => {
    await makeCard();
    const r = await ingest(['--dest', join(work.path, 'lib'), '--upload', `s3://${bucket}/later`, '--no-wait']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.upload).toMatchObject({ queued: 6, uploaded: 0, pending: 6 });
    expect(writes()).toBe(0);
    expect(await headOrUndefined(admin, bucket, keyOf('later', 'IMG_0001.JPG'))).toBeUndefined();
    expect((await status()).upload).toMatchObject({ depth: 6, bytesPending: Object.values(files).reduce((n, f) => n + f.size, 0) });

    const u = await upload();
    expect(u.code, u.stderr).toBe(0);
    expect(u.json).toMatchObject({ uploaded: 6, failed: 0, queue: { queued: 0, uploading: 0, uploaded: 6, failed: 0 } });
    await expectObjectsMatchCard('later');
    const idle = await upload();
    expect(idle.code).toBe(0);
    expect(idle.json).toMatchObject({ uploaded: 0, alreadyPresent: 0 });
  });

  test('jpegs-and-sidecars-go-up-before-raw-files-and-clips', async () => {
    await makeCard();
    expect((await ingest(['--dest', join(work.path, 'lib'), '--upload', `s3://${bucket}/order`, '--no-wait'])).code).toBe(0);
    const u = await upload([], s3Env(), await config('concurrency = 1', 'serial.toml'));
    expect(u.code, u.stderr).toBe(0);
    const order: string[] = [];
    for (const q of proxy.requests) {
      const name = decodeURIComponent(new URL(q.url, 'http://x').pathname.split('/').pop() ?? '');
      if (q.method === 'HEAD' && !order.includes(name)) order.push(name);
    }
    expect(order).toEqual(['IMG_0001.JPG', 'IMG_0002.JPG', 'IMG_0001.XMP', 'IMG_0001.CR3', 'IMG_0002.CR3', 'MVI_0003.MP4']);
  });
});

describe('an unreachable server', () => {
  test('leaves-the-files-queued-with-exit-3-and-a-later-shuttle-upload-finishes', async () => {
    await makeCard();
    const gate = new Gate(swift.port);
    await gate.open();
    await gate.close();
    try {
      // Time enough for a first attempt (and its recorded error) even on a loaded machine, where loading the
      // S3 client alone has taken longer than 2 s and the run gave up before asking the server anything.
      const r = await ingest(['--dest', join(work.path, 'lib'), '--upload', `s3://${bucket}/down`, '--upload-timeout', '10'], s3Env(gate.endpoint));
      expect(r.code, r.stderr).toBe(3);
      expect(r.json.status).toBe('complete');
      expect(r.json.upload).toMatchObject({ queued: 6, uploaded: 0, failed: 0, pending: 6 });
      const s = await status();
      expect(s.upload.depth).toBe(6);
      expect(s.upload.lastError?.message).toContain('ECONNREFUSED');

      await gate.open();
      const u = await upload([], s3Env(gate.endpoint));
      expect(u.code, u.stderr).toBe(0);
      expect(u.json.queue).toMatchObject({ queued: 0, uploaded: 6 });
      await expectObjectsMatchCard('down');
    } finally {
      await gate.close();
    }
  });

  test('that-comes-back-within-the-upload-timeout-gets-everything-in-the-same-run', async () => {
    await makeCard({ 'DCIM/100CANON/IMG_0001.JPG': 200_000, 'DCIM/100CANON/IMG_0001.CR3': 2 * MiB });
    const gate = new Gate(swift.port);
    await gate.open();
    await gate.close();
    try {
      const child = spawnCli(
        [
          'ingest',
          card,
          '--dest',
          join(work.path, 'lib'),
          '--state',
          join(work.path, 'state'),
          '--config',
          await config(),
          '--upload',
          `s3://${bucket}/flaky`,
          '--upload-timeout',
          '60',
          '--json',
        ],
        { env: s3Env(gate.endpoint) },
      );
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      // The gate opens once the upload has met it closed and put the files off (its warning says so).
      const refused = new Promise<void>((resolve) => child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()).includes('upload deferred') && resolve()));
      const closed = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
      await Promise.race([refused, closed]);
      expect(stderr).toContain('ECONNREFUSED');
      await gate.open();
      const r = await closed;
      expect(r.code, r.stderr).toBe(0);
      expect(jsonOf<IngestUploadJson>(r).upload).toMatchObject({ uploaded: 2, pending: 0 });
      await expectObjectsMatchCard('flaky');
    } finally {
      await gate.close();
    }
  });
});

describe('damaged local copies', () => {
  test('a-rotted-copy-is-caught-uploaded-from-the-second-destination-and-restored', async () => {
    await makeCard();
    const libA = join(work.path, 'libA');
    const libB = join(work.path, 'libB');
    expect((await ingest(['--dest', libA, '--dest', libB, '--upload', `s3://${bucket}/rot`, '--no-wait'])).code).toBe(0);
    const raw = join(libA, '2026/2026-03-14/IMG_0001.CR3');
    const clip = join(libA, '2026/2026-03-14/MVI_0003.MP4');
    await flipByte(raw, 1_000_000);
    await flipByte(clip, 11 * MiB);

    const u = await upload();
    expect(u.code, u.stderr).toBe(0);
    expect(u.json).toMatchObject({ uploaded: 6, failed: 0, repaired: 2, damaged: 0 });
    await expectObjectsMatchCard('rot');
    expect(await sha256File(raw)).toBe(files['IMG_0001.CR3']!.sha256);
    expect(await sha256File(clip)).toBe(files['MVI_0003.MP4']!.sha256);
    expect(await unfinishedUploads(admin, bucket)).toEqual([]);
  });

  test('a-rotted-only-copy-is-reported-never-uploaded-and-no-longer-counted-as-verified', async () => {
    await makeCard();
    const lib = join(work.path, 'lib');
    expect((await ingest(['--dest', lib, '--upload', `s3://${bucket}/lost`, '--no-wait'])).code).toBe(0);
    await flipByte(join(lib, '2026/2026-03-14/IMG_0002.CR3'), 10);

    const u = await upload();
    expect(u.code, u.stderr).toBe(1);
    expect(u.json).toMatchObject({ uploaded: 5, failed: 1, queue: { failed: 1, queued: 0 } });
    expect(u.json.errors.filter((e) => e.outcome === 'failed').map((e) => [e.key, e.code])).toEqual([[keyOf('lost', 'IMG_0002.CR3'), 'UPLOAD_VERIFY']]);
    expect(await headOrUndefined(admin, bucket, keyOf('lost', 'IMG_0002.CR3'))).toBeUndefined();
    expect((await status()).copies).toMatchObject({ verified: 5, failed: 1 });
  });
});

describe('retention', () => {
  test('removes-uploaded-copies-by-policy-but-never-a-files-last-verified-copy', async () => {
    await makeCard();
    const libA = join(work.path, 'libA');
    const libB = join(work.path, 'libB');
    const cfg = await config('keep_days = 0', 'retain.toml');
    const r = await ingest(['--dest', libA, '--dest', libB, '--upload', `s3://${bucket}/keep`], s3Env(), cfg);
    expect(r.code, r.stderr).toBe(0);
    for (const name of Object.keys(files)) {
      const where = [libA, libB].filter((lib) => existsSync(join(lib, '2026/2026-03-14', name)));
      expect(where, name).toHaveLength(1);
      expect(await sha256File(join(where[0]!, '2026/2026-03-14', name))).toBe(files[name]!.sha256);
    }
    expect((await status()).copies).toMatchObject({ verified: 6, pruned: 6 });

    // The same card again: pruned copies were verified and are safe in the cloud, so nothing is copied back.
    const again = await ingest(['--dest', libA, '--dest', libB], s3Env(), cfg);
    expect(again.code, again.stderr).toBe(0);
    expect(again.json).toMatchObject({ copied: 0, alreadyVerified: 6 });
    expect((await status()).copies).toMatchObject({ verified: 6, pruned: 6 });

    // A single library keeps everything: each copy there is its file's last.
    const lone = join(work.path, 'lone');
    const one = await runCli(['ingest', card, '--dest', lone, '--state', join(work.path, 'state-lone'), '--config', cfg, '--upload', `s3://${bucket}/lone`, '--json'], {
      env: s3Env(),
    });
    expect(one.code, one.stderr).toBe(0);
    for (const name of Object.keys(files)) expect(existsSync(join(lone, '2026/2026-03-14', name)), name).toBe(true);
  });
});

describe('credentials', () => {
  test('come-from-the-configured-file-or-the-systemd-directory-and-never-reach-the-log', async () => {
    await makeCard({ 'DCIM/100CANON/IMG_0001.JPG': 100_000, 'DCIM/100CANON/IMG_0001.CR3': 6 * MiB });
    const credFile = join(work.path, 'aws-credentials');
    await writeFile(credFile, `[default]\naws_access_key_id = ${swift.accessKeyId}\naws_secret_access_key = ${swift.secretAccessKey}\n`);
    const noKeys = { ...s3Env(), AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined, SHUTTLE_LOG_LEVEL: 'trace' };
    const cfg = await config(`credentials_file = "${credFile}"`, 'creds.toml');
    const r = await runCli(
      [
        'ingest',
        card,
        '--dest',
        join(work.path, 'lib'),
        '--state',
        join(work.path, 'state'),
        '--config',
        cfg,
        '--upload',
        `s3://${bucket}/creds`,
        '--no-wait',
        '--json',
        '--log-level',
        'trace',
      ],
      { env: noKeys },
    );
    expect(r.code, r.stderr).toBe(0);

    const dir = join(work.path, 'credentials.d');
    await mkdir(dir);
    await writeFile(join(dir, 'aws_access_key_id'), swift.accessKeyId);
    await writeFile(join(dir, 'aws_secret_access_key'), swift.secretAccessKey);
    const u = await runCli(['upload', '--state', join(work.path, 'state'), '--config', await config(), '--json', '--log-level', 'trace'], {
      env: { ...noKeys, CREDENTIALS_DIRECTORY: dir },
    });
    expect(u.code, u.stderr).toBe(0);
    expect(jsonOf<UploadJson>(u)).toMatchObject({ uploaded: 2 });
    await expectObjectsMatchCard('creds');
    for (const log of [r.stderr, u.stderr]) {
      expect(log.length).toBeGreaterThan(0);
      expect(log).not.toContain(swift.secretAccessKey);
      expect(log).not.toContain(swift.accessKeyId);
    }

    // Without any keys the server refuses: the files stay queued (exit 3), nothing is marked uploaded.
    await writeFile(join(work.path, 'card/DCIM/100CANON/IMG_0009.JPG'), 'late');
    await runCli(
      [
        'ingest',
        card,
        '--dest',
        join(work.path, 'lib'),
        '--state',
        join(work.path, 'state'),
        '--config',
        await config(),
        '--upload',
        `s3://${bucket}/creds`,
        '--no-wait',
        '--json',
      ],
      { env: noKeys },
    );
    const denied = await runCli(['upload', '--state', join(work.path, 'state'), '--config', await config(), '--json'], {
      env: { ...noKeys, AWS_ACCESS_KEY_ID: 'nobody', AWS_SECRET_ACCESS_KEY: 'wrong' },
    });
    expect(denied.code, denied.stderr).toBe(3);
    expect(jsonOf<UploadJson>(denied).queue).toMatchObject({ queued: 1, uploaded: 2 });
  });
});

describe('restarts', () => {
  test('a-killed-upload-continues-from-the-last-recorded-part', async () => {
    await makeCard({ 'DCIM/100CANON/MVI_0001.MP4': 20 * MiB + 3 });
    expect((await ingest(['--dest', join(work.path, 'lib'), '--upload', `s3://${bucket}/resume`, '--no-wait'])).code).toBe(0);
    const slow = await config(`concurrency = 1\nbandwidth = ${4 * MiB}`, 'slow.toml');
    const child = spawnCli(['upload', '--state', join(work.path, 'state'), '--config', slow, '--json'], { env: s3Env() });
    const journal = new DatabaseSync(join(work.path, 'state', 'journal.sqlite'), { readOnly: true });
    try {
      const deadline = Date.now() + 30_000;
      while ((journal.prepare('SELECT count(*) AS n FROM upload_parts').get() as { n: number }).n < 2) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error('the upload never recorded two parts');
        await sleep(50);
      }
    } finally {
      journal.close();
    }
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('close', resolve));
    const before = proxy.requests.filter((q) => q.method === 'PUT' && q.url.includes('partNumber')).length;

    const u = await upload();
    expect(u.code, u.stderr).toBe(0);
    expect(u.json.uploaded).toBe(1);
    expect(u.json.partsResumed).toBeGreaterThanOrEqual(2);
    const partPuts = proxy.requests.filter((q) => q.method === 'PUT' && q.url.includes('partNumber')).length;
    expect(partPuts - before).toBeLessThanOrEqual(5 - u.json.partsResumed);
    await expectObjectsMatchCard('resume');
    expect(await unfinishedUploads(admin, bucket)).toEqual([]);
  });
});
