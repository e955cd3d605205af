/**
 * Hardware in the loop: Shuttle runs inside a QEMU guest against QEMU's emulated USB hardware (the
 * usb-mtp camera, a usb-storage card reader), unplugged and plugged back over QMP; what it wrote is read
 * back here from the guest's disk and compared byte for byte with the source on this machine. One guest
 * at a time (each takes both cores); the tests of this file run in order.
 */
import { readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { makeSampleCard } from '../../src/sample/index.js';
import { tempDir } from '../support/tree.js';
import { contents, extractFromExt4, hashTree, makeCameraTree, makeExt4Image, makeFat32Image, readJournal, type TreeFile } from './fixtures.js';
import { GUEST_DIR, ensureGuestImage, requireHilPackages, startGuest, type RunningGuest } from './vm.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const timings: Array<[string, number]> = [];
const notes: string[] = [];
const suiteStart = Date.now();

interface Summary {
  files: number;
  copied: number;
  alreadyVerified: number;
  failed: number;
  status: string;
  destinations: Array<{ verified: number; failed: number }>;
  errors: Array<{ code: string; message: string; path?: string }>;
}

beforeAll(() => {
  requireHilPackages([
    { pkg: 'dosfstools', tool: 'mkfs.vfat' },
    { pkg: 'mtools', tool: 'mcopy' },
  ]);
  ensureGuestImage();
});

afterAll(() => {
  const lines = timings.map(([name, ms]) => `  ${(ms / 1000).toFixed(1).padStart(6)} s  ${name}`);
  process.stdout.write(
    `hardware-in-the-loop timings:\n${lines.join('\n')}\n  ${((Date.now() - suiteStart) / 1000).toFixed(1).padStart(6)} s  whole suite\n${notes.map((n) => `  ${n}\n`).join('')}`,
  );
});

/** Records how long each phase of a test took, for the timings printed at the end. */
function stopwatch(test: string): (phase: string) => void {
  let last = Date.now();
  const parts: string[] = [];
  return (phase) => {
    const now = Date.now();
    parts.push(`${phase} ${((now - last) / 1000).toFixed(1)} s`);
    last = now;
    if (phase === 'check') notes.push(`${test}: ${parts.join(', ')}`);
  };
}

/** Destination files without Shuttle's own folders (marker, manifests). */
const isShuttleMeta = (rel: string): boolean => rel === '.shuttle' || rel === 'ascmhl';

async function finished(guest: RunningGuest): Promise<void> {
  const end = await guest.exited;
  const failure = guest.output.split('\n').find((l) => l.includes('HIL:failed'));
  if (end.timedOut || failure) throw new Error(`guest ${end.timedOut ? 'timed out' : 'failed'}: ${failure ?? ''}\n--- console ---\n${guest.output.slice(-6000)}`);
}

async function summaryOf(logs: string, name: string): Promise<Summary> {
  const text = await readFile(join(logs, `${name}.json`), 'utf8');
  const lines = text.trim().split('\n').filter(Boolean);
  if (lines.length !== 1) throw new Error(`${name}: expected one JSON line, got:\n${text}\n--- stderr ---\n${await readFile(join(logs, `${name}.log`), 'utf8').catch(() => '')}`);
  return JSON.parse(lines[0] as string) as Summary;
}

async function expectSameBytes(lib: string, source: Map<string, TreeFile>): Promise<void> {
  const dest = await hashTree(lib, { skip: isShuttleMeta });
  expect(
    [...dest.keys()].filter((k) => k.endsWith('.shuttle-tmp')),
    'temp files left behind',
  ).toEqual([]);
  expect(dest.size).toBe(source.size);
  expect(contents(dest)).toEqual(contents(source));
}

test('shuttle-in-the-guest-ingests-every-file-of-a-usb-mtp-camera-byte-for-byte', async () => {
  const started = Date.now();
  const work = await tempDir('shuttle-hil-mtp-');
  const phase = stopwatch('mtp ingest');
  try {
    const card = join(work.path, 'card');
    // 120 RAW+JPEG pairs in three folders that restart at IMG_0001, sidecars, nested folders, a 1 GiB+ clip.
    await makeCameraTree(card, { shots: 120, perFolder: 40, seed: 11, clips: [GiB + 4321] });
    const source = await hashTree(card);
    expect(source.size).toBeGreaterThan(300);
    const disk = join(work.path, 'dest.img');
    makeExt4Image(disk, 3 * GiB);
    phase('prepare');

    const guest = await startGuest({
      script: join(GUEST_DIR, 'mtp-ingest.sh'),
      env: {},
      workDir: join(work.path, 'vm'),
      qemuArgs: ['-device', `usb-mtp,id=cam,bus=xhci.0,rootdir=${card},readonly=on,desc=HIL Card`, '-drive', `file=${disk},if=virtio,format=raw,cache=unsafe`],
      timeoutMs: 420_000,
    });
    await finished(guest);
    phase('guest');
    const out = join(work.path, 'out');
    for (const dir of ['/lib', '/logs', '/state']) extractFromExt4(disk, dir, out);

    // `shuttle devices` saw the camera with its USB facts and the quirks it gets.
    const listed = JSON.parse(await readFile(join(out, 'logs', 'devices.json'), 'utf8')) as { cameras: Array<Record<string, unknown>> };
    expect(listed.cameras).toHaveLength(1);
    expect(listed.cameras[0]).toMatchObject({ vid: '46f4', pid: '0004', bus: 1, protocol: 'ptp', manufacturer: 'QEMU', model: 'QEMU filesharing', vendor: 'QEMU' });
    expect(listed.cameras[0]?.['selector']).toMatch(/^usb:1-\d+$/);
    expect(JSON.stringify(listed.cameras[0]?.['quirks'])).toMatch(/usb-mtp/);

    const summary = await summaryOf(join(out, 'logs'), 'ingest');
    expect(summary, JSON.stringify(summary.errors.slice(0, 5))).toMatchObject({ files: source.size, copied: source.size, failed: 0, status: 'complete' });
    expect(guest.output).toMatch(/HIL:result ingest rc=0/);
    await expectSameBytes(join(out, 'lib'), source);
    const journal = readJournal(join(out, 'state'));
    expect(journal.sources).toHaveLength(1);
    expect(journal.sources[0]).toMatchObject({ kind: 'camera', details: { manufacturer: 'QEMU', usbVendorId: '46f4', usbProductId: '0004' } });
    expect(journal.verifiedByIngest.get(1)).toHaveLength(source.size);
    // Dates: the guest ran in Europe/Berlin, the camera's dates are UTC; the journal has the true instants.
    const wrong: string[] = [];
    for (const [rel, mtimeMs] of journal.mtimes) {
      const onHost = (await stat(join(card, rel.split('/').slice(1).join('/')))).mtimeMs;
      if (mtimeMs !== Math.floor(onHost / 1000) * 1000) wrong.push(`${rel}: ${new Date(mtimeMs).toISOString()} vs ${new Date(onHost).toISOString()}`);
    }
    expect(wrong.slice(0, 5)).toEqual([]);
    phase('check');
  } finally {
    await work.cleanup();
    timings.push(['usb-mtp ingest (several hundred files + 1 GiB clip)', Date.now() - started]);
  }
}, 480_000);

test('a-camera-unplugged-mid-transfer-and-plugged-back-resumes-without-re-downloading-or-corrupting', async () => {
  const started = Date.now();
  const work = await tempDir('shuttle-hil-unplug-');
  try {
    const card = join(work.path, 'card');
    await makeCameraTree(card, { shots: 16, perFolder: 8, seed: 12, clips: [80 * MiB + 1, 80 * MiB + 2, 80 * MiB + 3] });
    const source = await hashTree(card);
    const disk = join(work.path, 'dest.img');
    makeExt4Image(disk, GiB);
    const camera = { driver: 'usb-mtp', id: 'cam', bus: 'xhci.0', rootdir: card, readonly: true, desc: 'HIL Card' };

    const guest = await startGuest({
      script: join(GUEST_DIR, 'mtp-unplug.sh'),
      env: { HIL_UNPLUG_AT_KB: String(16 * 1024) },
      workDir: join(work.path, 'vm'),
      qemuArgs: ['-device', `usb-mtp,id=cam,bus=xhci.0,rootdir=${card},readonly=on,desc=HIL Card`, '-drive', `file=${disk},if=virtio,format=raw,cache=unsafe`],
      timeoutMs: 300_000,
    });
    try {
      const qmp = await guest.qmp();
      // A clip's temp file is past 16 MiB: the transfer is under way. Pull the plug.
      await guest.waitForLine(/HIL:mid-transfer/, 240_000);
      await qmp.execute('device_del', { id: 'cam' });
      await qmp.waitForEvent('DEVICE_DELETED', 30_000);
      await guest.waitForLine(/HIL:run1-done/, 120_000);
      await qmp.execute('device_add', camera);
      qmp.close();
    } catch (err) {
      guest.kill();
      await guest.exited;
      throw new Error(`${(err as Error).message}\n--- console ---\n${guest.output.slice(-6000)}`);
    }
    await finished(guest);
    const out = join(work.path, 'out');
    for (const dir of ['/lib', '/logs', '/state']) extractFromExt4(disk, dir, out);

    const run1 = await summaryOf(join(out, 'logs'), 'run1');
    const run2 = await summaryOf(join(out, 'logs'), 'run2');
    const verified1 = run1.destinations[0]?.verified ?? 0;
    // Run 1 lost the camera part-way: some files verified, the rest failed with the device gone.
    expect(run1.status).not.toBe('complete');
    expect(verified1).toBeGreaterThan(0);
    expect(verified1).toBeLessThan(source.size);
    expect(
      run1.errors.some((e) => e.code === 'DEVICE_GONE'),
      JSON.stringify(run1.errors.slice(0, 3)),
    ).toBe(true);
    notes.push(
      `unplug: run 1 verified ${verified1} of ${source.size} files before the camera vanished (${run1.errors.length} errors, first: ${run1.errors[0]?.code} ${run1.errors[0]?.message})`,
    );
    // Run 2 copied only what run 1 had not verified.
    expect(run2, JSON.stringify(run2.errors.slice(0, 5))).toMatchObject({
      files: source.size,
      status: 'complete',
      failed: 0,
      alreadyVerified: verified1,
      copied: source.size - verified1,
    });
    expect(guest.output).toMatch(/HIL:result run2 rc=0/);
    // The journal agrees: what run 1 verified was never copied again; every copy is verified now.
    const journal = readJournal(join(out, 'state'));
    expect(journal.verifiedByIngest.get(1) ?? []).toHaveLength(verified1);
    expect(journal.verifiedByIngest.get(2) ?? []).toHaveLength(source.size - verified1);
    expect(Object.fromEntries(journal.otherCopies)).toEqual({});
    await expectSameBytes(join(out, 'lib'), source);
  } finally {
    await work.cleanup();
    timings.push(['usb-mtp unplug mid-transfer, re-plug, resume', Date.now() - started]);
  }
}, 360_000);

test('a-fat32-card-in-a-usb-card-reader-is-ingested-as-a-card-identified-by-its-volume-uuid', async () => {
  const started = Date.now();
  const work = await tempDir('shuttle-hil-card-');
  try {
    const files = join(work.path, 'files');
    await makeSampleCard(files, { count: 30, perFolder: 15, seed: 13 });
    const source = await hashTree(files);
    const card = join(work.path, 'card.img');
    makeFat32Image(card, 256, '1A2B3C4D', files);
    await rm(files, { recursive: true });
    const disk = join(work.path, 'dest.img');
    makeExt4Image(disk, GiB);

    const guest = await startGuest({
      script: join(GUEST_DIR, 'card-ingest.sh'),
      env: {},
      workDir: join(work.path, 'vm'),
      qemuArgs: [
        '-drive',
        `if=none,id=card,file=${card},format=raw,readonly=on`,
        '-device',
        'usb-storage,bus=xhci.0,drive=card,removable=on',
        '-drive',
        `file=${disk},if=virtio,format=raw,cache=unsafe`,
      ],
      timeoutMs: 240_000,
    });
    await finished(guest);
    const out = join(work.path, 'out');
    for (const dir of ['/lib', '/logs', '/state']) extractFromExt4(disk, dir, out);

    const summary = await summaryOf(join(out, 'logs'), 'ingest');
    expect(summary, JSON.stringify(summary.errors.slice(0, 5))).toMatchObject({ files: source.size, copied: source.size, failed: 0, status: 'complete' });
    const journal = readJournal(join(out, 'state'));
    expect(journal.sources).toHaveLength(1);
    const src = journal.sources[0]!;
    expect(src.kind).toBe('card');
    expect(src.key).toMatch(/^card:1A2B-3C4D:EOS_DIGITAL:\d+$/);
    expect(src.details).toMatchObject({ uuid: '1A2B-3C4D', label: 'EOS_DIGITAL', fsType: 'vfat' });
    await expectSameBytes(join(out, 'lib'), source);
  } finally {
    await work.cleanup();
    timings.push(['usb-storage FAT32 card reader ingest', Date.now() - started]);
  }
}, 300_000);
