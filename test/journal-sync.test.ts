import { existsSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, expect, test, vi } from 'vitest';
import { Journal } from '../src/store/journal.js';
import { bytes, writeBytes } from './support/fixtures.js';
import { ingestInto } from './support/ingest.js';
import { tempDir } from './support/tree.js';

/**
 * The journal's per-file records are committed without an fsync on the main thread; the write-ahead log is
 * synced from the thread pool, one sync for the commits made before it began, and a file is reported only
 * after such a sync. The syncs of every `…-wal` file opened through node:fs/promises are watched here.
 */
const wal = vi.hoisted(() => ({
  /** Called as a sync of a log begins; what it returns is called once that sync has ended, and may hold its end back. */
  onSync: undefined as undefined | ((path: string) => () => Promise<unknown> | unknown),
  /** The same for the syncs of folders (opened with O_DIRECTORY); what it returns may hold the sync's end back. */
  onFolderSync: undefined as undefined | ((path: string) => () => Promise<void> | void),
  /** Called as a file opened by path to be synced (adoptExisting's) is synced. */
  onFileSync: undefined as undefined | ((path: string) => void),
  /** Called once a link(2), or renameat2(2) through the addon, has made a new name. */
  onLink: undefined as undefined | ((path: string) => void),
}));
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  const { constants } = await import('node:fs');
  const open = async (...args: Parameters<typeof fs.open>): Promise<FileHandle> => {
    const handle = await fs.open(...args);
    const path = String(args[0]);
    if (path.endsWith('-wal')) {
      const sync = handle.sync.bind(handle);
      handle.sync = async () => {
        const ended = wal.onSync?.(path);
        await sync();
        await ended?.();
      };
    }
    if (args[1] === 'r') {
      const sync = handle.sync.bind(handle);
      handle.sync = async () => {
        wal.onFileSync?.(path);
        await sync();
      };
    }
    if (typeof args[1] === 'number' && (args[1] & constants.O_DIRECTORY) !== 0) {
      const sync = handle.sync.bind(handle);
      handle.sync = async () => {
        const ended = wal.onFolderSync?.(path);
        await sync();
        await ended?.();
      };
    }
    return handle;
  };
  const link = async (...args: Parameters<typeof fs.link>): Promise<void> => {
    await fs.link(...args);
    wal.onLink?.(String(args[1]));
  };
  return { ...fs, open, link, default: { ...fs, open, link } };
});

vi.mock('../src/io/native-fs.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/io/native-fs.js')>();
  const nativeFs = (): ReturnType<typeof real.nativeFs> => {
    const fs = real.nativeFs();
    return (
      fs && {
        ...fs,
        renameNoReplace: async (from: string, to: string) => {
          await fs.renameNoReplace(from, to);
          wal.onLink?.(to);
        },
      }
    );
  };
  return { ...real, nativeFs };
});

let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-journal-sync-');
});
afterEach(async () => {
  wal.onSync = undefined;
  wal.onFolderSync = undefined;
  wal.onLink = undefined;
  wal.onFileSync = undefined;
  await work.cleanup();
});

/** Rows of the run's journal, read on a connection of the test's own. */
function journalRows(sql: string): unknown[] {
  const db = new DatabaseSync(join(work.path, 'state', 'journal.sqlite'), { readOnly: true });
  try {
    return db.prepare(sql).all();
  } finally {
    db.close();
  }
}

test('synced-resolves-after-a-log-sync-that-began-after-the-call-and-one-sync-serves-every-call-made-while-another-ran', async () => {
  const journal = Journal.open(join(work.path, 'state'));
  const events: string[] = [];
  let n = 0;
  wal.onSync = (path) => {
    const i = ++n;
    expect(path).toBe(`${journal.path}-wal`);
    events.push(`sync ${i} begins`);
    return () => events.push(`sync ${i} ends`);
  };
  journal.txUnsynced(() => journal.upsertSource({ kind: 'card', key: 'card:A', label: 'A', details: {} }));
  const first = journal.synced().then(() => events.push('first durable'));
  // Committed while the first sync may already be under way: both wait for the next one, which they share.
  journal.txUnsynced(() => journal.upsertSource({ kind: 'card', key: 'card:B', label: 'B', details: {} }));
  const second = journal.synced();
  journal.txUnsynced(() => journal.upsertSource({ kind: 'card', key: 'card:C', label: 'C', details: {} }));
  const third = journal.synced();
  expect(third).toBe(second);
  await Promise.all([first, second.then(() => events.push('second and third durable'))]);
  journal.close();
  expect(events).toEqual(['sync 1 begins', 'sync 1 ends', 'first durable', 'sync 2 begins', 'sync 2 ends', 'second and third durable']);
});

test('a-log-sync-under-way-that-began-after-the-last-commit-serves-a-later-call-without-another-sync', async () => {
  const journal = Journal.open(join(work.path, 'state'));
  let syncs = 0;
  wal.onSync = () => {
    syncs++;
    return () => undefined;
  };
  // A batch's records are committed together, then each asks for the log to be synced.
  journal.txUnsynced(() => journal.upsertSource({ kind: 'card', key: 'card:A', label: 'A', details: {} }));
  const first = journal.synced();
  const second = journal.synced();
  expect(second).toBe(first);
  await Promise.all([first, second]);
  journal.close();
  expect(syncs).toBe(1);
});

test('an-ingest-reports-each-file-only-after-a-log-sync-that-began-once-its-verified-record-was-committed', async () => {
  const src = join(work.path, 'card');
  const names = Array.from({ length: 6 }, (_, i) => `IMG_000${i + 1}.JPG`);
  for (const [i, name] of names.entries()) await writeBytes(join(src, name), bytes(200_000 + i * 1000, i + 1));
  const journal = Journal.open(join(work.path, 'state'));
  // A reader of its own on the journal's file sees what each sync covers as the sync begins.
  const db = new DatabaseSync(join(work.path, 'state', 'journal.sqlite'), { readOnly: true });
  const verifiedNow = (): string[] => (db.prepare(`SELECT rel_path FROM files WHERE state = 'verified'`).all() as Array<{ rel_path: string }>).map((r) => r.rel_path);
  const durable = new Set<string>();
  let syncs = 0;
  wal.onSync = () => {
    syncs++;
    const covered = verifiedNow();
    return () => {
      for (const p of covered) durable.add(p);
    };
  };
  const reported: string[] = [];
  const summary = await ingestInto(src, join(work.path, 'dest'), journal, {
    onFile: (f) => {
      expect(durable.has(f.path), `${f.path} reported before its record was synced`).toBe(true);
      reported.push(f.path);
    },
  });
  db.close();
  journal.close();
  expect(summary).toMatchObject({ files: 6, copied: 6, failed: 0, errors: [] });
  expect(reported).toEqual(names);
  expect(syncs).toBeGreaterThan(0);
});

test('a-copy-is-recorded-only-after-an-fsync-of-its-folder-that-began-once-its-name-was-made-and-one-folder-fsync-serves-the-names-made-while-another-ran', async () => {
  const src = join(work.path, 'card');
  const names = Array.from({ length: 8 }, (_, i) => `IMG_000${i + 1}.JPG`);
  for (const [i, name] of names.entries()) await writeBytes(join(src, name), bytes(100_000 + i * 1000, i + 1));
  const dest = join(work.path, 'dest');
  const journal = Journal.open(join(work.path, 'state'));
  const db = new DatabaseSync(join(work.path, 'state', 'journal.sqlite'), { readOnly: true });
  const recordedNow = (): string[] => (db.prepare(`SELECT dest_path FROM copies WHERE state = 'verified'`).all() as Array<{ dest_path: string }>).map((r) => r.dest_path);
  // The names a folder fsync that has ended covers: those linked before it began.
  const linked: string[] = [];
  const durable = new Set<string>();
  const recordedBeforeDurable = (): string[] => recordedNow().filter((p) => !durable.has(p));
  const violations: string[] = [];
  let folderSyncs = 0;
  // The first sync of the destination's folder after the first name was made ends only once two more
  // names are made: those two then share the next sync, and none of the three may be recorded before the
  // sync that covers it has ended.
  let twoMoreLinked: (() => void) | undefined;
  let holding: number | undefined;
  let lastCovered = 0;
  wal.onLink = (path) => {
    // Only the copies' names (not the marker's nor the manifest's).
    if (!path.startsWith(`${dest}/IMG_`)) return;
    linked.push(path);
    violations.push(...recordedBeforeDurable());
    if (holding !== undefined && linked.length === holding + 2) twoMoreLinked?.();
  };
  wal.onFolderSync = (path) => {
    if (path !== dest) return () => undefined;
    violations.push(...recordedBeforeDurable());
    const covered = linked.map((p) => p.slice(dest.length + 1));
    // Counted when it covers names no earlier sync began after (the manifest's syncs cover none).
    if (linked.length === lastCovered) return () => undefined;
    lastCovered = linked.length;
    folderSyncs++;
    let held: Promise<void> | undefined;
    // Names published while files wait behind them share a sync: held only while two more can still come.
    if (holding === undefined && linked.length <= names.length - 2) {
      holding = linked.length;
      held = new Promise<void>((resolve) => (twoMoreLinked = resolve));
    }
    return async () => {
      await held;
      for (const p of covered) durable.add(p);
    };
  };
  wal.onSync = () => {
    violations.push(...recordedBeforeDurable());
    return () => undefined;
  };
  const reported: string[] = [];
  const summary = await ingestInto(src, dest, journal, {
    onFile: (f) => {
      violations.push(...recordedBeforeDurable());
      expect(durable.has(f.path), `${f.path} reported before its folder was synced`).toBe(true);
      reported.push(f.path);
    },
  });
  violations.push(...recordedBeforeDurable());
  db.close();
  journal.close();
  expect(summary).toMatchObject({ files: 8, copied: 8, failed: 0, errors: [] });
  expect(reported).toEqual(names);
  expect(violations, 'copies recorded before an fsync of their folder covered their names').toEqual([]);
  expect(linked).toHaveLength(8);
  // The two names made while the first sync was held share one sync: fewer syncs covering new names than names.
  expect(folderSyncs).toBeGreaterThan(0);
  expect(folderSyncs).toBeLessThan(8);
});

/**
 * Runs an ingest of `src` into `dest` whose first sync of the destination's folder after a copy's name was
 * made is held until `release` says so (asked as it begins, at each link and at each later sync of that folder).
 */
async function ingestHoldingFirstFolderSync(src: string, dest: string, release: (e: { links: number; syncsSince: number; fileSyncs: number }) => boolean) {
  const journal = Journal.open(join(work.path, 'state'));
  let links = 0;
  let syncsSince = 0;
  let fileSyncs = 0;
  let held: (() => void) | undefined;
  let holding = false;
  const check = (): void => {
    if (held && release({ links, syncsSince, fileSyncs })) {
      held();
      held = undefined;
    }
  };
  wal.onLink = (path) => {
    if (!path.startsWith(`${dest}/`) || path.includes('/ascmhl/') || path.includes('/.shuttle/')) return;
    links++;
    check();
  };
  wal.onFileSync = (path) => {
    if (!path.startsWith(`${dest}/`)) return;
    fileSyncs++;
    check();
  };
  wal.onFolderSync = (path) => {
    if (path !== dest || links === 0) return () => undefined;
    if (holding) {
      syncsSince++;
      check();
      return () => undefined;
    }
    holding = true;
    // Names published while files wait behind them are synced together: the next may be made already.
    if (release({ links, syncsSince, fileSyncs })) return () => undefined;
    const wait = new Promise<void>((resolve) => (held = resolve));
    return () => wait;
  };
  try {
    const summary = await ingestInto(src, dest, journal);
    return { summary, journal };
  } catch (e) {
    journal.close();
    throw e;
  }
}

test('a-shot-whose-first-file-took-a-collision-suffix-gives-it-to-its-pair-while-that-files-record-waits-for-its-folder-fsync', async () => {
  const src = join(work.path, 'card');
  const dest = join(work.path, 'dest');
  await writeBytes(join(src, 'IMG_0001.CR2'), bytes(50_000, 1));
  await writeBytes(join(src, 'IMG_0001.JPG'), bytes(20_000, 2));
  // Another file already has the JPEG's name (the JPEG goes first): the shot takes suffix 1, both its files.
  await writeBytes(join(dest, 'IMG_0001.JPG'), bytes(20_000, 3));
  // The JPEG's record is not committed before the RAW is published.
  const { summary, journal } = await ingestHoldingFirstFolderSync(src, dest, ({ links }) => links >= 2);
  journal.close();
  expect(summary).toMatchObject({ files: 2, copied: 2, failed: 0, errors: [] });
  const rows = journalRows(`SELECT f.rel_path, c.dest_path FROM copies c JOIN files f ON f.id = c.file_id WHERE c.state = 'verified' ORDER BY f.rel_path`);
  expect(rows).toEqual([
    { rel_path: 'IMG_0001.CR2', dest_path: 'IMG_0001_1.CR2' },
    { rel_path: 'IMG_0001.JPG', dest_path: 'IMG_0001_1.JPG' },
  ]);
});

test('a-file-with-the-content-of-one-whose-record-waits-for-its-folder-fsync-is-adopted-not-stored-again', async () => {
  const src = join(work.path, 'card');
  const dest = join(work.path, 'dest');
  await writeBytes(join(src, 'A.BIN'), bytes(40_000, 7));
  await writeBytes(join(src, 'B.BIN'), bytes(40_000, 7));
  // Released once B is placed: by adoption (which syncs the file and its folder itself) or, wrongly, by a link of its own.
  const { summary, journal } = await ingestHoldingFirstFolderSync(src, dest, ({ links, syncsSince, fileSyncs }) => links >= 2 || syncsSince >= 1 || fileSyncs >= 1);
  journal.close();
  expect(summary).toMatchObject({ files: 2, copied: 2, failed: 0, errors: [] });
  const rows = journalRows(`SELECT f.rel_path, c.dest_path, c.dedup FROM copies c JOIN files f ON f.id = c.file_id WHERE c.state = 'verified' ORDER BY f.rel_path`);
  expect(rows).toEqual([
    { rel_path: 'A.BIN', dest_path: 'A.BIN', dedup: 0 },
    { rel_path: 'B.BIN', dest_path: 'A.BIN', dedup: 1 },
  ]);
});

test('records-ready-in-the-same-turn-are-committed-in-one-transaction', async () => {
  const journal = Journal.open(join(work.path, 'state'));
  try {
    const a = journal.txUnsyncedSoon(() => journal.upsertSource({ kind: 'card', key: 'card:A', label: 'A', details: {} }));
    const b = journal.txUnsyncedSoon(() => {
      throw new Error('refused');
    });
    // One transaction: the second's failure takes the first's row with it.
    await expect(a).rejects.toThrow('refused');
    await expect(b).rejects.toThrow('refused');
    const c = await journal.txUnsyncedSoon(() => journal.upsertSource({ kind: 'card', key: 'card:C', label: 'C', details: {} }));
    expect(c).toBeGreaterThan(0);
    expect(journal.destinations()).toEqual([]);
  } finally {
    journal.close();
  }
  expect(journalRows('SELECT key FROM sources ORDER BY key')).toEqual([{ key: 'card:C' }]);
});

test('records-made-ready-one-after-another-while-the-log-is-synced-are-committed-in-one-transaction-once-the-sync-ends', async () => {
  const journal = Journal.open(join(work.path, 'state'));
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let began!: () => void;
  const begun = new Promise<void>((resolve) => (began = resolve));
  wal.onSync = () => {
    began();
    return () => held;
  };
  const reader = new DatabaseSync(journal.path, { readOnly: true });
  const sources = (): unknown[] => reader.prepare('SELECT key FROM sources ORDER BY key').all();
  try {
    journal.txUnsynced(() => journal.upsertSource({ kind: 'card', key: 'card:A', label: 'A', details: {} }));
    const first = journal.synced();
    await begun;
    const b = journal.txUnsyncedSoon(() => journal.upsertSource({ kind: 'card', key: 'card:B', label: 'B', details: {} }));
    b.catch(() => undefined);
    // Turns of the event loop pass while the sync runs: B waits, and C, made ready later, joins it.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(sources()).toEqual([{ key: 'card:A' }]);
    const c = journal.txUnsyncedSoon(() => {
      throw new Error('refused');
    });
    c.catch(() => undefined);
    release();
    await first;
    // One transaction: C's failure takes B's row with it.
    await expect(b).rejects.toThrow('refused');
    await expect(c).rejects.toThrow('refused');
    expect(sources()).toEqual([{ key: 'card:A' }]);
  } finally {
    reader.close();
    journal.close();
  }
});

test('a-copy-whose-folder-fsync-fails-is-recorded-failed-not-verified-and-the-other-files-go-on', async () => {
  const src = join(work.path, 'card');
  const dest = join(work.path, 'dest');
  await writeBytes(join(src, 'A.BIN'), bytes(30_000, 1));
  await writeBytes(join(src, 'B.BIN'), bytes(30_000, 2));
  const journal = Journal.open(join(work.path, 'state'));
  let failedOnce = false;
  wal.onFolderSync = (path) => {
    // The first sync of A's folder once A's name is there: the disk refuses it.
    if (path !== join(dest, 'A') || failedOnce || !existsSync(join(dest, 'A', 'A.BIN'))) return () => undefined;
    failedOnce = true;
    return () => {
      throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    };
  };
  const reported: Array<{ path: string; state: string }> = [];
  const summary = await ingestInto(src, dest, journal, { template: '{stem}/{name}', onFile: (f) => reported.push({ path: f.path, state: f.state }) });
  journal.close();
  expect(failedOnce).toBe(true);
  expect(summary).toMatchObject({ files: 2, copied: 1, failed: 1 });
  expect(summary.errors).toEqual([expect.objectContaining({ path: 'A.BIN', code: 'DEST_WRITE_FAILED' })]);
  expect(reported).toEqual([
    { path: 'A.BIN', state: 'failed' },
    { path: 'B.BIN', state: 'verified' },
  ]);
  expect(journalRows(`SELECT f.rel_path, c.state FROM copies c JOIN files f ON f.id = c.file_id ORDER BY f.rel_path`)).toEqual([
    { rel_path: 'A.BIN', state: 'failed' },
    { rel_path: 'B.BIN', state: 'verified' },
  ]);
});
