// Start-up benchmark: how long `shuttle ingest usb:` takes from process start until the camera session
// is open (its "PTP session open" log line), in the QEMU TCG guest of test/hil on an emulated usb-mtp
// camera, each run on a fresh journal (a box's first ingest). With BENCH_BEFORE=<other build's main.js>
// the two builds run in turns in the same guest (after a round that is not counted, which reads their
// files into the guest's cache), so that both see the same machine load.
// Run:  ./node_modules/.bin/node bench/startup-usb.ts [rounds]   (default 3; needs the packages test/hil names)
// USB_BENCH_CPU_PROF=DIR runs every build with --cpu-prof instead (slower) and leaves the profiles in DIR.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

await import(new URL('../test/support/ts-resolve-hooks.mjs', import.meta.url).href);
const { makeSampleCard } = await import('../src/sample/index.js');
const { extractFromExt4, makeExt4Image } = await import('../test/hil/fixtures.js');
const { GUEST_DIR, GUEST_NODE, SHUTTLE_MAIN, ensureGuestImage, requireHilPackages, startGuest } = await import('../test/hil/vm.js');

const rounds = Number(process.argv[2] ?? '3');
const before = process.env['BENCH_BEFORE'];
const builds = [SHUTTLE_MAIN, ...(before ? [resolve(before)] : [])];
requireHilPackages();
// The guest reads a compile cache warmed on this machine (test/hil/vm.ts): warm it for the other build too.
const { compileCache } = ensureGuestImage();
for (const main of builds.slice(1)) {
  const chunks = readdirSync(dirname(main))
    .filter((f) => f.endsWith('.js') && f !== 'main.js')
    .map((f) => join(dirname(main), f));
  spawnSync(GUEST_NODE, ['--input-type=module', '-e', `for (const f of ${JSON.stringify(chunks)}) await import(f);`], {
    env: { ...process.env, NODE_COMPILE_CACHE: compileCache },
    stdio: 'ignore',
  });
  spawnSync(GUEST_NODE, [main, '--version'], { env: { ...process.env, NODE_COMPILE_CACHE: compileCache }, stdio: 'ignore' });
}
const work = await mkdtemp(join(tmpdir(), 'shuttle-bench-startup-'));
try {
  const card = join(work, 'card');
  // One small file: what is measured ends before the first file, and the runs' CPU time is then mostly start-up.
  await makeSampleCard(card, { count: 1, perFolder: 1, rawSize: 100_000, jpegSize: 0, seed: 7 });
  const disk = join(work, 'dest.img');
  makeExt4Image(disk, 512 * 1024 * 1024);
  const prof = process.env['USB_BENCH_CPU_PROF'];
  const guest = await startGuest({
    script: join(GUEST_DIR, 'bench-startup.sh'),
    env: { HIL_BUILDS: builds.join(' '), HIL_ROUNDS: String(rounds), ...(prof ? { HIL_CPU_PROF: '1' } : {}) },
    workDir: join(work, 'vm'),
    qemuArgs: ['-device', `usb-mtp,id=cam,bus=xhci.0,rootdir=${card},readonly=on,desc=Bench Card`, '-drive', `file=${disk},if=virtio,format=raw,cache=unsafe`],
    timeoutMs: 30 * 60_000,
  });
  const end = await guest.exited;
  extractFromExt4(disk, '/logs', join(work, 'out'));
  if (prof) await cp(join(work, 'out/logs'), prof, { recursive: true });
  if (end.timedOut) throw new Error(`the guest timed out:\n${guest.output.slice(-3000)}`);
  const secs = builds.map(() => [] as number[]);
  const cpu = builds.map(() => [] as number[]);
  for (const m of guest.output.matchAll(/HIL:startup (\d+) (\d+) (\d+)/g)) {
    const [b, round, startMs] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (round === 0) continue; // the guest's warm-up round
    const log = readFileSync(join(work, `out/logs/b${b}-r${round}.log`), 'utf8');
    const opened = log
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { time: number; msg: string })
      .find((l) => l.msg === 'PTP session open');
    if (opened === undefined) throw new Error(`build ${builds[b - 1]} round ${round}: no session opened:\n${log.slice(-2000)}`);
    secs[b - 1]!.push((opened.time - startMs) / 1000);
    const [user, sys] = readFileSync(join(work, `out/logs/b${b}-r${round}.time`), 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    cpu[b - 1]!.push(user! + sys!);
  }
  const node = [...guest.output.matchAll(/HIL:node-startup (\d+) (\d+)/g)].filter((m) => m[1] !== '0').map((m) => Number(m[2]) / 1000);
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const show = (xs: number[]): string => `median ${median(xs).toFixed(2)} s (${xs.map((x) => x.toFixed(2)).join(', ')})`;
  process.stdout.write(`start-up until the session is open, QEMU TCG guest, fresh journal, ${rounds} rounds${prof ? ' (with --cpu-prof)' : ''}\n`);
  builds.forEach((b, i) => process.stdout.write(`${i === 0 ? 'this build ' : 'BENCH_BEFORE'} ${show(secs[i]!)}  ${b}\n`));
  process.stdout.write('CPU time (user+sys) of the whole run (one small file):\n');
  builds.forEach((_, i) => process.stdout.write(`${i === 0 ? 'this build ' : 'BENCH_BEFORE'} ${show(cpu[i]!)}\n`));
  process.stdout.write(`node -e 0    ${show(node)}\n`);
  if (before) {
    process.stdout.write(
      `ratio this / before: ${(median(secs[0]!) / median(secs[1]!)).toFixed(2)} until the session is open, ${(median(cpu[0]!) / median(cpu[1]!)).toFixed(2)} CPU (medians)\n`,
    );
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
