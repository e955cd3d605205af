import { isUtf8 } from 'node:buffer';
import { constants as fsConstants, type Dirent, type Stats } from 'node:fs';
import type { EventEmitter } from 'node:events';
import { access, lstat, open as openFile, readdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { ShuttleError, abortReason, errnoCode, throwIfAborted } from '../../errors.js';
import {
  DONE_MARK_NAME,
  type ItemState,
  type OpenOptions,
  type Reread,
  type Source,
  type SourceEntry,
  type SourceIdentity,
  type SourceItem,
  type SourceRemoval,
} from '../source.js';
import { DIRECT_ALIGN, giveBackAlignedBlock, openDirect, readLength, takeAlignedBlock } from '../../io/direct.js';
import { applySourceTestFault, fsyncDir, replaceFileDurably } from '../../io/durable.js';
import { sourceIdentityForFolder, usedBytesBound } from './volume.js';

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
  /** The end was pushed (see #end). */
  #ended = false;

  constructor(
    private handle: FileHandle,
    direct: boolean,
    /** For messages. */
    private readonly path: string,
    /** Opens the same file again, checked to be the same file (for the fall-back from O_DIRECT). */
    private readonly reopen: () => Promise<FileHandle>,
    private readonly start: number,
    private readonly chunkSize: number,
    /** 0: a fresh buffer per chunk; else OpenOptions.recycle. */
    private readonly recycle: number,
    /** The file's size when opened: reads near its end ask for no more than it (see readLength). */
    private readonly size: number,
    signal?: AbortSignal,
  ) {
    // Not destroyed at its end: the consumer may still hold the last chunk (OpenOptions.recycle), whose
    // buffer would go back to the pool with the ring, for another file's read to overwrite. The file is
    // closed at its end; the ring is given back when the consumer destroys the stream.
    super({ highWaterMark: chunkSize, autoDestroy: false });
    // Not destroyed at its end, a stream outlives its reader's interest: read to its end, or left by a
    // reader that stopped on an error of its own and is still discarding its copies, until that reader
    // destroys it. An abort meanwhile raises an error nobody listens for, which would end the process; a
    // reader that still reads has its own listener and gets it as before.
    this.on('error', () => undefined);
    this.#position = start;
    this.#direct = direct;
    // Not Readable's own `signal` option: that ends the stream with Node's AbortError, and a source's
    // stream ends with the abort reason (a ShuttleError), as a camera download does.
    if (signal === undefined) return;
    if (signal.aborted) {
      this.destroy(abortReason(signal));
      return;
    }
    const onAbort = (): void => {
      this.destroy(abortReason(signal));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    this.once('close', () => signal.removeEventListener('abort', onAbort));
  }

  /** Whether every read so far went past the page cache (O_DIRECT). */
  get direct(): boolean {
    return this.#direct;
  }

  #buffer(): Buffer {
    if (this.recycle === 0) return Buffer.allocUnsafeSlow(this.chunkSize);
    // Held by the consumer (`recycle` of them), one buffered read-ahead, one being read into. Shared, so
    // that a consumer may write a whole chunk with O_DIRECT and hash it in a worker where it is (fanOut).
    const i = this.#next++ % (this.recycle + 2);
    return (this.#ring[i] ??= takeAlignedBlock(this.chunkSize, { shared: true }));
  }

  override _read(): void {
    // A direct read that ended off the alignment grid was the end of the file.
    if (this.#direct && this.#position % DIRECT_ALIGN !== 0) {
      this.#end();
      return;
    }
    const buf = this.#buffer();
    const length = readLength(buf.length, this.#position, this.size);
    this.handle.read(buf, 0, length, this.#position).then(
      ({ bytesRead }) => {
        if (bytesRead === 0) {
          this.#end();
          return;
        }
        this.#position += bytesRead;
        this.push(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead));
        // Said at once, with the last chunk: a reader waiting for the end (the next file's read waits for
        // this one's) need not wait for another turn of the stream nor for the close.
        if (this.#direct && this.#position % DIRECT_ALIGN !== 0) this.#end();
      },
      (cause: unknown) => {
        if (this.#direct && this.#position === this.start && errnoCode(cause) === 'EINVAL') {
          // O_DIRECT accepted at open, refused at the first read: read through the cache instead.
          this.#direct = false;
          void this.#reopenBuffered();
          return;
        }
        this.destroy(
          new ShuttleError('SOURCE_UNREADABLE', `reading ${this.path} failed: ${errnoCode(cause) ?? String(cause)}`, {
            cause,
            context: { path: this.path, offset: this.#position },
          }),
        );
      },
    );
  }

  /**
   * Ends the stream, then closes the file meanwhile: every byte has been read, and a failure to close a
   * descriptor only read from changes none of them (the reader still asks the source whether the file
   * changed, and the copies are read back), so the end does not wait for it.
   */
  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.push(null);
    this.handle.close().catch(() => undefined);
  }

  async #reopenBuffered(): Promise<void> {
    try {
      await this.handle.close();
      this.handle = await this.reopen();
      this._read();
    } catch (cause) {
      if (cause instanceof ShuttleError) {
        this.destroy(cause);
        return;
      }
      this.destroy(new ShuttleError('SOURCE_UNREADABLE', `cannot open ${this.path}: ${errnoCode(cause) ?? String(cause)}`, { cause, context: { path: this.path } }));
    }
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const release = (): void => {
      for (const b of this.#ring) giveBackAlignedBlock(b);
      this.#ring = [];
    };
    this.handle.close().then(
      () => {
        release();
        cb(err);
      },
      () => {
        release();
        cb(err);
      },
    );
  }
}

/** Never follow a link, never wait on a FIFO: a listed file swapped for either is a changed file. */
const SAFE_OPEN = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;

/**
 * How a name that is not valid UTF-8 is shown: each byte outside a valid UTF-8 sequence as `%XX`, and
 * `%` itself as `%25`, so that the shown name maps back to the bytes. Undefined for a valid name (shown
 * as it is). Two entries of one folder can still show alike (`a%FF` written by one system, `a\xFF` by
 * another): the listing fails the second rather than let one stand for both.
 */
export function displayName(bytes: Buffer): string | undefined {
  if (isUtf8(bytes)) return undefined;
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    const len = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    const seq = len > 0 ? bytes.subarray(i, i + len) : undefined;
    if (seq !== undefined && seq.length === len && isUtf8(seq)) {
      const text = seq.toString('utf8');
      out += text === '%' ? '%25' : text;
      i += len;
    } else {
      out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
      i++;
    }
  }
  return out;
}

type Kind = { isSymbolicLink(): boolean; isFIFO(): boolean; isSocket(): boolean; isBlockDevice(): boolean; isCharacterDevice(): boolean };

/** What an entry that is neither a folder nor a regular file is. */
function kindOf(e: Kind): string {
  if (e.isSymbolicLink()) return 'symbolic link';
  if (e.isFIFO()) return 'FIFO';
  if (e.isSocket()) return 'socket';
  if (e.isBlockDevice() || e.isCharacterDevice()) return 'device';
  return 'special file';
}

/** Why such an entry is left out of the listing. */
export function skipReason(e: Kind): string {
  return e.isSymbolicLink() ? 'symbolic link (not followed)' : `${kindOf(e)} (never opened)`;
}

interface Folder {
  /** Absolute path as the filesystem has it. */
  abs: Buffer;
  /** Relative, '/'-separated, as shown (see displayName); '' for the root. */
  rel: string;
  /** Some part of the path is not valid UTF-8. */
  escaped: boolean;
}

/**
 * A mounted card, a hot folder or any folder. Symlinks, FIFOs, sockets and devices are never opened or
 * followed (a card has none; in a folder they could lead outside it, loop or block): the listing names
 * each as skipped. A folder it cannot list and a file it cannot stat are faults, which fail the ingest.
 * Names are read as bytes, so a name that is not valid UTF-8 is still listed and opened.
 */
export class FolderSource implements Source {
  readonly uri: string;
  readonly lendsBlocks = true;
  readonly root: string;
  readonly #rootBytes: Buffer;
  /**
   * The card's files this source has open. A stream closes its file in the background once it has
   * ended (see FileChunks), and close() waits for those closes: a card is unmounted right after its
   * source is closed, and an open descriptor would make that fail as busy.
   */
  readonly #open = new Set<FileHandle>();

  constructor(root: string) {
    this.uri = root;
    this.root = resolve(root);
    this.#rootBytes = Buffer.from(this.root);
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

  /** A card's used space, on a filesystem without sparse or compressed files (see usedBytesBound). */
  listingBound(signal?: AbortSignal): Promise<number | undefined> {
    return usedBytesBound(this.root, { signal });
  }

  async *list(signal?: AbortSignal): AsyncIterable<SourceEntry> {
    yield* this.#walk({ abs: this.#rootBytes, rel: '', escaped: false }, signal);
  }

  /** The path's bytes relative to the root, kept only when they are not what `path` says. */
  #pathBytes(abs: Buffer, escaped: boolean): { pathBytes?: Buffer } {
    return escaped ? { pathBytes: Buffer.from(abs.subarray(this.#rootBytes.length + 1)) } : {};
  }

  async *#walk(folder: Folder, signal?: AbortSignal): AsyncIterable<SourceEntry> {
    throwIfAborted(signal);
    let dirents: Array<Dirent<Buffer>>;
    try {
      dirents = await readdir(folder.abs, { encoding: 'buffer', withFileTypes: true });
    } catch (cause) {
      const shown = folder.rel === '' ? this.root : join(this.root, folder.rel);
      const error = new ShuttleError('SOURCE_UNREADABLE', `cannot list folder ${shown}: ${errnoCode(cause) ?? String(cause)}`, { cause, context: { path: shown } });
      if (folder.rel === '') throw error;
      yield { path: folder.rel, error, ...this.#pathBytes(folder.abs, folder.escaped) };
      return;
    }
    const entries = dirents.map((d) => {
      const shown = displayName(d.name);
      return { d, name: shown ?? d.name.toString('utf8'), escaped: shown !== undefined };
    });
    // Sorted so that plans, sequence numbers and collision suffixes are the same on every run.
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const [i, e] of entries.entries()) {
      const rel = folder.rel === '' ? e.name : `${folder.rel}/${e.name}`;
      const abs = Buffer.concat([folder.abs, SLASH, e.d.name]);
      const escaped = folder.escaped || e.escaped;
      const twin = entries[i - 1]?.name === e.name || entries[i + 1]?.name === e.name;
      if (twin && e.escaped) {
        const error = new ShuttleError('NAME_INVALID', `${join(this.root, rel)}: its name is not valid UTF-8 and reads like another entry's name in the same folder`, {
          context: { path: rel },
        });
        yield { path: rel, error, ...this.#pathBytes(abs, escaped) };
        continue;
      }
      if (e.d.isDirectory()) {
        if (folder.rel === '' && SYSTEM_DIRS.has(e.name)) {
          yield { path: rel, skipped: 'system folder' };
          continue;
        }
        yield* this.#walk({ abs, rel, escaped }, signal);
      } else if (e.d.isFile() && folder.rel === '' && e.name === DONE_MARK_NAME) {
        yield { path: rel, skipped: "Shuttle's mark of a verified card" };
      } else if (e.d.isFile()) {
        // lstat, not stat: a file swapped for a link since the folder was read is not followed.
        let st: Stats;
        try {
          st = await lstat(abs);
        } catch (cause) {
          const error = new ShuttleError('SOURCE_UNREADABLE', `cannot stat ${join(this.root, rel)}: ${errnoCode(cause) ?? String(cause)}`, { cause, context: { path: rel } });
          yield { path: rel, error, ...this.#pathBytes(abs, escaped) };
          continue;
        }
        if (st.isFile()) yield { path: rel, size: st.size, mtimeMs: Math.trunc(st.mtimeMs), handle: abs, ...this.#pathBytes(abs, escaped) };
        else yield { path: rel, skipped: skipReason(st) };
      } else {
        yield { path: rel, skipped: skipReason(e.d) };
      }
    }
  }

  /** Where a listed item is: the bytes the listing found (names need not be UTF-8), else root + path. */
  #locator(item: SourceItem): string | Buffer {
    if (Buffer.isBuffer(item.handle)) return item.handle;
    // An item named from the journal rather than listed (a deletion settled later) has no handle.
    return item.pathBytes ? Buffer.concat([this.#rootBytes, SLASH, item.pathBytes]) : join(this.root, item.path);
  }

  async open(item: SourceItem, options: OpenOptions = {}): Promise<Readable> {
    return (await this.#openChecked(item, options)).chunks;
  }

  /** Opens the listed file (never a link, never a FIFO), checked to be the file listed. */
  async #openChecked(item: SourceItem, options: OpenOptions): Promise<{ chunks: FileChunks; st: Stats }> {
    throwIfAborted(options.signal);
    const at = this.#locator(item);
    const shown = join(this.root, item.path);
    const chunkSize = options.chunkSize ?? READ_CHUNK;
    const offset = options.offset ?? 0;
    const recycle = options.recycle ?? 0;
    const canDirect = recycle > 0 && offset % DIRECT_ALIGN === 0 && chunkSize % DIRECT_ALIGN === 0;
    let handle: FileHandle | undefined;
    try {
      handle = canDirect ? this.#track(await openDirect(at, SAFE_OPEN)) : undefined;
      const direct = handle !== undefined;
      handle ??= this.#track(await openFile(at, SAFE_OPEN));
      const st = await handle.stat();
      checkListed(st, item, shown);
      const reopen = async (): Promise<FileHandle> => {
        const again = this.#track(await openFile(at, SAFE_OPEN));
        const now = await again.stat().catch(async (e: unknown) => {
          await again.close().catch(() => {});
          throw e;
        });
        if (now.dev !== st.dev || now.ino !== st.ino) {
          await again.close().catch(() => {});
          throw new ShuttleError('SOURCE_CHANGED', `${shown} was replaced while it was read`, { context: { path: item.path } });
        }
        return again;
      };
      return { chunks: new FileChunks(handle, direct, shown, reopen, offset, chunkSize, recycle, st.size, options.signal), st };
    } catch (cause) {
      await handle?.close().catch(() => {});
      if (cause instanceof ShuttleError) throw cause;
      if (errnoCode(cause) === 'ELOOP') {
        throw new ShuttleError('SOURCE_CHANGED', `${shown} is now a symbolic link; not followed`, { cause, context: { path: item.path } });
      }
      throw new ShuttleError('SOURCE_UNREADABLE', `cannot open ${shown}: ${errnoCode(cause) ?? (cause as Error).message}`, { cause, context: { path: shown } });
    }
  }

  /** Deleting from the folder (a card's wipe): see FolderRemoval. */
  get removal(): SourceRemoval {
    return (this.#removal ??= new FolderRemoval(
      this,
      (item) => this.#locator(item),
      (item, options) => this.#openChecked(item, options),
    ));
  }

  #removal: FolderRemoval | undefined;

  async stat(item: SourceItem): Promise<ItemState | undefined> {
    try {
      const st = await lstat(this.#locator(item));
      return st.isFile() ? { size: st.size, mtimeMs: Math.trunc(st.mtimeMs) } : undefined;
    } catch {
      return undefined;
    }
  }

  #track<H extends FileHandle | undefined>(handle: H): H {
    if (handle === undefined) return handle;
    this.#open.add(handle);
    // A FileHandle is an EventEmitter that says 'close' once its descriptor is closed (Node's fs
    // documentation); @types/node does not declare it.
    (handle as unknown as EventEmitter).once('close', () => this.#open.delete(handle));
    return handle;
  }

  /** Resolves once no file of the card is open through this source (closing any a reader left open). */
  async close(): Promise<void> {
    await Promise.all([...this.#open].map((h) => h.close().catch(() => undefined)));
  }
}

const SLASH = Buffer.from('/');

/** The identity of the file a second read read, which its deletion must find again. */
interface ReadIdentity {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

/**
 * A folder's side of a wipe. The second read opens the file afresh with O_DIRECT (past the page cache)
 * and records which file (device and inode) it read; `remove` opens the same path again with O_NOFOLLOW,
 * checks that it is still that file at the listed size and time, and only then unlinks that path. Only
 * files are ever removed, never a folder.
 */
class FolderRemoval implements SourceRemoval {
  readonly #read = new Map<string, ReadIdentity>();

  constructor(
    private readonly folder: FolderSource,
    private readonly locate: (item: SourceItem) => string | Buffer,
    private readonly openChecked: (item: SourceItem, options: OpenOptions) => Promise<{ chunks: FileChunks; st: Stats }>,
  ) {}

  async ready(): Promise<void> {
    const root = this.folder.root;
    try {
      await access(root, fsConstants.W_OK);
    } catch (cause) {
      const errno = errnoCode(cause);
      const why = errno === 'EROFS' ? 'it is mounted read-only' : `it is not writable (${errno ?? String(cause)})`;
      throw new ShuttleError('SOURCE_DELETE_FAILED', `cannot delete from ${root}: ${why}`, { cause, context: { source: root, errno } });
    }
  }

  async reread(item: SourceItem, signal?: AbortSignal): Promise<Reread> {
    await applySourceTestFault(this.locate(item), item.path);
    const { chunks, st } = await this.openChecked(item, { recycle: 1, ...(signal ? { signal } : {}) });
    this.#read.set(item.path, { dev: st.dev, ino: st.ino, size: st.size, mtimeMs: Math.trunc(st.mtimeMs) });
    return { stream: chunks, direct: () => chunks.direct };
  }

  async remove(item: SourceItem, signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    const at = this.locate(item);
    const shown = join(this.folder.root, item.path);
    const read = this.#read.get(item.path);
    const refuse = (why: string, cause?: unknown): ShuttleError =>
      new ShuttleError('SOURCE_DELETE_FAILED', `${shown} not deleted: ${why}`, { ...(cause === undefined ? {} : { cause }), context: { path: item.path } });
    if (read === undefined) throw refuse('it was not read a second time');
    let handle: FileHandle | undefined;
    try {
      handle = await openFile(at, SAFE_OPEN);
      const st = await handle.stat();
      const same = st.isFile() && st.dev === read.dev && st.ino === read.ino && st.size === item.size && Math.trunc(st.mtimeMs) === item.mtimeMs;
      if (!same) throw refuse('it is no longer the file that was read and verified');
      await unlink(at);
      this.#read.delete(item.path);
    } catch (cause) {
      if (cause instanceof ShuttleError) throw cause;
      throw refuse(errnoCode(cause) === 'ELOOP' ? 'it is now a symbolic link' : (errnoCode(cause) ?? String(cause)), cause);
    } finally {
      await handle?.close().catch(() => {});
    }
  }

  async settleRemovals(items: readonly SourceItem[], signal?: AbortSignal): Promise<void> {
    const folders = new Map<string, string | Buffer>();
    for (const item of items) {
      const at = this.locate(item);
      const folder = typeof at === 'string' ? dirname(at) : at.subarray(0, at.lastIndexOf(0x2f));
      folders.set(Buffer.from(folder).toString('latin1'), folder);
    }
    for (const folder of folders.values()) {
      throwIfAborted(signal);
      try {
        await fsyncDir(folder);
      } catch (cause) {
        const shown = String(folder);
        throw new ShuttleError('SOURCE_DELETE_FAILED', `${shown}: files deleted, but the folder could not be synced: they may come back`, {
          cause,
          context: { path: shown },
        });
      }
    }
  }

  async writeRootFile(name: string, text: string): Promise<void> {
    if (name.includes('/') || name.startsWith('.')) throw new ShuttleError('INTERNAL', `not a plain file name: ${name}`);
    const target = join(this.folder.root, name);
    try {
      await replaceFileDurably(target, text);
    } catch (cause) {
      throw new ShuttleError('SOURCE_DELETE_FAILED', `cannot write ${target}: ${(cause as Error).message}`, { cause, context: { path: target } });
    }
  }
}

/** The opened file must be the one listed: a regular file of the listed size and time. */
function checkListed(st: Stats, item: SourceItem, shown: string): void {
  if (!st.isFile()) {
    throw new ShuttleError('SOURCE_CHANGED', `${shown} is now a ${kindOf(st)}, not the file listed; not read`, { context: { path: item.path } });
  }
  const mtimeMs = Math.trunc(st.mtimeMs);
  if (st.size !== item.size || mtimeMs !== item.mtimeMs) {
    throw new ShuttleError('SOURCE_CHANGED', `${shown} changed since it was listed (size ${item.size} → ${st.size}, mtime ${item.mtimeMs} → ${mtimeMs})`, {
      context: { path: item.path, planned: item.size, now: st.size },
    });
  }
}
