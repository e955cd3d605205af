/**
 * Which cameras a setting means (`[tether] cameras`), in the words Shuttle names cameras by elsewhere
 * (`shuttle tether SOURCE`, the daemon's device ids): `usb:` any USB camera, `usb:VID:PID` one model,
 * `usb:VID:*` one maker, `usb:BUS-PORT` one socket; `ptpip:` any network camera the daemon admits,
 * `ptpip:HOST[:PORT]` one address; `serial:SERIAL` one body by its USB serial number or the guid a
 * network camera announces. Also how `ptpip:HOST[:PORT]` reads. A root module: the config validates with
 * it without loading USB or mDNS.
 */
import { ShuttleError } from './errors.js';

export type CameraSelector =
  | { transport: 'usb'; vendorId?: number; productId?: number; location?: string }
  | { transport: 'ptpip'; host?: string; port?: number }
  | { serial: string };

/** What the daemon knows of an attached camera, to match selectors against. */
export type CameraFacts =
  | { transport: 'usb'; vendorId: number; productId: number; location: string; serial?: string | undefined }
  | { transport: 'ptpip'; host: string; port: number; serial?: string | undefined };

const USAGE = 'usb:, usb:VID:PID, usb:VID:*, usb:BUS-PORT, ptpip:, ptpip:HOST[:PORT] or serial:SERIAL';

function bad(text: string): ShuttleError {
  return new ShuttleError('USAGE', `"${text}" is not a camera selector (${USAGE})`, { context: { selector: text } });
}

export function parseCameraSelector(text: string): CameraSelector {
  const t = text.trim();
  const scheme = /^(usb|ptpip|serial):(.*)$/i.exec(t);
  if (!scheme) throw bad(text);
  const kind = (scheme[1] as string).toLowerCase();
  const rest = scheme[2] as string;
  if (kind === 'serial') {
    if (!/^[\w.-]{1,128}$/.test(rest)) throw bad(text);
    return { serial: rest.toLowerCase() };
  }
  if (kind === 'ptpip') {
    if (rest === '') return { transport: 'ptpip' };
    const addr = parsePtpIpUri(`ptpip:${rest}`);
    if (!addr) throw bad(text);
    return { transport: 'ptpip', host: addr.host.toLowerCase(), ...(addr.port === undefined ? {} : { port: addr.port }) };
  }
  if (rest === '') return { transport: 'usb' };
  const ids = /^([0-9a-f]{4}):([0-9a-f]{4}|\*)$/i.exec(rest);
  if (ids) {
    const vendorId = Number.parseInt(ids[1] as string, 16);
    return ids[2] === '*' ? { transport: 'usb', vendorId } : { transport: 'usb', vendorId, productId: Number.parseInt(ids[2] as string, 16) };
  }
  if (/^\d{1,3}-\d{1,3}(?:\.\d{1,3}){0,6}$/.test(rest)) return { transport: 'usb', location: rest };
  throw bad(text);
}

export function matchesCamera(sel: CameraSelector, cam: CameraFacts): boolean {
  if ('serial' in sel) return cam.serial !== undefined && cam.serial.toLowerCase() === sel.serial;
  if (sel.transport !== cam.transport) return false;
  if (cam.transport === 'usb' && sel.transport === 'usb') {
    return (
      (sel.vendorId === undefined || sel.vendorId === cam.vendorId) &&
      (sel.productId === undefined || sel.productId === cam.productId) &&
      (sel.location === undefined || sel.location === cam.location)
    );
  }
  if (cam.transport === 'ptpip' && sel.transport === 'ptpip') {
    return (sel.host === undefined || sel.host === cam.host.toLowerCase()) && (sel.port === undefined || sel.port === cam.port);
  }
  return false;
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
