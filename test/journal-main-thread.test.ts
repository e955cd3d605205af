import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { bytes, writeBytes } from './support/fixtures.js';
import { traceIngest, threadOf } from './support/strace.js';
import { tempDir } from './support/tree.js';

/**
 * An fsync of the journal on the main thread stalls every read and write of the run: the per-file records
 * are synced from the thread pool (Journal.synced), and the run's own rows ride along with them. Watched
 * with strace: which thread syncs the journal's write-ahead log, how often.
 */
let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-journal-thread-');
});
afterEach(async () => {
  await work.cleanup();
});

/**
 * Syncs of the journal's log in one `shuttle ingest` of `files` files spread over `folders` folders: on
 * the main thread, and on others. The plan commits a window of the listing per folder at least.
 */
async function logSyncs(files: number, folders = 1, size = 100_000): Promise<{ main: number; others: number; opens: number; database: { main: number; others: number } }> {
  const base = join(work.path, `${files}-${folders}`);
  for (let i = 0; i < files; i++) {
    await writeBytes(join(base, 'card', 'DCIM', `${100 + (i % folders)}CANON`, `IMG_${String(i + 1).padStart(4, '0')}.JPG`), bytes(size + i, i + 1));
  }
  const t = await traceIngest(['fsync', 'fdatasync', 'openat'], {
    card: join(base, 'card'),
    dest: join(base, 'dest'),
    state: join(base, 'state'),
    trace: join(base, 'strace.txt'),
  });
  expect(t.status, t.stderr).toBe(0);
  expect((JSON.parse(t.stdout) as { copied: number }).copied).toBe(files);
  const { lines, main } = t;
  const wal = lines.filter((l) => /f(data)?sync\(.*journal\.sqlite-wal>/.test(l) && !l.includes('resumed>'));
  const onMain = wal.filter((l) => threadOf(l) === main).length;
  const opens = lines.filter((l) => /openat\(.*journal\.sqlite-wal"/.test(l)).length;
  // The database file is synced by checkpoints only (a new journal is made under another name).
  const db = lines.filter((l) => /f(data)?sync\(.*journal\.sqlite>/.test(l) && !l.includes('resumed>'));
  const dbOnMain = db.filter((l) => threadOf(l) === main).length;
  return { main: onMain, others: wal.length - onMain, opens, database: { main: dbOnMain, others: db.length - dbOnMain } };
}

test('the-main-thread-syncs-the-journal-log-as-often-for-twelve-files-in-six-folders-as-for-two-not-for-the-run-rows-the-destination-or-the-plan-and-each-file-record-is-synced-in-the-thread-pool-through-one-open-log', async () => {
  // A missing strace fails here, loudly.
  execFileSync('strace', ['-V']);
  const two = await logSyncs(2);
  // Six folders: the plan commits six windows of the listing, where two files in one folder make one.
  const twelve = await logSyncs(12, 6);
  expect(twelve.main).toBe(two.main);
  // What is left on the main thread: the new journal's schema, the manifest's marks and the checkpoint of
  // close(); the run's, the source's and the destination's rows and the plan's windows add none.
  expect(two.main).toBeLessThanOrEqual(4);
  expect(twelve.others).toBeGreaterThanOrEqual(1);
  expect(twelve.others).toBeLessThanOrEqual(12);
  // The log is opened by SQLite and once more for the syncs, however many files there are (not once per sync).
  expect(twelve.opens).toBe(two.opens);
  expect(twelve.opens).toBeLessThanOrEqual(2);
  console.info(
    `journal log syncs, main thread / thread pool: 2 files ${two.main} / ${two.others}, 12 files in 6 folders ${twelve.main} / ${twelve.others}; log opened ${two.opens} / ${twelve.opens} times`,
  );
}, 60_000);

test('the-write-ahead-log-of-a-long-run-is-checkpointed-in-a-worker-thread-never-on-the-main-thread', async () => {
  execFileSync('strace', ['-V']);
  // Some 300 commits (one per file, and the plan's windows): several checkpoints' worth of the log.
  const many = await logSyncs(300, 1, 20_000);
  expect(many.database.main).toBe(0);
  expect(many.database.others).toBeGreaterThan(0);
  // The log itself: on the main thread only what a short run syncs there too.
  expect(many.main).toBeLessThanOrEqual(4);
  console.info(
    `database file syncs (checkpoints) in a 300-file run, main thread / others: ${many.database.main} / ${many.database.others}; log syncs on the main thread ${many.main}`,
  );
}, 120_000);
