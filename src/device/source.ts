import type { Readable } from 'node:stream';
import type { ShuttleError } from '../errors.js';

/**
 * What every source of files (a folder or mounted card, a camera over USB or PTP/IP) offers the ingest
 * pipeline. Listing uses metadata only; `open` streams one item, from an offset so that an interrupted
 * transfer resumes, and stops when the signal aborts.
 */
export interface SourceIdentity {
  kind: 'card' | 'folder' | 'camera';
  /** Stable key across sessions and mounts: a card's filesystem UUID + label + capacity, a camera's make + model + serial. */
  key: string;
  /** Human-readable name for logs and status (card label, camera model). */
  label: string;
  details: Readonly<Record<string, string | number>>;
}

export interface SourceItem {
  /** Path relative to the source root, '/'-separated, as the source names it (never trusted for the destination name). */
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
  /** Source-specific locator (absolute path on disk, PTP object handle + storage). */
  readonly handle?: unknown;
  /**
   * The path's bytes as the source has them, when they are not valid UTF-8 (a FAT card written by
   * another system): `path` then shows each invalid byte as `%XX` and each `%` as `%25` (see
   * folder-source.ts displayName), and the journal keeps these bytes.
   */
  readonly pathBytes?: Buffer;
}

/**
 * An entry the listing found but cannot hand over as a file: an unreadable folder, a file it cannot
 * stat. The ingest counts it as a failed file (journal, errors, log); it is never dropped quietly.
 */
export interface SourceFault {
  readonly path: string;
  readonly pathBytes?: Buffer;
  readonly error: ShuttleError;
}

/**
 * An entry left out on purpose and never opened (a symlink, FIFO, socket or device; a system folder),
 * with why. Named in the ingest's summary and log; not a failure.
 */
export interface SourceSkip {
  readonly path: string;
  readonly skipped: string;
}

/**
 * What a listing yields. Sources that find nothing but files (cameras) yield SourceItems only; a folder
 * reports every other entry as a fault or a skip, so that nothing on a source goes unnamed.
 */
export type SourceEntry = SourceItem | SourceFault | SourceSkip;

export const isSourceFault = (e: SourceEntry): e is SourceFault => 'error' in e;
export const isSourceSkip = (e: SourceEntry): e is SourceSkip => 'skipped' in e;

export interface OpenOptions {
  offset?: number;
  signal?: AbortSignal;
  /** Preferred chunk size for reads; sources may ignore it. */
  chunkSize?: number;
  /**
   * The consumer promises to be done with each chunk before it has pulled this many more, and with the
   * last ones once it destroys the stream (which it then must, even after the end), so the source may read
   * into a small ring of reused buffers instead of allocating one per chunk (at disk speeds the allocation
   * churn costs more main-thread time than hashing). Sources may ignore it.
   */
  recycle?: number;
}

export interface ItemState {
  size: number;
  mtimeMs: number;
}

/**
 * The file the "mark-done" wipe policy writes at a card's root, listing what was verified, for crews who
 * format cards in the camera. Listings leave it out (it is Shuttle's, not the camera's).
 */
export const DONE_MARK_NAME = 'SHUTTLE-DONE.txt';

/** The read that gates an item's deletion (see SourceRemoval.reread). */
export interface Reread {
  readonly stream: Readable;
  /**
   * Whether every byte came from the medium rather than from this host's page cache: a folder read
   * with O_DIRECT, a camera's GetObject. Known once the stream has ended.
   */
  direct(): boolean;
}

/**
 * What a source that can delete its files offers (a card or folder, a camera; never a hot folder): the
 * second, independent read of an item and its deletion. Nothing here decides whether to delete: that
 * is the wipe gate's (src/ingest/wipe.ts).
 */
export interface SourceRemoval {
  /** Throws (SOURCE_DELETE_FAILED) when the source cannot delete at all, e.g. a card mounted read-only. */
  ready(signal?: AbortSignal): Promise<void>;
  /**
   * Opens the item again for the read that gates its deletion: past this host's page cache, and from a
   * fresh open of the file (or a fresh GetObject) that is checked to be the item listed.
   */
  reread(item: SourceItem, signal?: AbortSignal): Promise<Reread>;
  /**
   * Deletes the item, only if it is still the file the last `reread` of it read (same identity, size and
   * time); never follows a link; never removes a folder. SOURCE_DELETE_FAILED otherwise.
   */
  remove(item: SourceItem, signal?: AbortSignal): Promise<void>;
  /**
   * Makes the removals of `items` (each removed by `remove`) durable: a card's folders synced, since a
   * card pulled before that can bring an unlinked file back. Absent where a removal is durable once
   * `remove` returns (a camera's DeleteObject).
   */
  settleRemovals?(items: readonly SourceItem[], signal?: AbortSignal): Promise<void>;
  /** Writes (replaces) a small text file at the source's root; undefined where the source cannot (a camera). */
  writeRootFile?(name: string, text: string, signal?: AbortSignal): Promise<void>;
}

export interface Source {
  /** How the user named it (`/media/card`, `usb:04a9:3294`, `ptpip:10.0.0.5`). */
  readonly uri: string;
  /**
   * How long the plan waits for the listing's next item before copying a shot's files as they are
   * (default: the plan's GROUPING_DELAY_MS). A tethered camera, whose listing names each shot as it is
   * taken, keeps it short; the plan then also hands on a RAW+JPEG pair as soon as both are listed.
   */
  readonly groupingDelayMs?: number;
  identity(signal?: AbortSignal): Promise<SourceIdentity>;
  list(signal?: AbortSignal): AsyncIterable<SourceEntry>;
  open(item: SourceItem, options?: OpenOptions): Promise<Readable>;
  /** Current size/mtime, to detect a file that changed while it was read. Undefined when the source cannot tell. */
  stat(item: SourceItem, signal?: AbortSignal): Promise<ItemState | undefined>;
  /**
   * Bytes the sizes in this source's listing can total at most, known without listing (a card's used
   * space, a camera's storages' used space), so that a run may start copying before its listing ends.
   * Only a true upper bound; undefined where the source cannot promise one (a filesystem that holds
   * sparse or compressed files, a camera that reports no sane capacity). Absent: never known.
   */
  listingBound?(signal?: AbortSignal): Promise<number | undefined>;
  /**
   * Opened with `recycle`, its chunks lie in page-aligned shared memory with the file's page offsets at
   * page-aligned addresses (a folder source's blocks, a USB camera's reads), which a reader may write with
   * O_DIRECT and hash in a worker where they are, keeping each a few pulls longer. Other sources' chunks
   * are copied out at once, so they are asked to keep as few as they can.
   */
  readonly lendsBlocks?: boolean;
  /** Present on sources that can delete what they listed (see SourceRemoval). */
  readonly removal?: SourceRemoval;
  close(): Promise<void>;
}
