import { closeSync, constants as fsConstants, existsSync, fsyncSync, linkSync, openSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { errnoCode } from '../errors.js';
import { MIGRATIONS } from './migrations.js';

/**
 * A new journal at `path`, made whole before it appears there. SQLite making it in place pays a
 * rollback-journal transaction to switch the empty file to WAL and then the schema's commit, with some
 * seven fsyncs between them; here the schema is built in a private file beside it without waiting for the
 * disk (it is nobody's journal yet), that file is synced once and linked into place, and the folder is
 * synced. A power cut leaves either no journal, made again on the next start, or this complete one.
 * Linked rather than renamed: a journal another process made meanwhile is kept, and this one dropped.
 * Does nothing when there is a journal already.
 */
export function createJournalFile(path: string): void {
  if (existsSync(path)) return;
  const temp = `${path}.new-${process.pid}`;
  removeDatabase(temp); // left by an earlier process with this pid that died while making it
  try {
    const db = new DatabaseSync(temp);
    try {
      db.exec('PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;');
      db.exec('BEGIN');
      for (const step of MIGRATIONS) db.exec(step);
      db.exec(`PRAGMA user_version = ${MIGRATIONS.length}`);
      db.exec('COMMIT');
      // Recorded in the file's header: the journal opens in WAL mode from its first use.
      db.exec('PRAGMA journal_mode = WAL');
    } finally {
      db.close();
    }
    syncPath(temp, fsConstants.O_RDONLY);
    try {
      linkSync(temp, path);
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
  } finally {
    removeDatabase(temp);
  }
  syncPath(dirname(path), fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
}

function removeDatabase(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]) rmSync(f, { force: true });
}

function syncPath(path: string, flags: number): void {
  const fd = openSync(path, flags);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
