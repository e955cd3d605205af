import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { FolderSource } from '../src/device/card/folder-source.js';
import { PtpCameraSource, openPtpIpCameraSource } from '../src/device/camera-source.js';
import type { PtpCamera } from '../src/device/ptp/camera.js';
import type { StorageInfo } from '../src/device/ptp/datasets.js';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import type { ItemState, OpenOptions, Source, SourceEntry, SourceIdentity, SourceItem } from '../src/device/source.js';
import { runIngest, type IngestSummary } from '../src/ingest/pipeline.js';
import { makeSampleCard } from '../src/sample/index.js';
import { Journal } from '../src/store/journal.js';
import { captureLog } from './support/daemon-helpers.js';
import { bytes, ingestSettings, writeBytes } from './support/fixtures.js';
import { listTree, tempDir } from './support/tree.js';

/**
 * A run that refuses what cannot fit starts copying before its sources are listed when what they can hold
 * at most fits (Source.listingBound), and waits for the whole listings otherwise.
 */

let work: { path: string; cleanup: () => Promise<void> };
const mounts: string[] = [];
const closers: Array<() => Promise<void>> = [];

beforeEach(async () => {
  work = await tempDir('shuttle-bound-');
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  for (const m of mounts.splice(0).reverse()) execFileSync('umount', ['-l', m]);
  await work.cleanup();
});

const WHEN = new Date('2026-03-14T12:00:00Z');

/** The kernel here may have no FAT module; exfat-fuse (a fuseblk mount of an exFAT image) is a card then. */
const kernelExfat = readFileSync('/proc/filesystems', 'utf8')
  .split('\n')
  .some((l) => l.trim().split(/\s+/).pop() === 'exfat');

/** A filesystem of `mib` MiB, an exFAT card or ext4 on a loop device or a tmpfs, mounted at a new folder `name`. */
async function volume(name: string, kind: 'exfat' | 'ext4' | 'tmpfs', mib: number): Promise<string> {
  const dir = join(work.path, name);
  await mkdir(dir);
  if (kind === 'tmpfs') {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir]);
  } else {
    const image = join(work.path, `${name.replaceAll('/', '-')}.img`);
    execFileSync('truncate', ['-s', `${mib}M`, image]);
    execFileSync(kind === 'exfat' ? 'mkfs.exfat' : 'mkfs.ext4', kind === 'exfat' ? [image] : ['-q', image], { stdio: 'ignore' });
    const loop = execFileSync('losetup', ['-f', '--show', image], { encoding: 'utf8' }).trim();
    closers.push(async () => void execFileSync('losetup', ['-d', loop]));
    if (kind === 'exfat' && !kernelExfat) execFileSync('mount.exfat-fuse', [loop, dir], { stdio: 'ignore' });
    else execFileSync('mount', ['-t', kind, loop, dir]);
  }
  mounts.push(dir);
  return dir;
}

async function photos(dir: string, n: number, size: number): Promise<void> {
  for (let i = 0; i < n; i++) await writeBytes(join(dir, `DCIM/100CANON/IMG_${1000 + i}.CR3`), bytes(size, i), WHEN);
}

/**
 * A source whose listing the test watches: it records when the listing ended and, after `holdAfter`
 * entries, holds the listing open until `release` settles (the test's first copied file).
 */
class WatchedListing implements Source {
  readonly uri: string;
  constructor(
    readonly inner: Source,
    readonly events: string[],
    readonly holdAfter = Number.POSITIVE_INFINITY,
    readonly release: Promise<void> = Promise.resolve(),
  ) {
    this.uri = inner.uri;
  }
  identity(signal?: AbortSignal): Promise<SourceIdentity> {
    return this.inner.identity(signal);
  }
  async listingBound(signal?: AbortSignal): Promise<number | undefined> {
    return this.inner.listingBound?.(signal);
  }
  async *list(signal?: AbortSignal): AsyncIterable<SourceEntry> {
    let n = 0;
    for await (const entry of this.inner.list(signal)) {
      yield entry;
      if (++n === this.holdAfter) {
        this.events.push('held');
        await this.release;
      }
    }
    this.events.push('listing ended');
  }
  open(item: SourceItem, options?: OpenOptions): Promise<Readable> {
    return this.inner.open(item, options);
  }
  stat(item: SourceItem, signal?: AbortSignal): Promise<ItemState | undefined> {
    return this.inner.stat(item, signal);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Ingests `source` to `dest` refusing what cannot fit; `events` gets a line per copied file. */
async function ingest(source: Source, dest: string, events: string[], onCopied?: () => void): Promise<{ summary: IngestSummary; log: string[] }> {
  const journal = Journal.open(join(work.path, 'state'));
  const { logger, lines } = captureLog('debug');
  try {
    const summary = await runIngest({
      sources: [source],
      destinations: [{ path: dest }],
      journal,
      settings: ingestSettings('{name}'),
      logger,
      signal: new AbortController().signal,
      refuseWhatCannotFit: true,
      onFile: (f) => {
        events.push(`copied ${f.path}`);
        onCopied?.();
      },
    });
    return { summary, log: lines.map((l) => String(l.msg)) };
  } finally {
    journal.close();
  }
}

const FAST = 'the sources cannot hold more than fits every destination: copying while they are listed';
const WAITS = 'waiting for the whole listings to check the space the plan needs';

describe('a card whose used space fits every destination', () => {
  test('is-copied-while-it-is-still-listed', async () => {
    const card = await volume('card', 'exfat', 32);
    await photos(card, 6, 200_000);
    const events: string[] = [];
    let copied!: () => void;
    const firstCopy = new Promise<void>((resolve) => (copied = resolve));
    // The listing stops after two files until one is copied: a run that waits for it never copies.
    const source = new WatchedListing(new FolderSource(card), events, 2, firstCopy);
    const { summary, log } = await ingest(source, join(work.path, 'dest'), events, copied);
    expect(summary).toMatchObject({ files: 6, copied: 6, failed: 0, errors: [] });
    expect(events[0]).toBe('held');
    expect(events[1]).toMatch(/^copied /);
    expect(events.indexOf('listing ended')).toBeGreaterThan(1);
    expect(log).toContain(FAST);
  }, 30_000);

  test('a-listing-that-breaks-off-fails-the-run-naming-the-source-and-what-it-named-is-still-copied', async () => {
    const card = await volume('card', 'exfat', 32);
    await photos(card, 4, 100_000);
    let copied!: () => void;
    const firstCopy = new Promise<void>((resolve) => (copied = resolve));
    class BreakingCard extends FolderSource {
      override async *list(signal?: AbortSignal): AsyncIterable<SourceEntry> {
        let n = 0;
        for await (const e of super.list(signal)) {
          yield e;
          if (++n < 2) continue;
          // Broken off once the run is copying: the listing is read as the files are copied.
          await firstCopy;
          throw new Error('card reader gone');
        }
      }
    }
    const events: string[] = [];
    const { summary, log } = await ingest(new BreakingCard(card), join(work.path, 'dest'), events, copied);
    expect(log).toContain(FAST);
    expect(summary).toMatchObject({ files: 2, copied: 2 });
    expect(summary.errors).toEqual([expect.objectContaining({ source: card, message: expect.stringContaining('card reader gone') })]);
  }, 30_000);
});

describe('a card whose used space does not fit', () => {
  test('is-listed-whole-before-the-first-copy-and-copied-when-its-files-fit', async () => {
    const card = await volume('card', 'exfat', 64);
    // The folder copied is small; the card it is on holds far more than the destination has free.
    await writeBytes(join(card, 'OTHER/big.bin'), bytes(20_000_000, 9), WHEN);
    await photos(join(card, 'shoot'), 3, 1_000_000);
    const dest = await volume('dest', 'tmpfs', 12);
    const events: string[] = [];
    const { summary, log } = await ingest(new WatchedListing(new FolderSource(join(card, 'shoot')), events), dest, events);
    expect(summary).toMatchObject({ files: 3, copied: 3, failed: 0 });
    expect(events[0]).toBe('listing ended');
    expect(log).toContain(WAITS);
    expect(log).not.toContain(FAST);
  }, 30_000);

  test('is-refused-as-before-and-nothing-is-copied-when-its-files-do-not-fit', async () => {
    const card = await volume('card', 'exfat', 32);
    await photos(card, 3, 2_000_000);
    const dest = await volume('dest', 'tmpfs', 4);
    const events: string[] = [];
    const { summary, log } = await ingest(new WatchedListing(new FolderSource(card), events), dest, events);
    expect(summary).toMatchObject({ copied: 0, failed: 0 });
    expect(summary.errors).toEqual([expect.objectContaining({ code: 'DEST_NO_SPACE', message: expect.stringMatching(/^refused: does not fit: .* needs 6\.0 MB/) })]);
    expect(events).toEqual(['listing ended']);
    expect([...(await listTree(dest, { skipShuttle: true })).keys()]).toEqual([]);
    expect(log).toContain(WAITS);
  }, 30_000);
});

describe('the bound of a folder', () => {
  test('is-the-used-space-of-an-exfat-card-and-none-where-files-can-be-sparse-or-another-filesystem-is-below', async () => {
    const fat = await volume('fat', 'exfat', 32);
    await photos(fat, 3, 300_000);
    const bound = await new FolderSource(fat).listingBound?.();
    expect(bound).toBeGreaterThanOrEqual(900_000);
    // Its used space: the files, the folders and the filesystem's own tables, not its whole size.
    expect(bound).toBeLessThan(8_000_000);

    // A sparse file's size exceeds the blocks it takes: no bound from used space there.
    const ext4 = await volume('ext4', 'ext4', 32);
    execFileSync('truncate', ['-s', '1G', join(ext4, 'sparse.bin')]);
    expect(typeof new FolderSource(ext4).listingBound).toBe('function');
    expect(await new FolderSource(ext4).listingBound?.()).toBeUndefined();
    expect(await new FolderSource(await volume('ram', 'tmpfs', 8)).listingBound?.()).toBeUndefined();

    // The walk would enter a filesystem mounted inside the card.
    await volume('fat/inner', 'tmpfs', 8);
    expect(await new FolderSource(fat).listingBound?.()).toBeUndefined();
  }, 30_000);
});

describe('a PTP/IP camera whose storage fits', () => {
  test('is-copied-while-it-is-still-listed', async () => {
    // The simulator reports its folder's filesystem as its storage: a small one, so that its used space fits.
    const cardDir = await volume('camera', 'tmpfs', 16);
    await makeSampleCard(cardDir, { count: 6, rawSize: 300_000, seed: 3 });
    const sim = await CameraSimulator.start({ dir: cardDir, pool: cardDir, port: 0, timeZone: 'UTC' });
    closers.push(() => sim.stop());
    const camera = await openPtpIpCameraSource({ host: '127.0.0.1', port: sim.port, stateDir: join(work.path, 'ptpip'), timeZone: 'UTC' });
    closers.push(() => camera.close());
    const onCard = await listTree(cardDir);
    const bound = await camera.listingBound();
    expect(bound).toBeGreaterThanOrEqual([...onCard.values()].reduce((n, f) => n + f.size, 0));
    expect(bound).toBeLessThanOrEqual(16 * 1024 * 1024);

    const events: string[] = [];
    let copied!: () => void;
    const firstCopy = new Promise<void>((resolve) => (copied = resolve));
    const { summary, log } = await ingest(new WatchedListing(camera, events, 2, firstCopy), join(work.path, 'dest'), events, copied);
    expect(summary).toMatchObject({ files: onCard.size, copied: onCard.size, failed: 0, errors: [] });
    expect(events[0]).toBe('held');
    expect(events[1]).toMatch(/^copied /);
    expect(log).toContain(FAST);
  }, 60_000);
});

describe('the bound of a camera', () => {
  /** A camera whose storages report these capacities and free spaces, asked nothing else. */
  function cameraReporting(storages: Array<[maxCapacity: bigint, freeSpaceInBytes: bigint]>): PtpCameraSource {
    const info = (i: number): StorageInfo => ({
      storageType: 4,
      filesystemType: 2,
      accessCapability: 0,
      maxCapacity: storages[i]![0],
      freeSpaceInBytes: storages[i]![1],
      freeSpaceInImages: 0,
      storageDescription: `SD${i}`,
      volumeLabel: '',
    });
    const camera = { storageIds: async () => storages.map((_s, i) => 0x10001 + (i << 16)), storageInfo: async (id: number) => info((id - 0x10001) >> 16) };
    return new PtpCameraSource(camera as unknown as PtpCamera, 'usb:test');
  }

  test('is-the-used-space-of-its-storages-and-none-when-one-reports-no-sane-capacity', async () => {
    expect(
      await cameraReporting([
        [64_000_000_000n, 60_000_000_000n],
        [1_000_000n, 250_000n],
      ]).listingBound(),
    ).toBe(4_000_750_000);
    expect(await cameraReporting([]).listingBound()).toBe(0);
    for (const odd of [
      [0n, 0n],
      [0xffffffffffffffffn, 1_000n],
      [1_000n, 2_000n],
      [1_000n, 0xffffffffffffffffn],
    ] as Array<[bigint, bigint]>) {
      expect(await cameraReporting([[64_000_000_000n, 60_000_000_000n], odd]).listingBound()).toBeUndefined();
    }
  });
});
