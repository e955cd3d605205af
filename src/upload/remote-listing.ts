import { isShuttleError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { UploadTarget } from './target.js';

/** Folders with more entries than this are not listed: their keys are checked one HEAD at a time. */
export const LISTING_LIMIT = 10_000;

interface FolderState {
  keys: ReadonlySet<string>;
  /** Unfinished upload ids by key; undefined when the server would not list them. */
  uploads: ReadonlyMap<string, string[]> | undefined;
}

/** A key that was free when its folder was listed, now reserved for the caller's upload. */
export interface FreshKey {
  /** Unfinished multipart uploads the listing showed for the key (leftovers of crashed runs); undefined when unknown. */
  orphans: string[] | undefined;
}

export interface RemoteListingOptions {
  signal?: AbortSignal | undefined;
  logger?: Logger;
  limit?: number;
}

/** The folder of a key, as S3 listings take it for a prefix: everything up to and including the last '/'. */
export function folderOf(key: string): string {
  return key.slice(0, key.lastIndexOf('/') + 1);
}

/**
 * What one bucket held, one listing per key folder, taken the first time a key of that folder is asked
 * about. Uploading many new files then costs a listing of objects and one of unfinished uploads per folder
 * instead of a HEAD and a ListMultipartUploads per file. Each absent key is handed out once: a second ask
 * for it (a retry, or another row with the same key) gets undefined and must check the server itself,
 * since the first may have written it since. A listing is a snapshot: the owner replaces the whole
 * RemoteListing after a while (see UploadWorker), so that writes by others are seen again.
 */
export class RemoteListing {
  readonly #target: UploadTarget;
  readonly #signal: AbortSignal | undefined;
  readonly #log: Logger;
  readonly #limit: number;
  readonly #folders = new Map<string, Promise<FolderState | undefined>>();
  readonly #claimed = new Set<string>();
  readonly createdAt = Date.now();

  constructor(target: UploadTarget, options: RemoteListingOptions = {}) {
    this.#target = target;
    this.#signal = options.signal;
    this.#log = options.logger ?? silentLogger;
    this.#limit = options.limit ?? LISTING_LIMIT;
  }

  get bucket(): string {
    return this.#target.bucket;
  }

  /**
   * Reserves `key` when its folder's listing showed no object there and nobody reserved it before; then the
   * caller may upload without a HEAD first. undefined means: look for yourself (HEAD, per-key listings).
   */
  async claimFresh(key: string): Promise<FreshKey | undefined> {
    if (this.#claimed.has(key)) return undefined;
    const folder = await this.#folder(folderOf(key));
    // Checked again after the wait: a concurrent caller may have taken it meanwhile.
    if (folder === undefined || folder.keys.has(key) || this.#claimed.has(key)) return undefined;
    this.#claimed.add(key);
    return { orphans: folder.uploads === undefined ? undefined : [...(folder.uploads.get(key) ?? [])] };
  }

  #folder(prefix: string): Promise<FolderState | undefined> {
    let state = this.#folders.get(prefix);
    if (state === undefined) {
      state = this.#list(prefix);
      this.#folders.set(prefix, state);
    }
    return state;
  }

  async #list(prefix: string): Promise<FolderState | undefined> {
    const options = { signal: this.#signal, limit: this.#limit };
    const [keys, uploads] = await Promise.all([
      this.#target.listFolder(prefix, options).catch((error: unknown) => this.#unknown(prefix, 'objects', error)),
      this.#target.listFolderUploads(prefix, options).catch((error: unknown) => this.#unknown(prefix, 'multipart uploads', error)),
    ]);
    if (keys === undefined) return undefined;
    let byKey: Map<string, string[]> | undefined;
    if (uploads !== undefined) {
      byKey = new Map();
      for (const u of uploads) byKey.set(u.key, [...(byKey.get(u.key) ?? []), u.uploadId]);
    }
    return { keys: new Set(keys), uploads: byKey };
  }

  #unknown(prefix: string, what: string, error: unknown): undefined {
    // Listing needs its own permission (s3:ListBucket, s3:ListBucketMultipartUploads): without it, per-key checks do.
    this.#log.debug({ bucket: this.bucket, prefix, err: isShuttleError(error) ? error.toJSON() : String(error) }, `could not list ${what}; checking keys one by one`);
    return undefined;
  }
}
