/**
 * The Source contract (test/support/source-suite.ts) run against every implementation, each on a medium
 * built from the same fixture tree: a folder; a card (an exFAT image on a loop device, mounted by the
 * kernel or exfat-fuse, remounted for each open); a USB camera on the scripted link; a PTP/IP camera (the
 * simulator serving a folder); a hot folder (the watcher's batch as the source). The card needs root,
 * loop devices and exfatprogs / exfat-fuse: a missing piece fails the card tests naming it.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { openPtpIpCameraSource } from '../src/device/camera-source.js';
import { FolderSource } from '../src/device/card/folder-source.js';
import { PtpCamera } from '../src/device/ptp/camera.js';
import { usbQuirksFor } from '../src/device/ptp/quirks.js';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { UsbCameraSource } from '../src/device/usb-source.js';
import { UsbPtpTransport } from '../src/device/usb/transport.js';
import { HotFolderSource } from '../src/device/card/hot-folder-source.js';
import { HotFolderWatcher, type HotFile } from '../src/daemon/hotfolders.js';
import { silentLogger } from '../src/log.js';
import { describeSourceConformance, type FixtureFile, type SourceFactory } from './support/source-suite.js';
import { tempDir } from './support/tree.js';
import { fakeCameraHandler } from './support/usb-fake-camera.js';
import { FakePtpDevice } from './usb-fake-link.js';

async function writeTree(root: string, files: readonly FixtureFile[]): Promise<void> {
  for (const f of files) {
    const at = join(root, f.path);
    await mkdir(dirname(at), { recursive: true });
    await writeFile(at, f.content);
    await utimes(at, new Date(f.mtimeMs), new Date(f.mtimeMs));
  }
}

/** A fresh temp folder holding the tree. */
async function folderWith(files: readonly FixtureFile[], prefix: string): Promise<{ root: string; cleanup: () => Promise<void> }> {
  const dir = await tempDir(prefix);
  const root = join(dir.path, 'root');
  await writeTree(root, files);
  return { root, cleanup: dir.cleanup };
}

describeSourceConformance('folder', {
  kind: 'folder',
  capabilities: { mtime: { precisionMs: 1 } },
  async build(files) {
    const { root, cleanup } = await folderWith(files, 'shuttle-conform-folder-');
    return { open: async () => new FolderSource(root), listedPath: (p) => p, dispose: cleanup };
  },
});

// ---- card ----

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function need(condition: boolean, message: string): void {
  if (!condition) throw new Error(`cannot run the card conformance tests here: ${message}`);
}

function hasTool(tool: string): boolean {
  return ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(join(d, tool)));
}

const kernelExfat = readFileSync('/proc/filesystems', 'utf8')
  .split('\n')
  .some((l) => l.trim().split(/\s+/).pop() === 'exfat');

describeSourceConformance('card', {
  kind: 'card',
  capabilities: {
    mtime: kernelExfat
      ? { precisionMs: 10, why: 'exFAT keeps modification times in 10 ms steps' }
      : { precisionMs: 1000, why: 'exfat-fuse reads and writes whole seconds (it ignores exFAT 10 ms field)' },
  },
  async build(files) {
    need(process.getuid?.() === 0, 'mounting a card image needs root');
    need(hasTool('losetup') && readFileSync('/proc/devices', 'utf8').includes(' loop'), 'no loop devices in this kernel or sandbox');
    need(hasTool('mkfs.exfat'), 'mkfs.exfat missing (apt-get install exfatprogs)');
    need(kernelExfat || hasTool('mount.exfat-fuse'), 'no exfat in this kernel and mount.exfat-fuse missing (apt-get install exfat-fuse)');
    const work = await tempDir('shuttle-conform-card-');
    const img = join(work.path, 'card.img');
    sh('truncate', ['-s', '64M', img]);
    // Every Canon card has this label: the identity must tell two of them apart by more than it.
    sh('mkfs.exfat', ['-L', 'EOS_DIGITAL', img]);
    const loop = sh('losetup', ['-f', '--show', img]).trim();
    const mount = async (at: string, mode: 'rw' | 'ro'): Promise<void> => {
      await mkdir(at, { recursive: true });
      if (kernelExfat) sh('mount', ['-t', 'exfat', '-o', mode, loop, at]);
      else sh('mount.exfat-fuse', ['-o', mode, loop, at]);
    };
    let mounted: string | undefined;
    let opens = 0;
    const unmount = (): void => {
      if (mounted !== undefined) sh('umount', [mounted]);
      mounted = undefined;
    };
    try {
      mounted = join(work.path, 'fill');
      await mount(mounted, 'rw');
      await writeTree(mounted, files);
      unmount();
    } catch (err) {
      if (mounted !== undefined) unmount();
      sh('losetup', ['-d', loop]);
      await work.cleanup();
      throw err;
    }
    return {
      // The card read-only, as a reader mounts it, at a new mount point each time: its identity must not depend on where.
      async open() {
        unmount();
        const at = join(work.path, `mnt${opens++}`);
        await mount(at, 'ro');
        mounted = at;
        return new FolderSource(at);
      },
      listedPath: (p) => p,
      async dispose() {
        unmount();
        sh('losetup', ['-d', loop]);
        await work.cleanup();
      },
    };
  },
});

// ---- cameras ----

describeSourceConformance('USB camera (scripted link)', {
  kind: 'camera',
  capabilities: { mtime: { precisionMs: 100, why: 'PTP dates carry tenths of a second at most' } },
  async build(files) {
    // The serial stands for the body: another fixture is another camera.
    const hash = createHash('sha256');
    for (const f of files) hash.update(f.content);
    const serial = hash.digest('hex').slice(0, 12).toUpperCase();
    const usb = { vendorId: 0x1209, productId: 0x0001, busNumber: 1, deviceAddress: 4, portPath: '2', location: '1-2', interfaceNumber: 0, protocol: 'ptp' as const };
    const quirks = usbQuirksFor(usb);
    return {
      async open() {
        const link = new FakePtpDevice(fakeCameraHandler(files, { serialNumber: serial }));
        const camera = await PtpCamera.open(new UsbPtpTransport(link, { quirks: quirks.usb }), { quirks: quirks.ptp, wholeObjectDownloads: true });
        return new UsbCameraSource(camera, `usb:${usb.location}`, usb, { timeZone: 'UTC' });
      },
      listedPath: (p) => `SD/${p}`,
      dispose: async () => {},
    };
  },
});

describeSourceConformance('PTP/IP camera (simulator)', {
  kind: 'camera',
  capabilities: { mtime: { precisionMs: 1000, why: 'PTP dates carry whole seconds (the simulator sends no tenths)' } },
  async build(files) {
    const { root, cleanup } = await folderWith(files, 'shuttle-conform-ptpip-');
    const sim = await CameraSimulator.start({ dir: root, port: 0, timeZone: 'UTC', watch: false });
    return {
      open: () => openPtpIpCameraSource({ host: '127.0.0.1', port: sim.port, stateDir: join(dirname(root), 'state'), timeZone: 'UTC' }),
      listedPath: (p) => `SD/${p}`,
      async dispose() {
        await sim.stop();
        await cleanup();
      },
    };
  },
});

// ---- hot folder ----

/** The files the watcher hands on once they have settled, gathered over as many batches as it takes. */
async function settledBatch(root: string, expected: number): Promise<HotFile[]> {
  const seen = new Map<string, HotFile>();
  let watcher: HotFolderWatcher | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      // A bound on a failure, not a wait for success: the batch normally comes within a second.
      const timer = setTimeout(() => reject(new Error(`the hot folder watcher handed on ${seen.size} of ${expected} files within 20 s: ${[...seen.keys()].join(', ')}`)), 20_000);
      watcher = new HotFolderWatcher({
        root,
        settleMs: 100,
        batchMs: 20,
        logger: silentLogger,
        onBatch: (batch) => {
          for (const f of batch) seen.set(f.rel, f);
          if (seen.size >= expected) {
            clearTimeout(timer);
            resolve();
          }
        },
      });
      watcher.start().catch(reject);
    });
  } finally {
    await watcher?.close();
  }
  return [...seen.values()];
}

describeSourceConformance('hot folder', {
  kind: 'folder',
  capabilities: { mtime: { precisionMs: 1 } },
  async build(files) {
    const { root, cleanup } = await folderWith(files, 'shuttle-conform-hot-');
    return { open: async () => new HotFolderSource(root, await settledBatch(root, files.length)), listedPath: (p) => p, dispose: cleanup };
  },
});
