/**
 * The daemon's tether mode across a camera that drops: the PTP/IP simulator stopped and started again on
 * its port while the daemon keeps the camera in session. The session's job goes on (no second job), the
 * shot taken while the camera was away arrives verified once, and /metrics counts the reconnect.
 */
import { mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { normalizeConfig } from '../src/config/index.js';
import type { DiscoveredCamera } from '../src/device/ptpip/discovery.js';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { Daemon } from '../src/daemon/daemon.js';
import type { StationEvent } from '../src/daemon/events.js';
import { PtpIpWatcher } from '../src/daemon/ptpip-watcher.js';
import { nextEvent } from './support/api-daemon.js';
import { captureLog, tempDirWithOwnLocks } from './support/daemon-helpers.js';
import { writeJpeg } from './support/fixtures.js';
import { libraryFiles } from './support/tree.js';

describe('daemon tether mode', () => {
  const work = tempDirWithOwnLocks('shuttle-daemon-tether-reopen-');

  test('a-tethered-camera-restarted-on-its-port-stays-in-the-same-session-its-shots-verified-once-and-the-reconnect-counted', async () => {
    const card = join(work(), 'card');
    const dest = join(work(), 'dest');
    await mkdir(join(card, 'DCIM', '100CANON'), { recursive: true });
    await mkdir(join(work(), 'incoming'));
    let sim = await CameraSimulator.start({ dir: card, port: 0, host: '127.0.0.1', timeZone: 'UTC' });
    let simRunning = true;
    const port = sim.port;
    const camera: DiscoveredCamera = { uri: `ptpip:127.0.0.1:${port}`, host: '127.0.0.1', port, name: 'Simulator', via: 'mdns', service: '_ptp._tcp' };
    let announced: DiscoveredCamera[] = [];
    const log = captureLog();
    const watcher = new PtpIpWatcher({
      logger: log.logger,
      intervalMs: 3_600_000,
      discoverer: { scan: async () => announced, onGoodbye: () => () => undefined, close: async () => undefined },
    });
    const config = normalizeConfig({
      destinations: [{ path: dest }],
      daemon: { control_socket: join(work(), 'control.sock'), watchdog: false, usb_cameras: false, network_cameras: false },
      tether: { cameras: [`ptpip:127.0.0.1:${port}`], preview_long_edge: 48, reconnect_timeout: 60 },
      api: { listen: '127.0.0.1:0' },
    });
    const daemon = await Daemon.start({ config, stateDir: join(work(), 'state'), logger: log.logger, env: {}, watchers: [watcher] });
    const events: StationEvent[] = [];
    daemon.events.subscribe((e) => events.push(e));
    /** A shot taken on the body: written elsewhere, then renamed onto the card in whole. */
    const take = async (name: string, seed: number): Promise<Buffer> => {
      const bytes = await writeJpeg(join(work(), 'incoming', name), { seed });
      await rename(join(work(), 'incoming', name), join(card, 'DCIM', '100CANON', name));
      return bytes;
    };
    const verifiedOf = (name: string) => nextEvent(daemon.events, (e) => e.type === 'file.verified' && e.path.endsWith(name));
    try {
      const url = daemon.status().api!.url;
      const metric = async (): Promise<number> => {
        const text = await (await fetch(`${url}/metrics`)).text();
        return Number(/^shuttle_camera_reconnects_total (\d+)$/m.exec(text)?.[1]);
      };
      expect(await metric()).toBe(0);
      // The camera is announced: it is kept in session.
      const started = nextEvent(daemon.events, (e) => e.type === 'job.started');
      announced = [camera];
      await watcher.scan();
      const job = await started;
      const jobId = job.type === 'job.started' ? job.job.id : -1;

      const one = verifiedOf('IMG_0001.JPG');
      const first = await take('IMG_0001.JPG', 1);
      const v1 = await one;

      // Switched off (its connections cut), a shot taken meanwhile, switched on again on the same port.
      await sim.stop();
      simRunning = false;
      const two = verifiedOf('IMG_0002.JPG');
      const second = await take('IMG_0002.JPG', 2);
      sim = await CameraSimulator.start({ dir: card, port, host: '127.0.0.1', timeZone: 'UTC' });
      simRunning = true;
      const v2 = await two;
      expect(log.lines).toContainEqual(expect.objectContaining({ msg: 'camera reconnected', reconnects: 1, found: 1 }));

      // And a shot after: still the same session.
      const three = verifiedOf('IMG_0003.JPG');
      const third = await take('IMG_0003.JPG', 3);
      const v3 = await three;
      for (const [v, bytes] of [
        [v1, first],
        [v2, second],
        [v3, third],
      ] as const) {
        if (v.type !== 'file.verified') throw new Error('not a file event');
        expect(v.job).toBe(jobId);
        expect(await readFile(v.copies[0]!)).toEqual(bytes);
      }
      expect(await metric()).toBe(1);
      // One session throughout: no job ended, no second one started; nothing failed, nothing copied twice.
      expect(events.filter((e) => e.type === 'job.finished')).toEqual([]);
      expect(events.filter((e) => e.type === 'job.started')).toHaveLength(1);
      expect(events.filter((e) => e.type === 'error' || e.type === 'file.failed')).toEqual([]);
      expect(events.filter((e) => e.type === 'file.verified')).toHaveLength(3);
      const copies = await libraryFiles(dest);
      expect(copies).toHaveLength(3);
    } finally {
      await daemon.stop();
      if (simRunning) await sim.stop();
    }
  }, 60_000);
});
