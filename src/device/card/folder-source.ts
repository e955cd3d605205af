import { open as openFile, opendir, stat, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { ShuttleError, errnoCode, throwIfAborted } from '../../errors.js';
import type { ItemState, OpenOptions, Source, SourceIdentity, SourceItem } from '../source.js';
import { sourceIdentityForFolder } from './volume.js';

/** Folders an OS puts on cards and disks: never photographs, often unreadable. */
const SYSTEM_DIRS = new Set(['System Volume Information', '$RECYCLE.BIN', '.Trashes', '.Spotlight-V100', '.fseventsd', '.TemporaryItems', 'lost+found']);

export const READ_CHUNK = 1024 * 1024;


/**
 * Streams a file in fixed-size chunks from an offset. With `recycle`, chunks are views of a small ring of
 * buffers (see OpenOptions.recycle); otherwise each chunk is a fresh buffer.
 */
class FileChunks extends Readable {
  #position: number;
  #ring: Buffer[] = [];
  #next = 0;

  constructor(
    private readonly handle: FileHandle,
    private readonly path: string,
    start: number,
    private readonly chunkSize: number,
    /** 0: a fresh buffer per chunk; else OpenOptions.recycle. */
    private readonly recycle: number,
    signal?: AbortSignal,
  ) {
    super({ highWaterMark: chunkSize, ...(signal ? { signal } : {}) });
    this.#position = start;
  }

  #buffer(): Buffer {
    if (this.recycle === 0) return Buffer.allocUnsafeSlow(this.chunkSize);
    // Held by the consumer (`recycle` of them), one buffered read-ahead, one being read into.
    const i = this.#next++ % (this.recycle + 2);
    return (this.#ring[i] ??= Buffer.allocUnsafeSlow(this.chunkSize));
  }

  override _read(): void {
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
      (cause: unknown) =>
        this.destroy(new ShuttleError('SOURCE_UNREADABLE', `reading ${this.path} failed: ${errnoCode(cause) ?? String(cause)}`, { cause, context: { path: this.path, offset: this.#position } })),
    );
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.handle.close().then(() => cb(err), () => cb(err));
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
    let handle: FileHandle;
    try {
      handle = await openFile(abs, 'r');
    } catch (cause) {
      throw new ShuttleError('SOURCE_UNREADABLE', `cannot open ${abs}: ${errnoCode(cause) ?? (cause as Error).message}`, { cause, context: { path: abs } });
    }
    return new FileChunks(handle, abs, options.offset ?? 0, options.chunkSize ?? READ_CHUNK, options.recycle ?? 0, options.signal);
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
