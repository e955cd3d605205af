import type { SourceItem } from '../device/source.js';
import { roleOfExt, splitShotName, type Role } from '../shot-names.js';
import { EMBEDDED_PREVIEW_FORMATS } from './embedded-preview.js';

/**
 * Order inside a group and across a plan: previews first (they show up in the library soonest and carry
 * the most readable EXIF), then RAWs, then video; sidecars last because they mean nothing without their shot.
 */
const ROLE_RANK: Readonly<Record<Role, number>> = { image: 0, raw: 1, video: 2, other: 3, sidecar: 4 };

/** Last '/'-separated segment of a source path. */
export function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** The extension, lower case, no dot ('' for none). */
function extOf(path: string): string {
  const name = baseName(path);
  const last = name.lastIndexOf('.');
  return last <= 0 ? '' : name.slice(last + 1).toLowerCase();
}

/** The role a file plays, from its name alone (listing never reads content). */
export function roleOf(path: string): Role {
  const ext = extOf(path);
  return ext === '' ? 'other' : (roleOfExt(ext) ?? 'other');
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
  /** Best source of capture metadata first; also the order to copy and upload in (but see readOrder). Never empty. */
  readonly members: readonly GroupMember[];
}

/**
 * The order to read and copy a shot's members in: their own order, except on a live source (a tethered
 * camera) where a RAW that can embed a preview goes before the shot's JPEG: that preview is in the RAW's
 * first bytes and smaller than the JPEG, so the shot shows sooner.
 */
export function readOrder(group: ItemGroup, live: boolean): readonly GroupMember[] {
  if (!live) return group.members;
  const early = (m: GroupMember): boolean => m.role === 'raw' && EMBEDDED_PREVIEW_FORMATS.has(extOf(m.item.path));
  return [...group.members.filter(early), ...group.members.filter((m) => !early(m))];
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
