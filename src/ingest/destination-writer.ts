import { dirname, join } from 'node:path';
import type { Logger } from '../log.js';
import { ShuttleError, abortReason, isShuttleError } from '../errors.js';
import type { Source, SourceItem } from '../device/source.js';
import type { Slots } from '../io/slots.js';
import { crashPoint } from './crash-points.js';
import type { HashAlgorithm } from '../io/hashing.js';
import { publishNoReplace } from '../io/durable.js';
import { withCollisionSuffix } from '../shot-names.js';
import { adoptExisting, checkTemp, createTempTarget, discardTemp, rewriteFromSource, sealTemp, type ReadBackCheck, type ReadResult, type TempTarget } from './copy.js';
import type { IngestRun } from './run.js';
import { contentId, groupId, type RunDestination } from './run-destination.js';

/** Why a copy failed, and whether its destination takes no more copies in this run. */
export interface CopyFailure {
  ok: false;
  error: unknown;
  endsDestination: boolean;
}

/** Where a verified copy stands: its path under the destination, and how it got there. */
export interface Placed {
  ok: true;
  rel: string;
  /** An identical file already there stands for the copy. */
  dedup: boolean;
  /** The group's collision suffix, when this copy decided it. */
  suffix?: number;
  /** Read back past the page cache (false: the filesystem refused O_DIRECT). */
  direct: boolean;
  /**
   * The folder this copy's new name is in, not fsync'd yet: the caller syncs it (dest.folders) before it
   * records the copy, and then tells the destination (recorded). Absent when an existing file stands for it.
   */
  unsyncedFolder?: string;
}

/** The source file a copy is of. */
export interface CopyOf {
  fileId: number;
  item: SourceItem;
  sourceId: number;
  /** Its shot's group: the members share a collision suffix. */
  groupKey: string;
}

/**
 * The source read again for a rewrite must give every hash the first read recorded (xxh128, which the
 * read-back compares, and whatever else the run took), so that each recorded value describes the copy.
 */
function sameRead(first: ReadResult, again: ReadResult): HashAlgorithm | undefined {
  for (const a of Object.keys(first.hashes) as HashAlgorithm[]) if (again.hashes[a] !== first.hashes[a]) return a;
  return undefined;
}

type Checked = { check: ReadBackCheck; error?: undefined } | { check?: undefined; error: unknown };

/**
 * Which failures end a destination for the rest of the run, decided here where they arise (as restic's
 * local backend marks a full or forbidden disk permanent in Save itself): a temp that cannot be created
 * (the disk or the folder tree refuses new files), a full disk, a read-only or forbidden one. Any other
 * failure (a write error, a read-back that does not match) is this copy's alone.
 */
function failure(error: unknown, step: 'create' | 'finish'): CopyFailure {
  return { ok: false, error, endsDestination: step === 'create' || isShuttleError(error, 'DEST_NO_SPACE') || isShuttleError(error, 'DEST_NOT_WRITABLE') };
}

/**
 * One copy of one source file at one destination, for its whole life: a temp file beside the final name
 * (its folder recorded in the journal before it exists: RunDestination.sweepFolder), written by the
 * fan-out of the single source read, sealed (fsync, times), read back past the page cache and compared, written again from the source while it
 * does not match, and published under its final name without ever replacing a file. It never leaves a
 * temp behind, and reports its failures as values, each with whether the destination takes no more.
 */
export class DestinationWriter {
  #target: TempTarget;
  #checked: Promise<Checked> | undefined;

  private constructor(
    private readonly run: IngestRun,
    readonly dest: RunDestination,
    /** The final name under the destination, before any collision suffix. */
    readonly baseRel: string,
    readonly of: CopyOf,
    private readonly log: Logger,
    target: TempTarget,
  ) {
    this.#target = target;
  }

  /** Creates the temp file, its folder first recorded and swept of what crashes left. Throws only when the run is aborted. */
  static async open(run: IngestRun, dest: RunDestination, baseRel: string, of: CopyOf, log: Logger): Promise<DestinationWriter | CopyFailure> {
    const finalPath = join(dest.root, baseRel);
    await dest.sweepFolder(finalPath, run);
    try {
      const target = await createTempTarget(finalPath, of.item.size);
      crashPoint('temp-created');
      return new DestinationWriter(run, dest, baseRel, of, log, target);
    } catch (e) {
      return failure(e, 'create');
    }
  }

  /** What the fan-out writes into. */
  get target(): TempTarget {
    return this.#target;
  }

  /**
   * Seals the written temp and reads back what the read-back that followed the writes has not read yet (or
   * the whole file), started as soon as the file is written so that the fsyncs and read-backs of several
   * files overlap; `finish` takes the outcome. Never rejects.
   */
  startCheck(read: ReadResult, readBacks: Slots): Promise<unknown> {
    const { signal } = this.run;
    this.#checked = (async (): Promise<Checked> => {
      try {
        if (this.#target.error) throw this.#target.error;
        await sealTemp(this.#target, this.of.item.mtimeMs);
        crashPoint('sealed');
        const check = await readBacks.run(() => checkTemp(this.#target, read, signal), signal);
        crashPoint('read-back');
        return { check };
      } catch (error) {
        return { error };
      }
    })();
    return this.#checked;
  }

  /**
   * Takes the check's outcome, writes the copy again from the source while it does not match (up to
   * verifyRetries times), then publishes it. Throws only when the run is aborted.
   */
  async finish(source: Source, read: ReadResult): Promise<Placed | CopyFailure> {
    const { settings, signal } = this.run;
    const { item } = this.of;
    try {
      if (this.#checked === undefined) throw new ShuttleError('INTERNAL', `copy of ${item.path} finished before it was checked`);
      const checked = await this.#checked;
      if (checked.check === undefined) throw checked.error;
      let check = checked.check;
      for (let retry = 0; !check.ok && retry < settings.verifyRetries; retry++) {
        this.log.warn(
          { path: item.path, destination: this.dest.root, expected: read.hashes.xxh128, actual: check.actual.xxh128, retry },
          'read-back mismatch; writing again from the source',
        );
        await discardTemp(this.#target);
        // The same folder as the first temp's, recorded and swept then (sweepFolder answers at once).
        const finalPath = join(this.dest.root, this.baseRel);
        await this.dest.sweepFolder(finalPath, this.run);
        this.#target = await createTempTarget(finalPath, item.size);
        const reread = await rewriteFromSource(source, item, this.#target, Object.keys(read.hashes) as HashAlgorithm[], signal);
        const differs = sameRead(read, reread);
        if (differs !== undefined || reread.size !== read.size) {
          const what = differs === undefined ? `${read.size} then ${reread.size} bytes` : `${differs} ${read.hashes[differs]} then ${reread.hashes[differs]}`;
          throw new ShuttleError('SOURCE_CHANGED', `${item.path} read differently the second time (${what})`, { context: { path: item.path } });
        }
        await sealTemp(this.#target, item.mtimeMs);
        check = await checkTemp(this.#target, read, signal);
      }
      if (!check.ok) {
        throw new ShuttleError(
          'VERIFY_MISMATCH',
          `copy of ${item.path} at ${this.dest.root} does not match the source: size ${read.size} vs ${check.actual.size}, xxh128 ${read.hashes.xxh128} vs ${check.actual.xxh128}`,
          {
            context: { path: item.path, destination: this.dest.root, expected: read.hashes.xxh128, actual: check.actual.xxh128 },
          },
        );
      }
      const placed = await this.#place(read);
      crashPoint('published');
      return { ok: true, ...placed, direct: check.direct };
    } catch (e) {
      await this.discard();
      if (signal.aborted) throw abortReason(signal);
      return failure(e, 'finish');
    }
  }

  /** Closes and removes the temp file; never throws. */
  discard(): Promise<void> {
    return discardTemp(this.#target);
  }

  /**
   * Moves the verified temp copy to its final name, never replacing a file. Identical content already at
   * the destination (a candidate by the journal's content index or a copy of this run whose record waits
   * for its folder's fsync, or found at the target name) is kept
   * and the temp dropped, but only once that file's bytes equal the temp's and it was fsync'd
   * (adoptExisting): the journal says what was there, not what is there now, and its xxh128 could match
   * different bytes. A different file at the name pushes this group to the next collision suffix.
   */
  async #place(read: ReadResult): Promise<{ rel: string; dedup: boolean; suffix?: number; unsyncedFolder?: string }> {
    const { journal, signal } = this.run;
    const d = this.dest;
    const temp = { path: this.#target.tempPath, size: read.size };
    const content = contentId(read.hashes.xxh128!, read.size);
    const sameRel = d.placedContent(content) ?? journal.findContent(d.id, read.hashes.xxh128!, read.size)?.dest_path;
    if (sameRel) {
      const existing = await adoptExisting(join(d.root, sameRel), temp, signal);
      if (existing?.same) {
        await this.discard();
        this.log.info({ path: this.of.item.path, existing: sameRel, destination: d.root }, 'identical content already at destination');
        return { rel: sameRel, dedup: true };
      }
      this.log.warn(
        { path: this.of.item.path, existing: sameRel, destination: d.root, differsAt: existing?.differsAt },
        'a verified copy with the same xxh128 and size differs from this file; storing this one anew',
      );
    }
    const group = groupId(this.of.sourceId, this.of.groupKey);
    let suffix = d.placedSuffix(group) ?? journal.groupName(this.of.sourceId, this.of.groupKey, d.id)?.suffix ?? 0;
    for (let guard = 0; guard < 10_000; guard++, suffix++) {
      const rel = suffix === 0 ? this.baseRel : withCollisionSuffix(this.baseRel, suffix);
      const final = join(d.root, rel);
      // The folder's fsync is the caller's, shared with the names published while it runs.
      const r = await publishNoReplace(this.#target.tempPath, final, false);
      if (r === 'published') {
        d.placed(group, suffix, content, rel);
        return { rel, dedup: false, suffix, unsyncedFolder: dirname(final) };
      }
      // Something is already there: ours from an interrupted run (same bytes), or another file.
      if ((await adoptExisting(final, temp, signal))?.same) {
        await this.discard();
        d.placed(group, suffix, content, rel);
        return { rel, dedup: false, suffix };
      }
    }
    throw new ShuttleError('DEST_WRITE_FAILED', `no free name for ${this.baseRel} at ${d.root}`, { context: { path: this.baseRel } });
  }
}
