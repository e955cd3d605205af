import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { tempDir } from './support/tree.js';

/**
 * bin/shuttle.js started by a Node too old for Shuttle re-runs itself under the bundled runtime. The
 * launcher must then stand in for that child: a signal sent to the launcher's pid (by a supervisor,
 * `timeout`, a test harness) reaches the child, the launcher ends as the child did, and killing the
 * launcher outright leaves no Shuttle behind. Covered for the long-running commands: `shuttle run`,
 * `shuttle tether` and `shuttle simulate-camera`.
 *
 * The launcher runs under the system node (v20 on the test machine), and SHUTTLE_LAUNCHER_REEXEC=1 makes
 * it take the re-exec path even where the system node is new enough; each test checks the command really
 * ran in another process.
 */

const SYSTEM_NODE = '/usr/bin/node';
const LAUNCHER = fileURLToPath(new URL('../bin/shuttle.js', import.meta.url));

type Line = Record<string, unknown> & { msg?: string; pid?: number };

interface Launched {
  launcher: ChildProcess;
  /** JSON lines from stdout and stderr, in arrival order. */
  lines: Line[];
  stderr: () => string;
  /** Resolves with the first line (already seen or still to come) that `match` accepts. */
  line: (match: (l: Line) => boolean) => Promise<Line>;
  /**
   * The launcher's end, once every holder of its stdout and stderr (the child too) has closed them; fails
   * after 20 s naming what still runs.
   */
  closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

let work: string;
let cleanup: () => Promise<void>;
const started: Launched[] = [];
const childPids: number[] = [];

beforeAll(() => {
  // A missing system node must fail, not skip.
  const version = execFileSync(SYSTEM_NODE, ['--version'], { encoding: 'utf8' }).trim();
  expect(version).toMatch(/^v\d+\.\d+\.\d+$/);
});

beforeEach(async () => {
  ({ path: work, cleanup } = await tempDir('shuttle-launcher-'));
});

afterEach(async () => {
  for (const l of started.splice(0)) if (l.launcher.exitCode === null && l.launcher.signalCode === null) l.launcher.kill('SIGKILL');
  for (const pid of childPids.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL');
  await cleanup();
});

/** Starts the launcher under the system node; `ownGroup` makes it lead a process group, as a shell's job. */
function launch(args: string[], env: Record<string, string> = {}, ownGroup = false): Launched {
  const launcher = spawn(SYSTEM_NODE, [LAUNCHER, ...args], {
    env: { ...process.env, TZ: 'UTC', SHUTTLE_LAUNCHER_REEXEC: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: ownGroup,
  });
  const lines: Line[] = [];
  const waiting: Array<{ match: (l: Line) => boolean; resolve: (l: Line) => void }> = [];
  let err = '';
  const onLine = (text: string): void => {
    if (!text.startsWith('{')) return;
    const l = JSON.parse(text) as Line;
    lines.push(l);
    for (const w of waiting.filter((w) => w.match(l))) {
      waiting.splice(waiting.indexOf(w), 1);
      w.resolve(l);
    }
  };
  for (const stream of [launcher.stdout!, launcher.stderr!]) {
    let buf = '';
    stream.on('data', (d: Buffer) => {
      if (stream === launcher.stderr) err += d.toString();
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    });
  }
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    const timer = setTimeout(() => {
      const state = launcher.exitCode ?? launcher.signalCode ?? 'still running';
      reject(new Error(`the launcher (${String(state)}) or its child still holds stdout after 20 s; stderr:\n${err}`));
    }, 20_000);
    launcher.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
  const line = (match: (l: Line) => boolean): Promise<Line> => {
    const seen = lines.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise<Line>((resolve, reject) => {
      waiting.push({ match, resolve });
      closed.then((c) => reject(new Error(`launcher ended (${JSON.stringify(c)}) before the expected line; stderr:\n${err}`)), reject);
    });
  };
  const l: Launched = { launcher, lines, stderr: () => err, line, closed };
  started.push(l);
  return l;
}

/** A pid that is gone, or a zombie waiting for whoever adopted it to reap it, runs nothing any more. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Resolves when process `pid` (not a child of this one) has ended: a pidfd becomes readable then. Its
 * stdout closing is not that moment: a process closes its files before it becomes a zombie.
 */
function ended(pid: number, timeoutMs = 20_000): Promise<void> {
  const script = `
import os, select, sys
try:
    fd = os.pidfd_open(int(sys.argv[1]))
except ProcessLookupError:
    sys.exit(0)
if not select.select([fd], [], [], float(sys.argv[2]))[0]:
    sys.exit(3)
`;
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', script, String(pid), String(timeoutMs / 1000)], (err) =>
      err ? reject(new Error(`process ${pid} still runs after ${timeoutMs} ms`, { cause: err })) : resolve(),
    );
  });
}

/** Where the command really runs: the pid in its log lines, which must not be the launcher's own. */
async function childPid(l: Launched, firstLine: (l: Line) => boolean): Promise<number> {
  const pid = (await l.line(firstLine)).pid;
  expect(typeof pid).toBe('number');
  expect(pid, 'the command ran in the launcher itself: the re-exec path was not taken').not.toBe(l.launcher.pid);
  childPids.push(pid!);
  return pid!;
}

/** Whether anything accepts connections at a unix socket path or a TCP port now. */
function answers(target: string | number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const s = typeof target === 'string' ? connect(target) : connect(target, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNREFUSED' || e.code === 'ENOENT' ? resolve(false) : reject(e)));
  });
}

describe('shuttle run under the launcher', () => {
  let sock: string;
  let env: Record<string, string>;
  const startDaemon = async (ownGroup = false): Promise<{ l: Launched; pid: number }> => {
    const hot = join(work, 'hot');
    await mkdir(hot, { recursive: true });
    const l = launch(['run', '--state', join(work, 'state'), '--dest', join(work, 'dest'), '--hot-folder', hot, '--log-level', 'info'], env, ownGroup);
    const pid = await childPid(l, (x) => x.msg === 'daemon started');
    expect(await answers(sock)).toBe(true);
    return { l, pid };
  };
  const expectCleanStop = async (l: Launched, pid: number, signal: NodeJS.Signals): Promise<void> => {
    expect(l.lines.find((x) => x.msg === 'daemon stopping')?.['reason'], l.stderr()).toBe(`received ${signal}`);
    expect(
      l.lines.find((x) => x.msg === 'daemon stopped'),
      l.stderr(),
    ).toBeDefined();
    expect(alive(pid)).toBe(false);
    expect(existsSync(sock)).toBe(false);
  };

  beforeEach(() => {
    sock = join(work, 'run', 'control.sock');
    env = { SHUTTLE_DAEMON_CONTROL_SOCKET: sock, SHUTTLE_LOCK_DIR: join(work, 'locks'), SHUTTLE_LOG_LEVEL: 'info' };
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`${signal.toLowerCase()}-to-the-launcher-stops-the-daemon-cleanly-and-the-launcher-exits-0`, async () => {
      const { l, pid } = await startDaemon();
      process.kill(l.launcher.pid!, signal);
      expect(await l.closed).toEqual({ code: 0, signal: null });
      await expectCleanStop(l, pid, signal);
    });
  }

  test('ctrl-c-to-the-launchers-process-group-reaches-the-daemon-once', async () => {
    // A terminal sends SIGINT to its whole foreground process group. Were the daemon in the launcher's
    // group, it would get it twice (directly and forwarded), and a second SIGINT means "exit now".
    const { l, pid } = await startDaemon(true);
    process.kill(-l.launcher.pid!, 'SIGINT');
    expect(await l.closed).toEqual({ code: 0, signal: null });
    expect(l.lines.filter((x) => x.msg === 'second signal while stopping: exiting now')).toEqual([]);
    await expectCleanStop(l, pid, 'SIGINT');
  });

  test('sighup-reaches-the-daemon-which-keeps-running', async () => {
    const { l, pid } = await startDaemon();
    process.kill(l.launcher.pid!, 'SIGHUP');
    await l.line((x) => x.msg?.startsWith('SIGHUP: configuration reload is not supported') === true);
    expect(l.launcher.exitCode).toBeNull();
    expect(await answers(sock)).toBe(true);
    process.kill(l.launcher.pid!, 'SIGTERM');
    expect(await l.closed).toEqual({ code: 0, signal: null });
    await expectCleanStop(l, pid, 'SIGTERM');
  });

  test('sigusr1-reaches-the-daemon-whose-node-opens-its-inspector', async () => {
    // Node answers SIGUSR1 by opening the inspector; port 0 keeps parallel tests apart.
    env['NODE_OPTIONS'] = '--inspect-port=0';
    const { l, pid } = await startDaemon();
    const opened = new Promise<void>((resolve) => l.launcher.stderr!.on('data', () => l.stderr().includes('Debugger listening on ws://') && resolve()));
    process.kill(l.launcher.pid!, 'SIGUSR1');
    await opened;
    expect(l.launcher.exitCode).toBeNull();
    process.kill(l.launcher.pid!, 'SIGTERM');
    expect(await l.closed).toEqual({ code: 0, signal: null });
    await expectCleanStop(l, pid, 'SIGTERM');
  });

  test('sigusr2-kills-the-daemon-and-the-launcher-dies-of-it-too', async () => {
    // The daemon does not handle SIGUSR2, so it dies of it; the launcher re-raises it on itself, which a
    // shell reports as 128+12.
    const { l, pid } = await startDaemon();
    process.kill(l.launcher.pid!, 'SIGUSR2');
    expect(await l.closed).toEqual({ code: null, signal: 'SIGUSR2' });
    expect(alive(pid)).toBe(false);
    expect(await answers(sock)).toBe(false);
  });

  test('sigkill-of-the-launcher-makes-the-daemon-stop-cleanly-on-its-own', async () => {
    const { l, pid } = await startDaemon();
    process.kill(l.launcher.pid!, 'SIGKILL');
    // `closed` comes once the daemon, which shares the launcher's stdout and stderr, has exited too.
    expect(await l.closed).toEqual({ code: null, signal: 'SIGKILL' });
    await ended(pid);
    await expectCleanStop(l, pid, 'SIGTERM');
  });

  test('the-launcher-exits-with-the-code-the-command-exited-with', async () => {
    const l = launch(['run', '--no-such-option']);
    expect(await l.closed).toEqual({ code: 2, signal: null });
    expect(l.stderr()).toContain('no-such-option');
  });
});

describe('shuttle simulate-camera under the launcher', () => {
  const startCamera = async (): Promise<{ l: Launched; pid: number; port: number }> => {
    const dir = join(work, 'card');
    await mkdir(dir, { recursive: true });
    const l = launch(['--log-level', 'info', 'simulate-camera', '--dir', dir, '--port', '0']);
    const { port } = (await l.line((x) => typeof x['port'] === 'number' && typeof x['host'] === 'string' && x.msg === undefined)) as { port: number };
    const pid = await childPid(l, (x) => x.msg === 'camera simulator listening');
    expect(await answers(port)).toBe(true);
    return { l, pid, port };
  };

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    test(`${signal.toLowerCase()}-to-the-launcher-stops-the-camera-and-the-launcher-exits-0`, async () => {
      const { l, pid, port } = await startCamera();
      process.kill(l.launcher.pid!, signal);
      expect(await l.closed).toEqual({ code: 0, signal: null });
      expect(l.lines.find((x) => x.msg === 'stopping camera simulator')?.['signal']).toBe(signal);
      expect(alive(pid)).toBe(false);
      expect(await answers(port)).toBe(false);
    });
  }

  test('sigkill-of-the-launcher-makes-the-camera-stop-on-its-own', async () => {
    const { l, pid, port } = await startCamera();
    process.kill(l.launcher.pid!, 'SIGKILL');
    expect(await l.closed).toEqual({ code: null, signal: 'SIGKILL' });
    await ended(pid);
    expect(l.lines.find((x) => x.msg === 'stopping camera simulator')?.['signal']).toBe('SIGTERM');
    expect(alive(pid)).toBe(false);
    expect(await answers(port)).toBe(false);
  });
});

describe('shuttle tether under the launcher', () => {
  let sim: CameraSimulator | undefined;
  afterEach(async () => {
    await sim?.stop();
    sim = undefined;
  });

  const startTether = async (): Promise<{ l: Launched; pid: number }> => {
    const card = join(work, 'card');
    await mkdir(card, { recursive: true });
    sim = await CameraSimulator.start({ dir: card, port: 0, timeZone: 'UTC' });
    const l = launch(['--log-level', 'info', 'tether', `ptpip:127.0.0.1:${sim.port}`, '--dest', join(work, 'lib'), '--state', join(work, 'state'), '--json']);
    await l.line((x) => x['event'] === 'ready');
    const pid = await childPid(l, (x) => x.msg === 'watching for new shots');
    return { l, pid };
  };

  test('sigterm-to-the-launcher-ends-the-session-cleanly-and-the-launcher-exits-0', async () => {
    const { l, pid } = await startTether();
    process.kill(l.launcher.pid!, 'SIGTERM');
    expect(await l.closed).toEqual({ code: 0, signal: null });
    expect(l.lines.find((x) => x['event'] === 'stopped')).toMatchObject({ status: 'complete' });
    expect(alive(pid)).toBe(false);
  });

  test('sigkill-of-the-launcher-makes-the-session-end-on-its-own', async () => {
    const { l, pid } = await startTether();
    process.kill(l.launcher.pid!, 'SIGKILL');
    expect(await l.closed).toEqual({ code: null, signal: 'SIGKILL' });
    await ended(pid);
    expect(alive(pid)).toBe(false);
  });
});
