/**
 * PTP containers out of bulk IN transfers (PIMA 15740 annex D). A container ends with a short packet, or
 * with a zero-length one when it fills its last packet (some devices never send it), so a transfer may
 * end inside a container, exactly at its end, or run on into the next one. Data is passed on in the
 * slices it arrives in; only a header or a response is ever held back. Pure: no I/O, no timers; the
 * transport feeds it transfers and asks for what they frame.
 */
import {
  CONTAINER_HEADER_LENGTH,
  ContainerType,
  MAX_OPERATION_PARAMS,
  UNKNOWN_DATA_LENGTH,
  decodeContainerHeader,
  decodeOperationContainer,
  protocolError,
  type ContainerHeader,
} from '../ptp/codec.js';
import type { PtpEvent, PtpIncoming } from '../ptp/transport.js';

const LONGEST_OPERATION_CONTAINER = CONTAINER_HEADER_LENGTH + 4 * MAX_OPERATION_PARAMS;
const EMPTY = Buffer.alloc(0);

/** What transfers frame into: the session's items, events sent on the bulk pipe, and leftovers dropped while resynchronising. */
export type UsbFrame = PtpIncoming | { kind: 'event'; event: PtpEvent } | { kind: 'discarded'; bytes: number; problem: string };

/** The data container being passed on. */
export interface OpenDataContainer {
  transactionId: number;
  code: number;
  /** Payload bytes still to come; undefined when the device announced an unknown length (> 4 GiB). */
  remaining: number | undefined;
}

export interface UsbFramerOptions {
  /** Facts about the device (ids, bus, port) added to every error. */
  context?: Record<string, unknown>;
  /** Start by resynchronising: a client that died mid-transfer may have left the rest of its transfer behind. */
  resynchronising?: boolean;
}

export class UsbContainerFramer {
  private readonly context: Record<string, unknown>;
  /** Bytes received and not yet framed. */
  private rx: Buffer = EMPTY;
  /** The transfer that delivered rx's last byte ended short (the device closed the container there). */
  private rxShort = false;
  /** rx begins where a transfer began (nothing of that transfer was framed yet). */
  private rxFresh = false;
  private container: OpenDataContainer | undefined;
  /** Drop bytes that frame nothing until a transfer starts with a plausible container. */
  private resync: boolean;
  private readonly out: UsbFrame[] = [];

  constructor(opts: UsbFramerOptions = {}) {
    this.context = opts.context ?? {};
    this.resync = opts.resynchronising ?? false;
  }

  /** The data container still owed bytes, if any: the transport sizes its reads by it. */
  get openContainer(): Readonly<OpenDataContainer> | undefined {
    return this.container;
  }

  /** Whether bytes not yet framed still live in `memory`: until they are framed, it must not be read into again. */
  holds(memory: ArrayBufferLike): boolean {
    return this.rx.length > 0 && this.rx.buffer === memory;
  }

  /**
   * One bulk IN transfer as it completed; `short` when it came back with less than was asked for (the
   * device ended it with a short or zero-length packet).
   */
  push(bytes: Buffer, short: boolean): void {
    // A zero-length transfer is the end marker of a container that filled its last packet: nothing to frame.
    if (bytes.length === 0) return;
    this.rxFresh = this.rx.length === 0;
    this.rx = this.rx.length === 0 ? bytes : Buffer.concat([this.rx, bytes]);
    this.rxShort = short;
  }

  /**
   * The next frame, or undefined when more transfers are needed. Bytes that frame nothing outside a
   * resynchronisation throw PTP_PROTOCOL and start one; frames found before them are still returned.
   */
  next(): UsbFrame | undefined {
    if (this.out.length === 0) this.frame();
    return this.out.shift();
  }

  /** Forgets everything received (after a cancel or reset) and resynchronises. */
  restart(): void {
    this.rx = EMPTY;
    this.rxFresh = false;
    this.container = undefined;
    this.out.length = 0;
    this.resync = true;
  }

  /** Frames all it can. Leaves an incomplete header or response in rx for the next transfer. */
  private frame(): void {
    while (this.rx.length > 0) {
      const c = this.container;
      if (c) {
        this.frameData(c);
        continue;
      }
      const need = this.rx.length >= CONTAINER_HEADER_LENGTH ? this.rx.readUInt32LE(0) : CONTAINER_HEADER_LENGTH;
      if (this.rx.length < CONTAINER_HEADER_LENGTH) {
        if (this.rxShort) this.badFraming(`transfer ended inside a container header (${this.rx.length} bytes)`);
        return;
      }
      const h = decodeContainerHeader(this.rx, 'USB container');
      const problem = implausible(h);
      if (problem) {
        this.badFraming(problem);
        continue;
      }
      this.resync = false;
      if (h.type === ContainerType.Data) {
        const total = h.length === UNKNOWN_DATA_LENGTH ? undefined : h.length - CONTAINER_HEADER_LENGTH;
        this.out.push({ kind: 'data-start', transactionId: h.transactionId, code: h.code, totalLength: total });
        this.rx = this.rx.subarray(CONTAINER_HEADER_LENGTH);
        this.rxFresh = false;
        if (total === 0) this.out.push({ kind: 'data-end', transactionId: h.transactionId });
        else {
          this.container = { transactionId: h.transactionId, code: h.code, remaining: total };
          // An unknown-length container whose first transfer was already short has ended.
          if (total === undefined && this.rx.length === 0 && this.rxShort) this.endContainer();
        }
        continue;
      }
      if (this.rx.length < need) {
        if (this.rxShort) this.badFraming(`transfer ended inside a ${need}-byte container`);
        return;
      }
      const op = decodeOperationContainer(this.rx.subarray(0, need));
      this.rx = this.rx.subarray(need);
      this.rxFresh = false;
      if (op.type === ContainerType.Response) this.out.push({ kind: 'response', code: op.code, transactionId: op.transactionId, params: op.params });
      else this.out.push({ kind: 'event', event: { code: op.code, transactionId: op.transactionId, params: op.params } });
    }
  }

  private frameData(c: OpenDataContainer): void {
    if (c.remaining === undefined) {
      // Without a length, the container ends with a short transfer. A device that ended it exactly on a
      // packet boundary and sent no zero-length packet goes straight on to the response: a short fresh
      // transfer that is exactly a response to this transaction ends the data instead of joining it.
      if (this.rxFresh && this.rxShort && looksLikeResponse(this.rx, c.transactionId)) {
        this.endContainer();
        return;
      }
      const bytes = this.rx;
      this.rx = EMPTY;
      this.out.push({ kind: 'data', transactionId: c.transactionId, bytes });
      if (this.rxShort) this.endContainer();
      return;
    }
    const n = Math.min(c.remaining, this.rx.length);
    this.out.push({ kind: 'data', transactionId: c.transactionId, bytes: this.rx.subarray(0, n) });
    this.rx = this.rx.subarray(n);
    this.rxFresh = false;
    c.remaining -= n;
    if (c.remaining === 0) this.endContainer();
  }

  private endContainer(): void {
    const c = this.container;
    if (!c) return;
    this.container = undefined;
    this.out.push({ kind: 'data-end', transactionId: c.transactionId });
  }

  /**
   * Bytes that cannot be framed. While resynchronising (after a cancel or reset, or at open after a client
   * died mid-transfer) they are leftovers of an abandoned transaction and are dropped; otherwise the
   * stream is out of step, which fails the operation and starts a resynchronisation.
   */
  private badFraming(problem: string): void {
    const dropped = this.rx.length;
    this.rx = EMPTY;
    this.rxFresh = false;
    if (this.resync) {
      this.out.push({ kind: 'discarded', bytes: dropped, problem });
      return;
    }
    this.resync = true;
    throw protocolError('USB receive', problem, { ...this.context, dropped });
  }
}

function looksLikeResponse(bytes: Buffer, transactionId: number): boolean {
  if (bytes.length < CONTAINER_HEADER_LENGTH || bytes.length > LONGEST_OPERATION_CONTAINER) return false;
  const h = decodeContainerHeader(bytes);
  return h.type === ContainerType.Response && h.length === bytes.length && h.transactionId === transactionId && (h.length - CONTAINER_HEADER_LENGTH) % 4 === 0;
}

/** Why a header cannot start a container from the device, or undefined if it can. */
function implausible(h: ContainerHeader): string | undefined {
  if (h.type === ContainerType.Data) return h.length < CONTAINER_HEADER_LENGTH ? `data container length ${h.length} is shorter than its header` : undefined;
  if (h.type === ContainerType.Response || h.type === ContainerType.Event) {
    if (h.length < CONTAINER_HEADER_LENGTH || h.length > LONGEST_OPERATION_CONTAINER || (h.length - CONTAINER_HEADER_LENGTH) % 4 !== 0) {
      return `container of type ${h.type} with length ${h.length}`;
    }
    return undefined;
  }
  return `container type ${h.type} (length ${h.length}) is not data, response or event`;
}
