import type { RemoteInfo } from 'node:dgram';
import makeMdns from 'multicast-dns';
import type { Logger } from '../../log.js';

type Answer = makeMdns.ResponsePacket['answers'][number];
type TxtData = Extract<Answer, { type: 'TXT' }>['data'];

/**
 * DNS-SD browsing of one service type over multicast-dns (RFC 6762/6763): asks for the type's PTR
 * records and reads each answer's PTR, SRV and TXT records into services. A service is known only by
 * what one response packet says about it, and by the address that packet came from.
 */

/** A service instance a response announced. */
export interface MdnsService {
  /** The instance name (the first label of `fqdn`). */
  name: string;
  fqdn: string;
  /** The SRV target host name (never followed: see cameraFromMdns). */
  host: string;
  port: number;
  /** Who sent the response. */
  referer?: { address: string };
  /** TXT keys and values; a key without `=` is true. */
  txt?: Record<string, string | true>;
}

export interface MdnsAnswers {
  /** Instances announced with a lifetime. */
  up: MdnsService[];
  /** Instances withdrawn (TTL 0, a goodbye), as far as the packet describes them. */
  goodbye: MdnsService[];
}

const sameName = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

function textOf(data: TxtData): Record<string, string | true> {
  const out: Record<string, string | true> = {};
  for (const entry of Array.isArray(data) ? data : [data]) {
    const s = Buffer.isBuffer(entry) ? entry.toString('utf8') : entry;
    const eq = s.indexOf('=');
    if (eq === 0 || s === '') continue;
    if (eq < 0) out[s] = true;
    else out[s.slice(0, eq)] = s.slice(eq + 1);
  }
  return out;
}

/** The instances of `type` (`_ptp._tcp.local`) that one response packet announces or withdraws. */
export function servicesIn(records: readonly Answer[], type: string, from: string): MdnsAnswers {
  const out: MdnsAnswers = { up: [], goodbye: [] };
  for (const ptr of records) {
    if (ptr.type !== 'PTR' || !sameName(ptr.name, type)) continue;
    const fqdn = ptr.data;
    const srv = records.find((r) => r.type === 'SRV' && sameName(r.name, fqdn));
    const txt = records.find((r) => r.type === 'TXT' && sameName(r.name, fqdn));
    const suffix = `.${type}`;
    const name = fqdn.toLowerCase().endsWith(suffix.toLowerCase()) ? fqdn.slice(0, -suffix.length) : fqdn;
    const service: MdnsService = {
      name,
      fqdn,
      host: srv?.type === 'SRV' ? srv.data.target : '',
      port: srv?.type === 'SRV' ? srv.data.port : 0,
      referer: { address: from },
      ...(txt?.type === 'TXT' ? { txt: textOf(txt.data) } : {}),
    };
    if (ptr.ttl === 0) out.goodbye.push(service);
    else if (srv !== undefined) out.up.push(service);
  }
  return out;
}

/** One multicast-dns socket asking for, and listening to, one service type. */
export class MdnsBrowser {
  readonly #mdns: makeMdns.MulticastDNS;
  readonly #type: string;
  readonly #listeners = new Set<(answers: MdnsAnswers) => void>();

  constructor(opts: { type: string; logger: Logger }) {
    this.#type = opts.type;
    this.#mdns = makeMdns();
    // Port 5353 taken without reuse, or not allowed: the socket's 'error', which would otherwise throw.
    this.#mdns.on('error', (err) => opts.logger.warn({ err }, 'mDNS unavailable; network cameras are found by SSDP only'));
    this.#mdns.on('warning', (err) => opts.logger.debug({ err }, 'mDNS warning'));
    this.#mdns.on('response', (packet: makeMdns.ResponsePacket, rinfo: RemoteInfo) => {
      if (this.#listeners.size === 0) return;
      const answers = servicesIn([...packet.answers, ...packet.additionals], this.#type, rinfo.address);
      if (answers.up.length === 0 && answers.goodbye.length === 0) return;
      for (const l of this.#listeners) l(answers);
    });
  }

  /** Asks who offers the service; answers reach the listeners. */
  query(onSent?: (err: Error | null) => void): void {
    this.#mdns.query(this.#type, 'PTR', (err) => onSent?.(err));
  }

  listen(listener: (answers: MdnsAnswers) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  close(): Promise<void> {
    this.#listeners.clear();
    return new Promise((resolve) => this.#mdns.destroy(() => resolve()));
  }
}
