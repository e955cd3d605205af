import { execFile } from 'node:child_process';
import { readFile, realpath, stat, statfs } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename } from 'node:path';
import { ShuttleError, abortReason, errnoCode, throwIfAborted } from '../../errors.js';
import type { SourceIdentity } from '../source.js';

/**
 * Which filesystem holds a path, and what identifies it: util-linux's findmnt for the mount, lsblk and
 * blkid to fill in what findmnt could not read (it needs udev's database or root to probe), statfs for
 * the size. In containers these tools may be missing or know nothing; then /proc/self/mountinfo gives
 * the mount and the identity fields stay empty.
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
}

/** Filesystems cameras write; a mounted one of these with a UUID is a card even when the kernel does not call its device removable. */
const CARD_FILESYSTEMS = new Set(['vfat', 'msdos', 'exfat']);
const TOOL_TIMEOUT_MS = 5_000;

interface MountEntry {
  target: string;
  source: string;
  /** The folder of the filesystem mounted at target: '/' unless a bind mount or a btrfs subvolume. */
  fsRoot: string;
  fstype: string;
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

async function findmnt(path: string, signal: AbortSignal | undefined): Promise<MountEntry | undefined> {
  const json = parseJson(await run('findmnt', ['-J', '-b', '-T', path, '-o', 'TARGET,SOURCE,FSTYPE,UUID,LABEL,SIZE'], signal));
  const fs = (json?.['filesystems'] as Record<string, unknown>[] | undefined)?.[0];
  const target = text(fs?.['target']);
  if (fs === undefined || target === undefined) return undefined;
  // A bind mount or btrfs subvolume shows as `/dev/sda1[/sub]`.
  const [, source = '', fsRoot = '/'] = /^(.*?)(?:\[(.*)\])?$/.exec(text(fs['source']) ?? '') ?? [];
  return { target, source, fsRoot, fstype: text(fs['fstype']) ?? '', uuid: text(fs['uuid']), label: text(fs['label']) };
}

/** `\040` and friends, as the kernel escapes mount points in mountinfo. */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

function contains(mountPoint: string, path: string): boolean {
  return path === mountPoint || mountPoint === '/' || path.startsWith(`${mountPoint}/`);
}

/** The mount holding `path` per /proc/self/mountinfo: the longest mount point above it, the later one if stacked. */
async function fromMountinfo(path: string): Promise<MountEntry | undefined> {
  let best: MountEntry | undefined;
  let table: string;
  try {
    table = await readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return undefined;
  }
  for (const line of table.split('\n')) {
    const [left, right] = line.split(' - ');
    if (left === undefined || right === undefined) continue;
    const fields = left.split(' ');
    const target = unescapeMountinfo(fields[4] ?? '');
    const fsRoot = unescapeMountinfo(fields[3] ?? '/');
    const [fstype = '', source = ''] = right.split(' ');
    if (target === '' || !contains(target, path)) continue;
    if (best === undefined || target.length >= best.target.length) best = { target, source: unescapeMountinfo(source), fsRoot, fstype };
  }
  return best;
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

/** blkid's export format: KEY=value lines, with shell-style backslash escapes in values. */
async function blkid(device: string, signal: AbortSignal | undefined): Promise<Omit<DeviceFacts, 'removable'>> {
  const out = await run('blkid', ['-o', 'export', '-s', 'UUID', '-s', 'LABEL', '-s', 'TYPE', device], signal);
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

/** The filesystem that holds `path`: mount point, device, type, UUID and label when known, and size. */
export async function volumeOf(path: string, options: VolumeOptions = {}): Promise<VolumeInfo> {
  const { signal } = options;
  throwIfAborted(signal);
  let real: string;
  try {
    real = await realpath(path);
  } catch (err) {
    throw notFound(path, err);
  }
  const mount = (await findmnt(real, signal)) ?? (await fromMountinfo(real));
  if (mount === undefined) {
    throw new ShuttleError('SOURCE_UNREADABLE', `${real}: cannot tell which filesystem holds it (no findmnt, no /proc/self/mountinfo)`, { context: { path: real } });
  }
  const device = mount.source;
  let { uuid, label, fstype } = mount;
  let removable = false;
  // FUSE drivers (exfat-fuse as `fuseblk`, fusefat as `fuse.fusefat`) hide the real type: probe the device.
  const isFuse = (t: string | undefined): boolean => t === 'fuse' || t === 'fuseblk' || (t?.startsWith('fuse.') ?? false);
  if (device.startsWith('/dev/')) {
    const fromLsblk = await lsblk(device, signal);
    removable = fromLsblk.removable;
    uuid ??= fromLsblk.uuid;
    label ??= fromLsblk.label;
    if (isFuse(fstype) && fromLsblk.fstype !== undefined) fstype = fromLsblk.fstype;
    if (uuid === undefined || label === undefined || isFuse(fstype)) {
      const probed = await blkid(device, signal);
      uuid ??= probed.uuid;
      label ??= probed.label;
      if (isFuse(fstype) && probed.fstype !== undefined) fstype = probed.fstype;
    }
  }
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
