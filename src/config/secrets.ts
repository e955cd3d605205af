import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ShuttleError, errnoCode } from '../errors.js';

/**
 * Passwords, tokens and signing secrets of the notification and MQTT settings. First match wins: the
 * value written in the config, the file the config names (`*_file`), then systemd's credentials
 * directory (`LoadCredential=NAME:…` puts the secret in `$CREDENTIALS_DIRECTORY/NAME`). The secret is
 * returned to its one user and never logged; errors name the file, never its content.
 */
export interface SecretSpec {
  /** The config's value, if written there. */
  value?: string | undefined;
  /** The config's `*_file` key, if set: then the file must exist. */
  file?: string | undefined;
  /** The file name looked for in `$CREDENTIALS_DIRECTORY`. */
  credential: string;
  /** What the secret is, for error messages (`the webhook secret`). */
  what: string;
}

/** The secret, or undefined when none is configured anywhere. */
export function resolveSecret(spec: SecretSpec, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (spec.value !== undefined) return spec.value;
  if (spec.file !== undefined) {
    const found = readSecretFile(spec.file, spec.what);
    if (found === undefined) throw new ShuttleError('CONFIG_UNREADABLE', `${spec.what} file ${spec.file} does not exist`, { context: { path: spec.file, errno: 'ENOENT' } });
    return found;
  }
  const dir = env['CREDENTIALS_DIRECTORY'];
  if (dir === undefined || dir === '') return undefined;
  return readSecretFile(join(dir, spec.credential), spec.what);
}

function readSecretFile(path: string, what: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw new ShuttleError('CONFIG_UNREADABLE', `cannot read ${what} file ${path} (${errnoCode(error) ?? 'error'})`, { context: { path, errno: errnoCode(error) } });
  }
  // An editor's or `echo`'s final newline is not part of the secret.
  const secret = text.replace(/[\r\n]+$/, '');
  if (secret === '') throw new ShuttleError('CONFIG_INVALID', `${what} file ${path} is empty`, { context: { path } });
  return secret;
}
