import { EventEmitter } from 'node:events';
import { request, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { EventHub, type StationEvent } from '../src/daemon/events.js';
import { EventStream, FLUSH_MS } from '../src/daemon/http/sse.js';
import { type ApiDaemon, startApiDaemon } from './support/api-daemon.js';
import { captureLog } from './support/daemon-helpers.js';
import { tempDir } from './support/tree.js';

/** The event stream (SSE) of the HTTP API: replay after a reconnect, reset when the gap is lost, slow clients. */

interface Frame {
  id?: string;
  event?: string;
  data?: string;
}

/** An SSE client that collects frames as they come. */
class SseClient {
  readonly frames: Frame[] = [];
  readonly #req;
  #buffer = '';
  #waiters: Array<() => void> = [];
  #ended = false;

  constructor(url: string, headers: Record<string, string> = {}) {
    this.#req = request(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        this.#buffer += chunk;
        for (let i = this.#buffer.indexOf('\n\n'); i >= 0; i = this.#buffer.indexOf('\n\n')) {
          const block = this.#buffer.slice(0, i);
          this.#buffer = this.#buffer.slice(i + 2);
          const f: Frame = {};
          for (const line of block.split('\n')) {
            const m = /^(id|event|data): (.*)$/.exec(line);
            if (m) f[m[1] as keyof Frame] = m[2];
          }
          if (f.data !== undefined || f.event !== undefined) this.frames.push(f);
        }
        for (const w of this.#waiters.splice(0)) w();
      });
      res.on('close', () => {
        this.#ended = true;
        for (const w of this.#waiters.splice(0)) w();
      });
    });
    this.#req.end();
  }

  /** Resolves once `count` frames have come; throws when the stream ends before. */
  async waitFor(count: number): Promise<Frame[]> {
    while (this.frames.length < count) {
      if (this.#ended) throw new Error(`the stream ended after ${this.frames.length} of ${count} frames`);
      await new Promise<void>((r) => this.#waiters.push(r));
    }
    return this.frames.slice(0, count);
  }

  close(): void {
    this.#req.destroy();
  }
}

let work: string;
let cleanup: () => Promise<void>;
let d: ApiDaemon | undefined;
beforeEach(async () => {
  ({ path: work, cleanup } = await tempDir('shuttle-sse-'));
});
afterEach(async () => {
  await d?.daemon.stop();
  d = undefined;
  await cleanup();
});

const error = (n: number, message = `e${n}`) => ({ type: 'error' as const, code: 'SOURCE_UNREADABLE', message });

describe('api events', () => {
  test('a-client-that-reconnects-with-last-event-id-gets-exactly-the-events-it-missed-then-the-new-ones', async () => {
    d = await startApiDaemon(work);
    const { daemon, url } = d;
    const hub = daemon.events;
    const all: StationEvent[] = [];
    hub.subscribe((e) => all.push(e));
    const { eventId } = (await (await fetch(`${url}/api/v1/station`)).json()) as { eventId: number };

    const first = new SseClient(`${url}/api/v1/events?lastEventId=${eventId}`);
    for (let i = 0; i < 3; i++) hub.publish(error(i));
    const seen = await first.waitFor(3);
    expect(seen.map((f) => f.event)).toEqual(['error', 'error', 'error']);
    expect(seen.map((f) => JSON.parse(f.data!) as StationEvent)).toEqual(all.slice(0, 3));
    first.close();

    const lastSeen = Number(seen[2]!.id);
    for (let i = 3; i < 7; i++) hub.publish(error(i));
    const missed = all.filter((e) => e.id > lastSeen);
    expect(missed).toHaveLength(4);
    const again = new SseClient(`${url}/api/v1/events`, { 'last-event-id': String(lastSeen) });
    const replayed = await again.waitFor(4);
    expect(replayed.map((f) => Number(f.id))).toEqual(missed.map((e) => e.id));
    expect(replayed.map((f) => JSON.parse(f.data!) as StationEvent)).toEqual(missed);
    hub.publish(error(7));
    const live = (await again.waitFor(5))[4]!;
    expect(JSON.parse(live.data!)).toEqual(all.at(-1));
    // Nothing twice, nothing extra.
    expect(again.frames).toHaveLength(5);
    again.close();

    // A filter by type.
    const filtered = new SseClient(`${url}/api/v1/events?types=file.uploaded&lastEventId=${hub.lastId}`);
    hub.publish(error(8));
    hub.publish({ type: 'file.uploaded', fileId: 1, bucket: 'b', key: 'k', bytes: 1, outcome: 'uploaded' });
    expect((await filtered.waitFor(1)).map((f) => f.event)).toEqual(['file.uploaded']);
    filtered.close();
  });

  test('a-client-whose-missed-events-are-no-longer-kept-or-from-before-a-restart-gets-a-reset', async () => {
    d = await startApiDaemon(work);
    const { daemon, url } = d;
    const stale = daemon.events.lastId;
    for (let i = 0; i < 2100; i++) daemon.events.publish(error(i));
    for (const last of [stale, daemon.events.lastId + 50]) {
      const c = new SseClient(`${url}/api/v1/events`, { 'last-event-id': String(last) });
      const [f] = await c.waitFor(1);
      expect(f!.event).toBe('reset');
      expect(JSON.parse(f!.data!)).toMatchObject({ lastId: daemon.events.lastId });
      daemon.events.publish(error(-1));
      expect(JSON.parse((await c.waitFor(2))[1]!.data!)).toMatchObject({ message: 'e-1' });
      c.close();
    }
  });

  test('an-idle-stream-gets-keep-alive-comments', async () => {
    d = await startApiDaemon(work, {}, {}, {}, 50);
    const res = await new Promise<import('node:http').IncomingMessage>((resolve) => request(`${d!.url}/api/v1/events`, (r) => resolve(r)).end());
    expect(res.headers['content-type']).toBe('text/event-stream');
    let text = '';
    res.setEncoding('utf8');
    await new Promise<void>((resolve) =>
      res.on('data', (c: string) => {
        text += c;
        if (text.includes(': heartbeat\n\n')) resolve();
      }),
    );
    expect(text.startsWith('retry: 2000\n\n')).toBe(true);
    res.destroy();
  });

  test('a-client-that-stops-reading-is-cut-off-while-the-others-and-the-hub-go-on', async () => {
    d = await startApiDaemon(work);
    const { daemon, url, log } = d;
    const { port } = new URL(url);
    const stalled = connect(Number(port), '127.0.0.1');
    await new Promise<void>((r) => stalled.once('connect', () => r()));
    stalled.write(`GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAccept: text/event-stream\r\n\r\n`);
    // Reads the headers, then nothing more.
    await new Promise<void>((r) => stalled.once('data', () => r()));
    stalled.pause();
    const closed = new Promise<void>((r) => stalled.once('close', () => r()));
    const reader = new SseClient(`${url}/api/v1/events?lastEventId=${daemon.events.lastId}`);

    const big = 'x'.repeat(16 * 1024);
    let published = 0;
    const cutOff = () => log.lines.some((l) => l.msg?.includes('event stream client is not reading'));
    // Until the daemon gives up on it; the socket buffers of the loopback take some megabytes first. The
    // reading client catches up after each batch (in this one process it reads only while the test
    // waits), so only the stalled one can pass the bound.
    while (!cutOff() && published < 4000) {
      for (let i = 0; i < 50; i++) daemon.events.publish(error(published++, big));
      await reader.waitFor(published);
    }
    expect(log.lines.filter((l) => l.msg?.includes('event stream client is not reading'))).toHaveLength(1);
    expect(published).toBeLessThan(4000);
    stalled.resume();
    await closed;
    // The reading client got every event, in order.
    const frames = await reader.waitFor(published);
    expect(frames.map((f) => (JSON.parse(f.data!) as { message: string }).message.length)).toEqual(Array(published).fill(big.length));
    reader.close();
  });

  test('events-close-together-reach-each-client-in-one-write-and-a-reconnect-replays-in-one-write', async () => {
    /** A client's response: what the stream writes to it, write by write. */
    class Response extends EventEmitter {
      readonly writes: string[] = [];
      writableLength = 0;
      write(text: string): boolean {
        this.writes.push(text);
        return true;
      }
      end(): void {}
      destroy(): void {}
    }
    const ids = (text: string): number[] => [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'performance'] });
    const hub = new EventHub();
    const stream = new EventStream(hub, { logger: captureLog().logger });
    try {
      const clients = [new Response(), new Response(), new Response()];
      for (const c of clients) stream.attach(c as unknown as ServerResponse, undefined, undefined);
      // The first event after a quiet spell goes out at once.
      hub.publish(error(1));
      vi.advanceTimersByTime(0);
      for (const c of clients) expect(c.writes.map(ids)).toEqual([[1]]);
      // Then an event per millisecond (a file verified after another): one write per window, not per event.
      for (let i = 2; i <= 41; i++) {
        hub.publish(error(i));
        vi.advanceTimersByTime(1);
      }
      vi.advanceTimersByTime(FLUSH_MS);
      for (const c of clients) expect(c.writes.map(ids)).toEqual([[1], range(2, 41)]);
      // A client back after event 10 gets the 31 it missed in one write, then what follows with the others.
      const back = new Response();
      stream.attach(back as unknown as ServerResponse, 10, undefined);
      expect(back.writes.map(ids)).toEqual([range(11, 41)]);
      for (let i = 42; i <= 141; i++) hub.publish(error(i));
      vi.advanceTimersByTime(FLUSH_MS);
      expect(back.writes.map(ids)).toEqual([range(11, 41), range(42, 141)]);
      expect(clients[0]!.writes.at(-1)).toBe(back.writes[1]);
    } finally {
      stream.close();
      hub.close();
      vi.useRealTimers();
    }
  });
});
