import { execFile } from 'node:child_process';
import { access, constants, readdir, readFile, readlink, realpath, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { ShuttleError, errnoCode } from '../../errors.js';
import type { Logger } from '../../log.js';
import { parseMountinfo } from './mountinfo.js';

/**
 * Ejecting a card from the dashboard: unmount it, then power the reader's USB port off so the card can be
 * pulled, with the same guards as systemd/shuttle-card's `release` (which does this after a card unit's
 * ingest): no power-off while another filesystem of the disk is mounted, nor for a disk that is not on
 * USB, nor for a multi-slot reader (removing it would take the other slots with it).
 * Needs the privilege to unmount and to write to sysfs: root. The installed daemon has neither, and
 * keeps it so: `ejectThroughSystemd` asks systemd to start shuttle-eject@NAME.service, whose root step
 * (systemd/shuttle-card eject) does the same with the same guards; a polkit rule the installer ships
 * lets the shuttle user start that unit and no other.
 */

export interface EjectOptions {
  /** The card's mount point. */
  mountPoint: string;
  /** major:minor of its filesystem's block device (from the mount table). */
  dev: string;
  logger: Logger;
  /** sysfs (tests give a tree of their own). */
  sysRoot?: string | undefined;
  /** The mount table, read after the unmount (tests give their own). */
  mounts?: (() => Promise<string>) | undefined;
  /** Runs umount(8) (tests may replace it). */
  unmount?: ((mountPoint: string) => Promise<void>) | undefined;
}

export interface EjectResult {
  unmounted: true;
  poweredOff: boolean;
  /** Why the card was not powered off, when it was not. */
  note?: string | undefined;
  /** The USB device switched off (`1-2`), when it was. */
  usbDevice?: string | undefined;
}

const exec = promisify(execFile);

/** Whether this process may unmount and power off by itself (ejectCard), or must ask systemd (ejectThroughSystemd). */
export function mayEjectDirectly(): boolean {
  return process.getuid?.() === 0;
}

async function umount(mountPoint: string): Promise<void> {
  await exec('umount', [mountPoint], { timeout: 30_000 });
}

export async function ejectCard(o: EjectOptions): Promise<EjectResult> {
  const sys = o.sysRoot ?? '/sys';
  // Which disk it is must be known before the unmount: afterwards the mount table no longer says.
  const part = await blockName(sys, o.dev);
  try {
    await (o.unmount ?? umount)(o.mountPoint);
  } catch (cause) {
    const detail = cause instanceof Error && 'stderr' in cause ? String((cause as { stderr: unknown }).stderr).trim() : errnoCode(cause);
    throw new ShuttleError('EJECT_FAILED', `cannot unmount ${o.mountPoint}: ${detail || String(cause)}`, { cause, context: { path: o.mountPoint } });
  }
  o.logger.info({ mountPoint: o.mountPoint, dev: o.dev }, 'card unmounted');
  if (part === undefined) return { unmounted: true, poweredOff: false, note: `no block device ${o.dev} in ${sys}` };
  const off = await powerOff(sys, part, o.mounts ?? (() => readFile('/proc/self/mounts', 'utf8')));
  o.logger.info({ device: part, ...off }, off.poweredOff ? 'card powered off' : 'card not powered off');
  return { unmounted: true, ...off };
}

export interface SystemdEjectOptions extends Pick<EjectOptions, 'mountPoint' | 'dev' | 'logger' | 'sysRoot'> {
  /** The mount table after the eject unit ran (tests give their own). */
  mountinfo?: (() => Promise<string>) | undefined;
  /** Runs systemctl with these arguments (tests may replace it). */
  systemctl?: ((args: string[]) => Promise<void>) | undefined;
}

/** The unit the daemon starts for an eject; the polkit rule allows the shuttle user exactly these. */
export function ejectUnit(name: string): string {
  return `shuttle-eject@${name}.service`;
}

async function systemctl(args: string[]): Promise<void> {
  await exec('systemctl', args, { timeout: 90_000 });
}

/**
 * The eject of the installed daemon: systemd runs shuttle-eject@NAME.service (a oneshot, so `systemctl
 * start` returns when it has finished), which stops the card's unit or unmounts, then powers the reader
 * off. Only cards mounted by their kernel name below the mount base qualify (that is all the unit acts
 * on). What happened is read back from the mount table and sysfs, which the daemon can read.
 */
export async function ejectThroughSystemd(o: SystemdEjectOptions): Promise<EjectResult> {
  const sys = o.sysRoot ?? '/sys';
  const part = await blockName(sys, o.dev);
  if (part === undefined || basename(o.mountPoint) !== part) {
    throw new ShuttleError(
      'EJECT_FAILED',
      `cannot eject ${o.mountPoint}: only cards the card unit mounts (at their kernel name, like /media/shuttle/sdb1) are ejected through systemd`,
      {
        context: { path: o.mountPoint },
      },
    );
  }
  const unit = ejectUnit(part);
  try {
    await (o.systemctl ?? systemctl)(['start', '--no-ask-password', unit]);
  } catch (cause) {
    const stderr = cause instanceof Error && 'stderr' in cause ? String((cause as { stderr: unknown }).stderr).trim() : '';
    const denied = /access denied|interactive authentication required/i.test(stderr);
    const why = denied ? 'not allowed: is polkitd installed and /etc/polkit-1/rules.d/50-shuttle.rules in place (the installer puts it there)?' : stderr || String(cause);
    throw new ShuttleError('EJECT_FAILED', `cannot eject ${o.mountPoint}: systemctl start ${unit}: ${why}`, { cause, context: { path: o.mountPoint } });
  }
  const table = await (o.mountinfo ?? (() => readFile('/proc/self/mountinfo', 'utf8')))();
  if (parseMountinfo(table).some((m) => m.target === o.mountPoint)) {
    throw new ShuttleError('EJECT_FAILED', `${unit} ran, but ${o.mountPoint} is still mounted (journalctl -u ${unit} says why)`, { context: { path: o.mountPoint } });
  }
  o.logger.info({ mountPoint: o.mountPoint, dev: o.dev, unit }, 'card unmounted');
  const poweredOff = !(await exists(join(sys, 'class', 'block', part)));
  const result: EjectResult = poweredOff ? { unmounted: true, poweredOff } : { unmounted: true, poweredOff, note: `not powered off (journalctl -u ${unit} says why)` };
  o.logger.info({ device: part, ...result }, poweredOff ? 'card powered off' : 'card not powered off');
  return result;
}

/** The kernel's name of the block device major:minor (`sdb1`), if sysfs knows it. */
async function blockName(sys: string, dev: string): Promise<string | undefined> {
  if (!/^\d+:\d+$/.test(dev)) return undefined;
  try {
    return basename(await readlink(join(sys, 'dev', 'block', dev)));
  } catch {
    return undefined;
  }
}

async function exists(path: string, mode = constants.F_OK): Promise<boolean> {
  return access(path, mode).then(
    () => true,
    () => false,
  );
}

async function powerOff(sys: string, part: string, mounts: () => Promise<string>): Promise<Omit<EjectResult, 'unmounted'>> {
  const node = join(sys, 'class', 'block', part);
  if (!(await exists(node))) return { poweredOff: false, note: 'the device is gone' };
  const disk = (await exists(join(node, 'partition'))) ? basename(dirname(await realpath(node))) : part;
  const still = (await mounts()).split('\n').find((l) => new RegExp(`^/dev/${disk}p?\\d* `).test(l));
  if (still !== undefined) return { poweredOff: false, note: `another filesystem of /dev/${disk} is still mounted` };
  const usb = await usbDeviceOf(await realpath(join(sys, 'class', 'block', disk)), sys);
  if (usb === undefined) return { poweredOff: false, note: `/dev/${disk} is not on a USB device` };
  const slots = await countDisks(usb);
  if (slots > 1) return { poweredOff: false, note: `the reader has ${slots} slots` };
  try {
    // Detach the disk cleanly first (the SCSI layer flushes and stops it), then switch the port off.
    const del = join(sys, 'block', disk, 'device', 'delete');
    if (await exists(del, constants.W_OK)) await writeFile(del, '1');
    await writeFile(join(usb, 'remove'), '1');
  } catch (cause) {
    throw new ShuttleError('EJECT_FAILED', `unmounted, but cannot power off /dev/${disk}: ${errnoCode(cause) ?? String(cause)}`, { cause, context: { device: disk } });
  }
  return { poweredOff: true, usbDevice: basename(usb) };
}

/** The USB device (a directory with busnum and remove) a block device hangs off, walking up its sysfs path. */
async function usbDeviceOf(path: string, sys: string): Promise<string | undefined> {
  for (let d = path; d.startsWith(sys) && d !== sys; d = dirname(d)) {
    if ((await exists(join(d, 'busnum'))) && (await exists(join(d, 'remove')))) return d;
  }
  return undefined;
}

/** Block devices below a USB device (one per slot of a card reader): host*\/target*\/*\/block/*. */
async function countDisks(usb: string): Promise<number> {
  let n = 0;
  const list = async (dir: string, match: (name: string) => boolean): Promise<string[]> =>
    (await readdir(dir).catch(() => [] as string[])).filter(match).map((name) => join(dir, name));
  for (const iface of await list(usb, (n) => n.includes(':')))
    for (const host of await list(iface, (n) => n.startsWith('host')))
      for (const target of await list(host, (n) => n.startsWith('target')))
        for (const lun of await list(target, (n) => /^\d+:\d+:\d+:\d+$/.test(n))) n += (await list(join(lun, 'block'), () => true)).length;
  return n;
}
