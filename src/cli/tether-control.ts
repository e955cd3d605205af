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
import { mkdir } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { join } from 'node:path';
import { ShuttleError, abortReason, errnoCode } from '../errors.js';
import type { Logger } from '../log.js';
import { ControlServer } from '../daemon/control.js';
import { LineSplitter, MAX_RESPONSE_BYTES, encodeRequest, fromWireError, parseResponse } from '../daemon/protocol.js';
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

export interface TetherControl {
  readonly path: string;
  close(): Promise<void>;
}

/** Listens at `path` and answers `capture` requests with `capture(signal)`; the signal aborts when the client goes. */
export function serveTetherControl(opts: { path: string; capture: (signal: AbortSignal) => Promise<unknown>; logger: Logger }): Promise<TetherControl> {
  const { path, logger } = opts;
  return ControlServer.listen({
    path,
    logger,
    serverName: 'tethering session',
    socketMode: 0o600,
    // The photographer's own folder: made 0700 when missing, an existing one left as it is.
    prepareFolder: async (dir) => {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    },
    handlers: {
      capture: (_args, { signal }) => {
        logger.info({ socket: path }, 'capture requested');
        return opts.capture(signal);
      },
    },
  });
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
