import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { ShuttleError } from '../../errors.js';
import { decodeXmlText } from './xml-text.js';

/** A namespace-stripped element with decoded attributes and its own (direct) text. */
export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

/**
 * fast-xml-parser keeps document order and leaves entity decoding to us (`processEntities: false`), so
 * CDATA sections stay literal and only the five XML entities and character references are honoured.
 */
const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  removeNSPrefix: true,
  processEntities: false,
  cdataPropName: '#cdata',
  commentPropName: '#comment',
  ignoreDeclaration: true,
  ignorePiTags: true,
});

type OrderedNode = Record<string, unknown>;

function invalid(file: string, reason: string, context: Record<string, unknown> = {}, cause?: unknown): ShuttleError {
  return new ShuttleError('MANIFEST_INVALID', `${file}: ${reason}`, { context: { file, ...context }, cause });
}

function decodeOrThrow(raw: string, file: string, where: string): string {
  const r = decodeXmlText(raw);
  if ('error' in r) throw invalid(file, `${where}: ${r.error}`);
  return r.text;
}

function rawText(nodes: unknown): string {
  if (!Array.isArray(nodes)) return '';
  let s = '';
  for (const n of nodes as OrderedNode[]) if (typeof n['#text'] === 'string') s += n['#text'];
  return s;
}

function toElement(node: OrderedNode, file: string): XmlElement | undefined {
  const name = Object.keys(node).find((k) => k !== ':@');
  if (name === undefined || name === '#comment' || name.startsWith('?')) return undefined;
  if (name === '#text' || name === '#cdata') return undefined;
  const attrs: Record<string, string> = {};
  const rawAttrs = node[':@'];
  if (rawAttrs !== null && typeof rawAttrs === 'object') {
    for (const [k, v] of Object.entries(rawAttrs as Record<string, unknown>)) {
      attrs[k] = decodeOrThrow(String(v), file, `attribute ${k} of <${name}>`);
    }
  }
  const children: XmlElement[] = [];
  let text = '';
  const content = node[name];
  if (Array.isArray(content)) {
    for (const child of content as OrderedNode[]) {
      if (typeof child['#text'] === 'string') text += decodeOrThrow(child['#text'], file, `text of <${name}>`);
      else if ('#cdata' in child) text += rawText(child['#cdata']);
      else {
        const el = toElement(child, file);
        if (el) children.push(el);
      }
    }
  }
  return { name, attrs, children, text };
}

/** Parses one whole XML document into its root element; any malformation is MANIFEST_INVALID naming `file`. */
export function parseXmlDocument(xml: string, file: string): XmlElement {
  const body = xml.startsWith('\uFEFF') ? xml.slice(1) : xml;
  if (/<!DOCTYPE/i.test(body)) throw invalid(file, 'a document type declaration is not allowed in a manifest');
  const valid = XMLValidator.validate(body);
  if (valid !== true) {
    const { msg, line, col } = valid.err;
    throw invalid(file, `malformed XML: ${msg} (line ${line}, column ${col})`, { line, col });
  }
  let nodes: unknown;
  try {
    nodes = parser.parse(body);
  } catch (err) {
    throw invalid(file, `malformed XML: ${(err as Error).message}`, {}, err);
  }
  const roots = (Array.isArray(nodes) ? (nodes as OrderedNode[]) : []).map((n) => toElement(n, file)).filter((e): e is XmlElement => e !== undefined);
  if (roots.length !== 1) throw invalid(file, `expected one root element, found ${roots.length}`);
  return roots[0]!;
}

export function childrenNamed(el: XmlElement, name: string): XmlElement[] {
  return el.children.filter((c) => c.name === name);
}

export function childNamed(el: XmlElement, name: string): XmlElement | undefined {
  return el.children.find((c) => c.name === name);
}
