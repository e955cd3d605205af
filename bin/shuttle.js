#!/usr/bin/env node
// Launcher: Shuttle needs Node >= 22.13 (node:sqlite). The project ships a supported runtime as the
// `node` dependency; when started by an older system node, re-exec under that runtime.
import { spawnSync } from 'node:child_process';
import module, { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 22 || (major === 22 && minor < 13)) {
  const require = createRequire(import.meta.url);
  let runtime;
  try {
    runtime = join(dirname(require.resolve('node/package.json')), 'bin', 'node');
  } catch {
    process.stderr.write(`shuttle: Node ${process.versions.node} is too old (need >= 22.13) and no bundled runtime was found\n`);
    process.exit(2);
  }
  const r = spawnSync(runtime, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit' });
  process.exit(r.status ?? (r.signal ? 128 + 9 : 1));
}
// Compiling Shuttle's modules is most of a command's start-up on a small box, and seconds under
// emulation: keep V8's compiled code between runs. Only in a directory this user owns (systemd's
// CacheDirectory, or the user's cache), never Node's default in the shared /tmp, where another user
// could plant entries. NODE_COMPILE_CACHE, when set, has already enabled it.
if (!process.env.NODE_COMPILE_CACHE) {
  const base = process.env.CACHE_DIRECTORY?.split(':')[0] || process.env.XDG_CACHE_HOME || (process.env.HOME ? join(homedir(), '.cache') : '');
  if (base) module.enableCompileCache(join(base, process.env.CACHE_DIRECTORY ? '' : 'shuttle', 'node-compile-cache'));
}
const here = dirname(fileURLToPath(import.meta.url));
await import(join(here, '..', 'dist', 'main.js'));
