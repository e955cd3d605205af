import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { ControlClient } from '../src/daemon/control.js';
import type { DaemonStatus } from '../src/daemon/status.js';
import { collect, MAIN, runCli, spawnCli, type CliResult } from './support/cli.js';
import { killLeftoverDaemons, notifyReceiver, spawnDaemon, until, writeBurst, type RunningDaemon } from './support/daemon-helpers.js';
import { bytes, writeBytes, writeJpeg } from './support/fixtures.js';
import { contentMultiset, listTree, tempDir, tempFilesUnder } from './support/tree.js';

/**
 * `shuttle run` as users run it: the built CLI as a child process, with a hot folder and a destination,
 * asked over its control socket by `shuttle status` and `shuttle request`, stopped with SIGTERM.
 */

let work: string;
let cleanup: () => Promise<void>;
let hot: string;
let dest: string;
let state: string;
let sock: string;
let env: Record<string, string>;
const daemons: RunningDaemon[] = [];

beforeEach(async () => {
  ({ path: work, cleanup } = await tempDir('shuttle-e2e-'));
  hot = join(work, 'hot');
  dest = join(work, 'dest');
  state = join(work, 'state');
  sock = join(work, 'run', 'control.sock');
  await mkdir(hot, { recursive: true });
  env = {
    SHUTTLE_DAEMON_CONTROL_SOCKET: sock,
    SHUTTLE_LOCK_DIR: join(work, 'locks'),
    SHUTTLE_DAEMON_SETTLE_MS: '200',
    SHUTTLE_DAEMON_BATCH_MS: '100',
    // The cards these tests ask for live in the work folder.
    SHUTTLE_DAEMON_ALLOWED_SOURCES: work,
  };
});

afterEach(async () => {
  killLeftoverDaemons(daemons);
  await cleanup();
});

async function startDaemon(extra: string[] = [], extraEnv: Record<string, string> = {}): Promise<RunningDaemon> {
  const d = await spawnDaemon(['--state', state, '--dest', dest, '--hot-folder', hot, '--log-level', 'info', ...extra], { ...env, ...extraEnv });
  daemons.push(d);
  return d;
}

async function stopDaemon(d: RunningDaemon): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  d.child.kill('SIGTERM');
  return d.exited;
}

interface StatusJson {
  copies: Record<string, number>;
  files: Record<string, number>;
  ingests: Array<{ status: string }>;
  problems: string[];
  daemon?: DaemonStatus;
}

async function status(): Promise<StatusJson> {
  const r = await runCli(['status', '--json', '--state', state], { env });
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as StatusJson;
}

const request = (args: string[]): Promise<CliResult> => runCli(['request', ...args], { env });

describe('shuttle run', () => {
  test('files-dropped-into-a-hot-folder-are-verified-in-the-destination-and-the-job-shows-in-status', async () => {
    const d = await startDaemon();
    for (let i = 1; i <= 4; i++) await writeJpeg(join(hot, `IMG_000${i}.JPG`), { date: `2026:04:0${i} 10:00:00`, seed: i });
    await writeBytes(join(hot, 'IMG_0005.CR3'), bytes(3_000_000, 5));
    const s = await until('5 verified copies', status, (v) => v.copies['verified'] === 5 && v.daemon?.jobs.active.length === 0);
    expect(contentMultiset(await listTree(dest, { skipShuttle: true }))).toEqual(contentMultiset(await listTree(hot)));
    expect(s.problems).toEqual([]);
    const jobs = s.daemon!.jobs.recent;
    expect(jobs.every((j) => j.state === 'done' && j.kind === 'hotfolder')).toBe(true);
    expect(jobs.reduce((n, j) => n + (j.result?.copied ?? 0), 0)).toBe(5);
    expect(s.daemon!.hotFolders).toEqual([expect.objectContaining({ path: hot, watching: true, waiting: 0, settling: 0, delivered: 5 })]);

    const human = await runCli(['status', '--state', state], { env });
    expect(human.stdout).toMatch(/^daemon: running \(pid \d+, up /);
    expect(human.stdout).toMatch(new RegExp(`job ${jobs[0]!.id} done: ${hot}`));
    expect(human.stdout).toContain(`journal: ${join(state, 'journal.sqlite')}`);

    // Every state change of a job is a log line.
    const changes = d.logs.filter((l) => l['job'] === jobs.at(-1)!.id && /^job (queued|running|done)$/.test(l.msg ?? '')).map((l) => l.msg);
    expect(changes).toEqual(['job queued', 'job running', 'job done']);

    expect(await stopDaemon(d)).toEqual({ code: 0, signal: null });
    expect(d.logs.at(-1)?.msg).toBe('daemon stopped');
    expect(existsSync(sock)).toBe(false);
    // No daemon: status is the journal's, as it was before there was a daemon.
    const after = await status();
    expect(after.daemon).toBeUndefined();
    expect(after.copies['verified']).toBe(5);
  });

  test('request-ingest-wait-ingests-a-card-and-exits-with-the-jobs-outcome', async () => {
    const d = await startDaemon();
    const card = join(work, 'card');
    for (let i = 1; i <= 3; i++) await writeJpeg(join(card, 'DCIM', '100CANON', `IMG_010${i}.JPG`), { seed: 10 + i });
    const first = await request(['ingest', card, '--wait', '--json']);
    expect(first.code, first.stderr).toBe(0);
    const j1 = (JSON.parse(first.stdout) as { job: { id: number; state: string; kind: string; result: { copied: number } } }).job;
    expect(j1).toMatchObject({ state: 'done', kind: 'folder', result: { copied: 3 } });
    const again = await request(['ingest', card, '--wait']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/^job \d+ done \(.*card\): 3 files, 0 copied, 3 already done, 0 failed/);

    const unknown = await request(['cancel', '999']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/no job 999/);
    const missing = await request(['ingest', join(work, 'no-such-card')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/is not a folder the daemon can read: ENOENT/);
    const beyond = await request(['ingest', join(work, '..')]);
    expect(beyond.code).toBe(2);
    expect(beyond.stderr).toMatch(/refused: the daemon ingests only folders that are, or are inside, .*\[daemon\] allowed_sources/);
    // The client takes anything but usb: and ptpip: for a path below its working directory, made absolute.
    const climb = await request(['ingest', 'x:/../..']);
    expect(climb.code).toBe(2);
    expect(climb.stderr).toContain(`source "${resolve('x:/../..')}" refused: the daemon ingests only folders that are, or are inside,`);
    const own = await request(['ingest', join(dest, '2026')]);
    expect(own.code).toBe(2);
    expect(own.stderr).toContain(`overlaps destination ${dest}`);
    expect(await stopDaemon(d)).toEqual({ code: 0, signal: null });
  });

  test('stopping-a-waiting-request-cancels-its-job-and-only-that-job', async () => {
    // What a udev-started card unit does when the card is pulled: systemd stops it, the request cancels.
    const d = await startDaemon();
    const card = join(work, 'card');
    await writeBurst(join(card, 'DCIM'), 150, 128 * 1024);
    const req = spawnCli(['request', 'ingest', card, '--wait'], { env });
    let out = '';
    req.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    const reqExit = new Promise<number | null>((r) => req.on('close', (code) => r(code)));
    const client = await ControlClient.connect(sock);
    try {
      const running = await until(
        'the card job to be copying',
        async () => (await client.request('status', {})) as DaemonStatus,
        (v) => (v.jobs.active.find((j) => j.origin === 'request')?.progress?.filesDone ?? 0) >= 3,
        30_000,
        10,
      );
      const job = running.jobs.active.find((j) => j.origin === 'request')!;
      req.kill('SIGTERM');
      expect(await reqExit).toBe(3);
      expect(out).toMatch(new RegExp(`^job ${job.id} cancelled \\(.*card\\).*cancelled on request`));
      const after = (await client.request('status', {})) as DaemonStatus;
      expect(after.jobs.recent.find((j) => j.id === job.id)?.state).toBe('cancelled');
      // The daemon and its hot folder carry on.
      await writeJpeg(join(hot, 'IMG_0001.JPG'), { seed: 1 });
      await until(
        'the hot folder job',
        async () => (await client.request('status', {})) as DaemonStatus,
        (v) => v.jobs.recent.some((j) => j.kind === 'hotfolder' && j.state === 'done'),
      );
    } finally {
      client.close();
    }
    expect(await tempFilesUnder(dest)).toEqual([]);
    expect(await stopDaemon(d)).toEqual({ code: 0, signal: null });
  });

  test('sigterm-mid-ingest-stops-cleanly-and-a-restart-finishes-the-work', async () => {
    const files = 150;
    await writeBurst(hot, files, 128 * 1024);
    const d = await startDaemon();
    // Asked over the socket directly: a CLI process per poll would be too slow to catch the middle.
    const client = await ControlClient.connect(sock);
    let p;
    try {
      const running = await until(
        'a job part way through',
        async () => (await client.request('status', {})) as DaemonStatus,
        (v) => {
          const pr = v.jobs.active[0]?.progress;
          return pr !== undefined && pr.filesDone >= 8;
        },
        30_000,
        10,
      );
      p = running.jobs.active[0]!.progress!;
    } finally {
      client.close();
    }
    expect(p.filesDone).toBeLessThan(p.filesTotal);
    expect(await stopDaemon(d)).toEqual({ code: 0, signal: null });
    expect(d.logs.some((l) => l.msg === 'job interrupted')).toBe(true);

    expect(await tempFilesUnder(dest)).toEqual([]);
    const mid = await status();
    expect(mid.problems).toEqual([]);
    expect(mid.ingests[0]?.status).toBe('interrupted');
    // Progress counts files read; the last two may still have been finishing (read-back) when it stopped.
    expect(mid.copies['verified']).toBeGreaterThanOrEqual(1);
    expect(mid.copies['verified']).toBeLessThan(files);
    // What the journal calls verified is in the destination, whole.
    expect((await listTree(dest, { skipShuttle: true })).size).toBe(mid.copies['verified']);

    const d2 = await startDaemon();
    const done = await until(`all ${files} verified`, status, (v) => v.copies['verified'] === files && v.daemon?.jobs.active.length === 0, 60_000);
    expect(done.problems).toEqual([]);
    expect(contentMultiset(await listTree(dest, { skipShuttle: true }))).toEqual(contentMultiset(await listTree(hot)));
    expect(await stopDaemon(d2)).toEqual({ code: 0, signal: null });
  });

  test('a-second-daemon-on-the-same-state-dir-exits-3-naming-the-first', async () => {
    const d = await startDaemon();
    const second = await runCli(['run', '--state', state, '--dest', dest, '--socket', join(work, 'other.sock')], { env, timeoutMs: 20_000 });
    expect(second.code).toBe(3);
    expect(second.stderr).toMatch(new RegExp(`daemon\\.lock is locked by pid ${d.child.pid}`));
    expect(await stopDaemon(d)).toEqual({ code: 0, signal: null });
  });

  test('under-systemd-it-says-READY-when-it-answers-and-STOPPING-on-SIGTERM', async () => {
    const receiver = await notifyReceiver(join(work, 'notify.sock'));
    try {
      const d = await startDaemon([], { NOTIFY_SOCKET: receiver.path });
      const ready = await until(
        'READY=1',
        async () => receiver.messages,
        (m) => m.some((x) => x.includes('READY=1')),
        10_000,
      );
      // Sent by the daemon itself, as NotifyAccess=main requires (the kernel's word on the sender).
      expect(receiver.senders[ready.findIndex((x) => x.includes('READY=1'))]).toBe(d.child.pid);
      // READY means the control socket already answers.
      expect((await status()).daemon?.pid).toBe(d.child.pid);
      expect(await stopDaemon(d)).toEqual({ code: 0, signal: null });
      expect(receiver.messages.some((x) => x.includes('STOPPING=1'))).toBe(true);
    } finally {
      receiver.child.kill();
    }
  });

  test('watchdog-pings-are-datagrams-from-the-daemon-itself-and-start-no-process', async () => {
    const receiver = await notifyReceiver(join(work, 'notify.sock'));
    const trace = join(work, 'execve.trace');
    try {
      const child = spawn(
        'strace',
        ['-f', '-qq', '-e', 'trace=execve', '-o', trace, process.execPath, MAIN, 'run', '--state', state, '--dest', dest, '--hot-folder', hot, '--log-level', 'info'],
        {
          env: { ...process.env, TZ: 'UTC', ...env, NOTIFY_SOCKET: receiver.path, WATCHDOG_USEC: '100000' },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      // A missing strace rejects here, loudly.
      const result = collect(child, 60_000);
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      // strace's child is the daemon; its log names its pid.
      const started = await until(
        'daemon started',
        async () => out.split('\n').find((l) => l.includes('"daemon started"')),
        (l) => l !== undefined,
        30_000,
        20,
      );
      const daemonPid = (JSON.parse(started!) as { pid: number }).pid;
      const pings = (): number => receiver.messages.filter((m) => m.split('\n').includes('WATCHDOG=1')).length;
      await until(
        '10 watchdog pings',
        async () => pings(),
        (n) => n >= 10,
        30_000,
        20,
      );
      process.kill(daemonPid, 'SIGTERM');
      const r = await result;
      expect(r.code, r.stderr).toBe(0);
      expect(new Set(receiver.senders)).toEqual(new Set([daemonPid]));
      // The only program started is the daemon's own runtime: no systemd-notify per ping.
      const execs = (await readFile(trace, 'utf8')).split('\n').flatMap((l) => /execve\("([^"]+)"/.exec(l)?.[1] ?? []);
      expect(execs).toEqual([process.execPath]);
    } finally {
      receiver.child.kill();
    }
  });
});
