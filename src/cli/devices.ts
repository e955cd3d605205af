import { Command, InvalidArgumentError } from 'commander';
import { discoverPtpIpCameras, type DiscoveredCamera } from '../device/ptpip/discovery.js';
import { hex4 } from '../device/usb/discovery.js';
import { listUsbCameras, type UsbCameraListing } from '../device/usb-source.js';
import { commandContext, type GlobalOptions } from './context.js';

/** One camera as `shuttle devices --json` prints it. */
export interface DeviceJson {
  selector: string;
  vid: string;
  pid: string;
  bus: number;
  port: string;
  address: number;
  protocol: 'ptp' | 'mtp';
  manufacturer: string | null;
  model: string | null;
  serial: string | null;
  vendor: string | null;
  quirks: Array<{ settings: Record<string, unknown>; why: string }>;
  problem?: string;
}

export function deviceJson(c: UsbCameraListing): DeviceJson {
  const out: DeviceJson = {
    selector: c.selector,
    vid: hex4(c.vendorId),
    pid: hex4(c.productId),
    bus: c.busNumber,
    port: c.portPath,
    address: c.deviceAddress,
    protocol: c.protocol,
    manufacturer: c.manufacturer ?? null,
    model: c.product ?? null,
    serial: c.serialNumber ?? null,
    vendor: c.vendor ?? null,
    quirks: c.quirks,
  };
  if (c.problem !== undefined) out.problem = c.problem;
  return out;
}

function humanLine(d: DeviceJson): string {
  const name = [d.manufacturer, d.model].filter((x) => x !== null).join(' ') || '(name unreadable)';
  const lines = [`${d.selector}  ${d.vid}:${d.pid}  ${name}${d.serial ? `  serial ${d.serial}` : ''}  [${d.protocol.toUpperCase()}${d.vendor ? `, ${d.vendor}` : ''}]`];
  if (d.problem) lines.push(`    problem: ${d.problem}`);
  for (const q of d.quirks) lines.push(`    quirk ${JSON.stringify(q.settings)}: ${q.why}`);
  return lines.join('\n');
}

/** One network camera as `shuttle devices --json` prints it (under `network`). */
export interface NetworkDeviceJson {
  selector: string;
  host: string;
  port: number;
  name: string;
  via: 'mdns' | 'ssdp';
  service: string;
  guid: string | null;
  manufacturer: string | null;
  model: string | null;
}

export function networkDeviceJson(c: DiscoveredCamera): NetworkDeviceJson {
  return {
    selector: c.uri,
    host: c.host,
    port: c.port,
    name: c.name,
    via: c.via,
    service: c.service,
    guid: c.guid ?? null,
    manufacturer: c.manufacturer ?? null,
    model: c.model ?? null,
  };
}

function networkLine(d: NetworkDeviceJson): string {
  const what = [d.manufacturer, d.model].filter((x) => x !== null).join(' ');
  return `${d.selector}  ${d.name}${what && what !== d.name ? `  (${what})` : ''}  [PTP/IP, ${d.via === 'mdns' ? 'mDNS' : 'SSDP'}]`;
}

function parseMs(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 60_000) throw new InvalidArgumentError(`not a number of milliseconds (0..60000): ${value}`);
  return n;
}

export function devicesCommand(globals: () => GlobalOptions): Command {
  return new Command('devices')
    .description(
      'list attached USB cameras (PTP and MTP) with the selector to ingest them by and the quirks Shuttle applies, and PTP/IP cameras announcing themselves on the network (mDNS, SSDP)',
    )
    .option('--json', 'print one JSON object on stdout')
    .option('--no-network', 'do not look for network (PTP/IP) cameras')
    .option('--network-timeout <ms>', 'how long to listen for network cameras', parseMs, 1500)
    .action(async (opts: { json?: boolean; network: boolean; networkTimeout: number }) => {
      const ctx = commandContext(globals());
      const searching = opts.network && opts.networkTimeout > 0 ? discoverPtpIpCameras({ timeoutMs: opts.networkTimeout, logger: ctx.logger }) : Promise.resolve(undefined);
      // Both at once: the network scan is a fixed listening window, the USB listing opens devices.
      const [usb, net] = await Promise.all([listUsbCameras({ logger: ctx.logger }), searching]);
      const cameras = usb.map(deviceJson);
      const network = net?.map(networkDeviceJson);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(network ? { cameras, network } : { cameras })}\n`);
        return;
      }
      const out = [cameras.length === 0 ? 'no USB cameras found' : cameras.map(humanLine).join('\n')];
      if (network) out.push(network.length === 0 ? 'no network cameras found' : network.map(networkLine).join('\n'));
      process.stdout.write(`${out.join('\n')}\n`);
    });
}
