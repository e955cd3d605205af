/**
 * Vendor event paths: the Canon EOS and Nikon event decoders (round trips, fuzzing), and the poller at the
 * session layer over an in-memory transport that plays a camera (one layer, so a fake is allowed).
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { EventCode, OperationCode, ResponseCode, VendorExtension } from '../src/device/ptp/codes.js';
import { encodeU32Array, type DeviceInfo } from '../src/device/ptp/datasets.js';
import { PtpSession } from '../src/device/ptp/session.js';
import type { PtpCommand, PtpEvent } from '../src/device/ptp/transport.js';
import {
  CanonEosEventCode,
  NIKON_SDRAM_OBJECT_HANDLE,
  NikonEventCode,
  decodeCanonEosEvents,
  decodeNikonEvents,
  encodeCanonEosEvents,
  encodeNikonEvents,
  type CanonEosEvent,
} from '../src/device/ptp/vendor-events-decode.js';
import { CanonEosOperation, chooseEventStrategy, startVendorEvents } from '../src/device/ptp/vendor-events.js';
import { ScriptedDevice } from './support/ptp-scripted-device.js';

function onlyProtocolErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    if (!isShuttleError(err, 'PTP_PROTOCOL')) throw err;
  }
}

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const filename = fc.string({ minLength: 1, maxLength: 40, unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789.'.split('')) });

const canonEvent: fc.Arbitrary<CanonEosEvent> = fc.oneof(
  fc.record({
    kind: fc.constant('object-added' as const),
    code: fc.constantFrom(CanonEosEventCode.ObjectAddedEx, CanonEosEventCode.ObjectAddedEx64),
    handle: u32,
    storageId: u32,
    format: u16,
    size: u32,
    parent: u32,
    filename,
  }),
  fc.record({
    kind: fc.constant('object-transfer' as const),
    code: fc.constantFrom(CanonEosEventCode.RequestObjectTransfer, CanonEosEventCode.RequestObjectTransfer64),
    handle: u32,
    format: u16,
    size: u32,
    filename,
  }),
  fc.record({ kind: fc.constant('prop-changed' as const), code: fc.constant(CanonEosEventCode.PropValueChanged), property: u32 }),
  fc.record({ kind: fc.constant('other' as const), code: fc.constantFrom(0xc18b, 0xc18a, 0xc1a5), length: fc.integer({ min: 8, max: 64 }) }),
);

describe('Canon EOS GetEvent data', () => {
  test('a record list decodes to the records it was built from, stopping at the size-8 code-0 terminator', () => {
    fc.assert(
      fc.property(fc.array(canonEvent, { maxLength: 12 }), (events) => {
        const bytes = encodeCanonEosEvents(events);
        expect(decodeCanonEosEvents(bytes)).toEqual(events);
        // Anything after the terminator is not part of this batch.
        expect(decodeCanonEosEvents(Buffer.concat([bytes, Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9])]))).toEqual(events);
      }),
    );
  });

  test('ObjectAddedEx fields sit at the offsets libgphoto2 documents', () => {
    const rec = Buffer.alloc(0x28 + 13);
    rec.writeUInt32LE(rec.length, 0);
    rec.writeUInt32LE(0xc181, 4);
    rec.writeUInt32LE(0x1234, 0x08);
    rec.writeUInt32LE(0x00020001, 0x0c);
    rec.writeUInt16LE(0x3801, 0x10);
    rec.writeUInt32LE(4_000_000, 0x1c);
    rec.writeUInt32LE(0x99, 0x20);
    rec.write('IMG_0001.JPG', 0x28, 'latin1');
    const end = Buffer.from([8, 0, 0, 0, 0, 0, 0, 0]);
    expect(decodeCanonEosEvents(Buffer.concat([rec, end]))).toEqual([
      { kind: 'object-added', code: 0xc181, handle: 0x1234, storageId: 0x00020001, format: 0x3801, size: 4_000_000, parent: 0x99, filename: 'IMG_0001.JPG' },
    ]);
  });

  test('an empty answer or a lone terminator is no events', () => {
    expect(decodeCanonEosEvents(Buffer.alloc(0))).toEqual([]);
    expect(decodeCanonEosEvents(Buffer.from([8, 0, 0, 0, 0, 0, 0, 0]))).toEqual([]);
  });

  test('a record claiming more bytes than follow is a protocol error naming its offset', () => {
    const bad = Buffer.from([16, 0, 0, 0, 0x81, 0xc1, 0, 0, 1, 2]);
    expect(() => decodeCanonEosEvents(bad)).toThrow(/offset 0/);
    const tiny = Buffer.from([4, 0, 0, 0, 0x81, 0xc1, 0, 0]);
    expect(() => decodeCanonEosEvents(tiny)).toThrow(/declares 4 bytes/);
  });

  test('a known record too short for its fields is kept as unparsed, not misread', () => {
    const short = encodeCanonEosEvents([{ kind: 'other', code: CanonEosEventCode.ObjectAddedEx, length: 16 }]);
    expect(decodeCanonEosEvents(short)).toEqual([{ kind: 'other', code: CanonEosEventCode.ObjectAddedEx, length: 16 }]);
  });

  test('arbitrary bytes never throw anything but PTP_PROTOCOL and never yield more records than 8-byte slots', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
        onlyProtocolErrors(() => {
          expect(decodeCanonEosEvents(bytes).length).toBeLessThanOrEqual(Math.floor(bytes.length / 8));
        });
      }),
      { numRuns: 2000 },
    );
  });

  test('huge declared sizes are refused without allocating', () => {
    fc.assert(
      fc.property(fc.integer({ min: 9, max: 0xffffffff }), u32, (size, code) => {
        const b = Buffer.alloc(12);
        b.writeUInt32LE(size, 0);
        b.writeUInt32LE(code, 4);
        onlyProtocolErrors(() => decodeCanonEosEvents(b));
      }),
    );
  });
});

describe('Nikon CheckEvent data', () => {
  test('count + (code, param) pairs round-trip', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ code: u16, param: u32 }), { maxLength: 30 }), (events) => {
        expect(decodeNikonEvents(encodeNikonEvents(events))).toEqual(events);
      }),
    );
  });

  test('a count larger than the data is a protocol error; arbitrary bytes throw nothing else', () => {
    expect(() => decodeNikonEvents(Buffer.from([0xff, 0xff, 1, 2, 3, 4, 5, 6]))).toThrow(/declares 65535 events/);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        onlyProtocolErrors(() => {
          expect(decodeNikonEvents(bytes).length).toBeLessThanOrEqual(Math.floor(bytes.length / 6));
        });
      }),
      { numRuns: 2000 },
    );
  });
});

// ------------------------------------------------------------------------------------------------------
// Session layer

/**
 * A camera behind an in-memory transport: answers each command from `answer`: a Buffer is sent as the
 * data phase followed by OK, a number is the response code, undefined is a plain OK.
 */
function fakeCamera(answer: (cmd: PtpCommand) => Buffer | number | undefined): ScriptedDevice {
  return new ScriptedDevice((cmd, dev) => {
    const a = answer(cmd);
    const tid = cmd.transactionId;
    if (Buffer.isBuffer(a)) {
      dev.reply({ kind: 'data-start', transactionId: tid, totalLength: a.length });
      if (a.length > 0) dev.reply({ kind: 'data', transactionId: tid, bytes: a });
      dev.reply({ kind: 'data-end', transactionId: tid });
    }
    dev.reply({ kind: 'response', code: typeof a === 'number' ? a : ResponseCode.OK, transactionId: tid, params: [] });
  });
}

const codesOf = (cam: ScriptedDevice): number[] => cam.commands.map((c) => c.code);

function deviceInfo(over: Partial<DeviceInfo>): DeviceInfo {
  return {
    standardVersion: 100,
    vendorExtensionId: 6,
    vendorExtensionVersion: 100,
    vendorExtensionDesc: '',
    functionalMode: 0,
    operationsSupported: [OperationCode.GetDeviceInfo, OperationCode.OpenSession, OperationCode.GetObjectHandles, OperationCode.GetObjectInfo, OperationCode.GetObject],
    eventsSupported: [EventCode.ObjectAdded, EventCode.CaptureComplete],
    devicePropertiesSupported: [],
    captureFormats: [],
    imageFormats: [],
    manufacturer: 'Generic',
    model: 'Cam',
    deviceVersion: '1',
    serialNumber: 'S1',
    ...over,
  };
}

const canonInfo = deviceInfo({
  vendorExtensionId: VendorExtension.Canon,
  manufacturer: 'Canon Inc.',
  model: 'Canon EOS R6',
  eventsSupported: [],
  operationsSupported: [OperationCode.GetObjectHandles, CanonEosOperation.SetRemoteMode, CanonEosOperation.SetEventMode, CanonEosOperation.GetEvent],
});
const nikonInfo = deviceInfo({ manufacturer: 'Nikon Corporation', model: 'Z 6', operationsSupported: [OperationCode.NikonGetEvent, OperationCode.GetObjectHandles] });

function waitFor<T>(get: () => T | undefined, ms = 3000): Promise<T> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      const v = get();
      if (v !== undefined) return resolve(v);
      if (Date.now() > deadline) return reject(new Error('timed out waiting'));
      setTimeout(tick, 5);
    };
    tick();
  });
}

describe('choosing where events come from', () => {
  test('Canon with GetEvent polls EOS events; by USB vendor id too when the body reports MTP', () => {
    expect(chooseEventStrategy(canonInfo).kind).toBe('canon-eos');
    const mtpCanon = { ...canonInfo, vendorExtensionId: 6, manufacturer: 'Unknown' };
    expect(chooseEventStrategy(mtpCanon, { vendorId: 0x04a9, productId: 0x32f5 }).kind).toBe('canon-eos');
    expect(chooseEventStrategy({ ...canonInfo, operationsSupported: [] }).kind).not.toBe('canon-eos');
  });

  test('Nikon with CheckEvent polls it; a camera announcing ObjectAdded uses its interrupt events', () => {
    expect(chooseEventStrategy(nikonInfo).kind).toBe('nikon');
    expect(chooseEventStrategy(deviceInfo({})).kind).toBe('interrupt');
  });

  test('a camera that announces no ObjectAdded (Fujifilm) is polled by comparing object handles', () => {
    expect(chooseEventStrategy(deviceInfo({ manufacturer: 'FUJIFILM', eventsSupported: [] })).kind).toBe('object-handles');
  });
});

describe('polling at the session layer', () => {
  test('Canon EOS: remote and event mode, the state dump drained silently, then a new shot reaches session listeners as ObjectAdded', async () => {
    const batches: Buffer[] = [encodeCanonEosEvents([{ kind: 'prop-changed', code: CanonEosEventCode.PropValueChanged, property: 0xd101 }]), encodeCanonEosEvents([])];
    const cam = fakeCamera((cmd) => (cmd.code === CanonEosOperation.GetEvent ? (batches.shift() ?? encodeCanonEosEvents([])) : undefined));
    const session = new PtpSession(cam);
    await session.openSession();
    const seen: PtpEvent[] = [];
    session.onEvent((e) => seen.push(e));
    const poller = await startVendorEvents(session, canonInfo, { intervalMs: 10 });
    try {
      expect(codesOf(cam).slice(0, 3)).toEqual([OperationCode.OpenSession, CanonEosOperation.SetRemoteMode, CanonEosOperation.SetEventMode]);
      expect(cam.commands[1]?.params).toEqual([1]);
      expect(seen).toEqual([]);
      batches.push(
        encodeCanonEosEvents([
          { kind: 'object-added', code: CanonEosEventCode.ObjectAddedEx, handle: 0x9001, storageId: 0x20001, format: 0x3801, size: 123, parent: 0x80, filename: 'IMG_0002.JPG' },
          { kind: 'object-transfer', code: CanonEosEventCode.RequestObjectTransfer, handle: 0x9002, format: 0xb103, size: 456, filename: 'IMG_0002.CR3' },
        ]),
      );
      const got = await waitFor(() => (seen.length >= 2 ? seen : undefined));
      expect(got).toEqual([
        { code: EventCode.ObjectAdded, transactionId: 0, params: [0x9001] },
        { code: EventCode.RequestObjectTransfer, transactionId: 0, params: [0x9002] },
      ]);
    } finally {
      await poller.stop();
    }
    // Stopped means stopped.
    const after = cam.commands.length;
    await new Promise((r) => setTimeout(r, 60));
    expect(cam.commands.length).toBe(after);
  });

  test('Nikon: an SDRAM capture (handle 0) arrives as ObjectAdded 0xFFFF0001 and CaptureComplete', async () => {
    const batches: Buffer[] = [
      encodeNikonEvents([
        { code: NikonEventCode.ObjectAddedInSdram, param: 0 },
        { code: NikonEventCode.CaptureCompleteRecInSdram, param: 0 },
      ]),
    ];
    const cam = fakeCamera((cmd) => (cmd.code === OperationCode.NikonGetEvent ? (batches.shift() ?? encodeNikonEvents([])) : undefined));
    const session = new PtpSession(cam);
    await session.openSession();
    const sub = session.subscribe();
    const poller = await startVendorEvents(session, nikonInfo, { intervalMs: 10 });
    try {
      expect(await sub.next(undefined, 2000)).toEqual({ code: EventCode.ObjectAdded, transactionId: 0, params: [NIKON_SDRAM_OBJECT_HANDLE] });
      expect((await sub.next(undefined, 2000)).code).toBe(EventCode.CaptureComplete);
    } finally {
      sub.close();
      await poller.stop();
    }
  });

  test('a camera with standard events is never polled, and its interrupt events still reach listeners', async () => {
    const cam = fakeCamera(() => undefined);
    const session = new PtpSession(cam);
    await session.openSession();
    const seen: PtpEvent[] = [];
    session.onEvent((e) => seen.push(e));
    const poller = await startVendorEvents(session, deviceInfo({}), { intervalMs: 5 });
    await new Promise((r) => setTimeout(r, 80));
    cam.event({ code: EventCode.ObjectAdded, transactionId: 0, params: [7] });
    await poller.stop();
    expect(poller.polling).toBe(false);
    expect(codesOf(cam)).toEqual([OperationCode.OpenSession]);
    expect(seen).toEqual([{ code: EventCode.ObjectAdded, transactionId: 0, params: [7] }]);
  });

  test('object-handle polling reports handles that appear and vanish after the baseline', async () => {
    let handles = [1, 2, 3];
    const cam = fakeCamera((cmd) => (cmd.code === OperationCode.GetObjectHandles ? encodeU32Array(handles) : undefined));
    const session = new PtpSession(cam);
    await session.openSession();
    const poller = await startVendorEvents(session, deviceInfo({ manufacturer: 'FUJIFILM', eventsSupported: [] }), { intervalMs: 10_000 });
    try {
      expect(await poller.pollOnce()).toEqual([]);
      handles = [2, 3, 4];
      expect(await poller.pollOnce()).toEqual([
        { code: EventCode.ObjectAdded, transactionId: 0, params: [4] },
        { code: EventCode.ObjectRemoved, transactionId: 0, params: [1] },
      ]);
    } finally {
      await poller.stop();
    }
  });

  test('a garbled batch is reported and polling goes on', async () => {
    const batches: Buffer[] = [encodeCanonEosEvents([])];
    const cam = fakeCamera((cmd) => (cmd.code === CanonEosOperation.GetEvent ? (batches.shift() ?? encodeCanonEosEvents([])) : undefined));
    const session = new PtpSession(cam);
    await session.openSession();
    const seen: PtpEvent[] = [];
    session.onEvent((e) => seen.push(e));
    const poller = await startVendorEvents(session, canonInfo, { intervalMs: 5 });
    try {
      batches.push(Buffer.from([0xff, 0xff, 0, 0, 0x81, 0xc1, 0, 0, 0]));
      batches.push(
        encodeCanonEosEvents([{ kind: 'object-added', code: CanonEosEventCode.ObjectAddedEx64, handle: 5, storageId: 1, format: 0x3801, size: 1, parent: 0, filename: 'A.JPG' }]),
      );
      expect(await waitFor(() => seen[0])).toEqual({ code: EventCode.ObjectAdded, transactionId: 0, params: [5] });
    } finally {
      await poller.stop();
    }
  });
});
