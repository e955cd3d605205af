import type { SourceItem } from '../device/source.js';

/**
 * What a file is to the photographer. Files of one shot (JPEG + RAW + sidecars, or a clip + its THM)
 * share a folder and a stem, and travel together: the same destination name, the same collision suffix.
 */
export type Role = 'image' | 'raw' | 'video' | 'sidecar' | 'other';

const IMAGE_EXTS = new Set(['jpg', 'jpeg', 'heic', 'heif', 'hif', 'png', 'tif', 'tiff']);
const RAW_EXTS = new Set(['cr2', 'cr3', 'nef', 'nrw', 'arw', 'sr2', 'raf', 'orf', 'rw2', 'dng', 'pef', 'srw', '3fr', 'iiq', 'rwl', 'x3f']);
const VIDEO_EXTS = new Set(['mp4', 'mov', 'mxf', 'avi', 'mts', 'm2ts']);
const SIDECAR_EXTS = new Set(['xmp', 'thm', 'wav']);

/**
 * Order inside a group and across a plan: previews first (they show up in the library soonest and carry
 * the most readable EXIF), then RAWs, then video; sidecars last because they mean nothing without their shot.
 */
const ROLE_RANK: Readonly<Record<Role, number>> = { image: 0, raw: 1, video: 2, other: 3, sidecar: 4 };

function roleOfExt(ext: string): Role | undefined {
  if (IMAGE_EXTS.has(ext)) return 'image';
  if (RAW_EXTS.has(ext)) return 'raw';
  if (VIDEO_EXTS.has(ext)) return 'video';
  if (SIDECAR_EXTS.has(ext)) return 'sidecar';
  return undefined;
}

/** Last '/'-separated segment of a source path. */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/**
 * Splits a file name into the part a shot's files share and the extension that tells them apart.
 * `IMG_0001.CR2.xmp` (a sidecar named after one member) keeps `.CR2.xmp` as its extension so that it
 * pairs with `IMG_0001.JPG`; `.hidden` has no extension. The extension keeps its leading dot.
 */
export function splitShotName(fileName: string): { stem: string; ext: string } {
  const last = fileName.lastIndexOf('.');
  if (last <= 0) return { stem: fileName, ext: '' };
  const outer = fileName.slice(last + 1).toLowerCase();
  if (SIDECAR_EXTS.has(outer)) {
    const inner = fileName.lastIndexOf('.', last - 1);
    if (inner > 0) {
      const innerRole = roleOfExt(fileName.slice(inner + 1, last).toLowerCase());
      if (innerRole !== undefined && innerRole !== 'sidecar') return { stem: fileName.slice(0, inner), ext: fileName.slice(inner) };
    }
  }
  return { stem: fileName.slice(0, last), ext: fileName.slice(last) };
}

/** The role a file plays, from its name alone (listing never reads content). */
export function roleOf(path: string): Role {
  const name = baseName(path);
  const last = name.lastIndexOf('.');
  if (last <= 0) return 'other';
  return roleOfExt(name.slice(last + 1).toLowerCase()) ?? 'other';
}

/** Copy/upload priority of one item: lower goes first (images, RAW, video, other, sidecars). */
export function priority(item: Pick<SourceItem, 'path'>): number {
  return ROLE_RANK[roleOf(item.path)];
}

export interface GroupMember {
  readonly item: SourceItem;
  readonly role: Role;
}

export interface ItemGroup {
  /** `dir/stem` with the stem case-folded: unique per group, stable across listings. */
  readonly key: string;
  /** Folder of every member ('' at the source root). */
  readonly dir: string;
  /** The stem as the first member spells it. */
  readonly stem: string;
  /** Best source of capture metadata first; also the order to copy and upload in. Never empty. */
  readonly members: readonly GroupMember[];
}

/** Code-unit order: the same everywhere, unlike localeCompare, and fast. */
function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareMembers(a: GroupMember, b: GroupMember): number {
  return ROLE_RANK[a.role] - ROLE_RANK[b.role] || compareStrings(a.item.path, b.item.path);
}

interface Building {
  dir: string;
  stemKey: string;
  members: GroupMember[];
}

/**
 * Groups the files of each shot: same folder, same stem ignoring case (cards are FAT, where `img_0001.jpg`
 * and `IMG_0001.CR2` name one shot). Same names in different folders (100CANON/IMG_0001 and
 * 101CANON/IMG_0001 after a counter reset) are different shots and stay apart.
 * Groups come out ordered by folder, then stem; members as described on ItemGroup.
 */
export function groupItems(items: Iterable<SourceItem>): ItemGroup[] {
  const byKey = new Map<string, Building>();
  for (const item of items) {
    const slash = item.path.lastIndexOf('/');
    const dir = slash < 0 ? '' : item.path.slice(0, slash);
    const { stem } = splitShotName(item.path.slice(slash + 1));
    const stemKey = stem.normalize('NFC').toLowerCase();
    const key = `${dir}/${stemKey}`;
    let group = byKey.get(key);
    if (group === undefined) {
      group = { dir, stemKey, members: [] };
      byKey.set(key, group);
    }
    group.members.push({ item, role: roleOf(item.path) });
  }
  const groups: ItemGroup[] = [];
  for (const [key, g] of byKey) {
    g.members.sort(compareMembers);
    const first = g.members[0]!;
    groups.push({ key, dir: g.dir, stem: splitShotName(baseName(first.item.path)).stem, members: g.members });
  }
  groups.sort((a, b) => compareStrings(a.dir, b.dir) || compareStrings(a.key, b.key));
  return groups;
}
