import { afterEach, beforeEach, expect, test } from 'vitest';
import { join } from 'node:path';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { makeSampleCard } from '../src/sample/index.js';
import { ingestJson, runCli } from './support/cli.js';
import { contentMultiset, listTree, tempDir, tempFilesUnder } from './support/tree.js';

/** A network camera (our PTP/IP simulator, proven against gphoto2 elsewhere) as an ingest source, through the CLI. */
let work: { path: string; cleanup: () => Promise<void> };
let sim: CameraSimulator;
beforeEach(async () => {
  work = await tempDir('shuttle-ptpip-');
  await makeSampleCard(join(work.path, 'card'), { count: 6, rawSize: 300_000, seed: 3 });
  sim = await CameraSimulator.start({ dir: join(work.path, 'card'), pool: join(work.path, 'card'), port: 0, timeZone: 'UTC' });
});
afterEach(async () => {
  await sim.stop();
  await work.cleanup();
});

test('ingest-from-a-ptpip-camera-verifies-every-file-and-skips-them-next-time', async () => {
  const dest = join(work.path, 'lib');
  const state = join(work.path, 'state');
  const args = [`ptpip:127.0.0.1:${sim.port}`, '--dest', dest, '--state', state];
  const r = await ingestJson(args);
  expect(r.code, r.stderr).toBe(0);
  const source = await listTree(join(work.path, 'card'));
  expect(r.summary).toMatchObject({ files: source.size, copied: source.size, failed: 0 });
  expect(contentMultiset(await listTree(dest, { skipShuttle: true }))).toEqual(contentMultiset(source));
  expect(await tempFilesUnder(dest)).toEqual([]);
  // Object handles change between sessions; the plan keys on camera identity + path + size + time.
  const again = await ingestJson(args);
  expect(again.code, again.stderr).toBe(0);
  expect(again.summary).toMatchObject({ files: source.size, copied: 0, alreadyVerified: source.size });
});

test('an-unreachable-camera-is-a-clear-error', async () => {
  const port = sim.port;
  await sim.stop();
  const r = await runCli(['ingest', `ptpip:127.0.0.1:${port}`, '--dest', join(work.path, 'lib'), '--state', join(work.path, 'state')]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/127\.0\.0\.1/);
  expect(r.stderr).toMatch(/refused|connect/i);
});
