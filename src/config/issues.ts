import type * as z from 'zod';
import { keyPath, shapeAt } from './shape.js';

/** One bad setting, worded for the person who wrote it: the key path, the value, what is wrong with it. */
export interface ConfigProblem {
  path: readonly PropertyKey[];
  /** `ingest.time_zone` */
  key: string;
  value: unknown;
  /** `"Mars/Olympus" is not a known time zone` */
  problem: string;
}

const MAX_QUOTE = 120;

/** A value as it would be written: strings in quotes, lists and tables as JSON, long values cut. */
export function quote(value: unknown): string {
  let s: string;
  if (value === undefined) s = 'nothing';
  else if (typeof value === 'bigint') s = value.toString();
  else if (value instanceof Date) s = Number.isNaN(value.getTime()) ? String(value) : value.toISOString();
  else {
    try {
      s = JSON.stringify(value) ?? String(value);
    } catch {
      s = String(value);
    }
  }
  return s.length > MAX_QUOTE ? `${s.slice(0, MAX_QUOTE)}…` : s;
}

const TYPE_WORDS: Record<string, string> = {
  integer: 'an integer',
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  array: 'a list',
  object: 'a table',
  'boolean-or-list': 'true, false or a list',
};

function expectedWords(path: readonly PropertyKey[], fallback: string): string {
  const node = shapeAt(path);
  const type = node?.type ?? node?.format ?? fallback;
  return TYPE_WORDS[type] ?? type;
}

function knownKeys(path: readonly PropertyKey[]): string {
  const keys = Object.keys(shapeAt(path)?.properties ?? {});
  return keys.length > 0 ? ` (known keys: ${keys.join(', ')})` : '';
}

const REDACTED = '[redacted]';
/** Keys whose values are secrets even where the schema does not know them (a misspelt `pasword`). */
const SECRET_KEY = /pass|pasw|pwd|secret|token/i;

/** A URL as it may be shown: its password masked. Undefined when it does not parse (then nothing of it is shown). */
export function maskUrlPassword(url: string): string | undefined {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return undefined;
  }
}

/** The value at `path` as an error may quote it: secrets never, URLs without their password. */
export function redactedInput(path: readonly PropertyKey[], value: unknown): unknown {
  if (value === undefined) return value;
  const format = shapeAt(path)?.format;
  const last = path[path.length - 1];
  if (format === 'secret' || (typeof last === 'string' && SECRET_KEY.test(last))) return REDACTED;
  if (format === 'credential-url') return typeof value === 'string' ? (maskUrlPassword(value) ?? REDACTED) : REDACTED;
  return value;
}

function problemOf(issue: z.core.$ZodIssue): string {
  const v = quote(issue.input);
  switch (issue.code) {
    case 'invalid_type':
      return issue.input === undefined ? 'is required' : `${v} is not ${expectedWords(issue.path, issue.expected)}`;
    case 'invalid_union':
      return `${v} is not ${expectedWords(issue.path, 'one of the accepted forms')}`;
    case 'invalid_value':
      return `${v} is not one of ${issue.values.map((x) => quote(x)).join(', ')}`;
    case 'too_small':
      if (issue.origin === 'array' || issue.origin === 'string') {
        return Number(issue.minimum) <= 1 ? `${v} is empty` : `${v} is shorter than ${issue.minimum}`;
      }
      return `${v} is less than ${issue.minimum}`;
    case 'too_big':
      if (issue.origin === 'array' || issue.origin === 'string') return `${v} is longer than ${issue.maximum}`;
      return `${v} is more than ${issue.maximum}`;
    case 'custom':
      return `${v} ${issue.message}`;
    default:
      return `${v}: ${issue.message}`;
  }
}

/** Every problem in a failed parse (made with `reportInput: true`), unknown keys one by one. */
export function problemsOf(error: z.ZodError): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  for (const issue of error.issues) {
    if (issue.code === 'unrecognized_keys') {
      const holder = issue.input !== null && typeof issue.input === 'object' ? (issue.input as Record<string, unknown>) : {};
      for (const k of issue.keys) {
        const path = [...issue.path, k];
        out.push({ path, key: keyPath(path), value: redactedInput(path, holder[k]), problem: `unknown key "${k}"${knownKeys(issue.path)}` });
      }
      continue;
    }
    const input = redactedInput(issue.path, issue.input);
    out.push({ path: issue.path, key: keyPath(issue.path), value: input, problem: problemOf({ ...issue, input } as z.core.$ZodIssue) });
  }
  return out;
}
