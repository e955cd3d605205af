import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';

/**
 * Checkpoints the journal's write-ahead log on a connection of its own, in this thread: a checkpoint
 * fsyncs the log and the database file, which on the journal's own connection stalls the main thread.
 * Asked by Checkpointer (src/store/checkpointer.ts); answers each request once it is done.
 */
// Only as a worker: imported anywhere else (a cache warming every chunk of the build) it does nothing.
const port = parentPort;
if (port) {
  const { path } = workerData as { path: string };
  const db = new DatabaseSync(path, { timeout: 10_000 });
  db.exec('PRAGMA synchronous = FULL');
  port.on('message', (msg: 'checkpoint' | 'close') => {
    if (msg === 'close') {
      // The last connection to close checkpoints what is left and removes the log, here rather than there.
      db.close();
      port.close();
      return;
    }
    try {
      db.exec('PRAGMA wal_checkpoint(PASSIVE)');
      port.postMessage({ ok: true });
    } catch (e) {
      port.postMessage({ ok: false, message: (e as Error).message });
    }
  });
}
