import { posix } from 'node:path';
import { ShuttleError } from '../errors.js';
import { splitShotName, withCollisionSuffix } from '../shot-names.js';
import type { QueueTarget } from '../store/upload-queue.js';
import { wallClockAt } from '../time-zone.js';

/** Where uploads land unless configured otherwise: one folder per station and shooting day. */
export const DEFAULT_KEY_TEMPLATE = '{station}/{YYYY}/{YYYY-MM-DD}/{name}';

/** S3's limit on a key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;

export interface S3Location {
  bucket: string;
  /** Without leading or trailing slash; '' for the bucket root. */
  prefix: string;
}

export interface KeyVars {
  station: string;
  /** A file name: any '/' in it is replaced, so it can never add folders. */
  name: string;
  /** The day the file belongs to (capture time, or ingest time); rendered in local time unless `utc`. */
  date: Date;
  /** A relative path whose '/' are kept as folders (each segment sanitized, '.' and '..' neutralised). */
  path?: string;
  /** More tokens ({camera}, {card}, {project}, ...), sanitized like `name`. */
  extra?: Readonly<Record<string, string>>;
}

export interface RenderKeyOptions {
  prefix?: string;
  utc?: boolean;
}

// Letters and digits of any script plus the punctuation AWS lists as safe in keys; everything else
// (slashes, spaces, controls, '%', '#', '?', '\\', '{', ...) becomes '_', so a key needs no escaping anywhere.
const UNSAFE_KEY_CHAR = /[^\p{L}\p{N}\-_.!*'()]/gu;

/** One path segment made safe for S3: never empty, never '.' or '..', no separators or special characters. */
export function sanitizeKeySegment(value: string): string {
  const cleaned = value.normalize('NFC').replace(UNSAFE_KEY_CHAR, '_');
  if (cleaned === '') return '_';
  if (/^\.+$/.test(cleaned)) return cleaned.replace(/\./g, '_');
  return cleaned;
}

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

function dateTokens(date: Date, utc: boolean): Record<string, string> {
  if (Number.isNaN(date.getTime())) throw new ShuttleError('NAME_INVALID', 'cannot build an S3 key from an invalid date');
  const y = utc ? date.getUTCFullYear() : date.getFullYear();
  const mo = (utc ? date.getUTCMonth() : date.getMonth()) + 1;
  const d = utc ? date.getUTCDate() : date.getDate();
  const h = utc ? date.getUTCHours() : date.getHours();
  const mi = utc ? date.getUTCMinutes() : date.getMinutes();
  const s = utc ? date.getUTCSeconds() : date.getSeconds();
  return {
    YYYY: pad(y, 4),
    MM: pad(mo),
    DD: pad(d),
    'YYYY-MM-DD': `${pad(y, 4)}-${pad(mo)}-${pad(d)}`,
    hh: pad(h),
    mm: pad(mi),
    ss: pad(s),
  };
}

function requireValue(token: string, value: string): string {
  if (value.trim() === '') {
    throw new ShuttleError('NAME_INVALID', `S3 key token {${token}} is empty`, { context: { token } });
  }
  return value;
}

function validateKey(key: string, template: string): string {
  const segments = key.split('/');
  if (key === '' || segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw new ShuttleError('NAME_INVALID', `S3 key ${JSON.stringify(key)} has an empty, '.' or '..' segment`, { context: { key, template } });
  }
  if (/[\u0000-\u001f\u007f]/.test(key)) {
    throw new ShuttleError('NAME_INVALID', `S3 key ${JSON.stringify(key)} contains control characters`, { context: { key, template } });
  }
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > MAX_KEY_BYTES) {
    throw new ShuttleError('NAME_INVALID', `S3 key is ${bytes} bytes, over the ${MAX_KEY_BYTES}-byte limit`, { context: { key, template } });
  }
  return key;
}

/**
 * Expands `{token}`s in a key template. Token values are sanitized; literal template text is kept as
 * written (it is configuration, checked when the key is validated). Unknown tokens are an error, so
 * a typo cannot silently put files in a folder named "{statoin}".
 */
export function renderKey(template: string, vars: KeyVars, options: RenderKeyOptions = {}): string {
  const tokens: Record<string, () => string> = {};
  for (const [k, v] of Object.entries(vars.extra ?? {})) tokens[k] = () => sanitizeKeySegment(requireValue(k, v));
  for (const [k, v] of Object.entries(dateTokens(vars.date, options.utc ?? false))) tokens[k] = () => v;
  tokens['station'] = () => sanitizeKeySegment(requireValue('station', vars.station));
  tokens['name'] = () => sanitizeKeySegment(requireValue('name', vars.name));
  tokens['path'] = () => {
    const raw = requireValue('path', vars.path ?? '');
    return raw
      .split(/[/\\]+/)
      .filter((s) => s !== '')
      .map(sanitizeKeySegment)
      .join('/');
  };
  const body = template.replace(/\{([^{}]+)\}/g, (_match, token: string) => {
    const make = tokens[token];
    if (make === undefined) {
      throw new ShuttleError('CONFIG_INVALID', `unknown token {${token}} in S3 key template ${JSON.stringify(template)}`, {
        context: { template, token, known: Object.keys(tokens).sort() },
      });
    }
    return make();
  });
  if (/[{}]/.test(body)) {
    throw new ShuttleError('CONFIG_INVALID', `unbalanced braces in S3 key template ${JSON.stringify(template)}`, { context: { template } });
  }
  const prefix = (options.prefix ?? '').replace(/^\/+|\/+$/g, '');
  return validateKey(prefix === '' ? body : `${prefix}/${body}`, template);
}

/** The n-th alternative to a taken key (`a/IMG_0001_1.JPG`), or undefined when it would be over S3's limit. */
export function keyAlternative(key: string, n: number): string | undefined {
  const candidate = withCollisionSuffix(key, n);
  return Buffer.byteLength(candidate, 'utf8') > MAX_KEY_BYTES ? undefined : candidate;
}

/**
 * Whether the queue tries `earlier` before `key` when it looks for a free key: `key` is an alternative
 * (`_n`) of some base key, and `earlier` is that base or one of its alternatives below n. A file queued
 * under `key` would have shared `earlier`'s row had its SHA-256 been known then.
 */
export function keyPrecedes(earlier: string, key: string): boolean {
  const slash = key.lastIndexOf('/');
  const { stem, ext } = splitShotName(key.slice(slash + 1));
  const suffix = /_([1-9][0-9]{0,3})$/.exec(stem);
  if (suffix === null) return false;
  const n = Number(suffix[1]);
  const base = `${key.slice(0, slash + 1)}${stem.slice(0, suffix.index)}${ext}`;
  // A name of its own that merely ends in digits (IMG_0001.JPG) is no alternative: only a round trip says so.
  if (keyAlternative(base, n) !== key) return false;
  if (earlier === base) return true;
  for (let m = 1; m < n; m++) if (keyAlternative(base, m) === earlier) return true;
  return false;
}

/**
 * A date whose UTC fields are the wall clock of `epochMs` in `timeZone`: rendered with `utc: true`, the
 * key's day is the photographer's day where the card was shot, whatever zone this machine runs in.
 */
function dayDate(epochMs: number, timeZone: string | undefined): Date {
  const w = wallClockAt(epochMs, timeZone);
  const d = new Date(0);
  d.setUTCFullYear(w.year, w.month - 1, w.day);
  d.setUTCHours(w.hour, w.minute, w.second, 0);
  return d;
}

export interface QueueTargetOptions {
  bucket: string;
  /** Without leading or trailing slash; '' for the bucket root. */
  prefix: string;
  keyTemplate: string;
  station: string;
  /** Zone whose calendar day names the folders ({YYYY-MM-DD}); the system's when absent. */
  timeZone?: string | undefined;
  /** Extensions, earliest first; '*' stands for the unlisted ones. */
  priority: readonly string[];
}

/** The upload queue's target for one bucket and prefix, naming each copy's object by the key template. */
export function queueTarget(options: QueueTargetOptions): QueueTarget {
  const { bucket, prefix, keyTemplate, station, timeZone, priority } = options;
  return {
    bucket,
    prefix,
    keyFor: (copy) => renderKey(keyTemplate, { station, name: posix.basename(copy.destPath), path: copy.destPath, date: dayDate(copy.mtimeMs, timeZone) }, { prefix, utc: true }),
    alternativeKey: keyAlternative,
    priority,
  };
}

// Lenient on purpose (S3-compatible servers accept more than AWS's DNS-style names), strict on what
// would break addressing: length, slashes, leading/trailing punctuation.
const BUCKET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$/;

/** `s3://bucket` or `s3://bucket/some/prefix/` → bucket and prefix (kept as written, slashes trimmed). */
export function parseS3Url(url: string): S3Location {
  const match = /^s3:\/\/([^/]+)(?:\/(.*))?$/i.exec(url.trim());
  if (match === null) {
    throw new ShuttleError('CONFIG_INVALID', `S3 destination ${JSON.stringify(url)} is not of the form s3://bucket/prefix`, { context: { url } });
  }
  const bucket = match[1] ?? '';
  if (!BUCKET_NAME.test(bucket)) {
    throw new ShuttleError('CONFIG_INVALID', `S3 bucket name ${JSON.stringify(bucket)} is invalid (3–63 letters, digits, '.', '-', '_')`, {
      context: { url, bucket },
    });
  }
  const prefix = (match[2] ?? '').replace(/^\/+|\/+$/g, '');
  if (prefix !== '') {
    try {
      validateKey(prefix, url);
    } catch (error) {
      throw new ShuttleError('CONFIG_INVALID', `S3 destination ${JSON.stringify(url)} has an invalid prefix`, { context: { url, prefix }, cause: error });
    }
  }
  return { bucket, prefix };
}
