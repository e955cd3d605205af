import { expect, test, vi } from 'vitest';

// Packages that `shuttle ingest` must not load while it starts (before its first file): each costs a
// small box start-up time, and none is needed to open a source. A mock's factory runs only when the
// package is imported, so it records what was loaded.
const loaded = vi.hoisted(() => new Set<string>());
vi.mock('exifr', () => {
  loaded.add('exifr');
  return { default: {} };
});
vi.mock('hash-wasm', () => {
  loaded.add('hash-wasm');
  return { createXXHash128: () => Promise.reject(new Error('mocked')) };
});
vi.mock('fast-xml-parser', () => {
  loaded.add('fast-xml-parser');
  return { XMLParser: class {}, XMLValidator: {} };
});

test('the ingest command loads neither exifr, hash-wasm nor fast-xml-parser before its first file', async () => {
  const { ingestCommand } = await import('../src/cli/ingest.js');
  expect(ingestCommand).toBeTypeOf('function');
  expect([...loaded]).toEqual([]);
  // What loads them later still works: the first xxh128 on this thread loads hash-wasm.
  const { makeUpdater } = await import('../src/io/hashing.js');
  await makeUpdater('xxh128').catch(() => undefined);
  expect([...loaded]).toEqual(['hash-wasm']);
});
