import { execFileSync, spawnSync } from 'node:child_process';
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { parseMountinfo } from '../src/device/card/mountinfo.js';
import { ejectCard, ejectThroughSystemd } from '../src/device/card/eject.js';
import { isShuttleError } from '../src/errors.js';
import { captureLog } from './support/daemon-helpers.js';
import { tempDir } from './support/tree.js';

/**
 * Ejecting a card (the API's POST /devices/:id/eject): unmount, then power the USB reader off with the
 * guards of systemd/shuttle-card. sysfs is a tree of the test's making (a USB reader with one or two
 * slots); the unmount is a real one of a tmpfs (the tests run as root).
 */

let work: string;
let cleanup: () => Promise<void>;
beforeEach(async () => {
  ({ path: work, cleanup } = await tempDir('shuttle-eject-'));
});
afterEach(async () => {
  await cleanup();
});

const USB = 'devices/pci0000:00/0000:00:14.0/usb1/1-2';

/** sysfs of a USB card reader 1-2 whose slot(s) are sdb (with partition sdb1), sdc, …; major:minor 8:17 is sdb1. */
async function fakeSys(slots: string[] = ['sdb']): Promise<string> {
  const sys = join(work, 'sys');
  const usb = join(sys, USB);
  await mkdir(usb, { recursive: true });
  await writeFile(join(usb, 'busnum'), '1\n');
  await writeFile(join(usb, 'remove'), '');
  const link = async (target: string, path: string): Promise<void> => {
    await mkdir(dirname(path), { recursive: true });
    await symlink(relative(dirname(path), target), path);
  };
  for (const [i, disk] of slots.entries()) {
    const lun = join(usb, '1-2:1.0', 'host6', 'target6:0:0', `6:0:0:${i}`);
    const block = join(lun, 'block', disk);
    await mkdir(join(block, `${disk}1`), { recursive: true });
    await writeFile(join(block, `${disk}1`, 'partition'), '1\n');
    await writeFile(join(lun, 'delete'), '');
    await link(block, join(sys, 'class', 'block', disk));
    await link(join(block, `${disk}1`), join(sys, 'class', 'block', `${disk}1`));
    await link(block, join(sys, 'block', disk));
    await link(lun, join(block, 'device'));
  }
  await link(join(sys, 'class', 'block', 'sdb1'), join(sys, 'dev', 'block', '8:17'));
  return sys;
}

describe('card eject', () => {
  test('unmounts-then-detaches-the-disk-and-switches-the-usb-port-off', async () => {
    const sys = await fakeSys();
    const unmounted: string[] = [];
    const r = await ejectCard({
      mountPoint: '/media/shuttle/sdb1',
      dev: '8:17',
      logger: captureLog().logger,
      sysRoot: sys,
      mounts: async () => '',
      unmount: async (m) => void unmounted.push(m),
    });
    expect(unmounted).toEqual(['/media/shuttle/sdb1']);
    expect(r).toEqual({ unmounted: true, poweredOff: true, usbDevice: '1-2' });
    expect(await readFile(join(sys, USB, 'remove'), 'utf8')).toBe('1');
    expect(await readFile(join(sys, USB, '1-2:1.0/host6/target6:0:0/6:0:0:0/delete'), 'utf8')).toBe('1');
  });

  test('a-multi-slot-reader-or-a-disk-with-another-mounted-filesystem-is-left-powered', async () => {
    const sys = await fakeSys(['sdb', 'sdc']);
    const opts = { mountPoint: '/media/shuttle/sdb1', dev: '8:17', logger: captureLog().logger, sysRoot: sys, unmount: async () => undefined };
    expect(await ejectCard({ ...opts, mounts: async () => '' })).toEqual({ unmounted: true, poweredOff: false, note: 'the reader has 2 slots' });
    const one = await fakeSysAgain();
    expect(await ejectCard({ ...opts, sysRoot: one, mounts: async () => '/dev/sdb2 /mnt/other vfat ro 0 0\n' })).toEqual({
      unmounted: true,
      poweredOff: false,
      note: 'another filesystem of /dev/sdb is still mounted',
    });
    expect(await readFile(join(sys, USB, 'remove'), 'utf8')).toBe('');
    expect(await readFile(join(one, USB, 'remove'), 'utf8')).toBe('');
  });

  test('a-real-mount-is-unmounted-and-one-that-cannot-be-is-an-eject-failed-error', async () => {
    const mnt = join(work, 'card');
    await mkdir(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
    try {
      const entry = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).find((m) => m.target === mnt)!;
      expect(entry).toBeDefined();
      const r = await ejectCard({ mountPoint: mnt, dev: `${entry.major}:${entry.minor}`, logger: captureLog().logger, sysRoot: join(work, 'no-sys') });
      expect(r).toMatchObject({ unmounted: true, poweredOff: false });
      expect(parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8')).some((m) => m.target === mnt)).toBe(false);
    } finally {
      // Still mounted only when the eject failed.
      spawnSync('umount', [mnt], { stdio: 'ignore' });
    }
  });

  test('a-path-that-is-not-mounted-fails-with-eject-failed-naming-it', async () => {
    const err = await ejectCard({ mountPoint: join(work, 'nothing'), dev: '0:0', logger: captureLog().logger, sysRoot: join(work, 'no-sys') }).catch((e: unknown) => e);
    expect(isShuttleError(err, 'EJECT_FAILED')).toBe(true);
    expect((err as Error).message).toContain(`cannot unmount ${join(work, 'nothing')}`);
  });
});

/**
 * The installed daemon's eject: no privileges of its own, it has systemd start the eject unit (a
 * oneshot: `systemctl start` returns once it ran) and reads the outcome from the mount table and sysfs.
 */
describe('card eject through systemd', () => {
  const mounted = '36 25 8:17 / /media/shuttle/sdb1 rw,nosuid shared:1 - vfat /dev/sdb1 rw\n';

  test('starts-the-eject-unit-of-the-card-and-reports-it-unmounted-and-powered-off', async () => {
    const sys = await fakeSys();
    const calls: string[][] = [];
    const r = await ejectThroughSystemd({
      mountPoint: '/media/shuttle/sdb1',
      dev: '8:17',
      logger: captureLog().logger,
      sysRoot: sys,
      mountinfo: async () => '',
      // What the unit's power-off does to sysfs: the disk and its partition go.
      systemctl: async (args) => {
        calls.push(args);
        await rm(join(sys, 'class', 'block', 'sdb1'));
      },
    });
    expect(calls).toEqual([['start', '--no-ask-password', 'shuttle-eject@sdb1.service']]);
    expect(r).toEqual({ unmounted: true, poweredOff: true });
  });

  test('a-card-the-unit-left-powered-is-reported-so-and-one-still-mounted-is-an-error', async () => {
    const sys = await fakeSys();
    const opts = { mountPoint: '/media/shuttle/sdb1', dev: '8:17', logger: captureLog().logger, sysRoot: sys, systemctl: async () => undefined };
    expect(await ejectThroughSystemd({ ...opts, mountinfo: async () => '' })).toEqual({
      unmounted: true,
      poweredOff: false,
      note: 'not powered off (journalctl -u shuttle-eject@sdb1.service says why)',
    });
    const err = await ejectThroughSystemd({ ...opts, mountinfo: async () => mounted }).catch((e: unknown) => e);
    expect(isShuttleError(err, 'EJECT_FAILED')).toBe(true);
    expect((err as Error).message).toContain('/media/shuttle/sdb1 is still mounted');
  });

  test('a-refusal-by-polkit-names-the-rule-and-no-unit-is-asked-for-a-mount-not-named-after-its-device', async () => {
    const sys = await fakeSys();
    const denied = Object.assign(new Error('Command failed'), { stderr: 'Failed to start shuttle-eject@sdb1.service: Access denied\n' });
    const opts = { dev: '8:17', logger: captureLog().logger, sysRoot: sys, mountinfo: async () => mounted };
    const err = await ejectThroughSystemd({ ...opts, mountPoint: '/media/shuttle/sdb1', systemctl: async () => Promise.reject(denied) }).catch((e: unknown) => e);
    expect(isShuttleError(err, 'EJECT_FAILED')).toBe(true);
    expect((err as Error).message).toContain('50-shuttle.rules');
    const calls: string[][] = [];
    const other = await ejectThroughSystemd({ ...opts, mountPoint: '/media/shuttle/holiday', systemctl: async (a) => void calls.push(a) }).catch((e: unknown) => e);
    expect(isShuttleError(other, 'EJECT_FAILED')).toBe(true);
    expect(calls).toEqual([]);
  });
});

/** A second one-slot reader, in a folder of its own. */
async function fakeSysAgain(): Promise<string> {
  const saved = work;
  work = join(saved, 'again');
  try {
    return await fakeSys();
  } finally {
    work = saved;
  }
}
