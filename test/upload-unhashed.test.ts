/**
 * Uploads of files whose SHA-256 ingest did not take (queue rows with sha256 NULL): the worker reads the
 * verified local copy once before the first request, checks it against the journal's xxh128, records the
 * SHA-256, and uploads as before, against a real S3 server (Swift s3api, test/support/swift.ts). Also
 * that no match between different files (a shared key, retention, the wipe gate) rests on xxh128 alone.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { hashWorkerForTests, startHashWorker } from '../src/io/hash-worker-client.js';
import { silentLogger } from '../src/log.js';
import { Journal } from '../src/store/journal.js';
import { RetentionStore } from '../src/store/retention.js';
import { UploadQueue, type QueueTarget } from '../src/store/upload-queue.js';
import { WipeStore } from '../src/store/wipes.js';
import { createS3Client } from '../src/upload/client.js';
import { JournalUploadStateStore } from '../src/upload/journal-state.js';
import { queueTarget } from '../src/upload/keys.js';
import { MiB } from '../src/upload/multipart.js';
import { PROVIDERS, type ProviderName, type ProviderProfile } from '../src/upload/provider.js';
import { PartReader } from '../src/upload/part-reader.js';
import { UploadWorker } from '../src/upload/worker.js';
import { startSwift, type SwiftServer } from './support/swift.js';
import { countUploadParts, expectedMultipartEtag, headOrUndefined, sha256OfObject, writeTestFile, type TestFile } from './support/upload-fixtures.js';
import { tempDir } from './support/tree.js';
import { journalDestination, onJournalFile as onJournal, type TestDestination } from './support/journal-access.js';

const BUCKET = 'shuttle-unhashed';
const PART = 5 * MiB;
let swift: SwiftServer;
let client: S3Client;
let admin: S3Client;
let work: { path: string; cleanup: () => Promise<void> };
let journal: Journal;
let queue: UploadQueue;
let sourceId: number;
let ingestId: number;
let prefix = 0;
let target: QueueTarget;

beforeAll(async () => {
  swift = await startSwift();
  await swift.createBucket(BUCKET);
  ({ client } = createS3Client({ provider: 'swift', endpoint: swift.endpoint, credentials: { accessKeyId: swift.accessKeyId, secretAccessKey: swift.secretAccessKey } }));
  admin = swift.adminClient();
});

afterAll(async () => {
  client?.destroy();
  admin?.destroy();
  await swift?.stop();
});

beforeEach(async () => {
  work = await tempDir('shuttle-upload-unhashed-');
  journal = Journal.open(join(work.path, 'state'));
  queue = new UploadQueue(journal);
  sourceId = journal.upsertSource({ kind: 'card', key: 'card:UNHASHED', label: 'EOS_DIGITAL', details: {} });
  ingestId = journal.startIngest(['/media/card'], []);
  // Each test under its own prefix: the bucket outlives the tests.
  target = queueTarget({ bucket: BUCKET, prefix: `t${++prefix}`, keyTemplate: '{name}', station: 'cart-1', timeZone: 'UTC', priority: ['*'] });
});

afterEach(async () => {
  journal.close();
  await work.cleanup();
});

type Dest = TestDestination;
const destination = (name: string): Promise<Dest> => journalDestination(journal, work.path, name);

const onJournalFile = <T>(fn: (db: DatabaseSync) => T): T => onJournal(journal, fn);

/**
 * A source file verified at each destination as an ingest that hashed only xxh128 leaves it: the
 * copies' and the file's sha256 NULL. `xxh128` stands in for the journal's value (default the bytes' own).
 */
async function unhashedFile(
  relPath: string,
  size: number,
  dests: Dest[],
  opts: { seed?: string; destPath?: string; xxh128?: string; sha256?: string } = {},
): Promise<{ id: number; bytes: TestFile }> {
  const destPath = opts.destPath ?? `2026/${relPath.split('/').pop()}`;
  const file = journal.fileFor(sourceId, relPath, size, Date.parse('2026-03-14T12:00:00Z'));
  let bytes: TestFile | undefined;
  for (const d of dests) {
    await mkdir(join(d.root, '2026', ...destPath.split('/').slice(1, -1)), { recursive: true });
    bytes = await writeTestFile(d.root, destPath, size, opts.seed ?? relPath);
    const xxh128 = opts.xxh128 ?? bytes.xxh128;
    journal.markVerified(file.id, d.id, { destPath, size, sha256: opts.sha256 ?? null, xxh128, hashes: { xxh128 }, readback: 'direct', dedup: false }, ingestId);
  }
  return { id: file.id, bytes: bytes! };
}

/** Swift as a server that is not known to check the signed payload SHA-256: one PUT carries Content-MD5. */
const SWIFT_WITH_MD5: ProviderProfile = { ...PROVIDERS.swift, checksSignedPayload: false };

function worker(provider: ProviderName | ProviderProfile = 'swift', concurrency = 2): UploadWorker {
  return new UploadWorker({
    queue,
    store: new JournalUploadStateStore(journal),
    client,
    provider,
    concurrency,
    partSize: PART,
    requestRetry: { maxAttempts: 2, baseDelayMs: 20, maxDelayMs: 50 },
    logger: process.env['DBG'] ? pino({ level: 'debug' }, pino.destination(2)) : silentLogger,
  });
}

const journalSha256 = (fileId: number): { files: unknown; copies: unknown[]; queue: unknown[] } =>
  onJournalFile((db) => ({
    files: (db.prepare('SELECT sha256 FROM files WHERE id = ?').get(fileId) as { sha256: string | null }).sha256,
    copies: (db.prepare(`SELECT sha256 FROM copies WHERE file_id = ? AND state = 'verified' ORDER BY id`).all(fileId) as Array<{ sha256: string | null }>).map((r) => r.sha256),
    queue: (db.prepare('SELECT sha256 FROM upload_queue WHERE file_id = ? ORDER BY id').all(fileId) as Array<{ sha256: string | null }>).map((r) => r.sha256),
  }));

async function flipByte(path: string, at: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] = b[0]! ^ 0x40;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

describe('files queued without a SHA-256', () => {
  test('are-hashed-from-the-verified-copy-then-uploaded-in-one-put-or-in-parts-and-the-sha256-is-recorded', async () => {
    const a = await destination('a');
    const small = await unhashedFile('DCIM/IMG_0001.JPG', 3 * MiB + 7, [a]);
    const big = await unhashedFile('DCIM/MVI_0002.MOV', 2 * PART + MiB + 999, [a]);
    const queued = queue.enqueue([small.id, big.id], target);
    expect(queued.added).toBe(2);
    expect(queue.rows(queued.rowIds).map((r) => r.sha256)).toEqual([null, null]);

    const report = await worker(SWIFT_WITH_MD5).drain();
    expect(report).toMatchObject({ uploaded: 2, failed: 0, damaged: 0, deferred: 0 });
    const [smallRow, bigRow] = queue.rows(queued.rowIds);
    for (const [row, f] of [
      [smallRow!, small],
      [bigRow!, big],
    ] as const) {
      expect(row.state).toBe('uploaded');
      expect(await sha256OfObject(admin, BUCKET, row.key)).toEqual({ sha256: f.bytes.sha256, size: f.bytes.size });
      expect((await headOrUndefined(admin, BUCKET, row.key))?.Metadata?.['sha256']).toBe(f.bytes.sha256);
      expect(journalSha256(f.id)).toEqual({ files: f.bytes.sha256, copies: [f.bytes.sha256], queue: [f.bytes.sha256] });
    }
    // One PUT for the small file (its ETag the MD5 the worker computed), parts for the big one.
    expect((await headOrUndefined(admin, BUCKET, smallRow!.key))?.ETag).toBe(`"${small.bytes.md5}"`);
    expect((await headOrUndefined(admin, BUCKET, bigRow!.key))?.ETag).toBe(`"${await expectedMultipartEtag(big.bytes.path, PART)}"`);
    // The MD5 was taken only where one PUT carries it, and is kept with the copy's hashes.
    const hashes = onJournalFile((db) => (db.prepare('SELECT file_id, hashes FROM copies ORDER BY file_id').all() as Array<{ hashes: string }>).map((r) => JSON.parse(r.hashes)));
    expect(hashes).toEqual([
      { xxh128: small.bytes.xxh128, sha256: small.bytes.sha256, md5: small.bytes.md5 },
      { xxh128: big.bytes.xxh128, sha256: big.bytes.sha256 },
    ]);
  });

  test('go-in-one-put-without-content-md5-nor-an-md5-pass-where-the-server-checks-the-signed-sha256', async () => {
    const a = await destination('a');
    const small = await unhashedFile('DCIM/IMG_0012.JPG', 3 * MiB + 7, [a]);
    const [rowId] = queue.enqueue([small.id], target).rowIds;
    const contentMd5: Array<string | undefined> = [];
    const name = 'recordContentMd5';
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === 'PutObjectCommand') contentMd5.push((args.input as { ContentMD5?: string }).ContentMD5);
        return next(args);
      },
      { step: 'initialize', name },
    );
    try {
      expect(await worker('swift').drain()).toMatchObject({ uploaded: 1, failed: 0 });
    } finally {
      client.middlewareStack.remove(name);
    }
    expect(contentMd5).toEqual([undefined]);
    const key = queue.get(rowId!)!.key;
    expect(await sha256OfObject(admin, BUCKET, key)).toEqual({ sha256: small.bytes.sha256, size: small.bytes.size });
    expect((await headOrUndefined(admin, BUCKET, key))?.Metadata?.['sha256']).toBe(small.bytes.sha256);
    expect(onJournalFile((db) => JSON.parse((db.prepare('SELECT hashes FROM copies WHERE file_id = ?').get(small.id) as { hashes: string }).hashes))).toEqual({
      xxh128: small.bytes.xxh128,
      sha256: small.bytes.sha256,
    });
  });

  test('a-copy-that-no-longer-reads-as-its-xxh128-is-named-not-uploaded-and-restored-from-another-copy', async () => {
    const a = await destination('a');
    const b = await destination('b');
    const rotted = await unhashedFile('DCIM/IMG_0003.CR3', 2 * MiB + 5, [a, b]);
    const only = await unhashedFile('DCIM/IMG_0004.CR3', 2 * MiB + 5, [a]);
    const rottedPath = join(a.root, '2026/IMG_0003.CR3');
    const onlyPath = join(a.root, '2026/IMG_0004.CR3');
    await flipByte(rottedPath, MiB + 3);
    await flipByte(onlyPath, 17);
    const queued = queue.enqueue([rotted.id, only.id], target);

    const report = await worker().drain();
    expect(report).toMatchObject({ uploaded: 1, failed: 1, repaired: 1, damaged: 1 });
    const [rottedRow, onlyRow] = queue.rows(queued.rowIds);
    // Both damaged copies named, with what did not match.
    const messages = report.errors.map((e) => e.message);
    expect(messages).toEqual(
      expect.arrayContaining([expect.stringContaining(`${onlyPath} read as ${2 * MiB + 5} bytes with xxh128`), expect.stringContaining('every local copy of')]),
    );
    expect(onlyRow).toMatchObject({ state: 'failed', sha256: null });
    expect(await headOrUndefined(admin, BUCKET, onlyRow!.key)).toBeUndefined();
    expect(onJournalFile((db) => db.prepare('SELECT state FROM copies WHERE file_id = ?').get(only.id))).toEqual({ state: 'failed' });
    expect(journalSha256(only.id)).toMatchObject({ files: null, queue: [null] });

    // The other file went up from its intact copy, and the rotted one was put right from it.
    expect(rottedRow!.state).toBe('uploaded');
    expect(await sha256OfObject(admin, BUCKET, rottedRow!.key)).toEqual({ sha256: rotted.bytes.sha256, size: rotted.bytes.size });
    expect(
      createHash('sha256')
        .update(await readFile(rottedPath))
        .digest('hex'),
    ).toBe(rotted.bytes.sha256);
    expect(journalSha256(rotted.id)).toEqual({ files: rotted.bytes.sha256, copies: [rotted.bytes.sha256, rotted.bytes.sha256], queue: [rotted.bytes.sha256] });
  });
});

describe('matching different files', () => {
  test('rests-on-sha256-never-on-xxh128-alone-for-a-shared-key-retention-or-the-wipe-gate', async () => {
    const a = await destination('a');
    const b = await destination('b');
    const size = MiB + 1;
    // B and C: the same bytes from two cards (a camera's two slots), SHA-256 not taken at ingest.
    const bFile = await unhashedFile('DCIM/100/IMG_0005.JPG', size, [a, b], { seed: 'same', destPath: '2026/100/IMG_0005.JPG' });
    const cFile = await unhashedFile('DCIM/101/IMG_0005.JPG', size, [a, b], { seed: 'same', destPath: '2026/101/IMG_0005.JPG' });
    // A: other bytes whose journal xxh128 equals B's (a crafted collision), uploaded with its own SHA-256.
    const other = await unhashedFile('DCIM/102/IMG_0005.JPG', size, [a, b], { seed: 'other', destPath: '2026/102/IMG_0005.JPG', xxh128: bFile.bytes.xxh128 });
    onJournalFile((db) => db.prepare('UPDATE copies SET sha256 = ? WHERE file_id = ?').run('e'.repeat(64), other.id));
    const aRow = queue.enqueue([other.id], target).rowIds[0]!;
    expect(queue.claimNext()?.id).toBe(aRow);
    queue.markUploaded(aRow, { copyId: null, etag: '"x"' });

    // Neither B nor C shares A's row (same key, size and xxh128), nor each other's (both unknown) yet.
    const queued = queue.enqueue([bFile.id, cFile.id], target);
    expect(queued).toMatchObject({ added: 2, sharedContent: 0 });
    const keys = queue.rows([aRow, ...queued.rowIds]).map((r) => r.key);
    expect(new Set(keys).size).toBe(3);

    const retention = new RetentionStore(journal);
    const wipes = new WipeStore(journal);
    const fileRows = (): Array<{ id: number; sha256: string | null; size: number }> =>
      onJournalFile(
        (db) =>
          db.prepare('SELECT id, sha256, size FROM files WHERE id IN (?, ?) ORDER BY id').all(bFile.id, cFile.id) as Array<{ id: number; sha256: string | null; size: number }>,
      );
    const prunable = (): number[] => [...new Set(retention.pruneCandidates().map((c) => c.fileId))].filter((id) => id !== other.id).sort((x, y) => x - y);
    expect(prunable()).toEqual([]);
    expect(wipes.cloudState(fileRows(), target)).toEqual({ verified: 0, pending: 2, failed: 0 });

    // Once hashed, C shares B's row (their SHA-256s match), never A's; their own SHA-256 (computed from
    // their copies) lets retention and the wipe gate go ahead.
    expect(await worker().drain()).toMatchObject({ uploaded: 1, shared: 1, failed: 0 });
    expect(queue.rows(queued.rowIds).map((r) => r.key)).toEqual([keys[1]]);
    expect(fileRows().map((r) => r.sha256)).toEqual([bFile.bytes.sha256, bFile.bytes.sha256]);
    expect(wipes.cloudState(fileRows(), target)).toEqual({ verified: 2, pending: 0, failed: 0 });
    expect(prunable()).toEqual([bFile.id, cFile.id]);
    expect(
      retention
        .pruneCandidates()
        .filter((c) => c.fileId !== other.id)
        .every((c) => c.queueId !== aRow),
    ).toBe(true);
  });
});

/** The keys under the test's prefix in the bucket. */
async function objectKeys(): Promise<string[]> {
  const r = await admin.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${target.prefix}/` }));
  return (r.Contents ?? []).map((o) => o.Key ?? '').sort();
}

describe('the same file from two cards', () => {
  for (const [shape, size] of [
    ['one-put', 3 * MiB + 11],
    ['parts', 2 * PART + 4097],
  ] as const) {
    test(`is-sent-once-the-second-row-adopting-the-first-once-both-sha256s-are-known-${shape}`, async () => {
      const a = await destination('a');
      // A camera writing both slots: the same name and bytes on two cards, ingested one after the other.
      const first = await unhashedFile('DCIM/100CANON/IMG_0007.CR3', size, [a], { seed: 'both-slots', destPath: '2026/card1/IMG_0007.CR3' });
      const second = await unhashedFile('DCIM/101CANON/IMG_0007.CR3', size, [a], { seed: 'both-slots', destPath: '2026/card2/IMG_0007.CR3' });
      const [firstRow] = queue.enqueue([first.id], target).rowIds;
      const [secondRow] = queue.enqueue([second.id], target).rowIds;
      // Queued apart: neither SHA-256 was known.
      const rows = queue.rows([firstRow!, secondRow!]);
      expect(rows.map((r) => r.key)).toEqual([`${target.prefix}/IMG_0007.CR3`, `${target.prefix}/IMG_0007_1.CR3`]);

      const parts = countUploadParts(client);
      const report = await worker().drain();
      parts.stop();
      expect(report).toMatchObject({ uploaded: 1, shared: 1, failed: 0, deferred: 0 });
      // One object, sent once, at the first key; the second row is folded into the first.
      expect(await objectKeys()).toEqual([`${target.prefix}/IMG_0007.CR3`]);
      expect(parts.puts + parts.parts.length).toBe(shape === 'one-put' ? 1 : 3);
      expect(queue.get(secondRow!)).toBeUndefined();
      expect(queue.get(firstRow!)).toMatchObject({ state: 'uploaded', sha256: first.bytes.sha256 });
      expect(await sha256OfObject(admin, BUCKET, `${target.prefix}/IMG_0007.CR3`)).toEqual({ sha256: first.bytes.sha256, size });
      // Both files count as in the cloud, by their own SHA-256, for the wipe gate and retention.
      expect(journalSha256(second.id)).toEqual({ files: first.bytes.sha256, copies: [first.bytes.sha256], queue: [] });
      const fileRows = onJournalFile((db) => db.prepare('SELECT id, sha256, size FROM files WHERE id IN (?, ?)').all(first.id, second.id)) as Array<{
        id: number;
        sha256: string | null;
        size: number;
      }>;
      expect(new WipeStore(journal).cloudState(fileRows, target)).toEqual({ verified: 2, pending: 0, failed: 0 });
    });
  }
});

describe('the read ahead', () => {
  test('a-hash-worker-that-stops-under-it-defers-the-row-and-the-next-attempt-uploads-it', async () => {
    const a = await destination('a');
    const f = await unhashedFile('DCIM/MVI_0009.MOV', 4 * PART + 3, [a]);
    const [rowId] = queue.enqueue([f.id], target).rowIds;
    // The SHA-256 worker is stopped as soon as it answers the read ahead's first request.
    startHashWorker(['sha256']);
    const sha = hashWorkerForTests('sha256')!;
    let stopped = false;
    sha.once('message', () => {
      stopped = true;
      void sha.terminate();
    });
    const first = await worker().drain();
    expect(stopped).toBe(true);
    expect(first).toMatchObject({ uploaded: 0, deferred: 1, failed: 0, damaged: 0 });
    expect(first.errors).toEqual([expect.objectContaining({ code: 'INTERNAL', outcome: 'deferred', message: expect.stringContaining('the hash worker stopped') })]);
    expect(queue.get(rowId!)).toMatchObject({ state: 'queued', attempts: 1, sha256: null });
    expect(hashWorkerForTests('sha256')).not.toBe(sha);
    // Nothing about the copy was held against it, and a fresh worker takes the next attempt.
    expect(onJournalFile((db) => db.prepare('SELECT state FROM copies WHERE file_id = ?').all(f.id))).toEqual([{ state: 'verified' }]);
    queue.retryNow();
    expect(await worker().drain()).toMatchObject({ uploaded: 1, deferred: 0 });
    expect(await sha256OfObject(admin, BUCKET, queue.get(rowId!)!.key)).toEqual({ sha256: f.bytes.sha256, size: f.bytes.size });
  });

  for (const [shape, size, provider] of [
    ['one-put-signed-sha256-only', 3 * MiB + 11, 'swift'],
    ['one-put-with-content-md5', 3 * MiB + 11, SWIFT_WITH_MD5],
    ['parts', 2 * PART + 4097, 'swift'],
  ] as const) {
    test(`bytes-changed-after-it-are-refused-by-the-server-never-completed-and-the-copy-is-named-next-${shape}`, async () => {
      const a = await destination('a');
      const b = await destination('b');
      const f = await unhashedFile('DCIM/IMG_0010.CR3', size, [a, b]);
      const [rowId] = queue.enqueue([f.id], target).rowIds;
      const path = join(a.root, '2026/IMG_0010.CR3');
      // Between the read ahead (which records the hashes) and the first request, a byte of the copy read changes.
      const record = queue.recordContentHashes.bind(queue);
      queue.recordContentHashes = (...args) => {
        record(...args);
        flipByteSync(path, size - 5);
      };
      const parts = countUploadParts(client);
      const first = await worker(provider).drain();
      parts.stop();
      // The requests carried the read ahead's digests: the server refused what differed, and nothing completed.
      expect(first).toMatchObject({ uploaded: 0, deferred: 1, damaged: 0 });
      expect(first.errors[0]?.message).toMatch(/BadDigest|XAmzContentSHA256Mismatch/);
      expect(parts.puts + parts.parts.length).toBeGreaterThan(0);
      expect(await headOrUndefined(admin, BUCKET, queue.get(rowId!)!.key)).toBeUndefined();

      // The next attempt checks the bytes it sends against the journal: the changed copy is named and
      // restored from the other, which is uploaded.
      queue.retryNow();
      const second = await worker(provider).drain();
      expect(second).toMatchObject({ uploaded: 1, repaired: 1 });
      expect(await sha256OfObject(admin, BUCKET, queue.get(rowId!)!.key)).toEqual({ sha256: f.bytes.sha256, size });
      expect(
        createHash('sha256')
          .update(await readFile(path))
          .digest('hex'),
      ).toBe(f.bytes.sha256);
    });
  }

  test('of-a-multipart-upload-gives-the-parts-their-digests-so-the-upload-hashes-nothing-more', async () => {
    const a = await destination('a');
    const f = await unhashedFile('DCIM/MVI_0011.MOV', 3 * PART + 7, [a]);
    queue.enqueue([f.id], target);
    const opened = vi.spyOn(PartReader, 'open');
    try {
      expect(await worker().drain()).toMatchObject({ uploaded: 1 });
      expect(opened).not.toHaveBeenCalled();
    } finally {
      opened.mockRestore();
    }
  });
});

/**
 * Holds the drain's PutObject requests in `hold` (named by key), and resolves `hashed(n)` once the read
 * aheads of `n` rows recorded their hashes. (Rows claimed together may reach the read ahead in any order.)
 */
function watchDrain(hold: (key: string) => Promise<void>): { hashed(n: number): Promise<void>; puts: string[]; stop(): void } {
  const name = `watchDrain-${Math.random().toString(36).slice(2)}`;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  const done = new Set<number>();
  const record = queue.recordContentHashes.bind(queue);
  queue.recordContentHashes = (id, read) => {
    record(id, read);
    done.add(id);
    for (const w of waiters) if (done.size >= w.n) w.resolve();
  };
  const puts: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === 'PutObjectCommand') {
        const key = (args.input as { Key: string }).Key;
        puts.push(key);
        await hold(key);
      }
      return next(args);
    },
    { step: 'initialize', name },
  );
  return {
    hashed: (n) => (done.size >= n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ n, resolve }))),
    puts,
    stop: () => {
      client.middlewareStack.remove(name);
      queue.recordContentHashes = record;
    },
  };
}

/** True once `event` settles, false if it has not within `ms`: a bound on a wait that fails the test, not a pause. */
async function within(event: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([event.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('reading ahead of the send slots', () => {
  test('the-next-row-is-hashed-while-the-row-before-it-is-being-sent-and-no-further-row-is-claimed', async () => {
    const a = await destination('a');
    const files = [];
    for (const n of [1, 2, 3]) files.push(await unhashedFile(`DCIM/IMG_002${n}.CR3`, 2 * MiB + n, [a]));
    const rowIds = queue.enqueue(
      files.map((f) => f.id),
      target,
    ).rowIds;
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let firstKey: string | undefined;
    const watch = watchDrain((key) => {
      firstKey ??= key;
      return key === firstKey ? released : Promise.resolve();
    });
    try {
      // One send slot: the first PUT is held until a second row's read ahead is seen, or for at most 10 s.
      const drained = worker('swift', 1).drain();
      const aheadWhileSending = await within(watch.hashed(2), 10_000);
      const rows = queue.rows(rowIds);
      release();
      const report = await drained;
      expect(aheadWhileSending).toBe(true);
      expect(rows.filter((r) => r.key === firstKey)).toMatchObject([{ state: 'uploading', sha256: expect.any(String) }]);
      // One row read ahead per slot: the third waited in the queue, unclaimed and unhashed.
      expect(rows.filter((r) => r.key !== firstKey).map((r) => [r.state, r.sha256 === null])).toEqual(
        expect.arrayContaining([
          ['uploading', false],
          ['queued', true],
        ]),
      );
      expect(report).toMatchObject({ uploaded: 3, failed: 0, deferred: 0 });
    } finally {
      release();
      watch.stop();
    }
    for (const [i, f] of files.entries()) {
      expect(await sha256OfObject(admin, BUCKET, queue.get(rowIds[i]!)!.key)).toEqual({ sha256: f.bytes.sha256, size: f.bytes.size });
    }
  });

  test('a-row-read-ahead-that-waits-for-its-slot-makes-no-attempt-once-an-unreachable-server-paused-the-queue', async () => {
    const a = await destination('a');
    const first = await unhashedFile('DCIM/IMG_0031.CR3', 2 * MiB + 1, [a]);
    const second = await unhashedFile('DCIM/IMG_0032.CR3', 2 * MiB + 2, [a]);
    const rowIds = queue.enqueue([first.id, second.id], target).rowIds;
    // Every PUT finds the server unreachable; the first fails only once the other row waits for its slot.
    const refused = (): Error => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1'), { code: 'ECONNREFUSED', errno: 'ECONNREFUSED' });
    let aheadSeen = false;
    const watch = watchDrain(async () => {
      aheadSeen ||= await within(watch.hashed(2), 10_000);
      throw refused();
    });
    let report;
    try {
      report = await worker('swift', 1).drain();
    } finally {
      watch.stop();
    }
    expect(aheadSeen).toBe(true);
    expect(report).toMatchObject({ uploaded: 0, deferred: 1, failed: 0 });
    // Only the row that held the slot tried; the other was put back as it was, bar the SHA-256 it now
    // carries: no attempt counted, due with the rest.
    const sent = queue.rows(rowIds).filter((r) => watch.puts.includes(r.key));
    const waited = queue.rows(rowIds).filter((r) => !watch.puts.includes(r.key));
    expect(sent).toMatchObject([{ state: 'queued', attempts: 1 }]);
    expect(waited).toMatchObject([{ state: 'queued', attempts: 0, sha256: expect.any(String) }]);
    expect([...sent, ...waited].map((r) => r.sha256).sort()).toEqual([first.bytes.sha256, second.bytes.sha256].sort());
  });
});

function flipByteSync(path: string, at: number): void {
  const fd = openSync(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] = b[0]! ^ 0x40;
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
  }
}
