import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { errnoCode, ShuttleError, throwIfAborted } from '../../errors.js';
import { C4Hasher, c4OfBytes } from './c4.js';
import { chainDocument, decodeUtf8, loadParser, readChain, readListedGeneration } from './chain.js';
import { crashPoint } from '../crash-points.js';
import { destinationError, fsyncDir, publishNoReplace, removeStrayTemps, replaceFileDurably, tempPathFor, writeAll } from '../../io/durable.js';
import { GENERATION_TAIL, generationHead, hashElement } from './generation-xml.js';
import { continuedIgnore } from './ignore.js';
import { ascmhlDir, CHAIN_FILE_NAME, generationFileName, rootFolderName, sequenceOfFileName } from './naming.js';
import type { ChainLink } from './parse.js';
import type { GenerationInfo, ManifestEntry, WrittenGeneration } from './types.js';

/** Flush the XML to disk in pieces of about this many UTF-16 units, so 100k entries never make one string. */
const FLUSH_AT = 256 * 1024;
const MAX_NAME_ATTEMPTS = 100;

/**
 * Writers in this process queue per destination, so two ingests finishing together cannot both take the same
 * sequence number. Other processes are kept out by Shuttle's destination lock, not by this module.
 */
const queues = new Map<string, Promise<unknown>>();

function serialized<T>(key: string, job: () => Promise<T>): Promise<T> {
  const prev = queues.get(key) ?? Promise.resolve();
  const run = prev.then(job, job);
  const settled = run.then(
    () => undefined,
    () => undefined,
  );
  queues.set(key, settled);
  void settled.then(() => {
    if (queues.get(key) === settled) queues.delete(key);
  });
  return run;
}

interface NumberingPlan {
  /** The chain as it should be once the new generation is added, minus that generation. */
  links: ChainLink[];
  next: number;
}

/**
 * Reads the chain and rolls it forward over generations a crash left unlisted: a generation file only ever
 * gets its final name after it was fsync'd, so one numbered right after the chain's last entry is complete and
 * only missed its chain entry. Anything else unlisted (a gap, a duplicate number, an unparseable file) is not
 * ours to guess about and stops the write.
 */
async function planNumbering(mhlDir: string): Promise<NumberingPlan> {
  const chain = (await readChain(mhlDir)) ?? [];
  const listed = new Set(chain.map((l) => l.path));
  const orphans = (await fs.readdir(mhlDir))
    .filter((n) => !listed.has(n))
    .map((name) => ({ name, seq: sequenceOfFileName(name) }))
    .filter((o): o is { name: string; seq: number } => o.seq !== undefined)
    .sort((a, b) => a.seq - b.seq || (a.name < b.name ? -1 : 1));
  const links = [...chain];
  for (const o of orphans) {
    const file = path.join(mhlDir, o.name);
    if (o.seq !== links.length + 1) {
      throw new ShuttleError(
        'MANIFEST_INVALID',
        `${file}: generation file is not in ${CHAIN_FILE_NAME} and cannot be adopted (expected sequence ${links.length + 1}); move it out of the ascmhl folder`,
        { context: { file, sequence: o.seq, expected: links.length + 1 } },
      );
    }
    const bytes = await fs.readFile(file);
    (await loadParser()).parseGeneration(decodeUtf8(bytes, file), file);
    links.push({ sequence: o.seq, path: o.name, c4: c4OfBytes(bytes) });
  }
  return { links, next: links.length + 1 };
}

/** The ignore patterns of the newest generation in the chain; undefined when there is none. */
async function previousIgnore(mhlDir: string, last: ChainLink | undefined): Promise<string[] | undefined> {
  if (last === undefined) return undefined;
  const file = path.join(mhlDir, last.path);
  const xml = decodeUtf8(await readListedGeneration(mhlDir, last), file);
  return (await loadParser()).parseGeneration(xml, file).ignore;
}

async function ensureDir(destRoot: string, mhlDir: string): Promise<void> {
  try {
    await fs.mkdir(mhlDir);
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') return;
    throw destinationError(err, 'create', mhlDir);
  }
  await fsyncDir(destRoot);
}

/** Streams the generation document into `temp`, returning its C4; nothing else sees the temp name. */
async function writeDocument(
  temp: string,
  entries: Iterable<ManifestEntry> | AsyncIterable<ManifestEntry>,
  info: GenerationInfo,
  creationDate: Date,
  signal: AbortSignal | undefined,
): Promise<string> {
  const c4 = new C4Hasher();
  const fd = await fs.open(temp, 'wx', 0o644);
  try {
    let pending: string[] = [];
    let pendingLength = 0;
    const flush = async (): Promise<void> => {
      throwIfAborted(signal);
      const bytes = Buffer.from(pending.join(''), 'utf8');
      pending = [];
      pendingLength = 0;
      c4.update(bytes);
      await writeAll(fd, bytes);
    };
    const push = async (s: string): Promise<void> => {
      pending.push(s);
      pendingLength += s.length;
      if (pendingLength >= FLUSH_AT) await flush();
    };

    await push(generationHead(info, info.hostname ?? os.hostname(), creationDate));
    const seen = new Set<string>();
    for await (const entry of entries) {
      if (seen.has(entry.path)) {
        throw new ShuttleError('INTERNAL', `"${entry.path}" appears twice in one generation`, { context: { path: entry.path } });
      }
      seen.add(entry.path);
      await push(hashElement(entry));
    }
    if (seen.size === 0) {
      // The spec wants <hashes> or <references> in every manifest, and an empty generation records nothing.
      throw new ShuttleError('INTERNAL', 'a generation needs at least one entry');
    }
    await push(GENERATION_TAIL);
    await flush();
    await fd.sync();
  } finally {
    await fd.close();
  }
  return c4.digest();
}

/**
 * Writes one new ASC MHL generation for `destRoot` and appends it to the chain, durably: the document goes
 * to a temp file in `ascmhl/` and is fsync'd, gets its final name by an exclusive link (never replacing a
 * file), the folder is fsync'd, then the chain is replaced atomically. Sequence numbers continue the chain.
 */
export function writeGeneration(
  destRoot: string,
  entries: Iterable<ManifestEntry> | AsyncIterable<ManifestEntry>,
  info: GenerationInfo,
  signal?: AbortSignal,
): Promise<WrittenGeneration> {
  const root = path.resolve(destRoot);
  return serialized(root, async () => {
    throwIfAborted(signal);
    const mhlDir = ascmhlDir(root);
    const creationDate = info.creationDate ?? new Date();
    await ensureDir(root, mhlDir);
    // A crash while writing a generation or the chain leaves a temp here; every such window comes before the
    // journal marks the files manifested, so the next write (the caller holds the destination lock) tidies it.
    await removeStrayTemps(mhlDir, { signal, recursive: false });
    // Fails on a broken chain before writing anything. The caller's destination lock keeps the newest
    // generation from changing before ours is linked, so its ignore patterns can be read here.
    const first = await planNumbering(mhlDir);
    const ignore = continuedIgnore(await previousIgnore(mhlDir, first.links.at(-1)), info.ignore ?? []);
    const temp = tempPathFor(path.join(mhlDir, 'generation'));
    let linked = false;
    try {
      const c4 = await writeDocument(temp, entries, { ...info, ignore }, creationDate, signal);
      crashPoint('generation-written');
      throwIfAborted(signal);
      // From the link on, the signal is no longer honoured: stopping between the link and the chain update
      // would leave work for the next writer's roll-forward for no gain, and the rest takes milliseconds.
      let plan: NumberingPlan | undefined;
      let name = '';
      for (let attempt = 0; attempt < MAX_NAME_ATTEMPTS && !linked; attempt++) {
        plan = await planNumbering(mhlDir);
        name = generationFileName(plan.next, rootFolderName(root), creationDate);
        linked = (await publishNoReplace(temp, path.join(mhlDir, name))) === 'published';
      }
      if (!linked || plan === undefined) {
        throw new ShuttleError('DEST_WRITE_FAILED', `could not find a free generation file name in ${mhlDir}`, { context: { path: mhlDir } });
      }
      const links = [...plan.links, { sequence: plan.next, path: name, c4 }];
      await replaceFileDurably(path.join(mhlDir, CHAIN_FILE_NAME), chainDocument(links));
      return { sequence: plan.next, file: path.join(mhlDir, name), c4 };
    } catch (err) {
      if (!linked) await fs.rm(temp, { force: true }).catch(() => undefined);
      throw destinationError(err, 'write manifest in', mhlDir);
    }
  });
}
