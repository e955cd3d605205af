import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { ShuttleError } from '../src/errors.js';
import { configEnvVariables, envVariablesHelp, loadConfig, normalizeConfig, resolveStateDir, unknownEnvVariables, uploadSettings, type Config } from '../src/config/index.js';

const EXAMPLE = join(import.meta.dirname, '..', 'config', 'shuttle.example.toml');

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shuttle-config-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configFile(text: string): Promise<string> {
  const file = join(dir, 'config.toml');
  await writeFile(file, text);
  return file;
}

function failure(fn: () => unknown): ShuttleError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ShuttleError);
    return err as ShuttleError;
  }
  throw new Error('expected a ShuttleError, nothing was thrown');
}

describe('loading', () => {
  test('the commented example config loads cleanly', () => {
    const config = loadConfig({ file: EXAMPLE, env: {} });
    expect(config.station).toBe('cart-1');
    expect(config.ingest.timeZone).toBe('Europe/Berlin');
    expect(config.destinations.map((d) => d.name)).toEqual(['primary', 'backup A']);
    expect(config.destinations[1]?.minFreeBytes).toBe(50_000_000_000);
  });

  test('every key has its documented default when nothing is configured', () => {
    const config = loadConfig({ env: {} });
    expect(config).toEqual({
      station: hostname(),
      logLevel: 'info',
      ingest: {
        template: '{YYYY}/{YYYY-MM-DD}/{name}',
        manifestHashes: ['xxh128'],
        job: '',
        client: '',
        session: '',
        timeZone: undefined,
        exclude: [],
        verifyRetries: 2,
        changeRetries: 2,
      },
      destinations: [],
      daemon: {
        hotFolders: [],
        settleMs: 2000,
        batchMs: 1000,
        retryMs: 60_000,
        watchMounts: [],
        maxJobs: 4,
        watchdog: true,
        usbCameras: true,
        usbSettleMs: 400,
        usbPollMs: 0,
        networkCameras: false,
        allowedSources: [],
      },
      tether: { previewLongEdge: 1600, cameras: [], captureTarget: 'card', reconnectTimeout: 120 },
      cards: { wipe: 'never' },
      cameras: { wipe: 'never' },
      api: {},
      previews: { make: 'auto' },
    } satisfies Config);
  });

  test('the resolved config is deeply frozen', () => {
    const config = loadConfig({ env: {}, overrides: { destinations: [{ path: '/srv/a' }] } });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.ingest.manifestHashes)).toBe(true);
    expect(Object.isFrozen(config.destinations[0])).toBe(true);
    expect(() => (config.destinations as unknown as unknown[]).push({ path: '/x' })).toThrow(TypeError);
    expect(() => {
      (config.ingest as { job: string }).job = 'changed';
    }).toThrow(TypeError);
  });

  test('values are normalised: canonical time zone, trailing slashes, bare extensions as patterns, destination name', () => {
    const config = normalizeConfig({
      ingest: { time_zone: 'europe/berlin', include: ['CR3', '.jpg', '*.MP4'], exclude: ['._*'] },
      destinations: [{ path: '/srv/a/' }],
    });
    expect(config.ingest.timeZone).toBe('Europe/Berlin');
    expect(config.ingest.include).toEqual(['*.cr3', '*.jpg', '*.mp4']);
    expect(config.ingest.exclude).toEqual(['._*']);
    expect(config.destinations).toEqual([{ path: '/srv/a', name: '/srv/a' }]);
  });

  test('a missing explicitly given file is CONFIG_UNREADABLE naming it', () => {
    const file = join(dir, 'absent.toml');
    const err = failure(() => loadConfig({ file, env: {} }));
    expect(err.code).toBe('CONFIG_UNREADABLE');
    expect(err.message).toContain(file);
    expect(err.context).toMatchObject({ file, errno: 'ENOENT' });
  });

  test('a TOML syntax error is CONFIG_INVALID with line and column', async () => {
    const file = await configFile('station = "a"\nlog_level = = "debug"\n');
    const err = failure(() => loadConfig({ file, env: {} }));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toMatch(new RegExp(`^config ${file}: TOML syntax error at line 2, column \\d+`));
    expect(err.context).toMatchObject({ file, line: 2 });
  });
});

test('loading a config and taking its upload defaults compiles no code: zod builds a parser with new Function unless told jitless, which costs an emulated box its start-up', () => {
  const config = loadConfig({ env: {} });
  const compiled = vi.spyOn(globalThis, 'Function');
  try {
    expect(uploadSettings(config)).toMatchObject({ concurrency: 4 });
    expect(uploadSettings(loadConfig({ env: {} })).target).toBeUndefined();
    expect(compiled).not.toHaveBeenCalled();
  } finally {
    compiled.mockRestore();
  }
});

describe('rejecting bad values', () => {
  test('a bad time zone names the file, the key path and quotes the value', async () => {
    const file = await configFile('[ingest]\ntime_zone = "Mars/Olympus"\n');
    const err = failure(() => loadConfig({ file, env: {} }));
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toBe(`config ${file}: ingest.time_zone: "Mars/Olympus" is not a known time zone`);
    expect(err.context).toMatchObject({ file, key: 'ingest.time_zone', value: 'Mars/Olympus' });
  });

  test('an unknown key is rejected naming the key, at the top level and in a table', async () => {
    const file = await configFile('[ingest]\nverfy_retries = 3\n');
    const err = failure(() => loadConfig({ file, env: {} }));
    expect(err.message).toMatch(/^config .*: ingest\.verfy_retries: unknown key "verfy_retries" \(known keys: template, .*verify_retries/);
    expect(err.context).toMatchObject({ key: 'ingest.verfy_retries', value: 3 });

    const top = await configFile('[uplod]\nbucket = "x"\n');
    expect(failure(() => loadConfig({ file: top, env: {} })).message).toContain('uplod: unknown key "uplod"');
  });

  test('a value of the wrong type is quoted with the type it should be', async () => {
    const file = await configFile('[ingest]\nverify_retries = "2"\nmanifest_hashes = "xxh128"\n');
    const err = failure(() => loadConfig({ file, env: {} }));
    expect(err.message).toContain('ingest.verify_retries: "2" is not an integer');
    expect(err.message).toContain('ingest.manifest_hashes: "xxh128" is not a list');
  });

  test('network_cameras is true, false or a list of serials and addresses, in the file and the environment', async () => {
    const file = await configFile('[daemon]\nnetwork_cameras = ["0011223344556677", "192.168.1.50", "[fe80::1]:15740"]\n');
    expect(loadConfig({ file, env: {} }).daemon.networkCameras).toEqual(['0011223344556677', '192.168.1.50', '[fe80::1]:15740']);
    expect(loadConfig({ env: { SHUTTLE_DAEMON_NETWORK_CAMERAS: 'AB12, 10.0.0.7:15740' } }).daemon.networkCameras).toEqual(['AB12', '10.0.0.7:15740']);
    expect(loadConfig({ env: { SHUTTLE_DAEMON_NETWORK_CAMERAS: 'off' } }).daemon.networkCameras).toBe(false);
    const wrong = await configFile('[daemon]\nnetwork_cameras = "yes"\n');
    expect(failure(() => loadConfig({ file: wrong, env: {} })).message).toContain('daemon.network_cameras: "yes" is not true, false or a list');
    const empty = await configFile('[daemon]\nnetwork_cameras = []\n');
    expect(failure(() => loadConfig({ file: empty, env: {} })).message).toContain('daemon.network_cameras: [] is empty');
  });

  test('every problem is reported, one line each, the first in the context', async () => {
    const file = await configFile('log_level = "loud"\n[ingest]\nmanifest_hashes = ["sha1"]\nverify_retries = -1\n[[destinations]]\npath = "relative/dir"\n');
    const err = failure(() => loadConfig({ file, env: {} }));
    const lines = err.message.split('\n');
    expect(lines).toEqual([
      `config ${file}: log_level: "loud" is not one of "fatal", "error", "warn", "info", "debug", "trace", "silent"`,
      `config ${file}: ingest.manifest_hashes[0]: "sha1" is not one of "xxh128", "xxh64", "md5"`,
      `config ${file}: ingest.verify_retries: -1 is less than 0`,
      `config ${file}: destinations[0].path: "relative/dir" is not an absolute path`,
    ]);
    expect(err.context).toMatchObject({ key: 'log_level', value: 'loud' });
    expect(err.context['problems']).toHaveLength(4);
  });

  test('a destination listed twice is rejected at its second entry', async () => {
    const file = await configFile('[[destinations]]\npath = "/srv/a"\n[[destinations]]\npath = "/srv/a/"\n');
    expect(failure(() => loadConfig({ file, env: {} })).message).toBe(`config ${file}: destinations[1].path: "/srv/a" is listed twice`);
  });

  test('a template that would escape the destination is rejected', () => {
    expect(failure(() => normalizeConfig({ ingest: { template: '{YYYY}/../{name}' } })).message).toContain('ingest.template: "{YYYY}/../{name}" is not a relative path template');
    expect(failure(() => normalizeConfig({ ingest: { template: '/abs/{name}' } })).code).toBe('CONFIG_INVALID');
  });

  test('a manifest hash listed twice or no hash at all is rejected', () => {
    expect(failure(() => normalizeConfig({ ingest: { manifest_hashes: ['md5', 'md5'] } })).message).toContain('["md5","md5"] names a hash twice');
    expect(failure(() => normalizeConfig({ ingest: { manifest_hashes: [] } })).message).toContain('ingest.manifest_hashes: [] is empty');
  });
});

describe('environment and overrides', () => {
  test('environment variables override the file, typed by the schema', async () => {
    const file = await configFile('station = "from-file"\nlog_level = "warn"\n[ingest]\njob = "file job"\nverify_retries = 1\n');
    const config = loadConfig({
      file,
      env: {
        SHUTTLE_STATION: 'from-env',
        SHUTTLE_INGEST_VERIFY_RETRIES: '5',
        SHUTTLE_INGEST_MANIFEST_HASHES: 'xxh128, md5',
        SHUTTLE_INGEST_TEMPLATE: '{name}',
      },
    });
    expect(config.station).toBe('from-env');
    expect(config.logLevel).toBe('warn');
    expect(config.ingest.job).toBe('file job');
    expect(config.ingest.verifyRetries).toBe(5);
    expect(config.ingest.manifestHashes).toEqual(['xxh128', 'md5']);
    expect(config.ingest.template).toBe('{name}');
  });

  test('a bad value in the environment names the variable and quotes the value', () => {
    const bad = failure(() => loadConfig({ env: { SHUTTLE_INGEST_CHANGE_RETRIES: 'two' } }));
    expect(bad.code).toBe('CONFIG_INVALID');
    expect(bad.message).toBe('config $SHUTTLE_INGEST_CHANGE_RETRIES: ingest.change_retries: "two" is not an integer');
    expect(bad.context).toMatchObject({ env: 'SHUTTLE_INGEST_CHANGE_RETRIES', key: 'ingest.change_retries', value: 'two' });

    const tz = failure(() => loadConfig({ env: { SHUTTLE_INGEST_TIME_ZONE: 'Mars/Olympus' } }));
    expect(tz.message).toBe('config $SHUTTLE_INGEST_TIME_ZONE: ingest.time_zone: "Mars/Olympus" is not a known time zone');
  });

  test('SHUTTLE_DESTINATIONS replaces the configured list, keeping the options of paths listed in both', async () => {
    const file = await configFile('[[destinations]]\npath = "/srv/a"\nrequire_volume_uuid = "1234-ABCD"\n[[destinations]]\npath = "/srv/b"\n');
    const config = loadConfig({ file, env: { SHUTTLE_DESTINATIONS: '/srv/c:/srv/a' } });
    expect(config.destinations).toEqual([
      { path: '/srv/c', name: '/srv/c' },
      { path: '/srv/a', name: '/srv/a', requireVolumeUuid: '1234-ABCD' },
    ]);
    const err = failure(() => loadConfig({ env: { SHUTTLE_DESTINATIONS: '/srv/a:relative' } }));
    expect(err.message).toBe('config $SHUTTLE_DESTINATIONS: destinations[1].path: "relative" is not an absolute path');
  });

  test('overrides win over file and environment, and their destinations add to the configured ones', async () => {
    const file = await configFile('log_level = "warn"\n[[destinations]]\npath = "/srv/a"\nmin_free_bytes = 1000\n');
    const config = loadConfig({
      file,
      env: { SHUTTLE_LOG_LEVEL: 'error' },
      overrides: { log_level: 'debug', destinations: [{ path: '/srv/b' }, { path: '/srv/a/' }] },
    });
    expect(config.logLevel).toBe('debug');
    expect(config.destinations).toEqual([
      { path: '/srv/a', name: '/srv/a', minFreeBytes: 1000 },
      { path: '/srv/b', name: '/srv/b' },
    ]);
  });

  test('a bad override is reported as coming from the overrides', () => {
    const err = failure(() => loadConfig({ env: {}, overrides: { destinations: [{ path: 'x' }] } }));
    expect(err.message).toBe('config overrides: destinations[0].path: "x" is not an absolute path');
  });

  test('every documented config variable sets its key', () => {
    // One valid value per variable; a key added to the schema without a line here fails this test.
    // A key of a table with required keys (a webhook's url) is set beside those (the fourth element).
    const samples: Record<string, [string, (c: Config) => unknown, unknown, Record<string, string>?]> = {
      SHUTTLE_STATION: ['box-7', (c) => c.station, 'box-7'],
      SHUTTLE_STATE_DIR: ['/var/lib/x', (c) => c.stateDir, '/var/lib/x'],
      SHUTTLE_LOG_LEVEL: ['trace', (c) => c.logLevel, 'trace'],
      SHUTTLE_TETHER_PREVIEW_LONG_EDGE: ['800', (c) => c.tether.previewLongEdge, 800],
      SHUTTLE_TETHER_CAMERAS: ['usb:04a9:*,ptpip:10.0.0.5:15740', (c) => c.tether.cameras, ['usb:04a9:*', 'ptpip:10.0.0.5:15740']],
      SHUTTLE_TETHER_CAPTURE_TARGET: ['host', (c) => c.tether.captureTarget, 'host'],
      SHUTTLE_TETHER_RECONNECT_TIMEOUT: ['2.5', (c) => c.tether.reconnectTimeout, 2.5],
      SHUTTLE_CARDS_WIPE: ['mark-done', (c) => c.cards.wipe, 'mark-done'],
      SHUTTLE_CAMERAS_WIPE: ['after-cloud', (c) => c.cameras.wipe, 'after-cloud'],
      SHUTTLE_API_LISTEN: ['[::1]:8650', (c) => c.api.listen, '[::1]:8650'],
      SHUTTLE_API_TOKEN: ['a-token-of-16-or-more', (c) => c.api.token, 'a-token-of-16-or-more'],
      SHUTTLE_API_TOKEN_FILE: ['/etc/shuttle/api-token', (c) => c.api.tokenFile, '/etc/shuttle/api-token'],
      SHUTTLE_PREVIEWS_MAKE: ['always', (c) => c.previews.make, 'always'],
      SHUTTLE_INGEST_TEMPLATE: ['{YYYY}/{name}', (c) => c.ingest.template, '{YYYY}/{name}'],
      SHUTTLE_INGEST_MANIFEST_HASHES: ['md5,xxh64', (c) => c.ingest.manifestHashes, ['md5', 'xxh64']],
      SHUTTLE_INGEST_JOB: ['Spring', (c) => c.ingest.job, 'Spring'],
      SHUTTLE_INGEST_CLIENT: ['Acme', (c) => c.ingest.client, 'Acme'],
      SHUTTLE_INGEST_SESSION: ['Day 1', (c) => c.ingest.session, 'Day 1'],
      SHUTTLE_INGEST_TIME_ZONE: ['Asia/Tokyo', (c) => c.ingest.timeZone, 'Asia/Tokyo'],
      SHUTTLE_INGEST_INCLUDE: ['cr3,*.JPG', (c) => c.ingest.include, ['*.cr3', '*.jpg']],
      SHUTTLE_INGEST_EXCLUDE: ['tmp', (c) => c.ingest.exclude, ['*.tmp']],
      SHUTTLE_INGEST_VERIFY_RETRIES: ['7', (c) => c.ingest.verifyRetries, 7],
      SHUTTLE_INGEST_CHANGE_RETRIES: ['0', (c) => c.ingest.changeRetries, 0],
      SHUTTLE_DESTINATIONS: ['/a:/b', (c) => c.destinations.map((d) => d.path), ['/a', '/b']],
      SHUTTLE_UPLOAD_TARGET: ['s3://photos/shoots', (c) => c.upload?.target, 's3://photos/shoots'],
      SHUTTLE_UPLOAD_PROVIDER: ['minio', (c) => c.upload?.provider, 'minio'],
      SHUTTLE_UPLOAD_ENDPOINT: ['http://127.0.0.1:9000', (c) => c.upload?.endpoint, 'http://127.0.0.1:9000'],
      SHUTTLE_UPLOAD_REGION: ['eu-west-1', (c) => c.upload?.region, 'eu-west-1'],
      SHUTTLE_UPLOAD_CREDENTIALS_FILE: ['/etc/shuttle/s3', (c) => c.upload?.credentialsFile, '/etc/shuttle/s3'],
      SHUTTLE_UPLOAD_KEY_TEMPLATE: ['{station}/{name}', (c) => c.upload?.keyTemplate, '{station}/{name}'],
      SHUTTLE_UPLOAD_CONCURRENCY: ['8', (c) => c.upload?.concurrency, 8],
      SHUTTLE_UPLOAD_PART_SIZE: ['8388608', (c) => c.upload?.partSize, 8388608],
      SHUTTLE_UPLOAD_BANDWIDTH: ['1000000', (c) => c.upload?.bandwidth, 1000000],
      SHUTTLE_UPLOAD_CHECKSUM: ['crc64nvme', (c) => c.upload?.checksum, 'crc64nvme'],
      SHUTTLE_UPLOAD_PRIORITY: ['JPG,*,cr3', (c) => c.upload?.priority, ['jpg', '*', 'cr3']],
      SHUTTLE_UPLOAD_KEEP_DAYS: ['14', (c) => c.upload?.keepDays, 14],
      SHUTTLE_UPLOAD_KEEP_FREE_BYTES: ['1000000000', (c) => c.upload?.keepFreeBytes, 1000000000],
      SHUTTLE_DAEMON_CONTROL_SOCKET: ['/run/x/control.sock', (c) => c.daemon.controlSocket, '/run/x/control.sock'],
      SHUTTLE_DAEMON_HOT_FOLDERS: ['/srv/in:/srv/tether', (c) => c.daemon.hotFolders, ['/srv/in', '/srv/tether']],
      SHUTTLE_DAEMON_SETTLE_MS: ['500', (c) => c.daemon.settleMs, 500],
      SHUTTLE_DAEMON_BATCH_MS: ['0', (c) => c.daemon.batchMs, 0],
      SHUTTLE_DAEMON_RETRY_MS: ['5000', (c) => c.daemon.retryMs, 5000],
      SHUTTLE_DAEMON_WATCH_MOUNTS: ['/media:/mnt/cards', (c) => c.daemon.watchMounts, ['/media', '/mnt/cards']],
      SHUTTLE_DAEMON_MAX_JOBS: ['2', (c) => c.daemon.maxJobs, 2],
      SHUTTLE_DAEMON_WATCHDOG: ['false', (c) => c.daemon.watchdog, false],
      SHUTTLE_DAEMON_USB_CAMERAS: ['false', (c) => c.daemon.usbCameras, false],
      SHUTTLE_DAEMON_USB_SETTLE_MS: ['1000', (c) => c.daemon.usbSettleMs, 1000],
      SHUTTLE_DAEMON_USB_POLL_MS: ['250', (c) => c.daemon.usbPollMs, 250],
      SHUTTLE_DAEMON_NETWORK_CAMERAS: ['true', (c) => c.daemon.networkCameras, true],
      SHUTTLE_DAEMON_ALLOWED_SOURCES: ['/srv/ingest:/mnt/x', (c) => c.daemon.allowedSources, ['/srv/ingest', '/mnt/x']],
      SHUTTLE_STATUS_LIGHT_DRIVER: ['busylight', (c) => c.statusLight?.driver, 'busylight'],
      SHUTTLE_STATUS_LIGHT_PATH: ['/dev/hidraw3', (c) => c.statusLight?.path, '/dev/hidraw3'],
      SHUTTLE_STATUS_LIGHT_SERIAL: ['3a1b2c3d', (c) => c.statusLight?.serial, '3a1b2c3d'],
      SHUTTLE_SOUND_DONE: ['/usr/share/sounds/done.wav', (c) => c.sound?.done, '/usr/share/sounds/done.wav'],
      SHUTTLE_SOUND_FAILED: ['/usr/share/sounds/failed.wav', (c) => c.sound?.failed, '/usr/share/sounds/failed.wav'],
      SHUTTLE_SOUND_DEVICE: ['plughw:0,0', (c) => c.sound?.device, 'plughw:0,0'],
      SHUTTLE_EVENTS_MQTT: ['mqtt://broker:1883/studio', (c) => c.events?.mqtt, 'mqtt://broker:1883/studio'],
      SHUTTLE_EVENTS_MQTT_USERNAME: ['cart', (c) => c.events?.mqttUsername, 'cart'],
      SHUTTLE_EVENTS_MQTT_PASSWORD: ['pw', (c) => c.events?.mqttPassword, 'pw'],
      SHUTTLE_EVENTS_MQTT_PASSWORD_FILE: ['/etc/shuttle/mqtt', (c) => c.events?.mqttPasswordFile, '/etc/shuttle/mqtt'],
      SHUTTLE_EVENTS_MQTT_PROGRESS_MS: ['1000', (c) => c.events?.mqttProgressMs, 1000],
      SHUTTLE_EVENTS_MQTT_QUEUE: ['50', (c) => c.events?.mqttQueue, 50],
      SHUTTLE_NOTIFY_ON: ['failed,disk-low', (c) => c.notify?.on, ['failed', 'disk-low']],
      SHUTTLE_NOTIFY_WINDOW_MS: ['0', (c) => c.notify?.windowMs, 0],
      SHUTTLE_NOTIFY_REPEAT_MS: ['60000', (c) => c.notify?.repeatMs, 60000],
      SHUTTLE_NOTIFY_DISK_LOW_BYTES: ['5000', (c) => c.notify?.diskLowBytes, 5000],
      SHUTTLE_NOTIFY_CLOUD_UNREACHABLE_MINUTES: ['2.5', (c) => c.notify?.cloudUnreachableMinutes, 2.5],
      SHUTTLE_NOTIFY_CHECK_MS: ['1000', (c) => c.notify?.checkMs, 1000],
      SHUTTLE_NOTIFY_RETRIES: ['1', (c) => c.notify?.retries, 1],
      SHUTTLE_NOTIFY_RETRY_MS: ['500', (c) => c.notify?.retryMs, 500],
      SHUTTLE_NOTIFY_WEBHOOK_URL: ['https://h/x', (c) => c.notify?.webhook?.url, 'https://h/x'],
      SHUTTLE_NOTIFY_WEBHOOK_SECRET: ['s', (c) => c.notify?.webhook?.secret, 's', { SHUTTLE_NOTIFY_WEBHOOK_URL: 'https://h/x' }],
      SHUTTLE_NOTIFY_WEBHOOK_SECRET_FILE: ['/etc/s', (c) => c.notify?.webhook?.secretFile, '/etc/s', { SHUTTLE_NOTIFY_WEBHOOK_URL: 'https://h/x' }],
      SHUTTLE_NOTIFY_NTFY_URL: ['https://ntfy.sh/t', (c) => c.notify?.ntfy?.url, 'https://ntfy.sh/t'],
      SHUTTLE_NOTIFY_NTFY_TOKEN: ['tk', (c) => c.notify?.ntfy?.token, 'tk', { SHUTTLE_NOTIFY_NTFY_URL: 'https://ntfy.sh/t' }],
      SHUTTLE_NOTIFY_NTFY_TOKEN_FILE: ['/etc/t', (c) => c.notify?.ntfy?.tokenFile, '/etc/t', { SHUTTLE_NOTIFY_NTFY_URL: 'https://ntfy.sh/t' }],
      ...Object.fromEntries(
        (
          [
            ['SMTP', 'smtp://mail:25', (c: Config) => c.notify?.email?.smtp, 'smtp://mail:25'],
            ['FROM', 'a@b.c', (c: Config) => c.notify?.email?.from, 'a@b.c'],
            ['TO', 'x@y.z,u@v.w', (c: Config) => c.notify?.email?.to, ['x@y.z', 'u@v.w']],
            ['USERNAME', 'cart', (c: Config) => c.notify?.email?.username, 'cart'],
            ['PASSWORD', 'pw', (c: Config) => c.notify?.email?.password, 'pw'],
            ['PASSWORD_FILE', '/etc/p', (c: Config) => c.notify?.email?.passwordFile, '/etc/p'],
          ] as const
        ).map(([k, raw, read, expected]) => [
          `SHUTTLE_NOTIFY_EMAIL_${k}`,
          [raw, read, expected, { SHUTTLE_NOTIFY_EMAIL_SMTP: 'smtp://mail:25', SHUTTLE_NOTIFY_EMAIL_FROM: 'a@b.c', SHUTTLE_NOTIFY_EMAIL_TO: 'x@y.z,u@v.w' }],
        ]),
      ),
    };
    const documented = configEnvVariables()
      .filter((v) => v.key !== undefined)
      .map((v) => v.name);
    expect(documented.sort()).toEqual(Object.keys(samples).sort());
    for (const [name, [raw, read, expected, beside]] of Object.entries(samples)) {
      expect(read(loadConfig({ env: { ...beside, [name]: raw } })), name).toEqual(expected);
    }
  });

  test('the help text lists every variable with its format', () => {
    const help = envVariablesHelp();
    for (const v of configEnvVariables()) expect(help).toContain(v.name);
    expect(help).toMatch(/SHUTTLE_INGEST_MANIFEST_HASHES +.*\[comma-separated list of: xxh128, xxh64, md5\]/);
    expect(help).toContain('SHUTTLE_LOCK_DIR');
  });

  test('misspelt SHUTTLE_ variables are reported as unknown', () => {
    expect(unknownEnvVariables({ SHUTTLE_INGEST_TIMEZONE: 'UTC', SHUTTLE_STATION: 'a', SHUTTLE_LOCK_DIR: '/x', PATH: '/bin' })).toEqual(['SHUTTLE_INGEST_TIMEZONE']);
  });
});

describe('state directory', () => {
  const config = { stateDir: '/from/config' };
  test('the --state flag comes first', () => {
    expect(resolveStateDir({ flag: '/from/flag', env: { SHUTTLE_STATE_DIR: '/from/env' }, config })).toBe('/from/flag');
  });
  test('then $SHUTTLE_STATE_DIR, then the config key', () => {
    expect(resolveStateDir({ env: { SHUTTLE_STATE_DIR: '/from/env', STATE_DIRECTORY: '/sd' }, config })).toBe('/from/env');
    expect(resolveStateDir({ env: { STATE_DIRECTORY: '/sd' }, config })).toBe('/from/config');
  });
  test("then systemd's STATE_DIRECTORY, first of its colon-separated paths", () => {
    expect(resolveStateDir({ env: { STATE_DIRECTORY: '/var/lib/shuttle:/var/lib/other', XDG_STATE_HOME: '/xdg' } })).toBe('/var/lib/shuttle');
  });
  test('then $XDG_STATE_HOME/shuttle, ignoring a relative one, then ~/.local/state/shuttle', () => {
    expect(resolveStateDir({ env: { XDG_STATE_HOME: '/xdg', HOME: '/home/u' } })).toBe('/xdg/shuttle');
    expect(resolveStateDir({ env: { XDG_STATE_HOME: 'rel', HOME: '/home/u' } })).toBe('/home/u/.local/state/shuttle');
    expect(resolveStateDir({ env: {} })).toBe(join(homedir(), '.local', 'state', 'shuttle'));
  });
  test('a relative flag is made absolute', () => {
    expect(resolveStateDir({ flag: 'st', env: {} })).toBe(join(process.cwd(), 'st'));
  });
});
