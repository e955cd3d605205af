import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { nativeFs } from '../src/io/native-fs.js';

/** The addon's file-system calls (native/durable_fs.c), which `npm ci` builds with the project. */
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shuttle-native-fs-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('the addon is built and gives the copy path its calls', () => {
  expect(nativeFs()).toBeDefined();
});

test('renameNoReplace moves a file to a free name and refuses a taken one with EEXIST, changing nothing', async () => {
  const fs = nativeFs()!;
  await writeFile(join(dir, 'a'), 'first');
  await fs.renameNoReplace(join(dir, 'a'), join(dir, 'b'));
  expect(await readFile(join(dir, 'b'), 'utf8')).toBe('first');
  await writeFile(join(dir, 'c'), 'second');
  await expect(fs.renameNoReplace(join(dir, 'c'), join(dir, 'b'))).rejects.toMatchObject({ code: 'EEXIST', syscall: 'renameat2' });
  expect(await readFile(join(dir, 'b'), 'utf8')).toBe('first');
  expect(await readFile(join(dir, 'c'), 'utf8')).toBe('second');
  await expect(fs.renameNoReplace(join(dir, 'gone'), join(dir, 'd'))).rejects.toMatchObject({ code: 'ENOENT' });
});

test('setDirect turns O_DIRECT on and off for an open file', async () => {
  const fs = nativeFs()!;
  const h = await open(join(dir, 'direct'), 'wx+');
  try {
    await h.write(Buffer.alloc(4096, 7), 0, 4096, 0);
    expect(fs.setDirect(h.fd, true)).toBe(true);
    // An unaligned direct read is refused: the flag is on.
    await expect(h.read(Buffer.alloc(10), 0, 10, 1)).rejects.toMatchObject({ code: 'EINVAL' });
    expect(fs.setDirect(h.fd, false)).toBe(true);
    expect((await h.read(Buffer.alloc(10), 0, 10, 1)).bytesRead).toBe(10);
  } finally {
    await h.close();
  }
  expect(() => fs.setDirect(1_000_000, true)).toThrow(expect.objectContaining({ code: 'EBADF' }));
});
