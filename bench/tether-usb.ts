// Tethering latency over USB: bench/tether.ts's pair (Shuttle's RAW verified against gphoto2
// --wait-event-and-download having written the same file) on QEMU's usb-mtp camera in the TCG guest of
// test/hil. Shots (a RAW and its JPEG) are linked into the root of the camera's card on this machine, one
// at a time once the previous one is complete. usb-mtp queues an ObjectAdded for each, but hands it out
// only to a client that asks its interrupt endpoint again (gphoto2 does, with a fresh transfer per wait);
// Shuttle, whose interrupt transfers stay queued, finds the files by its handle-list poll, which on
// usb-mtp covers the root only (see test/hil/tether-usb.test.ts). Latency is measured from the file's
// appearance (this machine's clock, the guest's mapped onto it from console stamps). Sessions alternate
// shuttle, gphoto2, gphoto2, shuttle, … in one guest.
//   ./node_modules/.bin/node bench/tether-usb.ts [shots per session = 6] [sessions = 4] [RAW MB = 25] [JPEG MB = 8]
// Needs what test/hil needs, and gphoto2. USB_BENCH_KEEP=DIR keeps the guest's logs.
import { linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

await import(new URL('../test/support/ts-resolve-hooks.mjs', import.meta.url).href);
const { makeSampleCard } = await import('../src/sample/index.js');
const { GuestLines, extractFromExt4, makeExt4Image, objectAddedInUsbmon } = await import('../test/hil/fixtures.js');
const { GUEST_DIR, requireHilPackages, startGuest } = await import('../test/hil/vm.js');

const perSession = Number(process.argv[2] ?? '6');
const sessions = Math.max(2, Number(process.argv[3] ?? '4'));
const rawMb = Number(process.argv[4] ?? '25');
const jpegMb = Number(process.argv[5] ?? '8');
const SHOT_TIMEOUT_MS = 180_000;
requireHilPackages([{ pkg: 'gphoto2', tool: 'gphoto2' }]);

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const p95 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(xs.length * 0.95) - 1)]!;

const work = await mkdtemp(join(tmpdir(), 'shuttle-bench-tether-usb-'));
try {
  // The pool: one RAW+JPEG per shot, linked into the card under a name per session and shot.
  const pool = join(work, 'pool');
  await makeSampleCard(pool, { count: perSession, perFolder: perSession, rawSize: rawMb * 1_000_000, jpegSize: jpegMb * 1_000_000, seed: 31 });
  const poolFile = (k: number, ext: 'CR2' | 'JPG'): string => join(pool, 'DCIM/100CANON', `IMG_${String(k + 1).padStart(4, '0')}.${ext}`);
  const shotName = (session: number, k: number, ext: 'CR2' | 'JPG'): string => `IMG_${String(session)}${String(k + 1).padStart(3, '0')}.${ext}`;
  const order = Array.from({ length: sessions }, (_, i) => (i % 4 === 0 || i % 4 === 3 ? 'shuttle' : 'gphoto2'));
  const sizes: Record<string, number> = {};
  for (let s = 1; s <= sessions; s++) {
    for (let k = 0; k < perSession; k++) for (const ext of ['CR2', 'JPG'] as const) sizes[shotName(s, k, ext)] = statSync(poolFile(k, ext)).size;
  }
  const sizesFile = join(work, 'sizes.json');
  writeFileSync(sizesFile, JSON.stringify(sizes));
  const card = join(work, 'card');
  const folder = card;
  mkdirSync(join(card, 'DCIM/100CANON'), { recursive: true });
  const ctl = join(work, 'ctl');
  mkdirSync(ctl);
  const disk = join(work, 'dest.img');
  makeExt4Image(disk, Math.max(4 * 1024 ** 3, 3 * sessions * perSession * (rawMb + jpegMb) * 1_000_000));

  const lines = new GuestLines();
  const guest = await startGuest({
    script: join(GUEST_DIR, 'tether-usb-bench.sh'),
    env: { HIL_SIZES: sizesFile, HIL_SESSIONS: order.join(' ') },
    workDir: join(work, 'vm'),
    qemuArgs: [
      '-device',
      `usb-mtp,id=cam,bus=xhci.0,rootdir=${card},readonly=off,desc=Bench Tether`,
      '-drive',
      `file=${disk},if=virtio,format=raw,cache=unsafe`,
      // The steering folder on a share of its own, mounted without a cache: the shared root's cache keeps
      // "no such file" for a file this machine creates later.
      '-virtfs',
      `local,path=${ctl},mount_tag=ctl,security_model=none,readonly=on`,
    ],
    timeoutMs: 60 * 60_000,
    onLine: (l) => lines.add(l),
  });
  /** The guest's clock when it stamped a line under `name` that `what` accepts (undefined while it has not). */
  const stampOf = (name: string, what: (text: string) => boolean): number | undefined => lines.stamps.find((s) => s.name === name && what(s.text))?.guestMs;
  const until = <T>(probe: () => T | undefined, why: string): Promise<T> => lines.until(probe, why, SHOT_TIMEOUT_MS, guest.exited);

  /** Per file: this machine's time it was linked in, and the guest's time the tool had it (verified or written). */
  const rows: Array<{ tool: string; session: number; name: string; addedAt: number; doneGuestMs: number }> = [];
  try {
    for (let s = 1; s <= sessions; s++) {
      const tool = order[s - 1]!;
      const out = `${tool}-${s}`;
      writeFileSync(join(ctl, `go-${s}`), '');
      // Ready: Shuttle has its first handle list; gphoto2 has listed the card (usb-mtp watches only listed
      // folders) and waits for events.
      if (tool === 'shuttle') await until(() => stampOf(out, (t) => t.includes('"event":"ready"')), `${out}: ready`);
      else await until(() => stampOf(out, (t) => /Waiting .*for events/i.test(t)), `${out}: gphoto2 waiting`);
      for (let k = 0; k < perSession; k++) {
        const names = (['JPG', 'CR2'] as const).map((ext) => shotName(s, k, ext));
        for (const [i, ext] of (['JPG', 'CR2'] as const).entries()) {
          linkSync(poolFile(k, ext), join(folder, names[i]!));
          rows.push({ tool, session: s, name: names[i]!, addedAt: Date.now(), doneGuestMs: NaN });
        }
        for (const name of names) {
          const row = rows.find((r) => r.session === s && r.name === name)!;
          if (tool === 'shuttle') {
            // The line comes once the preview is made too; the file was verified ms.verified after the event.
            const line = await until(() => lines.json(out).find((e) => e['event'] === 'verified' && basename(String(e['name'])) === name), `${out}: ${name} verified`);
            const ms = line['ms'] as { verified: number; preview: number | null } | null;
            row.doneGuestMs = ms ? line.guestMs - Math.max(ms.verified, ms.preview ?? 0) + ms.verified : line.guestMs;
          } else {
            row.doneGuestMs = await until(() => stampOf(`written-${s}`, (t) => t === name), `${out}: ${name} written`);
          }
        }
      }
      writeFileSync(join(ctl, `stop-${s}`), '');
      await until(() => (lines.count(new RegExp(`HIL:session-done ${s} `)) > 0 ? true : undefined), `session ${s} done`);
      for (const name of Object.keys(sizes)) rmSync(join(folder, name), { force: true });
      process.stderr.write(`session ${s}/${sessions} ${tool} done\n`);
    }
  } catch (err) {
    guest.kill();
    await guest.exited;
    throw err;
  }
  await guest.exited;
  extractFromExt4(disk, '/logs', join(work, 'out'));
  if (process.env['USB_BENCH_KEEP']) await cp(join(work, 'out/logs'), process.env['USB_BENCH_KEEP'], { recursive: true });
  const failedSession = lines.all.find((l) => /HIL:session-done \d+ shuttle rc=[^0]/.test(l) || l.includes('HIL:failed'));
  if (failedSession) throw new Error(`a session failed: ${failedSession}\n${lines.all.slice(-40).join('\n')}`);

  // Guest times onto this machine's clock: the least delay a HIL:clock line took to arrive, at start and end.
  const offset = lines.clockOffsetMs();
  const half = lines.clocks.length / 2;
  const drift = Math.min(...lines.clocks.slice(half).map((c) => c.hostMs - c.guestMs)) - Math.min(...lines.clocks.slice(0, half).map((c) => c.hostMs - c.guestMs));
  // ObjectAdded as the guest saw it complete: only gphoto2 receives them (see above), in the order the files were added.
  const monoToGuest = lines.monotonicOffsetMs();
  const added = objectAddedInUsbmon(readFileSync(join(work, 'out/logs/usbmon.txt'), 'utf8')).map((a) => a.usbmonUs / 1000 + monoToGuest);
  const gphotoRows = rows.filter((r) => r.tool === 'gphoto2');
  const eventsMatch = added.length === gphotoRows.length;

  const f = (x: number): string => `${x.toFixed(0)} ms`;
  const stats = (xs: number[]): string => `${f(median(xs)).padStart(8)} ${f(p95(xs)).padStart(8)}`;
  const of = (tool: string, ext: string, from: 'file' | 'event'): number[] =>
    rows.flatMap((r) => {
      if (r.tool !== tool || !r.name.endsWith(ext)) return [];
      if (from === 'file') return [r.doneGuestMs + offset - r.addedAt];
      const i = gphotoRows.indexOf(r);
      return eventsMatch && i >= 0 ? [r.doneGuestMs - added[i]!] : [];
    });
  process.stdout.write(
    `\nTethering over QEMU usb-mtp in a TCG guest: ${rows.length / 2} shots of a ${rawMb} MB RAW + ${jpegMb} MB JPEG, ${sessions} sessions (${order.join(', ')})\n`,
  );
  process.stdout.write(`clock offset guest→host ${offset} ms, drift over the run ${drift} ms\n`);
  process.stdout.write(`from the file's appearance       median      p95\n`);
  for (const [label, tool, ext] of [
    ['shuttle RAW verified', 'shuttle', 'CR2'],
    ['shuttle JPEG verified', 'shuttle', 'JPG'],
    ['gphoto2 RAW written', 'gphoto2', 'CR2'],
    ['gphoto2 JPEG written', 'gphoto2', 'JPG'],
  ] as const) {
    process.stdout.write(`${label.padEnd(30)} ${stats(of(tool, ext, 'file'))}\n`);
  }
  if (eventsMatch) {
    process.stdout.write(`gphoto2 RAW written, from its ObjectAdded in the guest (usbmon) ${stats(of('gphoto2', 'CR2', 'event'))}\n`);
  } else {
    process.stdout.write(`usbmon saw ${added.length} ObjectAdded events for gphoto2's ${gphotoRows.length} files: no figures from the event\n`);
  }
  const ratio = (a: number[], b: number[]): string => (median(a) / median(b)).toFixed(2);
  const p95ratio = (a: number[], b: number[]): string => (p95(a) / p95(b)).toFixed(2);
  const sh = of('shuttle', 'CR2', 'file');
  const gp = of('gphoto2', 'CR2', 'file');
  process.stdout.write(`RAW verified / gphoto2 RAW written: median ${ratio(sh, gp)}, p95 ${p95ratio(sh, gp)} (goal ≤ 1.0)\n`);
} finally {
  await rm(work, { recursive: true, force: true });
}
