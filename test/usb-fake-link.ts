/**
 * A scripted USB PTP device behind the UsbLink interface, for unit tests of the USB transport's framing
 * (the whole stack runs against QEMU's real usb-mtp device in test/hil/). It models what the transport
 * depends on: bulk IN reads that end at a short packet or a zero-length packet, or run on into the next
 * container; stalls and clear-halt; class requests; the interrupt pipe; unplugging.
 */
import {
  ContainerType,
  decodeContainerHeader,
  decodeOperationContainer,
  encodeDataContainerHeader,
  encodeOperationContainer,
  type OperationContainer,
} from '../src/device/ptp/codec.js';
import type { PtpIncoming } from '../src/device/ptp/transport.js';
import { UsbIoError, type EndpointRole, type UsbLink, type UsbPending } from '../src/device/usb/link.js';
import type { UsbPtpTransport } from '../src/device/usb/transport.js';

/**
 * How the device ends containers: `zlp` the standard (short packet, or a zero-length packet after a
 * container that fills its last packet), `no-zlp` (a full last packet and nothing after it: the read runs
 * on into the next container), `qemu` (every container ends the transfer, as QEMU's usb-mtp does).
 */
export type EndStyle = 'zlp' | 'no-zlp' | 'qemu';

interface Unit {
  remaining: number;
  take(n: number): Buffer;
  /** The device ends the host's transfer once this unit is used up. */
  endsTransfer: boolean;
}

function bytesUnit(bytes: Buffer, endsTransfer: boolean): Unit {
  let pos = 0;
  return {
    get remaining() {
      return bytes.length - pos;
    },
    take(n) {
      const out = bytes.subarray(pos, pos + n);
      pos += out.length;
      return out;
    },
    endsTransfer,
  };
}

/** Deterministic content: byte i of an object is a function of i, so tests check any range without keeping it. */
export function patternByte(i: number): number {
  return (i * 131 + (i >>> 8) * 7 + (i >>> 16)) & 0xff;
}

export function patternBytes(offset: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = patternByte(offset + i);
  return b;
}

export interface FakeOptions {
  packetSize?: number;
  endStyle?: EndStyle;
}

export type CommandHandler = (cmd: OperationContainer, dev: FakePtpDevice) => void;

export class FakePtpDevice implements UsbLink {
  readonly bulkInPacketSize: number;
  readonly bulkOutPacketSize: number;
  readonly hasInterrupt = true;
  readonly endStyle: EndStyle;
  /** Every command container the host sent. */
  readonly commands: OperationContainer[] = [];
  /** Every bulk OUT transfer, as sent (to check alignment and zero-length packets). */
  readonly outTransfers: Buffer[] = [];
  /** Data-out phases reassembled per transaction. */
  readonly dataOut = new Map<number, Buffer>();
  readonly classRequests: Array<{ request: number; value: number; data?: Buffer }> = [];
  readonly clearedHalts: Array<EndpointRole | number> = [];
  readonly readLengths: number[] = [];
  /** Class requests the device does not implement: they stall. */
  readonly refusedRequests = new Set<number>();
  /** Cancel (0x64) drops what the device had queued, as most devices do; false leaves it for the host to drain. */
  cancelFlushes = true;
  stallNextIn = false;
  stallNextOut = false;
  closed = false;

  private queue: Unit[] = [];
  private waiting: { length: number; resolve: (b: Buffer) => void; reject: (e: UsbIoError) => void } | undefined;
  private haltedIn = false;
  private unplugged = false;
  private dataOutPending: { transactionId: number; expected: number; parts: Buffer[]; got: number } | undefined;
  private interrupt: { onData: (b: Buffer) => void; onError: (e: UsbIoError) => void } | undefined;

  constructor(
    private readonly handler: CommandHandler,
    opts: FakeOptions = {},
  ) {
    this.bulkInPacketSize = opts.packetSize ?? 512;
    this.bulkOutPacketSize = opts.packetSize ?? 512;
    this.endStyle = opts.endStyle ?? 'zlp';
  }

  // ---- what a test's handler calls ----

  /** Queues a whole container the way the device ends it. */
  sendContainer(bytes: Buffer): void {
    const full = bytes.length % this.bulkInPacketSize === 0;
    if (this.endStyle === 'qemu') this.push(bytesUnit(bytes, true));
    else if (!full) this.push(bytesUnit(bytes, true));
    else if (this.endStyle === 'zlp') {
      this.push(bytesUnit(bytes, false));
      this.push(bytesUnit(Buffer.alloc(0), true));
    } else this.push(bytesUnit(bytes, false));
  }

  respond(transactionId: number, code = 0x2001, params: number[] = []): void {
    this.sendContainer(encodeOperationContainer({ type: ContainerType.Response, code, transactionId, params }));
  }

  sendData(transactionId: number, code: number, payload: Buffer): void {
    this.sendContainer(Buffer.concat([encodeDataContainerHeader(code, transactionId, payload.length), payload]));
  }

  /** A data container of `length` pattern bytes from `offset`, produced as it is read (never held whole). */
  sendPatternData(transactionId: number, code: number, offset: number, length: number, opts: { unknownLength?: boolean } = {}): void {
    const header = encodeDataContainerHeader(code, transactionId, opts.unknownLength ? 0xffffffff : length);
    if (opts.unknownLength) header.writeUInt32LE(0xffffffff, 0);
    const total = header.length + length;
    let pos = 0;
    const full = total % this.bulkInPacketSize === 0;
    const unit: Unit = {
      get remaining() {
        return total - pos;
      },
      take: (n) => {
        const out = Buffer.allocUnsafe(Math.min(n, total - pos));
        for (let i = 0; i < out.length; i++, pos++) out[i] = pos < header.length ? (header[pos] as number) : patternByte(offset + pos - header.length);
        return out;
      },
      endsTransfer: this.endStyle === 'qemu' || !full,
    };
    this.push(unit);
    if (full && this.endStyle === 'zlp') this.push(bytesUnit(Buffer.alloc(0), true));
  }

  /** Raw bytes on the bulk IN pipe (leftovers, garbage), ending the transfer. */
  sendRaw(bytes: Buffer, endsTransfer = true): void {
    this.push(bytesUnit(bytes, endsTransfer));
  }

  event(code: number, params: number[] = [], split?: number): void {
    const bytes = encodeOperationContainer({ type: ContainerType.Event, code, transactionId: 0, params });
    if (split === undefined) this.interrupt?.onData(bytes);
    else {
      this.interrupt?.onData(bytes.subarray(0, split));
      this.interrupt?.onData(bytes.subarray(split));
    }
  }

  /** Unplug: everything pending and every later call fails with 'gone'. */
  unplug(): void {
    this.unplugged = true;
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(new UsbIoError('gone', 'LIBUSB_TRANSFER_NO_DEVICE', 5));
    this.interrupt?.onError(new UsbIoError('gone', 'LIBUSB_TRANSFER_NO_DEVICE', 5));
  }

  /** Drops whatever the device had queued (what Cancel does on most devices). */
  flush(): void {
    this.queue = [];
  }

  get queuedBytes(): number {
    return this.queue.reduce((n, u) => n + u.remaining, 0);
  }

  private push(unit: Unit): void {
    this.queue.push(unit);
    this.serve();
  }

  private serve(): void {
    const w = this.waiting;
    if (!w || this.queue.length === 0) return;
    this.waiting = undefined;
    w.resolve(this.fill(w.length));
  }

  /** One host transfer of up to `length` bytes from the queue. */
  private fill(length: number): Buffer {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < length && this.queue.length > 0) {
      const u = this.queue[0] as Unit;
      const piece = u.take(length - got);
      parts.push(piece);
      got += piece.length;
      if (u.remaining === 0) {
        this.queue.shift();
        if (u.endsTransfer) break;
      }
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, got);
  }

  // ---- UsbLink ----

  bulkIn(length: number, _timeoutMs: number): UsbPending<Buffer> {
    this.readLengths.push(length);
    if (length % this.bulkInPacketSize !== 0) throw new Error(`read of ${length} is not a multiple of the packet size`);
    let cancel: () => void = () => undefined;
    const done = new Promise<Buffer>((resolve, reject) => {
      if (this.unplugged) return reject(new UsbIoError('gone', 'LIBUSB_TRANSFER_NO_DEVICE', 5));
      if (this.stallNextIn || this.haltedIn) {
        this.stallNextIn = false;
        this.haltedIn = true;
        return reject(new UsbIoError('stall', 'LIBUSB_TRANSFER_STALL', 4));
      }
      if (this.waiting) return reject(new Error('two bulk IN reads in flight'));
      this.waiting = { length, resolve, reject };
      cancel = () => {
        if (this.waiting?.resolve === resolve) {
          this.waiting = undefined;
          reject(new UsbIoError('cancelled', 'LIBUSB_TRANSFER_CANCELLED', 3));
        }
      };
      queueMicrotask(() => this.serve());
    });
    return { done, cancel: () => cancel() };
  }

  bulkOut(data: Uint8Array, _timeoutMs: number): UsbPending<void> {
    const bytes = Buffer.from(data);
    const done = (async (): Promise<void> => {
      await Promise.resolve();
      if (this.unplugged) throw new UsbIoError('gone', 'LIBUSB_TRANSFER_NO_DEVICE', 5);
      if (this.stallNextOut) {
        this.stallNextOut = false;
        throw new UsbIoError('stall', 'LIBUSB_TRANSFER_STALL', 4);
      }
      this.outTransfers.push(bytes);
      this.receiveOut(bytes);
    })();
    return { done, cancel: () => undefined };
  }

  private receiveOut(bytes: Buffer): void {
    const d = this.dataOutPending;
    if (d) {
      if (bytes.length > 0) {
        d.parts.push(bytes);
        d.got += bytes.length;
      }
      if (d.got >= d.expected) {
        this.dataOutPending = undefined;
        const all = Buffer.concat(d.parts);
        this.dataOut.set(d.transactionId, all.subarray(12));
        const cmd = this.commands[this.commands.length - 1] as OperationContainer;
        this.handler(cmd, this);
      }
      return;
    }
    if (bytes.length === 0) return;
    const h = decodeContainerHeader(bytes);
    if (h.type === ContainerType.Command) {
      const cmd = decodeOperationContainer(bytes);
      this.commands.push(cmd);
      if (!this.expectsDataOut(cmd)) this.handler(cmd, this);
      return;
    }
    if (h.type === ContainerType.Data) {
      this.dataOutPending = { transactionId: h.transactionId, expected: h.length, parts: [bytes], got: bytes.length };
      this.receiveOut(Buffer.alloc(0));
    }
  }

  /** Operations the tests use with a data-out phase. */
  private expectsDataOut(cmd: OperationContainer): boolean {
    return cmd.code === 0x100c || cmd.code === 0x100d || cmd.code === 0x1016;
  }

  async classOut(request: number, value: number, data: Uint8Array): Promise<void> {
    await Promise.resolve();
    if (this.unplugged) throw new UsbIoError('gone', 'LIBUSB_ERROR_NO_DEVICE', -4);
    this.classRequests.push({ request, value, data: Buffer.from(data) });
    if (this.refusedRequests.has(request)) throw new UsbIoError('stall', 'LIBUSB_TRANSFER_STALL', 4);
    if (request === 0x64 && this.cancelFlushes) this.flush();
  }

  async classIn(request: number, value: number): Promise<Buffer> {
    await Promise.resolve();
    if (this.unplugged) throw new UsbIoError('gone', 'LIBUSB_ERROR_NO_DEVICE', -4);
    this.classRequests.push({ request, value });
    if (this.refusedRequests.has(request)) throw new UsbIoError('stall', 'LIBUSB_TRANSFER_STALL', 4);
    const status = Buffer.alloc(4);
    status.writeUInt16LE(4, 0);
    status.writeUInt16LE(0x2001, 2);
    return status;
  }

  async clearHalt(endpoint: EndpointRole | number): Promise<void> {
    await Promise.resolve();
    this.clearedHalts.push(endpoint);
    if (endpoint === 'bulk-in') this.haltedIn = false;
  }

  startInterrupt(onData: (bytes: Buffer) => void, onError: (err: UsbIoError) => void): void {
    this.interrupt = { onData, onError };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Receives one transaction's items up to its response; data items are concatenated into `data`. */
export async function receiveUntilResponse(t: UsbPtpTransport): Promise<{ items: PtpIncoming[]; data: Buffer; response: PtpIncoming }> {
  const items: PtpIncoming[] = [];
  const chunks: Buffer[] = [];
  for (;;) {
    const item = await t.receive();
    items.push(item);
    if (item.kind === 'data') chunks.push(Buffer.from(item.bytes));
    if (item.kind === 'response') return { items, data: Buffer.concat(chunks), response: item };
  }
}
