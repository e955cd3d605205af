import type { Journal } from './journal.js';
import { JournalTables } from './journal-tables.js';
import { LOCAL_COPY_COLUMNS, toLocalCopy, type LocalCopy, type LocalCopyRow } from './upload-queue.js';

/**
 * The journal's side of retention (upload/retention.ts decides what goes): which local copies may be
 * removed now that their content is verified in the cloud, and the record of those that were.
 */

/** A verified local copy (as the upload queue reads one) that retention may remove. */
export interface PruneCandidate extends Omit<LocalCopy, 'md5'> {
  /** When the copy was verified (ISO). */
  verifiedAt: string;
  queueId: number;
  bucket: string;
  key: string;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export class RetentionStore extends JournalTables {
  /**
   * Local copies retention may remove: verified, their content verified in the cloud, not shared with
   * another copy row (dedup), and not their file's last verified copy. Oldest first.
   */
  pruneCandidates(): PruneCandidate[] {
    return this.selectAll<{
      id: number;
      file_id: number;
      dest_id: number;
      root: string;
      marker_id: string;
      dest_path: string;
      size: number;
      updated_at: string;
      queue_id: number;
      bucket: string;
      key: string;
    }>(
      `SELECT c.id, c.file_id, c.dest_id, d.path AS root, d.marker_id, c.dest_path, c.size, c.updated_at,
              min(q.id) AS queue_id, q.bucket, q.key
       FROM copies c
       JOIN destinations d ON d.id = c.dest_id
       JOIN upload_queue q ON q.sha256 = c.sha256 AND q.size = c.size AND q.state = 'uploaded'
       WHERE c.state = 'verified' AND c.dedup = 0 AND c.dest_path IS NOT NULL
         AND EXISTS (SELECT 1 FROM copies o WHERE o.file_id = c.file_id AND o.state = 'verified' AND o.id != c.id)
         AND NOT EXISTS (SELECT 1 FROM copies s WHERE s.dest_id = c.dest_id AND s.dest_path = c.dest_path AND s.id != c.id AND s.state = 'verified')
       GROUP BY c.id
       ORDER BY c.updated_at, c.id`,
    ).map((r) => ({
      copyId: r.id,
      fileId: r.file_id,
      destId: r.dest_id,
      root: r.root,
      markerId: r.marker_id,
      destPath: r.dest_path,
      size: r.size,
      verifiedAt: r.updated_at,
      queueId: r.queue_id,
      bucket: r.bucket,
      key: r.key,
    }));
  }

  /** The file's other verified copies (to confirm on disk that one survives a prune). */
  otherVerifiedCopies(fileId: number, exceptCopyId: number): LocalCopy[] {
    return this.selectAll<LocalCopyRow>(
      `SELECT ${LOCAL_COPY_COLUMNS} FROM copies c JOIN destinations d ON d.id = c.dest_id
       WHERE c.file_id = ? AND c.state = 'verified' AND c.id != ? AND c.dest_path IS NOT NULL ORDER BY c.dest_id`,
      fileId,
      exceptCopyId,
    ).map(toLocalCopy);
  }

  /**
   * Records, before the file is deleted, that a copy is pruned. Re-checks in the same transaction that
   * the copy is still verified and not its file's last verified copy; false means "do not delete".
   */
  recordPrune(c: Pick<PruneCandidate, 'copyId' | 'fileId' | 'destId' | 'destPath' | 'size' | 'queueId'>, reason: string, now = Date.now()): boolean {
    return this.journal.tx(() => {
      const still = this.selectOne<{ n: number }>(`SELECT count(*) AS n FROM copies WHERE id = ? AND state = 'verified'`, c.copyId)?.n ?? 0;
      const others = this.selectOne<{ n: number }>(`SELECT count(*) AS n FROM copies WHERE file_id = ? AND state = 'verified' AND id != ?`, c.fileId, c.copyId)?.n ?? 0;
      if (still === 0 || others === 0) return false;
      this.exec(`UPDATE copies SET state = 'pruned', updated_at = ? WHERE id = ?`, iso(now), c.copyId);
      this.exec(
        `INSERT INTO copy_prunes (copy_id, dest_id, dest_path, size, reason, queue_id, pruned_at) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(copy_id) DO UPDATE SET dest_path = excluded.dest_path, size = excluded.size, reason = excluded.reason, queue_id = excluded.queue_id, pruned_at = excluded.pruned_at`,
        c.copyId,
        c.destId,
        c.destPath,
        c.size,
        reason,
        c.queueId,
        iso(now),
      );
      return true;
    });
  }
}
