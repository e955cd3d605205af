/**
 * The node-hid backend, against a fake node-hid module (only this layer: what it asks node-hid and how
 * it maps the answers and failures). The real node-hid is exercised in the QEMU guest suite.
 */
import { describe, expect, test } from 'vitest';
import { nodeHidBackend, type NodeHidLoader } from '../src/device/hid/backend.js';
import { isShuttleError, type ShuttleError } from '../src/errors.js';

interface Call {
  op: string;
  args: unknown[];
}

/** A node-hid stand-in: one device whose reads and writes are scripted; every call recorded. */
function fakeNodeHid(script: { reads?: Array<Buffer | Error>; writeError?: Error; openError?: Error; closeError?: Error }) {
  const calls: Call[] = [];
  const device = {
    read: (timeout?: number) => {
      calls.push({ op: 'read', args: [timeout] });
      const next = script.reads?.shift();
      return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
    },
    write: (data: Buffer) => {
      calls.push({ op: 'write', args: [Buffer.from(data).toString('hex')] });
      return script.writeError ? Promise.reject(script.writeError) : Promise.resolve(data.length);
    },
    sendFeatureReport: (data: Buffer) => {
      calls.push({ op: 'feature', args: [Buffer.from(data).toString('hex')] });
      return Promise.resolve(data.length);
    },
    close: () => {
      calls.push({ op: 'close', args: [] });
      return script.closeError ? Promise.reject(script.closeError) : Promise.resolve();
    },
  };
  const mod = {
    devicesAsync: () =>
      Promise.resolve([
        { vendorId: 0x0627, productId: 0x0001, path: '/dev/hidraw0', manufacturer: 'QEMU', product: 'QEMU USB Keyboard', release: 0, interface: 0, usagePage: 1, usage: 6 },
        { vendorId: 0x1234, productId: 0x5678, release: 0, interface: -1, serialNumber: '' },
      ]),
    HIDAsync: {
      open: (path: string, opts: unknown) => {
        calls.push({ op: 'open', args: [path, opts] });
        return script.openError ? Promise.reject(script.openError) : Promise.resolve(device);
      },
    },
  };
  const loader = (() => Promise.resolve(mod)) as unknown as NodeHidLoader;
  return { loader, calls };
}

async function rejection(p: Promise<unknown>): Promise<ShuttleError> {
  try {
    await p;
  } catch (err) {
    if (isShuttleError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('nodeHidBackend', () => {
  test('lists devices with only the facts node-hid gave', async () => {
    const { loader } = fakeNodeHid({});
    expect(await nodeHidBackend(loader).devices()).toEqual([
      { vendorId: 0x0627, productId: 0x0001, path: '/dev/hidraw0', manufacturer: 'QEMU', product: 'QEMU USB Keyboard', interface: 0, usagePage: 1, usage: 6 },
      { vendorId: 0x1234, productId: 0x5678, interface: -1 },
    ]);
  });

  test('opens by path, shared; reads reports with a timeout (an empty read is none); writes output and feature reports byte for byte', async () => {
    const { loader, calls } = fakeNodeHid({ reads: [Buffer.from('0000050000000000', 'hex'), Buffer.alloc(0)] });
    const conn = await nodeHidBackend(loader).open('/dev/hidraw0');
    expect(Buffer.from((await conn.read(250)) ?? []).toString('hex')).toBe('0000050000000000');
    expect(await conn.read(250)).toBeUndefined();
    expect(await conn.write(Uint8Array.from([0x00, 0x01, 0xff, 0, 0xff, 0, 0, 0, 0]))).toBe(9);
    expect(await conn.sendFeatureReport(Uint8Array.from([0x01, 0x63, 0, 0xff, 0, 0, 0x0a, 0, 0]))).toBe(9);
    await conn.close();
    await conn.close();
    expect(calls).toEqual([
      { op: 'open', args: ['/dev/hidraw0', { nonExclusive: true }] },
      { op: 'read', args: [250] },
      { op: 'read', args: [250] },
      { op: 'write', args: ['0001ff00ff00000000'] },
      { op: 'feature', args: ['016300ff00000a0000'] },
      { op: 'close', args: [] },
    ]);
  });

  test('a read or write that fails (the device was unplugged) is DEVICE_GONE naming the path; closing it then does not throw', async () => {
    const { loader } = fakeNodeHid({ reads: [new Error('could not read from HID device')], writeError: new Error('Cannot write to hid device'), closeError: new Error('gone') });
    const conn = await nodeHidBackend(loader).open('/dev/hidraw0');
    const readErr = await rejection(conn.read(250));
    expect(readErr.code).toBe('DEVICE_GONE');
    expect(readErr.message).toContain('/dev/hidraw0');
    expect(readErr.message).toContain('could not read from HID device');
    expect((await rejection(conn.write(Uint8Array.of(0)))).code).toBe('DEVICE_GONE');
    await conn.close();
  });

  test('a device that cannot be opened is TRANSPORT; node-hid that cannot load is TRANSPORT and is tried again next time', async () => {
    const { loader } = fakeNodeHid({ openError: new Error('cannot open device with path /dev/hidraw0') });
    const openErr = await rejection(nodeHidBackend(loader).open('/dev/hidraw0'));
    expect(openErr.code).toBe('TRANSPORT');
    expect(openErr.message).toContain('/dev/hidraw0');

    let attempts = 0;
    const broken = (() => {
      attempts++;
      return Promise.reject(new Error('libudev.so.1: cannot open shared object file'));
    }) as unknown as NodeHidLoader;
    const backend = nodeHidBackend(broken);
    const loadErr = await rejection(backend.devices());
    expect(loadErr.code).toBe('TRANSPORT');
    expect(loadErr.message).toMatch(/HID support is unavailable: libudev/);
    await rejection(backend.devices());
    expect(attempts).toBe(2);
  });
});
