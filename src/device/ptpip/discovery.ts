/**
 * PTP/IP cameras found on the local network: mDNS/DNS-SD `_ptp._tcp` (what libgphoto2's ptpip port
 * browses; Nikon, Canon and others announce it, with the PTP/IP port in the SRV record) through
 * multicast-dns (mdns.ts), and SSDP (Canon and Sony Wi-Fi modes answer M-SEARCH; PTP/IP then runs on 15740).
 *
 * `PtpIpDiscoverer` keeps its sockets open for repeated scans (the daemon's watcher);
 * `discoverPtpIpCameras` is one scan (the CLI).
 *
 * A camera's address is always the address its announcement came from. An mDNS record or an SSDP
 * LOCATION naming another address is not followed: anyone on the network can announce, and a record
 * pointing elsewhere would make Shuttle connect to (or fetch from) a host that never announced anything.
 */
import { sleep } from '../../async.js';
import { throwIfAborted } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { ptpipUri } from './address.js';
import { MdnsBrowser, type MdnsService } from './mdns.js';
import { PTPIP_DEFAULT_PORT } from './packets.js';
import { PTPIP_SSDP_TARGETS, fetchDeviceDescription, locationHost, ssdpSearch, type DeviceDescription, type SsdpMessage } from './ssdp.js';

export interface DiscoveredCamera {
  /** `ptpip:HOST:PORT`: what `shuttle ingest` takes, and the camera's id while it is announced. */
  uri: string;
  host: string;
  port: number;
  /** The announced instance name (mDNS) or UPnP friendly name / server string (SSDP). */
  name: string;
  via: 'mdns' | 'ssdp';
  /** A stable id the announcement carries: a TXT `guid`/`uuid` (mDNS) or the USN's uuid (SSDP). */
  guid?: string;
  model?: string;
  manufacturer?: string;
  /** mDNS TXT record, as announced. */
  txt?: Record<string, string>;
  /** SSDP search target / mDNS service type the camera answered. */
  service: string;
}

export interface DiscoveryOptions {
  /** Browse `_ptp._tcp` (default true). */
  mdns?: boolean;
  /** Send SSDP M-SEARCH (default true). */
  ssdp?: boolean;
  ssdpTargets?: readonly string[];
  /**
   * Fetch the UPnP description an SSDP answer points at, for friendly and model names (default true): only
   * from the answer's sender, at most `MAX_DESCRIPTIONS_PER_SCAN` new ones per scan, each at most
   * `MAX_DESCRIPTION_BYTES` (see ssdp.ts).
   */
  ssdpDescriptions?: boolean;
  logger?: Logger;
}

export interface ScanOptions {
  /** How long to listen for answers. */
  windowMs: number;
  signal?: AbortSignal | undefined;
}

export const MDNS_SERVICE_TYPE = '_ptp._tcp';
const MDNS_REQUERY_MS = 1000;
/** Announced services remembered for their goodbyes (anyone can announce many: forgotten past this). */
const MAX_REMEMBERED_SERVICES = 256;
/** Descriptions fetched in one scan: a flood of SSDP answers must not become a flood of HTTP requests. */
export const MAX_DESCRIPTIONS_PER_SCAN = 8;
/** Descriptions remembered across scans (those of cameras still answering are kept first). */
const MAX_CACHED_DESCRIPTIONS = 32;

function textRecord(txt: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof txt !== 'object' || txt === null) return out;
  for (const [k, v] of Object.entries(txt as Record<string, unknown>)) {
    if (typeof v === 'string') out[k.toLowerCase()] = v;
    else if (Buffer.isBuffer(v)) out[k.toLowerCase()] = v.toString('utf8');
    else if (typeof v === 'boolean') out[k.toLowerCase()] = '';
  }
  return out;
}

function firstOf(rec: Record<string, string>, keys: readonly string[]): string | undefined {
  for (const k of keys) {
    const v = rec[k];
    if (v !== undefined && v !== '') return v;
  }
  return undefined;
}

/**
 * A resolved mDNS service as a camera at the address the answer came from. The A/AAAA records it carries
 * are not followed: a record may name any address, the sender is the one that spoke.
 */
export function cameraFromMdns(s: MdnsService): DiscoveredCamera | undefined {
  if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) return undefined;
  const host = s.referer?.address;
  if (!host) return undefined;
  const txt = textRecord(s.txt);
  const cam: DiscoveredCamera = { uri: ptpipUri(host, s.port), host, port: s.port, name: s.name, via: 'mdns', txt, service: MDNS_SERVICE_TYPE };
  const guid = firstOf(txt, ['guid', 'uuid', 'id']);
  const model = firstOf(txt, ['model', 'md', 'product', 'ty']);
  const manufacturer = firstOf(txt, ['manufacturer', 'mfg', 'vendor']);
  if (guid) cam.guid = guid;
  if (model) cam.model = model;
  if (manufacturer) cam.manufacturer = manufacturer;
  return cam;
}

/** An SSDP answer as a camera at the address the answer came from, on PTP/IP's standard port (LOCATION is not followed). */
export function cameraFromSsdp(m: SsdpMessage): DiscoveredCamera | undefined {
  const st = m.headers['st'] ?? m.headers['nt'];
  if (!st) return undefined;
  const host = m.address;
  const cam: DiscoveredCamera = {
    uri: ptpipUri(host, PTPIP_DEFAULT_PORT),
    host,
    port: PTPIP_DEFAULT_PORT,
    name: m.headers['server'] ?? st,
    via: 'ssdp',
    service: st,
  };
  const uuid = /uuid:([0-9a-zA-Z-]{1,64})/.exec(m.headers['usn'] ?? '');
  if (uuid) cam.guid = uuid[1] as string;
  if (/schemas-canon-com/i.test(st)) cam.manufacturer = 'Canon';
  return cam;
}

export class PtpIpDiscoverer {
  readonly #log: Logger;
  readonly #opts: DiscoveryOptions;
  #mdns: MdnsBrowser | undefined;
  /** Services announced since goodbyes were first listened for, by lower-case fqdn: a goodbye need not carry the port. */
  readonly #announced = new Map<string, MdnsService>();
  #offAnnounced: (() => void) | undefined;
  readonly #goodbyeListeners = new Set<(uri: string) => void>();
  /** UPnP descriptions by LOCATION, so that a camera answering every scan is asked once. */
  readonly #described = new Map<string, DeviceDescription>();

  constructor(opts: DiscoveryOptions = {}) {
    this.#opts = opts;
    this.#log = opts.logger ?? silentLogger;
    if (opts.mdns !== false) this.#mdns = new MdnsBrowser({ type: `${MDNS_SERVICE_TYPE}.local`, logger: this.#log });
  }

  /**
   * Calls `listener` with the uri of an mDNS camera that said goodbye (a TTL-0 record: switched off, Wi-Fi
   * mode left), from the address that announced it.
   */
  onGoodbye(listener: (uri: string) => void): () => void {
    this.#goodbyeListeners.add(listener);
    if (this.#mdns && !this.#offAnnounced) {
      this.#offAnnounced = this.#mdns.listen(({ up, goodbye }) => {
        for (const s of up) {
          const key = s.fqdn.toLowerCase();
          this.#announced.delete(key);
          if (this.#announced.size >= MAX_REMEMBERED_SERVICES) this.#announced.delete(this.#announced.keys().next().value!);
          this.#announced.set(key, s);
        }
        for (const s of goodbye) {
          const known = this.#announced.get(s.fqdn.toLowerCase());
          if (!known || known.referer?.address !== s.referer?.address) continue;
          this.#announced.delete(s.fqdn.toLowerCase());
          const cam = cameraFromMdns(known);
          if (cam) for (const l of this.#goodbyeListeners) l(cam.uri);
        }
      });
    }
    return () => this.#goodbyeListeners.delete(listener);
  }

  /** Listens for `windowMs` and returns every camera that answered, one entry per uri (mDNS preferred). */
  async scan(opts: ScanOptions): Promise<DiscoveredCamera[]> {
    throwIfAborted(opts.signal);
    const found = new Map<string, DiscoveredCamera>();
    const tasks: Promise<void>[] = [];
    if (this.#mdns) tasks.push(this.#scanMdns(this.#mdns, opts, found));
    if (this.#opts.ssdp !== false) tasks.push(this.#scanSsdp(opts, found));
    await Promise.all(tasks);
    throwIfAborted(opts.signal);
    return [...found.values()].sort((a, b) => a.uri.localeCompare(b.uri));
  }

  async #scanMdns(mdns: MdnsBrowser, opts: ScanOptions, found: Map<string, DiscoveredCamera>): Promise<void> {
    const off = mdns.listen(({ up }) => {
      for (const s of up) {
        const cam = cameraFromMdns(s);
        if (cam) found.set(cam.uri, cam);
      }
    });
    const query = (): void => mdns.query((err) => err && this.#log.debug({ err }, 'mDNS send failed'));
    query();
    // Responders answer a question about a record at most once a second (RFC 6762 §6; avahi does), so a
    // query that lands just after someone else's goes unanswered: ask again each second of the window.
    const requery = setInterval(query, MDNS_REQUERY_MS);
    try {
      await sleep(opts.windowMs, opts.signal);
    } finally {
      clearInterval(requery);
      off();
    }
  }

  async #scanSsdp(opts: ScanOptions, found: Map<string, DiscoveredCamera>): Promise<void> {
    let answers: SsdpMessage[];
    try {
      answers = await ssdpSearch({ targets: this.#opts.ssdpTargets ?? PTPIP_SSDP_TARGETS, windowMs: opts.windowMs, signal: opts.signal, logger: this.#log });
    } catch (err) {
      if (opts.signal?.aborted) return;
      this.#log.debug({ err }, 'SSDP search failed');
      return;
    }
    const cams = new Map<string, { cam: DiscoveredCamera; location: string | undefined }>();
    for (const m of answers) {
      const cam = cameraFromSsdp(m);
      if (!cam || cams.has(cam.uri)) continue;
      const location = m.headers['location'];
      if (location !== undefined && locationHost(location) !== m.address) {
        this.#log.debug({ sender: m.address, location }, 'SSDP answer points at another host; its description is not fetched');
        cams.set(cam.uri, { cam, location: undefined });
      } else {
        cams.set(cam.uri, { cam, location });
      }
    }
    const describe = this.#opts.ssdpDescriptions !== false;
    const toFetch = describe ? [...cams.values()].filter((c) => c.location !== undefined && !this.#described.has(c.location)).slice(0, MAX_DESCRIPTIONS_PER_SCAN) : [];
    await Promise.all(
      toFetch.map(async ({ cam, location }) => {
        const d = await fetchDeviceDescription(location!, cam.host, { signal: opts.signal }).catch((err: unknown) => {
          this.#log.debug({ err, location }, 'no UPnP description');
          return {};
        });
        this.#described.set(location!, d);
      }),
    );
    const seen = new Set<string>();
    for (const { cam, location } of cams.values()) {
      const d = location === undefined ? undefined : this.#described.get(location);
      if (location !== undefined) seen.add(location);
      if (d?.name) cam.name = d.name;
      if (d?.model) cam.model = d.model;
      if (d?.manufacturer) cam.manufacturer = d.manufacturer;
      if (!found.has(cam.uri)) found.set(cam.uri, cam);
    }
    this.#pruneDescriptions(seen);
  }

  /** Forgets descriptions of cameras that did not answer this scan once the cache is full, then the oldest. */
  #pruneDescriptions(seen: ReadonlySet<string>): void {
    for (const keepSeen of [true, false]) {
      for (const location of this.#described.keys()) {
        if (this.#described.size <= MAX_CACHED_DESCRIPTIONS) return;
        if (!keepSeen || !seen.has(location)) this.#described.delete(location);
      }
    }
  }

  async close(): Promise<void> {
    this.#offAnnounced?.();
    this.#goodbyeListeners.clear();
    this.#announced.clear();
    const mdns = this.#mdns;
    this.#mdns = undefined;
    await mdns?.close();
  }
}

export interface DiscoverOptions extends DiscoveryOptions {
  signal?: AbortSignal;
  /** How long to listen (default 2000 ms). */
  timeoutMs?: number;
}

/** One scan of the local network for PTP/IP cameras (mDNS and SSDP together). */
export async function discoverPtpIpCameras(opts: DiscoverOptions = {}): Promise<DiscoveredCamera[]> {
  const d = new PtpIpDiscoverer(opts);
  try {
    return await d.scan({ windowMs: opts.timeoutMs ?? 2000, signal: opts.signal });
  } finally {
    await d.close();
  }
}
