import { readFile } from 'node:fs/promises';

/** One line of /proc/self/mountinfo, unescaped. */
export interface MountEntry {
  target: string;
  /** The mount's source as the kernel reports it: `/dev/sdb1`, `tmpfs`, `overlay`, a FUSE fsname. */
  source: string;
  /** The folder of the filesystem mounted at target: '/' unless a bind mount or a btrfs subvolume. */
  fsRoot: string;
  fstype: string;
  /** st_dev of files on the mount; for FUSE and other anonymous mounts a major of 0, not the source device. */
  major: number;
  minor: number;
}

/** `\040` and friends, as the kernel escapes spaces, tabs, newlines and backslashes in mountinfo. */
function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

function contains(mountPoint: string, path: string): boolean {
  return path === mountPoint || mountPoint === '/' || path.startsWith(`${mountPoint}/`);
}

function parseLine(line: string): MountEntry | undefined {
  // Optional fields sit between the mount point's options and ' - '; spaces inside fields are escaped.
  const sep = line.indexOf(' - ');
  if (sep < 0) return undefined;
  const fields = line.slice(0, sep).split(' ');
  const [fstype = '', source = ''] = line.slice(sep + 3).split(' ');
  const target = unescapeMountinfo(fields[4] ?? '');
  if (target === '') return undefined;
  const [major = 0, minor = 0] = (fields[2] ?? '').split(':').map((n) => Number.parseInt(n, 10) || 0);
  return { target, source: unescapeMountinfo(source), fsRoot: unescapeMountinfo(fields[3] ?? '/'), fstype, major, minor };
}

/**
 * The mount holding the real path `path`: the longest mount point above it, the later one if stacked
 * (the one on top, which is what the path reaches). Undefined when the table cannot be read.
 */
export async function mountHolding(path: string, mountinfo = '/proc/self/mountinfo'): Promise<MountEntry | undefined> {
  let best: MountEntry | undefined;
  for (const entry of (await mountEntries(mountinfo)) ?? []) {
    if (!contains(entry.target, path)) continue;
    if (best === undefined || entry.target.length >= best.target.length) best = entry;
  }
  return best;
}

/** The entries of a mount table's text (proc(5)), in its order; lines it cannot read are left out. */
export function parseMountinfo(table: string): MountEntry[] {
  return table.split('\n').flatMap((line) => parseLine(line) ?? []);
}

/** The mount table's entries, in its order; undefined when it cannot be read. */
async function mountEntries(mountinfo: string): Promise<MountEntry[] | undefined> {
  let table: string;
  try {
    table = await readFile(mountinfo, 'utf8');
  } catch {
    return undefined;
  }
  return parseMountinfo(table);
}

/**
 * Whether a filesystem is mounted somewhere below the real path `path` (a folder walk from `path` would
 * enter it). Undefined when the table cannot be read.
 */
export async function mountedBelow(path: string, mountinfo = '/proc/self/mountinfo'): Promise<boolean | undefined> {
  return (await mountEntries(mountinfo))?.some((entry) => entry.target !== path && contains(path, entry.target));
}
