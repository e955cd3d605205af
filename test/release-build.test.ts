import { afterAll, beforeAll, expect, test } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { copyFile, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CRASH_POINTS } from '../src/ingest/crash-points.js';
import { collect, runCli, type CliResult } from './support/cli.js';
import { notifyReceiver, until } from './support/daemon-helpers.js';
import { bytes, writeBytes } from './support/fixtures.js';
import { hookMarkers, hookTraces } from './support/test-hooks.js';
import { listTree, contentMultiset, tempDir } from './support/tree.js';

/**
 * The release build (scripts/build.mjs --release, which scripts/build-dist.sh runs) leaves the test
 * hooks out: no trace of them in its code, and their variables do nothing to it. The build the tests
 * run (dist/) keeps them, which is what makes the comparison mean something.
 */
const REPO = fileURLToPath(new URL('..', import.meta.url));
let work: { path: string; cleanup: () => Promise<void> };
let release: string;

beforeAll(async () => {
  work = await tempDir('shuttle-release-');
  // Laid out as an installed tree: dist/ beside package.json (the version) and node_modules (externals).
  release = join(work.path, 'dist');
  await promisify(execFile)(process.execPath, [join(REPO, 'scripts/build.mjs'), '--release', '--no-sourcemap', '--outdir', release]);
  await copyFile(join(REPO, 'package.json'), join(work.path, 'package.json'));
  await symlink(join(REPO, 'node_modules'), join(work.path, 'node_modules'));
  // The sd_notify addon, where scripts/build-dist.sh puts it beside dist/.
  await symlink(join(REPO, 'build'), join(work.path, 'build'));
}, 120_000);
afterAll(async () => {
  await work?.cleanup();
});

function run(main: string, args: string[], env: Record<string, string>): Promise<CliResult> {
  return collect(spawn(process.execPath, [main, ...args], { env: { ...process.env, TZ: 'UTC', SHUTTLE_LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
}

test('the-release-build-holds-no-trace-of-the-test-hooks-that-the-tests-build-has', async () => {
  const markers = await hookMarkers();
  // Most crash points have names nothing else uses, so their absence is checked by name.
  expect(markers.filter((m) => m.startsWith('"')).length).toBeGreaterThanOrEqual(CRASH_POINTS.length - 2);
  expect(await hookTraces(release)).toEqual([]);
  const inTestBuild = await hookTraces(join(REPO, 'dist'));
  for (const m of markers)
    expect(
      inTestBuild.some((t) => t.startsWith(`${m} in `)),
      `${m} in dist/`,
    ).toBe(true);
});

test('the-hook-variables-do-nothing-to-the-release-build', async () => {
  const card = join(work.path, 'card');
  for (let i = 1; i <= 3; i++) await writeBytes(join(card, `IMG_000${i}.CR2`), bytes(200_000, i), new Date('2026-04-01T10:00:00Z'));
  const args = (name: string) => ['ingest', card, '--dest', join(work.path, name, 'lib'), '--state', join(work.path, name, 'state'), '--json'];

  // In the tests' build each variable does what it says.
  const crashed = await runCli(args('test-crash'), { env: { SHUTTLE_TEST_CRASH_AT: 'temp-created:1' } });
  expect(crashed.signal, crashed.stderr).toBe('SIGKILL');
  expect(crashed.stderr).toContain('crash point temp-created:1 reached');
  const flipped = await runCli(args('test-fault'), { env: { SHUTTLE_TEST_FAULT: 'flip-byte' } });
  expect(flipped.code, flipped.stderr).toBe(1);
  expect(flipped.stdout).toContain('VERIFY_MISMATCH');

  const r = await run(join(release, 'main.js'), args('release'), { SHUTTLE_TEST_CRASH_AT: 'temp-created:1', SHUTTLE_TEST_FAULT: 'flip-byte' });
  expect(r.signal, r.stderr).toBe(null);
  expect(r.code, r.stderr).toBe(0);
  expect(JSON.parse(r.stdout)).toMatchObject({ files: 3, copied: 3, failed: 0, status: 'complete' });
  expect(r.stderr).not.toMatch(/mismatch|crash point/);
  expect(contentMultiset(await listTree(join(work.path, 'release', 'lib'), { skipShuttle: true }))).toEqual(contentMultiset(await listTree(card)));
});

test('the-release-build-finds-the-sd-notify-addon-and-says-ready-from-its-own-pid', async () => {
  const receiver = await notifyReceiver(join(work.path, 'notify.sock'));
  try {
    const daemon = join(work.path, 'daemon');
    const child = spawn(
      process.execPath,
      [join(release, 'main.js'), 'run', '--state', join(daemon, 'state'), '--dest', join(daemon, 'lib'), '--socket', join(daemon, 'control.sock')],
      {
        env: { ...process.env, TZ: 'UTC', SHUTTLE_LOG_LEVEL: 'warn', SHUTTLE_LOCK_DIR: join(daemon, 'locks'), NOTIFY_SOCKET: receiver.path },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const result = collect(child, 60_000);
    await until(
      'READY=1',
      async () => receiver.messages,
      (m) => m.some((x) => x.split('\n').includes('READY=1')),
      30_000,
      20,
    );
    child.kill('SIGTERM');
    const r = await result;
    expect(r.code, r.stderr).toBe(0);
    // Through the addon: the datagram came from the daemon itself, and nothing says the addon is missing.
    expect(receiver.senders[receiver.messages.findIndex((x) => x.split('\n').includes('READY=1'))]).toBe(child.pid);
    expect(receiver.messages.some((x) => x.includes('MAINPID='))).toBe(false);
    expect(r.stdout + r.stderr).not.toMatch(/addon did not load/);
  } finally {
    receiver.child.kill();
  }
});
