import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string | undefined>;
  /** Run as another user (uid:gid), through setpriv, so that permission bits apply. */
  asUser?: { uid: number; gid: number };
  timeoutMs?: number;
}

/** Starts the built `shuttle` CLI as a child process under the same Node runtime. */
export function spawnCli(args: string[], opts: CliOptions = {}): ChildProcess {
  const env: Record<string, string | undefined> = { ...process.env, TZ: 'UTC', SHUTTLE_LOG_LEVEL: 'warn', ...opts.env };
  for (const k of Object.keys(env)) if (env[k] === undefined) delete env[k];
  if (opts.asUser) {
    return spawn('setpriv', [`--reuid=${opts.asUser.uid}`, `--regid=${opts.asUser.gid}`, '--clear-groups', process.execPath, MAIN, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }
  return spawn(process.execPath, [MAIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  return collect(spawnCli(args, opts), opts.timeoutMs);
}

/**
 * A started child's output and end: stdout and stderr piped, killed after `timeoutMs`. A child that cannot
 * start (a missing program) rejects, loudly.
 */
export function collect(child: ChildProcess, timeoutMs = 120_000): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve, reject) => {
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs `shuttle ingest ... --json` and parses the one JSON object it must print. */
export async function ingestJson(args: string[], opts: CliOptions = {}): Promise<CliResult & { summary: IngestJson }> {
  const r = await runCli(['ingest', ...args, '--json'], opts);
  const lines = r.stdout.trim().split('\n').filter(Boolean);
  if (lines.length !== 1) throw new Error(`expected one JSON line on stdout, got ${lines.length}:\n${r.stdout}\nstderr:\n${r.stderr}`);
  return { ...r, summary: JSON.parse(lines[0]!) as IngestJson };
}

export interface IngestJson {
  files: number;
  bytes: number;
  copied: number;
  alreadyVerified: number;
  failed: number;
  destinations: Array<{ path: string; verified: number; failed: number; bytes: number }>;
  status: string;
  errors: Array<{ code: string; message: string; path?: string; destination?: string }>;
  renamed: Array<{ from: string; to: string; reason: string }>;
  skipped: Array<{ path: string; reason: string }>;
  /** Files deleted from the sources (--wipe). */
  wiped: number;
}
