import { execFile } from 'node:child_process';
import { readFile, readlink } from 'node:fs/promises';
import type { Socket } from 'node:net';

/**
 * Who is at the other end of an accepted unix socket: what SO_PEERCRED would say, for the log. Node has no
 * getsockopt, and the npm addons for it are little used native builds, so the kernel is asked the way
 * `ss` asks it: the accepted socket's inode (/proc/self/fd) → its peer's inode (sock_diag, through
 * `ss -xpn`, which also names the processes holding that inode) → uid and gid from /proc/PID/status.
 *
 * Only processes this one may look at are found: under the shipped unit (ProtectProc=invisible, no
 * capabilities) that is clients running as the service user, such as the card units. Another user's
 * client is logged by its socket inode alone. This is for the log, never for a decision.
 */

export interface Peer {
  /** Inode of the client's end of the connection. */
  inode?: number;
  pid?: number;
  uid?: number;
  gid?: number;
  command?: string;
}

const SS_TIMEOUT_MS = 2_000;
const SS_MAX_OUTPUT = 16 * 1024 * 1024;

/** The socket's inode, from the `socket:[N]` link of its file descriptor. */
async function inodeOf(socket: Socket): Promise<number | undefined> {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  const link = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
  const m = /^socket:\[(\d+)\]$/.exec(link);
  return m ? Number(m[1]) : undefined;
}

function runSs(): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('ss', ['-xpnH'], { timeout: SS_TIMEOUT_MS, maxBuffer: SS_MAX_OUTPUT, env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin' } }, (err, stdout) =>
      err ? reject(err) : resolve(stdout),
    );
  });
}

export interface SsRow {
  inode: number;
  peerInode: number;
  pids: number[];
  command?: string;
}

/**
 * Rows of `ss -xpnH`: `u_str ESTAB 0 0 LOCAL INODE PEER PEER_INODE users:(("name",pid=N,fd=M),...)`.
 * Read from the right: a local address may contain spaces.
 */
export function parseSsUnix(text: string): SsRow[] {
  const rows: SsRow[] = [];
  for (const line of text.split('\n')) {
    const m = /\s(\d+)\s+\S+\s+(\d+)\s*(users:\(.*\))?\s*$/.exec(line);
    if (!m) continue;
    const users = m[3] ?? '';
    const pids = [...users.matchAll(/pid=(\d+)/g)].map((p) => Number(p[1]));
    const command = /\("((?:[^"\\]|\\.)*)",pid=/.exec(users)?.[1];
    rows.push({ inode: Number(m[1]), peerInode: Number(m[2]), pids, ...(command !== undefined ? { command } : {}) });
  }
  return rows;
}

function idsFromStatus(text: string): { uid?: number; gid?: number } {
  const uid = /^Uid:\s+(\d+)/m.exec(text)?.[1];
  const gid = /^Gid:\s+(\d+)/m.exec(text)?.[1];
  return { ...(uid !== undefined ? { uid: Number(uid) } : {}), ...(gid !== undefined ? { gid: Number(gid) } : {}) };
}

/** What can be learnt of the peer of an accepted unix socket; `{}` when nothing (never throws). */
export async function socketPeer(socket: Socket): Promise<Peer> {
  try {
    const inode = await inodeOf(socket);
    if (inode === undefined) return {};
    const rows = parseSsUnix(await runSs());
    const peerInode = rows.find((r) => r.inode === inode)?.peerInode;
    if (peerInode === undefined || peerInode === 0) return {};
    const peer = rows.find((r) => r.inode === peerInode);
    const pid = peer?.pids[0];
    if (pid === undefined) return { inode: peerInode };
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    return { inode: peerInode, pid, ...idsFromStatus(status), ...(peer?.command !== undefined ? { command: peer.command } : {}) };
  } catch {
    return {};
  }
}
