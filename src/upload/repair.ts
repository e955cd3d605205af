import { createReadStream } from 'node:fs';
import { rename, stat, unlink, utimes } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ShuttleError, abortReason, throwIfAborted } from '../errors.js';
import { fsyncDir, openTemp, writeAll } from '../io/durable.js';
import { MultiHasher } from '../io/hashing.js';
import { readBack } from '../io/readback.js';

export interface ExpectedBytes {
  size: number;
  sha256: string;
}

/**
 * Replaces a damaged local copy with the bytes of an intact one: copied to a temp beside the damaged
 * file, hashed on the way, fsync'd, read back past the page cache and compared, then renamed over the
 * damaged file (whose content is known bad, so replacing it loses nothing) and the folder fsync'd.
 * Throws UPLOAD_VERIFY, leaving the damaged file as it was, when the bytes do not come out right.
 */
export async function restoreCopy(goodPath: string, damagedPath: string, expected: ExpectedBytes, signal?: AbortSignal): Promise<void> {
  throwIfAborted(signal);
  const temp = await openTemp(damagedPath);
  let published = false;
  try {
    const hasher = await MultiHasher.create(['sha256']);
    try {
      for await (const chunk of createReadStream(goodPath, { highWaterMark: 1024 * 1024, signal })) {
        const bytes = chunk as Buffer;
        hasher.update(bytes);
        await writeAll(temp.handle, bytes);
      }
      await temp.handle.sync();
    } catch (error) {
      if (signal?.aborted) throw abortReason(signal);
      throw new ShuttleError('DEST_WRITE_FAILED', `cannot copy ${goodPath} to ${temp.path}`, { context: { from: goodPath, to: temp.path }, cause: error });
    } finally {
      await temp.handle.close();
    }
    const written = hasher.digest().sha256;
    if (hasher.bytes !== expected.size || written !== expected.sha256) {
      throw new ShuttleError(
        'UPLOAD_VERIFY',
        `${goodPath} read as ${hasher.bytes} bytes with sha256 ${written}, expected ${expected.size} bytes with ${expected.sha256}; not restoring ${damagedPath} from it`,
        {
          context: { path: goodPath, expected: expected.sha256, actual: written },
        },
      );
    }
    const back = await readBack(temp.path, ['sha256'], signal === undefined ? {} : { signal });
    if (back.size !== expected.size || back.hashes.sha256 !== expected.sha256) {
      throw new ShuttleError('UPLOAD_VERIFY', `restored copy ${temp.path} read back as sha256 ${back.hashes.sha256 ?? '(none)'}, expected ${expected.sha256}`, {
        context: { path: temp.path, expected: expected.sha256, actual: back.hashes.sha256 },
      });
    }
    const { mtime } = await stat(goodPath);
    await utimes(temp.path, mtime, mtime);
    throwIfAborted(signal);
    await rename(temp.path, damagedPath);
    published = true;
    await fsyncDir(dirname(damagedPath));
  } finally {
    if (!published) await unlink(temp.path).catch(() => {});
  }
}
