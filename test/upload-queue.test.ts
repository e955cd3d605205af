/**
 * The upload queue and its neighbours, on a real journal (SQLite) and real folders: multipart state in
 * the journal, enqueueing and keys, claim order and backoff, retention, credentials, the [upload] config
 * section and how failures are classified. The end-to-end behaviour against a real S3 server is in
 * upload-cli.test.ts.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { loadConfig, normalizeConfig, uploadSettings } from '../src/config/index.js';
import { ShuttleError, isShuttleError } from '../src/errors.js';
import { silentLogger } from '../src/log.js';
import { Journal } from '../src/store/journal.js';
import { RetentionStore } from '../src/store/retention.js';
import { UploadQueue, priorityOf, type QueueTarget } from '../src/store/upload-queue.js';
import { credentialsFromDirectory, credentialsFromFile, resolveCredentials } from '../src/upload/credentials.js';
import { JournalUploadStateStore } from '../src/upload/journal-state.js';
import { queueTarget } from '../src/upload/keys.js';
import { applyRetention } from '../src/upload/retention.js';
import { UploadWorker, classifyUploadFailure } from '../src/upload/worker.js';
import { tempDir } from './support/tree.js';
import { journalDestination, onJournalFile as onJournal, type TestDestination } from './support/journal-access.js';

let work: { path: string; cleanup: () => Promise<void> };
let journal: Journal;
let queue: UploadQueue;
let ingestId: number;
let sourceId: number;

beforeEach(async () => {
  work = await tempDir('shuttle-upload-queue-');
  journal = Journal.open(join(work.path, 'state'));
  queue = new UploadQueue(journal);
  sourceId = journal.upsertSource({ kind: 'card', key: 'card:TEST', label: 'EOS_DIGITAL', details: {} });
  ingestId = journal.startIngest(['/media/card'], []);
});
afterEach(async () => {
  journal.close();
  await work.cleanup();
});

const onJournalFile = <T>(fn: (db: DatabaseSync) => T): T => onJournal(journal, fn);

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
const TARGET: QueueTarget = queueTarget({
  bucket: 'photos',
  prefix: 'shoots',
  keyTemplate: '{station}/{YYYY}/{YYYY-MM-DD}/{name}',
  station: 'cart-1',
  timeZone: 'Europe/Berlin',
  priority: ['jpg', 'xmp', '*'],
});

type Dest = TestDestination;
const destination = (name: string): Promise<Dest> => journalDestination(journal, work.path, name);

/** A source file with verified copies (written to disk) at each destination; returns the file id. */
async function verifiedFile(relPath: string, content: string, dests: Dest[], opts: { mtime?: number; destPath?: string } = {}): Promise<number> {
  const file = journal.fileFor(sourceId, relPath, content.length, opts.mtime ?? Date.parse('2026-03-14T23:30:00Z'));
  for (const d of dests) {
    const destPath = opts.destPath ?? `2026/${relPath.split('/').pop()}`;
    await mkdir(dirname(join(d.root, destPath)), { recursive: true });
    await writeFile(join(d.root, destPath), content);
    journal.markVerified(file.id, d.id, { destPath, size: content.length, sha256: sha(content), xxh128: 'c'.repeat(32), hashes: {}, readback: 'direct', dedup: false }, ingestId);
  }
  return file.id;
}

/** Puts rows through claim and markUploaded, as the worker does after a verified upload. */
function uploadAll(): void {
  for (let row = queue.claimNext(); row !== undefined; row = queue.claimNext()) queue.markUploaded(row.id, { copyId: null, etag: '"x"' });
}

describe('multipart state in the journal', () => {
  const ref = { bucket: 'photos', key: 'cart-1/2026/2026-03-14/IMG_0001.CR3' };
  const fresh = { ...ref, uploadId: 'u1', size: 40 * 1024 * 1024, sha256: 'a'.repeat(64), partSize: 5 * 1024 * 1024 };
  const part = (n: number, etag = `"${n}"`) => ({ partNumber: n, size: 5 * 1024 * 1024, md5: n.toString(16).padStart(32, '0'), etag });

  test('records-an-upload-its-parts-in-order-and-its-status', async () => {
    const store = new JournalUploadStateStore(journal);
    expect(await store.load(ref)).toBeUndefined();
    await store.begin(fresh);
    await store.recordPart(ref, 'u1', part(3));
    await store.recordPart(ref, 'u1', part(1));
    await store.recordPart(ref, 'u1', part(1, '"again"'));
    await store.setStatus(ref, 'u1', 'completed');
    expect(await store.load(ref)).toEqual({ ...fresh, status: 'completed', parts: [part(1, '"again"'), part(3)] });
  });

  test('survives-closing-and-reopening-the-journal', async () => {
    const store = new JournalUploadStateStore(journal);
    await store.begin(fresh);
    await store.recordPart(ref, 'u1', part(2));
    journal.close();
    journal = Journal.open(join(work.path, 'state'));
    expect(await new JournalUploadStateStore(journal).load(ref)).toEqual({ ...fresh, status: 'uploading', parts: [part(2)] });
  });

  test('a-new-upload-id-drops-the-old-parts-and-refuses-writes-for-the-old-id', async () => {
    const store = new JournalUploadStateStore(journal);
    await store.begin(fresh);
    await store.recordPart(ref, 'u1', part(1));
    await store.begin({ ...fresh, uploadId: 'u2' });
    expect(await store.load(ref)).toEqual({ ...fresh, uploadId: 'u2', status: 'uploading', parts: [] });
    for (const write of [() => store.recordPart(ref, 'u1', part(1)), () => store.setStatus(ref, 'u1', 'aborted')]) {
      const err = await write().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isShuttleError(err, 'JOURNAL')).toBe(true);
    }
  });
});

describe('enqueueing', () => {
  test('queues-each-verified-file-once-with-its-key-size-hash-and-priority', async () => {
    const a = await destination('a');
    const jpg = await verifiedFile('DCIM/IMG_0001.JPG', 'jpeg bytes', [a]);
    const raw = await verifiedFile('DCIM/IMG_0001.CR3', 'raw bytes!', [a]);
    const first = queue.enqueue([raw, jpg], TARGET);
    expect(first).toMatchObject({ added: 2, alreadyUploaded: 0 });
    // 23:30 UTC on March 14 is already March 15 in Berlin: the photographer's day names the folder.
    expect(queue.all().map((r) => [r.key, r.size, r.sha256, r.priority, r.state])).toEqual([
      ['shoots/cart-1/2026/2026-03-15/IMG_0001.JPG', 10, sha('jpeg bytes'), 0, 'queued'],
      ['shoots/cart-1/2026/2026-03-15/IMG_0001.CR3', 10, sha('raw bytes!'), 2, 'queued'],
    ]);
    const again = queue.enqueue([raw, jpg], TARGET);
    expect(again).toMatchObject({ added: 0, rowIds: first.rowIds });
    expect(queue.all()).toHaveLength(2);
  });

  test('another-files-content-at-the-same-key-gets-a-suffix-the-same-content-shares-the-row', async () => {
    const a = await destination('a');
    const one = await verifiedFile('100/IMG_0001.JPG', 'first', [a], { destPath: '2026/one/IMG_0001.JPG' });
    const other = await verifiedFile('101/IMG_0001.JPG', 'other', [a], { destPath: '2026/two/IMG_0001.JPG' });
    const same = await verifiedFile('102/IMG_0001.JPG', 'first', [a], { destPath: '2026/three/IMG_0001.JPG' });
    const r = queue.enqueue([one, other, same], TARGET);
    expect(r).toMatchObject({ added: 2, sharedContent: 1 });
    expect(queue.all().map((row) => row.key)).toEqual(['shoots/cart-1/2026/2026-03-15/IMG_0001.JPG', 'shoots/cart-1/2026/2026-03-15/IMG_0001_1.JPG']);
    expect(r.rowIds[2]).toBe(r.rowIds[0]);
  });

  test('files-without-a-verified-copy-are-not-queued', () => {
    const file = journal.fileFor(sourceId, 'DCIM/IMG_0009.JPG', 5, 0);
    expect(queue.enqueue([file.id], TARGET)).toMatchObject({ added: 0, notVerified: 1, rowIds: [] });
  });

  test('a-failed-row-queued-again-gets-a-fresh-start', async () => {
    const a = await destination('a');
    const f = await verifiedFile('A.JPG', 'aaa', [a]);
    const [id] = queue.enqueue([f], TARGET).rowIds as [number];
    queue.markFailed(id, { code: 'UPLOAD_VERIFY', message: 'every local copy is damaged' });
    expect(queue.enqueue([f], TARGET)).toMatchObject({ reset: 1, added: 0 });
    expect(queue.get(id)).toMatchObject({ state: 'queued', attempts: 0 });
  });
});

describe('claiming and backoff', () => {
  test('rows-are-claimed-by-priority-then-age-and-deferred-rows-wait-until-due', async () => {
    const a = await destination('a');
    const files = [
      await verifiedFile('A.CR3', 'raw-a', [a]),
      await verifiedFile('A.JPG', 'jpg-a', [a]),
      await verifiedFile('A.XMP', 'xmp-a', [a]),
      await verifiedFile('B.JPG', 'jpg-b', [a]),
    ];
    queue.enqueue(files, TARGET, 1_000);
    const names = (): string[] => {
      const out: string[] = [];
      for (let r = queue.claimNext(2_000); r !== undefined; r = queue.claimNext(2_000)) out.push(r.key.split('/').pop() as string);
      return out;
    };
    const first = queue.claimNext(2_000);
    expect(first?.key).toMatch(/A\.JPG$/);
    queue.defer(first!.id, { code: 'UPLOAD_FAILED', message: 'ECONNREFUSED' }, 60_000, 2_000);
    expect(names()).toEqual(['B.JPG', 'A.XMP', 'A.CR3']);
    expect(queue.claimNext(59_999)).toBeUndefined();
    expect(queue.claimNext(60_000)?.key).toMatch(/A\.JPG$/);
  });

  test('defer-counts-attempts-and-status-shows-depth-bytes-and-the-last-error', async () => {
    const a = await destination('a');
    queue.enqueue([await verifiedFile('A.JPG', '12345', [a]), await verifiedFile('B.JPG', '1234567', [a])], TARGET);
    const row = queue.claimNext()!;
    queue.defer(row.id, { code: 'UPLOAD_FAILED', message: 'server unreachable' }, Date.now() + 60_000);
    const stats = queue.stats();
    expect(stats).toMatchObject({ depth: 2, queued: 2, uploaded: 0, bytesPending: 12 });
    expect(stats.lastError).toMatchObject({ key: row.key, code: 'UPLOAD_FAILED', message: 'server unreachable' });
    expect(queue.get(row.id)?.attempts).toBe(1);
    expect(queue.retryNow()).toBe(1);
    uploadAll();
    expect(queue.stats()).toMatchObject({ depth: 0, uploaded: 2, bytesPending: 0, lastError: null });
  });

  test('rows-a-dead-process-left-uploading-are-queued-again', async () => {
    const a = await destination('a');
    queue.enqueue([await verifiedFile('A.JPG', 'aaa', [a])], TARGET);
    const row = queue.claimNext()!;
    expect(queue.get(row.id)?.state).toBe('uploading');
    journal.close();
    journal = Journal.open(join(work.path, 'state'));
    queue = new UploadQueue(journal);
    expect(queue.recoverInterrupted()).toBe(1);
    expect(queue.get(row.id)?.state).toBe('queued');
  });

  test('priority-follows-the-extension-order-with-star-for-the-rest', () => {
    const order = ['jpg', 'heic', '*', 'cr3'];
    expect([priorityOf('A.JPG', order), priorityOf('a.heic', order), priorityOf('clip.MP4', order), priorityOf('A.CR3', order), priorityOf('README', order)]).toEqual([
      0, 1, 2, 3, 2,
    ]);
    expect(priorityOf('clip.mp4', ['jpg'])).toBe(1);
  });

  test('queue-level-backoff-doubles-with-jitter-and-is-capped', () => {
    const worker = (random: number) =>
      new UploadWorker({
        queue,
        store: new JournalUploadStateStore(journal),
        targetFor: () => {
          throw new Error('unused');
        },
        provider: 'swift',
        concurrency: 1,
        partSize: 5 * 1024 * 1024,
        logger: silentLogger,
        backoff: { baseMs: 1000, maxMs: 10_000 },
        random: () => random,
      });
    expect([1, 2, 3, 4, 5, 9].map((n) => worker(0).backoffMs(n))).toEqual([500, 1000, 2000, 4000, 5000, 5000]);
    expect([1, 2, 3, 4, 5, 9].map((n) => worker(0.999999).backoffMs(n))).toEqual([1000, 2000, 4000, 8000, 10_000, 10_000]);
  });
});

describe('classifying upload failures', () => {
  const s3 = (context: Record<string, unknown>) => new ShuttleError('UPLOAD_FAILED', 'x', { context: { op: 'PutObject', ...context } });
  test('local-damage-conflicts-an-unreachable-server-and-refused-keys-are-told-apart', () => {
    expect(classifyUploadFailure(new ShuttleError('UPLOAD_VERIFY', 'x', { context: { path: '/d/a.jpg', bucket: 'b', key: 'k' } }))).toBe('local-damaged');
    expect(classifyUploadFailure(new ShuttleError('UPLOAD_VERIFY', 'x', { context: { bucket: 'b', key: 'k', field: 'size' } }))).toBe('transient');
    expect(classifyUploadFailure(new ShuttleError('SOURCE_UNREADABLE', 'x', { context: { path: '/d/a' }, cause: Object.assign(new Error('gone'), { code: 'ENOENT' }) }))).toBe(
      'local-damaged',
    );
    expect(classifyUploadFailure(new ShuttleError('SOURCE_UNREADABLE', 'x', { context: { path: '/d/a' }, cause: Object.assign(new Error('no'), { code: 'EACCES' }) }))).toBe(
      'local-unavailable',
    );
    expect(classifyUploadFailure(new ShuttleError('UPLOAD_FAILED', 'x', { context: { bucket: 'b', key: 'k', expectedSha256: 'a' } }))).toBe('conflict');
    expect(classifyUploadFailure(s3({ errno: 'ECONNREFUSED' }))).toBe('offline');
    expect(classifyUploadFailure(s3({ status: 503 }))).toBe('offline');
    expect(classifyUploadFailure(s3({ status: 403, s3Code: 'InvalidAccessKeyId' }))).toBe('offline');
    expect(classifyUploadFailure(s3({ status: 400, s3Code: 'InvalidArgument' }))).toBe('transient');
    expect(classifyUploadFailure(new ShuttleError('NAME_INVALID', 'x'))).toBe('permanent');
  });
});

describe('retention', () => {
  test('prunes-only-uploaded-copies-and-never-a-files-last-verified-copy', async () => {
    const a = await destination('a');
    const b = await destination('b');
    const both = await verifiedFile('A.JPG', 'uploaded, two copies', [a, b]);
    const lone = await verifiedFile('B.JPG', 'uploaded, one copy', [a]);
    const pending = await verifiedFile('C.JPG', 'not uploaded, two copies', [a, b]);
    queue.enqueue([both, lone], TARGET);
    uploadAll();
    queue.enqueue([pending], TARGET);

    const report = await applyRetention({ records: new RetentionStore(journal), policy: { keepDays: 0 }, logger: silentLogger });
    expect(report.pruned.map((p) => p.path)).toEqual([join(a.root, '2026/A.JPG')]);
    expect(existsSync(join(a.root, '2026/A.JPG'))).toBe(false);
    for (const kept of [join(b.root, '2026/A.JPG'), join(a.root, '2026/B.JPG'), join(a.root, '2026/C.JPG'), join(b.root, '2026/C.JPG')]) expect(existsSync(kept)).toBe(true);
    expect(journal.copiesOf(both).map((c) => [c.dest_id, c.state])).toEqual([
      [a.id, 'pruned'],
      [b.id, 'verified'],
    ]);
    const recorded = onJournalFile((db) => db.prepare('SELECT dest_path, reason FROM copy_prunes').all());
    expect(recorded).toEqual([{ dest_path: '2026/A.JPG', reason: 'age' }]);
    // A second pass finds nothing more: the surviving copy is the last one.
    expect((await applyRetention({ records: new RetentionStore(journal), policy: { keepDays: 0 }, logger: silentLogger })).pruned).toEqual([]);
  });

  test('keeps-a-copy-whose-twin-is-missing-on-disk-though-the-journal-calls-it-verified', async () => {
    const a = await destination('a');
    const b = await destination('b');
    const f = await verifiedFile('A.JPG', 'twin gone', [a, b]);
    queue.enqueue([f], TARGET);
    uploadAll();
    await writeFile(join(b.root, '2026/A.JPG'), 'short');
    // a's copy is the only intact one, so it stays; b's (damaged) copy may go, since a's survives.
    const report = await applyRetention({ records: new RetentionStore(journal), policy: { keepDays: 0 }, logger: silentLogger });
    expect(report.pruned.map((p) => p.path)).toEqual([join(b.root, '2026/A.JPG')]);
    expect(await readFile(join(a.root, '2026/A.JPG'), 'utf8')).toBe('twin gone');
  });

  test('free-space-pruning-removes-the-oldest-copies-until-enough-is-free', async () => {
    const a = await destination('a');
    const b = await destination('b');
    const files = [];
    for (const [i, name] of ['OLD.JPG', 'MID.JPG', 'NEW.JPG'].entries()) {
      files.push(await verifiedFile(name, `${name} content`.padEnd(100, '.'), [a, b]));
      const fileId = files[i]!;
      onJournalFile((db) => db.prepare('UPDATE copies SET updated_at = ? WHERE file_id = ?').run(`2026-03-1${i}T00:00:00.000Z`, fileId));
    }
    queue.enqueue(files, TARGET);
    uploadAll();
    const onA = ['OLD.JPG', 'MID.JPG', 'NEW.JPG'].map((n) => join(a.root, '2026', n));
    const report = await applyRetention({
      records: new RetentionStore(journal),
      policy: { keepFreeBytes: 1150 },
      logger: silentLogger,
      // A disk with 1000 bytes free on `a` (b is roomy); every copy removed from `a` gives its 100 bytes back.
      freeBytes: async (root) => (root === a.root ? 1000 + 100 * onA.filter((p) => !existsSync(p)).length : 10_000),
    });
    expect(report.pruned.map((p) => [p.path, p.reason])).toEqual([
      [join(a.root, '2026/OLD.JPG'), 'free-space'],
      [join(a.root, '2026/MID.JPG'), 'free-space'],
    ]);
  });

  test('leaves-a-destination-alone-when-its-marker-is-not-the-one-the-journal-knows', async () => {
    const a = await destination('a');
    const b = await destination('b');
    const f = await verifiedFile('A.JPG', 'other disk', [a, b]);
    queue.enqueue([f], TARGET);
    uploadAll();
    const markerFile = join(a.root, '.shuttle', 'destination.json');
    const marker = JSON.parse(await readFile(markerFile, 'utf8')) as Record<string, unknown>;
    await writeFile(markerFile, JSON.stringify({ ...marker, id: 'someone-else' }));
    const report = await applyRetention({ records: new RetentionStore(journal), policy: { keepDays: 0 }, logger: silentLogger });
    expect(report.skippedDestinations.map((s) => s.path)).toEqual([a.root]);
    // Nothing on `a` is touched, and b's copy stays too: its twin on `a` cannot be vouched for.
    expect(report.pruned).toEqual([]);
    expect(existsSync(join(a.root, '2026/A.JPG')) && existsSync(join(b.root, '2026/A.JPG'))).toBe(true);
  });

  test('without-a-policy-nothing-is-removed', async () => {
    const a = await destination('a');
    const b = await destination('b');
    queue.enqueue([await verifiedFile('A.JPG', 'keep me', [a, b])], TARGET);
    uploadAll();
    expect((await applyRetention({ records: new RetentionStore(journal), policy: {}, logger: silentLogger })).pruned).toEqual([]);
  });
});

describe('credentials', () => {
  const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';

  test('a-credentials-file-gives-the-profiles-keys-and-errors-never-quote-them', async () => {
    const file = join(work.path, 'creds');
    await writeFile(
      file,
      `# shuttle\n[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = ${SECRET}\n\n[field]\naws_access_key_id=AKIDFIELD\naws_secret_access_key=${SECRET}2\naws_session_token = tok\n`,
    );
    expect(await credentialsFromFile(file)).toEqual({ accessKeyId: 'AKIDDEFAULT', secretAccessKey: SECRET });
    expect(await resolveCredentials({ credentialsFile: file, env: { AWS_PROFILE: 'field' } })).toEqual({
      credentials: { accessKeyId: 'AKIDFIELD', secretAccessKey: `${SECRET}2`, sessionToken: 'tok' },
      origin: `credentials file ${file}`,
    });
    await writeFile(file, `[default]\naws_access_key_id = AKIDONLY\nsecret = ${SECRET}\n`);
    const err = await credentialsFromFile(file).then(
      () => undefined,
      (e: unknown) => e as ShuttleError,
    );
    expect(err?.code).toBe('CONFIG_INVALID');
    expect(JSON.stringify(err?.toJSON())).not.toContain(SECRET);
    expect(JSON.stringify(err?.toJSON())).not.toContain('AKIDONLY');
  });

  test('a-credentials-file-is-read-alone-and-gives-only-keys-that-do-not-expire', async () => {
    const file = join(work.path, 'creds');
    const home = join(work.path, 'home');
    await mkdir(join(home, '.aws'), { recursive: true });
    // The service user's own AWS config has keys for the profile; the credentials file does not.
    await writeFile(join(home, '.aws', 'config'), `[profile field]\naws_access_key_id = AKIDHOME\naws_secret_access_key = ${SECRET}\n`);
    await writeFile(
      file,
      `[profile pf]\naws_access_key_id = AKIDPF\naws_secret_access_key = ${SECRET}\n\n[process]\ncredential_process = echo '{"Version":1,"AccessKeyId":"AKIDTEMP","SecretAccessKey":"${SECRET}","Expiration":"2099-01-01T00:00:00Z"}'\n`,
    );
    const savedHome = process.env['HOME'];
    process.env['HOME'] = home;
    try {
      expect(await credentialsFromFile(file, 'pf')).toEqual({ accessKeyId: 'AKIDPF', secretAccessKey: SECRET });
      const notHome = await credentialsFromFile(file, 'field').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isShuttleError(notHome, 'CONFIG_INVALID')).toBe(true);
      const temporary = await credentialsFromFile(file, 'process').then(
        () => undefined,
        (e: unknown) => e as ShuttleError,
      );
      expect(temporary?.code).toBe('CONFIG_INVALID');
      expect(temporary?.message).toContain('gives temporary credentials');
      expect(JSON.stringify(temporary?.toJSON())).not.toContain(SECRET);
    } finally {
      process.env['HOME'] = savedHome;
    }
  });

  test('the-systemd-credentials-directory-is-used-when-the-config-names-no-file', async () => {
    const dir = join(work.path, 'creds.d');
    await mkdir(dir);
    expect(await resolveCredentials({ env: { CREDENTIALS_DIRECTORY: dir } })).toEqual({ credentials: undefined, origin: 'aws-sdk default chain' });
    await writeFile(join(dir, 'aws_access_key_id'), 'AKIDSYSTEMD\n');
    await writeFile(join(dir, 'aws_secret_access_key'), `${SECRET}\n`);
    expect((await resolveCredentials({ env: { CREDENTIALS_DIRECTORY: dir } })).credentials).toEqual({ accessKeyId: 'AKIDSYSTEMD', secretAccessKey: SECRET });
    await writeFile(join(dir, 'aws_credentials'), `[default]\naws_access_key_id=AKIDINI\naws_secret_access_key=${SECRET}\n`);
    expect(await credentialsFromDirectory(dir)).toEqual({ accessKeyId: 'AKIDINI', secretAccessKey: SECRET });
  });
});

describe('the [upload] config section', () => {
  test('parses-every-key-and-fills-defaults', async () => {
    const file = join(work.path, 'shuttle.toml');
    await writeFile(
      file,
      `[upload]\ntarget = "s3://photos/shoots"\nprovider = "swift"\nendpoint = "http://127.0.0.1:8080"\nconcurrency = 2\npart_size = 8_388_608\nbandwidth = 1_000_000\npriority = [".JPG", "*", "cr3"]\nkeep_days = 14\nkeep_free_bytes = 1_000_000_000\n[[upload.schedule]]\nfrom = "09:00"\nto = "18:00"\nbandwidth = 0\ndays = [1, 2, 3, 4, 5]\n`,
    );
    const up = uploadSettings(loadConfig({ file, env: {} }));
    expect(up).toMatchObject({
      target: 's3://photos/shoots',
      provider: 'swift',
      endpoint: 'http://127.0.0.1:8080',
      concurrency: 2,
      partSize: 8 * 1024 * 1024,
      bandwidth: 1_000_000,
      priority: ['jpg', '*', 'cr3'],
      keepDays: 14,
      keepFreeBytes: 1_000_000_000,
      keyTemplate: '{station}/{YYYY}/{YYYY-MM-DD}/{name}',
      schedule: [{ from: '09:00', to: '18:00', bandwidth: 0, days: [1, 2, 3, 4, 5] }],
    });
    expect(uploadSettings(loadConfig({ env: {} }))).toMatchObject({ concurrency: 4, partSize: 16 * 1024 * 1024, schedule: [], priority: expect.arrayContaining(['jpg', '*']) });
    expect(loadConfig({ env: { SHUTTLE_UPLOAD_TARGET: 's3://env-bucket/p' } }).upload?.target).toBe('s3://env-bucket/p');
  });

  test('rejects-a-bad-target-provider-time-or-key-template-naming-the-key', () => {
    const bad = (upload: Record<string, unknown>): string => {
      try {
        normalizeConfig({ upload } as never);
      } catch (e) {
        return (e as Error).message;
      }
      return 'accepted';
    };
    expect(bad({ target: 'https://bucket/prefix' })).toContain('upload.target: "https://bucket/prefix" is not of the form s3://bucket/prefix');
    expect(bad({ provider: 'dropbox' })).toContain('upload.provider');
    expect(bad({ schedule: [{ from: '25:00', to: '06:00' }] })).toContain('upload.schedule[0].from: "25:00" is not a time of day HH:MM');
    expect(bad({ key_template: '{station}/{bogus}' })).toContain('upload.key_template');
    expect(bad({ part_size: 1024 })).toContain('upload.part_size');
  });
});
