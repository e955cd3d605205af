/**
 * Network cameras found by discovery, against peers nobody here wrote:
 * - mDNS: Debian's avahi-daemon publishes `_ptp._tcp` for our camera simulator from a static service file
 *   (no D-Bus). It runs in its own mount namespace (unshare) with a temp dir bound over
 *   /etc/avahi/services and /run/avahi-daemon, so the host's avahi setup is untouched.
 * - SSDP: Debian's minissdpd answers M-SEARCH for a service submitted over its unix socket, the way
 *   miniupnpd registers with it.
 * Both need a multicast-capable non-loopback interface (the container's eth0), root (unshare, mount), and
 * `apt-get install avahi-daemon minissdpd`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { openPtpIpCameraSource } from '../src/device/camera-source.js';
import { discoverPtpIpCameras, cameraFromMdns, cameraFromSsdp, type DiscoveredCamera } from '../src/device/ptpip/discovery.js';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { MAX_DESCRIPTION_BYTES, fetchDeviceDescription, parseSsdpMessage, ssdpSearch } from '../src/device/ptpip/ssdp.js';
import { PtpIpWatcher, networkCameraFilter } from '../src/daemon/ptpip-watcher.js';
import { ControlClient } from '../src/daemon/control.js';
import { Daemon } from '../src/daemon/daemon.js';
import type { JobSnapshot } from '../src/daemon/status.js';
import { normalizeConfig } from '../src/config/index.js';
import type { AttachedDevice } from '../src/daemon/devices.js';
import { silentLogger } from '../src/log.js';
import { makeSampleCard } from '../src/sample/index.js';
import { ingestJson, runCli } from './support/cli.js';
import { contentMultiset, listTree, tempDir } from './support/tree.js';

/** The first up, non-internal IPv4 interface: where multicast discovery happens. */
function lanInterface(): { name: string; address: string } {
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    const v4 = addrs?.find((a) => a.family === 'IPv4' && !a.internal);
    if (v4) return { name, address: v4.address };
  }
  throw new Error('no non-loopback IPv4 interface: multicast discovery cannot be tested here');
}

const lan = lanInterface();
let work: { path: string; cleanup: () => Promise<void> };
let sim: CameraSimulator;
let avahi: ChildProcess | undefined;
let avahiLog = '';
const serviceName = `Shuttle Test Camera ${process.pid}`;

function serviceFile(port: number): string {
  return `<?xml version="1.0" standalone='no'?>
<!DOCTYPE service-group SYSTEM "avahi-service.dtd">
<service-group>
  <name>${serviceName}</name>
  <service>
    <type>_ptp._tcp</type>
    <port>${port}</port>
    <txt-record>model=Shuttle Simulator</txt-record>
    <txt-record>guid=0011223344556677</txt-record>
  </service>
</service-group>
`;
}

async function waitForOutput(getLog: () => string, pattern: RegExp, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pattern.test(getLog())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; output:\n${getLog()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  work = await tempDir('shuttle-discovery-');
  await makeSampleCard(path.join(work.path, 'card'), { count: 3, rawSize: 50_000, seed: 9 });
  sim = await CameraSimulator.start({ dir: path.join(work.path, 'card'), port: 0, host: lan.address, timeZone: 'UTC' });

  const services = path.join(work.path, 'avahi-services');
  const run = path.join(work.path, 'avahi-run');
  await mkdir(services);
  await mkdir(run);
  await mkdir('/run/avahi-daemon', { recursive: true });
  await writeFile(path.join(services, 'camera.service'), serviceFile(sim.port));
  const conf = path.join(work.path, 'avahi-daemon.conf');
  await writeFile(
    conf,
    [
      '[server]',
      `host-name=shuttle-test-${process.pid}`,
      'use-ipv4=yes',
      'use-ipv6=no',
      `allow-interfaces=${lan.name}`,
      'enable-dbus=no',
      '[wide-area]',
      'enable-wide-area=no',
      '[publish]',
      'publish-hinfo=no',
      'publish-workstation=no',
      '',
    ].join('\n'),
  );
  const script = `mount --bind "$1" /etc/avahi/services && mount --bind "$2" /run/avahi-daemon && exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f "$3"`;
  avahi = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', services, run, conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  avahi.stdout!.on('data', (d: Buffer) => (avahiLog += d.toString()));
  avahi.stderr!.on('data', (d: Buffer) => (avahiLog += d.toString()));
  await waitForOutput(() => avahiLog, /successfully established/, 15_000);
  // avahi answers only after its announcements have started: wait until it does, so each test sees a settled peer.
  for (let i = 0; i < 10; i++) {
    if ((await discoverPtpIpCameras({ timeoutMs: 1000, ssdp: false })).some((c) => c.name === serviceName)) return;
  }
  throw new Error(`avahi never answered for ${serviceName}:\n${avahiLog}`);
});

afterAll(async () => {
  if (avahi && avahi.exitCode === null) {
    avahi.kill('SIGTERM');
    await new Promise((r) => avahi!.once('close', r));
  }
  await sim?.stop();
  await work?.cleanup();
});

describe('mDNS (avahi-daemon publishing _ptp._tcp)', () => {
  test('discovery finds the camera avahi announces, with its address, port, name and TXT', async () => {
    const found = await discoverPtpIpCameras({ timeoutMs: 1500, ssdp: false });
    const cam = found.find((c) => c.name === serviceName);
    expect(cam, `found: ${JSON.stringify(found)}\navahi:\n${avahiLog}`).toBeDefined();
    expect(cam).toMatchObject({ via: 'mdns', host: lan.address, port: sim.port, uri: `ptpip:${lan.address}:${sim.port}`, model: 'Shuttle Simulator', guid: '0011223344556677' });
  });

  test('a discovered camera opens: session, DeviceInfo identity and a listing', async () => {
    const [cam] = (await discoverPtpIpCameras({ timeoutMs: 1500, ssdp: false })).filter((c) => c.name === serviceName);
    expect(cam).toBeDefined();
    const source = await openPtpIpCameraSource({ host: cam!.host, port: cam!.port, stateDir: path.join(work.path, 'state-open') });
    try {
      const id = await source.identity();
      expect(id.kind).toBe('camera');
      expect(id.details['uri']).toBe(cam!.uri);
      const items: string[] = [];
      for await (const item of source.list()) items.push(item.path);
      expect(items.length).toBe((await listTree(path.join(work.path, 'card'))).size);
    } finally {
      await source.close();
    }
  });

  test('`shuttle devices --json` lists the camera and `shuttle ingest` of its selector verifies every file', async () => {
    const r = await runCli(['devices', '--json', '--network-timeout', '1500']);
    expect(r.code, r.stderr).toBe(0);
    const listed = JSON.parse(r.stdout) as { cameras: unknown[]; network: Array<{ selector: string; name: string; via: string }> };
    const cam = listed.network.find((c) => c.name === serviceName);
    expect(cam, r.stdout).toMatchObject({ via: 'mdns', selector: `ptpip:${lan.address}:${sim.port}` });
    const dest = path.join(work.path, 'lib');
    const ing = await ingestJson([cam!.selector, '--dest', dest, '--state', path.join(work.path, 'state-cli')]);
    expect(ing.code, ing.stderr).toBe(0);
    const source = await listTree(path.join(work.path, 'card'));
    expect(ing.summary).toMatchObject({ files: source.size, copied: source.size, failed: 0 });
    expect(contentMultiset(await listTree(dest, { skipShuttle: true }))).toEqual(contentMultiset(source));
  });

  test('`shuttle ingest ptpip:` with no address ingests every camera that announces itself', async () => {
    const dest = path.join(work.path, 'lib-any');
    const ing = await ingestJson(['ptpip:', '--dest', dest, '--state', path.join(work.path, 'state-any')]);
    expect(ing.code, ing.stderr).toBe(0);
    const source = await listTree(path.join(work.path, 'card'));
    expect(ing.summary).toMatchObject({ files: source.size, copied: source.size, failed: 0 });
    expect(contentMultiset(await listTree(dest, { skipShuttle: true }))).toEqual(contentMultiset(source));
  });

  test('`shuttle devices --no-network` does not look for network cameras', async () => {
    const started = Date.now();
    const r = await runCli(['devices', '--json', '--no-network']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).not.toHaveProperty('network');
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  test('a daemon with network_cameras on ingests the announced camera without a command', async () => {
    const dest = path.join(work.path, 'lib-daemon');
    await mkdir(path.join(work.path, 'daemon-run'), { recursive: true });
    const config = normalizeConfig({
      destinations: [{ path: dest }],
      daemon: { control_socket: path.join(work.path, 'daemon-run', 'control.sock'), watchdog: false, usb_cameras: false, network_cameras: true },
    });
    const daemon = await Daemon.start({ config, stateDir: path.join(work.path, 'state-daemon'), logger: silentLogger, env: {} });
    try {
      expect(daemon.status().watchers).toEqual(['mounts', 'ptpip']);
      const source = await listTree(path.join(work.path, 'card'));
      const deadline = Date.now() + 30_000;
      const done = () => daemon.status().jobs.recent.find((j) => j.key === `ptpip:${lan.address}:${sim.port}` && j.state === 'done');
      while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(done(), JSON.stringify(daemon.status().jobs)).toBeDefined();
      expect(contentMultiset(await listTree(dest, { skipShuttle: true }))).toEqual(contentMultiset(source));
      // A discovered camera may also be asked for by its address; an address nobody announced may not.
      const client = await ControlClient.connect(daemon.socketPath);
      try {
        const { job } = (await client.request('ingest', { source: `ptpip:${lan.address}` })) as { job: JobSnapshot };
        expect(job.key).toBe(`ptpip:${lan.address}:${sim.port}`);
        expect(((await client.request('wait', { job: job.id })) as { job: JobSnapshot }).job).toMatchObject({ state: 'done', result: { copied: 0 } });
        await expect(client.request('ingest', { source: 'ptpip:192.0.2.99' })).rejects.toMatchObject({ code: 'USAGE', context: { rule: 'known-network-camera' } });
      } finally {
        client.close();
      }
    } finally {
      await daemon.stop();
    }
  });

  test('the daemon watcher attaches the announced camera, opens it like ptpip: ingest, and detaches it when avahi says goodbye', async () => {
    const attached: AttachedDevice[] = [];
    const detached: Array<{ id: string; reason: string | undefined }> = [];
    const watcher = new PtpIpWatcher({ logger: silentLogger, intervalMs: 300, scanWindowMs: 700, missedScans: 100, discovery: { ssdp: false } });
    await watcher.start({ attach: (d) => attached.push(d), detach: (id, reason) => detached.push({ id, reason }) });
    try {
      // The first scan may fall in avahi's one-second answer suppression; later scans ask again.
      const until = Date.now() + 5000;
      while (!attached.some((d) => d.id === `ptpip:${lan.address}:${sim.port}`) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      const dev = attached.find((d) => d.id === `ptpip:${lan.address}:${sim.port}`);
      expect(dev, JSON.stringify(attached)).toMatchObject({ kind: 'camera', uri: `ptpip:${lan.address}:${sim.port}` });
      const source = await dev!.open({ stateDir: path.join(work.path, 'state-watch'), logger: silentLogger, signal: new AbortController().signal });
      expect((await source.identity()).kind).toBe('camera');
      await source.close();
      // Rescans do not re-report a camera that is still there.
      await new Promise((r) => setTimeout(r, 1200));
      expect(attached.filter((d) => d.id === dev!.id)).toHaveLength(1);
      // avahi sends goodbye (TTL 0) records when it stops: the camera is gone at once, not after missed scans.
      avahi!.kill('SIGTERM');
      await new Promise((r) => avahi!.once('close', r));
      const deadline = Date.now() + 5000;
      while (!detached.some((d) => d.id === dev!.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(detached.find((d) => d.id === dev!.id)?.reason).toMatch(/goodbye/);
    } finally {
      await watcher.close();
    }
  });
});

// ------------------------------------------------------------------------------------------------------
// SSDP

/** minissdpd's length prefix: 7 bits per byte, most significant first, high bit = more follows. */
function codeLength(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const digits: number[] = [];
  let n = b.length;
  do {
    digits.unshift(n & 0x7f);
    n >>>= 7;
  } while (n > 0);
  for (let i = 0; i < digits.length - 1; i++) digits[i]! |= 0x80;
  return Buffer.concat([Buffer.from(digits), b]);
}

/** Registers a service with minissdpd (request type 4: ST, USN, server, location). */
async function submitToMinissdpd(sock: string, st: string, usn: string, server: string, location: string): Promise<void> {
  const msg = Buffer.concat([Buffer.from([4]), codeLength(st), codeLength(usn), codeLength(server), codeLength(location)]);
  await new Promise<void>((resolve, reject) => {
    const c = net.connect(sock, () => c.end(msg));
    c.on('error', reject);
    c.on('close', () => resolve());
  });
}

describe('SSDP (minissdpd answering M-SEARCH)', () => {
  let minissdpd: ChildProcess | undefined;
  let log = '';
  const sock = (): string => path.join(work.path, 'minissdpd.sock');

  beforeAll(async () => {
    minissdpd = spawn('minissdpd', ['-d', '-i', lan.name, '-s', sock(), '-p', path.join(work.path, 'minissdpd.pid')], { stdio: ['ignore', 'pipe', 'pipe'] });
    minissdpd.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    minissdpd.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        await submitToMinissdpd(
          sock(),
          'urn:microsoft-com:service:MtpNullService:1',
          'uuid:00000000-0001-0010-8000-0123456789ab::urn:microsoft-com:service:MtpNullService:1',
          'FedoraCore/2 UPnP/1.0 MINT-X/1.8.1',
          // Nothing serves the description: discovery must fall back to the SSDP headers.
          `http://${lan.address}:9/DeviceDescription.xml`,
        );
        break;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`minissdpd did not come up: ${String(err)}\n${log}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  });

  afterAll(async () => {
    if (minissdpd && minissdpd.exitCode === null) {
      minissdpd.kill('SIGTERM');
      await new Promise((r) => minissdpd!.once('close', r));
    }
    await rm(sock(), { force: true });
  });

  test('an M-SEARCH for the MTP/IP service finds the camera minissdpd answers for, on PTP/IP port 15740', async () => {
    const found = await discoverPtpIpCameras({ timeoutMs: 1500, mdns: false });
    const cam = found.find((c) => c.guid === '00000000-0001-0010-8000-0123456789ab');
    expect(cam, `found: ${JSON.stringify(found)}\nminissdpd:\n${log}`).toMatchObject({
      via: 'ssdp',
      host: lan.address,
      port: 15740,
      uri: `ptpip:${lan.address}:15740`,
      name: 'FedoraCore/2 UPnP/1.0 MINT-X/1.8.1',
      service: 'urn:microsoft-com:service:MtpNullService:1',
    });
  });

  test('a LOCATION on another host than the answering one is neither connected to nor fetched from', async () => {
    // A description server on loopback: the answer comes from the LAN address, its LOCATION points here.
    const hits: string[] = [];
    const elsewhere = await httpServer('127.0.0.1', (req, res) => {
      hits.push(req.url ?? '');
      res.end('<root><device><friendlyName>Elsewhere</friendlyName></device></root>');
    });
    try {
      const usn = '00000000-0002-0010-8000-0123456789ab';
      const { port } = elsewhere.address() as AddressInfo;
      await submitToMinissdpd(
        sock(),
        'urn:microsoft-com:service:MtpNullService:1',
        `uuid:${usn}::urn:microsoft-com:service:MtpNullService:1`,
        'Pointer/1.0',
        `http://127.0.0.1:${port}/desc.xml`,
      );
      // minissdpd does answer with that LOCATION, from its own address...
      const answers = await ssdpSearch({ windowMs: 1000 });
      expect(
        answers.find((m) => m.headers['usn']?.includes(usn)),
        `answers: ${JSON.stringify(answers)}\nminissdpd:\n${log}`,
      ).toMatchObject({ address: lan.address, headers: { location: `http://127.0.0.1:${port}/desc.xml` } });
      // ...and discovery puts every camera at that address (one camera, as both services answer from it) and asks loopback nothing.
      const found = await discoverPtpIpCameras({ timeoutMs: 1500, mdns: false });
      expect(found.length, JSON.stringify(found)).toBeGreaterThan(0);
      expect(found.map((c) => c.uri)).toEqual([`ptpip:${lan.address}:15740`]);
      expect(hits).toEqual([]);
    } finally {
      await new Promise((r) => elsewhere.close(r));
    }
  });
});

/** An HTTP server on `host`, port 0. */
async function httpServer(host: string, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Server> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  return server;
}

describe('SSDP messages', () => {
  test('an answer is parsed with lower-cased headers; the camera is at the sender, not where LOCATION points; a Canon target names the maker', () => {
    const text =
      'HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nLOCATION: http://10.0.0.7:49152/upnp/CameraDevDesc.xml\r\nST: urn:schemas-canon-com:service:ICPO-SmartPhoneEOSSystemService:1\r\nUSN: uuid:AAAA-BBBB::urn:schemas-canon-com:service:ICPO-SmartPhoneEOSSystemService:1\r\n\r\n';
    const m = parseSsdpMessage(Buffer.from(text), '10.0.0.9');
    expect(m?.headers['location']).toBe('http://10.0.0.7:49152/upnp/CameraDevDesc.xml');
    expect(cameraFromSsdp(m!)).toMatchObject({ host: '10.0.0.9', uri: 'ptpip:10.0.0.9:15740', port: 15740, guid: 'AAAA-BBBB', manufacturer: 'Canon', via: 'ssdp' });
  });

  test('an mDNS camera is at the address that answered, whatever address its records name', () => {
    const service = {
      name: 'Cam',
      fqdn: 'Cam._ptp._tcp.local',
      host: 'elsewhere.local',
      port: 15740,
      addresses: ['10.9.9.9'],
      referer: { address: '10.0.0.7' },
      txt: { guid: 'AB12' },
    };
    expect(cameraFromMdns(service)).toMatchObject({ host: '10.0.0.7', uri: 'ptpip:10.0.0.7:15740', guid: 'AB12' });
    expect(cameraFromMdns({ ...service, referer: undefined } as never)).toBeUndefined();
  });

  test('an oversized UPnP description is cut off at the limit and its connection closed', async () => {
    let sent = 0;
    let closed!: () => void;
    const connectionClosed = new Promise<void>((r) => (closed = r));
    // Without a Content-Length: only reading tells how long it is. 64 MiB, written as fast as it is read.
    const server = await httpServer('127.0.0.1', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/xml' });
      const chunk = Buffer.alloc(64 * 1024, 'x');
      const pump = (): void => {
        while (sent < 64 * 1024 * 1024) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      res.socket!.once('close', () => closed());
      res.write('<root><device><friendlyName>');
      pump();
    });
    try {
      const { port } = server.address() as AddressInfo;
      const err = await fetchDeviceDescription(`http://127.0.0.1:${port}/desc.xml`, '127.0.0.1').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(String(err)).toContain(`longer than ${MAX_DESCRIPTION_BYTES} bytes`);
      await connectionClosed;
      // What the kernel's socket buffers took besides: far from the whole body.
      expect(sent).toBeLessThan(8 * 1024 * 1024);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test('a description is fetched only from the answering address, and a declared oversized one not at all', async () => {
    const hits: string[] = [];
    const server = await httpServer('127.0.0.1', (req, res) => {
      hits.push(req.url ?? '');
      if (req.url === '/big.xml') res.writeHead(200, { 'content-length': String(MAX_DESCRIPTION_BYTES + 1) });
      res.end(
        '<root><device><friendlyName>EOS R6</friendlyName><modelName>Canon EOS R6</modelName></device></root>'.padEnd(req.url === '/big.xml' ? MAX_DESCRIPTION_BYTES + 1 : 0),
      );
    });
    try {
      const { port } = server.address() as AddressInfo;
      await expect(fetchDeviceDescription(`http://127.0.0.1:${port}/desc.xml`, '10.0.0.9')).rejects.toThrow(/not at the answering address 10\.0\.0\.9/);
      expect(hits).toEqual([]);
      await expect(fetchDeviceDescription(`http://127.0.0.1:${port}/big.xml`, '127.0.0.1')).rejects.toThrow(
        `${MAX_DESCRIPTION_BYTES + 1} bytes, more than ${MAX_DESCRIPTION_BYTES}`,
      );
      expect(await fetchDeviceDescription(`http://127.0.0.1:${port}/desc.xml`, '127.0.0.1')).toEqual({ name: 'EOS R6', model: 'Canon EOS R6' });
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  test('garbage, oversized datagrams and hostile header names are ignored, never thrown', () => {
    expect(parseSsdpMessage(Buffer.from('GET / HTTP/1.1\r\n\r\n'), '1.2.3.4')).toBeUndefined();
    expect(parseSsdpMessage(Buffer.alloc(9000, 65), '1.2.3.4')).toBeUndefined();
    const m = parseSsdpMessage(Buffer.from('HTTP/1.1 200 OK\r\n__proto__: x\r\nST: a\r\nLOCATION: ::not a url\r\n\r\n'), '1.2.3.4');
    expect(m!.headers['__proto__']).toBe('x');
    expect(({} as Record<string, unknown>)['x']).toBeUndefined();
    expect(cameraFromSsdp(m!)).toMatchObject({ host: '1.2.3.4' });
  });
});

describe('network_cameras allowlist', () => {
  const cam = (host: string, guid: string | undefined, port = 15740): DiscoveredCamera => ({
    uri: `ptpip:${host}:${port}`,
    host,
    port,
    name: `camera at ${host}`,
    via: 'mdns',
    service: '_ptp._tcp',
    ...(guid ? { guid } : {}),
  });

  test('the watcher attaches only cameras whose serial or address the list names', async () => {
    const announced = [cam('10.0.0.5', '0011223344556677'), cam('10.0.0.6', 'ffff0000'), cam('10.0.0.7', undefined, 15741), cam('10.0.0.8', 'dead')];
    const attached: string[] = [];
    const watcher = new PtpIpWatcher({
      logger: silentLogger,
      intervalMs: 3_600_000,
      accept: networkCameraFilter(['0011223344556677', '10.0.0.6', '10.0.0.7:15741', '10.0.0.8:15740x']),
      discoverer: { scan: async () => announced, onGoodbye: () => () => undefined, close: async () => undefined },
    });
    await watcher.start({ attach: (d) => attached.push(d.id), detach: () => undefined });
    try {
      expect(attached).toEqual(['ptpip:10.0.0.5:15740', 'ptpip:10.0.0.6:15740', 'ptpip:10.0.0.7:15741']);
      expect(watcher.cameras.map((c) => c.host)).toEqual(['10.0.0.5', '10.0.0.6', '10.0.0.7']);
    } finally {
      await watcher.close();
    }
    expect(networkCameraFilter(true)(cam('10.0.0.8', 'dead'))).toBe(true);
    expect(networkCameraFilter(false)(cam('10.0.0.5', '0011223344556677'))).toBe(false);
  });
});
