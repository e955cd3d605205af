import { afterAll, beforeAll, expect, test } from 'vitest';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { CRASH_POINTS } from '../src/ingest/crash-points.js';
import { ingestJson, runCli, spawnCli } from './support/cli.js';
import { bytes, writeBytes, writeJpeg } from './support/fixtures.js';
import { crashPointCalls } from './support/test-hooks.js';
import { contentMultiset, listTree, tempDir, tempFilesUnder } from './support/tree.js';

/**
 * SIGKILL `shuttle ingest` at random instants and at every step of a durable copy, then run it again:
 * every source file must end up verified exactly once at each destination with the right bytes, no
 * temp file may remain, the journal must be consistent and the manifests must cover every file.
 */
let work: { path: string; cleanup: () => Promise<void> };
let src: string;
let sourceTree: Awaited<ReturnType<typeof listTree>>;
let fullRunMs = 0;

beforeAll(async () => {
  work = await tempDir('shuttle-crash-');
  src = join(work.path, 'card');
  for (let i = 1; i <= 8; i++) {
    const dir = `DCIM/10${i % 2}CANON`;
    await writeJpeg(join(src, dir, `IMG_${1000 + i}.JPG`), { date: `2026:05:0${1 + (i % 3)} 10:00:00`, seed: i });
    await writeBytes(join(src, dir, `IMG_${1000 + i}.CR2`), bytes(i % 3 === 0 ? 6_000_000 : 700_000, 100 + i));
  }
  for (let i = 0; i < 8; i++) await writeBytes(join(src, `MISC/note${i}.txt`), `note ${i}\n`, new Date('2026-05-01T08:00:00Z'));
  sourceTree = await listTree(src);
  const t0 = Date.now();
  const probe = join(work.path, 'probe');
  const r = await ingestJson([src, '--dest', join(probe, 'a'), '--state', join(probe, 'state')]);
  expect(r.code, r.stderr).toBe(0);
  fullRunMs = Date.now() - t0;
}, 120_000);

afterAll(async () => {
  await work.cleanup();
});

/**
 * Where a kill found the run: before the journal knew of it, mid-run (its ingest started and not
 * finished: work remained), after it had finished, or not at all (the run ended on its own first).
 */
type Kill = 'before-start' | 'mid-run' | 'after-finish' | 'missed';

/** The last ingest the journal holds, finished or not (none before the journal knew of the run). */
function lastIngest(state: string): { finished: boolean } | undefined {
  if (!existsSync(join(state, 'journal.sqlite'))) return undefined;
  const db = new DatabaseSync(join(state, 'journal.sqlite'));
  try {
    // Killed while the journal was being made: no tables yet.
    if (db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ingests'`).get() === undefined) return undefined;
    const row = db.prepare('SELECT finished_at FROM ingests ORDER BY id DESC LIMIT 1').get() as { finished_at: string | null } | undefined;
    return row === undefined ? undefined : { finished: row.finished_at !== null };
  } finally {
    db.close();
  }
}

/**
 * One run of `shuttle ingest` killed with SIGKILL (at a crash point, or by a timer), then, if the kill
 * landed, a rerun that must complete exactly once. A run that ended on its own is no trial: nothing
 * more is checked.
 */
async function trial(name: string, kill: { afterMs?: number; crashAt?: string; loseUnsynced?: boolean }): Promise<{ where: Kill; ranMs?: number }> {
  const base = join(work.path, name);
  const dests = [join(base, 'a'), join(base, 'b')];
  const state = join(base, 'state');
  await mkdir(base, { recursive: true });
  const args = ['ingest', src, '--dest', dests[0]!, '--dest', dests[1]!, '--state', state, '--json'];
  const timed = kill.afterMs;
  const child = spawnCli(args, { env: { SHUTTLE_TEST_CRASH_AT: kill.crashAt, ...(timed !== undefined ? { SHUTTLE_LOG_LEVEL: 'info' } : {}) } });
  let stderr = '';
  let startedAt: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  child.stdout!.resume();
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    // A timed kill counts from the run's start, not from the spawn: start-up on a loaded machine took most
    // of the window. The journal holds the run before any destination is readied.
    if (timed !== undefined && startedAt === undefined && stderr.includes('"msg":"destination ready"')) {
      startedAt = performance.now();
      timer = setTimeout(() => child.kill('SIGKILL'), timed);
    }
  });
  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.on('close', (code, signal) => res({ code, signal })));
  clearTimeout(timer);
  const ranMs = startedAt === undefined ? undefined : performance.now() - startedAt;
  if (timed !== undefined) expect(ranMs, `${name}: no "destination ready" line: ${stderr}`).toBeDefined();
  if (kill.crashAt !== undefined) {
    // The crash point fired (it says so before it kills): not some other death, nor a run that never got there.
    expect(exit.signal, `${name}: ${stderr}`).toBe('SIGKILL');
    expect(stderr, name).toContain(`crash point ${kill.crashAt} reached`);
  }
  if (exit.signal !== 'SIGKILL') {
    expect(exit.code, `${name}: ${stderr}`).toBe(0);
    await rm(base, { recursive: true, force: true });
    return { where: 'missed', ranMs };
  }
  const ingest = lastIngest(state);
  const result: Kill = ingest === undefined ? 'before-start' : ingest.finished ? 'after-finish' : 'mid-run';
  if (kill.crashAt !== undefined) expect(result, name).toBe('mid-run');
  if (kill.loseUnsynced === true) {
    // A power cut, not a kill: the journal loses what was committed without an fsync (the rows naming
    // the folders temps are written in), while the temps themselves may survive on the disk.
    expect((await Promise.all(dests.map(tempFilesUnder))).flat().length, name).toBeGreaterThan(0);
    const db = new DatabaseSync(join(state, 'journal.sqlite'));
    try {
      expect(Number(db.prepare('DELETE FROM temp_folders').run().changes), name).toBeGreaterThan(0);
    } finally {
      db.close();
    }
  }

  const rerun = await ingestJson([src, '--dest', dests[0]!, '--dest', dests[1]!, '--state', state]);
  expect(rerun.code, `${name}: ${rerun.stderr}`).toBe(0);
  expect(rerun.summary.failed).toBe(0);
  for (const d of dests) {
    const tree = await listTree(d, { skipShuttle: true });
    expect(contentMultiset(tree), `${name}: ${d}`).toEqual(contentMultiset(sourceTree));
    expect(await tempFilesUnder(d), name).toEqual([]);
    const v = await runCli(['verify', d, '--strict', '--json']);
    expect(v.code, `${name}: verify ${d}: ${v.stdout} ${v.stderr}`).toBe(0);
  }
  const status = await runCli(['status', '--json', '--state', state]);
  const s = JSON.parse(status.stdout) as { copies: Record<string, number>; problems: string[] };
  expect(s.problems, name).toEqual([]);
  expect(s.copies['verified'], name).toBe(sourceTree.size * 2);
  await rm(base, { recursive: true, force: true });
  return { where: result, ranMs };
}

test('the-crash-points-tested-are-exactly-those-the-code-calls', async () => {
  const calls = await crashPointCalls();
  expect([...calls.keys()].sort()).toEqual([...CRASH_POINTS].sort());
});

// The n-th time: the first file, a later one (while other files are in flight), the second destination.
// The wipe's point is not reached without a wipe policy: test/wipe.test.ts crashes there.
test.each(CRASH_POINTS.filter((p) => p !== 'wipe-begun').flatMap((p) => [`${p}:1`, p === 'manifest-start' || p === 'generation-written' ? `${p}:2` : `${p}:7`]))(
  'crash-at-%s-then-rerun-completes-exactly-once',
  async (crashAt) => {
    await trial(`point-${crashAt.replace(':', '-')}`, { crashAt });
  },
  120_000,
);

test.each(['temp-created:1', 'written:7'])(
  'a-power-cut-at-%s-that-loses-the-unsynced-temp-rows-leaves-no-temp-after-the-rerun',
  async (crashAt) => {
    await trial(`power-${crashAt.replace(':', '-')}`, { crashAt, loseUnsynced: true });
  },
  120_000,
);

test('temps-a-crash-left-are-removed-when-the-destination-is-next-opened-even-by-a-run-that-writes-elsewhere', async () => {
  const base = join(work.path, 'elsewhere');
  const dests = [join(base, 'a'), join(base, 'b')];
  const state = join(base, 'state');
  const killed = await runCli(['ingest', src, '--dest', dests[0]!, '--dest', dests[1]!, '--state', state, '--json'], { env: { SHUTTLE_TEST_CRASH_AT: 'temp-created:1' } });
  expect(killed.signal, killed.stderr).toBe('SIGKILL');
  const left = await tempFilesUnder(dests[0]!);
  expect(left).toHaveLength(1);
  // Another card, whose one file goes to a folder the killed run never wrote in: the sweep of the folders
  // a run writes in does not reach the temp; the journal's record of the killed run's folder does.
  const other = join(base, 'other-card');
  await writeBytes(join(other, 'DCIM/100CANON/NOTE.TXT'), 'another card\n', new Date('2027-01-02T08:00:00Z'));
  const rerun = await ingestJson([other, '--dest', dests[0]!, '--dest', dests[1]!, '--state', state]);
  expect(rerun.code, rerun.stderr).toBe(0);
  expect(rerun.summary.failed).toBe(0);
  for (const d of dests) {
    expect(await tempFilesUnder(d)).toEqual([]);
    expect([...(await listTree(d, { skipShuttle: true })).keys()]).toEqual(['2027/2027-01-02/NOTE.TXT']);
  }
  await rm(base, { recursive: true, force: true });
}, 120_000);

test('a-folder-of-temps-that-could-not-be-swept-keeps-its-record-through-a-run-that-writes-elsewhere', async () => {
  const base = join(work.path, 'unsweepable');
  const dest = join(base, 'a');
  const state = join(base, 'state');
  const recorded = (): string[] => {
    const db = new DatabaseSync(join(state, 'journal.sqlite'));
    try {
      return (db.prepare('SELECT path FROM temp_folders ORDER BY path').all() as { path: string }[]).map((r) => r.path);
    } finally {
      db.close();
    }
  };
  const killed = await runCli(['ingest', src, '--dest', dest, '--state', state, '--json'], { env: { SHUTTLE_TEST_CRASH_AT: 'temp-created:1' } });
  expect(killed.signal, killed.stderr).toBe('SIGKILL');
  const [temp, ...more] = await tempFilesUnder(dest);
  expect(more).toEqual([]);
  const folder = dirname(temp!);
  expect(recorded()).toEqual([relative(dest, folder)]);
  // The folder cannot be listed at the next opening: a file stands where it was.
  await rename(folder, `${folder}.aside`);
  await writeFile(folder, 'not a folder\n');
  const other = join(base, 'other-card');
  await writeBytes(join(other, 'DCIM/100CANON/NOTE.TXT'), 'another card\n', new Date('2027-01-02T08:00:00Z'));
  const elsewhere = await ingestJson([other, '--dest', dest, '--state', state]);
  expect(elsewhere.code, elsewhere.stderr).toBe(0);
  expect(elsewhere.stderr).toContain('could not sweep the folder of stray temp files');
  // This run swept and wrote only its own folder: the record it could not act on is still there.
  expect(recorded()).toEqual([relative(dest, folder)]);
  // Once the folder can be listed again, the next opening removes the temp and forgets the record.
  await rm(folder);
  await rename(`${folder}.aside`, folder);
  const again = await ingestJson([other, '--dest', dest, '--state', state]);
  expect(again.code, again.stderr).toBe(0);
  expect(await tempFilesUnder(dest)).toEqual([]);
  expect(recorded()).toEqual([]);
  await rm(base, { recursive: true, force: true });
}, 120_000);

test('thirty-random-sigkills-mid-run-then-rerun-completes-exactly-once', async () => {
  const wanted = 30;
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const outcomes: Record<Kill, number> = { 'before-start': 0, 'mid-run': 0, 'after-finish': 0, missed: 0 };
  // A kill is drawn within the time a run takes from its start (see trial). The probe's time may be far
  // off when the machine's load changes, so a run that ended before its kill sets a shorter window: kills
  // that land after the end (not counted) stay few whether the machine speeds up or slows down.
  let windowMs = fullRunMs;
  for (let i = 0; outcomes['mid-run'] < wanted; i++) {
    expect(i, `only ${outcomes['mid-run']} of ${i} random kills landed mid-run: ${JSON.stringify(outcomes)}`).toBeLessThan(3 * wanted);
    const afterMs = Math.floor(rand() * windowMs);
    const { where, ranMs } = await trial(`random-${i}`, { afterMs });
    outcomes[where]++;
    if (where === 'missed') windowMs = Math.min(windowMs, ranMs!);
    if (where === 'after-finish') windowMs = Math.min(windowMs, afterMs);
  }
  expect(outcomes['mid-run']).toBe(wanted);
  console.info(`random kills: ${JSON.stringify(outcomes)}`);
}, 1_500_000);
