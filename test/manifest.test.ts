import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isShuttleError, ShuttleError } from '../src/errors.js';
import {
  c4FromSha512,
  c4OfBytes,
  CHAIN_FILE_NAME,
  compileIgnore,
  parseChain,
  parseGeneration,
  readHistory,
  writeGeneration,
  type GenerationInfo,
  type ManifestEntry,
} from '../src/ingest/manifest/index.js';

const INFO: GenerationInfo = {
  tool: { name: 'shuttle', version: '0.1.0' },
  hostname: 'ingest-station.local',
  process: 'transfer',
  ignore: ['.shuttle', '*.shuttle-tmp'],
};

let root: string;
beforeEach(async () => {
  root = await fs.mkdtemp(path.join(os.tmpdir(), 'shuttle-mhl-'));
});
afterEach(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

function hex(n: number, seed: number): string {
  return createHash('sha256').update(`${seed}`).digest('hex').slice(0, n);
}

function entry(p: string, i = 0, over: Partial<ManifestEntry> = {}): ManifestEntry {
  return {
    path: p,
    size: 1000 + i,
    lastModified: new Date(Date.UTC(2024, 4, 17, 9, 30, 12, 345) + i * 1000),
    hashes: { xxh128: hex(32, i), xxh64: hex(16, i + 1e6), md5: hex(32, i + 2e6), sha256: hex(64, i) },
    action: 'original',
    hashDate: new Date(Date.UTC(2024, 4, 17, 10, 0, 0, 7) + i),
    ...over,
  };
}

async function expectManifestInvalid(p: Promise<unknown>, fileFragment: string): Promise<ShuttleError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isShuttleError(err, 'MANIFEST_INVALID'), String(err)).toBe(true);
  expect((err as ShuttleError).message).toContain(fileFragment);
  return err as ShuttleError;
}

/** Base58 by schoolbook long division on the byte array: shares nothing with the BigInt code under test. */
function independentC4(data: Uint8Array): string {
  const alphabet = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
  let num = Array.from(createHash('sha512').update(data).digest());
  let out = '';
  while (num.some((b) => b !== 0)) {
    let rem = 0;
    const next: number[] = [];
    for (const b of num) {
      const acc = rem * 256 + b;
      next.push(Math.floor(acc / 58));
      rem = acc % 58;
    }
    out = alphabet[rem] + out;
    num = next;
  }
  return `c4${out.padStart(88, '1')}`;
}

describe('C4 IDs', () => {
  it('c4-of-known-input-equals-reference-implementation-value', () => {
    // ascmitc/mhl tests/test_hasher.py: hash_data(b"media-hash-list", "c4")
    expect(c4OfBytes(Buffer.from('media-hash-list'))).toBe('c456LycWwpMMS7VDZEKvYv2L1uJS6s4qAFnaJdnQiy5JVbBFZMA8aLDS6SPaJjLqxXH4qZdnbuktopMt9frtC2qL1R');
  });

  it('c4-pads-small-digests-to-90-characters-with-the-alphabet-zero', () => {
    expect(c4FromSha512(new Uint8Array(64))).toBe(`c4${'1'.repeat(88)}`);
    const one = new Uint8Array(64);
    one[63] = 1;
    expect(c4FromSha512(one)).toBe(`c4${'1'.repeat(87)}2`);
    expect(c4FromSha512(new Uint8Array(64).fill(255))).toHaveLength(90);
  });

  it('c4-agrees-with-an-independent-base58-routine', () => {
    for (const s of ['', 'a', 'media-hash-list', '\u00e9\u{1F600}'.repeat(50)]) {
      expect(c4OfBytes(Buffer.from(s))).toBe(independentC4(Buffer.from(s)));
    }
  });
});

describe('writeGeneration and readHistory', () => {
  it('written-generation-parses-back-with-identical-data', async () => {
    const entries = [entry('A001/C0001.MOV', 1), entry('A001/C0002.MOV', 2, { hashes: { xxh64: hex(16, 9) } }), entry('notes.txt', 3, { size: 0 })];
    const info: GenerationInfo = { ...INFO, author: { name: 'Liz & Ben', email: 'dit@example.com', role: 'DIT' }, location: 'Stage 5', comment: 'day <1>' };
    const written = await writeGeneration(root, entries, info);
    expect(written.sequence).toBe(1);

    const doc = parseGeneration(await fs.readFile(written.file, 'utf8'), written.file);
    expect(doc.process).toBe('transfer');
    expect(doc.ignore).toEqual(['.DS_Store', 'ascmhl', 'ascmhl/', '.shuttle', '*.shuttle-tmp']);
    expect(doc.creator.hostname).toBe('ingest-station.local');
    expect(doc.creator.tool).toEqual({ name: 'shuttle', version: '0.1.0' });
    expect(doc.creator.authors).toEqual([{ name: 'Liz & Ben', email: 'dit@example.com', role: 'DIT' }]);
    expect(doc.creator.location).toBe('Stage 5');
    expect(doc.creator.comment).toBe('day <1>');
    expect(doc.files.map((f) => f.path)).toEqual(entries.map((e) => e.path));

    const history = await readHistory(root);
    expect(history.generations).toHaveLength(1);
    expect(history.generations[0]).toMatchObject({ sequence: 1, c4: written.c4, process: 'transfer', fileCount: 3 });
    for (const e of entries) {
      const known = history.files.get(e.path)!;
      const { sha256: _dropped, ...mhlHashes } = e.hashes;
      expect(known.latest.generation).toBe(1);
      expect(known.latest.size).toBe(e.size);
      expect(known.latest.lastModified?.getTime()).toBe(e.lastModified.getTime());
      expect(known.latest.hashes).toEqual(mhlHashes);
      expect(known.reference).toEqual(mhlHashes);
      expect(Object.values(known.latest.actions).every((a) => a === 'original')).toBe(true);
    }
    const rec = doc.files[0]!;
    expect(rec.hashes.map((h) => h.format)).toEqual(['md5', 'xxh128', 'xxh64']); // schema order
    expect(rec.hashes[0]!.hashDate?.getTime()).toBe(entries[0]!.hashDate.getTime());
  });

  it('sha256-never-appears-in-a-generation', async () => {
    const w = await writeGeneration(root, [entry('a.bin', 1)], INFO);
    const xml = await fs.readFile(w.file, 'utf8');
    expect(xml).not.toMatch(/sha256/i);
    expect(xml).toContain('<hashlist version="2.0" xmlns="urn:ASC:MHL:v2.0">');
  });

  it('sequence-numbers-continue-the-chain-across-generations', async () => {
    const when = new Date(Date.UTC(2025, 0, 2, 3, 4, 5));
    const a = await writeGeneration(root, [entry('one', 1)], { ...INFO, creationDate: when });
    const b = await writeGeneration(root, [entry('two', 2)], { ...INFO, creationDate: when });
    const c = await writeGeneration(root, [entry('one', 3, { action: 'verified', hashes: { xxh128: hex(32, 1) } })], { ...INFO, process: 'in-place' });
    expect([a.sequence, b.sequence, c.sequence]).toEqual([1, 2, 3]);
    const folder = path.basename(root);
    expect(path.basename(a.file)).toBe(`0001_${folder}_2025-01-02_030405Z.mhl`);
    expect(path.basename(b.file)).toBe(`0002_${folder}_2025-01-02_030405Z.mhl`);
    expect(path.basename(c.file)).toMatch(new RegExp(`^0003_${folder.replace(/[^\w]/g, '\\$&')}_\\d{4}-\\d{2}-\\d{2}_\\d{6}Z\\.mhl$`));

    const chainFile = path.join(root, 'ascmhl', CHAIN_FILE_NAME);
    const chainXml = await fs.readFile(chainFile, 'utf8');
    expect(chainXml).toContain('<ascmhldirectory xmlns="urn:ASC:MHL:DIRECTORY:v2.0">');
    const links = parseChain(chainXml, chainFile);
    expect(links.map((l) => [l.sequence, l.path])).toEqual([a, b, c].map((g) => [g.sequence, path.basename(g.file)]));

    const history = await readHistory(root);
    expect(history.generations.map((g) => g.sequence)).toEqual([1, 2, 3]);
    expect(history.files.get('one')!.latest.generation).toBe(3);
    expect(history.files.get('one')!.latest.actions).toEqual({ xxh128: 'verified' });
    expect(history.files.get('two')!.latest.generation).toBe(2);
    expect(history.orphans).toEqual([]);
    expect((await fs.readdir(path.join(root, 'ascmhl'))).filter((n) => n.endsWith('.shuttle-tmp'))).toEqual([]);
  });

  it('failed-hashes-never-become-the-reference-for-verification', async () => {
    await writeGeneration(root, [entry('clip', 1)], INFO);
    const altered = hex(32, 77);
    await writeGeneration(root, [entry('clip', 1, { action: 'failed', hashes: { xxh128: altered } })], { ...INFO, process: 'in-place' });
    const known = (await readHistory(root)).files.get('clip')!;
    expect(known.latest.hashes.xxh128).toBe(altered);
    expect(known.latest.actions.xxh128).toBe('failed');
    expect(known.reference.xxh128).toBe(entry('clip', 1).hashes.xxh128);
  });

  it('chain-c4-values-equal-an-independent-c4-of-each-generation-file', async () => {
    await writeGeneration(root, [entry('x', 1)], INFO);
    await writeGeneration(root, [entry('y', 2)], INFO);
    const dir = path.join(root, 'ascmhl');
    const links = parseChain(await fs.readFile(path.join(dir, CHAIN_FILE_NAME), 'utf8'), CHAIN_FILE_NAME);
    expect(links).toHaveLength(2);
    for (const l of links) expect(l.c4).toBe(independentC4(await fs.readFile(path.join(dir, l.path))));
  });

  it('every-generation-lists-the-reference-tools-defaults-keeps-earlier-patterns-and-covers-the-bookkeeping', async () => {
    // ascmhl ignores .DS_Store, ascmhl and ascmhl/ only while a generation lists no pattern; one that lists any
    // replaces them, and without them `ascmhl diff` reported the manifests themselves as new files.
    const first = await writeGeneration(root, [entry('A/1.MOV', 1)], INFO);
    const second = await writeGeneration(root, [entry('A/2.MOV', 2)], { ...INFO, ignore: ['*.tmp', '.shuttle'] });
    const firstIgnore = parseGeneration(await fs.readFile(first.file, 'utf8'), first.file).ignore;
    const secondIgnore = parseGeneration(await fs.readFile(second.file, 'utf8'), second.file).ignore;
    expect(firstIgnore).toEqual(['.DS_Store', 'ascmhl', 'ascmhl/', '.shuttle', '*.shuttle-tmp']);
    expect(secondIgnore).toEqual([...firstIgnore, '*.tmp']); // nothing dropped, nothing twice

    // ascmhl matches each pattern against the file's absolute path (pathspec drops the leading '/'), so a
    // pattern with an inner '/' would be anchored at the file-system root and never match in a destination.
    for (const p of firstIgnore) expect(p.replace(/\/$/, ''), p).not.toContain('/');
    const matches = compileIgnore(firstIgnore);
    const asTheToolSeesIt = (rel: string): string => `${root.slice(1)}/${rel}`;
    const bookkeeping = [
      'ascmhl',
      path.relative(root, first.file),
      `ascmhl/${CHAIN_FILE_NAME}`,
      'ascmhl/.ascmhl_chain.xml.0123abcd.shuttle-tmp',
      '.shuttle',
      '.shuttle/lock',
      '.shuttle/destination.json',
      'A/.2.MOV.89abcdef.shuttle-tmp',
      'A/.DS_Store',
    ];
    for (const rel of bookkeeping) expect(matches(asTheToolSeesIt(rel), false), rel).toBe(true);
    for (const rel of ['A/1.MOV', 'A/2.MOV', 'ascmhl.MOV', 'shuttle/x']) expect(matches(asTheToolSeesIt(rel), false), rel).toBe(false);
  });

  it('ignore-patterns-match-what-the-reference-tool-matches', () => {
    // What pathspec 0.11's gitwildmatch (ascmhl's matcher) returned for each pattern over PATHS, run by hand.
    const PATHS = [
      '.DS_Store',
      'sub/.DS_Store',
      'ascmhl',
      'ascmhl/0001_A_2024-01-01_000000Z.mhl',
      'ascmhl/ascmhl_chain.xml',
      'sub/ascmhl/x.mhl',
      '.shuttle',
      '.shuttle/lock',
      'sub/.shuttle/lock',
      '2024/.IMG.CR2.0123abcd.shuttle-tmp',
      'a.tmp',
      'd/a.tmp',
      'cache',
      'cache/x',
      'd/cache/x',
      'top',
      'top/f',
      'd/top',
      'a/b',
      'a/q/r/b',
      'a/b/c',
      'x',
      'd/x',
      'd/x/f',
      'Cache/f',
      'cache.txt',
    ];
    const observed: Record<string, string[]> = {
      '.DS_Store': ['.DS_Store', 'sub/.DS_Store'],
      ascmhl: ['ascmhl', 'ascmhl/0001_A_2024-01-01_000000Z.mhl', 'ascmhl/ascmhl_chain.xml', 'sub/ascmhl/x.mhl'],
      'ascmhl/': ['ascmhl/0001_A_2024-01-01_000000Z.mhl', 'ascmhl/ascmhl_chain.xml', 'sub/ascmhl/x.mhl'],
      '.shuttle': ['.shuttle', '.shuttle/lock', 'sub/.shuttle/lock'],
      '*.shuttle-tmp': ['2024/.IMG.CR2.0123abcd.shuttle-tmp'],
      '*.tmp': ['a.tmp', 'd/a.tmp'],
      'cache/': ['cache/x', 'd/cache/x'],
      '/top': ['top', 'top/f'],
      'a/**/b': ['a/b', 'a/q/r/b', 'a/b/c'],
      '**/x': ['cache/x', 'd/cache/x', 'x', 'd/x', 'd/x/f'],
      '[Cc]ache': ['cache', 'cache/x', 'd/cache/x', 'Cache/f'],
    };
    for (const [pattern, expected] of Object.entries(observed)) {
      const matches = compileIgnore([pattern]);
      expect(
        PATHS.filter((p) => matches(p, false)),
        pattern,
      ).toEqual(expected);
    }
  });

  it('tampered-generation-is-reported-as-manifest-invalid-naming-file-and-both-c4-values', async () => {
    const w = await writeGeneration(root, [entry('x', 1)], INFO);
    const xml = await fs.readFile(w.file, 'utf8');
    const good = entry('x', 1).hashes.xxh128!;
    await fs.writeFile(w.file, xml.replace(good, `0${good.slice(1)}` === good ? `1${good.slice(1)}` : `0${good.slice(1)}`));
    const err = await expectManifestInvalid(readHistory(root), path.basename(w.file));
    expect(err.context['expected']).toBe(w.c4);
    expect(err.context['actual']).toBe(c4OfBytes(await fs.readFile(w.file)));
    expect(err.message).toContain(w.c4);
    expect(err.message).toContain(String(err.context['actual']));
  });

  it('malformed-generation-xml-is-manifest-invalid-with-the-file-name', async () => {
    const w = await writeGeneration(root, [entry('x', 1)], INFO);
    const broken = Buffer.from('<?xml version="1.0"?>\n<hashlist version="2.0"><creatorinfo></hashlist>');
    await fs.writeFile(w.file, broken);
    // Re-seal the chain so the parser, not the C4 check, meets the damage.
    const chainFile = path.join(root, 'ascmhl', CHAIN_FILE_NAME);
    await fs.writeFile(chainFile, (await fs.readFile(chainFile, 'utf8')).replace(w.c4, c4OfBytes(broken)));
    const err = await expectManifestInvalid(readHistory(root), path.basename(w.file));
    expect(err.message).toMatch(/malformed XML/);
  });

  it('malformed-or-inconsistent-chain-is-manifest-invalid-never-a-crash', async () => {
    await writeGeneration(root, [entry('x', 1)], INFO);
    const chainFile = path.join(root, 'ascmhl', CHAIN_FILE_NAME);
    const original = await fs.readFile(chainFile, 'utf8');
    for (const bad of [
      'not xml at all',
      original.replace('sequencenr="1"', 'sequencenr="2"'),
      original.replace(/<c4>[^<]*<\/c4>/, '<c4>c4tooShort</c4>'),
      original.replace(/<path>[^<]*<\/path>/, '<path>../../etc/passwd</path>'),
      '\u0000\u0001binary',
      '<!DOCTYPE a [<!ENTITY e "x">]><ascmhldirectory>&e;</ascmhldirectory>',
    ]) {
      await fs.writeFile(chainFile, bad);
      await expectManifestInvalid(readHistory(root), CHAIN_FILE_NAME);
    }
    await fs.rm(chainFile);
    await expectManifestInvalid(readHistory(root), CHAIN_FILE_NAME);
  });

  it('generation-listed-in-the-chain-but-missing-is-manifest-invalid', async () => {
    const w = await writeGeneration(root, [entry('x', 1)], INFO);
    await fs.rm(w.file);
    await expectManifestInvalid(readHistory(root), path.basename(w.file));
    // The next generation inherits its ignore patterns, and ascmhl refuses such a history too.
    const before = await fs.readdir(path.join(root, 'ascmhl'));
    await expectManifestInvalid(writeGeneration(root, [entry('y', 2)], INFO), path.basename(w.file));
    expect(await fs.readdir(path.join(root, 'ascmhl'))).toEqual(before);
  });

  it('no-ascmhl-folder-is-an-empty-history-and-reading-creates-nothing', async () => {
    const h = await readHistory(root);
    expect(h.generations).toEqual([]);
    expect(h.files.size).toBe(0);
    expect(await fs.readdir(root)).toEqual([]);
  });

  it('hostile-and-unicode-names-round-trip-exactly', async () => {
    const names = [
      'a&b<c>d"e\'f.mov',
      ' leading and trailing spaces ',
      'tab\there/new\nline/cr\rname',
      'looks like &amp; an entity &#65;',
      ']]> cdata end',
      'caf\u00e9/cafe\u0301 (nfd)/\u{1F3AC}\u{1F600}.mov',
      '\u05e2\u05d1\u05e8\u05d9\u05ea \u0627\u0644\u0639\u0631\u0628\u064a\u0629/\u65e5\u672c\u8a9e.txt',
      'back\\slash and del\u007f and c1\u0085',
      '0123',
      '-',
      'x'.repeat(255),
    ];
    const entries = names.map((n, i) => entry(n, i));
    const w = await writeGeneration(root, entries, INFO);
    const doc = parseGeneration(await fs.readFile(w.file, 'utf8'), w.file);
    expect(doc.files.map((f) => f.path)).toEqual(names);
    const history = await readHistory(root);
    expect([...history.files.keys()].sort()).toEqual([...names].sort());
  });

  it('names-xml-cannot-hold-or-that-escape-the-root-are-refused-before-anything-is-written', async () => {
    for (const bad of ['ctrl\u0001char', 'lone\ud800surrogate', '../escape', '/absolute', 'a//b', 'a/./b', 'trailing/', '', 'nul\0byte', 'bad\ufffe']) {
      const err = await writeGeneration(root, [entry('fine', 1), entry(bad, 2)], INFO).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isShuttleError(err, 'NAME_INVALID'), `${JSON.stringify(bad)}: ${String(err)}`).toBe(true);
    }
    expect(await fs.readdir(path.join(root, 'ascmhl'))).toEqual([]);
  });

  it('entries-without-an-mhl-hash-or-an-empty-generation-are-refused', async () => {
    const noMhl = writeGeneration(root, [entry('a', 1, { hashes: { sha256: hex(64, 1) } })], INFO);
    await expect(noMhl).rejects.toMatchObject({ code: 'INTERNAL' });
    await expect(writeGeneration(root, [], INFO)).rejects.toMatchObject({ code: 'INTERNAL' });
    await expect(writeGeneration(root, [entry('a', 1), entry('a', 2)], INFO)).rejects.toMatchObject({ code: 'INTERNAL' });
    expect(await fs.readdir(path.join(root, 'ascmhl'))).toEqual([]);
  });

  it('an-aborted-write-leaves-no-file-behind', async () => {
    const ac = new AbortController();
    async function* slow(): AsyncGenerator<ManifestEntry> {
      for (let i = 0; i < 50_000; i++) {
        if (i === 20_000) ac.abort();
        yield entry(`f/${i}`, i);
      }
    }
    await expect(writeGeneration(root, slow(), INFO, ac.signal)).rejects.toMatchObject({ code: 'ABORTED' });
    expect(await fs.readdir(path.join(root, 'ascmhl'))).toEqual([]);
  });

  it('crash-between-generation-and-chain-update-is-rolled-forward-by-the-next-write', async () => {
    await writeGeneration(root, [entry('a', 1)], INFO);
    const chainFile = path.join(root, 'ascmhl', CHAIN_FILE_NAME);
    const chainAfterFirst = await fs.readFile(chainFile);
    const second = await writeGeneration(root, [entry('b', 2)], INFO);
    await fs.writeFile(chainFile, chainAfterFirst); // as if the chain update never happened
    const before = await readHistory(root);
    expect(before.orphans).toEqual([path.basename(second.file)]);
    expect(before.files.has('b')).toBe(false);

    const third = await writeGeneration(root, [entry('c', 3)], INFO);
    expect(third.sequence).toBe(3);
    const after = await readHistory(root);
    expect(after.generations.map((g) => [g.sequence, g.name])).toEqual([
      [1, before.generations[0]!.name],
      [2, path.basename(second.file)],
      [3, path.basename(third.file)],
    ]);
    expect(after.orphans).toEqual([]);
    expect(after.files.has('b')).toBe(true);
  });

  it('an-unlisted-generation-that-cannot-be-adopted-stops-the-write', async () => {
    await writeGeneration(root, [entry('a', 1)], INFO);
    const stray = path.join(root, 'ascmhl', '0007_stray_2020-01-01_000000Z.mhl');
    await fs.writeFile(stray, 'whatever');
    await expectManifestInvalid(writeGeneration(root, [entry('b', 2)], INFO), '0007_stray');
    expect((await readHistory(root)).orphans).toEqual([path.basename(stray)]);
  });

  it('concurrent-writers-in-one-process-get-distinct-consecutive-numbers', async () => {
    const results = await Promise.all([1, 2, 3, 4, 5].map((i) => writeGeneration(root, [entry(`f${i}`, i)], INFO)));
    expect(results.map((r) => r.sequence).sort()).toEqual([1, 2, 3, 4, 5]);
    expect((await readHistory(root)).generations).toHaveLength(5);
  });

  it('twenty-thousand-entries-stream-out-and-read-back', async () => {
    const n = 20_000;
    function* many(): Generator<ManifestEntry> {
      for (let i = 0; i < n; i++) yield entry(`DCIM/${String(Math.floor(i / 1000)).padStart(3, '0')}CANON/IMG_${String(i).padStart(5, '0')}.CR3`, i);
    }
    const w = await writeGeneration(root, many(), INFO);
    const history = await readHistory(root);
    expect(history.files.size).toBe(n);
    expect(history.generations[0]!.fileCount).toBe(n);
    expect(history.files.get('DCIM/019CANON/IMG_19999.CR3')!.latest.hashes.xxh128).toBe(hex(32, 19999));
    expect(w.c4).toBe(independentC4(await fs.readFile(w.file)));
  });

  it('reads-documents-shaped-like-other-tools-output', async () => {
    // Namespace prefix, pretty-printed values, microsecond offsets, roothash/directoryhash, references, empty ignore, c4 hashes.
    const xml = `<?xml version="1.0" encoding="UTF-8"?>
<ascmhl:hashlist version="2.0" xmlns:ascmhl="urn:ASC:MHL:v2.0">
  <ascmhl:creatorinfo>
    <ascmhl:creationdate>2020-01-16T09:15:00+00:00</ascmhl:creationdate>
    <ascmhl:hostname>myHost.local</ascmhl:hostname>
    <ascmhl:tool version="1.0">ascmhl.py</ascmhl:tool>
  </ascmhl:creatorinfo>
  <ascmhl:processinfo>
    <ascmhl:process>in-place</ascmhl:process>
    <ascmhl:roothash><ascmhl:content><ascmhl:xxh64 action="original">28ed09733f793dfc</ascmhl:xxh64></ascmhl:content><ascmhl:structure><ascmhl:xxh64 action="original">89e4debdb80cc068</ascmhl:xxh64></ascmhl:structure></ascmhl:roothash>
    <ascmhl:ignore/>
  </ascmhl:processinfo>
  <ascmhl:hashes>
    <ascmhl:hash>
      <ascmhl:path size="6" lastmodificationdate="2020-01-15T13:00:00-08:00">Stuff.txt</ascmhl:path>
      <ascmhl:c4 action="original">${c4OfBytes(Buffer.from('stuff\n'))}</ascmhl:c4>
      <ascmhl:md5 action="verified" hashdate="2022-02-08T14:54:36.763024-08:00">
        9290A2CA3F586CB53DA7CB516610FED2
      </ascmhl:md5>
    </ascmhl:hash>
    <ascmhl:directoryhash>
      <ascmhl:path>A/</ascmhl:path>
      <ascmhl:content><ascmhl:xxh64 action="original">7680e5f98f4a80fd</ascmhl:xxh64></ascmhl:content>
      <ascmhl:structure><ascmhl:xxh64 action="original">8f4a80fd7680e5f9</ascmhl:xxh64></ascmhl:structure>
    </ascmhl:directoryhash>
  </ascmhl:hashes>
</ascmhl:hashlist>`;
    const g = parseGeneration(xml, 'other.mhl');
    expect(g.process).toBe('in-place');
    expect(g.files).toHaveLength(1);
    const f = g.files[0]!;
    expect(f).toMatchObject({ path: 'Stuff.txt', size: 6 });
    expect(f.lastModified?.toISOString()).toBe('2020-01-15T21:00:00.000Z');
    expect(f.hashes.map((h) => [h.format, h.value, h.action])).toEqual([
      ['c4', c4OfBytes(Buffer.from('stuff\n')), 'original'],
      ['md5', '9290a2ca3f586cb53da7cb516610fed2', 'verified'],
    ]);
    expect(f.hashes[1]!.hashDate?.toISOString()).toBe('2022-02-08T22:54:36.763Z');
  });

  it('generation-documents-missing-required-parts-are-manifest-invalid', () => {
    const head =
      '<hashlist version="2.0" xmlns="urn:ASC:MHL:v2.0"><creatorinfo><creationdate>2020-01-01T00:00:00Z</creationdate><hostname>h</hostname><tool>t</tool></creatorinfo><processinfo><process>transfer</process></processinfo>';
    const cases = [
      '<hashlist version="1.0"/>',
      '<mhl/>',
      `${head}<hashes><hash><path>a</path><xxh64>0123456789abcdef</xxh64></hash></hashes></hashlist>`, // no action
      `${head}<hashes><hash><path>a</path><xxh64 action="maybe">0123456789abcdef</xxh64></hash></hashes></hashlist>`,
      `${head}<hashes><hash><path>a</path></hash></hashes></hashlist>`,
      `${head}<hashes><hash><path size="-1">a</path><xxh64 action="original">00</xxh64></hash></hashes></hashlist>`,
      `${head}<hashes><hash><path>a&unknown;</path><xxh64 action="original">00</xxh64></hash></hashes></hashlist>`,
      `${head}<hashes><hash><path>a&#1;</path><xxh64 action="original">00</xxh64></hash></hashes></hashlist>`,
      `${head}<hashes><hash><path lastmodificationdate="yesterday">a</path><xxh64 action="original">00</xxh64></hash></hashes></hashlist>`,
      `${head}<hashes><hash><path>a</path><xxh64 action="original">not-hex</xxh64></hash></hashes></hashlist>`,
      head.replace('transfer', 'teleport') + '</hashlist>',
    ];
    for (const xml of cases) {
      let err: unknown;
      try {
        parseGeneration(xml, 'case.mhl');
      } catch (e) {
        err = e;
      }
      expect(isShuttleError(err, 'MANIFEST_INVALID'), xml).toBe(true);
      expect((err as Error).message).toContain('case.mhl');
    }
  });
});
