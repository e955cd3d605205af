import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ShuttleError, isShuttleError } from '../src/errors.js';
import { backoffDelay, withRetry } from '../src/upload/retry.js';
import { isTransientS3Error } from '../src/upload/s3-target.js';
import { retryingTarget, type PartBody, type UploadTarget } from '../src/upload/target.js';

const transient = (msg = 'flaky'): ShuttleError => new ShuttleError('UPLOAD_FAILED', msg, { retryable: true });
const permanent = (msg = 'denied'): ShuttleError => new ShuttleError('UPLOAD_FAILED', msg, { retryable: false });
const fast = { baseDelayMs: 1, maxDelayMs: 2 };

async function caught(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

describe('retry decorator', () => {
  it('retries retryable failures until the operation succeeds', async () => {
    const attempts: number[] = [];
    const result = await withRetry(async (attempt) => {
      attempts.push(attempt);
      if (attempt < 3) throw transient();
      return 'ok';
    }, fast);
    expect(result).toBe('ok');
    expect(attempts).toEqual([1, 2, 3]);
  });

  it('stops at the first permanent failure', async () => {
    let calls = 0;
    const error = await caught(
      withRetry(async () => {
        calls++;
        throw permanent();
      }, fast),
    );
    expect(calls).toBe(1);
    expect(isShuttleError(error) && error.message).toBe('denied');
  });

  it('gives up after maxAttempts and says how many attempts were made', async () => {
    let calls = 0;
    const error = await caught(
      withRetry(
        async () => {
          calls++;
          throw transient('still flaky');
        },
        { ...fast, maxAttempts: 4 },
      ),
    );
    expect(calls).toBe(4);
    expect(isShuttleError(error, 'UPLOAD_FAILED')).toBe(true);
    expect((error as ShuttleError).context['attempts']).toBe(4);
    expect((error as ShuttleError).message).toMatch(/still flaky.*4 attempts/);
  });

  it('never starts an attempt on an aborted signal', async () => {
    let calls = 0;
    const error = await caught(
      withRetry(
        async () => {
          calls++;
        },
        { signal: AbortSignal.abort() },
      ),
    );
    expect(calls).toBe(0);
    expect(isShuttleError(error, 'ABORTED')).toBe(true);
  });

  it('ends a backoff wait at once when the signal aborts', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const pending = withRetry(
      async () => {
        setTimeout(() => controller.abort(), 20);
        throw transient();
      },
      { baseDelayMs: 60_000, maxDelayMs: 60_000, random: () => 0.99, signal: controller.signal },
    );
    const error = await caught(pending);
    expect(isShuttleError(error, 'ABORTED')).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('backs off exponentially with full jitter under a cap', () => {
    const policy = { baseDelayMs: 100, maxDelayMs: 1_000 };
    expect([1, 2, 3, 4, 5].map((n) => backoffDelay(n, policy, () => 0.999999))).toEqual([99, 199, 399, 799, 999]);
    expect(backoffDelay(3, policy, () => 0)).toBe(0);
  });

  it('reopens the request body for every attempt, so a retry sends it from the start', async () => {
    const data = Buffer.from('0123456789abcdef');
    const received: string[] = [];
    const fake = {
      bucket: 'b',
      async uploadPart(_key: string, _id: string, _n: number, body: PartBody) {
        const stream = body.open();
        const chunks: Buffer[] = [];
        for await (const c of stream) {
          chunks.push(c as Buffer);
          // First attempt: the connection "breaks" after the first chunk has been consumed.
          if (received.length === 0) {
            received.push(Buffer.concat(chunks).toString());
            throw transient('connection reset');
          }
        }
        received.push(Buffer.concat(chunks).toString());
        return { etag: '"x"' };
      },
    } as unknown as UploadTarget;
    const body: PartBody = { size: data.length, md5: '00', sha256: '00', open: () => Readable.from([data.subarray(0, 4), data.subarray(4)]) };
    await retryingTarget(fake, fast).uploadPart('k', 'u', 1, body);
    expect(received).toEqual(['0123', '0123456789abcdef']);
  });
});

describe('S3 failure classification', () => {
  const sdkError = (status: number, code: string): Error => Object.assign(new Error(code), { name: code, Code: code, $metadata: { httpStatusCode: status } });

  it.each([
    [500, 'InternalError', true],
    [503, 'SlowDown', true],
    [503, 'ServiceUnavailable', true],
    [408, 'RequestTimeout', true],
    [429, 'TooManyRequests', true],
    [400, 'BadDigest', true],
    [400, 'RequestTimeout', true],
    [400, 'XAmzContentSHA256Mismatch', true],
    [400, 'InvalidArgument', false],
    [400, 'InvalidDigest', false],
    [403, 'AccessDenied', false],
    [403, 'SignatureDoesNotMatch', false],
    [404, 'NoSuchUpload', false],
    [404, 'NoSuchBucket', false],
  ])('HTTP %i %s → retryable %s', (status, code, expected) => {
    expect(isTransientS3Error(sdkError(status, code))).toBe(expected);
  });

  it('treats network failures and timeouts as retryable and programming errors as permanent', () => {
    expect(isTransientS3Error(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isTransientS3Error(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(isTransientS3Error(Object.assign(new Error('idle'), { name: 'TimeoutError' }))).toBe(true);
    expect(isTransientS3Error(new TypeError('x is not a function'))).toBe(false);
  });
});
