/**
 * The control socket of a running `shuttle tether`: `shuttle capture` (or anything that speaks it) asks
 * the session to fire the camera. One JSON object per line each way, in the daemon's envelope
 * (daemon/protocol.ts), with one command:
 *
 *   request   {"v":1,"id":1,"cmd":"capture","args":{}}
 *   response  {"v":1,"id":1,"ok":true,"result":{"event":"verified","name":…,"files":[…],"preview":…,"ms":{…}}}
 *             {"v":1,"id":1,"ok":false,"error":{"code":"PTP_TIMEOUT","message":"…"}}
 *
 * The answer comes once the new shot is verified at every destination. The socket is 0600 in a 0700
 * folder: only the photographer's own user may fire the camera.
 */
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { createConnection, createServer, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { ShuttleError, abortReason, errnoCode } from '../errors.js';
import type { Logger } from '../log.js';
import { LineSplitter, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, encodeError, encodeRequest, encodeResult, fromWireError, parseResponse } from '../daemon/protocol.js';
import { MAX_SOCKET_PATH_BYTES } from '../daemon/socket-path.js';

export const TETHER_SOCKET_NAME = 'tether.sock';

/** `--socket` unless given: $XDG_RUNTIME_DIR/shuttle/tether.sock, else tether.sock in the state folder. */
export function defaultTetherSocket(stateDir: string, env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env['XDG_RUNTIME_DIR'];
  return xdg ? join(xdg, 'shuttle', TETHER_SOCKET_NAME) : join(stateDir, TETHER_SOCKET_NAME);
}

function checkLength(path: string): void {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new ShuttleError('USAGE', `socket path is longer than unix sockets allow (${MAX_SOCKET_PATH_BYTES} bytes): ${path}`, { context: { path } });
  }
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export interface TetherControl {
  readonly path: string;
  close(): Promise<void>;
}

/** Listens at `path` and answers `capture` requests with `capture(signal)`; the signal aborts when the client goes. */
export async function serveTetherControl(opts: { path: string; capture: (signal: AbortSignal) => Promise<unknown>; logger: Logger }): Promise<TetherControl> {
  const { path, logger } = opts;
  checkLength(path);
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const existing = await lstat(path).catch(() => undefined);
  if (existing) {
    if (!existing.isSocket()) throw new ShuttleError('USAGE', `${path} exists and is not a socket; not replacing it`, { context: { path } });
    if (await answers(path)) throw new ShuttleError('LOCKED', `another tethering session answers at ${path}`, { context: { path } });
    await unlink(path);
  }
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    const gone = new AbortController();
    socket.on('close', () => {
      sockets.delete(socket);
      gone.abort(new ShuttleError('ABORTED', 'the client went away'));
    });
    socket.on('error', () => undefined);
    const splitter = new LineSplitter(MAX_REQUEST_BYTES);
    socket.on('data', (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = splitter.push(chunk);
      } catch (err) {
        socket.end(encodeError(null, new ShuttleError('USAGE', (err as Error).message, { context: { reason: 'line-too-long' } })));
        return;
      }
      for (const line of lines) void answer(socket, line, gone.signal);
    });
  });
  const answer = async (socket: Socket, line: string, signal: AbortSignal): Promise<void> => {
    let id: string | number | null = null;
    try {
      const req = JSON.parse(line) as { v?: unknown; id?: unknown; cmd?: unknown };
      if (typeof req.id === 'number' || typeof req.id === 'string') id = req.id;
      if (req.v !== 1) throw new ShuttleError('USAGE', 'unsupported protocol version', { context: { reason: 'bad-version' } });
      if (req.cmd !== 'capture')
        throw new ShuttleError('USAGE', `unknown command ${JSON.stringify(req.cmd)}; a tethering session knows capture`, { context: { reason: 'unknown-command' } });
      logger.info({ socket: path }, 'capture requested');
      const result = await opts.capture(signal);
      if (!socket.destroyed) socket.write(encodeResult(id, result));
    } catch (err) {
      if (err instanceof SyntaxError) err = new ShuttleError('USAGE', 'request is not JSON', { context: { reason: 'bad-json' } });
      logger.warn({ err }, 'capture request failed');
      if (!socket.destroyed) socket.write(encodeError(id, err));
    }
  };
  await new Promise<void>((resolve, reject) => {
    server.once('error', (cause: Error) => reject(new ShuttleError('USAGE', `cannot listen on ${path}: ${errnoCode(cause) ?? cause.message}`, { cause, context: { path } })));
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  logger.info({ socket: path }, 'tether control socket listening');
  return {
    path,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
      await unlink(path).catch(() => undefined);
    },
  };
}

/** Asks the session at `path` to fire the camera; resolves with the verified shot's line. */
export async function requestCapture(path: string, signal?: AbortSignal): Promise<unknown> {
  checkLength(path);
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = createConnection(path);
    s.once('connect', () => resolve(s));
    s.once('error', (cause) =>
      reject(
        new ShuttleError('TRANSPORT', `no tethering session answers at ${path} (${errnoCode(cause) ?? cause.message}); is shuttle tether running?`, {
          cause,
          context: { socket: path, reason: 'no-session' },
        }),
      ),
    );
  });
  try {
    return await new Promise<unknown>((resolve, reject) => {
      const splitter = new LineSplitter(MAX_RESPONSE_BYTES);
      const onAbort = (): void => reject(abortReason(signal as AbortSignal));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.on('data', (chunk: Buffer) => {
        try {
          for (const line of splitter.push(chunk)) {
            const res = parseResponse(line);
            if (res.ok) resolve(res.result);
            else reject(fromWireError(res.error));
          }
        } catch (err) {
          reject(err);
        }
      });
      socket.on('error', (cause) =>
        reject(new ShuttleError('TRANSPORT', `connection to ${path} failed: ${errnoCode(cause) ?? cause.message}`, { cause, context: { socket: path } })),
      );
      socket.on('close', () => reject(new ShuttleError('TRANSPORT', `the tethering session at ${path} closed the connection`, { context: { socket: path } })));
      socket.write(encodeRequest(1, 'capture', {}));
    });
  } finally {
    socket.destroy();
  }
}
