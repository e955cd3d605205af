import { join } from 'node:path';
import { getSystemErrorName } from 'node:util';
import { PROGRAM_ROOT } from '../version.js';

/**
 * The copy path's file-system calls Node lacks, from the addon npm builds with the project
 * (native/durable_fs.c, in build/Release/sd_notify.node). Each is an optimisation with a plain-Node way
 * around it: where the addon is missing (a checkout whose `npm ci` could not compile), callers take that
 * way, and what a copy proves is the same.
 */
export interface NativeFs {
  /** O_DIRECT on (or off) for an open file; false where the filesystem refuses direct I/O. */
  setDirect(fd: number, on: boolean): boolean;
  /** renameat2(RENAME_NOREPLACE) in the thread pool; rejects with a Node-like system error (`code`, `errno`, `syscall`). */
  renameNoReplace(from: string, to: string): Promise<void>;
}

/** Where node-gyp leaves the addon (as src/daemon/notify.ts finds it for sd_notify). */
const ADDON = join(PROGRAM_ROOT, 'build', 'Release', 'sd_notify.node');

let loaded: NativeFs | null | undefined;

/** The addon's file-system calls, or undefined where it cannot be loaded (looked for once). */
export function nativeFs(): NativeFs | undefined {
  if (loaded === undefined) loaded = load();
  return loaded ?? undefined;
}

function load(): NativeFs | null {
  // Tests take the plain-Node ways with this set; the release build has no such switch.
  if ((typeof SHUTTLE_TEST_HOOKS === 'undefined' || SHUTTLE_TEST_HOOKS) && process.env['SHUTTLE_TEST_NO_NATIVE_FS'] === '1') return null;
  try {
    const mod = { exports: {} as Partial<NativeFs> };
    process.dlopen(mod, ADDON);
    const { setDirect, renameNoReplace } = mod.exports;
    if (typeof setDirect !== 'function' || typeof renameNoReplace !== 'function') return null;
    return {
      setDirect: (fd, on) => withCode(() => setDirect(fd, on)),
      renameNoReplace: (from, to) => renameNoReplace(from, to).catch((err: unknown) => Promise.reject(coded(err))),
    };
  } catch {
    return null;
  }
}

function withCode<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw coded(err);
  }
}

/** Gives the addon's errors the `code` Node's own system errors have (errnoCode reads it). */
function coded(err: unknown): unknown {
  if (err instanceof Error) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e.errno === 'number' && e.errno > 0 && e.code === undefined) {
      e.code = getSystemErrorName(-e.errno);
      e.errno = -e.errno;
    }
  }
  return err;
}
