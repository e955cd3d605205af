import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

/** A temp dir removed after the test; on a disk-backed filesystem so O_DIRECT read-back applies. */
export async function tempDir(prefix = 'shuttle-test-'): Promise<{ path: string; cleanup: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** Every regular file under root (relative '/'-paths), with size and sha256. */
export async function listTree(root: string, opts: { skipShuttle?: boolean } = {}): Promise<Map<string, { size: number; sha256: string }>> {
  const out = new Map<string, { size: number; sha256: string }>();
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const abs = join(dir, e.name);
      const rel = relative(root, abs).split('\\').join('/');
      if (opts.skipShuttle && (rel === '.shuttle' || rel === 'ascmhl' || rel === 'shuttle-reports')) continue;
      if (e.isDirectory()) await walk(abs);
      else if (e.isFile())
        out.set(rel, {
          size: (await stat(abs)).size,
          sha256: createHash('sha256')
            .update(await readFile(abs))
            .digest('hex'),
        });
    }
  };
  await walk(root);
  return out;
}

/** The files an ingest put in a library: every file under root but Shuttle's own (.shuttle, ascmhl, shuttle-reports). */
export async function libraryFiles(root: string): Promise<string[]> {
  return [...(await listTree(root, { skipShuttle: true })).keys()];
}

/** Content hashes as a multiset, to compare a source tree with a renamed destination tree. */
export function contentMultiset(tree: Map<string, { sha256: string }>): string[] {
  return [...tree.values()].map((v) => v.sha256).sort();
}

export async function tempFilesUnder(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const abs = join(dir, e.name);
      if (e.isDirectory()) await walk(abs);
      else if (e.name.endsWith('.shuttle-tmp')) found.push(abs);
    }
  };
  await walk(root);
  return found;
}
