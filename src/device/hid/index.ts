/**
 * The HID layer: the only importer of node-hid (backend.ts). Foot pedals and buttons fire actions
 * (PedalWatcher), a USB light shows the station state (StatusLight); both find their devices through one
 * polling HidMonitor, so a device plugged in later is picked up and an unplugged one is survived.
 */
import type { PedalAction } from '../../hid-vocabulary.js';
import { parsePedalDevice, type PedalBinding } from './pedal.js';

export { nodeHidBackend, type HidBackend, type HidConnection, type HidDeviceInfo } from './backend.js';
export { describeHid, HidMonitor, isKeyboard, matchesHid, type HidMatch } from './monitor.js';
export { KeyEdges, keysHeld } from './keys.js';
export { PedalWatcher, parsePedalDevice, type PedalBinding, type PedalPress, type PedalWatcherOptions } from './pedal.js';
export { LIGHT_DRIVER_TABLE, STATE_SIGNALS, STATION_STATES, type LightDriver, type LightSignal, type StationState } from './lights.js';
export { StatusLight, type StatusLightOptions } from './status-light.js';
export type { HidReport } from './reports.js';

/** Bindings from `[[pedals]]` entries as the config resolves them (device text already validated). */
export function pedalBindings(entries: ReadonlyArray<{ device: string; key: string; action: PedalAction }>): PedalBinding[] {
  return entries.map((e) => ({ device: parsePedalDevice(e.device), key: e.key, action: e.action }));
}
