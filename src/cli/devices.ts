import { Command } from 'commander';
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

export function devicesCommand(globals: () => GlobalOptions): Command {
  return new Command('devices')
    .description('list attached USB cameras (PTP and MTP) with the selector to ingest them by and the quirks Shuttle applies')
    .option('--json', 'print one JSON object on stdout')
    .action(async (opts: { json?: boolean }) => {
      const ctx = commandContext(globals());
      const cameras = (await listUsbCameras({ logger: ctx.logger })).map(deviceJson);
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ cameras })}\n`);
        return;
      }
      process.stdout.write(cameras.length === 0 ? 'no USB cameras found\n' : `${cameras.map(humanLine).join('\n')}\n`);
    });
}
