import { isIPv4 } from 'node:net';

/**
 * How a network camera is named: `ptpip:HOST[:PORT]`, IPv6 in brackets. Kept apart from discovery, so
 * that reading a name loads no mDNS library.
 */

/** `ptpip:HOST:PORT`, IPv6 in brackets: what `shuttle ingest` takes. */
export function ptpipUri(host: string, port: number): string {
  return isIPv4(host) || !host.includes(':') ? `ptpip:${host}:${port}` : `ptpip:[${host}]:${port}`;
}

export { parsePtpIpUri } from '../../camera-names.js';
