import { hostname } from 'node:os';
import { isAbsolute, normalize } from 'node:path';
import * as z from 'zod';
import { DEFAULT_KEY_TEMPLATE, parseS3Url, renderKey } from '../upload/keys.js';
import { isValidTimeZone } from '../time-zone.js';
import { OBJECT_CHECKSUMS } from '../upload/checksum.js';
import { PROVIDERS, type ProviderName } from '../upload/provider.js';
import { KEY_NAMES, LIGHT_DRIVERS, PEDAL_ACTIONS } from '../hid-vocabulary.js';
import { parseCameraSelector } from '../camera-names.js';

/**
 * The one description of Shuttle's configuration. Keys are snake_case as written in TOML, in `SHUTTLE_*`
 * variables and in programmatic overrides; the resolved `Config` has the same shape in camelCase.
 * Every table is strict, so a misspelt key is an error instead of a silently ignored setting. The
 * environment variables and their documentation are derived from this schema (see env.ts), so adding a
 * section means adding one line to `configSchema` below.
 */

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const MANIFEST_HASHES = ['xxh128', 'xxh64', 'md5'] as const;
export const DEFAULT_TEMPLATE = '{YYYY}/{YYYY-MM-DD}/{name}';
const MAX_RETRIES = 100;

export type LogLevel = (typeof LOG_LEVELS)[number];
export type ManifestHash = (typeof MANIFEST_HASHES)[number];

type SnakeToCamel<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<SnakeToCamel<Tail>>}` : S;
type CamelKeys<T> = { [K in keyof T as K extends string ? SnakeToCamel<K> : K]: T[K] };

function camelKeys<T extends object>(table: T): CamelKeys<T> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(table)) {
    out[key.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase())] = value;
  }
  return out as CamelKeys<T>;
}

/** A TOML table: strict (unknown keys rejected), resolved to camelCase keys. */
function table<Shape extends z.ZodRawShape>(shape: Shape) {
  return z.strictObject(shape).transform(camelKeys);
}

// Refinement messages are predicates: the error reads `<key>: "<value>" <message>`.

/** The canonical spelling, so `europe/berlin` and `Europe/Berlin` resolve to the same setting. */
function canonicalTimeZone(name: string): string {
  return new Intl.DateTimeFormat('en', { timeZone: name }).resolvedOptions().timeZone;
}

/** Removes a trailing separator so `/a/` and `/a` are one destination. */
function normalizeDir(p: string): string {
  const n = normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/** `format` tells the environment layer that a list of these is written like PATH (colon-separated). */
const absolutePath = z
  .string()
  .meta({ format: 'absolute-path' })
  .refine((p) => isAbsolute(p), { message: 'is not an absolute path' })
  .transform(normalizeDir);

const timeZone = z.string().refine(isValidTimeZone, { message: 'is not a known time zone' }).transform(canonicalTimeZone);

function isRelativeTemplate(t: string): boolean {
  return t.length > 0 && !t.startsWith('/') && !t.split('/').includes('..');
}

/**
 * A name pattern for include/exclude: matched against a file's name, case-insensitively. A bare
 * extension (`cr3`, `.cr3`) is short for `*.cr3`.
 */
const namePattern = z
  .string()
  .refine((p) => p.trim().length > 0 && !p.includes('/'), { message: 'is not a file name pattern (like "*.cr3" or "cr3")' })
  .transform((p) => {
    const t = p.trim().toLowerCase();
    if (/[*?[]/.test(t)) return t;
    return `*.${t.replace(/^\.+/, '')}`;
  });

const retries = z.int().min(0).max(MAX_RETRIES);

const manifestHashes = z
  .array(z.enum(MANIFEST_HASHES))
  .min(1)
  .refine((l) => new Set(l).size === l.length, { message: 'names a hash twice' });

export const ingestSchema = table({
  template: z
    .string()
    .refine(isRelativeTemplate, { message: 'is not a relative path template (no leading "/", no ".." segments)' })
    .default(DEFAULT_TEMPLATE)
    .describe('where copies go below each destination, e.g. {YYYY}/{YYYY-MM-DD}/{name}'),
  manifest_hashes: manifestHashes.default(['xxh128']).describe(`hashes written to the ASC MHL manifest (${MANIFEST_HASHES.join(', ')})`),
  job: z.string().default('').describe('job or project name recorded with each ingest'),
  client: z.string().default('').describe('who the shoot is for, as {client} in the name template (`shuttle tether --client`)'),
  session: z.string().default('').describe('the session of the shoot, as {session} in the name template (`shuttle tether --session`); {shot} counts per job, client and session'),
  // Left unset rather than resolved to a name: the system's zone is read through Date's local time (see time-zone.ts).
  time_zone: timeZone.optional().describe("IANA time zone for camera clocks that carry no zone (default: this system's, from TZ or /etc/localtime)"),
  include: z.array(namePattern).optional().describe('copy only files whose names match one of these patterns (e.g. *.cr3, jpg)'),
  exclude: z.array(namePattern).default([]).describe('never copy files whose names match one of these patterns'),
  verify_retries: retries.default(2).describe('copies retried after a failed read-back verification'),
  change_retries: retries.default(2).describe('reads retried when a source file changes while it is read'),
});

export const destinationSchema = table({
  path: absolutePath.describe('absolute path of the destination library'),
  name: z.string().min(1).optional().describe('name in logs and status (default: the path)'),
  require_volume_uuid: z.string().min(1).optional().describe('refuse the destination unless its filesystem has this UUID'),
  min_free_bytes: z.int().min(0).optional().describe('keep at least this many bytes free'),
}).transform((d) => ({ ...d, name: d.name ?? d.path }));

const destinations = z.array(destinationSchema).superRefine((list, ctx) => {
  const seen = new Set<string>();
  list.forEach((d, i) => {
    if (seen.has(d.path)) ctx.addIssue({ code: 'custom', path: [i, 'path'], message: 'is listed twice', input: d.path });
    seen.add(d.path);
  });
});

/** An entry of `[daemon] network_cameras`: a camera's announced serial (guid/uuid) or its address, HOST or HOST:PORT. */
const networkCameraEntry = z
  .string()
  .refine((e) => /^[\w.:[\]%-]{1,253}$/.test(e.trim()), { message: 'is not a camera serial or address' })
  .transform((e) => e.trim());

/** `true` (every camera), `false` (none) or an allowlist; written in the environment as true/false or a comma-separated list. */
const networkCameras = z.union([z.boolean(), z.array(networkCameraEntry).min(1)]).meta({ format: 'boolean-or-list' });

/**
 * `shuttle run`. Durations are in milliseconds. Destinations are the `[[destinations]]`; the control
 * socket's default depends on where the daemon runs (see src/daemon/socket-path.ts), so it has none here.
 */
export const daemonSchema = table({
  control_socket: absolutePath.optional().describe('unix control socket (default: $RUNTIME_DIRECTORY/control.sock, else /run/shuttle/control.sock)'),
  hot_folders: z.array(absolutePath).default([]).describe('folders where cameras or tethering software drop files; each file is ingested once it stops growing'),
  settle_ms: z.int().min(50).max(3_600_000).default(2_000).describe('a hot-folder file is complete when its size has not changed for this long'),
  batch_ms: z.int().min(0).max(3_600_000).default(1_000).describe('quiet time after the last completed hot-folder file before its batch is ingested'),
  retry_ms: z.int().min(1_000).max(86_400_000).default(60_000).describe('wait before a failed hot-folder batch is tried again'),
  watch_mounts: z.array(absolutePath).default([]).describe('ingest every filesystem mounted below these folders (e.g. /media) and cancel when it goes away'),
  max_jobs: z.int().min(1).max(64).default(4).describe('jobs running at once (jobs writing to the same destination still take turns)'),
  watchdog: z.boolean().default(true).describe('answer the systemd watchdog (WatchdogSec=) while the journal responds'),
  usb_cameras: z.boolean().default(true).describe('ingest every USB camera (PTP/MTP) plugged in, and cancel its job when it is unplugged'),
  usb_settle_ms: z.int().min(0).max(60_000).default(400).describe('a USB device is looked at once it has stayed plugged in this long (cameras re-enumerate while switching mode)'),
  usb_poll_ms: z.int().min(0).max(60_000).default(0).describe('compare the USB device list this often instead of using hotplug events (0: events where the system has them)'),
  network_cameras: networkCameras
    .default(false)
    .describe(
      'ingest PTP/IP cameras that announce themselves on the local network (mDNS _ptp._tcp, SSDP): true for every one, or a list of serials (announced guid/uuid) and addresses; off by default: a studio network may carry cameras that are not yours',
    ),
  allowed_sources: z
    .array(absolutePath)
    .default([])
    .describe(
      'folders a `shuttle request ingest` may name besides cards under the mount base, watch_mounts and hot_folders (the path is resolved with realpath and must be one of these or below one)',
    ),
});

const MiB = 1024 * 1024;
export const DEFAULT_UPLOAD_PART_SIZE = 16 * MiB;
export const DEFAULT_UPLOAD_CONCURRENCY = 4;
/** Upload order by extension: JPEGs and previews first, then everything else (`*`), RAW files included. */
export const DEFAULT_UPLOAD_PRIORITY = ['jpg', 'jpeg', 'heic', 'heif', 'hif', 'png', 'thm', 'lrv', 'xmp', '*'] as const;

function isS3Url(url: string): boolean {
  try {
    parseS3Url(url);
    return true;
  } catch {
    return false;
  }
}

function isHttpUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

function isKeyTemplate(template: string): boolean {
  try {
    renderKey(template, { station: 'station', name: 'IMG_0001.JPG', date: new Date(0), path: 'a/IMG_0001.JPG' }, { utc: true });
    return true;
  } catch {
    return false;
  }
}

/** `09:30`; `24:00` ends a window at midnight. */
const timeOfDay = z.string().refine((t) => /^(?:[01]?\d|2[0-3]):[0-5]\d$|^24:00$/.test(t), { message: 'is not a time of day HH:MM' });

/** An extension for the upload order: `jpg`, `.JPG` (both mean jpg), or `*` for every extension not listed. */
const extensionRank = z
  .string()
  .refine((e) => /^\*$|^\.?[a-z0-9]+$/i.test(e.trim()), { message: 'is not a file extension (like "jpg") or "*"' })
  .transform((e) => e.trim().replace(/^\./, '').toLowerCase());

const bandwidth = z.int().min(0);

export const uploadWindowSchema = table({
  from: timeOfDay.describe('start of the window, local time HH:MM'),
  to: timeOfDay.describe('end of the window, local time HH:MM (a window ending before it starts runs past midnight)'),
  bandwidth: bandwidth.optional().describe('bytes per second in this window; 0 pauses uploads; absent = unlimited'),
  days: z.array(z.int().min(0).max(6)).min(1).optional().describe('days it applies to, 0 = Sunday … 6 = Saturday (default: every day)'),
});

/** `[upload]`: S3 target, credentials, throughput, order and local retention (see src/upload). */
export const uploadSchema = table({
  target: z
    .string()
    .refine(isS3Url, { message: 'is not of the form s3://bucket/prefix' })
    .optional()
    .describe('where files go, s3://bucket/prefix; ingest uploads to it when set (or given with --upload)'),
  provider: z
    .enum(Object.keys(PROVIDERS) as ProviderName[])
    .optional()
    .describe(`S3 flavour: ${Object.keys(PROVIDERS).join(', ')} (default: guessed from the endpoint)`),
  endpoint: z.string().refine(isHttpUrl, { message: 'is not an http(s) URL' }).optional().describe('S3 endpoint URL (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS)'),
  region: z.string().min(1).optional().describe("region to sign for (default: $AWS_REGION, the AWS config files, or the provider's)"),
  credentials_file: absolutePath
    .optional()
    .describe('AWS-style credentials file ([default] aws_access_key_id, aws_secret_access_key); default: $CREDENTIALS_DIRECTORY, then the AWS SDK chain'),
  key_template: z
    .string()
    .refine(isKeyTemplate, { message: 'is not a valid S3 key template' })
    .default(DEFAULT_KEY_TEMPLATE)
    .describe('object key below the prefix; tokens {station} {name} {path} {YYYY} {MM} {DD} {YYYY-MM-DD} {hh} {mm} {ss}'),
  concurrency: z.int().min(1).max(64).default(DEFAULT_UPLOAD_CONCURRENCY).describe('requests in flight at once (files and parts)'),
  part_size: z
    .int()
    .min(5 * MiB)
    .max(5 * 1024 * MiB)
    .default(DEFAULT_UPLOAD_PART_SIZE)
    .describe('multipart part size in bytes (grown for files that would need more than 10,000 parts)'),
  checksum: z
    .enum(OBJECT_CHECKSUMS)
    .optional()
    .describe(
      'aws only: an S3 additional checksum stored with every object and checked after upload; sha256 (composite over the parts of a multipart upload) or crc64nvme (whole object)',
    ),
  bandwidth: bandwidth.optional().describe('upload limit in bytes per second outside the schedule windows; 0 pauses; absent = unlimited'),
  schedule: z.array(uploadWindowSchema).default([]).describe('time-of-day windows with their own bandwidth'),
  priority: z
    .array(extensionRank)
    .default([...DEFAULT_UPLOAD_PRIORITY])
    .describe('upload order by extension, earliest first; "*" stands for every extension not listed (else they go last)'),
  keep_days: z.number().min(0).optional().describe('after upload, local copies older than this many days may be removed (never the last one)'),
  keep_free_bytes: z.int().min(0).optional().describe('after upload, remove the oldest uploaded local copies while a destination has less than this free (never the last one)'),
});

/**
 * What happens to a card's (or camera's) files once they are verified: kept (never), deleted once every
 * destination holds them verified and a second read of the source matched (after-local), the same and
 * verified in the cloud too (after-cloud), or kept with a list of what was verified written at the card's
 * root (mark-done, for crews who format in the camera). See src/ingest/wipe.ts.
 */
export const WIPE_POLICIES = ['never', 'after-local', 'after-cloud', 'mark-done'] as const;
export type WipePolicy = (typeof WIPE_POLICIES)[number];

/** `[cards]`: memory cards in readers, ingested by the daemon (the card unit or watch_mounts). */
export const cardsSchema = table({
  wipe: z
    .enum(WIPE_POLICIES)
    .default('never')
    .describe(
      'after ingest: never (keep every file), after-local (delete the ingested files once every destination verified them and a second read of the card matched), after-cloud (and once verified in the cloud), mark-done (write SHUTTLE-DONE.txt at the card root instead of deleting); anything but never mounts cards read-write',
    ),
});

/** `[cameras]`: USB and network cameras ingested by the daemon. A camera cannot be marked done (PTP writes no files here). */
export const camerasSchema = table({
  wipe: z
    .enum(['never', 'after-local', 'after-cloud'])
    .default('never')
    .describe('after ingest: never, after-local or after-cloud, as for [cards] (files are deleted with PTP DeleteObject)'),
});

/** `[previews]`: whether the daemon makes previews of verified shots (for the dashboard, under the state directory). */
export const previewsSchema = table({
  make: z
    .enum(['auto', 'always', 'never'])
    .default('auto')
    .describe("the daemon's previews of verified shots and their thumbnails: auto (when something shows them: [api] listen or [tether] cameras is set), always, or never"),
});

/** `HOST:PORT` (an IPv6 host in brackets): where the HTTP API listens; port 0 picks a free one. */
export function parseListen(value: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.%\w-]+)\]|([\w.-]+)):(\d{1,5})$/.exec(value.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  return port <= 65535 ? { host: (m[1] ?? m[2])!, port } : undefined;
}

/** `[api]`: the daemon's HTTP API, live events, metrics and dashboard (src/daemon/http). */
export const apiSchema = table({
  listen: z
    .string()
    .refine((v) => parseListen(v) !== undefined, { message: 'is not HOST:PORT (an IPv6 address in brackets)' })
    .optional()
    .describe('HTTP API, dashboard and /metrics on HOST:PORT (e.g. 127.0.0.1:8650); off when absent; beyond loopback only with a token'),
  token: z
    .string()
    .superRefine((t, ctx) => {
      // The issue names the key, never the value: a token must not reach an error message or a log.
      if (t.trim().length < 16) ctx.addIssue({ code: 'custom', message: 'is shorter than 16 characters', input: '(hidden)' });
    })
    .optional()
    .describe('the API token (at least 16 characters): every request then needs it (bearer header, or the login cookie)'),
  token_file: absolutePath.optional().describe('a file holding the API token (default: $CREDENTIALS_DIRECTORY/api_token when systemd provides one)'),
}).superRefine((a, ctx) => {
  if (a.token !== undefined && a.tokenFile !== undefined) ctx.addIssue({ code: 'custom', path: ['token_file'], message: 'is set as well as token; keep one', input: a.tokenFile });
});

/**
 * A secret: its value never appears in an error message or a log line (see issues.ts). `format` tells
 * the error wording to redact it; a URL that may carry a password is shown with the password masked.
 */
const secret = z.string().min(1).meta({ format: 'secret' });

function urlWithProtocol(protocols: readonly string[]): (url: string) => boolean {
  return (url) => {
    try {
      const u = new URL(url);
      return protocols.includes(u.protocol) && u.hostname !== '';
    } catch {
      return false;
    }
  };
}

/** `mqtt://[user[:password]@]host[:port]/prefix`; the path (default `shuttle`) prefixes every topic. */
const mqttUrl = z
  .string()
  .meta({ format: 'credential-url' })
  .refine(urlWithProtocol(['mqtt:', 'mqtts:']), { message: 'is not an MQTT URL like mqtt://host:1883/prefix (or mqtts://)' });

const credentialHttpUrl = z
  .string()
  .meta({ format: 'credential-url' })
  .refine(urlWithProtocol(['http:', 'https:']), { message: 'is not an http(s) URL' });

/** `[events]`: the daemon's events to other systems (the HTTP API serves them itself). */
export const eventsSchema = table({
  mqtt: mqttUrl.optional().describe('publish every event and a retained station state to this MQTT broker: mqtt://[user:password@]host[:port]/prefix (mqtts:// for TLS)'),
  mqtt_username: z.string().min(1).optional().describe('MQTT user name (instead of one in the URL)'),
  mqtt_password: secret.optional().describe('MQTT password (instead of one in the URL); never logged'),
  mqtt_password_file: absolutePath.optional().describe('file holding the MQTT password (default: $CREDENTIALS_DIRECTORY/mqtt_password when present)'),
  mqtt_progress_ms: z.int().min(250).max(3_600_000).default(5_000).describe("a job's progress is published to MQTT at most this often"),
  mqtt_queue: z.int().min(1).max(1_000_000).default(1_000).describe('events kept while the broker is unreachable (the oldest are dropped first)'),
});

export const ALERT_KINDS = ['done', 'failed', 'disk-low', 'cloud-unreachable'] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

const webhookSchema = table({
  url: credentialHttpUrl.describe('receives each notification as a JSON POST'),
  secret: secret.optional().describe('signs each body with HMAC-SHA256 (X-Shuttle-Signature over "<timestamp>.<body>"); never logged'),
  secret_file: absolutePath.optional().describe('file holding the webhook secret (default: $CREDENTIALS_DIRECTORY/webhook_secret when present)'),
});

const ntfySchema = table({
  url: credentialHttpUrl.describe('ntfy topic URL, e.g. https://ntfy.sh/my-station'),
  token: secret.optional().describe('ntfy access token (Authorization: Bearer); never logged'),
  token_file: absolutePath.optional().describe('file holding the ntfy token (default: $CREDENTIALS_DIRECTORY/ntfy_token when present)'),
});

const emailSchema = table({
  smtp: z
    .string()
    .meta({ format: 'credential-url' })
    .refine(urlWithProtocol(['smtp:', 'smtps:']), { message: 'is not an SMTP URL like smtp://host:587 (or smtps://host:465)' })
    .describe('SMTP server, smtp://[user:password@]host[:port] (STARTTLS when offered) or smtps:// (TLS)'),
  from: z.string().min(3).describe('sender address'),
  to: z.array(z.string().min(3)).min(1).describe('recipient addresses'),
  username: z.string().min(1).optional().describe('SMTP user name (instead of one in the URL)'),
  password: secret.optional().describe('SMTP password; never logged'),
  password_file: absolutePath.optional().describe('file holding the SMTP password (default: $CREDENTIALS_DIRECTORY/smtp_password when present)'),
});

/** `[notify]`: messages to people when a card is done or something needs them (see src/daemon/sinks/alerts). */
export const notifySchema = table({
  on: z
    .array(z.enum(ALERT_KINDS))
    .default([...ALERT_KINDS])
    .describe(`what is notified: ${ALERT_KINDS.join(', ')}`),
  webhook: webhookSchema.optional(),
  ntfy: ntfySchema.optional(),
  email: emailSchema.optional(),
  window_ms: z
    .int()
    .min(0)
    .max(86_400_000)
    .default(60_000)
    .describe('jobs that end within this of the last done or failed message are reported together in one message at its end'),
  repeat_ms: z.int().min(0).max(604_800_000).default(3_600_000).describe('"disk low" and "cloud unreachable" are repeated at most this often'),
  disk_low_bytes: z.int().min(0).default(10_000_000_000).describe('a destination with less free space than this is "disk low"'),
  cloud_unreachable_minutes: z.number().min(0).default(30).describe('files waiting for upload with no upload succeeding for this long is "cloud unreachable"'),
  check_ms: z.int().min(100).max(86_400_000).default(60_000).describe('free space and the upload queue are checked this often (and free space at every job start)'),
  retries: z.int().min(0).max(10).default(3).describe('a notification that could not be delivered is tried again this many times'),
  retry_ms: z.int().min(100).max(3_600_000).default(2_000).describe('wait before the first retry of a notification, doubled for each further one'),
});
const cameraSelector = z
  .string()
  .refine(
    (t) => {
      try {
        parseCameraSelector(t);
        return true;
      } catch {
        return false;
      }
    },
    { message: 'is not a camera selector (usb:, usb:VID:PID, usb:VID:*, usb:BUS-PORT, ptpip:, ptpip:HOST[:PORT] or serial:SERIAL)' },
  )
  .transform((t) => t.trim());

const tetherSchema = table({
  preview_long_edge: z
    .int()
    .min(16)
    .max(16384)
    .default(1600)
    .describe(
      "`shuttle tether` and tethered cameras: longer side in pixels of each shot's preview (never enlarged; a camera's own upright preview up to 2% larger is shown as it is)",
    ),
  cameras: z
    .array(cameraSelector)
    .default([])
    .describe(
      'the daemon keeps these cameras in a tethering session while attached (every new shot verified and previewed, `shuttle capture` and pedals fire them) instead of a one-off ingest: usb:, usb:VID:PID, usb:VID:*, usb:BUS-PORT, ptpip:, ptpip:HOST[:PORT], serial:SERIAL',
    ),
  capture_target: z
    .enum(['card', 'host'])
    .default('card')
    .describe("the daemon's tethered cameras: where a capture puts the image, the camera's card or its memory (fetched at once)"),
  reconnect_timeout: z
    .number()
    .min(0)
    .max(86_400)
    .default(120)
    .describe('seconds a tethered camera that dropped (off the bus or the network) is tried again before its session ends'),
});

/** `[[pedals]]`: a key on a USB foot pedal, button box or keyboard (HID) and what pressing it asks for. */
export const pedalSchema = table({
  device: z
    .string()
    .refine((d) => /^\s*([0-9a-f]{4}:[0-9a-f]{4}|keyboard)\s*$/i.test(d), { message: 'is not a pedal device (VID:PID in hex like "0627:0001", or "keyboard")' })
    .transform((d) => d.trim().toLowerCase())
    .describe('the pedal: its USB VID:PID in hex (see `shuttle hid list`), or "keyboard" for any device that enumerates as a keyboard'),
  key: z
    .string()
    .refine((k) => KEY_NAMES.includes(k.trim().toLowerCase()), { message: 'is not a key name (like "b", "space", "enter", "pageup", "f5", "f13", "leftshift")' })
    .transform((k) => k.trim().toLowerCase())
    .describe('the key the pedal sends, by name: a–z, 0–9, space, enter, pageup, pagedown, f1–f24, leftshift…'),
  action: z
    .enum(PEDAL_ACTIONS)
    .default('capture')
    .describe(`what a press asks for (${PEDAL_ACTIONS.join(', ')}); \`capture\` fires the tethered camera`),
});

/** `[status_light]`: a USB light showing the station state (idle, busy, safe to pull, attention). */
export const statusLightSchema = table({
  driver: z
    .enum(['auto', ...LIGHT_DRIVERS])
    .default('auto')
    .describe(`which kind of light: auto (the first known one plugged in), ${LIGHT_DRIVERS.join(', ')}`),
  path: absolutePath.optional().describe('only the light at this HID device path (e.g. /dev/hidraw3)'),
  serial: z.string().min(1).optional().describe('only the light with this USB serial number'),
});

/** `[sound]`: WAV files played (with ALSA's aplay) when a card is safe to pull and when a job failed. */
export const soundSchema = table({
  done: absolutePath.optional().describe('WAV file played when a card or camera job verified every file'),
  failed: absolutePath.optional().describe('WAV file played when a job failed (a card refused, a file not verified)'),
  device: z.string().min(1).default('default').describe('ALSA device to play on (aplay -D), e.g. default, plughw:0,0'),
});

/** Later sections (`upload`, `daemon`, `cameras`) are one line each here: `name: table({...}).prefault({})`. */
export const configSchema = table({
  station: z
    .string()
    .min(1)
    .default(() => hostname())
    .describe('name of this station in manifests and logs (default: the hostname)'),
  state_dir: absolutePath.optional().describe('where the journal and state live'),
  log_level: z
    .enum(LOG_LEVELS)
    .default('info')
    .describe(`log level (${LOG_LEVELS.join(', ')})`),
  ingest: ingestSchema.prefault({}),
  destinations: destinations.default([]).describe('destination libraries; every file is copied to each'),
  // Optional rather than prefaulted: a config without [upload] resolves without it (see uploadSettings).
  upload: uploadSchema.optional(),
  daemon: daemonSchema.prefault({}),
  tether: tetherSchema.prefault({}),
  cards: cardsSchema.prefault({}),
  cameras: camerasSchema.prefault({}),
  // Optional like [upload]: a station without pedals or a light resolves without these keys.
  pedals: z.array(pedalSchema).optional().describe('foot pedals and buttons (HID): device, key and action'),
  status_light: statusLightSchema.optional(),
  sound: soundSchema.optional(),
  api: apiSchema.prefault({}),
  previews: previewsSchema.prefault({}),
  // Optional rather than prefaulted: without [events] or [notify] nothing is published or sent.
  events: eventsSchema.optional(),
  notify: notifySchema.optional(),
});

type DeepReadonly<T> = T extends readonly (infer U)[] ? readonly DeepReadonly<U>[] : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T;

/** What a config file, the environment or a caller may give: every key optional, snake_case. */
export type ConfigInput = z.input<typeof configSchema>;
/** The resolved configuration: every default applied, camelCase, deeply frozen. */
export type Config = DeepReadonly<z.output<typeof configSchema>>;
export type IngestConfig = Config['ingest'];
export type DestinationConfig = Config['destinations'][number];
export type UploadConfig = NonNullable<Config['upload']>;
export type PedalConfig = NonNullable<Config['pedals']>[number];
export type StatusLightConfig = NonNullable<Config['statusLight']>;
export type SoundConfig = NonNullable<Config['sound']>;
export type ApiConfig = Config['api'];
export type EventsConfig = NonNullable<Config['events']>;
export type NotifyConfig = NonNullable<Config['notify']>;

/** The [upload] section with every default applied, also when the config has none. */
export function uploadSettings(config: Pick<Config, 'upload'>): UploadConfig {
  // jitless, as loadConfig parses: zod's compiled parser costs more to build than this one parse takes.
  return config.upload ?? (Object.freeze(uploadSchema.parse({}, { jitless: true })) as UploadConfig);
}
