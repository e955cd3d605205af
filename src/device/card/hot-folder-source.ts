import { lstat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { throwIfAborted } from '../../errors.js';
import type { ItemState, OpenOptions, Source, SourceEntry, SourceIdentity, SourceItem } from '../source.js';
import { FolderSource, skipReason } from './folder-source.js';

/** A file the hot-folder watcher found complete. */
export interface HotFile {
  /** '/'-separated path below the hot folder. */
  rel: string;
  size: number;
  mtimeMs: number;
}

/**
 * The files of one hot-folder batch as a Source. Its identity is the folder's, so the journal keeps
 * one history for the folder however many batches it comes in; it lists only the batch, stat'ing each
 * file again so that the plan matches what is there now (a file deleted since is left out).
 */
export class HotFolderSource implements Source {
  readonly uri: string;
  readonly #folder: FolderSource;
  readonly #files: readonly HotFile[];
  constructor(root: string, files: readonly HotFile[]) {
    this.#folder = new FolderSource(root);
    this.uri = this.#folder.uri;
    this.#files = files;
  }

  identity(signal?: AbortSignal): Promise<SourceIdentity> {
    throwIfAborted(signal);
    return this.#folder.identity();
  }

  async *list(signal?: AbortSignal): AsyncIterable<SourceEntry> {
    for (const f of this.#files) {
      throwIfAborted(signal);
      const abs = join(this.#folder.root, f.rel);
      const st = await lstat(abs).catch(() => undefined);
      if (st === undefined) yield { path: f.rel, skipped: 'gone before it was read' };
      else if (!st.isFile()) yield { path: f.rel, skipped: skipReason(st) };
      else yield { path: f.rel, size: st.size, mtimeMs: Math.trunc(st.mtimeMs), handle: abs };
    }
  }

  open(item: SourceItem, options?: OpenOptions): Promise<Readable> {
    return this.#folder.open(item, options);
  }

  stat(item: SourceItem): Promise<ItemState | undefined> {
    return this.#folder.stat(item);
  }

  close(): Promise<void> {
    return this.#folder.close();
  }
}
