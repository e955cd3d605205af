import { execFileSync } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, open, rename, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { normalizeConfig } from '../src/config/index.js';
import { HotFolderFeed } from '../src/daemon/hotfolder-feed.js';
import { HotFolderWatcher, isIgnoredHotPath, type HotFile } from '../src/daemon/hotfolders.js';
import { HotFolderSource } from '../src/device/card/hot-folder-source.js';
import { DAEMON_LOCK_WAIT_MS } from '../src/daemon/ingest-job.js';
import { destinationsFromConfig, ingestSettingsFromConfig } from '../src/ingest/settings.js';
import { JobScheduler } from '../src/daemon/jobs.js';
import { Journal } from '../src/store/journal.js';
import { isSourceSkip, type SourceItem } from '../src/device/source.js';
import { captureLog, writeBurst } from './support/daemon-helpers.js';
import { tempDir } from './support/tree.js';

let root: string;
let cleanup: () => Promise<void>;
let watcher: HotFolderWatcher | undefined;
/** Every batch handed on, with when. */
let batches: Array<{ at: number; files: HotFile[] }>;

beforeEach(async () => {
  ({ path: root, cleanup } = await tempDir('shuttle-hot-'));
  batches = [];
});

afterEach(async () => {
  await watcher?.close();
  watcher = undefined;
  await cleanup();
});

async function startWatcher(opts: { settleMs?: number; batchMs?: number; maxBatchWaitMs?: number } = {}): Promise<HotFolderWatcher> {
  watcher = new HotFolderWatcher({
    root,
    settleMs: opts.settleMs ?? 300,
    batchMs: opts.batchMs ?? 100,
    maxBatchWaitMs: opts.maxBatchWaitMs,
    logger: captureLog().logger,
    onBatch: (files) => batches.push({ at: Date.now(), files }),
  });
  await watcher.start();
  return watcher;
}

const delivered = (): string[] => batches.flatMap((b) => b.files.map((f) => f.rel));

async function until(cond: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

describe('hot folder watcher', () => {
  test('a-file-still-growing-is-not-handed-on-until-its-size-has-been-stable-for-the-settle-time', async () => {
    await startWatcher({ settleMs: 400 });
    const file = join(root, 'IMG_0001.JPG');
    const fh = await open(file, 'w');
    const chunk = Buffer.alloc(64 * 1024, 7);
    let lastWrite = 0;
    // An FTP upload: a chunk every 100 ms for 1.5 s, far longer than the settle time in total.
    for (let i = 0; i < 15; i++) {
      await fh.write(chunk);
      lastWrite = Date.now();
      await sleep(100);
      expect(delivered(), `handed on after ${i + 1} of 15 chunks`).toEqual([]);
    }
    await fh.close();
    await until(() => batches.length > 0, 5_000, 'the batch');
    expect(batches[0]!.at - lastWrite).toBeGreaterThanOrEqual(400);
    expect(batches[0]!.files).toEqual([{ rel: 'IMG_0001.JPG', size: 15 * 64 * 1024, mtimeMs: expect.any(Number) }]);
  });

  test('a-file-being-written-when-the-watcher-starts-also-waits-until-it-is-complete', async () => {
    const file = join(root, 'half.cr3');
    await writeFile(file, Buffer.alloc(100_000, 1));
    const growing = (async () => {
      for (let i = 0; i < 8; i++) {
        await sleep(100);
        await appendFile(file, Buffer.alloc(100_000, 2));
      }
    })();
    await startWatcher({ settleMs: 400 });
    await growing;
    await until(() => batches.length > 0, 5_000, 'the batch');
    expect(batches.flatMap((b) => b.files)).toEqual([{ rel: 'half.cr3', size: 900_000, mtimeMs: expect.any(Number) }]);
  });

  test('an-upload-under-a-temp-name-is-handed-on-once-under-its-final-name', async () => {
    await startWatcher();
    await writeFile(join(root, 'IMG_0002.JPG.part'), 'still coming');
    await writeFile(join(root, '.IMG_0003.JPG.tmp'), 'hidden temp');
    await sleep(500); // longer than the settle time: temp names must be ignored, not just late
    expect(delivered()).toEqual([]);
    await rename(join(root, 'IMG_0002.JPG.part'), join(root, 'IMG_0002.JPG'));
    await until(() => batches.length > 0, 5_000, 'the batch');
    await sleep(600);
    expect(delivered()).toEqual(['IMG_0002.JPG']);
  });

  test('renaming-a-handed-on-file-hands-on-the-new-name-once-and-not-the-old-one-again', async () => {
    await startWatcher();
    await writeFile(join(root, 'a.jpg'), 'A');
    await until(() => delivered().length === 1, 5_000, 'a.jpg');
    await mkdir(join(root, 'day2'));
    await rename(join(root, 'a.jpg'), join(root, 'day2', 'b.jpg'));
    await until(() => delivered().length === 2, 5_000, 'the renamed file');
    await sleep(600);
    expect(delivered()).toEqual(['a.jpg', 'day2/b.jpg']);
  });

  test('a-file-the-watch-of-a-new-folder-never-hears-of-is-found-by-the-walk-after-the-folder-appears', async () => {
    // chokidar may read a new folder before a file lands in it and watch it only after: the file is then
    // never reported. Made certain here: the file is in a folder bind-mounted over the new one once
    // chokidar watches it, so no event of the watched folder ever names it.
    if (process.getuid?.() !== 0) throw new Error('cannot run this test here: bind-mounting a folder needs root');
    await startWatcher({ settleMs: 400 });
    const hidden = join(root, '.elsewhere');
    await mkdir(hidden);
    await writeFile(join(hidden, 'b.jpg'), 'B');
    await mkdir(join(root, 'day2'));
    await sleep(100);
    execFileSync('mount', ['--bind', hidden, join(root, 'day2')]);
    try {
      await until(() => delivered().length === 1, 5_000, 'day2/b.jpg');
      expect(delivered()).toEqual(['day2/b.jpg']);
    } finally {
      execFileSync('umount', [join(root, 'day2')]);
    }
  });

  test('a-file-deleted-before-it-settles-is-never-handed-on', async () => {
    await startWatcher({ settleMs: 500 });
    await writeFile(join(root, 'gone.jpg'), 'x');
    await sleep(100);
    await unlink(join(root, 'gone.jpg'));
    await writeFile(join(root, 'stays.jpg'), 'y');
    await until(() => batches.length > 0, 5_000, 'the batch');
    await sleep(700);
    expect(delivered()).toEqual(['stays.jpg']);
  });

  test('a-new-version-of-a-file-is-handed-on-again-but-the-same-version-never-twice', async () => {
    await startWatcher();
    const file = join(root, 'edit.tif');
    await writeFile(file, 'v1');
    await until(() => delivered().length === 1, 5_000, 'v1');
    // Same bytes, same mtime: a touch that changes nothing the journal keys on.
    const t = new Date('2026-01-01T00:00:00Z');
    await utimes(file, t, t);
    await until(() => delivered().length === 2, 5_000, 'the new mtime');
    await utimes(file, t, t);
    await sleep(700);
    expect(delivered()).toEqual(['edit.tif', 'edit.tif']);
    expect(batches[1]!.files[0]!.mtimeMs).toBe(t.getTime());
  });

  test('a-burst-of-1000-files-is-handed-on-in-a-few-batches-each-file-exactly-once', async () => {
    await startWatcher({ settleMs: 300, batchMs: 200 });
    // Written by another process, as an FTP server or tethering tool would.
    await writeBurst(join(root, 'burst'), 1000);
    const names = Array.from({ length: 1000 }, (_, i) => `burst/IMG_${String(i).padStart(4, '0')}.JPG`);
    await until(() => delivered().length >= 1000, 20_000, '1000 files');
    await sleep(800); // anything late or doubled would arrive now
    const all = delivered();
    expect(all.length).toBe(1000);
    expect(new Set(all).size).toBe(1000);
    expect([...all].sort()).toEqual(names);
    expect(batches.length).toBeLessThan(20);
    expect(watcher!.status).toMatchObject({ settling: 0, waiting: 0, delivered: 1000 });
  });

  test('a-steady-stream-still-moves-batches-are-not-held-back-past-the-maximum-wait', async () => {
    await startWatcher({ settleMs: 100, batchMs: 300, maxBatchWaitMs: 600 });
    const started = Date.now();
    // One new file every 150 ms never leaves a 300 ms quiet gap.
    for (let i = 0; i < 14; i++) {
      await writeFile(join(root, `s${i}.jpg`), String(i));
      await sleep(150);
    }
    expect(batches.length).toBeGreaterThanOrEqual(2);
    expect(batches[0]!.at - started).toBeLessThan(1_500);
  });

  test('a-folder-that-appears-later-or-goes-away-and-comes-back-is-watched-and-nothing-is-handed-on-twice', async () => {
    const late = join(root, 'share');
    watcher = new HotFolderWatcher({
      root: late,
      settleMs: 100,
      batchMs: 50,
      presenceCheckMs: 100,
      logger: captureLog().logger,
      onBatch: (files) => batches.push({ at: Date.now(), files }),
    });
    await watcher.start();
    expect(watcher.status.watching).toBe(false);
    await mkdir(late);
    await until(() => watcher!.status.watching, 5_000, 'the folder to be watched');
    await writeFile(join(late, 'one.jpg'), '1');
    await until(() => delivered().length === 1, 5_000, 'one.jpg');
    await rename(late, join(root, 'away')); // the share is unmounted
    await until(() => !watcher!.status.watching, 5_000, 'the folder to be missed');
    await rename(join(root, 'away'), late); // and mounted again
    await until(() => watcher!.status.watching, 5_000, 'the folder to be watched again');
    await writeFile(join(late, 'two.jpg'), '2');
    await until(() => delivered().length === 2, 5_000, 'two.jpg');
    await sleep(400);
    expect(delivered()).toEqual(['one.jpg', 'two.jpg']);
  });

  test('a-symbolic-link-dropped-in-is-handed-on-as-the-link-not-its-target-for-the-listing-to-name', async () => {
    const outside = await mkdtemp(join(tmpdir(), 'shuttle-outside-'));
    await writeFile(join(outside, 'secret.jpg'), 'a file outside the hot folder');
    await startWatcher({ settleMs: 100 });
    await symlink(join(outside, 'secret.jpg'), join(root, 'link.jpg'));
    await writeFile(join(root, 'IMG_0001.JPG'), 'A');
    await until(() => delivered().length === 2, 5_000, 'both entries');
    const link = batches.flatMap((b) => b.files).find((f) => f.rel === 'link.jpg');
    // The link's own size (its target's path), not the 29 bytes of the file it points to.
    expect(link?.size).toBe(join(outside, 'secret.jpg').length);
    await rm(outside, { recursive: true });
  });

  test('hidden-system-and-temp-paths-are-ignored', () => {
    for (const p of ['.DS_Store', '.shuttle/lock', 'a/.thumbs/x.jpg', 'x.JPG.part', 'x.jpg.crdownload', 'x.tmp', 'x~', '@eaDir/a.jpg', 'System Volume Information/a']) {
      expect(isIgnoredHotPath(p), p).toBe(true);
    }
    for (const p of ['IMG_0001.JPG', 'DCIM/100CANON/IMG_0001.CR3', 'a.b.c.jpg', 'part.jpg']) expect(isIgnoredHotPath(p), p).toBe(false);
  });
});

describe('hot folder source', () => {
  test('lists-only-the-batch-files-as-they-are-now-and-names-files-gone-since-and-links-as-skipped', async () => {
    await writeFile(join(root, 'a.jpg'), 'AAAA');
    await writeFile(join(root, 'b.jpg'), 'BB');
    await writeFile(join(root, 'not-in-batch.jpg'), 'C');
    const outside = await mkdtemp(join(tmpdir(), 'shuttle-outside-'));
    await writeFile(join(outside, 'secret.jpg'), 'SECRET');
    await symlink(join(outside, 'secret.jpg'), join(root, 'link.jpg'));
    const src = new HotFolderSource(root, [
      { rel: 'a.jpg', size: 1, mtimeMs: 0 },
      { rel: 'b.jpg', size: 2, mtimeMs: 0 },
      { rel: 'link.jpg', size: 6, mtimeMs: 0 },
    ]);
    await rm(join(root, 'b.jpg'));
    const entries = [];
    for await (const it of src.list()) entries.push(it);
    const items = entries.filter((e): e is SourceItem => 'size' in e);
    expect(items.map((i) => [i.path, i.size])).toEqual([['a.jpg', 4]]);
    expect(entries.filter(isSourceSkip)).toEqual([
      { path: 'b.jpg', skipped: 'gone before it was read' },
      { path: 'link.jpg', skipped: 'symbolic link (not followed)' },
    ]);
    await rm(outside, { recursive: true });
    const chunks: Buffer[] = [];
    for await (const c of await src.open(items[0]!)) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('AAAA');
    expect((await src.identity()).kind).toBe('folder');
  });
});

describe('hot folder feed', () => {
  test('a-failed-batch-is-tried-again-after-the-retry-delay-with-the-files-that-arrived-meanwhile', async () => {
    const hot = join(root, 'hot');
    const dest = join(root, 'dest');
    await mkdir(hot);
    // The destination is not there yet (a drive not plugged in): a plain file stands where it should be.
    await writeFile(dest, 'not a folder');
    const saved = process.env['SHUTTLE_LOCK_DIR'];
    process.env['SHUTTLE_LOCK_DIR'] = join(root, 'locks');
    const config = normalizeConfig({ destinations: [{ path: dest }] });
    const journal = Journal.open(join(root, 'state'));
    const log = captureLog();
    const scheduler = new JobScheduler({ logger: log.logger });
    const feed = new HotFolderFeed({
      root: hot,
      scheduler,
      settleMs: 100,
      batchMs: 50,
      retryMs: 400,
      resources: [dest],
      logger: log.logger,
      env: { journal, destinations: destinationsFromConfig(config), settings: ingestSettingsFromConfig(config, DAEMON_LOCK_WAIT_MS), stateDir: join(root, 'state') },
    });
    try {
      await feed.start();
      await writeFile(join(hot, 'a.jpg'), 'A');
      await until(() => scheduler.snapshot().recent.some((j) => j.state === 'failed'), 10_000, 'the failed job');
      expect(feed.status()).toMatchObject({ waiting: 1, retryAt: expect.any(String) });
      await rm(dest);
      await writeFile(join(hot, 'b.jpg'), 'B'); // arrives during the retry wait: goes with the retry
      await until(() => scheduler.snapshot().recent.some((j) => j.state === 'done'), 10_000, 'the retried job');
      const jobs = scheduler.snapshot().recent.reverse();
      expect(jobs.map((j) => j.state)).toEqual(['failed', 'done']);
      expect(jobs[1]!.result).toMatchObject({ files: 2, copied: 2 });
      expect(feed.status()).toMatchObject({ waiting: 0, retryAt: undefined });
    } finally {
      await feed.close();
      await scheduler.shutdown();
      journal.close();
      if (saved === undefined) delete process.env['SHUTTLE_LOCK_DIR'];
      else process.env['SHUTTLE_LOCK_DIR'] = saved;
    }
  });
});
