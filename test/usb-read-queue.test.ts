/**
 * The speed paths of USB downloads: the transport keeps several bulk IN reads pending inside a data
 * container of known length (never past its end, so no queued read can take the response), and a camera
 * opened with wholeObjectDownloads reads a file from its start with one GetObject, keeping partial reads
 * for resuming from an offset. The transport runs over a scripted link that allows queued reads; the
 * camera runs against the PTP/IP simulator over real TCP.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { ContainerType, encodeDataContainerHeader, encodeOperationContainer } from '../src/device/ptp/codec.js';
import { OperationCode } from '../src/device/ptp/codes.js';
import { PtpCamera } from '../src/device/ptp/camera.js';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { connectPtpIp, loadOrCreateInitiatorIdentity } from '../src/device/ptpip/transport.js';
import { UsbIoError, type UsbLink, type UsbPending } from '../src/device/usb/link.js';
import { LARGE_READ_BYTES, UsbPtpTransport } from '../src/device/usb/transport.js';
import { receiveUntilResponse } from './usb-fake-link.js';

const PACKET = 512;

/**
 * A device whose bulk IN side is a queue of transfers-to-be (each ends with a short packet or fills the
 * read); reads may be queued up to `depth`, and complete in order as USB does.
 */
class QueueingLink implements UsbLink {
  readonly bulkInPacketSize = PACKET;
  readonly bulkOutPacketSize = PACKET;
  readonly hasInterrupt = false;
  readonly readLengths: number[] = [];
  /** The memory each read went into, in order: the caller's when it passed a buffer, else the link's own. */
  readonly readMemory: ArrayBufferLike[] = [];
  maxPending = 0;
  private readonly units: Buffer[] = [];
  private readonly pending: Array<{ length: number; into: Buffer | undefined; resolve: (b: Buffer) => void; reject: (e: Error) => void }> = [];
  private gone = false;

  constructor(
    readonly bulkInQueueDepth: number,
    private readonly onCommand: (code: number, transactionId: number, link: QueueingLink) => void,
  ) {}

  /** Bytes the device sends as one transfer that ends with a short packet. */
  send(bytes: Buffer): void {
    this.units.push(bytes);
    this.serve();
  }

  unplug(): void {
    this.gone = true;
    for (const p of this.pending.splice(0)) p.reject(new UsbIoError('gone', 'LIBUSB_TRANSFER_NO_DEVICE', 5));
  }

  get pendingReads(): number {
    return this.pending.length;
  }

  private serve(): void {
    while (this.pending.length > 0 && this.units.length > 0) {
      const read = this.pending[0]!;
      const unit = this.units[0]!;
      // A read takes whole packets of the unit; the unit's rest waits for the next read.
      const n = Math.min(read.length, unit.length);
      this.pending.shift();
      if (n === unit.length) this.units.shift();
      else this.units[0] = unit.subarray(n);
      let bytes: Buffer;
      if (read.into) {
        unit.copy(read.into, 0, 0, n);
        bytes = read.into.subarray(0, n);
      } else bytes = Buffer.from(unit.subarray(0, n));
      this.readMemory.push(bytes.buffer);
      read.resolve(bytes);
    }
  }

  bulkIn(length: number, _timeoutMs: number, into?: Buffer): UsbPending<Buffer> {
    this.readLengths.push(length);
    if (this.gone) return { done: Promise.reject(new UsbIoError('gone', 'LIBUSB_TRANSFER_NO_DEVICE', 5)), cancel: () => undefined };
    if (this.pending.length >= this.bulkInQueueDepth) throw new Error(`more than ${this.bulkInQueueDepth} reads pending`);
    let entry!: (typeof this.pending)[number];
    const done = new Promise<Buffer>((resolve, reject) => {
      entry = { length, into, resolve, reject };
      this.pending.push(entry);
    });
    this.maxPending = Math.max(this.maxPending, this.pending.length);
    queueMicrotask(() => this.serve());
    return {
      done,
      cancel: () => {
        const i = this.pending.indexOf(entry);
        if (i >= 0) {
          this.pending.splice(i, 1);
          entry.reject(new UsbIoError('cancelled', 'LIBUSB_TRANSFER_CANCELLED', 3));
        }
      },
    };
  }

  bulkOut(data: Uint8Array): UsbPending<void> {
    const bytes = Buffer.from(data);
    if (bytes.length >= 12 && bytes.readUInt16LE(4) === ContainerType.Command) {
      queueMicrotask(() => this.onCommand(bytes.readUInt16LE(6), bytes.readUInt32LE(8), this));
    }
    return { done: Promise.resolve(), cancel: () => undefined };
  }

  classOut(): Promise<void> {
    return Promise.resolve();
  }

  classIn(): Promise<Buffer> {
    return Promise.resolve(Buffer.alloc(0));
  }

  clearHalt(): Promise<void> {
    return Promise.resolve();
  }

  startInterrupt(): void {}

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function response(transactionId: number): Buffer {
  return encodeOperationContainer({ type: ContainerType.Response, code: 0x2001, transactionId, params: [] });
}

/** Sends the data container as the device does: header and payload as one stream, ended by a short packet. */
function sendObject(link: QueueingLink, transactionId: number, payload: Buffer): void {
  link.send(Buffer.concat([encodeDataContainerHeader(OperationCode.GetObject, transactionId, payload.length), payload]));
  link.send(response(transactionId));
}

describe('bulk IN reads queued inside a data container', () => {
  test('object-data-arrives-whole-and-in-order-with-two-reads-pending-and-none-asked-past-the-container', async () => {
    const payload = randomBytes(3 * LARGE_READ_BYTES + 777); // not a packet multiple: the last packet is short
    const link = new QueueingLink(2, (code, tid, l) => sendObject(l, tid, payload));
    const t = new UsbPtpTransport(link);
    await t.sendCommand({ code: OperationCode.GetObject, transactionId: 1, params: [7], dataPhase: 'in' });
    const r = await receiveUntilResponse(t);
    expect(r.data.equals(payload)).toBe(true);
    expect(r.items.at(-1)).toMatchObject({ kind: 'response', transactionId: 1 });
    expect(link.maxPending).toBe(2);
    // Every byte asked for before the response's read belongs to the container: the response came alone.
    const container = 12 + payload.length;
    const beforeResponse = link.readLengths.slice(0, -1).reduce((n, l) => n + l, 0);
    expect(beforeResponse).toBeLessThan(container + PACKET);
    expect(link.pendingReads).toBe(0);
  });

  test('a-link-that-allows-one-read-gets-one-read-at-a-time', async () => {
    const payload = randomBytes(2 * LARGE_READ_BYTES + 5);
    const link = new QueueingLink(1, (code, tid, l) => sendObject(l, tid, payload));
    const t = new UsbPtpTransport(link);
    await t.sendCommand({ code: OperationCode.GetObject, transactionId: 1, params: [7], dataPhase: 'in' });
    expect((await receiveUntilResponse(t)).data.equals(payload)).toBe(true);
    expect(link.maxPending).toBe(1);
  });

  test('unplugging-with-two-reads-pending-fails-the-receive-with-device-gone-and-leaves-no-read-behind', async () => {
    const link = new QueueingLink(2, (code, tid, l) => {
      // The header and a first block, then the device vanishes mid-object.
      l.send(Buffer.concat([encodeDataContainerHeader(OperationCode.GetObject, tid, 3 * LARGE_READ_BYTES), randomBytes(LARGE_READ_BYTES - 12)]));
    });
    const t = new UsbPtpTransport(link);
    await t.sendCommand({ code: OperationCode.GetObject, transactionId: 1, params: [7], dataPhase: 'in' });
    expect(await t.receive()).toMatchObject({ kind: 'data-start' });
    expect(await t.receive()).toMatchObject({ kind: 'data' });
    const next = t.receive();
    await new Promise((resolve) => setImmediate(resolve));
    expect(link.pendingReads).toBe(2);
    link.unplug();
    const err = await next.catch((e: unknown) => e);
    expect(isShuttleError(err, 'DEVICE_GONE')).toBe(true);
    expect(t.isGone).toBe(true);
    expect(link.pendingReads).toBe(0);
  });
});

describe('large read buffers reused', () => {
  /** Reads one GetObject's payload; each slice is copied and given back at once, except those `hold` keeps. */
  async function download(t: UsbPtpTransport, hold: (index: number) => boolean): Promise<{ data: Buffer; held: Array<{ bytes: Uint8Array; copy: Buffer }> }> {
    await t.sendCommand({ code: OperationCode.GetObject, transactionId: 1, params: [7], dataPhase: 'in' });
    const chunks: Buffer[] = [];
    const held: Array<{ bytes: Uint8Array; copy: Buffer }> = [];
    for (let i = 0; ; ) {
      const item = await t.receive();
      if (item.kind === 'response') return { data: Buffer.concat(chunks), held };
      if (item.kind !== 'data') continue;
      const copy = Buffer.from(item.bytes);
      chunks.push(copy);
      if (hold(i++)) held.push({ bytes: item.bytes, copy });
      else item.release?.();
    }
  }

  test('a-reader-that-gives-its-slices-back-gets-its-large-reads-into-a-few-buffers-with-every-byte-right', async () => {
    const payload = randomBytes(12 * LARGE_READ_BYTES + 777);
    const link = new QueueingLink(2, (code, tid, l) => sendObject(l, tid, payload));
    const { data } = await download(new UsbPtpTransport(link), () => false);
    expect(data.equals(payload)).toBe(true);
    const large = link.readMemory.filter((m) => m.byteLength >= LARGE_READ_BYTES);
    expect(large.length).toBeGreaterThanOrEqual(12);
    expect(new Set(large).size).toBeLessThanOrEqual(3);
  });

  test('a-slice-not-given-back-is-never-read-into-again-and-a-reader-that-keeps-them-all-gets-new-memory-for-each-read', async () => {
    const payload = randomBytes(8 * LARGE_READ_BYTES + 5);
    const link = new QueueingLink(2, (code, tid, l) => sendObject(l, tid, payload));
    // Every other slice kept to the end, the rest given back as they come.
    const { data, held } = await download(new UsbPtpTransport(link), (i) => i % 2 === 0);
    expect(data.equals(payload)).toBe(true);
    expect(held.length).toBeGreaterThanOrEqual(4);
    for (const h of held) expect(Buffer.from(h.bytes).equals(h.copy)).toBe(true);
    const large = link.readMemory.filter((m) => m.byteLength >= LARGE_READ_BYTES);
    expect(new Set(large).size).toBeLessThan(large.length);

    const keeping = new QueueingLink(2, (code, tid, l) => sendObject(l, tid, payload));
    await download(new UsbPtpTransport(keeping), () => true);
    const all = keeping.readMemory.filter((m) => m.byteLength >= LARGE_READ_BYTES);
    expect(new Set(all).size).toBe(all.length);
  });
});

test('an-objects-payload-lies-in-page-aligned-shared-memory-with-its-page-offsets-at-page-aligned-addresses', async () => {
  // So that an ingest writes its whole pages with O_DIRECT and hashes them in a worker where they are.
  const payload = randomBytes(5 * LARGE_READ_BYTES + 777);
  const link = new QueueingLink(2, (code, tid, l) => sendObject(l, tid, payload));
  const t = new UsbPtpTransport(link);
  await t.sendCommand({ code: OperationCode.GetObject, transactionId: 1, params: [7], dataPhase: 'in' });
  const slices: Array<{ at: number; bytes: Uint8Array; copy: Buffer }> = [];
  let at = 0;
  for (;;) {
    const item = await t.receive();
    if (item.kind === 'response') break;
    if (item.kind !== 'data') continue;
    slices.push({ at, bytes: item.bytes, copy: Buffer.from(item.bytes) });
    at += item.bytes.byteLength;
    item.release?.();
  }
  expect(Buffer.concat(slices.map((s) => s.copy)).equals(payload)).toBe(true);
  // Every read but the last, short one, which goes into memory of its own.
  expect(slices.length).toBe(6);
  for (const m of slices.slice(0, -1)) {
    expect(m.bytes.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect((((m.bytes.byteOffset - m.at) % 4096) + 4096) % 4096).toBe(0);
  }
});

describe('whole-object downloads', () => {
  let work: string;
  let sim: CameraSimulator;
  const cleanups: Array<() => Promise<unknown>> = [];

  beforeEach(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'shuttle-usb-queue-'));
    await mkdir(path.join(work, 'card', 'DCIM', '100TEST'), { recursive: true });
    await mkdir(path.join(work, 'pool'), { recursive: true });
    await writeFile(path.join(work, 'card', 'DCIM', '100TEST', 'IMG_0001.CR2'), randomBytes(3 * 1024 * 1024 + 4321));
    sim = await CameraSimulator.start({ dir: path.join(work, 'card'), pool: path.join(work, 'pool'), port: 0, timeZone: 'UTC' });
    cleanups.push(() => sim.stop());
  });

  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  });

  async function open(wholeObjectDownloads: boolean): Promise<PtpCamera> {
    const identity = await loadOrCreateInitiatorIdentity(path.join(work, 'state'));
    const transport = await connectPtpIp({ host: '127.0.0.1', port: sim.port, identity });
    const cam = await PtpCamera.open(transport, { wholeObjectDownloads });
    cleanups.push(() => cam.close());
    return cam;
  }

  async function sha256Of(cam: PtpCamera, handle: number, size: number, offset: number): Promise<string> {
    const h = createHash('sha256');
    for await (const chunk of cam.download(handle, { size, offset })) h.update(chunk as Buffer);
    return h.digest('hex');
  }

  test('a-camera-opened-for-whole-objects-reads-a-file-with-one-getobject-and-resumes-with-partial-reads', async () => {
    const cam = await open(true);
    const [storage] = await cam.storageIds();
    const files: Array<{ handle: number; size: number }> = [];
    for await (const o of cam.walk(storage!)) files.push({ handle: o.handle, size: o.info.compressedSize });
    const { handle, size } = files[0]!;
    const bytes = await import('node:fs/promises').then((fs) => fs.readFile(path.join(work, 'card', 'DCIM', '100TEST', 'IMG_0001.CR2')));
    expect(await sha256Of(cam, handle, size, 0)).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(sim.operationCount(OperationCode.GetObject)).toBe(1);
    expect(sim.operationCount(OperationCode.GetPartialObject)).toBe(0);
    const offset = 2 * 1024 * 1024 + 17;
    expect(await sha256Of(cam, handle, size, offset)).toBe(createHash('sha256').update(bytes.subarray(offset)).digest('hex'));
    expect(sim.operationCount(OperationCode.GetObject)).toBe(1);
    expect(sim.operationCount(OperationCode.GetPartialObject)).toBeGreaterThan(0);
  });

  test('a-download-that-lends-its-chunks-keeps-the-last-ones-until-its-reader-destroys-the-stream', async () => {
    const cam = await open(true);
    const [storage] = await cam.storageIds();
    const files: Array<{ handle: number; size: number }> = [];
    for await (const o of cam.walk(storage!)) files.push({ handle: o.handle, size: o.info.compressedSize });
    const { handle, size } = files[0]!;
    // A reader that keeps chunks a few pulls (as fanOut does) may still hold the last ones past the end.
    const first = cam.download(handle, { size, recycle: 4 });
    const kept: Array<{ bytes: Buffer; copy: Buffer }> = [];
    for (const it = first[Symbol.asyncIterator]() as AsyncIterator<Buffer>; ; ) {
      const r = await it.next();
      if (r.done === true) break;
      kept.push({ bytes: r.value, copy: Buffer.from(r.value) });
    }
    expect(kept.length).toBeGreaterThan(4);
    // The next download reads into the memory the transport got back.
    const again = async (): Promise<void> => {
      const s = cam.download(handle, { size, recycle: 1 });
      for await (const _ of s) void _;
      s.destroy();
    };
    await again();
    for (const k of kept.slice(-4)) expect(k.bytes.equals(k.copy)).toBe(true);
    first.destroy();
    await again();
    // Given back once destroyed: the memory serves the next download.
    expect(kept.slice(-4).some((k) => !k.bytes.equals(k.copy))).toBe(true);
  });

  test('by-default-a-camera-that-offers-partial-reads-is-read-in-blocks', async () => {
    const cam = await open(false);
    const [storage] = await cam.storageIds();
    for await (const o of cam.walk(storage!)) {
      for await (const _ of cam.download(o.handle, { size: o.info.compressedSize })) void _;
    }
    expect(sim.operationCount(OperationCode.GetObject)).toBe(0);
    expect(sim.operationCount(OperationCode.GetPartialObject)).toBe(4);
  });
});
