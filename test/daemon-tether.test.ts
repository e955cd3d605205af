/**
 * The daemon's tether mode against the PTP/IP simulator: a network camera that `[tether] cameras` names
 * stays in session instead of a one-off ingest. A shot added on its card arrives verified with a preview
 * (events); `shuttle capture` against the daemon's control socket, POST /api/v1/capture and a pedal press
 * each fire it and get the verified shot; the camera switched off ends the session's job cleanly.
 */
import { mkdir, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { normalizeConfig } from '../src/config/index.js';
import { matchesCamera, parseCameraSelector } from '../src/camera-names.js';
import type { DiscoveredCamera } from '../src/device/ptpip/discovery.js';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { Daemon } from '../src/daemon/daemon.js';
import type { StationEvent } from '../src/daemon/events.js';
import { PtpIpWatcher } from '../src/daemon/ptpip-watcher.js';
import type { CapturedShot } from '../src/daemon/tether-sessions.js';
import { isShuttleError } from '../src/errors.js';
import { nextEvent } from './support/api-daemon.js';
import { runCli } from './support/cli.js';
import { captureLog, tempDirWithOwnLocks } from './support/daemon-helpers.js';
import { FakeHid, QEMU_KEYBOARD } from './support/fake-hid.js';
import { writeJpeg } from './support/fixtures.js';
import { libraryFiles } from './support/tree.js';

describe('camera selectors', () => {
  test('tether-camera-selectors-name-cameras-as-the-daemon-does', () => {
    const eos = { transport: 'usb', vendorId: 0x04a9, productId: 0x32d4, location: '1-4', serial: 'AB12' } as const;
    const net = { transport: 'ptpip', host: '192.168.1.20', port: 15740, serial: '0011223344556677' } as const;
    const yes = (sel: string, cam: typeof eos | typeof net): boolean => matchesCamera(parseCameraSelector(sel), cam);
    expect(['usb:', 'usb:04a9:*', 'usb:04A9:32D4', 'usb:1-4', 'serial:ab12'].map((s) => yes(s, eos))).toEqual([true, true, true, true, true]);
    expect(['usb:054c:*', 'usb:04a9:32d5', 'usb:1-4.1', 'ptpip:', 'serial:ab13'].map((s) => yes(s, eos))).toEqual([false, false, false, false, false]);
    expect(['ptpip:', 'ptpip:192.168.1.20', 'ptpip:192.168.1.20:15740', 'serial:0011223344556677'].map((s) => yes(s, net))).toEqual([true, true, true, true]);
    expect(['ptpip:192.168.1.21', 'ptpip:192.168.1.20:15741', 'usb:'].map((s) => yes(s, net))).toEqual([false, false, false]);
    for (const bad of ['04a9:*', 'usb:04a9', 'usb:*:32d4', 'ptpip:[::1', 'serial:', 'card:/media']) {
      let err: unknown;
      try {
        parseCameraSelector(bad);
      } catch (e) {
        err = e;
      }
      expect(isShuttleError(err, 'USAGE'), bad).toBe(true);
    }
    expect(() => normalizeConfig({ tether: { cameras: ['usb:04a9'] } })).toThrow(/tether\.cameras\[0\]: "usb:04a9" is not a camera selector/);
  });
});

describe('daemon tether mode', () => {
  const work = tempDirWithOwnLocks('shuttle-daemon-tether-');

  test('a-tethered-network-camera-stays-in-session-every-shot-verified-with-a-preview-capture-by-socket-api-and-pedal-and-its-end-is-clean', async () => {
    const card = join(work(), 'card');
    const pool = join(work(), 'pool');
    const dest = join(work(), 'dest');
    await mkdir(join(card, 'DCIM', '100CANON'), { recursive: true });
    // Three different images: each capture is a shot of its own (the same bytes twice would be one file at the destination).
    const pooled = [
      await writeJpeg(join(pool, 'POOL_A.JPG'), { seed: 7 }),
      await writeJpeg(join(pool, 'POOL_B.JPG'), { seed: 8 }),
      await writeJpeg(join(pool, 'POOL_C.JPG'), { seed: 9 }),
    ];
    const sim = await CameraSimulator.start({ dir: card, port: 0, host: '127.0.0.1', timeZone: 'UTC', pool });
    let simRunning = true;
    const camera: DiscoveredCamera = { uri: `ptpip:127.0.0.1:${sim.port}`, host: '127.0.0.1', port: sim.port, name: 'Simulator', via: 'mdns', service: '_ptp._tcp' };
    let announced: DiscoveredCamera[] = [];
    const log = captureLog();
    const watcher = new PtpIpWatcher({
      logger: log.logger,
      intervalMs: 3_600_000,
      discoverer: { scan: async () => announced, onGoodbye: () => () => undefined, close: async () => undefined },
    });
    const hid = new FakeHid();
    hid.plug(QEMU_KEYBOARD);
    const socket = join(work(), 'control.sock');
    const config = normalizeConfig({
      destinations: [{ path: dest }],
      daemon: { control_socket: socket, watchdog: false, usb_cameras: false, network_cameras: false },
      tether: { cameras: [`ptpip:127.0.0.1:${sim.port}`], preview_long_edge: 48, reconnect_timeout: 1 },
      pedals: [{ device: 'keyboard', key: 'b', action: 'capture' }],
      api: { listen: '127.0.0.1:0' },
    });
    const daemon = await Daemon.start({ config, stateDir: join(work(), 'state'), logger: log.logger, env: {}, watchers: [watcher], hid: { backend: hid } });
    try {
      const url = daemon.status().api!.url;
      const events: StationEvent[] = [];
      daemon.events.subscribe((e) => events.push(e));

      // No camera yet: capture is a conflict over HTTP and an error on the socket.
      const early = await fetch(`${url}/api/v1/capture`, { method: 'POST' });
      expect(early.status).toBe(409);
      expect(((await early.json()) as { error: { code: string } }).error.code).toBe('SOURCE_NOT_FOUND');
      const refused = await runCli(['capture', '--socket', socket, '--json']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('no camera is tethered');

      // The camera is announced: it becomes a session, not a one-off ingest.
      const started = nextEvent(daemon.events, (e) => e.type === 'job.started');
      announced = [camera];
      await watcher.scan();
      const job = await started;
      expect(job.type === 'job.started' && job.job).toMatchObject({ kind: 'camera', origin: 'tether:ptpip', key: camera.uri });
      const jobId = job.type === 'job.started' ? job.job.id : -1;

      // A shot taken on the body: verified at the destination, then its preview.
      const shot = await writeJpeg(join(work(), 'incoming', 'IMG_0001.JPG'), { seed: 1 });
      const verified = nextEvent(daemon.events, (e) => e.type === 'file.verified' && e.path.endsWith('IMG_0001.JPG'));
      await rename(join(work(), 'incoming', 'IMG_0001.JPG'), join(card, 'DCIM', '100CANON', 'IMG_0001.JPG'));
      const v = await verified;
      if (v.type !== 'file.verified') throw new Error('not a file event');
      expect(v.job).toBe(jobId);
      expect(await readFile(v.copies[0]!)).toEqual(shot);
      const ready =
        events.find((e) => e.type === 'preview.ready' && e.fileId === v.fileId) ?? (await nextEvent(daemon.events, (e) => e.type === 'preview.ready' && e.fileId === v.fileId));
      expect(ready).toMatchObject({ type: 'preview.ready', job: jobId, url: `/api/v1/files/${v.fileId}/preview` });

      // `shuttle capture` with no tethering session of its own asks the daemon's control socket: exit 0 with the verified shot.
      const byCli = await runCli(['capture', '--json', '--state', join(work(), 'cli-state')], { env: { SHUTTLE_DAEMON_CONTROL_SOCKET: socket, XDG_RUNTIME_DIR: undefined } });
      expect(byCli.code, byCli.stderr).toBe(0);
      const line = JSON.parse(byCli.stdout) as CapturedShot;
      expect(line).toMatchObject({ event: 'verified', job: jobId, camera: camera.uri, preview: expect.stringContaining('/previews/') });
      expect(await readFile(line.files[0]!)).toEqual(pooled[0]);

      // POST /api/v1/capture: the same, with the preview's URL.
      const byApi = await fetch(`${url}/api/v1/capture`, { method: 'POST' });
      expect(byApi.status).toBe(200);
      const shotByApi = (await byApi.json()) as CapturedShot & { previewUrl: string };
      expect(shotByApi).toMatchObject({ event: 'verified', job: jobId, previewUrl: `/api/v1/files/${shotByApi.fileId}/preview` });
      expect(shotByApi.name).not.toBe(line.name);
      expect(await readFile(shotByApi.files[0]!)).toEqual(pooled[1]);
      expect((await fetch(`${url}${shotByApi.previewUrl}`)).status).toBe(200);

      // A pedal press fires it too.
      const byPedal = nextEvent(daemon.events, (e) => e.type === 'file.verified' && e.path !== line.name && e.path !== shotByApi.name && !e.path.endsWith('IMG_0001.JPG'));
      hid.connection(QEMU_KEYBOARD.path).push([0, 0, 0x05, 0, 0, 0, 0, 0]);
      hid.connection(QEMU_KEYBOARD.path).push([0, 0, 0, 0, 0, 0, 0, 0]);
      const pedalShot = await byPedal;
      if (pedalShot.type !== 'file.verified') throw new Error('not a file event');
      expect(await readFile(pedalShot.copies[0]!)).toEqual(pooled[2]);
      expect(log.lines).toContainEqual(expect.objectContaining({ msg: 'capture requested', by: 'pedal' }));

      // The camera is switched off and stays off past the reconnect timeout: the session's job ends, done, with every shot verified.
      const finished = nextEvent(daemon.events, (e) => e.type === 'job.finished' && e.job.id === jobId);
      await sim.stop();
      simRunning = false;
      const end = await finished;
      expect(end.type === 'job.finished' && end.job).toMatchObject({ state: 'done', result: { status: 'complete', copied: 4, failed: 0 } });
      expect(events.filter((e) => e.type === 'error' || e.type === 'file.failed')).toEqual([]);
      expect(log.lines).toContainEqual(expect.objectContaining({ msg: 'the camera went away: tethering session ended' }));
      const copies = await libraryFiles(dest);
      expect(copies).toHaveLength(4);
    } finally {
      await daemon.stop();
      if (simRunning) await sim.stop();
    }
  }, 60_000);
});
