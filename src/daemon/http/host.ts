import { readdir, readFile, statfs } from 'node:fs/promises';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { errnoCode } from '../../errors.js';

/** Facts about the box for the station view: free space per destination, CPU temperature, network links. */

export interface DiskSpace {
  path: string;
  freeBytes?: number | undefined;
  totalBytes?: number | undefined;
  /** Why the figures are missing (the destination's drive is not mounted, no permission). */
  error?: string | undefined;
}

export async function diskSpace(path: string): Promise<DiskSpace> {
  try {
    const s = await statfs(path);
    // bavail, not bfree: what an unprivileged writer (the service user) can still use.
    return { path, freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
  } catch (err) {
    return { path, error: errnoCode(err) ?? String(err) };
  }
}

/** Thermal zones that are the CPU's, by their type, best first. */
const CPU_ZONES = ['x86_pkg_temp', 'cpu-thermal', 'cpu_thermal', 'soc_thermal', 'soc-thermal', 'coretemp', 'k10temp', 'acpitz'];

/**
 * The CPU's temperature in °C from /sys/class/thermal, where the kernel exposes one (a Raspberry Pi, most
 * laptops and mini PCs; not most VMs); undefined otherwise.
 */
export async function cpuTemperature(root = '/sys/class/thermal'): Promise<number | undefined> {
  let zones: string[];
  try {
    zones = (await readdir(root)).filter((z) => z.startsWith('thermal_zone'));
  } catch {
    return undefined;
  }
  const found: Array<{ rank: number; celsius: number }> = [];
  for (const zone of zones) {
    try {
      const type = (await readFile(join(root, zone, 'type'), 'utf8')).trim();
      const milli = Number((await readFile(join(root, zone, 'temp'), 'utf8')).trim());
      if (!Number.isFinite(milli)) continue;
      const rank = CPU_ZONES.indexOf(type);
      found.push({ rank: rank < 0 ? CPU_ZONES.length : rank, celsius: Math.round(milli / 100) / 10 });
    } catch {
      // A zone that cannot be read (disabled sensor: EINVAL/ENODATA) is skipped.
    }
  }
  found.sort((a, b) => a.rank - b.rank);
  return found[0]?.celsius;
}

/** Network interfaces with an address other than loopback and link-local: whether the box is on a network at all. */
export function networkLinks(): Array<{ name: string; addresses: string[] }> {
  const out: Array<{ name: string; addresses: string[] }> = [];
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    const usable = (addrs ?? []).filter((a) => !a.internal && !(a.family === 'IPv6' && a.address.toLowerCase().startsWith('fe80:')));
    if (usable.length > 0) out.push({ name, addresses: usable.map((a) => a.address) });
  }
  return out;
}
