import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoCode, ShuttleError } from '../../errors.js';
import { CHAIN_FILE_NAME, MHL_DIRECTORY_NAMESPACE } from './naming.js';
import type { ChainLink } from './parse.js';
import { escapeXml } from './xml-text.js';

/** Reads `ascmhl/ascmhl_chain.xml`; undefined when there is none. */
export async function readChain(mhlDir: string): Promise<ChainLink[] | undefined> {
  const file = path.join(mhlDir, CHAIN_FILE_NAME);
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new ShuttleError('MANIFEST_INVALID', `${file}: cannot read: ${(err as Error).message}`, { context: { file }, cause: err });
  }
  return (await loadParser()).parseChain(decodeUtf8(bytes, file), file);
}

/**
 * The manifest parser (parse.ts and its XML library), loaded only when there is a manifest to read: a new
 * destination's first ingest writes one without ever parsing, and no ingest waits for it while starting.
 */
export function loadParser(): Promise<typeof import('./parse.js')> {
  return import('./parse.js');
}

/** The bytes of a generation the chain lists; MANIFEST_INVALID naming it when it is gone or unreadable. */
export async function readListedGeneration(mhlDir: string, link: ChainLink): Promise<Buffer> {
  const file = path.join(mhlDir, link.path);
  try {
    return await fs.readFile(file);
  } catch (err) {
    const reason = errnoCode(err) === 'ENOENT' ? 'listed in the chain but missing' : `cannot read: ${(err as Error).message}`;
    throw new ShuttleError('MANIFEST_INVALID', `${file}: ${reason}`, { context: { file, sequence: link.sequence }, cause: err });
  }
}

export function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw new ShuttleError('MANIFEST_INVALID', `${file}: not valid UTF-8`, { context: { file }, cause: err });
  }
}

export function chainDocument(links: readonly ChainLink[]): string {
  let s = `<?xml version="1.0" encoding="UTF-8"?>\n<ascmhldirectory xmlns="${MHL_DIRECTORY_NAMESPACE}">\n`;
  for (const l of links) {
    s += `  <hashlist sequencenr="${l.sequence}">\n    <path>${escapeXml(l.path)}</path>\n    <c4>${l.c4}</c4>\n  </hashlist>\n`;
  }
  return `${s}</ascmhldirectory>\n`;
}
