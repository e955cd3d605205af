/**
 * Hardware in the loop: `shuttle tether usb:` in a QEMU guest against QEMU's usb-mtp camera, which the host
 * unplugs and plugs back over QMP (device_del/device_add) mid-session while shots are added to its folder:
 * the session opens the camera again by itself, and every shot (before, while away, after) is verified
 * once, byte for byte. One guest at a time (it takes both cores).
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import { DEFAULT_SAMPLE_CAMERA } from '../../src/sample/index.js';
import { jpegWithExif } from '../../src/sample/content.js';
import { Prng } from '../../src/sample/prng.js';
import { tempDir } from '../support/tree.js';
import { contents, extractFromExt4, hashTree, makeExt4Image } from './fixtures.js';
import { GUEST_DIR, ensureGuestImage, requireHilPackages, startGuest } from './vm.js';

const MiB = 1024 * 1024;

beforeAll(() => {
  // The guest runs this machine's udevd (see hil_udevd in guest/common.sh).
  requireHilPackages([{ pkg: 'udev', tool: 'udevadm' }]);
  ensureGuestImage();
});

interface Line {
  event: string;
  name?: string;
  files?: string[];
  found?: number;
}

test('usb-mtp-unplugged-and-plugged-back-mid-session-is-reopened-and-every-shot-is-verified-once', async () => {
  const work = await tempDir('shuttle-hil-tether-reopen-');
  try {
    // Shots go to the card's top folder: usb-mtp announces no new objects, and the handle list that is
    // compared between polls instead is, on usb-mtp, the top folder's only (its GetObjectHandles with
    // association 0 lists the root level).
    const card = join(work.path, 'card');
    const folder = card;
    await mkdir(folder, { recursive: true });
    await mkdir(join(work.path, 'incoming'));
    // On the card before the session: not copied (no --all), and never mistaken for a shot after the replug.
    await writeFile(join(folder, 'OLD_0001.JPG'), await jpegWithExif(Prng.from(21, 'old'), { ...DEFAULT_SAMPLE_CAMERA, dateTimeOriginal: '2026:03:14 09:00:00' }));
    const shots = new Map<string, Buffer>();
    /** A shot on the body: written beside the card, then renamed onto it in whole. */
    const take = async (name: string): Promise<void> => {
      const bytes = await jpegWithExif(Prng.from(21, name), { ...DEFAULT_SAMPLE_CAMERA, dateTimeOriginal: '2026:03:14 09:26:53' });
      shots.set(name, bytes);
      await writeFile(join(work.path, 'incoming', name), bytes);
      await rename(join(work.path, 'incoming', name), join(folder, name));
    };
    const disk = join(work.path, 'dest.img');
    makeExt4Image(disk, 256 * MiB);
    const camera = { driver: 'usb-mtp', id: 'cam', bus: 'xhci.0', rootdir: card, readonly: true, desc: 'HIL Card' };
    const lines: Line[] = [];
    const guest = await startGuest({
      script: join(GUEST_DIR, 'tether-reopen.sh'),
      env: {},
      workDir: join(work.path, 'vm'),
      qemuArgs: ['-device', `usb-mtp,id=cam,bus=xhci.0,rootdir=${card},readonly=on,desc=HIL Card`, '-drive', `file=${disk},if=virtio,format=raw,cache=unsafe`],
      timeoutMs: 600_000,
      onLine: (line) => {
        const m = /^HIL:out tether (\{.*\})\s*$/.exec(line);
        if (m) lines.push(JSON.parse(m[1]!) as Line);
      },
    });
    try {
      const qmp = await guest.qmp();
      await guest.waitForLine(/HIL:out tether \{"event":"ready"/, 240_000);
      // The session lists the card once (what was there at the start); usb-mtp watches a folder for new files once it was listed.
      await guest.waitForLine(/HIL:out tether-log .*listed the files on the camera at the start/, 240_000);
      await take('IMG_0001.JPG');
      await guest.waitForLine(/HIL:out tether \{"event":"verified","name":"[^"]*IMG_0001\.JPG"/, 240_000);

      await qmp.execute('device_del', { id: 'cam' });
      await qmp.waitForEvent('DEVICE_DELETED', 30_000);
      await guest.waitForLine(/HIL:out tether \{"event":"dropped"/, 120_000);
      // Taken while the camera is away from the host.
      await take('IMG_0002.JPG');
      await qmp.execute('device_add', camera);
      await guest.waitForLine(/HIL:out tether \{"event":"reconnected"/, 90_000);
      await guest.waitForLine(/HIL:out tether \{"event":"verified","name":"[^"]*IMG_0002\.JPG"/, 240_000);
      await take('IMG_0003.JPG');
      qmp.close();
    } catch (err) {
      guest.kill();
      await guest.exited;
      throw new Error(`${(err as Error).message}\n--- console ---\n${guest.output.slice(-8000)}`);
    }
    const end = await guest.exited;
    const failure = guest.output.split('\n').find((l) => l.includes('HIL:failed'));
    if (end.timedOut || failure) throw new Error(`guest ${end.timedOut ? 'timed out' : 'failed'}: ${failure ?? ''}\n--- console ---\n${guest.output.slice(-8000)}`);
    expect(guest.output, guest.output.slice(-8000)).toMatch(/HIL:result tether rc=0/);

    // The camera really went away mid-session, once, and came back once.
    expect(lines.filter((l) => l.event === 'dropped')).toHaveLength(1);
    const reconnected = lines.filter((l) => l.event === 'reconnected');
    expect(reconnected).toHaveLength(1);
    expect(reconnected[0]).toMatchObject({ found: 1 });
    // Each shot verified exactly once: none lost, none copied twice after the reopen.
    const verified = lines.filter((l) => l.event === 'verified').map((l) => l.name!.split('/').pop());
    expect(verified.sort()).toEqual(['IMG_0001.JPG', 'IMG_0002.JPG', 'IMG_0003.JPG']);
    expect(lines.at(-1)).toMatchObject({ event: 'stopped', copied: 3, failed: 0, status: 'complete' });

    const out = join(work.path, 'out');
    extractFromExt4(disk, '/lib', out);
    const lib = await hashTree(join(out, 'lib'), { skip: (rel) => rel === '.shuttle' || rel === 'ascmhl' });
    const source = await hashTree(folder, { skip: (rel) => rel === 'OLD_0001.JPG' });
    expect(lib.size).toBe(3);
    expect(contents(lib)).toEqual(contents(source));
    for (const [name, bytes] of shots) expect((await readFile(join(folder, name))).equals(bytes)).toBe(true);
  } finally {
    await work.cleanup();
  }
}, 660_000);
