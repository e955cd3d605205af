import { spawn } from 'node:child_process';
import { createConnection, type Socket } from 'node:net';
import { chmod, chown, lstat, mkdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { serveTetherControl, type TetherControl } from '../src/cli/tether-control.js';
import { ControlClient, ControlServer, type ControlHandlers } from '../src/daemon/control.js';
import { LineSplitter, MAX_REQUEST_BYTES, parseRequest } from '../src/daemon/protocol.js';
import { ShuttleError, isShuttleError } from '../src/errors.js';
import { pino } from 'pino';
import type { Logger } from '../src/log.js';
import { captureLog } from './support/daemon-helpers.js';
import { tempDir } from './support/tree.js';

let dir: string;
let cleanup: () => Promise<void>;
let server: ControlServer | undefined;
let sockPath: string;
/** Signals of `wait` handlers, to see them abort when their client leaves. */
let waitSignals: AbortSignal[];

beforeEach(async () => {
  ({ path: dir, cleanup } = await tempDir('shuttle-ctl-'));
  sockPath = join(dir, 'run', 'shuttle', 'control.sock');
  waitSignals = [];
});

afterEach(async () => {
  await server?.close();
  server = undefined;
  await cleanup();
});

function handlers(): ControlHandlers {
  return {
    ping: () => ({ pong: true }),
    status: () => ({ jobs: [] }),
    ingest: ({ source }) => ({ job: { id: 1, source }, created: true }),
    cancel: ({ job }) => {
      throw new ShuttleError('USAGE', `no job ${job}`, { context: { reason: 'no-such-job', job } });
    },
    wait: async ({ job }, { signal }) => {
      waitSignals.push(signal);
      await sleep(job * 10, undefined, { signal }).catch(() => {});
      return { job: { id: job, state: 'done' } };
    },
    capture: () => ({ event: 'verified' }),
  };
}

async function listen(path = sockPath): Promise<ControlServer> {
  server = await ControlServer.listen({ path, handlers: handlers(), logger: captureLog().logger });
  return server;
}

/** A raw client: sends bytes, collects answer lines; the protocol seen from outside. */
async function raw(path = sockPath): Promise<{ socket: Socket; send: (s: string) => void; next: () => Promise<Record<string, unknown>>; closed: Promise<void> }> {
  const socket = createConnection(path);
  await new Promise((r, j) => socket.once('connect', r).once('error', j));
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  const splitter = new LineSplitter(1 << 20);
  socket.on('data', (c: Buffer) => {
    lines.push(...splitter.push(c));
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  return {
    socket,
    send: (s) => socket.write(s),
    next: async () => {
      while (lines.length === 0) {
        await Promise.race([
          new Promise<void>((r) => waiters.push(r)),
          closed.then(() => {
            throw new Error('closed without an answer');
          }),
        ]);
      }
      return JSON.parse(lines.shift()!) as Record<string, unknown>;
    },
    closed,
  };
}

describe('control socket', () => {
  test('the-socket-is-0660-and-its-folder-0750-even-when-the-folder-existed-wider', async () => {
    await mkdir(join(dir, 'run', 'shuttle'), { recursive: true, mode: 0o755 });
    expect((await stat(join(dir, 'run', 'shuttle'))).mode & 0o777).toBe(0o755);
    await listen();
    expect((await lstat(sockPath)).isSocket()).toBe(true);
    expect((await stat(sockPath)).mode & 0o777).toBe(0o660);
    expect((await stat(join(dir, 'run', 'shuttle'))).mode & 0o777).toBe(0o750);
  });

  test('answers-a-versioned-request-with-its-id', async () => {
    await listen();
    const c = await raw();
    c.send('{"v":1,"id":"a1","cmd":"ping"}\n');
    expect(await c.next()).toEqual({ v: 1, id: 'a1', ok: true, result: { pong: true } });
    c.socket.destroy();
  });

  test('bad-json-gets-a-clear-error-and-the-connection-stays-usable', async () => {
    await listen();
    const c = await raw();
    c.send('{"v":1,"cmd":"ping"\n');
    const r = await c.next();
    expect(r).toMatchObject({ v: 1, id: null, ok: false, error: { code: 'USAGE', context: { reason: 'bad-json' } } });
    expect((r['error'] as { message: string }).message).toMatch(/^request is not JSON/);
    c.send('[1,2]\n');
    expect(await c.next()).toMatchObject({ ok: false, error: { context: { reason: 'not-an-object' } } });
    c.send('{"v":1,"id":2,"cmd":"ping"}\n');
    expect(await c.next()).toMatchObject({ id: 2, ok: true });
    c.socket.destroy();
  });

  test('an-unknown-command-is-refused-naming-the-known-ones', async () => {
    await listen();
    const c = await raw();
    c.send('{"v":1,"id":3,"cmd":"format-card"}\n');
    const r = await c.next();
    expect(r).toMatchObject({
      id: 3,
      ok: false,
      error: { code: 'USAGE', context: { reason: 'unknown-command', known: ['ping', 'status', 'ingest', 'cancel', 'wait', 'capture'] } },
    });
    expect((r['error'] as { message: string }).message).toBe('unknown command "format-card" (known: ping, status, ingest, cancel, wait, capture)');
    c.socket.destroy();
  });

  test('a-request-without-the-protocol-version-or-with-another-is-refused', async () => {
    await listen();
    const c = await raw();
    c.send('{"id":4,"cmd":"ping"}\n');
    expect(await c.next()).toMatchObject({ id: 4, ok: false, error: { context: { reason: 'bad-version', supported: [1] } } });
    c.send('{"v":2,"id":5,"cmd":"ping"}\n');
    const r = await c.next();
    expect((r['error'] as { message: string }).message).toBe('protocol version 2 is not supported (this daemon speaks v1)');
    c.socket.destroy();
  });

  test('bad-arguments-are-refused-with-what-is-wrong', async () => {
    await listen();
    const c = await raw();
    c.send('{"v":1,"id":6,"cmd":"ingest","args":{}}\n');
    expect(await c.next()).toMatchObject({ id: 6, ok: false, error: { context: { reason: 'bad-args', cmd: 'ingest' } } });
    c.send('{"v":1,"id":7,"cmd":"cancel","args":{"job":"7","force":true}}\n');
    const r = await c.next();
    expect((r['error'] as { message: string }).message).toMatch(/^bad arguments for cancel: .*job.*; .*force/);
    c.socket.destroy();
  });

  test('a-line-longer-than-the-limit-is-refused-and-the-connection-closed', async () => {
    await listen();
    const c = await raw();
    // Sent in pieces with no newline: refused once it outgrows the limit, not after buffering it all.
    const piece = `{"v":1,"cmd":"ingest","args":{"source":"${'x'.repeat(16 * 1024)}`;
    for (let i = 0; i < 6 && !c.socket.destroyed; i++) c.send(piece);
    const r = await c.next();
    expect(r).toMatchObject({ ok: false, error: { code: 'USAGE', context: { reason: 'line-too-long', limit: MAX_REQUEST_BYTES } } });
    await c.closed;
  });

  test('requests-on-one-connection-are-answered-as-they-finish-paired-by-id', async () => {
    await listen();
    const c = await raw();
    c.send('{"v":1,"id":"slow","cmd":"wait","args":{"job":30}}\n{"v":1,"id":"fast","cmd":"ping"}\n');
    expect((await c.next())['id']).toBe('fast');
    expect((await c.next())['id']).toBe('slow');
    c.socket.destroy();
  });

  test('a-client-that-disconnects-aborts-what-its-requests-wait-for', async () => {
    await listen();
    const c = await raw();
    c.send('{"v":1,"id":1,"cmd":"wait","args":{"job":100000}}\n');
    while (waitSignals.length === 0) await sleep(5);
    c.socket.destroy();
    await sleep(50);
    expect(waitSignals[0]!.aborted).toBe(true);
  });

  test('the-client-turns-error-answers-into-ShuttleErrors-with-the-same-code', async () => {
    await listen();
    const client = await ControlClient.connect(sockPath);
    try {
      expect(await client.request('ingest', { source: '/media/card' })).toEqual({ job: { id: 1, source: '/media/card' }, created: true });
      const err = await client.request('cancel', { job: 9 }).catch((e: unknown) => e);
      expect(isShuttleError(err, 'USAGE')).toBe(true);
      expect((err as ShuttleError).message).toBe('no job 9');
      expect((err as ShuttleError).context['reason']).toBe('no-such-job');
    } finally {
      client.close();
    }
  });

  test('the-client-says-clearly-when-no-daemon-answers', async () => {
    const err = await ControlClient.connect(join(dir, 'nothing.sock')).catch((e: unknown) => e);
    expect(isShuttleError(err, 'TRANSPORT')).toBe(true);
    expect((err as Error).message).toMatch(/no Shuttle daemon answers at .*nothing\.sock \(ENOENT\); is shuttle\.service running\?/);
  });

  test('a-socket-left-by-a-dead-daemon-is-replaced-but-a-live-one-is-not', async () => {
    // A socket file nobody listens on: what a daemon killed with SIGKILL leaves.
    await mkdir(join(dir, 'run', 'shuttle'), { recursive: true });
    const dead = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(process.argv[1], () => console.log('up'))`, sockPath], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise((r) => dead.stdout!.once('data', r));
    dead.kill('SIGKILL');
    await new Promise((r) => dead.once('exit', r));
    expect((await lstat(sockPath)).isSocket()).toBe(true);
    await listen();
    const client = await ControlClient.connect(sockPath);
    expect(await client.request('ping', {})).toEqual({ pong: true });
    client.close();
    const second = await ControlServer.listen({ path: sockPath, handlers: handlers(), logger: captureLog().logger }).catch((e: unknown) => e);
    expect(isShuttleError(second, 'LOCKED')).toBe(true);
    expect((second as Error).message).toBe(`another Shuttle daemon answers at ${sockPath}`);
  });

  test('a-file-that-is-not-a-socket-is-never-replaced', async () => {
    await mkdir(join(dir, 'run', 'shuttle'), { recursive: true });
    await writeFile(sockPath, 'precious');
    const err = await listen().catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/exists and is not a socket/);
    expect((await lstat(sockPath)).isFile()).toBe(true);
  });

  test('a-socket-path-too-long-for-unix-sockets-is-refused-with-its-length', async () => {
    const long = join(dir, 'x'.repeat(120), 'control.sock');
    const err = await listen(long).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/longer than unix sockets allow \(107\)/);
  });

  test('closing-removes-the-socket-file', async () => {
    const s = await listen();
    await s.close();
    server = undefined;
    await expect(lstat(sockPath)).rejects.toThrow(/ENOENT/);
  });
});

/** A logger that can be waited on: `when(msg, match)` resolves with the first line (past or future) that fits. */
function watchedLog(): { logger: Logger; when: (msg: string, match?: (l: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<{ fits: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }> = [];
  const logger = pino(
    { level: 'debug' },
    {
      write: (text: string) => {
        const line = JSON.parse(text) as Record<string, unknown>;
        lines.push(line);
        for (const w of waiters.filter((x) => x.fits(line))) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      },
    },
  );
  return {
    logger,
    when: (msg, match = () => true) => {
      const fits = (l: Record<string, unknown>): boolean => l['msg'] === msg && match(l);
      const seen = lines.find(fits);
      return seen ? Promise.resolve(seen) : new Promise((resolve) => waiters.push({ fits, resolve }));
    },
  };
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('flow control', () => {
  test('a-client-sending-past-the-in-flight-cap-is-backpressured-the-daemon-stops-reading-until-a-request-finishes', async () => {
    const log = watchedLog();
    const gate = deferred();
    let started = 0;
    const fourth = deferred();
    server = await ControlServer.listen({
      path: sockPath,
      logger: log.logger,
      maxInFlight: 4,
      handlers: {
        ...handlers(),
        wait: async ({ job }) => {
          if (++started === 4) fourth.resolve();
          await gate.promise;
          return { job: { id: job, state: 'done' } };
        },
      },
    });
    const c = await raw();
    const total = 20_000;
    c.send(Array.from({ length: total }, (_, i) => `{"v":1,"id":${i},"cmd":"wait","args":{"job":1}}\n`).join(''));
    await fourth.promise;
    const paused = await log.when('control connection paused');
    expect(paused).toMatchObject({ reason: 'in-flight', inFlight: 4 });
    // A round trip on another connection: the daemon goes on serving, and starts nothing more of the first.
    const other = await ControlClient.connect(sockPath);
    expect(await other.request('ping', {})).toEqual({ pong: true });
    other.close();
    expect(started).toBe(4);
    // What the daemon does not read stays with the client: its socket is still writing.
    expect(c.socket.writableLength).toBeGreaterThan(0);
    gate.resolve();
    const ids = new Set<unknown>();
    for (let i = 0; i < total; i++) ids.add((await c.next())['id']);
    expect(ids.size).toBe(total);
    expect(started).toBe(total);
    c.socket.destroy();
  });

  test('a-client-that-does-not-read-its-answers-is-backpressured-rather-than-its-answers-queued-without-bound', async () => {
    const log = watchedLog();
    let answered = 0;
    server = await ControlServer.listen({ path: sockPath, logger: log.logger, handlers: { ...handlers(), ping: () => ({ pong: ++answered }) } });
    const socket = createConnection(sockPath);
    await new Promise((r, j) => socket.once('connect', r).once('error', j));
    socket.pause();
    const total = 100_000;
    socket.write(Array.from({ length: total }, (_, i) => `{"v":1,"id":${i},"cmd":"ping"}\n`).join(''));
    await log.when('control connection paused', (l) => l['reason'] === 'unread-answers');
    expect(answered).toBeLessThan(total);
    // Reading the answers lets the daemon go on: every request is answered once.
    const splitter = new LineSplitter(1 << 20);
    let got = 0;
    await new Promise<void>((resolve) => {
      socket.on('data', (chunk: Buffer) => {
        got += splitter.push(chunk).length;
        if (got === total) resolve();
      });
      socket.resume();
    });
    expect(answered).toBe(total);
    socket.destroy();
  });

  test('an-idle-connection-is-closed-after-the-timeout-but-one-waiting-for-an-answer-is-not', async () => {
    const gate = deferred();
    server = await ControlServer.listen({
      path: sockPath,
      logger: captureLog().logger,
      idleTimeoutMs: 200,
      handlers: {
        ...handlers(),
        wait: async ({ job }) => {
          await gate.promise;
          return { job: { id: job, state: 'done' } };
        },
      },
    });
    const busy = await raw();
    busy.send('{"v":1,"id":"w","cmd":"wait","args":{"job":5}}\n');
    const idle = await raw();
    await idle.closed;
    expect(await idle.next()).toMatchObject({ id: null, ok: false, error: { code: 'USAGE', context: { reason: 'idle-timeout', idleMs: 200 } } });
    // Connected before the idle one, so its timer ran out first: the request in flight kept it open.
    expect(busy.socket.destroyed).toBe(false);
    gate.resolve();
    expect(await busy.next()).toMatchObject({ id: 'w', ok: true });
    await busy.closed;
  });
});

describe('peer credentials', () => {
  test('every-request-is-logged-with-the-pid-and-uid-of-the-process-that-sent-it', async () => {
    const log = captureLog();
    server = await ControlServer.listen({ path: sockPath, handlers: handlers(), logger: log.logger });
    const script = `const s = require('node:net').createConnection(process.argv[1], () => s.write('{"v":1,"id":1,"cmd":"ingest","args":{"source":"/media/card"}}\\n{"v":1,"id":2,"cmd":"status"}\\n'));
      let n = 0; s.on('data', (d) => { n += String(d).split('\\n').length - 1; if (n >= 2) s.end(); });`;
    const child = spawn(process.execPath, ['-e', script, sockPath], { stdio: 'inherit' });
    await new Promise((r) => child.once('exit', r));
    const requests = log.lines.filter((l) => l.msg === 'control request');
    expect(requests.map((l) => l['cmd'])).toEqual(['ingest', 'status']);
    for (const l of requests) expect(l['peer']).toMatchObject({ pid: child.pid, uid: process.getuid!(), gid: process.getgid!(), inode: expect.any(Number) as unknown });
    expect(requests[0]).toMatchObject({ level: 30, args: { source: '/media/card' } });
  });
});

describe('socket folder trust', () => {
  test('the-client-refuses-a-socket-in-a-folder-others-can-write-or-that-another-user-made-where-anyone-can', async () => {
    const open = join(dir, 'open');
    await mkdir(open);
    await chown(open, 65534, 65534);
    await chmod(open, 0o777);
    server = await ControlServer.listen({ path: join(open, 'control.sock'), handlers: handlers(), logger: captureLog().logger });
    const err = await ControlClient.connect(join(open, 'control.sock')).catch((e: unknown) => e);
    expect(isShuttleError(err, 'USAGE'), String(err)).toBe(true);
    expect((err as ShuttleError).message).toContain(`its folder ${open} is writable by every user`);
    expect((err as ShuttleError).context).toMatchObject({ reason: 'untrusted-socket-folder', owner: 65534, mode: '777' });
    await server.close();

    // /tmp/shuttle-0 made by someone else: the folder is tidy, but anyone could have made it.
    const tmp = join(dir, 'tmp');
    await mkdir(join(tmp, 'shuttle-0'), { recursive: true });
    await chmod(tmp, 0o1777);
    await chown(join(tmp, 'shuttle-0'), 65534, 65534);
    server = await ControlServer.listen({ path: join(tmp, 'shuttle-0', 'control.sock'), handlers: handlers(), logger: captureLog().logger });
    const planted = await ControlClient.connect(join(tmp, 'shuttle-0', 'control.sock')).catch((e: unknown) => e);
    expect((planted as Error).message).toContain(`belongs to uid 65534 and sits in ${tmp}, where others can make folders`);
    await server.close();

    // The service user's folder that root made for it (systemd's RuntimeDirectory in /run) is trusted.
    const run = join(dir, 'run', 'shuttle');
    await mkdir(run, { recursive: true, mode: 0o750 });
    await chown(run, 65534, 65534);
    server = await ControlServer.listen({ path: join(run, 'control.sock'), handlers: handlers(), logger: captureLog().logger });
    const client = await ControlClient.connect(join(run, 'control.sock'));
    expect(await client.request('ping', {})).toEqual({ pong: true });
    client.close();
  });
});

describe('tether control socket', () => {
  // `shuttle tether` serves its socket with the same server: the same envelope and limits, `capture` only, the photographer's alone.
  let tether: TetherControl | undefined;
  afterEach(async () => {
    await tether?.close();
    tether = undefined;
  });

  test('the-tether-socket-answers-capture-refuses-other-commands-naming-capture-and-is-the-photographers-alone', async () => {
    const path = join(dir, 'tether', 'tether.sock');
    tether = await serveTetherControl({ path, capture: () => Promise.resolve({ event: 'verified', name: 'IMG_0001.JPG' }), logger: captureLog().logger });
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, 'tether'))).mode & 0o777).toBe(0o700);
    const c = await raw(path);
    c.send('{"v":1,"id":1,"cmd":"capture","args":{}}\n');
    expect(await c.next()).toEqual({ v: 1, id: 1, ok: true, result: { event: 'verified', name: 'IMG_0001.JPG' } });
    // A daemon command is not this socket's.
    c.send('{"v":1,"id":2,"cmd":"status"}\n');
    expect(await c.next()).toMatchObject({
      id: 2,
      ok: false,
      error: { code: 'USAGE', message: 'unknown command "status" (known: capture)', context: { reason: 'unknown-command', known: ['capture'] } },
    });
    c.socket.destroy();
  });

  test('the-tether-socket-takes-no-more-clients-than-the-daemons-and-refuses-the-next-one-with-a-reason', async () => {
    const path = join(dir, 'tether.sock');
    // The first 64 captures wait for their clients to leave, so those connections stay open; a later one is answered at once.
    let captures = 0;
    let holding!: () => void;
    const held64 = new Promise<void>((r) => (holding = r));
    tether = await serveTetherControl({
      path,
      capture: (signal) => {
        if (++captures > 64) return Promise.resolve({ event: 'verified' });
        if (captures === 64) holding();
        return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
      },
      logger: captureLog().logger,
    });
    const held = await Promise.all(Array.from({ length: 64 }, () => raw(path)));
    for (const c of held) c.send('{"v":1,"id":1,"cmd":"capture"}\n');
    await held64;
    const extra = await raw(path);
    extra.send('{"v":1,"id":2,"cmd":"capture"}\n');
    expect(await extra.next()).toMatchObject({ id: null, ok: false, error: { code: 'USAGE', context: { reason: 'too-many-connections', limit: 64 } } });
    // Refused, the connection is closed by the server: it does not hold the server's close up.
    await extra.closed;
  });
});

describe('request parsing', () => {
  test('the-line-splitter-keeps-utf8-split-across-chunks-and-handles-many-lines-per-chunk', () => {
    const sp = new LineSplitter(100);
    const bytes = Buffer.from('{"a":"é"}\n{"b":1}\n{"c"');
    expect(sp.push(bytes.subarray(0, 7))).toEqual([]);
    expect(sp.push(bytes.subarray(7))).toEqual(['{"a":"é"}', '{"b":1}']);
    expect(sp.push(Buffer.from(':2}\r\n'))).toEqual(['{"c":2}']);
    expect(() => sp.push(Buffer.alloc(101, 0x41))).toThrow(/line longer than 100 bytes/);
  });

  test('a-valid-request-parses-to-its-command-and-typed-arguments', () => {
    expect(parseRequest('{"v":1,"id":9,"cmd":"wait","args":{"job":3}}')).toEqual({ id: 9, cmd: 'wait', args: { job: 3 } });
    expect(parseRequest('{"v":1,"cmd":"status"}')).toEqual({ id: null, cmd: 'status', args: {} });
  });
});
