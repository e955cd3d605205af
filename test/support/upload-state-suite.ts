/**
 * What every UploadStateStore must do, as one suite run against each implementation: the life of one
 * multipart upload (begin, parts, completed or aborted, replaced by a new begin), resuming after the store
 * is closed and opened again, and isolation between uploads of different keys running at once. A store
 * that does not survive a reopen says so in its factory, and the suite checks that it indeed does not.
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { isShuttleError } from '../../src/errors.js';
import type { NewUploadState, PartRecord, UploadRef, UploadStateStore } from '../../src/upload/state.js';
import { tempDir } from './tree.js';

export interface OpenedUploadStateStore {
  store: UploadStateStore;
  close(): Promise<void>;
}

export interface UploadStateStoreFactory {
  /** Whether a store opened again on the same state directory finds what the last one recorded; if not, why not. */
  durable: true | { why: string };
  /** A store on the state directory `dir`; called again after close, it opens the same state. */
  open(dir: string): Promise<OpenedUploadStateStore>;
}

const MiB = 1024 * 1024;
const refA: UploadRef = { bucket: 'photos', key: 'studio/2026/2026-03-07/IMG_0001.CR3' };
const newUpload = (ref: UploadRef, uploadId: string, size = 40 * MiB): NewUploadState => ({ ...ref, uploadId, size, sha256: 'a'.repeat(64), partSize: 5 * MiB });
const part = (n: number, etag = `"${n}"`): PartRecord => ({ partNumber: n, size: 5 * MiB, md5: n.toString(16).padStart(32, '0'), etag });

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (error) {
    return isShuttleError(error) ? error.code : `not a ShuttleError: ${String(error)}`;
  }
  return 'resolved';
}

export function describeUploadStateConformance(name: string, factory: UploadStateStoreFactory): void {
  describe(`${name} upload state store conformance`, () => {
    let dir: { path: string; cleanup: () => Promise<void> };
    const opened: OpenedUploadStateStore[] = [];

    const open = async (): Promise<UploadStateStore> => {
      const o = await factory.open(dir.path);
      opened.push(o);
      return o.store;
    };
    /** Closes every store open on the directory and opens it again. */
    const reopen = async (): Promise<UploadStateStore> => {
      while (opened.length > 0) await opened.pop()!.close();
      return open();
    };

    beforeEach(async () => {
      dir = await tempDir('shuttle-upload-state-conform-');
    });
    afterEach(async () => {
      while (opened.length > 0) await opened.pop()!.close();
      await dir.cleanup();
    });

    test('knows nothing of an upload it was never told of', async () => {
      expect(await (await open()).load(refA)).toBeUndefined();
    });

    test('begin records the upload as uploading with no parts', async () => {
      const store = await open();
      await store.begin(newUpload(refA, 'u1'));
      expect(await store.load(refA)).toEqual({ ...newUpload(refA, 'u1'), status: 'uploading', parts: [] });
    });

    test('records parts in part order whatever order they complete in', async () => {
      const store = await open();
      await store.begin(newUpload(refA, 'u1'));
      for (const n of [3, 1, 2]) await store.recordPart(refA, 'u1', part(n));
      expect((await store.load(refA))?.parts).toEqual([part(1), part(2), part(3)]);
    });

    test('complete and abort are recorded with the parts kept', async () => {
      const store = await open();
      await store.begin(newUpload(refA, 'u1'));
      await store.recordPart(refA, 'u1', part(1));
      await store.setStatus(refA, 'u1', 'completed');
      expect(await store.load(refA)).toEqual({ ...newUpload(refA, 'u1'), status: 'completed', parts: [part(1)] });
      await store.setStatus(refA, 'u1', 'aborted');
      expect(await store.load(refA)).toMatchObject({ uploadId: 'u1', status: 'aborted', parts: [part(1)] });
    });

    test('a new begin for the key forgets the earlier upload and its parts', async () => {
      const store = await open();
      await store.begin(newUpload(refA, 'u1'));
      await store.recordPart(refA, 'u1', part(1));
      await store.setStatus(refA, 'u1', 'aborted');
      await store.begin(newUpload(refA, 'u2', 12 * MiB));
      expect(await store.load(refA)).toEqual({ ...newUpload(refA, 'u2', 12 * MiB), status: 'uploading', parts: [] });
    });

    test('refuses a part or a status for an upload id that is no longer current', async () => {
      const store = await open();
      expect(await codeOf(store.recordPart(refA, 'u1', part(1))), 'a part for an upload never begun').toBe('JOURNAL');
      await store.begin(newUpload(refA, 'u1'));
      await store.begin(newUpload(refA, 'u2'));
      expect(await codeOf(store.recordPart(refA, 'u1', part(1)))).toBe('JOURNAL');
      expect(await codeOf(store.setStatus(refA, 'u1', 'completed'))).toBe('JOURNAL');
      expect(await store.load(refA)).toEqual({ ...newUpload(refA, 'u2'), status: 'uploading', parts: [] });
    });

    test('recording the same part again keeps one record of it, the latest', async () => {
      const store = await open();
      await store.begin(newUpload(refA, 'u1'));
      await store.recordPart(refA, 'u1', part(2));
      await store.recordPart(refA, 'u1', part(2));
      expect((await store.load(refA))?.parts).toEqual([part(2)]);
      // A part sent again (its first answer lost) has a new ETag, and that one is what Complete must name.
      await store.recordPart(refA, 'u1', part(2, '"again"'));
      expect((await store.load(refA))?.parts).toEqual([part(2, '"again"')]);
    });

    test('keeps every part when completions of one upload are recorded at once', async () => {
      const store = await open();
      await store.begin(newUpload(refA, 'u1'));
      await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((n) => store.recordPart(refA, 'u1', part(n))));
      expect((await store.load(refA))?.parts.map((p) => p.partNumber)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    });

    test('uploads of different keys running at once are isolated from each other', async () => {
      const store = await open();
      // The same key in another bucket, and a key that the first one extends.
      const refs: UploadRef[] = [refA, { bucket: 'archive', key: refA.key }, { bucket: refA.bucket, key: `${refA.key}.xmp` }];
      await Promise.all(refs.map((r, i) => store.begin(newUpload(r, `u${i}`, (i + 1) * MiB))));
      await Promise.all([1, 2, 3].flatMap((n) => refs.map((r, i) => store.recordPart(r, `u${i}`, part(n, `"${i}-${n}"`)))));
      await store.setStatus(refs[0]!, 'u0', 'completed');
      await store.begin(newUpload(refs[1]!, 'u1-again'));
      expect(await store.load(refs[0]!)).toEqual({ ...newUpload(refs[0]!, 'u0', MiB), status: 'completed', parts: [1, 2, 3].map((n) => part(n, `"0-${n}"`)) });
      expect(await store.load(refs[1]!)).toEqual({ ...newUpload(refs[1]!, 'u1-again'), status: 'uploading', parts: [] });
      expect(await store.load(refs[2]!)).toEqual({ ...newUpload(refs[2]!, 'u2', 3 * MiB), status: 'uploading', parts: [1, 2, 3].map((n) => part(n, `"2-${n}"`)) });
      // One upload's id is no key to another's state.
      expect(await codeOf(store.recordPart(refs[2]!, 'u0', part(4)))).toBe('JOURNAL');
    });

    test('what load returns cannot change the stored state', async () => {
      const store = await open();
      await store.begin(newUpload(refA, 'u1'));
      await store.recordPart(refA, 'u1', part(1));
      const loaded = await store.load(refA);
      (loaded!.parts as PartRecord[])[0]!.etag = 'tampered';
      (loaded as { status: string }).status = 'completed';
      expect(await store.load(refA)).toEqual({ ...newUpload(refA, 'u1'), status: 'uploading', parts: [part(1)] });
    });

    const { durable } = factory;
    if (durable === true) {
      test('resumes after the store is closed and opened again', async () => {
        const before = await open();
        await before.begin(newUpload(refA, 'u1'));
        await before.recordPart(refA, 'u1', part(2));
        await before.recordPart(refA, 'u1', part(1));
        const after = await reopen();
        expect(await after.load(refA)).toEqual({ ...newUpload(refA, 'u1'), status: 'uploading', parts: [part(1), part(2)] });
        // The resumed upload goes on: a part recorded again stays one record, a new one joins, and it completes.
        await after.recordPart(refA, 'u1', part(2));
        await after.recordPart(refA, 'u1', part(3));
        await after.setStatus(refA, 'u1', 'completed');
        expect(await (await reopen()).load(refA)).toEqual({ ...newUpload(refA, 'u1'), status: 'completed', parts: [part(1), part(2), part(3)] });
      });

      test('after a reopen, parts for an upload id that was replaced are still refused', async () => {
        const before = await open();
        await before.begin(newUpload(refA, 'u1'));
        await before.begin(newUpload(refA, 'u2'));
        const after = await reopen();
        expect(await codeOf(after.recordPart(refA, 'u1', part(1)))).toBe('JOURNAL');
        expect(await after.load(refA)).toMatchObject({ uploadId: 'u2', parts: [] });
      });
    } else {
      test(`is not durable, as declared (${durable.why}): a store opened again knows nothing`, async () => {
        const before = await open();
        await before.begin(newUpload(refA, 'u1'));
        await before.recordPart(refA, 'u1', part(1));
        expect(await (await reopen()).load(refA)).toBeUndefined();
      });
    }
  });
}
