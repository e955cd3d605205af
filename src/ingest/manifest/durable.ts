import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoCode, ShuttleError } from '../../errors.js';
import { TEMP_SUFFIX } from './naming.js';

/** A filesystem failure while writing the manifest, with ENOSPC told apart. */
export function writeFailure(what: string, file: string, err: unknown): ShuttleError {
  if (err instanceof ShuttleError) return err;
  const code = errnoCode(err);
  return new ShuttleError(code === 'ENOSPC' ? 'DEST_NO_SPACE' : 'DEST_WRITE_FAILED', `${what} ${file}: ${(err as Error).message}`, {
    context: { path: file, errno: code },
    cause: err,
  });
}

/** Makes a directory entry change (create, rename, unlink) durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fd = await fs.open(dir, 'r');
  try {
    await fd.sync();
  } catch (err) {
    // Some filesystems (certain FUSE and network mounts) cannot fsync a directory; nothing more can be done there.
    if (errnoCode(err) !== 'EINVAL' && errnoCode(err) !== 'ENOTSUP') throw err;
  } finally {
    await fd.close();
  }
}

export function tempPathIn(dir: string, stem: string): string {
  return path.join(dir, `.${stem}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
}

/** Writes all of `data`, looping over short writes. */
export async function writeAll(fd: fs.FileHandle, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) {
    const { bytesWritten } = await fd.write(data, off, data.byteLength - off);
    off += bytesWritten;
  }
}

/** Replaces `target` with `content` atomically: temp in the same folder, fsync, rename, fsync the folder. */
export async function replaceFileDurably(target: string, content: string): Promise<void> {
  const dir = path.dirname(target);
  const temp = tempPathIn(dir, path.basename(target));
  try {
    const fd = await fs.open(temp, 'wx', 0o644);
    try {
      await writeAll(fd, Buffer.from(content, 'utf8'));
      await fd.sync();
    } finally {
      await fd.close();
    }
    await fs.rename(temp, target);
    await fsyncDir(dir);
  } catch (err) {
    await fs.rm(temp, { force: true }).catch(() => undefined);
    throw writeFailure('cannot write', target, err);
  }
}

/** errno values by which link(2) says the filesystem has no hard links (exFAT and FAT say EPERM on Linux). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

/**
 * Gives `temp` the name `final` without ever replacing an existing file: an exclusive link(), then the temp
 * name is dropped. Returns false when `final` already exists. On filesystems without hard links it falls
 * back to check-then-rename, which is only exclusive against other writers under the destination lock.
 */
export async function linkNoReplace(temp: string, final: string): Promise<boolean> {
  try {
    await fs.link(temp, final);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'EEXIST') return false;
    if (code === undefined || !NO_HARD_LINKS.has(code)) throw err;
    try {
      await fs.lstat(final);
      return false;
    } catch (statErr) {
      if (errnoCode(statErr) !== 'ENOENT') throw statErr;
    }
    await fs.rename(temp, final);
    return true;
  }
  await fs.unlink(temp);
  return true;
}
