/**
 * Vendor event data, decoded (pure; no I/O). Canon EOS and Nikon bodies do not (reliably) send new-shot
 * events on the interrupt pipe / PTP/IP event connection; they are polled, and the poll's data phase
 * carries the events:
 *
 * - Canon EOS GetEvent (0x9116): a list of records `{u32 size, u32 code, payload}` (size counts the 8
 *   header bytes), ended by a record of size 8 and code 0. Field offsets below are from the record's
 *   start, as libgphoto2's ptp-pack.c (ptp_unpack_EOS_events) documents them.
 * - Nikon CheckEvent (0x90C7): `u16 count`, then count × `{u16 code, u32 param}`.
 *
 * Malformed data throws ShuttleError('PTP_PROTOCOL') naming the offset; a record too short for the fields
 * of its type is kept as an unparsed record (libgphoto2 skips those too) rather than failing the batch.
 */
import { PtpReader, PtpWriter, protocolError } from './codec.js';
import { EventCode } from './codes.js';
import type { PtpEvent } from './transport.js';

export const CanonEosEventCode = {
  ObjectAddedEx: 0xc181,
  ObjectRemoved: 0xc182,
  RequestObjectTransfer: 0xc186,
  ObjectInfoChangedEx: 0xc187,
  ObjectContentChanged: 0xc188,
  PropValueChanged: 0xc189,
  AvailListChanged: 0xc18a,
  ObjectAddedEx64: 0xc1a7,
  ObjectInfoChangedEx64: 0xc1a8,
  RequestObjectTransfer64: 0xc1a9,
} as const;

export const NikonEventCode = {
  ObjectAddedInSdram: 0xc101,
  CaptureCompleteRecInSdram: 0xc102,
} as const;

/** Nikon reports an SDRAM capture with handle 0; the object is then addressed as this handle (libgphoto2). */
export const NIKON_SDRAM_OBJECT_HANDLE = 0xffff0001;

export type CanonEosEvent =
  | { kind: 'object-added'; code: number; handle: number; storageId: number; format: number; size: number; parent: number; filename: string }
  | { kind: 'object-transfer'; code: number; handle: number; format: number; size: number; filename: string }
  | { kind: 'prop-changed'; code: number; property: number }
  | { kind: 'other'; code: number; length: number };

/** Offsets within a record (from its size field). */
const OA = { handle: 0x08, storage: 0x0c, format: 0x10, size: 0x1c, parent: 0x20, name: 0x28 };
const OA64 = { handle: 0x08, storage: 0x0c, format: 0x10, size: 0x1c, parent: 0x24, name: 0x2c };
const OT = { handle: 0x08, format: 0x0c, size: 0x14, name: 0x1c };
const PROP = 0x08;
const RECORD_HEADER = 8;
const MAX_FILENAME = 255;

/** A NUL-terminated single-byte string inside `bytes` from `start`, never past the end or MAX_FILENAME. */
function cString(bytes: Uint8Array, start: number): string {
  let end = start;
  const limit = Math.min(bytes.byteLength, start + MAX_FILENAME);
  while (end < limit && bytes[end] !== 0) end++;
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('latin1');
}

function decodeRecord(rec: Uint8Array, code: number): CanonEosEvent {
  const v = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
  const u32 = (o: number): number => v.getUint32(o, true);
  const u16 = (o: number): number => v.getUint16(o, true);
  switch (code) {
    case CanonEosEventCode.ObjectAddedEx:
    case CanonEosEventCode.ObjectAddedEx64: {
      const o = code === CanonEosEventCode.ObjectAddedEx ? OA : OA64;
      // libgphoto2 wants at least one name byte; a record without one is not usable.
      if (rec.byteLength < o.name + 1) break;
      return {
        kind: 'object-added',
        code,
        handle: u32(o.handle),
        storageId: u32(o.storage),
        format: u16(o.format),
        size: u32(o.size),
        parent: u32(o.parent),
        filename: cString(rec, o.name),
      };
    }
    case CanonEosEventCode.RequestObjectTransfer:
    case CanonEosEventCode.RequestObjectTransfer64:
      if (rec.byteLength < OT.name + 1) break;
      return { kind: 'object-transfer', code, handle: u32(OT.handle), format: u16(OT.format), size: u32(OT.size), filename: cString(rec, OT.name) };
    case CanonEosEventCode.PropValueChanged:
      if (rec.byteLength < PROP + 4) break;
      return { kind: 'prop-changed', code, property: u32(PROP) };
  }
  return { kind: 'other', code, length: rec.byteLength };
}

/** Decodes the data of one Canon EOS GetEvent. An empty list (just the terminator, or no bytes) is []. */
export function decodeCanonEosEvents(bytes: Uint8Array): CanonEosEvent[] {
  const out: CanonEosEvent[] = [];
  const r = new PtpReader(bytes, 'Canon EOS GetEvent');
  while (r.remaining >= RECORD_HEADER) {
    const start = r.offset;
    const size = r.u32('record size');
    const code = r.u32('record code');
    if (size === RECORD_HEADER && code === 0) return out;
    if (size < RECORD_HEADER || size - RECORD_HEADER > r.remaining) {
      throw protocolError('Canon EOS GetEvent', `record at offset ${start} declares ${size} bytes; ${r.remaining + RECORD_HEADER} left`, {
        offset: start,
        expected: `8..${r.remaining + RECORD_HEADER}`,
        actual: size,
      });
    }
    r.skip(size - RECORD_HEADER, 'record payload');
    out.push(decodeRecord(bytes.subarray(start, start + size), code));
  }
  // Some bodies end the data without the terminator record; what was read is complete.
  if (r.remaining > 0) {
    throw protocolError('Canon EOS GetEvent', `${r.remaining} stray bytes at offset ${r.offset}`, { offset: r.offset, expected: 'a record or the end', actual: r.remaining });
  }
  return out;
}

/** Builds Canon EOS GetEvent data (for the tests and a future simulator mode). */
export function encodeCanonEosEvents(events: readonly CanonEosEvent[]): Buffer {
  const w = new PtpWriter();
  for (const e of events) {
    const rec = new PtpWriter();
    if (e.kind === 'object-added') {
      const o = e.code === CanonEosEventCode.ObjectAddedEx64 ? OA64 : OA;
      const body = Buffer.alloc(o.name + Buffer.byteLength(e.filename, 'latin1') + 1);
      body.writeUInt32LE(e.handle >>> 0, o.handle);
      body.writeUInt32LE(e.storageId >>> 0, o.storage);
      body.writeUInt16LE(e.format, o.format);
      body.writeUInt32LE(e.size >>> 0, o.size);
      body.writeUInt32LE(e.parent >>> 0, o.parent);
      body.write(e.filename, o.name, 'latin1');
      rec.bytes(body.subarray(RECORD_HEADER));
    } else if (e.kind === 'object-transfer') {
      const body = Buffer.alloc(OT.name + Buffer.byteLength(e.filename, 'latin1') + 1);
      body.writeUInt32LE(e.handle >>> 0, OT.handle);
      body.writeUInt16LE(e.format, OT.format);
      body.writeUInt32LE(e.size >>> 0, OT.size);
      body.write(e.filename, OT.name, 'latin1');
      rec.bytes(body.subarray(RECORD_HEADER));
    } else if (e.kind === 'prop-changed') {
      rec.u32(e.property).u32(0);
    } else {
      rec.bytes(Buffer.alloc(Math.max(0, e.length - RECORD_HEADER)));
    }
    const payload = rec.toBuffer();
    w.u32(RECORD_HEADER + payload.length)
      .u32(e.code)
      .bytes(payload);
  }
  w.u32(RECORD_HEADER).u32(0);
  return w.toBuffer();
}

/** The standard event a Canon record stands for, if any: what a generic PTP listener understands. */
export function standardEventOfCanon(e: CanonEosEvent): PtpEvent | undefined {
  switch (e.kind) {
    case 'object-added':
      return { code: EventCode.ObjectAdded, transactionId: 0, params: [e.handle] };
    case 'object-transfer':
      return { code: EventCode.RequestObjectTransfer, transactionId: 0, params: [e.handle] };
    case 'prop-changed':
      return { code: EventCode.DevicePropChanged, transactionId: 0, params: [e.property] };
    default:
      return undefined;
  }
}

export interface NikonEvent {
  code: number;
  param: number;
}

/** Decodes the data of one Nikon CheckEvent (0x90C7). */
export function decodeNikonEvents(bytes: Uint8Array): NikonEvent[] {
  const r = new PtpReader(bytes, 'Nikon CheckEvent');
  const count = r.u16('event count');
  if (count * 6 > r.remaining) {
    throw protocolError('Nikon CheckEvent', `declares ${count} events but only ${r.remaining} bytes follow`, { offset: 0, expected: `${count * 6} bytes`, actual: r.remaining });
  }
  const out: NikonEvent[] = [];
  for (let i = 0; i < count; i++) out.push({ code: r.u16(`event ${i} code`), param: r.u32(`event ${i} param`) });
  return out;
}

export function encodeNikonEvents(events: readonly NikonEvent[]): Buffer {
  const w = new PtpWriter();
  w.u16(events.length);
  for (const e of events) w.u16(e.code).u32(e.param);
  return w.toBuffer();
}

/** The standard event a Nikon event stands for: SDRAM captures become ObjectAdded/CaptureComplete. */
export function standardEventOfNikon(e: NikonEvent): PtpEvent {
  if (e.code === NikonEventCode.ObjectAddedInSdram) {
    return { code: EventCode.ObjectAdded, transactionId: 0, params: [e.param === 0 ? NIKON_SDRAM_OBJECT_HANDLE : e.param] };
  }
  if (e.code === NikonEventCode.CaptureCompleteRecInSdram) return { code: EventCode.CaptureComplete, transactionId: 0, params: [] };
  return { code: e.code, transactionId: 0, params: [e.param] };
}
