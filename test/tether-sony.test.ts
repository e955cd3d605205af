import { afterEach, beforeEach, expect, test } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { CameraSimulator, type SimulatorOptions } from '../src/device/ptpip/simulator.js';
import { OperationCode, VendorExtension } from '../src/device/ptp/codes.js';
import type { DeviceInfo } from '../src/device/ptp/datasets.js';
import { SonyOperation } from '../src/device/ptp/sony.js';
import { chooseEventStrategy } from '../src/device/ptp/vendor-events.js';
import { captureOperation } from '../src/device/tethered-source.js';
import { runCli } from './support/cli.js';
import { dropFiles, expectCopies, rawWithThumbnail, shotJpeg, startTether, type TetherEvent } from './support/tether-session.js';
import { libraryFiles, tempDir } from './support/tree.js';

/**
 * `shuttle tether` against the simulator playing a Sony body in PC Remote mode: no card offered, every
 * shot (taken with the body's button, or fired with `shuttle capture` through SetControlDeviceB) waits
 * in the camera's memory at one virtual handle, counted by the ObjectInMemory property, and leaves it
 * once read. Every shot must arrive verified, byte for byte, with a preview.
 */
const LONG_EDGE = 48;
let work: { path: string; cleanup: () => Promise<void> };
let sim: CameraSimulator;
let card: string;
let pool: string;
let dest: string;
let state: string;
const children: ChildProcess[] = [];
const pooled = new Map<string, Buffer>();

beforeEach(async () => {
  work = await tempDir('shuttle-tether-sony-');
  card = join(work.path, 'card');
  pool = join(work.path, 'pool');
  dest = join(work.path, 'lib');
  state = join(work.path, 'state');
  await mkdir(join(card, 'DCIM', '100MSDCF'), { recursive: true });
  await mkdir(pool);
  pooled.set('POOL_A.JPG', await shotJpeg('POOL_A.JPG'));
  await writeFile(join(pool, 'POOL_A.JPG'), pooled.get('POOL_A.JPG')!);
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await sim?.stop();
  await work.cleanup();
});

const startCamera = async (opts: Partial<SimulatorOptions> = {}): Promise<void> => {
  sim = await CameraSimulator.start({ dir: card, port: 0, timeZone: 'UTC', vendor: 'sony', pool, ...opts });
};

const tether = (...args: string[]) =>
  startTether(children, [`ptpip:127.0.0.1:${sim.port}`, '--dest', dest, '--state', state, '--socket', join(state, 'tether.sock'), ...args], {
    SHUTTLE_TETHER_PREVIEW_LONG_EDGE: String(LONG_EDGE),
  });

/** Shots taken with the body's own button: in PC Remote mode they go to the camera's memory for the host. */
async function shootOnBody(files: Map<string, Buffer>): Promise<void> {
  await dropFiles(files, join(work.path, 'incoming'), join(card, 'DCIM', '100MSDCF'));
}

async function expectPreviews(events: TetherEvent[]): Promise<void> {
  for (const e of events) {
    const m = await sharp(e.preview!).metadata();
    expect([m.format, Math.max(m.width, m.height)]).toEqual(['jpeg', LONG_EDGE]);
  }
}

test('sony-body-shots-and-captures-arrive-verified-with-previews-through-camera-memory', async () => {
  await startCamera();
  const t = tether();
  await t.waitFor('ready');
  // The connect sequence ran: without it a Sony body keeps its SDIO operations closed.
  expect(sim.operationCount(SonyOperation.SdioConnect)).toBe(3);
  expect(sim.operationCount(SonyOperation.GetExtDeviceInfo)).toBeGreaterThanOrEqual(1);

  // A RAW+JPEG pair taken on the body: both wait at the one virtual handle, one after the other.
  const pair = new Map([
    ['DSC09001.ARW', rawWithThumbnail(await shotJpeg('thumb'))],
    ['DSC09001.JPG', await shotJpeg('DSC09001.JPG')],
  ]);
  await shootOnBody(pair);
  const two = await t.waitFor('verified', 2);
  await expectCopies(two, pair, 1);
  expect(two.map((e) => e.name).sort()).toEqual(['camera-memory/DSC09001.ARW', 'camera-memory/DSC09001.JPG']);
  await expectPreviews(two);

  // Fired from another process: half-press, full press, release; the answer is the verified shot.
  for (let i = 1; i <= 2; i++) {
    const r = await runCli(['capture', '--socket', join(state, 'tether.sock'), '--json', '--state', state]);
    expect(r.code, r.stderr).toBe(0);
    const line = JSON.parse(r.stdout) as TetherEvent;
    expect(line).toMatchObject({ event: 'verified', name: expect.stringMatching(/^camera-memory\/DSC0\d{4}\.JPG$/) });
    for (const f of line.files!) expect((await readFile(f)).equals(pooled.get('POOL_A.JPG')!)).toBe(true);
    await expectPreviews([line]);
    await t.waitFor('verified', 2 + i);
  }
  expect(sim.operationCount(SonyOperation.ControlDevice)).toBe(8);
  // Read to its end, every shot left the camera's memory.
  expect(sim.objectsInMemory).toBe(0);
  const { code, stopped } = await t.stop();
  expect(code, t.stderr()).toBe(0);
  expect(stopped).toMatchObject({ copied: 4, failed: 0, status: 'complete' });
});

test('sony-a-burst-at-10-frames-per-second-loses-nothing-and-copies-nothing-twice', async () => {
  await startCamera();
  const t = tether();
  await t.waitFor('ready');
  const burst = new Map<string, Buffer>();
  for (let i = 1; i <= 10; i++) burst.set(`DSC${String(i).padStart(5, '0')}.JPG`, await shotJpeg(`burst-${i}`));
  for (const [name, data] of burst) {
    await shootOnBody(new Map([[name, data]]));
    await new Promise((r) => setTimeout(r, 100));
  }
  const verified = await t.waitFor('verified', 10);
  await expectCopies(verified, burst, 1);
  await expectPreviews(verified);
  expect(new Set(verified.map((e) => e.name)).size).toBe(10);
  const { code, stopped } = await t.stop();
  expect(code, t.stderr()).toBe(0);
  expect(stopped).toMatchObject({ copied: 10, failed: 0, status: 'complete' });
  expect(t.events.filter((e) => e.event === 'verified')).toHaveLength(10);
  expect(sim.objectsInMemory).toBe(0);
  const library = await libraryFiles(dest);
  expect(library).toHaveLength(10);
});

test('sony-shots-taken-between-sessions-wait-in-memory-and-a-restarted-session-copies-only-those', async () => {
  await startCamera();
  const first = tether();
  await first.waitFor('ready');
  const one = new Map([['DSC00001.JPG', await shotJpeg('DSC00001.JPG')]]);
  await shootOnBody(one);
  await expectCopies(await first.waitFor('verified'), one, 1);
  const a = await first.stop();
  expect(a.code, first.stderr()).toBe(0);

  // Shot while no host listens: the body keeps them in memory.
  const meanwhile = new Map([
    ['DSC00002.ARW', rawWithThumbnail(await shotJpeg('thumb-2'))],
    ['DSC00002.JPG', await shotJpeg('DSC00002.JPG')],
  ]);
  await shootOnBody(meanwhile);
  await expect.poll(() => sim.objectsInMemory).toBe(2);

  const second = tether('--all');
  const got = await second.waitFor('verified', 2);
  await expectCopies(got, meanwhile, 1);
  expect(sim.objectsInMemory).toBe(0);
  const later = new Map([['DSC00003.JPG', await shotJpeg('DSC00003.JPG')]]);
  await shootOnBody(later);
  await expectCopies((await second.waitFor('verified', 3)).slice(2), later, 1);
  const b = await second.stop();
  expect(b.code, second.stderr()).toBe(0);
  expect(b.stopped).toMatchObject({ copied: 3, failed: 0 });
  const names = second.events.filter((e) => e.event === 'verified').map((e) => e.name);
  expect(names).not.toContain('camera-memory/DSC00001.JPG');
  const library = await libraryFiles(dest);
  expect(library).toHaveLength(4);
});

test('a-sony-body-outside-pc-remote-mode-is-tethered-from-its-card-and-cannot-be-fired', () => {
  const info: DeviceInfo = {
    standardVersion: 100,
    vendorExtensionId: VendorExtension.Sony,
    vendorExtensionVersion: 100,
    vendorExtensionDesc: 'sony.net: 1.0',
    functionalMode: 0,
    operationsSupported: [OperationCode.GetObjectHandles, OperationCode.GetObjectInfo, OperationCode.GetObject],
    eventsSupported: [],
    devicePropertiesSupported: [],
    captureFormats: [],
    imageFormats: [],
    manufacturer: 'Sony Corporation',
    model: 'ILCE-7M3',
    deviceVersion: '1.0',
    serialNumber: '1',
  };
  // Mass storage or MTP mode: no SDIOConnect, so new shots are found by listing the card again.
  const strategy = chooseEventStrategy(info);
  expect(strategy).toEqual({ kind: 'object-handles' });
  expect(captureOperation(strategy, info.operationsSupported, 'card')).toBeUndefined();
  // PC Remote mode: the SDIO operations are there.
  const remote = { ...info, operationsSupported: [...info.operationsSupported, SonyOperation.SdioConnect, SonyOperation.GetAllDevicePropData, SonyOperation.ControlDevice] };
  expect(chooseEventStrategy(remote)).toEqual({ kind: 'sony' });
  expect(captureOperation({ kind: 'sony' }, remote.operationsSupported, 'card')).toEqual({ code: SonyOperation.ControlDevice, params: [] });
});

test('sony-raw-and-jpeg-fetched-one-after-the-other-share-one-shot-number', async () => {
  await startCamera();
  const config = join(work.path, 'shuttle.toml');
  await writeFile(config, '[ingest]\ntemplate = "{session}/{shot}_{name}"\n');
  const t = tether('--config', config, '--session', 'day-1');
  await t.waitFor('ready');
  const pair = new Map([
    ['DSC09001.ARW', rawWithThumbnail(await shotJpeg('thumb'))],
    ['DSC09001.JPG', await shotJpeg('DSC09001.JPG')],
  ]);
  await shootOnBody(pair);
  await expectCopies(await t.waitFor('verified', 2), pair, 1);
  await shootOnBody(new Map([['DSC09002.JPG', await shotJpeg('DSC09002.JPG')]]));
  await t.waitFor('verified', 3);
  expect((await t.stop()).code, t.stderr()).toBe(0);
  const library = (await libraryFiles(dest)).sort();
  expect(library).toEqual(['day-1/0001_DSC09001.ARW', 'day-1/0001_DSC09001.JPG', 'day-1/0002_DSC09002.JPG']);
});
