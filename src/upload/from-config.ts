import { join } from 'node:path';
import { uploadSettings, type Config, type UploadConfig } from '../config/index.js';
import { silentLogger, type Logger } from '../log.js';
import type { Journal } from '../store/journal.js';
import { UploadQueue, type QueueTarget } from '../store/upload-queue.js';
import { ShuttleError } from '../errors.js';
import { JournalUploadStateStore } from './journal-state.js';
import { parseS3Url, queueTarget } from './keys.js';
import { checkAdditionalChecksum, type ProviderName } from './provider.js';
import { RateLimiter } from './rate-limit.js';
import type { RetentionPolicy } from './retention.js';
import type { UploadWorker } from './worker.js';

/**
 * Uploads as the configuration describes them, for every front end (CLI commands, the daemon): the queue
 * target of an s3:// URL, and a worker with its client, credentials, rate limit and journal-backed
 * multipart state.
 */

/** One drainer per journal: the daemon, `shuttle upload` and `shuttle ingest --upload` take turns through it. */
export function uploadLockPath(stateDir: string): string {
  return join(stateDir, 'upload.lock');
}

type UploadContext = Pick<Config, 'station' | 'upload'> & { readonly ingest: Pick<Config['ingest'], 'timeZone'> };

/** Where and how files are named for `url` (s3://bucket/prefix), with the config's template, station, zone and order. */
export function queueTargetFor(config: UploadContext, url: string): QueueTarget {
  const settings = uploadSettings(config);
  const location = parseS3Url(url);
  return queueTarget({
    bucket: location.bucket,
    prefix: location.prefix,
    keyTemplate: settings.keyTemplate,
    station: config.station,
    timeZone: config.ingest.timeZone,
    priority: settings.priority,
  });
}

export function rateLimiterFor(settings: UploadConfig): RateLimiter | undefined {
  if (settings.bandwidth === undefined && settings.schedule.length === 0) return undefined;
  return new RateLimiter({
    bytesPerSecond: settings.bandwidth ?? null,
    schedule: settings.schedule.map((w) => ({ from: w.from, to: w.to, bytesPerSecond: w.bandwidth ?? null, ...(w.days ? { days: w.days } : {}) })),
  });
}

export function retentionPolicyFor(settings: UploadConfig): RetentionPolicy {
  return { keepDays: settings.keepDays, keepFreeBytes: settings.keepFreeBytes };
}

export interface UploadRuntime {
  queue: UploadQueue;
  worker: UploadWorker;
  settings: UploadConfig;
  /** Releases the S3 client's sockets. */
  close(): void;
}

export interface UploadRuntimeOptions {
  config: UploadContext;
  journal: Journal;
  logger: Logger;
  /** `--s3-provider`, over the config's. */
  provider?: ProviderName | undefined;
  env?: NodeJS.ProcessEnv;
}

/**
 * The client, its credentials and the worker, which bring the AWS SDK (a large share of start-up on a
 * small box): loaded when an upload starts, so that naming a target (`shuttle ingest --upload` before its
 * copies, the daemon before its first upload, `shuttle --help`) does not load it.
 */
async function loadS3Runtime(): Promise<[typeof import('./client.js'), typeof import('./credentials.js'), typeof import('./worker.js')]> {
  try {
    return await Promise.all([import('./client.js'), import('./credentials.js'), import('./worker.js')]);
  } catch (cause) {
    throw new ShuttleError('INTERNAL', `uploads are unavailable: the AWS SDK does not load: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}

export async function createUploadRuntime(options: UploadRuntimeOptions): Promise<UploadRuntime> {
  const { config, journal, logger } = options;
  const settings = uploadSettings(config);
  const [{ createS3Client, describeS3ClientOptions }, { resolveCredentials }, { UploadWorker }] = await loadS3Runtime();
  const creds = await resolveCredentials({ credentialsFile: settings.credentialsFile, env: options.env ?? process.env });
  const { client, options: resolved } = createS3Client(
    {
      provider: options.provider ?? settings.provider,
      endpoint: settings.endpoint,
      region: settings.region,
      credentials: creds.credentials,
      // Every failed request is logged by the uploader with its facts; the SDK's own copies only add noise.
      logger: logger.isLevelEnabled('debug') ? logger : silentLogger,
    },
    options.env ?? process.env,
  );
  logger.debug({ s3: describeS3ClientOptions(resolved), credentialSource: creds.origin }, 'S3 client ready');
  try {
    // Here, not per file: the queue would mark every row failed for a setting.
    checkAdditionalChecksum(resolved.provider, settings.checksum);
  } catch (error) {
    client.destroy();
    throw error;
  }
  const queue = new UploadQueue(journal);
  const worker = new UploadWorker({
    queue,
    store: new JournalUploadStateStore(journal),
    client,
    provider: resolved.provider,
    concurrency: settings.concurrency,
    partSize: settings.partSize,
    checksum: settings.checksum,
    rateLimit: rateLimiterFor(settings),
    logger,
  });
  return { queue, worker, settings, close: () => client.destroy() };
}
