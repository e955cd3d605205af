/**
 * The one error type of Shuttle. `code` is stable (scripts and tests match on it), `context` carries
 * the typed facts (path, device, destination, expected/actual values), `retryable` tells a retry
 * decorator whether trying again can help.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_UNREADABLE'
  | 'USAGE'
  | 'SOURCE_UNREADABLE'
  | 'SOURCE_CHANGED'
  | 'SOURCE_NOT_FOUND'
  /** A source went past a bound on its listing (objects, folder depth, listed entries): broken or hostile. */
  | 'SOURCE_LIMIT'
  | 'DEST_NOT_WRITABLE'
  | 'DEST_MARKER_MISSING'
  | 'DEST_MARKER_MISMATCH'
  | 'DEST_VOLUME_MISMATCH'
  | 'DEST_NO_SPACE'
  | 'DEST_WRITE_FAILED'
  | 'VERIFY_MISMATCH'
  | 'LOCKED'
  | 'JOURNAL'
  | 'MANIFEST_INVALID'
  | 'NAME_INVALID'
  | 'ABORTED'
  | 'PTP_PROTOCOL'
  | 'PTP_RESPONSE'
  | 'PTP_TIMEOUT'
  | 'DEVICE_GONE'
  | 'TRANSPORT'
  | 'UPLOAD_FAILED'
  | 'UPLOAD_VERIFY'
  /** A notification (webhook, ntfy, email) or an MQTT publish could not be delivered. */
  | 'NOTIFY_FAILED'
  | 'INTERNAL';

/**
 * The facts named in the context of the codes typed so far, with their types. Keys beyond these are still
 * allowed (device ids, host and port, paths), so a code is typed here without touching every throw site;
 * a required field must be given wherever the code is thrown.
 */
export interface ErrorContexts {
  PTP_PROTOCOL: {
    /** The operation, dataset or stage being decoded. */
    operation: string;
    offset?: number;
    expected?: unknown;
    actual?: unknown;
    transactionId?: number;
    /** Bytes dropped with a container that could not be framed. */
    dropped?: number;
  };
  PTP_RESPONSE: {
    operation: string;
    operationCode?: string;
    response?: string;
    /** The response code the device answered with; absent when no response was involved (a capture that ran the card full). */
    responseCode?: number;
    transactionId?: number;
    params?: number[];
  };
  PTP_TIMEOUT: {
    operation?: string;
    operationCode?: string;
    transactionId?: number;
    timeoutMs?: number;
    /** A data phase below its rate floor: bytes received over `waitedMs` of waiting, against `minDataRate` bytes/s. */
    bytes?: number;
    waitedMs?: number;
    minDataRate?: number;
    usbError?: string;
    errno?: string | number;
  };
  DEVICE_GONE: {
    usbError?: string;
    errno?: string | number;
  };
  TRANSPORT: {
    usbError?: string;
    /** errno of the failed call: a Node system error code (ECONNREFUSED) or a libusb error number. */
    errno?: string | number;
    host?: string;
    port?: number;
    /** Which PTP/IP connection: command or event. */
    connection?: string;
    initFailReason?: number;
  };
}

/** What `context` holds for `code`: its typed facts, and any others. */
export type ErrorContext<C extends ErrorCode> = (C extends keyof ErrorContexts ? ErrorContexts[C] : unknown) & Record<string, unknown>;

export interface ErrorOptions<C extends ErrorCode = ErrorCode> {
  context?: ErrorContext<C>;
  cause?: unknown;
  retryable?: boolean;
}

/** A code whose context has required facts takes options with that context. */
type OptionsArgs<C extends ErrorCode> = Record<string, never> extends ErrorContext<C> ? [options?: ErrorOptions<C>] : [options: ErrorOptions<C> & { context: ErrorContext<C> }];

export class ShuttleError<C extends ErrorCode = ErrorCode> extends Error {
  override readonly name = 'ShuttleError';
  readonly code: C;
  readonly context: Readonly<ErrorContext<C>>;
  readonly retryable: boolean;

  constructor(code: C, message: string, ...[options = {}]: OptionsArgs<C>) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = Object.freeze({ ...options.context }) as ErrorContext<C>;
    this.retryable = options.retryable ?? false;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, context: this.context, retryable: this.retryable };
  }
}

export function isShuttleError<C extends ErrorCode = ErrorCode>(err: unknown, code?: C): err is ShuttleError<C> {
  return err instanceof ShuttleError && (code === undefined || err.code === code);
}

/** The reason an aborted signal carries, as a ShuttleError unless it already is one. */
export function abortReason(signal: AbortSignal): ShuttleError {
  const r: unknown = signal.reason;
  if (r instanceof ShuttleError) return r;
  return new ShuttleError('ABORTED', 'operation aborted', { cause: r });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal);
}

/** errno of a Node system error, if any. */
export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}
