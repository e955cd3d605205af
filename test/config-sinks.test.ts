import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { loadConfig, normalizeConfig, resolveSecret } from '../src/config/index.js';
import { isShuttleError } from '../src/errors.js';

const EXAMPLE = join(import.meta.dirname, '..', 'config', 'shuttle.example.toml');

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shuttle-config-sinks-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function rejection(f: () => unknown): { message: string; context: Record<string, unknown> } {
  try {
    f();
  } catch (err) {
    if (isShuttleError(err)) return { message: err.message, context: err.context };
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('[events] and [notify]', () => {
  test('the-commented-examples-of-both-sections-are-valid-once-uncommented', async () => {
    const text = await readFile(EXAMPLE, 'utf8');
    const block = text.slice(text.indexOf("# The daemon's events"));
    const uncommented = block
      .split('\n')
      .filter((l) => /^# (\[[a-z.]+\]|[a-z_]+ = )/.test(l))
      .map((l) => l.slice(2))
      .join('\n');
    const config = loadConfig({ file: await writeConfig(uncommented), env: {} });
    expect(config.events).toMatchObject({ mqtt: 'mqtt://broker.studio.lan:1883/shuttle', mqttProgressMs: 5000, mqttQueue: 1000 });
    expect(config.notify).toMatchObject({
      on: ['done', 'failed', 'disk-low', 'cloud-unreachable'],
      webhook: { url: 'https://hooks.example.net/shuttle' },
      ntfy: { url: 'https://ntfy.sh/cart-1-cards' },
      email: { smtp: 'smtp://mail.example.net:587', to: ['dit@example.net'] },
    });
  });

  test('a-rejected-secret-or-credential-url-is-never-quoted', () => {
    const url = rejection(() => normalizeConfig({ events: { mqtt: 'http://cart:hunter2@broker/x' } }));
    expect(url.message).toContain('events.mqtt: "http://cart:***@broker/x" is not an MQTT URL');
    const secret = rejection(() => normalizeConfig({ notify: { webhook: { url: 'https://h/x', secret: '' } } }));
    expect(secret.message).toContain('notify.webhook.secret: "[redacted]" is empty');
    // A misspelt key is unknown to the schema, but its name says what it holds.
    const typo = rejection(() => normalizeConfig({ events: { mqtt_pasword: 'hunter2' } as never }));
    expect(`${typo.message} ${JSON.stringify(typo.context)}`).not.toContain('hunter2');
    for (const r of [url, secret]) expect(JSON.stringify(r.context)).not.toContain('hunter2');
  });

  test('a-secret-comes-from-the-config-then-its-file-then-the-systemd-credentials-directory', async () => {
    const creds = join(dir, 'creds');
    await writeFile(join(dir, 'secret-file'), 'from-file\n');
    await mkdir(creds);
    await writeFile(join(creds, 'webhook_secret'), 'from-credentials\n');
    const env = { CREDENTIALS_DIRECTORY: creds };
    const spec = { credential: 'webhook_secret', what: 'the webhook secret' };
    expect(resolveSecret({ ...spec, value: 'inline', file: join(dir, 'secret-file') }, env)).toBe('inline');
    expect(resolveSecret({ ...spec, file: join(dir, 'secret-file') }, env)).toBe('from-file');
    expect(resolveSecret(spec, env)).toBe('from-credentials');
    expect(resolveSecret(spec, {})).toBeUndefined();
    const missing = rejection(() => resolveSecret({ ...spec, file: join(dir, 'nope') }, env));
    expect(missing.message).toBe(`the webhook secret file ${join(dir, 'nope')} does not exist`);
  });
});

async function writeConfig(text: string): Promise<string> {
  const file = join(dir, 'config.toml');
  await writeFile(file, text);
  return file;
}
