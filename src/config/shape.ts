import * as z from 'zod';
import { configSchema } from './schema.js';

/**
 * The input side of the config schema as JSON Schema: a stable, documented view of the keys and their
 * types, used to derive environment variables and to word errors ("is not an integer", "known keys: ...")
 * without reaching into zod's internals.
 */
export interface ShapeNode {
  type?: string;
  format?: string;
  enum?: readonly unknown[];
  description?: string;
  properties?: Record<string, ShapeNode>;
  required?: readonly string[];
  items?: ShapeNode;
}

let cached: ShapeNode | undefined;

export function configShape(): ShapeNode {
  cached ??= z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as ShapeNode;
  return cached;
}

/** The node describing the value at `path` (keys and array indexes), if the schema knows it. */
export function shapeAt(path: readonly PropertyKey[]): ShapeNode | undefined {
  let node: ShapeNode | undefined = configShape();
  for (const part of path) {
    if (node === undefined) return undefined;
    node = typeof part === 'number' ? node.items : node.properties?.[String(part)];
  }
  return node;
}

/** `ingest.time_zone`, `destinations[1].path`: the way a TOML user names a key. */
export function keyPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(top level)' : out;
}
