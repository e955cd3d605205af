import { stat } from 'node:fs/promises';
import type { S3Client } from '@aws-sdk/client-s3';
import { ShuttleError, abortReason, isShuttleError, throwIfAborted } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { DEFAULT_MAX_PART_SIZE, DEFAULT_PART_SIZE, S3_LIMITS, choosePartSize, multipartEtag, normalizeEtag, partCount } from './multipart.js';
import { PartReader, partBody, signedPart, type SendCheck } from './part-reader.js';
import { PROVIDERS, checkAdditionalChecksum, isProviderName, type ProviderName, type ProviderProfile } from './provider.js';
import type { RateLimiter } from './rate-limit.js';
import type { FreshKey, RemoteListing } from './remote-listing.js';
import type { RetryPolicy } from './retry.js';
import { S3Target, failureStatus } from './s3-target.js';
import type { MultipartUploadState, PartRecord, UploadRef, UploadStateStore } from './state.js';
import { retryingTarget, type CompletedPartRef, type RemotePart, type UploadTarget } from './target.js';
import { compositeSha256, hexToBase64, type ChecksumValue, type ObjectChecksum } from './checksum.js';
import { contentMetadata, holdsContent, verifyLocalDigests, verifyRemoteObject, type ExpectedContent } from './verify.js';

export interface UploadProgress {
  bytesDone: number;
  bytesTotal: number;
  partsDone: number;
  partsTotal: number;
  /** Bytes sent over the network by this call (parts resumed from an earlier run are not counted). */
  bytesSent: number;
}

export interface UploadFileOptions {
  /** The SDK client (see createS3Client) … */
  client?: S3Client;
  /** … or any UploadTarget for `bucket` (used instead of the client). */
  target?: UploadTarget;
  /** ETag rules of the server; 'generic' (trust no ETag format) when not given. */
  provider?: ProviderName | ProviderProfile;
  bucket: string;
  key: string;
  path: string;
  /**
   * Size and hashes recorded at ingest; the upload completes only if the bytes read now match them. With
   * the MD5, a single-request upload sends it as Content-MD5 and checks the local bytes as it sends them,
   * instead of hashing the file in a pass of its own first.
   */
  size: number;
  expected: { sha256: string; xxh128?: string | undefined; md5?: string | undefined };
  store: UploadStateStore;
  signal?: AbortSignal;
  rateLimit?: RateLimiter;
  onProgress?: (progress: UploadProgress) => void;
  /**
   * Files above this go multipart (default: two parts' worth; a file of one or two parts is cheaper as one
   * PUT than as Create, the parts and Complete, which on some servers also assembles a manifest).
   */
  multipartThreshold?: number;
  partSize?: number;
  maxPartSize?: number;
  /** Parts in flight at once (default 4); part bodies are read from the file, not held in memory. */
  concurrency?: number;
  retry?: Partial<RetryPolicy>;
  /**
   * An additional checksum for the server to check and keep with the object (see checksum.ts), checked
   * again by the HEAD after the upload; only for providers that take them (aws).
   */
  checksum?: ObjectChecksum | undefined;
  /** Replace an object at `key` whose content differs (default: refuse, it may be another file of the same name). */
  overwrite?: boolean;
  /**
   * Listings of the bucket's key folders shared by the uploads of one run: a key its folder's listing shows
   * free (and no upload state in `store`) is sent without a HEAD first and without listing its unfinished
   * uploads; any other key is checked on the server as usual.
   */
  listing?: RemoteListing;
  /**
   * Set when `expected` (SHA-256, and the MD5 or the parts' digests) was taken by a read of this very
   * file that matched the journal's xxh128 just before (src/upload/content-hashes.ts): the requests then
   * carry those digests and the server's check of them proves that the bytes sent are the bytes read, so
   * the file is read once more only to send it, not hashed again. Parts of another size are hashed as usual.
   */
  readAhead?: { parts?: { partSize: number; digests: ReadonlyArray<{ md5: string; sha256: string }> } | undefined } | undefined;
  logger?: Logger;
}

export type VerifiedBy = 'size' | 'etag' | 'sha256-metadata' | 'xxh128-metadata' | 'local-sha256' | 'local-xxh128' | 'checksum-sha256' | 'checksum-crc64nvme';

export interface UploadResult {
  bucket: string;
  key: string;
  size: number;
  etag: string;
  outcome: 'uploaded' | 'already-present';
  method: 'single' | 'multipart' | 'none';
  partsTotal: number;
  /** Parts (or the one PUT) sent by this call. */
  partsSent: number;
  /** Parts an earlier, interrupted run had already completed. */
  partsResumed: number;
  bytesSent: number;
  verifiedBy: VerifiedBy[];
}

const SHA256_HEX = /^[0-9a-f]{64}$/i;
/** xxh128 and MD5 alike. */
const HEX_128 = /^[0-9a-f]{32}$/i;

interface Context {
  opts: UploadFileOptions;
  target: UploadTarget;
  profile: ProviderProfile;
  ref: UploadRef;
  expected: ExpectedContent;
  signal: AbortSignal | undefined;
  log: Logger;
  /** Set when the key was free at listing time and is this call's: orphans were taken from the listing. */
  fresh: FreshKey | undefined;
}

function resolveProfile(provider: UploadFileOptions['provider']): ProviderProfile {
  if (provider === undefined) return PROVIDERS.generic;
  if (typeof provider !== 'string') return provider;
  if (!isProviderName(provider)) throw new ShuttleError('CONFIG_INVALID', `unknown S3 provider ${JSON.stringify(provider)}`, { context: { provider } });
  return PROVIDERS[provider];
}

function validate(opts: UploadFileOptions): ExpectedContent {
  if (!Number.isSafeInteger(opts.size) || opts.size < 0) {
    throw new ShuttleError('USAGE', `upload size ${opts.size} is not a byte count`, { context: { size: opts.size } });
  }
  if (!SHA256_HEX.test(opts.expected.sha256)) {
    throw new ShuttleError('USAGE', `expected sha256 ${JSON.stringify(opts.expected.sha256)} is not 64 hex digits`, { context: { sha256: opts.expected.sha256 } });
  }
  const xxh = opts.expected.xxh128;
  if (xxh !== undefined && !HEX_128.test(xxh)) {
    throw new ShuttleError('USAGE', `expected xxh128 ${JSON.stringify(xxh)} is not 32 hex digits`, { context: { xxh128: xxh } });
  }
  const md5 = opts.expected.md5;
  if (md5 !== undefined && !HEX_128.test(md5)) {
    throw new ShuttleError('USAGE', `expected md5 ${JSON.stringify(md5)} is not 32 hex digits`, { context: { md5 } });
  }
  return { size: opts.size, sha256: opts.expected.sha256.toLowerCase(), xxh128: xxh?.toLowerCase(), md5: md5?.toLowerCase() };
}

/**
 * Uploads one local file to `s3://bucket/key` and returns only once the server's copy is verified:
 * each request carries Content-MD5, the file's SHA-256 as read now must equal the journal's, and a HEAD
 * afterwards must show the size, the locally computed ETag (where the provider's ETags are MD5s) and the
 * stored hashes (SHA-256, and xxh128 if given). An object already holding this content is not uploaded again.
 * Multipart progress is kept in `store`, so a later call after a crash or abort resumes where this one stopped.
 */
export async function uploadFile(opts: UploadFileOptions): Promise<UploadResult> {
  const signal = opts.signal;
  throwIfAborted(signal);
  const expected = validate(opts);
  const log = (opts.logger ?? silentLogger).child({ bucket: opts.bucket, key: opts.key });
  const base = opts.target ?? (opts.client !== undefined ? new S3Target(opts.client, opts.bucket) : undefined);
  if (base === undefined) throw new ShuttleError('USAGE', 'uploadFile needs a client or a target');
  if (base.bucket !== opts.bucket) throw new ShuttleError('USAGE', `target is for bucket ${base.bucket}, not ${opts.bucket}`);
  const target = retryingTarget(base, {
    ...opts.retry,
    onRetry: ({ attempt, delayMs, error }) => log.warn({ attempt, delayMs, err: isShuttleError(error) ? error.toJSON() : String(error) }, 'S3 request failed; retrying'),
  });
  const profile = resolveProfile(opts.provider);
  checkAdditionalChecksum(profile, opts.checksum);
  const ctx: Context = {
    opts,
    target,
    profile,
    ref: { bucket: opts.bucket, key: opts.key },
    expected,
    signal,
    log,
    fresh: undefined,
  };

  await checkLocalSize(opts.path, expected.size);

  // A key with upload state in the journal had an earlier attempt: the server is asked what it holds.
  const listing = opts.listing?.bucket === opts.bucket ? opts.listing : undefined;
  if (listing !== undefined && (await opts.store.load(ctx.ref)) === undefined) ctx.fresh = await listing.claimFresh(opts.key);
  const existing = ctx.fresh !== undefined ? undefined : await target.head(opts.key, { signal });
  if (existing !== undefined) {
    if (holdsContent(existing, expected)) {
      log.info({ size: existing.size }, 'object already present with this content; not uploading');
      await settleAfterSuccess(ctx);
      return {
        bucket: opts.bucket,
        key: opts.key,
        size: existing.size,
        etag: existing.etag,
        outcome: 'already-present',
        method: 'none',
        partsTotal: 0,
        partsSent: 0,
        partsResumed: 0,
        bytesSent: 0,
        verifiedBy: ['size', 'sha256-metadata'],
      };
    }
    if (opts.overwrite !== true) {
      throw new ShuttleError(
        'UPLOAD_FAILED',
        `s3://${opts.bucket}/${opts.key} already holds different content (size ${existing.size}, sha256 ${existing.metadata['sha256'] ?? 'unknown'}); not overwriting it`,
        { context: { bucket: opts.bucket, key: opts.key, size: existing.size, sha256: existing.metadata['sha256'], expectedSha256: expected.sha256 } },
      );
    }
  }

  const outcome = sendsInOneRequest(expected.size, opts) ? await putSingle(ctx) : await putMultipart(ctx);

  const remote = await target.head(opts.key, { signal, checksums: outcome.checksum !== undefined });
  try {
    verifyRemoteObject(remote, { ...expected, etag: outcome.expectedEtag, checksum: outcome.checksum }, ctx.ref);
  } catch (error) {
    // A wrong object must not stay behind: a later run would take it for this content (its metadata matches).
    await target.deleteObject(opts.key, { signal }).catch((e: unknown) => log.error({ err: String(e) }, 'could not delete the unverified object'));
    throw error;
  }
  const verifiedBy: VerifiedBy[] = [`local-${outcome.localHash}`, 'size', 'sha256-metadata'];
  if (expected.xxh128 !== undefined) verifiedBy.push('xxh128-metadata');
  if (outcome.expectedEtag !== undefined) verifiedBy.push('etag');
  if (outcome.checksum !== undefined) verifiedBy.push(`checksum-${outcome.checksum.algorithm}`);
  log.info({ size: expected.size, method: outcome.method, partsSent: outcome.partsSent, partsResumed: outcome.partsResumed }, 'upload verified');
  return {
    bucket: opts.bucket,
    key: opts.key,
    size: expected.size,
    etag: remote?.etag ?? '',
    outcome: 'uploaded',
    method: outcome.method,
    partsTotal: outcome.partsTotal,
    partsSent: outcome.partsSent,
    partsResumed: outcome.partsResumed,
    bytesSent: outcome.bytesSent,
    verifiedBy,
  };
}

/** Whether uploadFile sends a file of `size` bytes in one PUT rather than in parts. */
export function sendsInOneRequest(size: number, opts: Pick<UploadFileOptions, 'partSize' | 'multipartThreshold'>): boolean {
  const threshold = opts.multipartThreshold ?? 2 * (opts.partSize ?? DEFAULT_PART_SIZE);
  return size <= Math.min(threshold, S3_LIMITS.maxSinglePutSize);
}

async function checkLocalSize(path: string, size: number): Promise<void> {
  let actual: number;
  try {
    actual = (await stat(path)).size;
  } catch (error) {
    throw new ShuttleError('SOURCE_UNREADABLE', `cannot stat ${path} for upload`, { context: { path }, cause: error });
  }
  if (actual !== size) {
    throw new ShuttleError('UPLOAD_VERIFY', `local file ${path} is ${actual} bytes, the journal recorded ${size}; not uploading it`, {
      context: { path, expected: size, actual },
    });
  }
}

interface Outcome {
  method: 'single' | 'multipart';
  /** The hash of the local bytes that was compared with the journal's. */
  localHash: 'sha256' | 'xxh128';
  /** The additional checksum the object must carry, as HEAD reports it. */
  checksum: ChecksumValue | undefined;
  expectedEtag: string | undefined;
  partsTotal: number;
  partsSent: number;
  partsResumed: number;
  bytesSent: number;
}

async function putSingle(ctx: Context): Promise<Outcome> {
  const { opts, target, signal, expected } = ctx;
  // xxh128 where the journal has one: several times cheaper than SHA-256, and the journal's SHA-256 goes
  // out as the signed payload hash, which the server checks against the bytes it receives.
  const localHash = expected.xxh128 !== undefined ? 'xxh128' : 'sha256';
  let md5: string | undefined;
  let check: SendCheck | undefined;
  let checksum: ChecksumValue | undefined;
  let hashedNow = false;
  // A CRC-64/NVME goes in the request's headers, so it is taken before the body: in a pass of its own.
  // After a read ahead, a server that checks the signed SHA-256 needs no MD5 (see checksSignedPayload).
  const withoutMd5 = opts.readAhead !== undefined && expected.md5 === undefined && ctx.profile.checksSignedPayload;
  if ((expected.md5 !== undefined || withoutMd5) && opts.checksum !== 'crc64nvme') {
    // Every hash the request carries is the source's: the server refuses bytes that differ from the
    // source's. The local check stops the body before its last chunk if they do, which names a copy that
    // rotted since its hashes were taken; taken just now by a read that matched the journal, they leave
    // nothing for it to find (a change since then is refused by the server, and the next attempt checks).
    md5 = expected.md5;
    if (opts.readAhead === undefined) check = { algorithm: localHash, verify: (digest) => verifyLocalDigests(opts.path, digest, expected, ctx.ref) };
    if (opts.checksum === 'sha256') checksum = { algorithm: 'sha256', value: hexToBase64(expected.sha256) };
  } else {
    hashedNow = true;
    const reader = await PartReader.open(opts.path, expected.size, { whole: localHash, crc64nvme: opts.checksum === 'crc64nvme' });
    try {
      md5 = (await reader.read(expected.size, signal)).md5;
      if (opts.checksum !== undefined) {
        checksum = { algorithm: opts.checksum, value: opts.checksum === 'sha256' ? hexToBase64(expected.sha256) : await reader.crc64nvme() };
      }
    } finally {
      await reader.close();
    }
    // The whole file is hashed before a byte goes out, so a rotted copy is never sent.
    verifyLocalDigests(opts.path, reader.digest(), expected, ctx.ref);
  }
  await abandonStoredUpload(ctx, await opts.store.load(ctx.ref));
  // One part, the whole file: its payload hash is the file's SHA-256 as the journal has it.
  const part = { offset: 0, size: expected.size, md5, sha256: expected.sha256 };
  // Past the page cache unless the PartReader above just put it there (a read ahead bypassed the cache).
  const body = partBody(opts.path, part, { limiter: opts.rateLimit, checksum, check, uncached: !hashedNow });
  await target.put(opts.key, body, contentMetadata(expected), { signal });
  opts.onProgress?.({ bytesDone: expected.size, bytesTotal: expected.size, partsDone: 1, partsTotal: 1, bytesSent: expected.size });
  return {
    method: 'single',
    localHash,
    checksum,
    expectedEtag: ctx.profile.singlePartEtagIsMd5 ? md5 : undefined,
    partsTotal: 1,
    partsSent: 1,
    partsResumed: 0,
    bytesSent: expected.size,
  };
}

/** Aborts the server side of a stored upload that will not be continued, and marks it so. */
async function abandonStoredUpload(ctx: Context, state: MultipartUploadState | undefined): Promise<void> {
  if (state === undefined || state.status === 'completed') return;
  ctx.log.info({ uploadId: state.uploadId, status: state.status }, 'aborting an abandoned multipart upload');
  await ctx.target.abortMultipart(ctx.ref.key, state.uploadId, { signal: ctx.signal });
  if (state.status !== 'aborted') await ctx.opts.store.setStatus(ctx.ref, state.uploadId, 'aborted');
}

/**
 * Aborts every unfinished upload for the key except `keep`: leftovers of runs that crashed before recording
 * their id. The ids come from the folder listing when the key was fresh in it, else from a listing of the key.
 */
async function abortOrphans(ctx: Context, keep: string | undefined): Promise<void> {
  const ids = ctx.fresh?.orphans ?? (await ctx.target.listMultipartUploads(ctx.ref.key, { signal: ctx.signal }));
  for (const id of ids) {
    if (id === keep) continue;
    ctx.log.info({ uploadId: id }, 'aborting an orphaned multipart upload');
    await ctx.target.abortMultipart(ctx.ref.key, id, { signal: ctx.signal });
  }
}

/**
 * After the object is verified: nothing unfinished may stay on the server or in the store. Best effort.
 * Orphans are only looked for when an upload of this key was under way (a stored one, or the one just
 * completed), so that skipping thousands of already-uploaded files costs one HEAD each, not a listing too.
 */
async function settleAfterSuccess(ctx: Context, completedUploadId?: string): Promise<void> {
  try {
    const state = await ctx.opts.store.load(ctx.ref);
    const underWay = state !== undefined && state.uploadId !== completedUploadId && state.status === 'uploading';
    if (!underWay && completedUploadId === undefined) return;
    // A fresh key had its orphans aborted before its upload was created, and no upload was under way.
    if (!underWay && ctx.fresh !== undefined) return;
    if (underWay) {
      // Harmless if that upload did complete (a crash between Complete and recording it): the server then
      // answers NoSuchUpload, and the object, verified above, holds this very file.
      await ctx.target.abortMultipart(ctx.ref.key, state.uploadId, { signal: ctx.signal });
      const sameFile = state.size === ctx.expected.size && state.sha256 === ctx.expected.sha256;
      await ctx.opts.store.setStatus(ctx.ref, state.uploadId, sameFile ? 'completed' : 'aborted');
    }
    await abortOrphans(ctx, completedUploadId);
  } catch (error) {
    if (ctx.signal?.aborted) throw abortReason(ctx.signal);
    ctx.log.warn({ err: isShuttleError(error) ? error.toJSON() : String(error) }, 'could not clean up unfinished multipart uploads');
  }
}

interface Resumable {
  state: MultipartUploadState;
  /** What the server holds, by part number. */
  serverParts: Map<number, RemotePart>;
}

/** Continues the stored upload if it is for this very file and still exists on the server; otherwise starts a new one. */
async function openMultipart(ctx: Context): Promise<Resumable> {
  const { opts, target, expected, signal, log } = ctx;
  const stored = await opts.store.load(ctx.ref);
  if (stored !== undefined) {
    const sameFile = stored.size === expected.size && stored.sha256 === expected.sha256;
    const validPartSize = stored.partSize >= S3_LIMITS.minPartSize && partCount(expected.size, stored.partSize) <= S3_LIMITS.maxParts;
    if (stored.status === 'uploading' && sameFile && validPartSize) {
      const listed = await target.listParts(opts.key, stored.uploadId, { signal });
      if (listed !== undefined) {
        log.info({ uploadId: stored.uploadId, recorded: stored.parts.length, onServer: listed.length }, 'resuming multipart upload');
        return { state: stored, serverParts: new Map(listed.map((p) => [p.partNumber, p])) };
      }
      log.info({ uploadId: stored.uploadId }, 'stored multipart upload no longer exists on the server; starting over');
      await opts.store.setStatus(ctx.ref, stored.uploadId, 'aborted');
    } else {
      await abandonStoredUpload(ctx, stored);
    }
  }
  try {
    await abortOrphans(ctx, undefined);
  } catch (error) {
    // Listing uploads needs its own permission on AWS; lacking it must not stop the upload itself.
    if (signal?.aborted) throw abortReason(signal);
    log.warn({ err: isShuttleError(error) ? error.toJSON() : String(error) }, 'could not look for orphaned multipart uploads');
  }
  const partSize = choosePartSize(expected.size, { preferredPartSize: opts.partSize ?? DEFAULT_PART_SIZE, maxPartSize: opts.maxPartSize ?? DEFAULT_MAX_PART_SIZE });
  const checksum = opts.checksum === undefined ? undefined : { algorithm: opts.checksum, type: opts.checksum === 'sha256' ? ('COMPOSITE' as const) : ('FULL_OBJECT' as const) };
  const uploadId = await target.createMultipart(opts.key, contentMetadata(expected), { signal, ...(checksum !== undefined ? { checksum } : {}) });
  const fresh = { bucket: opts.bucket, key: opts.key, uploadId, size: expected.size, sha256: expected.sha256, partSize };
  await opts.store.begin(fresh);
  log.info({ uploadId, partSize, parts: partCount(expected.size, partSize) }, 'started multipart upload');
  return { state: { ...fresh, status: 'uploading', parts: [] }, serverParts: new Map() };
}

async function putMultipart(ctx: Context): Promise<Outcome> {
  const { opts, target, expected, signal, log, profile } = ctx;
  const { state, serverParts } = await openMultipart(ctx);
  const { uploadId, partSize } = state;
  const total = partCount(expected.size, partSize);
  const recorded = new Map(state.parts.map((p) => [p.partNumber, p]));
  const done = new Map<number, PartRecord>();
  const concurrency = Math.max(1, opts.concurrency ?? 4);
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let partsSent = 0;
  let partsResumed = 0;
  let bytesSent = 0;
  let bytesDone = 0;
  const progress = (): void => opts.onProgress?.({ bytesDone, bytesTotal: expected.size, partsDone: done.size, partsTotal: total, bytesSent });

  // Each part is SHA-256-hashed for its signature anyway, so the whole file is checked with the cheaper
  // xxh128 where the journal has one; the server checks each part against its SHA-256.
  const localHash = expected.xxh128 !== undefined ? 'xxh128' : 'sha256';
  // Digests a read ahead took (see readAhead) serve when its parts are these; a full-object CRC needs a read here.
  const ahead = opts.readAhead?.parts;
  const digests = ahead !== undefined && ahead.partSize === partSize && ahead.digests.length === total && opts.checksum !== 'crc64nvme' ? ahead.digests : undefined;
  const reader =
    digests !== undefined ? undefined : await PartReader.open(opts.path, expected.size, { whole: localHash, partSha256: true, crc64nvme: opts.checksum === 'crc64nvme' });
  // Every part's SHA-256, resumed ones included: a COMPOSITE SHA-256 names them all at completion.
  const partSha256 = new Map<number, string>();
  const partChecksum = (n: number): ChecksumValue | undefined =>
    opts.checksum === 'sha256' ? { algorithm: 'sha256', value: hexToBase64(partSha256.get(n) as string) } : undefined;
  try {
    for (let n = 1; n <= total && failure === undefined; n++) {
      throwIfAborted(signal);
      // The next part is hashed while the slots are busy, so the disk and the network overlap even with
      // one part in flight.
      const length = Math.min(partSize, expected.size - (n - 1) * partSize);
      const known = digests?.[n - 1];
      const part =
        known !== undefined ? { offset: (n - 1) * partSize, size: length, md5: known.md5, sha256: known.sha256 } : signedPart(await (reader as PartReader).read(length, signal));
      partSha256.set(n, part.sha256);
      while (inFlight.size >= concurrency) await Promise.race(inFlight);
      if (failure !== undefined) break;
      const mine = recorded.get(n);
      const theirs = serverParts.get(n);

      if (mine !== undefined && theirs !== undefined && normalizeEtag(theirs.etag) === normalizeEtag(mine.etag) && theirs.size === length && mine.md5 === part.md5) {
        done.set(n, mine);
        partsResumed++;
        bytesDone += length;
        progress();
        continue;
      }
      if (mine === undefined && theirs !== undefined && profile.partEtagIsMd5 && normalizeEtag(theirs.etag) === part.md5 && theirs.size === length) {
        // The server confirmed this part but the run that sent it died before recording it.
        const adopted: PartRecord = { partNumber: n, size: length, md5: part.md5, etag: theirs.etag };
        await opts.store.recordPart(ctx.ref, uploadId, adopted);
        done.set(n, adopted);
        partsResumed++;
        bytesDone += length;
        progress();
        continue;
      }
      if (mine !== undefined) {
        log.warn(
          { partNumber: n, recordedMd5: mine.md5, localMd5: part.md5, onServer: theirs !== undefined },
          'recorded part is missing on the server or differs; sending it again',
        );
      }

      const task = (async () => {
        // Past the page cache when no PartReader just read the part into it.
        const body = partBody(opts.path, part, { limiter: opts.rateLimit, checksum: partChecksum(n), uncached: reader === undefined });
        const { etag } = await target.uploadPart(opts.key, uploadId, n, body, { signal });
        if (profile.partEtagIsMd5 && normalizeEtag(etag) !== part.md5) {
          throw new ShuttleError('UPLOAD_VERIFY', `server stored part ${n} of s3://${opts.bucket}/${opts.key} with ETag ${normalizeEtag(etag)}, sent MD5 ${part.md5}`, {
            context: { bucket: opts.bucket, key: opts.key, partNumber: n, expected: part.md5, actual: normalizeEtag(etag) },
          });
        }
        const rec: PartRecord = { partNumber: n, size: length, md5: part.md5, etag };
        await opts.store.recordPart(ctx.ref, uploadId, rec);
        done.set(n, rec);
        partsSent++;
        bytesSent += length;
        bytesDone += length;
        progress();
      })().catch((error: unknown) => {
        failure ??= error;
      });
      inFlight.add(task);
      void task.finally(() => inFlight.delete(task));
    }
    await Promise.all(inFlight);
  } finally {
    await Promise.allSettled(inFlight);
    await reader?.close();
  }
  if (signal?.aborted) throw abortReason(signal);
  if (failure !== undefined) throw failure;

  try {
    // A read ahead compared its bytes with the journal before any part went out.
    if (reader !== undefined) verifyLocalDigests(opts.path, reader.digest(), expected, ctx.ref);
  } catch (error) {
    // The parts hold bytes that are not the recorded file: never complete them.
    await target.abortMultipart(opts.key, uploadId, { signal }).catch((e: unknown) => log.error({ err: String(e) }, 'could not abort the upload'));
    await opts.store.setStatus(ctx.ref, uploadId, 'aborted');
    throw error;
  }

  const parts = [...done.values()].sort((a, b) => a.partNumber - b.partNumber);
  let objectChecksum: ChecksumValue | undefined;
  if (opts.checksum === 'crc64nvme' && reader !== undefined) objectChecksum = { algorithm: 'crc64nvme', value: await reader.crc64nvme() };
  if (opts.checksum === 'sha256') objectChecksum = { algorithm: 'sha256', value: compositeSha256(parts.map((p) => partSha256.get(p.partNumber) as string)) };
  await complete(
    ctx,
    uploadId,
    parts.map((p) => ({ partNumber: p.partNumber, etag: p.etag, ...withChecksum(partChecksum(p.partNumber)) })),
    opts.checksum === 'crc64nvme' ? objectChecksum : undefined,
  );
  await opts.store.setStatus(ctx.ref, uploadId, 'completed');
  await settleAfterSuccess(ctx, uploadId);
  return {
    method: 'multipart',
    localHash,
    checksum: objectChecksum,
    expectedEtag: profile.multipartEtagIsMd5OfParts ? multipartEtag(parts.map((p) => p.md5)) : undefined,
    partsTotal: total,
    partsSent,
    partsResumed,
    bytesSent,
  };
}

/** `{ checksum }` when there is one: optional properties stay absent rather than undefined. */
function withChecksum(checksum: ChecksumValue | undefined): { checksum?: ChecksumValue } {
  return checksum === undefined ? {} : { checksum };
}

async function complete(ctx: Context, uploadId: string, parts: CompletedPartRef[], fullObject: ChecksumValue | undefined): Promise<void> {
  const { opts, target, signal, expected } = ctx;
  try {
    await target.completeMultipart(opts.key, uploadId, parts, { signal, ...withChecksum(fullObject) });
  } catch (error) {
    if (failureStatus(error) !== 404) throw error;
    // AWS answers NoSuchUpload to a repeated Complete whose first answer was lost: the object may be there.
    const remote = await target.head(opts.key, { signal });
    if (remote !== undefined && holdsContent(remote, expected)) return;
    await opts.store.setStatus(ctx.ref, uploadId, 'aborted');
    throw new ShuttleError('UPLOAD_FAILED', `multipart upload ${uploadId} of s3://${opts.bucket}/${opts.key} vanished before it completed; it will start over`, {
      context: { bucket: opts.bucket, key: opts.key, uploadId },
      cause: error,
      retryable: true,
    });
  }
}
