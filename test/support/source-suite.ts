/**
 * What every Source must do, as one suite run against each implementation (folder, card, USB camera,
 * PTP/IP camera, hot folder). Each implementation supplies a factory that puts a fixture tree on its
 * medium; where an implementation cannot meet a point of the contract, its factory says so in an explicit
 * capability with the reason, and the test holds it to that weaker promise instead of skipping.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ShuttleError } from '../../src/errors.js';
import { isSourceFault, isSourceSkip, type Source, type SourceEntry, type SourceIdentity, type SourceItem } from '../../src/device/source.js';
import { bytes } from './fixtures.js';

export interface FixtureFile {
  /** '/'-separated, relative to the medium's root. */
  readonly path: string;
  readonly content: Buffer;
  readonly mtimeMs: number;
}

export interface SourceCapabilities {
  /**
   * How finely the source reports modification times: a listed mtime is the written one cut down to a
   * multiple of `precisionMs`. 1 is exact; anything coarser names the medium or protocol that loses the rest.
   */
  mtime: { precisionMs: 1 } | { precisionMs: number; why: string };
}

/** A fixture tree on one medium (a folder, a card image, a camera serving it). */
export interface BuiltSource {
  /** A new Source on the same medium: a new instance, a remount, a new camera session. */
  open(): Promise<Source>;
  /** The path the source lists a fixture file under (a camera puts its storage's name first). */
  listedPath(fixturePath: string): string;
  dispose(): Promise<void>;
}

export interface SourceFactory {
  /** What the source's identity says it is. */
  kind: SourceIdentity['kind'];
  capabilities: SourceCapabilities;
  build(files: readonly FixtureFile[]): Promise<BuiltSource>;
}

/** Several times any source's largest chunk (a USB bulk read takes up to 4 MiB), so that a stream is still running after its first. */
const BIG = 9 * 1024 * 1024 + 4099;
const BASE_MTIME = Date.UTC(2024, 4, 6, 7, 8, 11, 567);

const PATHS = {
  plain: 'IMG_0001.JPG',
  big: 'DCIM/100CANON/IMG_0002.CR3',
  empty: 'DCIM/100CANON/EMPTY.JPG',
  nested: 'DCIM/100CANON/sub folder/deeper/IMG_0003.JPG',
  unicode: 'DCIM/101 ÉTÉ/Été 写真 01.jpg',
} as const;

/** The tree the suite checks: distinct bytes per `seed`, so that two trees are two different media. */
export function conformanceTree(seed: number): FixtureFile[] {
  const sizes: Record<keyof typeof PATHS, number> = { plain: 70_001, big: BIG, empty: 0, nested: 1234, unicode: 4567 };
  return (Object.keys(PATHS) as Array<keyof typeof PATHS>).map((k, i) => ({
    path: PATHS[k],
    content: bytes(sizes[k], seed * 100 + i + 1),
    // Odd milliseconds and seconds, so that a source that rounds instead of truncating shows.
    mtimeMs: BASE_MTIME + i * 61_001,
  }));
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

interface Drained {
  bytes: number;
  sha256: string;
  error?: unknown;
}

/** Reads a stream to its end or its error, hashing each chunk before the next is pulled (what OpenOptions.recycle asks of a consumer). */
async function drain(stream: Readable, onChunk?: (n: number) => void): Promise<Drained> {
  const h = createHash('sha256');
  let n = 0;
  try {
    for await (const chunk of stream) {
      n += (chunk as Buffer).length;
      h.update(chunk as Buffer);
      onChunk?.(n);
    }
  } catch (error) {
    return { bytes: n, sha256: '', error };
  }
  return { bytes: n, sha256: h.digest('hex') };
}

async function entriesOf(source: Source, signal?: AbortSignal): Promise<SourceEntry[]> {
  const out: SourceEntry[] = [];
  for await (const e of source.list(signal)) out.push(e);
  return out;
}

function itemsOf(entries: readonly SourceEntry[]): SourceItem[] {
  return entries.filter((e): e is SourceItem => !isSourceFault(e) && !isSourceSkip(e));
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection, got a value');
}

export function describeSourceConformance(name: string, factory: SourceFactory): void {
  describe(`${name} source conformance`, () => {
    const tree = conformanceTree(1);
    const file = (path: string): FixtureFile => tree.find((f) => f.path === path)!;
    let built: BuiltSource;

    beforeAll(async () => {
      built = await factory.build(tree);
    });
    afterAll(async () => {
      await built?.dispose();
    });

    async function withSource<T>(run: (source: Source, items: Map<string, SourceItem>) => Promise<T>): Promise<T> {
      const source = await built.open();
      try {
        const items = new Map(itemsOf(await entriesOf(source)).map((i) => [i.path, i]));
        return await run(source, items);
      } finally {
        await source.close();
      }
    }

    const itemFor = (items: Map<string, SourceItem>, path: string): SourceItem => {
      const item = items.get(built.listedPath(path));
      if (item === undefined) throw new Error(`${built.listedPath(path)} was not listed (listed: ${[...items.keys()].join(', ')})`);
      return item;
    };

    const expectMtime = (listed: number, written: number, path: string): void => {
      const { precisionMs } = factory.capabilities.mtime;
      const expected = Math.floor(written / precisionMs) * precisionMs;
      expect(listed, `${path}: listed mtime ${new Date(listed).toISOString()}, written ${new Date(written).toISOString()} (precision ${precisionMs} ms)`).toBe(expected);
    };

    test('identity is the same on a second open of the same medium', async () => {
      const first = await built.open();
      const a = await first.identity();
      await first.close();
      const second = await built.open();
      const b = await second.identity();
      await second.close();
      expect(a.kind).toBe(factory.kind);
      expect(a.key).not.toBe('');
      expect(b).toMatchObject({ kind: a.kind, key: a.key });
    });

    test('identity differs for another medium with other content', async () => {
      const other = await factory.build(conformanceTree(2));
      try {
        const a = await withSource((s) => s.identity());
        const source = await other.open();
        let b;
        try {
          b = await source.identity();
        } finally {
          await source.close();
        }
        expect(b.kind).toBe(a.kind);
        expect(b.key).not.toBe(a.key);
      } finally {
        await other.dispose();
      }
    });

    test('lists every file once with its size and mtime, and nothing else', async () => {
      const source = await built.open();
      try {
        const entries = await entriesOf(source);
        expect(entries.filter(isSourceFault)).toEqual([]);
        expect(entries.filter(isSourceSkip)).toEqual([]);
        const items = itemsOf(entries);
        expect(items.map((i) => i.path).sort()).toEqual(tree.map((f) => built.listedPath(f.path)).sort());
        for (const f of tree) {
          const item = items.find((i) => i.path === built.listedPath(f.path))!;
          expect(item.size, f.path).toBe(f.content.length);
          expectMtime(item.mtimeMs, f.mtimeMs, f.path);
        }
      } finally {
        await source.close();
      }
    });

    test('paths are relative and /-separated', async () => {
      await withSource(async (_source, items) => {
        expect(items.size).toBe(tree.length);
        for (const path of items.keys()) {
          expect(path, path).not.toMatch(/^\//);
          expect(path, path).not.toContain('\\');
          for (const part of path.split('/')) expect(['', '.', '..'], path).not.toContain(part);
        }
      });
    });

    test('open streams exactly the bytes of every file', async () => {
      await withSource(async (source, items) => {
        for (const f of tree) {
          expect(await drain(await source.open(itemFor(items, f.path))), f.path).toEqual({ bytes: f.content.length, sha256: sha256(f.content) });
        }
      });
    });

    test('open with a chunk size and recycled buffers streams the same bytes', async () => {
      await withSource(async (source, items) => {
        for (const f of tree) {
          const stream = await source.open(itemFor(items, f.path), { chunkSize: 64 * 1024, recycle: 2 });
          expect(await drain(stream), f.path).toEqual({ bytes: f.content.length, sha256: sha256(f.content) });
        }
      });
    });

    test('open from an offset streams the tail', async () => {
      const big = file(PATHS.big);
      const plain = file(PATHS.plain);
      await withSource(async (source, items) => {
        const cases: Array<[FixtureFile, number]> = [
          [big, 1],
          [big, 1024 * 1024],
          [big, 1024 * 1024 + 3],
          [big, big.content.length - 1],
          [plain, 4096],
          [plain, plain.content.length],
        ];
        for (const [f, offset] of cases) {
          const tail = f.content.subarray(offset);
          expect(await drain(await source.open(itemFor(items, f.path), { offset })), `${f.path} from ${offset}`).toEqual({ bytes: tail.length, sha256: sha256(tail) });
          const recycled = await source.open(itemFor(items, f.path), { offset, chunkSize: 64 * 1024, recycle: 2 });
          expect(await drain(recycled), `${f.path} from ${offset}, recycled`).toEqual({ bytes: tail.length, sha256: sha256(tail) });
        }
      });
    });

    test('open with an already aborted signal rejects with the abort reason', async () => {
      await withSource(async (source, items) => {
        const reason = new ShuttleError('ABORTED', 'conformance: stopped before the open');
        const ac = new AbortController();
        ac.abort(reason);
        expect(await rejection(source.open(itemFor(items, PATHS.big), { signal: ac.signal }))).toBe(reason);
      });
    });

    test('a signal aborted mid-stream ends the stream with an error', async () => {
      const big = file(PATHS.big);
      await withSource(async (source, items) => {
        const reason = new ShuttleError('ABORTED', 'conformance: stopped mid-stream');
        const ac = new AbortController();
        const stream = await source.open(itemFor(items, PATHS.big), { signal: ac.signal });
        const r = await drain(stream, () => {
          if (!ac.signal.aborted) ac.abort(reason);
        });
        expect(r.error, 'the stream did not end with the abort reason').toBe(reason);
        expect(r.bytes).toBeGreaterThan(0);
        expect(r.bytes).toBeLessThan(big.content.length);
        expect(stream.destroyed).toBe(true);
      });
    });

    test('list with an already aborted signal rejects with the abort reason', async () => {
      const source = await built.open();
      try {
        const reason = new ShuttleError('ABORTED', 'conformance: stopped before the listing');
        const ac = new AbortController();
        ac.abort(reason);
        expect(await rejection(entriesOf(source, ac.signal))).toBe(reason);
      } finally {
        await source.close();
      }
    });

    test('stat matches the listing', async () => {
      await withSource(async (source, items) => {
        for (const f of tree) {
          const item = itemFor(items, f.path);
          expect(await source.stat(item), f.path).toEqual({ size: item.size, mtimeMs: item.mtimeMs });
        }
      });
    });

    test('close is idempotent', async () => {
      const source = await built.open();
      await source.identity();
      await source.close();
      await source.close();
    });

    test('a zero-byte file lists with size 0 and opens to an empty stream', async () => {
      await withSource(async (source, items) => {
        const item = itemFor(items, PATHS.empty);
        expect(item.size).toBe(0);
        expectMtime(item.mtimeMs, file(PATHS.empty).mtimeMs, PATHS.empty);
        expect(await drain(await source.open(item))).toEqual({ bytes: 0, sha256: sha256(Buffer.alloc(0)) });
      });
    });

    test('a file in a nested folder lists under its folders and opens', async () => {
      await withSource(async (source, items) => {
        const f = file(PATHS.nested);
        const item = itemFor(items, PATHS.nested);
        expect(item.path.split('/').slice(-4)).toEqual(['100CANON', 'sub folder', 'deeper', 'IMG_0003.JPG']);
        expect(await drain(await source.open(item))).toEqual({ bytes: f.content.length, sha256: sha256(f.content) });
      });
    });

    test('names with spaces and non-ASCII list as written and open', async () => {
      await withSource(async (source, items) => {
        const f = file(PATHS.unicode);
        const item = itemFor(items, PATHS.unicode);
        expect(item.path.normalize('NFC')).toBe(item.path);
        expect(item.path.endsWith('DCIM/101 ÉTÉ/Été 写真 01.jpg')).toBe(true);
        expect(item.pathBytes).toBeUndefined();
        expect(await drain(await source.open(item))).toEqual({ bytes: f.content.length, sha256: sha256(f.content) });
      });
    });
  });
}
