import { mkdirSync } from 'node:fs';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Journal } from '../src/store/journal.js';
import { MIGRATIONS } from '../src/store/migrations.js';
import { isShuttleError } from '../src/errors.js';
import { tempDir } from './support/tree.js';

let work: { path: string; cleanup: () => Promise<void> };
let journal: Journal;
beforeEach(async () => {
  work = await tempDir('shuttle-journal-');
  journal = Journal.open(work.path);
});
afterEach(async () => {
  journal.close();
  await work.cleanup();
});

const source = { kind: 'card' as const, key: 'card:AAAA-BBBB:EOS_DIGITAL:64000000000', label: 'EOS_DIGITAL', details: {} };
const copy = {
  destPath: '2026/2026-01-01/IMG_0001.JPG',
  size: 10,
  sha256: 'a'.repeat(64),
  xxh128: 'b'.repeat(32),
  hashes: { sha256: 'a'.repeat(64), xxh128: 'b'.repeat(32) },
  readback: 'direct' as const,
  dedup: false,
};

test('a-new-journal-runs-every-migration-in-wal-mode-with-full-sync', () => {
  expect(journal.schemaVersion).toBe(MIGRATIONS.length);
  const { journalMode, synchronous } = journal.durability();
  expect(journalMode).toBe('wal');
  expect(synchronous).toBe(2);
});

test('an-open-journal-answers-the-health-check-and-a-closed-one-does-not', () => {
  expect(journal.answers()).toBe(true);
  journal.close();
  expect(journal.answers()).toBe(false);
});

test('reopening-keeps-the-data-and-runs-no-migration-twice', () => {
  const id = journal.upsertSource(source);
  journal.close();
  journal = Journal.open(work.path);
  expect(journal.upsertSource(source)).toBe(id);
  expect(journal.schemaVersion).toBe(MIGRATIONS.length);
});

test('a-journal-from-a-newer-shuttle-is-refused', () => {
  journal.close();
  const db = new DatabaseSync(join(work.path, 'journal.sqlite'));
  db.exec(`PRAGMA user_version = ${MIGRATIONS.length + 1}`);
  db.close();
  let err: unknown;
  try {
    journal = Journal.open(work.path);
  } catch (e) {
    err = e;
  }
  expect(isShuttleError(err, 'JOURNAL')).toBe(true);
  journal = Journal.open(join(work.path, 'other'));
});

test('an-old-journal-is-upgraded-in-one-step-and-a-failing-upgrade-leaves-it-as-it-was', () => {
  const at = (dir: string, steps: number): void => {
    const db = new DatabaseSync(join(work.path, dir, 'journal.sqlite'));
    for (let v = 0; v < steps; v++) db.exec(MIGRATIONS[v]!);
    db.exec(`PRAGMA user_version = ${steps}`);
    db.close();
  };
  mkdirSync(join(work.path, 'old'));
  at('old', 1);
  const old = Journal.open(join(work.path, 'old'));
  expect(old.schemaVersion).toBe(MIGRATIONS.length);
  old.close();

  // The last step cannot run (its table is already there): the steps before it may not stay applied either.
  mkdirSync(join(work.path, 'stuck'));
  at('stuck', 2);
  const db = new DatabaseSync(join(work.path, 'stuck', 'journal.sqlite'));
  db.exec('CREATE TABLE source_wipes (x INTEGER)');
  db.close();
  expect(() => Journal.open(join(work.path, 'stuck'))).toThrow();
  const after = new DatabaseSync(join(work.path, 'stuck', 'journal.sqlite'), { readOnly: true });
  const version = (after.prepare('PRAGMA user_version').get() as { user_version: number }).user_version;
  const added = (after.prepare(`SELECT name FROM pragma_table_info('files') WHERE name = 'path_bytes'`).all() as unknown[]).length;
  after.close();
  expect([version, added]).toEqual([2, 0]);
});

test('a-journal-with-queued-uploads-keeps-them-when-the-queue-learns-to-hold-rows-without-a-sha256', () => {
  // Version 5: the queue's sha256 was NOT NULL. One row uploaded (with a pruned copy pointing at it), one queued.
  mkdirSync(join(work.path, 'v5'));
  const db = new DatabaseSync(join(work.path, 'v5', 'journal.sqlite'));
  for (let v = 0; v < 5; v++) db.exec(MIGRATIONS[v]!);
  db.exec(`PRAGMA user_version = 5; PRAGMA foreign_keys = ON;
    INSERT INTO sources VALUES (1, 'card:X', 'card', 'X', '{}', 't', 't');
    INSERT INTO destinations VALUES (1, 'm1', '/lib', NULL, 't');
    INSERT INTO files (id, source_id, rel_path, size, mtime_ms, sha256, xxh128, state, first_seen, updated_at) VALUES
      (1, 1, 'A.JPG', 10, 1, '${'a'.repeat(64)}', '${'b'.repeat(32)}', 'verified', 't', 't'),
      (2, 1, 'B.JPG', 20, 1, '${'c'.repeat(64)}', '${'d'.repeat(32)}', 'verified', 't', 't');
    INSERT INTO copies (id, file_id, dest_id, state, dest_path, size, sha256, xxh128, updated_at) VALUES
      (1, 1, 1, 'pruned', 'A.JPG', 10, '${'a'.repeat(64)}', '${'b'.repeat(32)}', 't');
    INSERT INTO upload_queue (id, file_id, bucket, prefix, key, size, sha256, xxh128, priority, state, attempts, next_attempt_at, copy_id, etag, enqueued_at, updated_at, uploaded_at) VALUES
      (7, 1, 'b', '', 'A.JPG', 10, '${'a'.repeat(64)}', '${'b'.repeat(32)}', 0, 'uploaded', 1, 0, 1, '"e"', 't', 't', 't'),
      (8, 2, 'b', '', 'B.JPG', 20, '${'c'.repeat(64)}', NULL, 1, 'queued', 2, 99, NULL, NULL, 't', 't', NULL);
    INSERT INTO copy_prunes VALUES (1, 1, 'A.JPG', 10, 'age', 7, 't');`);
  const before = db.prepare('SELECT * FROM upload_queue ORDER BY id').all();
  db.close();

  const upgraded = Journal.open(join(work.path, 'v5'));
  upgraded.close();
  const after = new DatabaseSync(join(work.path, 'v5', 'journal.sqlite'));
  try {
    after.exec('PRAGMA foreign_keys = ON');
    expect(after.prepare('SELECT * FROM upload_queue ORDER BY id').all()).toEqual(before);
    expect(after.prepare('PRAGMA foreign_key_check').all()).toEqual([]);
    expect(after.prepare('SELECT copy_id, queue_id FROM copy_prunes').all()).toEqual([{ copy_id: 1, queue_id: 7 }]);
    expect(after.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'upload_queue' AND name LIKE 'upload_queue_%' ORDER BY name`).all()).toEqual([
      { name: 'upload_queue_content' },
      { name: 'upload_queue_ready' },
    ]);
    // A row without SHA-256 goes in when it has an xxh128, and not without either.
    const insert = after.prepare(
      `INSERT INTO upload_queue (file_id, bucket, prefix, key, size, sha256, xxh128, priority, state, next_attempt_at, enqueued_at, updated_at) VALUES (2, 'b', 'p', ?, 20, NULL, ?, 0, 'queued', 0, 't', 't')`,
    );
    insert.run('B2.JPG', 'd'.repeat(32));
    expect(() => insert.run('B3.JPG', null)).toThrow(/CHECK/);
  } finally {
    after.close();
  }
});

test('a-file-version-is-keyed-by-source-path-size-and-mtime', () => {
  const s = journal.upsertSource(source);
  const a = journal.fileFor(s, 'DCIM/IMG_0001.JPG', 10, 1000.7);
  expect(journal.fileFor(s, 'DCIM/IMG_0001.JPG', 10, 1000).id).toBe(a.id);
  expect(journal.fileFor(s, 'DCIM/IMG_0001.JPG', 11, 1000).id).not.toBe(a.id);
  expect(journal.fileFor(s, 'DCIM/IMG_0001.JPG', 10, 2000).id).not.toBe(a.id);
  expect(a.state).toBe('seen');
});

test('copy-states-go-verified-then-into-a-manifest', () => {
  const s = journal.upsertSource(source);
  const d = journal.upsertDestination('marker-1', '/lib', undefined);
  const f = journal.fileFor(s, 'DCIM/IMG_0001.JPG', 10, 1000);
  const ingest = journal.startIngest(['/card'], ['/lib']);
  journal.markVerified(f.id, d, copy, ingest);
  const [row] = journal.copiesOf(f.id);
  expect(row).toMatchObject({ state: 'verified', dest_path: copy.destPath, temp_path: null, readback: 'direct' });
  expect(JSON.parse(row!.hashes!)).toEqual(copy.hashes);
  expect(journal.findContent(d, copy.xxh128, 10)?.dest_path).toBe(copy.destPath);
  expect(journal.unmanifested(d).map((r) => r.id)).toEqual([row!.id]);
  journal.markManifested([row!.id], 1);
  expect(journal.unmanifested(d)).toEqual([]);
  expect(journal.inconsistencies()).toEqual([]);
});

test('the-folders-temps-are-made-in-are-kept-per-destination-until-forgotten', () => {
  const d = journal.upsertDestination('marker-1', '/lib', undefined);
  const e = journal.upsertDestination('marker-2', '/other', undefined);
  journal.markTempFolder(d, '2026/2026-01-01');
  journal.markTempFolder(d, '2026/2026-01-01');
  journal.markTempFolder(d, '2026/2026-01-02');
  journal.markTempFolder(e, '2026/2026-01-01');
  expect(journal.tempFolders(d)).toEqual(['2026/2026-01-01', '2026/2026-01-02']);
  journal.forgetTempFolder(d, '2026/2026-01-01');
  expect(journal.tempFolders(d)).toEqual(['2026/2026-01-02']);
  journal.forgetTempFolder(d, '2026/2026-01-02');
  expect(journal.tempFolders(d)).toEqual([]);
  expect(journal.tempFolders(e)).toEqual(['2026/2026-01-01']);
});

test('an-interrupted-copy-an-earlier-version-recorded-is-cleared-as-failed-and-a-failure-is-recorded', () => {
  const s = journal.upsertSource(source);
  const d = journal.upsertDestination('marker-1', '/lib', undefined);
  const f = journal.fileFor(s, 'a.jpg', 1, 1);
  const ingest = journal.startIngest([], []);
  // As earlier versions recorded a copy in flight, before its temp existed.
  const db = new DatabaseSync(journal.path);
  try {
    db.prepare(`INSERT INTO copies (file_id, dest_id, state, temp_path, ingest_id, updated_at) VALUES (?, ?, 'copying', ?, ?, ?)`).run(
      f.id,
      d,
      '/lib/.a.shuttle-tmp',
      ingest,
      'now',
    );
  } finally {
    db.close();
  }
  const [stale] = journal.staleCopies(d);
  expect(stale?.temp_path).toBe('/lib/.a.shuttle-tmp');
  journal.clearStale(stale!.id);
  expect(journal.copiesOf(f.id)[0]).toMatchObject({ state: 'failed', temp_path: null });
  journal.markCopyFailed(f.id, d, 'disk full', ingest);
  expect(journal.stateCounts().copies).toEqual({ failed: 1 });
});

test('a-transaction-that-throws-leaves-nothing-behind', () => {
  const s = journal.upsertSource(source);
  expect(() =>
    journal.tx(() => {
      journal.fileFor(s, 'x', 1, 1);
      throw new Error('boom');
    }),
  ).toThrow('boom');
  expect(journal.stateCounts().files).toEqual({});
});
