import type { FastifyError } from 'fastify';
import { ShuttleError, isShuttleError } from '../../errors.js';

/** How the API answers errors: a status and `{error: {code, message}}` with a ShuttleError code. */

/** The status and `{error: {code, message}}` body of an error: a ShuttleError's code, or USAGE for a bad request. */
export function errorResponse(err: unknown): { status: number; body: { error: { code: string; message: string } } } {
  if (isShuttleError(err)) {
    const http = err.context['http'];
    const status = typeof http === 'number' ? http : statusOfCode(err.code);
    return { status, body: { error: { code: err.code, message: err.message } } };
  }
  const e = err as Partial<FastifyError> & { validation?: unknown };
  const status = typeof e.statusCode === 'number' && e.statusCode >= 400 ? e.statusCode : 500;
  if (status >= 500) return { status, body: { error: { code: 'INTERNAL', message: 'internal error (see the daemon log)' } } };
  return { status, body: { error: { code: 'USAGE', message: e.message ?? 'bad request' } } };
}

function statusOfCode(code: string): number {
  switch (code) {
    case 'USAGE':
    case 'CONFIG_INVALID':
      return 400;
    case 'AUTH':
      return 401;
    case 'LOCKED':
      return 409;
    default:
      return 500;
  }
}

/** A ShuttleError that the API answers with this status. */
export function httpError(status: number, message: string, code: 'USAGE' | 'AUTH' | 'LOCKED' | 'EJECT_FAILED' = 'USAGE', context: Record<string, unknown> = {}): ShuttleError {
  return new ShuttleError(code, message, { context: { ...context, http: status } });
}
