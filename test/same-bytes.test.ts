import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { sameBytes } from '../src/io/same-bytes.js';
import { bytes } from './support/fixtures.js';
import { tempDir } from './support/tree.js';

/** The byte-for-byte comparison that lets an existing file stand for a copy (adoptExisting). */
let work: { path: string; cleanup: () => Promise<void> };
// Past one comparison block, and not a whole number of pages: the last direct read is a short one.
const data = bytes(3 * 1024 * 1024 + 4097, 51);

beforeAll(async () => {
  work = await tempDir('shuttle-same-bytes-');
});
afterAll(async () => {
  await work.cleanup();
});

async function file(name: string, content: Buffer): Promise<string> {
  const path = join(work.path, name);
  await writeFile(path, content);
  return path;
}

test('equal-files-are-the-same-to-the-last-byte', async () => {
  expect(await sameBytes(await file('a', data), await file('b', Buffer.from(data)))).toEqual({ same: true });
  expect(await sameBytes(await file('empty1', Buffer.alloc(0)), await file('empty2', Buffer.alloc(0)))).toEqual({ same: true });
});

test('a-change-in-any-block-is-found-where-it-is', async () => {
  const a = await file('a', data);
  for (const at of [0, 1024 * 1024 - 1, 2 * 1024 * 1024 + 5, data.length - 1]) {
    const changed = Buffer.from(data);
    changed[at] = changed[at]! ^ 0x01;
    expect(await sameBytes(a, await file(`changed-${at}`, changed)), `byte ${at}`).toEqual({ same: false, differsAt: at });
  }
});

test('a-file-that-is-a-prefix-of-the-other-is-not-the-same', async () => {
  const a = await file('a', data);
  const shorter = await file('shorter', data.subarray(0, data.length - 1));
  expect(await sameBytes(a, shorter)).toEqual({ same: false, differsAt: data.length - 1 });
  expect(await sameBytes(shorter, a)).toEqual({ same: false, differsAt: data.length - 1 });
});

test('an-aborted-comparison-throws-the-abort', async () => {
  const a = await file('a', data);
  await expect(sameBytes(a, await file('b', data), AbortSignal.abort())).rejects.toMatchObject({ code: 'ABORTED' });
});
