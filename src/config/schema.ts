import { hostname } from 'node:os';
import { isAbsolute, normalize } from 'node:path';
import * as z from 'zod';

/**
 * The one description of Shuttle's configuration. Keys are snake_case as written in TOML, in `SHUTTLE_*`
 * variables and in programmatic overrides; the resolved `Config` has the same shape in camelCase.
 * Every table is strict, so a misspelt key is an error instead of a silently ignored setting. The
 * environment variables and their documentation are derived from this schema (see env.ts), so adding a
 * section means adding one line to `configSchema` below.
 */

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const MANIFEST_HASHES = ['xxh128', 'xxh64', 'md5'] as const;
export const DEFAULT_TEMPLATE = '{YYYY}/{YYYY-MM-DD}/{name}';
const MAX_RETRIES = 100;

export type LogLevel = (typeof LOG_LEVELS)[number];
export type ManifestHash = (typeof MANIFEST_HASHES)[number];

type SnakeToCamel<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<SnakeToCamel<Tail>>}` : S;
type CamelKeys<T> = { [K in keyof T as K extends string ? SnakeToCamel<K> : K]: T[K] };

function camelKeys<T extends object>(table: T): CamelKeys<T> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(table)) {
    out[key.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase())] = value;
  }
  return out as CamelKeys<T>;
}

/** A TOML table: strict (unknown keys rejected), resolved to camelCase keys. */
function table<Shape extends z.ZodRawShape>(shape: Shape) {
  return z.strictObject(shape).transform(camelKeys);
}

// Refinement messages are predicates: the error reads `<key>: "<value>" <message>`.

function isKnownTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/** The canonical spelling, so `europe/berlin` and `Europe/Berlin` resolve to the same setting. */
function canonicalTimeZone(name: string): string {
  return new Intl.DateTimeFormat('en', { timeZone: name }).resolvedOptions().timeZone;
}

export function systemTimeZone(): string {
  return new Intl.DateTimeFormat().resolvedOptions().timeZone;
}

/** Removes a trailing separator so `/a/` and `/a` are one destination. */
function normalizeDir(p: string): string {
  const n = normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

const absolutePath = z
  .string()
  .refine((p) => isAbsolute(p), { message: 'is not an absolute path' })
  .transform(normalizeDir);

const timeZone = z.string().refine(isKnownTimeZone, { message: 'is not a known time zone' }).transform(canonicalTimeZone);

function isRelativeTemplate(t: string): boolean {
  return t.length > 0 && !t.startsWith('/') && !t.split('/').includes('..');
}

/**
 * A name pattern for include/exclude: matched against a file's name, case-insensitively. A bare
 * extension (`cr3`, `.cr3`) is short for `*.cr3`.
 */
const namePattern = z
  .string()
  .refine((p) => p.trim().length > 0 && !p.includes('/'), { message: 'is not a file name pattern (like "*.cr3" or "cr3")' })
  .transform((p) => {
    const t = p.trim().toLowerCase();
    if (/[*?[]/.test(t)) return t;
    return `*.${t.replace(/^\.+/, '')}`;
  });

const retries = z.int().min(0).max(MAX_RETRIES);

const manifestHashes = z
  .array(z.enum(MANIFEST_HASHES))
  .min(1)
  .refine((l) => new Set(l).size === l.length, { message: 'names a hash twice' });

export const ingestSchema = table({
  template: z
    .string()
    .refine(isRelativeTemplate, { message: 'is not a relative path template (no leading "/", no ".." segments)' })
    .default(DEFAULT_TEMPLATE)
    .describe('where copies go below each destination, e.g. {YYYY}/{YYYY-MM-DD}/{name}'),
  manifest_hashes: manifestHashes.default(['xxh128']).describe(`hashes written to the ASC MHL manifest (${MANIFEST_HASHES.join(', ')})`),
  job: z.string().default('').describe('job or project name recorded with each ingest'),
  time_zone: timeZone.default(systemTimeZone).describe('IANA time zone for camera clocks that carry no zone (default: this system\'s)'),
  include: z.array(namePattern).optional().describe('copy only files whose names match one of these patterns (e.g. *.cr3, jpg)'),
  exclude: z.array(namePattern).default([]).describe('never copy files whose names match one of these patterns'),
  verify_retries: retries.default(2).describe('copies retried after a failed read-back verification'),
  change_retries: retries.default(2).describe('reads retried when a source file changes while it is read'),
});

export const destinationSchema = table({
  path: absolutePath.describe('absolute path of the destination library'),
  name: z.string().min(1).optional().describe('name in logs and status (default: the path)'),
  require_volume_uuid: z.string().min(1).optional().describe('refuse the destination unless its filesystem has this UUID'),
  min_free_bytes: z.int().min(0).optional().describe('keep at least this many bytes free'),
}).transform((d) => ({ ...d, name: d.name ?? d.path }));

const destinations = z.array(destinationSchema).superRefine((list, ctx) => {
  const seen = new Set<string>();
  list.forEach((d, i) => {
    if (seen.has(d.path)) ctx.addIssue({ code: 'custom', path: [i, 'path'], message: 'is listed twice', input: d.path });
    seen.add(d.path);
  });
});

/** Later sections (`upload`, `daemon`, `cameras`) are one line each here: `name: table({...}).prefault({})`. */
export const configSchema = table({
  station: z.string().min(1).default(() => hostname()).describe('name of this station in manifests and logs (default: the hostname)'),
  state_dir: absolutePath.optional().describe('where the journal and state live'),
  log_level: z.enum(LOG_LEVELS).default('info').describe(`log level (${LOG_LEVELS.join(', ')})`),
  ingest: ingestSchema.prefault({}),
  destinations: destinations.default([]).describe('destination libraries; every file is copied to each'),
});

type DeepReadonly<T> = T extends readonly (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** What a config file, the environment or a caller may give: every key optional, snake_case. */
export type ConfigInput = z.input<typeof configSchema>;
/** The resolved configuration: every default applied, camelCase, deeply frozen. */
export type Config = DeepReadonly<z.output<typeof configSchema>>;
export type IngestConfig = Config['ingest'];
export type DestinationConfig = Config['destinations'][number];
