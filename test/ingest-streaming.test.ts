import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { EventEmitter, once } from 'node:events';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pino } from 'pino';
import { FolderSource } from '../src/device/card/folder-source.js';
import { isSourceFault, isSourceSkip, type ItemState, type OpenOptions, type Source, type SourceEntry, type SourceIdentity, type SourceItem } from '../src/device/source.js';
import { ShuttleError, abortReason } from '../src/errors.js';
import { Journal } from '../src/store/journal.js';
import { silentLogger, type Logger } from '../src/log.js';
import { runIngest, type IngestSettings, type Progress } from '../src/ingest/pipeline.js';
import { groupWindows } from '../src/ingest/plan.js';
import type { ItemGroup } from '../src/ingest/pairing.js';
import { bytes, ingestSettings, writeBytes } from './support/fixtures.js';
import { contentMultiset, listTree, tempDir, tempFilesUnder } from './support/tree.js';

/**
 * The ingest plans a source's files as its listing goes, never holding a whole listing: a tethered
 * camera or a hot folder lists for as long as it is attached, and each file must be copied and verified
 * while it does.
 */
const settings: IngestSettings = ingestSettings('{seq}/{name}');

let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-stream-');
});
afterEach(async () => {
  await work.cleanup();
});

/**
 * A camera on a tether: lists a real folder's files one shot at a time, each shot when the test lets it,
 * then lists nothing more until the run's signal aborts, as a camera waiting for the next picture does.
 */
class TetheredCamera implements Source {
  readonly uri: string;
  readonly #folder: FolderSource;
  readonly #shots = new EventEmitter();
  #allowed = 0;
  listing = false;

  constructor(
    root: string,
    private readonly shots: string[][],
  ) {
    this.#folder = new FolderSource(root);
    this.uri = this.#folder.uri;
  }

  /** Lets the next shot's files be listed. */
  shoot(): void {
    this.#allowed++;
    this.#shots.emit('shot');
  }

  identity(): Promise<SourceIdentity> {
    return this.#folder.identity();
  }

  async *list(signal?: AbortSignal): AsyncIterable<SourceEntry> {
    if (!signal) throw new Error('a tethered listing needs a signal to end');
    this.listing = true;
    try {
      const listed = new Map<string, SourceItem>();
      for await (const e of this.#folder.list(signal)) if (!isSourceFault(e) && !isSourceSkip(e)) listed.set(e.path, e);
      for (const [i, shot] of this.shots.entries()) {
        while (this.#allowed <= i) await once(this.#shots, 'shot', { signal });
        for (const path of shot) yield listed.get(path)!;
      }
      await once(this.#shots, 'never', { signal });
    } catch (e) {
      throw signal.aborted ? abortReason(signal) : e;
    } finally {
      this.listing = false;
    }
  }

  open(item: SourceItem, options?: OpenOptions): Promise<Readable> {
    return this.#folder.open(item, options);
  }

  stat(item: SourceItem): Promise<ItemState | undefined> {
    return this.#folder.stat(item);
  }

  close(): Promise<void> {
    return this.#folder.close();
  }
}

/** A debug logger whose lines a test can wait for. */
function watchedLogger(): { logger: Logger; journaled: (path: string) => Promise<void> } {
  const lines = new EventEmitter();
  const seen: Array<Record<string, unknown>> = [];
  const logger = pino(
    { level: 'debug' },
    {
      write: (s: string) => {
        const line = JSON.parse(s) as Record<string, unknown>;
        seen.push(line);
        lines.emit('line', line);
      },
    },
  );
  const isJournaled = (path: string) => (l: Record<string, unknown>) => l['msg'] === 'file journaled' && l['path'] === path && l['state'] === 'verified';
  const journaled = async (path: string): Promise<void> => {
    if (seen.some(isJournaled(path))) return;
    await new Promise<void>((resolve) => {
      const on = (l: Record<string, unknown>): void => {
        if (isJournaled(path)(l)) {
          lines.off('line', on);
          resolve();
        }
      };
      lines.on('line', on);
    });
  };
  return { logger, journaled };
}

test('a-listing-that-never-ends-has-each-file-verified-while-it-is-open-and-an-abort-ends-the-run-interrupted-with-every-verified-file-journaled', async () => {
  const src = join(work.path, 'camera');
  const shots = [
    ['IMG_0001.CR2', 'IMG_0001.JPG'],
    ['IMG_0002.CR2', 'IMG_0002.JPG'],
  ];
  for (const [i, path] of shots.flat().entries()) await writeBytes(join(src, path), bytes(300_000 + i * 1000, i));
  const camera = new TetheredCamera(src, shots);
  const dest = join(work.path, 'dest');
  const journal = Journal.open(join(work.path, 'state'));
  const { logger, journaled } = watchedLogger();
  const ac = new AbortController();
  const totals: number[] = [];
  const run = runIngest({
    sources: [camera],
    destinations: [{ path: dest }],
    journal,
    settings,
    logger,
    signal: ac.signal,
    onProgress: (p: Progress) => totals.push(p.filesTotal),
  });
  // A reader of its own on the journal's file (the journal keeps its SQL to itself).
  const db = new DatabaseSync(join(work.path, 'state', 'journal.sqlite'), { readOnly: true });
  const fileStates = () =>
    Object.fromEntries((db.prepare('SELECT rel_path, state FROM files').all() as Array<{ rel_path: string; state: string }>).map((r) => [r.rel_path, r.state]));

  camera.shoot();
  await Promise.all(shots[0]!.map((p) => journaled(p)));
  // Verified and journaled while the camera is still attached and listing (it waits for the next shot).
  expect(camera.listing).toBe(true);
  expect(fileStates()).toEqual({ 'IMG_0001.CR2': 'verified', 'IMG_0001.JPG': 'verified' });
  // The shot's two files arrived together and were planned as one group: one sequence number.
  expect([...(await listTree(dest, { skipShuttle: true })).keys()].sort()).toEqual(['0001/IMG_0001.CR2', '0001/IMG_0001.JPG']);

  camera.shoot();
  await Promise.all(shots[1]!.map((p) => journaled(p)));
  expect(camera.listing).toBe(true);
  ac.abort(new Error('camera unplugged'));
  const summary = await run;
  const ingests = db.prepare('SELECT status FROM ingests').all() as Array<{ status: string }>;
  const states = fileStates();
  db.close();
  journal.close();

  expect(camera.listing).toBe(false);
  expect(summary.status).toBe('interrupted');
  expect(ingests).toEqual([{ status: 'interrupted' }]);
  expect(states).toEqual({ 'IMG_0001.CR2': 'verified', 'IMG_0001.JPG': 'verified', 'IMG_0002.CR2': 'verified', 'IMG_0002.JPG': 'verified' });
  expect(summary).toMatchObject({ files: 4, copied: 4, failed: 0, errors: [] });
  // The totals were those known so far: the first shot's files, then both shots'.
  expect(totals[0]).toBe(2);
  expect(totals.at(-1)).toBe(4);
  const tree = await listTree(dest, { skipShuttle: true });
  expect([...tree.keys()].sort()).toEqual(['0001/IMG_0001.CR2', '0001/IMG_0001.JPG', '0002/IMG_0002.CR2', '0002/IMG_0002.JPG']);
  expect(contentMultiset(tree)).toEqual(contentMultiset(await listTree(src)));
  expect(await tempFilesUnder(dest)).toEqual([]);
}, 60_000);

function item(path: string): SourceItem {
  return { path, size: 1, mtimeMs: 0 };
}

test('windows-hold-at-most-their-bound-of-an-endless-listing-and-keep-a-shot-cut-by-the-bound-whole', async () => {
  let pulled = 0;
  // Endless: shot n has a RAW and a JPEG, listed next to each other as a sorted folder lists them.
  async function* endless(): AsyncGenerator<SourceItem> {
    for (let n = 1; ; n++) {
      for (const ext of ['CR2', 'JPG']) {
        pulled++;
        yield item(`DCIM/IMG_${String(n).padStart(4, '0')}.${ext}`);
      }
    }
  }
  const windows = groupWindows(endless(), { maxItems: 5, delayMs: 60_000 });
  const next = async (): Promise<ItemGroup[]> => {
    const w = await windows.next();
    return w.done ? [] : w.value;
  };
  const first = await next();
  // Full at five items: shots 1 and 2 go, shot 3's RAW waits for its JPEG; nothing more was pulled.
  expect(pulled).toBe(5);
  expect(first.map((g) => g.members.map((m) => m.item.path))).toEqual([
    ['DCIM/IMG_0001.JPG', 'DCIM/IMG_0001.CR2'],
    ['DCIM/IMG_0002.JPG', 'DCIM/IMG_0002.CR2'],
  ]);
  const second = await next();
  expect(pulled).toBeLessThanOrEqual(10);
  expect(second[0]!.members.map((m) => m.item.path)).toEqual(['DCIM/IMG_0003.JPG', 'DCIM/IMG_0003.CR2']);
  await windows.return(undefined);
});

test('a-window-ends-when-the-folder-changes-and-when-the-listing-pauses', async () => {
  const gate = new EventEmitter();
  async function* listing(): AsyncGenerator<SourceItem> {
    yield item('DCIM/100CANON/IMG_0001.JPG');
    yield item('DCIM/101CANON/IMG_0001.JPG');
    await once(gate, 'more');
    yield item('DCIM/101CANON/IMG_0002.JPG');
  }
  const windows = groupWindows(listing(), { maxItems: 64, delayMs: 50 });
  const paths = (w: IteratorResult<ItemGroup[]>): string[] => (w.done ? [] : w.value).flatMap((g) => g.members.map((m) => m.item.path));
  // Another folder: the first window is handed out at once, without waiting for the listing.
  expect(paths(await windows.next())).toEqual(['DCIM/100CANON/IMG_0001.JPG']);
  // The listing pauses: what it holds is handed out after the delay, though the listing is still open.
  expect(paths(await windows.next())).toEqual(['DCIM/101CANON/IMG_0001.JPG']);
  gate.emit('more');
  expect(paths(await windows.next())).toEqual(['DCIM/101CANON/IMG_0002.JPG']);
  expect((await windows.next()).done).toBe(true);
});

/** A camera unplugged while it still lists: it names some files, then its listing fails. */
class UnpluggedWhileListing extends FolderSource {
  constructor(
    root: string,
    private readonly before: number,
  ) {
    super(root);
  }

  override async *list(signal?: AbortSignal): AsyncIterable<SourceEntry> {
    let named = 0;
    for await (const e of super.list(signal)) {
      if (named++ === this.before) throw new ShuttleError('DEVICE_GONE', 'the camera was disconnected');
      yield e;
    }
  }
}

test('a-listing-that-breaks-off-fails-the-run-naming-the-source-and-what-it-named-is-still-verified', async () => {
  const src = join(work.path, 'card');
  for (let i = 1; i <= 5; i++) await writeBytes(join(src, `IMG_000${i}.JPG`), bytes(2000 + i, i));
  const dest = join(work.path, 'dest');
  const journal = Journal.open(join(work.path, 'state'));
  const source = new UnpluggedWhileListing(src, 3);
  const other = join(work.path, 'other');
  await writeBytes(join(other, 'DSC_0001.JPG'), bytes(3000, 9));
  const summary = await runIngest({
    sources: [source, new FolderSource(other)],
    destinations: [{ path: dest }],
    journal,
    settings,
    logger: silentLogger,
    signal: new AbortController().signal,
  });
  journal.close();
  expect(summary.status).toBe('failed');
  expect(summary.errors).toEqual([{ source: src, code: 'DEVICE_GONE', message: 'the camera was disconnected' }]);
  // The three files named before the camera went, and the next source's file, are verified.
  expect(summary).toMatchObject({ copied: 4, failed: 0 });
  expect((await listTree(dest, { skipShuttle: true })).size).toBe(4);
});
