import { ShuttleError } from '../errors.js';
import type { CaptureMetadata } from './metadata.js';
import type { WallClock } from '../time-zone.js';
import { baseName } from './pairing.js';
import { MAX_PATH_BYTES, MAX_SEGMENT_BYTES, splitShotName, truncateUtf8, utf8Bytes } from '../shot-names.js';

/** Where a file lands when the user sets no template: year folder, day folder, camera's own name. */
export const DEFAULT_NAME_TEMPLATE = '{YYYY}/{YYYY-MM-DD}/{name}';

/** An extension longer than this is not worth keeping whole when a name must be shortened. */
const MAX_KEPT_EXT_BYTES = 32;

/** Why a name was changed; stable strings that tests and logs can match on. */
export type RenameReason =
  | 'absolute-path'
  | 'empty-segment'
  | 'dot-segment'
  | 'empty-path'
  | 'invalid-unicode'
  | 'unicode-nfc'
  | 'control-character'
  | 'backslash'
  | 'fat-invalid-character'
  | 'trailing-dot-or-space'
  | 'empty-name'
  | 'windows-reserved-name'
  | 'reserved-name'
  | 'segment-too-long'
  | 'separator-in-value';

export interface Rename {
  from: string;
  to: string;
  reason: RenameReason;
}

export interface RenderedName {
  /** '/'-separated path relative to the destination root, safe on ext4, exFAT and FAT. */
  path: string;
  renamed: Rename[];
}

export const NAME_TOKENS = [
  'YYYY',
  'MM',
  'DD',
  'YYYY-MM-DD',
  'hh',
  'mm',
  'ss',
  'make',
  'model',
  'serial',
  'seq',
  'shot',
  'name',
  'stem',
  'ext',
  'job',
  'client',
  'session',
] as const;
export type NameToken = (typeof NAME_TOKENS)[number];
const TOKEN_SET: ReadonlySet<string> = new Set(NAME_TOKENS);

export interface NameFields {
  /** The file's name on the source, with extension (a path is reduced to its last segment). */
  name: string;
  /** Wall-clock capture time (CaptureMetadata.local). */
  date: WallClock;
  make?: string | undefined;
  model?: string | undefined;
  serial?: string | undefined;
  /** A number is zero-padded to 4 digits. */
  seq?: number | string | undefined;
  /** The shot's number in its shoot (job, client, session), kept in the journal across runs; zero-padded to 4 digits. */
  shot?: number | undefined;
  job?: string | undefined;
  client?: string | undefined;
  session?: string | undefined;
}

/** Whether a template names the shoot's shot number, which then has to be taken from the journal. */
export function templateUsesShot(template: string): boolean {
  return parseTemplate(template).some((p) => 'token' in p && p.token === 'shot');
}

/** Rendered for a token whose value is not known (a JPEG without Make, a job without a name). */
const MISSING_VALUE = 'unknown';

/** Fields for renderName from what readCaptureMetadata found and the source's name of the file. */
export function nameFieldsFrom(name: string, meta: CaptureMetadata, extra: { seq?: number | string; job?: string } = {}): NameFields {
  return { name, date: meta.local, make: meta.make, model: meta.model, serial: meta.serial, seq: extra.seq, job: extra.job };
}

type TemplatePart = { literal: string } | { token: NameToken };

/** Parses a template, rejecting unknown tokens and stray braces (CONFIG_INVALID, quoting them). */
export function parseTemplate(template: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  const re = /\{([^{}]*)\}|[{}]/g;
  let last = 0;
  for (let m = re.exec(template); m !== null; m = re.exec(template)) {
    if (m.index > last) parts.push({ literal: template.slice(last, m.index) });
    const token = m[1];
    if (token === undefined) {
      throw new ShuttleError('CONFIG_INVALID', `name template "${template}" has an unmatched "${m[0]}" at position ${m.index}`, {
        context: { template, position: m.index },
      });
    }
    if (!TOKEN_SET.has(token)) {
      throw new ShuttleError('CONFIG_INVALID', `name template "${template}" has unknown token "{${token}}" (known: ${NAME_TOKENS.map((t) => `{${t}}`).join(' ')})`, {
        context: { template, token: `{${token}}` },
      });
    }
    parts.push({ token: token as NameToken });
    last = re.lastIndex;
  }
  if (last < template.length) parts.push({ literal: template.slice(last) });
  return parts;
}

const pad = (n: number, width: number): string => String(Math.trunc(n)).padStart(width, '0');

function tokenValue(token: NameToken, f: NameFields): string | undefined {
  const name = baseName(f.name);
  switch (token) {
    case 'YYYY':
      return pad(f.date.year, 4);
    case 'MM':
      return pad(f.date.month, 2);
    case 'DD':
      return pad(f.date.day, 2);
    case 'YYYY-MM-DD':
      return `${pad(f.date.year, 4)}-${pad(f.date.month, 2)}-${pad(f.date.day, 2)}`;
    case 'hh':
      return pad(f.date.hour, 2);
    case 'mm':
      return pad(f.date.minute, 2);
    case 'ss':
      return pad(f.date.second, 2);
    case 'make':
      return f.make;
    case 'model':
      return f.model;
    case 'serial':
      return f.serial;
    case 'seq':
      return typeof f.seq === 'number' ? pad(f.seq, 4) : f.seq;
    case 'shot':
      return f.shot === undefined ? undefined : pad(f.shot, 4);
    case 'name':
      return name;
    case 'stem': {
      const dot = name.lastIndexOf('.');
      return dot <= 0 ? name : name.slice(0, dot);
    }
    case 'ext': {
      const dot = name.lastIndexOf('.');
      return dot <= 0 ? '' : name.slice(dot + 1);
    }
    case 'job':
      return f.job;
    case 'client':
      return f.client;
    case 'session':
      return f.session;
  }
}

/**
 * Renders a destination path from a template. A value never adds a folder level: '/' and '\' inside
 * it become '_'. The result then goes through sanitizePath, so whatever the camera or the template
 * says, the path is relative, portable and not one of Shuttle's own names. Every change is reported.
 */
export function renderName(template: string, fields: NameFields): RenderedName {
  const renamed: Rename[] = [];
  let out = '';
  for (const part of parseTemplate(template)) {
    if ('literal' in part) {
      out += part.literal;
      continue;
    }
    const raw = tokenValue(part.token, fields);
    const value = raw === undefined || raw === '' ? (part.token === 'ext' ? '' : MISSING_VALUE) : raw;
    const flat = value.replace(/[/\\]/g, '_');
    if (flat !== value) renamed.push({ from: value, to: flat, reason: 'separator-in-value' });
    out += flat;
  }
  const clean = sanitizePath(out);
  return { path: clean.path, renamed: [...renamed, ...clean.renamed] };
}

/** Shortens a name to `maxBytes`, keeping its extension (shot extension like `.CR2.xmp` included). */
function shortenKeepingExt(name: string, maxBytes: number): string {
  const { stem, ext } = splitShotName(name);
  const extBytes = utf8Bytes(ext);
  if (ext === '' || extBytes > MAX_KEPT_EXT_BYTES || extBytes >= maxBytes) return truncateUtf8(name, maxBytes);
  return truncateUtf8(stem, maxBytes - extBytes) + ext;
}

// A JS string can hold half a UTF-16 pair, which has no UTF-8 form; such names come from broken sources.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/g;
const FAT_INVALID = /[<>:"|?*]/g;
const TRAILING_DOTS_SPACES = /[. ]+$/;
const WINDOWS_DEVICE = /^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$/i;
const TMP_SUFFIX = /\.shuttle-tmp$/i;

type Rule = { reason: RenameReason; apply: (s: string) => string };

/** In order; the last ones run again after shortening since a cut can expose a trailing dot or space. */
const SEGMENT_RULES: readonly Rule[] = [
  { reason: 'invalid-unicode', apply: (s) => s.replace(LONE_SURROGATE, '\uFFFD') },
  { reason: 'unicode-nfc', apply: (s) => s.normalize('NFC') },
  { reason: 'control-character', apply: (s) => s.replace(CONTROL_CHARS, '_') },
  { reason: 'backslash', apply: (s) => s.replaceAll('\\', '_') },
  { reason: 'fat-invalid-character', apply: (s) => s.replace(FAT_INVALID, '_') },
  { reason: 'trailing-dot-or-space', apply: (s) => s.replace(TRAILING_DOTS_SPACES, '') },
  { reason: 'empty-name', apply: (s) => (s === '' ? '_' : s) },
  { reason: 'windows-reserved-name', apply: (s) => (WINDOWS_DEVICE.test(s) ? `_${s}` : s) },
  // A name Shuttle uses for its temp files would be taken for an unfinished copy and removed.
  { reason: 'reserved-name', apply: (s) => (TMP_SUFFIX.test(s) ? `${s}_` : s) },
  { reason: 'segment-too-long', apply: (s) => (utf8Bytes(s) > MAX_SEGMENT_BYTES ? shortenKeepingExt(s, MAX_SEGMENT_BYTES) : s) },
];

/**
 * Makes one file or folder name safe on ext4, exFAT and FAT, and unable to be mistaken for Shuttle's
 * own files. Never throws; the result is never empty, '.', or '..'. Applying it twice changes nothing.
 */
export function sanitizeSegment(segment: string): RenderedName {
  const renamed: Rename[] = [];
  let s = segment;
  // Shortening can leave a trailing dot/space or a reserved ending; a second pass settles it, a third is a guard.
  for (let pass = 0; pass < 3; pass++) {
    const before = s;
    for (const rule of SEGMENT_RULES) {
      const next = rule.apply(s);
      if (next !== s) {
        renamed.push({ from: s, to: next, reason: rule.reason });
        s = next;
      }
    }
    if (s === before) break;
  }
  return { path: s, renamed };
}

/**
 * Never a folder or file name at any depth: the ASC MHL reference tool ignores these names wherever they
 * are (its patterns are unanchored) and takes a nested `ascmhl` folder for a child history.
 */
const RESERVED_SEGMENTS = new Set(['ascmhl', '.shuttle']);

/**
 * The folder at a destination's root where the daemon keeps its per-card reports (src/daemon/card-report.ts).
 * Reserved at the root only, so that no template puts a copy there; manifests ignore it.
 */
export const REPORTS_FOLDER = 'shuttle-reports';

/**
 * Makes a relative destination path safe: no absolute path, no empty, '.' or '..' segments, every
 * segment passed through sanitizeSegment, no segment named like the manifest folder (`ascmhl`) or
 * Shuttle's state folder (`.shuttle`), and no first segment named like the reports folder. Throws NAME_INVALID only when the path exceeds
 * MAX_PATH_BYTES, which no single file name can cause.
 */
export function sanitizePath(relPath: string): RenderedName {
  const renamed: Rename[] = [];
  let p = relPath;
  if (p.startsWith('/')) {
    const rel = p.replace(/^\/+/, '');
    renamed.push({ from: p, to: rel, reason: 'absolute-path' });
    p = rel;
  }
  const segments: string[] = [];
  for (const raw of p.split('/')) {
    if (raw === '') {
      if (p !== '') renamed.push({ from: raw, to: '', reason: 'empty-segment' });
      continue;
    }
    if (raw === '.') {
      renamed.push({ from: raw, to: '', reason: 'dot-segment' });
      continue;
    }
    if (raw === '..') {
      renamed.push({ from: raw, to: '_', reason: 'dot-segment' });
      segments.push('_');
      continue;
    }
    const clean = sanitizeSegment(raw);
    renamed.push(...clean.renamed);
    segments.push(clean.path);
  }
  if (segments.length === 0) {
    renamed.push({ from: relPath, to: '_', reason: 'empty-path' });
    segments.push('_');
  }
  for (const [i, seg] of segments.entries()) {
    if (!RESERVED_SEGMENTS.has(seg.toLowerCase()) && !(i === 0 && seg.toLowerCase() === REPORTS_FOLDER)) continue;
    const to = `_${seg}`;
    renamed.push({ from: seg, to, reason: 'reserved-name' });
    segments[i] = to;
  }
  const path = segments.join('/');
  if (utf8Bytes(path) > MAX_PATH_BYTES) {
    throw new ShuttleError('NAME_INVALID', `destination path is ${utf8Bytes(path)} bytes, over the ${MAX_PATH_BYTES}-byte limit`, {
      context: { path: path.slice(0, 200), bytes: utf8Bytes(path) },
    });
  }
  return { path, renamed };
}
