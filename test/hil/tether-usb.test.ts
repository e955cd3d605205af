/**
 * Tethering over USB in the loop: `shuttle tether usb:` in the QEMU guest against the usb-mtp camera
 * while this machine adds shots to the camera's card at about ten files a second; every one must be
 * verified byte for byte, exactly once.
 *
 * How usb-mtp announces new files (hw/usb/dev-mtp.c, QEMU 7.2): writable or not, it watches with inotify
 * each folder a client has listed and queues ObjectAdded for a file created or renamed into it (names
 * starting with '.' are ignored; a new name that is the beginning of an existing one, IMG_0001.CR2 beside
 * IMG_0001.CR2.xmp, counts as a duplicate and is never announced; the size is read when the file appears,
 * hence rename into place). It hands a queued event out only when the host controller asks the interrupt
 * endpoint again, and it never signals the controller (no usb_wakeup): a client that keeps its interrupt
 * transfers queued, as Shuttle does (libusb, always four pending), never receives one. QEMU's trace and
 * usbmon in the guest showed exactly that: every file "Obj Added" in QEMU, no interrupt transfer complete.
 * Shuttle gets nothing on the interrupt pipe from it, and its DeviceInfo lists no events at all, so Shuttle
 * finds new shots by comparing GetObjectHandles between polls, which on usb-mtp lists the root folder only:
 * the burst goes to the card's root. usbmon still records what the device sent, for the timings.
 */
import { mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import { makeSampleCard } from '../../src/sample/index.js';
import { tempDir } from '../support/tree.js';
import { GuestLines, contents, extractFromExt4, hashTree, makeExt4Image, objectAddedInUsbmon, readJournal } from './fixtures.js';
import { GUEST_DIR, ensureGuestImage, requireHilPackages, startGuest } from './vm.js';

beforeAll(() => {
  requireHilPackages();
  ensureGuestImage();
});

const SHOTS = 15;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const FILES_PER_SECOND = 10;

test('tether-over-usb-mtp-a-burst-of-shots-added-at-ten-per-second-is-each-verified-byte-exact-exactly-once', async () => {
  const work = await tempDir('shuttle-hil-tether-usb-');
  const lines = new GuestLines();
  try {
    // The camera's card: one shot already there, which the session leaves alone (no --all). The burst:
    // RAW+JPEG pairs made beforehand on the same filesystem, so that each arrives whole with one rename.
    const card = join(work.path, 'card');
    const folder = card;
    await makeSampleCard(join(work.path, 'before'), { count: 1, perFolder: 1, rawSize: 1_500_000, jpegSize: 400_000, seed: 21 });
    await mkdir(join(card, 'DCIM/100CANON'), { recursive: true });
    for (const ext of ['CR2', 'JPG']) await rename(join(work.path, 'before/DCIM/100CANON', `IMG_0001.${ext}`), join(card, 'DCIM/100CANON', `IMG_0900.${ext}`));
    const pool = join(work.path, 'pool');
    await makeSampleCard(pool, { count: SHOTS, perFolder: SHOTS, rawSize: 1_500_000, jpegSize: 400_000, seed: 22 });
    const burst: string[] = [];
    for (let i = 1; i <= SHOTS; i++) for (const ext of ['CR2', 'JPG']) burst.push(`IMG_${String(i).padStart(4, '0')}.${ext}`);
    const disk = join(work.path, 'dest.img');
    makeExt4Image(disk, 1024 * 1024 * 1024);
    const qemuTrace = join(work.path, 'qemu-trace.log');

    const guest = await startGuest({
      script: join(GUEST_DIR, 'tether-usb.sh'),
      env: { HIL_EXPECT: String(burst.length), HIL_TIMEOUT_S: '240' },
      workDir: join(work.path, 'vm'),
      qemuArgs: [
        '-device',
        `usb-mtp,id=cam,bus=xhci.0,rootdir=${card},readonly=off,desc=HIL Tether`,
        '-drive',
        `file=${disk},if=virtio,format=raw,cache=unsafe`,
        // QEMU's own account of what its folder watch saw, for a failure's message.
        '-trace',
        'usb_mtp_file_monitor_event',
        '-trace',
        'qemu_file_monitor_*',
        '-D',
        qemuTrace,
      ],
      timeoutMs: 600_000,
      onLine: (l) => lines.add(l),
    });
    const addedAt = new Map<string, number>();
    try {
      // Ready: the session has its first list of handles, against which new ones are found.
      await lines.nth(/HIL:stamp tether \S+ \{"event":"ready"/, 1, 420_000, guest.exited);
      for (const name of burst) {
        await rename(join(pool, 'DCIM/100CANON', name), join(folder, name));
        addedAt.set(name, Date.now());
        await new Promise((r) => setTimeout(r, 1000 / FILES_PER_SECOND));
      }
      await lines.nth(/HIL:result tether rc=/, 1, 420_000, guest.exited);
    } catch (err) {
      guest.kill();
      await guest.exited;
      throw err;
    }
    const end = await guest.exited;
    const out = join(work.path, 'out');
    for (const dir of ['/lib', '/logs', '/state']) extractFromExt4(disk, dir, out);
    const log = await readFile(join(out, 'logs/tether.log'), 'utf8').catch(() => '');
    const usbmon = await readFile(join(out, 'logs/usbmon.txt'), 'utf8').catch(() => '');
    const announced = objectAddedInUsbmon(usbmon);
    const failed = lines.all.find((l) => l.includes('HIL:failed') || l.includes('HIL:tether gave up'));
    if (end.timedOut || failed) {
      const interrupt = usbmon.split('\n').filter((l) => / Ii:/.test(l));
      const trace = await readFile(qemuTrace, 'utf8').catch(() => '');
      throw new Error(
        `guest ${end.timedOut ? 'timed out' : 'failed'}: ${failed ?? ''}\nusbmon: ${announced.length} ObjectAdded, ${interrupt.length} interrupt URB lines, last: ${interrupt.slice(-4).join(' | ')}\n--- QEMU usb-mtp folder watch ---\n${trace.slice(0, 3000)}\n--- tether.log ---\n${log.slice(-5000)}\n--- console ---\n${guest.output.slice(-3000)}`,
      );
    }
    expect(
      lines.all.some((l) => /HIL:result tether rc=0/.test(l)),
      log.slice(-4000),
    ).toBe(true);

    // Every burst file once (the shot already on the card is left alone): one verified line each, timed
    // from the moment the session found it.
    const events = lines.json('tether');
    const verified = events.filter((e) => e['event'] === 'verified') as unknown as Array<{ name: string; ms: { verified: number } | null }>;
    expect(verified.map((v) => v.name.split('/').slice(1).join('/')).toSorted()).toEqual(burst.toSorted());
    for (const v of verified) expect(v.ms, v.name).not.toBeNull();
    expect(events.at(-1)).toMatchObject({ event: 'stopped', copied: burst.length, failed: 0, status: 'complete' });

    // Byte for byte the burst, nothing twice, no temp files; the journal agrees.
    const source = await hashTree(card, { skip: (rel) => rel === 'DCIM' });
    expect(source.size).toBe(burst.length);
    const dest = await hashTree(join(out, 'lib'), { skip: (rel) => rel === '.shuttle' || rel === 'ascmhl' });
    expect([...dest.keys()].filter((k) => k.endsWith('.shuttle-tmp'))).toEqual([]);
    expect(contents(dest)).toEqual(contents(source));
    const journal = readJournal(join(out, 'state'));
    // Journal paths start with the camera's storage.
    const journaled = [...journal.verifiedByIngest.values()].flat().map((rel) => rel.split('/').slice(1).join('/'));
    expect(journaled.toSorted()).toEqual(burst.toSorted());
    expect(Object.fromEntries(journal.otherCopies)).toEqual({});

    // Each shot was found once, by the session's handle-list poll (the only way usb-mtp's new files reach
    // it, see above): one "new shot" per file, distinct handles.
    const logLines = log
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg?: string; handle?: number; path?: string; eventStrategy?: string });
    expect(logLines.find((l) => l.msg === 'watching for new shots')?.eventStrategy).toBe('object-handles');
    const newShots = logLines.filter((l) => l.msg === 'new shot');
    expect(new Set(newShots.map((l) => l.handle)).size).toBe(burst.length);
    expect(newShots.map((l) => String(l.path).split('/').slice(1).join('/')).toSorted()).toEqual(burst.toSorted());
    process.stdout.write(
      `tether over usb-mtp: ${burst.length} files at ${FILES_PER_SECOND}/s, verified ${median(verified.map((v) => v.ms!.verified))} ms median after found; usbmon saw ${announced.length} ObjectAdded delivered\n`,
    );
  } finally {
    await work.cleanup();
  }
}, 660_000);
