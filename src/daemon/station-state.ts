import type { EventHub, StationState } from './events.js';
import { FINAL_STATES, type DeviceStatus, type JobSnapshot } from './status.js';

/**
 * The one station state a crew reads from across the room (status light, dashboard, `shuttle status`),
 * derived from the jobs, the attached devices and the upload queue. A device is "safe to pull" only when
 * its own job finished with every file verified; anything that failed asks for attention until the
 * device is taken out, so a crew never pulls a card on a light that hides a failure. A card ejected while
 * its job only waited for the cloud (its wipe given up) is safe to pull too.
 *
 * A card's own unit unmounts and powers the reader off once its job is done, and the card then leaves
 * the device list while it still sits in the reader: the state its job earned (safe to pull, or
 * attention) stays the station's until the next device is connected, so the light a crew walks up to
 * still says it, instead of going back to idle a moment after turning green.
 */

/** `queued`: the device's job waits for another job on the same card or destination (see jobs.ts). */
export type DeviceState = 'waiting' | 'queued' | 'ingesting' | 'safe-to-pull' | 'attention';

export interface StationInputs {
  devices: readonly DeviceStatus[];
  /** Queued and running jobs, and recently finished ones (newest first). */
  jobs: { active: readonly JobSnapshot[]; recent: readonly JobSnapshot[] };
  /** Files waiting for upload or uploading. */
  uploadsPending: number;
  /** Devices gone since the last device was connected, whose jobs' outcomes the station still shows. */
  departed?: readonly DeviceStatus[] | undefined;
}

export interface StationView {
  state: StationState;
  reason: string;
  devices: Array<{ id: string; label: string; state: DeviceState; job?: number | undefined }>;
}

export function deviceState(device: DeviceStatus, jobs: StationInputs['jobs']): DeviceState {
  if (device.job === undefined) return 'waiting';
  const job = jobs.active.find((j) => j.id === device.job) ?? jobs.recent.find((j) => j.id === device.job);
  if (!job) return 'waiting';
  if (job.state === 'queued') return 'queued';
  if (!FINAL_STATES.has(job.state)) return 'ingesting';
  if (job.state === 'done' && job.result?.status === 'complete' && job.result.failed === 0) return 'safe-to-pull';
  // Ejected while only its wipe waited for the cloud: every file verified here and still on the card, the
  // card unmounted by the crew's own hand; nothing about it needs a look.
  if (job.state === 'cancelled' && job.progress?.phase === 'waiting-for-cloud' && job.result?.failed === 0) return 'safe-to-pull';
  return 'attention';
}

export function deriveStationState(inputs: StationInputs): StationView {
  const devices = inputs.devices.map((d) => ({ id: d.id, label: d.label, state: deviceState(d, inputs.jobs), job: d.job }));
  const jobOf = (id: number | undefined): JobSnapshot | undefined => inputs.jobs.active.find((j) => j.id === id) ?? inputs.jobs.recent.find((j) => j.id === id);
  // What went wrong, read from across the room: the job's first error ("refused: does not fit: …").
  const why = (d: (typeof devices)[number]): string => {
    const job = jobOf(d.job);
    const first = job?.result?.errors[0]?.message ?? job?.error?.message;
    return first === undefined ? d.label : `${d.label} (${first})`;
  };
  const named = (s: DeviceState): string =>
    devices
      .filter((d) => d.state === s)
      .map((d) => d.label)
      .join(', ');
  // Only final outcomes of departed devices count; one still being worked on speaks through its job.
  const departed = (inputs.departed ?? [])
    .map((d) => ({ id: d.id, label: `${d.label} (gone)`, state: deviceState(d, inputs.jobs), job: d.job }))
    .filter((d) => d.state === 'safe-to-pull' || d.state === 'attention');
  const attention = [...devices, ...departed].filter((d) => d.state === 'attention');
  if (attention.length > 0) return { state: 'attention', reason: `failed: ${attention.map(why).join(', ')}`, devices };
  // A job is reported finished while the scheduler still lists it as active: go by its state.
  const active = inputs.jobs.active.filter((j) => !FINAL_STATES.has(j.state));
  const running = active.filter((j) => j.state === 'running');
  // Verifying only when nothing is copying any more: a crew reads it as "almost done", not as "busy".
  if (active.length > 0 && active.every((j) => j.progress?.phase === 'verifying')) {
    return { state: 'verifying', reason: `second read of ${active.map((j) => j.label).join(', ')}`, devices };
  }
  if (active.length > 0) return { state: 'ingesting', reason: `${running.length} running, ${active.length - running.length} queued`, devices };
  const safe = [...devices, ...departed].filter((d) => d.state === 'safe-to-pull');
  if (safe.length > 0) return { state: 'safe-to-pull', reason: `verified: ${safe.map((d) => d.label).join(', ')}`, devices };
  if (inputs.uploadsPending > 0) return { state: 'uploading', reason: `${inputs.uploadsPending} files to upload`, devices };
  return { state: 'idle', reason: devices.length ? `waiting: ${named('waiting')}` : 'no device', devices };
}

/** Publishes `station.state` on the hub whenever the derived state changes. */
export class StationStateTracker {
  #last: StationView | undefined;
  readonly #unsubscribe: () => void;
  /** Devices gone since a device was last connected (see the note at the top). */
  #departed: DeviceStatus[] = [];

  constructor(
    private readonly hub: EventHub,
    private readonly inputs: () => StationInputs,
  ) {
    // Progress too: a job entering its second read turns the station to verifying.
    this.#unsubscribe = hub.subscribe((e) => {
      if (e.type === 'device.connected') this.#departed = [];
      else if (e.type === 'device.gone' && e.device.job !== undefined) this.#departed = [...this.#departed.filter((d) => d.id !== e.device.id), e.device];
      if (e.type !== 'station.state') this.refresh();
    });
  }

  get view(): StationView {
    return this.#last ?? this.refresh();
  }

  /** Recomputes the state; publishes it when the state (not merely its reason) changed. */
  refresh(): StationView {
    const view = deriveStationState({ ...this.inputs(), departed: this.#departed });
    const changed = this.#last?.state !== view.state;
    this.#last = view;
    if (changed) this.hub.publish({ type: 'station.state', state: view.state, reason: view.reason });
    return view;
  }

  close(): void {
    this.#unsubscribe();
  }
}
