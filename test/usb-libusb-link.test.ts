import { expect, test } from 'vitest';
import type { Device } from 'usb';
import { openLibusbLink } from '../src/device/usb/libusb.js';

/**
 * The libusb link over a stand-in for node-usb's device (a fake of the one layer below, which no real
 * peer can replace here: the real device is tested in the QEMU guest, test/hil/). It models a camera
 * pulled out: libusb refuses every transfer at submit with LIBUSB_ERROR_NO_DEVICE.
 */
function unpluggedCamera(): Device {
  const gone = (): never => {
    throw Object.assign(new Error('LIBUSB_ERROR_NO_DEVICE'), { errno: -4 });
  };
  const endpoint = (address: number) => ({
    descriptor: { bEndpointAddress: address, bmAttributes: 2, wMaxPacketSize: 512 },
    makeTransfer: () => ({ submit: gone, cancel: () => undefined }),
  });
  const iface = { endpoints: [endpoint(0x81), endpoint(0x02)], isKernelDriverActive: () => false, claim: () => undefined };
  return { open: () => undefined, close: () => undefined, interface: () => iface } as unknown as Device;
}

test('reads queued on a camera that is gone fail when awaited, not as unhandled rejections that end the process', async () => {
  const link = openLibusbLink(unpluggedCamera(), { interfaceNumber: 0 });
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  try {
    // Two reads queued, as the transport does; the second is awaited only after the first.
    const first = link.bulkIn(512, 0);
    const second = link.bulkIn(4 * 1024 * 1024, 0);
    await new Promise((r) => setTimeout(r, 50));
    expect(unhandled).toEqual([]);
    await expect(first.done).rejects.toMatchObject({ failure: 'gone' });
    await expect(second.done).rejects.toMatchObject({ failure: 'gone' });
    await expect(link.bulkOut(new Uint8Array(12), 0).done).rejects.toMatchObject({ failure: 'gone' });
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});
