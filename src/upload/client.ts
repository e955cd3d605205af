import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { ShuttleError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { PROVIDERS, detectProvider, isProviderName, type ProviderName, type ProviderProfile } from './provider.js';

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/**
 * How to reach an S3 service. Everything is optional: what is missing comes from the SDK's standard
 * environment and files (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID` /
 * `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE` with ~/.aws/config and ~/.aws/credentials); what is given wins.
 */
export interface S3ClientOptions {
  provider?: ProviderName | ProviderProfile;
  endpoint?: string;
  region?: string;
  credentials?: S3Credentials;
  /** Named profile in the shared AWS config files (what `AWS_PROFILE` selects). */
  awsProfile?: string;
  forcePathStyle?: boolean;
  /** Idle time on a socket after which a request fails with a retryable timeout (a stalled peer). */
  socketTimeoutMs?: number;
  connectionTimeoutMs?: number;
  /** Receives the SDK's warnings and errors; the SDK's per-request info lines are dropped (they carry bodies). */
  logger?: Logger;
}

export interface ResolvedS3ClientOptions {
  readonly provider: ProviderProfile;
  readonly endpoint: string | undefined;
  readonly region: string | undefined;
  readonly forcePathStyle: boolean;
  readonly awsProfile: string | undefined;
  readonly socketTimeoutMs: number;
  readonly connectionTimeoutMs: number;
  /** Present only when the caller passed keys; otherwise the SDK's default credential chain finds them. */
  readonly credentials: S3Credentials | undefined;
}

export const DEFAULT_SOCKET_TIMEOUT_MS = 60_000;
export const DEFAULT_CONNECTION_TIMEOUT_MS = 10_000;

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function resolveProvider(choice: S3ClientOptions['provider'], endpoint: string | undefined): ProviderProfile {
  if (choice === undefined) return PROVIDERS[detectProvider(endpoint)];
  if (typeof choice !== 'string') return choice;
  if (!isProviderName(choice)) {
    throw new ShuttleError('CONFIG_INVALID', `unknown S3 provider ${JSON.stringify(choice)}; expected one of ${Object.keys(PROVIDERS).join(', ')}`, {
      context: { provider: choice },
    });
  }
  return PROVIDERS[choice];
}

/** Merges explicit options over the environment, the way the SDK itself would read it, plus the provider's defaults. */
export function resolveS3ClientOptions(options: S3ClientOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedS3ClientOptions {
  const ignoreEnvEndpoints = nonEmpty(env['AWS_IGNORE_CONFIGURED_ENDPOINT_URLS'])?.toLowerCase() === 'true';
  const endpoint = nonEmpty(options.endpoint) ?? (ignoreEnvEndpoints ? undefined : (nonEmpty(env['AWS_ENDPOINT_URL_S3']) ?? nonEmpty(env['AWS_ENDPOINT_URL'])));
  if (endpoint !== undefined) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new ShuttleError('CONFIG_INVALID', `S3 endpoint ${JSON.stringify(endpoint)} is not a URL`, { context: { endpoint } });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new ShuttleError('CONFIG_INVALID', `S3 endpoint ${JSON.stringify(endpoint)} must be http or https`, { context: { endpoint } });
    }
  }
  const provider = resolveProvider(options.provider, endpoint);
  const region = nonEmpty(options.region) ?? nonEmpty(env['AWS_REGION']) ?? provider.defaultRegion;
  const credentials = options.credentials;
  if (credentials !== undefined && (credentials.accessKeyId === '' || credentials.secretAccessKey === '')) {
    throw new ShuttleError('CONFIG_INVALID', 'S3 credentials need both an access key id and a secret access key');
  }
  return Object.freeze({
    provider,
    endpoint,
    // Left undefined for AWS so that the SDK can still find the region in the shared config files.
    region,
    forcePathStyle: options.forcePathStyle ?? provider.forcePathStyle,
    awsProfile: nonEmpty(options.awsProfile) ?? nonEmpty(env['AWS_PROFILE']),
    socketTimeoutMs: options.socketTimeoutMs ?? DEFAULT_SOCKET_TIMEOUT_MS,
    connectionTimeoutMs: options.connectionTimeoutMs ?? DEFAULT_CONNECTION_TIMEOUT_MS,
    credentials: credentials === undefined ? undefined : { ...credentials },
  });
}

/** The parts of a client configuration that may appear in a log line: never keys, tokens or key ids. */
export function describeS3ClientOptions(resolved: ResolvedS3ClientOptions): Record<string, unknown> {
  return {
    provider: resolved.provider.name,
    endpoint: resolved.endpoint ?? '(AWS default)',
    region: resolved.region ?? '(from AWS config)',
    forcePathStyle: resolved.forcePathStyle,
    requestChecksumCalculation: resolved.provider.requestChecksumCalculation,
    responseChecksumValidation: resolved.provider.responseChecksumValidation,
    keySource: resolved.credentials !== undefined ? 'explicit' : 'sdk-default-chain',
    awsProfile: resolved.awsProfile,
    socketTimeoutMs: resolved.socketTimeoutMs,
  };
}

/** Routes the SDK's own messages into Shuttle's logger; the SDK prints to the console when given none. */
function sdkLogger(logger: Logger): NonNullable<S3ClientConfig['logger']> {
  const ignore = (): void => {};
  return {
    trace: ignore,
    debug: ignore,
    info: ignore,
    warn: (...content: unknown[]) => {
      const text = content.map(String).join(' ');
      // Printed for every failed request with a streamed body; the retry decorator logs the failure itself.
      if (text.includes('non-retryable streaming request')) logger.debug({ component: 'aws-sdk' }, text);
      else logger.warn({ component: 'aws-sdk' }, text);
    },
    error: (...content: unknown[]) => logger.error({ component: 'aws-sdk' }, content.map(String).join(' ')),
  };
}

export interface CreatedS3Client {
  client: S3Client;
  options: ResolvedS3ClientOptions;
}

/**
 * An SDK client set up for verified uploads: no streaming checksum bodies, one attempt per call (the
 * retry decorator in retry.ts owns retries, and the SDK cannot retry a streamed body anyway), and a socket
 * idle timeout so that a stalled server turns into a retryable error.
 */
export function createS3Client(options: S3ClientOptions = {}, env: NodeJS.ProcessEnv = process.env): CreatedS3Client {
  const resolved = resolveS3ClientOptions(options, env);
  const config: S3ClientConfig = {
    forcePathStyle: resolved.forcePathStyle,
    requestChecksumCalculation: resolved.provider.requestChecksumCalculation,
    responseChecksumValidation: resolved.provider.responseChecksumValidation,
    maxAttempts: 1,
    // The SDK sends `Expect: 100-continue` with bodies of 2 MB and more, and sends each such request on a
    // fresh socket that it closes afterwards (its own agent is bypassed): a TCP handshake and a waited-for
    // interim answer per part. Content-MD5 already makes a server refuse a bad body, so the body goes at once
    // over the kept-alive pool.
    expectContinueHeader: false,
    requestHandler: { connectionTimeout: resolved.connectionTimeoutMs, socketTimeout: resolved.socketTimeoutMs },
    logger: sdkLogger(options.logger ?? silentLogger),
  };
  if (resolved.endpoint !== undefined) config.endpoint = resolved.endpoint;
  if (resolved.region !== undefined) config.region = resolved.region;
  if (resolved.credentials !== undefined) config.credentials = resolved.credentials;
  if (resolved.awsProfile !== undefined) config.profile = resolved.awsProfile;
  return { client: new S3Client(config), options: resolved };
}
