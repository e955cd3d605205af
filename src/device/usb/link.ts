/**
 * What the PTP-over-USB transport needs from one claimed USB interface: bulk transfers both ways, class
 * requests on the control pipe, clear-halt, and a continuously polled interrupt endpoint. libusb.ts
 * implements it over node-usb; unit tests implement it with a scripted device. Nothing here imports `usb`.
 */

/** Why a USB operation failed, in the terms the transport reacts to. */
export type UsbFailure =
  /** The endpoint (or the control pipe, for a request the device does not implement) answered STALL. */
  | 'stall'
  | 'timeout'
  /** The device was unplugged or reset away. */
  | 'gone'
  /** Cancelled by us (close, abort). */
  | 'cancelled'
  /** Another driver or program holds the interface. */
  | 'busy'
  /** No permission to open the device node. */
  | 'access'
  /** The device sent more than the buffer holds. */
  | 'overflow'
  | 'io';

export class UsbIoError extends Error {
  override readonly name = 'UsbIoError';

  constructor(
    readonly failure: UsbFailure,
    message: string,
    /** libusb's error or transfer status number, when the failure came from libusb. */
    readonly errno?: number,
  ) {
    super(message);
  }
}

export function isUsbFailure(err: unknown, failure: UsbFailure): boolean {
  return err instanceof UsbIoError && err.failure === failure;
}

/** A submitted transfer: its outcome, and a way to cancel it (the outcome then rejects with 'cancelled'). */
export interface UsbPending<T> {
  readonly done: Promise<T>;
  cancel(): void;
}

export type EndpointRole = 'bulk-in' | 'bulk-out' | 'interrupt-in';

export interface UsbLink {
  /** wMaxPacketSize of the bulk IN endpoint: reads are multiples of it, and a shorter packet ends a transfer. */
  readonly bulkInPacketSize: number;
  readonly bulkOutPacketSize: number;
  /**
   * How many bulk IN transfers may be pending at once (default 1). With more than one, they complete in
   * the order they were submitted, as USB host controllers run an endpoint's transfers in order.
   */
  readonly bulkInQueueDepth?: number;
  /**
   * One bulk IN transfer of at most `length` bytes (a multiple of bulkInPacketSize). Resolves with the
   * bytes received: fewer than `length` means the device ended the transfer with a short packet.
   * `timeoutMs` 0 waits forever. With `into` (at least `length` bytes) the bytes are read into its start
   * rather than into new memory, so the caller can reuse its buffers; a link may ignore it.
   */
  bulkIn(length: number, timeoutMs: number, into?: Buffer): UsbPending<Buffer>;
  /** One bulk OUT transfer. An empty buffer sends a zero-length packet. */
  bulkOut(data: Uint8Array, timeoutMs: number): UsbPending<void>;
  /** Class request to the interface, host to device (the link fills in wIndex). */
  classOut(request: number, value: number, data: Uint8Array, timeoutMs: number): Promise<void>;
  /** Class request to the interface, device to host. */
  classIn(request: number, value: number, length: number, timeoutMs: number): Promise<Buffer>;
  clearHalt(endpoint: EndpointRole | number, timeoutMs: number): Promise<void>;
  /** Whether the interface has an interrupt IN endpoint at all. */
  readonly hasInterrupt: boolean;
  /**
   * Keeps transfers queued on the interrupt endpoint so that events are caught even while bulk traffic
   * runs; calls `onData` with each completed transfer and `onError` once if polling dies.
   */
  startInterrupt(onData: (bytes: Buffer) => void, onError: (err: UsbIoError) => void): void;
  /** Releases the interface (re-attaching a kernel driver we detached) and closes the device. Never throws. */
  close(): Promise<void>;
}
