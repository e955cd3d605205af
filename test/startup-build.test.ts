import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { collect, MAIN, runCli } from './support/cli.js';

// The built CLI (dist/, bundled by scripts/build.mjs) as a box runs it.
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shuttle-startup-build-'));
  await mkdir(join(dir, 'card/DCIM/100TEST'), { recursive: true });
  await writeFile(join(dir, 'card/DCIM/100TEST/IMG_0001.JPG'), Buffer.alloc(4096, 7));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('an ingest loads pino from the bundle, not as some 30 files from node_modules', async () => {
  // Every CommonJS file Node loaded, written when the process exits.
  const preload = join(dir, 'record-modules.cjs');
  const list = join(dir, 'modules.json');
  await writeFile(preload, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(list)}, JSON.stringify(Object.keys(require('node:module')._cache))));\n`);
  const r = await runCli(['--state', join(dir, 'state'), 'ingest', join(dir, 'card'), '--dest', join(dir, 'dest'), '--json'], {
    env: { NODE_OPTIONS: `--require ${preload}`, SHUTTLE_LOG_LEVEL: 'info' },
  });
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toContain('"msg":"ingest finished"');
  const loaded = JSON.parse(await readFile(list, 'utf8')) as string[];
  // The record sees the CommonJS files loaded (itself among them)...
  expect(loaded).toContain(preload);
  // ...and none of pino's own, nor its transport starter, which only the pretty log at a terminal needs.
  expect(loaded.filter((f) => /\/node_modules\/(pino|pino-std-serializers|sonic-boom|@pinojs\/redact|thread-stream)\//.test(f))).toEqual([]);
});

test('at a terminal the bundled pino still logs through pino-pretty in its worker thread', async () => {
  // `script` gives the CLI a pseudo-terminal, so that it picks the pretty transport.
  const cmd = [process.execPath, MAIN, '--log-level', 'info', '--state', join(dir, 'state'), 'ingest', join(dir, 'card'), '--dest', join(dir, 'dest')]
    .map((a) => `'${a}'`)
    .join(' ');
  const r = await collect(spawn('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, TZ: 'UTC' }, stdio: ['ignore', 'pipe', 'pipe'] }));
  expect(r.code, r.stdout + r.stderr).toBe(0);
  // pino-pretty's form: a level name and the message, not a JSON line.
  expect(r.stdout).toMatch(/INFO.*\(\d+\):.*ingest finished/);
  expect(r.stdout).not.toContain('"msg":"ingest finished"');
});

test('every file of the build imports on its own outside a worker, as the guest warms its compile cache', async () => {
  // test/hil/vm.ts imports each chunk to compile it ahead; a worker entry that assumed its parent port threw
  // there, and the guest then started cold.
  const dist = join(MAIN, '..');
  const files = (await readdir(dist)).filter((f) => f.endsWith('.js') && f !== 'main.js');
  expect(files).toContain('checkpoint-worker.js');
  const failed: string[] = [];
  for (const f of files) {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(join(dist, f))});`], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) failed.push(`${f}: ${r.stderr.split('\n').find((l) => /Error/.test(l)) ?? `exit ${r.status}`}`);
  }
  expect(failed).toEqual([]);
});
