import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MultiHasher, type HashAlgorithm, type HashSet } from '../src/io/hashing.js';
import { c4OfBytes, parseChain, parseGeneration, readHistory, writeGeneration, type CreatorInfo, type ManifestEntry } from '../src/ingest/manifest/index.js';
import { verifyDestination, type VerifyProgress, type VerifyReport } from '../src/ingest/verify.js';
import { ingestJson, runCli } from './support/cli.js';
import { bytes, writeBytes } from './support/fixtures.js';

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
    await put('sub/ascmhl/nested', 'a nested ascmhl folder is a child history, which ascmhl/ in every generation ignores');
    const report = await verifyDestination(root, { creator: CREATOR, strict: true });
    expect(report.unlisted).toEqual(['sub/.shuttle/not-root']);
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
    expect(doc.ignore).toEqual(['.DS_Store', 'ascmhl', 'ascmhl/', '*.xmp-backup/']);
    expect(doc.creator.hostname).toBe('verify-host');
    expect(doc.creator.authors).toEqual([{ name: 'Loader' }]);
    const byPath = new Map(doc.files.map((f) => [f.path, f]));
    expect([...byPath.keys()].sort()).toEqual(['bad.bin', 'good.bin']); // a missing file has no hash to record
    expect(byPath.get('good.bin')!.hashes.map((h) => [h.format, h.action])).toEqual([
      ['md5', 'verified'],
      ['xxh64', 'verified'],
    ]);
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
    await put('a.bin', randomBytes((70 * 1024 * 1024) / 64)); // ~1.1 MiB
    await put('b.bin', 'bb');
    await seal(['a.bin', 'b.bin']);
    const seen: VerifyProgress[] = [];
    await verifyDestination(root, { creator: CREATOR, onProgress: (p) => seen.push(p) });
    const last = seen.at(-1)!;
    expect(last).toEqual({ files: 2, bytes: (70 * 1024 * 1024) / 64 + 2, totalFiles: 2, totalBytes: (70 * 1024 * 1024) / 64 + 2 });
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

  it('a-generation-listing-no-pattern-ignores-what-the-reference-tool-ignores-by-default', async () => {
    await put('a.txt', 'a');
    await put('.DS_Store', 'finder');
    await put('sub/.DS_Store', 'finder');
    const xxh = (await hashOf('a.txt', ['xxh128'])).xxh128!;
    const name = '0001_x_2024-01-01_000000Z.mhl';
    const xml = `<?xml version="1.0" encoding="UTF-8"?>
<hashlist version="2.0" xmlns="urn:ASC:MHL:v2.0">
  <creatorinfo><creationdate>2024-01-01T00:00:00+00:00</creationdate><hostname>h</hostname><tool version="1">other</tool></creatorinfo>
  <processinfo><process>in-place</process></processinfo>
  <hashes><hash><path size="1">a.txt</path><xxh128 action="original">${xxh}</xxh128></hash></hashes>
</hashlist>
`;
    await put(`ascmhl/${name}`, xml);
    await put(
      'ascmhl/ascmhl_chain.xml',
      `<ascmhldirectory xmlns="urn:ASC:MHL:DIRECTORY:v2.0"><hashlist sequencenr="1"><path>${name}</path><c4>${c4OfBytes(Buffer.from(xml))}</c4></hashlist></ascmhldirectory>`,
    );
    const report = await verifyDestination(root, { creator: CREATOR, strict: true });
    expect(report).toMatchObject({ ok: true, verified: ['a.txt'], unlisted: [] });
  });

  it('records-another-tool-made-of-the-manifests-or-shuttle-folder-are-not-checked', async () => {
    // ascmhl hashed ascmhl/ (and .shuttle/ when listed nowhere) while Shuttle's generations lacked its defaults;
    // the chain changes with every generation, so such a record would fail verification for ever.
    await put('a.txt', 'a');
    await seal(['a.txt']);
    await put('.shuttle/lock', '4242');
    const recorded = ['ascmhl/ascmhl_chain.xml', '.shuttle/lock'];
    const entries: ManifestEntry[] = [];
    for (const rel of recorded)
      entries.push({
        path: rel,
        size: (await fs.stat(path.join(root, rel))).size,
        lastModified: new Date(),
        hashes: await hashOf(rel, ['xxh128']),
        action: 'original',
        hashDate: new Date(),
      });
    await writeGeneration(root, entries, { tool: { name: 'ascmhl', version: '1.2' }, hostname: 'h', process: 'in-place' });
    await put('.shuttle/lock', '4343');
    const report = await verifyDestination(root, { creator: CREATOR, strict: true });
    expect(report.mismatched).toEqual([]);
    expect(report.verified).toEqual(['a.txt']);
    expect(report.ok).toBe(true);
  });
});

/**
 * One generation as ascmhl 1.2 (`ascmhl create . -i '*.tmp' --author_name Liz --location 'Stage 5'`, run in a
 * UTC+2 zone) writes it, typed from what it printed: local offsets, whole seconds in creationdate and
 * lastmodificationdate, microseconds in hashdate, files in post order with a directoryhash after each folder's
 * files, a roothash, no size on an empty file, its default ignore patterns before the `-i` one.
 */
const REFERENCE_GENERATION_NAME = '0001_A002R2EC_2024-05-17_093040Z.mhl';
const REFERENCE_GENERATION = `<?xml version="1.0" encoding="UTF-8"?>
<hashlist version="2.0" xmlns="urn:ASC:MHL:v2.0">
  <creatorinfo>
    <creationdate>2024-05-17T11:30:40+02:00</creationdate>
    <hostname>dit-cart</hostname>
    <tool version="1.2">ascmhl</tool>
    <author>Liz</author>
    <location>Stage 5</location>
  </creatorinfo>
  <processinfo>
    <process>in-place</process>
    <roothash>
      <content>
        <xxh128 hashdate="2024-05-17T11:30:40.501300+02:00">897236c6494d424d0c6206454583707d</xxh128>
      </content>
      <structure>
        <xxh128 hashdate="2024-05-17T11:30:40.501300+02:00">dfb41bd0dccdcedb2c49f81482625355</xxh128>
      </structure>
    </roothash>
    <ignore>
      <pattern>.DS_Store</pattern>
      <pattern>ascmhl</pattern>
      <pattern>ascmhl/</pattern>
      <pattern>*.tmp</pattern>
    </ignore>
  </processinfo>
  <hashes>
    <hash>
      <path size="15" lastmodificationdate="2024-05-17T11:30:12+02:00">Sound/A002S001.WAV</path>
      <xxh128 action="original" hashdate="2024-05-17T11:30:40.501104+02:00">3abc20f938f455f2a7c68e70b8d2c8a2</xxh128>
    </hash>
    <directoryhash>
      <path lastmodificationdate="2024-05-17T11:30:12+02:00">Sound</path>
      <content>
        <xxh128 hashdate="2024-05-17T11:30:40.501155+02:00">87b27dfe5858db9dddaed75a0fc63254</xxh128>
      </content>
      <structure>
        <xxh128 hashdate="2024-05-17T11:30:40.501155+02:00">b54fec1906c68f0d199cb71a48afc3fd</xxh128>
      </structure>
    </directoryhash>
    <hash>
      <path size="9" lastmodificationdate="2024-05-17T11:30:12+02:00">A002C001.MOV</path>
      <xxh128 action="original" hashdate="2024-05-17T11:30:40.501215+02:00">c5bdbe40608e8c88efbddf94b6eb16e6</xxh128>
    </hash>
    <hash>
      <path lastmodificationdate="2024-05-17T11:30:12+02:00">notes.txt</path>
      <xxh128 action="original" hashdate="2024-05-17T11:30:40.501268+02:00">99aa06d3014798d86001c324468d497f</xxh128>
    </hash>
  </hashes>
</hashlist>
`;
/** What ascmhl's own C4 routine (ascmhl.hasher.hash_file(..., 'c4')) gave for REFERENCE_GENERATION's bytes. */
const REFERENCE_GENERATION_C4 = 'c434dVpgYUSovduRynNtGPTPFeDK8dp7sHBmFma55eh2mNcLqa15qUr55T5HCgYra1o938PwUcTzrFQuwyksYYQMkz';
const REFERENCE_CHAIN_ENTRY = `  <hashlist sequencenr="1">
    <path>${REFERENCE_GENERATION_NAME}</path>
    <c4>${REFERENCE_GENERATION_C4}</c4>
  </hashlist>
`;
const REFERENCE_CHAIN = `<?xml version="1.0" encoding="UTF-8"?>
<ascmhldirectory xmlns="urn:ASC:MHL:DIRECTORY:v2.0">
${REFERENCE_CHAIN_ENTRY}</ascmhldirectory>
`;

describe('a history the reference tool started', () => {
  it('is-continued-by-the-next-ingest-and-verified-with-its-ignore-patterns-kept', async () => {
    const dest = path.join(root, 'A002R2EC');
    // The files ascmhl hashed (its xxh128 values above are theirs: lowercase, canonical byte order) and one it ignored.
    await writeBytes(path.join(dest, 'A002C001.MOV'), 'clip one\n');
    await writeBytes(path.join(dest, 'Sound/A002S001.WAV'), 'take two sound\n');
    await writeBytes(path.join(dest, 'notes.txt'), '');
    await writeBytes(path.join(dest, 'scratch.tmp'), 'scratch\n');
    await writeBytes(path.join(dest, 'ascmhl', REFERENCE_GENERATION_NAME), REFERENCE_GENERATION);
    await writeBytes(path.join(dest, 'ascmhl/ascmhl_chain.xml'), REFERENCE_CHAIN);
    expect(c4OfBytes(Buffer.from(REFERENCE_GENERATION))).toBe(REFERENCE_GENERATION_C4);

    const card = path.join(root, 'card');
    await writeBytes(path.join(card, 'DCIM/100CANON/IMG_0001.CR2'), bytes(70_000, 3), new Date('2024-05-17T10:00:00Z'));
    const r = await ingestJson([card, '--dest', dest, '--state', path.join(root, 'state')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.summary).toMatchObject({ copied: 1, failed: 0, status: 'complete' });

    // The chain keeps ascmhl's entry byte for byte and adds ours, numbered on, with the C4 of our file.
    const chainFile = path.join(dest, 'ascmhl/ascmhl_chain.xml');
    const chainXml = await fs.readFile(chainFile, 'utf8');
    expect(chainXml).toContain(REFERENCE_CHAIN_ENTRY);
    const links = parseChain(chainXml, chainFile);
    expect(links.map((l) => l.sequence)).toEqual([1, 2]);
    expect(links[0]).toEqual({ sequence: 1, path: REFERENCE_GENERATION_NAME, c4: REFERENCE_GENERATION_C4 });
    expect(links[1]!.path).toMatch(/^0002_A002R2EC_\d{4}-\d{2}-\d{2}_\d{6}Z\.mhl$/);
    const ours = await fs.readFile(path.join(dest, 'ascmhl', links[1]!.path));
    expect(links[1]!.c4).toBe(c4OfBytes(ours));
    expect(await fs.readFile(path.join(dest, 'ascmhl', REFERENCE_GENERATION_NAME), 'utf8')).toBe(REFERENCE_GENERATION);

    const gen = parseGeneration(ours.toString('utf8'), links[1]!.path);
    expect(gen.process).toBe('transfer');
    expect(gen.ignore).toEqual(['.DS_Store', 'ascmhl', 'ascmhl/', '*.tmp', '.shuttle', '*.shuttle-tmp', '/shuttle-reports/']);
    expect(gen.files).toHaveLength(1);

    const v = await runCli(['verify', '--json', '--strict', dest]);
    expect(v.code, v.stderr).toBe(0);
    const report = JSON.parse(v.stdout) as VerifyReport;
    expect(report).toMatchObject({ ok: true, generations: 2, unlisted: [], missing: [], mismatched: [], unverifiable: [] });
    expect(report.verified).toEqual(['A002C001.MOV', 'Sound/A002S001.WAV', gen.files[0]!.path, 'notes.txt'].sort());
  });
});
