import { describe, expect, it } from 'vitest';
import { Slots } from '../src/io/slots.js';

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('Slots', () => {
  it('runs at most `size` tasks at once, the rest in the order they asked', async () => {
    const slots = new Slots(2);
    const gates = [deferred(), deferred(), deferred(), deferred()];
    const started: number[] = [];
    let running = 0;
    let peak = 0;
    const runs = gates.map((g, i) =>
      slots.run(async () => {
        started.push(i);
        peak = Math.max(peak, ++running);
        await g.promise;
        running--;
        return i;
      }),
    );
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([0, 1]);
    expect(slots.waiting).toBe(2);
    gates[1]!.resolve();
    await runs[1];
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([0, 1, 2]);
    gates[0]!.resolve();
    gates[2]!.resolve();
    gates[3]!.resolve();
    expect(await Promise.all(runs)).toEqual([0, 1, 2, 3]);
    expect(started).toEqual([0, 1, 2, 3]);
    expect(peak).toBe(2);
  });

  it('frees the slot when a task fails', async () => {
    const slots = new Slots(1);
    await expect(slots.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(slots.run(() => Promise.resolve('next'))).resolves.toBe('next');
  });

  it('a waiter whose signal aborts leaves the line with ABORTED and does not take a slot', async () => {
    const slots = new Slots(1);
    const gate = deferred();
    const first = slots.run(() => gate.promise);
    const controller = new AbortController();
    let ranAborted = false;
    const aborted = slots.run(async () => {
      ranAborted = true;
    }, controller.signal);
    const third = slots.run(() => Promise.resolve('third'));
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ code: 'ABORTED' });
    expect(slots.waiting).toBe(1);
    gate.resolve();
    await first;
    await expect(third).resolves.toBe('third');
    expect(ranAborted).toBe(false);
  });

  it('refuses an already aborted signal at once', async () => {
    const slots = new Slots(1);
    const controller = new AbortController();
    controller.abort();
    await expect(slots.run(() => Promise.resolve(1), controller.signal)).rejects.toMatchObject({ code: 'ABORTED' });
    await expect(slots.run(() => Promise.resolve(2))).resolves.toBe(2);
  });

  it('rejects a size that is not a positive integer', () => {
    expect(() => new Slots(0)).toThrow(RangeError);
    expect(() => new Slots(1.5)).toThrow(RangeError);
  });
});
