// USB ingest, this build against another, in turns within one QEMU TCG guest (test/hil): the guest's speed
// swings twofold between boots, which the ratios of bench/usb.ts (each side timed in its own phase) carry;
// builds taken in turns in one boot see the same machine. Each run copies the same usb-mtp card (large files,
// as bench/usb.ts) onto a fresh journal and destination.
// Run:  BENCH_BEFORE=<other build's main.js> ./node_modules/.bin/node bench/usb-ab.ts [MiB] [rounds]
// (default 300 MiB, 3 rounds). Prints per build the median time from the session's open to the end (the
// copy), the whole run's, and peak RSS and CPU. USB_BENCH_KEEP=DIR keeps the guest's logs.
import { readFileSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

await import(new URL('../test/support/ts-resolve-hooks.mjs', import.meta.url).href);
const { makeSampleCard } = await import('../src/sample/index.js');
const { extractFromExt4, makeExt4Image } = await import('../test/hil/fixtures.js');
const { GUEST_DIR, SHUTTLE_MAIN, requireHilPackages, startGuest } = await import('../test/hil/vm.js');

const mib = Number(process.argv[2] ?? '300');
const rounds = Number(process.argv[3] ?? '3');
const before = process.env['BENCH_BEFORE'];
const builds = [SHUTTLE_MAIN, ...(before ? [resolve(before)] : [])];
requireHilPackages();
const work = await mkdtemp(join(tmpdir(), 'shuttle-bench-usb-ab-'));
try {
  const card = join(work, 'card');
  const [rawSize, jpegSize] = [25_000_000, 8_000_000];
  const shots = Math.max(1, Math.round((mib * 1024 * 1024) / (rawSize + jpegSize)));
  await makeSampleCard(card, { count: shots, perFolder: Math.ceil(shots / 2), rawSize, jpegSize, seed: 7 });
  const disk = join(work, 'dest.img');
  // One run's copy at a time (each is removed after it), with room for the filesystem's own.
  makeExt4Image(disk, Math.max(2 * mib * 1024 * 1024 + 512 * 1024 * 1024, 1024 * 1024 * 1024));
  const guest = await startGuest({
    script: join(GUEST_DIR, 'bench-usb-ab.sh'),
    env: { HIL_BUILDS: builds.join(' '), HIL_ROUNDS: String(rounds) },
    workDir: join(work, 'vm'),
    qemuArgs: ['-device', `usb-mtp,id=cam,bus=xhci.0,rootdir=${card},readonly=on,desc=Bench Card`, '-drive', `file=${disk},if=virtio,format=raw,cache=unsafe`],
    timeoutMs: 60 * 60_000,
  });
  const end = await guest.exited;
  extractFromExt4(disk, '/logs', join(work, 'out'));
  const keep = process.env['USB_BENCH_KEEP'];
  if (keep) await cp(join(work, 'out/logs'), keep, { recursive: true });
  if (end.timedOut) throw new Error(`the guest timed out:\n${guest.output.slice(-3000)}`);
  const ends = new Map<string, { ms: number; rc: number }>();
  for (const m of guest.output.matchAll(/HIL:ab-end (\d+) (\d+) (\d+) rc=(\d+)/g)) ends.set(`${m[1]}-${m[2]}`, { ms: Number(m[3]), rc: Number(m[4]) });
  const stats = builds.map(() => ({ copy: [] as number[], whole: [] as number[], rss: [] as number[], cpu: [] as number[] }));
  for (const m of guest.output.matchAll(/HIL:ab (\d+) (\d+) (\d+)/g)) {
    const [b, round, startMs] = [Number(m[1]), Number(m[2]), Number(m[3])];
    const run = `b${b}-r${round}`;
    const done = ends.get(`${b}-${round}`);
    const log = readFileSync(join(work, `out/logs/${run}.log`), 'utf8');
    if (!done || done.rc !== 0) throw new Error(`build ${builds[b - 1]} round ${round} failed (exit ${done?.rc}):\n${log.slice(-2000)}`);
    const opened = log
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { time: number; msg: string })
      .find((l) => l.msg === 'PTP session open');
    if (opened === undefined) throw new Error(`build ${builds[b - 1]} round ${round}: no session opened:\n${log.slice(-2000)}`);
    const summary = JSON.parse(readFileSync(join(work, `out/logs/${run}.json`), 'utf8').trim()) as { status: string };
    if (summary.status !== 'complete') throw new Error(`build ${builds[b - 1]} round ${round}: ingest ${summary.status}`);
    const [rss, user, sys] = readFileSync(join(work, `out/logs/${run}.time`), 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    const s = stats[b - 1]!;
    s.copy.push((done.ms - opened.time) / 1000);
    s.whole.push((done.ms - startMs) / 1000);
    s.rss.push(rss! / 1024);
    s.cpu.push(user! + sys!);
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const show = (xs: number[], unit: string): string => `median ${median(xs).toFixed(1)}${unit} (${xs.map((x) => x.toFixed(1)).join(', ')})`;
  process.stdout.write(`USB ingest in turns in one TCG guest, ${mib} MiB of large files, ${rounds} rounds\n`);
  builds.forEach((b, i) => {
    const s = stats[i]!;
    process.stdout.write(
      `${i === 0 ? 'this build  ' : 'BENCH_BEFORE'} ${b}\n  session open to end ${show(s.copy, ' s')}\n  whole run ${show(s.whole, ' s')}\n  peak RSS ${show(s.rss, ' MB')}\n  CPU ${show(s.cpu, ' s')}\n`,
    );
  });
  if (builds.length === 2) {
    const r = stats[0]!.copy.map((c, i) => c / stats[1]!.copy[i]!);
    process.stdout.write(`copy time, this build / BENCH_BEFORE, per round: ${r.map((x) => x.toFixed(2)).join(', ')}; median ${median(r).toFixed(2)}\n`);
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
