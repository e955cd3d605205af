import { afterEach, beforeEach, expect, test } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import sharp from 'sharp';
import { CameraSimulator, type SimulatorOptions } from '../src/device/ptpip/simulator.js';
import type { SimulatorVendor } from '../src/device/ptpip/personality.js';
import { DEFAULT_SAMPLE_CAMERA } from '../src/sample/index.js';
import { rawTiffHead } from '../src/sample/content.js';
import { Prng } from '../src/sample/prng.js';
import { runCli } from './support/cli.js';
import { solidJpeg } from './support/preview-raws.js';
import { dropFiles, expectCopies, rawWithThumbnail, shotJpeg, startTether, type TetherEvent } from './support/tether-session.js';
import { libraryFiles, tempDir, tempFilesUnder } from './support/tree.js';

/**
 * `shuttle tether` against the PTP/IP simulator, which announces every file that appears in its folder
 * with ObjectAdded as a camera announces a shot: each shot copied, verified and previewed while the
 * session stays open.
 */
const LONG_EDGE = 48;
let work: { path: string; cleanup: () => Promise<void> };
let sim: CameraSimulator;
let simStopped = false;
let card: string;
let dest: string;
let state: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  work = await tempDir('shuttle-tether-');
  card = join(work.path, 'card');
  dest = join(work.path, 'lib');
  state = join(work.path, 'state');
  await mkdir(join(card, 'DCIM', '100CANON'), { recursive: true });
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (!simStopped) await sim?.stop();
  simStopped = false;
  await work.cleanup();
});

const startCamera = async (opts: Partial<SimulatorOptions> = {}): Promise<void> => {
  sim = await CameraSimulator.start({ dir: card, port: 0, timeZone: 'UTC', ...opts });
};

const shot = shotJpeg;

/** Puts files on the card the way a camera finishes them: written elsewhere, then renamed in whole. */
async function drop(files: Map<string, Buffer>): Promise<void> {
  await dropFiles(files, join(work.path, 'incoming'), join(card, 'DCIM', '100CANON'));
}

/** A running `shuttle tether --json` against the simulator: its events as they come, and a wait for the next ones that match. */
const tether = (...args: string[]) =>
  startTether(children, [`ptpip:127.0.0.1:${sim.port}`, '--dest', dest, '--state', state, '--socket', join(state, 'tether.sock'), ...args], {
    SHUTTLE_TETHER_PREVIEW_LONG_EDGE: String(LONG_EDGE),
  });

test('each-new-shot-is-verified-at-every-destination-with-a-preview-in-the-state-folder', async () => {
  await writeFile(join(card, 'DCIM', '100CANON', 'OLD_0001.JPG'), await shot('OLD_0001.JPG'));
  await startCamera();
  const dest2 = join(work.path, 'lib2');
  const t = tether('--dest', dest2);
  await t.waitFor('ready');
  const jpeg = new Map([['IMG_0001.JPG', await shot('IMG_0001.JPG')]]);
  await drop(jpeg);
  const [v] = await t.waitFor('verified');
  await expectCopies([v!], jpeg, 2);
  expect(v!.files!.map((f) => relative(work.path, f).split('/')[0]).sort()).toEqual(['lib', 'lib2']);
  // The preview: a JPEG scaled to the configured long edge, under the state folder, never in a library.
  expect(relative(state, v!.preview!).startsWith('previews/')).toBe(true);
  const meta = await sharp(v!.preview!).metadata();
  expect(meta.format).toBe('jpeg');
  expect(Math.max(meta.width, meta.height)).toBe(LONG_EDGE);
  expect(v!.ms!.verified).toBeGreaterThanOrEqual(0);
  // Made from the JPEG's bytes as they came from the camera: it need not wait for the verification.
  expect(v!.ms!.preview).toBeGreaterThanOrEqual(0);
  // A RAW without an embedded thumbnail: verified, no preview.
  const raw = new Map([['IMG_0002.CR2', await rawTiffHead(Prng.from(13, 'IMG_0002.CR2'), { ...DEFAULT_SAMPLE_CAMERA, dateTimeOriginal: '2026:03:14 09:27:00' })]]);
  await drop(raw);
  const [, r] = await t.waitFor('verified', 2);
  await expectCopies([r!], raw, 2);
  expect(r!.preview).toBeNull();
  // A RAW whose only embedded JPEG is a thumbnail smaller than the preview, beside its JPEG: the pair
  // shows the JPEG's preview.
  const pair = new Map([
    ['IMG_0003.CR2', rawWithThumbnail(await solidJpeg(40, 27, 10))],
    ['IMG_0003.JPG', await shot('IMG_0003.JPG')],
  ]);
  await drop(pair);
  const three = (await t.waitFor('verified', 4)).slice(2);
  await expectCopies(three, pair, 2);
  const previews = new Set(three.map((e) => e.preview));
  expect(previews.size).toBe(1);
  expect([...previews][0]).toMatch(/IMG_0003\.jpg$/);
  for (const p of previews) {
    expect(relative(state, p!).startsWith('previews/')).toBe(true);
    const m = await sharp(p!).metadata();
    expect([m.format, Math.max(m.width, m.height)]).toEqual(['jpeg', LONG_EDGE]);
  }
  const { code, stopped } = await t.stop();
  expect(code, t.stderr()).toBe(0);
  // What was on the card before the session is left alone without --all.
  expect(stopped).toMatchObject({ copied: 4, failed: 0, status: 'complete' });
  expect(t.events.some((e) => e.name?.endsWith('OLD_0001.JPG'))).toBe(false);
  for (const lib of [dest, dest2]) expect(await libraryFiles(lib)).toHaveLength(4);
});

test('a-burst-of-20-shots-loses-nothing-and-copies-nothing-twice', async () => {
  await startCamera();
  const t = tether();
  await t.waitFor('ready');
  const burst = new Map<string, Buffer>();
  for (let i = 1; i <= 20; i++) {
    const name = `IMG_${String(i).padStart(4, '0')}.JPG`;
    burst.set(name, await shot(name));
  }
  await drop(burst);
  const verified = await t.waitFor('verified', 20);
  expect(new Set(verified.map((e) => e.name!.split('/').pop())).size).toBe(20);
  await expectCopies(verified, burst, 1);
  for (const e of verified) expect(Math.max((await sharp(e.preview!).metadata()).width, (await sharp(e.preview!).metadata()).height)).toBe(LONG_EDGE);
  const { code, stopped } = await t.stop();
  expect(code, t.stderr()).toBe(0);
  expect(stopped).toMatchObject({ copied: 20, failed: 0, status: 'complete' });
  expect(t.events.filter((e) => e.event === 'verified')).toHaveLength(20);
  const library = await libraryFiles(dest);
  expect(library).toHaveLength(20);
});

test('sigterm-finishes-the-shots-in-flight-and-exits-0-with-no-temp-files', async () => {
  await startCamera();
  const t = tether();
  await t.waitFor('ready');
  const burst = new Map<string, Buffer>();
  for (let i = 1; i <= 20; i++) burst.set(`IMG_${String(i).padStart(4, '0')}.JPG`, await shot(`IMG_${i}`));
  await drop(burst);
  await t.waitFor('verified');
  const atSignal = t.events.filter((e) => e.event === 'verified').length;
  const { code, stopped } = await t.stop();
  expect(code, t.stderr()).toBe(0);
  const verified = t.events.filter((e) => e.event === 'verified');
  // The signal came with shots still in flight, and those were finished after it.
  expect(verified.length).toBeGreaterThan(atSignal);
  // Every shot the session took on was finished and reported; none half-done.
  expect(stopped).toMatchObject({ copied: verified.length, failed: 0, status: 'complete' });
  await expectCopies(verified, burst, 1);
  expect(await tempFilesUnder(dest)).toEqual([]);
  expect(await tempFilesUnder(state)).toEqual([]);
});

test('with-all-the-shots-already-on-the-card-come-first-and-a-restart-copies-none-twice', async () => {
  const before = new Map<string, Buffer>();
  for (const name of ['IMG_0001.JPG', 'IMG_0002.JPG', 'IMG_0003.JPG']) {
    before.set(name, await shot(name));
    await writeFile(join(card, 'DCIM', '100CANON', name), before.get(name)!);
  }
  await startCamera();
  const first = tether('--all');
  const existing = await first.waitFor('verified', 3);
  await expectCopies(existing, before, 1);
  // Listed, not announced: no event to measure from.
  for (const e of existing) expect(e.ms).toBeNull();
  const later = new Map([['IMG_0004.JPG', await shot('IMG_0004.JPG')]]);
  await drop(later);
  await first.waitFor('verified', 4);
  const a = await first.stop();
  expect(a.code, first.stderr()).toBe(0);
  expect(a.stopped).toMatchObject({ copied: 4, alreadyVerified: 0 });

  // Again with --all: the journal knows the four; only the new shot is read from the camera.
  const second = tether('--all');
  await second.waitFor('ready');
  const newer = new Map([['IMG_0005.JPG', await shot('IMG_0005.JPG')]]);
  await drop(newer);
  const [v] = await second.waitFor('verified');
  expect(v!.name).toMatch(/IMG_0005\.JPG$/);
  const b = await second.stop();
  expect(b.code, second.stderr()).toBe(0);
  expect(b.stopped).toMatchObject({ copied: 1, alreadyVerified: 4, failed: 0 });
  expect(second.events.filter((e) => e.event === 'verified')).toHaveLength(1);
  const library = await libraryFiles(dest);
  expect(library).toHaveLength(5);
});

test('a-camera-that-goes-away-and-stays-away-ends-the-session-with-exit-4-and-keeps-what-was-verified', async () => {
  await startCamera();
  const t = tether('--reconnect-timeout', '0');
  await t.waitFor('ready');
  const one = new Map([['IMG_0001.JPG', await shot('IMG_0001.JPG')]]);
  await drop(one);
  const [v] = await t.waitFor('verified');
  // Switched off: its connections close and no event will ever say so.
  await sim.stop();
  simStopped = true;
  const code = await t.exited;
  expect(code, t.stderr()).toBe(4);
  expect(t.stderr()).toMatch(/did not come back/);
  expect(t.events.at(-1)).toMatchObject({ event: 'stopped', status: 'failed', error: { code: 'DEVICE_GONE' } });
  await expectCopies([v!], one, 1);
  expect(await tempFilesUnder(dest)).toEqual([]);
});

test('with-upload-each-shot-is-queued-as-soon-as-it-is-verified', async () => {
  await startCamera();
  // No server behind the target: --no-wait leaves the shots queued for `shuttle upload` or the daemon.
  const t = tether('--upload', 's3://studio/tether', '--no-wait');
  await t.waitFor('ready');
  const one = new Map([['IMG_0001.JPG', await shot('IMG_0001.JPG')]]);
  await drop(one);
  const [v] = await t.waitFor('verified');
  expect(v!.queued).toBe(true);
  // In the queue while the session still runs, not only once it ends.
  const db = new DatabaseSync(join(state, 'journal.sqlite'), { readOnly: true });
  try {
    const rows = db.prepare('SELECT q.bucket, q.state, c.dest_path FROM upload_queue q JOIN copies c ON c.file_id = q.file_id').all();
    expect(rows).toEqual([{ bucket: 'studio', state: 'queued', dest_path: relative(dest, v!.files![0]!) }]);
  } finally {
    db.close();
  }
  const { code, stopped } = await t.stop();
  expect(code, t.stderr()).toBe(0);
  expect(stopped).toMatchObject({ copied: 1, status: 'complete', upload: { queued: 1, pending: 1 } });
});

test('a-camera-without-objectadded-events-is-polled-for-new-shots', async () => {
  // As Fuji bodies: no ObjectAdded on the event channel; new shots show up only in GetObjectHandles.
  await startCamera({ vendor: 'fuji' });
  const t = tether();
  await t.waitFor('ready');
  const shots = new Map<string, Buffer>();
  for (const name of ['DSCF0001.JPG', 'DSCF0002.JPG', 'DSCF0003.JPG']) shots.set(name, await shot(name));
  await drop(shots);
  const verified = await t.waitFor('verified', 3);
  await expectCopies(verified, shots, 1);
  for (const e of verified) expect(e.ms!.verified).toBeGreaterThanOrEqual(0);
  const { code, stopped } = await t.stop();
  expect(code, t.stderr()).toBe(0);
  expect(stopped).toMatchObject({ copied: 3, failed: 0, status: 'complete' });
});

test('tether-with-a-pedal-configured-but-none-plugged-in-says-so-and-shuttle-capture-still-fires', async () => {
  const pool = join(work.path, 'pool');
  await mkdir(pool);
  await writeFile(join(pool, 'POOL_A.JPG'), await shot('POOL_A.JPG'));
  await startCamera({ pool });
  const config = join(work.path, 'shuttle.toml');
  await writeFile(config, '[[pedals]]\ndevice = "0627:0001"\nkey = "b"\naction = "capture"\n');
  const t = tether('--config', config, '--log-level', 'info');
  await t.waitFor('ready');
  const capture = await runCli(['capture', '--socket', join(state, 'tether.sock'), '--json', '--state', state]);
  expect(capture.code, capture.stderr).toBe(0);
  expect(JSON.parse(capture.stdout)).toMatchObject({ event: 'verified' });
  const { code } = await t.stop();
  expect(code, t.stderr()).toBe(0);
  // The pedal was looked for (node-hid lists no such device here), and its absence ended nothing.
  const log = t
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg?: string });
  expect(log.map((l) => l.msg)).toContain('no pedal connected yet: waiting for one');
});

test('tether-names-one-camera-a-folder-or-ptpip-alone-is-a-usage-error', async () => {
  for (const name of [card, 'ptpip:']) {
    const r = await runCli(['tether', name, '--dest', dest, '--state', state]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/name one camera/);
  }
});

/**
 * Each maker's camera as the simulator plays it on the wire: Canon EOS and Nikon only through their
 * polled event queues (their captures held in camera memory for the host), Fujifilm with no events at
 * all. Shots taken on the body and fired with `shuttle capture` all arrive verified with previews, a
 * burst at 10 frames per second loses none, and a camera that went away and came back is not read twice.
 */
const PERSONALITIES: Array<{ vendor: SimulatorVendor; captureTarget: 'card' | 'host' }> = [
  { vendor: 'generic', captureTarget: 'card' },
  { vendor: 'canon', captureTarget: 'host' },
  { vendor: 'nikon', captureTarget: 'host' },
  { vendor: 'fuji', captureTarget: 'card' },
];

for (const { vendor, captureTarget } of PERSONALITIES) {
  test(`${vendor}-body-shots-captures-and-a-burst-are-all-verified-and-a-camera-back-after-a-drop-is-not-read-twice`, async () => {
    const pool = join(work.path, 'pool');
    await mkdir(pool);
    const pooled = new Map([['POOL_A.JPG', await shot('POOL_A.JPG')]]);
    await writeFile(join(pool, 'POOL_A.JPG'), pooled.get('POOL_A.JPG')!);
    await startCamera({ vendor, pool, captureTarget });
    const port = sim.port;
    const t = tether('--capture-target', captureTarget);
    await t.waitFor('ready');

    // A RAW+JPEG pair taken on the body: both arrive, verified, each with its preview.
    const pair = new Map([
      ['IMG_0001.CR2', rawWithThumbnail(await shot('thumb'))],
      ['IMG_0001.JPG', await shot('IMG_0001.JPG')],
    ]);
    await drop(pair);
    const two = await t.waitFor('verified', 2);
    await expectCopies(two, pair, 1);
    expect(two.map((e) => e.name!.split('/').pop()).sort()).toEqual(['IMG_0001.CR2', 'IMG_0001.JPG']);
    for (const e of two) expect(Math.max((await sharp(e.preview!).metadata()).width, (await sharp(e.preview!).metadata()).height)).toBe(LONG_EDGE);

    // Fired from another process: the answer is the shot's verified line, its copy the pool image.
    for (let i = 1; i <= 2; i++) {
      const r = await runCli(['capture', '--socket', join(state, 'tether.sock'), '--json', '--state', state]);
      expect(r.code, r.stderr).toBe(0);
      const line = JSON.parse(r.stdout) as TetherEvent;
      expect(line.event).toBe('verified');
      if (captureTarget === 'host') expect(line.name).toMatch(/^camera-memory\//);
      for (const f of line.files!) expect((await readFile(f)).equals(pooled.get('POOL_A.JPG')!)).toBe(true);
      expect((await sharp(line.preview!).metadata()).format).toBe('jpeg');
      await t.waitFor('verified', 2 + i);
    }
    if (captureTarget === 'host') {
      // Freed in the camera once verified: nothing left in its memory.
      expect(sim.operationCount(vendor === 'canon' ? 0x9117 : 0x90c3)).toBe(2);
    }

    // A burst of 10 frames per second: every frame verified once.
    const burst = new Map<string, Buffer>();
    for (let i = 2; i <= 11; i++) burst.set(`IMG_${String(i).padStart(4, '0')}.JPG`, await shot(`IMG_${i}`));
    for (const [name, data] of burst) {
      await drop(new Map([[name, data]]));
      await new Promise((r) => setTimeout(r, 100));
    }
    const all = await t.waitFor('verified', 14);
    await expectCopies(all.slice(4), burst, 1);
    expect(new Set(all.map((e) => e.name)).size).toBe(14);

    // The camera drops off and comes back on its port: the session opens it again by itself, and the shot
    // taken while it was away arrives once.
    await sim.stop();
    simStopped = true;
    await t.waitFor('dropped');
    const away = new Map([['IMG_0012.JPG', await shot('IMG_0012.JPG')]]);
    await drop(away);
    await startCamera({ vendor, pool, captureTarget, port });
    simStopped = false;
    await t.waitFor('reconnected');
    const withAway = await t.waitFor('verified', 15);
    await expectCopies(withAway.slice(14), away, 1);
    const first = await t.stop();
    expect(first.code, t.stderr()).toBe(0);
    expect(new Set(t.events.filter((e) => e.event === 'verified').map((e) => e.name)).size).toBe(15);
    // A new session (Shuttle restarted) reads nothing twice.
    const again = tether('--all', '--capture-target', captureTarget);
    await again.waitFor('ready');
    const later = new Map([['IMG_0013.JPG', await shot('IMG_0013.JPG')]]);
    await drop(later);
    const [v] = await again.waitFor('verified');
    expect(v!.name).toMatch(/IMG_0013\.JPG$/);
    const { code, stopped } = await again.stop();
    expect(code, again.stderr()).toBe(0);
    // The card's files (pair, burst, the shot taken while away, captures to the card) are known to the journal; only the new one is copied.
    const onCard = 2 + 10 + 1 + (captureTarget === 'card' ? 2 : 0);
    expect(stopped).toMatchObject({ copied: 1, alreadyVerified: onCard, failed: 0 });
  });
}
