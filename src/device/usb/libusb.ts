/**
 * The UsbLink over node-usb (libusb): claims a camera's interface (detaching a kernel driver that holds
 * it), and maps libusb's transfer statuses and error numbers to UsbIoError. The `usb` package is loaded
 * on first use, so commands that never touch USB do not need its native binding.
 */
import type { Device, InEndpoint, Interface, OutEndpoint, Transfer } from 'usb';
import { within } from '../../async.js';
import { ShuttleError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { UsbIoError, type EndpointRole, type UsbFailure, type UsbLink, type UsbPending } from './link.js';

type UsbModule = typeof import('usb');

let loaded: Promise<UsbModule> | undefined;

/** The node-usb module; TRANSPORT when its native binding cannot load (it needs libudev at run time). */
export function loadUsb(): Promise<UsbModule> {
  loaded ??= import('usb').catch((cause: unknown) => {
    loaded = undefined;
    throw new ShuttleError('TRANSPORT', `USB support is unavailable: ${cause instanceof Error ? cause.message : String(cause)} (the usb binding needs libudev1 and libusb-1.0-0)`, {
      cause,
    });
  });
  return loaded;
}

// libusb transfer statuses (callbacks) and error numbers (synchronous calls).
const TRANSFER_STATUS: Record<number, UsbFailure> = { 1: 'io', 2: 'timeout', 3: 'cancelled', 4: 'stall', 5: 'gone', 6: 'overflow' };
const ERROR_NUMBER: Record<number, UsbFailure> = { [-1]: 'io', [-3]: 'access', [-4]: 'gone', [-5]: 'gone', [-6]: 'busy', [-7]: 'timeout', [-8]: 'overflow', [-9]: 'stall' };

/** A libusb exception (or anything thrown by node-usb) as a UsbIoError. */
export function toUsbIoError(err: unknown): UsbIoError {
  if (err instanceof UsbIoError) return err;
  const errno = typeof err === 'object' && err !== null && typeof (err as { errno?: unknown }).errno === 'number' ? (err as { errno: number }).errno : undefined;
  const message = err instanceof Error ? err.message : String(err);
  const failure = errno === undefined ? 'io' : ((errno > 0 ? TRANSFER_STATUS[errno] : ERROR_NUMBER[errno]) ?? 'io');
  return new UsbIoError(failure, message, errno);
}

/** Bulk, interrupt and direction from an endpoint descriptor. */
const TRANSFER_TYPE_BULK = 2;
const TRANSFER_TYPE_INTERRUPT = 3;
const ENDPOINT_IN = 0x80;
const CLASS_INTERFACE_OUT = 0x21;
const CLASS_INTERFACE_IN = 0xa1;
const CLOSE_STEP_TIMEOUT_MS = 2_000;

/** Waits for one step of closing, at most CLOSE_STEP_TIMEOUT_MS: a device that never answers must not hold up the rest; a step that fails is as good as done. */
async function closeStep(p: Promise<void>): Promise<void> {
  await within(
    p.catch(() => undefined),
    CLOSE_STEP_TIMEOUT_MS,
  );
}

/**
 * One endpoint's bulk transfers, one at a time, through a single reused libusb transfer. node-usb keeps
 * a strong reference from each native transfer to its completion callback; a fresh transfer per read
 * whose callback can reach the transfer (and the buffer it resolved with) is never collected, which
 * leaked every buffer read. Reusing one transfer avoids that and the allocation per read; its callback
 * reaches the channel only through a holder that is emptied on dispose, so no cycle outlives the link.
 */
class Channel {
  private transfer: Transfer | undefined;
  private holder: { channel?: Channel } = {};
  private transferTimeoutMs = -1;
  private current: { resolve: (actual: number) => void; reject: (err: UsbIoError) => void } | undefined;

  constructor(private readonly ep: InEndpoint | OutEndpoint) {}

  /** No transfer of this channel is pending. */
  get idle(): boolean {
    return this.current === undefined;
  }

  submit(buffer: Buffer, timeoutMs: number): UsbPending<number> {
    if (this.current) {
      return { done: Promise.reject(new UsbIoError('io', `a transfer is already active on endpoint 0x${this.ep.address.toString(16)}`)), cancel: () => undefined };
    }
    if (!this.transfer || this.transferTimeoutMs !== timeoutMs) {
      // The timeout belongs to the libusb transfer; a different one needs a new transfer.
      this.holder.channel = undefined;
      const holder: { channel?: Channel } = { channel: this };
      this.holder = holder;
      this.transfer = this.ep.makeTransfer(timeoutMs, (error, _buf, actual) => holder.channel?.complete(error, actual));
      this.transferTimeoutMs = timeoutMs;
    }
    const transfer = this.transfer;
    const done = new Promise<number>((resolve, reject) => {
      this.current = { resolve, reject };
    });
    try {
      transfer.submit(buffer);
    } catch (err) {
      this.complete(err, 0);
    }
    return {
      done,
      cancel: () => {
        if (!this.current) return;
        try {
          transfer.cancel();
        } catch {
          // Already complete: nothing to cancel.
        }
      },
    };
  }

  dispose(): void {
    this.holder.channel = undefined;
    this.transfer = undefined;
  }

  complete(error: unknown, actual: number): void {
    const c = this.current;
    this.current = undefined;
    if (!c) return;
    if (error) c.reject(toUsbIoError(error));
    else c.resolve(actual);
  }
}

/**
 * A transfer may fail before anyone awaits it: a read queued behind another, or any submit once the
 * device is gone (libusb refuses it at once). Its caller awaits it in turn and gets the error then; until
 * that, the rejection must not count as unhandled, which would end the process.
 */
function settledLater<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

export interface LibusbLinkOptions {
  interfaceNumber: number;
  logger?: Logger;
}

/**
 * Bulk IN transfers kept pending at once: the device fills the next while the host handles the last.
 * Two, since usbfs caps the memory of all pending transfers (usbfs_memory_mb, 16 MiB by default) and a
 * large read holds up to 4 MiB.
 */
const BULK_IN_QUEUE_DEPTH = 2;

class LibusbLink implements UsbLink {
  readonly bulkInPacketSize: number;
  readonly bulkInQueueDepth = BULK_IN_QUEUE_DEPTH;
  readonly bulkOutPacketSize: number;
  readonly hasInterrupt: boolean;
  private polling = false;
  private closed = false;
  /** One channel per transfer that may be pending on the bulk IN endpoint. */
  private readonly inChannels: Channel[];
  private readonly outChannel: Channel;

  constructor(
    private readonly device: Device,
    private readonly iface: Interface,
    private readonly bulkInEp: InEndpoint,
    private readonly bulkOutEp: OutEndpoint,
    private readonly interruptEp: InEndpoint | undefined,
    private readonly detachedKernelDriver: boolean,
    private readonly log: Logger,
  ) {
    this.bulkInPacketSize = Math.max(1, bulkInEp.descriptor.wMaxPacketSize & 0x7ff);
    this.bulkOutPacketSize = Math.max(1, bulkOutEp.descriptor.wMaxPacketSize & 0x7ff);
    this.hasInterrupt = interruptEp !== undefined;
    this.inChannels = Array.from({ length: BULK_IN_QUEUE_DEPTH }, () => new Channel(bulkInEp));
    this.outChannel = new Channel(bulkOutEp);
  }

  bulkIn(length: number, timeoutMs: number, into?: Buffer): UsbPending<Buffer> {
    const buffer = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    // A free channel; if none is free, the first one refuses (more reads than bulkInQueueDepth is a bug).
    const channel = this.inChannels.find((c) => c.idle) ?? (this.inChannels[0] as Channel);
    const p = channel.submit(buffer, timeoutMs);
    return { done: settledLater(p.done.then((actual) => buffer.subarray(0, actual))), cancel: p.cancel };
  }

  bulkOut(data: Uint8Array, timeoutMs: number): UsbPending<void> {
    const buffer = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const p = this.outChannel.submit(buffer, timeoutMs);
    return { done: settledLater(p.done.then(() => undefined)), cancel: p.cancel };
  }

  private control(requestType: number, request: number, value: number, dataOrLength: Buffer | number, timeoutMs: number): Promise<Buffer | number | undefined> {
    return new Promise((resolve, reject) => {
      try {
        this.device.timeout = timeoutMs;
        this.device.controlTransfer(requestType, request, value, this.iface.interfaceNumber, dataOrLength, (error, data) => {
          if (error) reject(toUsbIoError(error));
          else resolve(data);
        });
      } catch (err) {
        reject(toUsbIoError(err));
      }
    });
  }

  async classOut(request: number, value: number, data: Uint8Array, timeoutMs: number): Promise<void> {
    await this.control(CLASS_INTERFACE_OUT, request, value, Buffer.from(data.buffer, data.byteOffset, data.byteLength), timeoutMs);
  }

  async classIn(request: number, value: number, length: number, timeoutMs: number): Promise<Buffer> {
    const data = await this.control(CLASS_INTERFACE_IN, request, value, length, timeoutMs);
    return Buffer.isBuffer(data) ? data : Buffer.alloc(0);
  }

  clearHalt(endpoint: EndpointRole | number, timeoutMs: number): Promise<void> {
    const address =
      typeof endpoint === 'number' ? endpoint : endpoint === 'bulk-in' ? this.bulkInEp.address : endpoint === 'bulk-out' ? this.bulkOutEp.address : this.interruptEp?.address;
    if (address === undefined) return Promise.resolve();
    this.device.timeout = timeoutMs;
    return new Promise((resolve, reject) => {
      try {
        this.device.__clearHalt(address, (error) => (error ? reject(toUsbIoError(error)) : resolve()));
      } catch (err) {
        reject(toUsbIoError(err));
      }
    });
  }

  startInterrupt(onData: (bytes: Buffer) => void, onError: (err: UsbIoError) => void): void {
    const ep = this.interruptEp;
    if (!ep || this.polling) return;
    const mps = Math.max(1, ep.descriptor.wMaxPacketSize & 0x7ff);
    ep.on('data', (data: Buffer) => {
      if (data.length > 0) onData(data);
    });
    ep.on('error', (err: unknown) => {
      this.polling = false;
      if (!this.closed) onError(toUsbIoError(err));
    });
    // Several transfers stay queued (libgphoto2 keeps ten) so that no event is missed during bulk traffic;
    // each is a few packets long so that a long event arrives in one piece.
    ep.startPoll(4, Math.ceil(512 / mps) * mps);
    this.polling = true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const ep = this.interruptEp;
    if (ep && this.polling && ep.pollActive) {
      this.polling = false;
      await closeStep(new Promise<void>((resolve) => ep.stopPoll(() => resolve())));
    }
    await closeStep(new Promise<void>((resolve, reject) => this.iface.release(true, (err) => (err ? reject(err) : resolve()))));
    if (this.detachedKernelDriver) {
      try {
        this.iface.attachKernelDriver();
      } catch (err) {
        this.log.debug({ err }, 'could not re-attach the kernel driver');
      }
    }
    try {
      this.device.close();
    } catch (err) {
      this.log.debug({ err }, 'closing the USB device failed');
    }
    for (const c of this.inChannels) c.dispose();
    this.outChannel.dispose();
  }
}

function endpointsOf(iface: Interface): { bulkIn?: InEndpoint; bulkOut?: OutEndpoint; interrupt?: InEndpoint } {
  const found: { bulkIn?: InEndpoint; bulkOut?: OutEndpoint; interrupt?: InEndpoint } = {};
  for (const ep of iface.endpoints) {
    const type = ep.descriptor.bmAttributes & 0x03;
    const isIn = (ep.descriptor.bEndpointAddress & ENDPOINT_IN) !== 0;
    if (type === TRANSFER_TYPE_BULK && isIn) found.bulkIn ??= ep as InEndpoint;
    else if (type === TRANSFER_TYPE_BULK && !isIn) found.bulkOut ??= ep as OutEndpoint;
    else if (type === TRANSFER_TYPE_INTERRUPT && isIn) found.interrupt ??= ep as InEndpoint;
  }
  return found;
}

/** What failed while opening, as the error a user can act on. */
function openError(err: unknown, context: Record<string, unknown>, doing: string): ShuttleError {
  const e = toUsbIoError(err);
  const hint =
    e.failure === 'busy'
      ? ': another program holds the camera (gvfs-gphoto2-volume-monitor, gphoto2, a file manager); close it or run `gio mount -s gphoto2`'
      : e.failure === 'access'
        ? ': no permission on the device node (add the user to plugdev, or install udev/60-shuttle.rules)'
        : e.failure === 'gone'
          ? ': the camera was disconnected'
          : '';
  return new ShuttleError(e.failure === 'gone' ? 'DEVICE_GONE' : 'TRANSPORT', `${doing} failed (${e.message})${hint}`, {
    context: { ...context, usbError: e.failure, errno: e.errno },
    cause: err,
  });
}

/** Opens the device and claims the PTP interface. The device must come from node-usb's device list. */
export function openLibusbLink(device: Device, opts: LibusbLinkOptions & { context?: Record<string, unknown> }): UsbLink {
  const log = opts.logger ?? silentLogger;
  const context = opts.context ?? {};
  try {
    device.open();
  } catch (err) {
    throw openError(err, context, 'opening the USB device');
  }
  let detached = false;
  try {
    const iface = device.interface(opts.interfaceNumber);
    try {
      if (iface.isKernelDriverActive()) {
        iface.detachKernelDriver();
        detached = true;
        log.info({ ...context, interface: opts.interfaceNumber }, 'detached the kernel driver from the camera interface');
      }
    } catch (err) {
      // Not supported on this platform, or nothing attached: claiming will tell.
      log.debug({ err }, 'kernel driver check failed');
    }
    try {
      iface.claim();
    } catch (err) {
      if (detached) {
        try {
          iface.attachKernelDriver();
        } catch {
          // Leave it detached; the claim error is what matters.
        }
      }
      throw openError(err, context, 'claiming the camera interface');
    }
    const eps = endpointsOf(iface);
    if (!eps.bulkIn || !eps.bulkOut) {
      throw new ShuttleError('TRANSPORT', 'the camera interface has no bulk IN/OUT endpoint pair', { context: { ...context, interface: opts.interfaceNumber } });
    }
    return new LibusbLink(device, iface, eps.bulkIn, eps.bulkOut, eps.interrupt, detached, log);
  } catch (err) {
    try {
      device.close();
    } catch {
      // Keep the first error.
    }
    throw err;
  }
}
