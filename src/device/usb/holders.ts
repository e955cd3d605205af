/**
 * Which processes have a USB device open: when claiming a camera fails "busy", the user needs to know who
 * holds it (gvfsd-gphoto2, gvfsd-mtp, gphoto2, a file manager) to let it go. Reads /proc only.
 */
import { readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface DeviceHolder {
  pid: number;
  /** The process name (/proc/PID/comm). */
  name: string;
}

/** The usbfs node of a device, as processes hold it open. */
export function usbDeviceNode(busNumber: number, deviceAddress: number): string {
  return `/dev/bus/usb/${String(busNumber).padStart(3, '0')}/${String(deviceAddress).padStart(3, '0')}`;
}

/** Processes with the device's usbfs node open, in pid order; `proc` is /proc (a test gives another). Those it may not read are not seen. */
export async function usbDeviceHolders(busNumber: number, deviceAddress: number, proc = '/proc'): Promise<DeviceHolder[]> {
  const node = usbDeviceNode(busNumber, deviceAddress);
  const holders: DeviceHolder[] = [];
  const pids = (await readdir(proc).catch(() => [] as string[])).filter((e) => /^\d+$/.test(e)).map(Number);
  for (const pid of pids.sort((a, b) => a - b)) {
    if (pid === process.pid) continue;
    const fds = await readdir(join(proc, String(pid), 'fd')).catch(() => [] as string[]);
    let holds = false;
    for (const fd of fds) {
      if ((await readlink(join(proc, String(pid), 'fd', fd)).catch(() => '')) === node) {
        holds = true;
        break;
      }
    }
    if (!holds) continue;
    const name = (await readFile(join(proc, String(pid), 'comm'), 'utf8').catch(() => '?')).trim();
    holders.push({ pid, name });
  }
  return holders;
}

/** GNOME's gvfs backends, which open a camera as it is plugged in. */
export function isGvfs(name: string): boolean {
  return /^gvfsd-(gphoto2|mtp)$|^gvfs-(gphoto2|mtp)-vo/.test(name);
}
