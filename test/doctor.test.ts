import { chmod, chown, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { normalizeConfig, type ConfigInput } from '../src/config/index.js';
import { parseUsbDescriptors, permits, runDoctorChecks, type CheckResult, type DoctorOptions } from '../src/cli/doctor-checks.js';
import { formatDoctorReport } from '../src/cli/doctor.js';
import { runCli } from './support/cli.js';
import { startSwift, type SwiftServer } from './support/swift.js';

/**
 * `shuttle doctor` against a system laid out in a temp dir (the checks read /etc, /dev/bus/usb,
 * /run/udev, /proc below a root): real files with real owners and modes, USB device nodes as the
 * descriptor bytes usbfs returns, udev database entries as udev writes them. Destinations and the state
 * dir are real folders; S3 is a real Swift s3api server.
 */

const REPO = fileURLToPath(new URL('..', import.meta.url));
/** The service user and group in the fake system; numbers no real account here uses. */
const SHUTTLE_UID = 64_123;
const SHUTTLE_GID = 64_124;

let work: string;
let root: string;

/** The bytes usbfs returns for a device: device descriptor, one configuration, its interfaces. */
function usbDescriptors(vendorId: number, productId: number, interfaces: Array<[number, number, number]>): Buffer {
  const device = Buffer.from([18, 1, 0x00, 0x02, 0, 0, 0, 64, vendorId & 0xff, vendorId >> 8, productId & 0xff, productId >> 8, 0, 1, 1, 2, 3, 1]);
  const parts = interfaces.map(([c, s, p], i) => Buffer.concat([Buffer.from([9, 4, i, 0, 1, c, s, p, 0]), Buffer.from([7, 5, 0x81, 2, 0, 2, 0])]));
  const body = Buffer.concat(parts);
  const total = 9 + body.length;
  const config = Buffer.from([9, 2, total & 0xff, total >> 8, interfaces.length, 1, 0, 0x80, 50]);
  return Buffer.concat([device, config, body]);
}

async function put(path: string, content: string | Buffer, mode = 0o644): Promise<string> {
  const full = join(root, path);
  await mkdir(join(full, '..'), { recursive: true });
  await writeFile(full, content);
  await chmod(full, mode);
  return full;
}

/** A fake system with the user, this version's units and rules installed (as the installer writes them for PREFIX = the repo). */
async function installedSystem(): Promise<void> {
  await put('etc/passwd', `root:x:0:0:root:/root:/bin/bash\nshuttle:x:${SHUTTLE_UID}:${SHUTTLE_GID}:Shuttle:/var/lib/shuttle:/usr/sbin/nologin\n`);
  await put('etc/group', `root:x:0:\nshuttle:x:${SHUTTLE_GID}:\nphotos:x:64200:shuttle\n`);
  for (const unit of ['shuttle.service', 'shuttle-card@.service', 'shuttle-eject@.service']) {
    const text = (await readFile(join(REPO, 'systemd', unit), 'utf8')).replaceAll('/opt/shuttle/', `${REPO.replace(/\/$/, '')}/`);
    await put(`etc/systemd/system/${unit}`, text);
  }
  for (const rules of ['70-shuttle-cameras.rules', '70-shuttle-cards.rules']) {
    await mkdir(join(root, 'etc/udev/rules.d'), { recursive: true });
    await copyFile(join(REPO, 'udev', rules), join(root, 'etc/udev/rules.d', rules));
  }
  await put('etc/polkit-1/rules.d/50-shuttle.rules', await readFile(join(REPO, 'polkit', '50-shuttle.rules')));
  await put('usr/lib/polkit-1/polkitd', '', 0o755);
  await put('etc/shuttle/aws-credentials', '# none\n', 0o600);
}

function options(config: ConfigInput = {}, extra: Partial<DoctorOptions> = {}): DoctorOptions {
  return {
    config: normalizeConfig({ daemon: { control_socket: join(work, 'no-daemon.sock') }, ...config }),
    stateDir: join(work, 'state'),
    root,
    programRoot: REPO,
    version: '0.1.0',
    env: {},
    timeoutMs: 5_000,
    ...extra,
  };
}

function byId(results: CheckResult[], id: string): CheckResult {
  const r = results.find((x) => x.id === id);
  if (!r) throw new Error(`no check ${id} in ${results.map((x) => x.id).join(', ')}`);
  return r;
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the doctor tests give files to another owner and group: run as root');
  work = await mkdtemp(join(tmpdir(), 'shuttle-doctor-'));
  await chmod(work, 0o755);
});
afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});
beforeEach(async () => {
  root = await mkdtemp(join(work, 'root-'));
  await mkdir(join(work, 'state'), { recursive: true });
  await chown(join(work, 'state'), SHUTTLE_UID, SHUTTLE_GID);
});

describe('install checks', () => {
  test('a-bare-system-fails-user-units-and-rules-with-the-installer-as-the-fix', async () => {
    const r = await runDoctorChecks(options());
    for (const id of ['service-user', 'units', 'rules']) {
      expect(byId(r, id).status, id).toBe('fail');
      expect(byId(r, id).fix).toContain('install.sh');
    }
  });

  test('an-installed-system-passes-user-units-and-rules', async () => {
    await installedSystem();
    const r = await runDoctorChecks(options());
    expect(['service-user', 'units', 'rules'].map((id) => byId(r, id).status)).toEqual(['ok', 'ok', 'ok']);
  });

  test('units-from-another-version-are-a-warning-to-reinstall', async () => {
    await installedSystem();
    await put('etc/systemd/system/shuttle.service', '[Service]\nExecStart=/old/shuttle run\n');
    const units = byId(await runDoctorChecks(options()), 'units');
    expect(units.status).toBe('warn');
    expect(units.detail).toContain('/etc/systemd/system/shuttle.service');
  });

  test('the-eject-unit-and-polkit-rule-missing-are-a-warning-to-install-and-installed-with-polkitd-pass', async () => {
    const bare = byId(await runDoctorChecks(options()), 'eject');
    expect(bare.status).toBe('warn');
    expect(bare.detail).toContain('missing: shuttle-eject@.service, 50-shuttle.rules');
    expect(bare.detail).toContain('/etc/polkit-1/rules.d');
    expect(bare.fix).toContain('install.sh');
    await installedSystem();
    expect(byId(await runDoctorChecks(options()), 'eject')).toMatchObject({ status: 'ok', detail: expect.stringContaining('/etc/polkit-1/rules.d/50-shuttle.rules') });
  });

  test('an-eject-rule-of-another-version-or-no-polkitd-to-read-it-is-a-warning', async () => {
    await installedSystem();
    await put('etc/polkit-1/rules.d/50-shuttle.rules', '// an older rule\n');
    expect(byId(await runDoctorChecks(options()), 'eject')).toMatchObject({
      status: 'warn',
      detail: expect.stringContaining('/etc/polkit-1/rules.d/50-shuttle.rules'),
      fix: expect.stringContaining('reinstall this version'),
    });
    await put('etc/polkit-1/rules.d/50-shuttle.rules', await readFile(join(REPO, 'polkit', '50-shuttle.rules')));
    await rm(join(root, 'usr/lib/polkit-1/polkitd'));
    expect(byId(await runDoctorChecks(options()), 'eject')).toMatchObject({
      status: 'warn',
      detail: expect.stringContaining('polkitd is not'),
      fix: 'sudo apt-get install polkitd',
    });
  });

  test('no-udevd-running-fails-because-nothing-starts-on-plug-in-and-a-running-one-passes', async () => {
    await put('proc/300/cmdline', '/usr/bin/bash\0-l\0');
    expect(byId(await runDoctorChecks(options()), 'udevd')).toMatchObject({
      status: 'fail',
      detail: expect.stringContaining('plugged in'),
      fix: expect.stringContaining('systemctl enable --now systemd-udevd'),
    });
    await put('proc/412/cmdline', '/usr/lib/systemd/systemd-udevd\0');
    expect(byId(await runDoctorChecks(options()), 'udevd')).toMatchObject({ status: 'ok', detail: expect.stringContaining('pid 412') });
  });

  test('a-cpu-without-sse4-2-fails-when-previews-are-configured-and-warns-otherwise', async () => {
    // QEMU's default CPU (qemu64): no SSE4.2.
    const qemu64 =
      'processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: QEMU Virtual CPU version 2.5+\nflags\t\t: fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 syscall nx lm nopl cpuid pni cx16 hypervisor lahf_lm svm\n\n';
    await put('proc/cpuinfo', qemu64);
    const withApi = byId(await runDoctorChecks(options({ api: { listen: '127.0.0.1:8650' } })), 'cpu');
    expect(withApi.status).toBe('fail');
    expect(withApi.detail).toContain('[api] listen set');
    expect(withApi.detail).toContain('makes no previews');
    expect(withApi.fix).toContain('-cpu host');
    const previews = byId(await runDoctorChecks(options({ previews: { make: 'always' } })), 'cpu');
    expect(previews).toMatchObject({ status: 'fail', detail: expect.stringContaining('[previews] make = "always"') });
    const neither = byId(await runDoctorChecks(options()), 'cpu');
    expect(neither.status).toBe('warn');
    expect(neither.detail).toContain('lacks SSE4.2');
    await put('proc/cpuinfo', qemu64.replace('cx16', 'cx16 sse4_1 sse4_2 popcnt'));
    expect(byId(await runDoctorChecks(options({ api: { listen: '127.0.0.1:8650' } })), 'cpu').status).toBe('ok');
    await put('proc/cpuinfo', 'processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n');
    expect(byId(await runDoctorChecks(options({ api: { listen: '127.0.0.1:8650' } })), 'cpu').status).toBe('ok');
  });

  test('a-missing-credentials-file-fails-because-the-service-would-not-start', async () => {
    await installedSystem();
    await rm(join(root, 'etc/shuttle/aws-credentials'));
    const r = byId(await runDoctorChecks(options()), 'credentials-file');
    expect(r.status).toBe('fail');
    expect(r.detail).toContain('LoadCredential');
  });

  test('no-daemon-is-a-warning-saying-how-to-start-it', async () => {
    const r = byId(await runDoctorChecks(options()), 'daemon');
    expect(r.status).toBe('warn');
    expect(r.fix).toContain('systemctl enable --now shuttle');
  });
});

describe('cameras', () => {
  const camera = usbDescriptors(0x04a9, 0x32f4, [[6, 1, 1]]);
  const hub = usbDescriptors(0x1d6b, 0x0002, [[9, 0, 0]]);

  test('usb-descriptors-parse-to-ids-and-interface-classes', () => {
    expect(parseUsbDescriptors(camera)).toEqual({ vendorId: 0x04a9, productId: 0x32f4, interfaces: [[6, 1, 1]] });
    expect(parseUsbDescriptors(Buffer.from([1, 2, 3]))).toBeUndefined();
  });

  test('no-camera-attached-is-fine-and-hubs-are-not-cameras', async () => {
    await installedSystem();
    await put('dev/bus/usb/001/001', hub, 0o664);
    expect(byId(await runDoctorChecks(options()), 'cameras').status).toBe('ok');
  });

  test('a-camera-the-service-user-cannot-open-fails-with-the-udev-fix', async () => {
    await installedSystem();
    await put('dev/bus/usb/001/004', camera, 0o664);
    const r = byId(await runDoctorChecks(options()), 'camera:001/004');
    expect(r.status).toBe('fail');
    expect(r.detail).toContain('04a9:32f4');
    expect(r.fix).toContain('udevadm trigger');
  });

  test('a-camera-given-to-the-shuttle-group-by-the-rules-passes', async () => {
    await installedSystem();
    const node = await put('dev/bus/usb/001/004', camera, 0o660);
    await chown(node, 0, SHUTTLE_GID);
    // udev's database entry for 189:3 (bus 1, device 4), as our rules leave it.
    await put('run/udev/data/c189:3', 'I:123\nE:ID_VENDOR=Canon\nE:ID_MODEL=Canon_EOS_R5\nE:SHUTTLE_CAMERA=1\nG:uaccess\n');
    const r = byId(await runDoctorChecks(options()), 'camera:001/004');
    expect(r).toMatchObject({ status: 'ok' });
    expect(r.detail).toContain('Canon EOS R5');
  });

  test('a-gvfs-gphoto2-monitor-running-is-a-warning-with-the-way-to-stop-it', async () => {
    await put('proc/4242/cmdline', '/usr/libexec/gvfs-gphoto2-volume-monitor\0');
    await put('proc/4243/cmdline', '/usr/bin/bash\0-l\0');
    const r = byId(await runDoctorChecks(options()), 'desktop');
    expect(r.status).toBe('warn');
    expect(r.detail).toContain('pid 4242');
    expect(r.fix).toContain('systemctl --user mask --now gvfs-gphoto2-volume-monitor.service');
  });

  test('a-kde-mtp-worker-running-is-a-warning', async () => {
    await put('proc/5000/cmdline', '/usr/lib/x86_64-linux-gnu/libexec/kf5/kioslave5\0/usr/lib/x86_64-linux-gnu/qt5/plugins/kf5/kio/kio_mtp.so\0mtp\0');
    const r = byId(await runDoctorChecks(options()), 'desktop');
    expect(r.status).toBe('warn');
    expect(r.detail).toContain('KDE');
  });

  test('permission-bits-decide-for-owner-group-and-others', () => {
    const who = { name: 'shuttle', uid: 10, gids: [20, 30] };
    expect(permits({ uid: 0, gid: 30, mode: 0o660 }, who, 'rw')).toBe(true);
    expect(permits({ uid: 0, gid: 0, mode: 0o664 }, who, 'rw')).toBe(false);
    expect(permits({ uid: 10, gid: 0, mode: 0o600 }, who, 'rw')).toBe(true);
    // The owner class applies to the owner even when the group would allow more.
    expect(permits({ uid: 10, gid: 20, mode: 0o070 }, who, 'r')).toBe(false);
    expect(permits({ uid: 1, gid: 1, mode: 0o666 }, who, 'rw')).toBe(true);
    expect(permits({ uid: 1, gid: 1, mode: 0o600 }, { name: 'root', uid: 0, gids: [] }, 'rwx')).toBe(true);
  });
});

describe('storage', () => {
  async function destination(name: string, owner: number): Promise<string> {
    const d = join(work, name);
    await mkdir(d, { recursive: true });
    await chown(d, owner, owner === 0 ? 0 : SHUTTLE_GID);
    await chmod(d, 0o750);
    return d;
  }

  test('no-destinations-is-a-warning', async () => {
    expect(byId(await runDoctorChecks(options()), 'destinations').status).toBe('warn');
  });

  test('destinations-missing-unwritable-outside-the-sandbox-or-short-of-space-fail-each-with-its-fix', async () => {
    await installedSystem();
    const good = await destination('lib-good', SHUTTLE_UID);
    const rootOwned = await destination('lib-root', 0);
    const full = await destination('lib-full', SHUTTLE_UID);
    // The unit lets the sandbox write /srv, /mnt and /media only: a drop-in adds the temp dir.
    await put('etc/systemd/system/shuttle.service.d/destinations.conf', `[Service]\nReadWritePaths=${work}\n`);
    const config = {
      destinations: [
        { path: good, name: 'good' },
        { path: rootOwned, name: 'root-owned' },
        { path: join(work, 'not-mounted'), name: 'missing' },
        { path: full, name: 'full', min_free_bytes: Number.MAX_SAFE_INTEGER },
      ],
    };
    const r = await runDoctorChecks(options(config));
    expect(byId(r, 'destination:good').status).toBe('ok');
    expect(byId(r, 'destination:root-owned')).toMatchObject({ status: 'fail', fix: expect.stringContaining(`chown shuttle:shuttle ${rootOwned}`) });
    expect(byId(r, 'destination:missing')).toMatchObject({ status: 'fail', fix: expect.stringContaining('mount') });
    expect(byId(r, 'destination:full')).toMatchObject({ status: 'fail', detail: expect.stringContaining('min_free_bytes') });
  });

  test('a-destination-outside-the-sandbox-fails-with-the-readwritepaths-fix', async () => {
    await installedSystem();
    const good = await destination('lib-sandbox', SHUTTLE_UID);
    const r = byId(await runDoctorChecks(options({ destinations: [{ path: good, name: 'x' }] })), 'destination:x');
    expect(r.status).toBe('fail');
    expect(r.fix).toContain(`ReadWritePaths=${good}`);
  });

  test('a-state-dir-the-service-user-cannot-write-fails', async () => {
    await installedSystem();
    await put('etc/systemd/system/shuttle.service.d/state.conf', `[Service]\nReadWritePaths=${work}\n`);
    expect(byId(await runDoctorChecks(options()), 'state-dir').status).toBe('ok');
    await chown(join(work, 'state'), 0, 0);
    await chmod(join(work, 'state'), 0o755);
    const r = byId(await runDoctorChecks(options()), 'state-dir');
    expect(r.status).toBe('fail');
    expect(r.fix).toContain('chown -R shuttle:shuttle');
  });
});

describe('clock', () => {
  test('a-clock-before-this-program-was-built-fails', async () => {
    const r = byId(await runDoctorChecks(options({}, { now: () => new Date('2001-01-01T00:00:00Z') })), 'clock');
    expect(r.status).toBe('fail');
    expect(r.fix).toContain('timedatectl');
  });

  test('a-clock-synchronised-by-timesyncd-passes', async () => {
    await put('run/systemd/timesync/synchronized', '');
    expect(byId(await runDoctorChecks(options()), 'clock')).toMatchObject({ status: 'ok', detail: expect.stringContaining('synchronised') });
  });
});

describe('S3', () => {
  let swift: SwiftServer;
  beforeAll(async () => {
    swift = await startSwift();
    await swift.createBucket('doctor-bucket');
  }, 120_000);
  afterAll(async () => {
    await swift?.stop();
  });

  async function credentials(key: string, secret: string): Promise<string> {
    const file = join(work, `creds-${key}-${secret}`);
    await writeFile(file, `[default]\naws_access_key_id = ${key}\naws_secret_access_key = ${secret}\n`, { mode: 0o600 });
    return file;
  }
  const upload = (file: string, target = 's3://doctor-bucket/x', endpoint = swift.endpoint): ConfigInput => ({
    upload: { target, endpoint, region: swift.region, provider: 'swift', credentials_file: file },
  });

  test('reachable-bucket-with-good-credentials-passes', async () => {
    const r = byId(await runDoctorChecks(options(upload(await credentials(swift.accessKeyId, swift.secretAccessKey)))), 's3');
    expect(r, JSON.stringify(r)).toMatchObject({ status: 'ok' });
  });

  test('rejected-credentials-fail-as-access-denied', async () => {
    const r = byId(await runDoctorChecks(options(upload(await credentials(swift.accessKeyId, 'wrong-secret')))), 's3');
    expect(r.status).toBe('fail');
    expect(r.detail).toContain('access denied');
  });

  test('a-missing-bucket-fails-naming-it', async () => {
    const r = byId(await runDoctorChecks(options(upload(await credentials(swift.accessKeyId, swift.secretAccessKey), 's3://no-such-bucket/x'))), 's3');
    expect(r).toMatchObject({ status: 'fail', detail: expect.stringContaining('no-such-bucket') });
  });

  test('an-unreachable-endpoint-fails-as-unreachable', async () => {
    const r = byId(await runDoctorChecks(options(upload(await credentials('a', 'b'), 's3://doctor-bucket/x', 'http://127.0.0.1:9'))), 's3');
    expect(r).toMatchObject({ status: 'fail', detail: expect.stringContaining('unreachable') });
  });

  test('a-credentials-file-without-keys-fails-before-any-request', async () => {
    const file = join(work, 'empty-creds');
    await writeFile(file, '# nothing yet\n');
    const r = byId(await runDoctorChecks(options(upload(file))), 's3');
    expect(r).toMatchObject({ status: 'fail', detail: expect.stringContaining('credentials') });
  });
});

describe('command', () => {
  test('report-lists-every-check-with-its-fix-and-counts', () => {
    const text = formatDoctorReport([
      { id: 'units', status: 'ok', detail: 'installed' },
      { id: 'camera:001/004', status: 'fail', detail: 'cannot open', fix: 'line one\nline two' },
    ]);
    expect(text).toBe(
      'ok    units           installed\n' +
        'FAIL  camera:001/004  cannot open\n' +
        '                      fix: line one\n' +
        '                           line two\n' +
        '\n1 ok, 0 warnings, 1 failure\n',
    );
  });

  test('shuttle-doctor-json-prints-one-object-and-exits-1-when-a-check-fails', async () => {
    const config = join(work, 'config.toml');
    await writeFile(config, `[[destinations]]\npath = "${join(work, 'nowhere')}"\n[daemon]\ncontrol_socket = "${join(work, 'none.sock')}"\n`);
    const r = await runCli(['--config', config, 'doctor', '--json']);
    const out = JSON.parse(r.stdout) as { ok: boolean; checks: CheckResult[] };
    expect(out.ok).toBe(false);
    expect(r.code).toBe(1);
    expect(out.checks.find((c) => c.id === `destination:${join(work, 'nowhere')}`)?.status).toBe('fail');
    for (const id of ['units', 'rules', 'eject', 'udevd', 'cpu', 'daemon', 'desktop', 'clock', 's3'])
      expect(
        out.checks.some((c) => c.id === id),
        id,
      ).toBe(true);
  });

  test('a-broken-config-is-a-failed-check-and-the-rest-still-runs', async () => {
    const config = join(work, 'broken.toml');
    await writeFile(config, 'stationn = "typo"\n');
    const r = await runCli(['--config', config, 'doctor', '--json']);
    const out = JSON.parse(r.stdout) as { checks: CheckResult[] };
    expect(out.checks[0]).toMatchObject({ id: 'config', status: 'fail', detail: expect.stringContaining('stationn') });
    expect(out.checks.some((c) => c.id === 'clock')).toBe(true);
  });
});
