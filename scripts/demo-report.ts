/**
 * scripts/demo.sh's eyes: waits through the daemon's HTTP API until the camera's job has finished and
 * the upload queue is empty, prints what happened, then checks the bucket without taking Shuttle's word
 * for it: every file of the job must be an object in s3rver whose bytes, read back from s3rver, hash
 * like the library's copy, and the bucket must hold nothing else. Exit 0 when all is well, 1 (saying
 * what is wrong) otherwise, including when the deadline passes.
 *
 *   node --import ./test/support/ts-resolve-hooks.mjs scripts/demo-report.ts --api URL --job ID --s3 ENDPOINT --bucket NAME --timeout SECONDS
 */
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Readable } from 'node:stream';
import { formatBytes } from '../src/bytes.js';

/** How often the API is asked while the job runs; the dashboard itself gets live events instead. */
const POLL_MS = 200;

interface Job {
  id: number;
  state: string;
  label: string;
  startedAt?: string;
  finishedAt?: string;
  error?: { code: string; message: string };
  result?: { files: number; copied: number; alreadyVerified: number; failed: number; bytes: number; errors: Array<{ message: string; path?: string }> };
  history: Array<{ state: string; reason?: string }>;
}
interface Station {
  uploads?: { target: string; state: string; depth: number; failed: number };
}
interface UploadQueue {
  state: string;
  paused: boolean;
  depth: number;
  items: Array<{ key: string; lastError?: string }>;
}
interface FileItem {
  fileId: number;
  job?: number;
  path: string;
  size: number;
  copies: Array<{ destination: string; path?: string; state: string; error?: string }>;
  cloud: Array<{ bucket: string; key: string; state: string; lastError?: string }>;
}

const { values: args } = parseArgs({
  options: { api: { type: 'string' }, job: { type: 'string' }, s3: { type: 'string' }, bucket: { type: 'string' }, timeout: { type: 'string' } },
});
const api = required('api');
const jobId = Number(required('job'));
const deadline = Date.now() + Number(required('timeout')) * 1000;

function required(name: keyof typeof args): string {
  const v = args[name];
  if (v === undefined || v === '') throw new Error(`demo-report: --${name} is required`);
  return v;
}

class DemoFailure extends Error {}

async function get<T>(path: string): Promise<T> {
  const res = await fetch(new URL(path, api), { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new DemoFailure(`GET ${path}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** Asks `probe` until it returns a value; `describe` says what was awaited when the deadline passes. */
async function until<T>(what: string, probe: () => Promise<T | undefined>, describe: () => Promise<string>): Promise<T> {
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new DemoFailure(`timed out waiting for ${what}: ${await describe()}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function allFilesOf(job: number): Promise<FileItem[]> {
  const files: FileItem[] = [];
  let before: number | undefined;
  do {
    const page = await get<{ items: FileItem[]; next?: number }>(`/api/v1/files?limit=500${before === undefined ? '' : `&before=${before}`}`);
    files.push(...page.items.filter((f) => f.job === job));
    before = page.next;
  } while (before !== undefined);
  return files.reverse();
}

async function sha256(stream: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of stream) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function main(): Promise<void> {
  const job = await until(
    `job ${jobId}`,
    async () => {
      const j = await get<Job>(`/api/v1/jobs/${jobId}`);
      return ['done', 'failed', 'cancelled', 'interrupted'].includes(j.state) ? j : undefined;
    },
    async () => JSON.stringify((await get<Job>(`/api/v1/jobs/${jobId}`)).state),
  );
  const r = job.result;
  if (job.state !== 'done' || r === undefined || r.failed > 0) {
    const why = job.error?.message ?? job.history.at(-1)?.reason ?? r?.errors.map((e) => `${e.path ?? ''} ${e.message}`).join('; ') ?? '';
    throw new DemoFailure(`job ${job.id} (${job.label}) ${job.state}: ${why}`);
  }
  const seconds = (Date.parse(job.finishedAt ?? '') - Date.parse(job.startedAt ?? '')) / 1000;
  console.log(`job ${job.id} done in ${seconds.toFixed(1)} s: ${job.label}`);

  // Every verified file is queued for upload before the job ends, so an empty queue now means all went.
  // The S3 server is on this machine and answering: an upload error is a fault, not a network blip.
  const uploads = await until(
    'the uploads',
    async () => {
      const u = (await get<Station>('/api/v1/station')).uploads;
      if (u === undefined) throw new DemoFailure('the daemon has no upload target');
      const q = await get<UploadQueue>('/api/v1/uploads?limit=100');
      const err = q.items.find((i) => i.lastError !== undefined);
      if (err) throw new DemoFailure(`upload of ${err.key} failed: ${err.lastError}`);
      if (u.state === 'failed' || u.failed > 0) throw new DemoFailure(`uploads ${u.state}, ${u.failed} failed (see the daemon's log)`);
      return u.depth === 0 ? u : undefined;
    },
    async () => {
      const q = await get<UploadQueue>('/api/v1/uploads?limit=1');
      return `uploads ${q.state}${q.paused ? ' (paused)' : ''}, ${q.depth} pending`;
    },
  );

  const files = await allFilesOf(job.id);
  const problems: string[] = [];
  if (files.length !== r.copied) problems.push(`the job copied ${r.copied} files but the API lists ${files.length} for it`);
  const library = files.filter((f) => f.copies.length > 0 && f.copies.every((c) => c.state === 'verified'));
  const uploaded = files.filter((f) => f.cloud.length > 0 && f.cloud.every((c) => c.state === 'uploaded'));
  for (const f of files) {
    if (!library.includes(f)) problems.push(`${f.path}: not verified in the library (${f.copies.map((c) => c.error ?? c.state).join(', ')})`);
    if (!uploaded.includes(f)) problems.push(`${f.path}: not uploaded (${f.cloud.map((c) => c.lastError ?? c.state).join(', ') || 'never queued'})`);
  }
  const bytes = files.reduce((n, f) => n + f.size, 0);
  console.log(`  camera:  ${r.files} files on the card, ${r.copied} copied (${formatBytes(bytes)}), ${r.failed} failed`);
  console.log(`  library: ${library.length} verified by read-back in ${files[0]?.copies[0]?.destination ?? '(none)'}`);
  console.log(`  cloud:   ${uploaded.length} uploaded to ${uploads.target} and verified there`);
  if (files[0]) {
    const f = files[0];
    console.log(`  e.g. ${f.path} → ${f.copies[0]?.path} → s3://${f.cloud[0]?.bucket}/${f.cloud[0]?.key}`);
  }
  problems.push(...(await checkBucket(files)));
  if (problems.length > 0) throw new DemoFailure(`${problems.length} problems:\n  ${problems.join('\n  ')}`);
}

/** The bucket as s3rver itself serves it, compared with the library copies byte for byte (by SHA-256). */
async function checkBucket(files: FileItem[]): Promise<string[]> {
  const bucket = required('bucket');
  const s3 = new S3Client({
    endpoint: required('s3'),
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  try {
    const keys = new Set<string>();
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      for (const o of page.Contents ?? []) if (o.Key !== undefined) keys.add(o.Key);
      token = page.NextContinuationToken;
    } while (token !== undefined);
    const problems: string[] = [];
    let same = 0;
    for (const f of files) {
      const copy = f.copies.find((c) => c.state === 'verified' && c.path !== undefined);
      const object = f.cloud.find((c) => c.bucket === bucket);
      if (copy?.path === undefined || object === undefined) continue; // named above already
      if (!keys.delete(object.key)) {
        problems.push(`${f.path}: no object ${object.key} in the bucket`);
        continue;
      }
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: object.key }));
      const [remote, local] = await Promise.all([sha256(got.Body as Readable), sha256(createReadStream(copy.path))]);
      if (remote === local) same++;
      else problems.push(`${f.path}: the object ${object.key} differs from ${copy.path} (SHA-256 ${remote} vs ${local})`);
    }
    for (const key of keys) problems.push(`the bucket holds ${key}, which no file of the job explains`);
    console.log(`  bucket:  ${same} of ${files.length} objects read back from s3rver match their library copy (SHA-256)`);
    return problems;
  } finally {
    s3.destroy();
  }
}

try {
  await main();
} catch (err) {
  if (!(err instanceof DemoFailure)) throw err;
  console.error(`demo: ${err.message}`);
  process.exitCode = 1;
}
