/**
 * The HID sections of the config: [[pedals]] (device, key, action) and [status_light], as the commented
 * example documents them, and the wording of a bad device or key.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'smol-toml';
import { expect, test } from 'vitest';
import { normalizeConfig } from '../src/config/index.js';
import { pedalBindings } from '../src/device/hid/index.js';
import { isShuttleError } from '../src/errors.js';

const EXAMPLE = join(import.meta.dirname, '..', 'config', 'shuttle.example.toml');

function problem(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isShuttleError(err, 'CONFIG_INVALID')) return err.message;
    throw err;
  }
  throw new Error('expected CONFIG_INVALID');
}

test("the example's pedal and status-light sections, uncommented, resolve to what they say", async () => {
  const text = await readFile(EXAMPLE, 'utf8');
  const start = text.indexOf('# [[pedals]]');
  const end = text.indexOf('# One [[destinations]]');
  expect(start).toBeGreaterThan(0);
  const section = text
    .slice(start, end)
    .split('\n')
    .map((l) => l.replace(/^# ((\[|\w+ = ).*)$/, '$1'))
    .join('\n');
  const config = normalizeConfig(parse(section) as Parameters<typeof normalizeConfig>[0]);
  expect(config.pedals).toEqual([{ device: '0627:0001', key: 'b', action: 'capture' }]);
  expect(config.statusLight).toEqual({ driver: 'auto', path: '/dev/hidraw3', serial: '3a1b2c3d' });
  expect(pedalBindings(config.pedals ?? [])).toEqual([{ device: { vendorId: 0x0627, productId: 0x0001 }, key: 'b', action: 'capture' }]);
});

test('pedal keys and devices are normalised; the action defaults to capture; no sections means none', () => {
  const config = normalizeConfig({ pedals: [{ device: ' KEYBOARD ', key: 'PageDown' }] });
  expect(config.pedals).toEqual([{ device: 'keyboard', key: 'pagedown', action: 'capture' }]);
  expect(normalizeConfig({}).pedals).toBeUndefined();
  expect(normalizeConfig({}).statusLight).toBeUndefined();
  expect(normalizeConfig({ status_light: {} }).statusLight).toEqual({ driver: 'auto' });
});

test('a bad pedal device, key, action or light driver is rejected quoting the value', () => {
  expect(problem(() => normalizeConfig({ pedals: [{ device: '627:1', key: 'b' }] }))).toContain(
    'pedals[0].device: "627:1" is not a pedal device (VID:PID in hex like "0627:0001", or "keyboard")',
  );
  expect(problem(() => normalizeConfig({ pedals: [{ device: 'keyboard', key: 'bb' }] }))).toContain('pedals[0].key: "bb" is not a key name');
  expect(problem(() => normalizeConfig({ pedals: [{ device: 'keyboard', key: 'b', action: 'shutdown' as 'capture' }] }))).toContain('pedals[0].action: "shutdown"');
  expect(problem(() => normalizeConfig({ status_light: { driver: 'neon' as 'auto' } }))).toContain('status_light.driver: "neon"');
});
