import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { join } from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ApiConfig } from '../../config/index.js';
import { ShuttleError, errnoCode } from '../../errors.js';

/**
 * Who may use the API. With a token, every request carries it: `Authorization: Bearer TOKEN` (scripts,
 * Prometheus) or the session cookie the login page sets (browsers). A cookie travels with requests other
 * sites make too, so an action (POST) with the cookie also needs the CSRF header (the value of the
 * `shuttle_csrf` cookie, which only a page of this origin can read) and a same-origin Origin.
 * Without a token the API listens on loopback only, and actions still refuse other origins and other
 * Host names (a web page on the internet reaching 127.0.0.1 through the user's browser, or DNS rebinding).
 */

export const SESSION_COOKIE = 'shuttle_session';
export const CSRF_COOKIE = 'shuttle_csrf';
export const CSRF_HEADER = 'x-shuttle-csrf';
/** systemd's credential name (LoadCredential=api_token:/etc/shuttle/api-token). */
export const TOKEN_CREDENTIAL = 'api_token';

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIPv4(v4) && v4.startsWith('127.');
}

/** The token and where it came from (for the log: never the token itself); undefined when none is set. */
export async function resolveApiToken(api: ApiConfig, env: NodeJS.ProcessEnv): Promise<{ token: string; origin: string } | undefined> {
  if (api.token !== undefined) return { token: api.token.trim(), origin: 'config' };
  const fromFile = async (path: string, origin: string, missingIsNone: boolean): Promise<{ token: string; origin: string } | undefined> => {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (cause) {
      if (missingIsNone && errnoCode(cause) === 'ENOENT') return undefined;
      throw new ShuttleError('CONFIG_UNREADABLE', `cannot read the API token file ${path} (${errnoCode(cause) ?? 'error'})`, { cause, context: { path } });
    }
    const token = text.trim();
    if (token.length < 16) throw new ShuttleError('CONFIG_INVALID', `the API token in ${path} is shorter than 16 characters`, { context: { path } });
    return { token, origin };
  };
  if (api.tokenFile !== undefined) return fromFile(api.tokenFile, `file ${api.tokenFile}`, false);
  const dir = env['CREDENTIALS_DIRECTORY'];
  if (dir) return fromFile(join(dir, TOKEN_CREDENTIAL), 'systemd credential', true);
  return undefined;
}

/** Refuses an API reachable beyond this machine with no token: anyone on the network could cancel jobs. */
export function refuseOpenListen(host: string, token: string | undefined): void {
  if (token !== undefined || isLoopbackHost(host)) return;
  throw new ShuttleError(
    'USAGE',
    `[api] listen = "${host}:…" is reachable beyond this machine, and no token is set: set [api] token or token_file (or the api_token credential), or listen on 127.0.0.1`,
    { context: { host, reason: 'open-api' } },
  );
}

/** Equal strings, in time independent of where they differ (hashing first evens out the lengths). */
function same(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Paths open without a token: the login form and its target. */
const PUBLIC = new Set(['/login', '/api/v1/login']);

export class ApiAuth {
  /** The session cookie's value: derived from the token, so that it survives restarts and dies with a new token. */
  readonly #session: string | undefined;

  constructor(readonly token: string | undefined) {
    this.#session = token === undefined ? undefined : createHmac('sha256', token).update('shuttle session v1').digest('base64url');
  }

  get enabled(): boolean {
    return this.token !== undefined;
  }

  /** Whether the login token is right; the caller then sets the cookies (loginCookies). */
  accepts(token: string): boolean {
    return this.token !== undefined && same(token.trim(), this.token);
  }

  /** The session and CSRF cookies of a browser that logged in. */
  loginCookies(): { session: string; csrf: string } {
    if (this.#session === undefined) throw new ShuttleError('USAGE', 'no API token is configured: there is nothing to log in to');
    return { session: this.#session, csrf: randomBytes(18).toString('base64url') };
  }

  /**
   * Throws an AUTH error (401: no or wrong credentials; 403: an action from another site) unless the
   * request may go on.
   */
  check(req: FastifyRequest): void {
    const path = req.url.split('?')[0]!;
    const unsafe = UNSAFE.has(req.method);
    if (!this.enabled) {
      // A page elsewhere that points a name of its own at 127.0.0.1 (DNS rebinding) would read the API otherwise.
      const host = req.headers.host;
      if (host === undefined || !isLoopbackHost(host.replace(/:\d+$/, ''))) throw denied(403, `without a token the API answers only to this machine (Host: ${host ?? 'none'})`);
    }
    if (unsafe) this.#sameOrigin(req);
    if (!this.enabled) return;
    if (PUBLIC.has(path)) return;
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
    if (bearer !== undefined) {
      if (same(bearer, this.token!)) return;
      throw denied(401, 'wrong API token');
    }
    const session = req.cookies[SESSION_COOKIE];
    if (session === undefined) throw denied(401, 'this API needs a token: Authorization: Bearer TOKEN, or log in at /login');
    if (!same(session, this.#session!)) throw denied(401, 'the session is no longer valid (the token changed?): log in again at /login');
    if (!unsafe) return;
    const csrf = req.cookies[CSRF_COOKIE];
    const header = req.headers[CSRF_HEADER];
    if (csrf === undefined || typeof header !== 'string' || !same(header, csrf)) {
      throw denied(403, `an action with the session cookie needs the ${CSRF_HEADER} header (the value of the ${CSRF_COOKIE} cookie)`);
    }
  }

  /** An action whose Origin (or Sec-Fetch-Site) says another site sent it is refused, token or not. */
  #sameOrigin(req: FastifyRequest): void {
    const host = req.headers.host;
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin' && site !== 'none') throw denied(403, `an action from another site (Sec-Fetch-Site: ${site}) is refused`);
    const origin = req.headers.origin;
    if (origin === undefined) return;
    let originHost: string;
    try {
      originHost = new URL(origin).host;
    } catch {
      throw denied(403, 'an action with an unreadable Origin is refused');
    }
    if (originHost !== host) throw denied(403, `an action from another origin (${origin}) is refused`);
  }
}

function denied(status: 401 | 403, message: string): ShuttleError {
  return new ShuttleError('AUTH', message, { context: { http: status } });
}

/** A 401 for a browser's page request is a trip to the login form instead. */
export function wantsHtml(req: FastifyRequest): boolean {
  return req.method === 'GET' && (req.headers.accept ?? '').includes('text/html');
}

export function setLoginCookies(reply: FastifyReply, cookies: { session: string; csrf: string }, secure: boolean): void {
  const common = { path: '/', sameSite: 'strict' as const, secure, maxAge: 30 * 24 * 3600 };
  reply.setCookie(SESSION_COOKIE, cookies.session, { ...common, httpOnly: true });
  // Readable by the page (double-submit): it sends the value back in the CSRF header.
  reply.setCookie(CSRF_COOKIE, cookies.csrf, { ...common, httpOnly: false });
}
