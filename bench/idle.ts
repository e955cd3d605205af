// Idle daemon benchmark: what `shuttle run` costs while nothing happens (issue 16: "idle daemon CPU
// unchanged"). The daemon runs as installed on a box: a hot folder, mounts watched, USB cameras by hotplug,
// network cameras listened for, the HTTP API on loopback. After it said `daemon started` and settled, its
// CPU time (user + system, every thread) is read from /proc over a window of BENCH_IDLE_S seconds.
// Run:  BENCH_RUNS=3 BENCH_BEFORE=path/to/main.js ./node_modules/.bin/node bench/idle.ts
// Prints CPU milliseconds per minute idle and the resident memory at the window's end, per build, as
// medians of alternating rounds, and the ratio of this build's CPU to the earlier one's.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { clean, main, node, printTable, work } from './common.ts';

const runs = Number(process.env.BENCH_RUNS ?? '3');
const windowS = Number(process.env.BENCH_IDLE_S ?? '30');
/** Start-up work (compile, first listings, the first mDNS queries) that is not idle time. */
const SETTLE_S = 5;
const before = process.env.BENCH_BEFORE;
const builds: Array<[string, string]> = [['shuttle run', main], ...(before ? ([['shuttle run (before)', before]] as Array<[string, string]>) : [])];
const ticksPerSecond = 100; // USER_HZ: /proc reports CPU time in these on every Linux architecture

interface Idle {
  cpuMsPerMin: number;
  rssMb: number;
}

function cpuTicks(pid: number): number {
  // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th of them.
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

async function measure(program: string, round: number): Promise<Idle> {
  const dir = join(work, 'idle');
  clean(dir);
  for (const sub of ['state', 'dest', 'hot', 'mounts']) mkdirSync(join(dir, sub), { recursive: true });
  const config = join(dir, 'config.toml');
  writeFileSync(
    config,
    [
      '[daemon]',
      `control_socket = "${join(dir, 'control.sock')}"`,
      `hot_folders = ["${join(dir, 'hot')}"]`,
      `watch_mounts = ["${join(dir, 'mounts')}"]`,
      'usb_cameras = true',
      'network_cameras = true',
      'watchdog = false',
      '[api]',
      'listen = "127.0.0.1:0"',
      '',
    ].join('\n'),
  );
  const child = spawn(node, [program, '--config', config, '--state', join(dir, 'state'), 'run', '--dest', join(dir, 'dest')], {
    env: { ...process.env, SHUTTLE_LOG_LEVEL: 'info', NODE_COMPILE_CACHE: join(work, 'compile-cache', `idle-${round}-${program.replace(/\W/g, '_')}`) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
      if (out.includes('"daemon started"')) resolve();
    });
    void exited.then((code) => reject(new Error(`${program} exited (${code}) before it started:\n${out}`)));
  });
  child.stdout.resume();
  await sleep(SETTLE_S * 1000);
  const pid = child.pid!;
  const t0 = cpuTicks(pid);
  await sleep(windowS * 1000);
  const t1 = cpuTicks(pid);
  const rss = rssMb(pid);
  child.kill('SIGTERM');
  await exited;
  return { cpuMsPerMin: (((t1 - t0) / ticksPerSecond) * 1000 * 60) / windowS, rssMb: rss };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

const results = new Map<string, Idle[]>(builds.map(([label]) => [label, []]));
for (let r = 0; r < runs; r++) {
  // Alternate the order, so that a machine getting busier or quieter weighs on both builds alike.
  const order = r % 2 ? [...builds].reverse() : builds;
  for (const [label, program] of order) {
    const idle = await measure(program, r);
    results.get(label)!.push(idle);
    console.error(`round ${r + 1}: ${label}: ${idle.cpuMsPerMin.toFixed(0)} ms CPU per minute, RSS ${idle.rssMb.toFixed(0)} MB`);
  }
}
const rows = builds.map(([label]) => {
  const xs = results.get(label)!;
  return [label, `${median(xs.map((x) => x.cpuMsPerMin)).toFixed(0)} ms/min`, `${median(xs.map((x) => x.rssMb)).toFixed(0)} MB`];
});
printTable([['idle daemon', `CPU (median of ${runs}, ${windowS} s windows)`, 'RSS'], ...rows]);
if (before) {
  const now = median(results.get(builds[0]![0])!.map((x) => x.cpuMsPerMin));
  const then = median(results.get(builds[1]![0])!.map((x) => x.cpuMsPerMin));
  console.log(`idle CPU now / before: ${then > 0 ? (now / then).toFixed(2) : 'n/a (before used none)'}`);
}
