import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { ShuttleError, abortReason, errnoCode, isShuttleError } from '../errors.js';
import { hexToBase64, type ChecksumValue, type ObjectChecksum } from './checksum.js';
import type {
  CallOptions,
  CompleteMultipartOptions,
  CompletedPartRef,
  CreateMultipartOptions,
  HeadOptions,
  ListOptions,
  PartBody,
  PendingUpload,
  RemoteObject,
  RemotePart,
  UploadTarget,
} from './target.js';

export const CONTENT_TYPE = 'application/octet-stream';

/** 4xx codes that mean "the bytes or the timing were bad this time", not "this request can never work". */
const TRANSIENT_S3_CODES = new Set(['BadDigest', 'RequestTimeout', 'XAmzContentSHA256Mismatch', 'IncompleteBody', 'SlowDown', 'InternalError']);

const TRANSIENT_ERRNOS = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

interface ErrorFacts {
  status: number | undefined;
  s3Code: string | undefined;
  errno: string | undefined;
  name: string | undefined;
}

function factsOf(error: unknown): ErrorFacts {
  const e = (typeof error === 'object' && error !== null ? error : {}) as Record<string, unknown>;
  const metadata = e['$metadata'] as { httpStatusCode?: unknown } | undefined;
  const status = typeof metadata?.httpStatusCode === 'number' ? metadata.httpStatusCode : undefined;
  const code = typeof e['Code'] === 'string' ? e['Code'] : undefined;
  const name = typeof e['name'] === 'string' ? e['name'] : undefined;
  return { status, s3Code: code ?? (status !== undefined ? name : undefined), errno: errnoCode(error), name };
}

/**
 * Whether an SDK failure may succeed when tried again: no answer at all (connection reset, refused, timed
 * out), 5xx, 408, 429, and the 4xx codes that mean the bytes arrived damaged or late (BadDigest is what a
 * wrong Content-MD5 gets, i.e. corruption in transit). Any other 4xx is permanent.
 */
export function isTransientS3Error(error: unknown): boolean {
  const f = factsOf(error);
  if (f.status !== undefined && f.status >= 400) {
    if (f.status >= 500 || f.status === 408 || f.status === 429) return true;
    return f.s3Code !== undefined && TRANSIENT_S3_CODES.has(f.s3Code);
  }
  if (f.errno !== undefined && TRANSIENT_ERRNOS.has(f.errno)) return true;
  return f.name === 'TimeoutError' || f.name === 'RequestTimeout' || (f.s3Code !== undefined && TRANSIENT_S3_CODES.has(f.s3Code));
}

function failure(error: unknown, op: string, bucket: string, key: string, signal: AbortSignal | undefined): ShuttleError {
  if (signal?.aborted) return abortReason(signal);
  if (isShuttleError(error)) return error;
  const f = factsOf(error);
  const what = f.s3Code ?? f.errno ?? f.name ?? 'error';
  const message = error instanceof Error ? error.message : String(error);
  return new ShuttleError('UPLOAD_FAILED', `S3 ${op} s3://${bucket}/${key} failed: ${what}${f.status !== undefined ? ` (HTTP ${f.status})` : ''}: ${message}`, {
    context: { op, bucket, key, status: f.status, s3Code: f.s3Code, errno: f.errno },
    cause: error,
    retryable: isTransientS3Error(error),
  });
}

/** The HTTP status a target failure carried, if the server answered. */
export function failureStatus(error: unknown): number | undefined {
  return isShuttleError(error) && typeof error.context['status'] === 'number' ? error.context['status'] : undefined;
}

/** An additional checksum as the SDK's input member that sends it (`x-amz-checksum-*`). */
function checksumInput(checksum: ChecksumValue | undefined): { ChecksumSHA256?: string; ChecksumCRC64NVME?: string } {
  if (checksum === undefined) return {};
  return checksum.algorithm === 'sha256' ? { ChecksumSHA256: checksum.value } : { ChecksumCRC64NVME: checksum.value };
}

const SDK_ALGORITHM = { sha256: 'SHA256', crc64nvme: 'CRC64NVME' } as const;

interface WithMiddleware {
  middlewareStack: PutObjectCommand['middlewareStack'] | UploadPartCommand['middlewareStack'];
}

/**
 * Signs the request with its body's SHA-256. For a streamed body the SDK cannot hash it up front and
 * signs UNSIGNED-PAYLOAD; a hash already in the header is what its signer uses instead.
 */
function signPayload<C extends WithMiddleware>(command: C, sha256: string): C {
  (command.middlewareStack as PutObjectCommand['middlewareStack']).add(
    (next) => async (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers !== undefined) request.headers['x-amz-content-sha256'] = sha256;
      return next(args);
    },
    { step: 'build', name: 'shuttleSignedPayload' },
  );
  return command;
}

/** UploadTarget over the AWS SDK client: one bucket, errors classified, no retries of its own. */
export class S3Target implements UploadTarget {
  readonly bucket: string;
  readonly #client: S3Client;

  constructor(client: S3Client, bucket: string) {
    this.#client = client;
    this.bucket = bucket;
  }

  async #call<T>(op: string, key: string, options: CallOptions | undefined, run: (abortSignal: AbortSignal | undefined) => Promise<T>): Promise<T> {
    const signal = options?.signal;
    if (signal?.aborted) throw abortReason(signal);
    try {
      return await run(signal);
    } catch (error) {
      throw failure(error, op, this.bucket, key, signal);
    }
  }

  /**
   * Sends a request with a streamed body. The HTTP client does not end a request whose body stream fails
   * (it would wait for the missing bytes until the socket times out), so a body failure aborts the request
   * and is what the call throws: a local read error then reads as one, not as a network failure.
   */
  async #sendWithBody<T>(body: PartBody, signal: AbortSignal | undefined, send: (stream: Readable, abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    let bodyError: unknown;
    const stream = body.open(controller.signal);
    stream.once('error', (error) => {
      bodyError = error;
      controller.abort(error);
    });
    try {
      return await send(stream, controller.signal);
    } catch (error) {
      throw bodyError !== undefined && !signal?.aborted ? bodyError : error;
    } finally {
      signal?.removeEventListener('abort', onAbort);
      stream.destroy();
    }
  }

  head(key: string, options?: HeadOptions): Promise<RemoteObject | undefined> {
    return this.#call('HeadObject', key, options, async (abortSignal) => {
      try {
        const r = await this.#client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, ...(options?.checksums === true ? { ChecksumMode: 'ENABLED' } : {}) }), {
          abortSignal,
        });
        const metadata: Record<string, string> = {};
        for (const [k, v] of Object.entries(r.Metadata ?? {})) metadata[k.toLowerCase()] = v;
        const checksums: Partial<Record<ObjectChecksum, string>> = {};
        if (r.ChecksumSHA256 !== undefined) checksums.sha256 = r.ChecksumSHA256;
        if (r.ChecksumCRC64NVME !== undefined) checksums.crc64nvme = r.ChecksumCRC64NVME;
        return { size: r.ContentLength ?? 0, etag: r.ETag ?? '', metadata, checksums };
      } catch (error) {
        if (factsOf(error).status === 404) return undefined;
        throw error;
      }
    });
  }

  put(key: string, body: PartBody, metadata: Record<string, string>, options?: CallOptions): Promise<{ etag: string }> {
    return this.#call('PutObject', key, options, async (signal) => {
      const r = await this.#sendWithBody(body, signal, (stream, abortSignal) =>
        this.#client.send(
          signPayload(
            new PutObjectCommand({
              Bucket: this.bucket,
              Key: key,
              Body: stream,
              ContentLength: body.size,
              ...(body.md5 !== undefined ? { ContentMD5: hexToBase64(body.md5) } : {}),
              ContentType: CONTENT_TYPE,
              Metadata: metadata,
              ...checksumInput(body.checksum),
            }),
            body.sha256,
          ),
          { abortSignal },
        ),
      );
      return { etag: r.ETag ?? '' };
    });
  }

  createMultipart(key: string, metadata: Record<string, string>, options?: CreateMultipartOptions): Promise<string> {
    return this.#call('CreateMultipartUpload', key, options, async (abortSignal) => {
      const checksum = options?.checksum;
      const r = await this.#client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          ContentType: CONTENT_TYPE,
          Metadata: metadata,
          ...(checksum !== undefined ? { ChecksumAlgorithm: SDK_ALGORITHM[checksum.algorithm], ChecksumType: checksum.type } : {}),
        }),
        { abortSignal },
      );
      if (r.UploadId === undefined || r.UploadId === '') throw new Error('CreateMultipartUpload answered without an UploadId');
      return r.UploadId;
    });
  }

  uploadPart(key: string, uploadId: string, partNumber: number, body: PartBody, options?: CallOptions): Promise<{ etag: string }> {
    return this.#call(`UploadPart ${partNumber}`, key, options, async (signal) => {
      const r = await this.#sendWithBody(body, signal, (stream, abortSignal) =>
        this.#client.send(
          signPayload(
            new UploadPartCommand({
              Bucket: this.bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: partNumber,
              Body: stream,
              ContentLength: body.size,
              ...(body.md5 !== undefined ? { ContentMD5: hexToBase64(body.md5) } : {}),
              ...checksumInput(body.checksum),
            }),
            body.sha256,
          ),
          { abortSignal },
        ),
      );
      if (r.ETag === undefined || r.ETag === '') throw new Error(`UploadPart ${partNumber} answered without an ETag`);
      return { etag: r.ETag };
    });
  }

  listParts(key: string, uploadId: string, options?: CallOptions): Promise<RemotePart[] | undefined> {
    return this.#call('ListParts', key, options, async (abortSignal) => {
      const parts: RemotePart[] = [];
      let marker: string | undefined;
      try {
        for (;;) {
          const r = await this.#client.send(new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker }), { abortSignal });
          for (const p of r.Parts ?? []) {
            if (p.PartNumber !== undefined) parts.push({ partNumber: p.PartNumber, size: p.Size ?? 0, etag: p.ETag ?? '' });
          }
          if (r.IsTruncated !== true || r.NextPartNumberMarker === undefined || r.NextPartNumberMarker === marker) break;
          marker = r.NextPartNumberMarker;
        }
      } catch (error) {
        if (factsOf(error).status === 404) return undefined;
        throw error;
      }
      return parts;
    });
  }

  completeMultipart(key: string, uploadId: string, parts: readonly CompletedPartRef[], options?: CompleteMultipartOptions): Promise<{ etag: string }> {
    return this.#call('CompleteMultipartUpload', key, options, async (abortSignal) => {
      const r = await this.#client.send(
        new CompleteMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag, ...checksumInput(p.checksum) })) },
          ...(options?.checksum !== undefined ? { ...checksumInput(options.checksum), ChecksumType: 'FULL_OBJECT' as const } : {}),
        }),
        { abortSignal },
      );
      return { etag: r.ETag ?? '' };
    });
  }

  abortMultipart(key: string, uploadId: string, options?: CallOptions): Promise<void> {
    return this.#call('AbortMultipartUpload', key, options, async (abortSignal) => {
      try {
        await this.#client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }), { abortSignal });
      } catch (error) {
        // Already gone (aborted, completed, expired): the goal is reached. Swift answers NoSuchKey here.
        if (factsOf(error).status === 404) return;
        throw error;
      }
    });
  }

  listMultipartUploads(key: string, options?: CallOptions): Promise<string[]> {
    return this.#call('ListMultipartUploads', key, options, async (abortSignal) => {
      const ids: string[] = [];
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      for (;;) {
        const r = await this.#client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: key, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }), {
          abortSignal,
        });
        for (const u of r.Uploads ?? []) if (u.Key === key && u.UploadId !== undefined) ids.push(u.UploadId);
        if (r.IsTruncated !== true) break;
        if (r.NextKeyMarker === keyMarker && r.NextUploadIdMarker === uploadIdMarker) break;
        keyMarker = r.NextKeyMarker;
        uploadIdMarker = r.NextUploadIdMarker;
      }
      return ids;
    });
  }

  deleteObject(key: string, options?: CallOptions): Promise<void> {
    return this.#call('DeleteObject', key, options, async (abortSignal) => {
      await this.#client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal });
    });
  }

  listFolder(prefix: string, options?: ListOptions): Promise<string[] | undefined> {
    return this.#call('ListObjectsV2', prefix, options, async (abortSignal) => {
      const keys: string[] = [];
      const limit = options?.limit ?? Infinity;
      let token: string | undefined;
      do {
        const r = await this.#client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }), { abortSignal });
        for (const o of r.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key);
        if (keys.length > limit) return undefined;
        token = r.IsTruncated === true ? r.NextContinuationToken : undefined;
      } while (token !== undefined);
      return keys;
    });
  }

  listFolderUploads(prefix: string, options?: ListOptions): Promise<PendingUpload[] | undefined> {
    return this.#call('ListMultipartUploads', prefix, options, async (abortSignal) => {
      const uploads: PendingUpload[] = [];
      const limit = options?.limit ?? Infinity;
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      for (;;) {
        const r = await this.#client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
          { abortSignal },
        );
        for (const u of r.Uploads ?? []) if (u.Key !== undefined && u.UploadId !== undefined) uploads.push({ key: u.Key, uploadId: u.UploadId });
        if (uploads.length > limit) return undefined;
        if (r.IsTruncated !== true) return uploads;
        // A server that repeats its markers would loop for ever: the listing is then unknown.
        if (r.NextKeyMarker === keyMarker && r.NextUploadIdMarker === uploadIdMarker) return undefined;
        keyMarker = r.NextKeyMarker;
        uploadIdMarker = r.NextUploadIdMarker;
      }
    });
  }
}
