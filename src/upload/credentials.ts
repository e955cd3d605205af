import { readFileSync } from 'node:fs';
import { join } from 'node:path';
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

/** `[section]` → key → value, for the AWS shared-credentials format (INI; `#` and `;` start comments). */
export function parseIni(text: string): Map<string, Map<string, string>> {
  const sections = new Map<string, Map<string, string>>();
  let current = new Map<string, string>();
  sections.set('', current);
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[\s*(?:profile\s+)?([^\]]+?)\s*\]$/.exec(line);
    if (header !== null) {
      const name = header[1] as string;
      current = sections.get(name) ?? new Map<string, string>();
      sections.set(name, current);
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    current.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
  }
  return sections;
}

function readSecret(path: string, what: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw new ShuttleError('CONFIG_UNREADABLE', `cannot read the ${what} ${path} (${errnoCode(error) ?? 'error'})`, { context: { path, errno: errnoCode(error) } });
  }
}

function fromSection(section: Map<string, string> | undefined): S3Credentials | undefined {
  const accessKeyId = section?.get('aws_access_key_id');
  const secretAccessKey = section?.get('aws_secret_access_key');
  if (accessKeyId === undefined || accessKeyId === '' || secretAccessKey === undefined || secretAccessKey === '') return undefined;
  const sessionToken = section?.get('aws_session_token');
  return sessionToken === undefined || sessionToken === '' ? { accessKeyId, secretAccessKey } : { accessKeyId, secretAccessKey, sessionToken };
}

/** Keys from an AWS-style credentials file: the `profile` section (default `default`), or bare keys at the top. */
export function credentialsFromFile(path: string, profile = 'default'): S3Credentials {
  const text = readSecret(path, 'S3 credentials file');
  if (text === undefined) {
    throw new ShuttleError('CONFIG_UNREADABLE', `S3 credentials file ${path} does not exist`, { context: { path, errno: 'ENOENT' } });
  }
  const sections = parseIni(text);
  const found = fromSection(sections.get(profile)) ?? fromSection(sections.get(''));
  if (found === undefined) {
    throw new ShuttleError('CONFIG_INVALID', `S3 credentials file ${path} has no aws_access_key_id and aws_secret_access_key for profile "${profile}"`, {
      context: { path, profile, sections: [...sections.keys()].filter((s) => s !== '') },
    });
  }
  return found;
}

/** Keys from systemd's credentials directory, if it holds any. */
export function credentialsFromDirectory(dir: string, profile = 'default'): S3Credentials | undefined {
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

export function resolveCredentials(options: { credentialsFile?: string | undefined; env?: NodeJS.ProcessEnv }): CredentialSource {
  const env = options.env ?? process.env;
  const profile = env['AWS_PROFILE']?.trim() || 'default';
  if (options.credentialsFile !== undefined) {
    return { credentials: credentialsFromFile(options.credentialsFile, profile), origin: `credentials file ${options.credentialsFile}` };
  }
  const dir = env['CREDENTIALS_DIRECTORY'];
  if (dir !== undefined && dir !== '') {
    const found = credentialsFromDirectory(dir, profile);
    if (found !== undefined) return { credentials: found, origin: `systemd credentials in ${dir}` };
  }
  return { credentials: undefined, origin: 'aws-sdk default chain' };
}
