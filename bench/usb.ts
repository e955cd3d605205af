// USB camera benchmark: `shuttle ingest usb:` against `gphoto2 --get-all-files`, both inside the same QEMU
// guest (TCG) on the same emulated usb-mtp camera (see test/hil/). Shuttle's time includes what gphoto2
// does not do: hashing, read-back verification, journal and manifest.
// A bare read loop over Shuttle's own USB transport (bench/usb-bare-loop.ts) on the same device gives the
// bus limit; Shuttle's throughput is reported as a fraction of it. A bare loop that crashes is run again in
// the guest (at most twice more) and the retries are reported.
// Run:  ./node_modules/.bin/node bench/usb.ts [MiB] [large|small]   (needs the packages test/hil names, and
// gphoto2; default 300 MiB of large files). `large`: 25 MB RAW + 8 MB JPEG per shot, where every tool is
// near the bus limit; `small`: about 1 MB per file, like the issue's own measurement (35 files, 39 MB),
// where per-file costs decide.
// USB_BENCH_KEEP=DIR leaves the guest's logs in DIR; USB_BENCH_CPU_PROF=DIR also runs Shuttle with
// --cpu-prof and debug logging (much slower under TCG) and leaves its profile there too; USB_BENCH_PERF=DIR
// samples the whole guest with perf (kernel and user) while Shuttle runs and leaves perf's reports there.
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Node strips the types but does not map the sources' './x.js' imports to './x.ts': the project's hook does.
await import(new URL('../test/support/ts-resolve-hooks.mjs', import.meta.url).href);
const { makeSampleCard } = await import('../src/sample/index.js');
const { hashTree, extractFromExt4, makeExt4Image } = await import('../test/hil/fixtures.js');
const { GUEST_DIR, requireHilPackages, startGuest } = await import('../test/hil/vm.js');

const mib = Number(process.argv[2] ?? '300');
const mix = process.argv[3] ?? 'large';
if (mix !== 'large' && mix !== 'small') throw new Error(`file mix must be large or small, not ${mix}`);
const [rawSize, jpegSize] = mix === 'large' ? [25_000_000, 8_000_000] : [1_500_000, 500_000];
requireHilPackages([{ pkg: 'gphoto2', tool: 'gphoto2' }]);
const work = await mkdtemp(join(tmpdir(), 'shuttle-bench-usb-'));
try {
  const card = join(work, 'card');
  // RAW + JPEG shots, plus sidecars and a voice memo.
  const shots = Math.max(1, Math.round((mib * 1024 * 1024) / (rawSize + jpegSize)));
  await makeSampleCard(card, { count: shots, perFolder: Math.ceil(shots / 2), rawSize, jpegSize, seed: 7 });
  const source = await hashTree(card); // also warms this machine's page cache, so both tools read it warm
  const bytes = [...source.values()].reduce((n, f) => n + f.size, 0);
  const disk = join(work, 'dest.img');
  makeExt4Image(disk, Math.max(2 * bytes + 512 * 1024 * 1024, 1024 * 1024 * 1024));

  const guest = await startGuest({
    script: join(GUEST_DIR, 'bench-usb.sh'),
    env: { ...(process.env['USB_BENCH_CPU_PROF'] ? { HIL_CPU_PROF: '1' } : {}), ...(process.env['USB_BENCH_PERF'] ? { HIL_PERF: '1' } : {}) },
    workDir: join(work, 'vm'),
    qemuArgs: ['-device', `usb-mtp,id=cam,bus=xhci.0,rootdir=${card},readonly=on,desc=Bench Card`, '-drive', `file=${disk},if=virtio,format=raw,cache=unsafe`],
    timeoutMs: 30 * 60_000,
  });
  const end = await guest.exited;
  extractFromExt4(disk, '/logs', join(work, 'out'));
  const keep = process.env['USB_BENCH_CPU_PROF'] ?? process.env['USB_BENCH_PERF'] ?? process.env['USB_BENCH_KEEP'];
  if (keep) await cp(join(work, 'out/logs'), keep, { recursive: true });
  const times = new Map<string, { secs: number; rc: number }>();
  for (const m of guest.output.matchAll(/HIL:time (\S+) ([\d.]+) rc=(\d+)/g)) times.set(m[1]!, { secs: Number(m[2]), rc: Number(m[3]) });
  const gphotoCount = Number(/HIL:count gphoto2 (\d+)/.exec(guest.output)?.[1] ?? 'NaN');
  const shuttle = times.get('shuttle');
  const gphoto = times.get('gphoto2');
  const startup = times.get('node-startup');
  const bare = times.get('bare-loop');
  const bareRun = /HIL:bare-loop files=(\d+) bytes=(\d+) secs=([\d.]+)/.exec(guest.output);
  const bareRetries = /HIL:bare-loop-retries (\d+) exits (.*)/.exec(guest.output);
  // The bare loop is a reference beside the comparison with gphoto2: when it fails even after its retries,
  // the rest is still reported, with its failure, and the run exits non-zero.
  const bareOk = bare !== undefined && bareRun !== null && bare.rc === 0;
  if (end.timedOut || !shuttle || !gphoto || shuttle.rc !== 0 || gphoto.rc !== 0) {
    const tail = (name: string): string => {
      try {
        return `--- ${name} ---\n${readFileSync(join(work, 'out/logs', name), 'utf8').slice(-3000)}\n`;
      } catch {
        return '';
      }
    };
    throw new Error(`benchmark guest failed:\n${guest.output.slice(-4000)}\n${tail('bare-loop.txt')}${tail('ingest.log')}`);
  }
  const summary = JSON.parse(readFileSync(join(work, 'out/logs/ingest.json'), 'utf8').trim()) as { files: number; copied: number; status: string };
  // Split Shuttle's time at its first log line (the camera session is open): before it, node and the CLI
  // loading under TCG, which costs tens of seconds here and a fraction of one on real hardware.
  const startMs = Number(/HIL:clock shuttle-start (\d+)/.exec(guest.output)?.[1]);
  const logTimes = readFileSync(join(work, 'out/logs/ingest.log'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { time: number; msg: string });
  const opened = logTimes.find((l) => l.msg === 'PTP session open')?.time;
  const startupSecs = opened !== undefined && Number.isFinite(startMs) ? (opened - startMs) / 1000 : NaN;
  const mb = bytes / 1e6;
  const [bareFiles, bareBytes, bareSecs] = bareOk ? [Number(bareRun[1]), Number(bareRun[2]), Number(bareRun[3])] : [NaN, NaN, NaN];
  if (bareOk && bareBytes !== bytes) throw new Error(`the bare loop read ${bareBytes} bytes, the card holds ${bytes}`);
  const rows = [
    ['run', 'seconds', 'MB/s', 'files'],
    ['gphoto2 --get-all-files', gphoto.secs.toFixed(1), (mb / gphoto.secs).toFixed(1), String(gphotoCount)],
    ...(bareOk && bare !== undefined
      ? [
          ['bare read loop (bus limit)', bare.secs.toFixed(1), (mb / bare.secs).toFixed(1), String(bareFiles)],
          ['  of which listing and reading', bareSecs.toFixed(1), (mb / bareSecs).toFixed(1), ''],
        ]
      : [['bare read loop (bus limit)', `failed, exit ${bare?.rc ?? 'none'}`, '', '']]),
    ['shuttle ingest usb: (verified)', shuttle.secs.toFixed(1), (mb / shuttle.secs).toFixed(1), `${summary.copied} ${summary.status}`],
    ['  of which start-up until the session is open', startupSecs.toFixed(1), '', ''],
    ['  of which listing, copying, verifying', (shuttle.secs - startupSecs).toFixed(1), (mb / (shuttle.secs - startupSecs)).toFixed(1), ''],
  ];
  const width = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  process.stdout.write(`\nUSB camera benchmark: ${source.size} files, ${mb.toFixed(0)} MB, QEMU usb-mtp in a TCG guest (${mix} files)\n`);
  for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(width[i]!)).join('  ')}\n`);
  // Each side with and without its own node start-up (the bare loop's is the wall time minus its in-process time).
  const workSecs = shuttle.secs - startupSecs;
  if (bareOk && bare !== undefined) {
    process.stdout.write(`shuttle throughput / bare loop's: ${(bare.secs / shuttle.secs).toFixed(2)}; without either's start-up: ${(bareSecs / workSecs).toFixed(2)}\n`);
  } else {
    let detail = 'no output';
    try {
      detail =
        readFileSync(join(work, 'out/logs', 'bare-loop.txt'), 'utf8')
          .trim()
          .split('\n')
          .at(-1) ?? detail;
    } catch {
      // the guest wrote no log
    }
    process.stdout.write(`the bare loop failed (exit ${bare?.rc ?? 'none'}: ${detail}); no fraction of the bus limit in this run\n`);
    process.exitCode = 1;
  }
  const usage = /HIL:shuttle-usage (\d+) ([\d.]+) ([\d.]+)/.exec(guest.output);
  if (usage) {
    process.stdout.write(
      `shuttle peak RSS ${(Number(usage[1]) / 1024).toFixed(0)} MB, CPU ${(Number(usage[2]) + Number(usage[3])).toFixed(1)} s (user ${usage[2]}, system ${usage[3]})\n`,
    );
  }
  const rates = /HIL:cpu-rates (.*)/.exec(guest.output)?.[1];
  if (rates) process.stdout.write(`this guest's CPU, MB/s on one thread: ${rates}\n`);
  process.stdout.write(`bare loop retries: ${bareRetries?.[1] ?? 'unknown'} (failed exits: ${bareRetries?.[2] ?? 'unknown'})\n`);
  // Per-file cost: what each tool spends per file beyond the bytes, which decides the small-file mix.
  const perFile = (secs: number, n: number): string => `${((secs * 1000) / n).toFixed(0)} ms`;
  process.stdout.write(
    `per file: shuttle ${perFile(workSecs, source.size)} (after start-up), gphoto2 ${perFile(gphoto.secs, source.size)}${bareOk ? `, bare loop ${perFile(bareSecs, source.size)}` : ''}\n`,
  );
  process.stdout.write(
    `ratio shuttle / gphoto2: ${(shuttle.secs / gphoto.secs).toFixed(2)}; without Shuttle's start-up: ${((shuttle.secs - startupSecs) / gphoto.secs).toFixed(2)}  (\`node -e 0\` alone takes ${startup?.secs.toFixed(1)} s in this guest)\n`,
  );
} finally {
  await rm(work, { recursive: true, force: true });
}
