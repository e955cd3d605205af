/**
 * PTP over USB (the Still Image class, PIMA 15740 annex D): generic containers on the bulk pipes, events
 * on the interrupt pipe, class requests for cancel, reset and status. Framing follows the packet rules:
 * a container ends with a short packet (or a zero-length one on a packet boundary, which some devices
 * never send), so a read may end inside a container, exactly at its end, or run into the next one; data
 * is passed on in the slices it arrives in, and a new read is issued only when the session asks for more.
 */
import { abortable, sleep } from '../../async.js';
import { ShuttleError, abortReason, throwIfAborted } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import {
  CONTAINER_HEADER_LENGTH,
  ContainerType,
  MAX_OPERATION_PARAMS,
  UNKNOWN_DATA_LENGTH,
  decodeContainerHeader,
  decodeOperationContainer,
  encodeDataContainerHeader,
  encodeOperationContainer,
  protocolError,
  type ContainerHeader,
} from '../ptp/codec.js';
import { OperationCode, ResponseCode, hex16 } from '../ptp/codes.js';
import { DEFAULT_USB_QUIRKS, type UsbTransportQuirks } from '../ptp/quirks.js';
import { PtpEventListeners, type PtpCommand, type PtpEvent, type PtpIncoming, type PtpTransport } from '../ptp/transport.js';
import { UsbIoError, isUsbFailure, type UsbLink, type UsbPending } from './link.js';

/** Still Image class requests (bRequest), sent to the interface. */
export const StillImageRequest = { Cancel: 0x64, GetExtendedEventData: 0x65, DeviceReset: 0x66, GetDeviceStatus: 0x67 } as const;
/** The code a Cancel request carries before the transaction id. */
const CANCEL_REQUEST_CODE = 0x4001;

/**
 * Reads of object data: 4 MiB, a multiple of every packet size. Under emulation each transfer costs a
 * round trip through the guest's kernel and the emulated controller, so fewer and larger ones are faster;
 * a header plus a 1 MiB partial-object block also fits one.
 */
export const LARGE_READ_BYTES = 4 * 1024 * 1024;
/** First read of a dataset (DeviceInfo, ObjectInfo, handle lists): most fit; longer ones continue with reads sized to what is left. */
export const DATASET_READ_BYTES = 16 * 1024;
/** Enough for any response; a multiple of every packet size. */
export const SMALL_READ_BYTES = 1024;
/**
 * Operations whose data phase is object bytes: their first read is large. Reads are sized because a
 * usbfs transfer allocates kernel buffers for its whole length, which costs when most of it stays unused.
 */
const OBJECT_DATA_OPERATIONS: ReadonlySet<number> = new Set([
  OperationCode.GetObject,
  OperationCode.GetThumb,
  OperationCode.GetPartialObject,
  OperationCode.AndroidGetPartialObject64,
  OperationCode.NikonGetPartialObjectEx,
  0x9172, // Canon EOS GetPartialObject64
  0x9107, // Canon EOS GetPartialObject
]);
/** Largest single bulk OUT transfer of a data phase; a multiple of every packet size, so only the last one can be short. */
export const WRITE_BLOCK_BYTES = 1024 * 1024;
const LONGEST_OPERATION_CONTAINER = CONTAINER_HEADER_LENGTH + 4 * MAX_OPERATION_PARAMS;
const LONGEST_EVENT_BYTES = 64 * 1024;
const CONTROL_TIMEOUT_MS = 5_000;
const DEFAULT_WRITE_TIMEOUT_MS = 20_000;
const STATUS_POLLS = 20;
const STATUS_POLL_INTERVAL_MS = 50;

const EMPTY = Buffer.alloc(0);

export interface UsbTransportOptions {
  quirks?: Partial<UsbTransportQuirks>;
  logger?: Logger;
  /** Facts about the device (ids, bus, port) added to every error. */
  context?: Record<string, unknown>;
  /** Longest one bulk OUT transfer may wait for the device to accept it. */
  writeTimeoutMs?: number;
}

interface OpenContainer {
  transactionId: number;
  code: number;
  /** Payload bytes still to come; undefined when the device announced an unknown length (> 4 GiB). */
  remaining: number | undefined;
}

function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

export class UsbPtpTransport implements PtpTransport {
  private readonly quirks: UsbTransportQuirks;
  private readonly log: Logger;
  private readonly context: Record<string, unknown>;
  private readonly writeTimeoutMs: number;
  private readonly listeners: PtpEventListeners;

  /** Bytes received and not yet framed. */
  private rx: Buffer = EMPTY;
  /** The transfer that delivered rx's last byte ended short (the device closed the container there). */
  private rxShort = false;
  /** rx begins where a transfer began (nothing of that transfer was framed yet). */
  private rxFresh = false;
  private container: OpenContainer | undefined;
  private readonly ready: PtpIncoming[] = [];
  /**
   * The bulk IN transfers in flight, oldest first (they complete in that order). A receive that is aborted
   * leaves them running, so whatever the device sends next is not lost; the next receive picks it up.
   * More than one is queued only inside a data container of known length, and never past its end, so a
   * queued read can never take the response.
   */
  private readonly inflight: Array<{ pending: UsbPending<Buffer>; length: number }> = [];
  private stallRetried = false;
  /** Size of the next read when no container is open: depends on what the current transaction sends next. */
  private idleReadBytes = SMALL_READ_BYTES;
  /** After a cancel, reset or framing error: drop transfers until one starts with a plausible container. */
  private resync = true;
  private lastTransactionId = 0;
  /** Cancel and reset run one at a time, and the next command waits for them. */
  private recovery: Promise<void> = Promise.resolve();
  private deviceStatusRefused = false;
  private deviceResetRefused = false;
  private eventBytes: Buffer = EMPTY;
  private gone: ShuttleError | undefined;
  private closed = false;

  constructor(
    private readonly link: UsbLink,
    opts: UsbTransportOptions = {},
  ) {
    this.quirks = { ...DEFAULT_USB_QUIRKS, ...opts.quirks };
    this.log = opts.logger ?? silentLogger;
    this.listeners = new PtpEventListeners(this.log);
    this.context = opts.context ?? {};
    this.writeTimeoutMs = opts.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS;
    if (link.hasInterrupt) {
      link.startInterrupt(
        (bytes) => this.onInterrupt(bytes),
        (err) => this.onInterruptError(err),
      );
    }
  }

  /** The device was unplugged (every operation now fails with DEVICE_GONE). */
  get isGone(): boolean {
    return this.gone !== undefined;
  }

  // ---- commands and data out ----

  async sendCommand(command: PtpCommand, signal?: AbortSignal): Promise<void> {
    await abortable(this.recovery, signal);
    this.assertUsable();
    this.lastTransactionId = command.transactionId;
    this.idleReadBytes = this.firstReadFor(command);
    const bytes = encodeOperationContainer({ type: ContainerType.Command, code: command.code, transactionId: command.transactionId, params: [...command.params] });
    try {
      await this.write(bytes, true, signal);
    } catch (err) {
      if (!isUsbFailure(err, 'stall')) throw this.linkError(err, `sending command ${hex16(command.code)}`);
      // Devices refuse a command while they still hold an earlier transaction (QEMU's usb-mtp after a
      // client died mid-transfer): recover the way libgphoto2 does, then try once more.
      this.log.info({ ...this.context, operationCode: hex16(command.code) }, 'device stalled a command; resetting the transaction state');
      await this.reset(signal);
      this.idleReadBytes = this.firstReadFor(command);
      try {
        await this.write(bytes, true, signal);
      } catch (again) {
        throw this.linkError(again, `sending command ${hex16(command.code)} after a reset`);
      }
    }
  }

  async sendData(transactionId: number, code: number, totalLength: number, chunks: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<void> {
    this.assertUsable();
    let pending: Buffer = encodeDataContainerHeader(code, transactionId, totalLength);
    let sent = 0;
    try {
      for await (const chunk of chunks) {
        sent += chunk.byteLength;
        if (sent > totalLength) {
          throw new ShuttleError('INTERNAL', `data-out source yields more than the ${totalLength} bytes announced`, { context: { ...this.context, code: hex16(code), transactionId } });
        }
        pending = pending.length === 0 ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : Buffer.concat([pending, chunk]);
        // Only whole blocks go out before the end: a short transfer would end the container early.
        while (pending.length >= WRITE_BLOCK_BYTES) {
          await this.write(pending.subarray(0, WRITE_BLOCK_BYTES), false, signal);
          pending = pending.subarray(WRITE_BLOCK_BYTES);
        }
      }
      if (sent !== totalLength) {
        throw new ShuttleError('INTERNAL', `data-out source ended after ${sent} of ${totalLength} bytes`, { context: { ...this.context, code: hex16(code), transactionId } });
      }
      await this.write(pending, true, signal, CONTAINER_HEADER_LENGTH + totalLength);
    } catch (err) {
      throw err instanceof UsbIoError ? this.linkError(err, `sending data for ${hex16(code)}`) : err;
    }
  }

  /**
   * One bulk OUT transfer. `final` marks the end of a container: when the container's length is a
   * multiple of the packet size, a zero-length packet tells the device it is complete.
   */
  private async write(bytes: Buffer, final: boolean, signal: AbortSignal | undefined, containerLength = bytes.length): Promise<void> {
    const mps = this.link.bulkOutPacketSize;
    if (bytes.length > 0) {
      const p = this.link.bulkOut(bytes, this.writeTimeoutMs);
      await abortable(p.done, signal, () => p.cancel());
    }
    if (final && containerLength % mps === 0) {
      const zlp = this.link.bulkOut(EMPTY, this.writeTimeoutMs);
      await abortable(zlp.done, signal, () => zlp.cancel());
    }
  }

  // ---- receiving ----

  async receive(signal?: AbortSignal): Promise<PtpIncoming> {
    throwIfAborted(signal);
    for (;;) {
      const next = this.ready.shift();
      if (next) return next;
      this.frame();
      if (this.ready.length > 0) continue;
      this.assertUsable();
      const { bytes, short } = await this.read(signal);
      this.rxFresh = this.rx.length === 0;
      this.rx = this.rx.length === 0 ? bytes : Buffer.concat([this.rx, bytes]);
      this.rxShort = short;
    }
  }

  private firstReadFor(command: PtpCommand): number {
    if (command.dataPhase !== 'in') return SMALL_READ_BYTES;
    if (!OBJECT_DATA_OPERATIONS.has(command.code)) return DATASET_READ_BYTES;
    // An object of known size is asked for whole when smaller than a large read: under emulation the
    // kernel's buffer for the unused rest of 4 MiB cost more than the transfer of a small file.
    const expected = command.expectedDataBytes;
    if (expected === undefined) return LARGE_READ_BYTES;
    return Math.min(LARGE_READ_BYTES, Math.max(DATASET_READ_BYTES, CONTAINER_HEADER_LENGTH + expected));
  }

  private nextReadLength(): number {
    const mps = this.link.bulkInPacketSize;
    const c = this.container;
    if (c) {
      if (c.remaining === undefined) return roundUp(LARGE_READ_BYTES, mps);
      return Math.min(Math.max(roundUp(c.remaining, mps), mps), roundUp(LARGE_READ_BYTES, mps));
    }
    return roundUp(Math.max(this.idleReadBytes, mps), mps);
  }

  /**
   * Submits reads until the queue is as deep as the link allows, but past the first only for bytes the
   * open container still owes beyond what is already asked for.
   */
  private queueReads(): void {
    if (this.inflight.length === 0) {
      const length = this.nextReadLength();
      this.inflight.push({ pending: this.link.bulkIn(length, 0), length });
    }
    const c = this.container;
    if (!c || c.remaining === undefined) return;
    const depth = this.link.bulkInQueueDepth ?? 1;
    const mps = this.link.bulkInPacketSize;
    let asked = this.inflight.reduce((n, f) => n + f.length, 0);
    while (this.inflight.length < depth && asked < c.remaining) {
      const length = Math.min(roundUp(c.remaining - asked, mps), roundUp(LARGE_READ_BYTES, mps));
      this.inflight.push({ pending: this.link.bulkIn(length, 0), length });
      asked += length;
    }
  }

  private async read(signal: AbortSignal | undefined): Promise<{ bytes: Buffer; short: boolean }> {
    for (;;) {
      this.queueReads();
      const { pending, length } = this.inflight[0] as { pending: UsbPending<Buffer>; length: number };
      let bytes: Buffer;
      try {
        bytes = await abortable(pending.done, signal);
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal);
        // The reads queued behind a failed one belong to the same failure: none of them is trusted.
        await this.dropInflight();
        if (isUsbFailure(err, 'stall') && !this.stallRetried) {
          // libgphoto2: a stalled bulk IN is cleared and read once more.
          this.stallRetried = true;
          this.log.debug(this.context, 'bulk IN stalled; clearing the halt');
          await this.link.clearHalt('bulk-in', CONTROL_TIMEOUT_MS).catch((e: unknown) => this.log.debug({ err: e }, 'clear halt failed'));
          continue;
        }
        throw this.linkError(err, 'reading from the camera');
      }
      if (this.inflight[0]?.pending === pending) this.inflight.shift();
      this.stallRetried = false;
      // A zero-length packet is the end marker of a container that filled its last packet: nothing to frame.
      if (bytes.length === 0) continue;
      return { bytes, short: bytes.length < length || bytes.length % this.link.bulkInPacketSize !== 0 };
    }
  }

  /** Turns received bytes into session items. Leaves an incomplete header or response in rx for the next read. */
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
      const problem = this.implausible(h);
      if (problem) {
        this.badFraming(problem);
        continue;
      }
      this.resync = false;
      if (h.type === ContainerType.Data) {
        const total = h.length === UNKNOWN_DATA_LENGTH ? undefined : h.length - CONTAINER_HEADER_LENGTH;
        this.ready.push({ kind: 'data-start', transactionId: h.transactionId, code: h.code, totalLength: total });
        this.rx = this.rx.subarray(CONTAINER_HEADER_LENGTH);
        this.rxFresh = false;
        if (total === 0) this.ready.push({ kind: 'data-end', transactionId: h.transactionId });
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
      if (op.type === ContainerType.Response) {
        this.idleReadBytes = SMALL_READ_BYTES;
        this.ready.push({ kind: 'response', code: op.code, transactionId: op.transactionId, params: op.params });
      } else {
        this.listeners.emit({ code: op.code, transactionId: op.transactionId, params: op.params });
      }
    }
  }

  private frameData(c: OpenContainer): void {
    if (c.remaining === undefined) {
      // Without a length, the container ends with a short transfer. A device that ended it exactly on a
      // packet boundary and sent no zero-length packet goes straight on to the response: a short fresh
      // transfer that is exactly a response to this transaction ends the data instead of joining it.
      if (this.rxFresh && this.rxShort && this.looksLikeResponse(this.rx, c.transactionId)) {
        this.endContainer();
        return;
      }
      const bytes = this.rx;
      this.rx = EMPTY;
      this.ready.push({ kind: 'data', transactionId: c.transactionId, bytes });
      if (this.rxShort) this.endContainer();
      return;
    }
    const n = Math.min(c.remaining, this.rx.length);
    this.ready.push({ kind: 'data', transactionId: c.transactionId, bytes: this.rx.subarray(0, n) });
    this.rx = this.rx.subarray(n);
    this.rxFresh = false;
    c.remaining -= n;
    if (c.remaining === 0) this.endContainer();
  }

  private endContainer(): void {
    const c = this.container;
    if (!c) return;
    this.container = undefined;
    this.idleReadBytes = SMALL_READ_BYTES;
    this.ready.push({ kind: 'data-end', transactionId: c.transactionId });
  }

  private looksLikeResponse(bytes: Buffer, transactionId: number): boolean {
    if (bytes.length < CONTAINER_HEADER_LENGTH || bytes.length > LONGEST_OPERATION_CONTAINER) return false;
    const h = decodeContainerHeader(bytes);
    return h.type === ContainerType.Response && h.length === bytes.length && h.transactionId === transactionId && (h.length - CONTAINER_HEADER_LENGTH) % 4 === 0;
  }

  /** Why a header cannot start a container from the device, or undefined if it can. */
  private implausible(h: ContainerHeader): string | undefined {
    if (h.type === ContainerType.Data) return h.length < CONTAINER_HEADER_LENGTH ? `data container length ${h.length} is shorter than its header` : undefined;
    if (h.type === ContainerType.Response || h.type === ContainerType.Event) {
      if (h.length < CONTAINER_HEADER_LENGTH || h.length > LONGEST_OPERATION_CONTAINER || (h.length - CONTAINER_HEADER_LENGTH) % 4 !== 0) {
        return `container of type ${h.type} with length ${h.length}`;
      }
      return undefined;
    }
    return `container type ${h.type} (length ${h.length}) is not data, response or event`;
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
      this.log.debug({ ...this.context, dropped, problem }, 'dropping leftover bytes while resynchronising');
      return;
    }
    this.resync = true;
    throw protocolError('USB receive', problem, { ...this.context, dropped });
  }

  // ---- events ----

  private onInterrupt(bytes: Buffer): void {
    this.eventBytes = this.eventBytes.length === 0 ? bytes : Buffer.concat([this.eventBytes, bytes]);
    while (this.eventBytes.length >= CONTAINER_HEADER_LENGTH) {
      const h = decodeContainerHeader(this.eventBytes, 'USB event');
      if (h.type !== ContainerType.Event || h.length < CONTAINER_HEADER_LENGTH || h.length > LONGEST_EVENT_BYTES) {
        this.log.debug({ ...this.context, type: h.type, length: h.length }, 'dropping malformed interrupt data');
        this.eventBytes = EMPTY;
        return;
      }
      // Long events (Canon) arrive over several interrupt transfers.
      if (this.eventBytes.length < h.length) return;
      const body = this.eventBytes.subarray(CONTAINER_HEADER_LENGTH, h.length);
      const params: number[] = [];
      for (let off = 0; off + 4 <= body.length && params.length < MAX_OPERATION_PARAMS; off += 4) params.push(body.readUInt32LE(off));
      this.eventBytes = this.eventBytes.subarray(h.length);
      this.listeners.emit({ code: h.code, transactionId: h.transactionId, params });
    }
  }

  private onInterruptError(err: UsbIoError): void {
    if (err.failure === 'gone') {
      this.markGone();
      return;
    }
    this.log.warn({ ...this.context, err }, 'event polling stopped; camera events are no longer seen');
  }

  onEvent(listener: (event: PtpEvent) => void): () => void {
    return this.listeners.add(listener);
  }

  // ---- cancel, reset, status ----

  /** Class request Cancel for `transactionId`, then waits until the device reports it is idle (if it can). */
  async cancel(transactionId: number, signal?: AbortSignal): Promise<void> {
    if (this.closed || this.gone) return;
    const run = this.recovery.then(() => this.doCancel(transactionId));
    this.recovery = run.catch(() => undefined);
    await abortable(run, signal);
  }

  private async doCancel(transactionId: number): Promise<void> {
    const data = Buffer.alloc(6);
    data.writeUInt16LE(CANCEL_REQUEST_CODE, 0);
    data.writeUInt32LE(transactionId >>> 0, 2);
    try {
      await this.link.classOut(StillImageRequest.Cancel, 0, data, CONTROL_TIMEOUT_MS);
    } catch (err) {
      if (isUsbFailure(err, 'gone')) this.markGone();
      throw this.linkError(err, 'cancel request');
    } finally {
      this.discardFraming();
    }
    await this.waitUntilIdle();
  }

  /**
   * Back to an idle device after a failure: Device Reset (0x66) where the device has it, else Cancel of
   * the last transaction; then both bulk halts cleared and framing restarted.
   */
  async reset(signal?: AbortSignal): Promise<void> {
    if (this.closed) return;
    const run = this.recovery.then(() => this.doReset());
    this.recovery = run.catch(() => undefined);
    await abortable(run, signal);
  }

  private async doReset(): Promise<void> {
    this.assertUsable();
    // Nothing read before the reset belongs to anything after it.
    await this.dropInflight();
    let reset = false;
    if (this.quirks.deviceResetRequest && !this.deviceResetRefused) {
      try {
        await this.link.classOut(StillImageRequest.DeviceReset, 0, EMPTY, CONTROL_TIMEOUT_MS);
        reset = true;
      } catch (err) {
        if (isUsbFailure(err, 'gone')) this.markGone();
        if (!isUsbFailure(err, 'stall')) throw this.linkError(err, 'device reset request');
        this.deviceResetRefused = true;
        this.log.debug(this.context, 'device refuses Device Reset; cancelling instead');
      }
    }
    if (!reset) {
      const data = Buffer.alloc(6);
      data.writeUInt16LE(CANCEL_REQUEST_CODE, 0);
      data.writeUInt32LE(this.lastTransactionId >>> 0, 2);
      await this.link.classOut(StillImageRequest.Cancel, 0, data, CONTROL_TIMEOUT_MS).catch((err: unknown) => {
        if (isUsbFailure(err, 'gone')) this.markGone();
        this.log.debug({ ...this.context, err }, 'cancel during reset failed');
      });
    }
    for (const ep of ['bulk-in', 'bulk-out'] as const) {
      await this.link.clearHalt(ep, CONTROL_TIMEOUT_MS).catch((err: unknown) => this.log.debug({ ...this.context, err, endpoint: ep }, 'clear halt failed'));
    }
    this.discardFraming();
    this.assertUsable();
    await this.waitUntilIdle();
  }

  /** Get Device Status until the device is no longer busy; clears the halts it reports. */
  private async waitUntilIdle(): Promise<void> {
    if (!this.quirks.deviceStatusRequest || this.deviceStatusRefused) return;
    for (let i = 0; i < STATUS_POLLS; i++) {
      let status: Buffer;
      try {
        status = await this.link.classIn(StillImageRequest.GetDeviceStatus, 0, 64, CONTROL_TIMEOUT_MS);
      } catch (err) {
        if (isUsbFailure(err, 'stall')) {
          this.deviceStatusRefused = true;
          this.log.debug(this.context, 'device refuses Get Device Status');
          return;
        }
        if (isUsbFailure(err, 'gone')) this.markGone();
        this.log.debug({ ...this.context, err }, 'Get Device Status failed');
        return;
      }
      if (status.length < 4) return;
      const length = Math.min(status.readUInt16LE(0), status.length);
      const code = status.readUInt16LE(2);
      if (code === ResponseCode.DeviceBusy) {
        await sleep(STATUS_POLL_INTERVAL_MS);
        continue;
      }
      // The parameters name endpoints the device halted as part of the cancel.
      for (let off = 4; off + 4 <= length; off += 4) {
        const address = status.readUInt32LE(off) & 0xff;
        await this.link.clearHalt(address, CONTROL_TIMEOUT_MS).catch((err: unknown) => this.log.debug({ ...this.context, err, address }, 'clear halt failed'));
      }
      return;
    }
    this.log.warn(this.context, 'device still busy after cancel');
  }

  private discardFraming(): void {
    this.rx = EMPTY;
    this.rxFresh = false;
    this.container = undefined;
    this.ready.length = 0;
    this.idleReadBytes = SMALL_READ_BYTES;
    this.resync = true;
  }

  private async dropInflight(): Promise<void> {
    const dropped = this.inflight.splice(0);
    // Newest first, so that an older transfer never completes into a gap left by a cancelled newer one.
    for (const f of dropped.reverse()) f.pending.cancel();
    await Promise.all(dropped.map((f) => f.pending.done.catch(() => undefined)));
  }

  // ---- state and errors ----

  private markGone(): void {
    this.gone ??= new ShuttleError('DEVICE_GONE', 'the camera was disconnected', { context: this.context, retryable: true });
  }

  private assertUsable(): void {
    if (this.gone) throw this.gone;
    if (this.closed) throw new ShuttleError('TRANSPORT', 'the USB connection to the camera is closed', { context: this.context });
  }

  /** A link failure as the ShuttleError the session and pipeline understand. */
  private linkError(err: unknown, doing: string): Error {
    if (err instanceof ShuttleError) return err;
    if (!(err instanceof UsbIoError)) return err instanceof Error ? err : new Error(String(err));
    const context = { ...this.context, usbError: err.failure, errno: err.errno };
    switch (err.failure) {
      case 'gone':
        this.markGone();
        return this.gone as ShuttleError;
      case 'timeout':
        return new ShuttleError('PTP_TIMEOUT', `${doing}: the camera did not respond`, { context, cause: err, retryable: true });
      case 'cancelled':
        return this.closed
          ? new ShuttleError('TRANSPORT', `${doing}: the USB connection was closed`, { context, cause: err })
          : new ShuttleError('ABORTED', `${doing}: cancelled`, { context, cause: err });
      default:
        return new ShuttleError('TRANSPORT', `${doing}: USB ${err.failure} (${err.message})`, { context, cause: err, retryable: err.failure === 'stall' || err.failure === 'io' });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.dropInflight();
    await this.link.close();
  }
}
