import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { partBody } from '../src/upload/part-reader.js';
import { RateLimiter } from '../src/upload/rate-limit.js';

const MiB = 1024 * 1024;

let dir: string;
let files = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shuttle-rate-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** `data` as an upload sends it: the request body over a part of a file, throttled by the limiter. */
async function bodyStream(data: Uint8Array, limiter: RateLimiter | undefined, signal?: AbortSignal): Promise<Readable> {
  const path = join(dir, `part-${files++}`);
  await writeFile(path, data);
  return partBody(path, { offset: 0, size: data.byteLength, md5: '', sha256: '' }, { limiter }).open(signal);
}

async function drain(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function at(hh: number, mm: number, dayOfMonth = 9): Date {
  // March 2026: the 9th is a Monday, the 14th a Saturday.
  return new Date(2026, 2, dayOfMonth, hh, mm);
}

describe('bandwidth limit', () => {
  it('holds a body to the configured bytes per second and delivers it unchanged', async () => {
    const data = randomBytes(1.5 * MiB);
    const limiter = new RateLimiter({ bytesPerSecond: 2 * MiB });
    const started = performance.now();
    const out = await drain(await bodyStream(data, limiter));
    const seconds = (performance.now() - started) / 1000;
    expect(out.equals(data)).toBe(true);
    // 1.5 MiB minus the 0.5 MiB burst at 2 MiB/s is 0.5 s.
    expect(seconds).toBeGreaterThan(0.4);
    expect(seconds).toBeLessThan(5);
  });

  it('shares one budget between bodies sent at the same time', async () => {
    const limiter = new RateLimiter({ bytesPerSecond: 4 * MiB, burstSeconds: 0.05 });
    const started = performance.now();
    const [a, b] = await Promise.all([bodyStream(randomBytes(MiB), limiter), bodyStream(randomBytes(MiB), limiter)]);
    await Promise.all([drain(a), drain(b)]);
    expect((performance.now() - started) / 1000).toBeGreaterThan(0.4);
  });

  it('does not slow an unlimited body', async () => {
    const limiter = new RateLimiter({ bytesPerSecond: null });
    const started = performance.now();
    const out = await drain(await bodyStream(randomBytes(64 * MiB), limiter));
    expect(out.length).toBe(64 * MiB);
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('picks the rate of the first schedule window that contains the local time and day', () => {
    const limiter = new RateLimiter({
      bytesPerSecond: 10,
      schedule: [
        { from: '09:00', to: '18:00', bytesPerSecond: 1, days: [1, 2, 3, 4, 5] },
        { from: '22:00', to: '06:00', bytesPerSecond: null },
        { from: '12:00', to: '13:00', bytesPerSecond: 0 },
      ],
    });
    expect(limiter.rateAt(at(8, 59))).toBe(10);
    expect(limiter.rateAt(at(9, 0))).toBe(1);
    expect(limiter.rateAt(at(12, 30))).toBe(1); // the weekday window comes first
    expect(limiter.rateAt(at(12, 30, 14))).toBe(0); // Saturday: only the lunch pause applies
    expect(limiter.rateAt(at(18, 0))).toBe(10);
    expect(limiter.rateAt(at(23, 15))).toBe(Infinity);
    expect(limiter.rateAt(at(5, 59))).toBe(Infinity);
    expect(limiter.rateAt(at(6, 0))).toBe(10);
  });

  it('sends nothing during a paused window and stops waiting when aborted', async () => {
    const limiter = new RateLimiter({ bytesPerSecond: 0 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 150);
    const received: Buffer[] = [];
    let failure: unknown;
    try {
      for await (const c of await bodyStream(randomBytes(MiB), limiter, controller.signal)) received.push(c as Buffer);
    } catch (error) {
      failure = error;
    }
    expect(Buffer.concat(received).length).toBe(0);
    expect(isShuttleError(failure, 'ABORTED')).toBe(true);
  });

  it('lets no small file through a pause, not even the first', async () => {
    const limiter = new RateLimiter({ bytesPerSecond: 0 });
    const controller = new AbortController();
    const sent: number[] = [];
    const sends = Array.from({ length: 5 }, async () => {
      for await (const c of await bodyStream(randomBytes(1000), limiter, controller.signal)) sent.push((c as Buffer).length);
    });
    setTimeout(() => controller.abort(), 150);
    const results = await Promise.allSettled(sends);
    expect(sent).toEqual([]);
    expect(results.every((r) => r.status === 'rejected' && isShuttleError(r.reason, 'ABORTED'))).toBe(true);
  });

  it('rejects malformed schedules', () => {
    for (const schedule of [
      [{ from: '9', to: '10:00', bytesPerSecond: 1 }],
      [{ from: '09:00', to: '25:00', bytesPerSecond: 1 }],
      [{ from: '09:00', to: '10:00', bytesPerSecond: -1 }],
      [{ from: '09:00', to: '10:00', bytesPerSecond: 1, days: [7] }],
    ]) {
      let code: string | undefined;
      try {
        new RateLimiter({ bytesPerSecond: null, schedule });
      } catch (error) {
        code = isShuttleError(error) ? error.code : 'other';
      }
      expect(code, JSON.stringify(schedule)).toBe('CONFIG_INVALID');
    }
  });
});
