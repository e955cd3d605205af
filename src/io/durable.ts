import { randomBytes } from 'node:crypto';
import { constants as fsConstants, fsync as fsyncFd, type Dirent } from 'node:fs';
import { link, lstat, mkdir, open, opendir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { ShuttleError, abortReason, errnoCode, type ErrorCode } from '../errors.js';
import { nativeFs } from './native-fs.js';

/**
 * Durable file primitives for local destinations: a copy is written to a hidden temp file beside its final
 * name, fsync'd, read back, and only then published under the final name, never replacing a file that is
 * already there, and the folder is fsync'd so the name survives a power cut too.
 */

export const TEMP_SUFFIX = '.shuttle-tmp';
const RANDOM_HEX = 8;
const NAME_MAX_BYTES = 255;
/** `.` + name + `.` + 8 hex + suffix: the temp names Shuttle makes, and the only ones it ever deletes. */
const TEMP_NAME = /^\..*\.[0-9a-f]{8}\.shuttle-tmp$/s;

const fsyncFdAsync = promisify(fsyncFd);

/** Whether a file name (not a path) is one of Shuttle's temp names. */
export function isShuttleTempName(name: string): boolean {
  return TEMP_NAME.test(name);
}

/**
 * A fresh hidden temp path in the folder of `finalPath`, e.g. `.IMG_0001.JPG.3fa85f64.shuttle-tmp`.
 * The final name is shortened (on a character boundary) when needed to keep the temp name within the
 * 255 bytes most filesystems allow.
 */
export function tempPathFor(finalPath: string): string {
  const name = basename(finalPath);
  const tail = `.${randomBytes(RANDOM_HEX / 2).toString('hex')}${TEMP_SUFFIX}`;
  const room = NAME_MAX_BYTES - 1 - Buffer.byteLength(tail);
  return join(dirname(finalPath), `.${truncateUtf8(name, room)}${tail}`);
}

function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const b = Buffer.byteLength(ch);
    if (bytes + b > maxBytes) break;
    out += ch;
    bytes += b;
  }
  return out;
}

/** Maps a destination-side system error to a ShuttleError with a stable code. */
export function destinationError(err: unknown, op: string, path: string): ShuttleError {
  if (err instanceof ShuttleError) return err;
  const errno = errnoCode(err);
  let code: ErrorCode = 'DEST_WRITE_FAILED';
  let message = `${op} ${path} failed: ${errno ?? String(err)}`;
  if (errno === 'ENOSPC' || errno === 'EDQUOT') code = 'DEST_NO_SPACE';
  else if (errno === 'EACCES' || errno === 'EPERM' || errno === 'EROFS') code = 'DEST_NOT_WRITABLE';
  else if (errno === 'EFBIG') message = `${op} ${path} failed: file too large for this filesystem (FAT32 stops at 4 GiB)`;
  return new ShuttleError(code, message, {
    context: { path, op, errno },
    cause: err,
    retryable: errno === 'EAGAIN' || errno === 'EINTR' || errno === 'EBUSY',
  });
}

/**
 * mkdir -p that also makes the new folders durable: each created folder's parent is fsync'd, so after a
 * crash the folder (and what is later published in it) is not lost with an unsynced directory entry.
 * Returns the folders it created, outermost first.
 */
export async function ensureDir(dir: string): Promise<string[]> {
  const missing: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    try {
      const st = await lstat(d);
      if (!st.isDirectory()) {
        throw new ShuttleError('DEST_NOT_WRITABLE', `${d} exists and is not a folder`, { context: { path: d } });
      }
      break;
    } catch (err) {
      if (errnoCode(err) === 'ENOTDIR') {
        throw new ShuttleError('DEST_NOT_WRITABLE', `a file is in the way of folder ${dir}`, { context: { path: dir }, cause: err });
      }
      if (errnoCode(err) !== 'ENOENT') throw destinationError(err, 'stat', d);
      if (dirname(d) === d) break;
      missing.push(d);
    }
  }
  const created: string[] = [];
  for (const d of missing.reverse()) {
    try {
      await mkdir(d);
      created.push(d);
    } catch (err) {
      // Someone else made it meanwhile; their entry may not be synced yet, so sync the parent regardless.
      if (errnoCode(err) !== 'EEXIST') throw destinationError(err, 'mkdir', d);
    }
    await fsyncDir(dirname(d));
  }
  return created;
}

export interface TempFile {
  /** Where the bytes go until they are published. */
  path: string;
  /** Opened for writing; the caller closes it (after fsyncing). */
  handle: FileHandle;
}

/**
 * Creates a new temp file beside `finalPath` (creating its folder tree durably first). The file is opened
 * exclusively, so it is never one that already existed. `beforeCreate` learns the name first, so that the
 * caller can record it durably: a crash right after creation then never leaves a temp nobody knows of.
 * `readable` opens it to read as well (a read-back through the same handle).
 */
export async function openTemp(finalPath: string, beforeCreate?: (tempPath: string) => void, options: { readable?: boolean } = {}): Promise<TempFile> {
  let ensured = false;
  let path = tempPathFor(finalPath);
  beforeCreate?.(path);
  for (let attempt = 0; ; ) {
    try {
      return { path, handle: await open(path, options.readable ? 'wx+' : 'wx', 0o644) };
    } catch (err) {
      const errno = errnoCode(err);
      // The folder tree is looked at (and made, durably) only when the create says it is missing: a run
      // writes many files into each folder, and a look per file is a file-system call per file.
      if (!ensured && (errno === 'ENOENT' || errno === 'ENOTDIR')) {
        ensured = true;
        await ensureDir(dirname(finalPath));
        continue;
      }
      // Eight random hex digits colliding is rare; a few retries cover it.
      if (errno === 'EEXIST' && ++attempt <= 5) {
        path = tempPathFor(finalPath);
        beforeCreate?.(path);
        continue;
      }
      throw destinationError(err, 'create', path);
    }
  }
}

/** fsync a file given as an fd, an open FileHandle or a path. */
export async function fsyncFile(file: number | FileHandle | string): Promise<void> {
  const label = typeof file === 'string' ? file : typeof file === 'number' ? `fd ${file}` : `fd ${file.fd}`;
  try {
    if (typeof file === 'number') return await fsyncFdAsync(file);
    if (typeof file !== 'string') return await file.sync();
    const handle = await open(file, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch (err) {
    throw destinationError(err, 'fsync', label);
  }
}

/**
 * fsync a folder, making the entries created, renamed or removed in it durable. Returns false where the
 * filesystem does not support syncing a folder (EINVAL/ENOTSUP), which leaves nothing more to be done.
 */
export async function fsyncDir(path: string | Buffer): Promise<boolean> {
  let handle: FileHandle;
  try {
    handle = await open(path, fsConstants.O_RDONLY | (fsConstants.O_DIRECTORY ?? 0));
  } catch (err) {
    throw destinationError(err, 'open folder', String(path));
  }
  try {
    await handle.sync();
    return true;
  } catch (err) {
    const errno = errnoCode(err);
    if (errno === 'EINVAL' || errno === 'ENOTSUP' || errno === 'EOPNOTSUPP') return false;
    throw destinationError(err, 'fsync folder', String(path));
  } finally {
    await handle.close();
  }
}

/** Errors from link(2) that mean "this filesystem has no hard links" (vfat and exFAT answer EPERM). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

/**
 * Gives the fsync'd temp file its final name, unless something already has that name.
 *
 * 'published': `finalPath` now names the temp's bytes, the temp name is gone and the folder is fsync'd
 * (unless `syncFolder` is false: then the caller fsyncs it, e.g. once for several names, before it
 * records the name as durable).
 * 'exists': something was already at `finalPath`; nothing was changed and the temp file is still there
 * for the caller to decide on (compare, pick another name, delete).
 *
 * renameat2(RENAME_NOREPLACE) fails with EEXIST instead of replacing, so it is atomic against any other
 * writer; on a case-insensitive filesystem (vfat, the kernel's exFAT) the lookup it makes of the final
 * name matches a name that differs only in case. Where there is no addon or the filesystem refuses the
 * flag (FUSE, older tmpfs), link(2) and unlink(2) do the same in two calls: link fails with EEXIST instead
 * of replacing, so it is atomic too. Filesystems without hard links fall back to an existence check
 * followed by rename(2), which is NOT atomic: between the two another writer could create `finalPath`
 * and be replaced. That is safe only because the caller holds the destination's lock, so no other
 * Shuttle writes in that folder, and nothing else is expected to create camera file names there
 * meanwhile. On such case-insensitive filesystems the check also matches a name that differs only in
 * case, which rename would otherwise replace.
 */
export async function publishNoReplace(tempPath: string, finalPath: string, syncFolder = true): Promise<'published' | 'exists'> {
  const renamed = await renameNoReplace(tempPath, finalPath);
  if (renamed === 'exists') return 'exists';
  if (renamed === 'renamed') {
    if (syncFolder) await fsyncDir(dirname(finalPath));
    return 'published';
  }
  try {
    await link(tempPath, finalPath);
  } catch (err) {
    const errno = errnoCode(err);
    if (errno === 'EEXIST') return 'exists';
    if (errno === undefined || !NO_HARD_LINKS.has(errno)) throw destinationError(err, 'link', finalPath);
    return publishByRename(tempPath, finalPath, syncFolder);
  }
  try {
    await unlink(tempPath);
  } catch (err) {
    // The final name is already in place; an unremovable temp is tidied by removeStrayTemps later.
    if (errnoCode(err) !== 'ENOENT') throw destinationError(err, 'unlink', tempPath);
  }
  if (syncFolder) await fsyncDir(dirname(finalPath));
  return 'published';
}

/** Errors from renameat2(RENAME_NOREPLACE) that mean "not on this filesystem or kernel" (FUSE without rename2, old tmpfs). */
const NO_NOREPLACE = new Set(['EINVAL', 'ENOSYS', 'ENOTSUP', 'EOPNOTSUPP']);
/** Folders whose filesystem refused the flag: their names are published the other way without asking again. */
const refusedNoReplace = new Set<string>();
const REFUSALS_KEPT = 64;

/**
 * Moves the temp to its final name in one call where the filesystem can refuse to replace (renameat2 with
 * RENAME_NOREPLACE, through the addon): atomic against any other writer, like link(2), and one call where
 * link and unlink are two. 'unsupported' where there is no addon or the filesystem refuses the flag.
 */
async function renameNoReplace(tempPath: string, finalPath: string): Promise<'renamed' | 'exists' | 'unsupported'> {
  const native = nativeFs();
  const folder = dirname(finalPath);
  if (native === undefined || refusedNoReplace.has(folder)) return 'unsupported';
  try {
    await native.renameNoReplace(tempPath, finalPath);
    return 'renamed';
  } catch (err) {
    const errno = errnoCode(err);
    if (errno === 'EEXIST') return 'exists';
    if (errno === undefined || !NO_NOREPLACE.has(errno)) throw destinationError(err, 'rename', finalPath);
    if (refusedNoReplace.size >= REFUSALS_KEPT) refusedNoReplace.clear();
    refusedNoReplace.add(folder);
    return 'unsupported';
  }
}

async function publishByRename(tempPath: string, finalPath: string, syncFolder: boolean): Promise<'published' | 'exists'> {
  try {
    await lstat(finalPath);
    return 'exists';
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw destinationError(err, 'stat', finalPath);
  }
  try {
    await rename(tempPath, finalPath);
  } catch (err) {
    throw destinationError(err, 'rename', finalPath);
  }
  if (syncFolder) await fsyncDir(dirname(finalPath));
  return 'published';
}

/** Writes all of `data`, looping over short writes; at `position` when given, else at the file position. */
export async function writeAll(handle: FileHandle, data: Uint8Array, position?: number): Promise<void> {
  let off = 0;
  while (off < data.byteLength) {
    const { bytesWritten } = await handle.write(data, off, data.byteLength - off, position === undefined ? null : position + off);
    off += bytesWritten;
  }
}

/** Creates `path` (which must not exist), writes `data` and fsyncs it. The folder is the caller's to fsync. */
export async function writeNewFile(path: string, data: string | Uint8Array): Promise<void> {
  const handle = await open(path, 'wx', 0o644);
  try {
    await writeAll(handle, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replaces `target` with `content` atomically: a temp beside it, fsync, rename over, fsync the folder. */
export async function replaceFileDurably(target: string, content: string): Promise<void> {
  const temp = tempPathFor(target);
  try {
    await writeNewFile(temp, content);
    await rename(temp, target);
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw destinationError(err, 'replace', target);
  }
  await fsyncDir(dirname(target));
}

export interface StrayTempOptions {
  signal?: AbortSignal | undefined;
  /** Default true; false looks at `root` itself only (a library's day folder, not its million files). */
  recursive?: boolean;
  /** Leave temps modified at or after this time (epoch ms): another writer's, still being written. */
  olderThanMs?: number;
}

/** False when the file is gone or was modified at or after `ms`. */
async function modifiedBefore(path: string, ms: number): Promise<boolean> {
  try {
    return (await lstat(path)).mtimeMs < ms;
  } catch {
    return false;
  }
}

/**
 * Deletes Shuttle temp files left under `root` by a crash, returning their paths. Call it only while
 * holding the destination's lock (a temp being written by a live Shuttle would otherwise be deleted).
 * Symbolic links are neither followed nor deleted; a missing root yields an empty list.
 */
export async function removeStrayTemps(root: string, options: StrayTempOptions = {}): Promise<string[]> {
  const { signal, recursive = true, olderThanMs } = options;
  const removed: string[] = [];
  const folders = [root];
  for (let folder = folders.pop(); folder !== undefined; folder = folders.pop()) {
    if (signal?.aborted) throw abortReason(signal);
    let dir;
    try {
      dir = await opendir(folder);
    } catch (err) {
      // A folder that vanished mid-walk (or a missing root) holds no temps.
      if (errnoCode(err) === 'ENOENT' || (errnoCode(err) === 'ENOTDIR' && folder !== root)) continue;
      throw destinationError(err, 'list', folder);
    }
    try {
      // Leaving this loop early (abort, error) closes the folder handle.
      for await (const entry of dir) {
        const path = join(folder, entry.name);
        const kind = await entryKind(entry, path);
        if (kind === 'dir') {
          if (recursive) folders.push(path);
        } else if (kind === 'file' && isShuttleTempName(entry.name)) {
          if (signal?.aborted) throw abortReason(signal);
          if (olderThanMs !== undefined && !(await modifiedBefore(path, olderThanMs))) continue;
          try {
            await unlink(path);
            removed.push(path);
          } catch (err) {
            if (errnoCode(err) !== 'ENOENT') throw err;
          }
        }
      }
    } catch (err) {
      throw destinationError(err, 'clean temps in', folder);
    }
  }
  return removed.sort();
}

/** Some filesystems (FUSE ones among them) may not report entry types in listings; ask lstat then. */
async function entryKind(entry: Dirent, path: string): Promise<'file' | 'dir' | 'other'> {
  let st: Pick<Dirent, 'isFile' | 'isDirectory' | 'isSymbolicLink'> = entry;
  if (!entry.isFile() && !entry.isDirectory() && !entry.isSymbolicLink()) {
    try {
      st = await lstat(path);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return 'other';
      throw err;
    }
  }
  return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other';
}

/** The final file name a temp name stands for (shortened if tempPathFor had to), or undefined. */
export function finalNameOfTemp(tempName: string): string | undefined {
  return isShuttleTempName(tempName) ? tempName.slice(1, -(1 + RANDOM_HEX + TEMP_SUFFIX.length)) : undefined;
}

let flippedOnce = false;

/**
 * Test-only fault injection, read from the environment at each call so tests can set it per case.
 *
 *   SHUTTLE_TEST_FAULT=flip-byte               flip one byte in every temp file
 *   SHUTTLE_TEST_FAULT=flip-byte:IMG_0002.JPG  only in temps for the final name IMG_0002.JPG
 *   SHUTTLE_TEST_FAULT=flip-byte:once          only in the first temp file of the process (so the
 *                                              rewrite that read-back triggers comes out intact)
 *
 * Several faults may be listed, separated by commas. The byte at offset floor(size / 2) is XORed with
 * 0xff and the file fsync'd again, so the bytes on disk differ from those hashed while copying but the
 * size does not. The copy pipeline calls this after the byte was written and before the read-back reads
 * it, where only the read-back can catch the damage: after the fsync for a file read back whole (no
 * `unread`: size is the file's), or, for one read back as it is written, before each read of the bytes
 * [from, to) (to undefined: to the end), flipping the byte only when that read is the one to cover it.
 * Empty files have no byte to flip. Resolves to whether a byte was flipped. The release build
 * (SHUTTLE_TEST_HOOKS false) has none of this: the function is empty there, and esbuild drops it and its
 * call.
 */
export function applyTestFault(tempPath: string, unread?: UnreadRange): Promise<boolean> | undefined {
  if (typeof SHUTTLE_TEST_HOOKS === 'undefined' || SHUTTLE_TEST_HOOKS) return flipByteOnRequest(tempPath, unread);
  return undefined;
}

/** Bytes of a temp written but not yet read back, of a copy that will be `size` bytes long. */
export interface UnreadRange {
  from: number;
  to: number | undefined;
  size: number;
}

async function flipByteOnRequest(tempPath: string, unread: UnreadRange | undefined): Promise<boolean> {
  const spec = process.env['SHUTTLE_TEST_FAULT'];
  if (!spec) return false;
  if (unread !== undefined) {
    const middle = Math.floor(unread.size / 2);
    if (unread.size === 0 || middle < unread.from || (unread.to !== undefined && middle >= unread.to)) return false;
  }
  const finalName = finalNameOfTemp(basename(tempPath));
  const faults = spec.split(',').map((s) => s.trim());
  const once = faults.includes('flip-byte:once') && !flippedOnce;
  const wanted = once || faults.some((f) => f === 'flip-byte' || (finalName !== undefined && f === `flip-byte:${finalName}`));
  if (!wanted) return false;
  if (once) flippedOnce = true;
  return flipMiddleByte(tempPath, false, unread?.size);
}

/**
 * XORs the byte at floor(size / 2) with 0xff and fsyncs; with `keepTimes` the file's times are put back.
 * `size` defaults to the file's; a copy still being written passes the size it will have.
 */
async function flipMiddleByte(path: string | Buffer, keepTimes: boolean, size?: number): Promise<boolean> {
  const handle = await open(path, 'r+');
  try {
    const st = await handle.stat();
    if ((size ?? st.size) === 0) return false;
    const offset = Math.floor((size ?? st.size) / 2);
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, offset);
    // In seconds with their fraction: the Dates of Stats are rounded to the millisecond, which can move the time.
    if (keepTimes) await handle.utimes(st.atimeMs / 1000, st.mtimeMs / 1000);
    await handle.sync();
    return true;
  } finally {
    await handle.close();
  }
}

/**
 * Test-only: SHUTTLE_TEST_FAULT=change-source:NAME changes the source file named NAME (its last path
 * part) right before the read that gates its deletion (see SourceRemoval.reread): one byte flipped, size
 * and times kept, so that only the second read's hash can tell. Resolves to whether it changed the file.
 * Empty in the release build, like applyTestFault.
 */
export function applySourceTestFault(path: string | Buffer, name: string): Promise<boolean> | undefined {
  if (typeof SHUTTLE_TEST_HOOKS === 'undefined' || SHUTTLE_TEST_HOOKS) return changeSourceOnRequest(path, name);
  return undefined;
}

async function changeSourceOnRequest(path: string | Buffer, name: string): Promise<boolean> {
  const spec = process.env['SHUTTLE_TEST_FAULT'];
  if (!spec) return false;
  const wanted = spec.split(',').some((f) => f.trim() === `change-source:${basename(name)}`);
  return wanted ? flipMiddleByte(path, true) : false;
}
