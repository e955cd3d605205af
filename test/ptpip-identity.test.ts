import type { FileHandle } from 'node:fs/promises';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, test, vi } from 'vitest';
import { openPtpIpCameraSource } from '../src/device/camera-source.js';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { INITIATOR_IDENTITY_FILE } from '../src/device/ptpip/transport.js';
import { writeBytes } from './support/fixtures.js';
import { tempDir } from './support/tree.js';

/**
 * A first connection does not wait for the new initiator identity to reach the disk: it is synced while
 * the camera is connected, and the source is handed out only once it is saved. The sync of the identity
 * file (opened through node:fs/promises) is held here until the test lets it go.
 */
const held = vi.hoisted(() => ({ sync: undefined as undefined | Promise<void>, syncing: 0 }));
vi.mock('node:fs/promises', async (importOriginal) => {
  const fs = await importOriginal<typeof import('node:fs/promises')>();
  const open = async (...args: Parameters<typeof fs.open>): Promise<FileHandle> => {
    const handle = await fs.open(...args);
    if (String(args[0]).includes('ptpip-initiator.json')) {
      const sync = handle.sync.bind(handle);
      handle.sync = async () => {
        held.syncing++;
        await held.sync;
        await sync();
      };
    }
    return handle;
  };
  return { ...fs, open, default: { ...fs, open } };
});

let work: { path: string; cleanup: () => Promise<void> };
beforeEach(async () => {
  work = await tempDir('shuttle-ptpip-identity-');
});
afterEach(async () => {
  held.sync = undefined;
  await work.cleanup();
});

test('a-new-initiator-identity-is-synced-while-the-camera-is-connected-and-the-source-comes-once-it-is-saved', async () => {
  const card = join(work.path, 'card');
  await writeBytes(join(card, 'DCIM', '100TEST', 'IMG_0001.JPG'), 'jpeg');
  const sim = await CameraSimulator.start({ dir: card, port: 0, host: '127.0.0.1' });
  // In front of the camera: says when the initiator connects.
  let connected!: () => void;
  const connection = new Promise<void>((resolve) => (connected = resolve));
  const proxy = net.createServer((client) => {
    connected();
    const camera = net.connect(sim.port, '127.0.0.1');
    client.pipe(camera).pipe(client);
    client.on('error', () => camera.destroy());
    camera.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const port = (proxy.address() as net.AddressInfo).port;
  let release!: () => void;
  held.sync = new Promise<void>((resolve) => (release = resolve));
  const state = join(work.path, 'state');
  try {
    let opened = false;
    const opening = openPtpIpCameraSource({ host: '127.0.0.1', port, stateDir: state }).then((s) => {
      opened = true;
      return s;
    });
    // Without the overlap the connection waits for the sync, which waits for the connection: no run ends.
    await connection;
    expect(opened).toBe(false);
    release();
    const source = await opening;
    try {
      // Saved before the source was handed out: the camera sees the same identity next time.
      const saved = JSON.parse(await readFile(join(state, INITIATOR_IDENTITY_FILE), 'utf8')) as { guid: string };
      expect(saved.guid).toMatch(/^[0-9a-f]{32}$/);
      expect(held.syncing).toBe(1);
      expect((await source.identity()).kind).toBe('camera');
    } finally {
      await source.close();
    }
  } finally {
    release();
    proxy.close();
    await sim.stop();
  }
}, 20_000);
