// Tethering latency per camera personality: from the simulated camera's ObjectAdded to (a) Shuttle's preview of
// the shot (its `preview` event), (b) Shuttle's verified RAW and JPEG, and (c) `gphoto2 --wait-event-and-download`
// having written the shot's first file and its RAW (no verification), RAW+JPEG shots dropped one at a time into
// the simulator's card, sessions of the two tools alternating.
//   ./node_modules/.bin/node bench/tether.ts [shots per tool and personality = 100] [--sessions N per tool = 2]
//     [--vendors generic,canon,nikon,fuji] [--raw-mb 25] [--jpeg-mb 8] [--padded-jpeg] [--bare-raw]
// BENCH_SHUTTLE=path/to/dist/main.js times another build of Shuttle (an earlier one, for a before/after).
// The JPEGs are real 6000×4000 pictures of about --jpeg-mb (a preview decodes one as a camera's); --padded-jpeg
// takes the sample card's instead (a 96×64 picture padded to the size, nearly free to decode). The RAWs are CR3s
// shaped as a Canon body writes them: metadata, then the 1620×1080 JPEG preview of the same picture in its PRVW
// box, then the sensor data; --bare-raw takes the sample card's CR2 instead (no embedded preview). Shots are added
// only once the previous one is complete, so each figure is one shot's latency, not a queue's.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, watch, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = join(process.env.BENCH_DIR ?? join(root, '.tmp', 'bench'), 'tether');
const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    sessions: { type: 'string', default: '2' },
    vendors: { type: 'string', default: 'generic,canon,nikon,fuji' },
    'raw-mb': { type: 'string', default: '25' },
    'jpeg-mb': { type: 'string', default: '8' },
    'padded-jpeg': { type: 'boolean', default: false },
    'bare-raw': { type: 'boolean', default: false },
  },
});
const shotsPerTool = Number(positionals[0] ?? '100');
const sessionsPerTool = Math.max(1, Number(opt.sessions));
const perSession = Math.ceil(shotsPerTool / sessionsPerTool);
const vendors = opt.vendors.split(',');
const rawMb = Number(opt['raw-mb']);
const jpegMb = Number(opt['jpeg-mb']);
const rawExt = opt['bare-raw'] ? 'CR2' : 'CR3';
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

if (!opt['padded-jpeg']) {
  // One real picture, made to weigh about jpegMb, then one copy per shot with its own bytes after the end
  // of the image (decoders stop there), so that no two shots' JPEGs are the same file.
  const noise = await sharp({ create: { width: 1500, height: 1000, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 60 } } })
    .png()
    .toBuffer();
  let quality = 90;
  let picture = await sharp(noise).resize(6000, 4000).jpeg({ quality }).toBuffer();
  while (picture.length > jpegMb * 1_000_000 * 1.15 && quality > 50) {
    quality -= 5;
    picture = await sharp(noise).resize(6000, 4000).jpeg({ quality }).toBuffer();
  }
  for (const [i, shot] of shots.entries()) {
    const tail = Buffer.alloc(16);
    tail.write(`shot ${i}`, 'latin1');
    rmSync(shot.jpeg);
    writeFileSync(shot.jpeg, Buffer.concat([picture, tail]));
  }
  process.stderr.write(`JPEG: a real 6000×4000 picture of ${(picture.length / 1e6).toFixed(1)} MB\n`);
}
if (!opt['bare-raw']) {
  // The picture the RAWs embed: the JPEG's (or the sample card's, padded) at Canon's PRVW size.
  const preview = await sharp(readFileSync(shots[0]!.jpeg)).resize(1620, 1080, { fit: 'fill' }).jpeg({ quality: 85 }).toBuffer();
  for (const shot of shots) {
    const sensor = readFileSync(shot.raw);
    const cr3 = cr3WithPreview(preview, sensor);
    rmSync(shot.raw);
    shot.raw = shot.raw.replace(/\.CR2$/, '.CR3');
    writeFileSync(shot.raw, cr3);
  }
  process.stderr.write(`RAW: a CR3 of ${(rawMb).toFixed(0)} MB embedding a 1620×1080 preview of ${(preview.length / 1e6).toFixed(2)} MB\n`);
}

/**
 * A CR3 as Canon lays it out: ftyp, moov (metadata, left empty here), the uuid box whose PRVW box holds the
 * preview, then mdat with the sensor data; as long as `sensor`. (src/sample/cr3.ts builds the metadata part
 * for the sample card; plain node cannot import src/ here.)
 */
function cr3WithPreview(preview: Buffer, sensor: Buffer): Buffer {
  const box = (type: string, ...payload: Buffer[]): Buffer => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(8 + payload.reduce((n, b) => n + b.length, 0), 0);
    head.write(type, 4, 'latin1');
    return Buffer.concat([head, ...payload]);
  };
  const prvwHead = Buffer.alloc(16);
  prvwHead.writeUInt16BE(1, 4);
  prvwHead.writeUInt16BE(1620, 6);
  prvwHead.writeUInt16BE(1080, 8);
  prvwHead.writeUInt16BE(1, 10);
  prvwHead.writeUInt32BE(preview.length, 12);
  const head = Buffer.concat([
    box('ftyp', Buffer.from('crx \u0000\u0000\u0000\u0001crx isom', 'latin1')),
    box('moov'),
    box('uuid', Buffer.from('eaf42b5e1c984b88b9fbb7dc406e4d16', 'hex'), Buffer.alloc(8), box('PRVW', prvwHead, preview)),
  ]);
  return Buffer.concat([head, box('mdat', sensor.subarray(Math.min(sensor.length, head.length + 8)))]);
}

interface Sim {
  port: number;
  /** Epoch ms of the simulator's ObjectAdded, by file name. */
  added: Map<string, number>;
  proc: ChildProcess;
}

async function startSimulator(card: string, vendor: string): Promise<Sim> {
  const proc = spawn(node, [main, '--log-level', 'info', 'simulate-camera', '--vendor', vendor, '--dir', card, '--port', '0', '--host', '127.0.0.1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
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
    // A tool that does not end within 10 s of the signal is killed: the next session must start.
    const kill = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    proc.once('close', () => {
      clearTimeout(kill);
      resolve();
    });
    proc.kill(signal);
  });
}

/** The names shot `i` gets on the card (the sample card repeats names across its folders). */
const names = (i: number): { raw: string; jpeg: string } => ({ raw: `IMG_${String(i + 1).padStart(4, '0')}.${rawExt}`, jpeg: `IMG_${String(i + 1).padStart(4, '0')}.JPG` });

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
  /** ms from the shot's first ObjectAdded to its first preview (Shuttle) or its first file written (gphoto2). */
  first: number;
  /** ms from the RAW's ObjectAdded to the RAW verified (Shuttle) or written (gphoto2). */
  raw: number;
  /** ms from the JPEG's ObjectAdded to the JPEG verified or written. */
  jpeg: number;
}

interface Session {
  times: ShotTimes[];
  /** CPU time (user + system) of the tool's process over the session, start-up included. */
  cpuMs: number;
  rssMb?: number;
}

/** user + system CPU of a running process, in ms. */
function cpuOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

async function shuttleSession(n: number, vendor: string): Promise<Session> {
  const card = join(work, `card-${n}`);
  mkdirSync(join(card, 'DCIM', '100CANON'), { recursive: true });
  const sim = await startSimulator(card, vendor);
  const dest = join(work, `lib-${n}`);
  const proc = spawn(
    node,
    [process.env.BENCH_SHUTTLE ?? main, '--state', join(work, `state-${n}`), '--log-level', 'warn', 'tether', `ptpip:127.0.0.1:${sim.port}`, '--dest', dest, '--json'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  type Line = { event: string; name: string; preview: string | null; ms: { verified: number; preview: number | null } | null };
  /** Lines by event and file name, with when they arrived (epoch ms). */
  const seen = new Map<string, { at: number; v: Line }>();
  const waiting = new Map<string, (v: { at: number; v: Line }) => void>();
  let ready!: () => void;
  const isReady = new Promise<void>((resolve, reject) => {
    ready = resolve;
    proc.on('exit', (c) => reject(new Error(`shuttle tether exited ${c}: ${stderr.slice(-2000)}`)));
  });
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    const at = Date.now();
    const v = JSON.parse(line) as Line;
    if (v.event === 'ready') ready();
    if (v.event === 'failed') throw new Error(`shuttle: ${v.name} failed`);
    if (v.event !== 'verified' && v.event !== 'preview') return;
    const key = `${v.event} ${basename(v.name)}`;
    seen.set(key, { at, v });
    waiting.get(key)?.({ at, v });
  });
  const line = (event: string, name: string): Promise<{ at: number; v: Line }> => {
    const key = `${event} ${name}`;
    const e = seen.get(key);
    return e ? Promise.resolve(e) : new Promise((r) => waiting.set(key, r));
  };
  await isReady;
  const times: ShotTimes[] = [];
  for (let i = 0; i < shots.length; i++) {
    const shot = names(i);
    shoot(card, i);
    const [j, r] = await Promise.all([line('verified', shot.jpeg), line('verified', shot.raw)]);
    /** When a verified line's file was verified or previewed: the line waits for its preview, Shuttle's own clock says how long. */
    const lineAt = (x: { at: number; v: Line }, what: 'verified' | 'preview'): number | undefined => {
      const ms = x.v.ms;
      if (ms === null) return what === 'verified' ? x.at : undefined;
      const value = what === 'verified' ? ms.verified : ms.preview;
      return value === null ? undefined : x.at - Math.max(ms.verified, ms.preview ?? 0) + value;
    };
    const verifiedAt = (x: { at: number; v: Line }): number => lineAt(x, 'verified')!;
    // The shot's preview is announced under the name of the file it was made of, the RAW's or the JPEG's;
    // should a build announce two, the first is what the photographer saw. A build without preview events
    // (BENCH_SHUTTLE) gives it in the verified lines.
    const announced = [seen.get(`preview ${shot.jpeg}`)?.at, seen.get(`preview ${shot.raw}`)?.at].filter((x): x is number => x !== undefined);
    const previewAt = announced.length > 0 ? Math.min(...announced) : Math.min(...[lineAt(j, 'preview'), lineAt(r, 'preview')].filter((x): x is number => x !== undefined));
    if (!Number.isFinite(previewAt)) throw new Error(`no preview for ${shot.jpeg}`);
    const simJ = sim.added.get(shot.jpeg);
    const simR = sim.added.get(shot.raw);
    if (simJ === undefined || simR === undefined) throw new Error('the simulator did not report ObjectAdded');
    times.push({ first: previewAt - Math.min(simJ, simR), raw: verifiedAt(r) - simR, jpeg: verifiedAt(j) - simJ });
  }
  // The kernel's high-water mark of its resident set, read before it is asked to stop.
  const rssMb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))?.[1]) / 1024;
  const cpuMs = cpuOf(proc.pid!);
  await stop(proc);
  await stop(sim.proc);
  rmSync(dest, { recursive: true, force: true });
  rmSync(card, { recursive: true, force: true });
  return { times, cpuMs, rssMb };
}

async function gphoto2Session(n: number, vendor: string): Promise<Session> {
  const card = join(work, `card-${n}`);
  mkdirSync(join(card, 'DCIM', '100CANON'), { recursive: true });
  const sim = await startSimulator(card, vendor);
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
    const timeout = setTimeout(() => reject(new Error(`gphoto2 was not waiting for events within 30 s; it said: ${said.slice(-500)}`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      said += d.toString();
      if (/Waiting .*for events/i.test(said)) {
        clearTimeout(timeout);
        resolve();
      }
    });
    proc.on('exit', (c) => reject(new Error(`gphoto2 exited ${c}: ${said}`)));
  });
  const times: ShotTimes[] = [];
  try {
    for (let i = 0; i < shots.length; i++) {
      const name = names(i);
      const [j, r] = [written(shots[i]!.jpeg, name.jpeg), written(shots[i]!.raw, name.raw)];
      shoot(card, i);
      const [jAt, rAt] = await Promise.all([j, r]);
      const simJ = sim.added.get(name.jpeg);
      const simR = sim.added.get(name.raw);
      if (simJ === undefined || simR === undefined) throw new Error('the simulator did not report ObjectAdded');
      times.push({ first: Math.min(jAt, rAt) - Math.min(simJ, simR), raw: rAt - simR, jpeg: jAt - simJ });
    }
    return { times, cpuMs: cpuOf(proc.pid!) };
  } finally {
    watcher.close();
    await stop(proc, 'SIGINT');
    await stop(sim.proc);
    rmSync(out, { recursive: true, force: true });
    rmSync(card, { recursive: true, force: true });
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const p95 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)]!;

const f = (x: number): string => `${x.toFixed(0)} ms`;
const ratio = (a: number, b: number): string => (a / b).toFixed(2);
const row = (label: string, xs: number[]): string => `| ${label} | ${f(median(xs))} | ${f(p95(xs))} |\n`;
let n = 0;
for (const vendor of vendors) {
  const sh: Session[] = [];
  const gp: Session[] = [];
  let gphoto2Failed: string | undefined;
  for (let i = 0; i < 2 * sessionsPerTool; i++, n++) {
    // Sessions in the order shuttle, gphoto2, gphoto2, shuttle, … so that drift in the machine's load falls on both alike.
    if (i % 4 === 0 || i % 4 === 3) {
      const r = await shuttleSession(n, vendor);
      sh.push(r);
      process.stderr.write(
        `${vendor} session ${i + 1}/${2 * sessionsPerTool} shuttle: preview median ${f(median(r.times.map((t) => t.first)))}, RAW verified median ${f(median(r.times.map((t) => t.raw)))}\n`,
      );
    } else if (gphoto2Failed === undefined) {
      let r: Session;
      try {
        r = await gphoto2Session(n, vendor);
      } catch (e) {
        // This personality is not one gphoto2 downloads from: Shuttle's figures stand alone.
        gphoto2Failed = (e as Error).message.split('\n')[0]!;
        process.stderr.write(`${vendor}: gphoto2 failed: ${gphoto2Failed}\n`);
        continue;
      }
      gp.push(r);
      process.stderr.write(
        `${vendor} session ${i + 1}/${2 * sessionsPerTool} gphoto2: first file median ${f(median(r.times.map((t) => t.first)))}, RAW written median ${f(median(r.times.map((t) => t.raw)))}\n`,
      );
    }
  }
  const s = sh.flatMap((r) => r.times);
  const g = gp.flatMap((r) => r.times);
  const cpu = (rs: Session[], count: number): string => `${(rs.reduce((a, r) => a + r.cpuMs, 0) / count).toFixed(0)} ms`;
  let out = `\n### ${vendor}: ${s.length} + ${g.length} shots of a ${rawMb} MB ${opt['bare-raw'] ? 'RAW without a preview' : 'CR3 with its preview'} + ${opt['padded-jpeg'] ? `${jpegMb} MB padded JPEG` : `real ${jpegMb} MB JPEG`} over PTP/IP on loopback\n\n`;
  out += `| from ObjectAdded | median | p95 |\n|---|---|---|\n`;
  out += row(
    'Shuttle preview ready',
    s.map((t) => t.first),
  );
  out += row(
    'Shuttle RAW verified',
    s.map((t) => t.raw),
  );
  out += row(
    'Shuttle JPEG verified',
    s.map((t) => t.jpeg),
  );
  if (g.length === 0) {
    out += `\ngphoto2 --wait-event-and-download did not download from this personality: ${gphoto2Failed}\n`;
    out += `CPU per shot (start-up included): Shuttle ${cpu(sh, s.length)}; peak RSS of shuttle tether ${Math.max(...sh.map((r) => r.rssMb ?? 0)).toFixed(0)} MB\n`;
    process.stdout.write(out);
    continue;
  }
  out += row(
    'gphoto2 first file written',
    g.map((t) => t.first),
  );
  out += row(
    'gphoto2 RAW written (unverified)',
    g.map((t) => t.raw),
  );
  out += `\npreview / gphoto2 first file: median ${ratio(median(s.map((t) => t.first)), median(g.map((t) => t.first)))} (goal ≤ 0.5); `;
  out += `RAW verified / gphoto2 RAW: median ${ratio(median(s.map((t) => t.raw)), median(g.map((t) => t.raw)))}, p95 ${ratio(p95(s.map((t) => t.raw)), p95(g.map((t) => t.raw)))} (goal ≤ 1.0, median ≤ 300 ms); `;
  out += `CPU per shot (start-up included): Shuttle ${cpu(sh, s.length)}, gphoto2 ${cpu(gp, g.length)}; peak RSS of shuttle tether ${Math.max(...sh.map((r) => r.rssMb ?? 0)).toFixed(0)} MB\n`;
  process.stdout.write(out);
}
rmSync(work, { recursive: true, force: true });
