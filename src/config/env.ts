import { configShape, type ShapeNode } from './shape.js';

/**
 * Environment overrides, derived from the schema: every key has a `SHUTTLE_<KEY>` variable, nested keys
 * joined with `_` and upper-cased (`ingest.time_zone` → `SHUTTLE_INGEST_TIME_ZONE`). Values are typed
 * by the schema: integers parsed, lists comma-separated, destinations colon-separated paths. A value that
 * does not parse is passed on as the raw string, so validation rejects it quoting exactly what was set.
 */

export const ENV_PREFIX = 'SHUTTLE_';

export interface EnvVariable {
  name: string;
  /** The config key it sets; absent for variables that are not config keys. */
  key?: string;
  /** How the value is written: `string`, `integer`, `one of: a, b`, `comma-separated list`, ... */
  format: string;
  description: string;
}

interface EnvBinding extends EnvVariable {
  path: readonly string[];
  parse(raw: string): unknown;
}

/** Variables read elsewhere (state dir and lock resolution), documented with the config ones. */
const OTHER_VARIABLES: readonly EnvVariable[] = [
  {
    name: 'SHUTTLE_LOCK_DIR',
    format: 'path',
    description: 'folder for source locks shared by the daemon and CLI (default: /run/shuttle/locks if writable, else a folder in the temp dir)',
  },
  { name: 'STATE_DIRECTORY', format: 'colon-separated paths', description: 'set by systemd (StateDirectory=); the first path is the state dir unless configured otherwise' },
  { name: 'XDG_STATE_HOME', format: 'path', description: 'the state dir is $XDG_STATE_HOME/shuttle when nothing else sets it (default: ~/.local/state/shuttle)' },
];

function parseScalar(node: ShapeNode, raw: string): unknown {
  const t = raw.trim();
  switch (node.type) {
    case 'integer':
      return /^[+-]?\d+$/.test(t) ? Number(t) : raw;
    case 'number':
      return t !== '' && Number.isFinite(Number(t)) ? Number(t) : raw;
    case 'boolean':
      if (/^(true|1|yes|on)$/i.test(t)) return true;
      if (/^(false|0|no|off)$/i.test(t)) return false;
      return raw;
    default:
      return raw;
  }
}

function scalarFormat(node: ShapeNode): string {
  if (node.enum) return `one of: ${node.enum.map(String).join(', ')}`;
  return node.type ?? 'string';
}

const SCALAR_TYPES = new Set(['string', 'integer', 'number', 'boolean']);

function splitList(raw: string, separator: string): string[] {
  return raw
    .split(separator)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function bindingsUnder(node: ShapeNode, path: readonly string[], out: EnvBinding[]): void {
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    const p = [...path, key];
    const base = { name: ENV_PREFIX + p.join('_').toUpperCase(), key: p.join('.'), path: p, description: child.description ?? '' };
    if (child.type === 'object') {
      bindingsUnder(child, p, out);
    } else if (child.format === 'boolean-or-list') {
      out.push({
        ...base,
        format: 'true, false or comma-separated list',
        parse: (raw) => {
          const flag = parseScalar({ type: 'boolean' }, raw);
          return typeof flag === 'boolean' ? flag : splitList(raw, ',');
        },
      });
    } else if (SCALAR_TYPES.has(child.type ?? '')) {
      out.push({ ...base, format: scalarFormat(child), parse: (raw) => parseScalar(child, raw) });
    } else if (child.type === 'array' && child.items?.format === 'absolute-path') {
      // Lists of paths are written like PATH: a comma is a legal character in a folder name.
      const items = child.items;
      out.push({ ...base, format: 'colon-separated paths', parse: (raw) => splitList(raw, ':').map((s) => parseScalar(items, s)) });
    } else if (child.type === 'array' && child.items !== undefined && SCALAR_TYPES.has(child.items.type ?? '')) {
      const items = child.items;
      out.push({
        ...base,
        format: `comma-separated list${items.enum ? ` of: ${items.enum.map(String).join(', ')}` : ''}`,
        parse: (raw) => splitList(raw, ',').map((s) => parseScalar(items, s)),
      });
    } else if (child.type === 'array' && child.items?.type === 'object' && child.items.required?.includes('path')) {
      // A list of tables keyed by path (destinations): the variable lists the paths, other keys keep defaults.
      out.push({ ...base, format: 'colon-separated paths', parse: (raw) => splitList(raw, ':').map((s) => ({ path: s })) });
    }
  }
}

let cached: readonly EnvBinding[] | undefined;

function bindings(): readonly EnvBinding[] {
  if (cached === undefined) {
    const out: EnvBinding[] = [];
    bindingsUnder(configShape(), [], out);
    cached = out;
  }
  return cached;
}

/** Every environment variable Shuttle reads, with its format and meaning, for the README and `--help`. */
export function configEnvVariables(): EnvVariable[] {
  return [...bindings().map(({ name, key, format, description }) => ({ name, key, format, description })), ...OTHER_VARIABLES.map((v) => ({ ...v }))];
}

/** The variables as indented help text, one per line: name, format, meaning. */
export function envVariablesHelp(indent = '  '): string {
  const vars = configEnvVariables();
  const width = Math.max(...vars.map((v) => v.name.length));
  return vars.map((v) => `${indent}${v.name.padEnd(width)}  ${v.description} [${v.format}]`).join('\n');
}

/** `SHUTTLE_*` variables that are set but mean nothing to Shuttle (typos); the caller may warn about them. */
export function unknownEnvVariables(env: NodeJS.ProcessEnv): string[] {
  const known = new Set(configEnvVariables().map((v) => v.name));
  return Object.keys(env)
    .filter((name) => name.startsWith(ENV_PREFIX) && !known.has(name))
    .sort();
}

export interface EnvOverrides {
  /** Config input built from the variables that are set. */
  input: Record<string, unknown>;
  /** The variable that set the value at a key path (or at a parent of it), for error messages. */
  variableFor(path: readonly PropertyKey[]): string | undefined;
}

export function envOverrides(env: NodeJS.ProcessEnv): EnvOverrides {
  const input: Record<string, unknown> = {};
  // Most runs set none: the bindings walk the whole config schema, which costs start-up time for nothing.
  if (!Object.keys(env).some((name) => name.startsWith(ENV_PREFIX))) return { input, variableFor: () => undefined };
  const used: EnvBinding[] = [];
  for (const b of bindings()) {
    const raw = env[b.name];
    if (raw === undefined) continue;
    used.push(b);
    let holder = input;
    for (const part of b.path.slice(0, -1)) {
      const next = (holder[part] ??= {}) as Record<string, unknown>;
      holder = next;
    }
    holder[b.path[b.path.length - 1] as string] = b.parse(raw);
  }
  return {
    input,
    variableFor: (path) => used.find((b) => b.path.every((part, i) => String(path[i]) === part))?.name,
  };
}
