import { execFileSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { normalizeConfig, type ConfigInput } from '../src/config/index.js';
import { Daemon } from '../src/daemon/daemon.js';
import { isShuttleError } from '../src/errors.js';
import { captureLog, until } from './support/daemon-helpers.js';
import { bytes, writeBytes } from './support/fixtures.js';
import { nextEvent, TestWatcher } from './support/test-watcher.js';
import { tempDir } from './support/tree.js';

/**
 * The station's sounds ([sound]): aplay plays `done` when a card is safe to pull and `failed` when its
 * job failed, on ALSA's null device here (it takes the samples and discards them).
 */

let work: { path: string; cleanup: () => Promise<void> };
let daemon: Daemon | undefined;
const mounts: string[] = [];

beforeEach(async () => {
  work = await tempDir('shuttle-sound-');
});
afterEach(async () => {
  await daemon?.stop();
  daemon = undefined;
  for (const m of mounts.splice(0)) execFileSync('umount', ['-l', m]);
  await work.cleanup();
});

/** A WAV file: 0.05 s of a 440 Hz tone, 8 kHz mono 16-bit. */
async function wav(name: string): Promise<string> {
  const rate = 8000;
  const n = rate / 20;
  const data = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) data.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), i * 2);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  const file = join(work.path, name);
  await writeFile(file, Buffer.concat([header, data]));
  return file;
}

async function start(destinations: string[], sound: ConfigInput['sound']): Promise<{ d: Daemon; watcher: TestWatcher; lines: ReturnType<typeof captureLog>['lines'] }> {
  const log = captureLog();
  const watcher = new TestWatcher();
  const config = normalizeConfig({
    station: 'cart-1',
    destinations: destinations.map((path) => ({ path })),
    daemon: { control_socket: join(work.path, 'control.sock'), watchdog: false, usb_cameras: false, network_cameras: false },
    sound,
  });
  daemon = await Daemon.start({ config, stateDir: join(work.path, 'state'), logger: log.logger, env: {}, watchers: [watcher] });
  return { d: daemon, watcher, lines: log.lines };
}

/** The log record of the first sound played or refused (the player's exit decides which). */
async function soundLogged(lines: ReturnType<typeof captureLog>['lines']): Promise<Record<string, unknown>> {
  const find = async () => lines.find((l) => l['msg'] === 'sound played' || l['msg'] === 'the sound could not be played') ?? null;
  return (await until('a sound', find, (l) => l !== null, 30_000, 20))!;
}

describe('[sound]', () => {
  test('a-card-safe-to-pull-plays-done-and-a-refused-card-plays-failed-through-aplay-on-the-null-device', async () => {
    const done = await wav('done.wav');
    const failed = await wav('failed.wav');
    const small = join(work.path, 'small');
    await mkdir(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small]);
    mounts.push(small);
    const { d, watcher, lines } = await start([join(work.path, 'lib')], { done, failed, device: 'null' });
    const card = join(work.path, 'CARD');
    await writeBytes(join(card, 'DCIM/IMG_0001.JPG'), bytes(100_000, 1));
    let finished = nextEvent(d.events, (e) => e.type === 'job.finished');
    watcher.card('CARD', card);
    expect(await finished).toMatchObject({ job: { state: 'done' } });
    expect(await soundLogged(lines)).toMatchObject({ msg: 'sound played', sound: 'done', file: done, device: 'null' });
    await daemon!.stop();

    // The same card to a disk too small for it: refused, the job fails, the failed sound plays.
    const again = await start([small], { done, failed, device: 'null' });
    await writeBytes(join(card, 'DCIM/IMG_0002.JPG'), bytes(2_000_000, 2));
    finished = nextEvent(again.d.events, (e) => e.type === 'job.finished');
    again.watcher.card('CARD', card);
    expect(await finished).toMatchObject({ job: { state: 'failed' } });
    expect(await soundLogged(again.lines)).toMatchObject({ msg: 'sound played', sound: 'failed', file: failed, device: 'null' });
  });

  test('a-sound-file-that-cannot-be-read-stops-the-start', async () => {
    const e = await start([join(work.path, 'lib')], { done: join(work.path, 'missing.wav') }).catch((err: unknown) => err);
    expect(isShuttleError(e, 'CONFIG_INVALID')).toBe(true);
    expect((e as Error).message).toContain('[sound] done: cannot read');
  });
});
