/**
 * S3's additional checksums (aws profile) through the whole uploader: the values sent on PUTs, parts,
 * Create and Complete, and the check of the HEAD afterwards. No AWS runs here, so the target is an
 * in-memory one that computes and checks these checksums the way AWS documents it: a unit test of the
 * uploader, whose requests themselves are captured at the HTTP level in upload-profile-requests.test.ts.
 * The CRC-64/NVME reference is a bitwise implementation of the polynomial, not the SDK's table code.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShuttleError, isShuttleError } from '../src/errors.js';
import type { ObjectChecksum } from '../src/upload/checksum.js';
import { MiB } from '../src/upload/multipart.js';
import type { CompletedPartRef, CompleteMultipartOptions, CreateMultipartOptions, HeadOptions, PartBody, RemoteObject, UploadTarget } from '../src/upload/target.js';
import { uploadFile, type UploadFileOptions } from '../src/upload/uploader.js';
import { fileUploadOptions, writeTestFile, type TestFile } from './support/upload-fixtures.js';

/** CRC-64/NVME bit by bit (reflected polynomial 0x9a6c9329ac4bc9b5, init and xorout all ones), base64 big-endian. */
function referenceCrc64Nvme(data: Uint8Array): string {
  const POLY_HI = 0x9a6c9329;
  const POLY_LO = 0xac4bc9b5;
  let hi = 0xffffffff;
  let lo = 0xffffffff;
  for (const byte of data) {
    lo = (lo ^ byte) >>> 0;
    for (let bit = 0; bit < 8; bit++) {
      const carry = lo & 1;
      lo = ((lo >>> 1) | ((hi & 1) << 31)) >>> 0;
      hi = hi >>> 1;
      if (carry) {
        hi = (hi ^ POLY_HI) >>> 0;
        lo = (lo ^ POLY_LO) >>> 0;
      }
    }
  }
  const out = Buffer.alloc(8);
  out.writeUInt32BE((hi ^ 0xffffffff) >>> 0, 0);
  out.writeUInt32BE((lo ^ 0xffffffff) >>> 0, 4);
  return out.toString('base64');
}

const b64 = (alg: 'md5' | 'sha256', data: Uint8Array): string => createHash(alg).update(data).digest('base64');
const hex = (alg: 'md5' | 'sha256', data: Uint8Array): string => createHash(alg).update(data).digest('hex');

function checksumOf(algorithm: ObjectChecksum, data: Uint8Array): string {
  return algorithm === 'sha256' ? b64('sha256', data) : referenceCrc64Nvme(data);
}

function badDigest(what: string): ShuttleError {
  return new ShuttleError('UPLOAD_FAILED', `BadDigest: ${what}`, { context: { status: 400, s3Code: 'BadDigest' } });
}

async function readBody(body: PartBody): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body.open()) chunks.push(c as Buffer);
  const data = Buffer.concat(chunks);
  if (hex('md5', data) !== body.md5) throw badDigest('Content-MD5');
  if (hex('sha256', data) !== body.sha256) throw badDigest('x-amz-content-sha256');
  if (body.checksum !== undefined && checksumOf(body.checksum.algorithm, data) !== body.checksum.value) throw badDigest(`x-amz-checksum-${body.checksum.algorithm}`);
  return data;
}

interface Stored {
  data: Buffer;
  etag: string;
  metadata: Record<string, string>;
  checksums: Partial<Record<ObjectChecksum, string>>;
}

/** Objects and multipart uploads in memory, with AWS's rules for additional checksums. */
class ChecksummingTarget implements UploadTarget {
  readonly bucket = 'archive';
  readonly objects = new Map<string, Stored>();
  readonly uploads = new Map<string, { key: string; metadata: Record<string, string>; checksum?: CreateMultipartOptions['checksum']; parts: Map<number, Buffer> }>();
  /** Set to make HEAD report a wrong stored checksum. */
  lieOnHead = false;
  #ids = 0;

  async head(key: string, options?: HeadOptions): Promise<RemoteObject | undefined> {
    const o = this.objects.get(key);
    if (o === undefined) return undefined;
    const checksums = options?.checksums === true ? { ...o.checksums } : {};
    if (this.lieOnHead) for (const k of Object.keys(checksums) as ObjectChecksum[]) checksums[k] = b64('sha256', Buffer.from('not these bytes'));
    return { size: o.data.length, etag: o.etag, metadata: o.metadata, checksums };
  }

  async put(key: string, body: PartBody, metadata: Record<string, string>): Promise<{ etag: string }> {
    const data = await readBody(body);
    const checksums = body.checksum !== undefined ? { [body.checksum.algorithm]: body.checksum.value } : {};
    this.objects.set(key, { data, etag: `"${hex('md5', data)}"`, metadata, checksums });
    return { etag: `"${hex('md5', data)}"` };
  }

  async createMultipart(key: string, metadata: Record<string, string>, options?: CreateMultipartOptions): Promise<string> {
    const id = `u${++this.#ids}`;
    this.uploads.set(id, { key, metadata, ...(options?.checksum !== undefined ? { checksum: options.checksum } : {}), parts: new Map() });
    return id;
  }

  async uploadPart(_key: string, uploadId: string, partNumber: number, body: PartBody): Promise<{ etag: string }> {
    const upload = this.uploads.get(uploadId);
    if (upload === undefined) throw new ShuttleError('UPLOAD_FAILED', 'NoSuchUpload', { context: { status: 404 } });
    if (upload.checksum?.type === 'COMPOSITE' && body.checksum?.algorithm !== upload.checksum.algorithm) throw badDigest('part without its checksum');
    const data = await readBody(body);
    upload.parts.set(partNumber, data);
    return { etag: `"${hex('md5', data)}"` };
  }

  async listParts(): Promise<undefined> {
    return undefined;
  }

  async completeMultipart(key: string, uploadId: string, parts: readonly CompletedPartRef[], options?: CompleteMultipartOptions): Promise<{ etag: string }> {
    const upload = this.uploads.get(uploadId);
    if (upload === undefined) throw new ShuttleError('UPLOAD_FAILED', 'NoSuchUpload', { context: { status: 404 } });
    const datas = parts.map((p) => upload.parts.get(p.partNumber) as Buffer);
    const data = Buffer.concat(datas);
    const checksums: Partial<Record<ObjectChecksum, string>> = {};
    const wanted = upload.checksum;
    if (wanted?.type === 'FULL_OBJECT') {
      const actual = checksumOf(wanted.algorithm, data);
      if (options?.checksum?.value !== actual) throw badDigest('full-object checksum at Complete');
      checksums[wanted.algorithm] = actual;
    } else if (wanted?.type === 'COMPOSITE') {
      for (const [i, p] of parts.entries()) if (p.checksum?.value !== checksumOf(wanted.algorithm, datas[i]!)) throw badDigest(`part ${p.partNumber} checksum at Complete`);
      const composite = createHash('sha256');
      for (const d of datas) composite.update(createHash('sha256').update(d).digest());
      checksums[wanted.algorithm] = `${composite.digest('base64')}-${parts.length}`;
    }
    const md5s = createHash('md5');
    for (const d of datas) md5s.update(createHash('md5').update(d).digest());
    const etag = `"${md5s.digest('hex')}-${parts.length}"`;
    this.objects.set(key, { data, etag, metadata: upload.metadata, checksums });
    this.uploads.delete(uploadId);
    return { etag };
  }

  async abortMultipart(_key: string, uploadId: string): Promise<void> {
    this.uploads.delete(uploadId);
  }

  async listMultipartUploads(key: string): Promise<string[]> {
    return [...this.uploads].filter(([, u]) => u.key === key).map(([id]) => id);
  }

  async deleteObject(key: string): Promise<void> {
    this.objects.delete(key);
  }

  async listFolder(): Promise<string[]> {
    return [];
  }

  async listFolderUploads(): Promise<[]> {
    return [];
  }
}

let dir: string;
let small: TestFile;
let big: TestFile;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shuttle-upload-checksums-'));
  small = await writeTestFile(dir, 'IMG_0001.JPG', 700_001);
  big = await writeTestFile(dir, 'MVI_0002.MP4', 11 * MiB + 3);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function options(target: UploadTarget, f: TestFile, checksum: ObjectChecksum | undefined, extra: Partial<UploadFileOptions> = {}): UploadFileOptions {
  return fileUploadOptions(target.bucket, f, `shoot/${f.path.split('/').at(-1)}`, { target, provider: 'aws', checksum, ...extra });
}

describe('additional checksums through the uploader (aws profile)', () => {
  it('sha256: the file’s SHA-256 on a single PUT, a composite over the parts’ SHA-256s for multipart, both checked by HEAD', async () => {
    const target = new ChecksummingTarget();
    const one = await uploadFile(options(target, small, 'sha256'));
    const many = await uploadFile(options(target, big, 'sha256'));
    expect(one.method).toBe('single');
    expect(many.method).toBe('multipart');
    expect(one.verifiedBy).toContain('checksum-sha256');
    expect(many.verifiedBy).toContain('checksum-sha256');
    expect(target.objects.get(one.key)?.checksums).toEqual({ sha256: Buffer.from(small.sha256, 'hex').toString('base64') });
    const data = target.objects.get(many.key)!.data;
    const parts = [data.subarray(0, 5 * MiB), data.subarray(5 * MiB, 10 * MiB), data.subarray(10 * MiB)];
    const composite = createHash('sha256');
    for (const p of parts) composite.update(createHash('sha256').update(p).digest());
    expect(target.objects.get(many.key)?.checksums).toEqual({ sha256: `${composite.digest('base64')}-3` });
  });

  it('crc64nvme: the whole object’s CRC-64/NVME, single and multipart, equal to a bitwise reference', async () => {
    expect(Buffer.from(referenceCrc64Nvme(Buffer.from('123456789')), 'base64').toString('hex')).toBe('ae8b14860a799888');
    const target = new ChecksummingTarget();
    const one = await uploadFile(options(target, small, 'crc64nvme'));
    const many = await uploadFile(options(target, big, 'crc64nvme'));
    expect(many.method).toBe('multipart');
    for (const [r, f] of [
      [one, small],
      [many, big],
    ] as const) {
      expect(r.verifiedBy).toContain('checksum-crc64nvme');
      expect(target.objects.get(r.key)?.checksums).toEqual({ crc64nvme: referenceCrc64Nvme(target.objects.get(r.key)!.data) });
      expect(hex('sha256', target.objects.get(r.key)!.data)).toBe(f.sha256);
    }
  });

  it('a HEAD that reports another checksum fails the upload as UPLOAD_VERIFY and removes the object', async () => {
    const target = new ChecksummingTarget();
    target.lieOnHead = true;
    const error = await uploadFile(options(target, small, 'crc64nvme')).catch((e: unknown) => e);
    expect(isShuttleError(error) && error.code).toBe('UPLOAD_VERIFY');
    expect(isShuttleError(error) && error.context['field']).toBe('x-amz-checksum-crc64nvme');
    expect(target.objects.size).toBe(0);
  });

  it('without a checksum configured, nothing asks for or sends one', async () => {
    const target = new ChecksummingTarget();
    const r = await uploadFile(options(target, big, undefined));
    expect(r.verifiedBy.filter((v) => v.startsWith('checksum-'))).toEqual([]);
    expect(target.objects.get(r.key)?.checksums).toEqual({});
  });

  it('is refused for a provider that does not take additional checksums', async () => {
    const error = await uploadFile(options(new ChecksummingTarget(), small, 'sha256', { provider: 'swift' })).catch((e: unknown) => e);
    expect(isShuttleError(error) && error.code).toBe('CONFIG_INVALID');
  });
});

describe('upload.checksum in the config', () => {
  it('stops the upload runtime at start-up when the provider does not take additional checksums, naming both', async () => {
    const { loadConfig } = await import('../src/config/index.js');
    const { Journal } = await import('../src/store/journal.js');
    const { createUploadRuntime } = await import('../src/upload/from-config.js');
    const { silentLogger } = await import('../src/log.js');
    const journal = Journal.open(join(dir, 'state'));
    try {
      const env = { AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 'b' };
      const config = loadConfig({ env: { SHUTTLE_UPLOAD_CHECKSUM: 'sha256', SHUTTLE_UPLOAD_PROVIDER: 'swift', SHUTTLE_UPLOAD_ENDPOINT: 'http://127.0.0.1:1' } });
      const error = await createUploadRuntime({ config, journal, logger: silentLogger, env }).then(
        (r) => r.close(),
        (e: unknown) => e,
      );
      expect(isShuttleError(error) && error.code).toBe('CONFIG_INVALID');
      expect(String((error as Error).message)).toMatch(/sha256.*swift/);
      const aws = loadConfig({ env: { SHUTTLE_UPLOAD_CHECKSUM: 'crc64nvme', SHUTTLE_UPLOAD_PROVIDER: 'aws', SHUTTLE_UPLOAD_REGION: 'eu-west-1' } });
      (await createUploadRuntime({ config: aws, journal, logger: silentLogger, env })).close();
    } finally {
      journal.close();
    }
  });
});
