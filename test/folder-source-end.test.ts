import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test, vi } from 'vitest';
import { FolderSource } from '../src/device/card/folder-source.js';
import type { SourceItem } from '../src/device/source.js';
import { bytes, writeBytes } from './support/fixtures.js';
import { tempDir } from './support/tree.js';

/**
 * A card's file stream ends with its last chunk: the next file's read waits for the end of this one's, and
 * closing the descriptor (a round trip through the thread pool) runs beside it. The closes of the files
 * the source opens are held here until the test lets them go.
 */
const closes = vi.hoisted(() => ({ held: undefined as undefined | Promise<void>, started: 0, done: 0 }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  const open = async (...args: Parameters<typeof fs.open>): Promise<FileHandle> => {
    const handle = await fs.open(...args);
    if (!String(args[0]).includes('/card/')) return handle;
    const close = handle.close.bind(handle);
    // Once per handle, as FileHandle.close is: a second call gets the first one's promise.
    let closing: Promise<void> | undefined;
    handle.close = () =>
      (closing ??= (async () => {
        closes.started++;
        await closes.held;
        await close();
        closes.done++;
      })());
    return handle;
  };
  return { ...fs, open, default: { ...fs, open } };
});

let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-folder-end-');
});
afterEach(async () => {
  Object.assign(closes, { held: undefined, started: 0, done: 0 });
  await work.cleanup();
});

test('a-file-read-past-the-page-cache-ends-with-its-last-chunk-while-its-descriptor-is-still-being-closed', async () => {
  const card = join(work.path, 'card');
  const data = bytes(30_001, 3);
  await writeBytes(join(card, 'DCIM', 'IMG_0001.JPG'), data);
  const source = new FolderSource(card);
  const items: SourceItem[] = [];
  for await (const e of source.list()) if ('size' in e) items.push(e as SourceItem);
  expect(items).toHaveLength(1);
  let release!: () => void;
  closes.held = new Promise<void>((resolve) => (release = resolve));
  // As the ingest opens a card's file: whole aligned blocks, read past the page cache into reused buffers.
  const stream = await source.open(items[0]!, { recycle: 4, chunkSize: 1024 * 1024 });
  const got: Buffer[] = [];
  for await (const chunk of stream) got.push(Buffer.from(chunk as Buffer));
  expect(Buffer.concat(got).equals(data)).toBe(true);
  // Ended while the close was asked for and held.
  expect(closes).toMatchObject({ started: 1, done: 0 });
  const closed = new Promise((resolve) => stream.once('close', resolve));
  release();
  stream.destroy();
  await closed;
  expect(closes).toMatchObject({ started: 1, done: 1 });
});

test('closing-the-source-waits-until-the-descriptors-its-ended-streams-still-close-are-closed', async () => {
  const card = join(work.path, 'card');
  await writeBytes(join(card, 'DCIM', 'IMG_0001.JPG'), bytes(30_001, 4));
  await writeBytes(join(card, 'DCIM', 'IMG_0002.JPG'), bytes(8_000, 5));
  const source = new FolderSource(card);
  const items: SourceItem[] = [];
  for await (const e of source.list()) if ('size' in e) items.push(e as SourceItem);
  let release!: () => void;
  closes.held = new Promise<void>((resolve) => (release = resolve));
  // One read past the page cache, one through it; both read to their end, their closes held.
  for (const [item, options] of [
    [items[0]!, { recycle: 4, chunkSize: 1024 * 1024 }],
    [items[1]!, {}],
  ] as const) {
    for await (const _ of await source.open(item, options));
  }
  expect(closes.started).toBe(2);
  let closed = false;
  const closing = source.close().then(() => (closed = true));
  // The card would be unmounted now: it must not be while a descriptor of it is open.
  await new Promise((resolve) => setImmediate(resolve));
  expect(closed).toBe(false);
  release();
  await closing;
  expect(closes).toMatchObject({ started: 2, done: 2 });
});
