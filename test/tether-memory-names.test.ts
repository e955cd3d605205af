import { afterEach, beforeEach, expect, test } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { runCli } from './support/cli.js';
import { expectCopies, shotJpeg, startTether, type TetherEvent } from './support/tether-session.js';
import { listTree, tempDir } from './support/tree.js';

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
  const image = await shotJpeg('POOL_A.JPG');
  await writeFile(join(pool, 'POOL_A.JPG'), image);
  sim = await CameraSimulator.start({ dir: card, pool, port: 0, timeZone: 'UTC', vendor: 'nikon', captureTarget: 'host', reuseMemoryName: true });
  const socket = join(state, 'tether.sock');
  const t = startTether(children, [`ptpip:127.0.0.1:${sim.port}`, '--dest', dest, '--state', state, '--socket', socket, '--capture-target', 'host']);
  await t.waitFor('ready');
  // Both fired early in one second, so that the camera dates them alike (its clock counts whole seconds).
  await expect.poll(() => Date.now() % 1000, { interval: 5 }).toBeLessThan(200);
  const fired = await Promise.all([0, 1].map(() => runCli(['capture', '--socket', socket, '--json', '--state', state])));
  for (const r of fired) expect(r.code, r.stderr).toBe(0);
  const lines = fired.map((r) => JSON.parse(r.stdout) as TetherEvent);
  expect(lines.map((l) => l.name).sort()).toEqual(['camera-memory/2/DSC_0001.JPG', 'camera-memory/DSC_0001.JPG']);
  const verified = await t.waitFor('verified', 2);
  await expectCopies(verified, new Map([['DSC_0001.JPG', image]]), 1);
  const { code, stopped } = await t.stop();
  expect(code, t.stderr()).toBe(0);
  expect(stopped).toMatchObject({ copied: 2, alreadyVerified: 0, failed: 0 });
  const library = [...(await listTree(dest, { skipShuttle: true })).keys()].filter((p) => !p.startsWith('ascmhl/'));
  expect(library).toHaveLength(2);
  // Both released in the camera once verified.
  expect(sim.operationCount(0x90c3)).toBe(2);
});
