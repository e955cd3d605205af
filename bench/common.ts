// What the ingest benchmarks share: the sample card tree, cold-cache timing of shell commands, medians of
// interleaved rounds. Run as root, so that the page cache can be dropped before each run.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('..', import.meta.url));
export const work = process.env.BENCH_DIR ?? join(root, '.tmp', 'bench');
export const node = process.execPath;
export const main = join(root, 'dist', 'main.js');

export function sh(cmd: string): void {
  execFileSync('bash', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'] });
}

export function dropCaches(): boolean {
  try {
    sh('sync; echo 3 > /proc/sys/vm/drop_caches');
    return true;
  } catch {
    return false;
  }
}

export function clean(...dirs: string[]): void {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  sh('sync');
}

export interface Timed {
  label: string;
  secs: number;
  rssMb: number;
  /** User + system CPU seconds of the command and its children. */
  cpuSecs: number;
}

/** One cold run of a shell command: wall time, peak RSS and CPU time (GNU time). */
export function timed(label: string, cmd: string): Timed {
  const cold = dropCaches();
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M %U %S', 'bash', '-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${label} failed (${r.status}): ${r.stderr}`);
  const [rssKb, user, sys] = r.stderr.trim().split('\n').at(-1)!.split(' ').map(Number) as [number, number, number];
  process.stderr.write(`${label}: ${secs.toFixed(2)} s, CPU ${(user + sys).toFixed(2)} s${cold ? '' : ' (page cache NOT dropped: run as root)'}\n`);
  return { label, secs, rssMb: rssKb / 1024, cpuSecs: user + sys };
}

/** The sample card of `gib` GiB (made once, kept under `work`): 25 MB RAW + 8 MB JPEG per shot, sidecars, a voice memo. */
export function sampleTree(gib: number): string {
  const src = join(work, `src-${gib}g`);
  mkdirSync(work, { recursive: true });
  if (!existsSync(main)) sh(`${node} ${join(root, 'scripts', 'build.mjs')}`);
  if (!existsSync(join(src, '.complete'))) {
    clean(src);
    const shots = Math.max(1, Math.round((gib * 1024 ** 3) / 33e6));
    sh(`${node} ${main} sample ${src} --count ${shots} --raw-size 25000000 --jpeg-size 8000000 --seed 7 && touch ${src}/.complete`);
  }
  return src;
}

/**
 * Runs every case `runs` times, interleaved (this machine's disk and CPUs are shared), `before` each run
 * (cleaning up); returns each case's median run, with the highest peak RSS of its runs.
 */
export function medians(cases: ReadonlyArray<readonly [string, string]>, runs: number, before: () => void): Map<string, Timed> {
  const all = new Map<string, Timed[]>();
  for (let i = 0; i < runs; i++) {
    for (const [label, cmd] of cases) {
      before();
      all.set(label, [...(all.get(label) ?? []), timed(label, cmd)]);
    }
  }
  const out = new Map<string, Timed>();
  for (const [label, xs] of all) {
    const mid = (v: number[]) => [...v].sort((a, b) => a - b)[(v.length - 1) >> 1]!;
    out.set(label, { label, secs: mid(xs.map((x) => x.secs)), cpuSecs: mid(xs.map((x) => x.cpuSecs)), rssMb: Math.max(...xs.map((x) => x.rssMb)) });
  }
  return out;
}

/** Prints rows as aligned columns. */
export function printTable(rows: readonly (readonly string[])[]): void {
  const width = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(width[i]!)).join('  ')}\n`);
}
