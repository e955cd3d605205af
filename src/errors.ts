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
  /** A wipe was asked for and its gate stayed closed: nothing was deleted from the source (the reason says why). */
  | 'WIPE_REFUSED'
  /** Deleting a verified file from its source failed (a pulled card, a read-only mount, a protected object). */
  | 'SOURCE_DELETE_FAILED'
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
  /** A card could not be unmounted or powered off. */
  | 'EJECT_FAILED'
  /** An HTTP API request without a valid token, or an action from another site. */
  | 'AUTH'
  /** A notification (webhook, ntfy, email) or an MQTT publish could not be delivered. */
  | 'NOTIFY_FAILED'
  | 'INTERNAL';

/**
 * The facts named in the context of the codes typed so far, with their types. Keys beyond these are still
 * allowed (device ids, host and port, paths), so a code is typed here without touching every throw site;
 * a required field must be given wherever the code is thrown.
 */
export interface ErrorContexts {
  SOURCE_UNREADABLE: {
    /** The file or folder on the source (or the local copy an upload reads). */
    path: string;
    offset?: number;
    errno?: string;
  };
  DEST_NOT_WRITABLE: DestinationContext;
  DEST_NO_SPACE: DestinationContext & {
    neededBytes?: number;
    minFreeBytes?: number;
    availableBytes?: number;
  };
  /** A write, sync or publish that failed: the file or folder, or the rename's two ends. */
  DEST_WRITE_FAILED: Partial<DestinationContext> & {
    from?: string;
    to?: string;
  };
  DEST_MARKER_MISSING: Partial<DestinationContext> & {
    /** The destination's root, when `path` is a file below it. */
    destination?: string;
    /** Where the marker was looked for. */
    marker?: string;
  };
  DEST_MARKER_MISMATCH: DestinationContext & { expectedId?: string };
  DEST_VOLUME_MISMATCH: DestinationContext;
  VERIFY_MISMATCH: {
    /** The file on the source. */
    path: string;
    /** The destination's root. */
    destination: string;
    /** The xxh128 read from the source, and read back from the copy. */
    expected: string | undefined;
    actual: string | undefined;
  };
  LOCKED: {
    /** The lock file or the control socket. */
    path: string;
    /** What the holder said it is doing (store/lock.ts). */
    holder?: unknown;
    waitedMs?: number;
  };
  MANIFEST_INVALID: {
    /** The manifest file (generation or chain). */
    file: string;
    sequence?: number;
    expected?: unknown;
    actual?: unknown;
  };
  UPLOAD_FAILED: {
    /** The S3 call that failed. */
    op?: string;
    bucket?: string;
    key?: string;
    /** HTTP status and S3 error code of the answer; absent when none came. */
    status?: number | undefined;
    s3Code?: string | undefined;
    errno?: string | undefined;
    uploadId?: string;
    /** Set when the key already holds other content (a conflict, not a failure to retry). */
    expectedSha256?: string;
  };
  UPLOAD_VERIFY: {
    /** The local copy, when that is what does not match (else the object or part does). */
    path?: string;
    bucket?: string;
    key?: string;
    partNumber?: number;
    /** What was compared: a hash algorithm, or a field of the stored object. */
    algorithm?: string;
    field?: string;
    expected?: unknown;
    actual?: unknown;
  };
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

/** A destination's failures name the destination (or the file in it) and, for a failed call, which one and its errno. */
interface DestinationContext {
  path: string;
  op?: string;
  errno?: string | undefined;
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
