import { afterEach, beforeEach, expect, test } from 'vitest';
import { execFileSync } from 'node:child_process';
import { appendFile, mkdir, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { Readable } from 'node:stream';
import { FolderSource } from '../src/device/card/folder-source.js';
import type { OpenOptions, SourceItem } from '../src/device/source.js';
import { Journal } from '../src/store/journal.js';
import { runIngest, type IngestSettings } from '../src/ingest/pipeline.js';
import { PROGRESSIVE_FROM } from '../src/ingest/copy.js';
import { silentLogger } from '../src/log.js';
import { bytes, ingestSettings, writeBytes } from './support/fixtures.js';
import { contentMultiset, listTree, tempDir, tempFilesUnder } from './support/tree.js';

const settings: IngestSettings = ingestSettings('{YYYY}/{YYYY-MM-DD}/{name}');

let work: { path: string; cleanup: () => Promise<void> };
const mounts: string[] = [];
beforeEach(async () => {
  work = await tempDir('shuttle-faults-');
});
afterEach(async () => {
  for (const m of mounts.splice(0)) execFileSync('umount', ['-l', m]);
  await work.cleanup();
});

async function tmpfs(dir: string, size: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  mounts.push(dir);
  return dir;
}

test('disk-full-on-one-destination-fails-it-cleanly-while-the-other-finishes', async () => {
  const src = join(work.path, 'card');
  for (let i = 0; i < 6; i++) await writeBytes(join(src, `f${i}.bin`), bytes(2_000_000, i), new Date('2026-04-01T10:00:00Z'));
  const small = await tmpfs(join(work.path, 'small'), '16m');
  const disk = join(work.path, 'disk');
  const journal = Journal.open(join(work.path, 'state'));
  let filled = false;
  const summary = await runIngest({
    sources: [new FolderSource(src)],
    destinations: [{ path: small }, { path: disk }],
    journal,
    settings,
    logger: silentLogger,
    signal: new AbortController().signal,
    // After the plan passed the free-space check, something else fills the small disk.
    onProgress: (p) => {
      if (!filled && p.filesDone === 2) {
        filled = true;
        // dd stops with "No space left", which is the point.
        try {
          execFileSync('dd', ['if=/dev/zero', `of=${join(small, 'filler')}`, 'bs=1M', 'count=16'], { stdio: 'ignore' });
        } catch {
          /* full */
        }
      }
    },
  });
  journal.close();
  expect(filled).toBe(true);
  expect(summary.status).toBe('failed');
  expect(summary.errors.map((e) => e.code)).toContain('DEST_NO_SPACE');
  const [s, d] = summary.destinations;
  expect(d).toMatchObject({ verified: 6, failed: 0 });
  expect(s!.failed).toBeGreaterThan(0);
  expect(s!.verified + s!.failed).toBe(6);
  expect(contentMultiset(await listTree(disk, { skipShuttle: true }))).toEqual(contentMultiset(await listTree(src)));
  expect(await tempFilesUnder(small)).toEqual([]);
  expect(await tempFilesUnder(disk)).toEqual([]);
}, 60_000);

test('not-enough-free-space-refuses-the-destination-before-copying', async () => {
  const src = join(work.path, 'card');
  for (let i = 0; i < 4; i++) await writeBytes(join(src, `f${i}.bin`), bytes(3_000_000, i), new Date('2026-04-01T10:00:00Z'));
  const small = await tmpfs(join(work.path, 'small'), '8m');
  const journal = Journal.open(join(work.path, 'state'));
  const summary = await runIngest({
    sources: [new FolderSource(src)],
    destinations: [{ path: small }],
    journal,
    settings,
    logger: silentLogger,
    signal: new AbortController().signal,
  });
  journal.close();
  expect(summary.status).toBe('failed');
  expect(summary.errors[0]?.code).toBe('DEST_NO_SPACE');
  expect(summary.errors[0]?.message).toMatch(/12000000|12\.0 MB|needed/);
  expect((await listTree(small, { skipShuttle: true })).size).toBe(0);
});

test('a-destination-where-no-temp-can-be-made-is-ended-and-each-file-counts-as-failed-there', async () => {
  const src = join(work.path, 'card');
  for (let i = 0; i < 3; i++) await writeBytes(join(src, `f${i}.bin`), bytes(100_000, i), new Date('2026-04-01T10:00:00Z'));
  const blocked = join(work.path, 'blocked');
  const disk = join(work.path, 'disk');
  // A file where the template's year folder goes: the first file's temp cannot be made there.
  await writeBytes(join(blocked, '2026'), 'in the way');
  const journal = Journal.open(join(work.path, 'state'));
  const summary = await runIngest({
    sources: [new FolderSource(src)],
    destinations: [{ path: blocked }, { path: disk }],
    journal,
    settings,
    logger: silentLogger,
    signal: new AbortController().signal,
  });
  journal.close();
  const db = new DatabaseSync(join(work.path, 'state', 'journal.sqlite'), { readOnly: true });
  const states = db.prepare('SELECT rel_path, state FROM files ORDER BY rel_path').all();
  db.close();
  expect(summary.errors.map((e) => [e.code, e.destination])).toEqual([['DEST_NOT_WRITABLE', blocked]]);
  expect(summary.destinations).toEqual([expect.objectContaining({ path: blocked, verified: 0, failed: 3 }), expect.objectContaining({ path: disk, verified: 3, failed: 0 })]);
  // No file is done while one of its destinations lacks it.
  expect(summary).toMatchObject({ status: 'failed', copied: 0, failed: 3 });
  expect(states).toEqual(['f0.bin', 'f1.bin', 'f2.bin'].map((rel_path) => ({ rel_path, state: 'failed' })));
  expect(contentMultiset(await listTree(disk, { skipShuttle: true }))).toEqual(contentMultiset(await listTree(src)));
  expect(await tempFilesUnder(blocked)).toEqual([]);
});

/** A real folder whose file grows while the first read of it is under way (a camera still writing). */
class GrowingFolder extends FolderSource {
  grown = 0;
  override async open(item: SourceItem, options?: OpenOptions): Promise<Readable> {
    const s = await super.open(item, options);
    if (item.path === 'growing.bin' && this.grown < this.limit) {
      this.grown++;
      s.once('data', () => void appendFile(join(this.root, item.path), bytes(1000, 99)));
    }
    return s;
  }
  constructor(
    root: string,
    private readonly limit: number,
  ) {
    super(root);
  }
}

test('a-file-that-changes-while-read-is-read-again', async () => {
  const src = join(work.path, 'card');
  await writeBytes(join(src, 'growing.bin'), bytes(4_000_000, 1));
  await writeBytes(join(src, 'steady.bin'), bytes(1000, 2));
  const dest = join(work.path, 'dest');
  const journal = Journal.open(join(work.path, 'state'));
  const source = new GrowingFolder(src, 1);
  const summary = await runIngest({ sources: [source], destinations: [{ path: dest }], journal, settings, logger: silentLogger, signal: new AbortController().signal });
  journal.close();
  expect(source.grown).toBe(1);
  expect(summary.failed).toBe(0);
  expect(contentMultiset(await listTree(dest, { skipShuttle: true }))).toEqual(contentMultiset(await listTree(src)));
});

test('a-file-that-keeps-changing-fails-alone-with-source-changed', async () => {
  const src = join(work.path, 'card');
  await writeBytes(join(src, 'growing.bin'), bytes(4_000_000, 1));
  await writeBytes(join(src, 'steady.bin'), bytes(1000, 2));
  const dest = join(work.path, 'dest');
  const journal = Journal.open(join(work.path, 'state'));
  const summary = await runIngest({
    sources: [new GrowingFolder(src, 100)],
    destinations: [{ path: dest }],
    journal,
    settings,
    logger: silentLogger,
    signal: new AbortController().signal,
  });
  journal.close();
  expect(summary.failed).toBe(1);
  expect(summary.copied).toBe(1);
  expect(summary.errors.map((e) => e.code)).toEqual(['SOURCE_CHANGED']);
  expect(await tempFilesUnder(dest)).toEqual([]);
});

test('an-abort-stops-the-run-as-interrupted-and-leaves-no-temp-file', async () => {
  const src = join(work.path, 'card');
  // Big enough to be read back as they are written: those reads stop too, their files closed.
  for (let i = 0; i < 10; i++) await writeBytes(join(src, `f${i}.bin`), bytes(PROGRESSIVE_FROM + 1_000_000, i));
  const dest = join(work.path, 'dest');
  const journal = Journal.open(join(work.path, 'state'));
  const ac = new AbortController();
  const summary = await runIngest({
    sources: [new FolderSource(src)],
    destinations: [{ path: dest }],
    journal,
    settings,
    logger: silentLogger,
    signal: ac.signal,
    onProgress: (p) => {
      if (p.filesDone === 3) ac.abort(new Error('test stop'));
    },
  });
  journal.close();
  expect(summary.status).toBe('interrupted');
  expect(await tempFilesUnder(dest)).toEqual([]);
  expect(await openFilesUnder(dest)).toEqual([]);
});

/** Files under `dir` this process still has open (deleted ones too). */
async function openFilesUnder(dir: string): Promise<string[]> {
  const open: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(`${dir}/`)) open.push(target);
  }
  return open;
}

test('filesystems-without-direct-io-are-read-and-written-through-the-cache-and-say-so', async () => {
  // ramfs refuses O_DIRECT: source reads, destination writes and the read-back all fall back.
  const src = join(work.path, 'card');
  await mkdir(src, { recursive: true });
  execFileSync('mount', ['-t', 'ramfs', 'ramfs', src]);
  mounts.push(src);
  // One file below PROGRESSIVE_FROM (read back whole after its fsync), two above (read back as written where O_DIRECT works).
  for (let i = 0; i < 3; i++) await writeBytes(join(src, `f${i}.bin`), bytes(1_500_000 + i * PROGRESSIVE_FROM, i), new Date('2026-04-01T10:00:00Z'));
  const dest = join(work.path, 'dest');
  await mkdir(dest);
  execFileSync('mount', ['-t', 'ramfs', 'ramfs', dest]);
  mounts.push(dest);
  const journal = Journal.open(join(work.path, 'state'));
  const summary = await runIngest({
    sources: [new FolderSource(src)],
    destinations: [{ path: dest }],
    journal,
    settings,
    logger: silentLogger,
    signal: new AbortController().signal,
  });
  const db = new DatabaseSync(journal.path, { readOnly: true });
  const readbacks = db.prepare(`SELECT readback FROM copies WHERE state = 'verified'`).all() as Array<{ readback: string }>;
  db.close();
  journal.close();
  expect(summary, JSON.stringify(summary.errors)).toMatchObject({ status: 'complete', copied: 3, failed: 0 });
  expect(summary.readback).toEqual({ direct: 0, cached: 3 });
  expect(readbacks.map((r) => r.readback)).toEqual(['cached', 'cached', 'cached']);
  expect(contentMultiset(await listTree(dest, { skipShuttle: true }))).toEqual(contentMultiset(await listTree(src)));
});
