/**
 * `shuttle tether`'s foot pedals over the fake node-hid: a press of the key bound to capture fires the
 * session's capture once and is a line of its output and of its log; a capture that fails is its own line
 * and the next press still fires; a pedal that is not plugged in is fine; the end of the session stops a
 * capture in flight and closes the pedal.
 */
import { describe, expect, test } from 'vitest';
import { startTetherPedals } from '../src/cli/tether-pedals.js';
import { normalizeConfig } from '../src/config/index.js';
import { ShuttleError, isShuttleError } from '../src/errors.js';
import { captureLog } from './support/daemon-helpers.js';
import { FakeHid, QEMU_KEYBOARD } from './support/fake-hid.js';

const B_DOWN = [0, 0, 0x05, 0, 0, 0, 0, 0];
const C_DOWN = [0, 0, 0x06, 0, 0, 0, 0, 0];
const ALL_UP = [0, 0, 0, 0, 0, 0, 0, 0];

const pedals = normalizeConfig({ pedals: [{ device: 'keyboard', key: 'b', action: 'capture' }] }).pedals;

/** A capture the test settles by hand, one per call. */
class Captures {
  readonly calls: Array<{ signal: AbortSignal; resolve: (v: unknown) => void; reject: (e: unknown) => void }> = [];
  #waiters: Array<() => void> = [];

  readonly capture = (signal: AbortSignal): Promise<unknown> =>
    new Promise((resolve, reject) => {
      signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      this.calls.push({ signal, resolve, reject });
      for (const w of this.#waiters.splice(0)) w();
    });

  /** Resolves once `n` captures were fired. */
  fired(n: number): Promise<void> {
    if (this.calls.length >= n) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): void => (this.calls.length >= n ? resolve() : void this.#waiters.push(check));
      this.#waiters.push(check);
    });
  }
}

describe('shuttle tether with a foot pedal', () => {
  test('tether-pedal-press-fires-one-capture-printed-and-logged-a-failure-is-reported-and-the-next-press-fires-again', async () => {
    const hid = new FakeHid();
    hid.plug(QEMU_KEYBOARD);
    const log = captureLog();
    const lines: Array<Record<string, unknown>> = [];
    const captures = new Captures();
    const session = await startTetherPedals({ pedals, capture: captures.capture, print: (l) => lines.push(l), logger: log.logger, backend: hid });
    expect(session).toBeDefined();
    const conn = hid.connection(QEMU_KEYBOARD.path);

    conn.push(B_DOWN);
    conn.push(ALL_UP);
    // A key that is not bound fires nothing.
    conn.push(C_DOWN);
    conn.push(ALL_UP);
    await captures.fired(1);
    expect(lines).toEqual([{ event: 'capture', by: 'pedal', key: 'b', device: '0627:0001' }]);
    expect(log.lines).toContainEqual(expect.objectContaining({ msg: 'capture requested', by: 'pedal', key: 'b' }));
    captures.calls[0]!.reject(new ShuttleError('PTP_TIMEOUT', 'no new shot within 30000 ms of the capture'));

    conn.push(B_DOWN);
    conn.push(ALL_UP);
    await captures.fired(2);
    expect(lines).toEqual([
      { event: 'capture', by: 'pedal', key: 'b', device: '0627:0001' },
      { event: 'capture-failed', by: 'pedal', error: { code: 'PTP_TIMEOUT', message: 'no new shot within 30000 ms of the capture' } },
      { event: 'capture', by: 'pedal', key: 'b', device: '0627:0001' },
    ]);
    expect(captures.calls).toHaveLength(2);

    // The session ends with the second capture in flight: it is stopped, not reported as a failure.
    await session!.close();
    expect(isShuttleError(captures.calls[1]!.signal.reason, 'ABORTED')).toBe(true);
    expect(lines).toHaveLength(3);
    expect(conn.closed).toBe(true);
  });

  test('tether-without-a-pedal-plugged-in-or-configured-runs-as-before', async () => {
    const hid = new FakeHid();
    const log = captureLog();
    const captures = new Captures();
    const session = await startTetherPedals({ pedals, capture: captures.capture, print: () => undefined, logger: log.logger, backend: hid });
    expect(log.lines).toContainEqual(expect.objectContaining({ msg: 'no pedal connected yet: waiting for one' }));
    await session!.close();
    expect(await startTetherPedals({ pedals: undefined, capture: captures.capture, print: () => undefined, logger: log.logger, backend: hid })).toBeUndefined();
    expect(captures.calls).toHaveLength(0);
  });
});
