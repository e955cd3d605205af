import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { createS3Client, describeS3ClientOptions, resolveS3ClientOptions } from '../src/upload/client.js';
import { PROVIDERS, detectProvider, type ProviderName } from '../src/upload/provider.js';

const run = promisify(execFile);
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY';
const KEY_ID = 'AKIAIOSFODNN7SHUTTLE';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    return isShuttleError(error) ? error.code : 'other';
  }
  return undefined;
}

describe('S3 provider profiles', () => {
  it('never lets the SDK send aws-chunked checksum bodies, on any provider', () => {
    for (const p of Object.values(PROVIDERS)) expect(p.requestChecksumCalculation, p.name).toBe('WHEN_REQUIRED');
  });

  it('validates response checksums only on AWS, which returns them', () => {
    for (const p of Object.values(PROVIDERS)) {
      expect(p.responseChecksumValidation, p.name).toBe(p.name === 'aws' ? 'WHEN_SUPPORTED' : 'WHEN_REQUIRED');
    }
  });

  it('uses path-style addressing for self-hosted servers', () => {
    const pathStyle = (['minio', 'ceph', 'swift', 'generic'] as ProviderName[]).map((n) => PROVIDERS[n].forcePathStyle);
    expect(pathStyle).toEqual([true, true, true, true]);
    expect(PROVIDERS.aws.forcePathStyle).toBe(false);
  });

  it('trusts no ETag format on an unknown server', () => {
    const g = PROVIDERS.generic;
    expect([g.singlePartEtagIsMd5, g.multipartEtagIsMd5OfParts, g.partEtagIsMd5]).toEqual([false, false, false]);
  });

  it('guesses the provider from well-known endpoint hosts', () => {
    expect(detectProvider(undefined)).toBe('aws');
    expect(detectProvider('https://s3.eu-central-1.amazonaws.com')).toBe('aws');
    expect(detectProvider('https://abc123.r2.cloudflarestorage.com')).toBe('r2');
    expect(detectProvider('https://s3.us-west-004.backblazeb2.com')).toBe('b2');
    expect(detectProvider('http://127.0.0.1:8080')).toBe('generic');
  });
});

describe('S3 client options', () => {
  it('takes the endpoint from AWS_ENDPOINT_URL_S3 before AWS_ENDPOINT_URL, and explicit options before both', () => {
    const env = { AWS_ENDPOINT_URL_S3: 'http://s3only:9000', AWS_ENDPOINT_URL: 'http://all:9000' };
    expect(resolveS3ClientOptions({}, env).endpoint).toBe('http://s3only:9000');
    expect(resolveS3ClientOptions({}, { AWS_ENDPOINT_URL: 'http://all:9000' }).endpoint).toBe('http://all:9000');
    expect(resolveS3ClientOptions({ endpoint: 'http://mine:1' }, env).endpoint).toBe('http://mine:1');
    expect(resolveS3ClientOptions({}, { ...env, AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'true' }).endpoint).toBeUndefined();
  });

  it('takes region and profile from the environment unless given, and a provider default for non-AWS servers', () => {
    expect(resolveS3ClientOptions({}, { AWS_REGION: 'eu-west-3', AWS_PROFILE: 'studio' })).toMatchObject({ region: 'eu-west-3', awsProfile: 'studio' });
    expect(resolveS3ClientOptions({ region: 'us-west-2', awsProfile: 'x' }, { AWS_REGION: 'eu-west-3' })).toMatchObject({ region: 'us-west-2', awsProfile: 'x' });
    expect(resolveS3ClientOptions({ provider: 'r2' }, {}).region).toBe('auto');
    expect(resolveS3ClientOptions({}, {}).region).toBeUndefined(); // AWS: left to the SDK's config files
  });

  it('picks the provider profile from the endpoint, or as named', () => {
    expect(resolveS3ClientOptions({}, { AWS_ENDPOINT_URL: 'http://10.0.0.5:7480' })).toMatchObject({ provider: PROVIDERS.generic, forcePathStyle: true });
    expect(resolveS3ClientOptions({ provider: 'ceph', forcePathStyle: false }, {})).toMatchObject({ provider: PROVIDERS.ceph, forcePathStyle: false });
  });

  it('rejects unknown providers, endpoints that are not http(s) URLs, and half credentials', () => {
    expect(codeOf(() => resolveS3ClientOptions({ provider: 'dropbox' as ProviderName }, {}))).toBe('CONFIG_INVALID');
    expect(codeOf(() => resolveS3ClientOptions({ endpoint: 'not a url' }, {}))).toBe('CONFIG_INVALID');
    expect(codeOf(() => resolveS3ClientOptions({ endpoint: 'ftp://host' }, {}))).toBe('CONFIG_INVALID');
    expect(codeOf(() => resolveS3ClientOptions({ credentials: { accessKeyId: 'a', secretAccessKey: '' } }, {}))).toBe('CONFIG_INVALID');
  });

  it('configures the SDK client for Content-MD5 uploads with one attempt per call', async () => {
    const { client } = createS3Client({ provider: 'swift', endpoint: 'http://127.0.0.1:1', credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET } }, {});
    expect(await client.config.requestChecksumCalculation()).toBe('WHEN_REQUIRED');
    expect(await client.config.responseChecksumValidation()).toBe('WHEN_REQUIRED');
    expect(client.config.forcePathStyle).toBe(true);
    expect(await client.config.maxAttempts()).toBe(1);
    expect(await client.config.region()).toBe('us-east-1');
    client.destroy();
  });

  it('writes no key or key id into a log line about the client, even when the whole config is logged', async () => {
    // Through the project's real logger (src/log.ts), in a child process since it writes to a file descriptor.
    const script = `
      import { createLogger } from './src/log.js';
      import { resolveS3ClientOptions, describeS3ClientOptions } from './src/upload/client.js';
      const resolved = resolveS3ClientOptions({ provider: 'swift', endpoint: 'http://127.0.0.1:8080', credentials: { accessKeyId: '${KEY_ID}', secretAccessKey: '${SECRET}', sessionToken: 'TOKEN-${SECRET}' } }, {});
      const log = createLogger({ fd: 1, level: 'info' });
      log.info({ s3: describeS3ClientOptions(resolved) }, 's3 client');
      log.info({ s3: resolved }, 's3 client (raw)');
    `;
    const { stdout } = await run(process.execPath, ['--import', './test/support/ts-resolve-hooks.mjs', '--input-type=module', '-e', script], {
      cwd: process.cwd(),
      env: { ...process.env, SHUTTLE_LOG_LEVEL: 'info' },
    });
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(JSON.parse(lines[0] ?? '{}').s3).toMatchObject({ provider: 'swift', endpoint: 'http://127.0.0.1:8080', keySource: 'explicit' });
    expect(stdout).not.toContain(SECRET);
    expect(stdout).not.toContain(KEY_ID);
    expect(stdout).not.toContain('TOKEN-');
  });

  it('describes the client for logs without any credential field', () => {
    const resolved = resolveS3ClientOptions({ credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET } }, {});
    const text = JSON.stringify(describeS3ClientOptions(resolved));
    expect(text).not.toContain(SECRET);
    expect(text).not.toContain(KEY_ID);
  });
});
