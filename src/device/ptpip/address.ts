import { isIPv4 } from 'node:net';

/**
 * How a network camera is named: `ptpip:HOST[:PORT]`, IPv6 in brackets. Kept apart from discovery, so
 * that reading a name loads no mDNS library.
 */

/** `ptpip:HOST:PORT`, IPv6 in brackets: what `shuttle ingest` takes. */
export function ptpipUri(host: string, port: number): string {
  return isIPv4(host) || !host.includes(':') ? `ptpip:${host}:${port}` : `ptpip:[${host}]:${port}`;
}

/** `ptpip:HOST[:PORT]` (IPv6 in brackets) as host and port; undefined for anything else (`ptpip:` alone included). */
export function parsePtpIpUri(uri: string): { host: string; port?: number } | undefined {
  const m = /^ptpip:(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/i.exec(uri);
  if (!m) return undefined;
  const host = (m[1] ?? m[2])!;
  if (m[3] === undefined) return { host };
  const port = Number(m[3]);
  return port >= 1 && port <= 65535 ? { host, port } : undefined;
}
