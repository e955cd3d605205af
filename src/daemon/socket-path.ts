import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ShuttleError, errnoCode } from '../errors.js';

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
 *
 * A client connects only to a socket whose folder (symlinks resolved) nobody else could have put there:
 * the folder is writable by no one but its owner, and its owner is root, the calling user, or a user
 * root gave it to (the folder's parent is root's and writable by root alone, as /run is for systemd's
 * RuntimeDirectory). Otherwise anyone could pre-create, say, /tmp/shuttle-0 and answer a root client
 * with made-up job results.
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

/** Refuses (USAGE) a socket whose folder another user could have made or could swap the socket in; see above. */
export async function checkSocketDirectory(socketPath: string, uid: number | undefined = process.getuid?.()): Promise<void> {
  let dir: string;
  try {
    dir = await realpath(dirname(socketPath));
  } catch (cause) {
    // Nothing to trust or distrust: connecting reports the missing socket.
    if (errnoCode(cause) === 'ENOENT') return;
    throw cause;
  }
  const st = await stat(dir);
  const refuse = (why: string): ShuttleError =>
    new ShuttleError(
      'USAGE',
      `not connecting to the control socket ${socketPath}: its folder ${dir} ${why}; a client trusts a socket only in a folder that is writable by its owner alone and owned by root, by the calling user, or by a user root gave it to (in a folder of root's writable by root alone), as /run/shuttle is`,
      { context: { socket: socketPath, folder: dir, owner: st.uid, mode: (st.mode & 0o7777).toString(8), reason: 'untrusted-socket-folder' } },
    );
  if ((st.mode & 0o022) !== 0) throw refuse(`is writable by ${(st.mode & 0o002) !== 0 ? 'every user' : 'its group'}`);
  if (st.uid === 0 || st.uid === uid) return;
  const parent = await stat(dirname(dir));
  if (parent.uid === 0 && (parent.mode & 0o022) === 0) return;
  throw refuse(`belongs to uid ${st.uid} and sits in ${dirname(dir)}, where others can make folders`);
}
