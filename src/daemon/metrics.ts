import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EventHub, StationEvent } from './events.js';

/**
 * Prometheus metrics of one daemon, as a view of its event hub (counters move with the events, gauges
 * read the live figures when scraped). A registry of its own, not prom-client's global one: two daemons
 * in one process (the tests) must not count into each other. Disk space and temperatures are
 * node_exporter's, not repeated here.
 */

export interface MetricsInputs {
  version: string;
  /** Files and bytes queued or uploading; undefined without an upload target. */
  uploadQueue: () => { files: number; bytes: number } | undefined;
  /** Attached devices by kind. */
  devices: () => { card: number; camera: number };
  /**
   * When a file was verified at every destination (epoch ms), from the journal: an upload of a file
   * verified before the daemon started counts too.
   */
  verifiedAt: (fileId: number) => number | undefined;
}

/** Which check a verification failure came from, by the error's code. */
const VERIFY_STAGES: Readonly<Record<string, string>> = {
  SOURCE_CHANGED: 'source',
  VERIFY_MISMATCH: 'destination',
  UPLOAD_VERIFY: 'cloud',
};

/** Cameras remembered as gone (for reconnects); beyond this the oldest are forgotten. */
const MAX_GONE_CAMERAS = 1_000;

export class StationMetrics {
  readonly registry = new Registry();
  readonly #filesVerified: Counter;
  readonly #bytesVerified: Counter;
  readonly #verifyFailures: Counter<'stage'>;
  readonly #filesUploaded: Counter;
  readonly #bytesUploaded: Counter;
  readonly #reconnects: Counter;
  readonly #shotToVerified: Histogram;
  readonly #verifiedToUploaded: Histogram;
  readonly #inputs: MetricsInputs;
  readonly #goneCameras = new Set<string>();
  readonly #unsubscribe: () => void;

  constructor(hub: EventHub, inputs: MetricsInputs) {
    this.#inputs = inputs;
    const registers = [this.registry];
    new Gauge({ name: 'shuttle_build_info', help: 'Shuttle version and Node.js version; always 1', labelNames: ['version', 'node'], registers }).set(
      { version: inputs.version, node: process.versions.node },
      1,
    );
    this.#filesVerified = new Counter({ name: 'shuttle_files_verified_total', help: 'Files verified at every destination', registers });
    this.#bytesVerified = new Counter({ name: 'shuttle_bytes_verified_total', help: 'Bytes of the files verified at every destination', registers });
    this.#verifyFailures = new Counter({
      name: 'shuttle_verify_failures_total',
      help: 'Verification failures by stage: source (changed while read), destination (read-back differs, or a copy found damaged at upload), cloud (object differs)',
      labelNames: ['stage'],
      registers,
    });
    for (const stage of new Set(Object.values(VERIFY_STAGES))) this.#verifyFailures.inc({ stage }, 0);
    this.#filesUploaded = new Counter({ name: 'shuttle_files_uploaded_total', help: 'Files uploaded and verified in the cloud', registers });
    this.#bytesUploaded = new Counter({ name: 'shuttle_bytes_uploaded_total', help: 'Bytes of the files uploaded and verified in the cloud', registers });
    new Gauge({
      name: 'shuttle_upload_queue_files',
      help: 'Files queued or uploading',
      registers,
      collect() {
        this.set(inputs.uploadQueue()?.files ?? 0);
      },
    });
    new Gauge({
      name: 'shuttle_upload_queue_bytes',
      help: 'Bytes of the files queued or uploading',
      registers,
      collect() {
        this.set(inputs.uploadQueue()?.bytes ?? 0);
      },
    });
    new Gauge({
      name: 'shuttle_devices_connected',
      help: 'Cards and cameras attached',
      labelNames: ['kind'],
      registers,
      collect() {
        const d = inputs.devices();
        this.set({ kind: 'card' }, d.card);
        this.set({ kind: 'camera' }, d.camera);
      },
    });
    this.#reconnects = new Counter({ name: 'shuttle_camera_reconnects_total', help: 'Cameras that came back after going away', registers });
    this.#shotToVerified = new Histogram({
      name: 'shuttle_shot_to_verified_seconds',
      help: "Seconds from a file's modification time on its source (the shot) to its verification at every destination",
      buckets: [0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 21_600, 86_400],
      registers,
    });
    this.#verifiedToUploaded = new Histogram({
      name: 'shuttle_verified_to_uploaded_seconds',
      help: 'Seconds from a file verified locally to its upload verified in the cloud',
      buckets: [1, 5, 10, 30, 60, 300, 900, 3600, 21_600, 86_400],
      registers,
    });
    this.#unsubscribe = hub.subscribe((e) => this.#count(e));
  }

  /** The exposition text for /metrics. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  close(): void {
    this.#unsubscribe();
  }

  /** A tethered camera that dropped was opened again within its session (no device.gone/connected pair tells it). */
  cameraReconnected(): void {
    this.#reconnects.inc();
  }

  #count(e: StationEvent): void {
    const at = Date.parse(e.at);
    switch (e.type) {
      case 'file.verified':
        this.#filesVerified.inc();
        this.#bytesVerified.inc(e.size);
        // A clock set wrong on the camera gives shots "in the future": no sample rather than a negative one.
        if (at >= e.mtimeMs) this.#shotToVerified.observe((at - e.mtimeMs) / 1000);
        break;
      case 'file.uploaded': {
        if (e.outcome !== 'uploaded') break;
        this.#filesUploaded.inc();
        this.#bytesUploaded.inc(e.bytes);
        const verified = this.#inputs.verifiedAt(e.fileId);
        if (verified !== undefined) this.#verifiedToUploaded.observe(Math.max(0, at - verified) / 1000);
        break;
      }
      case 'job.finished': {
        // From the job's counts by code: its `error` events name only its first 20 errors.
        const counts: Record<string, number> = { ...e.job.result?.errorCounts };
        if (e.job.error) counts[e.job.error.code] = (counts[e.job.error.code] ?? 0) + 1;
        for (const [code, n] of Object.entries(counts)) {
          const stage = VERIFY_STAGES[code];
          if (stage !== undefined) this.#verifyFailures.inc({ stage }, n);
        }
        break;
      }
      case 'error':
        // Each attempt whose object the server got wrong, and each local copy an upload found no longer
        // matching what was verified (a destination's verification failing late); a job's errors are
        // counted when it finishes.
        if (e.upload?.cloudMismatch === true) this.#verifyFailures.inc({ stage: 'cloud' });
        else if (e.upload?.outcome === 'damaged-copy') this.#verifyFailures.inc({ stage: 'destination' });
        break;
      case 'device.connected':
        if (e.device.kind === 'camera' && this.#goneCameras.delete(e.device.id)) this.#reconnects.inc();
        break;
      case 'device.gone':
        if (e.device.kind === 'camera') {
          this.#goneCameras.add(e.device.id);
          if (this.#goneCameras.size > MAX_GONE_CAMERAS) this.#goneCameras.delete(this.#goneCameras.values().next().value!);
        }
        break;
      default:
        break;
    }
  }
}
