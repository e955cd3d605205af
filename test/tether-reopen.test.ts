import { afterEach, beforeEach, expect, test } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { watch } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { DEFAULT_SAMPLE_CAMERA } from '../src/sample/index.js';
import { rawTiffHead } from '../src/sample/content.js';
import { Prng } from '../src/sample/prng.js';
import { spawnCli } from './support/cli.js';
import { dropFiles, expectCopies, shotJpeg, startTether, type TetherEvent } from './support/tether-session.js';
import { libraryFiles, tempDir, tempFilesUnder } from './support/tree.js';

/**
 * A tethered camera that drops mid-session is opened again by itself: `shuttle tether --json` keeps running
 * while the PTP/IP simulator is killed and started again on the same port; shots taken before, while it is
 * away and after arrive verified exactly once, and a file cut off mid-read is read on, not reported verified
 * until it is whole.
 */
let work: { path: string; cleanup: () => Promise<void> };
let card: string;
let dest: string;
let state: string;
const children: ChildProcess[] = [];
const sims: CameraSimulator[] = [];

beforeEach(async () => {
  work = await tempDir('shuttle-tether-reopen-');
  card = join(work.path, 'card');
  dest = join(work.path, 'lib');
  state = join(work.path, 'state');
  await mkdir(join(card, 'DCIM', '100CANON'), { recursive: true });
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of sims.splice(0)) await s.stop();
  await work.cleanup();
});

/** Puts files on the card the way a camera finishes them: written elsewhere, then renamed in whole. */
async function drop(files: Map<string, Buffer>): Promise<void> {
  await dropFiles(files, join(work.path, 'incoming'), join(card, 'DCIM', '100CANON'));
}

async function shots(...names: string[]): Promise<Map<string, Buffer>> {
  const m = new Map<string, Buffer>();
  for (const n of names) m.set(n, await shotJpeg(n));
  return m;
}

/** `shuttle simulate-camera` in a process of its own (port 0: a free one), once it listens. */
async function simulatorProcess(port = 0): Promise<{ child: ChildProcess; port: number }> {
  const child = spawnCli(['simulate-camera', '--dir', card, '--port', String(port), '--time-zone', 'UTC']);
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  // It prints its address once it listens: {"host":…,"port":…}.
  const address = await new Promise<{ port: number }>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (l) => resolve(JSON.parse(l) as { port: number }));
    child.once('close', (code) => reject(new Error(`simulate-camera exited ${code} before listening:\n${stderr}`)));
  });
  return { child, port: address.port };
}

function tether(port: number, ...args: string[]) {
  return startTether(children, [`ptpip:127.0.0.1:${port}`, '--dest', dest, '--state', state, '--socket', join(state, 'tether.sock'), ...args]);
}

/** Every verified line's copies hold the shot's bytes exactly, and each shot was verified exactly once. */
async function expectOnceEach(verified: TetherEvent[], dropped: Map<string, Buffer>): Promise<void> {
  const names = verified.map((e) => e.name!.split('/').pop()!);
  expect(names.sort()).toEqual([...dropped.keys()].sort());
  await expectCopies(verified, dropped, 1);
  expect(await libraryFiles(dest)).toHaveLength(dropped.size);
}

test('the-simulator-killed-and-restarted-on-its-port-mid-session-every-shot-before-while-away-and-after-is-verified-once', async () => {
  const first = await simulatorProcess();
  const t = tether(first.port);
  await t.waitFor('ready');
  const before = await shots('IMG_0001.JPG', 'IMG_0002.JPG');
  await drop(before);
  await t.waitFor('verified', 2);

  // Killed: no goodbye on the wire; the session finds out when the camera stops answering.
  first.child.kill('SIGKILL');
  await t.waitFor('dropped');
  // Shots taken while the camera is away from the host: on its card when it comes back, never announced.
  const away = await shots('IMG_0003.JPG', 'IMG_0004.JPG');
  await drop(away);
  const second = await simulatorProcess(first.port);
  expect(second.port).toBe(first.port);
  const [back] = await t.waitFor('reconnected');
  expect(back).toMatchObject({ reconnects: 1, found: 2 });
  expect(back!.attempts).toBeGreaterThanOrEqual(1);
  await t.waitFor('verified', 4);

  const after = await shots('IMG_0005.JPG');
  await drop(after);
  const verified = await t.waitFor('verified', 5);

  t.child.kill('SIGTERM');
  const code = await t.exited;
  expect(code, t.stderr()).toBe(0);
  expect(t.events.at(-1)).toMatchObject({ event: 'stopped', copied: 5, failed: 0, status: 'complete' });
  expect(t.events.filter((e) => e.event === 'verified')).toHaveLength(5);
  await expectOnceEach(verified, new Map([...before, ...away, ...after]));
  expect(await tempFilesUnder(dest)).toEqual([]);
});

test('a-file-cut-off-by-the-drop-is-not-reported-until-it-is-read-whole-from-the-camera-come-back', async () => {
  // A RAW big enough to be caught mid-read: the camera sends it slowly.
  const big = Buffer.concat([
    await rawTiffHead(Prng.from(17, 'head'), { ...DEFAULT_SAMPLE_CAMERA, dateTimeOriginal: '2026:03:14 09:27:00' }),
    Prng.from(17, 'body').bytes(2 * 1024 * 1024),
  ]);
  const slow = await CameraSimulator.start({
    dir: card,
    port: 0,
    timeZone: 'UTC',
    misbehave: { paths: ['DCIM/100CANON/BIG_0001.CR2'], trickle: { bytes: 32 * 1024, intervalMs: 25 } },
  });
  sims.push(slow);
  const port = slow.port;
  const t = tether(port, '--log-level', 'info');
  await t.waitFor('ready');
  await mkdir(dest, { recursive: true });
  // Watched before the shot, so that the first bytes written at the destination are seen.
  const partWritten = new Promise<void>((resolve) => {
    const w = watch(dest, { recursive: true }, () => {
      void tempFilesUnder(dest).then(async (temps) => {
        for (const f of temps) {
          if ((await stat(f).catch(() => undefined))?.size) {
            w.close();
            resolve();
            return;
          }
        }
      });
    });
  });
  const file = new Map([['BIG_0001.CR2', big]]);
  await drop(file);
  await partWritten;
  // Switched off mid-read.
  await slow.stop();
  sims.splice(sims.indexOf(slow), 1);
  await t.waitFor('dropped');
  expect(t.events.some((e) => e.event === 'verified')).toBe(false);
  const again = await CameraSimulator.start({ dir: card, port, timeZone: 'UTC' });
  sims.push(again);
  await t.waitFor('reconnected');
  const [v] = await t.waitFor('verified');
  // The read broke off part-way and went on from there.
  await t.waitForLog(/reading on from there/);
  const resumed = t
    .stderr()
    .split('\n')
    .find((l) => l.includes('reading on from there'));
  const offset = Number(/"offset":(\d+)/.exec(resumed ?? '')?.[1]);
  expect(offset).toBeGreaterThan(0);
  expect(offset).toBeLessThan(big.length);
  t.child.kill('SIGTERM');
  expect(await t.exited, t.stderr()).toBe(0);
  expect(t.events.at(-1)).toMatchObject({ event: 'stopped', copied: 1, failed: 0, status: 'complete' });
  await expectOnceEach([v!], file);
});

test('a-camera-that-does-not-come-back-within-the-reconnect-timeout-ends-the-session-with-exit-4', async () => {
  const sim = await CameraSimulator.start({ dir: card, port: 0, timeZone: 'UTC' });
  sims.push(sim);
  const t = tether(sim.port, '--reconnect-timeout', '1');
  await t.waitFor('ready');
  const one = await shots('IMG_0001.JPG');
  await drop(one);
  const [v] = await t.waitFor('verified');
  await sim.stop();
  sims.splice(0);
  await t.waitFor('dropped');
  expect(await t.exited, t.stderr()).toBe(4);
  expect(t.stderr()).toMatch(/did not come back within 1 s/);
  expect(t.events.at(-1)).toMatchObject({ event: 'stopped', status: 'failed', error: { code: 'DEVICE_GONE' } });
  await expectOnceEach([v!], one);
  expect(await tempFilesUnder(dest)).toEqual([]);
});
