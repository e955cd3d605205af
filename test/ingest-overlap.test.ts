import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { FolderSource } from '../src/device/card/folder-source.js';
import type { ItemState, OpenOptions, Source, SourceEntry, SourceIdentity, SourceItem } from '../src/device/source.js';
import { runIngest } from '../src/ingest/pipeline.js';
import { silentLogger } from '../src/log.js';
import { Journal } from '../src/store/journal.js';
import { bytes, ingestSettings, writeBytes } from './support/fixtures.js';
import { contentMultiset, listTree, tempDir, tempFilesUnder } from './support/tree.js';

/**
 * A camera's link and session sit idle while a file's last writes, digest and stat finish unless the next
 * file's read begins then: the next file is opened as soon as the source has sent the last byte of the one
 * before (and been asked whether it changed), and the files are still published and journaled in order.
 */
let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-overlap-');
});
afterEach(async () => {
  await work.cleanup();
});

/** A folder whose first file's stat is answered only once the second file has been opened; calls are recorded. */
class HeldStatSource implements Source {
  readonly uri: string;
  readonly #folder: FolderSource;
  readonly calls: string[] = [];
  #secondOpened!: () => void;
  readonly #opened = new Promise<void>((resolve) => (this.#secondOpened = resolve));

  constructor(
    root: string,
    private readonly first: string,
    private readonly second: string,
  ) {
    this.#folder = new FolderSource(root);
    this.uri = this.#folder.uri;
  }

  identity(): Promise<SourceIdentity> {
    return this.#folder.identity();
  }

  list(signal?: AbortSignal): AsyncIterable<SourceEntry> {
    return this.#folder.list(signal);
  }

  open(item: SourceItem, options?: OpenOptions): Promise<Readable> {
    this.calls.push(`open ${item.path}`);
    if (item.path === this.second) this.#secondOpened();
    return this.#folder.open(item, options);
  }

  async stat(item: SourceItem): Promise<ItemState | undefined> {
    this.calls.push(`stat ${item.path}`);
    if (item.path === this.first) await this.#opened;
    return this.#folder.stat(item);
  }

  close(): Promise<void> {
    return this.#folder.close();
  }
}

test('the-next-file-is-opened-once-the-source-has-sent-the-last-byte-of-the-one-before-and-files-are-still-journaled-in-order', async () => {
  const src = join(work.path, 'card');
  const names = ['IMG_0001.CR2', 'IMG_0002.CR2', 'IMG_0003.CR2'];
  for (const [i, name] of names.entries()) await writeBytes(join(src, name), bytes(3_000_000 + i * 1000, i + 1));
  const source = new HeldStatSource(src, names[0]!, names[1]!);
  const journal = Journal.open(join(work.path, 'state'));
  const dest = join(work.path, 'dest');
  const verified: string[] = [];
  // Without the overlap the first file's copy waits for its stat, which waits for the second file's open: the run never ends.
  const summary = await runIngest({
    sources: [source],
    destinations: [{ path: dest }],
    journal,
    settings: ingestSettings('{name}'),
    logger: silentLogger,
    signal: new AbortController().signal,
    onFile: (f) => verified.push(`${f.path} ${f.state}`),
  });
  journal.close();

  expect(summary).toMatchObject({ files: 3, copied: 3, failed: 0, errors: [] });
  // The source is asked about a file before the next one is opened (a camera's session serves them in that order).
  expect(source.calls).toEqual(names.flatMap((n) => [`open ${n}`, `stat ${n}`]));
  expect(verified).toEqual(names.map((n) => `${n} verified`));
  const tree = await listTree(dest, { skipShuttle: true });
  expect([...tree.keys()].sort()).toEqual(names);
  expect(contentMultiset(tree)).toEqual(contentMultiset(await listTree(src)));
  expect(await tempFilesUnder(dest)).toEqual([]);
}, 20_000);

test('a-camera-is-listed-while-the-destinations-are-checked-and-the-run-plans-from-that-one-listing', async () => {
  const src = join(work.path, 'card');
  const names = ['IMG_0001.CR2', 'IMG_0001.JPG'];
  for (const [i, name] of names.entries()) await writeBytes(join(src, name), bytes(100_000 + i, i + 1));
  const logged: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push((JSON.parse(line) as { msg: string }).msg) });
  const folder = new FolderSource(src);
  const listedWhen: string[][] = [];
  const source: Source = {
    uri: folder.uri,
    identity: () => folder.identity(),
    list: (signal) => {
      // What the run had done when the listing began.
      listedWhen.push([...logged]);
      return folder.list(signal);
    },
    open: (item, options) => folder.open(item, options),
    stat: (item) => folder.stat(item),
    close: () => folder.close(),
  };
  const journal = Journal.open(join(work.path, 'state'));
  const summary = await runIngest({
    sources: [source],
    destinations: [{ path: join(work.path, 'dest') }],
    journal,
    settings: ingestSettings('{name}'),
    logger,
    signal: new AbortController().signal,
    refuseWhatCannotFit: true,
  });
  journal.close();
  expect(summary).toMatchObject({ files: 2, copied: 2, failed: 0, errors: [] });
  // Listed once, before the destination was ready (its check ran meanwhile).
  expect(listedWhen).toEqual([[]]);
  expect(logged).toContain('destination ready');
});
