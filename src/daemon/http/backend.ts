import type { EjectResult } from '../../device/card/eject.js';
import type { FileList } from '../../store/file-list.js';
import type { EventHub } from '../events.js';
import type { CapturedShot } from '../tether-sessions.js';
import type { StationMetrics } from '../metrics.js';
import type { StationView } from '../station-state.js';
import type { DaemonUploadStatus, DeviceStatus, JobSnapshot } from '../status.js';
import type { QueueRow } from '../../store/upload-queue.js';

/** What the HTTP API reads and asks of the daemon; daemon.ts provides it. */
export interface ApiBackend {
  name: string;
  version: string;
  startedAt: string;
  stateDir: string;
  events: EventHub;
  metrics: StationMetrics;
  files: FileList;
  /** The station's one state (daemon.station.view). */
  view(): StationView;
  devices(): DeviceStatus[];
  jobs(): { active: JobSnapshot[]; recent: JobSnapshot[] };
  job(id: number): JobSnapshot | undefined;
  cancel(id: number): JobSnapshot | undefined;
  destinations(): string[];
  /** Undefined without an upload target. */
  uploads: UploadControl | undefined;
  eject(deviceId: string): Promise<EjectResult>;
  /** Fires the tethered camera and resolves with the verified shot; SOURCE_NOT_FOUND (409) when none is tethered. */
  capture(signal: AbortSignal): Promise<CapturedShot>;
}

export interface UploadControl {
  status(): DaemonUploadStatus;
  readonly paused: boolean;
  /** Resolve once the change is on disk (a pause is kept across restarts). */
  pause(): Promise<void>;
  resume(): Promise<void>;
  setPriority(fileId: number, priority: number): number;
  pending(limit: number): QueueRow[];
}
