import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import type { Logger } from '../../src/log.js';
import { spawnCli } from './cli.js';
import { tempDir } from './tree.js';

export interface CapturedLog {
  logger: Logger;
  lines: Array<Record<string, unknown> & { msg?: string }>;
}

/** A real pino logger whose JSON lines are kept in memory, so tests can check what was logged. */
export function captureLog(level = 'debug'): CapturedLog {
  const lines: CapturedLog['lines'] = [];
  const logger = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s) as CapturedLog['lines'][number]) });
  return { logger, lines };
}

/**
 * Writes `count` small files `IMG_0000.JPG`… into `dir` from a child process, as an FTP server or a
 * tethering tool would. (From the test's own event loop, each write would wait behind the rescan of
 * the folder that chokidar starts for the previous one: one full rescan per file, which measures
 * that interleaving rather than the watcher.)
 */
export function writeBurst(dir: string, count: number, bytes = 32): Promise<void> {
  const script = `
    const { mkdirSync, writeFileSync } = require('node:fs');
    const [dir, count, bytes] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
    mkdirSync(dir, { recursive: true });
    for (let i = 0; i < count; i++) {
      const body = Buffer.alloc(bytes, 'x'); body.write(String(i));
      writeFileSync(dir + '/IMG_' + String(i).padStart(4, '0') + '.JPG', body);
    }`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script, dir, String(count), String(bytes)], (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * What systemd's side of $NOTIFY_SOCKET does, for the parts Shuttle relies on: a unix datagram socket
 * that receives sd_notify messages with the sender's credentials (SO_PASSCRED, which is what
 * NotifyAccess=main checks the main PID against) and closes the file descriptors of BARRIER=1 messages
 * (which is how systemd-notify learns its message was processed). Node cannot receive unix datagrams,
 * so this is a few lines of Python. Messages other than BARRIER=1 are collected in order, and with
 * each the pid of the process that sent it.
 */
export async function notifyReceiver(path: string): Promise<{ messages: string[]; senders: number[]; child: ChildProcess; path: string }> {
  const script = `
import socket, os, sys, array, json, struct
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
# "@name" is a socket in the abstract namespace, as in $NOTIFY_SOCKET.
s.bind("\\0" + sys.argv[1][1:] if sys.argv[1].startswith("@") else sys.argv[1])
print("ready", flush=True)
while True:
    msg, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(64 * 4) + socket.CMSG_SPACE(struct.calcsize("iII")))
    pid = None
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            for fd in fds:
                os.close(fd)
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data)[0]
    text = msg.decode()
    if text != "BARRIER=1":
        print(json.dumps([text, pid]), flush=True)
`;
  const child = spawn('python3', ['-c', script, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const messages: string[] = [];
  const senders: number[] = [];
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the notify receiver exited with ${code}`)));
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === 'ready') resolve();
        else {
          const [text, pid] = JSON.parse(line) as [string, number];
          messages.push(text);
          senders.push(pid);
        }
      }
    });
  });
  return { messages, senders, child, path };
}

/** `shuttle run` as a child process, its JSON log lines (stdout) parsed as they arrive. */
export interface RunningDaemon {
  child: ChildProcess;
  logs: Array<Record<string, unknown> & { msg?: string }>;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `shuttle run ARGS` and resolves when it logs "daemon started" (fails if it exits first or takes 20 s). */
export async function spawnDaemon(args: readonly string[], env: Record<string, string | undefined>): Promise<RunningDaemon> {
  const child = spawnCli(['run', ...args], { env });
  const logs: RunningDaemon['logs'] = [];
  let out = '';
  let err = '';
  let onStarted: () => void = () => {};
  const started = new Promise<void>((resolve) => (onStarted = resolve));
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
      const line = JSON.parse(out.slice(0, nl)) as RunningDaemon['logs'][number];
      logs.push(line);
      if (line.msg === 'daemon started') onStarted();
      out = out.slice(nl + 1);
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('close', (code, signal) => r({ code, signal })));
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`daemon did not start within 20 s: ${err}`));
    }, 20_000);
  });
  const ended = exited.then(({ code, signal }) => Promise.reject(new Error(`daemon exited ${code ?? signal} before it started: ${err}`)));
  try {
    // The race handles every rejection, also those of the losers (`ended` rejects when a started daemon stops).
    await Promise.race([started, gaveUp, ended]);
  } finally {
    clearTimeout(timer);
  }
  return { child, logs, stderr: () => err, exited };
}

/** Kills the daemons a failed test left running (and empties the list). */
export function killLeftoverDaemons(daemons: RunningDaemon[]): void {
  for (const d of daemons.splice(0)) if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
}

/** Asks `probe` every `everyMs` until `ok` holds; after `timeoutMs` fails naming `what` and the last value. */
export async function until<T>(what: string, probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v).slice(0, 3000)}`);
    await sleep(everyMs);
  }
}

/**
 * Registers hooks giving each test of the enclosing suite a fresh temp folder, with SHUTTLE_LOCK_DIR
 * pointed inside it (in-process daemons and schedulers take their locks there), and restoring the
 * variable after the suite. Returns the current test's folder.
 */
export function tempDirWithOwnLocks(prefix: string): () => string {
  let dir = '';
  let cleanup: (() => Promise<void>) | undefined;
  let saved: string | undefined;
  beforeAll(() => {
    saved = process.env['SHUTTLE_LOCK_DIR'];
  });
  afterAll(() => {
    if (saved === undefined) delete process.env['SHUTTLE_LOCK_DIR'];
    else process.env['SHUTTLE_LOCK_DIR'] = saved;
  });
  beforeEach(async () => {
    ({ path: dir, cleanup } = await tempDir(prefix));
    process.env['SHUTTLE_LOCK_DIR'] = `${dir}/locks`;
  });
  afterEach(async () => {
    await cleanup?.();
  });
  return () => dir;
}
