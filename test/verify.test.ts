import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MultiHasher, type HashAlgorithm, type HashSet } from '../src/ingest/hashing.js';
import { parseGeneration, readHistory, writeGeneration, type CreatorInfo, type ManifestEntry } from '../src/ingest/manifest/index.js';
import { verifyDestination, type VerifyProgress } from '../src/ingest/verify.js';

const run = promisify(execFile);
const CREATOR: CreatorInfo = { tool: { name: 'shuttle', version: '0.1.0' }, hostname: 'verify-host' };

let root: string;
beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'shuttle-verify-'));
});
afterEach(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

async function put(rel: string, data: string | Buffer): Promise<void> {
  const p = path.join(root, rel);
  await fs.mkdir(path.dirname(p), { recursive: true });
  await fs.writeFile(p, data);
}

async function hashOf(rel: string, algs: readonly HashAlgorithm[]): Promise<HashSet> {
  const h = await MultiHasher.create(algs);
  h.update(await fs.readFile(path.join(root, rel)));
  return h.digest();
}

/** Records the files as they are now, as an ingest would. */
async function seal(rels: string[], algs: readonly HashAlgorithm[] = ['xxh128']): Promise<void> {
  const entries: ManifestEntry[] = [];
  for (const rel of rels) {
    const st = await fs.stat(path.join(root, rel));
    entries.push({ path: rel, size: st.size, lastModified: st.mtime, hashes: await hashOf(rel, algs), action: 'original', hashDate: new Date() });
  }
  await writeGeneration(root, entries, { ...CREATOR, process: 'transfer', ignore: ['.DS_Store', '*.xmp-backup/'] });
}

/** Every entry under root with type, size and mtime, to prove a run changed nothing. */
async function snapshot(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fs.readdir(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      const st = await fs.lstat(p);
      out.push(`${path.relative(root, p)}|${e.isDirectory() ? 'd' : 'f'}|${st.size}|${st.mtimeMs}`);
      if (e.isDirectory()) await walk(p);
    }
  };
  out.push(`.|d|${(await fs.lstat(root)).mtimeMs}`);
  await walk(root);
  return out.sort();
}

describe('verifyDestination', () => {
  it('reports-verified-missing-mismatched-and-unlisted-files-on-real-files', async () => {
    await put('A001/C0001.MOV', randomBytes(3 * 1024 * 1024 + 17)); // several 1 MiB reads
    await put('A001/C0002.MOV', 'second clip');
    await put('A001/C0003.MOV', 'will be deleted');
    await put('notes & stuff.txt', 'original text');
    await put('empty.bin', '');
    await seal(['A001/C0001.MOV', 'A001/C0002.MOV', 'A001/C0003.MOV', 'notes & stuff.txt', 'empty.bin'], ['xxh128', 'md5']);
    const expected = await hashOf('notes & stuff.txt', ['xxh128', 'md5']);

    await fs.rm(path.join(root, 'A001/C0003.MOV'));
    await put('notes & stuff.txt', 'altered text!');
    await put('A002/extra.MOV', 'not in any generation');
    const actual = await hashOf('notes & stuff.txt', ['xxh128', 'md5']);

    const report = await verifyDestination(root, { creator: CREATOR });
    expect(report.verified).toEqual(['A001/C0001.MOV', 'A001/C0002.MOV', 'empty.bin']);
    expect(report.missing).toEqual(['A001/C0003.MOV']);
    expect(report.unlisted).toEqual(['A002/extra.MOV']);
    expect(report.mismatched).toEqual([
      {
        path: 'notes & stuff.txt',
        generation: 1,
        expectedSize: 13,
        actualSize: 13,
        differences: [
          { algorithm: 'md5', expected: expected.md5, actual: actual.md5 },
          { algorithm: 'xxh128', expected: expected.xxh128, actual: actual.xxh128 },
        ],
      },
    ]);
    expect(report.counts).toEqual({ listed: 5, verified: 3, missing: 1, mismatched: 1, unlisted: 1, unverifiable: 0, bytes: 3 * 1024 * 1024 + 17 + 11 + 13 });
    expect(report.ok).toBe(false);
    expect(report.recorded).toBeNull();
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  });

  it('unlisted-files-fail-only-in-strict-mode', async () => {
    await put('a.txt', 'a');
    await seal(['a.txt']);
    await put('b.txt', 'b');
    const lenient = await verifyDestination(root, { creator: CREATOR });
    expect(lenient.ok).toBe(true);
    expect(lenient.unlisted).toEqual(['b.txt']);
    const strict = await verifyDestination(root, { creator: CREATOR, strict: true });
    expect(strict.ok).toBe(false);
    expect(strict.strict).toBe(true);
    await fs.rm(path.join(root, 'b.txt'));
    expect((await verifyDestination(root, { creator: CREATOR, strict: true })).ok).toBe(true);
  });

  it('shuttle-own-files-and-manifest-ignore-patterns-are-never-unlisted', async () => {
    await put('a.txt', 'a');
    await seal(['a.txt']);
    await put('.shuttle/marker.json', '{}');
    await put('.shuttle/lock', '1');
    await put('sub/half-copied.MOV.shuttle-tmp', 'partial');
    await put('ascmhl/stray.txt', 'inside the manifest folder');
    await put('sub/.DS_Store', 'finder');
    await put('sub/cache.xmp-backup/x', 'ignored folder');
    await put('sub/.shuttle/not-root', 'only the root .shuttle is Shuttle’s');
    await put('sub/ascmhl/nested', 'only the root ascmhl is ours');
    const report = await verifyDestination(root, { creator: CREATOR, strict: true });
    expect(report.unlisted).toEqual(['sub/.shuttle/not-root', 'sub/ascmhl/nested']);
  });

  it('without-record-nothing-under-the-destination-changes', async () => {
    await put('x/1.bin', randomBytes(2048));
    await put('x/2.bin', 'two');
    await seal(['x/1.bin', 'x/2.bin']);
    await put('x/2.bin', 'changed');
    await put('x/3.bin', 'new');
    await new Promise((r) => setTimeout(r, 20)); // any write during the run would show a later mtime
    const before = await snapshot();
    const report = await verifyDestination(root, { creator: CREATOR, strict: true });
    expect(report.ok).toBe(false);
    expect(await snapshot()).toEqual(before);
  });

  it('record-appends-an-in-place-generation-with-verified-and-failed-actions', async () => {
    await put('good.bin', 'good');
    await put('bad.bin', 'bad');
    await put('gone.bin', 'gone');
    await seal(['good.bin', 'bad.bin', 'gone.bin'], ['xxh64', 'md5']);
    await put('bad.bin', 'BAD');
    await fs.rm(path.join(root, 'gone.bin'));

    const report = await verifyDestination(root, { creator: { ...CREATOR, author: { name: 'Loader' } }, record: true });
    expect(report.recorded?.sequence).toBe(2);
    const doc = parseGeneration(await fs.readFile(report.recorded!.file, 'utf8'), report.recorded!.file);
    expect(doc.process).toBe('in-place');
    expect(doc.ignore).toEqual(['.DS_Store', '*.xmp-backup/']);
    expect(doc.creator.hostname).toBe('verify-host');
    expect(doc.creator.authors).toEqual([{ name: 'Loader' }]);
    const byPath = new Map(doc.files.map((f) => [f.path, f]));
    expect([...byPath.keys()].sort()).toEqual(['bad.bin', 'good.bin']); // a missing file has no hash to record
    expect(byPath.get('good.bin')!.hashes.map((h) => [h.format, h.action])).toEqual([['md5', 'verified'], ['xxh64', 'verified']]);
    const bad = byPath.get('bad.bin')!;
    expect(bad.hashes.map((h) => h.action)).toEqual(['failed', 'failed']);
    expect(bad.hashes.find((h) => h.format === 'xxh64')!.value).toBe((await hashOf('bad.bin', ['xxh64'])).xxh64);

    // The failed record does not become the reference: the file keeps failing until restored.
    const again = await verifyDestination(root, { creator: CREATOR });
    expect(again.mismatched.map((m) => m.path)).toEqual(['bad.bin']);
    expect(again.generations).toBe(2);
    await put('bad.bin', 'bad');
    const restored = await verifyDestination(root, { creator: CREATOR, record: true });
    expect(restored.mismatched).toEqual([]);
    expect(restored.recorded?.sequence).toBe(3);
    expect((await readHistory(root)).files.get('bad.bin')!.latest.actions).toEqual({ md5: 'verified', xxh64: 'verified' });
  });

  it('hostile-and-unicode-names-verify-on-real-files', async () => {
    const names = ['a&b<c>"d\'.mov', ' spaced ', 'new\nline', 'caf\u00e9/cafe\u0301/\u{1F3AC}.mov', '\u65e5\u672c/\u0627\u0644.txt'];
    for (const [i, n] of names.entries()) await put(n, `content ${i}`);
    await seal(names);
    const report = await verifyDestination(root, { creator: CREATOR, strict: true });
    expect(report.ok).toBe(true);
    expect([...report.verified].sort()).toEqual([...names].sort());
  });

  it('computed-xxh128-xxh64-md5-equal-what-xxhsum-and-md5sum-print', async () => {
    const files: Record<string, Buffer> = {
      'empty.bin': Buffer.alloc(0),
      'small.txt': Buffer.from('media-hash-list'),
      'big.bin': randomBytes(2 * 1024 * 1024 + 12345),
    };
    for (const [n, d] of Object.entries(files)) await put(n, d);
    const tool = async (cmd: string, args: string[], file: string): Promise<string> => {
      const { stdout } = await run(cmd, [...args, file], { cwd: root });
      return stdout.trim().split(/\s+/)[0]!;
    };
    const entries: ManifestEntry[] = [];
    for (const n of Object.keys(files)) {
      const hashes: HashSet = { xxh128: await tool('xxhsum', ['-H2'], n), xxh64: await tool('xxhsum', ['-H1'], n), md5: await tool('md5sum', [], n) };
      const st = await fs.stat(path.join(root, n));
      entries.push({ path: n, size: st.size, lastModified: st.mtime, hashes, action: 'original', hashDate: new Date() });
    }
    expect(entries.find((e) => e.path === 'small.txt')!.hashes).toEqual({
      // ascmitc/mhl tests/test_hasher.py values for b"media-hash-list"
      xxh128: '61a67c014f703a456ee7a776fd8c06bd',
      xxh64: '584b2ea1974f2b7c',
      md5: '9db0fc9f30f5ee70041a7538809e2858',
    });
    await writeGeneration(root, entries, { ...CREATOR, process: 'transfer' });
    const report = await verifyDestination(root, { creator: CREATOR, record: true });
    expect(report.mismatched).toEqual([]);
    expect(report.verified.sort()).toEqual(Object.keys(files).sort());
    const doc = parseGeneration(await fs.readFile(report.recorded!.file, 'utf8'), 'recorded');
    for (const e of entries) {
      const rec = doc.files.find((f) => f.path === e.path)!;
      expect(Object.fromEntries(rec.hashes.map((h) => [h.format, h.value]))).toEqual(e.hashes);
    }
  });

  it('progress-reports-files-and-bytes-up-to-the-totals', async () => {
    await put('a.bin', randomBytes(70 * 1024 * 1024 / 64)); // ~1.1 MiB
    await put('b.bin', 'bb');
    await seal(['a.bin', 'b.bin']);
    const seen: VerifyProgress[] = [];
    await verifyDestination(root, { creator: CREATOR, onProgress: (p) => seen.push(p) });
    const last = seen.at(-1)!;
    expect(last).toEqual({ files: 2, bytes: 70 * 1024 * 1024 / 64 + 2, totalFiles: 2, totalBytes: 70 * 1024 * 1024 / 64 + 2 });
    expect(seen.map((p) => p.files)).toEqual([...seen.map((p) => p.files)].sort((x, y) => x - y));
  });

  it('an-aborted-verification-throws-aborted-and-records-nothing', async () => {
    await put('a.bin', randomBytes(4 * 1024 * 1024));
    await seal(['a.bin']);
    const ac = new AbortController();
    const p = verifyDestination(root, { creator: CREATOR, record: true, signal: ac.signal, onProgress: () => ac.abort() });
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
    expect((await readHistory(root)).generations).toHaveLength(1);
  });

  it('a-destination-without-history-lists-everything-as-unlisted', async () => {
    await put('a.txt', 'a');
    const lenient = await verifyDestination(root, { creator: CREATOR, record: true });
    expect(lenient).toMatchObject({ ok: true, generations: 0, unlisted: ['a.txt'], recorded: null });
    expect(await fs.readdir(root)).toEqual(['a.txt']);
    expect((await verifyDestination(root, { creator: CREATOR, strict: true })).ok).toBe(false);
  });

  it('a-tampered-history-stops-verification-with-manifest-invalid', async () => {
    await put('a.txt', 'a');
    await seal(['a.txt']);
    const [gen] = (await fs.readdir(path.join(root, 'ascmhl'))).filter((n) => n.endsWith('.mhl'));
    const file = path.join(root, 'ascmhl', gen!);
    await fs.writeFile(file, (await fs.readFile(file, 'utf8')).replace('a.txt', 'b.txt'));
    await expect(verifyDestination(root, { creator: CREATOR })).rejects.toMatchObject({ code: 'MANIFEST_INVALID' });
  });
});
