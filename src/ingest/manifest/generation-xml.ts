import { ShuttleError } from '../../errors.js';
import { formatDateTime, MHL_NAMESPACE } from './naming.js';
import { MHL_ACTIONS, MHL_ALGORITHMS, MHL_PROCESS_TYPES, type GenerationInfo, type ManifestEntry, type MhlAlgorithm } from './types.js';
import { escapeXml, firstUnrepresentable } from './xml-text.js';

const HEX_LENGTH: Record<MhlAlgorithm, number> = { md5: 32, xxh128: 32, xxh64: 16 };
const HEX_PATTERN: Record<MhlAlgorithm, RegExp> = { md5: /^[0-9a-f]{32}$/, xxh128: /^[0-9a-f]{32}$/, xxh64: /^[0-9a-f]{16}$/ };

/**
 * A relative, '/'-separated path with no empty, '.' or '..' segment, made only of characters an XML 1.0
 * document can hold. Returns the reason when it is not.
 */
export function relativePathProblem(p: string): string | undefined {
  if (p.length === 0) return 'empty path';
  if (p.startsWith('/')) return 'absolute path';
  if (p.includes('\0')) return 'NUL in path';
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.' || seg === '..') return `path segment "${seg}" is not allowed`;
  }
  const bad = firstUnrepresentable(p);
  if (bad >= 0) return `character U+${p.charCodeAt(bad).toString(16).padStart(4, '0')} at index ${bad} cannot be stored in an XML manifest`;
  return undefined;
}

function checkText(label: string, value: string): string {
  const bad = firstUnrepresentable(value);
  if (bad >= 0) {
    throw new ShuttleError('NAME_INVALID', `${label} holds a character an XML manifest cannot store`, { context: { [label]: value, index: bad } });
  }
  return escapeXml(value);
}

function checkDate(label: string, d: Date, context: Record<string, unknown>): string {
  if (!(d instanceof Date) || Number.isNaN(d.getTime())) {
    throw new ShuttleError('INTERNAL', `${label} is not a valid date`, { context: { ...context, [label]: String(d) } });
  }
  return formatDateTime(d);
}

/** The `<hash>` element of one entry, after checking every field; throws before anything is emitted. */
export function hashElement(entry: ManifestEntry): string {
  const problem = relativePathProblem(entry.path);
  if (problem !== undefined) {
    throw new ShuttleError('NAME_INVALID', `cannot record "${entry.path}" in a manifest: ${problem}`, { context: { path: entry.path } });
  }
  const ctx = { path: entry.path };
  if (!Number.isSafeInteger(entry.size) || entry.size < 0) {
    throw new ShuttleError('INTERNAL', `size of "${entry.path}" is not a non-negative integer`, { context: { ...ctx, size: entry.size } });
  }
  if (!MHL_ACTIONS.includes(entry.action)) {
    throw new ShuttleError('INTERNAL', `unknown MHL action "${String(entry.action)}"`, { context: ctx });
  }
  const modified = checkDate('lastModified', entry.lastModified, ctx);
  const hashDate = checkDate('hashDate', entry.hashDate, ctx);
  let hashes = '';
  for (const alg of MHL_ALGORITHMS) {
    const value = entry.hashes[alg];
    if (value === undefined) continue;
    if (!HEX_PATTERN[alg].test(value)) {
      throw new ShuttleError('INTERNAL', `${alg} of "${entry.path}" is not ${HEX_LENGTH[alg]} lowercase hex digits`, { context: { ...ctx, [alg]: value } });
    }
    hashes += `      <${alg} action="${entry.action}" hashdate="${hashDate}">${value}</${alg}>\n`;
  }
  if (hashes === '') {
    throw new ShuttleError('INTERNAL', `"${entry.path}" has no hash an MHL can hold (md5, xxh128 or xxh64)`, { context: { ...ctx, algorithms: Object.keys(entry.hashes) } });
  }
  return `    <hash>\n` + `      <path size="${entry.size}" lastmodificationdate="${modified}">${escapeXml(entry.path)}</path>\n` + hashes + `    </hash>\n`;
}

/** Everything before the first `<hash>`. */
export function generationHead(info: GenerationInfo, hostname: string, creationDate: Date): string {
  if (!MHL_PROCESS_TYPES.includes(info.process)) {
    throw new ShuttleError('INTERNAL', `unknown MHL process type "${String(info.process)}"`);
  }
  let s =
    `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<hashlist version="2.0" xmlns="${MHL_NAMESPACE}">\n` +
    `  <creatorinfo>\n` +
    `    <creationdate>${checkDate('creationDate', creationDate, {})}</creationdate>\n` +
    `    <hostname>${checkText('hostname', hostname)}</hostname>\n` +
    `    <tool version="${checkText('tool version', info.tool.version)}">${checkText('tool name', info.tool.name)}</tool>\n`;
  const a = info.author;
  if (a !== undefined) {
    let attrs = '';
    if (a.email !== undefined) attrs += ` email="${checkText('author email', a.email)}"`;
    if (a.phone !== undefined) attrs += ` phone="${checkText('author phone', a.phone)}"`;
    if (a.role !== undefined) attrs += ` role="${checkText('author role', a.role)}"`;
    s += `    <author${attrs}>${checkText('author name', a.name)}</author>\n`;
  }
  if (info.location !== undefined) s += `    <location>${checkText('location', info.location)}</location>\n`;
  if (info.comment !== undefined) s += `    <comment>${checkText('comment', info.comment)}</comment>\n`;
  s += `  </creatorinfo>\n  <processinfo>\n    <process>${info.process}</process>\n`;
  // The schema requires at least one <pattern> inside <ignore>, so an empty list means no element at all.
  const patterns = info.ignore ?? [];
  if (patterns.length > 0) {
    s += `    <ignore>\n`;
    for (const p of patterns) s += `      <pattern>${checkText('ignore pattern', p)}</pattern>\n`;
    s += `    </ignore>\n`;
  }
  s += `  </processinfo>\n  <hashes>\n`;
  return s;
}

export const GENERATION_TAIL = `  </hashes>\n</hashlist>\n`;
