import type { Readable } from 'node:stream';
import type { ChecksumType, ChecksumValue, ObjectChecksum } from './checksum.js';
import { withRetry, type RetryOptions } from './retry.js';

/** What HEAD tells about a stored object. */
export interface RemoteObject {
  size: number;
  /** As the server sent it, quotes included. */
  etag: string;
  /** User metadata (`x-amz-meta-*`), names lowercased, without the prefix. */
  metadata: Readonly<Record<string, string>>;
  /** Additional checksums the server stores (asked for with `checksums` on head), base64 as S3 sends them. */
  checksums?: Partial<Record<ObjectChecksum, string>>;
}

export interface RemotePart {
  partNumber: number;
  size: number;
  etag: string;
}

/** The bytes of one request body, reopenable: each attempt of a retried request reads it from the start. */
export interface PartBody {
  readonly size: number;
  /**
   * Hex MD5, sent as Content-MD5 so that the server rejects bytes damaged in transit; left out only where
   * the server is known to check the signed SHA-256 below (see ProviderProfile.checksSignedPayload).
   */
  readonly md5?: string;
  /**
   * Hex SHA-256, the payload hash the request is signed with (`x-amz-content-sha256`): SigV4 servers
   * refuse a body that does not hash to it, a check MD5 collisions cannot fool.
   */
  readonly sha256: string;
  /** An additional checksum of these bytes for the server to check and store (see checksum.ts). */
  readonly checksum?: ChecksumValue;
  open(signal?: AbortSignal): Readable;
}

export interface CallOptions {
  signal?: AbortSignal | undefined;
}

export interface HeadOptions extends CallOptions {
  /** Also ask for the additional checksums stored with the object. */
  checksums?: boolean;
}

export interface CreateMultipartOptions extends CallOptions {
  /** The additional checksum the object will carry, and whether it covers the whole object or the parts. */
  checksum?: { algorithm: ObjectChecksum; type: ChecksumType };
}

export interface CompleteMultipartOptions extends CallOptions {
  /** The whole object's checksum (FULL_OBJECT uploads), which the server checks against what it assembled. */
  checksum?: ChecksumValue;
}

/** An unfinished multipart upload as a listing shows it. */
export interface PendingUpload {
  key: string;
  uploadId: string;
}

export interface ListOptions extends CallOptions {
  /** Give up (answer undefined) rather than read more than this many entries. */
  limit?: number;
}

export interface CompletedPartRef {
  partNumber: number;
  etag: string;
  /** The part's additional checksum (COMPOSITE uploads), as it was sent with the part. */
  checksum?: ChecksumValue;
}

/**
 * The S3 operations a verified upload needs, on one bucket. Implementations turn every failure into a
 * ShuttleError whose `retryable` says whether trying again can help, and whose context carries `status`
 * and `s3Code` when the server answered.
 */
export interface UploadTarget {
  readonly bucket: string;
  /** undefined when no object exists at `key`. */
  head(key: string, options?: HeadOptions): Promise<RemoteObject | undefined>;
  put(key: string, body: PartBody, metadata: Record<string, string>, options?: CallOptions): Promise<{ etag: string }>;
  createMultipart(key: string, metadata: Record<string, string>, options?: CreateMultipartOptions): Promise<string>;
  uploadPart(key: string, uploadId: string, partNumber: number, body: PartBody, options?: CallOptions): Promise<{ etag: string }>;
  /** All parts the server holds for the upload; undefined when the upload no longer exists. */
  listParts(key: string, uploadId: string, options?: CallOptions): Promise<RemotePart[] | undefined>;
  completeMultipart(key: string, uploadId: string, parts: readonly CompletedPartRef[], options?: CompleteMultipartOptions): Promise<{ etag: string }>;
  /** Succeeds when the upload is already gone. */
  abortMultipart(key: string, uploadId: string, options?: CallOptions): Promise<void>;
  /** Ids of the unfinished multipart uploads for exactly `key`. */
  listMultipartUploads(key: string, options?: CallOptions): Promise<string[]>;
  deleteObject(key: string, options?: CallOptions): Promise<void>;
  /** Keys of the objects directly in the folder `prefix` (which ends with '/', or is ''); undefined past `limit`. */
  listFolder(prefix: string, options?: ListOptions): Promise<string[] | undefined>;
  /** Unfinished multipart uploads of keys directly in the folder `prefix`; undefined past `limit`. */
  listFolderUploads(prefix: string, options?: ListOptions): Promise<PendingUpload[] | undefined>;
}

/**
 * The retry decorator over a target: every call is retried on retryable failures with backoff. Bodies are
 * reopened per attempt (see PartBody), which rewinds them.
 */
export function retryingTarget(target: UploadTarget, retry: Omit<RetryOptions, 'signal'> = {}): UploadTarget {
  const run = <T>(options: CallOptions | undefined, op: () => Promise<T>): Promise<T> => withRetry(op, { ...retry, signal: options?.signal });
  return {
    bucket: target.bucket,
    head: (key, o) => run(o, () => target.head(key, o)),
    put: (key, body, metadata, o) => run(o, () => target.put(key, body, metadata, o)),
    createMultipart: (key, metadata, o) => run(o, () => target.createMultipart(key, metadata, o)),
    uploadPart: (key, uploadId, partNumber, body, o) => run(o, () => target.uploadPart(key, uploadId, partNumber, body, o)),
    listParts: (key, uploadId, o) => run(o, () => target.listParts(key, uploadId, o)),
    completeMultipart: (key, uploadId, parts, o) => run(o, () => target.completeMultipart(key, uploadId, parts, o)),
    abortMultipart: (key, uploadId, o) => run(o, () => target.abortMultipart(key, uploadId, o)),
    listMultipartUploads: (key, o) => run(o, () => target.listMultipartUploads(key, o)),
    deleteObject: (key, o) => run(o, () => target.deleteObject(key, o)),
    listFolder: (prefix, o) => run(o, () => target.listFolder(prefix, o)),
    listFolderUploads: (prefix, o) => run(o, () => target.listFolderUploads(prefix, o)),
  };
}
