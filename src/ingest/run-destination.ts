import { mkdir, unlink } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { abortReason, type ShuttleError } from '../errors.js';
import type { Journal } from '../store/journal.js';
import { destinationLockPath } from '../store/lock.js';
import { checkDestination } from './destination.js';
import { MARKER_DIR } from '../io/local-destination.js';
import { removeStrayTemps } from '../io/durable.js';
import { FolderSyncs } from '../io/folder-syncs.js';
import type { DestinationSpec, DestinationSummary, IngestRun } from './run.js';

/** The overlay keys of RunDestination: a source's shot group, and a content (xxh128 and size). */
export const groupId = (sourceId: number, groupKey: string): string => `${sourceId}\0${groupKey}`;
export const contentId = (xxh128: string, size: number): string => `${xxh128}\0${size}`;

/** A destination as one run holds it: recognised, locked, swept of what crashes left, and its tally. */
export class RunDestination {
  /** Set once the destination takes no more copies in this run. */
  dead?: ShuttleError;
  readonly summary: DestinationSummary;
  /** Bytes of files planned for this destination and not finished yet (see the plan's free-space check). */
  pendingBytes = 0;
  /** Folders swept of stray temps in this run (see sweepFolder), each once, before its first temp. */
  readonly #swept = new Map<string, Promise<void>>();
  /** Of those, the ones swept clean, by path relative to the root: the records this run may forget (forgetSwept). */
  readonly #sweptClean = new Set<string>();
  /** The folders published into, synced once for the names made while a sync ran (see FolderSyncs). */
  readonly folders = new FolderSyncs();
  /**
   * Copies published whose records wait for their folder's fsync, by shot group and by content: the
   * journal's groupName and findContent as they will read once those records are committed.
   */
  readonly #placedSuffixes = new Map<string, number>();
  readonly #placedContent = new Map<string, string>();

  constructor(
    readonly spec: DestinationSpec,
    /** The journal's id; -1 for a destination refused at opening. */
    readonly id: number,
    /** When this run took the destination's lock: temps older than that are no writer's any more. */
    readonly lockedAtMs: number,
  ) {
    this.summary = { path: spec.path, verified: 0, failed: 0, bytes: 0 };
  }

  get root(): string {
    return this.spec.path;
  }

  /** Checks the destination's marker, takes its lock and removes the temps of interrupted runs. */
  static async open(spec: DestinationSpec, run: IngestRun): Promise<RunDestination> {
    const { journal, settings, signal, logger } = run;
    const known = journal.destinationByPath(spec.path);
    // A new destination may be a folder still to make; a known one must already be there (else it is an
    // unmounted drive, and making the folder would write onto the wrong disk).
    if (known === undefined) await mkdir(spec.path, { recursive: true }).catch(() => {});
    const checked = await checkDestination(spec.path, {
      expectedId: known?.marker_id,
      requireVolumeUuid: spec.requireVolumeUuid,
      create: known === undefined,
      station: settings.station,
    });
    await run.lock(destinationLockPath(spec.path));
    const dest = new RunDestination(spec, journal.upsertDestination(checked.id, spec.path, checked.volumeUuid), Date.now());
    // A crash leaves temps in the folders a run recorded (sweepFolder); they were never published, so
    // remove them. Only temps older than this run's lock: a newer one is another writer's (a repair).
    // A folder swept clean keeps its record for this run, which counts it as swept (its first temp
    // there needs no second look) and forgets the record when it ends.
    for (const rel of journal.tempFolders(dest.id)) {
      const folder = join(spec.path, rel);
      try {
        for (const temp of await removeStrayTemps(folder, { signal, recursive: false, olderThanMs: dest.lockedAtMs })) {
          logger.info({ destination: spec.path, temp }, 'removed temp file of an interrupted copy');
        }
        dest.#swept.set(folder, Promise.resolve());
        dest.#sweptClean.add(rel);
      } catch (err) {
        if (signal.aborted) throw abortReason(signal);
        // Kept for the next opening: a stray temp is litter, not a loss, and the run may still write elsewhere.
        logger.warn({ destination: spec.path, folder: rel, err }, 'could not sweep the folder of stray temp files');
      }
    }
    // Journals of earlier versions recorded each copy in flight instead.
    for (const c of journal.staleCopies(dest.id)) {
      if (c.temp_path) await unlink(c.temp_path).catch(() => {});
      journal.clearStale(c.id);
      logger.info({ destination: spec.path, temp: c.temp_path }, 'removed temp file of an interrupted copy');
    }
    // Temps the journal never knew of: a write probe or a marker a crash left behind (never library files).
    for (const folder of [spec.path, join(spec.path, MARKER_DIR)]) {
      for (const temp of await removeStrayTemps(folder, { signal, recursive: false })) {
        logger.info({ destination: spec.path, temp }, 'removed temp file of an interrupted check');
      }
    }
    logger.info({ destination: spec.path, marker: checked.id, created: checked.created, free: checked.free }, 'destination ready');
    return dest;
  }

  /** A copy of `group` (sourceId and group key) was published with `suffix`; its record is not committed yet. */
  placed(group: string, suffix: number, content: string, rel: string): void {
    this.#placedSuffixes.set(group, suffix);
    this.#placedContent.set(content, rel);
  }

  /** The copy's record is committed (or will never be): the journal answers for it from now on. */
  recorded(group: string, suffix: number, content: string, rel: string): void {
    if (this.#placedSuffixes.get(group) === suffix) this.#placedSuffixes.delete(group);
    if (this.#placedContent.get(content) === rel) this.#placedContent.delete(content);
  }

  /** The suffix of a group's copy published and not recorded yet. */
  placedSuffix(group: string): number | undefined {
    return this.#placedSuffixes.get(group);
  }

  /** The path of a copy of this content (xxh128 and size) published and not recorded yet. */
  placedContent(content: string): string | undefined {
    return this.#placedContent.get(content);
  }

  /**
   * Records in the journal that this run makes temps in the folder of `finalPath` (markTempFolder), and
   * removes stray temps from it, once per run and before this run's first temp there: a crash from then on
   * leaves its temps to the next opening of the destination. A power cut can leave a temp behind whose
   * folder's record (committed without an fsync) was lost; the folder it was in is the one the same file,
   * copied again, writes to. Temps modified since the lock was taken are left alone: they are another
   * writer's (a repair).
   */
  sweepFolder(finalPath: string, run: IngestRun): Promise<void> {
    const { signal, logger } = run;
    const folder = dirname(finalPath);
    let sweep = this.#swept.get(folder);
    if (sweep === undefined) {
      const rel = relative(this.root, folder);
      run.journal.markTempFolder(this.id, rel);
      sweep = removeStrayTemps(folder, { signal, recursive: false, olderThanMs: this.lockedAtMs }).then(
        (removed) => {
          for (const temp of removed) logger.info({ destination: this.root, temp }, 'removed temp file of an interrupted copy');
          this.#sweptClean.add(rel);
        },
        (err: unknown) => {
          if (signal.aborted) throw abortReason(signal);
          // Left for a later run: a stray temp is litter, not a loss, and writing there may still work.
          logger.warn({ destination: this.root, folder, err }, 'could not sweep the folder of stray temp files');
        },
      );
      this.#swept.set(folder, sweep);
    }
    return sweep;
  }

  /**
   * The run has ended and every temp it made is published or removed: forgets the records of the folders
   * it swept clean. A folder it could not sweep keeps its record, whoever made it, for the next opening.
   */
  forgetSwept(journal: Journal): void {
    for (const rel of this.#sweptClean) journal.forgetTempFolder(this.id, rel);
  }
}
