/**
 * The USB container framing alone, as a pure class: property tests across arbitrary transfer splits
 * (reads of any whole number of packets, containers that end with a short packet, with a zero-length
 * packet after a full last packet, with nothing (the read runs on into the next container) or with the
 * device ending the transfer), unknown-length data, and garbage. The transport over a scripted device is
 * test/usb-transport.test.ts; over QEMU's usb-mtp, test/hil/usb.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { isShuttleError, type ShuttleError } from '../src/errors.js';
import { ContainerType, encodeDataContainerHeader, encodeOperationContainer } from '../src/device/ptp/codec.js';
import { UsbContainerFramer, type UsbFrame } from '../src/device/usb/framing.js';

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const params = fc.array(u32, { maxLength: 5 });

/**
 * How the device ends a container: `zlp` by the rules (a short last packet, or a zero-length packet after
 * a full one), `none` (a full last packet and nothing after it), `transfer-end` (it ends the host's
 * transfer after every container, as QEMU's usb-mtp does). A container that does not fill its last
 * packet ends with a short one whatever the style.
 */
type Ending = 'zlp' | 'none' | 'transfer-end';

interface DataSpec {
  code: number;
  payload: Uint8Array;
  /** Sent with the unknown-length marker (0xFFFFFFFF), delimited only by how the transfer ends. */
  unknownLength: boolean;
  ending: Ending;
}

interface Transaction {
  /** Events sent on the bulk pipe before the transaction's data or response. */
  events: Array<{ code: number; transactionId: number; params: number[] }>;
  transactionId: number;
  data: DataSpec | undefined;
  response: { code: number; params: number[] };
}

/** What the frames of one container add up to. */
type Decoded =
  | { kind: 'data'; transactionId: number; code: number | undefined; totalLength: number | undefined; payload: number[] }
  | { kind: 'response'; transactionId: number; code: number; params: number[] }
  | { kind: 'event'; transactionId: number; code: number; params: number[] };

/** Payload lengths around packet boundaries (the container filling its last packet, one byte short or over), or any. */
function payload(mps: number): fc.Arbitrary<Uint8Array> {
  const boundary = fc
    .tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: -1, max: 1 }))
    .chain(([packets, delta]) => fc.uint8Array({ minLength: packets * mps - 12 + delta, maxLength: packets * mps - 12 + delta }));
  return fc.oneof(fc.uint8Array({ maxLength: 3 * mps }), boundary);
}

/**
 * Objects whose bytes look like a response: exactly one to their own transaction (data all the same, as
 * it came with its header), or ending in one to another transaction right after a packet boundary (data
 * all the same, even when that end comes in a transfer of its own).
 */
function lookalike(transactionId: number, mps: number): fc.Arbitrary<Uint8Array> {
  const response = (tid: number): fc.Arbitrary<Buffer> =>
    fc.record({ code: u16, params }).map((r) => encodeOperationContainer({ type: ContainerType.Response, transactionId: tid, ...r }));
  const tail = fc.tuple(fc.integer({ min: 1, max: 3 }), response((transactionId + 1) >>> 0)).map(([packets, r]) => Buffer.concat([Buffer.alloc(packets * mps - 12, 0x77), r]));
  return fc.oneof(response(transactionId), tail);
}

function dataSpec(mps: number, transactionId: number): fc.Arbitrary<DataSpec> {
  // A container of unknown length ends only where the transfer does: a device that sends nothing after a
  // full last packet and lets the read run on into the response cannot be framed by anyone.
  return fc.oneof(
    fc.record({ code: u16, payload: payload(mps), unknownLength: fc.constant(false), ending: fc.constantFrom<Ending>('zlp', 'none', 'transfer-end') }),
    fc.record({
      code: u16,
      payload: fc.oneof(payload(mps), lookalike(transactionId, mps)),
      unknownLength: fc.constant(true),
      ending: fc.constantFrom<Ending>('zlp', 'transfer-end'),
    }),
  );
}

function transaction(mps: number): fc.Arbitrary<Transaction> {
  return u32.chain((transactionId) =>
    fc.record({
      events: fc.array(fc.record({ code: u16, transactionId: u32, params: fc.array(u32, { maxLength: 3 }) }), { maxLength: 2 }),
      transactionId: fc.constant(transactionId),
      data: fc.option(dataSpec(mps, transactionId), { nil: undefined }),
      response: fc.record({ code: u16, params }),
    }),
  );
}

/** A byte run the device sends, and whether the host's transfer ends once it is used up. */
interface Unit {
  bytes: Buffer;
  endsTransfer: boolean;
}

/** The device's side: every container as packets, ended as its style says. Containers start on packet boundaries. */
function deviceUnits(transactions: Transaction[], mps: number): Unit[] {
  const units: Unit[] = [];
  const send = (bytes: Buffer, ending: Ending): void => {
    const full = bytes.length % mps === 0;
    units.push({ bytes, endsTransfer: !full || ending === 'transfer-end' });
    if (full && ending === 'zlp') units.push({ bytes: Buffer.alloc(0), endsTransfer: true });
  };
  for (const t of transactions) {
    for (const e of t.events) send(encodeOperationContainer({ type: ContainerType.Event, ...e }), 'zlp');
    const d = t.data;
    if (d) {
      const header = encodeDataContainerHeader(d.code, t.transactionId, d.payload.byteLength);
      if (d.unknownLength) header.writeUInt32LE(0xffffffff, 0);
      send(Buffer.concat([header, d.payload]), d.ending);
    }
    send(encodeOperationContainer({ type: ContainerType.Response, code: t.response.code, transactionId: t.transactionId, params: t.response.params }), 'zlp');
  }
  return units;
}

/**
 * The host's side: reads of `packets[i] · mps` bytes in turn, each ending when it is full or at the end
 * of a unit that ends the transfer (a zero-length packet after a full read comes back as a transfer of its own).
 */
function transfers(units: Unit[], mps: number, packets: number[]): Array<{ bytes: Buffer; short: boolean }> {
  const out: Array<{ bytes: Buffer; short: boolean }> = [];
  let u = 0;
  let pos = 0;
  for (let i = 0; u < units.length; i++) {
    const length = (packets[i % packets.length] as number) * mps;
    const parts: Buffer[] = [];
    let got = 0;
    while (got < length && u < units.length) {
      const unit = units[u] as Unit;
      const piece = unit.bytes.subarray(pos, pos + length - got);
      parts.push(piece);
      got += piece.length;
      pos += piece.length;
      if (pos === unit.bytes.length) {
        u++;
        pos = 0;
        if (unit.endsTransfer) break;
      }
    }
    out.push({ bytes: Buffer.concat(parts, got), short: got < length });
  }
  return out;
}

function expected(transactions: Transaction[]): Decoded[] {
  const out: Decoded[] = [];
  for (const t of transactions) {
    for (const e of t.events) out.push({ kind: 'event', ...e });
    const d = t.data;
    if (d) out.push({ kind: 'data', transactionId: t.transactionId, code: d.code, totalLength: d.unknownLength ? undefined : d.payload.byteLength, payload: [...d.payload] });
    out.push({ kind: 'response', transactionId: t.transactionId, ...t.response });
  }
  return out;
}

/** Joins data frames into their containers, checking that each slice belongs to the open container. */
function decode(frames: UsbFrame[]): Decoded[] {
  const out: Decoded[] = [];
  let open: (Decoded & { kind: 'data' }) | undefined;
  for (const f of frames) {
    switch (f.kind) {
      case 'data-start':
        expect(open).toBeUndefined();
        open = { kind: 'data', transactionId: f.transactionId, code: f.code, totalLength: f.totalLength, payload: [] };
        break;
      case 'data':
        expect(f.transactionId).toBe(open?.transactionId);
        open?.payload.push(...f.bytes);
        break;
      case 'data-end':
        expect(f.transactionId).toBe(open?.transactionId);
        if (open) out.push(open);
        open = undefined;
        break;
      case 'response':
        expect(open).toBeUndefined();
        out.push({ kind: 'response', transactionId: f.transactionId, code: f.code, params: f.params });
        break;
      case 'event':
        out.push({ kind: 'event', ...f.event });
        break;
      case 'discarded':
        throw new Error(`framer discarded ${f.bytes} bytes: ${f.problem}`);
    }
  }
  expect(open).toBeUndefined();
  return out;
}

function drain(framer: UsbContainerFramer): UsbFrame[] {
  const frames: UsbFrame[] = [];
  for (let f = framer.next(); f; f = framer.next()) frames.push(f);
  return frames;
}

/** Bytes the framer holds back (a header or operation container not yet whole). */
const heldBack = (framer: UsbContainerFramer): number => (framer as unknown as { rx: Buffer }).rx.length;

function protocolFailure(fn: () => unknown): ShuttleError {
  try {
    fn();
  } catch (err) {
    if (isShuttleError(err, 'PTP_PROTOCOL')) return err;
    throw err;
  }
  throw new Error('expected PTP_PROTOCOL, nothing was thrown');
}

describe('framing containers out of bulk transfers', () => {
  test('any-split-of-a-stream-of-containers-into-transfers-decodes-to-the-same-containers', () => {
    const stream = fc.constantFrom(64, 512).chain((mps) =>
      fc.record({
        mps: fc.constant(mps),
        transactions: fc.array(transaction(mps), { maxLength: 6 }),
        packets: fc.array(fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 64 })), { minLength: 1, maxLength: 12 }),
      }),
    );
    fc.assert(
      fc.property(stream, ({ mps, transactions, packets }) => {
        const framer = new UsbContainerFramer();
        const frames: UsbFrame[] = [];
        for (const t of transfers(deviceUnits(transactions, mps), mps, packets)) {
          framer.push(t.bytes, t.short);
          const got = drain(framer);
          for (const f of got) if (f.kind === 'data') expect(f.bytes.byteLength).toBeLessThanOrEqual(t.bytes.length);
          frames.push(...got);
          // A short packet ends a container: once a transfer ends in one, everything it ended has been framed.
          if (t.short && t.bytes.length > 0) {
            expect(framer.openContainer).toBeUndefined();
            expect(heldBack(framer)).toBe(0);
          }
        }
        expect(decode(frames)).toEqual(expected(transactions));
        expect(framer.openContainer).toBeUndefined();
        expect(heldBack(framer)).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  test('arbitrary-bytes-in-arbitrary-transfers-only-ever-raise-ptp-protocol-and-hold-back-at-most-one-operation-container', () => {
    const transfer = fc.record({ bytes: fc.uint8Array({ maxLength: 200 }), short: fc.boolean() });
    fc.assert(
      fc.property(fc.array(transfer, { maxLength: 10 }), (list) => {
        const framer = new UsbContainerFramer();
        for (const t of list) {
          framer.push(Buffer.from(t.bytes), t.short);
          for (;;) {
            let f: UsbFrame | undefined;
            try {
              f = framer.next();
            } catch (err) {
              if (!isShuttleError(err, 'PTP_PROTOCOL')) throw err;
              continue;
            }
            if (!f) break;
            if (f.kind === 'data') expect(f.bytes.byteLength).toBeLessThanOrEqual(t.bytes.byteLength);
          }
          expect(heldBack(framer)).toBeLessThanOrEqual(32);
        }
      }),
    );
  });

  test('a-data-container-declaring-4-gib-streams-its-payload-without-allocating-it', () => {
    const framer = new UsbContainerFramer();
    const header = encodeDataContainerHeader(0x1009, 7, 0xffffffff - 13);
    const chunk = Buffer.alloc(1024 * 1024, 0xab);
    framer.push(Buffer.concat([header, chunk.subarray(header.length)]), false);
    expect(framer.next()).toEqual({ kind: 'data-start', transactionId: 7, code: 0x1009, totalLength: 0xffffffff - 13 });
    const before = process.memoryUsage().arrayBuffers;
    let seen = 0;
    const count = (): void => {
      for (const f of drain(framer)) {
        expect(f.kind).toBe('data');
        if (f.kind === 'data') seen += f.bytes.byteLength;
      }
    };
    count();
    for (let i = 1; i < 64; i++) {
      framer.push(chunk, false);
      count();
    }
    expect(seen).toBe(64 * 1024 * 1024 - header.length);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
    // Not at its end: the container is still owed the rest.
    expect(framer.openContainer?.remaining).toBe(0xffffffff - 13 - seen);
  });

  test('oversized-or-too-short-operation-containers-are-refused', () => {
    const bigResponse = Buffer.alloc(12);
    bigResponse.writeUInt32LE(0xfffffff0, 0);
    bigResponse.writeUInt16LE(ContainerType.Response, 4);
    const big = new UsbContainerFramer();
    big.push(bigResponse, true);
    expect(protocolFailure(() => big.next()).message).toContain(String(0xfffffff0));

    const short = Buffer.alloc(12);
    short.writeUInt32LE(8, 0);
    short.writeUInt16LE(ContainerType.Event, 4);
    const tooShort = new UsbContainerFramer();
    tooShort.push(short, true);
    protocolFailure(() => tooShort.next());
  });

  test('a-response-whose-length-is-not-12-plus-4n-is-refused', () => {
    const b = Buffer.alloc(14);
    b.writeUInt32LE(14, 0);
    b.writeUInt16LE(ContainerType.Response, 4);
    const framer = new UsbContainerFramer();
    framer.push(b, true);
    protocolFailure(() => framer.next());
  });

  test('while-resynchronising-bytes-that-frame-nothing-are-discarded-and-the-next-container-is-framed', () => {
    const framer = new UsbContainerFramer({ resynchronising: true });
    framer.push(Buffer.alloc(700, 0x5a), true);
    expect(framer.next()).toMatchObject({ kind: 'discarded', bytes: 700 });
    framer.push(encodeOperationContainer({ type: ContainerType.Response, code: 0x2001, transactionId: 9, params: [] }), true);
    expect(framer.next()).toEqual({ kind: 'response', code: 0x2001, transactionId: 9, params: [] });
    expect(framer.next()).toBeUndefined();
  });
});
