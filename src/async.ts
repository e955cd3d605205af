/**
 * Waiting with an AbortSignal: the small helpers every layer shares (promises that give up on abort, an
 * abortable pause, a queue of one, signals linked cheaply). Aborts reject with the signal's reason as a
 * ShuttleError, and every listener added is removed again.
 */
import { abortReason } from './errors.js';

/**
 * `p`, or a rejection with the abort reason as soon as `signal` aborts; `p` itself runs on. `onAbort` runs
 * when the signal wins (or had already aborted), to cancel the work behind `p`.
 */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined, onAbort?: () => void): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    onAbort?.();
    return Promise.reject(abortReason(signal));
  }
  return new Promise<T>((resolve, reject) => {
    const abort = (): void => {
      onAbort?.();
      reject(abortReason(signal));
    };
    signal.addEventListener('abort', abort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', abort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', abort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

/** Waits `ms`, or less when `signal` aborts (at once if it already has). Never rejects: the caller looks at its signal. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** What `within` gives when its promise has not settled in time. */
export const TIMED_OUT: unique symbol = Symbol('timed out');

/** `p`, or TIMED_OUT if it has not settled within `ms`; `p` itself runs on. The timer goes as soon as either wins. */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<typeof TIMED_OUT>((resolve) => (timer = setTimeout(resolve, ms, TIMED_OUT)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** One holder at a time, in arrival order; a waiter whose signal aborts leaves the queue. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();

  /** Resolves with the release function once every earlier holder has released. */
  async acquire(signal: AbortSignal | undefined): Promise<() => void> {
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const previous = this.tail;
    this.tail = previous.then(() => mine);
    try {
      await abortable(previous, signal);
    } catch (err) {
      // Give our place in the queue back as soon as the holder before us is done.
      void previous.then(release);
      throw err;
    }
    return release;
  }
}

/**
 * Runs tasks one after another in the background, letting at most `depth` of them wait unfinished: push()
 * returns once the task that frees a place has ended. The first task to fail stops the queue: its error
 * is thrown by that push or a later one, and by drain().
 */
export class SerialQueue {
  #tail: Promise<void> = Promise.resolve();
  /** The end of each task not yet over, oldest first (they end in this order). */
  readonly #unfinished: Array<Promise<void>> = [];
  #error: unknown;
  constructor(private readonly depth: number) {}

  async push(task: () => Promise<void>): Promise<void> {
    if (this.#error) throw this.#error;
    const ended = this.#tail
      .then(task)
      .catch((e: unknown) => {
        this.#error ??= e;
      })
      .finally(() => {
        void this.#unfinished.shift();
      });
    this.#tail = ended;
    this.#unfinished.push(ended);
    while (this.#unfinished.length > this.depth) await this.#unfinished[0];
    if (this.#error) throw this.#error;
  }

  async drain(): Promise<void> {
    await this.#tail;
    if (this.#error) throw this.#error;
  }
}

/**
 * A signal that aborts when `a` or `b` does (with that one's reason), released by `dispose`: for links made
 * once per transaction, where AbortSignal.any costs more.
 */
export function linkSignals(a: AbortSignal | undefined, b: AbortSignal): { signal: AbortSignal; dispose: () => void } {
  if (!a) return { signal: b, dispose: () => undefined };
  const controller = new AbortController();
  const onA = (): void => controller.abort(a.reason);
  const onB = (): void => controller.abort(b.reason);
  if (a.aborted) onA();
  else if (b.aborted) onB();
  a.addEventListener('abort', onA, { once: true });
  b.addEventListener('abort', onB, { once: true });
  return {
    signal: controller.signal,
    dispose: () => {
      a.removeEventListener('abort', onA);
      b.removeEventListener('abort', onB);
    },
  };
}

/**
 * Outcomes by key, and who waits for them: a caller learns a key (a shot's path from the camera) and
 * waits for its outcome, which may already be in (the newest `keep` are kept a while for that).
 */
export class KeyedOutcomes<T> {
  readonly #waiting = new Map<string, Array<{ resolve: (v: T) => void; reject: (e: unknown) => void }>>();
  readonly #done = new Map<string, { value: T } | { error: Error }>();

  constructor(private readonly keep = 64) {}

  settle(key: string, outcome: { value: T } | { error: Error }): void {
    this.#done.set(key, outcome);
    if (this.#done.size > this.keep) this.#done.delete(this.#done.keys().next().value as string);
    for (const w of this.#waiting.get(key) ?? []) 'error' in outcome ? w.reject(outcome.error) : w.resolve(outcome.value);
    this.#waiting.delete(key);
  }

  wait(key: string, signal: AbortSignal): Promise<T> {
    const done = this.#done.get(key);
    if (done) return 'error' in done ? Promise.reject(done.error) : Promise.resolve(done.value);
    const list = this.#waiting.get(key) ?? [];
    this.#waiting.set(key, list);
    let entry!: { resolve: (v: T) => void; reject: (e: unknown) => void };
    const outcome = new Promise<T>((resolve, reject) => (entry = { resolve, reject }));
    list.push(entry);
    return abortable(outcome, signal, () => {
      const i = list.indexOf(entry);
      if (i >= 0) list.splice(i, 1);
    });
  }
}
