import { readFile, readdir, readlink, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

/**
 * What the kernel and udev already know about a block device, read from their files instead of asking
 * util-linux (each spawn costs up to a second on slow hosts): udev's database and /dev/disk links for
 * the filesystem's UUID, label and type, sysfs for removable and hot-pluggable.
 */

/** Where the system's files are; tests and chroots point these elsewhere. */
export interface SystemFiles {
  mountinfo: string;
  /** udev's per-device database: files named `b<major>:<minor>`. */
  udevData: string;
  /** Holds udev's by-uuid and by-label folders of symlinks. */
  devDisk: string;
  sys: string;
}

export const SYSTEM_FILES: SystemFiles = { mountinfo: '/proc/self/mountinfo', udevData: '/run/udev/data', devDisk: '/dev/disk', sys: '/sys' };

export interface DeviceNumber {
  major: number;
  minor: number;
}

export interface FilesystemTags {
  uuid?: string | undefined;
  label?: string | undefined;
  fstype?: string | undefined;
}

/** udev's answer and how far it goes: its database describes the filesystem fully, links only name it. */
export interface UdevTags extends FilesystemTags {
  complete: boolean;
}

/** Buses whose devices come and go while the system runs, as lsblk's HOTPLUG column counts them. */
const HOTPLUG_SUBSYSTEMS = new Set(['usb', 'ieee1394', 'pcmcia', 'mmc', 'ccw']);

/** The device number of a block device node; undefined when there is no such node. */
export async function blockDeviceNumber(device: string): Promise<DeviceNumber | undefined> {
  try {
    const s = await stat(device, { bigint: true });
    if (!s.isBlockDevice()) return undefined;
    // glibc's gnu_dev_major/minor split of a 64-bit dev_t.
    const major = Number(((s.rdev >> 8n) & 0xfffn) | ((s.rdev >> 32n) & ~0xfffn));
    const minor = Number((s.rdev & 0xffn) | ((s.rdev >> 12n) & ~0xffn));
    return { major, minor };
  } catch {
    return undefined;
  }
}

/** The /dev name the kernel gives a device number (`/dev/mmcblk0p2` for the `/dev/root` alias). */
export async function kernelDeviceName(dev: DeviceNumber, files: SystemFiles = SYSTEM_FILES): Promise<string | undefined> {
  try {
    return `/dev/${basename(await realpath(join(files.sys, 'dev', 'block', `${dev.major}:${dev.minor}`)))}`;
  } catch {
    return undefined;
  }
}

/** udev's `\x20`-style escapes (in *_ENC properties and /dev/disk link names) back to the raw UTF-8 text. */
export function decodeUdevString(s: string): string {
  if (!s.includes('\\x')) return s;
  const raw = Buffer.from(s, 'utf8');
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const hex = raw[i] === 0x5c && raw[i + 1] === 0x78 ? raw.subarray(i + 2, i + 4).toString('latin1') : '';
    if (/^[0-9a-fA-F]{2}$/.test(hex)) {
      out.push(Number.parseInt(hex, 16));
      i += 3;
    } else {
      out.push(raw[i] ?? 0);
    }
  }
  return Buffer.from(out).toString('utf8');
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

/**
 * The kernel's sequence number for the media now in the disk (Linux 5.15 and later): a loop device gets a
 * new one each time an image is attached, a reader each time a card goes in. For a partition, its disk's.
 */
async function currentDiskSeq(dev: DeviceNumber, files: SystemFiles): Promise<string | undefined> {
  let node: string;
  try {
    node = await realpath(join(files.sys, 'dev', 'block', `${dev.major}:${dev.minor}`));
  } catch {
    return undefined;
  }
  for (const file of [join(node, 'diskseq'), join(dirname(node), 'diskseq')]) {
    try {
      const seq = (await readFile(file, 'utf8')).trim();
      if (/^\d+$/.test(seq)) return seq;
    } catch {
      // no diskseq at this level (a partition keeps it on its disk; older kernels have none)
    }
  }
  return undefined;
}

/**
 * udev's database record of the device, if udev probed a filesystem on it; 'stale' when the record is of
 * media the device held before (its diskseq is not the kernel's), which happens where udev does not
 * process events (containers) or has not yet: its UUID would name another card.
 */
async function fromUdevDatabase(dev: DeviceNumber, files: SystemFiles): Promise<UdevTags | 'stale' | undefined> {
  let record: string;
  try {
    record = await readFile(join(files.udevData, `b${dev.major}:${dev.minor}`), 'utf8');
  } catch {
    return undefined;
  }
  const props = new Map<string, string>();
  let recordedSeq: string | undefined;
  for (const line of record.split('\n')) {
    if (line.startsWith('S:disk/by-diskseq/')) recordedSeq = line.slice('S:disk/by-diskseq/'.length);
    if (!line.startsWith('E:')) continue;
    const eq = line.indexOf('=');
    if (eq > 2) props.set(line.slice(2, eq), line.slice(eq + 1));
  }
  recordedSeq = props.get('DISKSEQ') ?? recordedSeq;
  if (recordedSeq !== undefined) {
    const current = await currentDiskSeq(dev, files);
    if (current !== undefined && current !== recordedSeq) return 'stale';
  }
  const encoded = (key: string): string | undefined => {
    const enc = props.get(`${key}_ENC`);
    return nonEmpty(enc === undefined ? props.get(key) : decodeUdevString(enc));
  };
  const fstype = nonEmpty(props.get('ID_FS_TYPE'));
  const uuid = encoded('ID_FS_UUID');
  // A record without filesystem properties is a device udev has not probed (yet): it says nothing.
  if (fstype === undefined && uuid === undefined) return undefined;
  return { uuid, label: encoded('ID_FS_LABEL'), fstype, complete: true };
}

/** The name of the first link in `folder` that resolves to `target`, decoded. */
async function linkNameTo(folder: string, target: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await readdir(folder);
  } catch {
    return undefined;
  }
  for (const name of names) {
    try {
      if (resolve(folder, await readlink(join(folder, name))) === target) return nonEmpty(decodeUdevString(name));
    } catch {
      // not a link, or gone meanwhile
    }
  }
  return undefined;
}

/**
 * /dev/disk/by-uuid and by-label links to the device: what a container sees of udev when /dev is shared
 * but /run/udev is not. A label link belongs to one device only (two EOS_DIGITAL cards share one name),
 * so links alone never prove a filesystem has no label, and they never give its type.
 */
async function fromDiskLinks(device: string, files: SystemFiles): Promise<UdevTags | undefined> {
  let node: string;
  try {
    node = await realpath(device);
  } catch {
    return undefined;
  }
  const [uuid, label] = await Promise.all([linkNameTo(join(files.devDisk, 'by-uuid'), node), linkNameTo(join(files.devDisk, 'by-label'), node)]);
  if (uuid === undefined && label === undefined) return undefined;
  return { uuid, label, complete: false };
}

/**
 * UUID, label and type of the filesystem on a block device as udev recorded them; undefined when udev
 * knows nothing of it, 'stale' when what it knows is of the media the device held before.
 */
export async function udevFilesystemTags(device: string, dev: DeviceNumber, files: SystemFiles = SYSTEM_FILES): Promise<UdevTags | 'stale' | undefined> {
  // udev keeps its /dev/disk links from the same events as its record: stale together.
  return (await fromUdevDatabase(dev, files)) ?? (await fromDiskLinks(device, files));
}

async function readsOne(file: string): Promise<boolean> {
  try {
    return (await readFile(file, 'utf8')).trim() === '1';
  } catch {
    return false;
  }
}

/**
 * lsblk's RM or HOTPLUG, from sysfs: the device (or, for a partition, its disk) is marked removable, or
 * sits on a hot-pluggable bus (USB, MMC, FireWire, PCMCIA, s390 ccw) anywhere up its device chain.
 */
export async function isRemovableOrHotplug(dev: DeviceNumber, files: SystemFiles = SYSTEM_FILES): Promise<boolean> {
  let node: string;
  try {
    node = await realpath(join(files.sys, 'dev', 'block', `${dev.major}:${dev.minor}`));
  } catch {
    return false;
  }
  if (await readsOne(join(node, 'removable'))) return true;
  const isPartition = await stat(join(node, 'partition')).then(
    () => true,
    () => false,
  );
  if (isPartition && (await readsOne(join(dirname(node), 'removable')))) return true;
  const top = resolve(files.sys);
  for (let dir = node; dir.startsWith(`${top}/`); dir = dirname(dir)) {
    try {
      if (HOTPLUG_SUBSYSTEMS.has(basename(await readlink(join(dir, 'subsystem'))))) return true;
    } catch {
      // no subsystem link at this level
    }
  }
  return false;
}
