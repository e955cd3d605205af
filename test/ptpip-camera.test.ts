/**
 * Shuttle's PTP/IP initiator against Shuttle's camera simulator over real TCP on port 0: the whole stack
 * (packets, transport, session, camera, Source) with nothing faked.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { ShuttleError, isShuttleError } from '../src/errors.js';
import { PtpCameraSource, openPtpIpCameraSource } from '../src/device/camera-source.js';
import { PtpCamera } from '../src/device/ptp/camera.js';
import { EventCode, OperationCode } from '../src/device/ptp/codes.js';
import { PtpIpResponder } from '../src/device/ptpip/responder.js';
import { CameraSimulator, type SimulatorOptions } from '../src/device/ptpip/simulator.js';
import { PtpSession } from '../src/device/ptp/session.js';
import { INITIATOR_IDENTITY_FILE, connectPtpIp, loadOrCreateInitiatorIdentity, type InitiatorIdentity } from '../src/device/ptpip/transport.js';

const ZONE = 'Europe/Berlin';
let work: string;
let card: string;
let pool: string;
const cleanups: (() => Promise<unknown>)[] = [];

async function fill(file: string, size: number): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, randomBytes(size));
}

beforeEach(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'shuttle-ptpip-'));
  card = path.join(work, 'card');
  pool = path.join(work, 'pool');
  await fill(path.join(card, 'DCIM', '100TEST', 'IMG_0001.JPG'), 2 * 1024 * 1024 + 12345);
  await fill(path.join(card, 'DCIM', '100TEST', 'IMG_0001.CR2'), 70_001);
  await fill(path.join(card, 'DCIM', '101TEST', 'deeper', 'Übersicht é.jpg'), 4096);
  await fill(path.join(card, 'MISC', 'empty.txt'), 0);
  await fill(path.join(card, 'readme.txt'), 300);
  await fill(path.join(pool, 'a.jpg'), 50_000);
  await fill(path.join(pool, 'b.jpg'), 60_000);
});

afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<unknown>)().catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

async function simulator(opts: Partial<SimulatorOptions> = {}): Promise<CameraSimulator> {
  const sim = await CameraSimulator.start({ dir: card, pool, port: 0, timeZone: ZONE, ...opts });
  cleanups.push(() => sim.stop());
  return sim;
}

async function identity(): Promise<InitiatorIdentity> {
  return loadOrCreateInitiatorIdentity(path.join(work, 'state'));
}

async function camera(sim: CameraSimulator): Promise<PtpCamera> {
  const transport = await connectPtpIp({ host: '127.0.0.1', port: sim.port, identity: await identity() });
  const cam = await PtpCamera.open(transport);
  cleanups.push(() => cam.close());
  return cam;
}

async function source(sim: CameraSimulator): Promise<PtpCameraSource> {
  const src = await openPtpIpCameraSource({ host: '127.0.0.1', port: sim.port, stateDir: path.join(work, 'state'), timeZone: ZONE });
  cleanups.push(() => src.close());
  return src;
}

async function sha256Of(stream: Readable): Promise<{ hash: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    h.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { hash: h.digest('hex'), bytes };
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const i of items) out.push(i);
  return out;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Files under `dir` as '/'-separated relative paths. */
async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join('/'));
  }
  return out.sort();
}

async function rejection(p: Promise<unknown>): Promise<ShuttleError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ShuttleError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('identity and session', () => {
  test('the camera identifies itself by manufacturer, model and serial', async () => {
    const sim = await simulator({ serialNumber: 'SIM-0042' });
    const src = await source(sim);
    const id = await src.identity();
    expect(id.kind).toBe('camera');
    expect(id.key).toBe('camera:Shuttle:Simulator:SIM-0042');
    expect(id.label).toBe('Shuttle Simulator');
    expect(src.uri).toBe(`ptpip:127.0.0.1:${sim.port}`);
    expect(src.camera.supports(OperationCode.GetPartialObject)).toBe(true);
  });

  test('the same folder is the same camera across restarts (serial derived from the folder)', async () => {
    const a = await simulator();
    const serialA = a.deviceInfo.serialNumber;
    await a.stop();
    const b = await simulator();
    expect(b.deviceInfo.serialNumber).toBe(serialA);
    expect(serialA).toMatch(/^[0-9A-F]{12}$/);
  });

  test('the initiator GUID and name are created once and then reused', async () => {
    const state = path.join(work, 'state');
    const first = await loadOrCreateInitiatorIdentity(state);
    const again = await loadOrCreateInitiatorIdentity(state);
    expect(Buffer.from(again.guid).toString('hex')).toBe(Buffer.from(first.guid).toString('hex'));
    expect(first.guid.byteLength).toBe(16);
    expect(again.friendlyName).toBe(first.friendlyName);
    const saved = JSON.parse(await readFile(path.join(state, INITIATOR_IDENTITY_FILE), 'utf8')) as { guid: string };
    expect(saved.guid).toBe(Buffer.from(first.guid).toString('hex'));
  });

  test('a damaged identity file is an error, not silently replaced (cameras paired with it)', async () => {
    const state = path.join(work, 'state');
    await mkdir(state, { recursive: true });
    await writeFile(path.join(state, INITIATOR_IDENTITY_FILE), '{"guid":"xyz"}');
    expect((await rejection(loadOrCreateInitiatorIdentity(state))).code).toBe('CONFIG_INVALID');
  });

  test('nobody listening is a TRANSPORT error naming the address', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    await new Promise<void>((r) => server.close(() => r()));
    const err = await rejection(connectPtpIp({ host: '127.0.0.1', port, identity: await identity() }));
    expect(err.code).toBe('TRANSPORT');
    expect(err.context['errno']).toBe('ECONNREFUSED');
    expect(err.context['port']).toBe(port);
  });

  test('a second initiator is turned away with InitFail(busy) while one is connected', async () => {
    const sim = await simulator();
    await camera(sim);
    const err = await rejection(connectPtpIp({ host: '127.0.0.1', port: sim.port, identity: await identity() }));
    expect(err.code).toBe('TRANSPORT');
    expect(err.context['initFailReason']).toBe(2);
    expect(err.retryable).toBe(true);
  });
});

describe('link', () => {
  test('a Probe Request on the event connection is answered', async () => {
    const sim = await simulator();
    const transport = await connectPtpIp({ host: '127.0.0.1', port: sim.port, identity: await identity() });
    cleanups.push(() => transport.close());
    await transport.probe(undefined, 2000);
    expect(transport.responder.friendlyName).toBe('Shuttle Simulator');
  });

  test('a camera that goes away fails the next operation with TRANSPORT, not a hang', async () => {
    const sim = await simulator();
    const cam = await camera(sim);
    await sim.stop();
    const err = await rejection(cam.storageIds());
    expect(err.code).toBe('TRANSPORT');
    expect(err.retryable).toBe(true);
  });
});

describe('data-out over PTP/IP', () => {
  test('the initiator streams a data-out phase in packets and the responder receives every byte', async () => {
    // A device model that hashes what it is sent (the simulator itself accepts no uploads).
    const received: { code: number; length: number | undefined; hash: string; bytes: number }[] = [];
    const responder = new PtpIpResponder({
      port: 0,
      friendlyName: 'Upload sink',
      connect: () => ({
        handle: async (req) => {
          if (req.code === OperationCode.OpenSession || req.code === OperationCode.CloseSession) return { code: 0x2001 };
          const h = createHash('sha256');
          let bytes = 0;
          for await (const c of req.dataOut ?? []) {
            h.update(c);
            bytes += c.byteLength;
          }
          received.push({ code: req.code, length: req.dataOutLength, hash: h.digest('hex'), bytes });
          return { code: 0x2001, params: [bytes] };
        },
        close: () => undefined,
      }),
    });
    await responder.listen();
    cleanups.push(() => responder.close());
    const transport = await connectPtpIp({ host: '127.0.0.1', port: responder.address().port, identity: await identity() });
    const session = new PtpSession(transport);
    cleanups.push(() => session.dispose());
    await session.openSession();
    const payload = randomBytes(3 * 1024 * 1024 + 17);
    async function* pieces(): AsyncGenerator<Uint8Array> {
      for (let off = 0; off < payload.length; off += 700_000) yield payload.subarray(off, off + 700_000);
    }
    const r = await session.runDataOut({ code: OperationCode.SendObject }, { length: payload.length, chunks: pieces() });
    expect(r.params).toEqual([payload.length]);
    const empty = await session.runDataOut({ code: OperationCode.SetDevicePropValue, params: [0x5011] }, new Uint8Array(0));
    expect(empty.params).toEqual([0]);
    expect(received).toEqual([
      { code: OperationCode.SendObject, length: payload.length, hash: sha256(payload), bytes: payload.length },
      { code: OperationCode.SetDevicePropValue, length: 0, hash: sha256(Buffer.alloc(0)), bytes: 0 },
    ]);
  });
});

describe('listing', () => {
  for (const mode of ['all', 'root'] as const) {
    test(`every file is listed with storage and folder path when association 0 means ${mode}`, async () => {
      const sim = await simulator({ associationZeroMeans: mode });
      const src = await source(sim);
      const items = [];
      for await (const item of src.list()) items.push(item);
      expect(items.map((i) => i.path).sort()).toEqual((await filesUnder(card)).map((p) => `SD/${p}`));
      const big = items.find((i) => i.path.endsWith('IMG_0001.JPG'));
      const st = await stat(path.join(card, 'DCIM', '100TEST', 'IMG_0001.JPG'));
      expect(big?.size).toBe(st.size);
      expect(big?.mtimeMs).toBe(Math.floor(st.mtimeMs / 1000) * 1000);
    });
  }

  test('file dates are camera-local: read in the camera zone they match, in another they are off by the offset', async () => {
    const file = path.join(card, 'readme.txt');
    const when = new Date(Date.UTC(2024, 6, 1, 10, 0, 0));
    await utimes(file, when, when);
    const sim = await simulator();
    const src = await source(sim);
    const item = (await collect(src.list())).find((i) => i.path === 'SD/readme.txt');
    expect(item?.mtimeMs).toBe(when.getTime());
    const utcReader = new PtpCameraSource(src.camera, src.uri, { timeZone: 'UTC' });
    expect((await utcReader.stat(item as NonNullable<typeof item>))?.mtimeMs).toBe(when.getTime() + 2 * 3_600_000);
  });
});

describe('download', () => {
  const variants: { name: string; opts: Partial<SimulatorOptions>; op: number }[] = [
    { name: 'GetPartialObject', opts: {}, op: OperationCode.GetPartialObject },
    { name: 'GetPartialObject64', opts: { offerPartialObject: false }, op: OperationCode.AndroidGetPartialObject64 },
    { name: 'GetObject', opts: { offerPartialObject: false, offerPartialObject64: false }, op: OperationCode.GetObject },
  ];
  for (const v of variants) {
    test(`is byte-exact and resumes from an offset with ${v.name}`, async () => {
      const sim = await simulator(v.opts);
      const src = await source(sim);
      const items = await collect(src.list());
      for (const item of items) {
        const original = await readFile(path.join(card, item.path.slice('SD/'.length)));
        const whole = await sha256Of(await src.open(item));
        expect(whole).toEqual({ hash: sha256(original), bytes: original.length });
        const offset = Math.floor(original.length * 0.6);
        const rest = await sha256Of(await src.open(item, { offset }));
        expect(rest).toEqual({ hash: sha256(original.subarray(offset)), bytes: original.length - offset });
      }
      expect(sim.operationCount(v.op)).toBeGreaterThan(0);
      if (v.op === OperationCode.GetPartialObject) {
        // Whole files in one GetObject each (a partial block costs a round trip); only the resumes use blocks.
        // (a file too small for a 60 % offset is "resumed" from 0: whole again)
        expect(sim.operationCount(OperationCode.GetObject)).toBe(items.length + items.filter((i) => Math.floor(i.size * 0.6) === 0).length);
      }
    });
  }

  test('a reader that promises recycle: 1 gets every byte from a few reused slabs, and the chunk it still holds is never overwritten', async () => {
    await fill(path.join(card, 'DCIM', '100TEST', 'MVI_0002.MOV'), 24 * 1024 * 1024 + 7);
    const original = await readFile(path.join(card, 'DCIM', '100TEST', 'MVI_0002.MOV'));
    const sim = await simulator();
    const src = await source(sim);
    const item = (await collect(src.list())).find((i) => i.path.endsWith('MVI_0002.MOV'));
    const iter = (await src.open(item as NonNullable<typeof item>, { recycle: 1 }))[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    let held: { bytes: Buffer; copy: Buffer } | undefined;
    const slabs = new Set<ArrayBufferLike>();
    let at = 0;
    for (;;) {
      const r = await iter.next();
      // The chunk pulled before this one was ours until this pull: it must still read as it arrived.
      if (held) expect(held.bytes.equals(held.copy)).toBe(true);
      if (r.done) break;
      expect(r.value.equals(original.subarray(at, at + r.value.length))).toBe(true);
      at += r.value.length;
      slabs.add(r.value.buffer);
      held = { bytes: r.value, copy: Buffer.from(r.value) };
      // Hold it across a turn of the event loop, in which the transport reads on.
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(at).toBe(original.length);
    // 24 MiB in 2 MiB slabs: some 12 without reuse.
    expect(slabs.size).toBeLessThanOrEqual(8);
  });

  test('a reader that promises nothing may keep every chunk: none is overwritten', async () => {
    await fill(path.join(card, 'DCIM', '100TEST', 'MVI_0002.MOV'), 24 * 1024 * 1024 + 7);
    const original = await readFile(path.join(card, 'DCIM', '100TEST', 'MVI_0002.MOV'));
    const sim = await simulator();
    const src = await source(sim);
    const item = (await collect(src.list())).find((i) => i.path.endsWith('MVI_0002.MOV'));
    const chunks = await collect((await src.open(item as NonNullable<typeof item>)) as AsyncIterable<Buffer>);
    expect(Buffer.concat(chunks).equals(original)).toBe(true);
  });

  test('a resume offset past the end is refused', async () => {
    const sim = await simulator();
    const src = await source(sim);
    const item = (await collect(src.list())).find((i) => i.path === 'SD/readme.txt');
    const stream = await src.open(item as NonNullable<typeof item>, { offset: 301 });
    expect((await rejection(sha256Of(stream))).code).toBe('SOURCE_CHANGED');
  });

  test('aborting a download stops it with ABORTED and the same session then downloads another file intact', async () => {
    const sim = await simulator({ offerPartialObject: false, offerPartialObject64: false });
    const src = await source(sim);
    const items = await collect(src.list());
    const big = items.find((i) => i.path.endsWith('IMG_0001.JPG')) as (typeof items)[number];
    const ac = new AbortController();
    const stream = await src.open(big, { signal: ac.signal });
    let got = 0;
    const err = await rejection(
      (async () => {
        for await (const chunk of stream) {
          got += (chunk as Buffer).length;
          if (got > 100_000) ac.abort(new ShuttleError('ABORTED', 'device unplugged'));
        }
      })(),
    );
    expect(err.code).toBe('ABORTED');
    expect(got).toBeLessThan(big.size);
    const small = items.find((i) => i.path.endsWith('IMG_0001.CR2')) as (typeof items)[number];
    const original = await readFile(path.join(card, 'DCIM', '100TEST', 'IMG_0001.CR2'));
    expect((await sha256Of(await src.open(small))).hash).toBe(sha256(original));
  });

  test('a client vanishing mid-transfer leaves the simulator serving the next one', async () => {
    const sim = await simulator({ offerPartialObject: false, offerPartialObject64: false });
    const first = await camera(sim);
    const items = [];
    for await (const o of first.walk(0x00010001)) items.push(o);
    const big = items.find((o) => o.info.filename === 'IMG_0001.JPG');
    const stream = first.download(big?.handle ?? 0);
    for await (const _ of stream) break;
    await first.session.transport.close();
    const second = await (async () => {
      for (let i = 0; ; i++) {
        try {
          return await camera(sim);
        } catch (err) {
          // The simulator may not have noticed the dead client yet: it then still answers busy.
          if (i > 20 || !isShuttleError(err, 'TRANSPORT')) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    })();
    const original = await readFile(path.join(card, 'DCIM', '100TEST', 'IMG_0001.JPG'));
    expect((await sha256Of(second.download(big?.handle ?? 0))).hash).toBe(sha256(original));
  });

  test('a client sending garbage is dropped without disturbing the simulator', async () => {
    const sim = await simulator();
    const junk = net.connect(sim.port, '127.0.0.1');
    await new Promise<void>((r) => junk.once('connect', () => r()));
    const closed = new Promise<void>((r) => junk.once('close', () => r()));
    junk.write(Buffer.from('GET / HTTP/1.1\r\nHost: camera\r\n\r\n'));
    await closed;
    const cam = await camera(sim);
    expect((await cam.storageIds()).length).toBe(1);
  });
});

describe('capture and events', () => {
  test('capture shoots the next pool image into the card and returns it', async () => {
    const sim = await simulator();
    const cam = await camera(sim);
    const shot = await cam.capture({ timeoutMs: 10_000 });
    expect(shot.path).toEqual(['DCIM', '100SHUTL', 'CAP_0001.JPG']);
    const onCard = await readFile(path.join(card, 'DCIM', '100SHUTL', 'CAP_0001.JPG'));
    expect(sha256(onCard)).toBe(sha256(await readFile(path.join(pool, 'a.jpg'))));
    expect((await sha256Of(cam.download(shot.handle))).hash).toBe(sha256(onCard));
    const second = await cam.capture({ timeoutMs: 10_000 });
    expect(second.path[2]).toBe('CAP_0002.JPG');
    expect(second.info.compressedSize).toBe(60_000);
  });

  test('a camera without a capture pool does not offer InitiateCapture', async () => {
    const sim = await simulator({ pool: undefined });
    const cam = await camera(sim);
    expect(cam.supports(OperationCode.InitiateCapture)).toBe(false);
    expect((await rejection(cam.capture())).code).toBe('PTP_RESPONSE');
  });

  test('a file appearing in the folder is announced with ObjectAdded', async () => {
    const sim = await simulator();
    const cam = await camera(sim);
    const events = cam.session.subscribe();
    const tmp = path.join(card, '.incoming.tmp');
    await writeFile(tmp, randomBytes(1000));
    await rename(tmp, path.join(card, 'DCIM', '100TEST', 'IMG_0002.JPG'));
    let added;
    for (;;) {
      const e = await events.next(undefined, 10_000);
      if (e.code !== EventCode.ObjectAdded) continue;
      added = await cam.objectInfo(e.params[0] ?? 0);
      break;
    }
    events.close();
    expect(added.filename).toBe('IMG_0002.JPG');
    expect(added.compressedSize).toBe(1000);
  });

  test('stat follows the object; a deleted object is SOURCE_NOT_FOUND', async () => {
    const sim = await simulator();
    const src = await source(sim);
    const shot = await src.camera.capture({ timeoutMs: 10_000 });
    const item = (await collect(src.list())).find((i) => i.path === `SD/${shot.path.join('/')}`);
    expect(item).toBeDefined();
    expect((await src.stat(item as NonNullable<typeof item>))?.size).toBe(50_000);
    await src.camera.session.run({ code: OperationCode.DeleteObject, params: [shot.handle, 0] });
    expect((await rejection(src.stat(item as NonNullable<typeof item>))).code).toBe('SOURCE_NOT_FOUND');
  });

  test('served files are write-protected: DeleteObject is refused and the file stays', async () => {
    const sim = await simulator();
    const cam = await camera(sim);
    const item = (await collect(cam.walk(0x00010001))).find((o) => o.info.filename === 'readme.txt');
    const err = await rejection(cam.session.run({ code: OperationCode.DeleteObject, params: [item?.handle ?? 0, 0] }));
    expect(err.context['response']).toBe('ObjectWriteProtected');
    expect((await stat(path.join(card, 'readme.txt'))).size).toBe(300);
  });
});
