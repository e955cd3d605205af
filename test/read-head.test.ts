import { describe, expect, it } from 'vitest';
import { joinHead, readHead } from '../src/ingest/copy.js';

/** A source that hands out one buffer and overwrites it on every pull, as a recycling source may. */
function recycling(chunks: Buffer[]): { iter: AsyncIterator<Buffer>; handed: Buffer[] } {
  const buffer = Buffer.alloc(Math.max(...chunks.map((c) => c.length)));
  const handed: Buffer[] = [];
  let i = 0;
  return {
    handed,
    iter: {
      next: async () => {
        if (i >= chunks.length) return { done: true, value: undefined };
        const c = chunks[i++]!;
        buffer.fill(0xee);
        c.copy(buffer);
        const view = buffer.subarray(0, c.length);
        handed.push(view);
        return { done: false, value: view };
      },
    },
  };
}

describe('readHead', () => {
  it('keeps the chunk that covers the head without copying it', async () => {
    const { iter, handed } = recycling([Buffer.from('a'.repeat(100))]);
    const r = await readHead(iter, 10);
    expect(r).toMatchObject({ bytes: 100, ended: false });
    expect(r.head[0]).toBe(handed[0]);
    expect(joinHead(r.head)).toBe(handed[0]);
  });

  it('copies each chunk before pulling the next, so a reused source buffer cannot change the head', async () => {
    const chunks = [Buffer.from('first-'), Buffer.from('second-'), Buffer.from('third and last')];
    const { iter, handed } = recycling(chunks);
    const r = await readHead(iter, 15);
    expect(r).toMatchObject({ bytes: 27, ended: false });
    expect(joinHead(r.head).toString()).toBe('first-second-third and last');
    // The two chunks pulled before the last are copies; the last is the source's own view.
    expect(r.head[0]).not.toBe(handed[0]);
    expect(r.head[2]).toBe(handed[2]);
  });

  it('reports a stream that ends inside the head', async () => {
    const { iter } = recycling([Buffer.from('tiny'), Buffer.from('file')]);
    const r = await readHead(iter, 1000);
    expect(r).toMatchObject({ bytes: 8, ended: true });
    expect(joinHead(r.head).toString()).toBe('tinyfile');
  });
});
