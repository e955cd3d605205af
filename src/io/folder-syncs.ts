import { constants as fsConstants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { destinationError } from './durable.js';
import { errnoCode } from '../errors.js';

/** Folders kept open at once; a run writes to a few (a day's folder, its pair). */
const OPEN_FOLDERS = 8;

interface Folder {
  handle: Promise<FileHandle>;
  /** The fsync under way, if any. */
  running: Promise<void> | undefined;
  /** The fsync to start once `running` ends, shared by every caller that came while it ran. */
  next: Promise<void> | undefined;
}

/**
 * fsyncs of folders shared by the entries made in them (group commit): `sync(dir)` resolves once an fsync
 * of `dir` that began after the call has ended, so one fsync covers every name linked, renamed or removed
 * there before it began, and the callers that came while one ran share the next. Each folder is opened
 * once and kept open (a few at a time) instead of an open, an fsync and a close per entry. A folder whose
 * filesystem cannot sync folders (EINVAL/ENOTSUP) has nothing more to do, as for fsyncDir.
 */
export class FolderSyncs {
  readonly #folders = new Map<string, Folder>();

  sync(dir: string): Promise<void> {
    let f = this.#folders.get(dir);
    if (f === undefined) {
      f = { handle: openFolder(dir), running: undefined, next: undefined };
      const opened = f;
      // A folder that could not be opened is tried afresh by the next sync.
      f.handle.catch(() => {
        if (this.#folders.get(dir) === opened) this.#folders.delete(dir);
      });
      this.#folders.set(dir, f);
      this.#closeIdle();
    } else {
      // Most recently used last, so that the idle folders closed first are the oldest.
      this.#folders.delete(dir);
      this.#folders.set(dir, f);
    }
    if (f.next) return f.next;
    const folder = f;
    if (!folder.running) return this.#start(dir, folder);
    const next = folder.running
      .catch(() => undefined)
      .then(() => {
        folder.next = undefined;
        return this.#start(dir, folder);
      });
    folder.next = next;
    return next;
  }

  #start(dir: string, f: Folder): Promise<void> {
    const run: Promise<void> = syncFolder(dir, f.handle).finally(() => {
      if (f.running === run) f.running = undefined;
    });
    f.running = run;
    return run;
  }

  /** Closes the folders beyond OPEN_FOLDERS that no sync uses, oldest first. */
  #closeIdle(): void {
    for (const [dir, f] of this.#folders) {
      if (this.#folders.size <= OPEN_FOLDERS) return;
      if (f.running || f.next) continue;
      this.#folders.delete(dir);
      void f.handle.then((h) => h.close()).catch(() => undefined);
    }
  }

  /** Waits for the syncs under way and closes every folder. */
  async close(): Promise<void> {
    const folders = [...this.#folders.values()];
    this.#folders.clear();
    await Promise.allSettled(folders.flatMap((f) => [f.running, f.next]));
    await Promise.allSettled(folders.map((f) => f.handle.then((h) => h.close())));
  }
}

function openFolder(dir: string): Promise<FileHandle> {
  return open(dir, fsConstants.O_RDONLY | (fsConstants.O_DIRECTORY ?? 0)).catch((err: unknown) => {
    throw destinationError(err, 'open folder', dir);
  });
}

async function syncFolder(dir: string, handle: Promise<FileHandle>): Promise<void> {
  const h = await handle;
  try {
    await h.sync();
  } catch (err) {
    const errno = errnoCode(err);
    if (errno === 'EINVAL' || errno === 'ENOTSUP' || errno === 'EOPNOTSUPP') return;
    throw destinationError(err, 'fsync folder', dir);
  }
}
