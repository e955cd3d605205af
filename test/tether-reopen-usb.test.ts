import { describe, expect, test } from 'vitest';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Device } from 'usb';
import { PtpCamera } from '../src/device/ptp/camera.js';
import { usbQuirksFor } from '../src/device/ptp/quirks.js';
import { TetheredCameraSource } from '../src/device/tethered-source.js';
import type { SourceEntry, SourceItem } from '../src/device/source.js';
import type { FoundUsbCamera, UsbCameraInfo } from '../src/device/usb/discovery.js';
import { usbDeviceHolders } from '../src/device/usb/holders.js';
import { UsbPtpTransport } from '../src/device/usb/transport.js';
import { gvfsWarnings } from '../src/cli/tether.js';
import { UsbCameraSource, reopenUsbCamera, usbMatchRank, type UsbReopenSteps } from '../src/device/usb-source.js';
import { ShuttleError, isShuttleError } from '../src/errors.js';
import { fakeCameraHandler, type FakeCameraFile } from './support/usb-fake-camera.js';
import { tempDir } from './support/tree.js';
import { FakePtpDevice } from './usb-fake-link.js';

/**
 * Reopening a USB camera that dropped: it is found again on the bus (by its serial, or in its socket) after
 * it re-enumerated under a new address; a reopen that fails gets a USB port reset and one more try; and a
 * tethering session over it goes on across the unplug, naming the shot taken while it was away.
 */
const EOS = { vendorId: 0x04a9, productId: 0x32d4, busNumber: 1, interfaceNumber: 0, protocol: 'ptp' as const };
const at = (address: number, port: string, serialNumber?: string): UsbCameraInfo => ({
  ...EOS,
  deviceAddress: address,
  portPath: port,
  location: `1-${port}`,
  ...(serialNumber === undefined ? {} : { serialNumber }),
});
const found = (info: UsbCameraInfo): FoundUsbCamera => ({ info, device: {} as Device });

const file = (path: string, seed: number): FakeCameraFile => ({ path, content: Buffer.alloc(4096 + seed, seed), mtimeMs: Date.UTC(2026, 2, 14, 9, 26, seed) });

async function openFake(files: FakeCameraFile[], serial = 'EOS123'): Promise<{ camera: PtpCamera; device: FakePtpDevice }> {
  const device = new FakePtpDevice(fakeCameraHandler(files, { serialNumber: serial, manufacturer: 'Canon', model: 'EOS R5' }));
  const quirks = usbQuirksFor(EOS);
  const camera = await PtpCamera.open(new UsbPtpTransport(device, { quirks: quirks.usb }), { quirks: quirks.ptp, wholeObjectDownloads: true });
  return { camera, device };
}

/** Steps that play a bus: what `find` sees each time, what each open does; every call recorded. */
function scripted(busScans: FoundUsbCamera[][], opens: Array<(f: FoundUsbCamera) => Promise<PtpCamera>>) {
  const calls: string[] = [];
  const steps: UsbReopenSteps = {
    find: async () => {
      calls.push('find');
      return busScans.shift() ?? [];
    },
    open: (f) => {
      calls.push(`open ${f.info.deviceAddress}`);
      return opens.shift()!(f);
    },
    reset: async (f) => {
      calls.push(`reset ${f.info.deviceAddress}`);
    },
  };
  return { steps, calls };
}

describe('reopenUsbCamera', () => {
  test('the-camera-is-looked-for-by-its-serial-in-any-socket-then-in-its-socket-then-by-its-ids', () => {
    expect(usbMatchRank(at(4, '2', 'A1'), at(9, '3', 'A1'))).toBe(3);
    expect(usbMatchRank(at(4, '2', 'A1'), at(9, '2', 'B2'))).toBe(2);
    expect(usbMatchRank(at(4, '2'), at(9, '2'))).toBe(2);
    // QEMU's USB serial names the port: the same camera elsewhere may have another; its PTP identity decides.
    expect(usbMatchRank(at(4, '2', 'A1'), at(9, '3', 'B2'))).toBe(1);
    expect(usbMatchRank(at(4, '2', 'A1'), { ...at(9, '2', 'A1'), productId: 0x32d5 })).toBe(0);
  });

  test('a-camera-that-re-enumerated-is-found-at-its-new-address-and-opened-without-a-reset', async () => {
    const { camera } = await openFake([file('DCIM/100CANON/IMG_0001.CR2', 1)]);
    // Another camera of the same model first, in the socket ours was in; ours came back under a new address in another socket.
    const { steps, calls } = scripted([[found(at(5, '2', 'OTHER')), found(at(12, '4', 'EOS123'))]], [async () => camera]);
    const got = await reopenUsbCamera(at(7, '2', 'EOS123'), steps);
    expect(got.camera).toBe(camera);
    expect(got.info.deviceAddress).toBe(12);
    expect(calls).toEqual(['find', 'open 12']);
    await camera.close();
  });

  test('a-reopen-that-fails-resets-the-usb-port-finds-the-camera-again-and-opens-it', async () => {
    const { camera } = await openFake([file('DCIM/100CANON/IMG_0001.CR2', 1)]);
    const wedged = new ShuttleError('PTP_TIMEOUT', 'no answer to OpenSession', { retryable: true });
    const { steps, calls } = scripted(
      [[found(at(12, '2'))], [found(at(13, '2'))]],
      [
        async () => {
          throw wedged;
        },
        async () => camera,
      ],
    );
    const got = await reopenUsbCamera(at(7, '2'), steps);
    expect(got.camera).toBe(camera);
    // Reset, then looked for again: a reset re-enumerates the device under another address.
    expect(calls).toEqual(['find', 'open 12', 'reset 12', 'find', 'open 13']);
    expect(got.info.deviceAddress).toBe(13);
    await camera.close();
  });

  test('a-camera-held-busy-by-another-program-is-not-reset-and-a-missing-camera-is-device-gone', async () => {
    const busy = new ShuttleError('TRANSPORT', 'claiming the camera interface failed (LIBUSB_ERROR_BUSY)', { context: { usbError: 'busy' } });
    const { steps, calls } = scripted(
      [[found(at(12, '2'))]],
      [
        async () => {
          throw busy;
        },
      ],
    );
    await expect(reopenUsbCamera(at(7, '2'), steps)).rejects.toBe(busy);
    expect(calls).toEqual(['find', 'open 12']);

    const none = scripted([[found({ ...at(12, '2', 'EOS123'), productId: 0x32d5 })]], []);
    const err = await reopenUsbCamera(at(7, '2', 'EOS123'), none.steps).catch((e: unknown) => e);
    expect(isShuttleError(err, 'DEVICE_GONE')).toBe(true);
    expect((err as Error).message).toMatch(/serial EOS123, last at 1-2\) is not on the bus/);
    expect(none.calls).toEqual(['find']);
  });
});

describe('a tethering session over USB', () => {
  test('the-camera-unplugged-and-plugged-back-is-reopened-and-the-shot-taken-meanwhile-is-named-once', async () => {
    const first = [file('DCIM/100CANON/IMG_0001.CR2', 1), file('DCIM/100CANON/IMG_0002.CR2', 2)];
    const plugged = await openFake(first);
    const was = at(7, '2', 'EOS123');
    const source = new UsbCameraSource(plugged.camera, 'usb:', was, { timeZone: 'UTC' });
    // While unplugged, a shot was taken: the camera comes back with three files, under a new address.
    const back = [...first, file('DCIM/100CANON/IMG_0003.CR2', 3)];
    const scans: FoundUsbCamera[][] = [[], [found(at(11, '2', 'EOS123'))]];
    const opens: Array<(f: FoundUsbCamera) => Promise<PtpCamera>> = [
      async () => {
        // The first open after the replug fails: the camera is not ready yet. A port reset, then it answers.
        throw new ShuttleError('PTP_TIMEOUT', 'no answer to OpenSession', { retryable: true });
      },
      async () => (await openFake(back)).camera,
    ];
    const { steps, calls } = scripted(scans, opens);
    steps.find = async () => {
      calls.push('find');
      return scans.length > 1 ? scans.shift()! : scans[0]!;
    };
    const reconnected: number[] = [];
    const stop = new AbortController();
    const tether = new TetheredCameraSource(source, {
      existing: true,
      stop: stop.signal,
      livenessMs: 50,
      reopen: {
        open: async () => new UsbCameraSource((await reopenUsbCamera(was, steps)).camera, 'usb:', was, { timeZone: 'UTC' }),
        timeoutMs: 10_000,
        firstDelayMs: 10,
      },
      onReconnected: (r) => reconnected.push(r.found),
    });
    const named: SourceEntry[] = [];
    for await (const e of tether.list()) {
      named.push(e);
      if (named.length === 2) plugged.device.unplug();
      if (named.length === 3) break;
    }
    stop.abort();
    const paths = named.map((e) => e.path);
    expect(paths).toEqual(['SD/DCIM/100CANON/IMG_0001.CR2', 'SD/DCIM/100CANON/IMG_0002.CR2', 'SD/DCIM/100CANON/IMG_0003.CR2']);
    // Gone at first (not on the bus yet), then found; its first open failed, so its port was reset.
    expect(calls).toEqual(['find', 'find', 'open 11', 'reset 11', 'find', 'open 11']);
    expect(reconnected).toEqual([1]);
    expect(tether.reconnects).toBe(1);
    // Files named before the unplug are read from the reopened camera, found there by path.
    const stream = await tether.open(named[0] as SourceItem);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(first[0]!.content)).toBe(true);
    await tether.close();
  });
});

describe('a camera gvfs holds', () => {
  test('the-processes-holding-the-camera-node-are-named-and-tether-warns-once-per-gvfs-process-with-the-fix', async () => {
    const work = await tempDir('shuttle-holders-');
    try {
      const proc = join(work.path, 'proc');
      const fake = async (pid: number, comm: string, fds: string[]): Promise<void> => {
        await mkdir(join(proc, String(pid), 'fd'), { recursive: true });
        await writeFile(join(proc, String(pid), 'comm'), `${comm}\n`);
        for (const [i, target] of fds.entries()) await symlink(target, join(proc, String(pid), 'fd', String(i + 3)));
      };
      await fake(812, 'gvfsd-gphoto2', ['/dev/null', '/dev/bus/usb/001/012']);
      await fake(900, 'bash', ['/dev/bus/usb/001/013']);
      await fake(950, 'gvfsd-mtp', ['/dev/bus/usb/002/012']);
      await mkdir(join(proc, 'self'));
      const holders = await usbDeviceHolders(1, 12, proc);
      expect(holders).toEqual([{ pid: 812, name: 'gvfsd-gphoto2' }]);

      const lines: Array<Record<string, unknown>> = [];
      const warn = gvfsWarnings((line) => lines.push(line));
      const busy = new ShuttleError('TRANSPORT', 'claiming the camera interface failed (LIBUSB_ERROR_BUSY)', {
        context: { usbError: 'busy', heldBy: [...holders, { pid: 77, name: 'gphoto2' }] },
      });
      warn(busy);
      warn(busy);
      warn(new ShuttleError('TRANSPORT', 'claiming failed', { context: { usbError: 'busy' } }));
      // One line for gvfs, not repeated on the next failed attempt; gphoto2 is the user's own program, not named here.
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ event: 'warning', code: 'CAMERA_HELD', process: 'gvfsd-gphoto2', pid: 812 });
      expect(lines[0]!['fix']).toMatch(/gvfs-gphoto2-volume-monitor/);
    } finally {
      await work.cleanup();
    }
  });
});
