import type { Journal } from './journal.js';
import { JournalTables } from './journal-tables.js';

/** An upload_multipart row: the one multipart upload the journal follows for a bucket and key. */
export interface MultipartRow {
  bucket: string;
  key: string;
  upload_id: string;
  size: number;
  sha256: string;
  part_size: number;
  status: string;
}

/** An upload_parts row: a part the server acknowledged. */
export interface MultipartPartRow {
  part_number: number;
  size: number;
  md5: string;
  etag: string;
}

/**
 * The journal's multipart tables (upload_multipart, upload_parts), kept by upload/journal-state.ts. Each
 * call is one statement or one transaction, and the journal commits with synchronous=FULL.
 */
export class MultipartUploads extends JournalTables {
  current(bucket: string, key: string): MultipartRow | undefined {
    return this.statement('SELECT * FROM upload_multipart WHERE bucket = ? AND key = ?').get(bucket, key) as MultipartRow | undefined;
  }

  parts(bucket: string, key: string, uploadId: string): MultipartPartRow[] {
    return this.statement('SELECT part_number, size, md5, etag FROM upload_parts WHERE bucket = ? AND key = ? AND upload_id = ? ORDER BY part_number').all(
      bucket,
      key,
      uploadId,
    ) as unknown as MultipartPartRow[];
  }

  /** Makes `row` the key's upload, dropping the parts of any earlier one. */
  begin(row: Omit<MultipartRow, 'status'>, now: string): void {
    this.journal.tx(() => {
      // Parts of any earlier upload of this key are meaningless once a new upload id takes its place.
      this.statement('DELETE FROM upload_parts WHERE bucket = ? AND key = ?').run(row.bucket, row.key);
      this.statement(
        `INSERT INTO upload_multipart (bucket, key, upload_id, size, sha256, part_size, status, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'uploading', ?)
         ON CONFLICT(bucket, key) DO UPDATE SET upload_id = excluded.upload_id, size = excluded.size, sha256 = excluded.sha256,
           part_size = excluded.part_size, status = 'uploading', updated_at = excluded.updated_at`,
      ).run(row.bucket, row.key, row.upload_id, row.size, row.sha256, row.part_size, now);
    });
  }

  recordPart(bucket: string, key: string, uploadId: string, part: MultipartPartRow): void {
    this.statement(
      `INSERT INTO upload_parts (bucket, key, upload_id, part_number, size, md5, etag) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT(bucket, key, upload_id, part_number) DO UPDATE SET size = excluded.size, md5 = excluded.md5, etag = excluded.etag`,
    ).run(bucket, key, uploadId, part.part_number, part.size, part.md5, part.etag);
  }

  setStatus(bucket: string, key: string, status: string, now: string): void {
    this.statement('UPDATE upload_multipart SET status = ?, updated_at = ? WHERE bucket = ? AND key = ?').run(status, now, bucket, key);
  }
}
