import { execFileSync } from 'node:child_process';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { normalizeConfig, type ConfigInput } from '../src/config/index.js';
import { Daemon } from '../src/daemon/daemon.js';
import { FolderSource } from '../src/device/card/folder-source.js';
import type { OpenOptions, SourceEntry, SourceItem } from '../src/device/source.js';
import { Journal } from '../src/store/journal.js';
import { pathJobKey } from '../src/daemon/devices.js';
import { formatDaemonStatus } from '../src/daemon/status-report.js';
import { ingestJson } from './support/cli.js';
import { captureLog } from './support/daemon-helpers.js';
import { bytes, writeBytes } from './support/fixtures.js';
import { GatedCard } from './support/gated-card.js';
import { ingestInto } from './support/ingest.js';
import { startHttpReceiver } from './support/notify-peers.js';
import { nextEvent, TestWatcher } from './support/test-watcher.js';
import { listTree, tempDir } from './support/tree.js';

/**
 * The field station's disk pressure and many cards: a card that cannot fit is refused before its first
 * copy (CLI and daemon: summary, log, journal, station state, notification), and two cards inserted at
 * once each get their own job and their own "safe to pull".
 */

let work: { path: string; cleanup: () => Promise<void> };
const mounts: string[] = [];
const closers: Array<() => Promise<void>> = [];
let daemon: Daemon | undefined;

beforeEach(async () => {
  work = await tempDir('shuttle-field-');
});
afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
  for (const c of closers.splice(0).reverse()) await c();
  for (const m of mounts.splice(0).reverse()) execFileSync('umount', ['-l', m]);
  await work.cleanup();
});

const WHEN = new Date('2026-03-14T12:00:00Z');

/** A card of `n` files of 2 MB each. */
async function card(name: string, n: number): Promise<string> {
  const dir = join(work.path, name);
  for (let i = 0; i < n; i++) await writeBytes(join(dir, `DCIM/100CANON/IMG_${1000 + i}.CR3`), bytes(2_000_000, i + name.length), WHEN);
  return dir;
}

/** A tmpfs of `mib` MiB: a small destination disk. */
async function smallDisk(name: string, mib: number): Promise<string> {
  const dir = join(work.path, name);
  await mkdir(dir);
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir]);
  mounts.push(dir);
  return dir;
}

/** The files under `dir`, without Shuttle's own folder (its marker). */
async function filesIn(dir: string): Promise<string[]> {
  return [...(await listTree(dir, { skipShuttle: true })).keys()];
}

function ingestRows(state: string): Array<{ status: string; summary: string }> {
  const db = new DatabaseSync(join(state, 'journal.sqlite'), { readOnly: true });
  try {
    return db.prepare('SELECT status, summary FROM ingests ORDER BY id').all() as Array<{ status: string; summary: string }>;
  } finally {
    db.close();
  }
}

describe('shuttle ingest: refuse to start what cannot fit', () => {
  test('a-card-bigger-than-one-destination-is-refused-before-any-copy-and-the-summary-log-and-journal-say-why', async () => {
    const src = await card('card', 3);
    const small = await smallDisk('small', 4);
    const big = join(work.path, 'big');
    const state = join(work.path, 'state');
    const r = await ingestJson([src, '--dest', small, '--dest', big, '--state', state]);
    expect(r.code).toBe(1);
    expect(r.summary).toMatchObject({ copied: 0, failed: 0, status: 'failed' });
    expect(r.summary.errors).toEqual([
      {
        destination: small,
        code: 'DEST_NO_SPACE',
        message: expect.stringMatching(/^refused: does not fit: .*small needs 6\.0 MB, but only [\d.]+ MB is free there; nothing was copied$/),
      },
    ]);
    // Not copied to the destination with room either: the card is refused as a whole.
    expect(await filesIn(big)).toEqual([]);
    expect(await filesIn(small)).toEqual([]);
    expect(r.stderr).toContain('refused: does not fit');
    const rows = ingestRows(state);
    expect(rows.map((x) => x.status)).toEqual(['failed']);
    expect(rows[0]!.summary).toContain('refused: does not fit');
  });

  test('two-destinations-on-one-small-disk-share-its-space', async () => {
    const src = await card('card', 3);
    const disk = await smallDisk('disk', 10);
    // Each 6 MB copy fits the 10 MiB disk alone; both do not.
    const r = await ingestJson([src, '--dest', join(disk, 'a'), '--dest', join(disk, 'b'), '--state', join(work.path, 'state')]);
    expect(r.code).toBe(1);
    expect(r.summary.errors).toEqual([
      expect.objectContaining({ code: 'DEST_NO_SPACE', message: expect.stringContaining(`${join(disk, 'a')} and ${join(disk, 'b')} needs 12.0 MB`) }),
    ]);
    for (const dest of ['a', 'b']) expect(await filesIn(join(disk, dest))).toEqual([]);
  });

  test('min-free-bytes-is-kept-and-a-card-that-fits-is-copied', async () => {
    const src = await card('card', 2);
    const disk = await smallDisk('disk', 8);
    const state = join(work.path, 'state');
    const cfg = join(work.path, 'shuttle.toml');
    // 4 MB of files on an 8 MiB disk: they fit, but not with 5 MiB kept free.
    await writeFile(cfg, `[[destinations]]\npath = "${disk}"\nmin_free_bytes = ${5 * 1024 * 1024}\n`);
    const refused = await ingestJson([src, '--config', cfg, '--state', state]);
    expect(refused.code).toBe(1);
    expect(refused.summary.errors).toEqual([
      expect.objectContaining({ code: 'DEST_NO_SPACE', message: expect.stringContaining('needs 4.0 MB and 5.2 MB kept free (min_free_bytes)') }),
    ]);
    await writeFile(cfg, `[[destinations]]\npath = "${disk}"\nmin_free_bytes = ${1024 * 1024}\n`);
    const copied = await ingestJson([src, '--config', cfg, '--state', state]);
    expect(copied.code, copied.stderr).toBe(0);
    expect(copied.summary).toMatchObject({ copied: 2, status: 'complete' });
  });
});

describe('the space check and the run share one listing', () => {
  test('the-source-is-listed-once-and-a-file-gone-after-the-check-is-a-named-failure-not-a-file-never-seen', async () => {
    const src = await card('card', 3);
    const dest = join(work.path, 'dest');
    let listings = 0;
    let removed = false;
    class CountingCard extends FolderSource {
      override async *list(signal?: AbortSignal): AsyncIterable<SourceEntry> {
        listings++;
        yield* super.list(signal);
        // After the space check summed the card, one of its files goes (a card reader's glitch, a pull).
        if (!removed) {
          removed = true;
          await rm(join(src, 'DCIM/100CANON/IMG_1001.CR3'));
        }
      }
    }
    const journal = Journal.open(join(work.path, 'state'));
    try {
      const summary = await ingestInto(new CountingCard(src), dest, journal, { refuseWhatCannotFit: true });
      expect(removed).toBe(true);
      expect(listings).toBe(1);
      expect(summary.copied).toBe(2);
      expect(summary.failed).toBe(1);
      expect(summary.errors.map((e) => e.path)).toContain('DCIM/100CANON/IMG_1001.CR3');
    } finally {
      journal.close();
    }
  });

  test('a-listing-taken-for-the-space-check-lets-go-of-each-entry-once-planned-so-a-copied-card-is-not-kept-while-the-next-is-copied', async () => {
    // The collector, reachable once the flag is set (V8 makes `gc` for contexts created after that).
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const first = await card('card-a', 4);
    const second = await card('card-b', 2);
    const entries: Array<WeakRef<SourceEntry>> = [];
    let alive: number | undefined;
    class WatchedCard extends FolderSource {
      override async *list(signal?: AbortSignal): AsyncIterable<SourceEntry> {
        for await (const e of super.list(signal)) {
          if (this.root === first) entries.push(new WeakRef(e));
          yield e;
        }
      }
      override open(item: SourceItem, options?: OpenOptions): Promise<Readable> {
        // The first card is copied and done: what still holds its entries holds them for nothing.
        if (this.root === second && alive === undefined) {
          gc();
          alive = entries.filter((r) => r.deref() !== undefined).length;
        }
        return super.open(item, options);
      }
    }
    const journal = Journal.open(join(work.path, 'state'));
    try {
      const summary = await ingestInto([new WatchedCard(first), new WatchedCard(second)], join(work.path, 'dest'), journal, { refuseWhatCannotFit: true });
      expect(summary).toMatchObject({ copied: 6, failed: 0 });
    } finally {
      journal.close();
    }
    expect(entries).toHaveLength(4);
    expect(alive).toBe(0);
  });
});

describe('the daemon', () => {
  function config(destinations: string[], extra: Partial<ConfigInput> = {}): ConfigInput {
    return {
      station: 'cart-1',
      destinations: destinations.map((path) => ({ path })),
      daemon: { control_socket: join(work.path, 'control.sock'), watchdog: false, usb_cameras: false, network_cameras: false },
      ...extra,
    };
  }

  async function start(input: ConfigInput, watcher: TestWatcher): Promise<Daemon> {
    daemon = await Daemon.start({ config: normalizeConfig(input), stateDir: join(work.path, 'state'), logger: captureLog().logger, env: {}, watchers: [watcher] });
    return daemon;
  }

  test('a-card-that-cannot-fit-turns-the-station-to-attention-with-the-reason-and-the-failure-notification-carries-it', async () => {
    const hook = await startHttpReceiver();
    closers.push(hook.close);
    const src = await card('EOS_DIGITAL', 3);
    const small = await smallDisk('small', 4);
    const big = join(work.path, 'big');
    const watcher = new TestWatcher();
    const d = await start(config([small, big], { notify: { retry_ms: 100, on: ['done', 'failed'], webhook: { url: `${hook.url}/hook` } } }), watcher);
    const finished = nextEvent(d.events, (e) => e.type === 'job.finished');
    watcher.card('EOS_DIGITAL', src);
    const done = await finished;
    expect(done).toMatchObject({ job: { state: 'failed', result: { copied: 0, errors: [{ code: 'DEST_NO_SPACE', message: expect.stringContaining('refused: does not fit') }] } } });
    const view = d.station.view;
    expect(view.state).toBe('attention');
    expect(view.reason).toMatch(/^failed: EOS_DIGITAL \(refused: does not fit: .*small needs/);
    expect(view.devices).toEqual([expect.objectContaining({ id: 'EOS_DIGITAL', state: 'attention' })]);
    const [sent] = await hook.requests.until('the failure notification', (rs) => rs.length >= 1);
    const body = JSON.parse(sent!.body) as { kind: string; title: string };
    expect(body.kind).toBe('failed');
    expect(body.title).toContain('refused: does not fit');
    expect(await filesIn(big)).toEqual([]);
    expect(await filesIn(small)).toEqual([]);
  });

  test('two-cards-at-once-each-get-a-job-the-second-waits-queued-for-the-shared-destinations-and-each-is-safe-to-pull-on-its-own', async () => {
    const dests = [join(work.path, 'a'), join(work.path, 'b')];
    const watcher = new TestWatcher();
    const d = await start(config(dests), watcher);
    const cards = [new GatedCard(await card('CARD_A', 2), 'CARD_A'), new GatedCard(await card('CARD_B', 2), 'CARD_B')];
    const started = nextEvent(d.events, (e) => e.type === 'job.started');
    for (const c of cards) watcher.events.attach({ id: c.uri, kind: 'card', label: c.uri.slice(-6), uri: c.uri, jobKey: pathJobKey(c.uri), open: async () => c });
    expect(await started).toMatchObject({ job: { label: 'CARD_A' } });
    await cards[0]!.listed(2);

    const states = () => Object.fromEntries(d.station.view.devices.map((x) => [x.label, x.state]));
    expect(states()).toEqual({ CARD_A: 'ingesting', CARD_B: 'queued' });
    const status = d.status();
    const [jobA, jobB] = status.jobs.active;
    expect(jobA).toMatchObject({ label: 'CARD_A', state: 'running' });
    expect(jobB).toMatchObject({ label: 'CARD_B', state: 'queued', waitingFor: expect.stringMatching(/^destination .* \(used by job \d+\)$/) });
    const lines = formatDaemonStatus(status);
    expect(lines).toContain(`device CARD_B (card, test) → job ${jobB!.id}: queued`);
    expect(lines.some((l) => l.startsWith(`job ${jobB!.id} queued: CARD_B — waiting for destination`))).toBe(true);

    // Card A finishes: it is safe to pull while card B, which starts now, is still being copied.
    const aDone = nextEvent(d.events, (e) => e.type === 'job.finished');
    const bStarted = nextEvent(d.events, (e) => e.type === 'job.started');
    cards[0]!.release(2);
    expect(await aDone).toMatchObject({ job: { label: 'CARD_A', state: 'done' } });
    expect(await bStarted).toMatchObject({ job: { label: 'CARD_B' } });
    expect(states()).toEqual({ CARD_A: 'safe-to-pull', CARD_B: 'ingesting' });
    expect(d.station.view.state).toBe('ingesting');

    const bDone = nextEvent(d.events, (e) => e.type === 'job.finished');
    cards[1]!.release(2);
    expect(await bDone).toMatchObject({ job: { label: 'CARD_B', state: 'done', result: { copied: 2 } } });
    expect(states()).toEqual({ CARD_A: 'safe-to-pull', CARD_B: 'safe-to-pull' });
    expect(d.station.view.state).toBe('safe-to-pull');
    for (const dest of dests) expect((await readdir(dest)).filter((n) => !n.startsWith('.'))).not.toEqual([]);
  });
});
