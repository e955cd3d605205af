import { ShuttleError } from '../errors.js';
import type { Journal } from '../store/journal.js';
import type { MultipartUploadState, NewUploadState, PartRecord, UploadRef, UploadStateStore, UploadStatus } from './state.js';

interface UploadRow {
  bucket: string;
  key: string;
  upload_id: string;
  size: number;
  sha256: string;
  part_size: number;
  status: UploadStatus;
}

interface PartRow {
  part_number: number;
  size: number;
  md5: string;
  etag: string;
}

/**
 * Multipart state in the journal's own tables (upload_multipart, upload_parts). Every change is one SQLite
 * transaction, and the journal commits with synchronous=FULL, so a part is recorded durably before
 * uploadFile counts it as done: after kill -9 or a power cut, the next run continues from the last
 * recorded part. SQLite calls are synchronous, so concurrent part completions cannot interleave.
 */
export class JournalUploadStateStore implements UploadStateStore {
  readonly #journal: Journal;

  constructor(journal: Journal) {
    this.#journal = journal;
  }

  #current(ref: UploadRef): UploadRow | undefined {
    return this.#journal.statement('SELECT * FROM upload_multipart WHERE bucket = ? AND key = ?').get(ref.bucket, ref.key) as UploadRow | undefined;
  }

  #requireCurrent(ref: UploadRef, uploadId: string): UploadRow {
    const row = this.#current(ref);
    if (row === undefined || row.upload_id !== uploadId) {
      throw new ShuttleError('JOURNAL', `upload state for s3://${ref.bucket}/${ref.key} no longer refers to upload ${uploadId}`, {
        context: { bucket: ref.bucket, key: ref.key, uploadId, current: row?.upload_id },
      });
    }
    return row;
  }

  async load(ref: UploadRef): Promise<MultipartUploadState | undefined> {
    const row = this.#current(ref);
    if (row === undefined) return undefined;
    const parts = this.#journal
      .statement('SELECT part_number, size, md5, etag FROM upload_parts WHERE bucket = ? AND key = ? AND upload_id = ? ORDER BY part_number')
      .all(ref.bucket, ref.key, row.upload_id) as unknown as PartRow[];
    return {
      bucket: row.bucket,
      key: row.key,
      uploadId: row.upload_id,
      size: row.size,
      sha256: row.sha256,
      partSize: row.part_size,
      status: row.status,
      parts: parts.map((p) => ({ partNumber: p.part_number, size: p.size, md5: p.md5, etag: p.etag })),
    };
  }

  async begin(state: NewUploadState): Promise<void> {
    const now = new Date().toISOString();
    this.#journal.tx(() => {
      // Parts of any earlier upload of this key are meaningless once a new upload id takes its place.
      this.#journal.statement('DELETE FROM upload_parts WHERE bucket = ? AND key = ?').run(state.bucket, state.key);
      this.#journal
        .statement(
          `INSERT INTO upload_multipart (bucket, key, upload_id, size, sha256, part_size, status, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'uploading', ?)
           ON CONFLICT(bucket, key) DO UPDATE SET upload_id = excluded.upload_id, size = excluded.size, sha256 = excluded.sha256,
             part_size = excluded.part_size, status = 'uploading', updated_at = excluded.updated_at`,
        )
        .run(state.bucket, state.key, state.uploadId, state.size, state.sha256, state.partSize, now);
    });
  }

  async recordPart(ref: UploadRef, uploadId: string, part: PartRecord): Promise<void> {
    this.#journal.tx(() => {
      this.#requireCurrent(ref, uploadId);
      this.#journal
        .statement(
          `INSERT INTO upload_parts (bucket, key, upload_id, part_number, size, md5, etag) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT(bucket, key, upload_id, part_number) DO UPDATE SET size = excluded.size, md5 = excluded.md5, etag = excluded.etag`,
        )
        .run(ref.bucket, ref.key, uploadId, part.partNumber, part.size, part.md5, part.etag);
    });
  }

  async setStatus(ref: UploadRef, uploadId: string, status: UploadStatus): Promise<void> {
    this.#journal.tx(() => {
      this.#requireCurrent(ref, uploadId);
      this.#journal
        .statement('UPDATE upload_multipart SET status = ?, updated_at = ? WHERE bucket = ? AND key = ?')
        .run(status, new Date().toISOString(), ref.bucket, ref.key);
    });
  }
}
