/**
 * The words the config uses for HID devices, shared by the config schema (which validates them) and
 * src/device/hid/ (which acts on them): key names of a USB keyboard or foot pedal, what a pedal press
 * asks for, and the status-light drivers.
 */

/** Key names → HID usage IDs (Keyboard/Keypad page 0x07), as in a boot keyboard's keycode bytes. */
export const KEY_USAGES: Readonly<Record<string, number>> = Object.freeze({
  ...Object.fromEntries([...'abcdefghijklmnopqrstuvwxyz'].map((c, i) => [c, 0x04 + i])),
  ...Object.fromEntries([...'1234567890'].map((c, i) => [c, 0x1e + i])),
  enter: 0x28,
  escape: 0x29,
  backspace: 0x2a,
  tab: 0x2b,
  space: 0x2c,
  minus: 0x2d,
  equal: 0x2e,
  leftbrace: 0x2f,
  rightbrace: 0x30,
  backslash: 0x31,
  semicolon: 0x33,
  apostrophe: 0x34,
  grave: 0x35,
  comma: 0x36,
  dot: 0x37,
  slash: 0x38,
  capslock: 0x39,
  ...Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`f${i + 1}`, 0x3a + i])),
  printscreen: 0x46,
  scrolllock: 0x47,
  pause: 0x48,
  insert: 0x49,
  home: 0x4a,
  pageup: 0x4b,
  delete: 0x4c,
  end: 0x4d,
  pagedown: 0x4e,
  right: 0x4f,
  left: 0x50,
  down: 0x51,
  up: 0x52,
  // F13–F24 type nothing in most programs: a good choice for a pedal that is also seen as a keyboard.
  ...Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`f${i + 13}`, 0x68 + i])),
});

/** Modifier keys: bits of a boot keyboard report's first byte. */
export const MODIFIER_BITS: Readonly<Record<string, number>> = Object.freeze({
  leftctrl: 0x01,
  leftshift: 0x02,
  leftalt: 0x04,
  leftmeta: 0x08,
  rightctrl: 0x10,
  rightshift: 0x20,
  rightalt: 0x40,
  rightmeta: 0x80,
});

export const KEY_NAMES: readonly string[] = Object.freeze([...Object.keys(KEY_USAGES), ...Object.keys(MODIFIER_BITS)]);

/** What a pedal or button press asks for. A new action is one more name here and a handler where the session listens. */
export const PEDAL_ACTIONS = ['capture'] as const;
export type PedalAction = (typeof PEDAL_ACTIONS)[number];

export const LIGHT_DRIVERS = ['blink1', 'luxafor', 'busylight', 'blynclight'] as const;
export type LightDriverName = (typeof LIGHT_DRIVERS)[number];
