/**
 * PTP/IP packets (CIPA DC-005; libgphoto2 PTPIP.TXT): every packet is u32 length (header included) + u32
 * type + payload, little-endian. Pure: encoders, and an incremental decoder that streams Data/EndData
 * payloads instead of buffering them.
 */
import { MAX_OPERATION_PARAMS, protocolError } from '../ptp/codec.js';

export const PacketType = {
  InitCommandRequest: 1,
  InitCommandAck: 2,
  InitEventRequest: 3,
  InitEventAck: 4,
  InitFail: 5,
  OperationRequest: 6,
  OperationResponse: 7,
  Event: 8,
  StartData: 9,
  Data: 10,
  Cancel: 11,
  EndData: 12,
  ProbeRequest: 13,
  ProbeResponse: 14,
} as const;

export const PTPIP_HEADER_LENGTH = 8;
export const PTPIP_DEFAULT_PORT = 15740;
/** Protocol version 1.0 as major << 16 | minor. */
export const PTPIP_VERSION = 0x00010000;
/** StartData total length meaning "unknown". */
export const UNKNOWN_TOTAL_LENGTH = 0xffffffffffffffffn;
export const MAX_EVENT_PARAMS = 3;

/** OperationRequest data phase field: 1 = no data or data-in, 2 = data-out. */
export const DataPhaseInfo = { NoDataOrIn: 1, Out: 2 } as const;

/** InitFail reasons (malc0mn/ptp-ip, CIPA DC-005). */
export const InitFailReason = { Rejected: 1, Busy: 2, Unspecified: 3 } as const;

export type ControlPacket =
  | { type: 'InitCommandRequest'; guid: Uint8Array; friendlyName: string; protocolVersion: number }
  | { type: 'InitCommandAck'; connectionNumber: number; guid: Uint8Array; friendlyName: string; protocolVersion: number | undefined }
  | { type: 'InitEventRequest'; connectionNumber: number }
  | { type: 'InitEventAck' }
  | { type: 'InitFail'; reason: number }
  | { type: 'OperationRequest'; dataPhase: number; code: number; transactionId: number; params: number[] }
  | { type: 'OperationResponse'; code: number; transactionId: number; params: number[] }
  | { type: 'Event'; code: number; transactionId: number; params: number[] }
  | { type: 'StartData'; transactionId: number; totalLength: bigint }
  | { type: 'Cancel'; transactionId: number }
  | { type: 'ProbeRequest' }
  | { type: 'ProbeResponse' };

function header(length: number, type: number): Buffer {
  const b = Buffer.alloc(length);
  b.writeUInt32LE(length, 0);
  b.writeUInt32LE(type, 4);
  return b;
}

function nameBytes(name: string): Buffer {
  return Buffer.from(`${name}\0`, 'utf16le');
}

function checkGuid(guid: Uint8Array): void {
  if (guid.byteLength !== 16) throw protocolError('encode PTP/IP', `GUID must be 16 bytes, got ${guid.byteLength}`, { actual: guid.byteLength });
}

function checkParams(params: readonly number[], max: number, what: string): void {
  if (params.length > max) throw protocolError('encode PTP/IP', `${what} with ${params.length} parameters, at most ${max}`, { actual: params.length });
}

/** Encodes any packet except Data/EndData (see encodeDataPacket). */
export function encodeControlPacket(p: ControlPacket): Buffer {
  switch (p.type) {
    case 'InitCommandRequest': {
      checkGuid(p.guid);
      const name = nameBytes(p.friendlyName);
      const b = header(8 + 16 + name.length + 4, PacketType.InitCommandRequest);
      b.set(p.guid, 8);
      name.copy(b, 24);
      b.writeUInt32LE(p.protocolVersion >>> 0, 24 + name.length);
      return b;
    }
    case 'InitCommandAck': {
      checkGuid(p.guid);
      const name = nameBytes(p.friendlyName);
      const withVersion = p.protocolVersion !== undefined;
      const b = header(8 + 4 + 16 + name.length + (withVersion ? 4 : 0), PacketType.InitCommandAck);
      b.writeUInt32LE(p.connectionNumber >>> 0, 8);
      b.set(p.guid, 12);
      name.copy(b, 28);
      if (withVersion) b.writeUInt32LE((p.protocolVersion ?? 0) >>> 0, 28 + name.length);
      return b;
    }
    case 'InitEventRequest': {
      const b = header(12, PacketType.InitEventRequest);
      b.writeUInt32LE(p.connectionNumber >>> 0, 8);
      return b;
    }
    case 'InitEventAck':
      return header(8, PacketType.InitEventAck);
    case 'InitFail': {
      const b = header(12, PacketType.InitFail);
      b.writeUInt32LE(p.reason >>> 0, 8);
      return b;
    }
    case 'OperationRequest': {
      checkParams(p.params, MAX_OPERATION_PARAMS, 'OperationRequest');
      const b = header(18 + 4 * p.params.length, PacketType.OperationRequest);
      b.writeUInt32LE(p.dataPhase >>> 0, 8);
      b.writeUInt16LE(p.code, 12);
      b.writeUInt32LE(p.transactionId >>> 0, 14);
      p.params.forEach((v, i) => b.writeUInt32LE(v >>> 0, 18 + 4 * i));
      return b;
    }
    case 'OperationResponse':
    case 'Event': {
      const isEvent = p.type === 'Event';
      checkParams(p.params, isEvent ? MAX_EVENT_PARAMS : MAX_OPERATION_PARAMS, p.type);
      const b = header(14 + 4 * p.params.length, isEvent ? PacketType.Event : PacketType.OperationResponse);
      b.writeUInt16LE(p.code, 8);
      b.writeUInt32LE(p.transactionId >>> 0, 10);
      p.params.forEach((v, i) => b.writeUInt32LE(v >>> 0, 14 + 4 * i));
      return b;
    }
    case 'StartData': {
      const b = header(20, PacketType.StartData);
      b.writeUInt32LE(p.transactionId >>> 0, 8);
      b.writeBigUInt64LE(p.totalLength, 12);
      return b;
    }
    case 'Cancel': {
      const b = header(12, PacketType.Cancel);
      b.writeUInt32LE(p.transactionId >>> 0, 8);
      return b;
    }
    case 'ProbeRequest':
      return header(8, PacketType.ProbeRequest);
    case 'ProbeResponse':
      return header(8, PacketType.ProbeResponse);
  }
}

/** Header (12 bytes: length, type, transaction id) of a Data or EndData packet carrying `payloadLength` bytes; the payload follows separately. */
export function encodeDataPacketHeader(final: boolean, transactionId: number, payloadLength: number): Buffer {
  const total = 12 + payloadLength;
  if (total > 0xffffffff) throw protocolError('encode PTP/IP', `data packet of ${payloadLength} bytes does not fit a u32 length`, { actual: payloadLength });
  const b = header(12, final ? PacketType.EndData : PacketType.Data);
  b.writeUInt32LE(total, 0);
  b.writeUInt32LE(transactionId >>> 0, 8);
  return b;
}

/** What the decoder yields: whole control packets, and Data/EndData payloads as slices. */
export type PacketPart =
  | { kind: 'packet'; packet: ControlPacket }
  | {
      kind: 'payload';
      /** EndData (true) or Data (false). */
      final: boolean;
      transactionId: number;
      bytes: Uint8Array;
      /** The last slice of this packet (possibly empty for an empty packet). */
      packetEnd: boolean;
      /** Gives the slice's memory back for later reads (see SlabReads.lend); absent when it is the holder's to keep. */
      release?: () => void;
    };

export interface PacketDecoderOptions {
  /** Longest control packet accepted (control packets are buffered whole). Default 4096. */
  maxControlLength?: number;
}

function readUtf16Nul(b: Buffer, start: number, what: string, offsetBase: number): { text: string; end: number } {
  for (let i = start; i + 1 < b.length; i += 2) {
    if (b[i] === 0 && b[i + 1] === 0) return { text: b.toString('utf16le', start, i), end: i + 2 };
  }
  throw protocolError(what, `friendly name at offset ${offsetBase + start} has no NUL terminator`, { offset: offsetBase + start, expected: 'UTF-16LE string ending in NUL' });
}

function paramsFrom(b: Buffer, start: number, max: number, what: string, offsetBase: number): number[] {
  const body = b.length - start;
  if (body % 4 !== 0 || body / 4 > max) {
    throw protocolError(what, `${body} parameter bytes at offset ${offsetBase + start}: expected 0..${max} u32 values`, {
      offset: offsetBase + start,
      expected: `4·n bytes, n ≤ ${max}`,
      actual: body,
    });
  }
  const out: number[] = [];
  for (let i = start; i < b.length; i += 4) out.push(b.readUInt32LE(i));
  return out;
}

function expectLength(b: Buffer, length: number, what: string, offsetBase: number): void {
  if (b.length !== length) {
    throw protocolError(what, `packet length ${b.length}, expected ${length}`, { offset: offsetBase, expected: length, actual: b.length });
  }
}

/** Decodes one complete control packet (`b` = whole packet, header included). `offsetBase` is its stream offset, for errors. */
export function decodeControlPacket(b: Buffer, offsetBase = 0): ControlPacket {
  const type = b.readUInt32LE(4);
  switch (type) {
    case PacketType.InitCommandRequest: {
      const what = 'InitCommandRequest';
      if (b.length < 8 + 16 + 2 + 4) throw protocolError(what, `packet of ${b.length} bytes is too short`, { offset: offsetBase, actual: b.length });
      const guid = Uint8Array.from(b.subarray(8, 24));
      const name = readUtf16Nul(b.subarray(0, b.length - 4), 24, what, offsetBase);
      if (name.end !== b.length - 4) throw protocolError(what, `${b.length - 4 - name.end} unexpected bytes after the friendly name`, { offset: offsetBase + name.end });
      return { type: 'InitCommandRequest', guid, friendlyName: name.text, protocolVersion: b.readUInt32LE(b.length - 4) };
    }
    case PacketType.InitCommandAck: {
      const what = 'InitCommandAck';
      if (b.length < 8 + 4 + 16 + 2) throw protocolError(what, `packet of ${b.length} bytes is too short`, { offset: offsetBase, actual: b.length });
      const name = readUtf16Nul(b, 28, what, offsetBase);
      const rest = b.length - name.end;
      if (rest !== 0 && rest !== 4) throw protocolError(what, `${rest} unexpected bytes after the friendly name`, { offset: offsetBase + name.end, expected: '0 or 4 (version)' });
      return {
        type: 'InitCommandAck',
        connectionNumber: b.readUInt32LE(8),
        guid: Uint8Array.from(b.subarray(12, 28)),
        friendlyName: name.text,
        protocolVersion: rest === 4 ? b.readUInt32LE(name.end) : undefined,
      };
    }
    case PacketType.InitEventRequest:
      expectLength(b, 12, 'InitEventRequest', offsetBase);
      return { type: 'InitEventRequest', connectionNumber: b.readUInt32LE(8) };
    case PacketType.InitEventAck:
      expectLength(b, 8, 'InitEventAck', offsetBase);
      return { type: 'InitEventAck' };
    case PacketType.InitFail:
      expectLength(b, 12, 'InitFail', offsetBase);
      return { type: 'InitFail', reason: b.readUInt32LE(8) };
    case PacketType.OperationRequest:
      if (b.length < 18) throw protocolError('OperationRequest', `packet of ${b.length} bytes is too short`, { offset: offsetBase, expected: '≥ 18', actual: b.length });
      return {
        type: 'OperationRequest',
        dataPhase: b.readUInt32LE(8),
        code: b.readUInt16LE(12),
        transactionId: b.readUInt32LE(14),
        params: paramsFrom(b, 18, MAX_OPERATION_PARAMS, 'OperationRequest', offsetBase),
      };
    case PacketType.OperationResponse:
    case PacketType.Event: {
      const isEvent = type === PacketType.Event;
      const what = isEvent ? 'Event' : 'OperationResponse';
      if (b.length < 14) throw protocolError(what, `packet of ${b.length} bytes is too short`, { offset: offsetBase, expected: '≥ 14', actual: b.length });
      const params = paramsFrom(b, 14, isEvent ? MAX_EVENT_PARAMS : MAX_OPERATION_PARAMS, what, offsetBase);
      const fields = { code: b.readUInt16LE(8), transactionId: b.readUInt32LE(10), params };
      return isEvent ? { type: 'Event', ...fields } : { type: 'OperationResponse', ...fields };
    }
    case PacketType.StartData:
      expectLength(b, 20, 'StartData', offsetBase);
      return { type: 'StartData', transactionId: b.readUInt32LE(8), totalLength: b.readBigUInt64LE(12) };
    case PacketType.Cancel:
      expectLength(b, 12, 'Cancel', offsetBase);
      return { type: 'Cancel', transactionId: b.readUInt32LE(8) };
    case PacketType.ProbeRequest:
      expectLength(b, 8, 'ProbeRequest', offsetBase);
      return { type: 'ProbeRequest' };
    case PacketType.ProbeResponse:
      expectLength(b, 8, 'ProbeResponse', offsetBase);
      return { type: 'ProbeResponse' };
    default:
      throw protocolError('decode PTP/IP', `unknown packet type ${type} at stream offset ${offsetBase}`, { offset: offsetBase + 4, expected: 'type 1..14', actual: type });
  }
}

/**
 * Cuts a TCP byte stream into PTP/IP packets, whatever the chunk boundaries. Control packets are buffered
 * (bounded by maxControlLength); Data/EndData payloads pass through as slices of the input, so a packet
 * announcing 4 GiB costs no memory.
 */
export class PacketDecoder {
  private readonly maxControlLength: number;
  private pending = Buffer.alloc(0);
  /** Payload bytes left in the current Data/EndData packet, -1 outside one. */
  private payloadLeft = -1;
  private payloadFinal = false;
  private payloadTid = 0;
  private offset = 0;
  private headerChecked = false;

  constructor(opts: PacketDecoderOptions = {}) {
    this.maxControlLength = opts.maxControlLength ?? 4096;
  }

  get idle(): boolean {
    return this.payloadLeft < 0 && this.pending.length === 0;
  }

  push(chunk: Uint8Array): PacketPart[] {
    const out: PacketPart[] = [];
    let pos = 0;
    for (;;) {
      if (this.payloadLeft >= 0) {
        if (pos >= chunk.byteLength) break;
        const n = Math.min(this.payloadLeft, chunk.byteLength - pos);
        this.payloadLeft -= n;
        const end = this.payloadLeft === 0;
        out.push({ kind: 'payload', final: this.payloadFinal, transactionId: this.payloadTid, bytes: chunk.subarray(pos, pos + n), packetEnd: end });
        pos += n;
        this.offset += n;
        if (end) this.payloadLeft = -1;
        continue;
      }
      if (this.pending.length >= PTPIP_HEADER_LENGTH && !this.headerChecked) {
        this.checkHeader();
        this.headerChecked = true;
      }
      const want = this.wanted();
      if (this.pending.length < want) {
        if (pos >= chunk.byteLength) break;
        const take = Math.min(want - this.pending.length, chunk.byteLength - pos);
        this.pending = Buffer.concat([this.pending, chunk.subarray(pos, pos + take)]);
        pos += take;
        continue;
      }
      const type = this.pending.readUInt32LE(4);
      this.headerChecked = false;
      if (type === PacketType.Data || type === PacketType.EndData) {
        const length = this.pending.readUInt32LE(0);
        this.payloadTid = this.pending.readUInt32LE(8);
        this.payloadFinal = type === PacketType.EndData;
        this.payloadLeft = length - 12;
        this.offset += 12;
        this.pending = Buffer.alloc(0);
        if (this.payloadLeft === 0) {
          out.push({ kind: 'payload', final: this.payloadFinal, transactionId: this.payloadTid, bytes: new Uint8Array(0), packetEnd: true });
          this.payloadLeft = -1;
        }
        continue;
      }
      out.push({ kind: 'packet', packet: decodeControlPacket(this.pending, this.offset) });
      this.offset += this.pending.length;
      this.pending = Buffer.alloc(0);
    }
    return out;
  }

  /** Bytes needed in `pending` before the next step: the header, the data header, or the whole control packet. */
  private wanted(): number {
    if (this.pending.length < PTPIP_HEADER_LENGTH) return PTPIP_HEADER_LENGTH;
    const type = this.pending.readUInt32LE(4);
    if (type === PacketType.Data || type === PacketType.EndData) return 12;
    return this.pending.readUInt32LE(0);
  }

  private checkHeader(): void {
    const length = this.pending.readUInt32LE(0);
    const type = this.pending.readUInt32LE(4);
    const where = { offset: this.offset };
    if (type < PacketType.InitCommandRequest || type > PacketType.ProbeResponse) {
      throw protocolError('decode PTP/IP', `unknown packet type ${type} at stream offset ${this.offset}`, { ...where, expected: 'type 1..14', actual: type });
    }
    if (type === PacketType.Data || type === PacketType.EndData) {
      if (length < 12)
        throw protocolError('decode PTP/IP', `data packet length ${length} at stream offset ${this.offset} is shorter than its 12-byte header`, { ...where, actual: length });
      return;
    }
    if (length < PTPIP_HEADER_LENGTH || length > this.maxControlLength) {
      throw protocolError('decode PTP/IP', `packet length ${length} at stream offset ${this.offset} is outside 8..${this.maxControlLength}`, {
        ...where,
        expected: `8..${this.maxControlLength}`,
        actual: length,
      });
    }
  }

  end(): void {
    if (!this.idle) {
      throw protocolError('decode PTP/IP', `stream ended inside a packet at offset ${this.offset}`, {
        offset: this.offset,
        expected: this.payloadLeft >= 0 ? `${this.payloadLeft} more payload bytes` : 'rest of packet',
      });
    }
  }
}
