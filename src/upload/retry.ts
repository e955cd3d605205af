import { setTimeout as sleep } from 'node:timers/promises';
import { ShuttleError, abortReason, isShuttleError, throwIfAborted } from '../errors.js';

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = Object.freeze({ maxAttempts: 8, baseDelayMs: 250, maxDelayMs: 30_000 });

export interface RetryEvent {
  /** The attempt that failed (1-based). */
  attempt: number;
  delayMs: number;
  error: unknown;
}

export interface RetryOptions extends Partial<RetryPolicy> {
  signal?: AbortSignal | undefined;
  /** Whether trying again can help; by default only ShuttleErrors marked `retryable`. */
  isRetryable?: (error: unknown) => boolean;
  onRetry?: (event: RetryEvent) => void;
  /** Source of jitter in [0, 1); injectable so tests can pin delays. */
  random?: () => number;
}

/** "Full jitter" backoff: uniform in [0, min(max, base·2^(attempt-1))], which spreads a crowd of retries best. */
export function backoffDelay(attempt: number, policy: Pick<RetryPolicy, 'baseDelayMs' | 'maxDelayMs'>, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.floor(random() * ceiling);
}

function defaultIsRetryable(error: unknown): boolean {
  return isShuttleError(error) && error.retryable;
}

/**
 * Runs `operation` until it succeeds, fails permanently, runs out of attempts, or the signal aborts.
 * Each attempt calls `operation` afresh, so any input it sends (a part body) must be opened inside it:
 * that is what rewinds the input for the next attempt. Never starts an attempt on an aborted signal,
 * and an abort during a backoff wait ends the wait at once.
 */
export async function withRetry<T>(operation: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const policy: RetryPolicy = {
    maxAttempts: Math.max(1, options.maxAttempts ?? DEFAULT_RETRY_POLICY.maxAttempts),
    baseDelayMs: options.baseDelayMs ?? DEFAULT_RETRY_POLICY.baseDelayMs,
    maxDelayMs: options.maxDelayMs ?? DEFAULT_RETRY_POLICY.maxDelayMs,
  };
  const isRetryable = options.isRetryable ?? defaultIsRetryable;
  const { signal } = options;
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(signal);
    try {
      return await operation(attempt);
    } catch (error) {
      if (signal?.aborted) throw abortReason(signal);
      if (!isRetryable(error)) throw error;
      if (attempt >= policy.maxAttempts) throw exhausted(error, attempt);
      const delayMs = backoffDelay(attempt, policy, options.random);
      options.onRetry?.({ attempt, delayMs, error });
      try {
        await sleep(delayMs, undefined, signal === undefined ? undefined : { signal });
      } catch (sleepError) {
        if (signal?.aborted) throw abortReason(signal);
        throw sleepError;
      }
    }
  }
}

function exhausted(error: unknown, attempts: number): unknown {
  if (!isShuttleError(error)) return error;
  return new ShuttleError(error.code, `${error.message} (gave up after ${attempts} attempts)`, {
    context: { ...error.context, attempts },
    cause: error,
    retryable: error.retryable,
  });
}
