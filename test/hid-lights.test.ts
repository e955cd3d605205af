/**
 * Status-light drivers: the exact report bytes each writes for every station state, for its keep-alive
 * and for off. The expected bytes are written out by hand from the devices' documented layouts.
 */
import { describe, expect, test } from 'vitest';
import { LIGHT_DRIVER_TABLE, STATE_SIGNALS, STATION_STATES, type StationState } from '../src/device/hid/index.js';
import type { HidReport } from '../src/device/hid/reports.js';
import { LIGHT_DRIVERS } from '../src/hid-vocabulary.js';

const hex = (reports: HidReport[]): string[] => reports.map((r) => `${r.kind} ${Buffer.from(r.bytes).toString('hex')}`);
const show = (driver: keyof typeof LIGHT_DRIVER_TABLE, state: StationState, lit = true): string[] => hex(LIGHT_DRIVER_TABLE[driver].show(STATE_SIGNALS[state], lit));

test('every configurable driver name has a driver, and every state a signal', () => {
  expect(Object.keys(LIGHT_DRIVER_TABLE).sort()).toEqual([...LIGHT_DRIVERS].sort());
  expect(Object.keys(STATE_SIGNALS).sort()).toEqual([...STATION_STATES].sort());
});

describe('blink(1): 9-byte feature reports with report id 1', () => {
  // Tickle: 'D', on, 4000 ms as 400 ticks of 10 ms (0x0190), keep the colour, play lines 0..31 on timeout.
  const tickle = 'feature 014401019001001f00';
  test.each<[StationState, string]>([
    ['idle', 'feature 0163282828000a0000'],
    ['ingesting', 'feature 01630000ff000a0000'],
    ['verifying', 'feature 01630000ff000a0000'],
    ['uploading', 'feature 0163a000ff000a0000'],
    ['safe-to-pull', 'feature 016300ff00000a0000'],
    ['attention', 'feature 0163ff0000000a0000'],
  ])('%s: fade to its colour in 100 ms, then the server-down tickle', (state, fade) => {
    expect(show('blink1', state)).toEqual([fade, tickle]);
  });

  test('blinks are timed by the host: the dark half fades to black', () => {
    expect(LIGHT_DRIVER_TABLE.blink1.blinksItself).toBe(false);
    expect(show('blink1', 'attention', false)).toEqual(['feature 0163000000000a0000', tickle]);
  });

  test('keep-alive renews the tickle only; off disarms it and sets black at once', () => {
    expect(hex(LIGHT_DRIVER_TABLE.blink1.keepAlive(STATE_SIGNALS['safe-to-pull'], true))).toEqual([tickle]);
    expect(hex(LIGHT_DRIVER_TABLE.blink1.off())).toEqual(['feature 014400000000000000', 'feature 016e00000000000000']);
  });

  test('set-up writes all 32 pattern lines black with a 100 ms fade, so a missed tickle plays darkness', () => {
    const setup = hex(LIGHT_DRIVER_TABLE.blink1.setup());
    expect(setup).toHaveLength(32);
    expect(setup[0]).toBe('feature 0150000000000a0000');
    expect(setup[31]).toBe('feature 0150000000000a1f00');
    expect(LIGHT_DRIVER_TABLE.blink1.timeoutMs).toBe(4000);
  });
});

describe('Luxafor Flag: report id 0, then an 8-byte static-colour command for all LEDs', () => {
  test.each<[StationState, string]>([
    ['idle', 'output 0001ff282828000000'],
    ['ingesting', 'output 0001ff0000ff000000'],
    ['verifying', 'output 0001ff0000ff000000'],
    ['uploading', 'output 0001ffa000ff000000'],
    ['safe-to-pull', 'output 0001ff00ff00000000'],
    ['attention', 'output 0001ffff0000000000'],
  ])('%s', (state, bytes) => {
    expect(show('luxafor', state)).toEqual([bytes]);
    expect(hex(LIGHT_DRIVER_TABLE.luxafor.keepAlive(STATE_SIGNALS[state], true))).toEqual([bytes]);
  });

  test('no timeout of its own; blinks are timed by the host; off is black', () => {
    expect(LIGHT_DRIVER_TABLE.luxafor.timeoutMs).toBeUndefined();
    expect(show('luxafor', 'attention', false)).toEqual(['output 0001ff000000000000']);
    expect(hex(LIGHT_DRIVER_TABLE.luxafor.off())).toEqual(['output 0001ff000000000000']);
  });
});

describe('Kuando Busylight: report id 0, then 64 bytes (7 steps, footer with 0xFFFFFF pad and checksum)', () => {
  /** Report id, step 0, six empty steps, sensitivity/timeout/trigger 0, pad, the big-endian sum given by hand. */
  const packet = (step0: string, checksum: string): string => `output 00${step0}${'00'.repeat(48)}000000ffffff${checksum}`;
  // Keep-alive: opcode 8, timeout 5 s → 0x85; 0x85 + 3 × 0xff = 0x0382.
  const keepAlive = packet('8500000000000000', '0382');

  test.each<[StationState, string, string]>([
    // Jump to step 0 (0x10), repeat 0, red/green/blue as PWM 0–100, on/off time (0.5 s each for a blink), audio untouched.
    ['idle', '1000101010000000', '033d'],
    ['ingesting', '1000000064000000', '0371'],
    ['verifying', '1000000064050500', '037b'],
    ['uploading', '10003f0064000000', '03b0'],
    ['safe-to-pull', '1000006400000000', '0371'],
    ['attention', '1000640000050500', '037b'],
  ])('%s: the program, then the keep-alive', (state, step0, checksum) => {
    expect(show('busylight', state)).toEqual([packet(step0, checksum), keepAlive]);
  });

  test('keep-alive alone renews the 5 s timeout; off is a black program without one', () => {
    expect(hex(LIGHT_DRIVER_TABLE.busylight.keepAlive(STATE_SIGNALS['safe-to-pull'], true))).toEqual([keepAlive]);
    expect(hex(LIGHT_DRIVER_TABLE.busylight.off())).toEqual([packet('1000000000000000', '030d')]);
    expect(LIGHT_DRIVER_TABLE.busylight.timeoutMs).toBe(5000);
    expect(LIGHT_DRIVER_TABLE.busylight.blinksItself).toBe(true);
  });
});

describe('Embrava Blynclight: 0x00, red, blue, green, control, two sound bytes, 0xFF 0x22', () => {
  test.each<[StationState, string]>([
    ['idle', 'output 00282828000000ff22'],
    ['ingesting', 'output 0000ff00000000ff22'],
    // Flash (0x04) at medium speed (2 << 3).
    ['verifying', 'output 0000ff00140000ff22'],
    ['uploading', 'output 00a0ff00000000ff22'],
    ['safe-to-pull', 'output 000000ff000000ff22'],
    ['attention', 'output 00ff0000140000ff22'],
  ])('%s', (state, bytes) => {
    expect(show('blynclight', state)).toEqual([bytes]);
  });

  test('off sets the off bit; no timeout of its own', () => {
    expect(hex(LIGHT_DRIVER_TABLE.blynclight.off())).toEqual(['output 00000000010000ff22']);
    expect(LIGHT_DRIVER_TABLE.blynclight.timeoutMs).toBeUndefined();
  });
});
