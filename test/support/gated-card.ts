import type { Readable } from 'node:stream';
import { FolderSource } from '../../src/device/card/folder-source.js';
import type { OpenOptions, Source, SourceEntry, SourceIdentity, SourceItem } from '../../src/device/source.js';

/**
 * A card folder whose files open only when the test lets them (`release(n)`): the test decides when
 * each file is copied, so progress can be watched step by step and a job held running for as long as
 * needed, without timing. An open waiting for its turn ends when the job's signal aborts.
 */
export class GatedCard implements Source {
  readonly uri: string;
  readonly #inner: FolderSource;
  readonly #label: string;
  #permits = 0;
  #waiters: Array<() => void> = [];
  #listed = 0;
  readonly #listWaiters = new Set<{ n: number; resolve: () => void }>();
  /** Opens that ended because the job's signal aborted while they waited. */
  aborted = 0;

  constructor(root: string, label: string) {
    this.uri = root;
    this.#inner = new FolderSource(root);
    this.#label = label;
  }

  async identity(): Promise<SourceIdentity> {
    return { kind: 'card', key: `card:test:${this.#label}`, label: this.#label, details: {} };
  }

  async *list(signal?: AbortSignal): AsyncIterable<SourceEntry> {
    for await (const entry of this.#inner.list(signal)) {
      yield entry;
      this.#listed++;
      for (const w of [...this.#listWaiters]) if (this.#listed >= w.n) w.resolve();
    }
  }

  /** Resolves once the listing handed over `n` entries. */
  listed(n: number): Promise<void> {
    if (this.#listed >= n) return Promise.resolve();
    return new Promise((resolve) => {
      const w = {
        n,
        resolve: () => {
          this.#listWaiters.delete(w);
          resolve();
        },
      };
      this.#listWaiters.add(w);
    });
  }

  /** Lets `n` more files open. */
  release(n = 1): void {
    this.#permits += n;
    while (this.#permits > 0 && this.#waiters.length > 0) {
      this.#permits--;
      this.#waiters.shift()!();
    }
  }

  async open(item: SourceItem, opts: OpenOptions = {}): Promise<Readable> {
    const { signal } = opts;
    signal?.throwIfAborted();
    if (this.#permits > 0) this.#permits--;
    else {
      await new Promise<void>((resolve, reject) => {
        const go = (): void => {
          signal?.removeEventListener('abort', stop);
          resolve();
        };
        const stop = (): void => {
          this.#waiters = this.#waiters.filter((w) => w !== go);
          this.aborted++;
          reject(signal!.reason);
        };
        this.#waiters.push(go);
        signal?.addEventListener('abort', stop, { once: true });
      });
    }
    return this.#inner.open(item, opts);
  }

  stat(item: SourceItem): ReturnType<Source['stat']> {
    return this.#inner.stat(item);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
