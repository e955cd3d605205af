import { resolve } from 'node:path';
import type { Config } from '../config/index.js';
import { VERSION } from '../version.js';
import type { DestinationSpec, IngestSettings } from './pipeline.js';

/** The destinations of the config (CLI `--dest` already merged in), as the pipeline takes them. */
export function destinationsFromConfig(config: Config): DestinationSpec[] {
  return config.destinations.map((d) => ({ path: resolve(d.path), requireVolumeUuid: d.requireVolumeUuid, minFreeBytes: d.minFreeBytes }));
}

/**
 * The pipeline's settings from the config, for the CLI and the daemon alike. `lockWaitMs` is theirs to
 * choose: the CLI fails fast (or waits `--wait`), the daemon waits until its job is cancelled; so is
 * whether the files are queued for upload afterwards (`forUpload`).
 */
export function ingestSettingsFromConfig(config: Config, lockWaitMs: number, forUpload = false): IngestSettings {
  return {
    template: config.ingest.template,
    manifestHashes: config.ingest.manifestHashes,
    job: config.ingest.job,
    client: config.ingest.client,
    session: config.ingest.session,
    timeZone: config.ingest.timeZone,
    verifyRetries: config.ingest.verifyRetries,
    changeRetries: config.ingest.changeRetries,
    station: config.station,
    include: config.ingest.include,
    exclude: config.ingest.exclude,
    lockWaitMs,
    tool: { name: 'shuttle', version: VERSION },
    forUpload,
  };
}
