// PTP/IP benchmark: `shuttle ingest ptpip:` (download + hash + write + fsync + read-back verify + journal)
// against `gphoto2 --get-all-files` (download + write, no verification) and against the link limit
// (bench/ptpip-bare-loop.ts: list and read every object, bytes thrown away), all from the same simulated
// camera on loopback, measured in one run.   ./node_modules/.bin/node bench/ptpip.ts [MB] [large|small]
// `large` (the default): 8 MB RAW + 2 MB JPEG per shot, where the link and the hashing decide. `small`:
// 150 kB RAW + 50 kB JPEG per shot (with the sidecars, about 80 kB a file), a card of many small files,
// where what each tool spends per file decides; the 1 GiB object's memory run is left out.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdirSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = join(process.env.BENCH_DIR ?? join(root, '.tmp', 'bench'), 'ptpip');
const mb = Number(process.argv[2] ?? '400');
const mix = process.argv[3] ?? 'large';
if (mix !== 'large' && mix !== 'small') throw new Error(`file mix must be large or small, not ${mix}`);
const [rawSize, jpegSize] = mix === 'large' ? [8_000_000, 2_000_000] : [150_000, 50_000];
const node = process.execPath;
const main = join(root, 'dist', 'main.js');
if (!existsSync(main)) execFileSync(node, [join(root, 'scripts', 'build.mjs')], { stdio: 'inherit' });

rmSync(work, { recursive: true, force: true });
const card = join(work, 'card');
// RAW + JPEG shots, and sidecars.
const shots = Math.max(1, Math.round((mb * 1e6) / (rawSize + jpegSize)));
execFileSync(node, [main, 'sample', card, '--count', String(shots), '--raw-size', String(rawSize), '--jpeg-size', String(jpegSize), '--seed', '5'], {
  stdio: 'ignore',
});

async function withSimulator<T>(dir: string, fn: (port: number) => T): Promise<T> {
  const sim = spawn(node, [main, '--log-level', 'warn', 'simulate-camera', '--dir', dir, '--port', '0', '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    sim.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.includes('"port"'));
      if (line) resolve((JSON.parse(line) as { port: number }).port);
    });
    sim.on('exit', (c) => reject(new Error(`simulator exited ${c}`)));
  });
  try {
    return fn(port);
  } finally {
    sim.kill('SIGTERM');
  }
}

function timed(label: string, cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): { secs: number; rssMb: number; cpuSecs: number; stdout: string } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%M %U %S', cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024, ...opts });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${label} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  process.stderr.write(`${label}: ${secs.toFixed(2)} s\n`);
  // CPU time (user + system, all threads): steadier than wall time when other work shares the machine.
  const [rssKb, user, system] = r.stderr.trim().split('\n').at(-1)!.split(' ').map(Number);
  return { secs, rssMb: rssKb! / 1024, cpuSecs: user! + system!, stdout: r.stdout };
}

const home = join(work, 'home');
mkdirSync(home, { recursive: true });
// Timings on a shared machine are noisy: every command runs BENCH_RUNS times (default 5), interleaved, and
// the median counts. BENCH_BEFORE=path/to/main.js (another build, e.g. `node scripts/build.mjs --outdir
// dist-before` of an earlier commit) is measured in the same rounds, so a before/after ratio shares the load.
const runs = Number(process.env.BENCH_RUNS ?? '5');
const before = process.env.BENCH_BEFORE;
// The installed command (bin/shuttle.js) keeps V8's compiled code between runs; the benchmark runs
// dist/main.js directly, so it gives each build the same cache the launcher would (kept across rounds).
const compileCache = (program: string): NodeJS.ProcessEnv => ({ ...process.env, NODE_COMPILE_CACHE: join(work, 'compile-cache', program.replace(/\W/g, '_')) });
const shuttleRun = (label: string, program: string, port: number) => {
  rmSync(join(work, 'state'), { recursive: true, force: true });
  rmSync(join(work, 'lib'), { recursive: true, force: true });
  return timed(label, node, [program, '--state', join(work, 'state'), '--log-level', 'warn', 'ingest', `ptpip:127.0.0.1:${port}`, '--dest', join(work, 'lib'), '--json'], {
    env: compileCache(program),
  });
};
type Timed = ReturnType<typeof timed>;
const series: Record<'bare' | 'gp' | 'sh' | 'shBefore', Timed[]> = { bare: [], gp: [], sh: [], shBefore: [] };
await withSimulator(card, (port) => {
  for (let i = 0; i < runs; i++) {
    series.bare.push(timed('bare PTP/IP loop', node, [join(root, 'bench', 'ptpip-bare-loop.ts'), '127.0.0.1', String(port)]));
    const gpOut = join(work, 'gphoto2-out');
    rmSync(gpOut, { recursive: true, force: true });
    mkdirSync(gpOut, { recursive: true });
    series.gp.push(
      timed('gphoto2 --get-all-files', 'gphoto2', ['--port', `ptpip:127.0.0.1:${port}:${port}`, '--camera', 'PTP/IP Camera', '--get-all-files', '--filename', '%n_%f.%C'], {
        cwd: gpOut,
        env: { PATH: process.env.PATH, HOME: home, LANG: 'C.UTF-8' },
      }),
    );
    // A run pays for the writeback of the 200 MB the run before it wrote: the two builds take turns going first.
    const after = () => series.sh.push(shuttleRun('shuttle ingest ptpip:', main, port));
    if (before && i % 2 === 1) series.shBefore.push(shuttleRun('shuttle ingest ptpip: (before)', before, port));
    after();
    if (before && i % 2 === 0) series.shBefore.push(shuttleRun('shuttle ingest ptpip: (before)', before, port));
  }
});
const mid = (xs: number[]): number => [...xs].sort((a, b) => a - b)[(xs.length - 1) >> 1]!;
const median = (xs: Timed[]): Timed => {
  const sorted = [...xs].sort((a, b) => a.secs - b.secs);
  return { ...sorted[(sorted.length - 1) >> 1]!, rssMb: Math.max(...xs.map((x) => x.rssMb)), cpuSecs: mid(xs.map((x) => x.cpuSecs)) };
};
const [bare, gp, sh] = [median(series.bare), median(series.gp), median(series.sh)];

// Peak memory while streaming a 1 GiB+ object.
// BENCH_HUGE=0 leaves it out (comparing speed only), as does the small-file mix.
const big = join(work, 'big');
const huge = process.env.BENCH_HUGE === '0' || mix === 'small' ? undefined : await hugeRun();
async function hugeRun(): Promise<Timed> {
  mkdirSync(join(big, 'DCIM', '100SHUTL'), { recursive: true });
  const fd = openSync(join(big, 'DCIM', '100SHUTL', 'MVI_0001.MOV'), 'w');
  ftruncateSync(fd, 1024 ** 3 + 4321);
  closeSync(fd);
  return withSimulator(big, (port) =>
    timed(
      'shuttle ingest ptpip: 1 GiB object',
      node,
      [main, '--state', join(work, 'state-big'), '--log-level', 'warn', 'ingest', `ptpip:127.0.0.1:${port}`, '--dest', join(work, 'lib-big'), '--json'],
      { env: compileCache(main) },
    ),
  );
}
rmSync(work, { recursive: true, force: true });

// The bare loop reads exactly what the camera serves: the bytes every tool moves.
const mbMoved = Number(/bytes=(\d+)/.exec(bare.stdout)?.[1] ?? Number.NaN) / 1e6;
const files = Number(/files=(\d+)/.exec(bare.stdout)?.[1] ?? Number.NaN);
process.stdout.write(`\nPTP/IP benchmark, ${mb} MB (${files} files, ${mix}) from the simulator on loopback, median of ${runs} interleaved runs\n`);
process.stdout.write(`bare loop ${bare.secs.toFixed(2)} s   gphoto2 --get-all-files ${gp.secs.toFixed(2)} s   shuttle ingest ptpip: ${sh.secs.toFixed(2)} s\n`);
process.stdout.write(`shuttle/gphoto2 ${(sh.secs / gp.secs).toFixed(2)} (goal ≤ 0.8)   gphoto2/bare ${(gp.secs / bare.secs).toFixed(2)}   `);
// Same bytes, so throughput relative to the link is the inverse time ratio.
process.stdout.write(
  `shuttle throughput ${((100 * bare.secs) / sh.secs).toFixed(0)} % of the bare loop's (${(mbMoved / sh.secs).toFixed(0)} vs ${(mbMoved / bare.secs).toFixed(0)} MB/s)\n`,
);
process.stdout.write(`CPU (user + system, median): shuttle ${sh.cpuSecs.toFixed(2)} s, gphoto2 ${gp.cpuSecs.toFixed(2)} s, bare loop ${bare.cpuSecs.toFixed(2)} s\n`);
// Per file, start-up included: what decides a card of many small files.
const perFile = (t: Timed): string => `${((t.secs * 1000) / files).toFixed(2)} ms (CPU ${((t.cpuSecs * 1000) / files).toFixed(2)} ms)`;
process.stdout.write(`per file: shuttle ${perFile(sh)}, gphoto2 ${perFile(gp)}, bare loop ${perFile(bare)}\n`);
if (before) {
  const b = median(series.shBefore);
  process.stdout.write(
    `before: shuttle ${b.secs.toFixed(2)} s (CPU ${b.cpuSecs.toFixed(2)} s), shuttle/gphoto2 ${(b.secs / gp.secs).toFixed(2)}, after/before ${(sh.secs / b.secs).toFixed(2)}\n`,
  );
}
process.stdout.write(`peak RSS: shuttle ${sh.rssMb.toFixed(0)} MB, with a 1 GiB object ${huge ? huge.rssMb.toFixed(0) : '-'} MB; gphoto2 ${gp.rssMb.toFixed(0)} MB\n`);
