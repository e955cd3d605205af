import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { isShuttleError, type ShuttleError } from '../src/errors.js';
import {
  PacketDecoder,
  PacketType,
  PTPIP_VERSION,
  decodeControlPacket,
  encodeControlPacket,
  encodeDataPacketHeader,
  type ControlPacket,
  type PacketPart,
} from '../src/device/ptpip/packets.js';

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const name = fc.string({ maxLength: 40 }).filter((s) => !s.includes('\0') && !/[\uD800-\uDFFF]/.test(s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, '')));
const guid = fc.uint8Array({ minLength: 16, maxLength: 16 });

const controlPacket: fc.Arbitrary<ControlPacket> = fc.oneof(
  fc.record({ type: fc.constant('InitCommandRequest' as const), guid, friendlyName: name, protocolVersion: u32 }),
  fc.record({ type: fc.constant('InitCommandAck' as const), connectionNumber: u32, guid, friendlyName: name, protocolVersion: fc.option(u32, { nil: undefined }) }),
  fc.record({ type: fc.constant('InitEventRequest' as const), connectionNumber: u32 }),
  fc.constant({ type: 'InitEventAck' as const }),
  fc.record({ type: fc.constant('InitFail' as const), reason: u32 }),
  fc.record({ type: fc.constant('OperationRequest' as const), dataPhase: u32, code: u16, transactionId: u32, params: fc.array(u32, { maxLength: 5 }) }),
  fc.record({ type: fc.constant('OperationResponse' as const), code: u16, transactionId: u32, params: fc.array(u32, { maxLength: 5 }) }),
  fc.record({ type: fc.constant('Event' as const), code: u16, transactionId: u32, params: fc.array(u32, { maxLength: 3 }) }),
  fc.record({ type: fc.constant('StartData' as const), transactionId: u32, totalLength: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
  fc.record({ type: fc.constant('Cancel' as const), transactionId: u32 }),
  fc.constant({ type: 'ProbeRequest' as const }),
  fc.constant({ type: 'ProbeResponse' as const }),
);

type Item = { packet: ControlPacket } | { final: boolean; tid: number; payload: Uint8Array };

const item: fc.Arbitrary<Item> = fc.oneof(
  controlPacket.map((packet) => ({ packet })),
  fc.record({ final: fc.boolean(), tid: u32, payload: fc.uint8Array({ maxLength: 200 }) }),
);

function encode(items: Item[]): Buffer {
  return Buffer.concat(
    items.map((i) => ('packet' in i ? encodeControlPacket(i.packet) : Buffer.concat([encodeDataPacketHeader(i.final, i.tid, i.payload.byteLength), i.payload]))),
  );
}

function reassemble(parts: PacketPart[]): Item[] {
  const out: Item[] = [];
  let chunks: Uint8Array[] = [];
  for (const p of parts) {
    if (p.kind === 'packet') {
      out.push({ packet: p.packet });
      continue;
    }
    chunks.push(Uint8Array.from(p.bytes));
    if (p.packetEnd) {
      out.push({ final: p.final, tid: p.transactionId, payload: Buffer.concat(chunks) });
      chunks = [];
    }
  }
  return out;
}

function normalise(items: Item[]): unknown[] {
  return items.map((i) => ('packet' in i ? { ...i.packet, ...('guid' in i.packet ? { guid: [...i.packet.guid] } : {}) } : { ...i, payload: [...i.payload] }));
}

function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => Math.floor(c * bytes.byteLength)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(bytes.subarray(prev, p));
    prev = p;
  }
  out.push(bytes.subarray(prev));
  return out;
}

function protocolFailure(fn: () => unknown): ShuttleError {
  try {
    fn();
  } catch (err) {
    if (isShuttleError(err, 'PTP_PROTOCOL')) return err;
    throw err;
  }
  throw new Error('expected PTP_PROTOCOL, nothing was thrown');
}

describe('PTP/IP packets', () => {
  test('InitCommandRequest has the layout libgphoto2 writes: GUID, UTF-16LE name with NUL, version 1.0', () => {
    const g = Uint8Array.from({ length: 16 }, (_, i) => i);
    const b = encodeControlPacket({ type: 'InitCommandRequest', guid: g, friendlyName: 'vm', protocolVersion: PTPIP_VERSION });
    expect(b.length).toBe(8 + 16 + 6 + 4);
    expect(b.readUInt32LE(0)).toBe(b.length);
    expect(b.readUInt32LE(4)).toBe(PacketType.InitCommandRequest);
    expect([...b.subarray(8, 24)]).toEqual([...g]);
    expect(b.subarray(24, 30).toString('hex')).toBe('76006d000000');
    expect(b.readUInt16LE(30)).toBe(0x0000);
    expect(b.readUInt16LE(32)).toBe(0x0001);
  });

  test('OperationRequest: data phase, code, transaction id, params at the offsets libgphoto2 uses', () => {
    const b = encodeControlPacket({ type: 'OperationRequest', dataPhase: 1, code: 0x1007, transactionId: 9, params: [0x10001, 0, 0xffffffff] });
    expect(b.length).toBe(18 + 12);
    expect(b.readUInt32LE(8)).toBe(1);
    expect(b.readUInt16LE(12)).toBe(0x1007);
    expect(b.readUInt32LE(14)).toBe(9);
    expect(b.readUInt32LE(26)).toBe(0xffffffff);
  });

  test('every packet round-trips', () => {
    fc.assert(
      fc.property(controlPacket, (p) => {
        expect(normalise([{ packet: decodeControlPacket(encodeControlPacket(p)) }])).toEqual(normalise([{ packet: p }]));
      }),
    );
  });

  test('the stream decoder yields the same packets and payloads whatever the chunk boundaries', () => {
    fc.assert(
      fc.property(fc.array(item, { maxLength: 8 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 24 }), (items, cuts) => {
        const dec = new PacketDecoder();
        const parts = split(encode(items), cuts).flatMap((c) => dec.push(c));
        dec.end();
        expect(normalise(reassemble(parts))).toEqual(normalise(items));
      }),
    );
  });

  test('arbitrary bytes only ever raise PTP_PROTOCOL and never buffer more than the control limit', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 500 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 10 }), (bytes, cuts) => {
        const dec = new PacketDecoder({ maxControlLength: 256 });
        try {
          for (const c of split(bytes, cuts)) {
            dec.push(c);
            expect((dec as unknown as { pending: Buffer }).pending.length).toBeLessThanOrEqual(256);
          }
          dec.end();
        } catch (err) {
          if (!isShuttleError(err, 'PTP_PROTOCOL')) throw err;
        }
      }),
    );
  });

  test('a Data packet announcing almost 4 GiB streams in constant memory', () => {
    const dec = new PacketDecoder();
    const header = Buffer.alloc(12);
    header.writeUInt32LE(0xffffffff, 0);
    header.writeUInt32LE(PacketType.Data, 4);
    header.writeUInt32LE(3, 8);
    expect(dec.push(header)).toEqual([]);
    const before = process.memoryUsage().arrayBuffers;
    const chunk = Buffer.alloc(1024 * 1024);
    let seen = 0;
    for (let i = 0; i < 64; i++) for (const p of dec.push(chunk)) if (p.kind === 'payload') seen += p.bytes.byteLength;
    expect(seen).toBe(64 * 1024 * 1024);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
    protocolFailure(() => dec.end());
  });

  test('a control packet declaring a huge length is refused at its header, before buffering', () => {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(0xffffffff, 0);
    b.writeUInt32LE(PacketType.OperationResponse, 4);
    const err = protocolFailure(() => new PacketDecoder().push(b));
    expect(err.context['offset']).toBe(0);
    expect(err.context['actual']).toBe(0xffffffff);
  });

  test('malformed packets name what was expected', () => {
    const unknownType = Buffer.alloc(8);
    unknownType.writeUInt32LE(8, 0);
    unknownType.writeUInt32LE(99, 4);
    expect(protocolFailure(() => new PacketDecoder().push(unknownType)).message).toContain('unknown packet type 99');

    const oddResponse = encodeControlPacket({ type: 'OperationResponse', code: 0x2001, transactionId: 1, params: [1] });
    const cut = Buffer.concat([oddResponse.subarray(0, oddResponse.length - 1)]);
    cut.writeUInt32LE(cut.length, 0);
    protocolFailure(() => decodeControlPacket(cut));

    const noNul = encodeControlPacket({ type: 'InitCommandRequest', guid: new Uint8Array(16), friendlyName: 'ab', protocolVersion: PTPIP_VERSION });
    noNul.writeUInt16LE(0x41, 28);
    expect(protocolFailure(() => decodeControlPacket(noNul)).message).toContain('NUL');

    const fourEventParams = Buffer.alloc(14 + 16);
    fourEventParams.writeUInt32LE(fourEventParams.length, 0);
    fourEventParams.writeUInt32LE(PacketType.Event, 4);
    protocolFailure(() => decodeControlPacket(fourEventParams));
  });

  test('an empty EndData packet is reported as the end of the data phase', () => {
    const dec = new PacketDecoder();
    expect(dec.push(encodeDataPacketHeader(true, 5, 0))).toEqual([{ kind: 'payload', final: true, transactionId: 5, bytes: new Uint8Array(0), packetEnd: true }]);
  });
});
