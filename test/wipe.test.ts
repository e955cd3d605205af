import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { FolderSource } from '../src/device/card/folder-source.js';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { runIngest } from '../src/ingest/pipeline.js';
import { OverlappedSecondReads, wipeSource } from '../src/ingest/wipe.js';
import type { OpenOptions, SourceItem } from '../src/device/source.js';
import { TIMED_OUT, within } from '../src/async.js';
import { Journal } from '../src/store/journal.js';
import { acquireLock, sourceLockPath } from '../src/store/lock.js';
import { silentLogger } from '../src/log.js';
import { normalizeConfig } from '../src/config/index.js';
import { DeviceRegistry, pathJobKey, type DeviceEvents } from '../src/daemon/devices.js';
import { DAEMON_LOCK_WAIT_MS, type IngestEnvironment } from '../src/daemon/ingest-job.js';
import { JobScheduler } from '../src/daemon/jobs.js';
import { wipePolicies, type WipePolicies } from '../src/daemon/wipe-policy.js';
import type { JobSnapshot } from '../src/daemon/status.js';
import { destinationsFromConfig, ingestSettingsFromConfig } from '../src/ingest/settings.js';
import { ingestJson, runCli } from './support/cli.js';
import { bytes, ingestSettings, writeBytes, writeJpeg } from './support/fixtures.js';
import { contentMultiset, listTree, tempDir } from './support/tree.js';

/**
 * Verified-then-wipe (src/ingest/wipe.ts): a source loses exactly the files a complete run verified at
 * every destination and read a second time with the same hash, and nothing at all when anything failed.
 */

let work: { path: string; cleanup: () => Promise<void> };
let card: string;
let destA: string;
let destB: string;
let state: string;
const mounts: string[] = [];

beforeEach(async () => {
  work = await tempDir('shuttle-wipe-');
  card = join(work.path, 'card');
  destA = join(work.path, 'libA');
  destB = join(work.path, 'libB');
  state = join(work.path, 'state');
  await mkdir(card, { recursive: true });
});
afterEach(async () => {
  for (const m of mounts.splice(0).reverse()) execFileSync('umount', ['-l', m]);
  await work.cleanup();
});

const WHEN = new Date('2026-03-14T12:00:00Z');

/** Four camera files in two DCIM folders, plus what `extra` adds. */
async function makeCard(): Promise<void> {
  await writeJpeg(join(card, 'DCIM/100CANON/IMG_0001.JPG'), { seed: 1 });
  await writeBytes(join(card, 'DCIM/100CANON/IMG_0001.CR3'), bytes(1_500_000, 2), WHEN);
  await writeJpeg(join(card, 'DCIM/100CANON/IMG_0002.JPG'), { seed: 3 });
  await writeBytes(join(card, 'DCIM/101CANON/IMG_0003.CR3'), bytes(700_000, 4), WHEN);
}

interface WipeJson {
  wiped: number;
  wipe?: Array<{
    policy: string;
    wiped: number;
    checked: number;
    secondRead: { direct: number; cached: number; overlapped: number };
    marked?: string;
    reason?: { code: string; why: string; message: string; path?: string };
  }>;
}

function wipeRows(): Array<{ rel_path: string; state: string; second_read: string; policy: string }> {
  const db = new DatabaseSync(join(state, 'journal.sqlite'), { readOnly: true });
  try {
    return db.prepare('SELECT f.rel_path, w.state, w.second_read, w.policy FROM source_wipes w JOIN files f ON f.id = w.file_id ORDER BY f.rel_path, w.id').all() as Array<{
      rel_path: string;
      state: string;
      second_read: string;
      policy: string;
    }>;
  } finally {
    db.close();
  }
}

async function filesUnder(root: string): Promise<string[]> {
  return [...(await listTree(root)).keys()].sort();
}

async function config(text: string): Promise<string> {
  const file = join(work.path, 'shuttle.toml');
  await writeFile(file, text);
  return file;
}

describe('shuttle ingest --wipe on a card', () => {
  test('after-two-destinations-deletes-exactly-the-ingested-files-journals-each-and-a-re-run-is-quiet', async () => {
    await makeCard();
    const before = await listTree(card);
    const r = await ingestJson([card, '--dest', destA, '--dest', destB, '--state', state, '--wipe']);
    expect(r.code, r.stderr).toBe(0);
    const s = r.summary as typeof r.summary & WipeJson;
    expect(s).toMatchObject({ files: 4, copied: 4, failed: 0, status: 'complete', wiped: 4 });
    expect(s.wipe).toEqual([expect.objectContaining({ policy: 'after-local', wiped: 4, checked: 4, secondRead: { direct: 4, cached: 0, overlapped: 4 } })]);
    // Files gone, the camera's folder structure kept.
    expect(await filesUnder(card)).toEqual([]);
    expect((await readdir(join(card, 'DCIM'))).sort()).toEqual(['100CANON', '101CANON']);
    for (const d of [destA, destB]) expect(contentMultiset(await listTree(d, { skipShuttle: true }))).toEqual(contentMultiset(before));
    expect(wipeRows()).toEqual([...before.keys()].sort().map((rel_path) => ({ rel_path, state: 'deleted', second_read: 'direct', policy: 'after-local' })));

    const again = await ingestJson([card, '--dest', destA, '--dest', destB, '--state', state, '--wipe']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.summary).toMatchObject({ files: 0, failed: 0, status: 'complete', errors: [], wiped: 0 });
    expect(wipeRows()).toHaveLength(4);
  });

  test('files-excluded-by-the-config-and-skipped-symlinks-stay-while-the-rest-goes', async () => {
    await makeCard();
    await writeBytes(join(card, 'DCIM/100CANON/IMG_0002.TMP'), 'scratch');
    await symlink('IMG_0001.CR3', join(card, 'DCIM/100CANON/LINK.CR3'));
    const cfg = await config('[ingest]\nexclude = ["*.tmp"]\n');
    const r = await ingestJson([card, '--config', cfg, '--dest', destA, '--state', state, '--wipe']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.summary.skipped.map((k) => k.path).sort()).toEqual(['DCIM/100CANON/IMG_0002.TMP', 'DCIM/100CANON/LINK.CR3']);
    expect((r.summary as WipeJson).wiped).toBe(4);
    expect(await filesUnder(card)).toEqual(['DCIM/100CANON/IMG_0002.TMP']);
    // The link itself is still there, not followed to its (deleted) target nor removed.
    expect(execFileSync('readlink', [join(card, 'DCIM/100CANON/LINK.CR3')], { encoding: 'utf8' }).trim()).toBe('IMG_0001.CR3');
  });

  test('a-file-that-fails-verification-keeps-every-file-on-the-card', async () => {
    await makeCard();
    const before = await listTree(card);
    // Every temp of this file is damaged after fsync: read-back catches it on each retry, so it fails.
    const r = await ingestJson([card, '--dest', destA, '--dest', destB, '--state', state, '--wipe'], { env: { SHUTTLE_TEST_FAULT: 'flip-byte:IMG_0003.CR3' } });
    expect(r.code).toBe(1);
    expect(r.summary).toMatchObject({ failed: 1, status: 'failed', wiped: 0 });
    expect(r.summary.errors.some((e) => e.code === 'VERIFY_MISMATCH' && e.path === 'DCIM/101CANON/IMG_0003.CR3')).toBe(true);
    expect((r.summary as WipeJson).wipe?.[0]?.reason).toMatchObject({ why: 'ingest-incomplete' });
    expect(await listTree(card)).toEqual(before);
    expect(wipeRows()).toEqual([]);
  });

  test('a-second-read-that-differs-from-the-first-wipes-nothing', async () => {
    await makeCard();
    const before = await listTree(card);
    const original = await readFile(join(card, 'DCIM/100CANON/IMG_0002.JPG'));
    const r = await ingestJson([card, '--dest', destA, '--dest', destB, '--state', state, '--wipe'], { env: { SHUTTLE_TEST_FAULT: 'change-source:IMG_0002.JPG' } });
    expect(r.code).toBe(1);
    // The copies were made from the first read and verified: the ingest itself succeeded.
    expect(r.summary).toMatchObject({ copied: 4, failed: 0, status: 'failed', wiped: 0 });
    for (const d of [destA, destB]) expect(contentMultiset(await listTree(d, { skipShuttle: true }))).toEqual(contentMultiset(before));
    const reason = (r.summary as WipeJson).wipe?.[0]?.reason;
    expect(reason).toMatchObject({ code: 'VERIFY_MISMATCH', why: 'second-read-differs', path: 'DCIM/100CANON/IMG_0002.JPG' });
    expect(r.summary.errors.map((e) => e.code)).toEqual(['VERIFY_MISMATCH']);
    // The fault really changed the card between the two reads (same size, other bytes)...
    const changed = await readFile(join(card, 'DCIM/100CANON/IMG_0002.JPG'));
    expect(changed.length).toBe(original.length);
    expect(changed.equals(original)).toBe(false);
    // ...and every file, the changed one too, is still on it.
    expect(await filesUnder(card)).toEqual([...before.keys()].sort());
    expect(wipeRows()).toEqual([]);
  });

  test('the-second-read-runs-while-later-files-still-copy-and-still-catches-a-card-changed-between-the-reads', async () => {
    await makeCard();
    const before = await listTree(card);
    const original = await readFile(join(card, 'DCIM/100CANON/IMG_0002.JPG'));
    const events: string[] = [];
    let secondReadOf0002!: () => void;
    const secondReadStarted = new Promise<void>((resolve) => (secondReadOf0002 = resolve));
    // The card's last file is copied only once IMG_0002.JPG was read a second time: that read can only
    // be the overlapped one (the gate's own reads start after the ingest ended).
    class HeldCard extends FolderSource {
      override async open(item: SourceItem, options?: OpenOptions) {
        if (item.path === 'DCIM/101CANON/IMG_0003.CR3') {
          const waited = await within(secondReadStarted, 15_000);
          events.push(waited === TIMED_OUT ? 'last file opened without a second read before it' : 'last file opened');
        }
        return super.open(item, options);
      }
    }
    const source = new HeldCard(card);
    const removal = source.removal;
    const reread = removal.reread.bind(removal);
    removal.reread = async (item, signal) => {
      const read = await reread(item, signal);
      events.push(`second read of ${item.path}`);
      if (item.path === 'DCIM/100CANON/IMG_0002.JPG') secondReadOf0002();
      return read;
    };
    const journal = Journal.open(state);
    const signal = new AbortController().signal;
    const reads = new OverlappedSecondReads(source, signal);
    process.env['SHUTTLE_TEST_FAULT'] = 'change-source:IMG_0002.JPG';
    try {
      const summary = await runIngest({
        sources: [source],
        destinations: [{ path: destA }, { path: destB }],
        journal,
        settings: ingestSettings('{YYYY}/{YYYY-MM-DD}/{name}'),
        logger: silentLogger,
        signal,
        onFile: reads.fileDone,
      });
      events.push('ingest ended');
      // The copies were made from the first read and verified: the ingest itself succeeded.
      expect(summary).toMatchObject({ copied: 4, failed: 0, status: 'complete' });
      const report = await wipeSource({ source, policy: 'after-local', summary, journal, logger: silentLogger, signal, station: 'test', secondReads: reads });
      expect(report).toMatchObject({ wiped: 0, reason: { code: 'VERIFY_MISMATCH', why: 'second-read-differs', path: 'DCIM/100CANON/IMG_0002.JPG' } });
    } finally {
      delete process.env['SHUTTLE_TEST_FAULT'];
      await reads.close();
      journal.close();
    }
    expect(events.indexOf('second read of DCIM/100CANON/IMG_0002.JPG')).toBeLessThan(events.indexOf('last file opened'));
    // The gate took the overlapped reads instead of reading any file again.
    const secondReads = events.filter((e) => e.startsWith('second read of'));
    expect(new Set(secondReads).size).toBe(secondReads.length);
    // The fault really changed the card between the two reads (same size, other bytes), and every file stays.
    const changed = await readFile(join(card, 'DCIM/100CANON/IMG_0002.JPG'));
    expect(changed.length).toBe(original.length);
    expect(changed.equals(original)).toBe(false);
    expect(await filesUnder(card)).toEqual([...before.keys()].sort());
    expect(wipeRows()).toEqual([]);
  }, 60_000);

  test('a-card-mounted-read-only-is-not-touched-and-the-summary-says-why', async () => {
    await makeCard();
    const view = join(work.path, 'ro-card');
    await mkdir(view);
    execFileSync('mount', ['--bind', card, view]);
    mounts.push(view);
    execFileSync('mount', ['-o', 'remount,bind,ro', view]);
    const r = await ingestJson([view, '--dest', destA, '--state', state, '--wipe']);
    expect(r.code).toBe(1);
    expect((r.summary as WipeJson).wipe?.[0]?.reason).toMatchObject({ code: 'SOURCE_DELETE_FAILED', why: 'cannot-delete', message: expect.stringContaining('read-only') });
    expect(await filesUnder(card)).toHaveLength(4);
  });

  test('mark-done-writes-the-list-of-verified-files-at-the-root-deletes-nothing-and-is-not-ingested-next-time', async () => {
    await makeCard();
    const before = await listTree(card);
    const r = await ingestJson([card, '--dest', destA, '--state', state, '--mark-done']);
    expect(r.code, r.stderr).toBe(0);
    expect((r.summary as WipeJson).wipe?.[0]).toMatchObject({ policy: 'mark-done', wiped: 0, checked: 4, marked: 'SHUTTLE-DONE.txt' });
    const mark = await readFile(join(card, 'SHUTTLE-DONE.txt'), 'utf8');
    for (const path of before.keys()) expect(mark).toContain(`\t${path}\n`);
    expect(mark).toContain(destA);
    const after = await listTree(card);
    after.delete('SHUTTLE-DONE.txt');
    expect(after).toEqual(before);
    const again = await ingestJson([card, '--dest', destA, '--state', state]);
    expect(again.summary).toMatchObject({ files: 4, alreadyVerified: 4, copied: 0 });
    expect(again.summary.skipped).toEqual([{ path: 'SHUTTLE-DONE.txt', reason: "Shuttle's mark of a verified card" }]);
  });

  test('contradicting-wipe-flags-and-after-cloud-without-an-upload-are-usage-errors-before-anything-is-copied', async () => {
    await makeCard();
    const both = await runCli(['ingest', card, '--dest', destA, '--state', state, '--wipe', '--mark-done']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--wipe and --mark-done');
    const cloud = await runCli(['ingest', card, '--dest', destA, '--state', state, '--wipe-after-cloud']);
    expect(cloud.code).toBe(2);
    expect(cloud.stderr).toContain('--wipe-after-cloud needs an upload');
    expect(existsSync(destA)).toBe(false);
  });

  test('after-cloud-with-the-cloud-down-wipes-nothing-and-exits-incomplete', async () => {
    await makeCard();
    // A port that refuses connections: listened on, then closed.
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => resolve(p));
      });
    });
    const env = {
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test-secret',
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}`,
      AWS_PROFILE: undefined,
      AWS_CONFIG_FILE: join(work.path, 'no-aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(work.path, 'no-aws-credentials'),
    };
    const r = await ingestJson([card, '--dest', destA, '--state', state, '--upload', 's3://bucket/down', '--s3-provider', 'generic', '--wipe-after-cloud'], { env });
    expect(r.code, r.stderr).toBe(3);
    const s = r.summary as typeof r.summary & WipeJson & { upload: { pending: number; uploaded: number } };
    expect(s.upload).toMatchObject({ uploaded: 0, pending: 4 });
    expect(s).toMatchObject({ copied: 4, wiped: 0 });
    expect(s.wipe?.[0]?.reason).toMatchObject({ why: 'cloud-pending', message: '4 files are not verified in the cloud yet' });
    expect(await filesUnder(card)).toHaveLength(4);
  });
});

describe('the gate in process', () => {
  test('disk-full-on-one-destination-wipes-nothing-although-the-other-destination-verified-everything', async () => {
    for (let i = 0; i < 6; i++) await writeBytes(join(card, `DCIM/100CANON/F${i}.CR3`), bytes(2_000_000, i), WHEN);
    const before = await listTree(card);
    const small = join(work.path, 'small');
    await mkdir(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', small]);
    mounts.push(small);
    const journal = Journal.open(state);
    const source = new FolderSource(card);
    let filled = false;
    try {
      const summary = await runIngest({
        sources: [source],
        destinations: [{ path: small }, { path: destA }],
        journal,
        settings: ingestSettings('{YYYY}/{YYYY-MM-DD}/{name}'),
        logger: silentLogger,
        signal: new AbortController().signal,
        // After the plan passed the free-space check, something else fills the small disk.
        onProgress: (p) => {
          if (!filled && p.filesDone === 2) {
            filled = true;
            try {
              execFileSync('dd', ['if=/dev/zero', `of=${join(small, 'filler')}`, 'bs=1M', 'count=16'], { stdio: 'ignore' });
            } catch {
              // dd stops with "No space left on device": the point.
            }
          }
        },
      });
      expect(filled).toBe(true);
      expect(summary.errors.map((e) => e.code)).toContain('DEST_NO_SPACE');
      expect(summary.destinations[1]).toMatchObject({ verified: 6, failed: 0 });
      const report = await wipeSource({ source, policy: 'after-local', summary, journal, logger: silentLogger, signal: new AbortController().signal, station: 'test' });
      expect(report).toMatchObject({ wiped: 0, reason: { why: 'ingest-incomplete' } });
    } finally {
      journal.close();
    }
    expect(await listTree(card)).toEqual(before);
    expect(wipeRows()).toEqual([]);
  }, 60_000);
});

describe('the wipe and the source lock', () => {
  test('a-wipe-deletes-nothing-while-another-shuttle-holds-the-source-so-that-an-ingest-there-never-sees-its-rows-half-done', async () => {
    await makeCard();
    const before = await listTree(card);
    const journal = Journal.open(state);
    const source = new FolderSource(card);
    try {
      const signal = new AbortController().signal;
      const summary = await runIngest({ sources: [source], destinations: [{ path: destA }], journal, settings: ingestSettings('{name}'), logger: silentLogger, signal });
      expect(summary.status).toBe('complete');
      const held = await acquireLock(sourceLockPath((await source.identity()).key), { owner: { command: 'another ingest' } });
      try {
        const report = await wipeSource({ source, policy: 'after-local', summary, journal, logger: silentLogger, signal, station: 'test' });
        expect(report).toMatchObject({ wiped: 0, reason: { code: 'LOCKED', message: expect.stringContaining('another ingest') } });
      } finally {
        held.release();
      }
      // Once let go, the same run's wipe goes ahead.
      const report = await wipeSource({ source, policy: 'after-local', summary, journal, logger: silentLogger, signal, station: 'test' });
      expect(report).toMatchObject({ wiped: 4 });
    } finally {
      journal.close();
    }
    expect(before.size).toBe(4);
    expect(wipeRows().map((w) => w.state)).toEqual(['deleted', 'deleted', 'deleted', 'deleted']);
  });
});

describe('a card pulled during or right after its wipe', () => {
  /**
   * ext2 on a loop device: like a camera's FAT card, no journal, so an unlink is only in this host's
   * buffers until the folder is synced; a copy of the image taken at once is the card as pulled.
   */
  async function loopCard(): Promise<string> {
    const image = join(work.path, 'card.img');
    execFileSync('truncate', ['-s', '32M', image]);
    execFileSync('mkfs.ext2', ['-q', image]);
    execFileSync('mount', ['-o', 'loop', image, card]);
    mounts.push(card);
    await makeCard();
    execFileSync('sync', ['-f', card]);
    return image;
  }

  /** Mounts the image of the card as pulled at `at`. */
  async function insert(image: string, at: string, ro = false): Promise<void> {
    await mkdir(at, { recursive: true });
    execFileSync('mount', ['-o', ro ? 'loop,ro' : 'loop', image, at]);
    mounts.push(at);
  }

  test('holds-none-of-the-files-the-journal-records-as-deleted', async () => {
    const image = await loopCard();
    const pulled = join(work.path, 'pulled.img');
    const journal = Journal.open(state);
    const source = new FolderSource(card);
    try {
      const signal = new AbortController().signal;
      const summary = await runIngest({ sources: [source], destinations: [{ path: destA }], journal, settings: ingestSettings('{name}'), logger: silentLogger, signal });
      const report = await wipeSource({ source, policy: 'after-local', summary, journal, logger: silentLogger, signal, station: 'test' });
      expect(report).toMatchObject({ wiped: 4, checked: 4 });
      expect(report.reason).toBeUndefined();
      execFileSync('cp', [image, pulled]);
    } finally {
      journal.close();
    }
    expect(await filesUnder(card)).toEqual([]);
    const pulledAt = join(work.path, 'pulled');
    await insert(pulled, pulledAt, true);
    const deleted = wipeRows()
      .filter((w) => w.state === 'deleted')
      .map((w) => w.rel_path);
    expect(deleted).toHaveLength(4);
    expect((await filesUnder(pulledAt)).filter((f) => deleted.includes(f))).toEqual([]);
  }, 60_000);

  test('mid-wipe-the-deletions-that-did-not-last-are-not-journaled-as-done-and-on-re-insert-are-read-again-and-deleted', async () => {
    const image = await loopCard();
    const pulled = join(work.path, 'pulled.img');
    // The card leaves after two deletions, before anything synced them: its image is copied as it is
    // then, and the mount goes away under the wipe.
    class PulledMidWipe extends FolderSource {
      removed = 0;
      override get removal() {
        const inner = super.removal!;
        return {
          ready: (signal?: AbortSignal) => inner.ready(signal),
          reread: (item: SourceItem, signal?: AbortSignal) => inner.reread(item, signal),
          remove: async (item: SourceItem, signal?: AbortSignal) => {
            if (this.removed === 2) {
              execFileSync('cp', [image, pulled]);
              execFileSync('umount', ['-l', card]);
              mounts.splice(mounts.indexOf(card), 1);
            }
            await inner.remove(item, signal);
            this.removed++;
          },
          settleRemovals: (items: readonly SourceItem[], signal?: AbortSignal) => inner.settleRemovals!(items, signal),
        };
      }
    }
    const signal = new AbortController().signal;
    let journal = Journal.open(state);
    try {
      const source = new PulledMidWipe(card);
      const summary = await runIngest({ sources: [source], destinations: [{ path: destA }], journal, settings: ingestSettings('{name}'), logger: silentLogger, signal });
      const report = await wipeSource({ source, policy: 'after-local', summary, journal, logger: silentLogger, signal, station: 'test' });
      // Two unlinks happened, neither was made durable: none counts as wiped.
      expect(source.removed).toBe(2);
      expect(report).toMatchObject({ wiped: 0, checked: 4, reason: { why: 'delete-failed' } });
    } finally {
      journal.close();
    }
    const first = wipeRows();
    expect(first.map((w) => w.state)).toEqual(['failed', 'failed', 'failed']);
    const db = new DatabaseSync(join(state, 'journal.sqlite'), { readOnly: true });
    const errors = (db.prepare('SELECT error FROM source_wipes ORDER BY id').all() as Array<{ error: string }>).map((r) => r.error);
    db.close();
    expect(errors.slice(0, 2)).toEqual([
      expect.stringMatching(/could not be synced.*the file may come back/),
      expect.stringMatching(/could not be synced.*the file may come back/),
    ]);
    expect(errors[2]).toMatch(/not deleted/);

    // Re-inserted: every file is there again, is read a second time and deleted, and only now journaled so.
    await insert(pulled, card);
    expect(await filesUnder(card)).toHaveLength(4);
    journal = Journal.open(state);
    try {
      const source = new FolderSource(card);
      const summary = await runIngest({ sources: [source], destinations: [{ path: destA }], journal, settings: ingestSettings('{name}'), logger: silentLogger, signal });
      const report = await wipeSource({ source, policy: 'after-local', summary, journal, logger: silentLogger, signal, station: 'test' });
      expect(report).toMatchObject({ wiped: 4, checked: 4, secondRead: { direct: 4 } });
    } finally {
      journal.close();
    }
    expect(await filesUnder(card)).toEqual([]);
    const deleted = wipeRows().filter((w) => w.state === 'deleted');
    expect(deleted.map((w) => w.rel_path).sort()).toEqual(['DCIM/100CANON/IMG_0001.CR3', 'DCIM/100CANON/IMG_0001.JPG', 'DCIM/100CANON/IMG_0002.JPG', 'DCIM/101CANON/IMG_0003.CR3']);
  }, 60_000);
  test('a-wipe-killed-between-journaling-deleting-and-the-outcome-is-settled-at-the-next-insert-gone-as-deleted-still-there-as-failed-and-deleted-again-through-the-gate', async () => {
    await loopCard();
    const args = [card, '--dest', destA, '--dest', destB, '--state', state, '--wipe', '--json'];
    // Killed as the third deletion was journaled: the first two files unlinked (their folder not yet
    // synced, their outcome not journaled), the third not yet.
    const killed = await runCli(['ingest', ...args], { env: { SHUTTLE_TEST_CRASH_AT: 'wipe-begun:3' } });
    expect(killed.signal, killed.stderr).toBe('SIGKILL');
    expect(killed.stderr).toContain('crash point wipe-begun:3 reached');
    const begun = wipeRows();
    expect(begun.map((w) => w.state)).toEqual(['deleting', 'deleting', 'deleting']);
    const left = await filesUnder(card);
    expect(left).toHaveLength(2);
    const gone = begun.map((w) => w.rel_path).filter((p) => !left.includes(p));
    const stillThere = begun.map((w) => w.rel_path).filter((p) => left.includes(p));
    expect(gone).toHaveLength(2);
    expect(stillThere).toHaveLength(1);

    // The card is inserted again (here: the same mount, as after a daemon crash).
    const r = await ingestJson(args.slice(0, -1));
    expect(r.code, r.stderr).toBe(0);
    // The two files still there went through the whole gate: copies read back, a second read of each.
    expect((r.summary as WipeJson).wipe?.[0]).toMatchObject({ wiped: 2, checked: 2, secondRead: { direct: 2 } });
    expect(await filesUnder(card)).toEqual([]);
    const db = new DatabaseSync(join(state, 'journal.sqlite'), { readOnly: true });
    const rows = db.prepare('SELECT f.rel_path, w.state, w.error FROM source_wipes w JOIN files f ON f.id = w.file_id ORDER BY w.id').all() as Array<{
      rel_path: string;
      state: string;
      error: string | null;
    }>;
    db.close();
    expect(rows.filter((w) => w.state === 'deleting')).toEqual([]);
    // The killed run's rows: what the card held at the next insert.
    expect(rows.slice(0, 3)).toEqual(
      begun.map((w) =>
        gone.includes(w.rel_path)
          ? { rel_path: w.rel_path, state: 'deleted', error: expect.stringMatching(/never journaled; no longer on the source/) }
          : { rel_path: w.rel_path, state: 'failed', error: expect.stringMatching(/never journaled; still on the source/) },
      ),
    );
    // This run's deletions: the one still there and the one never begun.
    expect(rows.slice(3).map((w) => [w.rel_path, w.state, w.error])).toEqual(left.map((p) => [p, 'deleted', null]));
  }, 60_000);
});

describe('shuttle ingest --wipe on a camera (PTP/IP simulator)', () => {
  let sim: CameraSimulator | undefined;
  afterEach(async () => {
    await sim?.stop();
    sim = undefined;
  });

  async function cameraCard(): Promise<void> {
    await makeCard();
    await writeBytes(join(card, 'DCIM/100CANON/IMG_0004.MOV'), bytes(400_000, 9), WHEN);
  }

  test('deletes-exactly-the-ingested-objects-and-leaves-excluded-ones-on-the-card', async () => {
    await cameraCard();
    const before = await listTree(card);
    sim = await CameraSimulator.start({ dir: card, port: 0, timeZone: 'UTC', deletable: true });
    const cfg = await config('[ingest]\ntime_zone = "UTC"\nexclude = ["*.mov"]\n');
    const r = await ingestJson([`ptpip:127.0.0.1:${sim.port}`, '--config', cfg, '--dest', destA, '--dest', destB, '--state', state, '--wipe']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.summary).toMatchObject({ files: 4, copied: 4, failed: 0, wiped: 4 });
    expect((r.summary as WipeJson).wipe?.[0]).toMatchObject({ wiped: 4, secondRead: { direct: 4, cached: 0, overlapped: 4 } });
    // DeleteObject removed the files from the simulated card's folder; the excluded one and the folders stay.
    expect(await filesUnder(card)).toEqual(['DCIM/100CANON/IMG_0004.MOV']);
    expect((await readdir(join(card, 'DCIM'))).sort()).toEqual(['100CANON', '101CANON']);
    before.delete('DCIM/100CANON/IMG_0004.MOV');
    for (const d of [destA, destB]) expect(contentMultiset(await listTree(d, { skipShuttle: true }))).toEqual(contentMultiset(before));
    expect(wipeRows().map((w) => [w.rel_path, w.state])).toEqual([...before.keys()].sort().map((p) => [`SD/${p}`, 'deleted']));

    const again = await ingestJson([`ptpip:127.0.0.1:${sim.port}`, '--config', cfg, '--dest', destA, '--dest', destB, '--state', state, '--wipe']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.summary).toMatchObject({ files: 0, failed: 0, errors: [], wiped: 0 });
  });

  test('an-object-that-fails-keeps-every-object-on-the-camera', async () => {
    await cameraCard();
    const before = await listTree(card);
    // One object sends more bytes than its ObjectInfo says: the initiator cuts it off and the file fails.
    sim = await CameraSimulator.start({ dir: card, port: 0, timeZone: 'UTC', deletable: true, misbehave: { paths: ['DCIM/101CANON/IMG_0003.CR3'], overrunBytes: 4096 } });
    const r = await ingestJson([`ptpip:127.0.0.1:${sim.port}`, '--dest', destA, '--state', state, '--wipe']);
    expect(r.code).toBe(1);
    expect(r.summary).toMatchObject({ failed: 1, wiped: 0 });
    expect(r.summary.errors.some((e) => e.path === 'SD/DCIM/101CANON/IMG_0003.CR3')).toBe(true);
    expect((r.summary as WipeJson).wipe?.[0]?.reason).toMatchObject({ why: 'ingest-incomplete' });
    expect(await listTree(card)).toEqual(before);
  });
});

describe('the daemon', () => {
  /** Attaches `card` as a card device to a registry whose environment has the config's wipe policies; returns the job's end. */
  async function cardJob(
    configInput: Parameters<typeof normalizeConfig>[0],
    opts: { wipe?: (stop: (reason: string) => void) => WipePolicies; onProgress?: (job: JobSnapshot) => void } = {},
  ) {
    const config = normalizeConfig({ ...configInput, destinations: [{ path: destA }, { path: destB }] });
    const journal = Journal.open(state);
    const scheduler = new JobScheduler({ logger: silentLogger, onProgress: (_id, snapshot) => opts.onProgress?.(snapshot()) });
    const stop = (reason: string): void => void scheduler.cancelKey(pathJobKey(card), 'cancel', reason);
    const env: IngestEnvironment = {
      journal,
      destinations: destinationsFromConfig(config),
      settings: ingestSettingsFromConfig(config, DAEMON_LOCK_WAIT_MS),
      stateDir: state,
      wipe: opts.wipe?.(stop) ?? wipePolicies(config),
    };
    const registry = new DeviceRegistry({ scheduler, env, resources: [], logger: silentLogger });
    let events: DeviceEvents | undefined;
    await registry.add({ name: 'test', start: async (e) => void (events = e), close: async () => {} });
    try {
      events!.attach({ id: 'mount:8:17', kind: 'card', label: 'card', uri: card, jobKey: pathJobKey(card), open: async () => new FolderSource(card) });
      return await scheduler.wait(registry.status()[0]!.job!);
    } finally {
      await registry.close();
      await scheduler.shutdown('test over');
      journal.close();
    }
  }

  test('a-card-job-follows-cards-wipe-and-reports-the-files-it-deleted', async () => {
    await makeCard();
    const done = await cardJob({ cards: { wipe: 'after-local' } });
    expect(done.state).toBe('done');
    expect(done.result).toMatchObject({ status: 'complete', files: 4, copied: 4, wiped: 4 });
    expect(await filesUnder(card)).toEqual([]);
    expect(wipeRows().map((w) => w.state)).toEqual(['deleted', 'deleted', 'deleted', 'deleted']);
  });

  test('a-card-job-keeps-its-files-when-only-cameras-are-wiped', async () => {
    await makeCard();
    const done = await cardJob({ cameras: { wipe: 'after-local' } });
    expect(done.state).toBe('done');
    expect(done.result).toMatchObject({ copied: 4 });
    expect(done.result?.wiped).toBeUndefined();
    expect(await filesUnder(card)).toHaveLength(4);
  });

  test('a-card-job-whose-wipe-is-refused-fails-with-the-reason', async () => {
    await makeCard();
    const view = join(work.path, 'ro-card');
    await mkdir(view);
    execFileSync('mount', ['--bind', card, view]);
    mounts.push(view);
    execFileSync('mount', ['-o', 'remount,bind,ro', view]);
    card = view;
    const done = await cardJob({ cards: { wipe: 'after-local' } });
    expect(done.result).toMatchObject({ status: 'failed', copied: 4, wiped: 0 });
    expect(done.result?.errors).toEqual([expect.objectContaining({ code: 'SOURCE_DELETE_FAILED', message: expect.stringContaining('nothing wiped') })]);
    expect(await filesUnder(view)).toHaveLength(4);
  });

  test('a-card-job-waiting-for-the-cloud-enters-that-phase-once-however-often-it-looks-at-the-queue', async () => {
    await makeCard();
    let looks = 0;
    const phases: string[] = [];
    const done = await cardJob(
      { cards: { wipe: 'after-cloud' } },
      {
        // No upload queue here: every look finds the files pending; the fifth gives up.
        wipe: (stop) => ({
          cards: 'after-cloud',
          cameras: 'never',
          cloud: { bucket: 'bucket', prefix: 'shots' },
          waitForCloud: async () => {
            if (++looks === 5) stop('test over');
          },
        }),
        onProgress: (job) => {
          if (job.progress?.phase !== undefined) phases.push(job.progress.phase);
        },
      },
    );
    expect(looks).toBe(5);
    expect(phases).toEqual(['waiting-for-cloud']);
    expect(done).toMatchObject({ state: 'cancelled', result: { copied: 4, wiped: 0 } });
    expect(await filesUnder(card)).toHaveLength(4);
  });

  test('after-cloud-without-an-upload-target-is-refused-when-the-daemon-starts', () => {
    expect(() => wipePolicies(normalizeConfig({ cards: { wipe: 'after-cloud' } }))).toThrow(/after-cloud.*needs \[upload\] target/);
    expect(wipePolicies(normalizeConfig({ cards: { wipe: 'after-cloud' }, upload: { target: 's3://bucket/shoots' } }))).toMatchObject({
      cards: 'after-cloud',
      cloud: { bucket: 'bucket', prefix: 'shoots' },
    });
  });
});
