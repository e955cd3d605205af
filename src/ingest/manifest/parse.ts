import { ShuttleError } from '../../errors.js';
import { relativePathProblem } from './generation-xml.js';
import { isC4Id } from './c4.js';
import { parseDateTime } from './naming.js';
import {
  MHL_ACTIONS,
  MHL_HASH_FORMATS,
  MHL_PROCESS_TYPES,
  type MhlAction,
  type MhlAuthor,
  type MhlHashFormat,
  type MhlProcessType,
  type ParsedGeneration,
  type RecordedFile,
  type RecordedHash,
} from './types.js';
import { childNamed, childrenNamed, parseXmlDocument, type XmlElement } from './xml-tree.js';

function invalid(file: string, reason: string, context: Record<string, unknown> = {}): ShuttleError {
  return new ShuttleError('MANIFEST_INVALID', `${file}: ${reason}`, { context: { file, ...context } });
}

function required(el: XmlElement, name: string, file: string): XmlElement {
  const c = childNamed(el, name);
  if (!c) throw invalid(file, `<${el.name}> lacks <${name}>`);
  return c;
}

function dateOf(text: string, file: string, what: string): Date {
  const d = parseDateTime(text);
  if (!d) throw invalid(file, `${what} "${text}" is not an xs:dateTime`);
  return d;
}

function optionalDate(text: string | undefined, file: string, what: string): Date | undefined {
  return text === undefined ? undefined : dateOf(text, file, what);
}

function checkedPath(text: string, file: string): string {
  const problem = relativePathProblem(text);
  if (problem !== undefined) throw invalid(file, `path "${text}" is not usable: ${problem}`, { path: text });
  return text;
}

function parseHash(el: XmlElement, file: string): RecordedFile {
  const pathEl = required(el, 'path', file);
  const path = checkedPath(pathEl.text, file);
  let size: number | undefined;
  if (pathEl.attrs['size'] !== undefined) {
    const s = pathEl.attrs['size'].trim();
    size = /^\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isSafeInteger(size)) throw invalid(file, `size "${s}" of "${path}" is not an integer`, { path });
  }
  const hashes: RecordedHash[] = [];
  for (const c of el.children) {
    if (!(MHL_HASH_FORMATS as readonly string[]).includes(c.name)) continue;
    const format = c.name as MhlHashFormat;
    const action = c.attrs['action'];
    // The spec makes the action mandatory for file hashes; without it nobody can tell original from failed.
    if (action === undefined || !(MHL_ACTIONS as readonly string[]).includes(action)) {
      throw invalid(file, `${format} of "${path}" has action "${action ?? '(none)'}"`, { path });
    }
    const raw = c.text.trim();
    const value = format === 'c4' ? raw : raw.toLowerCase();
    const ok = format === 'c4' ? isC4Id(value) : /^[0-9a-f]+$/.test(value);
    if (!ok) throw invalid(file, `${format} of "${path}" is not a valid value: "${raw}"`, { path });
    const hashDate = optionalDate(c.attrs['hashdate'], file, `hashdate of "${path}"`);
    hashes.push({ format, value, action: action as MhlAction, ...(hashDate ? { hashDate } : {}) });
  }
  if (hashes.length === 0) throw invalid(file, `"${path}" has no hash`, { path });
  const rec: RecordedFile = { path, hashes };
  if (size !== undefined) rec.size = size;
  const lm = optionalDate(pathEl.attrs['lastmodificationdate'], file, `lastmodificationdate of "${path}"`);
  if (lm) rec.lastModified = lm;
  const cd = optionalDate(pathEl.attrs['creationdate'], file, `creationdate of "${path}"`);
  if (cd) rec.creationDate = cd;
  const prev = childNamed(el, 'previousPath');
  if (prev) rec.previousPath = checkedPath(prev.text, file);
  return rec;
}

/** Parses an ASC MHL v2.0 generation document; `file` names it in errors. */
export function parseGeneration(xml: string, file: string): ParsedGeneration {
  const root = parseXmlDocument(xml, file);
  if (root.name !== 'hashlist') throw invalid(file, `root element is <${root.name}>, not <hashlist>`);
  if (root.attrs['version'] !== '2.0') throw invalid(file, `hashlist version is "${root.attrs['version'] ?? '(none)'}", not "2.0"`);

  const ci = required(root, 'creatorinfo', file);
  const tool = required(ci, 'tool', file);
  const authors: MhlAuthor[] = childrenNamed(ci, 'author').map((a) => {
    const au: MhlAuthor = { name: a.text };
    if (a.attrs['email'] !== undefined) au.email = a.attrs['email'];
    if (a.attrs['phone'] !== undefined) au.phone = a.attrs['phone'];
    if (a.attrs['role'] !== undefined) au.role = a.attrs['role'];
    return au;
  });
  const creator: ParsedGeneration['creator'] = {
    creationDate: dateOf(required(ci, 'creationdate', file).text, file, 'creationdate'),
    hostname: required(ci, 'hostname', file).text,
    tool: { name: tool.text, ...(tool.attrs['version'] !== undefined ? { version: tool.attrs['version'] } : {}) },
    authors,
  };
  const location = childNamed(ci, 'location');
  if (location) creator.location = location.text;
  const comment = childNamed(ci, 'comment');
  if (comment) creator.comment = comment.text;

  const pi = required(root, 'processinfo', file);
  const process = required(pi, 'process', file).text.trim();
  if (!(MHL_PROCESS_TYPES as readonly string[]).includes(process)) throw invalid(file, `unknown process type "${process}"`);
  const ignoreEl = childNamed(pi, 'ignore');
  const ignore = ignoreEl ? childrenNamed(ignoreEl, 'pattern').map((p) => p.text) : [];

  const hashesEl = childNamed(root, 'hashes');
  const files = hashesEl ? childrenNamed(hashesEl, 'hash').map((h) => parseHash(h, file)) : [];
  return { creator, process: process as MhlProcessType, ignore, files };
}

export interface ChainLink {
  sequence: number;
  /** Relative to the `ascmhl/` folder. */
  path: string;
  c4: string;
}

/** Parses `ascmhl_chain.xml`; its sequence numbers must run 1, 2, 3, … in document order. */
export function parseChain(xml: string, file: string): ChainLink[] {
  const root = parseXmlDocument(xml, file);
  if (root.name !== 'ascmhldirectory') throw invalid(file, `root element is <${root.name}>, not <ascmhldirectory>`);
  return childrenNamed(root, 'hashlist').map((h, i) => {
    const seqText = (h.attrs['sequencenr'] ?? '').trim();
    const sequence = /^\d+$/.test(seqText) ? Number(seqText) : NaN;
    if (sequence !== i + 1) throw invalid(file, `hashlist #${i + 1} has sequencenr "${seqText}", expected ${i + 1}`);
    const path = checkedPath(required(h, 'path', file).text, file);
    const c4 = required(h, 'c4', file).text.trim();
    if (!isC4Id(c4)) throw invalid(file, `c4 of generation ${sequence} is not a C4 ID: "${c4}"`);
    return { sequence, path, c4 };
  });
}
