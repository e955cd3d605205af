import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoCode, ShuttleError, throwIfAborted } from '../../errors.js';
import type { HashSet } from '../../io/hashing.js';
import { c4OfBytes } from './c4.js';
import { decodeUtf8, readChain, readListedGeneration } from './chain.js';
import { ascmhlDir, CHAIN_FILE_NAME, sequenceOfFileName } from './naming.js';
import { parseGeneration } from './parse.js';
import { isMhlAlgorithm, type GenerationSummary, type History, type KnownFile, type MhlHashFormat, type RecordedFile } from './types.js';

async function listDir(dir: string): Promise<string[] | undefined> {
  try {
    return await fs.readdir(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new ShuttleError('MANIFEST_INVALID', `${dir}: cannot list: ${(err as Error).message}`, { context: { file: dir }, cause: err });
  }
}

function mergeRecord(files: Map<string, KnownFile>, rec: RecordedFile, generation: number): void {
  const latest: KnownFile['latest'] = { generation, hashes: {}, actions: {}, otherFormats: {} };
  if (rec.size !== undefined) latest.size = rec.size;
  if (rec.lastModified !== undefined) latest.lastModified = rec.lastModified;
  const known = files.get(rec.path) ?? { path: rec.path, latest, reference: {} };
  known.latest = latest;
  const reference: HashSet = { ...known.reference };
  let usable = false;
  for (const h of rec.hashes) {
    if (isMhlAlgorithm(h.format)) {
      latest.hashes[h.format] = h.value;
      latest.actions[h.format] = h.action;
      if (h.action !== 'failed') {
        reference[h.format] = h.value;
        usable = true;
      }
    } else {
      latest.otherFormats[h.format as MhlHashFormat] = h.value;
      if (h.action !== 'failed') usable = true;
    }
  }
  known.reference = reference;
  if (usable && rec.size !== undefined) known.referenceSize = rec.size;
  files.set(rec.path, known);
}

/**
 * Reads the ASC MHL history of `destRoot`: the chain, then every generation it lists, each checked against
 * the chain's C4 before it is trusted. No `ascmhl/` folder means an empty history. Reads only.
 */
export async function readHistory(destRoot: string, signal?: AbortSignal): Promise<History> {
  const root = path.resolve(destRoot);
  const mhlDir = ascmhlDir(root);
  const history: History = { root, generations: [], files: new Map(), orphans: [] };
  const names = await listDir(mhlDir);
  if (names === undefined) return history;
  const chain = await readChain(mhlDir);
  const generationNames = names.filter((n) => sequenceOfFileName(n) !== undefined);
  if (chain === undefined) {
    if (generationNames.length > 0) {
      const file = path.join(mhlDir, CHAIN_FILE_NAME);
      throw new ShuttleError('MANIFEST_INVALID', `${file}: missing, but ${generationNames.length} generation file(s) exist`, { context: { file } });
    }
    return history;
  }
  for (const link of chain) {
    throwIfAborted(signal);
    const file = path.join(mhlDir, link.path);
    const bytes = await readListedGeneration(mhlDir, link);
    const actual = c4OfBytes(bytes);
    if (actual !== link.c4) {
      throw new ShuttleError('MANIFEST_INVALID', `${file}: C4 ${actual} does not match ${link.c4} recorded in the chain; the generation was altered`, {
        context: { file, sequence: link.sequence, expected: link.c4, actual },
      });
    }
    const gen = parseGeneration(decodeUtf8(bytes, file), file);
    const summary: GenerationSummary = {
      sequence: link.sequence,
      name: link.path,
      c4: link.c4,
      creationDate: gen.creator.creationDate,
      hostname: gen.creator.hostname,
      tool: gen.creator.tool,
      process: gen.process,
      ignore: gen.ignore,
      fileCount: gen.files.length,
    };
    history.generations.push(summary);
    for (const rec of gen.files) mergeRecord(history.files, rec, link.sequence);
  }
  const listed = new Set(chain.map((l) => l.path));
  history.orphans = generationNames.filter((n) => !listed.has(n)).sort();
  return history;
}
