/**
 * A broken or hostile camera: the simulator misbehaving on purpose (SimulatorMisbehaviour) over real TCP,
 * and a scripted USB device, against the bounds the initiator keeps: listings that grow without end, data
 * phases longer than asked for, and data that trickles in.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { ShuttleError } from '../src/errors.js';
import { PtpCameraSource, openPtpIpCameraSource } from '../src/device/camera-source.js';
import { PtpCamera } from '../src/device/ptp/camera.js';
import { OperationCode } from '../src/device/ptp/codes.js';
import { DEFAULT_LISTING_LIMITS, type ListingLimits } from '../src/device/ptp/listing-budget.js';
import type { PtpQuirks } from '../src/device/ptp/quirks.js';
import { PtpSession } from '../src/device/ptp/session.js';
import { CameraSimulator, type SimulatorMisbehaviour } from '../src/device/ptpip/simulator.js';
import { connectPtpIp, loadOrCreateInitiatorIdentity } from '../src/device/ptpip/transport.js';
import type { SourceItem } from '../src/device/source.js';
import { UsbPtpTransport } from '../src/device/usb/transport.js';
import { runIngest, type IngestSettings } from '../src/ingest/pipeline.js';
import { ingestSettings } from './support/fixtures.js';
import { silentLogger } from '../src/log.js';
import { Journal } from '../src/store/journal.js';
import { listTree, tempDir, tempFilesUnder } from './support/tree.js';
import { FakePtpDevice } from './usb-fake-link.js';

let work: { path: string; cleanup: () => Promise<void> };
let card: string;
const cleanups: Array<() => Promise<unknown>> = [];

beforeEach(async () => {
  work = await tempDir('shuttle-hostile-');
  card = path.join(work.path, 'card');
});
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
  await work.cleanup();
});

async function fill(rel: string, size: number): Promise<Buffer> {
  const file = path.join(card, rel);
  await mkdir(path.dirname(file), { recursive: true });
  const data = randomBytes(size);
  await writeFile(file, data);
  return data;
}

async function simulator(misbehave?: SimulatorMisbehaviour): Promise<CameraSimulator> {
  const sim = await CameraSimulator.start({ dir: card, port: 0, timeZone: 'UTC', watch: false, ...(misbehave ? { misbehave } : {}) });
  cleanups.push(() => sim.stop());
  return sim;
}

async function source(sim: CameraSimulator, opts: { quirks?: Partial<PtpQuirks>; listingLimits?: Partial<ListingLimits> } = {}): Promise<PtpCameraSource> {
  const src = await openPtpIpCameraSource({ host: '127.0.0.1', port: sim.port, stateDir: path.join(work.path, 'state'), timeZone: 'UTC', ...opts });
  cleanups.push(() => src.close());
  return src;
}

/** Reads the stream to its end or its error; counts what it handed on. */
async function drain(stream: Readable): Promise<{ bytes: number; sha256: string; error?: ShuttleError }> {
  const h = createHash('sha256');
  let bytes = 0;
  try {
    for await (const chunk of stream) {
      bytes += (chunk as Buffer).length;
      h.update(chunk as Buffer);
    }
  } catch (err) {
    if (!(err instanceof ShuttleError)) throw err;
    return { bytes, sha256: '', error: err };
  }
  return { bytes, sha256: h.digest('hex') };
}

async function listing(src: PtpCameraSource): Promise<{ items: SourceItem[]; error?: ShuttleError }> {
  const items: SourceItem[] = [];
  try {
    for await (const item of src.list()) items.push(item);
  } catch (err) {
    if (!(err instanceof ShuttleError)) throw err;
    return { items, error: err };
  }
  return { items };
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('listing bounds', () => {
  test('a-camera-listing-more-files-than-the-bound-stops-with-source-limit-after-handing-on-the-bound', async () => {
    for (let i = 0; i < 12; i++) await fill(`DCIM/100TEST/IMG_${String(i).padStart(4, '0')}.JPG`, 10);
    const sim = await simulator();
    const r = await listing(await source(sim, { listingLimits: { maxObjects: 10 } }));
    expect(r.error?.code).toBe('SOURCE_LIMIT');
    expect(r.error?.context).toMatchObject({ limit: 'maxObjects', max: 10 });
    expect(r.error?.message).toMatch(/more than 10 files/);
    // Handed on as listed, not collected first.
    expect(r.items).toHaveLength(10);
  });

  test('folders-nested-past-the-default-depth-stop-the-listing-and-up-to-it-they-list', async () => {
    const deep = (n: number): string => Array.from({ length: n }, (_, i) => `d${i}`).join('/');
    const max = DEFAULT_LISTING_LIMITS.maxDepth;
    await fill(`${deep(max)}/at-the-bound.jpg`, 10);
    const sim = await simulator();
    expect((await listing(await source(sim))).items.map((i) => i.path.split('/').slice(1).join('/'))).toEqual([`${deep(max)}/at-the-bound.jpg`]);
    await sim.stop();

    await fill(`${deep(max + 1)}/past-the-bound.jpg`, 10);
    const sim2 = await simulator();
    const r = await listing(await source(sim2));
    expect(r.error?.code).toBe('SOURCE_LIMIT');
    expect(r.error?.context).toMatchObject({ limit: 'maxDepth', max });
    expect(r.error?.message).toContain(`${deep(max + 1)}`);
  });

  test('a-camera-repeating-its-handles-is-stopped-by-the-listed-entries-bound', async () => {
    for (let i = 0; i < 10; i++) await fill(`IMG_${i}.JPG`, 10);
    // The same camera without repeats lists within the bound.
    const honest = await simulator();
    expect((await listing(await source(honest, { listingLimits: { maxListedEntries: 100 } }))).items).toHaveLength(10);
    await honest.stop();

    const sim = await simulator({ repeatHandles: 50 });
    const r = await listing(await source(sim, { listingLimits: { maxListedEntries: 100 } }));
    expect(r.error?.code).toBe('SOURCE_LIMIT');
    expect(r.error?.context).toMatchObject({ limit: 'maxListedEntries', max: 100 });
    expect(r.items).toHaveLength(0);
  });
});

describe('data phases longer than asked for', () => {
  const OVERRUN = 256 * 1024 * 1024;

  test('a-getobject-announcing-more-than-objectinfo-is-refused-before-a-byte-of-it-and-the-next-file-downloads-whole', async () => {
    await fill('DCIM/big.bin', 2 * 1024 * 1024 + 3);
    const good = await fill('DCIM/good.jpg', 300_000);
    const sim = await simulator({ overrunBytes: OVERRUN, paths: ['DCIM/big.bin'] });
    const src = await source(sim);
    const { items } = await listing(src);
    const big = items.find((i) => i.path.endsWith('big.bin'))!;
    const r = await drain(await src.open(big));
    expect(r.error?.code).toBe('PTP_PROTOCOL');
    expect(r.error?.message).toMatch(/more than the 2097155/);
    expect(r.bytes).toBe(0);
    // Cut off, not read to the end and thrown away: the camera got to send little of its excess.
    expect(sim.overrunBytesSent).toBeLessThan(32 * 1024 * 1024);
    const ok = await drain(await src.open(items.find((i) => i.path.endsWith('good.jpg'))!));
    expect(ok).toEqual({ bytes: good.length, sha256: sha256(good) });
    expect(sim.operationCount(OperationCode.GetObject)).toBe(2);
  });

  test('a-partial-read-longer-than-its-block-is-refused-and-nothing-past-the-object-is-handed-on', async () => {
    await fill('big.bin', 3 * 1024 * 1024);
    const sim = await simulator({ overrunBytes: OVERRUN });
    const transport = await connectPtpIp({ host: '127.0.0.1', port: sim.port, identity: await loadOrCreateInitiatorIdentity(path.join(work.path, 'state')) });
    const cam = await PtpCamera.open(transport);
    cleanups.push(() => cam.close());
    const [storage] = await cam.storageIds();
    let obj;
    for await (const o of cam.walk(storage!)) obj = o;
    const r = await drain(cam.download(obj!.handle, { size: obj!.info.compressedSize }));
    expect(r.error?.code).toBe('PTP_PROTOCOL');
    expect(r.bytes).toBe(0);
    expect(sim.operationCount(OperationCode.GetPartialObject)).toBe(1);
    expect(sim.overrunBytesSent).toBeLessThan(32 * 1024 * 1024);
  });

  test('usb-data-of-unknown-length-running-past-the-object-size-fails-at-the-first-excess-byte', async () => {
    const size = 100_000;
    // 0xFFFFFFFF in the container: the device does not say how long it is, then sends forty times the object.
    const dev = new FakePtpDevice((cmd, d) => {
      if (cmd.code === OperationCode.GetObject) d.sendPatternData(cmd.transactionId, cmd.code, 0, size * 40, { unknownLength: true });
      else d.sendData(cmd.transactionId, cmd.code, Buffer.from('dataset'));
      d.respond(cmd.transactionId);
    });
    const session = new PtpSession(new UsbPtpTransport(dev));
    let handedOn = 0;
    let error: unknown;
    try {
      for await (const chunk of session.exchange({ code: OperationCode.GetObject, params: [1], expectedDataBytes: size, maxDataBytes: size }, 'in')) handedOn += chunk.byteLength;
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ShuttleError);
    expect((error as ShuttleError).code).toBe('PTP_PROTOCOL');
    expect(handedOn).toBeLessThanOrEqual(size);
    // The rest of the device's container was never read: one large read, then the cancel.
    expect(dev.readLengths.reduce((a, b) => a + b, 0)).toBeLessThan(size * 40);
    // The transaction was cancelled, and the next one is framed cleanly.
    expect((await session.runDataIn({ code: OperationCode.GetObjectInfo, params: [1] })).data.toString()).toBe('dataset');
    expect(dev.classRequests.map((r) => r.request)).toContain(0x64);
  });
});

describe('a camera that trickles', () => {
  // A floor of 64 KiB/s over 0.3 s of waiting; the camera sends 64 bytes every 10 ms (6.4 KB/s).
  const floor: Partial<PtpQuirks> = { minDataRate: 64 * 1024, dataRateWindowMs: 300 };
  const trickle = { bytes: 64, intervalMs: 10 };

  test('a-download-slower-than-the-floor-fails-with-ptp-timeout-and-the-session-serves-the-next-file', async () => {
    await fill('slow.bin', 1024 * 1024);
    const good = await fill('good.jpg', 200_000);
    const sim = await simulator({ trickle, paths: ['slow.bin'] });
    const src = await source(sim, { quirks: floor });
    const { items } = await listing(src);
    const started = Date.now();
    const r = await drain(await src.open(items.find((i) => i.path.endsWith('slow.bin'))!));
    expect(r.error?.code).toBe('PTP_TIMEOUT');
    expect(r.error?.message).toMatch(/slower than the floor of 65536 bytes\/s/);
    expect(r.bytes).toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await drain(await src.open(items.find((i) => i.path.endsWith('good.jpg'))!))).toEqual({ bytes: good.length, sha256: sha256(good) });
  }, 15_000);

  test('an-ingest-fails-the-trickled-file-copies-the-others-and-leaves-no-temp-files-or-locks', async () => {
    await fill('DCIM/100TEST/A.JPG', 150_000);
    await fill('DCIM/100TEST/SLOW.CR3', 2 * 1024 * 1024);
    await fill('DCIM/100TEST/B.JPG', 120_000);
    const sim = await simulator({ trickle, paths: ['DCIM/100TEST/SLOW.CR3'] });
    const src = await source(sim, { quirks: floor });
    const settings: IngestSettings = ingestSettings('{name}');
    const dests = [path.join(work.path, 'one'), path.join(work.path, 'two')];
    const run = async (): Promise<Awaited<ReturnType<typeof runIngest>>> => {
      const journal = Journal.open(path.join(work.path, 'state'));
      try {
        return await runIngest({ sources: [src], destinations: dests.map((p) => ({ path: p })), journal, settings, logger: silentLogger, signal: new AbortController().signal });
      } finally {
        journal.close();
      }
    };
    const summary = await run();
    expect(summary).toMatchObject({ files: 3, copied: 2, failed: 1 });
    expect(summary.errors).toEqual([expect.objectContaining({ path: 'SD/DCIM/100TEST/SLOW.CR3', code: 'PTP_TIMEOUT' })]);
    for (const d of dests) {
      expect([...(await listTree(d, { skipShuttle: true })).keys()].sort()).toEqual(['A.JPG', 'B.JPG']);
      expect(await tempFilesUnder(d)).toEqual([]);
    }
    // The destinations' and the source's locks went with the run: another one takes them at once (no wait).
    const again = await run();
    expect(again).toMatchObject({ copied: 0, failed: 1 });
    expect(await readFile(path.join(dests[0]!, 'A.JPG'))).toEqual(await readFile(path.join(card, 'DCIM/100TEST/A.JPG')));
  }, 30_000);
});
