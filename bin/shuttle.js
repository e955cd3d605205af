#!/usr/bin/env node
// Launcher: Shuttle needs Node >= 22.13 (node:sqlite). The project ships a supported runtime as the
// `node` dependency; when started by an older system node, re-exec under that runtime.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
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
const here = dirname(fileURLToPath(import.meta.url));
await import(join(here, '..', 'dist', 'main.js'));
