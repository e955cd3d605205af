import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { open as openFd, closeSync } from 'node:fs';
import { link, lstat, mkdir, mkdtemp, open, readFile, readdir, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import {
  TEMP_SUFFIX,
  applyTestFault,
  ensureDir,
  finalNameOfTemp,
  fsyncDir,
  fsyncFile,
  isShuttleTempName,
  openTemp,
  publishNoReplace,
  removeStrayTemps,
  tempPathFor,
} from '../src/io/durable.js';
import { readBack } from '../src/io/readback.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shuttle-durable-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A written, fsync'd, closed temp file for `finalPath`. */
async function tempWith(finalPath: string, content: Uint8Array | string): Promise<string> {
  const t = await openTemp(finalPath);
  await t.handle.writeFile(content);
  await fsyncFile(t.handle);
  await t.handle.close();
  return t.path;
}

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => undefined,
    (e: unknown) => e,
  );
}

describe('tempPathFor', () => {
  it('names a hidden .shuttle-tmp file with 8 random hex digits in the same folder', () => {
    const a = tempPathFor('/dest/DCIM/IMG_0001.JPG');
    const b = tempPathFor('/dest/DCIM/IMG_0001.JPG');
    expect(a).toMatch(/^\/dest\/DCIM\/\.IMG_0001\.JPG\.[0-9a-f]{8}\.shuttle-tmp$/);
    expect(a).not.toBe(b);
    expect(isShuttleTempName(basename(a))).toBe(true);
    expect(finalNameOfTemp(basename(a))).toBe('IMG_0001.JPG');
  });

  it('keeps temp names within 255 bytes for the longest names, cutting on character boundaries', async () => {
    for (const name of ['x'.repeat(255), 'é'.repeat(127), '📷'.repeat(63), `a${'日'.repeat(84)}`]) {
      expect(Buffer.byteLength(name)).toBeLessThanOrEqual(255);
      const temp = basename(tempPathFor(join(dir, name)));
      expect(Buffer.byteLength(temp)).toBeLessThanOrEqual(255);
      expect(temp).not.toContain('\uFFFD');
      expect(temp.endsWith(TEMP_SUFFIX)).toBe(true);
      // The filesystem agrees: the name is creatable.
      const t = await openTemp(join(dir, 'long', name));
      await t.handle.close();
    }
  });
});

describe('openTemp and ensureDir', () => {
  it('creates the missing folder tree and an exclusive 0644 temp file in it', async () => {
    const previous = process.umask(0o022);
    try {
      const finalPath = join(dir, 'tree', 'a', 'b', 'IMG_0002.CR3');
      const t = await openTemp(finalPath);
      await t.handle.close();
      expect(dirname(t.path)).toBe(dirname(finalPath));
      expect((await stat(t.path)).mode & 0o777).toBe(0o644);
      expect((await stat(t.path)).size).toBe(0);
      await expect(lstat(finalPath)).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      process.umask(previous);
    }
  });

  it('returns the folders it created, outermost first, and none when they exist', async () => {
    const base = join(dir, 'ensure');
    expect(await ensureDir(join(base, 'x', 'y'))).toEqual([base, join(base, 'x'), join(base, 'x', 'y')]);
    expect(await ensureDir(join(base, 'x', 'y'))).toEqual([]);
  });

  it('fails with DEST_NOT_WRITABLE when a file sits where a folder must go', async () => {
    const blocker = join(dir, 'blocker');
    await writeFile(blocker, 'not a folder');
    expect(isShuttleError(await errorOf(openTemp(join(blocker, 'sub', 'f.jpg'))), 'DEST_NOT_WRITABLE')).toBe(true);
  });
});

describe('fsyncFile and fsyncDir', () => {
  it('syncs a file given as a path, an fd or a FileHandle', async () => {
    const path = join(dir, 'sync-me');
    await writeFile(path, 'data');
    await fsyncFile(path);
    const fd = await promisify(openFd)(path, 'r');
    try {
      await fsyncFile(fd);
    } finally {
      closeSync(fd);
    }
    const handle = await open(path, 'r');
    try {
      await fsyncFile(handle);
    } finally {
      await handle.close();
    }
  });

  it('syncs a folder and reports it did', async () => {
    expect(await fsyncDir(dir)).toBe(true);
  });

  it('fails with a ShuttleError for a folder that does not exist', async () => {
    expect(isShuttleError(await errorOf(fsyncDir(join(dir, 'nope'))), 'DEST_WRITE_FAILED')).toBe(true);
    expect(isShuttleError(await errorOf(fsyncFile(join(dir, 'nope'))), 'DEST_WRITE_FAILED')).toBe(true);
  });
});

describe('publishNoReplace', () => {
  it('moves the temp to its final name and removes the temp name', async () => {
    const finalPath = join(dir, 'pub', 'IMG_0003.JPG');
    const temp = await tempWith(finalPath, 'photo');
    expect(await publishNoReplace(temp, finalPath)).toBe('published');
    expect(await readFile(finalPath, 'utf8')).toBe('photo');
    await expect(lstat(temp)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await stat(finalPath)).nlink).toBe(1);
  });

  it('never replaces an existing file and leaves the temp for the caller', async () => {
    const finalPath = join(dir, 'pub', 'IMG_0004.JPG');
    await writeFile(finalPath, 'original');
    const temp = await tempWith(finalPath, 'newcomer');
    expect(await publishNoReplace(temp, finalPath)).toBe('exists');
    expect(await readFile(finalPath, 'utf8')).toBe('original');
    expect(await readFile(temp, 'utf8')).toBe('newcomer');
  });

  it('treats a dangling symlink or a folder at the final name as existing', async () => {
    const asLink = join(dir, 'pub', 'IMG_0005.JPG');
    await symlink(join(dir, 'pub', 'nowhere'), asLink);
    expect(await publishNoReplace(await tempWith(asLink, 'x'), asLink)).toBe('exists');
    const asDir = join(dir, 'pub', 'IMG_0006.JPG');
    await mkdir(asDir);
    expect(await publishNoReplace(await tempWith(asDir, 'x'), asDir)).toBe('exists');
  });

  it('lets exactly one of many concurrent publishers to one name win', async () => {
    const finalPath = join(dir, 'race', 'IMG_0007.JPG');
    const temps = await Promise.all(Array.from({ length: 16 }, (_, i) => tempWith(finalPath, `writer ${i}`)));
    const outcomes = await Promise.all(temps.map((t) => publishNoReplace(t, finalPath)));
    expect(outcomes.filter((o) => o === 'published')).toHaveLength(1);
    const winner = outcomes.indexOf('published');
    expect(await readFile(finalPath, 'utf8')).toBe(`writer ${winner}`);
    const left = (await readdir(dirname(finalPath))).filter(isShuttleTempName);
    expect(left).toHaveLength(15);
  });

  it('fails with a ShuttleError when the temp is missing', async () => {
    const err = await errorOf(publishNoReplace(join(dir, 'pub', '.gone.0000abcd.shuttle-tmp'), join(dir, 'pub', 'gone')));
    expect(isShuttleError(err, 'DEST_WRITE_FAILED')).toBe(true);
  });
});

describe('removeStrayTemps', () => {
  it('removes only Shuttle temp files, at any depth, without following links', async () => {
    const root = join(dir, 'stray');
    const outside = join(dir, 'stray-outside');
    await mkdir(join(root, 'sub', 'deeper'), { recursive: true });
    await mkdir(join(root, '.folder.0123abcd.shuttle-tmp'));
    await mkdir(outside);
    const strays = [join(root, '.A.JPG.0123abcd.shuttle-tmp'), join(root, 'sub', 'deeper', '.B.CR3.deadbeef.shuttle-tmp')];
    const keepers = [
      join(root, 'A.JPG'),
      join(root, 'keep.shuttle-tmp'),
      join(root, '.C.JPG.notahexx.shuttle-tmp'),
      join(root, '.D.JPG.0123abcd.shuttle-tmp.bak'),
      join(root, 'sub', '.E.JPG.0123ABCD.shuttle-tmp'),
      join(outside, '.F.JPG.0123abcd.shuttle-tmp'),
    ];
    for (const p of [...strays, ...keepers]) await writeFile(p, 'x');
    await symlink(outside, join(root, 'link-to-outside'));
    await symlink(keepers[0]!, join(root, '.G.JPG.0123abcd.shuttle-tmp'));

    expect(await removeStrayTemps(root)).toEqual([...strays].sort());
    for (const p of strays) await expect(lstat(p)).rejects.toMatchObject({ code: 'ENOENT' });
    for (const p of keepers) expect((await lstat(p)).isFile()).toBe(true);
    expect((await lstat(join(root, '.G.JPG.0123abcd.shuttle-tmp'))).isSymbolicLink()).toBe(true);
    expect((await lstat(join(root, '.folder.0123abcd.shuttle-tmp'))).isDirectory()).toBe(true);
  });

  it('with recursive: false looks at the top folder only', async () => {
    const root = join(dir, 'stray-flat');
    await mkdir(join(root, 'sub'), { recursive: true });
    const top = join(root, '.shuttle-probe.0123abcd.shuttle-tmp');
    const nested = join(root, 'sub', '.B.CR3.deadbeef.shuttle-tmp');
    for (const p of [top, nested]) await writeFile(p, 'x');
    expect(await removeStrayTemps(root, { recursive: false })).toEqual([top]);
    expect((await lstat(nested)).isFile()).toBe(true);
  });

  it('with olderThanMs leaves temps modified since then: another writer may still be writing them', async () => {
    const root = join(dir, 'stray-age');
    await mkdir(root, { recursive: true });
    const old = join(root, '.A.JPG.0123abcd.shuttle-tmp');
    const fresh = join(root, '.B.JPG.89abcdef.shuttle-tmp');
    for (const p of [old, fresh]) await writeFile(p, 'x');
    const since = Date.now() - 60_000;
    await utimes(old, new Date(since - 1000), new Date(since - 1000));
    await utimes(fresh, new Date(since + 1000), new Date(since + 1000));
    expect(await removeStrayTemps(root, { recursive: false, olderThanMs: since })).toEqual([old]);
    expect((await lstat(fresh)).isFile()).toBe(true);
  });

  it('returns nothing for a missing root and stops with ABORTED when aborted', async () => {
    expect(await removeStrayTemps(join(dir, 'no-such-root'))).toEqual([]);
    const err = await errorOf(removeStrayTemps(dir, { signal: AbortSignal.abort() }));
    expect(isShuttleError(err, 'ABORTED')).toBe(true);
  });
});

describe('applyTestFault (SHUTTLE_TEST_FAULT)', () => {
  afterEach(() => {
    delete process.env.SHUTTLE_TEST_FAULT;
  });

  it('flips exactly one byte, in the middle, so read-back sees a different hash', async () => {
    const finalPath = join(dir, 'fault', 'IMG_0008.JPG');
    const original = randomBytes(100_001);
    const temp = await tempWith(finalPath, original);
    const before = await readBack(temp, ['xxh128']);
    process.env.SHUTTLE_TEST_FAULT = 'flip-byte';
    expect(await applyTestFault(temp)).toBe(true);
    const after = await readFile(temp);
    expect(after.length).toBe(original.length);
    const differing = [...after.keys()].filter((i) => after[i] !== original[i]);
    expect(differing).toEqual([50_000]);
    expect(after[50_000]).toBe(original[50_000]! ^ 0xff);
    expect((await readBack(temp, ['xxh128'])).hashes.xxh128).not.toBe(before.hashes.xxh128);
  });

  it('touches only the named file when given flip-byte:<name>, and nothing when unset', async () => {
    const hit = await tempWith(join(dir, 'fault', 'IMG_0009.JPG'), 'abcdef');
    const miss = await tempWith(join(dir, 'fault', 'IMG_0010.JPG'), 'abcdef');
    expect(await applyTestFault(hit)).toBe(false);
    process.env.SHUTTLE_TEST_FAULT = 'other-fault, flip-byte:IMG_0009.JPG';
    expect(await applyTestFault(miss)).toBe(false);
    expect(await applyTestFault(hit)).toBe(true);
    expect(await readFile(miss, 'utf8')).toBe('abcdef');
    expect(await readFile(hit, 'latin1')).toBe(`abc${String.fromCharCode('d'.charCodeAt(0) ^ 0xff)}ef`);
  });
});

/**
 * FAT filesystems have no hard links. The kernel here has no vfat/exfat module, so these use the FUSE
 * implementations Debian ships (fusefat for FAT32, exfat-fuse for exFAT, on a loop device) on real images.
 */
describe.each([
  {
    fs: 'FAT32 (fusefat)',
    mount: (img: string, at: string): string | undefined => {
      execFileSync('mkfs.vfat', ['-F', '32', '-n', 'EOS_DIGITAL', img], { stdio: 'ignore' });
      execFileSync('fusefat', ['-o', 'rw+', img, at], { stdio: 'ignore' });
      return undefined;
    },
  },
  {
    fs: 'exFAT (exfat-fuse)',
    mount: (img: string, at: string): string | undefined => {
      execFileSync('mkfs.exfat', [img], { stdio: 'ignore' });
      const loop = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim();
      execFileSync('mount.exfat-fuse', [loop, at], { stdio: 'ignore' });
      return loop;
    },
  },
])('on $fs, where link(2) is refused', ({ fs, mount }) => {
  let at: string;
  let loop: string | undefined;
  beforeAll(async () => {
    const img = join(dir, `${fs.split(' ')[0]}.img`);
    at = join(dir, `${fs.split(' ')[0]}-mnt`);
    await mkdir(at);
    await writeFile(img, '');
    execFileSync('truncate', ['-s', '64M', img]);
    loop = mount(img, at);
  });
  afterAll(() => {
    execFileSync('umount', [at]);
    if (loop) execFileSync('losetup', ['-d', loop]);
  });

  it('really refuses hard links (so the rename fallback is what runs)', async () => {
    const a = join(at, 'probe');
    await writeFile(a, 'x');
    await expect(link(a, join(at, 'probe2'))).rejects.toMatchObject({ code: 'EPERM' });
  });

  it('publishes by rename, never replaces, and sees names differing only in case', async () => {
    const finalPath = join(at, 'DCIM', '100CANON', 'IMG_0011.JPG');
    const temp = await tempWith(finalPath, 'first');
    expect(await publishNoReplace(temp, finalPath)).toBe('published');
    expect(await readFile(finalPath, 'utf8')).toBe('first');
    await expect(lstat(temp)).rejects.toMatchObject({ code: 'ENOENT' });

    const second = await tempWith(finalPath, 'second');
    expect(await publishNoReplace(second, finalPath)).toBe('exists');
    const lower = join(at, 'DCIM', '100CANON', 'img_0011.jpg');
    const third = await tempWith(lower, 'third');
    expect(await publishNoReplace(third, lower)).toBe('exists');
    expect(await readFile(finalPath, 'utf8')).toBe('first');
    expect(await readFile(second, 'utf8')).toBe('second');

    expect(await fsyncDir(join(at, 'DCIM'))).toBe(true);
    expect(await removeStrayTemps(at)).toEqual([second, third].sort());
  });
});
