import { createHmac } from 'node:crypto';
import type { Transporter } from 'nodemailer';
import type { AlertKind } from '../../../config/index.js';
import { ShuttleError } from '../../../errors.js';
import type { CardReport } from '../../card-report.js';

/**
 * Where notifications go: a webhook (signed JSON), an ntfy-style push, an SMTP mail. Each channel only
 * delivers; what to say and how often is decided in alerts.ts. Secrets stay inside the channel: `where`
 * is what logs may show (the scheme, host and port, never a path, query or password, which often carry
 * tokens).
 */

export interface AlertMessage {
  /** Stays the same over retries, so a receiver can drop a duplicate. */
  id: string;
  kind: AlertKind;
  station: string;
  at: string;
  title: string;
  text: string;
  priority: 'default' | 'high';
  /** ntfy tags (emoji short codes). */
  tags: string[];
  /** The card reports of done and failed jobs. */
  reports: CardReport[];
  /** The facts behind a disk-low or cloud-unreachable message. */
  details: Record<string, unknown>;
}

export interface AlertChannel {
  readonly name: 'webhook' | 'ntfy' | 'email';
  readonly where: string;
  send(m: AlertMessage, signal: AbortSignal): Promise<void>;
}

const REQUEST_TIMEOUT_MS = 15_000;
/** ntfy turns a longer body into an attachment; the full report is on the destinations and in the mail. */
const NTFY_MAX_BYTES = 3_900;

export const SIGNATURE_HEADER = 'x-shuttle-signature';
export const TIMESTAMP_HEADER = 'x-shuttle-timestamp';

function where(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}`;
}

/** The HMAC the webhook sends: over the timestamp and the body, so an old body cannot be replayed with a new time. */
export function webhookSignature(secret: string, timestamp: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

async function post(url: URL, init: { headers: Record<string, string>; body: string }, signal: AbortSignal, channel: string): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      headers: init.headers,
      body: init.body,
      signal: AbortSignal.any([signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]),
      redirect: 'error',
    });
  } catch (cause) {
    const reason = cause instanceof Error ? ((cause.cause as { code?: string } | undefined)?.code ?? cause.message) : String(cause);
    throw new ShuttleError('NOTIFY_FAILED', `${channel} ${where(url.href)} did not answer: ${reason}`, { cause, retryable: true, context: { channel } });
  }
  // The answer's body is not read beyond draining it: a receiver's error page is not worth keeping.
  await res.body?.cancel().catch(() => undefined);
  if (!res.ok) {
    throw new ShuttleError('NOTIFY_FAILED', `${channel} ${where(url.href)} answered ${res.status} ${res.statusText}`, {
      retryable: res.status >= 500 || res.status === 429,
      context: { channel, status: res.status },
    });
  }
}

export function webhookChannel(url: string, secret: string | undefined): AlertChannel {
  return {
    name: 'webhook',
    where: where(url),
    async send(m, signal) {
      const body = JSON.stringify(m);
      const timestamp = String(Math.floor(Date.now() / 1000));
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        'user-agent': 'shuttle',
        'x-shuttle-event': m.kind,
        'x-shuttle-delivery': m.id,
        [TIMESTAMP_HEADER]: timestamp,
      };
      if (secret !== undefined) headers[SIGNATURE_HEADER] = webhookSignature(secret, timestamp, body);
      await post(new URL(url), { headers, body }, signal, 'webhook');
    },
  };
}

/** A header value ntfy decodes: RFC 2047 for anything beyond ASCII (fetch refuses such header values). */
function headerText(text: string): string {
  const flat = text.replace(/[\r\n]+/g, ' ');
  return /^[\x20-\x7e]*$/.test(flat) ? flat : `=?UTF-8?B?${Buffer.from(flat, 'utf8').toString('base64')}?=`;
}

function truncateUtf8(text: string, maxBytes: number): string {
  const b = Buffer.from(text, 'utf8');
  if (b.length <= maxBytes) return text;
  return `${b
    .subarray(0, maxBytes)
    .toString('utf8')
    .replace(/\uFFFD$/, '')}\n…`;
}

export function ntfyChannel(topicUrl: string, token: string | undefined): AlertChannel {
  const url = new URL(topicUrl);
  // Credentials in the URL become a Basic header: fetch refuses URLs that carry them.
  const basic = url.username !== '' ? Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64') : undefined;
  url.username = '';
  url.password = '';
  return {
    name: 'ntfy',
    where: where(topicUrl),
    async send(m, signal) {
      const headers: Record<string, string> = {
        'content-type': 'text/plain; charset=utf-8',
        title: headerText(m.title),
        priority: m.priority === 'high' ? '4' : '3',
        tags: m.tags.join(','),
      };
      if (token !== undefined) headers['authorization'] = `Bearer ${token}`;
      else if (basic !== undefined) headers['authorization'] = `Basic ${basic}`;
      await post(url, { headers, body: truncateUtf8(m.text, NTFY_MAX_BYTES) }, signal, 'ntfy');
    },
  };
}

export interface EmailSettings {
  smtp: string;
  from: string;
  to: readonly string[];
  username?: string | undefined;
  password?: string | undefined;
}

export function emailChannel(s: EmailSettings): AlertChannel {
  const u = new URL(s.smtp);
  const secure = u.protocol === 'smtps:';
  const user = u.username !== '' ? decodeURIComponent(u.username) : s.username;
  const pass = u.password !== '' ? decodeURIComponent(u.password) : s.password;
  const options = {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port !== '' ? Number(u.port) : secure ? 465 : 587,
    secure,
    ...(user !== undefined && pass !== undefined ? { auth: { user, pass } } : {}),
    connectionTimeout: REQUEST_TIMEOUT_MS,
    greetingTimeout: REQUEST_TIMEOUT_MS,
    socketTimeout: REQUEST_TIMEOUT_MS,
    // Nothing of a message is taken from files or URLs: the content is ours, but keep it that way.
    disableFileAccess: true,
    disableUrlAccess: true,
  };
  // nodemailer is loaded with the first email: alerts are rare, and a daemon that sends none never reads it.
  let transport: Promise<Transporter> | undefined;
  return {
    name: 'email',
    where: `${u.protocol}//${u.host}`,
    async send(m, signal) {
      signal.throwIfAborted();
      try {
        transport ??= import('nodemailer').then((mod) => mod.default.createTransport(options));
        await (await transport).sendMail({
          from: s.from,
          to: [...s.to],
          subject: m.title,
          text: m.text,
          headers: { 'X-Shuttle-Event': m.kind, 'X-Shuttle-Delivery': m.id },
          attachments: m.reports.map((r) => ({ filename: `shuttle-report-job${r.job}.json`, content: `${JSON.stringify(r, null, 2)}\n`, contentType: 'application/json' })),
        });
      } catch (cause) {
        const e = cause as { code?: string; responseCode?: number; message?: string };
        // nodemailer's messages name the server's answer, never the password.
        throw new ShuttleError('NOTIFY_FAILED', `email via ${this.where} failed: ${e.code ?? ''} ${e.responseCode ?? ''} ${e.message ?? String(cause)}`.replace(/\s+/g, ' '), {
          cause,
          retryable: true,
          context: { channel: 'email', smtpCode: e.responseCode },
        });
      }
    },
  };
}
