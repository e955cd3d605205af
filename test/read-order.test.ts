import { afterEach, beforeEach, expect, test } from 'vitest';
import { utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { FolderSource } from '../src/device/card/folder-source.js';
import { cr3Head } from '../src/sample/cr3.js';
import { Journal } from '../src/store/journal.js';
import { bytes, writeBytes, writeJpeg } from './support/fixtures.js';
import { ingestInto } from './support/ingest.js';
import { listTree, tempDir } from './support/tree.js';

/**
 * The order a RAW+JPEG shot's files are read in: on a tethered camera the RAW first (its embedded preview
 * is in its first bytes, so the shot shows sooner), on a card the JPEG first; the copies' names are the
 * same either way.
 */
let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-read-order-');
});
afterEach(async () => {
  await work.cleanup();
});

/** A folder listed the way a tethered camera's shots are: the plan treats it as live. */
class LiveFolder extends FolderSource {
  readonly groupingDelayMs = 50;
}

async function ingest(source: FolderSource, name: string): Promise<{ read: string[]; library: string[] }> {
  const read: string[] = [];
  const lib = join(work.path, `lib-${name}`);
  const journal = Journal.open(join(work.path, `state-${name}`));
  try {
    const summary = await ingestInto(source, lib, journal, {
      template: '{YYYY-MM-DD}/{model}/{name}',
      onRead: (f) => {
        read.push(f.path);
        return undefined;
      },
    });
    expect(summary.errors).toEqual([]);
    expect(summary.status).toBe('complete');
  } finally {
    journal.close();
  }
  return { read, library: [...(await listTree(lib, { skipShuttle: true })).keys()].filter((p) => !p.startsWith('ascmhl/')).sort() };
}

test('a-tethered-shot-reads-its-raw-before-its-jpeg-a-card-the-jpeg-first-and-both-name-the-copies-alike', async () => {
  const card = join(work.path, 'card');
  // The files' times say another day than their EXIF: a name taken from a time would show.
  const mtime = new Date('2025-01-02T03:04:05Z');
  const exif = { make: 'Canon', model: 'Canon EOS R5', dateTimeOriginal: '2026:03:14 15:09:26' };
  for (const [seed, stem] of ['IMG_0001', 'IMG_0002'].entries()) {
    await writeJpeg(join(card, 'DCIM', `${stem}.JPG`), { date: exif.dateTimeOriginal, model: exif.model, seed: seed + 1 });
    await utimes(join(card, 'DCIM', `${stem}.JPG`), mtime, mtime);
    const head = cr3Head(exif, 300_000);
    await writeBytes(join(card, 'DCIM', `${stem}.CR3`), Buffer.concat([head, bytes(300_000 - head.length, seed + 1)]), mtime);
  }

  const fromCard = await ingest(new FolderSource(card), 'card');
  expect(fromCard.read).toEqual(['DCIM/IMG_0001.JPG', 'DCIM/IMG_0001.CR3', 'DCIM/IMG_0002.JPG', 'DCIM/IMG_0002.CR3']);

  const tethered = await ingest(new LiveFolder(card), 'tether');
  expect(tethered.read).toEqual(['DCIM/IMG_0001.CR3', 'DCIM/IMG_0001.JPG', 'DCIM/IMG_0002.CR3', 'DCIM/IMG_0002.JPG']);

  const names = ['2026-03-14/Canon EOS R5/IMG_0001.CR3', '2026-03-14/Canon EOS R5/IMG_0001.JPG', '2026-03-14/Canon EOS R5/IMG_0002.CR3', '2026-03-14/Canon EOS R5/IMG_0002.JPG'];
  expect(fromCard.library).toEqual(names);
  expect(tethered.library).toEqual(names);
});
