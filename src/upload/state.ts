import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { ShuttleError, errnoCode } from '../errors.js';

/**
 * What must survive a crash for a multipart upload to resume without re-sending what the server already
 * has. Kept small so that the journal (SQLite) can back it; the two implementations here serve unit tests
 * (memory) and the crash tests (a JSON file per upload, replaced atomically).
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

const stateSchema = z.object({
  bucket: z.string(),
  key: z.string(),
  uploadId: z.string().min(1),
  size: z.number().int().nonnegative(),
  sha256: z.string(),
  partSize: z.number().int().positive(),
  status: z.enum(['uploading', 'completed', 'aborted']),
  parts: z.array(
    z.object({ partNumber: z.number().int().min(1).max(10_000), size: z.number().int().nonnegative(), md5: z.string(), etag: z.string() }),
  ),
});

/**
 * One JSON file per upload in `dir`, each change written to a temp file, fsync'd, renamed over the old
 * one and the directory fsync'd: after a crash the file holds either the old or the new state, never a mix.
 */
export class FileUploadStateStore implements UploadStateStore {
  readonly #dir: string;
  /** Writes to one file are serialised, so concurrent part completions cannot lose each other. */
  readonly #queues = new Map<string, Promise<unknown>>();

  constructor(dir: string) {
    this.#dir = dir;
  }

  /** The file holding `ref`'s state (tests read it to see what was durable at a crash). */
  pathFor(ref: UploadRef): string {
    const name = createHash('sha256').update(`${ref.bucket}\u0000${ref.key}`).digest('hex').slice(0, 32);
    return join(this.#dir, `${name}.json`);
  }

  async load(ref: UploadRef): Promise<MultipartUploadState | undefined> {
    await this.#queues.get(this.pathFor(ref))?.catch(() => undefined);
    return this.#read(ref);
  }

  begin(state: NewUploadState): Promise<void> {
    return this.#update(state, () => ({ ...state, status: 'uploading', parts: [] }));
  }

  recordPart(ref: UploadRef, uploadId: string, part: PartRecord): Promise<void> {
    return this.#update(ref, (current) => withPart(requireCurrent(current, ref, uploadId), part));
  }

  setStatus(ref: UploadRef, uploadId: string, status: UploadStatus): Promise<void> {
    return this.#update(ref, (current) => ({ ...requireCurrent(current, ref, uploadId), status }));
  }

  async #read(ref: UploadRef): Promise<MultipartUploadState | undefined> {
    const path = this.pathFor(ref);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw new ShuttleError('JOURNAL', `cannot read upload state ${path}`, { context: { path }, cause: error });
    }
    let parsed: MultipartUploadState;
    try {
      parsed = stateSchema.parse(JSON.parse(text));
    } catch (error) {
      throw new ShuttleError('JOURNAL', `upload state ${path} is corrupt`, { context: { path }, cause: error });
    }
    if (parsed.bucket !== ref.bucket || parsed.key !== ref.key) {
      throw new ShuttleError('JOURNAL', `upload state ${path} belongs to s3://${parsed.bucket}/${parsed.key}, not ${refName(ref)}`, {
        context: { path },
      });
    }
    return parsed;
  }

  #update(ref: UploadRef, change: (current: MultipartUploadState | undefined) => MultipartUploadState): Promise<void> {
    const path = this.pathFor(ref);
    const previous = this.#queues.get(path) ?? Promise.resolve();
    const next = previous
      .catch(() => undefined)
      .then(async () => {
        const updated = change(await this.#read(ref));
        await this.#writeAtomically(path, JSON.stringify(updated));
      });
    this.#queues.set(path, next);
    const cleanup = (): void => {
      if (this.#queues.get(path) === next) this.#queues.delete(path);
    };
    next.then(cleanup, cleanup);
    return next;
  }

  async #writeAtomically(path: string, text: string): Promise<void> {
    await mkdir(this.#dir, { recursive: true });
    const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      const fh = await open(temp, 'wx', 0o600);
      try {
        await fh.writeFile(text, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(temp, path);
      const dir = await open(this.#dir, 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (error) {
      await rm(temp, { force: true });
      throw new ShuttleError('JOURNAL', `cannot write upload state ${path}`, { context: { path }, cause: error });
    }
  }
}
