/** Files with known hashes, and independent views of what a real S3 server holds, for the upload tests. */
import { createCipheriv, createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, type S3Client } from '@aws-sdk/client-s3';
import { createXXHash128 } from 'hash-wasm';
import { MiB } from '../../src/upload/multipart.js';
import { MemoryUploadStateStore } from '../../src/upload/state.js';
import type { UploadFileOptions } from '../../src/upload/uploader.js';

export interface TestFile {
  path: string;
  size: number;
  sha256: string;
  xxh128: string;
  md5: string;
}

/** Deterministic pseudo-random bytes (AES-CTR keystream of `seed`), written and hashed 1 MiB at a time. */
export async function writeTestFile(dir: string, name: string, size: number, seed = name): Promise<TestFile> {
  const path = join(dir, name);
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const sha = createHash('sha256');
  const md5 = createHash('md5');
  const xxh = await createXXHash128();
  xxh.init();
  const fh = await open(path, 'w');
  try {
    const zeros = Buffer.alloc(1024 * 1024);
    for (let written = 0; written < size; ) {
      const n = Math.min(zeros.length, size - written);
      const chunk = cipher.update(zeros.subarray(0, n));
      sha.update(chunk);
      md5.update(chunk);
      xxh.update(chunk);
      await fh.write(chunk);
      written += n;
    }
  } finally {
    await fh.close();
  }
  return { path, size, sha256: sha.digest('hex'), xxh128: xxh.digest('hex'), md5: md5.digest('hex') };
}

/** The multipart ETag S3 should report, computed here independently of src/upload. */
export async function expectedMultipartEtag(path: string, partSize: number): Promise<string> {
  const data = await readFile(path);
  const md5s: Buffer[] = [];
  for (let off = 0; off < data.length; off += partSize)
    md5s.push(
      createHash('md5')
        .update(data.subarray(off, off + partSize))
        .digest(),
    );
  return `${createHash('md5').update(Buffer.concat(md5s)).digest('hex')}-${md5s.length}`;
}

/** SHA-256 of the object's bytes as the server returns them on GET. */
export async function sha256OfObject(client: S3Client, bucket: string, key: string): Promise<{ sha256: string; size: number }> {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of r.Body as Readable) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: h.digest('hex'), size };
}

export async function headOrUndefined(client: S3Client, bucket: string, key: string) {
  try {
    return await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  } catch (error) {
    if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return undefined;
    throw error;
  }
}

/** Every unfinished multipart upload in the bucket, as "key uploadId". */
export async function unfinishedUploads(client: S3Client, bucket: string): Promise<string[]> {
  const r = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return (r.Uploads ?? []).map((u) => `${u.Key} ${u.UploadId}`);
}

/** Records the part numbers of UploadPart requests a client sends (counted before they leave). */
export function countUploadParts(client: S3Client): { parts: number[]; puts: number; stop(): void } {
  const name = `countUploadParts-${Math.random().toString(36).slice(2)}`;
  const seen = { parts: [] as number[], puts: 0, stop: () => void client.middlewareStack.remove(name) };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { PartNumber?: number };
      if (context.commandName === 'UploadPartCommand' && input.PartNumber !== undefined) seen.parts.push(input.PartNumber);
      if (context.commandName === 'PutObjectCommand') seen.puts++;
      return next(args);
    },
    { step: 'initialize', name },
  );
  return seen;
}

/**
 * uploadFile's options for `file` at `bucket/key`: its hashes as the journal would hold them, a fresh
 * in-memory state store, 5 MiB parts; `extra` names the server (client or target, provider) and sets what
 * a suite tunes (retry, concurrency).
 */
export function fileUploadOptions(bucket: string, file: TestFile, key: string, extra: Partial<UploadFileOptions> = {}): UploadFileOptions {
  return {
    bucket,
    key,
    path: file.path,
    size: file.size,
    expected: { sha256: file.sha256, xxh128: file.xxh128 },
    store: new MemoryUploadStateStore(),
    partSize: 5 * MiB,
    ...extra,
  };
}

/** fileUploadOptions on the local Swift through `client`. */
export function swiftUploadOptions(client: S3Client, bucket: string, file: TestFile, key: string, extra: Partial<UploadFileOptions> = {}): UploadFileOptions {
  return fileUploadOptions(bucket, file, key, { client, provider: 'swift', ...extra });
}
