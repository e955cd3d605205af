import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { openPtpIpCameraSource } from '../src/device/camera-source.js';
import { PtpCamera } from '../src/device/ptp/camera.js';
import { PtpWriter } from '../src/device/ptp/codec.js';
import { EventCode } from '../src/device/ptp/codes.js';
import {
  SONY_MEMORY_OBJECT_HANDLE,
  SonyDataType,
  SonyProperty,
  decodeSonyExtDeviceInfo,
  decodeSonyProps,
  encodeSonyExtDeviceInfo,
  encodeSonyProps,
  objectInMemoryValue,
  objectsInMemory,
} from '../src/device/ptp/sony.js';
import { VendorEventPoller } from '../src/device/ptp/vendor-events.js';
import type { PtpEvent } from '../src/device/ptp/transport.js';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { connectPtpIp, loadOrCreateInitiatorIdentity } from '../src/device/ptpip/transport.js';
import type { SourceItem } from '../src/device/source.js';
import { TetheredCameraSource } from '../src/device/tethered-source.js';
import { tempDir } from './support/tree.js';

/** Sony's SDIO data as Shuttle reads it, and the poller that watches a Sony body's memory. */

test('objects-in-memory-count-only-once-the-ready-bit-is-set', () => {
  expect(objectsInMemory(0)).toBe(0);
  // libgphoto2: the value turns to 1 first, and reading the object then crashes the firmware.
  expect(objectsInMemory(1)).toBe(0);
  expect(objectsInMemory(0x8000)).toBe(0);
  expect(objectsInMemory(0x8002)).toBe(2);
  expect(objectInMemoryValue(2)).toBe(0x8002);
  expect(objectInMemoryValue(0)).toBe(0);
});

test('ext-device-info-and-all-property-data-decode-what-was-encoded', () => {
  const info = { version: 0x12c, properties: [0xd215, 0xc201], controls: [0xd2c1, 0xd2c2] };
  expect(decodeSonyExtDeviceInfo(encodeSonyExtDeviceInfo(info))).toEqual(info);
  // A body still waking answers with no data.
  expect(decodeSonyExtDeviceInfo(new Uint8Array(0))).toBeUndefined();
  const props = [
    { code: SonyProperty.PriorityMode, dataType: SonyDataType.INT8, value: 1 },
    { code: SonyProperty.ObjectInMemory, dataType: SonyDataType.UINT16, value: 0x8001 },
    { code: 0xd2ff, dataType: SonyDataType.UINT32, value: 0xdeadbeef },
  ];
  expect(decodeSonyProps(encodeSonyProps(props))).toEqual(props);
});

test('property-data-with-range-and-enumeration-forms-is-read-past-the-forms', () => {
  const w = new PtpWriter().u32(3).u32(0);
  // u8 with a range form (min, max, step).
  w.u16(0x5004).u16(SonyDataType.UINT8).u8(1).u8(1).u8(2).u8(3).u8(1).u8(1).u8(4).u8(1);
  // u16 with an enumeration of three values.
  w.u16(0x500a).u16(SonyDataType.UINT16).u8(1).u8(1).u16(1).u16(2).u8(2).u16(3).u16(1).u16(2).u16(3);
  w.u16(SonyProperty.ObjectInMemory).u16(SonyDataType.UINT16).u8(0).u8(1).u16(0).u16(0x8003).u8(0);
  const decoded = decodeSonyProps(w.toBuffer());
  expect(decoded.map((p) => [p.code, p.value])).toEqual([
    [0x5004, 3],
    [0x500a, 2],
    [SonyProperty.ObjectInMemory, 0x8003],
  ]);
  // A string property cannot be skipped here: what came before it is kept, and nothing is made up after it.
  const withString = new PtpWriter().u32(2).u32(0);
  withString.u16(0xd215).u16(SonyDataType.UINT16).u8(0).u8(1).u16(0).u16(0x8001).u8(0);
  withString.u16(0xd2aa).u16(0xffff).u8(0).u8(1).u8(0);
  expect(decodeSonyProps(withString.toBuffer())).toEqual([{ code: 0xd215, dataType: SonyDataType.UINT16, value: 0x8001 }]);
});

let work: { path: string; cleanup: () => Promise<void> };
const cleanups: Array<() => Promise<unknown>> = [];
beforeEach(async () => {
  work = await tempDir('shuttle-ptp-sony-');
});
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
  await work.cleanup();
});

test('the-body-signalling-objectinmemory-changed-ends-the-pause-between-polls', async () => {
  const card = join(work.path, 'card');
  await mkdir(card);
  const sim = await CameraSimulator.start({ dir: card, port: 0, vendor: 'sony' });
  cleanups.push(() => sim.stop());
  const transport = await connectPtpIp({ host: '127.0.0.1', port: sim.port, identity: await loadOrCreateInitiatorIdentity(join(work.path, 'state')) });
  const cam = await PtpCamera.open(transport);
  cleanups.push(() => cam.close());
  const added: PtpEvent[] = [];
  let seen: () => void = () => undefined;
  const arrived = new Promise<void>((r) => (seen = r));
  cam.session.onEvent((e) => {
    if (e.code !== EventCode.ObjectAdded) return;
    added.push(e);
    seen();
  });
  // A pause far longer than the test: only the body's DevicePropChanged can bring the shot in time.
  const poller = new VendorEventPoller(cam.session, cam.deviceInfo, { intervalMs: 600_000 });
  expect(poller.strategy).toEqual({ kind: 'sony' });
  await poller.start();
  cleanups.push(() => poller.stop());
  await expect.poll(() => sim.operationCount(0x9209)).toBeGreaterThan(0);
  await writeFile(join(card, 'DSC00001.JPG'), Buffer.alloc(1000, 7));
  await arrived;
  expect(added[0]!.params).toEqual([SONY_MEMORY_OBJECT_HANDLE]);
}, 20_000);

/**
 * A tethered session on the Sony simulator, its card empty, the listing begun (new shots only), and
 * `watching` resolved once the session watches the camera's memory. Everything is closed after the test.
 */
async function tetheredSony(): Promise<{
  card: string;
  sim: CameraSimulator;
  camera: Awaited<ReturnType<typeof openPtpIpCameraSource>>;
  tethered: TetheredCameraSource;
  listing: AsyncIterator<unknown>;
  watching: Promise<void>;
}> {
  const card = join(work.path, 'card');
  await mkdir(card);
  const sim = await CameraSimulator.start({ dir: card, port: 0, vendor: 'sony' });
  cleanups.push(() => sim.stop());
  const camera = await openPtpIpCameraSource({ host: '127.0.0.1', port: sim.port, stateDir: join(work.path, 'state') });
  const stop = new AbortController();
  let watched: () => void = () => undefined;
  const watching = new Promise<void>((r) => (watched = r));
  const tethered = new TetheredCameraSource(camera, { existing: false, stop: stop.signal, onWatching: () => watched() });
  cleanups.push(() => tethered.close());
  const listing = tethered.list()[Symbol.asyncIterator]();
  cleanups.push(async () => {
    stop.abort();
    await listing.return?.();
  });
  return { card, sim, camera, tethered, listing, watching };
}

test('a-stale-announcement-of-the-empty-memory-handle-does-not-end-the-session', async () => {
  const { card, camera, listing, watching } = await tetheredSony();
  const first = listing.next();
  await watching;
  // As a poll that counted a shot just before it was read would announce it: the handle is empty now.
  camera.camera.session.dispatchEvent({ code: EventCode.ObjectAdded, transactionId: 0, params: [SONY_MEMORY_OBJECT_HANDLE] });
  await writeFile(join(card, 'DSC00002.JPG'), Buffer.alloc(1000, 7));
  const r = await first;
  expect(r.done).toBe(false);
  expect((r.value as { path: string }).path).toBe('camera-memory/DSC00002.JPG');
}, 20_000);

test('the-next-shot-in-sony-memory-is-named-once-the-last-was-read-whatever-became-of-its-copy', async () => {
  const { card, sim, tethered, listing } = await tetheredSony();
  const first = listing.next();
  // The simulator's folder watcher reports files written together in either order: the second shot is
  // taken once the first is in the camera's memory, and is queued behind it before the first is read.
  await writeFile(join(card, 'DSC00001.JPG'), Buffer.alloc(1000, 1));
  await expect.poll(() => sim.objectsInMemory, { timeout: 10_000 }).toBe(1);
  await writeFile(join(card, 'DSC00002.JPG'), Buffer.alloc(2000, 2));
  await expect.poll(() => sim.objectsInMemory, { timeout: 10_000 }).toBe(2);
  const one = (await first).value as SourceItem;
  expect(one.path).toBe('camera-memory/DSC00001.JPG');
  // Read to its end (as a copy does), never released (as when the copy failed at its destination).
  const bytes: Buffer[] = [];
  for await (const chunk of await tethered.open(one)) bytes.push(chunk as Buffer);
  expect(Buffer.concat(bytes).equals(Buffer.alloc(1000, 1))).toBe(true);
  const two = (await listing.next()).value as SourceItem;
  expect(two.path).toBe('camera-memory/DSC00002.JPG');
  expect(two.size).toBe(2000);
}, 20_000);
