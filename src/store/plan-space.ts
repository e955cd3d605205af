import { JournalTables } from './journal-tables.js';

/** What the space check before an ingest (src/ingest/preflight.ts) reads from the journal, without writing. */
export class PlanSpaceStore extends JournalTables {
  /**
   * The destinations (journal ids) that hold this version of a source file verified, or held it verified
   * until retention pruned it once safe in the cloud: the ingest does not copy it there again.
   */
  doneAt(sourceKey: string, relPath: string, size: number, mtimeMs: number): Set<number> {
    const rows = this.selectAll<{ dest_id: number }>(
      `SELECT c.dest_id FROM copies c JOIN files f ON f.id = c.file_id JOIN sources s ON s.id = f.source_id
       WHERE s.key = ? AND f.rel_path = ? AND f.size = ? AND f.mtime_ms = ? AND c.state IN ('verified', 'pruned')`,
      sourceKey,
      relPath,
      size,
      Math.trunc(mtimeMs),
    );
    return new Set(rows.map((r) => r.dest_id));
  }
}
