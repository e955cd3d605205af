import { closeSync, constants as fsConstants, existsSync, fsyncSync, linkSync, openSync, readdirSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { errnoCode } from '../errors.js';
import { MIGRATIONS } from './migrations.js';

/**
 * A new journal at `path`, made whole before it appears there. SQLite making it in place pays a
 * rollback-journal transaction to switch the empty file to WAL and then the schema's commit, with some
 * seven fsyncs between them; here the schema is built in a private file beside it without waiting for the
 * disk (it is nobody's journal yet), that file is synced once and linked into place, and the folder is
 * synced. A power cut leaves either no journal, made again on the next start, or this complete one; and
 * maybe the private file, which the next open by any process removes.
 * Linked rather than renamed: a journal another process made meanwhile is kept, and this one dropped.
 * Does nothing when there is a journal already.
 */
export function createJournalFile(path: string): void {
  removeLeftovers(path);
  if (existsSync(path)) return;
  const temp = `${path}.new-${process.pid}`;
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

/**
 * Removes the private files of makings a power cut stopped: this process's (an earlier one with the same
 * pid) and those of any process no longer alive. Nothing else keeps Shuttle's processes from opening one
 * state folder at once (the daemon, CLI commands), so a live process's file may be one it is making now.
 */
function removeLeftovers(path: string): void {
  const folder = dirname(path);
  const prefix = `${basename(path)}.new-`;
  let names: string[];
  try {
    names = readdirSync(folder);
  } catch {
    return; // the folder's absence or refusal is for the journal's own open to report
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(/^(\d+)(?:-wal|-shm|-journal)?$/.exec(name.slice(prefix.length))?.[1]);
    if (!Number.isInteger(pid) || pid <= 0 || (pid !== process.pid && alive(pid))) continue;
    try {
      rmSync(join(folder, name), { force: true });
    } catch {
      // Not ours to remove (another user's): it only takes space, and the journal opens without it.
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: alive, another user's.
    return errnoCode(err) !== 'ESRCH';
  }
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
