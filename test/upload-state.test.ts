import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { Journal } from '../src/store/journal.js';
import { JournalUploadStateStore } from '../src/upload/journal-state.js';
import { MemoryUploadStateStore, type UploadStateStore } from '../src/upload/state.js';

const ref = { bucket: 'photos', key: 'studio/2026/2026-03-07/IMG_0001.CR3' };
const fresh = { ...ref, uploadId: 'u1', size: 40 * 1024 * 1024, sha256: 'a'.repeat(64), partSize: 5 * 1024 * 1024 };
const part = (n: number) => ({ partNumber: n, size: 5 * 1024 * 1024, md5: n.toString(16).padStart(32, '0'), etag: `"${n}"` });

let dir: string;
let journal: Journal | undefined;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shuttle-upload-state-'));
});
afterEach(async () => {
  journal?.close();
  journal = undefined;
  await rm(dir, { recursive: true, force: true });
});

const stores: Array<[string, () => UploadStateStore]> = [
  ['memory', () => new MemoryUploadStateStore()],
  ['journal', () => new JournalUploadStateStore((journal ??= Journal.open(dir)))],
];

describe.each(stores)('%s upload state store', (_name, make) => {
  it('knows nothing about an upload it was never told of', async () => {
    expect(await make().load(ref)).toBeUndefined();
  });

  it('records a new upload, its parts in order, and its status', async () => {
    const store = make();
    await store.begin(fresh);
    await store.recordPart(ref, 'u1', part(3));
    await store.recordPart(ref, 'u1', part(1));
    await store.setStatus(ref, 'u1', 'completed');
    expect(await store.load(ref)).toEqual({ ...fresh, status: 'completed', parts: [part(1), part(3)] });
  });

  it('keeps one record per part number, the latest', async () => {
    const store = make();
    await store.begin(fresh);
    await store.recordPart(ref, 'u1', part(2));
    await store.recordPart(ref, 'u1', { ...part(2), etag: '"again"' });
    expect((await store.load(ref))?.parts).toEqual([{ ...part(2), etag: '"again"' }]);
  });

  it('starts over when a new upload begins for the same key', async () => {
    const store = make();
    await store.begin(fresh);
    await store.recordPart(ref, 'u1', part(1));
    await store.begin({ ...fresh, uploadId: 'u2' });
    expect(await store.load(ref)).toEqual({ ...fresh, uploadId: 'u2', status: 'uploading', parts: [] });
  });

  it('refuses a part or status for an upload id that is no longer current', async () => {
    const store = make();
    await store.begin(fresh);
    await store.begin({ ...fresh, uploadId: 'u2' });
    for (const write of [() => store.recordPart(ref, 'u1', part(1)), () => store.setStatus(ref, 'u1', 'aborted')]) {
      let code: string | undefined;
      try {
        await write();
      } catch (error) {
        code = isShuttleError(error) ? error.code : 'other';
      }
      expect(code).toBe('JOURNAL');
    }
    expect((await store.load(ref))?.parts).toEqual([]);
  });

  it('keeps every part when completions are recorded concurrently', async () => {
    const store = make();
    await store.begin(fresh);
    await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((n) => store.recordPart(ref, 'u1', part(n))));
    expect((await store.load(ref))?.parts.map((p) => p.partNumber)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('hands out copies that callers cannot use to change the stored state', async () => {
    const store = make();
    await store.begin(fresh);
    await store.recordPart(ref, 'u1', part(1));
    const loaded = await store.load(ref);
    (loaded?.parts as unknown as Array<{ etag: string }>)[0]!.etag = 'tampered';
    expect((await store.load(ref))?.parts[0]?.etag).toBe('"1"');
  });
});
