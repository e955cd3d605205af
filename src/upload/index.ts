/** Verified, resumable uploads to S3 and S3-compatible servers: the public surface of src/upload. */
export { uploadFile, type UploadFileOptions, type UploadProgress, type UploadResult, type VerifiedBy } from './uploader.js';
export {
  MemoryUploadStateStore,
  FileUploadStateStore,
  type UploadStateStore,
  type MultipartUploadState,
  type NewUploadState,
  type PartRecord,
  type UploadRef,
  type UploadStatus,
} from './state.js';
export { createS3Client, resolveS3ClientOptions, describeS3ClientOptions, type S3ClientOptions, type ResolvedS3ClientOptions, type S3Credentials } from './client.js';
export { PROVIDERS, detectProvider, type ProviderName, type ProviderProfile } from './provider.js';
export { RateLimiter, type RateLimitOptions, type RateWindow } from './rate-limit.js';
export { DEFAULT_KEY_TEMPLATE, renderKey, parseS3Url, sanitizeKeySegment, type KeyVars, type S3Location } from './keys.js';
export { withRetry, DEFAULT_RETRY_POLICY, type RetryPolicy, type RetryOptions } from './retry.js';
export { S3Target, isTransientS3Error } from './s3-target.js';
export { RemoteListing, type FreshKey } from './remote-listing.js';
export { retryingTarget, type UploadTarget, type PartBody, type PendingUpload, type RemoteObject, type RemotePart } from './target.js';
export { choosePartSize, multipartEtag, S3_LIMITS, DEFAULT_PART_SIZE } from './multipart.js';
export { META_SHA256, META_XXH128, type ExpectedContent } from './verify.js';
