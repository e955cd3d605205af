import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, realpath, rm, statfs, symlink, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { SYSTEM_FILES, isRemovableOrHotplug, type SystemFiles } from '../src/device/card/block-device.js';
import { sourceIdentityForFolder, volumeOf } from '../src/device/card/volume.js';

/**
 * Real filesystems made here: images formatted by mkfs, attached to loop devices and mounted. Needs
 * root, loop devices and the dosfstools / exfatprogs / exfat-fuse packages; a missing piece fails the
 * test naming it rather than skipping it.
 */

let work: string;
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'shuttle-volume-'));
});
afterAll(async () => {
  for (const c of cleanups.reverse()) {
    try {
      c();
    } catch {
      // best effort: a later cleanup may still succeed
    }
  }
  await rm(work, { recursive: true, force: true });
});

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function need(condition: boolean, message: string): void {
  if (!condition) throw new Error(`cannot run this test here: ${message}`);
}

function kernelFilesystems(): string[] {
  return readFileSync('/proc/filesystems', 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/).pop() ?? '');
}

function hasTool(tool: string): boolean {
  try {
    sh('sh', ['-c', `command -v ${tool}`]);
    return true;
  } catch {
    return false;
  }
}

function requireLoopMounts(): void {
  need(process.getuid?.() === 0, 'mounting images needs root');
  need(hasTool('losetup') && readFileSync('/proc/devices', 'utf8').includes(' loop'), 'no loop devices in this kernel or sandbox');
}

let imageCount = 0;
async function image(sizeMiB: number): Promise<{ img: string; mnt: string }> {
  const n = imageCount++;
  const img = join(work, `card${n}.img`);
  const mnt = join(work, `mnt${n}`);
  sh('truncate', ['-s', `${sizeMiB}M`, img]);
  await mkdir(mnt);
  return { img, mnt };
}

/** A FAT32 card as cameras format it, mounted read-only by the kernel's vfat driver, else by fusefat on a loop device. */
async function fat32Card(label: string): Promise<string> {
  requireLoopMounts();
  need(hasTool('mkfs.vfat'), 'mkfs.vfat missing (apt-get install dosfstools)');
  const { img, mnt } = await image(40);
  sh('mkfs.vfat', ['-F', '32', '-n', label, img]);
  if (kernelFilesystems().includes('vfat')) {
    sh('mount', ['-o', 'loop,ro', img, mnt]);
  } else {
    need(hasTool('fusefat'), 'no vfat in this kernel and fusefat missing (apt-get install fusefat)');
    const loop = sh('losetup', ['-f', '--show', '-r', img]).trim();
    cleanups.push(() => sh('losetup', ['-d', loop]));
    // fsname makes the mount show its device, as a kernel mount would, so findmnt/blkid can read the UUID.
    sh('fusefat', ['-o', `ro,fsname=${loop}`, loop, mnt]);
  }
  cleanups.push(() => sh('umount', [mnt]));
  return mnt;
}

/** An exFAT card (SDXC cards come so formatted), by the kernel driver or else the FUSE one on a loop device. */
async function exfatCard(label: string): Promise<string> {
  requireLoopMounts();
  need(hasTool('mkfs.exfat'), 'mkfs.exfat missing (apt-get install exfatprogs)');
  const { img, mnt } = await image(64);
  sh('mkfs.exfat', ['-L', label, img]);
  if (kernelFilesystems().includes('exfat')) {
    sh('mount', ['-t', 'exfat', '-o', 'loop', img, mnt]);
    cleanups.push(() => sh('umount', [mnt]));
  } else {
    need(hasTool('mount.exfat-fuse'), 'no exfat in this kernel and mount.exfat-fuse missing (apt-get install exfat-fuse)');
    const loop = sh('losetup', ['-f', '--show', img]).trim();
    cleanups.push(() => sh('losetup', ['-d', loop]));
    sh('mount.exfat-fuse', [loop, mnt]);
    cleanups.push(() => sh('umount', [mnt]));
  }
  return mnt;
}

/** An ext4 filesystem with a UUID and label: a data disk, not something a camera writes. */
async function ext4Disk(label: string): Promise<string> {
  requireLoopMounts();
  const { img, mnt } = await image(16);
  sh('mkfs.ext4', ['-q', '-L', label, img]);
  sh('mount', ['-o', 'loop,ro', img, mnt]);
  cleanups.push(() => sh('umount', [mnt]));
  return mnt;
}

async function capacity(path: string): Promise<number> {
  const s = await statfs(path);
  return s.blocks * s.bsize;
}

describe('volumeOf', () => {
  test('a folder on the root filesystem: its mount point above it, not a mount root, its size', async () => {
    const dir = await realpath(await mkdtemp(join(work, 'plain-')));
    const v = await volumeOf(dir);
    expect(dir.startsWith(v.mountPoint === '/' ? '/' : `${v.mountPoint}/`)).toBe(true);
    expect(v.isMountRoot).toBe(false);
    expect(v.capacityBytes).toBe(await capacity(v.mountPoint));
    expect(v.capacityBytes).toBeGreaterThan(0);
    expect(v.fsType).not.toBe('');
  });

  test('an exFAT card image: UUID, label, probed type and capacity of the mounted filesystem', async () => {
    const mnt = await exfatCard('EOS_DIGITAL');
    const v = await volumeOf(mnt);
    const probed = sh('blkid', ['-o', 'export', '-s', 'UUID', v.device]);
    expect(v).toMatchObject({ mountPoint: mnt, fsType: 'exfat', label: 'EOS_DIGITAL', isMountRoot: true });
    expect(v.device).toMatch(/^\/dev\/loop\d+$/);
    expect(probed).toContain(`UUID=${v.uuid}`);
    expect(v.uuid).toMatch(/^[0-9A-F]{4}-[0-9A-F]{4}$/);
    expect(v.capacityBytes).toBe(await capacity(mnt));
  });

  test('without util-linux tools (a bare container) the mount still comes from /proc/self/mountinfo', async () => {
    const mnt = await exfatCard('EOS_DIGITAL');
    const withTools = await volumeOf(mnt);
    // No udev either (its files would name the UUID without a tool): an empty stand-in for them.
    const files = await udevFiles();
    const path = process.env['PATH'];
    process.env['PATH'] = await mkdtemp(join(work, 'empty-path-'));
    try {
      const v = await volumeOf(mnt, { files });
      expect(v).toMatchObject({ mountPoint: mnt, device: withTools.device, isMountRoot: true, capacityBytes: withTools.capacityBytes });
      expect(v.uuid).toBeUndefined();
      // Without a UUID a card cannot be told from another, so it is keyed as a folder.
      expect((await sourceIdentityForFolder(mnt, { files })).kind).toBe('folder');
    } finally {
      process.env['PATH'] = path;
    }
  });

  test('a missing path is SOURCE_NOT_FOUND', async () => {
    const err = await volumeOf(join(work, 'nope')).catch((e: unknown) => e);
    expect(isShuttleError(err, 'SOURCE_NOT_FOUND')).toBe(true);
  });
});

describe('sourceIdentityForFolder', () => {
  test('a plain temp folder is a folder keyed by host and real path', async () => {
    const dir = await mkdtemp(join(work, 'plain-'));
    const id = await sourceIdentityForFolder(dir);
    expect(id.kind).toBe('folder');
    expect(id.key).toBe(`folder:${hostname()}:${await realpath(dir)}`);
  });

  test('a loop-mounted FAT32 card at its root is a card keyed by UUID, label and capacity', async () => {
    const mnt = await fat32Card('EOS_DIGITAL');
    const v = await volumeOf(mnt);
    expect(v).toMatchObject({ fsType: 'vfat', label: 'EOS_DIGITAL', isMountRoot: true });
    const id = await sourceIdentityForFolder(mnt);
    expect(id).toMatchObject({ kind: 'card', label: 'EOS_DIGITAL' });
    expect(id.key).toBe(`card:${v.uuid}:EOS_DIGITAL:${await capacity(mnt)}`);

    const other = await sourceIdentityForFolder(await fat32Card('EOS_DIGITAL'));
    expect(other.kind).toBe('card');
    expect(other.key).not.toBe(id.key);
  });

  test('an exFAT card at its root is a card keyed by UUID, label and capacity', async () => {
    const mnt = await exfatCard('EOS_DIGITAL');
    const v = await volumeOf(mnt);
    const id = await sourceIdentityForFolder(mnt);
    expect(id).toMatchObject({ kind: 'card', label: 'EOS_DIGITAL' });
    expect(id.key).toBe(`card:${v.uuid}:EOS_DIGITAL:${await capacity(mnt)}`);
    expect(id.details).toMatchObject({ uuid: v.uuid ?? '', fsType: 'exfat', mountPoint: mnt });
  });

  test('two cards with the same label get different keys', async () => {
    const a = await sourceIdentityForFolder(await exfatCard('EOS_DIGITAL'));
    const b = await sourceIdentityForFolder(await exfatCard('EOS_DIGITAL'));
    expect(a.kind).toBe('card');
    expect(b.kind).toBe('card');
    expect(a.label).toBe(b.label);
    expect(a.key).not.toBe(b.key);
  });

  test('the same card keeps its key when mounted somewhere else', async () => {
    const mnt = await exfatCard('NIKON_Z');
    const before = await sourceIdentityForFolder(mnt);
    const elsewhere = join(work, 'remount');
    await mkdir(elsewhere);
    sh('mount', ['--bind', mnt, elsewhere]);
    cleanups.push(() => sh('umount', [elsewhere]));
    const after = await sourceIdentityForFolder(elsewhere);
    expect(after.key).toBe(before.key);
  });

  test('a folder inside a card is a folder, not the card', async () => {
    const mnt = await exfatCard('EOS_DIGITAL');
    await mkdir(join(mnt, 'DCIM'));
    const id = await sourceIdentityForFolder(join(mnt, 'DCIM'));
    expect(id.kind).toBe('folder');
    expect(id.key).toBe(`folder:${hostname()}:${join(mnt, 'DCIM')}`);

    const bound = join(work, 'bound-dcim');
    await mkdir(bound);
    sh('mount', ['--bind', join(mnt, 'DCIM'), bound]);
    cleanups.push(() => sh('umount', [bound]));
    expect((await volumeOf(bound)).isMountRoot).toBe(false);
    expect((await sourceIdentityForFolder(bound)).kind).toBe('folder');
  });

  test('the root of a non-removable ext4 disk is a folder even though it has a UUID', async () => {
    const mnt = await ext4Disk('EOS_DIGITAL');
    const v = await volumeOf(mnt);
    expect(v).toMatchObject({ fsType: 'ext4', isMountRoot: true, removable: false, label: 'EOS_DIGITAL' });
    expect(v.uuid).toMatch(/^[0-9a-f-]{36}$/);
    expect((await sourceIdentityForFolder(mnt)).kind).toBe('folder');
  });
});

/** A stand-in for udev's files around the real mount table and sysfs: empty folders the test fills. */
async function udevFiles(): Promise<SystemFiles> {
  const root = await mkdtemp(join(work, 'udev-'));
  const files = { ...SYSTEM_FILES, udevData: join(root, 'data'), devDisk: join(root, 'disk') };
  await mkdir(files.udevData, { recursive: true });
  await mkdir(join(files.devDisk, 'by-uuid'), { recursive: true });
  await mkdir(join(files.devDisk, 'by-label'), { recursive: true });
  return files;
}

/** Runs `body` with no tools reachable, so anything it learns came from files, not from a child process. */
async function withoutTools<T>(body: () => Promise<T>): Promise<T> {
  const path = process.env['PATH'];
  process.env['PATH'] = await mkdtemp(join(work, 'empty-path-'));
  try {
    return await body();
  } finally {
    process.env['PATH'] = path;
  }
}

function devNumber(device: string): string {
  return sh('stat', ['-L', '-c', '%Hr:%Lr', device]).trim();
}

describe('volumeOf from the kernel and udev files', () => {
  test('a mount point with a space (escaped as \\040 in mountinfo) is found as written, tmpfs as its device', async () => {
    need(process.getuid?.() === 0, 'mounting a tmpfs needs root');
    const mnt = join(await realpath(work), 'tmp fs');
    await mkdir(join(mnt, 'sub'), { recursive: true });
    sh('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
    cleanups.push(() => sh('umount', [mnt]));
    await mkdir(join(mnt, 'sub'));
    expect(await volumeOf(mnt)).toMatchObject({ mountPoint: mnt, device: 'tmpfs', fsType: 'tmpfs', isMountRoot: true, removable: false, capacityBytes: 8 * 1024 * 1024 });
    expect(await volumeOf(join(mnt, 'sub'))).toMatchObject({ mountPoint: mnt, isMountRoot: false });
  });

  test("udev's database record gives UUID, label and the real type under FUSE with no tool run", async () => {
    const mnt = await exfatCard('EOS_DIGITAL');
    const withTools = await volumeOf(mnt);
    const files = await udevFiles();
    // blkid -o udev prints the very properties udev's blkid builtin stores for the device.
    const record = sh('blkid', ['-o', 'udev', withTools.device])
      .split('\n')
      .filter(Boolean)
      .map((l) => `E:${l}`)
      .join('\n');
    await writeFile(join(files.udevData, `b${devNumber(withTools.device)}`), `S:disk/by-uuid/${withTools.uuid}\nI:1\n${record}\nG:systemd\n`);
    const v = await withoutTools(() => volumeOf(mnt, { files: files }));
    expect(v).toEqual(withTools);
    expect(v).toMatchObject({ fsType: 'exfat', label: 'EOS_DIGITAL', isMountRoot: true });
  });

  test('a label udev escaped (EOS\\x20DIGITAL) comes back with its space, from the record and from the links', async () => {
    const mnt = await fat32Card('EOS DIGITAL');
    const withTools = await volumeOf(mnt);
    expect(withTools.label).toBe('EOS DIGITAL');

    const fromRecord = await udevFiles();
    await writeFile(
      join(fromRecord.udevData, `b${devNumber(withTools.device)}`),
      `E:ID_FS_LABEL=EOS_DIGITAL\nE:ID_FS_LABEL_ENC=EOS\\x20DIGITAL\nE:ID_FS_UUID=${withTools.uuid}\nE:ID_FS_UUID_ENC=${withTools.uuid}\nE:ID_FS_TYPE=vfat\n`,
    );
    expect(await withoutTools(() => volumeOf(mnt, { files: fromRecord }))).toMatchObject({ label: 'EOS DIGITAL', uuid: withTools.uuid, fsType: 'vfat' });

    // A container may see udev's /dev/disk links but not its database: the links name UUID and label.
    const fromLinks = await udevFiles();
    const rel = relative(join(fromLinks.devDisk, 'by-uuid'), withTools.device);
    await symlink(rel, join(fromLinks.devDisk, 'by-uuid', withTools.uuid ?? 'none'));
    await symlink(rel, join(fromLinks.devDisk, 'by-label', 'EOS\\x20DIGITAL'));
    await symlink('../../null', join(fromLinks.devDisk, 'by-label', 'OTHER'));
    const v = await withoutTools(() => volumeOf(mnt, { files: fromLinks }));
    expect(v).toMatchObject({ label: 'EOS DIGITAL', uuid: withTools.uuid, isMountRoot: true });
  });

  test("udev's links without its database leave the FUSE type and a missing label to lsblk and blkid, as before", async () => {
    const mnt = await exfatCard('NIKON_Z');
    const withTools = await volumeOf(mnt);
    const files = await udevFiles();
    await symlink(relative(join(files.devDisk, 'by-uuid'), withTools.device), join(files.devDisk, 'by-uuid', withTools.uuid ?? 'none'));
    expect(await volumeOf(mnt, { files: files })).toEqual(withTools);
  });

  test('a UUID link without a label link leaves the label to blkid: the label link may belong to another card', async () => {
    const mnt = await ext4Disk('EOS_DIGITAL');
    const withTools = await volumeOf(mnt);
    const files = await udevFiles();
    await symlink(relative(join(files.devDisk, 'by-uuid'), withTools.device), join(files.devDisk, 'by-uuid', withTools.uuid ?? 'none'));
    await symlink('../../null', join(files.devDisk, 'by-label', 'EOS_DIGITAL'));
    expect(await volumeOf(mnt, { files: files })).toEqual(withTools);
    expect(withTools.label).toBe('EOS_DIGITAL');
  });

  test('a record of the media the device held before (another diskseq) is not taken: the device itself is probed', async () => {
    const mnt = await fat32Card('EOS_DIGITAL');
    const withTools = await volumeOf(mnt);
    const devno = devNumber(withTools.device);
    const seqFile = `/sys/dev/block/${devno}/diskseq`;
    need(existsSync(seqFile), `${seqFile} missing (Linux 5.15 or later numbers the media in a disk)`);
    const seq = readFileSync(seqFile, 'utf8').trim();
    const files = await udevFiles();
    const record = (diskseq: string): string => `S:disk/by-diskseq/${diskseq}\nE:ID_FS_UUID=AAAA-BBBB\nE:ID_FS_UUID_ENC=AAAA-BBBB\nE:ID_FS_LABEL=OLD_CARD\nE:ID_FS_TYPE=vfat\n`;
    // The same media: the record stands (and is all that is read).
    await writeFile(join(files.udevData, `b${devno}`), record(seq));
    expect(await withoutTools(() => volumeOf(mnt, { files }))).toMatchObject({ uuid: 'AAAA-BBBB', label: 'OLD_CARD' });
    // Earlier media, by the record's link or its DISKSEQ property: what the card holds now.
    await writeFile(join(files.udevData, `b${devno}`), record(String(Number(seq) - 1)));
    expect(await volumeOf(mnt, { files })).toMatchObject({ uuid: withTools.uuid, label: 'EOS_DIGITAL', fsType: 'vfat' });
    await writeFile(join(files.udevData, `b${devno}`), `E:DISKSEQ=${Number(seq) + 7}\nE:ID_FS_UUID=AAAA-BBBB\nE:ID_FS_TYPE=vfat\n`);
    expect(await volumeOf(mnt, { files })).toMatchObject({ uuid: withTools.uuid, label: 'EOS_DIGITAL' });
  });

  test('a record of another device, or one udev has not probed yet, is not taken for this one', async () => {
    const mnt = await exfatCard('EOS_DIGITAL');
    const withTools = await volumeOf(mnt);
    const files = await udevFiles();
    await writeFile(join(files.udevData, 'b7:99999'), 'E:ID_FS_UUID=AAAA-BBBB\nE:ID_FS_TYPE=vfat\n');
    await writeFile(join(files.udevData, `b${devNumber(withTools.device)}`), 'E:SYSTEMD_READY=0\n');
    expect(await volumeOf(mnt, { files: files })).toEqual(withTools);
  });
});

describe('isRemovableOrHotplug', () => {
  test("agrees with lsblk's RM or HOTPLUG for every block device on this host", async () => {
    need(hasTool('lsblk'), 'lsblk missing (apt-get install util-linux)');
    const names = await readdir('/sys/class/block');
    expect(names.length).toBeGreaterThan(0);
    let compared = 0;
    for (const name of names) {
      let out: string;
      let devno: string;
      try {
        devno = readFileSync(`/sys/class/block/${name}/dev`, 'utf8');
        out = sh('lsblk', ['-J', '-d', '-o', 'RM,HOTPLUG', `/dev/${name}`]);
      } catch {
        // A loop device another test detached (or never gave a node) while this one listed them.
        continue;
      }
      const [major = 0, minor = 0] = devno.trim().split(':').map(Number);
      const dev = (JSON.parse(out) as { blockdevices: { rm: boolean; hotplug: boolean }[] }).blockdevices[0];
      expect({ name, removable: await isRemovableOrHotplug({ major, minor }) }).toEqual({ name, removable: dev !== undefined && (dev.rm || dev.hotplug) });
      compared++;
    }
    expect(compared).toBeGreaterThan(0);
  });

  /** A sysfs tree shaped like a USB card reader's partition: devices/…/usb1/1-1/…/block/sdb/sdb1. */
  async function readerTree(opts: { usb: boolean; diskRemovable: boolean }): Promise<SystemFiles> {
    const sys = await mkdtemp(join(work, 'sys-'));
    const usbDev = join(sys, 'devices/pci0000:00/0000:00:14.0/usb1/1-1');
    const disk = join(usbDev, '1-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb');
    await mkdir(join(disk, 'sdb1'), { recursive: true });
    await mkdir(join(sys, 'dev/block'), { recursive: true });
    await mkdir(join(sys, 'bus/usb'), { recursive: true });
    await mkdir(join(sys, 'class/block'), { recursive: true });
    await writeFile(join(disk, 'removable'), opts.diskRemovable ? '1\n' : '0\n');
    await writeFile(join(disk, 'sdb1', 'partition'), '1\n');
    await symlink(relative(disk, join(sys, 'class/block')), join(disk, 'subsystem'));
    if (opts.usb) await symlink(relative(usbDev, join(sys, 'bus/usb')), join(usbDev, 'subsystem'));
    await symlink(relative(join(sys, 'dev/block'), join(disk, 'sdb1')), join(sys, 'dev/block/8:17'));
    return { ...SYSTEM_FILES, sys };
  }

  test('a partition on a USB reader is hot-pluggable even when its disk is not marked removable', async () => {
    expect(await isRemovableOrHotplug({ major: 8, minor: 17 }, await readerTree({ usb: true, diskRemovable: false }))).toBe(true);
    expect(await isRemovableOrHotplug({ major: 8, minor: 17 }, await readerTree({ usb: false, diskRemovable: false }))).toBe(false);
  });

  test('a partition whose disk is marked removable is removable', async () => {
    expect(await isRemovableOrHotplug({ major: 8, minor: 17 }, await readerTree({ usb: false, diskRemovable: true }))).toBe(true);
  });
});
