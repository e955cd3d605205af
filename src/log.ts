import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string;
  /** 1 = stdout (daemon, for journald), 2 = stderr (CLI commands, so stdout carries only their output). */
  fd: 1 | 2;
  /** Pretty output only for humans at a terminal; machines get JSON lines. */
  pretty?: boolean;
}

/** Keys whose values never reach a log line (credentials, signed URLs). */
export const REDACT_PATHS = [
  'secretAccessKey',
  'sessionToken',
  'accessKeyId',
  '*.secretAccessKey',
  '*.sessionToken',
  '*.accessKeyId',
  'credentials',
  '*.credentials',
  'authorization',
  '*.authorization',
  'headers.authorization',
  // The HTTP API's token and session cookie (src/daemon/http).
  'token',
  '*.token',
  'cookie',
  'headers.cookie',
];

export function createLogger(opts: LogOptions): Logger {
  const level = opts.level ?? process.env['SHUTTLE_LOG_LEVEL'] ?? 'info';
  const pretty = opts.pretty ?? false;
  const base = { level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { pid: process.pid } };
  if (pretty) {
    return pino(base, pino.transport({ target: 'pino-pretty', options: { destination: opts.fd, colorize: true } }) as DestinationStream);
  }
  return pino(base, pino.destination({ fd: opts.fd, sync: true }));
}

/** A logger that drops everything: for library callers and unit tests that do not care. */
export const silentLogger: Logger = pino({ level: 'silent' });
