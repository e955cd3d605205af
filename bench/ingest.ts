// Ingest benchmark: `shuttle ingest` against what a careful user does by hand, measured in one run.
// Run as root (drops the page cache before each run):  sudo ./node_modules/.bin/node bench/ingest.ts [GiB]
// Prints a table of times, ratios against the reference commands, and Shuttle's peak RSS.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, ftruncateSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = process.env.BENCH_DIR ?? join(root, '.tmp', 'bench');
const gib = Number(process.argv[2] ?? '2');
const node = process.execPath;
const main = join(root, 'dist', 'main.js');
const src = join(work, `src-${gib}g`);
const big = join(work, 'big');

function sh(cmd: string): void {
  execFileSync('bash', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'] });
}

function dropCaches(): boolean {
  try {
    sh('sync; echo 3 > /proc/sys/vm/drop_caches');
    return true;
  } catch {
    return false;
  }
}

function clean(...dirs: string[]): void {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  sh('sync');
}

/** Seconds for one cold run of a shell command, with its peak RSS in MB and its CPU seconds (GNU time). */
function timed(label: string, cmd: string): { label: string; secs: number; rssMb: number; cpuSecs: number } {
  const cold = dropCaches();
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M %U %S', 'bash', '-c', cmd], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${label} failed (${r.status}): ${r.stderr}`);
  const [rssKb, user, system] = r.stderr.trim().split('\n').at(-1)!.split(' ').map(Number);
  process.stderr.write(`${label}: ${secs.toFixed(2)} s${cold ? '' : ' (page cache NOT dropped: run as root)'}\n`);
  return { label, secs, rssMb: rssKb! / 1024, cpuSecs: user! + system! };
}

mkdirSync(work, { recursive: true });
if (!existsSync(main)) sh(`${node} ${join(root, 'scripts', 'build.mjs')}`);
if (!existsSync(join(src, '.complete'))) {
  clean(src);
  // 25 MB RAW + 8 MB JPEG per shot, plus XMP sidecars and a voice memo from the sample generator.
  const shots = Math.max(1, Math.round((gib * 1024 ** 3) / 33e6));
  sh(`${node} ${main} sample ${src} --count ${shots} --raw-size 25000000 --jpeg-size 8000000 --seed 7 && touch ${src}/.complete`);
  rmSync(join(src, '.complete'));
  sh(`touch ${join(src, '..', `src-${gib}g.complete`)}`);
  mkdirSync(src, { recursive: true });
  sh(`touch ${src}/.complete`);
}
const srcFiles = `find ${src} -type f ! -name .complete`;
// The installed command (bin/shuttle.js) keeps V8's compiled code between runs; run directly, each build
// gets the same cache the launcher would give it.
const shuttle = (dests: string[], state: string, program = main) =>
  `NODE_COMPILE_CACHE=${join(work, 'compile-cache', program.replace(/\W/g, '_'))} ${node} ${program} --state ${state} --log-level warn ingest ${src} ${dests.map((d) => `--dest ${d}`).join(' ')} --json > /dev/null`;
// BENCH_BEFORE=path/to/main.js: an earlier build measured in the same rounds (see bench/ptpip.ts).
const before = process.env.BENCH_BEFORE;

const d1 = join(work, 'd1');
const d2 = join(work, 'd2');
const st = join(work, 'state');
// This machine's disk and CPUs are shared: every command runs BENCH_RUNS times, interleaved, and the
// median counts.
const runs = Number(process.env.BENCH_RUNS ?? '3');
const cases: Array<[string, string]> = [
  ['cp -r + sync', `cp -r ${src} ${d1} && sync`],
  [
    'cp -r + sha256sum both trees',
    `cp -r ${src} ${d1} && sync && ${srcFiles} -print0 | xargs -0 sha256sum > /dev/null && find ${d1} -type f -print0 | xargs -0 sha256sum > /dev/null`,
  ],
  ['shuttle ingest, 1 destination', shuttle([d1], st)],
  ['2 × (cp -r + sync)', `cp -r ${src} ${d1} && sync && cp -r ${src} ${d2} && sync`],
  ['shuttle ingest, 2 destinations', shuttle([d1, d2], st)],
  ...(before
    ? ([
        ['shuttle ingest (before), 1 destination', shuttle([d1], st, before)],
        ['shuttle ingest (before), 2 destinations', shuttle([d1, d2], st, before)],
      ] as Array<[string, string]>)
    : []),
];
type Timed = { label: string; secs: number; rssMb: number; cpuSecs: number };
const all = new Map<string, Timed[]>();
for (let i = 0; i < runs; i++) {
  for (const [label, cmd] of cases) {
    clean(d1, d2, st);
    all.set(label, [...(all.get(label) ?? []), timed(label, cmd)]);
  }
}
const best = new Map<string, Timed>();
for (const [label, xs] of all) {
  const sorted = [...xs].sort((a, b) => a.secs - b.secs);
  const cpu = xs.map((x) => x.cpuSecs).sort((a, b) => a - b);
  best.set(label, { ...sorted[(sorted.length - 1) >> 1]!, rssMb: Math.max(...xs.map((x) => x.rssMb)), cpuSecs: cpu[(cpu.length - 1) >> 1]! });
}
const get = (label: string): Timed => best.get(label)!;
const [cpSync, cpSha, one, twoCp, two] = [get(cases[0]![0]), get(cases[1]![0]), get(cases[2]![0]), get(cases[3]![0]), get(cases[4]![0])];
const rows = [...best.values()];

// Peak memory with a 4 GiB file (sparse on the source side: the copy is written in full).
clean(big);
mkdirSync(big, { recursive: true });
const fd = openSync(join(big, 'huge.mov'), 'w');
ftruncateSync(fd, 4 * 1024 ** 3 + 12345);
closeSync(fd);
clean(d1, st);
const huge = timed('shuttle ingest of a 4 GiB file', `${node} ${main} --state ${st} --log-level warn ingest ${big} --dest ${d1} --json > /dev/null`);
rows.push(huge);
clean(d1, d2, st, big);

const ratio = (a: number, b: number) => (a / b).toFixed(2);
const table = [
  ['comparison', 'shuttle s', 'reference s', 'ratio', 'goal'],
  ['1 dest vs cp -r + sha256sum both trees', one.secs.toFixed(2), cpSha.secs.toFixed(2), ratio(one.secs, cpSha.secs), '≤ 0.3'],
  ['1 dest vs cp -r + sync (no verification)', one.secs.toFixed(2), cpSync.secs.toFixed(2), ratio(one.secs, cpSync.secs), '≤ 1.5'],
  ['2 dests (one read) vs 2 × cp -r + sync', two.secs.toFixed(2), twoCp.secs.toFixed(2), ratio(two.secs, twoCp.secs), '≤ 0.6'],
];
if (before) {
  const [b1, b2] = [get(cases[5]![0]), get(cases[6]![0])];
  table.push(
    ['before: 1 dest vs cp -r + sha256sum', b1.secs.toFixed(2), cpSha.secs.toFixed(2), ratio(b1.secs, cpSha.secs), ''],
    ['before: 1 dest vs cp -r + sync', b1.secs.toFixed(2), cpSync.secs.toFixed(2), ratio(b1.secs, cpSync.secs), ''],
    ['before: 2 dests vs 2 × cp -r + sync', b2.secs.toFixed(2), twoCp.secs.toFixed(2), ratio(b2.secs, twoCp.secs), ''],
  );
}
const width = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
process.stdout.write(`\nIngest benchmark, ${gib} GiB tree (25 MB RAW + 8 MB JPEG + sidecars), cold cache per run, median of ${runs} interleaved runs\n`);
for (const r of table) process.stdout.write(`${r.map((c, i) => c.padEnd(width[i]!)).join('  ')}\n`);
// CPU time (user + system) is steadier than wall time when other work shares the machine.
process.stdout.write(`CPU (median): ${rows.map((r) => `${r.label} ${r.cpuSecs.toFixed(2)} s`).join(', ')}\n`);
process.stdout.write(`peak RSS: shuttle 1 dest ${one.rssMb.toFixed(0)} MB, 2 dests ${two.rssMb.toFixed(0)} MB, 4 GiB file ${huge.rssMb.toFixed(0)} MB (goal ≤ 200 MB)\n`);
