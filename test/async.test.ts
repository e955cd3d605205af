/**
 * The shared waiting helpers: abortable promises, the abortable pause, the mutex and linked signals. Each
 * is used on every PTP transaction, so a listener left behind or a queue place never given back would
 * show up as a leak or a hang far from its cause.
 */
import { describe, expect, test, vi } from 'vitest';
import { Mutex, SerialQueue, TIMED_OUT, abortable, linkSignals, sleep, within } from '../src/async.js';
import { ShuttleError } from '../src/errors.js';

/** Counts the abort listeners on a signal (EventTarget keeps no count of its own). */
function counted(signal: AbortSignal): { readonly listeners: number } {
  let n = 0;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = ((...args: Parameters<typeof add>) => {
    n++;
    add(...args);
  }) as typeof signal.addEventListener;
  signal.removeEventListener = ((...args: Parameters<typeof remove>) => {
    n--;
    remove(...args);
  }) as typeof signal.removeEventListener;
  return {
    get listeners() {
      return n;
    },
  };
}

describe('abortable', () => {
  test('a-settled-promise-removes-its-abort-listener', async () => {
    const ac = new AbortController();
    const c = counted(ac.signal);
    await expect(abortable(Promise.resolve(7), ac.signal)).resolves.toBe(7);
    await expect(abortable(Promise.reject(new Error('boom')), ac.signal)).rejects.toThrow('boom');
    expect(c.listeners).toBe(0);
  });

  test('an-abort-rejects-with-the-reason-as-a-shuttle-error-and-runs-the-cancel-hook', async () => {
    const ac = new AbortController();
    let cancelled = 0;
    const p = abortable(new Promise<never>(() => undefined), ac.signal, () => cancelled++);
    ac.abort(new ShuttleError('DEVICE_GONE', 'unplugged'));
    await expect(p).rejects.toMatchObject({ code: 'DEVICE_GONE' });
    expect(cancelled).toBe(1);
    // Already aborted: the hook runs too, and nothing waits.
    await expect(abortable(Promise.resolve(1), ac.signal, () => cancelled++)).rejects.toMatchObject({ code: 'DEVICE_GONE' });
    expect(cancelled).toBe(2);
  });
});

describe('sleep', () => {
  test('an-abort-ends-the-pause-at-once-and-an-aborted-signal-does-not-pause-at-all', async () => {
    const ac = new AbortController();
    const c = counted(ac.signal);
    const started = Date.now();
    const p = sleep(60_000, ac.signal);
    ac.abort();
    await p;
    await sleep(60_000, ac.signal);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(c.listeners).toBe(0);
  });
});

describe('within', () => {
  test('the-promise-wins-when-it-settles-in-time-and-its-timer-goes-with-it', async () => {
    vi.useFakeTimers();
    try {
      const won = within(Promise.resolve(7), 60_000);
      await expect(won).resolves.toBe(7);
      await expect(within(Promise.reject(new Error('boom')), 60_000)).rejects.toThrow('boom');
      expect(vi.getTimerCount()).toBe(0);
      const never = within(new Promise<never>(() => {}), 2_000);
      await vi.advanceTimersByTimeAsync(2_000);
      await expect(never).resolves.toBe(TIMED_OUT);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('Mutex', () => {
  test('holders-run-one-at-a-time-in-order-and-an-aborted-waiter-gives-its-place-back', async () => {
    const m = new Mutex();
    const order: string[] = [];
    const releaseA = await m.acquire(undefined);
    const ac = new AbortController();
    const b = m.acquire(ac.signal);
    const c = m.acquire(undefined).then((release) => {
      order.push('c');
      return release;
    });
    ac.abort();
    await expect(b).rejects.toMatchObject({ code: 'ABORTED' });
    order.push('a');
    releaseA();
    (await c)();
    expect(order).toEqual(['a', 'c']);
    // Nothing is left holding the lock.
    (await m.acquire(undefined))();
  });
});

describe('SerialQueue', () => {
  /** A task the test ends, recording when it started. */
  function steered(log: string[], name: string): { task: () => Promise<void>; end: (err?: Error) => void } {
    let end!: (err?: Error) => void;
    const ended = new Promise<void>((resolve, reject) => (end = (err) => (err ? reject(err) : resolve())));
    return {
      task: () => {
        log.push(name);
        return ended;
      },
      end,
    };
  }

  test('tasks-run-in-order-and-a-push-past-the-depth-returns-when-the-oldest-ends-with-no-clock-involved', async () => {
    vi.useFakeTimers();
    try {
      const log: string[] = [];
      const q = new SerialQueue(2);
      const [a, b, c] = [steered(log, 'a'), steered(log, 'b'), steered(log, 'c')];
      await q.push(a.task);
      await q.push(b.task);
      let returned = false;
      const third = q.push(c.task).then(() => (returned = true));
      await vi.advanceTimersByTimeAsync(0);
      expect(log).toEqual(['a']);
      expect(returned).toBe(false);
      // Waiting is on the tasks themselves: no timer polls for a free place.
      expect(vi.getTimerCount()).toBe(0);
      a.end();
      await third;
      expect(log).toEqual(['a', 'b']);
      b.end();
      c.end();
      await q.drain();
      expect(log).toEqual(['a', 'b', 'c']);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  test('the-first-failure-stops-the-queue-and-is-thrown-by-later-pushes-and-drain', async () => {
    const log: string[] = [];
    const q = new SerialQueue(1);
    const boom = new Error('boom');
    const a = steered(log, 'a');
    await q.push(a.task);
    const b = steered(log, 'b');
    const second = q.push(b.task);
    a.end(boom);
    await expect(second).rejects.toBe(boom);
    // b ran (it was queued before the failure was known); nothing after it is taken.
    b.end();
    await expect(q.drain()).rejects.toBe(boom);
    await expect(q.push(steered(log, 'c').task)).rejects.toBe(boom);
    expect(log).toEqual(['a', 'b']);
  });
});

describe('linkSignals', () => {
  test('the-link-aborts-with-the-reason-of-whichever-side-aborts-and-dispose-removes-both-listeners', () => {
    const a = new AbortController();
    const b = new AbortController();
    const ca = counted(a.signal);
    const cb = counted(b.signal);
    const link = linkSignals(a.signal, b.signal);
    b.abort('timer');
    expect(link.signal.aborted).toBe(true);
    expect(link.signal.reason).toBe('timer');
    link.dispose();
    expect(ca.listeners).toBe(0);
    expect(cb.listeners).toBe(0);

    const first = new AbortController();
    first.abort('first');
    expect(linkSignals(first.signal, new AbortController().signal).signal.reason).toBe('first');
  });
});
