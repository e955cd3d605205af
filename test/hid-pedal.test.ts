/**
 * Foot pedals: key presses from recorded boot-keyboard reports (QEMU's usb-kbd sends `00 00 05 00 00 00
 * 00 00` for a QMP send-key of "b", then zeros), and the PedalWatcher against an in-memory HID backend:
 * absent at start, plugged in later, one action per press (not per repeat or release), unplugged and
 * plugged back.
 */
import { describe, expect, test } from 'vitest';
import { HidMonitor, KeyEdges, PedalWatcher, keysHeld, parsePedalDevice, pedalBindings, type PedalPress } from '../src/device/hid/index.js';
import { isShuttleError } from '../src/errors.js';
import { FakeHid, QEMU_KEYBOARD } from './support/fake-hid.js';

const report = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex.replace(/ /g, ''), 'hex'));
const B_DOWN = '00 00 05 00 00 00 00 00';
const ALL_UP = '00 00 00 00 00 00 00 00';

describe('key edges from boot-keyboard reports', () => {
  test('QEMU send-key b: the press is one edge; the release and a repeated report are none', () => {
    const edges = new KeyEdges();
    expect(edges.update(report(B_DOWN))).toEqual(['b']);
    expect(edges.update(report(B_DOWN))).toEqual([]);
    expect(edges.update(report(ALL_UP))).toEqual([]);
    expect(edges.update(report(B_DOWN))).toEqual(['b']);
  });

  test('a second key while the first is held is its own edge; releasing one of them is none', () => {
    const edges = new KeyEdges();
    expect(edges.update(report(B_DOWN))).toEqual(['b']);
    expect(edges.update(report('00 00 05 2c 00 00 00 00'))).toEqual(['space']);
    expect(edges.update(report('00 00 2c 00 00 00 00 00'))).toEqual([]);
    expect(edges.update(report('00 00 2c 05 00 00 00 00'))).toEqual(['b']);
  });

  test('modifier bits are keys too; page up and F13 by their usage ids', () => {
    expect([...(keysHeld(report('02 00 4b 68 00 00 00 00')) ?? [])].sort()).toEqual(['f13', 'leftshift', 'pageup']);
  });

  test('a roll-over error report says nothing: the held key stays held, no edge', () => {
    const edges = new KeyEdges();
    expect(edges.update(report(B_DOWN))).toEqual(['b']);
    expect(edges.update(report('00 00 01 01 01 01 01 01'))).toEqual([]);
    expect(edges.update(report(B_DOWN))).toEqual([]);
    expect(edges.update(report('00 00'))).toEqual([]);
  });

  test('device text: VID:PID in hex or "keyboard"; anything else is a usage error', () => {
    expect(parsePedalDevice('0627:0001')).toEqual({ vendorId: 0x0627, productId: 0x0001 });
    expect(parsePedalDevice(' Keyboard ')).toBe('keyboard');
    let err: unknown;
    try {
      parsePedalDevice('627:1');
    } catch (e) {
      err = e;
    }
    expect(isShuttleError(err, 'USAGE')).toBe(true);
  });
});

/** Resolves with the next press the watcher reports (of `key`, when given). */
function nextPress(watcher: PedalWatcher, key?: string): Promise<PedalPress> {
  return new Promise((resolve) => {
    const off = watcher.onAction((p) => {
      if (key !== undefined && p.key !== key) return;
      off();
      resolve(p);
    });
  });
}

describe('PedalWatcher', () => {
  test('a pedal plugged in after start fires capture once per press, survives an unplug and works again when plugged back', async () => {
    const hid = new FakeHid();
    const monitor = new HidMonitor(hid);
    const bindings = pedalBindings([
      { device: '0627:0001', key: 'b', action: 'capture' },
      { device: '0627:0001', key: 'space', action: 'capture' },
    ]);
    const watcher = new PedalWatcher({ bindings, backend: hid, monitor });
    const presses: PedalPress[] = [];
    watcher.onAction((p) => presses.push(p));
    try {
      // Absent at start: not an error.
      await watcher.start();
      await monitor.poll();
      expect(watcher.connected).toEqual([]);

      const opened = hid.nextOpen(QEMU_KEYBOARD.path);
      hid.plug(QEMU_KEYBOARD);
      await monitor.poll();
      const conn = await opened;
      let press = nextPress(watcher);
      conn.push(report(B_DOWN));
      expect(await press).toMatchObject({ action: 'capture', key: 'b', device: { path: '/dev/hidraw0', vendorId: 0x0627 } });

      // Held (the report repeats) and released: nothing more. Space, pressed last, marks the end of the reports.
      press = nextPress(watcher, 'space');
      conn.push(report(B_DOWN));
      conn.push(report(ALL_UP));
      conn.push(report('00 00 2c 00 00 00 00 00'));
      await press;
      expect(presses.map((p) => p.key)).toEqual(['b', 'space']);
      press = nextPress(watcher);
      conn.push(report(ALL_UP));
      conn.push(report(B_DOWN));
      expect((await press).key).toBe('b');

      // Unplugged: its read fails, the watcher closes it; the next poll sees it gone.
      hid.unplug(QEMU_KEYBOARD.path);
      await conn.whenClosed;
      await monitor.poll();
      expect(watcher.connected).toEqual([]);

      // Plugged back: reopened, and a key still held from before counts as a new press.
      const reopened = hid.nextOpen(QEMU_KEYBOARD.path);
      hid.plug(QEMU_KEYBOARD);
      await monitor.poll();
      const conn2 = await reopened;
      expect(conn2).not.toBe(conn);
      press = nextPress(watcher);
      conn2.push(report(B_DOWN));
      await press;
      expect(presses).toHaveLength(4);
    } finally {
      await watcher.close();
    }
    expect(hid.opened.every((c) => c.closed)).toBe(true);
  });

  test('a pedal unplugged and plugged back between two polls is opened again (its failed read makes the monitor look again)', async () => {
    const hid = new FakeHid();
    hid.plug(QEMU_KEYBOARD);
    const monitor = new HidMonitor(hid);
    const watcher = new PedalWatcher({ bindings: pedalBindings([{ device: 'keyboard', key: 'b', action: 'capture' }]), backend: hid, monitor });
    try {
      const opened = hid.nextOpen(QEMU_KEYBOARD.path);
      await watcher.start();
      await monitor.poll();
      const conn = await opened;
      hid.unplug(QEMU_KEYBOARD.path);
      hid.plug(QEMU_KEYBOARD);
      await conn.whenClosed;
      const reopened = hid.nextOpen(QEMU_KEYBOARD.path);
      await monitor.poll();
      const conn2 = await reopened;
      const press = nextPress(watcher);
      conn2.push(report(B_DOWN));
      expect((await press).action).toBe('capture');
    } finally {
      await watcher.close();
    }
  }, 5000);

  test('"keyboard" opens every keyboard interface and only those; a key not bound fires nothing', async () => {
    const hid = new FakeHid();
    hid.plug(QEMU_KEYBOARD);
    hid.plug({ ...QEMU_KEYBOARD, path: '/dev/hidraw1', productId: 0x0002, product: 'QEMU USB Mouse', usage: 0x02 });
    const monitor = new HidMonitor(hid);
    const watcher = new PedalWatcher({ bindings: pedalBindings([{ device: 'keyboard', key: 'pagedown', action: 'capture' }]), backend: hid, monitor });
    const presses: PedalPress[] = [];
    watcher.onAction((p) => presses.push(p));
    try {
      const opened = hid.nextOpen(QEMU_KEYBOARD.path);
      await watcher.start();
      await monitor.poll();
      const conn = await opened;
      expect(watcher.connected.map((d) => d.path)).toEqual(['/dev/hidraw0']);
      expect(hid.opened.map((c) => c.path)).toEqual(['/dev/hidraw0']);
      const press = nextPress(watcher);
      conn.push(report(B_DOWN));
      conn.push(report(ALL_UP));
      conn.push(report('00 00 4e 00 00 00 00 00'));
      expect(await press).toMatchObject({ key: 'pagedown', action: 'capture' });
      expect(presses).toHaveLength(1);
    } finally {
      await watcher.close();
    }
  });

  test('a pedal bound by VID:PID ignores its other, non-keyboard interfaces (a mouse report would read as keys)', async () => {
    const hid = new FakeHid();
    const mouse = { ...QEMU_KEYBOARD, path: '/dev/hidraw5', usage: 0x02, interface: 1 };
    hid.plug(mouse);
    hid.plug(QEMU_KEYBOARD);
    const monitor = new HidMonitor(hid);
    const watcher = new PedalWatcher({ bindings: pedalBindings([{ device: '0627:0001', key: 'b', action: 'capture' }]), backend: hid, monitor });
    try {
      const opened = hid.nextOpen(QEMU_KEYBOARD.path);
      await watcher.start();
      await monitor.poll();
      await opened;
      expect(hid.opened.map((c) => c.path)).toEqual(['/dev/hidraw0']);
    } finally {
      await watcher.close();
    }
  });
});
