import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { bytes, writeBytes } from './support/fixtures.js';
import { traceIngest, threadOf } from './support/strace.js';
import { tempDir } from './support/tree.js';

/**
 * On a card of many small files what a run spends per file decides, and each file-system call is a round
 * trip through the thread pool (a stall on a slow CPU): a file's copy takes the calls it needs and no more
 * per file. Watched with strace over one `shuttle ingest`, for a few files and for many.
 */
let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-per-file-');
});
afterEach(async () => {
  await work.cleanup();
});

interface Traced {
  lines: string[];
  /** Node's main thread: the process's first, the lowest id traced. */
  main: number;
  dest: string;
  stdout: string;
}

/** One `shuttle ingest` of `files` small files (sizes not a whole number of sectors) in one folder, traced. */
async function traced(files: number, opts: { destInAFile?: boolean; calls?: string[] } = {}): Promise<Traced> {
  const base = join(work.path, `${files}${opts.destInAFile ? '-refused' : ''}`);
  for (let i = 0; i < files; i++) {
    await writeBytes(join(base, 'card', 'DCIM', '100CANON', `IMG_${String(i + 1).padStart(4, '0')}.JPG`), bytes(30_001 + i, i + 1), new Date('2026-05-01T10:00:00Z'));
  }
  // A destination under a plain file: refused when the run opens it, so every file fails for want of one.
  if (opts.destInAFile) await writeFile(join(base, 'a-file'), '');
  const dest = opts.destInAFile ? join(base, 'a-file', 'dest') : join(base, 'dest');
  const t = await traceIngest(['openat', 'statx', 'newfstatat', 'lstat', 'fsync', 'fdatasync', 'pread64', ...(opts.calls ?? [])], {
    card: join(base, 'card'),
    dest,
    state: join(base, 'state'),
    trace: join(base, 'strace.txt'),
    logLevel: 'fatal',
  });
  expect(t.status === 0 || opts.destInAFile, t.stderr).toBe(true);
  return { lines: t.lines, main: t.main, dest, stdout: t.stdout };
}

const count = (t: Traced, re: RegExp): number => t.lines.filter((l) => re.test(l)).length;

/** The traced calls of `name` whole: a call strace shows in two parts (another thread ran meanwhile) joined into one line. */
function calls(t: Traced, name: string): string[] {
  const started = new Map<string, string>();
  const out: string[] = [];
  for (const l of t.lines) {
    const pid = l.slice(0, l.indexOf(' '));
    if (l.includes(`${name}(`) && l.endsWith('<unfinished ...>')) started.set(pid, l.slice(0, -'<unfinished ...>'.length));
    else if (l.includes(`<... ${name} resumed>`)) out.push(`${started.get(pid) ?? ''}${l.slice(l.indexOf('resumed>') + 'resumed>'.length)}`);
    else if (l.includes(`${name}(`)) out.push(l);
  }
  return out;
}
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('a-small-copy-opens-no-direct-handle-and-its-folder-is-neither-looked-up-nor-opened-per-file', async () => {
  // A missing strace fails here, loudly.
  execFileSync('strace', ['-V']);
  const two = await traced(2);
  const twelve = await traced(12);
  for (const [t, n] of [
    [two, 2],
    [twelve, 12],
  ] as const) {
    expect((JSON.parse(t.stdout) as { copied: number }).copied).toBe(n);
    // The temp, written through the page cache whole (no sector-sized block to write past it).
    // By path: a create strace shows in two parts has its result on another line, and the first file's
    // temp is created again (same name) once its folder is made.
    const temps = t.lines.map((l) => /openat\(.*\/(\.IMG_\d+\.JPG\.[0-9a-f]+\.shuttle-tmp)", O_(?:WRONLY|RDWR)\|O_CREAT\|O_EXCL/.exec(l)?.[1]).filter((p) => p !== undefined);
    expect(new Set(temps).size).toBe(n);
    expect(count(t, /openat\(.*\.shuttle-tmp", O_(?:WRONLY|RDWR).*O_DIRECT/)).toBe(0);
  }
  const day = `${escape(twelve.dest)}/2026/2026-05-01`;
  const dayTwo = `${escape(two.dest)}/2026/2026-05-01`;
  // The day's folder: opened to be synced once for the run (and listed once for stray temps), and looked
  // up only when it is made.
  const folderOpens = (t: Traced, folder: string): number => count(t, new RegExp(`openat\\(AT_FDCWD[^,]*, "${folder}", [^)]*O_DIRECTORY`));
  const folderLooks = (t: Traced, folder: string): number => count(t, new RegExp(`(statx|newfstatat|lstat)\\(AT_FDCWD[^,]*, "${folder}"`));
  expect(folderOpens(twelve, day)).toBe(folderOpens(two, dayTwo));
  expect(folderOpens(twelve, day)).toBeLessThanOrEqual(2);
  expect(folderLooks(twelve, day)).toBe(folderLooks(two, dayTwo));
  console.info(
    `day folder: opened ${folderOpens(two, dayTwo)} / ${folderOpens(twelve, day)}, looked up ${folderLooks(two, dayTwo)} / ${folderLooks(twelve, day)} times for 2 / 12 files`,
  );
}, 60_000);

test('files-failed-for-want-of-a-destination-add-no-fsync-of-the-journal-on-the-main-thread', async () => {
  execFileSync('strace', ['-V']);
  const walSyncsOnMain = (t: Traced): number => t.lines.filter((l) => threadOf(l) === t.main && /f(data)?sync\(.*journal\.sqlite-wal>/.test(l) && !l.includes('resumed>')).length;
  const two = await traced(2, { destInAFile: true });
  const twelve = await traced(12, { destInAFile: true });
  expect((JSON.parse(two.stdout) as { failed: number }).failed).toBe(2);
  expect((JSON.parse(twelve.stdout) as { failed: number }).failed).toBe(12);
  expect(walSyncsOnMain(twelve)).toBe(walSyncsOnMain(two));
  console.info(`journal log syncs on the main thread with every file failed: 2 files ${walSyncsOnMain(two)}, 12 files ${walSyncsOnMain(twelve)}`);
}, 60_000);

test('a-small-copy-is-read-in-lengths-near-its-size-from-the-card-and-back-from-the-destination', async () => {
  execFileSync('strace', ['-V']);
  const t = await traced(3);
  expect((JSON.parse(t.stdout) as { copied: number }).copied).toBe(3);
  // pread64(fd</path>, "", LENGTH, OFFSET) = N. The files are 30 001 to 30 003 bytes: the first sector
  // boundary past each is 32 768. A direct read asking for a whole staging or read-back block (1 or 4 MiB)
  // makes the kernel zero the rest of the block past the end of the file, many times the read's own cost.
  const reads = calls(t, 'pread64')
    .map((l) => /pread64\(\d+<([^>]*)>, [^,]*, (\d+), (\d+)\) = (\d+)/.exec(l))
    .filter((m) => m !== null)
    .map((m) => ({ path: m[1]!, length: Number(m[2]), offset: Number(m[3]), got: Number(m[4]) }));
  const card = reads.filter((r) => r.path.includes('/card/DCIM/'));
  const back = reads.filter((r) => r.path.endsWith('.shuttle-tmp'));
  // Each file read once from the card and once back from its temp, past the page cache.
  expect(card.filter((r) => r.got > 0)).toHaveLength(3);
  expect(back.filter((r) => r.got > 0)).toHaveLength(3);
  for (const r of [...card, ...back]) expect(r, JSON.stringify(r)).toMatchObject({ length: 32_768, offset: 0 });
}, 60_000);

test('a-small-copy-is-opened-once-at-its-destination-read-back-through-that-handle-and-published-in-one-call', async () => {
  execFileSync('strace', ['-V']);
  const t = await traced(4, { calls: ['fcntl', 'link', 'unlink', 'renameat2'] });
  expect((JSON.parse(t.stdout) as { copied: number }).copied).toBe(4);
  const temps = [...new Set(t.lines.map((l) => /"([^"]*\/\.IMG_\d+\.JPG\.[0-9a-f]+\.shuttle-tmp)"/.exec(l)?.[1]).filter((p) => p !== undefined))];
  expect(temps).toHaveLength(4);
  for (const temp of temps) {
    // Created once, to be written and read (the first file's create is tried again once its folder is made).
    const opens = t.lines.filter((l) => l.includes(`"${temp}"`) && l.includes('openat('));
    expect(
      opens.filter((l) => !l.includes('ENOENT')),
      opens.join('\n'),
    ).toHaveLength(1);
    for (const l of opens) expect(l).toMatch(/O_RDWR\|O_CREAT\|O_EXCL/);
    // Turned to O_DIRECT for its read-back, which reads it past the page cache through the same descriptor.
    expect(count(t, new RegExp(`fcntl\\(\\d+<${escape(temp)}>, F_SETFL, [^)]*O_DIRECT`))).toBe(1);
    expect(calls(t, 'pread64').filter((l) => l.includes(`<${temp}>`) && / = [1-9]\d*/.test(l))).toHaveLength(1);
    // One call gives it its final name; none links nor unlinks it.
    expect(count(t, new RegExp(`renameat2\\(.*"${escape(temp)}"`))).toBe(1);
    expect(count(t, new RegExp(`\\b(?:link|unlink)\\("${escape(temp)}"`))).toBe(0);
  }
}, 60_000);

test('small-files-published-while-others-wait-behind-them-share-their-folder-fsyncs-and-log-syncs', async () => {
  execFileSync('strace', ['-V']);
  const files = 40;
  const t = await traced(files);
  expect((JSON.parse(t.stdout) as { copied: number }).copied).toBe(files);
  const day = `${t.dest}/2026/2026-05-01`;
  const synced = (path: string): number => t.lines.filter((l) => l.includes(`fsync(`) && l.includes(`<${path}>`) && !l.includes('resumed>')).length;
  const folder = synced(day);
  const log = t.lines.filter((l) => /f(data)?sync\(.*journal\.sqlite-wal>/.test(l) && !l.includes('resumed>')).length;
  console.info(`${files} files: day folder synced ${folder} times, journal log ${log} times`);
  // A card's files come faster than they are checked: each name waits for those queued behind it, and one
  // fsync of the folder, one commit and one sync of the log serve them (at most UNSYNCED_NAMES each).
  expect(folder).toBeGreaterThanOrEqual(files / 8);
  expect(folder).toBeLessThanOrEqual(files / 3);
  expect(log).toBeLessThanOrEqual(files / 3 + 4);
}, 60_000);
