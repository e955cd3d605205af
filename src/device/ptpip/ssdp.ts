/**
 * SSDP (UPnP discovery) just far enough to find PTP/IP cameras: an M-SEARCH to 239.255.255.250:1900 per
 * search target, and the unicast `HTTP/1.1 200 OK` answers parsed into headers. No library: the npm SSDP
 * packages are unmaintained, and the part needed here is one UDP datagram each way.
 *
 * Which targets cameras answer (public captures, e.g. airnef's notes and Canon/Sony app sources):
 * Sony's "Send to Computer"/PC-remote Wi-Fi mode advertises Microsoft's MTP/IP null service; Canon EOS
 * and PowerShot Wi-Fi advertise their ICPO services (smartphone mode, EOS Utility/WFT mode). In every
 * case PTP/IP itself then runs on TCP 15740 at the answering address.
 */
import dgram from 'node:dgram';
import type { XMLParser } from 'fast-xml-parser';
import { ShuttleError, abortReason, throwIfAborted } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';

export const SSDP_ADDRESS = '239.255.255.250';
export const SSDP_PORT = 1900;

export const PTPIP_SSDP_TARGETS: readonly string[] = [
  'urn:microsoft-com:service:MtpNullService:1',
  'urn:schemas-canon-com:service:ICPO-SmartPhoneEOSSystemService:1',
  'urn:schemas-canon-com:service:ICPO-WFTEOSSystemService:1',
];

/** One answer to an M-SEARCH (or a NOTIFY), with header names lower-cased. */
export interface SsdpMessage {
  kind: 'response' | 'notify' | 'search';
  headers: Record<string, string>;
  /** Who sent it. */
  address: string;
}

/** Largest datagram looked at; SSDP messages are a few hundred bytes. */
const MAX_MESSAGE = 8192;
/** Answers kept from one search: anyone on the network can answer, as often as they like. */
export const MAX_ANSWERS = 256;
/** Largest UPnP device description read; a camera's is a few kilobytes. */
export const MAX_DESCRIPTION_BYTES = 64 * 1024;
const DESCRIPTION_TIMEOUT_MS = 1500;

/** Parses an SSDP datagram; undefined for anything that is not one (never throws: the network is hostile). */
export function parseSsdpMessage(bytes: Uint8Array, address: string): SsdpMessage | undefined {
  if (bytes.byteLength > MAX_MESSAGE) return undefined;
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  const lines = text.split(/\r?\n/);
  const start = (lines[0] ?? '').trim();
  let kind: SsdpMessage['kind'];
  if (/^HTTP\/1\.[01] 200\b/i.test(start)) kind = 'response';
  else if (/^NOTIFY \* HTTP\/1\.[01]$/i.test(start)) kind = 'notify';
  else if (/^M-SEARCH \* HTTP\/1\.[01]$/i.test(start)) kind = 'search';
  else return undefined;
  // No prototype: a header named __proto__ is just a header.
  const headers = Object.create(null) as Record<string, string>;
  for (const line of lines.slice(1)) {
    if (line.trim() === '') break;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    // Header names become object keys: keep them to plain tokens.
    if (!/^[a-z0-9.\-_]{1,64}$/.test(name)) continue;
    headers[name] = line.slice(colon + 1).trim();
  }
  return { kind, headers, address };
}

export function encodeMSearch(target: string, mxSeconds: number): Buffer {
  return Buffer.from(['M-SEARCH * HTTP/1.1', `HOST: ${SSDP_ADDRESS}:${SSDP_PORT}`, 'MAN: "ssdp:discover"', `MX: ${mxSeconds}`, `ST: ${target}`, '', ''].join('\r\n'), 'latin1');
}

export interface SsdpSearchOptions {
  targets?: readonly string[];
  /** How long to collect answers. */
  windowMs: number;
  signal?: AbortSignal | undefined;
  logger?: Logger | undefined;
  /** Sends the search here instead of the multicast group (tests on hosts without multicast). */
  destination?: { address: string; port: number } | undefined;
}

/**
 * Sends one M-SEARCH per target (twice: UDP may drop one) and collects the answers that arrive within the
 * window. A socket error is logged and ends the search with what was collected: discovery is best effort.
 */
export async function ssdpSearch(opts: SsdpSearchOptions): Promise<SsdpMessage[]> {
  throwIfAborted(opts.signal);
  const log = opts.logger ?? silentLogger;
  const targets = opts.targets ?? PTPIP_SSDP_TARGETS;
  const dest = opts.destination ?? { address: SSDP_ADDRESS, port: SSDP_PORT };
  const mx = Math.max(1, Math.min(5, Math.floor(opts.windowMs / 1000)));
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  const found: SsdpMessage[] = [];
  return new Promise<SsdpMessage[]>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    let resend: NodeJS.Timeout | undefined;
    const finish = (err?: unknown): void => {
      clearTimeout(timer);
      clearTimeout(resend);
      opts.signal?.removeEventListener('abort', onAbort);
      socket.close();
      if (err !== undefined) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(found);
    };
    const onAbort = (): void => finish(abortReason(opts.signal as AbortSignal));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('error', (err) => {
      log.debug({ err }, 'SSDP socket error; ending the search');
      finish();
    });
    socket.on('message', (msg, rinfo) => {
      const m = parseSsdpMessage(msg, rinfo.address);
      if (m && m.kind !== 'search' && found.length < MAX_ANSWERS) found.push(m);
    });
    const send = (): void => {
      for (const t of targets) socket.send(encodeMSearch(t, mx), dest.port, dest.address, (err) => err && log.debug({ err, target: t }, 'M-SEARCH not sent'));
    };
    socket.bind(0, () => {
      try {
        socket.setMulticastTTL(2);
      } catch {
        // Not fatal: the default TTL of 1 reaches the local link, which is where cameras are.
      }
      send();
      resend = setTimeout(send, Math.min(300, opts.windowMs / 3));
      timer = setTimeout(() => finish(), opts.windowMs);
    });
  });
}

/** The host a LOCATION URL names (IPv6 without brackets); undefined for one that does not parse. */
export function locationHost(location: string): string | undefined {
  try {
    return new URL(location).hostname.replace(/^\[|\]$/g, '') || undefined;
  } catch {
    return undefined;
  }
}

export interface DeviceDescription {
  name?: string;
  manufacturer?: string;
  model?: string;
}

let xml: Promise<XMLParser> | undefined;

/** The XML parser, made with the first description read: a daemon listening for cameras that never answer does not load it. */
function descriptionParser(): Promise<XMLParser> {
  xml ??= import('fast-xml-parser').then((m) => new m.XMLParser({ ignoreAttributes: true, processEntities: false, parseTagValue: false }));
  return xml;
}

/**
 * friendlyName, manufacturer and modelName from the UPnP device description at `location`, fetched only
 * when it is plain http at `sender` (the address the SSDP answer came from), without following redirects,
 * and read no further than `maxBytes`: a larger body is cut off (the connection closed) and refused.
 */
export async function fetchDeviceDescription(
  location: string,
  sender: string,
  opts: { signal?: AbortSignal | undefined; maxBytes?: number | undefined; timeoutMs?: number | undefined } = {},
): Promise<DeviceDescription> {
  const url = new URL(location);
  const refuse = (why: string): ShuttleError => new ShuttleError('TRANSPORT', `UPnP description ${location} not read: ${why}`, { context: { location, sender } });
  if (url.protocol !== 'http:') throw refuse('not plain http');
  if (locationHost(location) !== sender) throw refuse(`it is not at the answering address ${sender}`);
  const max = opts.maxBytes ?? MAX_DESCRIPTION_BYTES;
  const stop = new AbortController();
  const timeout = AbortSignal.timeout(opts.timeoutMs ?? DESCRIPTION_TIMEOUT_MS);
  const signal = AbortSignal.any([stop.signal, timeout, ...(opts.signal ? [opts.signal] : [])]);
  try {
    const res = await fetch(url, { signal, redirect: 'error' });
    if (!res.ok || !res.body) throw refuse(`HTTP ${res.status}`);
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (declared > max) throw refuse(`it is ${declared} bytes, more than ${max}`);
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += chunk.byteLength;
      if (size > max) throw refuse(`it is longer than ${max} bytes`);
      chunks.push(chunk);
    }
    return parseDeviceDescription(await descriptionParser(), Buffer.concat(chunks).toString('utf8'));
  } finally {
    // Closes the connection of a body left unread (refused, or cut off at the limit).
    stop.abort();
  }
}

function parseDeviceDescription(xml: XMLParser, text: string): DeviceDescription {
  const doc = xml.parse(text) as { root?: { device?: Record<string, unknown> } };
  const d = doc.root?.device ?? {};
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() !== '' ? v.trim().slice(0, 200) : undefined);
  const out: DeviceDescription = {};
  const name = str(d['friendlyName']);
  const manufacturer = str(d['manufacturer']);
  const model = str(d['modelName']);
  if (name) out.name = name;
  if (manufacturer) out.manufacturer = manufacturer;
  if (model) out.model = model;
  return out;
}
