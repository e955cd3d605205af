import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { MAIN } from './support/cli.js';
import { killLeftoverDaemons, spawnDaemon, until, type RunningDaemon } from './support/daemon-helpers.js';
import { writeJpeg } from './support/fixtures.js';
import { tempDir } from './support/tree.js';

/**
 * What a process loads is what a small box pays for in memory and start-up: a dependency that a command
 * or an idle daemon does not use must not be loaded by it. Seen from outside, as the kernel sees it: the
 * libraries a process maps, the files it opens.
 */

let work: string;
let cleanup: () => Promise<void>;
const daemons: RunningDaemon[] = [];

beforeEach(async () => {
  ({ path: work, cleanup } = await tempDir('shuttle-lazy-'));
});

afterEach(async () => {
  killLeftoverDaemons(daemons);
  await cleanup();
});

/** The files of node_modules packages that `shuttle ARGS` opened (strace), as package names. */
function packagesOpened(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string; packages: Set<string> } {
  const trace = join(work, `trace-${args[0]}`);
  const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=openat', '-e', 'status=successful', '-o', trace, process.execPath, MAIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, TZ: 'UTC', SHUTTLE_LOG_LEVEL: 'warn', SHUTTLE_LOCK_DIR: join(work, 'locks'), ...env },
  });
  if (r.error) throw r.error;
  const text = readFileSync(trace, 'utf8');
  const packages = new Set([...text.matchAll(/node_modules\/((?:@[^/"]+\/)?[^/"]+)\/[^"]+"/g)].map((m) => m[1]!));
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, packages };
}

const awsSdk = (packages: Set<string>): string[] => [...packages].filter((p) => p.startsWith('@aws-sdk/') || p.startsWith('@smithy/'));

describe('what a process loads', () => {
  test('shuttle-help-loads-every-command-but-neither-sharp-nor-the-aws-sdk', () => {
    const r = packagesOpened(['--help']);
    expect(r.status, r.stderr).toBe(0);
    expect([...r.packages].filter((p) => p === 'sharp' || p.startsWith('@img/'))).toEqual([]);
    expect(awsSdk(r.packages)).toEqual([]);
  });

  test('a-command-that-logs-json-lines-does-not-load-pinos-transport-thread', () => {
    const r = packagesOpened(['--state', join(work, 'state'), 'status']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.packages).not.toContain('thread-stream');
  });

  test('an-ingest-that-only-queues-its-upload-does-not-load-the-aws-sdk', async () => {
    const card = join(work, 'card');
    await writeJpeg(join(card, 'DCIM', '100CANON', 'IMG_0001.JPG'));
    const r = packagesOpened(['ingest', card, '--dest', join(work, 'dest'), '--state', join(work, 'state'), '--upload', 's3://bucket/photos', '--no-wait', '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ copied: 1, upload: { queued: 1, uploaded: 0 } });
    expect(awsSdk(r.packages)).toEqual([]);
  });

  test('an-idle-daemon-with-the-api-maps-no-libvips-until-it-makes-its-first-preview', async () => {
    const hot = join(work, 'hot');
    await mkdir(hot, { recursive: true });
    const state = join(work, 'state');
    const d = await spawnDaemon(['--state', state, '--dest', join(work, 'dest'), '--hot-folder', hot, '--log-level', 'info'], {
      SHUTTLE_DAEMON_CONTROL_SOCKET: join(work, 'control.sock'),
      SHUTTLE_LOCK_DIR: join(work, 'locks'),
      SHUTTLE_DAEMON_SETTLE_MS: '200',
      SHUTTLE_DAEMON_BATCH_MS: '100',
      SHUTTLE_API_LISTEN: '127.0.0.1:0',
    });
    daemons.push(d);
    const maps = (): Promise<string> => readFile(`/proc/${d.child.pid}/maps`, 'utf8');
    expect(await maps()).not.toContain('libvips');
    await writeJpeg(join(hot, 'IMG_0001.JPG'));
    // The hot folder's file is copied and verified, then its preview (the dashboard's) is made.
    const previews = async (): Promise<string[]> => (await readdir(join(state, 'previews'), { recursive: true }).catch(() => [])).filter((f) => f.endsWith('IMG_0001.jpg'));
    await until('the first preview', previews, (made) => made.length > 0);
    expect(await maps()).toContain('libvips');
    d.child.kill('SIGTERM');
    expect(await d.exited).toMatchObject({ code: 0 });
  });
});
