/**
 * The daemon's tether sessions make a shot's preview of the bytes as they stream from the camera, as
 * `shuttle tether` does: a RAW's embedded preview is written before the RAW is verified, so it is made
 * neither of the verified copy nor of a second read of the camera.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { expect, test } from 'vitest';
import { normalizeConfig } from '../src/config/index.js';
import type { DiscoveredCamera } from '../src/device/ptpip/discovery.js';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { Daemon } from '../src/daemon/daemon.js';
import type { StationEvent } from '../src/daemon/events.js';
import { PtpIpWatcher } from '../src/daemon/ptpip-watcher.js';
import type { CapturedShot } from '../src/daemon/tether-sessions.js';
import { nextEvent } from './support/api-daemon.js';
import { captureLog, tempDirWithOwnLocks } from './support/daemon-helpers.js';
import { solidJpeg, tiffRaw } from './support/preview-raws.js';

const work = tempDirWithOwnLocks('shuttle-daemon-tether-preview-');

test('a-tethered-raws-preview-is-made-of-its-streamed-bytes-before-the-raw-is-verified', async () => {
  const card = join(work(), 'card');
  const pool = join(work(), 'pool');
  await mkdir(join(card, 'DCIM', '100CANON'), { recursive: true });
  await mkdir(pool, { recursive: true });
  // Its embedded preview near its start, 12 MB of sensor data after it.
  const raw = tiffRaw({ preview: await solidJpeg(320, 200, 200), size: 12_000_000 });
  await writeFile(join(pool, 'POOL_A.CR2'), raw);
  const sim = await CameraSimulator.start({ dir: card, port: 0, host: '127.0.0.1', timeZone: 'UTC', pool });
  const camera: DiscoveredCamera = { uri: `ptpip:127.0.0.1:${sim.port}`, host: '127.0.0.1', port: sim.port, name: 'Simulator', via: 'mdns', service: '_ptp._tcp' };
  const log = captureLog();
  let announced: DiscoveredCamera[] = [];
  const watcher = new PtpIpWatcher({
    logger: log.logger,
    intervalMs: 3_600_000,
    discoverer: { scan: async () => announced, onGoodbye: () => () => undefined, close: async () => undefined },
  });
  const config = normalizeConfig({
    destinations: [{ path: join(work(), 'dest') }],
    daemon: { control_socket: join(work(), 'control.sock'), watchdog: false, usb_cameras: false, network_cameras: false },
    tether: { cameras: [camera.uri], preview_long_edge: 48, reconnect_timeout: 1 },
    api: { listen: '127.0.0.1:0' },
  });
  const stateDir = join(work(), 'state');
  const daemon = await Daemon.start({ config, stateDir, logger: log.logger, env: {}, watchers: [watcher] });
  try {
    const events: StationEvent[] = [];
    daemon.events.subscribe((e) => events.push(e));
    const started = nextEvent(daemon.events, (e) => e.type === 'job.started');
    announced = [camera];
    await watcher.scan();
    await started;
    // A shot on the body first: once it is verified, the session is the camera's and takes captures.
    const first = nextEvent(daemon.events, (e) => e.type === 'file.verified');
    await mkdir(join(work(), 'incoming'));
    await writeFile(join(work(), 'incoming', 'IMG_0001.JPG'), await solidJpeg(64, 48, 10));
    await rename(join(work(), 'incoming', 'IMG_0001.JPG'), join(card, 'DCIM', '100CANON', 'IMG_0001.JPG'));
    await first;
    const res = await fetch(`${daemon.status().api!.url}/api/v1/capture`, { method: 'POST' });
    expect(res.status).toBe(200);
    const shot = (await res.json()) as CapturedShot;
    expect(shot.name).toMatch(/\.CR2$/);
    expect(shot.preview).toBe(join(stateDir, 'previews', `${shot.files[0]!.slice(join(work(), 'dest').length + 1)}.jpg`));
    // Written before the copy was verified: of the bytes in memory, not of the copy (nor of the camera again).
    expect(shot.ms!.preview).not.toBeNull();
    expect(shot.ms!.preview!).toBeLessThan(shot.ms!.verified);
    const meta = await sharp(shot.preview!).metadata();
    expect(Math.max(meta.width, meta.height)).toBe(48);
    expect((await sharp(shot.preview!).stats()).channels[0]!.mean).toBeCloseTo(200, -1);
    const ready = events.find((e) => e.type === 'preview.ready' && e.fileId === shot.fileId);
    expect(ready).toMatchObject({ type: 'preview.ready', preview: shot.preview, url: `/api/v1/files/${shot.fileId}/preview` });
  } finally {
    await daemon.stop();
    await sim.stop();
  }
}, 60_000);
