import { resolve } from 'node:path';
import { ShuttleError } from '../errors.js';
import type { Logger } from '../log.js';
import { FolderSource } from './card/folder-source.js';
import { HotFolderSource, type HotFile } from './card/hot-folder-source.js';
import { parsePtpIpUri } from './ptpip/address.js';
import type { Source } from './source.js';

/**
 * The one place where a source's name (a command-line argument, a control request) or a device a
 * watcher found becomes a Source. Names: a path (folder or mounted card); `usb:`, `usb:VID:PID`,
 * `usb:BUS-PORT` (a USB camera); `ptpip:HOST[:PORT]` (a network camera, IPv6 in brackets); `ptpip:`
 * alone (every network camera that announces itself). The libusb binding, the camera layer and the
 * mDNS library are loaded when a camera is opened or looked for: a folder ingest never loads them.
 */

/** What opening a source needs. */
export interface OpenContext {
  /** Where the PTP/IP initiator identity persists (cameras pair with it). */
  stateDir: string;
  /** IANA zone of a camera's clock. */
  timeZone?: string | undefined;
  logger: Logger;
  signal: AbortSignal;
}

/** Opens a source when its job starts; the job closes it. */
export type SourceOpener = (ctx: OpenContext) => Promise<Source>;

/** How long `ptpip:` listens for cameras announcing themselves before it gives up. */
const DISCOVERY_WINDOW_MS = 2000;

/** `usb` or `ptpip` (in any case) when the name is a camera's, undefined when it is a path. */
export function cameraScheme(name: string): 'usb' | 'ptpip' | undefined {
  const m = /^(usb|ptpip):/i.exec(name);
  return m ? (m[1]!.toLowerCase() as 'usb' | 'ptpip') : undefined;
}

export function folderOpener(path: string): SourceOpener {
  return async () => new FolderSource(path);
}

/** The files of one hot-folder batch (paths below `root`), as one ingest of that folder. */
export function hotFolderBatchOpener(root: string, files: readonly HotFile[]): SourceOpener {
  return async () => new HotFolderSource(root, files);
}

/** A USB camera by selector: the first match in bus/port order; its uri is the selector as given. */
export function usbCameraOpener(selector: string): SourceOpener {
  return async (ctx) => {
    const { openUsbCameraSource } = await import('./usb-source.js');
    return openUsbCameraSource(selector, { timeZone: ctx.timeZone, logger: ctx.logger, signal: ctx.signal });
  };
}

export function ptpipCameraOpener(host: string, port?: number): SourceOpener {
  return async (ctx) => {
    const { openPtpIpCameraSource } = await import('./camera-source.js');
    return openPtpIpCameraSource({ host, port, stateDir: ctx.stateDir, timeZone: ctx.timeZone, logger: ctx.logger, signal: ctx.signal });
  };
}

function notACameraAddress(name: string): ShuttleError {
  return new ShuttleError('USAGE', `source ${name}: not a camera address (use usb:, usb:VID:PID, usb:BUS-PORT or ptpip:HOST[:PORT], a port from 1 to 65535)`, {
    context: { source: name },
  });
}

/**
 * The opener of one named source; a relative path is resolved against the working directory. USAGE for
 * a camera scheme without a camera address after it (`ptpip:` alone is `openSources`' business).
 */
export function sourceOpener(name: string): SourceOpener {
  const scheme = cameraScheme(name);
  if (scheme === 'usb') return usbCameraOpener(name);
  if (scheme === 'ptpip') {
    const address = parsePtpIpUri(name);
    if (!address) throw notACameraAddress(name);
    return ptpipCameraOpener(address.host, address.port);
  }
  if (/^mtp:/i.test(name)) throw notACameraAddress(name);
  return folderOpener(resolve(name));
}

export async function openSource(name: string, ctx: OpenContext): Promise<Source> {
  return sourceOpener(name)(ctx);
}

/**
 * The Sources a name stands for: `ptpip:` alone is every network camera that announces itself (mDNS,
 * SSDP) within a short window; every other name is one source (see `sourceOpener`).
 */
export async function openSources(name: string, ctx: OpenContext): Promise<Source[]> {
  if (name.toLowerCase() !== 'ptpip:') return [await openSource(name, ctx)];
  const { discoverPtpIpCameras } = await import('./ptpip/discovery.js');
  const found = await discoverPtpIpCameras({ timeoutMs: DISCOVERY_WINDOW_MS, signal: ctx.signal, logger: ctx.logger });
  if (found.length === 0) {
    throw new ShuttleError('SOURCE_NOT_FOUND', 'no network camera announced itself (mDNS _ptp._tcp or SSDP) within 2 s; give its address as ptpip:HOST[:PORT]', {
      context: { source: name },
    });
  }
  const sources: Source[] = [];
  try {
    for (const cam of found) sources.push(await ptpipCameraOpener(cam.host, cam.port)(ctx));
  } catch (err) {
    for (const s of sources) await s.close().catch(() => undefined);
    throw err;
  }
  return sources;
}
