/**
 * The contract between a PTP session and the transports it runs on (USB, PTP/IP): what a session sends,
 * what it receives, in what order, and how a transport must behave under backpressure, abort and failure.
 * Transports and the session import it; neither imports the other.
 */
import type { Logger } from '../../log.js';

export type DataPhase = 'none' | 'in' | 'out';

export interface PtpCommand {
  code: number;
  transactionId: number;
  params: readonly number[];
  /** PTP/IP announces it in the request; USB infers it. */
  dataPhase: DataPhase;
  /** Payload bytes the caller expects in the data-in phase (an object's size), when it knows; only a hint. */
  expectedDataBytes?: number;
}

/** What the device sends on the command/data channel, in order. Data arrives as slices; never a whole object. */
export type PtpIncoming =
  | { kind: 'data-start'; transactionId: number; code?: number /** Payload bytes announced, undefined when unknown. */; totalLength: number | undefined }
  | {
      kind: 'data';
      transactionId: number;
      bytes: Uint8Array;
      /**
       * Gives the slice's memory back to the transport, which may then read later data into it (PTP/IP's
       * slabs); absent when the slice is the receiver's to keep. Call it only once nothing reads the bytes.
       */
      release?: () => void;
    }
  | { kind: 'data-end'; transactionId: number }
  | { kind: 'response'; code: number; transactionId: number; params: number[] };

export interface PtpEvent {
  code: number;
  transactionId: number;
  params: number[];
}

/**
 * What a session needs from a transport. `receive` is pull-based: a transport must stop reading from the
 * device (pause the socket, stop submitting bulk transfers) while unreceived data piles up, which is what
 * gives data-in phases backpressure end to end. A receive aborted by its signal must not lose the item that
 * arrives afterwards. Failures of the link reject with TRANSPORT or DEVICE_GONE.
 */
export interface PtpTransport {
  sendCommand(command: PtpCommand, signal?: AbortSignal): Promise<void>;
  /** Data-out phase of `totalLength` bytes, pulled from `chunks` as the link accepts them. */
  sendData(transactionId: number, code: number, totalLength: number, chunks: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<void>;
  receive(signal?: AbortSignal): Promise<PtpIncoming>;
  /** Events from the device (interrupt pipe, PTP/IP event connection). Returns an unsubscribe function. */
  onEvent(listener: (event: PtpEvent) => void): () => void;
  /** Asks the device to abandon a transaction (USB class request 0x64, PTP/IP Cancel packet). Best effort. */
  cancel(transactionId: number, signal?: AbortSignal): Promise<void>;
  /** Returns the device to an idle state after a failure (USB Device Reset 0x66; PTP/IP has none). */
  reset(signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

/** The listeners of one source of PTP events; one that throws is logged and does not stop the others. */
export class PtpEventListeners {
  readonly #listeners = new Set<(e: PtpEvent) => void>();

  constructor(private readonly log: Logger) {}

  add(listener: (e: PtpEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  emit(e: PtpEvent): void {
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch (err) {
        this.log.warn({ err }, 'event listener failed');
      }
    }
  }
}
