import { execFileSync, spawnSync } from 'node:child_process';
import { chmod, copyFile, cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SYSTEMD_CREDENTIAL_NAMES } from '../src/upload/credentials.js';

/**
 * The units as systemd itself judges them: `systemd-analyze verify` (clean: no message at all) and
 * `systemd-analyze security --offline=true` (exposure ≤ 2.0, i.e. --threshold=20), run against a root
 * laid out as the installer lays it out, so that every Exec= path resolves. And the card unit's
 * privileged helper against a real block device (a loop device with an exFAT image).
 */

const REPO = fileURLToPath(new URL('..', import.meta.url));
const SYSTEMD_DIR = join(REPO, 'systemd');
const HELPER = join(SYSTEMD_DIR, 'shuttle-card');
/** systemd-analyze's --threshold is the exposure level times ten. */
const EXPOSURE_THRESHOLD = 20;

function hasTool(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}

/** Installs a Debian package that provides `tool` when it is missing; fails loudly when that is impossible. */
function requireTool(tool: string, aptPackage: string): void {
  if (hasTool(tool)) return;
  if (process.getuid?.() !== 0) throw new Error(`${tool} is missing and this test is not root to install it: apt-get install ${aptPackage}`);
  const r = spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', aptPackage], {
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    encoding: 'utf8',
  });
  if (!hasTool(tool)) throw new Error(`${tool} is missing and apt-get install ${aptPackage} did not provide it:\n${r.stderr}`);
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: readonly string[], env: Record<string, string> = {}): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exposure level systemd-analyze security printed for a unit. */
function exposureOf(output: string, unit: string): number {
  const m = new RegExp(`Overall exposure level for ${unit.replace(/[.@]/g, '\\$&')}: (\\d+\\.\\d+)`).exec(output);
  if (!m) throw new Error(`no exposure level for ${unit} in:\n${output}`);
  return Number(m[1]);
}

/** `Key=value` lines of a unit file (keys may repeat). */
function directives(unitText: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of unitText.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (!m) continue;
    out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  }
  return out;
}

let root: string;

/**
 * A root with this machine's system units (for the targets ours name), our units where the installer
 * puts them, and the programs their Exec= lines name where the artifact has them (scripts/build-dist.sh:
 * scripts/shuttle.sh → bin/shuttle, systemd/shuttle-card → lib/shuttle-card).
 */
async function makeRoot(): Promise<string> {
  const r = await mkdtemp(join(tmpdir(), 'shuttle-units-'));
  await cp('/usr/lib/systemd/system', join(r, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
  await mkdir(join(r, 'etc/systemd/system'), { recursive: true });
  for (const unit of await unitFiles()) await copyFile(join(SYSTEMD_DIR, unit), join(r, 'etc/systemd/system', unit));
  await mkdir(join(r, 'opt/shuttle/bin'), { recursive: true });
  await mkdir(join(r, 'opt/shuttle/lib'), { recursive: true });
  await copyFile(join(REPO, 'scripts/shuttle.sh'), join(r, 'opt/shuttle/bin/shuttle'));
  await copyFile(HELPER, join(r, 'opt/shuttle/lib/shuttle-card'));
  await chmod(join(r, 'opt/shuttle/bin/shuttle'), 0o755);
  await chmod(join(r, 'opt/shuttle/lib/shuttle-card'), 0o755);
  return r;
}

async function unitFiles(): Promise<string[]> {
  return (await readdir(SYSTEMD_DIR)).filter((f) => f.endsWith('.service')).sort();
}

/** The names to check: templates as one instance, named like a card partition. */
async function unitNames(): Promise<string[]> {
  return (await unitFiles()).map((f) => f.replace('@.service', '@sdb1.service'));
}

beforeAll(async () => {
  requireTool('systemd-analyze', 'systemd');
  root = await makeRoot();
});
afterAll(async () => {
  if (root) await rm(root, { recursive: true, force: true });
});

describe('units', () => {
  test('ships-the-daemon-unit-and-the-card-and-eject-templates', async () => {
    expect(await unitFiles()).toEqual(['shuttle-card@.service', 'shuttle-eject@.service', 'shuttle.service']);
  });

  test('systemd-analyze-verify-finds-nothing-to-say-about-any-unit', async () => {
    const r = run('systemd-analyze', ['verify', `--root=${root}`, ...(await unitNames())]);
    expect({ status: r.status, messages: r.stderr.trim() }).toEqual({ status: 0, messages: '' });
  });

  test('verify-reports-an-exec-path-the-artifact-does-not-have', async () => {
    // Proves the check above can fail: the same root without the card helper.
    const broken = await mkdtemp(join(tmpdir(), 'shuttle-units-broken-'));
    try {
      await cp(root, broken, { recursive: true, verbatimSymlinks: true });
      await rm(join(broken, 'opt/shuttle/lib/shuttle-card'));
      const r = run('systemd-analyze', ['verify', `--root=${broken}`, 'shuttle-card@sdb1.service']);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain('/opt/shuttle/lib/shuttle-card');
    } finally {
      await rm(broken, { recursive: true, force: true });
    }
  });

  test.each([['shuttle.service'], ['shuttle-card@sdb1.service'], ['shuttle-eject@sdb1.service']])('%s-is-rated-at-most-2.0-exposure-offline', (unit) => {
    const r = run('systemd-analyze', ['security', '--offline=true', `--threshold=${EXPOSURE_THRESHOLD}`, `--root=${root}`, unit]);
    const exposure = exposureOf(r.stdout, unit);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(exposure).toBeLessThanOrEqual(2.0);
  });

  test('the-security-threshold-rejects-an-unhardened-service', async () => {
    const plain = join(root, 'etc/systemd/system/plain.service');
    await writeFile(plain, '[Service]\nExecStart=/opt/shuttle/bin/shuttle run\n');
    try {
      const r = run('systemd-analyze', ['security', '--offline=true', `--threshold=${EXPOSURE_THRESHOLD}`, `--root=${root}`, 'plain.service']);
      expect(r.status).not.toBe(0);
      expect(exposureOf(r.stdout, 'plain.service')).toBeGreaterThan(2.0);
    } finally {
      await rm(plain);
    }
  });

  test('daemon-unit-has-what-the-daemon-relies-on', async () => {
    const d = directives(await readFile(join(SYSTEMD_DIR, 'shuttle.service'), 'utf8'));
    expect(d.get('Type')).toEqual(['notify']);
    // The daemon sends sd_notify from its own process (src/daemon/notify.ts): nothing else may speak for it.
    expect(d.get('NotifyAccess')).toEqual(['main']);
    // ... and that process is the main PID: bin/shuttle (scripts/shuttle.sh) execs the bundled runtime,
    // under which bin/shuttle.js starts the daemon in place instead of re-executing it as a child.
    expect(d.get('ExecStart')?.[0]).toMatch(/^\/opt\/shuttle\/bin\/shuttle /);
    expect(await readFile(join(REPO, 'scripts/shuttle.sh'), 'utf8')).toMatch(/^exec "\$root\/node_modules\/node\/bin\/node" "\$root\/bin\/shuttle\.js" "\$@"$/m);
    expect(d.get('WatchdogSec')).toHaveLength(1);
    expect(d.get('User')).toEqual(['shuttle']);
    expect(d.get('StateDirectory')).toEqual(['shuttle']);
    expect(d.get('ConfigurationDirectory')).toEqual(['shuttle']);
    expect(d.get('RuntimeDirectory')).toEqual(['shuttle']);
    // bin/shuttle.js keeps V8's compiled code there ($CACHE_DIRECTORY): without it, every start compiles anew.
    expect(d.get('CacheDirectory')).toEqual(['shuttle']);
    // The name src/upload/credentials.ts looks for in $CREDENTIALS_DIRECTORY.
    expect(d.get('LoadCredential')).toEqual([`${SYSTEMD_CREDENTIAL_NAMES.file}:/etc/shuttle/aws-credentials`]);
    // Cameras through libusb, and the status lights' hidraw nodes (which udev gives the shuttle group).
    expect(d.get('DeviceAllow')).toEqual(['char-usb_device rw', 'char-hidraw rw']);
    expect(d.get('ExecStart')?.[0]).toMatch(/ run$/);
    // V8 needs writable executable memory: this setting kills the daemon at start.
    expect(d.get('MemoryDenyWriteExecute') ?? []).not.toContain('yes');
    // A backstop against a runaway daemon: a share of the machine, so small boxes and large ones both fit.
    expect(d.get('MemoryMax')).toEqual([expect.stringMatching(/^\d+%$/)]);
  });

  test('card-unit-is-bound-to-its-device-and-asks-the-daemon-to-ingest-the-mount', async () => {
    const d = directives(await readFile(join(SYSTEMD_DIR, 'shuttle-card@.service'), 'utf8'));
    expect(d.get('BindsTo')).toEqual(['dev-%i.device']);
    // --wait: the unit lasts as long as the job, and stopping it (the card went away) cancels the job.
    expect(d.get('ExecStart')).toEqual(['/opt/shuttle/bin/shuttle request ingest --wait ${CARD_MOUNT_BASE}/%I']);
    expect(d.get('User')).toEqual(['shuttle']);
    // Mount, unmount and power-off are the only privileged steps.
    const privileged = [...(d.get('ExecCondition') ?? []), ...(d.get('ExecStartPre') ?? []), ...(d.get('ExecStopPost') ?? [])];
    expect(privileged.every((c) => c.startsWith('+/opt/shuttle/lib/shuttle-card '))).toBe(true);
    expect(d.get('MemoryMax')).toEqual([expect.stringMatching(/^\d+[KMG]$/)]);
  });
});

describe('shuttle-card helper', () => {
  let work: string;
  let loop = '';
  const env = (): Record<string, string> => ({
    CARD_MOUNT_BASE: join(work, 'media'),
    CARD_STATE_DIR: join(work, 'state'),
    CARD_FSTAB: join(work, 'fstab'),
    CARD_USER: 'nobody',
  });
  const helper = (...args: string[]): Run => run('sh', [HELPER, ...args], env());
  const name = (): string => loop.replace('/dev/', '');

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'shuttle-card-'));
    // Other users must reach the mount point for the permission checks to mean anything.
    await chmod(work, 0o755);
    await writeFile(join(work, 'fstab'), '# nothing\n');
    if (process.getuid?.() !== 0) throw new Error('the card helper tests mount a loop device: run as root');
    if (!readFileSync('/proc/devices', 'utf8').includes(' loop')) throw new Error('no loop devices in this kernel or sandbox');
    requireTool('mkfs.exfat', 'exfatprogs');
    const exfat = readFileSync('/proc/filesystems', 'utf8').includes('exfat');
    if (!exfat) requireTool('mount.exfat-fuse', 'exfat-fuse');
    const img = join(work, 'card.img');
    execFileSync('truncate', ['-s', '40M', img]);
    execFileSync('mkfs.exfat', ['-L', 'EOS_DIGITAL', img], { stdio: 'ignore' });
    loop = execFileSync('losetup', ['-f', '--show', '-r', img], { encoding: 'utf8' }).trim();
  });
  afterAll(async () => {
    if (loop) {
      spawnSync('umount', ['-l', join(work, 'media', name())]);
      spawnSync('losetup', ['-d', loop]);
    }
    await rm(work, { recursive: true, force: true });
  });

  test('refuses-a-name-that-is-not-a-kernel-device-name', () => {
    for (const bad of ['', '../sda', 'sdb1/..', '.hidden', 'sd b']) {
      expect(helper('mount', bad).status, bad).toBe(2);
    }
  });

  test('check-skips-a-device-that-does-not-exist', () => {
    const r = helper('check', 'sdzz9');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('skipped');
  });

  test('check-accepts-an-exfat-card-and-skips-one-listed-in-fstab', async () => {
    expect(helper('check', name()).status).toBe(0);
    // By UUID: other suites running at the same time make EOS_DIGITAL cards too, and LABEL= would name
    // whichever of them libblkid finds first.
    const uuid = execFileSync('blkid', ['-p', '-o', 'value', '-s', 'UUID', loop], { encoding: 'utf8' }).trim();
    expect(uuid).not.toBe('');
    await writeFile(join(work, 'fstab'), `UUID=${uuid} /srv/backup exfat defaults 0 0\n`);
    try {
      const r = helper('check', name());
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('fstab');
    } finally {
      await writeFile(join(work, 'fstab'), '# nothing\n');
    }
  });

  test('mount-makes-a-read-only-mount-owned-by-the-service-user-and-release-removes-it', () => {
    const mnt = join(work, 'media', name());
    const m = helper('mount', name());
    expect(m.status, m.stderr).toBe(0);
    const info = run('findmnt', ['-n', '-o', 'SOURCE,OPTIONS', mnt]);
    expect(info.stdout).toContain(loop);
    expect(info.stdout.split(/\s+/)[1]!.split(',')).toEqual(expect.arrayContaining(['ro', 'nosuid', 'nodev']));
    // Readable by the service user (nobody here), and by no one else but root.
    expect(run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'ls', mnt]).status).toBe(0);
    const other = run('setpriv', ['--reuid=65533', '--regid=65533', '--clear-groups', 'ls', mnt]);
    expect(other.status).not.toBe(0);

    const r = run('sh', [HELPER, 'release', name()], { ...env(), SERVICE_RESULT: 'success', EXIT_STATUS: '0' });
    expect(r.status, r.stderr).toBe(0);
    expect(run('findmnt', [mnt]).status).not.toBe(0);
    expect(existsSync(mnt)).toBe(false);
    // A loop device hangs off no USB port: nothing is powered off, and it says so.
    expect(r.stderr).toContain('not on a USB device');
    expect(existsSync(loop)).toBe(true);
  });

  test('eject-unmounts-a-card-mounted-at-the-base-goes-on-to-power-it-off-and-refuses-when-nothing-is-there', () => {
    const mnt = join(work, 'media', name());
    const m = helper('mount', name());
    expect(m.status, m.stderr).toBe(0);
    const r = helper('eject', name());
    expect(r.status, r.stderr).toBe(0);
    expect(run('findmnt', [mnt]).status).not.toBe(0);
    expect(existsSync(join(work, 'state', name()))).toBe(false);
    // power_off was entered, and refused the loop device as it refuses anything not on USB.
    expect(r.stderr).toContain('not on a USB device');
    const again = helper('eject', name());
    expect(again.status).toBe(2);
    expect(again.stderr).toContain('nothing to eject');
  });

  test('release-after-an-ingest-that-did-not-complete-unmounts-and-never-powers-the-card-off', () => {
    // `shuttle request ingest --wait` exits 1 when a file or folder failed, 3 when interrupted.
    const mnt = join(work, 'media', name());
    for (const [result, status] of [
      ['exit-code', '1'],
      ['exit-code', '3'],
      ['signal', '15'],
    ] as const) {
      const m = helper('mount', name());
      expect(m.status, m.stderr).toBe(0);
      const r = run('sh', [HELPER, 'release', name()], { ...env(), SERVICE_RESULT: result, EXIT_STATUS: status });
      expect(r.status, r.stderr).toBe(0);
      expect(run('findmnt', [mnt]).status).not.toBe(0);
      expect(r.stderr).toContain(`ingest did not finish (${result}, exit ${status}); card left powered`);
      // power_off was never entered: it would have said why it could not power a loop device off.
      expect(r.stderr).not.toMatch(/not on a USB device|powered off|nothing to power off|not powering off/);
    }
  });

  test('mount-is-read-write-only-when-the-config-wipes-cards-and-read-only-when-the-policy-cannot-be-read', async () => {
    // The helper asks `shuttle config get cards.wipe`: here the built CLI, under the test's Node.
    const bin = join(work, 'shuttle');
    await writeFile(bin, `#!/bin/sh\nexec "${process.execPath}" "${join(REPO, 'dist/main.js')}" "$@"\n`);
    await chmod(bin, 0o755);
    // A writable card of its own (the suite's loop device is read-only, which mount would keep ro).
    const img = join(work, 'rw-card.img');
    execFileSync('truncate', ['-s', '40M', img]);
    execFileSync('mkfs.exfat', ['-L', 'EOS_DIGITAL', img], { stdio: 'ignore' });
    const rwLoop = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim();
    const card = rwLoop.replace('/dev/', '');
    const mnt = join(work, 'media', card);
    const cases: Array<[string, string | undefined, string]> = [
      ['after-local', '[cards]\nwipe = "after-local"\n', 'rw'],
      ['mark-done', '[cards]\nwipe = "mark-done"\n', 'rw'],
      ['never', '[cards]\nwipe = "never"\n', 'ro'],
      ['cameras only', '[cameras]\nwipe = "after-local"\n', 'ro'],
      ['unreadable config', undefined, 'ro'],
    ];
    try {
      for (const [what, toml, access] of cases) {
        const config = join(work, `config-${access}-${what.replace(/ /g, '-')}.toml`);
        if (toml !== undefined) await writeFile(config, toml);
        const m = run('sh', [HELPER, 'mount', card], { ...env(), SHUTTLE_BIN: bin, SHUTTLE_CONFIG: config });
        try {
          expect(m.status, `${what}: ${m.stderr}`).toBe(0);
          const options = run('findmnt', ['-n', '-o', 'OPTIONS', mnt]).stdout.trim().split(',');
          expect(options[0], what).toBe(access);
          expect(options, what).toEqual(expect.arrayContaining(['nosuid', 'nodev']));
          if (toml === undefined) expect(m.stderr).toContain('could not read [cards] wipe');
          if (access === 'rw') expect(m.stderr).toContain('read-write (cards are wiped after verification');
        } finally {
          const r = run('sh', [HELPER, 'release', card], env());
          expect(r.status, r.stderr).toBe(0);
        }
      }
    } finally {
      spawnSync('umount', ['-l', mnt]);
      spawnSync('losetup', ['-d', rwLoop]);
    }
  });

  test('release-without-a-mount-does-nothing', () => {
    const r = helper('release', name());
    expect(r).toMatchObject({ status: 0, stderr: '' });
  });
});
