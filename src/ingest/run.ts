import type { Logger } from '../log.js';
import { ShuttleError, isShuttleError } from '../errors.js';
import type { Source, SourceEntry, SourceItem } from '../device/source.js';
import type { Journal } from '../store/journal.js';
import { acquireLock, type Lock } from '../store/lock.js';
import type { HashAlgorithm } from '../io/hashing.js';
import type { RunDestination } from './run-destination.js';

export interface DestinationSpec {
  path: string;
  requireVolumeUuid?: string | undefined;
  minFreeBytes?: number | undefined;
}

export interface IngestSettings {
  template: string;
  manifestHashes: readonly HashAlgorithm[];
  job: string;
  /** Who the shoot is for and which session of it, for `{client}` and `{session}`; with the job they scope `{shot}`. */
  client?: string | undefined;
  session?: string | undefined;
  timeZone?: string | undefined;
  verifyRetries: number;
  changeRetries: number;
  station: string;
  /** Name patterns from the config: only matching files are ingested, excluded ones never. */
  include?: readonly string[] | undefined;
  exclude?: readonly string[] | undefined;
  /** How long to wait for a source or destination another Shuttle holds; 0 fails at once. */
  lockWaitMs: number;
  tool: { name: string; version: string };
  /**
   * The files go on to the cloud: also take each source file's MD5, while its bytes are hashed anyway.
   * A single-request upload then sends it as Content-MD5 and reads the local copy once, without a
   * hashing pass of its own, and the server checks the bytes it receives against the source's hash.
   */
  forUpload?: boolean;
}

/**
 * One source's progress. The totals are the files and bytes still to copy that are known so far: they
 * grow while the source is being listed (a tethered camera or a hot folder is never done listing), so a
 * fraction or an ETA taken from them is one of the work known so far.
 */
export interface Progress {
  filesTotal: number;
  filesDone: number;
  bytesTotal: number;
  bytesDone: number;
  current?: string;
}

export interface DestinationSummary {
  path: string;
  verified: number;
  failed: number;
  bytes: number;
}

export interface IngestSummary {
  /** The journal's id of this run. */
  ingestId: number;
  /** Journal ids of the run's source files (verified, skipped or failed), for follow-up work such as uploads. */
  fileIds: number[];
  files: number;
  bytes: number;
  copied: number;
  /** Files verified at every destination by an earlier run, so not copied again. */
  alreadyVerified: number;
  /**
   * Source entries left out and never opened, each with why: symlinks, FIFOs, sockets, devices, system
   * folders, files the config's include/exclude leaves out. Not failures.
   */
  skipped: Array<{ path: string; reason: string }>;
  /** Source files that failed, and paths the source could not read (folders it could not list). */
  failed: number;
  destinations: DestinationSummary[];
  status: 'complete' | 'failed' | 'interrupted';
  /** `source` names a source whose listing broke off (the files it had named still finished). */
  errors: Array<{ path?: string; destination?: string; source?: string; code: string; message: string }>;
  renamed: Array<{ from: string; to: string; reason: string }>;
  readback: { direct: number; cached: number };
}

export interface IngestRequest {
  sources: Source[];
  destinations: DestinationSpec[];
  journal: Journal;
  settings: IngestSettings;
  logger: Logger;
  signal: AbortSignal;
  onProgress?: (p: Progress) => void;
  /**
   * Before the first copy, refuse the whole run when the sources' files do not fit a destination (see
   * preflight.ts): for a card, rather than copy it to some destinations and stop part-way at another.
   */
  refuseWhatCannotFit?: boolean | undefined;
  /** Each file copied in this run, once its outcome is journaled (files already verified earlier are not reported). */
  onFile?: (f: FileOutcome) => void;
  /**
   * Each file as its read from the source begins (again, if it is read again): a tap returned here sees
   * its bytes as they stream, for work that need not wait for the copies' verification (previews),
   * without a second read of the source.
   */
  onRead?: (f: FileReading) => ReadTap | undefined;
}

export interface FileReading {
  path: string;
  size: number;
  /** Its path below the destinations (before a collision suffix, which is decided once it is verified). */
  rel: string;
  /** The source paths of its shot's files (a RAW+JPEG pair, sidecars), this one included. */
  shot: readonly string[];
}

/** Sees one read of a file: its chunks in order (each only during the call: copy what is kept), then its end. */
export interface ReadTap {
  chunk(data: Buffer): void;
  /** Every byte was read (no error), or the read broke off. Called once. */
  end(error?: unknown): void;
}

export interface FileOutcome {
  /** The file's row in the journal. */
  fileId: number;
  /** The source's path of the file. */
  path: string;
  state: 'verified' | 'failed';
  /** Its size and modification time on the source (for byte counts and shot-to-verified times). */
  size: number;
  mtimeMs: number;
  /** Its verified copies: each destination's root and the path below it. */
  copies: Array<{ root: string; rel: string }>;
  /** The source and its item, for work that reads the file again (a wipe's second read); set once copied. */
  source?: Source | undefined;
  item?: SourceItem | undefined;
}

/**
 * One ingest as it runs: what it was asked (request), where it is recorded (journal, summary), the
 * destinations it holds and the locks it took. Every part of the pipeline works through it.
 */
export class IngestRun {
  readonly journal: Journal;
  readonly settings: IngestSettings;
  readonly logger: Logger;
  readonly signal: AbortSignal;
  readonly summary: IngestSummary;
  readonly ingestId: number;
  readonly destinations: RunDestination[] = [];
  /** Listings taken ahead for the space check, each read once by the planner instead of listing again (see AheadListing). */
  readonly listings = new Map<Source, AsyncIterable<SourceEntry>>();
  readonly #locks: Lock[] = [];

  constructor(readonly request: IngestRequest) {
    ({ journal: this.journal, settings: this.settings, logger: this.logger, signal: this.signal } = request);
    this.ingestId = this.journal.startIngest(
      request.sources.map((s) => s.uri),
      request.destinations.map((d) => d.path),
    );
    this.summary = {
      ingestId: this.ingestId,
      fileIds: [],
      files: 0,
      bytes: 0,
      copied: 0,
      alreadyVerified: 0,
      skipped: [],
      failed: 0,
      destinations: [],
      status: 'complete',
      errors: [],
      renamed: [],
      readback: { direct: 0, cached: 0 },
    };
  }

  /** Takes a source's or destination's lock for the rest of the run. */
  async lock(path: string): Promise<void> {
    this.#locks.push(await acquireLock(path, { owner: { command: 'ingest' }, wait: this.settings.lockWaitMs, signal: this.signal }));
  }

  recordError(e: unknown, where: { path?: string; destination?: string; source?: string }): void {
    const code = isShuttleError(e) ? e.code : 'INTERNAL';
    this.summary.errors.push({ ...where, code, message: e instanceof Error ? e.message : String(e) });
  }

  /** The destination takes no more copies in this run; the others carry on. */
  killDestination(d: RunDestination, e: unknown, log: Logger = this.logger): void {
    d.dead = isShuttleError(e) ? e : new ShuttleError('DEST_WRITE_FAILED', String(e), { cause: e });
    this.recordError(d.dead, { destination: d.root });
    log.error({ err: d.dead, destination: d.root }, 'destination failed; other destinations continue');
  }

  /** Releases the locks, settles the status and records the run in the journal. */
  finish(): IngestSummary {
    for (const l of this.#locks.reverse()) l.release();
    const { summary } = this;
    if (this.signal.aborted) summary.status = 'interrupted';
    else if (summary.failed > 0 || summary.errors.length > 0) summary.status = 'failed';
    const { fileIds: _ids, ...recorded } = summary;
    this.journal.finishIngest(this.ingestId, summary.status, recorded);
    return summary;
  }
}
