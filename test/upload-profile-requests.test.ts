/**
 * The exact requests the profiles that no server here can run (aws, r2, b2, minio) produce, captured at
 * the HTTP level: addressing, signing, Content-MD5, the signed payload hash, and none of the streaming
 * checksum framing (aws-chunked, trailers) that non-AWS servers reject. A plain HTTP listener records each
 * request and answers what the SDK needs to go on (an ETag, an UploadId); the SDK believes it talks to
 * s3.example.test, and one middleware, innermost, after signing, sends the connection to the listener.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createS3Client } from '../src/upload/client.js';
import { PartReader, partBody, signedPart } from '../src/upload/part-reader.js';
import type { ProviderName } from '../src/upload/provider.js';
import { S3Target } from '../src/upload/s3-target.js';

const BUCKET = 'photos';
const ENDPOINT_HOST = 's3.example.test:9000';
const KEY_ID = 'AKIAIOSFODNN7SHUTTLE';
const SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY';

interface Captured {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

let server: Server;
let port: number;
let dir: string;
let file: string;
let bytes: Buffer;
const captured: Captured[] = [];

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      captured.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      const query = new URL(req.url ?? '/', 'http://x').searchParams;
      if (req.method === 'POST' && query.has('uploads')) {
        res.writeHead(200, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult><Bucket>${BUCKET}</Bucket><Key>k</Key><UploadId>upload-1</UploadId></InitiateMultipartUploadResult>`,
        );
      } else if (req.method === 'POST' && query.has('uploadId')) {
        res.writeHead(200, { 'content-type': 'application/xml' });
        res.end(`<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUploadResult><Bucket>${BUCKET}</Bucket><Key>k</Key><ETag>"abc-1"</ETag></CompleteMultipartUploadResult>`);
      } else if (req.method === 'HEAD') {
        res.writeHead(200, { 'content-length': '3', etag: '"abc-1"', 'x-amz-checksum-crc64nvme': 'rosUhgp5mIg=', 'x-amz-checksum-type': 'FULL_OBJECT' });
        res.end();
      } else if (req.method === 'PUT') {
        res.writeHead(200, { etag: `"${md5(body)}"` });
        res.end();
      } else {
        res.writeHead(400);
        res.end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  dir = await mkdtemp(join(tmpdir(), 'shuttle-profile-requests-'));
  bytes = Buffer.concat(Array.from({ length: 3000 }, (_, i) => Buffer.from(createHash('sha256').update(`${i}`).digest())));
  file = join(dir, 'IMG_0001.CR3');
  await writeFile(file, bytes);
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

/** A client as Shuttle makes it for `provider`, whose connections go to the listener whatever the host. */
function clientFor(provider: ProviderName, region?: string): S3Client {
  const { client } = createS3Client(
    { provider, endpoint: `http://${ENDPOINT_HOST}`, credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET }, ...(region !== undefined ? { region } : {}) },
    {},
  );
  client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { hostname: string; port?: number };
      request.hostname = '127.0.0.1';
      request.port = port;
      return next(args);
    },
    { step: 'deserialize', priority: 'low', name: 'toTestListener' },
  );
  return client;
}

async function signedWholeFile(): Promise<ReturnType<typeof partBody>> {
  const reader = await PartReader.open(file, bytes.length, { partSha256: true });
  const part = signedPart(await reader.read(bytes.length));
  await reader.close();
  return partBody(file, part);
}

const cases: Array<{ provider: ProviderName; region: string; virtualHosted: boolean; explicitRegion?: string }> = [
  { provider: 'aws', region: 'eu-central-1', virtualHosted: true, explicitRegion: 'eu-central-1' },
  { provider: 'r2', region: 'auto', virtualHosted: false },
  { provider: 'b2', region: 'us-east-1', virtualHosted: true },
  { provider: 'minio', region: 'us-east-1', virtualHosted: false },
];

describe.each(cases)('requests of the $provider profile', ({ provider, region, virtualHosted, explicitRegion }) => {
  it(`${virtualHosted ? 'virtual-hosted' : 'path-style'}, SigV4 for ${region}, Content-MD5 and signed SHA-256 on the PUT, the Create and the part; no aws-chunked`, async () => {
    captured.length = 0;
    const client = clientFor(provider, explicitRegion);
    const target = new S3Target(client, BUCKET);
    const metadata = { sha256: sha256(bytes) };
    try {
      await target.put('2026/IMG_0001.CR3', await signedWholeFile(), metadata);
      const uploadId = await target.createMultipart('2026/MVI_0002.MP4', metadata);
      expect(uploadId).toBe('upload-1');
      await target.uploadPart('2026/MVI_0002.MP4', uploadId, 1, await signedWholeFile());
    } finally {
      client.destroy();
    }

    expect(captured.map((r) => r.method)).toEqual(['PUT', 'POST', 'PUT']);
    const [put, create, part] = captured as [Captured, Captured, Captured];
    const host = virtualHosted ? `${BUCKET}.${ENDPOINT_HOST}` : ENDPOINT_HOST;
    const path = (key: string): string => (virtualHosted ? `/${key}` : `/${BUCKET}/${key}`);
    expect(new URL(put.url, 'http://x').pathname).toBe(path('2026/IMG_0001.CR3'));
    expect(new URL(part.url, 'http://x').pathname).toBe(path('2026/MVI_0002.MP4'));
    expect(new URL(part.url, 'http://x').searchParams.get('uploadId')).toBe('upload-1');
    expect(put.headers['x-amz-meta-sha256']).toBe(sha256(bytes));
    expect(create.headers['x-amz-meta-sha256']).toBe(sha256(bytes));

    for (const r of captured) {
      expect(r.headers.host).toBe(host);
      const auth = r.headers.authorization ?? '';
      expect(auth).toMatch(new RegExp(`^AWS4-HMAC-SHA256 Credential=${KEY_ID}/\\d{8}/${region}/s3/aws4_request, SignedHeaders=[^,]*host[^,]*x-amz-content-sha256`));
      expect(JSON.stringify(r.headers)).not.toContain(SECRET);
      // The streaming checksum framing Swift, Ceph, R2 and B2 reject or store verbatim.
      expect(r.headers['content-encoding'] ?? '').not.toContain('aws-chunked');
      expect(
        Object.keys(r.headers).filter(
          (h) => h.startsWith('x-amz-checksum-') || h === 'x-amz-trailer' || h === 'x-amz-decoded-content-length' || h === 'x-amz-sdk-checksum-algorithm',
        ),
      ).toEqual([]);
      expect(r.headers.expect).toBeUndefined();
    }
    for (const r of [put, part]) {
      expect(r.body.equals(bytes)).toBe(true);
      expect(r.headers['content-length']).toBe(String(bytes.length));
      expect(r.headers['content-md5']).toBe(Buffer.from(md5(bytes), 'hex').toString('base64'));
      expect(r.headers['x-amz-content-sha256']).toBe(sha256(bytes));
      expect(r.headers.authorization).toMatch(/SignedHeaders=[^,]*content-md5/);
    }
    // A body-less request is signed with the hash of nothing, as SigV4 prescribes.
    expect(create.headers['x-amz-content-sha256']).toBe(sha256(Buffer.alloc(0)));
  });
});

describe('additional checksums on the aws profile', () => {
  it('a full-object SHA-256 on a PUT, a part with its SHA-256, CRC-64/NVME announced at Create and given whole at Complete, and HEAD asks for them', async () => {
    captured.length = 0;
    const client = clientFor('aws', 'eu-central-1');
    const target = new S3Target(client, BUCKET);
    const sha = Buffer.from(sha256(bytes), 'hex').toString('base64');
    let head;
    try {
      const body = await signedWholeFile();
      await target.put('a.CR3', { ...body, checksum: { algorithm: 'sha256', value: sha } }, {});
      const uploadId = await target.createMultipart('b.MP4', {}, { checksum: { algorithm: 'crc64nvme', type: 'FULL_OBJECT' } });
      await target.uploadPart('b.MP4', uploadId, 1, { ...body, checksum: { algorithm: 'sha256', value: sha } });
      await target.completeMultipart('b.MP4', uploadId, [{ partNumber: 1, etag: '"e1"', checksum: { algorithm: 'sha256', value: sha } }], {
        checksum: { algorithm: 'crc64nvme', value: 'rosUhgp5mIg=' },
      });
      head = await target.head('b.MP4', { checksums: true });
    } finally {
      client.destroy();
    }
    const [put, create, part, complete, headRequest] = captured as [Captured, Captured, Captured, Captured, Captured];
    expect(captured.map((r) => r.method)).toEqual(['PUT', 'POST', 'PUT', 'POST', 'HEAD']);
    expect(put.headers['x-amz-checksum-sha256']).toBe(sha);
    expect(create.headers).toMatchObject({ 'x-amz-checksum-algorithm': 'CRC64NVME', 'x-amz-checksum-type': 'FULL_OBJECT' });
    expect(part.headers['x-amz-checksum-sha256']).toBe(sha);
    expect(complete.headers).toMatchObject({ 'x-amz-checksum-crc64nvme': 'rosUhgp5mIg=', 'x-amz-checksum-type': 'FULL_OBJECT' });
    expect(complete.body.toString()).toContain(`<ChecksumSHA256>${sha}</ChecksumSHA256>`);
    expect(headRequest.headers['x-amz-checksum-mode']).toBe('ENABLED');
    expect(head?.checksums).toEqual({ crc64nvme: 'rosUhgp5mIg=' });
    for (const r of [put, part]) {
      // A checksum given as a value goes as a plain header: never an aws-chunked body with a trailer.
      expect(r.headers['content-encoding'] ?? '').not.toContain('aws-chunked');
      expect(r.headers['x-amz-trailer']).toBeUndefined();
      expect(r.body.equals(bytes)).toBe(true);
    }
  });
});
