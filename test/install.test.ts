import { spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseToml } from 'smol-toml';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { unitWithPrefix } from '../src/cli/doctor-checks.js';
import { hookTraces } from './support/test-hooks.js';

/**
 * The artifact and its installer, for real: scripts/build-dist.sh builds the tarball (production
 * dependencies cached in .tmp/dist-cache per lockfile, so only the first run pays for npm ci), and
 * scripts/install.sh installs it below a DESTDIR, which must leave the running system untouched. The
 * installed program then ingests a sample card with its own Node runtime and no node on the PATH.
 */

const REPO = fileURLToPath(new URL('..', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: readonly string[], opts: { env?: Record<string, string>; cwd?: string } = {}): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd ?? REPO, env: { ...process.env, ...opts.env }, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: Run, what: string): Run {
  if (r.status !== 0) throw new Error(`${what} exited ${r.status}:\n${r.stderr}`);
  return r;
}

let work: string;
let tarball: string;

const install = (destdir: string, ...args: string[]): Run => run(join(REPO, 'scripts/install.sh'), [...args, tarball], { env: { DESTDIR: destdir } });
const uninstall = (destdir: string, ...args: string[]): Run => run(join(REPO, 'scripts/uninstall.sh'), args, { env: { DESTDIR: destdir } });

async function mode(path: string): Promise<string> {
  return ((await stat(path)).mode & 0o7777).toString(8);
}

function passwdEntry(root: string): string | undefined {
  const file = join(root, 'etc/passwd');
  return existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .find((l) => l.startsWith('shuttle:'))
    : undefined;
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('the install tests create files owned by root and a service group: run as root');
  work = await mkdtemp(join(tmpdir(), 'shuttle-install-'));
  const r = ok(run(join(REPO, 'scripts/build-dist.sh'), ['--out', join(work, 'out')]), 'build-dist.sh');
  tarball = r.stdout.trim().split('\n').pop()!;
}, 600_000);
afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

describe('artifact', () => {
  test('tarball-holds-program-production-dependencies-runtime-units-rules-and-installer', () => {
    expect(tarball).toMatch(new RegExp(`shuttle-${VERSION.replace(/\./g, '\\.')}-linux-(x64|arm64)\\.tar\\.gz$`));
    const entries = new Set(
      ok(run('tar', ['-tzf', tarball]), 'tar')
        .stdout.split('\n')
        .map((e) => e.replace(/^[^/]+\//, '')),
    );
    for (const e of [
      'bin/shuttle',
      'bin/shuttle.js',
      'dist/main.js',
      'package.json',
      'node_modules/node/bin/node',
      'build/Release/sd_notify.node',
      'node_modules/commander/package.json',
      'lib/shuttle-card',
      'systemd/shuttle.service',
      'systemd/shuttle-card@.service',
      'systemd/shuttle-eject@.service',
      'polkit/50-shuttle.rules',
      'udev/70-shuttle-cameras.rules',
      'udev/70-shuttle-cards.rules',
      'udev/70-shuttle-lights.rules',
      'config/shuttle.example.toml',
      'scripts/install.sh',
      'scripts/uninstall.sh',
      '.shuttle-artifact',
    ]) {
      expect(entries.has(e), e).toBe(true);
    }
    // Production only: no dev tools, no sources, no headers for compiling addons.
    for (const e of ['node_modules/vitest/package.json', 'node_modules/typescript/package.json', 'src/main.ts']) expect(entries.has(e), e).toBe(false);
    expect([...entries].some((e) => e.includes('/include/node/'))).toBe(false);
  });
});

describe('install into a DESTDIR', () => {
  let root: string;
  let hostPasswd: string;
  beforeAll(async () => {
    root = join(work, 'root');
    hostPasswd = await readFile('/etc/passwd', 'utf8');
    ok(install(root), 'install.sh');
  }, 120_000);

  test('leaves-the-running-system-alone', async () => {
    expect(await readFile('/etc/passwd', 'utf8')).toBe(hostPasswd);
    expect(existsSync('/opt/shuttle/.shuttle-artifact') && (await readFile('/opt/shuttle/.shuttle-artifact', 'utf8')).includes(work)).toBe(false);
  });

  test('creates-the-system-user-and-group-in-the-destdir', () => {
    expect(passwdEntry(root)).toMatch(/^shuttle:x:\d+:\d+:[^:]*:\/var\/lib\/shuttle:\/usr\/sbin\/nologin$/);
    expect(readFileSync(join(root, 'etc/group'), 'utf8')).toMatch(/^shuttle:x:\d+:/m);
  });

  test('puts-program-link-units-and-rules-where-systemd-and-udev-read-them', async () => {
    expect(existsSync(join(root, 'opt/shuttle/dist/main.js'))).toBe(true);
    expect(await readlink(join(root, 'usr/local/bin/shuttle'))).toBe('/opt/shuttle/bin/shuttle');
    for (const unit of ['shuttle.service', 'shuttle-card@.service', 'shuttle-eject@.service']) {
      expect(await readFile(join(root, 'etc/systemd/system', unit), 'utf8')).toBe(await readFile(join(REPO, 'systemd', unit), 'utf8'));
      expect(await mode(join(root, 'etc/systemd/system', unit))).toBe('644');
    }
    for (const rules of ['70-shuttle-cameras.rules', '70-shuttle-cards.rules', '70-shuttle-lights.rules']) {
      expect(await readFile(join(root, 'etc/udev/rules.d', rules), 'utf8')).toBe(await readFile(join(REPO, 'udev', rules), 'utf8'));
    }
    expect(await readFile(join(root, 'etc/polkit-1/rules.d/50-shuttle.rules'), 'utf8')).toBe(await readFile(join(REPO, 'polkit/50-shuttle.rules'), 'utf8'));
    expect(await mode(join(root, 'etc/polkit-1/rules.d/50-shuttle.rules'))).toBe('644');
    expect(await mode(join(root, 'opt/shuttle/lib/shuttle-card'))).toBe('755');
  });

  test('the-installed-program-has-none-of-the-test-hooks', async () => {
    // build-dist.sh builds with --release (see test/release-build.test.ts for what that leaves out).
    expect(await hookTraces(join(root, 'opt/shuttle/dist'))).toEqual([]);
  });

  test('writes-a-commented-config-with-the-dashboard-on-loopback-readable-by-the-service-group-only', async () => {
    const config = join(root, 'etc/shuttle/config.toml');
    const text = await readFile(config, 'utf8');
    // Nothing set but the API on this machine, which needs no token there.
    expect(parseToml(text)).toEqual({ api: { listen: '127.0.0.1:8650' } });
    // The example's settings are all there, as comments.
    expect(text).toContain('# [[destinations]]');
    expect(text).toContain('# [ingest]');
    const gid = /^shuttle:x:(\d+):/m.exec(readFileSync(join(root, 'etc/group'), 'utf8'))![1];
    expect(await mode(config)).toBe('640');
    expect(String((await stat(config)).gid)).toBe(gid);
    expect(await mode(join(root, 'etc/shuttle'))).toBe('750');
    expect(await mode(join(root, 'etc/shuttle/aws-credentials'))).toBe('600');
    expect(readFileSync(join(root, 'etc/shuttle/card.env'), 'utf8')).toContain('CARD_POWER_OFF');
  });

  test('installed-units-verify-against-the-installed-tree', async () => {
    await cp('/usr/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
    const r = run('systemd-analyze', ['verify', `--root=${root}`, 'shuttle.service', 'shuttle-card@sdb1.service', 'shuttle-eject@sdb1.service']);
    expect({ status: r.status, messages: r.stderr.trim() }).toEqual({ status: 0, messages: '' });
  });

  test('installed-program-ingests-a-card-on-its-own-runtime-with-no-node-on-the-path', async () => {
    // A PATH with the few tools the launcher and the volume probe use, and no node at all.
    const bin = join(work, 'path-without-node');
    await mkdir(bin, { recursive: true });
    for (const tool of ['dirname', 'readlink', 'findmnt', 'lsblk', 'blkid']) {
      const where = run('sh', ['-c', `command -v ${tool}`]).stdout.trim();
      if (where !== '' && !existsSync(join(bin, tool))) await symlink(where, join(bin, tool));
    }
    const shuttle = join(root, 'opt/shuttle/bin/shuttle');
    const env = { PATH: bin, TZ: 'UTC', SHUTTLE_LOG_LEVEL: 'warn' };
    const cwd = work;
    expect(run('/bin/sh', ['-c', 'command -v node'], { env: { PATH: bin } }).status).not.toBe(0);
    expect(ok(run(shuttle, ['--version'], { env, cwd }), 'shuttle --version').stdout.trim()).toBe(VERSION);
    const card = join(work, 'card');
    ok(run(shuttle, ['sample', card], { env, cwd }), 'shuttle sample');
    const r = ok(run(shuttle, ['--state', join(work, 'state'), 'ingest', card, '--dest', join(work, 'library'), '--json'], { env, cwd }), 'shuttle ingest');
    const summary = JSON.parse(r.stdout) as { status: string; failed: number; copied: number };
    expect(summary.failed).toBe(0);
    expect(summary.copied).toBeGreaterThan(0);
  });

  test('installed-launcher-keeps-compiled-code-in-the-service-cache-or-the-users-cache', async () => {
    const shuttle = join(root, 'opt/shuttle/bin/shuttle');
    const service = join(work, 'var-cache-shuttle');
    const home = join(work, 'home');
    await mkdir(service, { recursive: true });
    await mkdir(home, { recursive: true });
    ok(run(shuttle, ['--help'], { env: { CACHE_DIRECTORY: service, HOME: home } }), 'shuttle --help under systemd');
    ok(run(shuttle, ['--help'], { env: { HOME: home } }), 'shuttle --help as a user');
    const entries = async (dir: string): Promise<string[]> => (existsSync(dir) ? await readdir(dir, { recursive: true }) : []);
    expect((await entries(join(service, 'node-compile-cache'))).length).toBeGreaterThan(0);
    expect((await entries(join(home, '.cache/shuttle/node-compile-cache'))).length).toBeGreaterThan(0);
  });

  test('a-second-install-upgrades-the-program-and-keeps-the-edited-config', async () => {
    const config = join(root, 'etc/shuttle/config.toml');
    await writeFile(config, 'station = "mine"\n');
    await writeFile(join(root, 'opt/shuttle/left-over-from-old-version'), '');
    ok(install(root), 'install.sh (again)');
    expect(await readFile(config, 'utf8')).toBe('station = "mine"\n');
    expect(existsSync(join(root, 'opt/shuttle/left-over-from-old-version'))).toBe(false);
    expect(existsSync(join(root, 'opt/shuttle/dist/main.js'))).toBe(true);
  });

  test('uninstall-removes-the-program-and-keeps-config-journal-and-user-until-purge', async () => {
    await mkdir(join(root, 'var/lib/shuttle'), { recursive: true });
    await writeFile(join(root, 'var/lib/shuttle/journal.sqlite'), 'journal');
    ok(uninstall(root), 'uninstall.sh');
    for (const gone of [
      'opt/shuttle',
      'usr/local/bin/shuttle',
      'etc/systemd/system/shuttle.service',
      'etc/systemd/system/shuttle-card@.service',
      'etc/systemd/system/shuttle-eject@.service',
      'etc/polkit-1/rules.d/50-shuttle.rules',
      'etc/udev/rules.d/70-shuttle-cameras.rules',
      'etc/udev/rules.d/70-shuttle-cards.rules',
      'etc/udev/rules.d/70-shuttle-lights.rules',
    ]) {
      expect(existsSync(join(root, gone)), gone).toBe(false);
    }
    expect(existsSync(join(root, 'etc/shuttle/config.toml'))).toBe(true);
    expect(existsSync(join(root, 'var/lib/shuttle/journal.sqlite'))).toBe(true);
    expect(passwdEntry(root)).toBeDefined();

    ok(uninstall(root, '--purge'), 'uninstall.sh --purge');
    expect(existsSync(join(root, 'etc/shuttle'))).toBe(false);
    expect(existsSync(join(root, 'var/lib/shuttle'))).toBe(false);
    expect(passwdEntry(root)).toBeUndefined();
    expect(readFileSync(join(root, 'etc/group'), 'utf8')).not.toMatch(/^shuttle:/m);
  });
});

describe('installer arguments', () => {
  test('another-prefix-is-written-into-the-units-and-the-link', async () => {
    const root = join(work, 'root-prefix');
    ok(install(root, '--prefix', '/srv/apps/shuttle'), 'install.sh --prefix');
    const unit = await readFile(join(root, 'etc/systemd/system/shuttle.service'), 'utf8');
    expect(unit).toContain('ExecStart=/srv/apps/shuttle/bin/shuttle ');
    expect(unit).not.toContain('/opt/shuttle/');
    expect(await readFile(join(root, 'etc/systemd/system/shuttle-card@.service'), 'utf8')).toContain('ExecStartPre=+/srv/apps/shuttle/lib/shuttle-card mount');
    expect(await readlink(join(root, 'usr/local/bin/shuttle'))).toBe('/srv/apps/shuttle/bin/shuttle');
    expect(existsSync(join(root, 'srv/apps/shuttle/bin/shuttle'))).toBe(true);
  });

  test.each([['/usr/local'], ['/opt/vendor']])('a-prefix-of-%s-holding-other-things-is-refused-and-left-as-it-was', async (prefix) => {
    const root = join(work, `root-refused-${prefix.replaceAll('/', '-')}`);
    await mkdir(join(root, prefix, 'bin'), { recursive: true });
    await writeFile(join(root, prefix, 'bin', 'other-tool'), 'theirs');
    const r = install(root, '--prefix', prefix);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${join(root, prefix)} holds something other than a Shuttle install`);
    expect(await readFile(join(root, prefix, 'bin', 'other-tool'), 'utf8')).toBe('theirs');
    expect(await readdir(join(root, prefix))).toEqual(['bin']);
    expect(existsSync(join(root, 'etc/systemd'))).toBe(false);
  });

  test('an-interrupted-installs-leftover-beside-the-prefix-is-replaced-only-if-it-is-shuttles', async () => {
    const root = join(work, 'root-sibling');
    // Another vendor's folder happens to be named like our .old.
    await mkdir(join(root, 'opt/shuttle.old'), { recursive: true });
    await writeFile(join(root, 'opt/shuttle.old/data'), 'theirs');
    const r = install(root);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('shuttle.old holds something other than a Shuttle install');
    expect(await readFile(join(root, 'opt/shuttle.old/data'), 'utf8')).toBe('theirs');
  });

  test('uninstall-refuses-a-prefix-that-is-not-a-shuttle-install-before-removing-anything', async () => {
    const root = join(work, 'root-uninstall-refused');
    ok(install(root), 'install.sh');
    await mkdir(join(root, 'opt/vendor'), { recursive: true });
    await writeFile(join(root, 'opt/vendor/data'), 'theirs');
    for (const prefix of ['/opt/vendor', '/']) {
      const r = uninstall(root, '--prefix', prefix);
      expect(r.status, prefix).toBe(1);
      expect(r.stderr).toContain('is not a Shuttle install');
    }
    expect(await readFile(join(root, 'opt/vendor/data'), 'utf8')).toBe('theirs');
    // The real install is untouched too: the refusal came before the units and rules went.
    expect(existsSync(join(root, 'etc/systemd/system/shuttle.service'))).toBe(true);
    expect(existsSync(join(root, 'opt/shuttle/dist/main.js'))).toBe(true);
  });

  test('a-prefix-with-spaces-and-an-ampersand-installs-verifies-runs-and-uninstalls', async () => {
    const root = join(work, 'root-spaces');
    const prefix = '/srv/my apps & co/shuttle';
    ok(install(root, '--prefix', prefix), 'install.sh --prefix with spaces');
    const unit = await readFile(join(root, 'etc/systemd/system/shuttle.service'), 'utf8');
    expect(unit).toContain(`ExecStart="${prefix}/bin/shuttle" --config /etc/shuttle/config.toml run`);
    expect(unit).toContain('Documentation=file:/srv/my%%20apps%%20&%%20co/shuttle/README.md');
    const card = await readFile(join(root, 'etc/systemd/system/shuttle-card@.service'), 'utf8');
    expect(card).toContain(`ExecStartPre=+"${prefix}/lib/shuttle-card" mount %I`);
    expect(card).not.toContain('/opt/shuttle/');
    // shuttle doctor compares the installed units with what the installer writes for its prefix.
    for (const [name, text] of [
      ['shuttle.service', unit],
      ['shuttle-card@.service', card],
    ] as const) {
      expect(unitWithPrefix(await readFile(join(REPO, 'systemd', name), 'utf8'), prefix), name).toBe(text);
    }
    expect(await readlink(join(root, 'usr/local/bin/shuttle'))).toBe(`${prefix}/bin/shuttle`);
    // systemd reads the quoted paths as the installed programs (verify checks that each Exec= path exists).
    await cp('/usr/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
    const v = run('systemd-analyze', ['verify', `--root=${root}`, 'shuttle.service', 'shuttle-card@sdb1.service']);
    expect({ status: v.status, messages: v.stderr.trim() }).toEqual({ status: 0, messages: '' });
    expect(ok(run(join(root, prefix, 'bin/shuttle'), ['--version']), 'shuttle --version').stdout.trim()).toBe(VERSION);

    ok(uninstall(root, '--prefix', prefix), 'uninstall.sh --prefix with spaces');
    expect(existsSync(join(root, prefix))).toBe(false);
    expect(existsSync(join(root, 'usr/local/bin/shuttle'))).toBe(false);
    expect(existsSync(join(root, 'etc/systemd/system/shuttle.service'))).toBe(false);
    expect(existsSync(join(root, 'srv/my apps & co'))).toBe(true);
  });

  test('purge-also-removes-the-cache-the-drop-ins-and-the-runtime-folders-but-not-a-mounted-card', async () => {
    const root = join(work, 'root-purge');
    ok(install(root), 'install.sh');
    const made = [
      'var/cache/shuttle/node-compile-cache/v8',
      'etc/systemd/system/shuttle.service.d/override.conf',
      'etc/systemd/system/shuttle-card@.service.d/override.conf',
      'etc/systemd/system/shuttle-card@sdb1.service.d/override.conf',
      'run/shuttle/locks/a.lock',
      'run/shuttle-card/sdb1',
    ];
    for (const f of made) {
      await mkdir(join(root, f, '..'), { recursive: true });
      await writeFile(join(root, f), '');
    }
    // A mount point left empty, and one that still holds a card's files.
    await mkdir(join(root, 'media/shuttle/sdb1'), { recursive: true });
    await mkdir(join(root, 'media/shuttle/sdc1/DCIM'), { recursive: true });
    await mkdir(join(root, 'etc/systemd/system/other.service.d'), { recursive: true });
    const r = ok(uninstall(root, '--purge'), 'uninstall.sh --purge');
    for (const gone of [
      'var/cache/shuttle',
      'etc/systemd/system/shuttle.service.d',
      'etc/systemd/system/shuttle-card@.service.d',
      'etc/systemd/system/shuttle-card@sdb1.service.d',
      'run/shuttle',
      'run/shuttle-card',
      'media/shuttle/sdb1',
    ]) {
      expect(existsSync(join(root, gone)), gone).toBe(false);
    }
    expect(existsSync(join(root, 'media/shuttle/sdc1/DCIM'))).toBe(true);
    expect(r.stderr).toContain('media/shuttle/sdc1: a card is still mounted there');
    expect(existsSync(join(root, 'etc/systemd/system/other.service.d'))).toBe(true);
  });

  test('refuses-a-folder-that-is-not-a-shuttle-build', () => {
    const r = run(join(REPO, 'scripts/install.sh'), [REPO], { env: { DESTDIR: join(work, 'root-refused') } });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('is not a Shuttle build');
    expect(existsSync(join(work, 'root-refused/opt'))).toBe(false);
  });
});
