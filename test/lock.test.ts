import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { ShuttleError } from '../src/errors.js';
import { acquireLock, destinationLockPath, holderFilePath, sourceLockPath, type Lock } from '../src/store/lock.js';

let dir: string;
const held: Lock[] = [];
const children: ChildProcess[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shuttle-lock-'));
});
afterEach(async () => {
  for (const l of held.splice(0)) l.release();
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

async function take(path: string, command: string, wait = 0, signal?: AbortSignal): Promise<Lock> {
  const lock = await acquireLock(path, { owner: { command }, wait, signal });
  held.push(lock);
  return lock;
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

const LOCK_MODULE = pathToFileURL(join(import.meta.dirname, '..', 'src', 'store', 'lock.ts')).href;

/** A separate Node process that takes the lock, says "locked" and sleeps until killed. */
async function holderProcess(path: string): Promise<ChildProcess> {
  // Node strips the types itself; the hook maps the sources' `.js` import specifiers to their `.ts` files.
  const script = `
    import { registerHooks } from 'node:module';
    registerHooks({ resolve(spec, ctx, next) {
      try { return next(spec, ctx); } catch (e) { if (spec.endsWith('.js')) return next(spec.slice(0, -3) + '.ts', ctx); throw e; }
    } });
    const { acquireLock } = await import(${JSON.stringify(LOCK_MODULE)});
    await acquireLock(${JSON.stringify(path)}, { owner: { command: 'child holder' } });
    process.stdout.write('locked\\n');
    setInterval(() => {}, 60_000);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '--no-warnings', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const lines = createInterface({ input: child.stdout! });
  const [line] = (await Promise.race([once(lines, 'line'), once(child, 'exit').then(() => ['exited'])])) as string[];
  if (line !== 'locked') throw new Error(`holder process did not take the lock (${line})`);
  return child;
}

describe('acquiring', () => {
  test('a second acquirer fails at once with LOCKED naming the holder', async () => {
    const path = join(dir, 'a.lock');
    const first = await take(path, 'ingest /media/card');
    const err = await rejection(acquireLock(path, { owner: { command: 'daemon' } }));
    expect(err.code).toBe('LOCKED');
    expect(err.message).toContain(path);
    expect(err.message).toContain(`pid ${process.pid} on ${hostname()}`);
    expect(err.message).toContain('command "ingest /media/card"');
    expect(err.message).toContain(`since ${first.holder.since}`);
    expect(err.context['holder']).toEqual(first.holder);
  });

  test('the holder file records who holds the lock', async () => {
    const path = join(dir, 'a.lock');
    const lock = await take(path, 'verify');
    expect(JSON.parse(await readFile(holderFilePath(path), 'utf8'))).toEqual(lock.holder);
    expect(lock.holder).toMatchObject({ pid: process.pid, host: hostname(), command: 'verify' });
  });

  test('a waiting acquirer gets the lock once the holder releases it', async () => {
    const path = join(dir, 'a.lock');
    const first = await take(path, 'first');
    setTimeout(() => first.release(), 200);
    const t0 = Date.now();
    const second = await take(path, 'second', 10_000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    expect(second.holder.command).toBe('second');
  });

  test('a waiting acquirer gives up with LOCKED when the wait runs out', async () => {
    const path = join(dir, 'a.lock');
    await take(path, 'first');
    const t0 = Date.now();
    const err = await rejection(acquireLock(path, { owner: { command: 'second' }, wait: 300 }));
    expect(err.code).toBe('LOCKED');
    expect(err.message).toContain('after waiting 300 ms');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
  });

  test('an abort signal stops the wait, and the aborted acquirer holds nothing', async () => {
    const path = join(dir, 'a.lock');
    const first = await take(path, 'first');
    const ac = new AbortController();
    setTimeout(() => ac.abort(new ShuttleError('ABORTED', 'card unplugged')), 100);
    const t0 = Date.now();
    const err = await rejection(acquireLock(path, { owner: { command: 'second' }, wait: 30_000, signal: ac.signal }));
    expect(err.code).toBe('ABORTED');
    expect(err.message).toBe('card unplugged');
    expect(Date.now() - t0).toBeLessThan(5_000);
    first.release();
    await take(path, 'third'); // would be LOCKED if the aborted attempt had kept anything
  });

  test('an already aborted signal fails before touching the lock', async () => {
    const ac = new AbortController();
    ac.abort();
    const path = join(dir, 'never.lock');
    expect((await rejection(acquireLock(path, { owner: { command: 'x' }, signal: ac.signal }))).code).toBe('ABORTED');
    await expect(stat(path)).rejects.toThrow(/ENOENT/);
  });

  test('release is idempotent and clears the holder record', async () => {
    const path = join(dir, 'a.lock');
    const lock = await take(path, 'first');
    lock.release();
    lock.release();
    expect(await readFile(holderFilePath(path), 'utf8')).toBe('');
    const again = await take(path, 'second', 0);
    expect(again.holder.command).toBe('second');
  });

  test('a missing or half-written holder record still gives LOCKED, saying less', async () => {
    const path = join(dir, 'a.lock');
    await take(path, 'first');
    await writeFile(holderFilePath(path), '{"pid": 12');
    const err = await rejection(acquireLock(path, { owner: { command: 'second' } }));
    expect(err.code).toBe('LOCKED');
    expect(err.message).toContain('another process (it has not recorded who it is)');
    await rm(holderFilePath(path));
    expect((await rejection(acquireLock(path, { owner: { command: 'second' } }))).code).toBe('LOCKED');
  });
});

describe('crashes', () => {
  test('a holder process killed with SIGKILL releases the lock', async () => {
    const path = join(dir, 'a.lock');
    const child = await holderProcess(path);
    const err = await rejection(acquireLock(path, { owner: { command: 'parent' } }));
    expect(err.code).toBe('LOCKED');
    expect(err.message).toContain(`pid ${child.pid} `);
    expect(err.message).toContain('command "child holder"');

    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
    const lock = await take(path, 'parent');
    expect(lock.holder.pid).toBe(process.pid);
  });

  test('a waiter gets the lock when the holder process is killed', async () => {
    const path = join(dir, 'a.lock');
    const child = await holderProcess(path);
    setTimeout(() => child.kill('SIGKILL'), 200);
    const lock = await take(path, 'waiter', 15_000);
    expect(lock.holder.command).toBe('waiter');
  });
});

describe('lock paths', () => {
  test('a source lock lives in $SHUTTLE_LOCK_DIR, one file per source key', () => {
    const env = { SHUTTLE_LOCK_DIR: join(dir, 'locks') };
    const a = sourceLockPath('card:B2B2-C095:EOS_DIGITAL:32010928128', env);
    expect(a.startsWith(join(dir, 'locks') + '/')).toBe(true);
    expect(a).toMatch(/\/source-[0-9a-f]{32}\.lock$/);
    expect(sourceLockPath('card:B2B2-C095:EOS_DIGITAL:32010928128', env)).toBe(a);
    expect(sourceLockPath('card:1111-2222:EOS_DIGITAL:32010928128', env)).not.toBe(a);
  });

  test('without $SHUTTLE_LOCK_DIR a source lock is in a shared runtime folder', async () => {
    const p = sourceLockPath('folder:x:/a', {});
    expect(p.startsWith('/run/shuttle/locks/') || p.startsWith(join(tmpdir(), 'shuttle-locks') + '/')).toBe(true);
    await take(p, 'shared').then((l) => l.release());
    await rm(p, { force: true });
    await rm(holderFilePath(p), { force: true });
  });

  test("a destination lock is in the destination's .shuttle folder, created on first use", async () => {
    const path = destinationLockPath(dir);
    expect(path).toBe(join(dir, '.shuttle', 'lock'));
    await take(path, 'ingest');
    expect((await stat(join(dir, '.shuttle'))).isDirectory()).toBe(true);
  });

  test('a lock never creates more than its own folder', async () => {
    const path = destinationLockPath(join(dir, 'not-mounted', 'library'));
    expect((await rejection(acquireLock(path, { owner: { command: 'ingest' } }))).message).toContain('ENOENT');
  });
});
