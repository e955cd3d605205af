import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, realpath, rm, statfs } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { isShuttleError } from '../src/errors.js';
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
  return readFileSync('/proc/filesystems', 'utf8').split('\n').map((l) => l.trim().split(/\s+/).pop() ?? '');
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
    const path = process.env['PATH'];
    process.env['PATH'] = await mkdtemp(join(work, 'empty-path-'));
    try {
      const v = await volumeOf(mnt);
      expect(v).toMatchObject({ mountPoint: mnt, device: withTools.device, isMountRoot: true, capacityBytes: withTools.capacityBytes });
      expect(v.uuid).toBeUndefined();
      // Without a UUID a card cannot be told from another, so it is keyed as a folder.
      expect((await sourceIdentityForFolder(mnt)).kind).toBe('folder');
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
