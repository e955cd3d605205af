import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';

/** The worker script: the .js beside this module when built, the .ts source when run from src/ (tests). */
function workerUrl(): URL {
  const js = new URL('./checkpoint-worker.js', import.meta.url);
  return existsSync(fileURLToPath(js)) ? js : new URL('./checkpoint-worker.ts', import.meta.url);
}

/**
 * Checkpoints of a journal's write-ahead log in a worker thread (see checkpoint-worker.ts), one at a time,
 * started on the first request: a short run asks for none and starts no thread. A worker that fails or
 * dies is not replaced; the journal's own automatic checkpoint, set far out, still bounds the log then.
 */
export class Checkpointer {
  #worker: Worker | undefined;
  #busy = false;
  #failed = false;
  #closed = false;
  /** Checkpoints the worker finished (for tests). */
  done = 0;

  readonly #path: string;

  constructor(path: string) {
    this.#path = path;
  }

  /** Starts a checkpoint unless one is under way (or the worker failed); says whether it did. */
  request(): boolean {
    if (this.#busy || this.#closed || this.#failed) return false;
    this.#busy = true;
    const w = (this.#worker ??= this.#start());
    // Held by the event loop only while a checkpoint runs: an idle worker must not keep the process alive.
    w.ref();
    w.postMessage('checkpoint');
    return true;
  }

  #start(): Worker {
    // The worker inherits Node's flags (so --cpu-prof profiles it too), except one it refuses: --input-type.
    const execArgv = process.execArgv.filter((a) => !a.startsWith('--input-type'));
    const w = new Worker(workerUrl(), { workerData: { path: this.#path }, execArgv, resourceLimits: { maxYoungGenerationSizeMb: 2 } });
    w.on('message', (reply: { ok: boolean }) => {
      this.#busy = false;
      if (reply.ok) this.done++;
      else this.#failed = true;
      if (!this.#closed) w.unref();
    });
    const gone = (): void => {
      this.#failed = true;
      this.#busy = false;
      this.#worker = undefined;
    };
    w.on('error', gone);
    w.on('exit', gone);
    return w;
  }

  /** The worker closes its connection once its checkpoint (if any) is over, and ends. */
  close(): void {
    this.#closed = true;
    const w = this.#worker;
    if (w === undefined) return;
    w.ref();
    w.postMessage('close');
  }
}
