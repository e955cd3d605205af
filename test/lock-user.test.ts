import { mkdtemp, readFile, rm } from 'node:fs/promises';
import * as os from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test, vi } from 'vitest';
import { acquireLock, holderFilePath } from '../src/store/lock.js';

// Counts the user look-ups that lock.ts makes; the names stay the real ones.
vi.mock('node:os', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:os')>();
  return { ...real, userInfo: vi.fn(real.userInfo) };
});

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(os.tmpdir(), 'shuttle-lock-user-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("a lock's holder names the process's user, looked up once however many locks it takes", async () => {
  const expected = vi.mocked(os.userInfo).getMockImplementation()!({}).username;
  vi.mocked(os.userInfo).mockClear();
  const locks = [];
  for (const name of ['a.lock', 'b.lock', 'c.lock']) {
    const path = join(dir, name);
    const lock = await acquireLock(path, { owner: { command: 'ingest /media/card' } });
    locks.push(lock);
    expect(lock.holder.user).toBe(expected);
    expect(JSON.parse(await readFile(holderFilePath(path), 'utf8'))).toMatchObject({ user: expected, pid: process.pid });
  }
  for (const l of locks) l.release();
  expect(vi.mocked(os.userInfo)).toHaveBeenCalledTimes(1);
});
