// Many-small-files ingest benchmark: `shuttle ingest` of a card folder of small files (30 kB RAW + 10 kB
// JPEG per shot, with sidecars) against `cp -r` + `sync`, where what each tool spends per file decides.
// Run as root (drops the page cache before each run):
//   BENCH_RUNS=5 BENCH_BEFORE=path/to/main.js ./node_modules/.bin/node bench/ingest-small.ts [files]
// Prints time and CPU per file, and, with BENCH_BEFORE, an earlier build measured in the same rounds.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { clean, main, medians, node, printTable, sh, work, type Timed } from './common.ts';

const wanted = Number(process.argv[2] ?? '2000');
// `shuttle sample` makes some 2.5 files a shot (RAW and JPEG, sidecars for some); the count is printed.
const shots = Math.max(1, Math.round(wanted / 2.5));
const src = join(work, `small-${shots}`);
mkdirSync(work, { recursive: true });
if (!existsSync(join(src, '.complete'))) {
  clean(src);
  sh(`${node} ${main} sample ${src} --count ${shots} --raw-size 30000 --jpeg-size 10000 --seed 3 && touch ${src}/.complete`);
}
const files = Number(execFileSync('bash', ['-c', `find ${src} -type f ! -name .complete | wc -l`], { encoding: 'utf8' }).trim());
const d1 = join(work, 'small-d1');
const st = join(work, 'small-state');
const shuttle = (program: string) =>
  `NODE_COMPILE_CACHE=${join(work, 'compile-cache', program.replace(/\W/g, '_'))} ${node} ${program} --state ${st} --log-level warn ingest ${src} --dest ${d1} --json > /dev/null`;
const before = process.env.BENCH_BEFORE;
const runs = Number(process.env.BENCH_RUNS ?? '5');
const cases: Array<[string, string]> = [
  ['cp -r + sync', `cp -r ${src} ${d1} && sync`],
  ['shuttle ingest', shuttle(main)],
  ...(before ? ([['shuttle ingest (before)', shuttle(before)]] as Array<[string, string]>) : []),
];
const best = medians(cases, runs, () => clean(d1, st));
clean(d1, st);
const perFile = (t: Timed) => `${((t.secs * 1000) / files).toFixed(2)} ms (CPU ${((t.cpuSecs * 1000) / files).toFixed(2)} ms)`;
const rows = [['case', 'time s', 'CPU s', 'per file'], ...[...best.values()].map((t) => [t.label, t.secs.toFixed(2), t.cpuSecs.toFixed(2), perFile(t)])];
process.stdout.write(`\nSmall-files ingest benchmark, ${files} files, cold cache per run, median of ${runs} interleaved runs\n`);
printTable(rows);
const one = best.get('shuttle ingest')!;
const cp = best.get('cp -r + sync')!;
process.stdout.write(`shuttle / (cp -r + sync) ${(one.secs / cp.secs).toFixed(2)}; peak RSS ${one.rssMb.toFixed(0)} MB\n`);
if (before) {
  const b = best.get('shuttle ingest (before)')!;
  process.stdout.write(`after / before: ${(one.secs / b.secs).toFixed(2)} (CPU ${(one.cpuSecs / b.cpuSecs).toFixed(2)}); peak RSS before ${b.rssMb.toFixed(0)} MB\n`);
}
