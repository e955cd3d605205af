import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * Where the control socket lives. The daemon and its clients resolve it the same way from the same
 * config, but they run in different environments (the service has $RUNTIME_DIRECTORY, a shell does
 * not), so the server picks the first usable place and a client the first place where a socket exists:
 *
 *   1. `[daemon] control_socket` / $SHUTTLE_DAEMON_CONTROL_SOCKET: only that
 *   2. $RUNTIME_DIRECTORY/control.sock (systemd RuntimeDirectory=shuttle)
 *   3. /run/shuttle/control.sock
 *   4. $XDG_RUNTIME_DIR/shuttle/control.sock (a daemon run by a user, for trying things out)
 *   5. <tmpdir>/shuttle-<uid>/control.sock
 */

export const SOCKET_NAME = 'control.sock';
export const SYSTEM_RUN_DIR = '/run/shuttle';
/** sun_path is 108 bytes with its NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

export function socketCandidates(configured: string | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  if (configured !== undefined && configured !== '') return [configured];
  const out: string[] = [];
  const runtime = env['RUNTIME_DIRECTORY']?.split(':').find((p) => p !== '');
  if (runtime) out.push(join(runtime, SOCKET_NAME));
  out.push(join(SYSTEM_RUN_DIR, SOCKET_NAME));
  const xdg = env['XDG_RUNTIME_DIR'];
  if (xdg) out.push(join(xdg, 'shuttle', SOCKET_NAME));
  out.push(join(tmpdir(), `shuttle-${process.getuid?.() ?? 'user'}`, SOCKET_NAME));
  return out;
}

function writableOrCreatable(dir: string): boolean {
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(d)) {
      try {
        accessSync(d, fsConstants.W_OK | fsConstants.X_OK);
        return true;
      } catch {
        return false;
      }
    }
    if (dirname(d) === d) return false;
  }
}

/** The socket path the daemon listens on. */
export function serverSocketPath(configured: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const candidates = socketCandidates(configured, env);
  if (candidates.length === 1) return candidates[0]!;
  return candidates.find((p) => writableOrCreatable(dirname(p))) ?? candidates[candidates.length - 1]!;
}

/** The socket paths a client tries, in order: those that exist, else the first candidate (for the error message). */
export function clientSocketPaths(configured: string | undefined, env: NodeJS.ProcessEnv = process.env): string[] {
  const candidates = socketCandidates(configured, env);
  const present = candidates.filter((p) => existsSync(p));
  return present.length ? present : candidates.slice(0, 1);
}
