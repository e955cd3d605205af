// Ingest benchmark: `shuttle ingest` against what a careful user does by hand, measured in one run.
// Run as root (drops the page cache before each run):  sudo ./node_modules/.bin/node bench/ingest.ts [GiB]
// Prints a table of times, ratios against the reference commands, and Shuttle's peak RSS.
import { closeSync, ftruncateSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { clean, main, medians, node, printTable, sampleTree, timed, work, type Timed } from './common.ts';

const gib = Number(process.argv[2] ?? '2');
const src = sampleTree(gib);
const big = join(work, 'big');
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
const best = medians(cases, runs, () => clean(d1, d2, st));
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
process.stdout.write(`\nIngest benchmark, ${gib} GiB tree (25 MB RAW + 8 MB JPEG + sidecars), cold cache per run, median of ${runs} interleaved runs\n`);
printTable(table);
// CPU time (user + system) is steadier than wall time when other work shares the machine.
process.stdout.write(`CPU (median): ${rows.map((r) => `${r.label} ${r.cpuSecs.toFixed(2)} s`).join(', ')}\n`);
process.stdout.write(`peak RSS: shuttle 1 dest ${one.rssMb.toFixed(0)} MB, 2 dests ${two.rssMb.toFixed(0)} MB, 4 GiB file ${huge.rssMb.toFixed(0)} MB (goal ≤ 200 MB)\n`);
if (before) {
  const [b1, b2] = [get(cases[5]![0]), get(cases[6]![0])];
  // The same rounds: what this build changed, in time and in CPU, against the earlier one.
  process.stdout.write(
    `after / before: 1 dest ${ratio(one.secs, b1.secs)} (CPU ${ratio(one.cpuSecs, b1.cpuSecs)}), 2 dests ${ratio(two.secs, b2.secs)} (CPU ${ratio(two.cpuSecs, b2.cpuSecs)}); peak RSS before: 1 dest ${b1.rssMb.toFixed(0)} MB, 2 dests ${b2.rssMb.toFixed(0)} MB\n`,
  );
}
