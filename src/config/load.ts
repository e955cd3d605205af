import { readFileSync } from 'node:fs';
import { normalize } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { ShuttleError, errnoCode } from '../errors.js';
import { envOverrides } from './env.js';
import { problemsOf, type ConfigProblem } from './issues.js';
import { configSchema, type Config, type ConfigInput } from './schema.js';

/**
 * Configuration is resolved once, in layers: the file, then `SHUTTLE_*` variables, then programmatic
 * overrides (CLI flags). Each layer is validated on its own so that an error names where the bad value
 * came from; the merged input is then normalised into one deeply frozen `Config`.
 */

export interface LoadConfigOptions {
  /** A TOML file; when given it must exist. */
  file?: string | undefined;
  /** Defaults to `process.env`. */
  env?: NodeJS.ProcessEnv | undefined;
  /** Last word (CLI flags). Its destinations are added to the configured ones, not replacing them. */
  overrides?: ConfigInput | undefined;
}

interface Origin {
  /** How the message names the origin: a file path, `$SHUTTLE_X`, `overrides`. */
  where: string;
  file?: string;
  env?: string;
}

type Table = Record<string, unknown>;

function isTable(v: unknown): v is Table {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null; // smol-toml tables have a null prototype
}

function configError(problems: readonly ConfigProblem[], originOf: (p: ConfigProblem) => Origin): ShuttleError {
  const lines = problems.map((p) => `config ${originOf(p).where}: ${p.key}: ${p.problem}`);
  const first = problems[0];
  if (first === undefined) return new ShuttleError('INTERNAL', 'config rejected without a reason');
  const o = originOf(first);
  const context: Record<string, unknown> = { file: o.file, key: first.key, value: first.value, source: o.where };
  if (o.env !== undefined) context['env'] = o.env;
  if (problems.length > 1) {
    context['problems'] = problems.map((p) => ({ key: p.key, value: p.value, problem: p.problem, source: originOf(p).where }));
  }
  return new ShuttleError('CONFIG_INVALID', lines.join('\n'), { context });
}

function validate(input: unknown, originOf: (p: ConfigProblem) => Origin): void {
  const result = configSchema.safeParse(input, { reportInput: true, jitless: true });
  if (!result.success) throw configError(problemsOf(result.error), originOf);
}

/** Deep-freezes in place: a resolved config cannot be changed by any holder of it. */
function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * The one normaliser: validates `input` (snake_case, every key optional), applies defaults and returns
 * the frozen camelCase `Config`. Throws CONFIG_INVALID naming the key path and quoting the value.
 */
export function normalizeConfig(input: ConfigInput, where = 'input'): Config {
  const result = configSchema.safeParse(input ?? {}, { reportInput: true, jitless: true });
  if (!result.success) throw configError(problemsOf(result.error), () => ({ where }));
  return deepFreeze(result.data) as Config;
}

/** Reads and parses a TOML config file (sync: config is read once, at startup). */
export function readConfigFile(file: string): Table {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const errno = errnoCode(err);
    throw new ShuttleError('CONFIG_UNREADABLE', `config ${file}: cannot read it (${errno ?? String(err)})`, { cause: err, context: { file, errno } });
  }
  try {
    return parseToml(text) as Table;
  } catch (err) {
    if (err instanceof TomlError) {
      const reason = (err.message.split('\n')[0] ?? '').replace(/^Invalid TOML document:\s*/, '');
      throw new ShuttleError('CONFIG_INVALID', `config ${file}: TOML syntax error at line ${err.line}, column ${err.column}: ${reason}`, {
        cause: err,
        context: { file, line: err.line, column: err.column, excerpt: err.codeblock },
      });
    }
    throw new ShuttleError('CONFIG_INVALID', `config ${file}: cannot parse it: ${String(err)}`, { cause: err, context: { file } });
  }
}

function pathKey(entry: unknown): string | undefined {
  if (!isTable(entry) || typeof entry['path'] !== 'string') return undefined;
  const n = normalize(entry['path']);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/**
 * Destinations merge by path: an entry for a path already listed refines that entry (so `--dest /a`
 * keeps `/a`'s configured options). `replace` keeps only the paths the newer layer lists (the
 * environment variable lists every destination); `add` appends (CLI `--dest`).
 */
function mergeDestinations(base: unknown, over: unknown, mode: 'replace' | 'add'): unknown {
  if (!Array.isArray(over)) return over ?? base;
  const older = Array.isArray(base) ? base : [];
  const result: unknown[] = mode === 'add' ? [...older] : [];
  for (const entry of over) {
    const key = pathKey(entry);
    const inResult = result.findIndex((r) => key !== undefined && pathKey(r) === key);
    const previous = older.find((r) => key !== undefined && pathKey(r) === key);
    if (inResult >= 0) result[inResult] = { ...(result[inResult] as Table), ...(entry as Table) };
    else if (isTable(previous) && isTable(entry)) result.push({ ...previous, ...entry });
    else result.push(entry);
  }
  return result;
}

function mergeLayer(base: Table, over: Table, destinationMode: 'replace' | 'add', top = true): Table {
  const out: Table = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    if (top && key === 'destinations') out[key] = mergeDestinations(base[key], value, destinationMode);
    else if (isTable(out[key]) && isTable(value)) out[key] = mergeLayer(out[key], value, destinationMode, false);
    else out[key] = value;
  }
  return out;
}

/**
 * File, then environment, then overrides, each validated where it stands, merged and normalised.
 * A missing or unreadable explicit file is CONFIG_UNREADABLE; bad values are CONFIG_INVALID.
 */
export function loadConfig(options: LoadConfigOptions): Config {
  let merged: Table = {};

  if (options.file !== undefined) {
    const file = options.file;
    const fromFile = readConfigFile(file);
    validate(fromFile, () => ({ where: file, file }));
    merged = mergeLayer(merged, fromFile, 'replace');
  }

  const env = envOverrides(options.env ?? process.env);
  validate(env.input, (p) => {
    const name = env.variableFor(p.path);
    return name === undefined ? { where: 'environment' } : { where: `$${name}`, env: name };
  });
  merged = mergeLayer(merged, env.input, 'replace');

  if (options.overrides !== undefined) {
    if (!isTable(options.overrides)) throw new ShuttleError('CONFIG_INVALID', 'config overrides: not a table', { context: { value: options.overrides } });
    validate(options.overrides, () => ({ where: 'overrides' }));
    merged = mergeLayer(merged, options.overrides, 'add');
  }

  return normalizeConfig(merged as ConfigInput, options.file ?? 'config');
}
