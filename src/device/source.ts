import type { Readable } from 'node:stream';

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
}

export interface OpenOptions {
  offset?: number;
  signal?: AbortSignal;
  /** Preferred chunk size for reads; sources may ignore it. */
  chunkSize?: number;
  /**
   * The consumer promises to be done with each chunk before it has pulled this many more, so the source
   * may read into a small ring of reused buffers instead of allocating one per chunk (at disk speeds the
   * allocation churn costs more main-thread time than hashing). Sources may ignore it.
   */
  recycle?: number;
}

export interface ItemState {
  size: number;
  mtimeMs: number;
}

export interface Source {
  /** How the user named it (`/media/card`, `usb:04a9:3294`, `ptpip:10.0.0.5`). */
  readonly uri: string;
  identity(signal?: AbortSignal): Promise<SourceIdentity>;
  list(signal?: AbortSignal): AsyncIterable<SourceItem>;
  open(item: SourceItem, options?: OpenOptions): Promise<Readable>;
  /** Current size/mtime, to detect a file that changed while it was read. Undefined when the source cannot tell. */
  stat(item: SourceItem, signal?: AbortSignal): Promise<ItemState | undefined>;
  close(): Promise<void>;
}
