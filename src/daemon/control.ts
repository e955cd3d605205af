import { chmod, lstat, mkdir, stat, unlink } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { ShuttleError, abortReason, errnoCode, isShuttleError } from '../errors.js';
import type { Logger } from '../log.js';
import {
  COMMANDS,
  LineSplitter,
  MAX_REQUEST_BYTES,
  MAX_RESPONSE_BYTES,
  encodeError,
  encodeRequest,
  encodeResult,
  fromWireError,
  parseRequest,
  parseResponse,
  protocolError,
  type CommandArgs,
  type CommandName,
  type RequestId,
} from './protocol.js';
import { socketPeer, type Peer } from './peer.js';
import { MAX_SOCKET_PATH_BYTES, checkSocketDirectory } from './socket-path.js';

/**
 * The unix control socket: how `shuttle status`, `shuttle request` and udev-started units talk to the
 * daemon (protocol in protocol.ts). Access is by file permissions, as a unix socket has no other: the
 * socket is 0660 and its folder 0750, so the service user and its group may connect and nobody else.
 * Every request is logged with the peer's pid and uid where the kernel tells them (peer.ts). A client
 * connects only to a socket in a folder it can trust (socket-path.ts, `checkSocketDirectory`).
 *
 * `shuttle tether` serves its own socket (cli/tether-control.ts) with this server too: a socket mode, a
 * folder of its own, and the commands it knows.
 */

export const SOCKET_MODE = 0o660;
export const SOCKET_DIR_MODE = 0o750;
const DEFAULT_MAX_CONNECTIONS = 64;
/**
 * Requests one connection may have in flight. Past it the daemon stops reading that connection until one
 * finishes, so a client that sends without end fills its own socket buffer, not the daemon's memory.
 */
export const DEFAULT_MAX_IN_FLIGHT = 16;
/** A connection with nothing in flight that says nothing for this long is closed. */
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
const PROBE_TIMEOUT_MS = 1_000;
const DAEMON_NAME = 'Shuttle daemon';

export interface RequestContext {
  /** Aborts when the client disconnects or the server closes. */
  signal: AbortSignal;
}

export type ControlHandlers = {
  [C in CommandName]: (args: CommandArgs<C>, ctx: RequestContext) => unknown;
};

export interface ControlServerOptions {
  path: string;
  /** The commands this socket answers; any other is refused as unknown. */
  handlers: Partial<ControlHandlers>;
  logger: Logger;
  /** What answers at the socket, for messages (default "Shuttle daemon"). */
  serverName?: string | undefined;
  /** The socket file's mode (default 0660). */
  socketMode?: number | undefined;
  /** Makes the socket's folder ready (default: the daemon's, prepareDaemonFolder). */
  prepareFolder?: ((dir: string, logger: Logger) => Promise<void>) | undefined;
  maxConnections?: number | undefined;
  /** Requests in flight per connection before the daemon stops reading it (default 16). */
  maxInFlight?: number | undefined;
  /** Closes a connection idle this long: nothing in flight, nothing said (default 60 s). */
  idleTimeoutMs?: number | undefined;
}

/** One client connection: what it has in flight and what it sent that waits for a slot. */
interface Connection {
  socket: Socket;
  ac: AbortController;
  inFlight: number;
  /** Request lines read but not started: at most what one read brought in, as reading pauses at once. */
  pending: string[];
  /** Looked up at the first request, for the log. */
  peer?: Promise<Peer>;
  /** Why reading is paused, if it is. */
  pausedFor?: 'in-flight' | 'unread-answers' | undefined;
}

function checkPathLength(path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new ShuttleError('USAGE', `control socket path is ${Buffer.byteLength(path)} bytes, longer than unix sockets allow (${MAX_SOCKET_PATH_BYTES}): ${path}`, {
      context: { path },
    });
  }
}

/** Whether something answers at a unix socket path. */
function probe(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    const done = (alive: boolean): void => {
      s.destroy();
      resolve(alive);
    };
    s.setTimeout(PROBE_TIMEOUT_MS, () => done(true)); // something is there, just slow: do not steal its path
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Makes the daemon's socket folder (0750). A folder the daemon did not make is tightened only when it is
 * evidently Shuttle's own (systemd's RuntimeDirectory, or named shuttle*): chmod on a configured path's
 * parent such as /run would lock everyone else out.
 */
async function prepareDaemonFolder(dir: string, logger: Logger): Promise<void> {
  const made = await mkdir(dir, { recursive: true, mode: SOCKET_DIR_MODE }).catch((cause: unknown) => {
    throw new ShuttleError('USAGE', `cannot create the control socket folder ${dir}: ${errnoCode(cause) ?? String(cause)} (set [daemon] control_socket)`, {
      cause,
      context: { path: dir },
    });
  });
  const st = await stat(dir);
  const runtime = process.env['RUNTIME_DIRECTORY']?.split(':');
  const ours = made !== undefined || runtime?.includes(dir) === true || basename(dir).startsWith('shuttle');
  if (ours && st.uid === process.getuid?.() && (st.mode & 0o7777) !== SOCKET_DIR_MODE) {
    await chmod(dir, SOCKET_DIR_MODE);
  } else if (!ours && (st.mode & 0o007) !== 0) {
    logger.warn({ folder: dir, mode: (st.mode & 0o7777).toString(8) }, 'the control socket folder is open to every user; the socket itself is 0660');
  }
}

/** Clears a socket left at `path` by a server that died; LOCKED when one still answers there. */
async function clearStaleSocket(path: string, serverName: string, logger: Logger): Promise<void> {
  const existing = await lstat(path).catch(() => undefined);
  if (!existing) return;
  if (!existing.isSocket()) {
    throw new ShuttleError('USAGE', `${path} exists and is not a socket; not replacing it`, { context: { path } });
  }
  if (await probe(path)) {
    throw new ShuttleError('LOCKED', `another ${serverName} answers at ${path}`, { context: { path } });
  }
  await unlink(path);
  logger.info({ socket: path }, `removed the control socket of a ${serverName} that did not stop cleanly`);
}

export class ControlServer {
  readonly path: string;
  readonly #server: Server;
  readonly #opts: ControlServerOptions;
  readonly #connections = new Map<Socket, AbortController>();
  /** The commands with a handler, in the protocol's order. */
  readonly #known: CommandName[];
  #closing = false;

  private constructor(path: string, server: Server, opts: ControlServerOptions) {
    this.path = path;
    this.#server = server;
    this.#opts = opts;
    this.#known = COMMANDS.filter((c) => opts.handlers[c] !== undefined);
  }

  static async listen(opts: ControlServerOptions): Promise<ControlServer> {
    checkPathLength(opts.path);
    await (opts.prepareFolder ?? prepareDaemonFolder)(dirname(opts.path), opts.logger);
    await clearStaleSocket(opts.path, opts.serverName ?? DAEMON_NAME, opts.logger);
    const server = createServer({ allowHalfOpen: false });
    const cs = new ControlServer(opts.path, server, opts);
    server.on('connection', (s) => cs.#accept(s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (cause: Error) =>
        reject(new ShuttleError('USAGE', `cannot listen on ${opts.path}: ${errnoCode(cause) ?? cause.message}`, { cause, context: { path: opts.path } })),
      );
      server.listen(opts.path, () => resolve());
    });
    // The folder is closed already (0750, or the caller's), so the moment between bind and chmod exposes nothing.
    await chmod(opts.path, opts.socketMode ?? SOCKET_MODE);
    server.on('error', (err) => opts.logger.error({ err, socket: opts.path }, 'control socket error'));
    opts.logger.info({ socket: opts.path }, 'control socket listening');
    return cs;
  }

  /** Stops accepting, aborts what clients wait for, closes connections and removes the socket file. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const [socket, ac] of this.#connections) {
      ac.abort(new ShuttleError('ABORTED', `the ${this.#name} is stopping`));
      socket.end();
      setTimeout(() => socket.destroy(), 200).unref();
    }
    await closed;
    await unlink(this.path).catch(() => {});
  }

  #accept(socket: Socket): void {
    const max = this.#opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    if (this.#closing || this.#connections.size >= max) {
      const err = this.#closing
        ? protocolError('shutting-down', `the ${this.#name} is stopping`)
        : protocolError('too-many-connections', `the ${this.#name} already has ${max} clients`, { limit: max });
      socket.end(encodeError(null, err));
      // Nothing reads this socket, so it would never see the client's end and would hold close() up.
      socket.destroySoon();
      return;
    }
    const conn: Connection = { socket, ac: new AbortController(), inFlight: 0, pending: [] };
    this.#connections.set(socket, conn.ac);
    const splitter = new LineSplitter(MAX_REQUEST_BYTES);
    socket.on('data', (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = splitter.push(chunk);
      } catch (err) {
        // The rest of an overlong line cannot be told from the next request: answer and hang up.
        this.#opts.logger.warn({ err }, 'control request refused');
        socket.end(encodeError(null, err));
        socket.removeAllListeners('data');
        return;
      }
      conn.pending.push(...lines);
      this.#pump(conn);
    });
    socket.on('drain', () => this.#pump(conn));
    const idleMs = this.#idleMs;
    socket.setTimeout(idleMs);
    socket.on('timeout', () => {
      // A `wait` may rightly take hours; the timer starts again once nothing is in flight (see #pump).
      if (conn.inFlight > 0) return;
      this.#opts.logger.debug({ idleMs }, 'closing an idle control connection');
      socket.end(encodeError(null, protocolError('idle-timeout', `closed after ${idleMs} ms without a request`, { idleMs })));
      socket.destroySoon();
    });
    socket.on('error', () => {}); // a client that goes away mid-answer is its own business
    socket.on('close', () => {
      conn.ac.abort(new ShuttleError('ABORTED', 'the client disconnected'));
      this.#connections.delete(socket);
    });
  }

  get #name(): string {
    return this.#opts.serverName ?? DAEMON_NAME;
  }

  get #idleMs(): number {
    return this.#opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  }

  /**
   * Starts pending requests while there is room, and reads from the client only while it has room for
   * more and reads its answers: otherwise the socket is paused, and the client's writes back up.
   */
  #pump(conn: Connection): void {
    const max = Math.max(1, this.#opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT);
    while (conn.pending.length > 0 && conn.inFlight < max && !conn.socket.writableNeedDrain) {
      const line = conn.pending.shift()!;
      conn.inFlight++;
      void this.#handle(conn, line).finally(() => {
        if (--conn.inFlight === 0 && !conn.socket.destroyed) conn.socket.setTimeout(this.#idleMs);
        this.#pump(conn);
      });
    }
    const reason = conn.socket.writableNeedDrain ? 'unread-answers' : conn.inFlight >= max || conn.pending.length > 0 ? 'in-flight' : undefined;
    if (reason !== undefined && reason !== conn.pausedFor) {
      this.#opts.logger.debug({ reason, inFlight: conn.inFlight, pending: conn.pending.length }, 'control connection paused');
    }
    conn.pausedFor = reason;
    if (reason !== undefined && !conn.socket.isPaused()) conn.socket.pause();
    else if (reason === undefined && conn.socket.isPaused() && !conn.socket.destroyed) conn.socket.resume();
  }

  async #handle(conn: Connection, line: string): Promise<void> {
    const {
      socket,
      ac: { signal },
    } = conn;
    let id: RequestId = null;
    let reply: string;
    conn.peer ??= socketPeer(socket);
    const peer = await conn.peer;
    try {
      const req = parseRequest(line, this.#known);
      id = req.id;
      // Requests that change something are worth a line at info; status polls are not.
      const level = req.cmd === 'ingest' || req.cmd === 'cancel' || req.cmd === 'capture' ? 'info' : 'debug';
      this.#opts.logger[level]({ cmd: req.cmd, id, args: req.args, peer }, 'control request');
      const handler = this.#opts.handlers[req.cmd] as (args: unknown, ctx: RequestContext) => unknown;
      reply = encodeResult(id, await handler(req.args, { signal }));
    } catch (err) {
      if (isShuttleError(err) && err.context['id'] !== undefined) id = err.context['id'] as RequestId;
      if (isShuttleError(err, 'USAGE')) this.#opts.logger.info({ reason: err.context['reason'], rule: err.context['rule'], message: err.message, peer }, 'control request refused');
      else if (!signal.aborted) this.#opts.logger.warn({ err, peer }, 'control request failed');
      reply = encodeError(id, err);
    }
    if (!socket.destroyed && socket.writable) socket.write(reply);
  }
}

export interface ConnectOptions {
  timeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

function unreachable(path: string, cause: unknown): ShuttleError {
  const errno = errnoCode(cause);
  const why =
    errno === 'EACCES' || errno === 'EPERM'
      ? `not allowed to talk to the Shuttle daemon at ${path} (${errno}): run as the service user or a member of its group`
      : `no Shuttle daemon answers at ${path} (${errno ?? String(cause)}); is shuttle.service running?`;
  return new ShuttleError('TRANSPORT', why, { cause, context: { socket: path, errno }, retryable: errno !== 'EACCES' && errno !== 'EPERM' });
}

interface Waiting {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** A connection to the daemon; requests may overlap and are paired with their answers by id. */
export class ControlClient {
  readonly path: string;
  readonly #socket: Socket;
  readonly #waiting = new Map<number, Waiting>();
  #nextId = 1;
  #closedError: ShuttleError | undefined;

  private constructor(path: string, socket: Socket) {
    this.path = path;
    this.#socket = socket;
    const splitter = new LineSplitter(MAX_RESPONSE_BYTES);
    socket.on('data', (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = splitter.push(chunk);
      } catch (err) {
        this.#fail(new ShuttleError('INTERNAL', `the daemon's answer is too long: ${(err as Error).message}`));
        socket.destroy();
        return;
      }
      for (const line of lines) this.#answer(line);
    });
    socket.on('error', (err) =>
      this.#fail(new ShuttleError('TRANSPORT', `connection to the daemon at ${path} failed: ${errnoCode(err) ?? err.message}`, { cause: err, context: { socket: path } })),
    );
    socket.on('close', () => this.#fail(new ShuttleError('TRANSPORT', `the daemon at ${path} closed the connection`, { context: { socket: path } })));
  }

  /** Connects to the first path where a daemon answers. */
  static async connect(paths: string | readonly string[], opts: ConnectOptions = {}): Promise<ControlClient> {
    const list = typeof paths === 'string' ? [paths] : paths;
    let last: unknown = new ShuttleError('TRANSPORT', 'no control socket path to try');
    for (const path of list) {
      try {
        return await ControlClient.#connectOne(path, opts);
      } catch (err) {
        if (opts.signal?.aborted) throw abortReason(opts.signal);
        last = err;
      }
    }
    throw last;
  }

  static async #connectOne(path: string, opts: ConnectOptions): Promise<ControlClient> {
    checkPathLength(path);
    await checkSocketDirectory(path);
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(unreachable(path, Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
      }, opts.timeoutMs ?? 3_000);
      const onAbort = (): void => {
        socket.destroy();
        reject(abortReason(opts.signal!));
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      socket.once('connect', () => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        resolve(new ControlClient(path, socket));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        reject(unreachable(path, err));
      });
    });
  }

  /** Sends one request; resolves with its result, rejects with the daemon's error as a ShuttleError. */
  request<C extends CommandName>(cmd: C, args: CommandArgs<C>, opts: { signal?: AbortSignal | undefined } = {}): Promise<unknown> {
    if (this.#closedError) return Promise.reject(this.#closedError);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const signal = opts.signal;
      const onAbort = (): void => {
        this.#waiting.delete(id);
        reject(abortReason(signal!));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      const cleanup = (): void => signal?.removeEventListener('abort', onAbort);
      this.#waiting.set(id, {
        resolve: (v) => {
          cleanup();
          resolve(v);
        },
        reject: (e) => {
          cleanup();
          reject(e);
        },
      });
      this.#socket.write(encodeRequest(id, cmd, args));
    });
  }

  close(): void {
    this.#socket.end();
    this.#socket.destroy();
  }

  #answer(line: string): void {
    let res;
    try {
      res = parseResponse(line);
    } catch (err) {
      this.#fail(err as ShuttleError);
      this.#socket.destroy();
      return;
    }
    const w = typeof res.id === 'number' ? this.#waiting.get(res.id) : undefined;
    if (!w) {
      // An answer to no request: the daemon refused the connection as a whole.
      if (!res.ok) this.#fail(fromWireError(res.error));
      return;
    }
    this.#waiting.delete(res.id as number);
    if (res.ok) w.resolve(res.result);
    else w.reject(fromWireError(res.error));
  }

  #fail(err: ShuttleError): void {
    this.#closedError ??= err;
    for (const w of this.#waiting.values()) w.reject(this.#closedError);
    this.#waiting.clear();
  }
}
