/**
 * HID in the loop: QEMU's usb-kbd as a foot pedal, plugged in, pressed, unplugged and plugged back over
 * QMP while `shuttle hid pedal` runs in the guest through node-hid on a real /dev/hidraw0; then a status
 * light's output reports written to that same hidraw device (the keyboard takes them as its LED report),
 * proving the write path down to the kernel and QEMU.
 */
import { join } from 'node:path';
import { beforeAll, expect, test } from 'vitest';
import { writeJpeg } from '../support/fixtures.js';
import { tempDir } from '../support/tree.js';
import { GUEST_DIR, ensureGuestImage, requireHilPackages, startGuest, type RunningGuest } from './vm.js';

beforeAll(() => {
  requireHilPackages();
  ensureGuestImage();
});

/** Console lines as they arrive, with a wait for the n-th line matching a pattern. */
class Lines {
  readonly all: string[] = [];
  private waiters = new Set<{ pattern: RegExp; n: number; resolve: () => void }>();

  add(line: string): void {
    this.all.push(line);
    for (const w of this.waiters) {
      if (this.count(w.pattern) >= w.n) {
        this.waiters.delete(w);
        w.resolve();
      }
    }
  }

  count(pattern: RegExp): number {
    return this.all.filter((l) => pattern.test(l)).length;
  }

  /** Resolves once `n` lines matched `pattern`; rejects after `timeoutMs` or when the guest ends first. */
  nth(pattern: RegExp, n: number, timeoutMs: number, guest: RunningGuest): Promise<void> {
    if (this.count(pattern) >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const fail = (why: string): void => {
        this.waiters.delete(w);
        reject(new Error(`${why}: waiting for line ${n} matching ${pattern}\n--- console ---\n${guest.output.slice(-6000)}`));
      };
      const t = setTimeout(() => fail(`nothing within ${timeoutMs} ms`), timeoutMs);
      const w = {
        pattern,
        n,
        resolve: () => {
          clearTimeout(t);
          resolve();
        },
      };
      this.waiters.add(w);
      void guest.exited.then(() => {
        if (this.waiters.has(w)) {
          clearTimeout(t);
          fail('the guest exited');
        }
      });
    });
  }

  /** The JSON objects a command printed, from its forwarded "HIL:out NAME {...}" lines. */
  json(name: string): Array<Record<string, unknown>> {
    const prefix = `HIL:out ${name} `;
    return this.all
      .map((l) => l.slice(l.indexOf('HIL:out ')))
      .filter((l) => l.startsWith(prefix) && l.slice(prefix.length).startsWith('{'))
      .map((l) => JSON.parse(l.slice(prefix.length)) as Record<string, unknown>);
  }
}

test('hid-in-the-guest-a-usb-keyboard-pedal-plugged-in-later-fires-capture-once-per-press-survives-an-unplug-light-reports-reach-hidraw-and-a-press-shoots-in-a-tether-session', async () => {
  const work = await tempDir('shuttle-hil-hid-');
  const lines = new Lines();
  try {
    // The image the simulated camera "shoots" on a capture, read by the guest through the shared root.
    const pool = join(work.path, 'pool');
    await writeJpeg(join(pool, 'POOL_A.JPG'), { seed: 5 });
    const guest = await startGuest({
      script: join(GUEST_DIR, 'hid.sh'),
      env: { HIL_POOL: pool },
      workDir: join(work.path, 'vm'),
      qemuArgs: [],
      timeoutMs: 720_000,
      onLine: (l) => lines.add(l),
    });
    const keyboard = { driver: 'usb-kbd', id: 'pedal', bus: 'xhci.0' };
    // send-key presses and releases; with -display none no console is bound, so events go to the active keyboard.
    const press = async (qmp: Awaited<ReturnType<RunningGuest['qmp']>>, key: string): Promise<void> => {
      await qmp.execute('send-key', { keys: [{ type: 'qcode', data: key }] });
    };
    try {
      const qmp = await guest.qmp();
      // The watcher runs with no pedal at all: ready, nothing connected.
      await lines.nth(/HIL:out pedal \{"event":"ready"/, 1, 240_000, guest);
      await qmp.execute('device_add', keyboard);
      await lines.nth(/HIL:out pedal-log .*"msg":"pedal connected"/, 1, 60_000, guest);
      await press(qmp, 'b');
      await lines.nth(/HIL:out pedal \{"event":"action"/, 1, 60_000, guest);
      // A key that is not bound fires nothing (the second action below is the second b).
      await press(qmp, 'c');

      await qmp.execute('device_del', { id: 'pedal' });
      await qmp.waitForEvent('DEVICE_DELETED', 30_000);
      await lines.nth(/HIL:out pedal-log .*"msg":"pedal gone"/, 1, 60_000, guest);
      await qmp.execute('device_add', keyboard);
      await lines.nth(/HIL:out pedal-log .*"msg":"pedal connected"/, 2, 60_000, guest);
      await press(qmp, 'b');
      await lines.nth(/HIL:result pedal rc=/, 1, 60_000, guest);

      // The tethering session: once it is ready (its pedal open), one press of b fires the camera.
      await lines.nth(/HIL:out tether \{"event":"ready"/, 1, 400_000, guest);
      await press(qmp, 'b');
      await lines.nth(/HIL:result tether rc=/, 1, 300_000, guest);
      qmp.close();
    } catch (err) {
      guest.kill();
      await guest.exited;
      throw err;
    }
    const end = await guest.exited;
    const failed = lines.all.find((l) => l.includes('HIL:failed'));
    if (end.timedOut || failed) throw new Error(`guest ${end.timedOut ? 'timed out' : 'failed'}: ${failed ?? ''}\n--- console ---\n${guest.output.slice(-6000)}`);

    expect(
      lines.all.some((l) => /HIL:result pedal rc=0/.test(l)),
      guest.output.slice(-4000),
    ).toBe(true);
    const pedal = lines.json('pedal');
    expect(pedal[0]).toEqual({ event: 'ready', bindings: 1, connected: [] });
    const actions = pedal.filter((e) => e['event'] === 'action');
    expect(actions).toEqual([
      { event: 'action', action: 'capture', key: 'b', device: '0627:0001', path: '/dev/hidraw0' },
      { event: 'action', action: 'capture', key: 'b', device: '0627:0001', path: '/dev/hidraw0' },
    ]);

    // node-hid lists the usb-kbd with its usage: a keyboard, which is what "keyboard" in [[pedals]] matched.
    const listed = lines.json('list')[0] as { devices: Array<Record<string, unknown>> };
    expect(listed.devices).toContainEqual(expect.objectContaining({ id: '0627:0001', path: '/dev/hidraw0', keyboard: true, light: null }));

    // The light: the Luxafor report for safe to pull went to the device, kept alive, then black on exit.
    expect(
      lines.all.some((l) => /HIL:result light rc=0/.test(l)),
      guest.output.slice(-4000),
    ).toBe(true);
    const light = lines.json('light');
    const writes = light.filter((e) => e['event'] === 'write');
    expect(writes[0]).toEqual({ event: 'write', kind: 'output', bytes: '0001ff00ff00000000', path: '/dev/hidraw0' });
    expect(writes.length).toBeGreaterThanOrEqual(3);
    expect(writes.at(-1)).toEqual({ event: 'write', kind: 'output', bytes: '0001ff000000000000', path: '/dev/hidraw0' });
    expect(light).toContainEqual({ event: 'shown', state: 'safe-to-pull', driver: 'luxafor', path: '/dev/hidraw0' });
    expect(light.at(-1)).toEqual({ event: 'off' });

    // The press in the session: a capture by pedal, then the shot it fired verified, byte for byte the pool's image.
    expect(
      lines.all.some((l) => /HIL:result tether rc=0/.test(l)),
      guest.output.slice(-4000),
    ).toBe(true);
    const tether = lines.json('tether');
    expect(tether.filter((e) => e['event'] === 'capture')).toEqual([{ event: 'capture', by: 'pedal', key: 'b', device: '0627:0001' }]);
    const shots = tether.filter((e) => e['event'] === 'verified');
    expect(shots).toHaveLength(1);
    expect(tether.at(-1)).toMatchObject({ event: 'stopped', copied: 1, failed: 0, status: 'complete' });
    expect(lines.all.some((l) => l.includes('HIL:result shot same'))).toBe(true);
  } finally {
    await work.cleanup();
  }
}, 780_000);
