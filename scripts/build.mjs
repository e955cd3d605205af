#!/usr/bin/env node
// Builds dist/ from src/: the CLI as ES module bundles (one per command, shared code in chunks), so that
// a command's start-up reads a few files instead of some 300 modules across node_modules. Measured on
// the development host, `shuttle ingest --help` took 0.49 s as plain tsc output and 0.17 s bundled; in
// the TCG test guest, where every file is read over 9p, resolving and loading modules was most of a
// 20 s start. Type checking is tsc's job (`npm run typecheck`); esbuild only strips the types.
// Run:  node scripts/build.mjs [--outdir DIR] [--no-sourcemap] [--release]   (default dist/ with source maps)
// --release (scripts/build-dist.sh) leaves out the test hooks: SHUTTLE_TEST_HOOKS is defined false, so
// the crash points and injected faults are dead code that the syntax pass removes, names and all. The
// tests' build (test/support/global-setup.ts, npm's prepare) keeps them; otherwise the two are the same.
import { build } from 'esbuild';
import { rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = fileURLToPath(new URL('..', import.meta.url));
const { values: opts } = parseArgs({ options: { outdir: { type: 'string' }, 'no-sourcemap': { type: 'boolean' }, release: { type: 'boolean' } } });
const outdir = resolve(opts.outdir ?? `${root}/dist`);

// Left to Node at run time: native addons (and their prebuilt binaries), pino's transport (thread-stream
// starts a worker thread by file name, which runs pino-pretty) and the AWS SDK (loaded only when a command
// uploads). pino itself is bundled: loaded from node_modules it was some 30 files to resolve and read
// before the first log line, which a small box pays on every start.
const external = ['usb', 'node-hid', 'sharp', '@node-rs/xxhash', 'pino-pretty', 'thread-stream', '@aws-sdk/*', '@smithy/*'];

// pino requires thread-stream (and with it worker_threads) when it loads, for one use: starting a
// transport, which only a pretty log at a terminal does. It gets a stand-in that requires the real one on
// first use, so that a command logging JSON lines, or nothing, does not read and compile it.
const lazyThreadStream = {
  name: 'lazy-thread-stream',
  setup(b) {
    b.onResolve({ filter: /^thread-stream$/ }, (args) =>
      args.pluginData === 'stand-in' ? { path: 'thread-stream', external: true } : { path: 'thread-stream', namespace: 'lazy-thread-stream' },
    );
    b.onLoad({ filter: /.*/, namespace: 'lazy-thread-stream' }, () => ({
      contents: "module.exports = function ThreadStream(opts) { const Real = require('thread-stream'); return new Real(opts); };",
      loader: 'js',
      resolveDir: root,
      pluginData: 'stand-in',
    }));
  },
};

await rm(outdir, { recursive: true, force: true });
await build({
  absWorkingDir: root,
  // Worker threads are started by file name, next to the chunk that starts them: entries of their own.
  entryPoints: ['src/main.ts', 'src/io/hash-worker.ts', 'src/store/checkpoint-worker.ts'],
  entryNames: '[name]',
  // Flat, beside main.js: code that finds files relative to itself (src/version.ts: ../package.json)
  // sits one level below the program root both in src/ and here.
  chunkNames: '[name]-[hash]',
  outdir,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  external,
  define: { SHUTTLE_TEST_HOOKS: opts.release ? 'false' : 'true' },
  // Folds constants and drops dead code (the hooks above); names and layout stay as written.
  minifySyntax: true,
  // The artifact (scripts/build-dist.sh) leaves them out: they point at sources it does not carry.
  sourcemap: opts['no-sourcemap'] ? false : 'linked',
  // Bundled CommonJS packages call require() for Node's own modules; an ES module has none of its own.
  banner: { js: "import { createRequire as __shuttleRequire } from 'node:module'; const require = __shuttleRequire(import.meta.url);" },
  plugins: [lazyThreadStream],
  logLevel: 'warning',
});
