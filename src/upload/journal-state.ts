import { ShuttleError } from '../errors.js';
import type { Journal } from '../store/journal.js';
import { MultipartUploads, type MultipartRow } from '../store/multipart-uploads.js';
import type { MultipartUploadState, NewUploadState, PartRecord, UploadRef, UploadStateStore, UploadStatus } from './state.js';

/**
 * Multipart state in the journal's own tables (upload_multipart, upload_parts). Every change is one SQLite
 * transaction, and the journal commits with synchronous=FULL, so a part is recorded durably before
 * uploadFile counts it as done: after kill -9 or a power cut, the next run continues from the last
 * recorded part. SQLite calls are synchronous, so concurrent part completions cannot interleave.
 */
export class JournalUploadStateStore implements UploadStateStore {
  readonly #journal: Journal;
  readonly #table: MultipartUploads;

  constructor(journal: Journal) {
    this.#journal = journal;
    this.#table = new MultipartUploads(journal);
  }

  #requireCurrent(ref: UploadRef, uploadId: string): MultipartRow {
    const row = this.#table.current(ref.bucket, ref.key);
    if (row === undefined || row.upload_id !== uploadId) {
      throw new ShuttleError('JOURNAL', `upload state for s3://${ref.bucket}/${ref.key} no longer refers to upload ${uploadId}`, {
        context: { bucket: ref.bucket, key: ref.key, uploadId, current: row?.upload_id },
      });
    }
    return row;
  }

  async load(ref: UploadRef): Promise<MultipartUploadState | undefined> {
    const row = this.#table.current(ref.bucket, ref.key);
    if (row === undefined) return undefined;
    const parts = this.#table.parts(ref.bucket, ref.key, row.upload_id);
    return {
      bucket: row.bucket,
      key: row.key,
      uploadId: row.upload_id,
      size: row.size,
      sha256: row.sha256,
      partSize: row.part_size,
      status: row.status as UploadStatus,
      parts: parts.map((p) => ({ partNumber: p.part_number, size: p.size, md5: p.md5, etag: p.etag })),
    };
  }

  async begin(state: NewUploadState): Promise<void> {
    this.#table.begin(
      { bucket: state.bucket, key: state.key, upload_id: state.uploadId, size: state.size, sha256: state.sha256, part_size: state.partSize },
      new Date().toISOString(),
    );
  }

  async recordPart(ref: UploadRef, uploadId: string, part: PartRecord): Promise<void> {
    this.#journal.tx(() => {
      this.#requireCurrent(ref, uploadId);
      this.#table.recordPart(ref.bucket, ref.key, uploadId, { part_number: part.partNumber, size: part.size, md5: part.md5, etag: part.etag });
    });
  }

  async setStatus(ref: UploadRef, uploadId: string, status: UploadStatus): Promise<void> {
    this.#journal.tx(() => {
      this.#requireCurrent(ref, uploadId);
      this.#table.setStatus(ref.bucket, ref.key, status, new Date().toISOString());
    });
  }
}
