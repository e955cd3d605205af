import { afterEach, beforeEach, expect, test } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { runCli } from './support/cli.js';
import { shotJpeg, startTether, type TetherEvent } from './support/tether-session.js';
import { libraryFiles, tempDir } from './support/tree.js';

/**
 * Nikon bodies give every capture into SDRAM the same file name. Two captures of one size within one
 * second would then be the same file to the journal (path, size, time) unless the tethered source tells
 * them apart; both must arrive.
 */
let work: { path: string; cleanup: () => Promise<void> };
let sim: CameraSimulator;
const children: ChildProcess[] = [];

beforeEach(async () => {
  work = await tempDir('shuttle-tether-names-');
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await sim?.stop();
  await work.cleanup();
});

test('two-nikon-sdram-captures-with-one-name-one-size-and-one-second-both-arrive', async () => {
  const card = join(work.path, 'card');
  const pool = join(work.path, 'pool');
  const dest = join(work.path, 'lib');
  const state = join(work.path, 'state');
  await mkdir(card);
  await mkdir(pool);
  // Two different images of one size (a JPEG decodes with bytes after its end), as two frames of one scene.
  const [a, b] = [await shotJpeg('POOL_A.JPG'), await shotJpeg('POOL_B.JPG')];
  const size = Math.max(a.length, b.length);
  const images = [a, b].map((j) => Buffer.concat([j, Buffer.alloc(size - j.length)]));
  await writeFile(join(pool, 'POOL_A.JPG'), images[0]!);
  await writeFile(join(pool, 'POOL_B.JPG'), images[1]!);
  sim = await CameraSimulator.start({ dir: card, pool, port: 0, timeZone: 'UTC', vendor: 'nikon', captureTarget: 'host', reuseMemoryName: true });
  const socket = join(state, 'tether.sock');
  const t = startTether(children, [`ptpip:127.0.0.1:${sim.port}`, '--dest', dest, '--state', state, '--socket', socket, '--capture-target', 'host']);
  await t.waitFor('ready');
  // Both fired early in one second, so that the camera dates them alike (its clock counts whole seconds).
  await expect.poll(() => Date.now() % 1000, { interval: 5 }).toBeLessThan(200);
  const fired = await Promise.all([0, 1].map(() => runCli(['capture', '--socket', socket, '--json', '--state', state])));
  for (const r of fired) expect(r.code, r.stderr).toBe(0);
  const lines = fired.map((r) => JSON.parse(r.stdout) as TetherEvent);
  const verified = await t.waitFor('verified', 2);
  const copied = await Promise.all(verified.map((e) => readFile(e.files![0]!)));
  expect(copied.map((c) => images.findIndex((i) => i.equals(c))).sort()).toEqual([0, 1]);
  // The second use of the name went into a numbered folder of camera memory: another journal row.
  expect(lines.map((l) => l.name).sort()).toEqual(['camera-memory/2/DSC_0001.JPG', 'camera-memory/DSC_0001.JPG']);
  const { code, stopped } = await t.stop();
  expect(code, t.stderr()).toBe(0);
  expect(stopped).toMatchObject({ copied: 2, alreadyVerified: 0, failed: 0 });
  const library = await libraryFiles(dest);
  expect(library.sort()).toEqual(['2026/2026-03-14/DSC_0001.JPG', '2026/2026-03-14/DSC_0001_1.JPG']);
  // Both released in the camera once verified.
  expect(sim.operationCount(0x90c3)).toBe(2);
});
