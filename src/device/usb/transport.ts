/**
 * PTP over USB (the Still Image class, PIMA 15740 annex D): generic containers on the bulk pipes, events
 * on the interrupt pipe, class requests for cancel, reset and status. Transfers are framed into containers
 * by ./framing.ts; a new read is issued only when the session asks for more.
 */
import { abortable, sleep } from '../../async.js';
import { ShuttleError, abortReason, throwIfAborted } from '../../errors.js';
import { DIRECT_ALIGN, takeAlignedBlock } from '../../io/direct.js';
import { silentLogger, type Logger } from '../../log.js';
import { CONTAINER_HEADER_LENGTH, ContainerType, MAX_OPERATION_PARAMS, decodeContainerHeader, encodeDataContainerHeader, encodeOperationContainer } from '../ptp/codec.js';
import { OperationCode, ResponseCode, hex16 } from '../ptp/codes.js';
import { DEFAULT_USB_QUIRKS, type UsbTransportQuirks } from '../ptp/quirks.js';
import { PtpEventListeners, type PtpCommand, type PtpEvent, type PtpIncoming, type PtpTransport } from '../ptp/transport.js';
import { UsbContainerFramer } from './framing.js';
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
/**
 * Reads at least this long go into a reused large buffer rather than new memory. Allocating 4 MiB per read
 * costs its page faults (when the kernel first writes it) and the garbage collections that external
 * memory brings on; a reader that gives its slices back (PtpIncoming.release) lets one buffer serve again.
 */
const REUSED_READ_MIN_BYTES = 64 * 1024;
/**
 * Spare large buffers kept: enough for the pending reads while a reader holds a few slices (a reader that
 * writes slices where they are keeps OpenOptions.recycle of them, and a file's last ones come back at once).
 */
const MAX_SPARE_READ_BUFFERS = 8;
/**
 * Where a large read lands in its buffer (page-aligned shared memory): one container header before a page
 * boundary. A data phase's first read then puts its payload on the boundary, and reads that continue it
 * (whole pages long) keep the payload's page offsets at page-aligned addresses, so a reader can write the
 * object's whole pages with O_DIRECT and hash them in a worker thread without copying them first.
 */
const READ_LEAD = DIRECT_ALIGN - CONTAINER_HEADER_LENGTH;
/** Largest single bulk OUT transfer of a data phase; a multiple of every packet size, so only the last one can be short. */
export const WRITE_BLOCK_BYTES = 1024 * 1024;
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

function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

/** A large read buffer while its bytes are in use: read into again only when no slice of it is lent and nothing of it waits to be framed. */
interface ReadLease {
  readonly buffer: Buffer;
  /** Data slices of it handed out and not given back yet. */
  lent: number;
  /** The framer holds none of its bytes any more. */
  framed: boolean;
  returned: boolean;
}

export class UsbPtpTransport implements PtpTransport {
  private readonly quirks: UsbTransportQuirks;
  private readonly log: Logger;
  private readonly context: Record<string, unknown>;
  private readonly writeTimeoutMs: number;
  private readonly listeners: PtpEventListeners;

  private readonly framer: UsbContainerFramer;
  private readonly ready: PtpIncoming[] = [];
  /**
   * The bulk IN transfers in flight, oldest first (they complete in that order). A receive that is aborted
   * leaves them running, so whatever the device sends next is not lost; the next receive picks it up.
   * More than one is queued only inside a data container of known length, and never past its end, so a
   * queued read can never take the response.
   */
  private readonly inflight: Array<{ pending: UsbPending<Buffer>; length: number; buffer: Buffer | undefined }> = [];
  /** Large read buffers no one holds, for the next large reads. */
  private readonly spare: Buffer[] = [];
  /** The large buffer of the transfer last given to the framer, while the framer may still hold its bytes. */
  private pushed: ReadLease | undefined;
  private stallRetried = false;
  /** Size of the next read when no container is open: depends on what the current transaction sends next. */
  private idleReadBytes = SMALL_READ_BYTES;
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
    // At open, a client that died mid-transfer may have left the rest of it on the pipe.
    this.framer = new UsbContainerFramer({ context: this.context, resynchronising: true });
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
          throw new ShuttleError('INTERNAL', `data-out source yields more than the ${totalLength} bytes announced`, {
            context: { ...this.context, code: hex16(code), transactionId },
          });
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
      const { bytes, short, buffer } = await this.read(signal);
      this.framer.push(bytes, short);
      // The framer has taken (or copied) what it kept of the previous transfer: only this one may be held now.
      this.settleFraming();
      if (buffer) this.pushed = { buffer, lent: 0, framed: false, returned: false };
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
    const c = this.framer.openContainer;
    if (c) {
      if (c.remaining === undefined) return this.largeReadBytes();
      return Math.min(Math.max(roundUp(c.remaining, mps), mps), this.largeReadBytes());
    }
    return roundUp(Math.max(this.idleReadBytes, mps), mps);
  }

  private largeReadBytes(): number {
    return roundUp(LARGE_READ_BYTES, this.link.bulkInPacketSize);
  }

  /** Submits one bulk IN read, into a spare large buffer when it is long enough to be worth one. */
  private submitRead(length: number): void {
    const buffer = length >= REUSED_READ_MIN_BYTES ? (this.spare.pop() ?? takeAlignedBlock(READ_LEAD + this.largeReadBytes(), { shared: true })) : undefined;
    this.inflight.push({ pending: this.link.bulkIn(length, 0, buffer?.subarray(READ_LEAD)), length, buffer });
  }

  /**
   * Submits reads until the queue is as deep as the link allows, but past the first only for bytes the
   * open container still owes beyond what is already asked for.
   */
  private queueReads(): void {
    if (this.inflight.length === 0) this.submitRead(this.nextReadLength());
    const c = this.framer.openContainer;
    if (!c || c.remaining === undefined) return;
    const depth = this.link.bulkInQueueDepth ?? 1;
    const mps = this.link.bulkInPacketSize;
    let asked = this.inflight.reduce((n, f) => n + f.length, 0);
    while (this.inflight.length < depth && asked < c.remaining) {
      const length = Math.min(roundUp(c.remaining - asked, mps), this.largeReadBytes());
      this.submitRead(length);
      asked += length;
    }
  }

  private async read(signal: AbortSignal | undefined): Promise<{ bytes: Buffer; short: boolean; buffer: Buffer | undefined }> {
    for (;;) {
      this.queueReads();
      const { pending, length, buffer } = this.inflight[0] as (typeof this.inflight)[number];
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
      const into = buffer !== undefined && bytes.buffer === buffer.buffer;
      // A link that read into memory of its own left the buffer untouched.
      if (buffer !== undefined && !into) this.spare.push(buffer);
      return { bytes, short: bytes.length < length || bytes.length % this.link.bulkInPacketSize !== 0, buffer: into ? buffer : undefined };
    }
  }

  /** Takes what the received transfers frame: session items are queued, events go to the listeners. */
  private frame(): void {
    for (let f = this.framer.next(); f; f = this.framer.next()) {
      if (f.kind === 'event') this.listeners.emit(f.event);
      else if (f.kind === 'discarded') this.log.debug({ ...this.context, dropped: f.bytes, problem: f.problem }, 'dropping leftover bytes while resynchronising');
      else if (f.kind === 'data' && this.pushed && f.bytes.buffer === this.pushed.buffer.buffer) this.ready.push({ ...f, release: this.lend(this.pushed) });
      else {
        // Once a data phase or a transaction has ended, the device sends a response next (a command sizes its own reads).
        if (f.kind === 'data-end' || f.kind === 'response') this.idleReadBytes = SMALL_READ_BYTES;
        this.ready.push(f);
      }
    }
    this.settleFraming();
  }

  /** A slice of `lease`'s buffer goes out: the release it carries counts once, however often it is called. */
  private lend(lease: ReadLease): () => void {
    lease.lent += 1;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      lease.lent -= 1;
      this.recycle(lease);
    };
  }

  /** Once the framer holds nothing of the last transfer's buffer, that buffer waits only for its slices. */
  private settleFraming(): void {
    const lease = this.pushed;
    if (!lease || this.framer.holds(lease.buffer.buffer)) return;
    this.pushed = undefined;
    lease.framed = true;
    this.recycle(lease);
  }

  private recycle(lease: ReadLease): void {
    if (lease.returned || lease.lent > 0 || !lease.framed || this.closed) return;
    lease.returned = true;
    if (this.spare.length < MAX_SPARE_READ_BUFFERS) this.spare.push(lease.buffer);
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
    this.framer.restart();
    // Slices dropped here are never given back: their buffer is left to the collector.
    this.pushed = undefined;
    this.ready.length = 0;
    this.idleReadBytes = SMALL_READ_BYTES;
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
