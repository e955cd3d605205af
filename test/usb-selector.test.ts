/** USB source selectors and the USB side of the quirks table: pure functions, no device. */
import { describe, expect, test } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { DEFAULT_QUIRKS, explainQuirks, quirksFor, usbQuirksFor, vendorOf } from '../src/device/ptp/quirks.js';
import { matchesSelector, parseUsbSelector } from '../src/device/usb/discovery.js';

describe('usb selectors', () => {
  test('usb-alone-vid-pid-and-bus-port-parse-to-what-they-name', () => {
    expect(parseUsbSelector('usb:')).toEqual({ kind: 'any' });
    expect(parseUsbSelector('usb:04A9:32d4')).toEqual({ kind: 'ids', vendorId: 0x04a9, productId: 0x32d4 });
    expect(parseUsbSelector('usb:1-4')).toEqual({ kind: 'location', busNumber: 1, portPath: '4' });
    expect(parseUsbSelector('usb:3-1.2.4')).toEqual({ kind: 'location', busNumber: 3, portPath: '1.2.4' });
  });

  test('malformed-selectors-are-usage-errors-that-show-the-accepted-forms', () => {
    for (const bad of ['usb:4a9:32d4', 'usb:04a9', 'usb:1-', 'usb:x-1', 'usb:04a9:32d4:1', 'ptpip:1.2.3.4', 'usb:1-1..2']) {
      let err: unknown;
      try {
        parseUsbSelector(bad);
      } catch (e) {
        err = e;
      }
      expect(isShuttleError(err, 'USAGE'), bad).toBe(true);
      expect((err as Error).message).toMatch(/usb:VID:PID/);
    }
  });

  test('a-selector-matches-only-the-device-it-names', () => {
    const cam = { vendorId: 0x04a9, productId: 0x32d4, busNumber: 1, portPath: '1.4' };
    expect(matchesSelector(cam, parseUsbSelector('usb:'))).toBe(true);
    expect(matchesSelector(cam, parseUsbSelector('usb:04a9:32d4'))).toBe(true);
    expect(matchesSelector(cam, parseUsbSelector('usb:04a9:32d5'))).toBe(false);
    expect(matchesSelector(cam, parseUsbSelector('usb:1-1.4'))).toBe(true);
    expect(matchesSelector(cam, parseUsbSelector('usb:1-1'))).toBe(false);
    expect(matchesSelector(cam, parseUsbSelector('usb:2-1.4'))).toBe(false);
  });
});

describe('usb quirks', () => {
  test('a-camera-reporting-the-mtp-vendor-extension-is-identified-by-its-usb-vendor-id', () => {
    expect(vendorOf({ vendorExtensionId: 6 }, { vendorId: 0x04a9, productId: 0x32d4 })).toBe('Canon');
    expect(vendorOf({ vendorExtensionId: 6 }, { vendorId: 0x04b0, productId: 0x0442 })).toBe('Nikon');
    // A vendor extension that names a maker wins over the USB id.
    expect(vendorOf({ vendorExtensionId: 0x0e }, { vendorId: 0x1234, productId: 1 })).toBe('Fujifilm');
    expect(vendorOf({ vendorExtensionId: 6 }, { vendorId: 0x1234, productId: 1 })).toBeUndefined();
    expect(vendorOf({ vendorExtensionId: 6 })).toBeUndefined();
  });

  test('qemu-usb-mtp-gets-utc-dates-and-no-reset-or-status-requests-other-devices-the-defaults', () => {
    const qemu = usbQuirksFor({ vendorId: 0x46f4, productId: 0x0004 });
    expect(qemu.ptp).toEqual({ objectDatesZone: 'UTC' });
    expect(qemu.usb).toEqual({ deviceStatusRequest: false, deviceResetRequest: false });
    const other = usbQuirksFor({ vendorId: 0x46f4, productId: 0x0005 });
    expect(other.ptp).toEqual({});
    expect(other.usb).toEqual({ deviceStatusRequest: true, deviceResetRequest: true });
  });

  test('explained-quirks-list-every-matching-rule-with-its-reason-and-the-merged-settings', () => {
    const e = explainQuirks({ manufacturer: 'FUJIFILM', model: 'X-T5', vendorExtensionId: 0x0e }, { vendorId: 0x04cb, productId: 0x02fc });
    expect(e.vendor).toBe('Fujifilm');
    expect(e.applied).toHaveLength(1);
    expect(e.applied[0]?.settings).toEqual({ avoidPartialObject: true });
    expect(e.applied[0]?.why).toMatch(/653/);
    expect(e.ptp.avoidPartialObject).toBe(true);
    const q = explainQuirks({ manufacturer: 'QEMU', model: 'QEMU filesharing' }, { vendorId: 0x46f4, productId: 0x0004 });
    expect(q.applied.map((a) => a.why).join()).toMatch(/usb-mtp/);
    expect(q.ptp.objectDatesZone).toBe('UTC');
    expect(explainQuirks(undefined).applied).toEqual([]);
  });

  test('configuration-overrides-still-win-over-the-table', () => {
    expect(quirksFor({ manufacturer: 'FUJIFILM', model: 'X' }, { avoidPartialObject: false }).avoidPartialObject).toBe(false);
    expect(DEFAULT_QUIRKS.objectDatesZone).toBeUndefined();
  });
});
