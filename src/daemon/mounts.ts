import { readFileSync } from 'node:fs';
import { type MountEntry, parseMountinfo } from '../device/card/mountinfo.js';
import { folderOpener } from '../device/detect.js';
import type { Logger } from '../log.js';
import { pathJobKey, type AttachedDevice, type DeviceEvents, type DeviceWatcher } from './devices.js';

/**
 * Cards mounted by something else (a desktop automounter under /media, an fstab entry): every
 * filesystem mounted strictly below one of the configured roots is a device while it is mounted.
 * The mount table is polled: /proc/self/mountinfo signals changes through poll(2) priority events,
 * which Node cannot wait for, and a read every second or two costs nothing measurable.
 */

/**
 * Where shuttle-card@.service mounts cards (its CARD_MOUNT_BASE). The daemon always watches it: the job
 * then starts as soon as the card is mounted, not once the unit's request client has started (seconds
 * on a slow box); the client's request finds that job by its key and waits for it.
 */
export const CARD_MOUNT_BASE = '/media/shuttle';

/** Filesystems that are never a card. */
const NOT_CARDS = new Set([
  'autofs',
  'tmpfs',
  'ramfs',
  'proc',
  'sysfs',
  'devtmpfs',
  'devpts',
  'overlay',
  'squashfs',
  'cgroup',
  'cgroup2',
  'nsfs',
  'bpf',
  'tracefs',
  'debugfs',
  'securityfs',
  'pstore',
  'mqueue',
  'hugetlbfs',
  'configfs',
  'fusectl',
  'binfmt_misc',
  'fuse.gvfsd-fuse',
  'fuse.portal',
  'efivarfs',
  'nfs',
  'nfs4',
  'cifs',
  'smb3',
]);

function below(path: string, root: string): boolean {
  const r = root.endsWith('/') ? root : `${root}/`;
  return path.startsWith(r) && path.length > r.length;
}

export interface MountWatcherOptions {
  roots: readonly string[];
  logger: Logger;
  intervalMs?: number | undefined;
  /** The mount table to read (tests give a file of their own). */
  mountinfo?: string | undefined;
  /** Mount points that are never devices (the daemon's destinations). */
  skip?: ((mountPoint: string) => boolean) | undefined;
}

export class MountWatcher implements DeviceWatcher {
  readonly name = 'mounts';
  readonly #opts: MountWatcherOptions;
  readonly #known = new Map<string, MountEntry>();
  #timer: NodeJS.Timeout | undefined;
  #events: DeviceEvents | undefined;
  #closed = false;
  /** The table as last read: unchanged, there is nothing to compare. */
  #lastTable: string | undefined;

  constructor(opts: MountWatcherOptions) {
    this.#opts = opts;
  }

  async start(events: DeviceEvents): Promise<void> {
    this.#events = events;
    await this.poll();
    this.#timer = setInterval(() => void this.poll(), this.#opts.intervalMs ?? 1_000);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
  }

  /** Reads the mount table once and reports what changed since the last read. */
  poll(): Promise<void> {
    this.#read();
    return Promise.resolve();
  }

  #read(): void {
    let text: string;
    try {
      // Read on this thread: the table is a few kilobytes from memory, and the thread pool's hand-offs
      // cost more than the read (they were most of the idle daemon's CPU time, at four polls a second).
      text = readFileSync(this.#opts.mountinfo ?? '/proc/self/mountinfo', 'utf8');
    } catch (err) {
      this.#opts.logger.warn({ err }, 'cannot read the mount table');
      return;
    }
    if (this.#closed || !this.#events || text === this.#lastTable) return;
    this.#lastTable = text;
    const now = new Map<string, MountEntry>();
    for (const m of parseMountinfo(text)) {
      if (NOT_CARDS.has(m.fstype) || !this.#opts.roots.some((r) => below(m.target, r)) || this.#opts.skip?.(m.target)) continue;
      now.set(`mount:${m.major}:${m.minor}:${m.target}`, m);
    }
    for (const [id, m] of this.#known) {
      if (!now.has(id)) {
        this.#known.delete(id);
        this.#events.detach(id, `${m.target} was unmounted`);
      }
    }
    for (const [id, m] of now) {
      if (this.#known.has(id)) continue;
      this.#known.set(id, m);
      this.#events.attach(mountedCard(id, m));
    }
  }
}

function mountedCard(id: string, m: MountEntry): AttachedDevice {
  return {
    id,
    kind: 'card',
    // The mount point, as a request for the same card would name it: logs and status read the same either way.
    label: m.target,
    uri: m.target,
    jobKey: pathJobKey(m.target),
    open: folderOpener(m.target),
  };
}
