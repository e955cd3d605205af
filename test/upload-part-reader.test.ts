/**
 * The part reader hashes with node:crypto itself (the ingest hashers only for an xxh128 of the whole file):
 * what it reports must be exactly MD5 (and, when asked, SHA-256) per part and SHA-256 or xxh128 over the file, and a missing or shrunken file must fail the way the upload
 * worker classifies (path, errno, UPLOAD_VERIFY for a short file).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Writable } from 'node:stream';
import { constants as fsConstants } from 'node:fs';
import { openDirect } from '../src/io/direct.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errnoCode, isShuttleError } from '../src/errors.js';
import { PartReader, partBody, signedPart, type SendCheck } from '../src/upload/part-reader.js';
import { classifyUploadFailure } from '../src/upload/worker.js';

const MiB = 1024 * 1024;
let dir: string;

async function randomFile(name: string, size: number, seed: number): Promise<string> {
  const bytes = Buffer.alloc(Math.ceil(size / 4) * 4);
  let x = seed;
  for (let i = 0; i < bytes.length; i += 4) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    bytes.writeUInt32LE(x, i);
  }
  const path = join(dir, name);
  await writeFile(path, bytes.subarray(0, size));
  return path;
}

const hex = (alg: string, b: Buffer): string => createHash(alg).update(b).digest('hex');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shuttle-hash-pool-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('PartReader', () => {
  it('reports each part’s MD5 and the whole file’s SHA-256 exactly as node:crypto computes them', async () => {
    const path = await randomFile('parts.bin', 5 * MiB + 123, 1);
    const bytes = await readFile(path);
    const reader = await PartReader.open(path, bytes.length);
    const sizes = [2 * MiB, 3 * MiB - 7, 130];
    const parts = [];
    for (const size of sizes) parts.push(await reader.read(size));
    const digests = await reader.digest();
    await reader.close();
    let offset = 0;
    for (const [i, part] of parts.entries()) {
      expect(part.offset).toBe(offset);
      expect(part.md5).toBe(hex('md5', bytes.subarray(offset, offset + sizes[i]!)));
      offset += sizes[i]!;
    }
    expect(digests.sha256).toBe(hex('sha256', bytes));
  });

  it('with partSha256, also each part’s SHA-256; with whole xxh128, the file’s xxh128 as xxh128sum prints it', async () => {
    const path = await randomFile('signed.bin', 6 * MiB + 5, 2);
    const bytes = await readFile(path);
    const reader = await PartReader.open(path, bytes.length, { whole: 'xxh128', partSha256: true });
    const first = signedPart(await reader.read(5 * MiB));
    const second = signedPart(await reader.read(MiB + 5));
    const digests = reader.digest();
    await reader.close();
    expect(first.sha256).toBe(hex('sha256', bytes.subarray(0, 5 * MiB)));
    expect(second.sha256).toBe(hex('sha256', bytes.subarray(5 * MiB)));
    expect(second.md5).toBe(hex('md5', bytes.subarray(5 * MiB)));
    const reference = execFileSync('xxh128sum', [path], { encoding: 'utf8' }).split(' ')[0];
    expect(digests).toEqual({ xxh128: reference });
    await expect(reader.read(1)).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('a part read without its SHA-256 cannot be sent as a signed part', async () => {
    const path = await randomFile('unsigned.bin', 10, 5);
    const reader = await PartReader.open(path, 10);
    const part = await reader.read(10);
    await reader.close();
    expect(part.sha256).toBeUndefined();
    expect(() => signedPart(part)).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
  });

  it('a missing file fails as SOURCE_UNREADABLE with its path and ENOENT, which marks the copy lost', async () => {
    const path = join(dir, 'gone.bin');
    const error = await PartReader.open(path, 10).catch((e: unknown) => e);
    expect(isShuttleError(error) && error.code).toBe('SOURCE_UNREADABLE');
    expect(isShuttleError(error) && error.context['path']).toBe(path);
    expect(isShuttleError(error) && errnoCode(error.cause)).toBe('ENOENT');
    expect(classifyUploadFailure(error)).toBe('local-damaged');
  });

  it('a file shorter than the journal says fails as UPLOAD_VERIFY at the byte where it ends', async () => {
    const path = await randomFile('short.bin', 3 * MiB, 3);
    await truncate(path, 2 * MiB);
    const reader = await PartReader.open(path, 3 * MiB);
    const error = await reader.read(3 * MiB).catch((e: unknown) => e);
    await reader.close();
    expect(isShuttleError(error) && error.code).toBe('UPLOAD_VERIFY');
    expect(isShuttleError(error) && error.context).toMatchObject({ path, actual: 2 * MiB, expected: 3 * MiB });
  });

  it('an aborted read rejects with the abort reason and the reader can still be closed', async () => {
    const path = await randomFile('abort.bin', 4 * MiB, 4);
    const reader = await PartReader.open(path, 4 * MiB);
    const controller = new AbortController();
    const pending = reader.read(4 * MiB, controller.signal);
    controller.abort();
    const error = await pending.catch((e: unknown) => e);
    expect(isShuttleError(error) && error.code).toBe('ABORTED');
    await reader.close();
  });
});

/** A request stand-in: takes each chunk, keeps its bytes, and finishes writing it only after `delayMs`. */
class SlowSink extends Writable {
  readonly received: Buffer[] = [];
  /** ArrayBuffers of the chunks being written now, and every one seen. */
  readonly inFlight = new Set<ArrayBufferLike>();
  readonly seen = new Set<ArrayBufferLike>();
  maxInFlight = 0;

  constructor(readonly delayMs: number) {
    super({ highWaterMark: 1 });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.inFlight.has(chunk.buffer)) {
      callback(new Error('a buffer was handed out again while still being written'));
      return;
    }
    this.inFlight.add(chunk.buffer);
    this.seen.add(chunk.buffer);
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight.size);
    this.received.push(Buffer.from(chunk));
    setTimeout(() => {
      this.inFlight.delete(chunk.buffer);
      callback();
    }, this.delayMs);
  }
}

const finished = (w: Writable): Promise<void> => new Promise((resolve, reject) => w.once('finish', resolve).once('error', reject));

describe('request bodies', () => {
  const bodyOf = (path: string, offset: number, size: number, check?: SendCheck) => partBody(path, { offset, size, md5: '', sha256: '' }, { check, uncached: true });

  it('piped, as the HTTP client sends it: exactly the range, in a few buffers reused only once written out', async () => {
    const path = await randomFile('piped.bin', 11 * MiB + 17, 6);
    const bytes = await readFile(path);
    const sink = new SlowSink(2);
    const body = bodyOf(path, 3, bytes.length - 3).open();
    body.pipe(sink);
    await finished(sink);
    body.destroy();
    expect(Buffer.concat(sink.received).equals(bytes.subarray(3))).toBe(true);
    // Twelve 1 MiB chunks through at most four buffers.
    expect(sink.received.length).toBe(12);
    expect(sink.seen.size).toBeLessThanOrEqual(4);
    expect(sink.maxInFlight).toBeGreaterThanOrEqual(1);
  });

  it('piped, an uncached range is read past the page cache; read the ordinary way, or not uncached, through it', async () => {
    const path = await randomFile('direct.bin', 6 * MiB + 5, 10);
    const bytes = await readFile(path);
    const resident = (): number => Number(execFileSync('fincore', ['-b', '-n', '-o', 'RES', path], { encoding: 'utf8' }).trim());
    const evict = (): void => {
      execFileSync('dd', [`of=${path}`, 'oflag=nocache', 'conv=notrunc,fdatasync', 'count=0', 'status=none']);
      execFileSync('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']);
    };
    const fh = await openDirect(path, fsConstants.O_RDONLY);
    if (fh === undefined) throw new Error(`cannot run this test here: ${dir} does not take O_DIRECT`);
    await fh.close();
    evict();
    expect(resident()).toBe(0);
    const sink = new SlowSink(0);
    bodyOf(path, MiB, bytes.length - MiB)
      .open()
      .pipe(sink);
    await finished(sink);
    expect(Buffer.concat(sink.received).equals(bytes.subarray(MiB))).toBe(true);
    expect(resident()).toBe(0);
    const chunks: Buffer[] = [];
    for await (const chunk of bodyOf(path, MiB, bytes.length - MiB).open()) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(bytes.subarray(MiB))).toBe(true);
    expect(resident()).toBeGreaterThan(0);
    // Not `uncached` (a part a PartReader just hashed): piped, it is read from the cache.
    evict();
    const cachedSink = new SlowSink(0);
    partBody(path, { offset: MiB, size: bytes.length - MiB, md5: '', sha256: '' })
      .open()
      .pipe(cachedSink);
    await finished(cachedSink);
    expect(Buffer.concat(cachedSink.received).equals(bytes.subarray(MiB))).toBe(true);
    expect(resident()).toBeGreaterThan(0);
  });

  it('read the ordinary way: the same bytes, each chunk its own buffer', async () => {
    const path = await randomFile('read.bin', 3 * MiB + 1, 7);
    const bytes = await readFile(path);
    const chunks: Buffer[] = [];
    for await (const chunk of bodyOf(path, MiB, 2 * MiB).open()) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(bytes.subarray(MiB, 3 * MiB))).toBe(true);
    expect(new Set(chunks.map((c) => c.buffer)).size).toBe(chunks.length);
  });

  it('a send check sees the digest of every byte before the last chunk goes out, and its failure withholds that chunk', async () => {
    const path = await randomFile('checked.bin', 2 * MiB + 9, 8);
    const bytes = await readFile(path);
    const digests: unknown[] = [];
    const passing = new SlowSink(0);
    bodyOf(path, 0, bytes.length, { algorithm: 'sha256', verify: (d) => void digests.push(d) })
      .open()
      .pipe(passing);
    await finished(passing);
    expect(digests).toEqual([{ sha256: hex('sha256', bytes) }]);

    const failing = new SlowSink(0);
    const body = bodyOf(path, 0, bytes.length, {
      algorithm: 'xxh128',
      verify: () => {
        throw new Error('digest differs');
      },
    }).open();
    const error = new Promise((resolve) => body.once('error', resolve));
    body.pipe(failing);
    expect(await error).toMatchObject({ message: 'digest differs' });
    // The first two full chunks went out, the last one never did, and the request was not ended.
    expect(Buffer.concat(failing.received).equals(bytes.subarray(0, 2 * MiB))).toBe(true);
    expect(failing.writableEnded).toBe(false);
  });

  it('a body destroyed while piped hands the request no more chunks and does not end it', async () => {
    const path = await randomFile('destroyed.bin', 8 * MiB, 9);
    const sink = new SlowSink(20);
    let handed = 0;
    let firstHanded: () => void = () => {};
    const flowing = new Promise<void>((resolve) => (firstHanded = resolve));
    const write = sink.write.bind(sink) as (chunk: Buffer, callback: (error?: Error | null) => void) => boolean;
    sink.write = ((chunk: Buffer, callback: (error?: Error | null) => void) => {
      handed++;
      firstHanded();
      return write(chunk, callback);
    }) as typeof sink.write;
    const body = bodyOf(path, 0, 8 * MiB).open();
    body.pipe(sink);
    await flowing;
    body.destroy();
    const count = handed;
    await new Promise((r) => setTimeout(r, 200));
    expect(count).toBeLessThan(8);
    expect(handed).toBe(count);
    expect(sink.writableEnded).toBe(false);
  });
});

describe('upload start-up', () => {
  it('loading the upload worker and its configuration does not load the ingest hashers (WASM, native xxhash)', () => {
    const root = fileURLToPath(new URL('..', import.meta.url));
    const script = `
      import { registerHooks } from 'node:module';
      const seen = [];
      registerHooks({ load(url, context, next) { seen.push(url); return next(url, context); } });
      await import(${JSON.stringify(pathToFileURL(join(root, 'src/upload/from-config.ts')).href)});
      // What from-config loads when an upload starts (the worker, the client, the credentials).
      await import(${JSON.stringify(pathToFileURL(join(root, 'src/upload/worker.ts')).href)});
      await import(${JSON.stringify(pathToFileURL(join(root, 'src/upload/client.ts')).href)});
      await import(${JSON.stringify(pathToFileURL(join(root, 'src/upload/credentials.ts')).href)});
      process.stdout.write(JSON.stringify(seen));`;
    const out = execFileSync(process.execPath, ['--import', join(root, 'test/support/ts-resolve-hooks.mjs'), '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
    const loaded = JSON.parse(out) as string[];
    expect(loaded.some((u) => u.endsWith('/src/upload/worker.ts'))).toBe(true);
    expect(loaded.filter((u) => /\/ingest\/hashing\.ts$|hash-wasm|xxhash|\/upload\/repair\.ts$/.test(u))).toEqual([]);
  });
});
