import { realpath, stat } from 'node:fs/promises';
import { dirname, isAbsolute, normalize } from 'node:path';
import { cameraScheme, folderOpener, ptpipCameraOpener, usbCameraOpener, type SourceOpener } from '../device/detect.js';
import { parsePtpIpUri, ptpipUri } from '../device/ptpip/address.js';
import type { DiscoveredCamera } from '../device/ptpip/discovery.js';
import { PTPIP_DEFAULT_PORT } from '../device/ptpip/packets.js';
import { hex4, matchesSelector, parseUsbSelector, type UsbCameraInfo } from '../device/usb/discovery.js';
import { ShuttleError, errnoCode } from '../errors.js';
import { pathJobKey } from './devices.js';
import type { JobKind } from './status.js';

/**
 * What a control request may ask the daemon to ingest. The socket is open to the service user's group,
 * and the daemon reads as the service user (its own state and credentials included), so a request names
 * only sources the configuration already puts in the daemon's hands:
 *
 *   - a folder: resolved with realpath (every symlink followed) and then one of the allowed roots or
 *     inside one: the card mount base, `[daemon] watch_mounts`, `hot_folders`, `allowed_sources`;
 *   - `usb:…`: a selector that matches a USB camera attached now;
 *   - `ptpip:HOST[:PORT]`: a network camera the daemon discovered, or an address `[daemon] network_cameras` lists.
 *
 * Everything else is refused with a USAGE error whose `context.rule` names the rule it broke.
 */

export interface RequestedSource {
  key: string;
  kind: JobKind;
  label: string;
  open: SourceOpener;
}

export interface AllowedRoot {
  path: string;
  /** The setting that allows it, for the refusal message (`[daemon] hot_folders`). */
  setting: string;
}

export interface RequestSourceOptions {
  roots: readonly AllowedRoot[];
  /** USB cameras attached now. */
  usbCameras: () => Promise<readonly UsbCameraInfo[]>;
  /** Network cameras discovered (and admitted by `network_cameras`) now. */
  networkCameras: () => readonly DiscoveredCamera[];
  /** The `network_cameras` allowlist (its addresses admit a camera not discovered); empty when it is true or false. */
  networkAddresses: readonly string[];
}

export type SourceRule = 'path-or-camera' | 'allowed-folders' | 'attached-usb-camera' | 'known-network-camera';

function refused(source: string, rule: SourceRule, why: string, context: Record<string, unknown> = {}): ShuttleError {
  return new ShuttleError('USAGE', `source ${JSON.stringify(source)} refused: ${why}`, { context: { source, reason: 'source-not-allowed', rule, ...context } });
}

/** Whether `path` is `root` or inside it (both absolute and normalised). */
export function within(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith('/') ? root : `${root}/`);
}

export async function resolveRequestedSource(source: string, opts: RequestSourceOptions): Promise<RequestedSource> {
  const scheme = cameraScheme(source);
  if (scheme === 'usb') return usbSource(source, opts);
  if (scheme === 'ptpip') return networkSource(source, opts);
  if (!isAbsolute(source)) {
    throw refused(
      source,
      'path-or-camera',
      "a request names an absolute folder, a USB camera (usb:, usb:VID:PID, usb:BUS-PORT) or a network camera (ptpip:HOST[:PORT]); the daemon does not know the client's working directory",
    );
  }
  return folderSource(source, opts.roots);
}

function describeRoots(roots: readonly AllowedRoot[]): string {
  const settings = [...new Set([...roots.map((r) => r.setting), '[daemon] allowed_sources'])];
  return `the daemon ingests only folders that are, or are inside, ${settings.join(', ')}`;
}

async function folderSource(source: string, roots: readonly AllowedRoot[]): Promise<RequestedSource> {
  const realRoots: string[] = [];
  for (const r of roots) {
    const real = await realpath(r.path).catch(() => undefined);
    if (real !== undefined) realRoots.push(real);
  }
  let real: string;
  try {
    real = await realpath(source);
  } catch (cause) {
    // Whether something exists outside the allowed folders is none of the client's business.
    if (!roots.some((r) => within(normalize(source), r.path))) throw refused(source, 'allowed-folders', describeRoots(roots));
    throw new ShuttleError('SOURCE_NOT_FOUND', `source ${source} is not a folder the daemon can read: ${errnoCode(cause) ?? String(cause)}`, { cause, context: { source } });
  }
  if (!realRoots.some((root) => within(real, root))) {
    const resolved = real === source ? '' : ` (it resolves to ${real})`;
    throw refused(source, 'allowed-folders', `${describeRoots(roots)}${resolved}`, { resolved: real, allowed: roots.map((r) => r.path) });
  }
  const st = await stat(real);
  if (!st.isDirectory()) {
    throw new ShuttleError('SOURCE_NOT_FOUND', `source ${source} is not a folder the daemon can read: ENOTDIR`, { context: { source } });
  }
  const mountRoot = real !== '/' && st.dev !== (await stat(dirname(real))).dev;
  return { key: pathJobKey(real), kind: mountRoot ? 'card' : 'folder', label: real, open: folderOpener(real) };
}

async function usbSource(source: string, opts: RequestSourceOptions): Promise<RequestedSource> {
  const selector = parseUsbSelector(source);
  const match = (await opts.usbCameras()).find((c) => matchesSelector(c, selector));
  if (!match) throw refused(source, 'attached-usb-camera', 'no USB camera attached now matches it (the daemon ingests only USB cameras that are plugged in)');
  // By its port, as the USB watcher names it: a request for a camera the watcher already ingests joins that job.
  const uri = `usb:${match.location}`;
  const name = [match.manufacturer, match.product].filter(Boolean).join(' ') || `USB camera ${hex4(match.vendorId)}:${hex4(match.productId)}`;
  return { key: uri, kind: 'camera', label: `${name} (${uri})`, open: usbCameraOpener(uri) };
}

/**
 * Whether `[daemon] network_cameras` (an allowlist) names this camera: by the serial it announces
 * (guid/uuid, any case), or by its address as HOST or HOST:PORT (IPv6 in brackets with a port).
 */
export function cameraListed(entries: readonly string[], cam: { host: string; port: number; guid?: string | undefined }): boolean {
  const hostForm = cam.host.includes(':') ? `[${cam.host}]` : cam.host;
  const guid = cam.guid?.toLowerCase();
  return entries.some((e) => e === cam.host || e === hostForm || e === `${hostForm}:${cam.port}` || (guid !== undefined && e.toLowerCase() === guid));
}

function networkSource(source: string, opts: RequestSourceOptions): RequestedSource {
  const addr = parsePtpIpUri(source);
  if (!addr) throw refused(source, 'known-network-camera', 'a network camera is named ptpip:HOST[:PORT] (IPv6 in brackets)');
  const port = addr.port ?? PTPIP_DEFAULT_PORT;
  const cam = opts.networkCameras().find((c) => c.host === addr.host && (addr.port === undefined || c.port === addr.port));
  if (cam) {
    const label = [cam.manufacturer, cam.model].filter(Boolean).join(' ') || cam.name;
    return { key: cam.uri, kind: 'camera', label: `${label} (${cam.host}, ${cam.via})`, open: ptpipCameraOpener(cam.host, cam.port) };
  }
  if (cameraListed(opts.networkAddresses, { host: addr.host, port })) {
    const uri = ptpipUri(addr.host, port);
    return { key: uri, kind: 'camera', label: uri, open: ptpipCameraOpener(addr.host, port) };
  }
  throw refused(
    source,
    'known-network-camera',
    'the daemon connects only to network cameras it discovered (with [daemon] network_cameras on) or whose address [daemon] network_cameras lists',
  );
}
