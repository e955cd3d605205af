import { ShuttleError } from '../errors.js';

/**
 * What must survive a crash for a multipart upload to resume without re-sending what the server already
 * has. Kept small so that the journal (SQLite) backs it (journal-state.ts); the one here, in memory, serves
 * the tests.
 */
export type UploadStatus = 'uploading' | 'completed' | 'aborted';

export interface UploadRef {
  bucket: string;
  key: string;
}

export interface PartRecord {
  partNumber: number;
  size: number;
  /** Hex MD5 of the part's bytes, as sent in Content-MD5. */
  md5: string;
  /** ETag the server answered, quotes included, as CompleteMultipartUpload wants it back. */
  etag: string;
}

export interface MultipartUploadState extends UploadRef {
  uploadId: string;
  /** The file this upload is for: a state whose size or hash differ belongs to another file and is abandoned. */
  size: number;
  sha256: string;
  partSize: number;
  status: UploadStatus;
  /** Parts whose completion the server confirmed, ascending by number. */
  parts: readonly PartRecord[];
}

export type NewUploadState = Omit<MultipartUploadState, 'status' | 'parts'>;

export interface UploadStateStore {
  load(ref: UploadRef): Promise<MultipartUploadState | undefined>;
  /** Records a new upload id for `ref` (status 'uploading', no parts), replacing any earlier state. Durable when resolved. */
  begin(state: NewUploadState): Promise<void>;
  /** Records a confirmed part; durable when resolved. Fails if `uploadId` is no longer the current one. */
  recordPart(ref: UploadRef, uploadId: string, part: PartRecord): Promise<void>;
  setStatus(ref: UploadRef, uploadId: string, status: UploadStatus): Promise<void>;
}

function refName(ref: UploadRef): string {
  return `s3://${ref.bucket}/${ref.key}`;
}

function withPart(state: MultipartUploadState, part: PartRecord): MultipartUploadState {
  const parts = state.parts.filter((p) => p.partNumber !== part.partNumber);
  parts.push({ ...part });
  parts.sort((a, b) => a.partNumber - b.partNumber);
  return { ...state, parts };
}

function requireCurrent(state: MultipartUploadState | undefined, ref: UploadRef, uploadId: string): MultipartUploadState {
  if (state === undefined || state.uploadId !== uploadId) {
    throw new ShuttleError('JOURNAL', `upload state for ${refName(ref)} no longer refers to upload ${uploadId}`, {
      context: { bucket: ref.bucket, key: ref.key, uploadId, current: state?.uploadId },
    });
  }
  return state;
}

function copyState(state: MultipartUploadState): MultipartUploadState {
  return { ...state, parts: state.parts.map((p) => ({ ...p })) };
}

/** For unit tests and callers that accept losing resume information on exit. */
export class MemoryUploadStateStore implements UploadStateStore {
  readonly #states = new Map<string, MultipartUploadState>();

  async load(ref: UploadRef): Promise<MultipartUploadState | undefined> {
    const s = this.#states.get(refName(ref));
    return s === undefined ? undefined : copyState(s);
  }

  async begin(state: NewUploadState): Promise<void> {
    this.#states.set(refName(state), { ...state, status: 'uploading', parts: [] });
  }

  async recordPart(ref: UploadRef, uploadId: string, part: PartRecord): Promise<void> {
    const current = requireCurrent(this.#states.get(refName(ref)), ref, uploadId);
    this.#states.set(refName(ref), withPart(current, part));
  }

  async setStatus(ref: UploadRef, uploadId: string, status: UploadStatus): Promise<void> {
    const current = requireCurrent(this.#states.get(refName(ref)), ref, uploadId);
    this.#states.set(refName(ref), { ...current, status });
  }
}
