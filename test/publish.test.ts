import { afterEach, beforeEach, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { open, readFile, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { MAIN, collect, ingestJson, runCli, type CliResult } from './support/cli.js';
import { bytes, writeBytes } from './support/fixtures.js';
import { listTree, tempDir, tempFilesUnder } from './support/tree.js';

/**
 * Publishing a copy next to files already at the destination: a file is only taken for the copy (and
 * the copy's temp dropped) after its bytes were read back past the page cache and matched the source,
 * and after it was fsync'd with its folder. The journal's record of an earlier copy is not enough.
 */
let work: { path: string; cleanup: () => Promise<void> };
let dest: string;
let state: string;
const data = bytes(300_000, 21);
const mtime = new Date('2026-01-01T10:00:00Z');
const DAY = '2026/2026-01-01';

beforeEach(async () => {
  work = await tempDir('shuttle-publish-');
  // The path the kernel reports (strace -y) for files under it.
  work.path = await realpath(work.path);
  dest = join(work.path, 'lib');
  state = join(work.path, 'state');
});
afterEach(async () => {
  await work.cleanup();
});

/** Flips one byte in the middle of a file: same size, different content. */
async function flipByte(path: string): Promise<void> {
  const h = await open(path, 'r+');
  try {
    const { size } = await h.stat();
    const b = Buffer.alloc(1);
    await h.read(b, 0, 1, Math.floor(size / 2));
    b[0] = b[0]! ^ 0xff;
    await h.write(b, 0, 1, Math.floor(size / 2));
  } finally {
    await h.close();
  }
}

function copyRows(): Array<{ rel_path: string; dest_path: string; state: string; dedup: number }> {
  const db = new DatabaseSync(join(state, 'journal.sqlite'), { readOnly: true });
  try {
    return db.prepare('SELECT f.rel_path, c.dest_path, c.state, c.dedup FROM copies c JOIN files f ON f.id = c.file_id ORDER BY c.id').all() as never;
  } finally {
    db.close();
  }
}

/** `shuttle ingest` under strace, logging the fsyncs and opens with the paths of their fds. */
async function ingestTraced(args: string[], traceLog: string): Promise<CliResult> {
  const env = { ...process.env, TZ: 'UTC', SHUTTLE_LOG_LEVEL: 'warn' };
  const child = spawn('strace', ['-f', '-qq', '-y', '-e', 'trace=fsync,fdatasync,openat', '-o', traceLog, process.execPath, MAIN, 'ingest', ...args, '--json'], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // A missing strace rejects here, loudly.
  return collect(child);
}

test('a-verified-copy-changed-on-disk-is-not-taken-for-a-new-copy-of-the-same-content', async () => {
  const card1 = join(work.path, 'card1');
  const card2 = join(work.path, 'card2');
  await writeBytes(join(card1, 'one.bin'), data, mtime);
  await writeBytes(join(card2, 'one.bin'), data, mtime);
  const first = await ingestJson([card1, '--dest', dest, '--state', state]);
  expect(first.code, first.stderr).toBe(0);
  // The journal holds a verified copy of this content; its bytes on the disk are no longer that content.
  const damaged = join(dest, DAY, 'one.bin');
  await flipByte(damaged);
  const damagedBytes = await readFile(damaged);

  const second = await ingestJson([card2, '--dest', dest, '--state', state, '--log-level', 'warn']);
  expect(second.code, second.stderr).toBe(0);
  expect(second.summary).toMatchObject({ files: 1, copied: 1, failed: 0 });
  // Written anew (not deduplicated), under the next free name, and read back like any new copy.
  expect(second.summary.destinations[0]).toMatchObject({ verified: 1, bytes: data.length });
  expect(second.stderr).toMatch(/same xxh128 and size differs from this file/);
  expect((await readFile(join(dest, DAY, 'one_1.bin'))).equals(data)).toBe(true);
  expect((await readFile(damaged)).equals(damagedBytes)).toBe(true);
  expect(
    copyRows()
      .filter((r) => r.rel_path === 'one.bin')
      .map((r) => [r.dest_path, r.state, r.dedup]),
  ).toEqual([
    [`${DAY}/one.bin`, 'verified', 0],
    [`${DAY}/one_1.bin`, 'verified', 0],
  ]);
  expect(await tempFilesUnder(dest)).toEqual([]);
});

test('an-intact-earlier-copy-is-read-back-before-it-stands-for-a-new-copy-of-the-same-content', async () => {
  const card1 = join(work.path, 'card1');
  const card2 = join(work.path, 'card2');
  await writeBytes(join(card1, 'one.bin'), data, mtime);
  await writeBytes(join(card2, 'two.bin'), data, mtime);
  expect((await ingestJson([card1, '--dest', dest, '--state', state])).code).toBe(0);
  const trace = join(work.path, 'trace.log');
  const r = await ingestTraced([card2, '--dest', dest, '--state', state], trace);
  expect(r.code, r.stderr).toBe(0);
  const summary = JSON.parse(r.stdout) as { copied: number; failed: number; destinations: Array<{ verified: number; bytes: number }> };
  expect(summary).toMatchObject({ copied: 1, failed: 0 });
  expect(summary.destinations[0]).toMatchObject({ verified: 1, bytes: 0 });
  expect([...(await listTree(dest, { skipShuttle: true })).keys()]).toEqual([`${DAY}/one.bin`]);
  expect(copyRows().at(-1)).toMatchObject({ rel_path: 'two.bin', dest_path: `${DAY}/one.bin`, dedup: 1 });
  // The existing file was opened past the page cache (O_DIRECT), as a fresh copy's read-back is.
  const log = await readFile(trace, 'utf8');
  expect(log).toMatch(new RegExp(`openat\\(.*"${escape(join(dest, DAY, 'one.bin'))}", [^)]*O_DIRECT`));
});

test('a-file-an-interrupted-run-published-is-taken-only-after-it-is-read-back-and-fsynced-with-its-folder', async () => {
  const card = join(work.path, 'card');
  await writeBytes(join(card, 'one.bin'), data, mtime);
  // Killed right after publishing: the file is at its final name, the journal does not know it is done.
  const killed = await runCli(['ingest', card, '--dest', dest, '--state', state, '--json'], { env: { SHUTTLE_TEST_CRASH_AT: 'published:1' } });
  expect(killed.signal, killed.stderr).toBe('SIGKILL');
  const final = join(dest, DAY, 'one.bin');
  const before = await stat(final);
  // The journal knows of no copy: only of the folder its temp was made in.
  expect(copyRows()).toEqual([]);

  const trace = join(work.path, 'trace.log');
  const r = await ingestTraced([card, '--dest', dest, '--state', state], trace);
  expect(r.code, r.stderr).toBe(0);
  expect([...(await listTree(dest, { skipShuttle: true })).keys()]).toEqual([`${DAY}/one.bin`]);
  // The same file (its temp was dropped), now recorded as verified.
  expect((await stat(final)).ino).toBe(before.ino);
  expect(copyRows().map((r) => [r.dest_path, r.state])).toEqual([[`${DAY}/one.bin`, 'verified']]);
  const log = await readFile(trace, 'utf8');
  expect(log).toMatch(new RegExp(`openat\\(.*"${escape(final)}", [^)]*O_DIRECT`));
  expect(log).toMatch(new RegExp(`fsync\\(\\d+<${escape(final)}>\\) = 0`));
  expect(log).toMatch(new RegExp(`fsync\\(\\d+<${escape(join(dest, DAY))}>\\) = 0`));
  expect(await tempFilesUnder(dest)).toEqual([]);
});

test('a-file-an-interrupted-run-published-that-was-changed-since-is-not-taken', async () => {
  const card = join(work.path, 'card');
  await writeBytes(join(card, 'one.bin'), data, mtime);
  const killed = await runCli(['ingest', card, '--dest', dest, '--state', state, '--json'], { env: { SHUTTLE_TEST_CRASH_AT: 'published:1' } });
  expect(killed.signal, killed.stderr).toBe('SIGKILL');
  const final = join(dest, DAY, 'one.bin');
  await flipByte(final);
  const r = await ingestJson([card, '--dest', dest, '--state', state]);
  expect(r.code, r.stderr).toBe(0);
  expect((await readFile(join(dest, DAY, 'one_1.bin'))).equals(data)).toBe(true);
  expect((await readFile(final)).equals(data)).toBe(false);
  expect(copyRows().map((r) => [r.dest_path, r.state])).toEqual([[`${DAY}/one_1.bin`, 'verified']]);
});

/**
 * xxh128 is no proof against crafted content: a card could hold two different files with one xxh128.
 * SHUTTLE_TEST_FAULT=xxh128-collide gives every file one xxh128, so files of one size collide; a file
 * already at the destination stands for a copy only when its bytes are the copy's.
 */
const collide = { env: { SHUTTLE_TEST_FAULT: 'xxh128-collide' } };
const other = bytes(data.length, 22);

test('a-different-file-the-content-index-takes-for-the-same-content-is-stored-anew-not-adopted', async () => {
  const card1 = join(work.path, 'card1');
  const card2 = join(work.path, 'card2');
  await writeBytes(join(card1, 'one.bin'), data, mtime);
  await writeBytes(join(card2, 'two.bin'), other, mtime);
  expect((await ingestJson([card1, '--dest', dest, '--state', state], collide)).code).toBe(0);
  const second = await ingestJson([card2, '--dest', dest, '--state', state, '--log-level', 'warn'], collide);
  expect(second.code, second.stderr).toBe(0);
  // The content index did name the first file as the same content: the fault really happened.
  expect(second.stderr).toMatch(/same xxh128 and size differs from this file/);
  expect(second.summary.destinations[0]).toMatchObject({ verified: 1, bytes: other.length });
  expect((await readFile(join(dest, DAY, 'two.bin'))).equals(other)).toBe(true);
  expect((await readFile(join(dest, DAY, 'one.bin'))).equals(data)).toBe(true);
  expect(copyRows().map((r) => [r.rel_path, r.dest_path, r.dedup])).toEqual([
    ['one.bin', `${DAY}/one.bin`, 0],
    ['two.bin', `${DAY}/two.bin`, 0],
  ]);
});

test('a-different-file-at-the-name-with-the-same-xxh128-is-not-taken-for-the-copy', async () => {
  const card1 = join(work.path, 'card1');
  const card2 = join(work.path, 'card2');
  await writeBytes(join(card1, 'one.bin'), data, mtime);
  await writeBytes(join(card2, 'one.bin'), other, mtime);
  // Another journal: nothing tells the second run what is at the name but the file itself.
  expect((await ingestJson([card1, '--dest', dest, '--state', join(work.path, 'state1')], collide)).code).toBe(0);
  const second = await ingestJson([card2, '--dest', dest, '--state', state], collide);
  expect(second.code, second.stderr).toBe(0);
  expect(second.summary.destinations[0]).toMatchObject({ verified: 1, bytes: other.length });
  expect((await readFile(join(dest, DAY, 'one.bin'))).equals(data)).toBe(true);
  expect((await readFile(join(dest, DAY, 'one_1.bin'))).equals(other)).toBe(true);
  expect(copyRows().map((r) => [r.dest_path, r.dedup])).toEqual([[`${DAY}/one_1.bin`, 0]]);
  expect(await tempFilesUnder(dest)).toEqual([]);
});

test('a-true-duplicate-is-still-adopted-when-its-xxh128-is-shared-with-other-content', async () => {
  const card1 = join(work.path, 'card1');
  const card2 = join(work.path, 'card2');
  await writeBytes(join(card1, 'one.bin'), data, mtime);
  await writeBytes(join(card2, 'two.bin'), data, mtime);
  expect((await ingestJson([card1, '--dest', dest, '--state', state], collide)).code).toBe(0);
  const second = await ingestJson([card2, '--dest', dest, '--state', state], collide);
  expect(second.code, second.stderr).toBe(0);
  expect(second.summary.destinations[0]).toMatchObject({ verified: 1, bytes: 0 });
  expect([...(await listTree(dest, { skipShuttle: true })).keys()]).toEqual([`${DAY}/one.bin`]);
  expect(copyRows().at(-1)).toMatchObject({ rel_path: 'two.bin', dest_path: `${DAY}/one.bin`, dedup: 1 });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
