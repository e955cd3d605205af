import { FolderSource } from '../../src/device/card/folder-source.js';
import { pathJobKey, type DeviceEvents, type DeviceWatcher } from '../../src/daemon/devices.js';
import type { EventHub, StationEvent } from '../../src/daemon/events.js';

/** A device watcher the test drives: attach and detach cards (folders) and cameras by hand. */
export class TestWatcher implements DeviceWatcher {
  readonly name = 'test';
  events!: DeviceEvents;
  async start(events: DeviceEvents): Promise<void> {
    this.events = events;
  }
  async close(): Promise<void> {}

  card(id: string, folder: string, kind: 'card' | 'camera' = 'card'): void {
    this.events.attach({ id, kind, label: id, uri: folder, jobKey: pathJobKey(folder), open: async () => new FolderSource(folder) });
  }
}

/** Resolves with the first event the predicate accepts, from now on. */
export function nextEvent(hub: EventHub, accept: (e: StationEvent) => boolean): Promise<StationEvent> {
  return new Promise((resolve) => {
    const off = hub.subscribe((e) => {
      if (!accept(e)) return;
      off();
      resolve(e);
    });
  });
}

/** Resolves once `count` events the predicate accepts were published, from now on. */
export function events(hub: EventHub, accept: (e: StationEvent) => boolean, count: number): Promise<StationEvent[]> {
  const seen: StationEvent[] = [];
  return new Promise((resolve) => {
    const off = hub.subscribe((e) => {
      if (!accept(e)) return;
      seen.push(e);
      if (seen.length === count) {
        off();
        resolve(seen);
      }
    });
  });
}
