import { constants as fsConstants } from 'node:fs';
import { open as openFile, opendir, stat, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { ShuttleError, errnoCode, throwIfAborted } from '../../errors.js';
import type { ItemState, OpenOptions, Source, SourceIdentity, SourceItem } from '../source.js';
import { DIRECT_ALIGN, giveBackAlignedBlock, openDirect, takeAlignedBlock } from '../../io/direct.js';
import { sourceIdentityForFolder } from './volume.js';

/** Folders an OS puts on cards and disks: never photographs, often unreadable. */
const SYSTEM_DIRS = new Set(['System Volume Information', '$RECYCLE.BIN', '.Trashes', '.Spotlight-V100', '.fseventsd', '.TemporaryItems', 'lost+found']);

export const READ_CHUNK = 1024 * 1024;


/**
 * Streams a file in fixed-size chunks from an offset. With `recycle`, chunks are views of a small ring
 * of page-aligned buffers (see OpenOptions.recycle) and the file is read with O_DIRECT where the
 * filesystem allows, which saves the page cache's CPU cost and keeps a card's data out of the cache;
 * otherwise each chunk is a fresh buffer read through the cache.
 */
class FileChunks extends Readable {
  #position: number;
  #ring: Buffer[] = [];
  #next = 0;
  #direct: boolean;

  constructor(
    private handle: FileHandle,
    direct: boolean,
    private readonly path: string,
    private readonly start: number,
    private readonly chunkSize: number,
    /** 0: a fresh buffer per chunk; else OpenOptions.recycle. */
    private readonly recycle: number,
    signal?: AbortSignal,
  ) {
    super({ highWaterMark: chunkSize, ...(signal ? { signal } : {}) });
    this.#position = start;
    this.#direct = direct;
  }

  #buffer(): Buffer {
    if (this.recycle === 0) return Buffer.allocUnsafeSlow(this.chunkSize);
    // Held by the consumer (`recycle` of them), one buffered read-ahead, one being read into.
    const i = this.#next++ % (this.recycle + 2);
    return (this.#ring[i] ??= takeAlignedBlock(this.chunkSize));
  }

  override _read(): void {
    // A direct read that ended off the alignment grid was the end of the file.
    if (this.#direct && this.#position % DIRECT_ALIGN !== 0) {
      this.push(null);
      return;
    }
    const buf = this.#buffer();
    this.handle.read(buf, 0, buf.length, this.#position).then(
      ({ bytesRead }) => {
        if (bytesRead === 0) {
          this.push(null);
          return;
        }
        this.#position += bytesRead;
        this.push(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead));
      },
      (cause: unknown) => {
        if (this.#direct && this.#position === this.start && errnoCode(cause) === 'EINVAL') {
          // O_DIRECT accepted at open, refused at the first read: read through the cache instead.
          this.#direct = false;
          void this.#reopenBuffered();
          return;
        }
        this.destroy(new ShuttleError('SOURCE_UNREADABLE', `reading ${this.path} failed: ${errnoCode(cause) ?? String(cause)}`, { cause, context: { path: this.path, offset: this.#position } }));
      },
    );
  }

  async #reopenBuffered(): Promise<void> {
    try {
      await this.handle.close();
      this.handle = await openFile(this.path, 'r');
      this._read();
    } catch (cause) {
      this.destroy(new ShuttleError('SOURCE_UNREADABLE', `cannot open ${this.path}: ${errnoCode(cause) ?? String(cause)}`, { cause, context: { path: this.path } }));
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const release = (): void => {
      for (const b of this.#ring) giveBackAlignedBlock(b);
      this.#ring = [];
    };
    this.handle.close().then(
      () => { release(); cb(err); },
      () => { release(); cb(err); },
    );
  }
}

/**
 * A mounted card, a hot folder or any folder. Symlinks are not followed (a card has none; in a folder
 * they could lead outside it or loop).
 */
export class FolderSource implements Source {
  readonly uri: string;
  readonly root: string;
  /** Entries left out of the listing, with why, for the run's report. */
  readonly skipped: Array<{ path: string; reason: string }> = [];

  constructor(root: string) {
    this.uri = root;
    this.root = resolve(root);
  }

  async identity(): Promise<SourceIdentity> {
    try {
      const st = await stat(this.root);
      if (!st.isDirectory()) throw new ShuttleError('SOURCE_NOT_FOUND', `source ${this.uri} is not a folder`, { context: { source: this.uri } });
    } catch (cause) {
      if (cause instanceof ShuttleError) throw cause;
      throw new ShuttleError('SOURCE_NOT_FOUND', `source ${this.uri} cannot be read: ${errnoCode(cause) ?? (cause as Error).message}`, { cause, context: { source: this.uri } });
    }
    return sourceIdentityForFolder(this.root);
  }

  async *list(signal?: AbortSignal): AsyncIterable<SourceItem> {
    yield* this.#walk('', signal);
  }

  async *#walk(rel: string, signal?: AbortSignal): AsyncIterable<SourceItem> {
    throwIfAborted(signal);
    const abs = rel === '' ? this.root : join(this.root, rel);
    let names: Array<{ name: string; dir: boolean; file: boolean }>;
    try {
      const dir = await opendir(abs);
      names = [];
      for await (const d of dir) names.push({ name: d.name, dir: d.isDirectory(), file: d.isFile() });
    } catch (cause) {
      if (rel === '') throw new ShuttleError('SOURCE_UNREADABLE', `cannot list ${abs}: ${errnoCode(cause) ?? cause}`, { cause, context: { path: abs } });
      this.skipped.push({ path: rel, reason: `unreadable folder (${errnoCode(cause) ?? 'error'})` });
      return;
    }
    // Sorted so that plans, sequence numbers and collision suffixes are the same on every run.
    names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of names) {
      const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.dir) {
        if (rel === '' && SYSTEM_DIRS.has(e.name)) continue;
        yield* this.#walk(childRel, signal);
      } else if (e.file) {
        try {
          const st = await stat(join(this.root, childRel));
          yield { path: childRel, size: st.size, mtimeMs: Math.trunc(st.mtimeMs), handle: join(this.root, childRel) };
        } catch (cause) {
          this.skipped.push({ path: childRel, reason: `cannot stat (${errnoCode(cause) ?? 'error'})` });
        }
      } else {
        this.skipped.push({ path: childRel, reason: 'not a regular file (symlink, device or socket)' });
      }
    }
  }

  async open(item: SourceItem, options: OpenOptions = {}): Promise<Readable> {
    throwIfAborted(options.signal);
    const abs = join(this.root, item.path);
    const chunkSize = options.chunkSize ?? READ_CHUNK;
    const offset = options.offset ?? 0;
    const recycle = options.recycle ?? 0;
    const canDirect = recycle > 0 && offset % DIRECT_ALIGN === 0 && chunkSize % DIRECT_ALIGN === 0;
    let handle: FileHandle | undefined;
    try {
      handle = canDirect ? await openDirect(abs, fsConstants.O_RDONLY) : undefined;
      const direct = handle !== undefined;
      handle ??= await openFile(abs, 'r');
      return new FileChunks(handle, direct, abs, offset, chunkSize, recycle, options.signal);
    } catch (cause) {
      await handle?.close().catch(() => {});
      throw new ShuttleError('SOURCE_UNREADABLE', `cannot open ${abs}: ${errnoCode(cause) ?? (cause as Error).message}`, { cause, context: { path: abs } });
    }
  }

  async stat(item: SourceItem): Promise<ItemState | undefined> {
    try {
      const st = await stat(join(this.root, item.path));
      return { size: st.size, mtimeMs: Math.trunc(st.mtimeMs) };
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {}
}
