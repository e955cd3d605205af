/**
 * PTP wire format: little-endian primitives, PTP strings and arrays, date strings, and the generic
 * container (the USB framing; PTP/IP has its own packets in ../ptpip/packets.ts but carries the same
 * datasets). Pure: no I/O, no timers. Every malformed input throws ShuttleError('PTP_PROTOCOL') naming
 * the operation, the offset and what was expected.
 */
import { ShuttleError, type ErrorContexts } from '../../errors.js';
import { checkTimeZone, instantOf, zoneOffsetMs, type WallClock } from '../../time-zone.js';

export function protocolError(
  operation: string,
  message: string,
  context: Omit<ErrorContexts['PTP_PROTOCOL'], 'operation'> & Record<string, unknown> = {},
): ShuttleError<'PTP_PROTOCOL'> {
  return new ShuttleError('PTP_PROTOCOL', `${operation}: ${message}`, { context: { operation, ...context } });
}

/** The largest value a PTP string's count byte can hold: 254 code units plus the terminating NUL. */
export const PTP_STRING_MAX_UNITS = 254;

const utf16 = new TextDecoder('utf-16le');

/** Reads a dataset front to back; each read names its field so that a short or bad dataset says what was missing. */
export class PtpReader {
  private readonly view: DataView;
  private pos = 0;

  constructor(
    private readonly bytes: Uint8Array,
    /** Named in errors: the dataset or operation being decoded. */
    readonly operation: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.bytes.byteLength - this.pos;
  }

  private need(n: number, field: string): void {
    if (this.remaining < n) {
      throw protocolError(this.operation, `truncated at offset ${this.pos}: expected ${n} bytes for ${field}, ${this.remaining} left`, {
        offset: this.pos,
        expected: field,
        needed: n,
        available: this.remaining,
      });
    }
  }

  u8(field: string): number {
    this.need(1, field);
    return this.view.getUint8(this.pos++);
  }

  u16(field: string): number {
    this.need(2, field);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }

  u32(field: string): number {
    this.need(4, field);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  u64(field: string): bigint {
    this.need(8, field);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }

  skip(n: number, field: string): void {
    this.need(n, field);
    this.pos += n;
  }

  bytesOf(n: number, field: string): Uint8Array {
    this.need(n, field);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** A PTP string: a count byte of UCS-2 code units including the NUL (0 = empty), then UTF-16LE. */
  string(field: string): string {
    const start = this.pos;
    const count = this.u8(`${field} length`);
    if (count === 0) return '';
    if (this.remaining < count * 2) {
      throw protocolError(this.operation, `string ${field} at offset ${start} declares ${count} code units but only ${this.remaining} bytes follow`, {
        offset: start,
        expected: `${count * 2} bytes of ${field}`,
        available: this.remaining,
      });
    }
    const raw = this.bytes.subarray(this.pos, this.pos + count * 2);
    this.pos += count * 2;
    return decodeUtf16UpToNul(raw);
  }

  /** A PTP array: u32 element count, then the elements. The count is checked against the bytes left before anything is allocated. */
  u16Array(field: string): number[] {
    return this.array(field, 2, () => this.u16(field));
  }

  u32Array(field: string): number[] {
    return this.array(field, 4, () => this.u32(field));
  }

  private array(field: string, size: number, read: () => number): number[] {
    const start = this.pos;
    const count = this.u32(`${field} count`);
    if (count > Math.floor(this.remaining / size)) {
      throw protocolError(this.operation, `array ${field} at offset ${start} declares ${count} elements but only ${this.remaining} bytes follow`, {
        offset: start,
        expected: `${count} × ${size} bytes of ${field}`,
        available: this.remaining,
      });
    }
    const out = new Array<number>(count);
    for (let i = 0; i < count; i++) out[i] = read();
    return out;
  }
}

function decodeUtf16UpToNul(raw: Uint8Array): string {
  // Cameras terminate with NUL as the spec says, but some pad or omit it: stop at the first NUL, keep all otherwise.
  let end = raw.byteLength;
  for (let i = 0; i + 1 < raw.byteLength; i += 2) {
    if (raw[i] === 0 && raw[i + 1] === 0) {
      end = i;
      break;
    }
  }
  return utf16.decode(raw.subarray(0, end));
}

/** Builds a dataset; grows as needed. */
export class PtpWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initialSize = 256) {
    this.buf = Buffer.alloc(initialSize);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  get length(): number {
    return this.pos;
  }

  u8(v: number): this {
    this.ensure(1);
    this.buf.writeUInt8(v, this.pos);
    this.pos += 1;
    return this;
  }

  u16(v: number): this {
    this.ensure(2);
    this.buf.writeUInt16LE(v, this.pos);
    this.pos += 2;
    return this;
  }

  u32(v: number): this {
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  u64(v: bigint | number): this {
    this.ensure(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.pos);
    this.pos += 8;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.byteLength);
    this.buf.set(b, this.pos);
    this.pos += b.byteLength;
    return this;
  }

  string(s: string): this {
    return this.bytes(encodePtpString(s));
  }

  u16Array(items: readonly number[]): this {
    this.u32(items.length);
    for (const v of items) this.u16(v);
    return this;
  }

  u32Array(items: readonly number[]): this {
    this.u32(items.length);
    for (const v of items) this.u32(v);
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}

/** Encodes a PTP string. The empty string is the single count byte 0; longer than 254 UTF-16 units cannot be represented. */
export function encodePtpString(s: string): Buffer {
  if (s.length === 0) return Buffer.from([0]);
  if (s.length > PTP_STRING_MAX_UNITS) {
    throw protocolError('encode string', `string of ${s.length} UTF-16 units exceeds the PTP maximum of ${PTP_STRING_MAX_UNITS}`, {
      expected: `at most ${PTP_STRING_MAX_UNITS} units`,
      actual: s.length,
    });
  }
  const out = Buffer.alloc(1 + (s.length + 1) * 2);
  out.writeUInt8(s.length + 1, 0);
  out.write(s, 1, 'utf16le');
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Dates

/** A PTP date's wall clock (its millisecond from `.s`, tenths or more digits) and zone marker. */
export interface PtpDateParts extends WallClock {
  /** Offset east of UTC in minutes when the string carries `Z` or `±hhmm`; undefined = camera-local time. */
  offsetMinutes: number | undefined;
}

const DATE_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$/;

/** Splits `YYYYMMDDThhmmss[.s][Z|±hhmm]` into fields, validating ranges. Throws PTP_PROTOCOL. */
export function parsePtpDateParts(text: string): PtpDateParts {
  const m = DATE_RE.exec(text);
  if (!m) throw protocolError('parse date', `not a PTP date string: ${JSON.stringify(text)}`, { expected: 'YYYYMMDDThhmmss[.s][Z|±hhmm]', actual: text });
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  const frac = m[7];
  const millisecond = frac === undefined ? 0 : Math.floor(Number(`0.${frac}`) * 1000);
  const zone = m[8];
  let offsetMinutes: number | undefined;
  if (zone === 'Z') offsetMinutes = 0;
  else if (zone !== undefined) {
    const digits = zone.replace(':', '');
    const sign = digits[0] === '-' ? -1 : 1;
    const hh = Number(digits.slice(1, 3));
    const mm = Number(digits.slice(3, 5));
    if (hh > 23 || mm > 59) throw protocolError('parse date', `bad zone offset in ${JSON.stringify(text)}`, { actual: text });
    offsetMinutes = sign * (hh * 60 + mm);
  }
  const daysInMonth = month >= 1 && month <= 12 ? new Date(Date.UTC(year, month, 0)).getUTCDate() : 0;
  // 60 seconds is allowed for a leap second; it lands on the next minute.
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 60) {
    throw protocolError('parse date', `date out of range: ${JSON.stringify(text)}`, { actual: text });
  }
  return { year, month, day, hour, minute, second, millisecond, offsetMinutes };
}

/**
 * Parses a PTP date to epoch milliseconds. A string without a zone marker is camera-local time and is
 * read in `timeZone` (IANA name; undefined = this system's): most cameras write local time, some (QEMU)
 * write UTC without a `Z`. A local time a DST change repeats is read as the earlier instant.
 */
export function parsePtpDate(text: string, timeZone: string | undefined): number {
  const p = parsePtpDateParts(text);
  if (p.offsetMinutes !== undefined) {
    return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second, p.millisecond) - p.offsetMinutes * 60_000;
  }
  checkTimeZone(timeZone);
  return instantOf(p, timeZone).epochMs;
}

export interface FormatDateOptions {
  /** Zone whose wall clock is written (undefined = this system's). */
  timeZone: string | undefined;
  /** 'none': local time without marker (what most cameras write); 'offset': with ±hhmm; 'Z' needs timeZone UTC. */
  zoneMarker?: 'none' | 'offset' | 'Z';
  /** Append `.s` tenths of a second. */
  tenths?: boolean;
}

export function formatPtpDate(epochMs: number, opts: FormatDateOptions): string {
  if (opts.zoneMarker !== 'Z') checkTimeZone(opts.timeZone);
  const offset = opts.zoneMarker === 'Z' ? 0 : zoneOffsetMs(epochMs, opts.timeZone);
  const d = new Date(epochMs + offset);
  const p2 = (n: number): string => String(n).padStart(2, '0');
  let s = `${String(d.getUTCFullYear()).padStart(4, '0')}${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())}T${p2(d.getUTCHours())}${p2(d.getUTCMinutes())}${p2(d.getUTCSeconds())}`;
  if (opts.tenths) s += `.${Math.floor(d.getUTCMilliseconds() / 100)}`;
  if (opts.zoneMarker === 'Z') s += 'Z';
  else if (opts.zoneMarker === 'offset') {
    const minutes = Math.round(offset / 60_000);
    const abs = Math.abs(minutes);
    s += `${minutes < 0 ? '-' : '+'}${p2(Math.floor(abs / 60))}${p2(abs % 60)}`;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// Generic containers (USB framing)

export const ContainerType = { Command: 1, Data: 2, Response: 3, Event: 4 } as const;

export const CONTAINER_HEADER_LENGTH = 12;
export const MAX_OPERATION_PARAMS = 5;
/** A data container whose length field is this value has an unknown length (> 4 GiB on USB): the transport ends it by a short packet. */
export const UNKNOWN_DATA_LENGTH = 0xffffffff;

/** A command, response or event: a code, a transaction id and up to five u32 parameters. */
export interface OperationContainer {
  type: typeof ContainerType.Command | typeof ContainerType.Response | typeof ContainerType.Event;
  code: number;
  transactionId: number;
  params: number[];
}

export function encodeOperationContainer(c: OperationContainer): Buffer {
  if (c.params.length > MAX_OPERATION_PARAMS) {
    throw protocolError('encode container', `${c.params.length} parameters, at most ${MAX_OPERATION_PARAMS}`, { actual: c.params.length });
  }
  const length = CONTAINER_HEADER_LENGTH + 4 * c.params.length;
  const out = Buffer.alloc(length);
  out.writeUInt32LE(length, 0);
  out.writeUInt16LE(c.type, 4);
  out.writeUInt16LE(c.code, 6);
  out.writeUInt32LE(c.transactionId >>> 0, 8);
  c.params.forEach((p, i) => out.writeUInt32LE(p >>> 0, CONTAINER_HEADER_LENGTH + 4 * i));
  return out;
}

/** Header of a data container carrying `payloadLength` bytes (the unknown-length marker when it does not fit 32 bits). */
export function encodeDataContainerHeader(code: number, transactionId: number, payloadLength: number): Buffer {
  const total = CONTAINER_HEADER_LENGTH + payloadLength;
  const out = Buffer.alloc(CONTAINER_HEADER_LENGTH);
  out.writeUInt32LE(total >= UNKNOWN_DATA_LENGTH ? UNKNOWN_DATA_LENGTH : total, 0);
  out.writeUInt16LE(ContainerType.Data, 4);
  out.writeUInt16LE(code, 6);
  out.writeUInt32LE(transactionId >>> 0, 8);
  return out;
}

export interface ContainerHeader {
  length: number;
  type: number;
  code: number;
  transactionId: number;
}

export function decodeContainerHeader(bytes: Uint8Array, operation = 'container header'): ContainerHeader {
  const r = new PtpReader(bytes, operation);
  return { length: r.u32('length'), type: r.u16('type'), code: r.u16('code'), transactionId: r.u32('transaction id') };
}

function paramCount(length: number, headerLength: number, operation: string, maxParams: number): number {
  const body = length - headerLength;
  if (body < 0 || body % 4 !== 0 || body / 4 > maxParams) {
    throw protocolError(operation, `length ${length} does not hold 0..${maxParams} u32 parameters after a ${headerLength}-byte header`, {
      offset: 0,
      expected: `${headerLength} + 4·n bytes, n ≤ ${maxParams}`,
      actual: length,
    });
  }
  return body / 4;
}

/** Decodes one complete command/response/event container (exactly `bytes`). */
export function decodeOperationContainer(bytes: Uint8Array): OperationContainer {
  const h = decodeContainerHeader(bytes, 'decode container');
  if (h.length !== bytes.byteLength) {
    throw protocolError('decode container', `length field ${h.length} but ${bytes.byteLength} bytes given`, { offset: 0, expected: h.length, actual: bytes.byteLength });
  }
  if (h.type !== ContainerType.Command && h.type !== ContainerType.Response && h.type !== ContainerType.Event) {
    throw protocolError('decode container', `type ${h.type} is not command, response or event`, { offset: 4, actual: h.type });
  }
  const n = paramCount(h.length, CONTAINER_HEADER_LENGTH, 'decode container', MAX_OPERATION_PARAMS);
  const r = new PtpReader(bytes.subarray(CONTAINER_HEADER_LENGTH), 'decode container');
  const params: number[] = [];
  for (let i = 0; i < n; i++) params.push(r.u32(`param ${i + 1}`));
  return { type: h.type, code: h.code, transactionId: h.transactionId, params };
}
