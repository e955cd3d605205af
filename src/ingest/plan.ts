import type { SourceItem } from '../device/source.js';
import type { FileRow, Journal } from '../store/journal.js';
import type { ItemGroup } from './pairing.js';
import type { RunDestination } from './run-destination.js';

/** One source file in the plan: its journal row, its shot, and the destinations that still need it. */
export interface PlannedFile {
  item: SourceItem;
  file: FileRow;
  group: ItemGroup;
  /** The shot's number in the source's order, for the `{seq}` of the name template. */
  seq: number;
  wanted: RunDestination[];
}

export function planFiles(groups: readonly ItemGroup[], dests: RunDestination[], journal: Journal, sourceId: number): PlannedFile[] {
  const plan: PlannedFile[] = [];
  let seq = 0;
  for (const group of groups) {
    seq++;
    for (const member of group.members) {
      const file = journal.fileFor(sourceId, member.item.path, member.item.size, member.item.mtimeMs, member.item.pathBytes);
      // A copy pruned by the retention policy was verified here and is safe in the cloud: not copied again.
      const verified = new Set(journal.copiesOf(file.id).filter((c) => c.state === 'verified' || c.state === 'pruned').map((c) => c.dest_id));
      plan.push({ item: member.item, file, group, seq, wanted: dests.filter((d) => !verified.has(d.id)) });
    }
  }
  return plan;
}
