// The live event stream (Server-Sent Events). The browser reconnects by itself and sends the last id
// it saw (Last-Event-ID), so the daemon replays what was missed; when it cannot, it sends `reset` and
// the page loads its state again.

import { API } from './api.js';

export const EVENT_TYPES = [
  'job.queued',
  'job.started',
  'job.progress',
  'job.finished',
  'file.verified',
  'file.failed',
  'preview.ready',
  'file.uploaded',
  'device.connected',
  'device.gone',
  'station.state',
];

/** Events arriving within this are handed over together: one render for a burst of verified files. */
const BATCH_MS = 50;

/**
 * Connects and calls `onEvents(batch)` with parsed events in order, `onReset()` when the state must be
 * loaded again (also when the stream first opens: events from then on are not missed), and
 * `onConn(state, closed)` with `live` or `offline`; `closed` when the browser gave up and will not
 * reconnect by itself (the daemon answered with an error status). Returns a function that closes the stream.
 */
export function connect({ onEvents, onReset, onConn }) {
  const es = new EventSource(`${API}events`);
  let queue = [];
  let timer;
  const flush = () => {
    timer = undefined;
    const batch = queue;
    queue = [];
    if (batch.length) onEvents(batch);
  };
  const take = (m) => {
    let e;
    try {
      e = JSON.parse(m.data);
    } catch {
      return;
    }
    if (typeof e?.type !== 'string') return;
    queue.push(e);
    timer ??= setTimeout(flush, BATCH_MS);
  };
  for (const t of EVENT_TYPES) es.addEventListener(t, take);
  es.addEventListener('message', take);
  es.addEventListener('reset', () => {
    queue = [];
    onReset();
  });
  let opened = false;
  es.addEventListener('open', () => {
    onConn('live', false);
    // Reconnects by the browser replay what was missed (Last-Event-ID); only the first open loads.
    if (!opened) onReset();
    opened = true;
  });
  // A station event named `error` arrives as a MessageEvent with data; the browser's own `error`
  // (connection lost) is a plain Event.
  es.addEventListener('error', (ev) => {
    if (ev instanceof MessageEvent && ev.data) take(ev);
    else onConn('offline', es.readyState === EventSource.CLOSED);
  });
  return () => {
    clearTimeout(timer);
    es.close();
  };
}
