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

test('a-file-version-is-keyed-by-source-path-size-and-mtime', () => {
  const s = journal.upsertSource(source);
  const a = journal.fileFor(s, 'DCIM/IMG_0001.JPG', 10, 1000.7);
  expect(journal.fileFor(s, 'DCIM/IMG_0001.JPG', 10, 1000).id).toBe(a.id);
  expect(journal.fileFor(s, 'DCIM/IMG_0001.JPG', 11, 1000).id).not.toBe(a.id);
  expect(journal.fileFor(s, 'DCIM/IMG_0001.JPG', 10, 2000).id).not.toBe(a.id);
  expect(a.state).toBe('seen');
});

test('copy-states-go-copying-then-verified-then-into-a-manifest', () => {
  const s = journal.upsertSource(source);
  const d = journal.upsertDestination('marker-1', '/lib', undefined);
  const f = journal.fileFor(s, 'DCIM/IMG_0001.JPG', 10, 1000);
  const ingest = journal.startIngest(['/card'], ['/lib']);
  journal.markCopying(f.id, d, '/lib/.x.shuttle-tmp', ingest);
  expect(journal.staleCopies(d).map((c) => c.temp_path)).toEqual(['/lib/.x.shuttle-tmp']);
  journal.markVerified(f.id, d, copy, ingest);
  expect(journal.staleCopies(d)).toEqual([]);
  const [row] = journal.copiesOf(f.id);
  expect(row).toMatchObject({ state: 'verified', dest_path: copy.destPath, temp_path: null, readback: 'direct' });
  expect(JSON.parse(row!.hashes!)).toEqual(copy.hashes);
  expect(journal.findContent(d, copy.xxh128, 10)?.dest_path).toBe(copy.destPath);
  expect(journal.unmanifested(d).map((r) => r.id)).toEqual([row!.id]);
  journal.markManifested([row!.id], 1);
  expect(journal.unmanifested(d)).toEqual([]);
  expect(journal.inconsistencies()).toEqual([]);
});

test('an-interrupted-copy-is-cleared-as-failed-and-a-failure-is-recorded', () => {
  const s = journal.upsertSource(source);
  const d = journal.upsertDestination('marker-1', '/lib', undefined);
  const f = journal.fileFor(s, 'a.jpg', 1, 1);
  const ingest = journal.startIngest([], []);
  journal.markCopying(f.id, d, '/lib/.a.shuttle-tmp', ingest);
  const [stale] = journal.staleCopies(d);
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
