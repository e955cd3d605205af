import { FolderSource } from '../../src/device/card/folder-source.js';
import type { Source } from '../../src/device/source.js';
import { runIngest, type IngestRequest, type IngestSummary } from '../../src/ingest/pipeline.js';
import { silentLogger } from '../../src/log.js';
import type { Journal } from '../../src/store/journal.js';
import { ingestSettings } from './fixtures.js';

/**
 * runIngest of `source` (a folder's path: a FolderSource of it; or several sources) into the one folder
 * `dest`, journaled in `journal`, with the tests' settings naming copies by `template` (ingestSettings), no
 * log and a signal never aborted. `more` adds the rest of a request (callbacks, refuseWhatCannotFit) or
 * replaces any part of it.
 */
export function ingestInto(source: string | Source | Source[], dest: string, journal: Journal, more: Partial<IngestRequest> & { template?: string } = {}): Promise<IngestSummary> {
  const { template = '{name}', ...rest } = more;
  const sources = typeof source === 'string' ? [new FolderSource(source)] : Array.isArray(source) ? source : [source];
  return runIngest({
    sources,
    destinations: [{ path: dest }],
    journal,
    settings: ingestSettings(template),
    logger: silentLogger,
    signal: new AbortController().signal,
    ...rest,
  });
}
