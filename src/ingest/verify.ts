import type { Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoCode, isShuttleError, throwIfAborted } from '../errors.js';
import { MultiHasher, type HashSet } from '../io/hashing.js';
import { compileIgnore, effectiveIgnore, type IgnoreMatcher } from './manifest/ignore.js';
import { ASCMHL_FOLDER } from './manifest/naming.js';
import { TEMP_SUFFIX } from '../io/durable.js';
import { readHistory } from './manifest/read.js';
import { MHL_ALGORITHMS, type CreatorInfo, type KnownFile, type ManifestEntry, type MhlAlgorithm } from './manifest/types.js';
import { writeGeneration } from './manifest/write.js';

const READ_SIZE = 1024 * 1024;
/** Shuttle's marker and lock live here; never part of the library. */
const SHUTTLE_FOLDER = '.shuttle';

export interface VerifyProgress {
  /** Listed files done so far (whatever their outcome). */
  files: number;
  /** Bytes hashed so far. */
  bytes: number;
  totalFiles: number;
  /** Sum of the recorded sizes, for a progress bar; the real total may differ. */
  totalBytes: number;
}

export interface VerifyOptions {
  /** Unlisted files make the verification fail. */
  strict?: boolean;
  /** Record the outcome as a new `in-place` generation (verified/failed per file). Otherwise nothing is written. */
  record?: boolean;
  signal?: AbortSignal;
  onProgress?: (p: VerifyProgress) => void;
  /** Who records the generation when `record` is set. */
  creator: CreatorInfo;
}

export interface HashDifference {
  algorithm: MhlAlgorithm;
  expected: string;
  actual: string;
}

export interface MismatchedFile {
  path: string;
  /** The generation whose record was last seen for this path. */
  generation: number;
  expectedSize: number | null;
  actualSize: number;
  /** Empty when only the size differs. */
  differences: HashDifference[];
}

export interface UnverifiableFile {
  path: string;
  reason: string;
}

/** Plain data (strings, numbers, arrays) so `JSON.stringify` gives the CLI's `--json` output directly. */
export interface VerifyReport {
  root: string;
  ok: boolean;
  strict: boolean;
  generations: number;
  counts: {
    listed: number;
    verified: number;
    missing: number;
    mismatched: number;
    unlisted: number;
    unverifiable: number;
    bytes: number;
  };
  verified: string[];
  missing: string[];
  mismatched: MismatchedFile[];
  /** Present on disk, in no generation, and not ignored. */
  unlisted: string[];
  /**
   * Listed, but no usable hash was recorded or the file could not be read (EACCES, EIO, ...); also folders
   * (path ending in '/') that could not be listed while looking for unlisted files.
   */
  unverifiable: UnverifiableFile[];
  /** Generation files in `ascmhl/` that the chain does not list; reported, not trusted. */
  orphans: string[];
  recorded: { sequence: number; file: string; c4: string } | null;
  startedAt: string;
  finishedAt: string;
}

/** The manifest folder and Shuttle's marker folder at the root, and what they hold. */
function isBookkeeping(relPath: string): boolean {
  const first = relPath.split('/', 1)[0];
  return first === ASCMHL_FOLDER || first === SHUTTLE_FOLDER;
}

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

interface HashedFile {
  hashes: HashSet;
  size: number;
  mtime: Date;
}

class NotAFile extends Error {}

async function hashFile(file: string, algorithms: readonly MhlAlgorithm[], buf: Buffer, signal: AbortSignal | undefined, onChunk: (n: number) => void): Promise<HashedFile> {
  const fd = await fs.open(file, 'r');
  try {
    const st = await fd.stat();
    if (!st.isFile()) throw new NotAFile();
    const hasher = await MultiHasher.create(algorithms);
    for (;;) {
      throwIfAborted(signal);
      const { bytesRead } = await fd.read(buf, 0, buf.byteLength, null);
      if (bytesRead === 0) break;
      hasher.update(buf.subarray(0, bytesRead));
      onChunk(bytesRead);
    }
    return { hashes: hasher.digest(), size: hasher.bytes, mtime: st.mtime };
  } finally {
    await fd.close();
  }
}

/** Relative paths ('/'-separated) of every non-folder entry under root that is not Shuttle's own or ignored. */
async function listPresent(root: string, ignored: IgnoreMatcher, signal: AbortSignal | undefined, unreadable: UnverifiableFile[]): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    throwIfAborted(signal);
    let entries: Dirent[];
    try {
      entries = await fs.readdir(rel === '' ? root : path.join(root, rel), { withFileTypes: true });
    } catch (err) {
      // A folder that vanished mid-walk has no files to report; one that cannot be listed may hide unlisted ones.
      if (errnoCode(err) === 'ENOENT') return;
      unreadable.push({ path: `${rel}/`, reason: `cannot list folder: ${errnoCode(err) ?? (err as Error).message}` });
      return;
    }
    for (const e of entries) {
      const p = rel === '' ? e.name : `${rel}/${e.name}`;
      if (isBookkeeping(p) || e.name.endsWith(TEMP_SUFFIX)) continue;
      const isDir = e.isDirectory();
      if (ignored(p, isDir)) continue;
      if (isDir) await walk(p);
      else out.push(p);
    }
  };
  await walk('');
  return out;
}

/**
 * Re-hashes every file the destination's ASC MHL history lists, with the algorithms recorded for it, and
 * looks for files no generation lists. Per the spec a file verifies only against hashes labelled original
 * or verified; a missing file is a failed verification but is not written into a recorded generation,
 * because a `failed` hash must be a hash computed from the file and there is none.
 */
export async function verifyDestination(destRoot: string, opts: VerifyOptions): Promise<VerifyReport> {
  const { signal } = opts;
  throwIfAborted(signal);
  const startedAt = new Date();
  const history = await readHistory(destRoot, signal);
  const root = history.root;
  // Another tool may have recorded the manifests or Shuttle's folder (ascmhl does when a generation's ignore
  // list lacks its defaults); they change by design and are never library files, so they are not checked.
  const known = [...history.files.values()].filter((k) => !isBookkeeping(k.path)).sort((a, b) => byCodeUnit(a.path, b.path));
  const latestGeneration = history.generations.at(-1);

  const report: VerifyReport = {
    root,
    ok: false,
    strict: opts.strict ?? false,
    generations: history.generations.length,
    counts: { listed: known.length, verified: 0, missing: 0, mismatched: 0, unlisted: 0, unverifiable: 0, bytes: 0 },
    verified: [],
    missing: [],
    mismatched: [],
    unlisted: [],
    unverifiable: [],
    orphans: history.orphans,
    recorded: null,
    startedAt: startedAt.toISOString(),
    finishedAt: '',
  };
  const toRecord: ManifestEntry[] = [];
  const progress: VerifyProgress = {
    files: 0,
    bytes: 0,
    totalFiles: known.length,
    totalBytes: known.reduce((s, k) => s + (k.referenceSize ?? k.latest.size ?? 0), 0),
  };
  const buf = Buffer.allocUnsafe(READ_SIZE);
  let chunks = 0;
  const onChunk = (n: number): void => {
    progress.bytes += n;
    if (++chunks % 64 === 0) opts.onProgress?.({ ...progress });
  };

  for (const k of known) {
    await verifyOne(k);
    progress.files++;
    opts.onProgress?.({ ...progress });
  }

  async function verifyOne(k: KnownFile): Promise<void> {
    const algorithms = MHL_ALGORITHMS.filter((a) => k.reference[a] !== undefined);
    if (algorithms.length === 0) {
      report.unverifiable.push({ path: k.path, reason: 'no md5, xxh128 or xxh64 hash recorded as original or verified' });
      return;
    }
    let hashed: HashedFile;
    try {
      hashed = await hashFile(path.join(root, ...k.path.split('/')), algorithms, buf, signal, onChunk);
    } catch (err) {
      if (isShuttleError(err)) throw err;
      const code = errnoCode(err);
      if (err instanceof NotAFile || code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') report.missing.push(k.path);
      else report.unverifiable.push({ path: k.path, reason: code ?? (err as Error).message });
      return;
    }
    const differences: HashDifference[] = [];
    for (const a of algorithms) {
      const expected = k.reference[a]!;
      const actual = hashed.hashes[a]!;
      if (expected !== actual) differences.push({ algorithm: a, expected, actual });
    }
    const expectedSize = k.referenceSize ?? k.latest.size ?? null;
    const sizeDiffers = expectedSize !== null && expectedSize !== hashed.size;
    const failed = differences.length > 0 || sizeDiffers;
    if (failed) {
      report.mismatched.push({ path: k.path, generation: k.latest.generation, expectedSize, actualSize: hashed.size, differences });
    } else {
      report.verified.push(k.path);
    }
    const hashes: HashSet = {};
    for (const a of algorithms) hashes[a] = hashed.hashes[a]!;
    toRecord.push({ path: k.path, size: hashed.size, lastModified: hashed.mtime, hashes, action: failed ? 'failed' : 'verified', hashDate: new Date() });
  }

  const listed = new Set(known.map((k) => k.path));
  const ignored = compileIgnore(effectiveIgnore(latestGeneration?.ignore ?? []));
  report.unlisted = (await listPresent(root, ignored, signal, report.unverifiable)).filter((p) => !listed.has(p)).sort(byCodeUnit);

  report.counts.verified = report.verified.length;
  report.counts.missing = report.missing.length;
  report.counts.mismatched = report.mismatched.length;
  report.counts.unlisted = report.unlisted.length;
  report.counts.unverifiable = report.unverifiable.length;
  report.counts.bytes = progress.bytes;
  report.ok = report.missing.length === 0 && report.mismatched.length === 0 && report.unverifiable.length === 0 && (!report.strict || report.unlisted.length === 0);

  if (opts.record && toRecord.length > 0) {
    const written = await writeGeneration(
      root,
      toRecord,
      { ...opts.creator, process: 'in-place', creationDate: startedAt }, // the ignore patterns carry over
      signal,
    );
    report.recorded = { sequence: written.sequence, file: written.file, c4: written.c4 };
  }
  report.finishedAt = new Date().toISOString();
  return report;
}
