import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { ShuttleError } from '../src/errors.js';
import { checkDestination, checkFreeSpace } from '../src/ingest/destination.js';
import { freeBytes, markerPath, readMarker } from '../src/io/local-destination.js';

let dir: string;
let cleanups: (() => void)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shuttle-dest-'));
});
afterEach(async () => {
  for (const c of cleanups.reverse()) {
    try {
      c();
    } catch {
      // best effort
    }
  }
  cleanups = [];
  await rm(dir, { recursive: true, force: true });
});

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

async function rejection(p: Promise<unknown>): Promise<ShuttleError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ShuttleError);
    return err as ShuttleError;
  }
  throw new Error('expected a rejection');
}

async function library(name = 'lib'): Promise<string> {
  const p = join(dir, name);
  await mkdir(p);
  return p;
}

/** A real ext4 filesystem with a known UUID, mounted read-write (needs root and a loop device). */
async function ext4Volume(uuid: string): Promise<string> {
  if (process.getuid?.() !== 0) throw new Error('cannot run this test here: mounting an image needs root');
  const img = join(dir, 'vol.img');
  const mnt = join(dir, 'vol');
  sh('truncate', ['-s', '16M', img]);
  sh('mkfs.ext4', ['-q', '-U', uuid, '-L', 'SHUTTLE_DEST', img]);
  await mkdir(mnt);
  sh('mount', ['-o', 'loop', img, mnt]);
  cleanups.push(() => sh('umount', [mnt]));
  return mnt;
}

/** A read-only view of `source`: a bind mount remounted read-only, so even root cannot write there. */
async function readOnlyView(source: string): Promise<string> {
  if (process.getuid?.() !== 0) throw new Error('cannot run this test here: a read-only bind mount needs root');
  const view = join(dir, 'ro-view');
  await mkdir(view);
  sh('mount', ['--bind', source, view]);
  cleanups.push(() => sh('umount', [view]));
  sh('mount', ['-o', 'remount,bind,ro', view]);
  return view;
}

describe('marker', () => {
  test('a new destination gets a durable marker with a random id, and no temp files are left', async () => {
    const lib = await library();
    const checked = await checkDestination(lib, { create: true, station: 'cart-1' });
    expect(checked.created).toBe(true);
    expect(checked.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const onDisk = JSON.parse(await readFile(markerPath(lib), 'utf8')) as Record<string, unknown>;
    expect(onDisk).toMatchObject({ id: checked.id, station: 'cart-1' });
    expect(Date.parse(String(onDisk['createdAt']))).not.toBeNaN();
    expect(await readdir(join(lib, '.shuttle'))).toEqual(['destination.json']);
    expect(await readdir(lib)).toEqual(['.shuttle']);
  });

  test('the station defaults to the hostname', async () => {
    const lib = await library();
    await checkDestination(lib, { create: true });
    expect((await readMarker(lib))?.station).toBe(hostname());
  });

  test('the next check finds the same id and creates nothing', async () => {
    const lib = await library();
    const first = await checkDestination(lib, { create: true });
    const again = await checkDestination(lib, { expectedId: first.id, create: false });
    expect(again).toMatchObject({ id: first.id, created: false });
    const unknownToJournal = await checkDestination(lib, { create: true });
    expect(unknownToJournal).toMatchObject({ id: first.id, created: false });
  });

  test('two first checks at once agree on one marker', async () => {
    const lib = await library();
    const results = await Promise.all([1, 2, 3, 4].map(() => checkDestination(lib, { create: true })));
    expect(new Set(results.map((r) => r.id)).size).toBe(1);
    expect((await readMarker(lib))?.id).toBe(results[0]?.id);
    expect(await readdir(join(lib, '.shuttle'))).toEqual(['destination.json']);
  });

  test('an expected id with no marker (an empty mount point) is DEST_MARKER_MISSING, and nothing is created', async () => {
    const lib = await library();
    const err = await rejection(checkDestination(lib, { expectedId: 'a1b2', create: true }));
    expect(err.code).toBe('DEST_MARKER_MISSING');
    expect(err.message).toContain(lib);
    expect(err.message).toContain('a1b2');
    expect(err.context).toMatchObject({ path: lib, expectedId: 'a1b2' });
    expect(await readdir(lib)).toEqual([]);
  });

  test('an expected id on a path that does not exist is DEST_MARKER_MISSING', async () => {
    const err = await rejection(checkDestination(join(dir, 'gone'), { expectedId: 'a1b2', create: false }));
    expect(err.code).toBe('DEST_MARKER_MISSING');
  });

  test('no marker, no expected id and no permission to create one is DEST_MARKER_MISSING', async () => {
    const lib = await library();
    expect((await rejection(checkDestination(lib, { create: false }))).code).toBe('DEST_MARKER_MISSING');
  });

  test('a marker with another id (a swapped drive) is DEST_MARKER_MISMATCH naming both ids', async () => {
    const lib = await library();
    const { id } = await checkDestination(lib, { create: true });
    const err = await rejection(checkDestination(lib, { expectedId: 'the-old-drive', create: true }));
    expect(err.code).toBe('DEST_MARKER_MISMATCH');
    expect(err.message).toContain(lib);
    expect(err.message).toContain(id);
    expect(err.message).toContain('the-old-drive');
    expect(err.context).toMatchObject({ expectedId: 'the-old-drive', actualId: id });
  });

  test('a marker that is not a marker is refused', async () => {
    const lib = await library();
    await mkdir(join(lib, '.shuttle'));
    await writeFile(markerPath(lib), 'not json');
    expect((await rejection(checkDestination(lib, { create: true }))).code).toBe('DEST_MARKER_MISMATCH');
  });
});

describe('volume', () => {
  test('a required volume UUID that the path is not on is DEST_VOLUME_MISMATCH naming both', async () => {
    const lib = await library();
    const err = await rejection(checkDestination(lib, { requireVolumeUuid: '0badc0de-0000-4000-8000-000000000000', create: true }));
    expect(err.code).toBe('DEST_VOLUME_MISMATCH');
    expect(err.message).toContain(lib);
    expect(err.message).toContain('0badc0de-0000-4000-8000-000000000000');
    expect(err.context).toMatchObject({ expected: '0badc0de-0000-4000-8000-000000000000' });
    expect(await readdir(lib)).toEqual([]);
  });

  test('on the required volume the check passes and the marker records the volume UUID', async () => {
    const uuid = '5e1f0c3a-7b2d-4e8f-9a10-3c4d5e6f7a8b';
    const mnt = await ext4Volume(uuid);
    const lib = join(mnt, 'library');
    await mkdir(lib);
    const checked = await checkDestination(lib, { requireVolumeUuid: uuid.toUpperCase(), create: true });
    expect(checked).toMatchObject({ created: true, volumeUuid: uuid });
    expect((await readMarker(lib))?.volumeUuid).toBe(uuid);

    const other = await library('elsewhere');
    const err = await rejection(checkDestination(other, { requireVolumeUuid: uuid, create: true }));
    expect(err.code).toBe('DEST_VOLUME_MISMATCH');
  });
});

describe('writability and space', () => {
  test('a read-only destination is DEST_NOT_WRITABLE, found by a real write even for root', async () => {
    const lib = await library();
    const { id } = await checkDestination(lib, { create: true });
    const view = await readOnlyView(lib);
    const err = await rejection(checkDestination(view, { expectedId: id, create: false }));
    expect(err.code).toBe('DEST_NOT_WRITABLE');
    expect(err.message).toContain(view);
    expect(err.context).toMatchObject({ errno: 'EROFS' });
  });

  test('a path that is a file is DEST_NOT_WRITABLE', async () => {
    await writeFile(join(dir, 'file'), 'x');
    expect((await rejection(checkDestination(join(dir, 'file'), { create: true }))).code).toBe('DEST_NOT_WRITABLE');
  });

  test('free space is what statfs reports available', async () => {
    const s = await statfs(dir);
    const free = await freeBytes(dir);
    expect(Math.abs(free - s.bavail * s.bsize)).toBeLessThan(64 * 1024 * 1024);
    expect((await checkDestination(await library(), { create: true })).free).toBeGreaterThan(0);
  });

  test('checkFreeSpace passes when the bytes fit and refuses with DEST_NO_SPACE naming needed and available', async () => {
    const available = await freeBytes(dir);
    expect(await checkFreeSpace(dir, 1024, 0)).toBeGreaterThan(0);
    const err = await rejection(checkFreeSpace(dir, available * 2, 0));
    expect(err.code).toBe('DEST_NO_SPACE');
    expect(err.message).toContain(dir);
    expect(err.message).toMatch(/needs .*\(\d+ bytes\), but only .*\(\d+ bytes\) is available/);
    expect(err.context).toMatchObject({ neededBytes: available * 2, minFreeBytes: 0 });
  });

  test('checkFreeSpace keeps min_free_bytes free', async () => {
    const available = await freeBytes(dir);
    const err = await rejection(checkFreeSpace(dir, 0, available + 1024 * 1024 * 1024));
    expect(err.code).toBe('DEST_NO_SPACE');
    expect(err.message).toContain('kept free');
  });

  test('a full filesystem fails the write probe with DEST_NO_SPACE', async () => {
    const mnt = await ext4Volume('11111111-2222-4333-8444-555555555555');
    await checkDestination(mnt, { create: true });
    // Fill it as root would (ext4 keeps a reserve only for root, so fill to the last block).
    try {
      sh('dd', ['if=/dev/zero', `of=${join(mnt, 'fill')}`, 'bs=1M', 'status=none']);
    } catch {
      // dd stops with ENOSPC: that is the point
    }
    sh('sh', ['-c', `i=0; while : ; do head -c 1024 /dev/zero > ${mnt}/small$i 2>/dev/null || break; i=$((i+1)); done`]);
    const err = await rejection(checkDestination(mnt, { create: false, expectedId: (await readMarker(mnt))?.id }));
    expect(err.code).toBe('DEST_NO_SPACE');
  });
});
