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
  | 'INTERNAL';

export interface ErrorOptions {
  context?: Record<string, unknown>;
  cause?: unknown;
  retryable?: boolean;
}

export class ShuttleError extends Error {
  override readonly name = 'ShuttleError';
  readonly code: ErrorCode;
  readonly context: Readonly<Record<string, unknown>>;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = Object.freeze({ ...(options.context ?? {}) });
    this.retryable = options.retryable ?? false;
  }

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, context: this.context, retryable: this.retryable };
  }
}

export function isShuttleError(err: unknown, code?: ErrorCode): err is ShuttleError {
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
