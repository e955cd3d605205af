// Tethering latency: from the simulated camera's ObjectAdded to (a) Shuttle's preview of the shot, (b) Shuttle's
// verified RAW, and (c) `gphoto2 --wait-event-and-download` having written the same file (no verification),
// RAW+JPEG shots dropped one at a time into the simulator's card, sessions of the two tools alternating.
//   ./node_modules/.bin/node bench/tether.ts [shots per session = 25] [sessions = 8] [RAW MB = 25] [JPEG MB = 8]
// Each tool gets sessions/2 sessions. Shots are added only once the previous one is complete, so each figure
// is one shot's latency, not a queue's.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, watch } from 'node:fs';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = join(process.env.BENCH_DIR ?? join(root, '.tmp', 'bench'), 'tether');
const perSession = Number(process.argv[2] ?? '25');
const sessions = Math.max(2, Number(process.argv[3] ?? '8'));
const rawMb = Number(process.argv[4] ?? '25');
const jpegMb = Number(process.argv[5] ?? '8');
const node = process.execPath;
const main = join(root, 'dist', 'main.js');
if (!existsSync(main)) execFileSync(node, [join(root, 'scripts', 'build.mjs')], { stdio: 'inherit' });

rmSync(work, { recursive: true, force: true });
const pool = join(work, 'pool');
execFileSync(node, [main, 'sample', pool, '--count', String(perSession), '--raw-size', String(rawMb * 1_000_000), '--jpeg-size', String(jpegMb * 1_000_000), '--seed', '11'], {
  stdio: 'ignore',
});
// One shot = a RAW and its JPEG of one base name in one folder of the sample card.
const shots: Array<{ raw: string; jpeg: string }> = [];
for (const folder of readdirSync(join(pool, 'DCIM'))) {
  const dir = join(pool, 'DCIM', folder);
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.CR2'))) {
    const jpeg = join(dir, f.replace(/\.CR2$/, '.JPG'));
    if (existsSync(jpeg)) shots.push({ raw: join(dir, f), jpeg });
  }
}
shots.splice(perSession);

interface Sim {
  port: number;
  /** Epoch ms of the simulator's ObjectAdded, by file name. */
  added: Map<string, number>;
  proc: ChildProcess;
}

async function startSimulator(card: string): Promise<Sim> {
  const proc = spawn(node, [main, '--log-level', 'info', 'simulate-camera', '--dir', card, '--port', '0', '--host', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const added = new Map<string, number>();
  const port = await new Promise<number>((resolve, reject) => {
    // Its address on stdout, its log (with each ObjectAdded and the time it was sent) on stderr.
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const rec = JSON.parse(line) as { port?: number };
      if (rec.port !== undefined) resolve(rec.port);
    });
    createInterface({ input: proc.stderr! }).on('line', (line) => {
      const rec = JSON.parse(line) as { msg?: string; path?: string; time?: number };
      if (rec.msg === 'object added' && rec.path && rec.time) added.set(basename(rec.path), rec.time);
    });
    proc.on('exit', (c) => reject(new Error(`simulator exited ${c}`)));
  });
  return { port, added, proc };
}

function stop(proc: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    proc.once('close', () => resolve());
    proc.kill(signal);
  });
}

/** The names shot `i` gets on the card (the sample card repeats names across its folders). */
const names = (i: number): { raw: string; jpeg: string } => ({ raw: `IMG_${String(i + 1).padStart(4, '0')}.CR2`, jpeg: `IMG_${String(i + 1).padStart(4, '0')}.JPG` });

/** Puts shot `i` on the "card" the way a camera's file appears: linked aside, then renamed in (sizes known at once). */
function shoot(card: string, i: number): void {
  const dir = join(card, 'DCIM', '100CANON');
  const shot = shots[i]!;
  const to = names(i);
  for (const [from, name] of [
    [shot.jpeg, to.jpeg],
    [shot.raw, to.raw],
  ] as const) {
    const aside = join(card, `.${name}`);
    linkSync(from, aside);
    renameSync(aside, join(dir, name));
  }
}

interface ShotTimes {
  /** ms from ObjectAdded of the shot's first file to its first preview (Shuttle only). */
  preview?: number;
  /** ms from the RAW's ObjectAdded to the RAW verified (Shuttle) or written (gphoto2). */
  raw: number;
  /** ms from the JPEG's ObjectAdded to the JPEG verified or written. */
  jpeg: number;
}

async function shuttleSession(n: number): Promise<{ times: ShotTimes[]; rssMb: number }> {
  const card = join(work, `card-${n}`);
  mkdirSync(join(card, 'DCIM', '100CANON'), { recursive: true });
  const sim = await startSimulator(card);
  const dest = join(work, `lib-${n}`);
  const proc = spawn(node, [main, '--state', join(work, `state-${n}`), '--log-level', 'warn', 'tether', `ptpip:127.0.0.1:${sim.port}`, '--dest', dest, '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  type Verified = { event: string; name: string; preview: string | null; ms: { verified: number; preview: number | null } | null };
  const waiting = new Map<string, (v: { at: number; v: Verified }) => void>();
  const early = new Map<string, { at: number; v: Verified }>();
  let ready!: () => void;
  const isReady = new Promise<void>((resolve, reject) => {
    ready = resolve;
    proc.on('exit', (c) => reject(new Error(`shuttle tether exited ${c}: ${stderr.slice(-2000)}`)));
  });
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    const at = Date.now();
    const v = JSON.parse(line) as Verified;
    if (v.event === 'ready') ready();
    if (v.event === 'failed') throw new Error(`shuttle: ${v.name} failed`);
    if (v.event !== 'verified') return;
    const name = basename(v.name);
    const w = waiting.get(name);
    if (w) w({ at, v });
    else early.set(name, { at, v });
  });
  const verifiedLine = (name: string): Promise<{ at: number; v: Verified }> => {
    const e = early.get(name);
    return e ? Promise.resolve(e) : new Promise((r) => waiting.set(name, r));
  };
  await isReady;
  const times: ShotTimes[] = [];
  for (let i = 0; i < shots.length; i++) {
    const shot = names(i);
    shoot(card, i);
    const [j, r] = await Promise.all([verifiedLine(shot.jpeg), verifiedLine(shot.raw)]);
    const rel = (x: { at: number; v: Verified }, what: 'verified' | 'preview'): number | undefined => {
      const ms = x.v.ms;
      if (!ms) return undefined;
      const value = what === 'verified' ? ms.verified : ms.preview;
      if (value === null) return undefined;
      // The line is printed once both are known; Shuttle's own clock places each relative to the event it received.
      const eventAt = x.at - Math.max(ms.verified, ms.preview ?? 0);
      return eventAt + value;
    };
    const simJ = sim.added.get(shot.jpeg);
    const simR = sim.added.get(shot.raw);
    if (simJ === undefined || simR === undefined) throw new Error('the simulator did not report ObjectAdded');
    const previews = [rel(j, 'preview'), rel(r, 'preview')].filter((x): x is number => x !== undefined);
    times.push({
      raw: (rel(r, 'verified') ?? r.at) - simR,
      jpeg: (rel(j, 'verified') ?? j.at) - simJ,
      ...(previews.length ? { preview: Math.min(...previews) - Math.min(simJ, simR) } : {}),
    });
  }
  // The kernel's high-water mark of its resident set, read before it is asked to stop.
  const rssMb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))?.[1]) / 1024;
  await stop(proc);
  await stop(sim.proc);
  rmSync(dest, { recursive: true, force: true });
  rmSync(card, { recursive: true, force: true });
  return { times, rssMb };
}

async function gphoto2Session(n: number): Promise<{ times: ShotTimes[] }> {
  const card = join(work, `card-${n}`);
  mkdirSync(join(card, 'DCIM', '100CANON'), { recursive: true });
  const sim = await startSimulator(card);
  const out = join(work, `gp-${n}`);
  const home = join(work, 'home');
  mkdirSync(out, { recursive: true });
  mkdirSync(home, { recursive: true });
  // Written = the file has its full size (gphoto2 writes it in place and closes it right after).
  const want = new Map<string, { size: number; done: (at: number) => void }>();
  const watcher = watch(out, (_e, name) => {
    const at = Date.now();
    if (!name) return;
    const w = want.get(name);
    if (!w) return;
    try {
      if (statSync(join(out, name)).size === w.size) {
        want.delete(name);
        w.done(at);
      }
    } catch {
      // Not there yet.
    }
  });
  // fs.watch may coalesce gphoto2's temp-file events with the rename; a 10 ms check is the fallback.
  const written = (file: string, name: string): Promise<number> =>
    new Promise((done, fail) => {
      const size = statSync(file).size;
      const poll = setInterval(() => {
        try {
          if (statSync(join(out, name)).size === size) finish(Date.now());
        } catch {
          // Not there yet.
        }
      }, 10);
      const timeout = setTimeout(() => {
        clearInterval(poll);
        want.delete(name);
        fail(new Error(`gphoto2 did not write ${name} within 30 s; it said: ${said.slice(-500)}`));
      }, 30_000);
      const finish = (at: number): void => {
        clearInterval(poll);
        clearTimeout(timeout);
        want.delete(name);
        done(at);
      };
      want.set(name, { size, done: finish });
    });
  // Line-buffered, so that its "Waiting … for events" arrives when it is printed.
  const proc = spawn(
    'stdbuf',
    ['-oL', 'gphoto2', '--port', `ptpip:127.0.0.1:${sim.port}:${sim.port}`, '--camera', 'PTP/IP Camera', '--wait-event-and-download=3600s', '--filename', '%f.%C'],
    { cwd: out, env: { PATH: process.env.PATH, HOME: home, LANG: 'C.UTF-8' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // gphoto2 says nothing when it starts waiting; it is listening once it opened the session and the simulator logged it.
  let said = '';
  proc.stderr!.on('data', (d: Buffer) => (said += d.toString()));
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      said += d.toString();
      if (/Waiting .*for events/i.test(said)) resolve();
    });
    proc.on('exit', (c) => reject(new Error(`gphoto2 exited ${c}: ${said}`)));
  });
  const times: ShotTimes[] = [];
  for (let i = 0; i < shots.length; i++) {
    const name = names(i);
    const [j, r] = [written(shots[i]!.jpeg, name.jpeg), written(shots[i]!.raw, name.raw)];
    shoot(card, i);
    const [jAt, rAt] = await Promise.all([j, r]);
    const simJ = sim.added.get(name.jpeg);
    const simR = sim.added.get(name.raw);
    if (simJ === undefined || simR === undefined) throw new Error('the simulator did not report ObjectAdded');
    times.push({ raw: rAt - simR, jpeg: jAt - simJ });
  }
  watcher.close();
  await stop(proc, 'SIGINT');
  await stop(sim.proc);
  rmSync(out, { recursive: true, force: true });
  rmSync(card, { recursive: true, force: true });
  return { times };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const p95 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)]!;

const sh: ShotTimes[] = [];
const gp: ShotTimes[] = [];
let rss = 0;
for (let i = 0; i < sessions; i++) {
  // Sessions in the order shuttle, gphoto2, gphoto2, shuttle, … so that drift in the machine's load falls on both alike.
  if (i % 4 === 0 || i % 4 === 3) {
    const r = await shuttleSession(i);
    sh.push(...r.times);
    rss = Math.max(rss, r.rssMb);
    process.stderr.write(`session ${i + 1}/${sessions} shuttle: RAW verified median ${median(r.times.map((t) => t.raw)).toFixed(0)} ms\n`);
  } else {
    const r = await gphoto2Session(i);
    gp.push(...r.times);
    process.stderr.write(`session ${i + 1}/${sessions} gphoto2: RAW written median ${median(r.times.map((t) => t.raw)).toFixed(0)} ms\n`);
  }
}
rmSync(work, { recursive: true, force: true });

const previews = sh.flatMap((t) => (t.preview === undefined ? [] : [t.preview]));
const gpFirst = gp.map((t) => Math.min(t.raw, t.jpeg));
const f = (x: number): string => `${x.toFixed(0)} ms`;
process.stdout.write(`\nTethering over PTP/IP on loopback, ${sh.length} + ${gp.length} shots of a ${rawMb} MB RAW + ${jpegMb} MB JPEG, generic camera\n`);
process.stdout.write(`from ObjectAdded            median     p95\n`);
process.stdout.write(`shuttle preview ready    ${f(median(previews)).padStart(8)} ${f(p95(previews)).padStart(8)}   (${previews.length} of ${sh.length} shots)\n`);
process.stdout.write(`shuttle RAW verified     ${f(median(sh.map((t) => t.raw))).padStart(8)} ${f(p95(sh.map((t) => t.raw))).padStart(8)}\n`);
process.stdout.write(`shuttle JPEG verified    ${f(median(sh.map((t) => t.jpeg))).padStart(8)} ${f(p95(sh.map((t) => t.jpeg))).padStart(8)}\n`);
process.stdout.write(`gphoto2 first file       ${f(median(gpFirst)).padStart(8)} ${f(p95(gpFirst)).padStart(8)}\n`);
process.stdout.write(`gphoto2 RAW written      ${f(median(gp.map((t) => t.raw))).padStart(8)} ${f(p95(gp.map((t) => t.raw))).padStart(8)}\n`);
const ratio = (a: number, b: number): string => (a / b).toFixed(2);
process.stdout.write(`preview / gphoto2 first file: ${ratio(median(previews), median(gpFirst))} (goal ≤ 0.5)\n`);
process.stdout.write(
  `RAW verified / gphoto2 RAW written: median ${ratio(median(sh.map((t) => t.raw)), median(gp.map((t) => t.raw)))}, p95 ${ratio(p95(sh.map((t) => t.raw)), p95(gp.map((t) => t.raw)))} (goal ≤ 1.0; median ≤ 300 ms)\n`,
);
process.stdout.write(`peak RSS of shuttle tether: ${rss.toFixed(0)} MB (goal ≤ 200)\n`);
