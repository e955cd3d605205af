import { spawnSync, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, expect, test, vi } from 'vitest';
import { createJournalFile } from '../src/store/journal-file.js';
import { Journal } from '../src/store/journal.js';
import { MIGRATIONS } from '../src/store/migrations.js';
import { tempDir } from './support/tree.js';

// existsSync can be made to miss a journal that is there, as it would when another process links its
// journal between the check and the link.
vi.mock('node:fs', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs')>();
  return { ...real, existsSync: vi.fn(real.existsSync) };
});

let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-journal-file-');
});
afterEach(async () => {
  vi.mocked(fs.existsSync).mockReset();
  await work.cleanup();
});

test('a new journal is made with two fsyncs (its file and its folder), whole: every migration, WAL mode', async () => {
  // A missing strace fails here, loudly.
  execFileSync('strace', ['-V']);
  const state = join(work.path, 'state');
  const script = join(work.path, 'open.ts');
  await writeFile(script, `import { Journal } from ${JSON.stringify(new URL('../src/store/journal.ts', import.meta.url).pathname)};\nJournal.open(process.argv[2]!).close();\n`);
  const trace = join(work.path, 'strace.txt');
  const hooks = new URL('./support/ts-resolve-hooks.mjs', import.meta.url).pathname;
  const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=fsync,fdatasync', '-o', trace, process.execPath, '--import', hooks, script, state], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  const syncs = (await readFile(trace, 'utf8')).split('\n').filter((l) => /^\d+ +f(data)?sync\(/.test(l));
  // Made in place by SQLite it was nine: the switch to WAL's rollback journal, the schema's commit, the close.
  expect(syncs.length).toBe(2);
  const db = new DatabaseSync(join(state, 'journal.sqlite'));
  try {
    expect(db.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' });
    expect(db.prepare('PRAGMA user_version').get()).toEqual({ user_version: MIGRATIONS.length });
    expect(db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'files'").get()).toEqual({ n: 1 });
  } finally {
    db.close();
  }
  expect((await readdir(state)).sort()).toEqual(['journal.sqlite']);
});

test('a journal whose making stopped before it was linked is not there; the next open makes it whole', async () => {
  const path = join(work.path, 'journal.sqlite');
  // What a power cut while making it leaves: a private file beside it, half written.
  await writeFile(`${path}.new-${process.pid}`, 'SQLite format 3\0 torn');
  await writeFile(`${path}.new-${process.pid}-journal`, 'torn');
  const j = Journal.open(work.path);
  try {
    expect(j.schemaVersion).toBe(MIGRATIONS.length);
    expect(j.durability()).toEqual({ journalMode: 'wal', synchronous: 2 });
  } finally {
    j.close();
  }
  expect((await readdir(work.path)).filter((f) => f.includes('.new-'))).toEqual([]);
});

test("a journal another process linked first is kept, with its records, and this process's copy dropped", async () => {
  const path = join(work.path, 'journal.sqlite');
  const theirs = Journal.open(work.path);
  theirs.close();
  const db = new DatabaseSync(path);
  db.exec("INSERT INTO sources (key, kind, label, details, first_seen, last_seen) VALUES ('theirs', 'folder', 'x', '{}', 'now', 'now')");
  db.close();
  vi.mocked(fs.existsSync).mockReturnValueOnce(false);
  createJournalFile(path);
  const again = new DatabaseSync(path);
  try {
    expect(again.prepare('SELECT key FROM sources').all()).toEqual([{ key: 'theirs' }]);
  } finally {
    again.close();
  }
  expect((await readdir(work.path)).filter((f) => f.includes('.new-'))).toEqual([]);
});

test("a private file left by a process that died while making the journal goes with the next open by any process; a live process's stays", async () => {
  const path = join(work.path, 'journal.sqlite');
  // A pid that was alive and is no longer: a child that has exited (and been reaped).
  const dead = spawnSync('true').pid!;
  expect(() => process.kill(dead, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
  // This process's parent is alive while the test runs: its file may be a journal it is making now.
  const live = process.ppid;
  for (const f of [`${path}.new-${dead}`, `${path}.new-${dead}-wal`, `${path}.new-${dead}-shm`, `${path}.new-${live}`]) await writeFile(f, 'SQLite format 3\0 torn');
  Journal.open(work.path).close();
  expect((await readdir(work.path)).filter((f) => f.includes('.new-'))).toEqual([`journal.sqlite.new-${live}`]);

  // Also once the journal exists: a power cut during another making leaves its file beside a journal.
  await writeFile(`${path}.new-${dead}`, 'SQLite format 3\0 torn');
  Journal.open(work.path).close();
  expect((await readdir(work.path)).filter((f) => f.includes('.new-'))).toEqual([`journal.sqlite.new-${live}`]);
});
