/**
 * StatusLight against an in-memory HID backend, on fake timers: the state is shown as soon as it is set,
 * the light is rewritten every refresh (keep-alive, or the host-timed blink), a light plugged in later is
 * set up and shows the current state, an unplugged one is survived, and close turns it off.
 */
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { HidMonitor, LIGHT_DRIVER_TABLE, STATE_SIGNALS, StatusLight } from '../src/device/hid/index.js';
import type { HidReport } from '../src/device/hid/reports.js';
import { FakeHid } from './support/fake-hid.js';

const BLINK1 = { vendorId: 0x27b8, productId: 0x01ed, path: '/dev/hidraw2', product: 'blink(1) mk3', serialNumber: '3a1b2c3d', interface: 0 };
const BUSYLIGHT = { vendorId: 0x27bb, productId: 0x3bcd, path: '/dev/hidraw4', product: 'Busylight Omega', interface: 0 };

const hex = (reports: HidReport[]): string[] => reports.map((r) => `${r.kind} ${Buffer.from(r.bytes).toString('hex')}`);
const written = (hid: FakeHid, path: string): string[] => hid.connection(path).written.map((w) => `${w.kind} ${w.hex}`);

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('StatusLight', () => {
  test('blink(1): set up dark, shows the state at once, renews its tickle every refresh, and is turned off on close', async () => {
    const hid = new FakeHid();
    hid.plug(BLINK1);
    const light = new StatusLight({ driver: 'auto', backend: hid, refreshMs: 500 });
    await light.start();
    const blink1 = LIGHT_DRIVER_TABLE.blink1;
    expect(light.device).toMatchObject({ driver: 'blink1', device: { path: BLINK1.path } });
    expect(written(hid, BLINK1.path)).toEqual([...hex(blink1.setup()), ...hex(blink1.show(STATE_SIGNALS.idle, true))]);

    const conn = hid.connection(BLINK1.path);
    conn.written.length = 0;
    await light.setState('safe-to-pull');
    expect(written(hid, BLINK1.path)).toEqual(hex(blink1.show(STATE_SIGNALS['safe-to-pull'], true)));

    // Two refreshes: two tickles, each well inside the light's own 4 s timeout.
    conn.written.length = 0;
    await vi.advanceTimersByTimeAsync(1000);
    expect(written(hid, BLINK1.path)).toEqual([...hex(blink1.keepAlive(STATE_SIGNALS['safe-to-pull'], true)), ...hex(blink1.keepAlive(STATE_SIGNALS['safe-to-pull'], true))]);
    expect(blink1.timeoutMs).toBeGreaterThan(1000);

    // attention blinks: blink(1) cannot, so each refresh alternates dark and lit.
    await light.setState('attention');
    conn.written.length = 0;
    await vi.advanceTimersByTimeAsync(1000);
    expect(written(hid, BLINK1.path)).toEqual([...hex(blink1.show(STATE_SIGNALS.attention, false)), ...hex(blink1.show(STATE_SIGNALS.attention, true))]);

    conn.written.length = 0;
    await light.close();
    expect(written(hid, BLINK1.path)).toEqual(hex(blink1.off()));
    expect(conn.closed).toBe(true);
    // Closed: no more writes, whatever the timers do.
    await vi.advanceTimersByTimeAsync(5000);
    expect(conn.written).toHaveLength(blink1.off().length);
  });

  test('a light plugged in later shows the current state; one unplugged is survived and taken up again when it returns', async () => {
    const hid = new FakeHid();
    const monitor = new HidMonitor(hid);
    const light = new StatusLight({ driver: 'busylight', backend: hid, monitor, refreshMs: 500 });
    const busylight = LIGHT_DRIVER_TABLE.busylight;
    try {
      await light.start();
      expect(light.device).toBeUndefined();
      // No light: setting the state is fine, and nothing is written anywhere.
      await light.setState('ingesting');
      await vi.advanceTimersByTimeAsync(1000);

      const opened = hid.nextOpen(BUSYLIGHT.path);
      hid.plug(BUSYLIGHT);
      await monitor.poll();
      const conn = await opened;
      await vi.advanceTimersByTimeAsync(0);
      expect(written(hid, BUSYLIGHT.path).slice(0, 2)).toEqual(hex(busylight.show(STATE_SIGNALS.ingesting, true)));

      // Unplugged: the next write fails and the light is dropped, no error escapes.
      hid.unplug(BUSYLIGHT.path);
      await vi.advanceTimersByTimeAsync(500);
      await conn.whenClosed;
      expect(light.device).toBeUndefined();
      await light.setState('safe-to-pull');
      await monitor.poll();

      // Back: set up again, showing what the station shows now.
      const reopened = hid.nextOpen(BUSYLIGHT.path);
      hid.plug(BUSYLIGHT);
      await monitor.poll();
      const conn2 = await reopened;
      await vi.advanceTimersByTimeAsync(0);
      expect(conn2.written.slice(0, 2).map((w) => `${w.kind} ${w.hex}`)).toEqual(hex(busylight.show(STATE_SIGNALS['safe-to-pull'], true)));
    } finally {
      await light.close();
    }
  });

  test('a configured driver only takes its own lights unless a path names the device', async () => {
    const hid = new FakeHid();
    hid.plug(BLINK1);
    const byKind = new StatusLight({ driver: 'luxafor', backend: hid });
    await byKind.start();
    expect(byKind.device).toBeUndefined();
    await byKind.close();

    const byPath = new StatusLight({ driver: 'luxafor', path: BLINK1.path, backend: hid });
    await byPath.start();
    expect(byPath.device).toMatchObject({ driver: 'luxafor', device: { path: BLINK1.path } });
    await byPath.close();
    expect(written(hid, BLINK1.path).at(-1)).toBe(hex(LIGHT_DRIVER_TABLE.luxafor.off())[0]);
  });
});
