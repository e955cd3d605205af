/**
 * The camera simulator proven against a client nobody here wrote: Debian's gphoto2 (libgphoto2's ptp2
 * driver over PTP/IP). gphoto2 must be installed (apt-get install gphoto2); without it these tests fail.
 *
 * libgphoto2 connects the event channel to port 15740 unless the port path names it, hence
 * `ptpip:HOST:PORT:PORT`. It keeps its GUID in ~/.gphoto/settings, so HOME points at a temp dir.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { CameraSimulator, type SimulatorOptions } from '../src/device/ptpip/simulator.js';

const ZONE = 'Europe/Berlin';
let work: string;
let card: string;
let pool: string;
let home: string;
let sim: CameraSimulator | undefined;

beforeEach(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'shuttle-gphoto2-'));
  card = path.join(work, 'card');
  pool = path.join(work, 'pool');
  home = path.join(work, 'home');
  await mkdir(home);
  const files: [string, number][] = [
    ['DCIM/100TEST/IMG_0001.JPG', 3 * 1024 * 1024 + 777],
    ['DCIM/100TEST/IMG_0002.CR2', 123_457],
    ['DCIM/101TEST/nested/Übersicht.jpg', 5000],
    ['MISC/notes.txt', 42],
    ['top.png', 1],
  ];
  for (const [rel, size] of files) {
    await mkdir(path.dirname(path.join(card, rel)), { recursive: true });
    await writeFile(path.join(card, rel), randomBytes(size));
  }
  await mkdir(pool);
  await writeFile(path.join(pool, 'shot.jpg'), randomBytes(80_000));
  sim = await CameraSimulator.start({ dir: card, pool, port: 0, timeZone: ZONE });
});

afterEach(async () => {
  await sim?.stop();
  sim = undefined;
  await rm(work, { recursive: true, force: true });
});

interface Run {
  stdout: string;
  stderr: string;
}

function gphoto2(args: string[], cwd: string): Promise<Run> {
  const port = sim?.port ?? 0;
  const fullArgs = ['--port', `ptpip:127.0.0.1:${port}:${port}`, '--camera', 'PTP/IP Camera', ...args];
  return new Promise((resolve, reject) => {
    execFile('gphoto2', fullArgs, { cwd, timeout: 60_000, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home, LANG: 'C.UTF-8', TZ: ZONE } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`gphoto2 ${fullArgs.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(path.relative(dir, path.join(e.parentPath, e.name)).split(path.sep).join('/'));
  }
  return out.sort();
}

async function sha256File(file: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
}

/** `gphoto2 -L` output as folder/name → listed mtime (epoch seconds). */
function parseListing(stdout: string): Map<string, number> {
  const out = new Map<string, number>();
  let folder = '';
  for (const line of stdout.split('\n')) {
    const f = /folder '([^']*)'/.exec(line);
    if (f) {
      folder = f[1] as string;
      continue;
    }
    const m = /^#\d+\s+(.+?)\s+r[-w]\s+.*\s(\d+)$/.exec(line.trim());
    if (m) out.set(`${folder}/${m[1]}`, Number(m[2]));
  }
  return out;
}

test('gphoto2 is installed (these tests need Debian gphoto2)', async () => {
  const v = await new Promise<string>((resolve, reject) =>
    execFile('gphoto2', ['--version'], (err, stdout) => (err ? reject(new Error(`gphoto2 is not runnable: ${err.message}; apt-get install gphoto2`)) : resolve(stdout))),
  );
  expect(v).toMatch(/libgphoto2\s+2\.\d+/);
});

test('gphoto2 --list-files shows every served file under its folder, with the file time', async () => {
  const { stdout } = await gphoto2(['--list-files'], work);
  const listed = parseListing(stdout);
  const expected = (await filesUnder(card)).map((p) => `/store_00010001/${p}`);
  expect([...listed.keys()].sort()).toEqual(expected);
  // The simulator writes camera-local time without a zone; gphoto2 reads it as local time (TZ = the same zone).
  const st = await stat(path.join(card, 'DCIM', '100TEST', 'IMG_0001.JPG'));
  expect(listed.get('/store_00010001/DCIM/100TEST/IMG_0001.JPG')).toBe(Math.floor(st.mtimeMs / 1000));
});

test('gphoto2 --get-all-files downloads byte-identical copies of the served tree', async () => {
  const out = path.join(work, 'download');
  await mkdir(out);
  await gphoto2(['--get-all-files'], out);
  const served = await filesUnder(card);
  const got = (await readdir(out)).sort();
  expect(got).toEqual(served.map((p) => path.posix.basename(p)).sort());
  for (const rel of served) {
    expect(await sha256File(path.join(out, path.posix.basename(rel))), rel).toBe(await sha256File(path.join(card, rel)));
  }
  // Files above 1 MiB came in GetPartialObject blocks, as libgphoto2 fetches them from real cameras.
  expect(sim?.operationCount(0x101b)).toBeGreaterThanOrEqual(4);
});

test('gphoto2 --capture-image-and-download gets the pool image and deletes it from the camera', async () => {
  const out = path.join(work, 'capture');
  await mkdir(out);
  const { stdout } = await gphoto2(['--capture-image-and-download'], out);
  expect(stdout).toContain('New file is in location /store_00010001/DCIM/100SHUTL/CAP_0001.JPG on the camera');
  expect(await readdir(out)).toEqual(['CAP_0001.JPG']);
  expect(await sha256File(path.join(out, 'CAP_0001.JPG'))).toBe(await sha256File(path.join(pool, 'shot.jpg')));
  // gphoto2 deletes a captured image unless --keep; the simulator allows that only for images it captured.
  expect(stdout).toContain('Deleting file /store_00010001/DCIM/100SHUTL/CAP_0001.JPG on the camera');
  expect(await readdir(path.join(card, 'DCIM', '100SHUTL'))).toEqual([]);
  expect(await filesUnder(card)).toContain('DCIM/100TEST/IMG_0001.JPG');
});

/**
 * Starts the simulator again as `options` say, has gphoto2 capture and download, and checks that the one
 * file it wrote is the pool's image, fetched from camera memory (`capt0000.jpg`, libgphoto2's name for an
 * image that has no path on the card).
 */
async function captureIntoMemory(options: Pick<SimulatorOptions, 'vendor' | 'captureTarget'>): Promise<CameraSimulator> {
  await sim?.stop();
  const started = await CameraSimulator.start({ dir: card, pool, port: 0, timeZone: ZONE, ...options });
  sim = started;
  const out = path.join(work, 'capture');
  await mkdir(out);
  const { stdout } = await gphoto2(['--capture-image-and-download'], out);
  expect(stdout).toContain('New file is in location /capt0000.jpg on the camera');
  expect(await readdir(out)).toEqual(['capt0000.jpg']);
  expect(await sha256File(path.join(out, 'capt0000.jpg'))).toBe(await sha256File(path.join(pool, 'shot.jpg')));
  return started;
}

/**
 * The Canon EOS and Nikon personalities as libgphoto2 drives those makers' cameras: EOS through
 * RemoteRelease and its GetEvent queue (RequestObjectTransfer, then TransferComplete), Nikon through
 * InitiateCaptureRecInSdram and CheckEvent (ObjectAddedInSDRAM on the virtual handle, then DelImageSDRAM).
 */
for (const [vendor, release] of [
  ['canon', 0x9117],
  ['nikon', 0x90c3],
] as const) {
  test(`gphoto2 --capture-image-and-download fetches a ${vendor} capture held in camera memory and frees it`, async () => {
    const sim = await captureIntoMemory({ vendor, captureTarget: 'host' });
    // Freed in camera memory: EOS by TransferComplete; libgphoto2 frees a Nikon SDRAM image by DeleteObject.
    expect(sim.operationCount(release) + sim.operationCount(0x100b)).toBeGreaterThanOrEqual(1);
    // Never on the card.
    expect(await filesUnder(card)).not.toContain(expect.stringMatching(/100SHUTL/));
  });
}

/**
 * The Sony personality as libgphoto2 drives a Sony body in PC Remote mode over PTP/IP: SDIOConnect and
 * GetExtDeviceInfo at connect, the shutter through SetControlDeviceB, and the shot read at the virtual
 * handle 0xFFFFC001 once GetAllDevicePropData counts it in ObjectInMemory; read to its end, it leaves the
 * camera's memory.
 */
test('gphoto2 --capture-image-and-download fires a sony body and reads the shot from its memory', async () => {
  const sim = await captureIntoMemory({ vendor: 'sony' });
  expect(sim.operationCount(0x9201)).toBe(3);
  expect(sim.operationCount(0x9207)).toBeGreaterThanOrEqual(2);
  expect(sim.objectsInMemory).toBe(0);
});

test('gphoto2 --wait-event-and-download gets a shot taken on a sony body from its memory', async () => {
  await sim?.stop();
  sim = await CameraSimulator.start({ dir: card, pool, port: 0, timeZone: ZONE, vendor: 'sony' });
  const out = path.join(work, 'wait');
  await mkdir(out);
  const waiting = gphoto2(['--wait-event-and-download=6s'], out);
  // Pressed on the body once gphoto2 polls the camera's properties, that is once it is connected.
  await expect.poll(() => sim!.operationCount(0x9209), { timeout: 30_000 }).toBeGreaterThan(0);
  const body = randomBytes(50_000);
  await writeFile(path.join(card, 'DCIM', '100TEST', 'DSC01234.JPG'), body);
  const { stdout } = await waiting;
  expect(stdout).toContain('Saving file as capt0000.jpg');
  expect((await readFile(path.join(out, 'capt0000.jpg'))).equals(body)).toBe(true);
  expect(sim.objectsInMemory).toBe(0);
});
