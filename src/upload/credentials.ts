import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fromIni } from '@aws-sdk/credential-provider-ini';
import { ShuttleError, errnoCode } from '../errors.js';
import type { S3Credentials } from './client.js';

/**
 * Where S3 keys come from, first match wins: the `credentials_file` the config names, then systemd's
 * `$CREDENTIALS_DIRECTORY` (`LoadCredential=`), then the AWS SDK's own chain (environment, shared
 * ~/.aws files, SSO, instance roles), which Shuttle leaves to the SDK. Keys never reach a log line or an
 * error message: only where they came from does.
 */

export interface CredentialSource {
  /** Keys to hand the SDK; undefined leaves the SDK's default chain to find them. */
  credentials: S3Credentials | undefined;
  /** For logs: 'config file /etc/…', 'systemd credentials', 'aws-sdk default chain'. Never a key. */
  origin: string;
}

/** Files looked for in `$CREDENTIALS_DIRECTORY`: one value each, or an AWS-style file with sections. */
export const SYSTEMD_CREDENTIAL_NAMES = {
  accessKeyId: 'aws_access_key_id',
  secretAccessKey: 'aws_secret_access_key',
  sessionToken: 'aws_session_token',
  file: 'aws_credentials',
} as const;

function readSecret(path: string, what: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw new ShuttleError('CONFIG_UNREADABLE', `cannot read the ${what} ${path} (${errnoCode(error) ?? 'error'})`, { context: { path, errno: errnoCode(error) } });
  }
}

/**
 * Keys from an AWS-style credentials file, read by the SDK's own INI provider: the `profile` section
 * (default `default`). The file serves as the config file too, so that `[profile NAME]` headers count and
 * the service user's ~/.aws/config adds nothing to what it says.
 */
export async function credentialsFromFile(path: string, profile = 'default'): Promise<S3Credentials> {
  // The SDK reports a missing or unreadable file as a profile without keys: look first, to say which it is.
  if (readSecret(path, 'S3 credentials file') === undefined) {
    throw new ShuttleError('CONFIG_UNREADABLE', `S3 credentials file ${path} does not exist`, { context: { path, errno: 'ENOENT' } });
  }
  const found = await fromIni({ filepath: path, configFilepath: path, profile, ignoreCache: true })().catch((cause: unknown) => {
    // The SDK's message names the profile, never a key.
    throw new ShuttleError('CONFIG_INVALID', `S3 credentials file ${path} has no aws_access_key_id and aws_secret_access_key for profile "${profile}"`, {
      context: { path, profile },
      cause,
    });
  });
  if (found.expiration !== undefined) {
    // A role, SSO or process profile: the keys would expire in a running daemon with nobody to renew them.
    throw new ShuttleError(
      'CONFIG_INVALID',
      `S3 credentials file ${path}: profile "${profile}" gives temporary credentials; put static keys there, or leave credentials_file out so that the AWS SDK's chain renews them`,
      {
        context: { path, profile },
      },
    );
  }
  const { accessKeyId, secretAccessKey, sessionToken } = found;
  return sessionToken === undefined || sessionToken === '' ? { accessKeyId, secretAccessKey } : { accessKeyId, secretAccessKey, sessionToken };
}

/** Keys from systemd's credentials directory, if it holds any. */
export async function credentialsFromDirectory(dir: string, profile = 'default'): Promise<S3Credentials | undefined> {
  const names = SYSTEMD_CREDENTIAL_NAMES;
  const file = join(dir, names.file);
  if (readSecret(file, 'systemd credential') !== undefined) return credentialsFromFile(file, profile);
  const accessKeyId = readSecret(join(dir, names.accessKeyId), 'systemd credential')?.trim();
  const secretAccessKey = readSecret(join(dir, names.secretAccessKey), 'systemd credential')?.trim();
  if (accessKeyId === undefined && secretAccessKey === undefined) return undefined;
  if (!accessKeyId || !secretAccessKey) {
    throw new ShuttleError('CONFIG_INVALID', `systemd credentials in ${dir}: ${names.accessKeyId} and ${names.secretAccessKey} must both be given`, { context: { dir } });
  }
  const sessionToken = readSecret(join(dir, names.sessionToken), 'systemd credential')?.trim();
  return sessionToken ? { accessKeyId, secretAccessKey, sessionToken } : { accessKeyId, secretAccessKey };
}

export async function resolveCredentials(options: { credentialsFile?: string | undefined; env?: NodeJS.ProcessEnv }): Promise<CredentialSource> {
  const env = options.env ?? process.env;
  const profile = env['AWS_PROFILE']?.trim() || 'default';
  if (options.credentialsFile !== undefined) {
    return { credentials: await credentialsFromFile(options.credentialsFile, profile), origin: `credentials file ${options.credentialsFile}` };
  }
  const dir = env['CREDENTIALS_DIRECTORY'];
  if (dir !== undefined && dir !== '') {
    const found = await credentialsFromDirectory(dir, profile);
    if (found !== undefined) return { credentials: found, origin: `systemd credentials in ${dir}` };
  }
  return { credentials: undefined, origin: 'aws-sdk default chain' };
}
