// Field station benchmark: a card to two destinations until "safe to pull", against copying it by hand.
// Run as root (drops the page cache before each run):  sudo ./node_modules/.bin/node bench/field.ts [GiB]
//
// "Safe to pull" is the wipe gate passed: both copies verified by read-back past the page cache and the
// second read of the card matched the first. `--mark-done` runs that whole gate and then writes one small
// file at the card's root instead of deleting, so the same card serves every run. The reference is
// `cp -r` to both destinations and `sync`, which checks nothing.
//
// BENCH_BEFORE=path/to/main.js times an earlier build in the same rounds; BENCH_RUNS (default 3) rounds.
// Prints median wall and CPU (user + system) times, the ratio to the reference and the peak RSS.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { clean, main, medians, node, printTable, sampleTree, work } from './common.ts';

const gib = Number(process.argv[2] ?? '2');
const src = sampleTree(gib);
const d1 = join(work, 'd1');
const d2 = join(work, 'd2');
const st = join(work, 'state');
const runs = Number(process.env.BENCH_RUNS ?? '3');
const before = process.env.BENCH_BEFORE;
// The file --mark-done leaves at the card's root (DONE_MARK_NAME), removed before every run.
const doneMark = join(src, 'SHUTTLE-DONE.txt');

const shuttle = (program: string, gate = '--mark-done') => `${node} ${program} --state ${st} --log-level warn ingest ${src} --dest ${d1} --dest ${d2} ${gate} --json > /dev/null`;
const cases: Array<[string, string]> = [
  ['cp -r to both + sync', `cp -r ${src} ${d1} && cp -r ${src} ${d2} && sync`],
  ['shuttle, safe to pull', shuttle(main)],
  // What the gate (the second read, mostly) adds to the ingest itself.
  ['shuttle, copies verified, no gate', shuttle(main, '')],
  ...(before ? ([['shuttle (before), safe to pull', shuttle(before)]] as Array<[string, string]>) : []),
];
const got = medians(cases, runs, () => {
  rmSync(doneMark, { force: true });
  clean(d1, d2, st);
});
rmSync(doneMark, { force: true });
clean(d1, d2, st);

const ref = got.get(cases[0]![0])!;
const table = [['', 'wall s', 'CPU s', 'peak RSS MB', 'wall / reference', 'goal']];
for (const t of got.values()) {
  const isRef = t === ref;
  table.push([t.label, t.secs.toFixed(2), t.cpuSecs.toFixed(2), t.rssMb.toFixed(0), isRef ? '' : (t.secs / ref.secs).toFixed(2), isRef ? '' : '≤ 1.3, RSS ≤ 200 MB']);
}
process.stdout.write(`\nField benchmark, ${gib} GiB card (25 MB RAW + 8 MB JPEG + sidecars), two destinations, cold cache per run, median of ${runs} interleaved runs\n`);
printTable(table);
