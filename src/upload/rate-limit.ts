import { setTimeout as sleep } from 'node:timers/promises';
import { ShuttleError, abortReason, throwIfAborted } from '../errors.js';

/**
 * A time-of-day window with its own rate, e.g. "no more than 2 MB/s on weekdays 09:00–18:00 while the
 * studio shares the uplink", or `bytesPerSecond: 0` to pause uploads during a live shoot.
 */
export interface RateWindow {
  /** Local time 'HH:MM'; a window whose `to` is not after `from` runs past midnight. */
  from: string;
  to: string;
  /** null = unlimited, 0 = paused. */
  bytesPerSecond: number | null;
  /** Days the window applies to (0 = Sunday … 6 = Saturday), judged by the current local day; all days when absent. */
  days?: readonly number[];
}

export interface RateLimitOptions {
  /** Rate outside every window; null = unlimited. */
  bytesPerSecond: number | null;
  schedule?: readonly RateWindow[];
  /** Seconds of traffic the bucket may hold, so short idle spells are not wasted (default 0.25 s). */
  burstSeconds?: number;
  /** Clock, injectable for tests. */
  now?: () => number;
}

interface ParsedWindow {
  from: number;
  to: number;
  rate: number;
  days: ReadonlySet<number> | undefined;
}

const MIN_BURST_BYTES = 64 * 1024;

function parseMinute(value: string): number {
  const m = /^(\d{1,2}):(\d{2})$/.exec(value);
  const h = Number(m?.[1]);
  const mi = Number(m?.[2]);
  if (m === null || h > 24 || mi > 59 || (h === 24 && mi !== 0)) {
    throw new ShuttleError('CONFIG_INVALID', `rate-limit window time ${JSON.stringify(value)} is not HH:MM`, { context: { value } });
  }
  return h * 60 + mi;
}

function parseRate(value: number | null): number {
  if (value === null) return Infinity;
  if (!Number.isFinite(value) || value < 0) {
    throw new ShuttleError('CONFIG_INVALID', `rate limit ${value} bytes/s is invalid (use a number ≥ 0, or null for unlimited)`, { context: { value } });
  }
  return value;
}

/** A token bucket in bytes, shared by every body it throttles; the rate may change with the time of day. */
export class RateLimiter {
  readonly #defaultRate: number;
  readonly #windows: ParsedWindow[];
  readonly #burstSeconds: number;
  readonly #now: () => number;
  #tokens: number;
  #last: number;

  constructor(options: RateLimitOptions) {
    this.#defaultRate = parseRate(options.bytesPerSecond);
    this.#windows = (options.schedule ?? []).map((w) => {
      const days = w.days === undefined ? undefined : new Set(w.days);
      if (days !== undefined && [...days].some((d) => !Number.isInteger(d) || d < 0 || d > 6)) {
        throw new ShuttleError('CONFIG_INVALID', `rate-limit window days ${JSON.stringify(w.days)} must be 0 (Sunday) … 6`, { context: { days: w.days } });
      }
      return { from: parseMinute(w.from), to: parseMinute(w.to), rate: parseRate(w.bytesPerSecond), days };
    });
    this.#burstSeconds = options.burstSeconds ?? 0.25;
    this.#now = options.now ?? Date.now;
    this.#last = this.#now();
    this.#tokens = this.#capacity(this.rateAt(new Date(this.#last)));
  }

  /** Bytes per second allowed at `date` (Infinity = unlimited, 0 = paused); the first matching window wins. */
  rateAt(date: Date): number {
    const minute = date.getHours() * 60 + date.getMinutes();
    const day = date.getDay();
    for (const w of this.#windows) {
      if (w.days !== undefined && !w.days.has(day)) continue;
      const inside = w.from < w.to ? minute >= w.from && minute < w.to : minute >= w.from || minute < w.to;
      if (inside) return w.rate;
    }
    return this.#defaultRate;
  }

  #capacity(rate: number): number {
    return Math.max(MIN_BURST_BYTES, rate * this.#burstSeconds);
  }

  /** Waits until `bytes` may be sent. Requests larger than the bucket go into debt that later callers wait out. */
  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      throwIfAborted(signal);
      const now = this.#now();
      const rate = this.rateAt(new Date(now));
      const elapsed = Math.max(0, now - this.#last) / 1000;
      this.#last = now;
      if (rate === Infinity) {
        this.#tokens = this.#capacity(rate);
        return;
      }
      const capacity = this.#capacity(rate);
      this.#tokens = Math.min(capacity, this.#tokens + elapsed * rate);
      const need = Math.min(bytes, capacity);
      // A pause is a pause: the bucket's floor must not let a first burst (or a small file) through.
      if (rate > 0 && this.#tokens >= need) {
        this.#tokens -= bytes;
        return;
      }
      // The schedule can change at any minute boundary, so never sleep past the next one.
      const toNextMinute = 60_000 - (now % 60_000) + 5;
      const wait = rate === 0 ? toNextMinute : Math.min(toNextMinute, Math.ceil(((need - this.#tokens) / rate) * 1000));
      try {
        await sleep(Math.max(1, wait), undefined, signal === undefined ? undefined : { signal });
      } catch (error) {
        if (signal?.aborted) throw abortReason(signal);
        throw error;
      }
    }
  }
}
