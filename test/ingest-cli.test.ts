import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { chmod, mkdir, readFile, readdir, rm, writeFile, stat, chown } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { acquireLock, destinationLockPath } from '../src/store/lock.js';
import { ingestJson, runCli } from './support/cli.js';
import { bytes, writeBytes, writeJpeg } from './support/fixtures.js';
import { contentMultiset, listTree, tempDir, tempFilesUnder } from './support/tree.js';

let work: { path: string; cleanup: () => Promise<void> };
let src: string;
let destA: string;
let destB: string;
let state: string;

beforeEach(async () => {
  work = await tempDir();
  src = join(work.path, 'card');
  destA = join(work.path, 'libA');
  destB = join(work.path, 'libB');
  state = join(work.path, 'state');
  await mkdir(src, { recursive: true });
});
afterEach(async () => {
  await work.cleanup();
});

async function smallCard(): Promise<void> {
  await writeJpeg(join(src, 'DCIM/100CANON/IMG_0001.JPG'), { date: '2026:03:14 15:09:26', seed: 1 });
  await writeBytes(join(src, 'DCIM/100CANON/IMG_0001.CR2'), bytes(300_000, 2));
  await writeBytes(join(src, 'DCIM/100CANON/IMG_0001.XMP'), '<x:xmpmeta xmlns:x="adobe:ns:meta/"/>');
  await writeJpeg(join(src, 'DCIM/100CANON/IMG_0002.JPG'), { date: '2026:03:15 08:00:00', seed: 3 });
  await writeJpeg(join(src, 'DCIM/101CANON/IMG_0001.JPG'), { date: '2026:03:14 16:00:00', seed: 4 });
  await writeBytes(join(src, 'MISC/notes.txt'), 'field notes\n', new Date('2026-03-14T12:00:00Z'));
}

const ingest = (...args: string[]) => ingestJson([src, '--dest', destA, '--state', state, ...args]);

describe('ingest', () => {
  test('copies-every-file-to-every-destination-and-verifies-it', async () => {
    await smallCard();
    const r = await ingestJson([src, '--dest', destA, '--dest', destB, '--state', state]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.summary).toMatchObject({ files: 6, copied: 6, alreadyVerified: 0, skipped: [], failed: 0, status: 'complete' });
    const source = await listTree(src);
    expect(r.summary.bytes).toBe([...source.values()].reduce((n, f) => n + f.size, 0));
    for (const d of [destA, destB]) {
      const tree = await listTree(d, { skipShuttle: true });
      expect(contentMultiset(tree)).toEqual(contentMultiset(source));
      expect(await tempFilesUnder(d)).toEqual([]);
    }
    expect(r.summary.destinations.map((d) => [d.verified, d.failed])).toEqual([
      [6, 0],
      [6, 0],
    ]);
  });

  test('names-files-by-capture-date-and-keeps-raw-jpeg-pairs-together', async () => {
    await smallCard();
    const r = await ingest();
    expect(r.code, r.stderr).toBe(0);
    const tree = await listTree(destA, { skipShuttle: true });
    expect([...tree.keys()].sort()).toEqual([
      '2026/2026-03-14/IMG_0001.CR2',
      '2026/2026-03-14/IMG_0001.JPG',
      '2026/2026-03-14/IMG_0001.XMP',
      '2026/2026-03-14/IMG_0001_1.JPG',
      '2026/2026-03-14/notes.txt',
      '2026/2026-03-15/IMG_0002.JPG',
    ]);
    const src1 = await readFile(join(src, 'DCIM/100CANON/IMG_0001.JPG'));
    expect((await readFile(join(destA, '2026/2026-03-14/IMG_0001.JPG'))).equals(src1)).toBe(true);
  });

  test('removes-probe-and-marker-temps-a-crash-left-but-not-temp-named-files-deeper-in-the-library', async () => {
    await smallCard();
    expect((await ingest()).code).toBe(0);
    const leftovers = [join(destA, '.shuttle-probe.0123abcd.shuttle-tmp'), join(destA, '.shuttle', '.destination.json.deadbeef.shuttle-tmp')];
    // Deeper folders are the user's library: Shuttle's own file temps there are tracked by the journal instead.
    const deep = join(destA, '2026', '.IMG_0009.JPG.0badf00d.shuttle-tmp');
    for (const p of [...leftovers, deep]) await writeFile(p, 'x');
    const again = await ingest();
    expect(again.code, again.stderr).toBe(0);
    expect(await tempFilesUnder(destA)).toEqual([deep]);
  });

  test('second-run-skips-every-known-file', async () => {
    await smallCard();
    expect((await ingest()).code).toBe(0);
    const again = await ingest();
    expect(again.code).toBe(0);
    expect(again.summary).toMatchObject({ files: 6, copied: 0, alreadyVerified: 6, failed: 0 });
    expect(again.summary.destinations[0]).toMatchObject({ verified: 6, bytes: 0 });
  });

  test('preserves-source-modification-times', async () => {
    await smallCard();
    await ingest();
    const st = await stat(join(destA, '2026/2026-03-14/notes.txt'));
    expect(st.mtime.toISOString()).toBe('2026-03-14T12:00:00.000Z');
  });

  test('identical-content-is-not-stored-twice-at-a-destination', async () => {
    const data = bytes(50_000, 9);
    await writeBytes(join(src, 'a/one.bin'), data, new Date('2026-01-01T10:00:00Z'));
    await writeBytes(join(src, 'b/two.bin'), data, new Date('2026-01-01T10:00:00Z'));
    const r = await ingest();
    expect(r.code, r.stderr).toBe(0);
    expect(r.summary).toMatchObject({ files: 2, failed: 0 });
    const tree = await listTree(destA, { skipShuttle: true });
    expect(tree.size).toBe(1);
    expect(r.summary.destinations[0]).toMatchObject({ verified: 2, bytes: 50_000 });
  });

  test('writes-an-asc-mhl-generation-that-verify-accepts', async () => {
    await smallCard();
    await ingest();
    const mhl = await readdir(join(destA, 'ascmhl'));
    expect(mhl.filter((f) => f.endsWith('.mhl'))).toHaveLength(1);
    expect(mhl).toContain('ascmhl_chain.xml');
    const v = await runCli(['verify', destA, '--json']);
    expect(v.code, v.stderr).toBe(0);
    const rep = JSON.parse(v.stdout) as { ok: boolean; counts: Record<string, number> };
    expect(rep.ok).toBe(true);
  });

  test('verify-finds-a-tampered-file-and-writes-nothing-without-record', async () => {
    await smallCard();
    await ingest();
    const f = join(destA, '2026/2026-03-15/IMG_0002.JPG');
    const b = await readFile(f);
    b[b.length - 10] = b[b.length - 10]! ^ 0xff;
    await writeFile(f, b);
    const before = await readdir(join(destA, 'ascmhl'));
    const v = await runCli(['verify', destA, '--json']);
    expect(v.code).toBe(1);
    expect(v.stdout).toContain('IMG_0002.JPG');
    expect(await readdir(join(destA, 'ascmhl'))).toEqual(before);
  });

  test('zero-byte-and-unicode-names-are-copied-and-verified', async () => {
    await writeBytes(join(src, 'empty.dat'), '', new Date('2026-02-02T10:00:00Z'));
    await writeBytes(join(src, 'Überraschung 日本 ✓.txt'), 'ok', new Date('2026-02-02T10:00:00Z'));
    const r = await ingest();
    expect(r.code, r.stderr).toBe(0);
    const tree = await listTree(destA, { skipShuttle: true });
    expect(tree.get('2026/2026-02-02/empty.dat')?.size).toBe(0);
    expect(tree.has('2026/2026-02-02/Überraschung 日本 ✓.txt'.normalize('NFC'))).toBe(true);
  });

  test('hostile-names-are-sanitized-and-reported', async () => {
    const when = new Date('2026-02-02T10:00:00Z');
    await writeBytes(join(src, 'ctrl\u0001name.jpg'), 'x', when);
    await writeBytes(join(src, `${'é'.repeat(125)}.jpg`), 'y', when);
    await writeBytes(join(src, 'what?.jpg'), 'z', when);
    const r = await ingest();
    expect(r.code, r.stderr).toBe(0);
    expect(r.summary.renamed.map((x) => x.from).sort()).toEqual(['ctrl\u0001name.jpg', 'what?.jpg']);
    const names = [...(await listTree(destA, { skipShuttle: true })).keys()];
    expect(names).toHaveLength(3);
    for (const n of names) {
      expect(n).not.toMatch(/[\u0000-\u001f?]/);
      for (const seg of n.split('/')) expect(Buffer.byteLength(seg)).toBeLessThanOrEqual(255);
    }
  });

  test('broken-exif-falls-back-to-the-file-time', async () => {
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe1, 0x00, 0x40]), Buffer.from('Exif\0\0MM\0*\0\0\0\x08\xff\xff'), bytes(200, 5)]);
    await writeBytes(join(src, 'bad.jpg'), jpeg, new Date('2025-12-31T12:00:00Z'));
    const r = await ingest();
    expect(r.code, r.stderr).toBe(0);
    expect([...(await listTree(destA, { skipShuttle: true })).keys()]).toEqual(['2025/2025-12-31/bad.jpg']);
  });

  test('a-destination-whose-marker-is-gone-is-refused', async () => {
    await smallCard();
    expect((await ingest()).code).toBe(0);
    // The drive is not mounted: the mount point is an empty folder.
    await rm(destA, { recursive: true, force: true });
    await mkdir(destA);
    const r = await runCli(['ingest', src, '--dest', destA, '--state', state]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/marker/i);
    expect(await readdir(destA)).toEqual([]);
  });

  test('a-refused-destination-does-not-stop-the-others', async () => {
    await smallCard();
    expect((await ingestJson([src, '--dest', destB, '--state', state])).code).toBe(0);
    // destB is known to the journal but its drive is gone; destA is new.
    await rm(destB, { recursive: true, force: true });
    await mkdir(destB);
    const r = await ingestJson([src, '--dest', destA, '--dest', destB, '--state', state]);
    expect(r.code).toBe(1);
    expect(r.summary.destinations).toEqual([
      { path: destA, verified: 6, failed: 0, bytes: expect.any(Number) },
      { path: destB, verified: 0, failed: 6, bytes: 0 },
    ]);
    expect(r.summary.errors.map((e) => e.code)).toContain('DEST_MARKER_MISSING');
    expect(await readdir(destB)).toEqual([]);
  });

  test('a-swapped-destination-is-refused', async () => {
    await smallCard();
    expect((await ingest()).code).toBe(0);
    const markerFile = join(destA, '.shuttle/destination.json');
    const m = JSON.parse(await readFile(markerFile, 'utf8')) as { id: string };
    await writeFile(markerFile, JSON.stringify({ ...m, id: '00000000-0000-4000-8000-000000000000' }));
    const r = await runCli(['ingest', src, '--dest', destA, '--state', state]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('00000000-0000-4000-8000-000000000000');
  });

  test('a-destination-that-requires-another-volume-is-refused', async () => {
    await smallCard();
    const cfg = join(work.path, 'shuttle.toml');
    await writeFile(cfg, `[[destinations]]\npath = "${destA}"\nrequire_volume_uuid = "1234-ABCD"\n`);
    const r = await runCli(['--config', cfg, 'ingest', src, '--state', state]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('1234-ABCD');
    expect(existsSync(join(destA, '2026'))).toBe(false);
  });

  test('include-and-exclude-from-the-config-choose-the-files', async () => {
    await smallCard();
    const cfg = join(work.path, 'shuttle.toml');
    await writeFile(cfg, `[ingest]\ninclude = ["jpg", "cr2"]\nexclude = ["IMG_0002*"]\n`);
    const run = await runCli(['--config', cfg, 'ingest', src, '--dest', destA, '--state', state, '--json']);
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ files: 3, copied: 3 });
    expect([...(await listTree(destA, { skipShuttle: true })).keys()].sort()).toEqual([
      '2026/2026-03-14/IMG_0001.CR2',
      '2026/2026-03-14/IMG_0001.JPG',
      '2026/2026-03-14/IMG_0001_1.JPG',
    ]);
  });

  test('bad-config-exits-2-quoting-the-bad-value', async () => {
    const cfg = join(work.path, 'shuttle.toml');
    await writeFile(cfg, `[ingest]\ntime_zone = "Mars/Olympus"\n`);
    const r = await runCli(['--config', cfg, 'ingest', src, '--dest', destA, '--state', state]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Mars/Olympus');
  });

  test('no-destination-is-a-usage-error', async () => {
    const r = await runCli(['ingest', src, '--state', state]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/destination/);
  });

  test('a-busy-destination-says-who-holds-it', async () => {
    await smallCard();
    await mkdir(join(destA, '.shuttle'), { recursive: true });
    expect((await ingest()).code).toBe(0);
    const lock = await acquireLock(destinationLockPath(destA), { owner: { command: 'test-holder' } });
    try {
      const r = await runCli(['ingest', src, '--dest', destA, '--state', state]);
      expect(r.code).toBe(3);
      expect(r.stderr).toContain('test-holder');
    } finally {
      lock.release();
    }
  });

  test('status-reports-what-the-journal-knows', async () => {
    await smallCard();
    await ingest();
    const r = await runCli(['status', '--json', '--state', state]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as { copies: Record<string, number>; ingests: Array<{ status: string }>; problems: string[] };
    expect(s.copies['verified']).toBe(6);
    expect(s.ingests[0]?.status).toBe('complete');
    expect(s.problems).toEqual([]);
  });

  test('a-byte-flipped-after-write-is-caught-by-read-back-and-rewritten', async () => {
    await writeBytes(join(src, 'one.bin'), bytes(3_000_000, 11), new Date('2026-01-05T10:00:00Z'));
    const r = await ingestJson([src, '--dest', destA, '--state', state, '--log-level', 'warn'], { env: { SHUTTLE_TEST_FAULT: 'flip-byte:once' } });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/read-back mismatch/);
    const out = await readFile(join(destA, '2026/2026-01-05/one.bin'));
    expect(out.equals(await readFile(join(src, 'one.bin')))).toBe(true);
  });

  test('help-is-available-on-every-command', async () => {
    for (const cmd of [[], ['ingest'], ['verify'], ['status'], ['sample']]) {
      const r = await runCli([...cmd, '--help']);
      expect(r.code, cmd.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/Usage: shuttle/);
    }
  });
});

describe('ingest as an unprivileged user', () => {
  const nobody = { uid: 65534, gid: 65534 };
  const openUp = async (p: string) => {
    await mkdir(p, { recursive: true });
    await chown(p, nobody.uid, nobody.gid);
  };

  test('an-unreadable-source-file-fails-alone', async () => {
    await chmod(work.path, 0o755);
    await smallCard();
    await chmod(join(src, 'DCIM/100CANON/IMG_0002.JPG'), 0o000);
    await openUp(destA);
    await openUp(state);
    const r = await ingestJson([src, '--dest', destA, '--state', state], { asUser: nobody });
    expect(r.code, r.stderr).toBe(1);
    expect(r.summary).toMatchObject({ files: 6, copied: 5, failed: 1 });
    expect(r.summary.errors.map((e) => e.code)).toContain('SOURCE_UNREADABLE');
    expect(await tempFilesUnder(destA)).toEqual([]);
  });

  test('a-destination-that-is-not-writable-is-refused-clearly', async () => {
    await chmod(work.path, 0o755);
    await smallCard();
    await mkdir(destA, { recursive: true, mode: 0o755 });
    await openUp(state);
    const r = await runCli(['ingest', src, '--dest', destA, '--state', state], { asUser: nobody });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not writable|cannot write|EACCES/i);
  });
});
