import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { collect, type CliResult } from './support/cli.js';
import { contentMultiset, listTree, tempDir } from './support/tree.js';

/**
 * The README's main-job command, as a user runs it: `scripts/demo.sh --once` starts s3rver, the camera
 * simulator and the daemon, has the daemon ingest the camera and upload every file, checks the library
 * and the bucket, and stops all three. (The build is the global setup's: a second one would swap dist/
 * under the tests running beside this one.)
 */

const DEMO = fileURLToPath(new URL('../scripts/demo.sh', import.meta.url));
const SAMPLE_FILES = 17;

let work: string;
let cleanup: () => Promise<void>;

beforeEach(async () => {
  ({ path: work, cleanup } = await tempDir('shuttle-demo-'));
});

afterEach(async () => {
  await cleanup();
});

function demo(timeoutSeconds: number, env: Record<string, string> = {}): Promise<CliResult> {
  const child = spawn(DEMO, ['--once', '--no-build', '--listen', '127.0.0.1:0', '--timeout', String(timeoutSeconds), work], {
    env: { ...process.env, TZ: 'UTC', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return collect(child, (timeoutSeconds + 20) * 1000);
}

/** Processes still running with the demo folder on their command line: the demo must leave none. */
async function leftovers(): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(work)) found.push(`${pid}: ${cmd.replaceAll('\0', ' ')}`);
  }
  return found;
}

async function log(name: string): Promise<string> {
  return readFile(join(work, 'logs', `${name}.log`), 'utf8');
}

describe('scripts/demo.sh --once', () => {
  test('ingests-the-simulated-camera-uploads-every-file-to-s3rver-checks-both-and-stops-everything', async () => {
    const r = await demo(40);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/^dashboard: http:\/\/127\.0\.0\.1:\d+\/ /m);
    expect(r.stdout).toMatch(new RegExp(`^job 1 done in [\\d.]+ s: ptpip:127\\.0\\.0\\.1:\\d+$`, 'm'));
    expect(r.stdout).toContain(`camera:  ${SAMPLE_FILES} files on the card, ${SAMPLE_FILES} copied`);
    expect(r.stdout).toContain(`library: ${SAMPLE_FILES} verified by read-back in ${join(work, 'library')}`);
    expect(r.stdout).toContain(`cloud:   ${SAMPLE_FILES} uploaded to s3://shuttle-demo/shots and verified there`);
    expect(r.stdout).toContain(`bucket:  ${SAMPLE_FILES} of ${SAMPLE_FILES} objects read back from s3rver match their library copy (SHA-256)`);
    expect(r.stdout).toContain(`${join(work, 'library')}: ${SAMPLE_FILES} verified, 0 missing, 0 mismatched`);
    expect(r.stdout).toMatch(/^demo: done$/m);

    // What the summary claims, seen on disk: the library and s3rver's store hold the card's bytes.
    const card = contentMultiset(await listTree(join(work, 'card')));
    const library = contentMultiset(await listTree(join(work, 'library'), { skipShuttle: true }));
    const s3rverStore = [...(await listTree(join(work, 's3', 'shuttle-demo'))).entries()].filter(([p]) => p.endsWith('._S3rver_object'));
    expect(card).toHaveLength(SAMPLE_FILES);
    expect(library).toEqual(card);
    expect(contentMultiset(new Map(s3rverStore))).toEqual(card);

    // All three stopped at the script's signal, the daemon by its clean stop.
    expect(await leftovers()).toEqual([]);
    expect(await log('daemon')).toMatch(/"msg":"daemon stopped"/);
    expect(await log('camera')).toMatch(/"signal":"SIGTERM","msg":"stopping camera simulator"/);
  });

  test('fails-at-the-first-upload-error-naming-it-and-still-stops-everything', async () => {
    // The daemon's environment overrides its config: uploads go to a port where nothing answers.
    const r = await demo(40, { SHUTTLE_UPLOAD_ENDPOINT: 'http://127.0.0.1:9' });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(1);
    expect(r.stdout).toMatch(/^job 1 done in /m);
    expect(r.stderr).toMatch(/^demo: upload of shots\/demo\/\S+ failed: .*ECONNREFUSED/m);
    expect(r.stdout).not.toContain('demo: done');
    expect(await leftovers()).toEqual([]);
    expect(await log('daemon')).toMatch(/"msg":"daemon stopped"/);
  });

  test('gives-up-loudly-at-its-timeout-and-still-stops-everything', async () => {
    // Bandwidth 0 pauses the uploads: nothing fails, nothing moves.
    const r = await demo(8, { SHUTTLE_UPLOAD_BANDWIDTH: '0' });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(1);
    expect(r.stderr).toMatch(/^demo: timed out waiting for (job 1|the uploads): /m);
    expect(r.stdout).not.toContain('demo: done');
    expect(await leftovers()).toEqual([]);
    expect(await log('daemon')).toMatch(/"msg":"daemon stopped"/);
  });
});
