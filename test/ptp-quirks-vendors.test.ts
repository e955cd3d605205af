import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { PtpCamera } from '../src/device/ptp/camera.js';
import { quirksFor } from '../src/device/ptp/quirks.js';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { connectPtpIp, loadOrCreateInitiatorIdentity } from '../src/device/ptpip/transport.js';
import { tempDir } from './support/tree.js';

/** The Sony and Leica rows of the quirks table, and what the capture does with Leica's. */
let work: { path: string; cleanup: () => Promise<void> };
const cleanups: Array<() => Promise<unknown>> = [];

beforeEach(async () => {
  work = await tempDir('shuttle-quirks-');
  await mkdir(join(work.path, 'card'));
  await mkdir(join(work.path, 'pool'));
  await writeFile(join(work.path, 'pool', 'a.jpg'), randomBytes(20_000));
});
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
  await work.cleanup();
});

test('sony-and-leica-rows-of-the-quirks-table', () => {
  expect(quirksFor({ manufacturer: 'Sony Corporation', model: 'ILCE-7M3' })).toMatchObject({ avoidPartialObject: true, captureWarmUpMs: 3000 });
  expect(quirksFor({ manufacturer: 'Sony Corporation', model: 'ILCE-6000' })).toMatchObject({ avoidPartialObject: true, captureWarmUpMs: 0 });
  expect(quirksFor({ manufacturer: 'Leica Camera AG', model: 'LEICA Q3' })).toMatchObject({ noCaptureComplete: true, acceptZeroTransactionId: true });
  expect(quirksFor({ manufacturer: 'Leica Camera AG', model: 'LEICA M11' })).toMatchObject({ noCaptureComplete: false, acceptZeroTransactionId: true });
});

async function leica(model: string): Promise<PtpCamera> {
  const sim = await CameraSimulator.start({
    dir: join(work.path, 'card'),
    pool: join(work.path, 'pool'),
    port: 0,
    manufacturer: 'Leica Camera AG',
    model,
    misbehave: { withholdCaptureComplete: true },
  });
  cleanups.push(() => sim.stop());
  const transport = await connectPtpIp({ host: '127.0.0.1', port: sim.port, identity: await loadOrCreateInitiatorIdentity(join(work.path, 'state')) });
  const cam = await PtpCamera.open(transport);
  cleanups.push(() => cam.close());
  return cam;
}

test('a-leica-q3-capture-ends-with-the-new-object-though-it-lists-capturecomplete-and-never-sends-it', async () => {
  const q3 = await leica('LEICA Q3');
  const shot = await q3.capture({ timeoutMs: 10_000 });
  expect(shot.info.compressedSize).toBe(20_000);
  // Without the quirk the same silence is a capture that never ends.
  const m11 = await leica('LEICA M11');
  await expect(m11.capture({ timeoutMs: 1500 })).rejects.toMatchObject({ code: 'PTP_TIMEOUT' });
});
