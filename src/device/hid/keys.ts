/**
 * Key presses from boot-keyboard input reports (what USB foot pedals and keyboards send): byte 0 holds
 * the modifier bits, byte 1 is reserved, bytes 2–7 list the usage IDs of the keys held down. A press is
 * the edge of a key appearing; the same report repeated while the key is held and the release are not.
 */
import { KEY_USAGES, MODIFIER_BITS } from '../../hid-vocabulary.js';

const NAME_OF_USAGE = new Map(Object.entries(KEY_USAGES).map(([name, usage]) => [usage, name]));
const MODIFIERS = Object.entries(MODIFIER_BITS);
/** A keycode slot saying "too many keys held to tell which": the report carries no key state. */
const ERROR_ROLL_OVER = 0x01;

/** The names of the keys held down in one report, or undefined for a report that says nothing about them. */
export function keysHeld(report: Uint8Array): Set<string> | undefined {
  if (report.length < 3) return undefined;
  const codes = report.subarray(2, 8);
  if (codes.includes(ERROR_ROLL_OVER)) return undefined;
  const held = new Set<string>();
  const modifiers = report[0] ?? 0;
  for (const [name, bit] of MODIFIERS) if (modifiers & bit) held.add(name);
  for (const code of codes) {
    const name = NAME_OF_USAGE.get(code);
    if (name !== undefined) held.add(name);
  }
  return held;
}

/** Per device: which keys are down, so that each report yields only the keys newly pressed. */
export class KeyEdges {
  private down = new Set<string>();

  /** Keys pressed in this report that were not down in the one before. */
  update(report: Uint8Array): string[] {
    const held = keysHeld(report);
    if (held === undefined) return [];
    const pressed = [...held].filter((k) => !this.down.has(k));
    this.down = held;
    return pressed;
  }

  /** Forgets what was down (the device was reopened: a key held across an unplug is a new press). */
  reset(): void {
    this.down.clear();
  }
}
