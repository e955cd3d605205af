import { execFile } from 'node:child_process';
import { realpath, stat, statfs } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename } from 'node:path';
import { ShuttleError, abortReason, errnoCode, throwIfAborted } from '../../errors.js';
import type { SourceIdentity } from '../source.js';
import { SYSTEM_FILES, blockDeviceNumber, isRemovableOrHotplug, kernelDeviceName, udevFilesystemTags, type SystemFiles } from './block-device.js';
import { mountHolding, mountedBelow, type MountEntry } from './mountinfo.js';

/**
 * Which filesystem holds a path, and what identifies it, from the kernel's and udev's own files:
 * /proc/self/mountinfo for the mount, udev's database (or its /dev/disk links) for UUID, label and the
 * real type under FUSE, sysfs for removable, statfs for the size. No child process in the common case:
 * util-linux's lsblk and blkid run only when udev knows nothing of a block device (minimal containers,
 * hosts without udev), and findmnt only when /proc/self/mountinfo cannot be read.
 */

export interface VolumeInfo {
  mountPoint: string;
  /** `/dev/sdb1` for a block device; otherwise the mount's source (`overlay`, `tmpfs`), '' if unknown. */
  device: string;
  /** The filesystem type; for FUSE block mounts (`fuseblk`) the type found on the device, e.g. `exfat`. */
  fsType: string;
  uuid?: string;
  label?: string;
  capacityBytes: number;
  /** The path is where the filesystem's root is mounted: not a folder inside it, not a bind mount of a folder in it. */
  isMountRoot: boolean;
  /** The kernel marks the device removable or hot-pluggable (USB readers, SD slots on some hosts). */
  removable: boolean;
}

export interface VolumeOptions {
  signal?: AbortSignal | undefined;
  /** Where the mount table, udev's files and sysfs are read from: the system's unless a test or chroot says. */
  files?: SystemFiles | undefined;
}

/** Filesystems cameras write; a mounted one of these with a UUID is a card even when the kernel does not call its device removable. */
const CARD_FILESYSTEMS = new Set(['vfat', 'msdos', 'exfat']);
const TOOL_TIMEOUT_MS = 5_000;

/** A mount as findmnt reports it, with the UUID and label it may have read. */
interface FoundMount extends MountEntry {
  uuid?: string | undefined;
  label?: string | undefined;
}

/** stdout of a util-linux tool, or undefined when it is missing, fails or times out. Aborts rethrow. */
function run(tool: string, args: readonly string[], signal: AbortSignal | undefined): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    execFile(tool, args, { timeout: TOOL_TIMEOUT_MS, signal, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' } }, (err, stdout) => {
      if (signal?.aborted) reject(abortReason(signal));
      else resolve(err ? undefined : stdout);
    });
  });
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function flag(v: unknown): boolean {
  return v === true || v === '1' || v === 1;
}

function parseJson(out: string | undefined): Record<string, unknown> | undefined {
  if (out === undefined || out.trim() === '') return undefined;
  try {
    const v: unknown = JSON.parse(out);
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

async function findmnt(path: string, signal: AbortSignal | undefined): Promise<FoundMount | undefined> {
  const json = parseJson(await run('findmnt', ['-J', '-b', '-T', path, '-o', 'TARGET,SOURCE,FSTYPE,UUID,LABEL,SIZE'], signal));
  const fs = (json?.['filesystems'] as Record<string, unknown>[] | undefined)?.[0];
  const target = text(fs?.['target']);
  if (fs === undefined || target === undefined) return undefined;
  // A bind mount or btrfs subvolume shows as `/dev/sda1[/sub]`.
  const [, source = '', fsRoot = '/'] = /^(.*?)(?:\[(.*)\])?$/.exec(text(fs['source']) ?? '') ?? [];
  return { target, source, fsRoot, fstype: text(fs['fstype']) ?? '', major: 0, minor: 0, uuid: text(fs['uuid']), label: text(fs['label']) };
}

interface DeviceFacts {
  uuid?: string | undefined;
  label?: string | undefined;
  fstype?: string | undefined;
  removable: boolean;
}

async function lsblk(device: string, signal: AbortSignal | undefined): Promise<DeviceFacts> {
  const json = parseJson(await run('lsblk', ['-J', '-d', '-o', 'NAME,UUID,LABEL,FSTYPE,RM,HOTPLUG', device], signal));
  const dev = (json?.['blockdevices'] as Record<string, unknown>[] | undefined)?.[0];
  if (dev === undefined) return { removable: false };
  return { uuid: text(dev['uuid']), label: text(dev['label']), fstype: text(dev['fstype']), removable: flag(dev['rm']) || flag(dev['hotplug']) };
}

/**
 * blkid's export format: KEY=value lines, with shell-style backslash escapes in values. `probe` reads the
 * device itself rather than blkid's cache (which needs read access to the device).
 */
async function blkid(device: string, signal: AbortSignal | undefined, probe = false): Promise<Omit<DeviceFacts, 'removable'>> {
  const out = await run('blkid', [...(probe ? ['-p'] : []), '-o', 'export', '-s', 'UUID', '-s', 'LABEL', '-s', 'TYPE', device], signal);
  const facts: Record<string, string> = {};
  for (const line of (out ?? '').split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) facts[line.slice(0, eq)] = line.slice(eq + 1).replace(/\\(.)/g, '$1');
  }
  return { uuid: text(facts['UUID']), label: text(facts['LABEL']), fstype: text(facts['TYPE']) };
}

function notFound(path: string, err: unknown): ShuttleError {
  const errno = errnoCode(err);
  return new ShuttleError(errno === 'ENOENT' || errno === 'ENOTDIR' ? 'SOURCE_NOT_FOUND' : 'SOURCE_UNREADABLE', `${path}: ${errno ?? String(err)}`, {
    cause: err,
    context: { path, errno },
  });
}

/** FUSE drivers (exfat-fuse as `fuseblk`, fusefat as `fuse.fusefat`) hide the real type behind their own. */
function isFuse(t: string | undefined): boolean {
  return t === 'fuse' || t === 'fuseblk' || (t?.startsWith('fuse.') ?? false);
}

interface DeviceIdentity extends DeviceFacts {
  device: string;
}

/** Identity of the filesystem on the mount's source: udev's record when it has one, else what lsblk and blkid find. */
async function identify(mount: FoundMount, files: SystemFiles, signal: AbortSignal | undefined): Promise<DeviceIdentity> {
  let device = mount.source;
  let { uuid, label, fstype } = mount;
  if (!device.startsWith('/dev/')) return { device, uuid, label, fstype, removable: false };
  // The kernel names the root filesystem's device `/dev/root` when it mounted it itself; findmnt shows the real node.
  if (device === '/dev/root' && mount.major !== 0) device = (await kernelDeviceName(mount, files)) ?? device;
  const devno = (await blockDeviceNumber(device)) ?? (mount.major !== 0 ? { major: mount.major, minor: mount.minor } : undefined);
  const [sysRemovable, udevAnswer] = devno === undefined ? [false, undefined] : await Promise.all([isRemovableOrHotplug(devno, files), udevFilesystemTags(device, devno, files)]);
  let removable = sysRemovable;
  if (udevAnswer === 'stale') {
    // lsblk reads the same outdated record: only the device itself tells what it holds now.
    const probed = await blkid(device, signal, true);
    return { device, uuid: uuid ?? probed.uuid, label: label ?? probed.label, fstype: isFuse(fstype) ? (probed.fstype ?? fstype) : fstype, removable };
  }
  const udev = udevAnswer;
  uuid ??= udev?.uuid;
  label ??= udev?.label;
  if (isFuse(fstype) && udev?.fstype !== undefined) fstype = udev.fstype;
  // udev's record is the whole answer; its links are when they name both UUID and label (a label-less filesystem
  // and a label link taken by another card look the same from them, and blkid tells them apart).
  const known = udev !== undefined && !isFuse(fstype) && (udev.complete || (uuid !== undefined && label !== undefined));
  if (known) return { device, uuid, label, fstype, removable };
  throwIfAborted(signal);
  const fromLsblk = await lsblk(device, signal);
  removable ||= fromLsblk.removable;
  uuid ??= fromLsblk.uuid;
  label ??= fromLsblk.label;
  if (isFuse(fstype) && fromLsblk.fstype !== undefined) fstype = fromLsblk.fstype;
  if (uuid === undefined || label === undefined || isFuse(fstype)) {
    const probed = await blkid(device, signal);
    uuid ??= probed.uuid;
    label ??= probed.label;
    if (isFuse(fstype) && probed.fstype !== undefined) fstype = probed.fstype;
  }
  return { device, uuid, label, fstype, removable };
}

/** The filesystem that holds `path`: mount point, device, type, UUID and label when known, and size. */
export async function volumeOf(path: string, options: VolumeOptions = {}): Promise<VolumeInfo> {
  const { signal, files = SYSTEM_FILES } = options;
  throwIfAborted(signal);
  let real: string;
  try {
    real = await realpath(path);
  } catch (err) {
    throw notFound(path, err);
  }
  const mount: FoundMount | undefined = (await mountHolding(real, files.mountinfo)) ?? (await findmnt(real, signal));
  if (mount === undefined) {
    throw new ShuttleError('SOURCE_UNREADABLE', `${real}: cannot tell which filesystem holds it (no ${files.mountinfo}, no findmnt)`, { context: { path: real } });
  }
  throwIfAborted(signal);
  const { device, uuid, label, fstype = '', removable } = await identify(mount, files, signal);
  let capacityBytes = 0;
  try {
    const s = await statfs(mount.target);
    capacityBytes = Number(s.blocks) * Number(s.bsize);
  } catch {
    // Size unknown (an unreadable mount point); identity still stands on the other fields.
  }
  const info: VolumeInfo = { mountPoint: mount.target, device, fsType: fstype, capacityBytes, isMountRoot: real === mount.target && mount.fsRoot === '/', removable };
  if (uuid !== undefined) info.uuid = uuid;
  if (label !== undefined) info.label = label;
  return info;
}

/**
 * Filesystems that hold neither sparse nor compressed files: every byte of a file's size takes a byte of
 * the volume, so the files on one total at most its used space. (ext4, btrfs, xfs and NTFS can hold a
 * file whose size exceeds the blocks it takes.)
 */
const DENSE_FILESYSTEMS: ReadonlySet<string> = new Set(['vfat', 'msdos', 'exfat']);

/**
 * At most the bytes the files under `root` can total: the used space of its filesystem, when that is one
 * without sparse or compressed files and no other filesystem is mounted below `root` (a walk would enter
 * it). Undefined otherwise.
 */
export async function usedBytesBound(root: string, options: VolumeOptions = {}): Promise<number | undefined> {
  const { signal, files = SYSTEM_FILES } = options;
  const vol = await volumeOf(root, options);
  if (!DENSE_FILESYSTEMS.has(vol.fsType)) return undefined;
  throwIfAborted(signal);
  if ((await mountedBelow(await realpath(root), files.mountinfo)) !== false) return undefined;
  const s = await statfs(vol.mountPoint, { bigint: true });
  const used = (s.blocks - s.bfree) * s.bsize;
  return used >= 0n && used <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(used) : undefined;
}

/** A card: the root of a mounted filesystem with a UUID, on a removable device or in a filesystem cameras write. */
export function isCardVolume(v: VolumeInfo): boolean {
  return v.isMountRoot && v.uuid !== undefined && (v.removable || CARD_FILESYSTEMS.has(v.fsType));
}

/**
 * The identity of a folder source. A card is keyed by filesystem UUID + label + capacity, so it is
 * recognised wherever and however often it is mounted (labels alone are not unique: every Canon card
 * is EOS_DIGITAL); any other folder by host and real path.
 */
export async function sourceIdentityForFolder(root: string, options: VolumeOptions = {}): Promise<SourceIdentity> {
  let real: string;
  try {
    real = await realpath(root);
    if (!(await stat(real)).isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'ENOTDIR' });
  } catch (err) {
    throw notFound(root, err);
  }
  const vol = await volumeOf(real, options);
  if (isCardVolume(vol)) {
    const label = vol.label ?? '';
    return {
      kind: 'card',
      key: `card:${vol.uuid}:${label}:${vol.capacityBytes}`,
      label: label || basename(vol.mountPoint),
      details: { uuid: vol.uuid ?? '', label, capacityBytes: vol.capacityBytes, device: vol.device, fsType: vol.fsType, mountPoint: vol.mountPoint },
    };
  }
  const host = hostname();
  return {
    kind: 'folder',
    key: `folder:${host}:${real}`,
    label: basename(real) || real,
    details: { path: real, host, mountPoint: vol.mountPoint, device: vol.device, fsType: vol.fsType },
  };
}
