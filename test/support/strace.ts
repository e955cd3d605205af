import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { MAIN } from './cli.js';

export interface IngestTrace {
  status: number | null;
  stdout: string;
  stderr: string;
  /** strace's lines, each led by its thread's id, file descriptors shown with their paths (-y). */
  lines: string[];
  /** Node's main thread: the process's first, the lowest id traced. */
  main: number;
}

/** The id of the thread that made a traced call. */
export const threadOf = (line: string): number => Number(line.slice(0, line.indexOf(' ')));

/**
 * Runs `shuttle ingest <card> --dest <dest> --state <state> --json` under strace, every thread followed,
 * tracing only `calls` into the file `trace`. A missing strace throws.
 */
export async function traceIngest(calls: string[], run: { card: string; dest: string; state: string; trace: string; logLevel?: string }): Promise<IngestTrace> {
  // -s 0: no buffer's bytes (file names are printed whole all the same).
  const args = [
    '-f',
    '-y',
    '-qq',
    '-s',
    '0',
    '-e',
    `trace=${calls.join(',')}`,
    '-o',
    run.trace,
    process.execPath,
    MAIN,
    'ingest',
    run.card,
    '--dest',
    run.dest,
    '--state',
    run.state,
    '--json',
  ];
  const r = spawnSync('strace', args, { encoding: 'utf8', env: { ...process.env, TZ: 'UTC', SHUTTLE_LOG_LEVEL: run.logLevel ?? 'warn' } });
  if (r.error) throw r.error;
  const lines = (await readFile(run.trace, 'utf8')).split('\n').filter((l) => /^\d+ /.test(l));
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, lines, main: Math.min(...lines.map(threadOf)) };
}
