import type { ServerResponse } from 'node:http';
import type { Logger } from '../../log.js';
import type { EventHub, StationEvent, StationEventType } from '../events.js';

/**
 * The event hub as Server-Sent Events, for any number of clients. One subscription to the hub for all
 * of them; each event is serialised once, and what comes within a short window goes to each client in
 * one socket write (an ingest publishes a few events per file: one write per client per window, not one
 * per event and client). The first event after a quiet spell goes out at once; the window delays the
 * rest by at most FLUSH_MS, well within the 250 ms between a job's progress events. Writes never wait
 * for the client: a client
 * that does not read (a phone gone to sleep, a stalled proxy) only grows its own socket buffer, and once
 * that passes a bound the client is cut off. It then reconnects with Last-Event-ID and gets what it
 * missed from the hub's replay, or `event: reset` (reload everything) when the hub no longer has it.
 * Ingest never waits for a client.
 */

export interface SseClient {
  raw: ServerResponse;
  /** Event types it wants; all when undefined. */
  types: ReadonlySet<string> | undefined;
  /** Frames for its next write, and their length. */
  pending: string[];
  pendingBytes: number;
}

export const DEFAULT_MAX_BUFFER_BYTES = 1024 * 1024;
/** Events within this of the last write wait for the next one. */
export const FLUSH_MS = 50;
/** A client's frames are written at once, window or not, when they reach this. */
const FLUSH_BYTES = 64 * 1024;

export function frame(e: StationEvent, json = JSON.stringify(e)): string {
  return `id: ${e.id}\nevent: ${e.type}\ndata: ${json}\n\n`;
}

export class EventStream {
  readonly #clients = new Set<SseClient>();
  readonly #unsubscribe: () => void;
  #dropped = 0;
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  #lastWrite = -Infinity;

  constructor(
    private readonly hub: EventHub,
    private readonly o: { logger: Logger; maxBufferBytes?: number | undefined },
  ) {
    this.#unsubscribe = hub.subscribe((e) => this.#broadcast(e));
  }

  get clients(): number {
    return this.#clients.size;
  }

  /** Clients cut off for not reading. */
  get dropped(): number {
    return this.#dropped;
  }

  /**
   * Starts streaming to a client whose SSE headers were sent: the events after `lastId` first (or a
   * reset when they are gone), then every new one. Replay and subscription happen in one synchronous
   * step, so no event falls between them.
   */
  attach(raw: ServerResponse, lastId: number | undefined, types: ReadonlySet<StationEventType> | undefined): void {
    const client: SseClient = { raw, types, pending: [], pendingBytes: 0 };
    if (lastId !== undefined) {
      const missed = this.hub.since(lastId);
      if (missed === undefined) {
        raw.write(
          `event: reset\ndata: ${JSON.stringify({ lastId: this.hub.lastId, reason: 'the events after your last one are no longer kept (or the daemon restarted): reload the state' })}\n\n`,
        );
      } else {
        const replay = missed.filter((e) => !types || types.has(e.type)).map((e) => frame(e));
        if (replay.length > 0) raw.write(replay.join(''));
      }
    }
    this.#clients.add(client);
    raw.once('close', () => this.#clients.delete(client));
  }

  /** Ends every stream (the server is closing), after what is pending for it. */
  close(): void {
    this.#unsubscribe();
    this.#writePending();
    for (const c of this.#clients) c.raw.end();
    this.#clients.clear();
  }

  #broadcast(e: StationEvent): void {
    if (this.#clients.size === 0) return;
    let text: string | undefined;
    let full = false;
    for (const c of this.#clients) {
      if (c.types && !c.types.has(e.type)) continue;
      text ??= frame(e);
      c.pending.push(text);
      c.pendingBytes += text.length;
      full ||= c.pendingBytes >= FLUSH_BYTES;
    }
    if (text === undefined) return;
    if (full) this.#immediate ??= setImmediate(() => this.#writePending());
    else this.#timer ??= setTimeout(() => this.#writePending(), Math.max(0, this.#lastWrite + FLUSH_MS - performance.now()));
  }

  #writePending(): void {
    clearTimeout(this.#timer);
    clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    this.#lastWrite = performance.now();
    const max = this.o.maxBufferBytes ?? DEFAULT_MAX_BUFFER_BYTES;
    for (const c of this.#clients) {
      if (c.pending.length === 0) continue;
      const frames = c.pending.join('');
      c.pending = [];
      c.pendingBytes = 0;
      if (c.raw.writableLength > max) {
        this.#clients.delete(c);
        this.#dropped++;
        this.o.logger.warn({ buffered: c.raw.writableLength }, 'event stream client is not reading; cut off (it reconnects and replays)');
        c.raw.destroy();
        continue;
      }
      c.raw.write(frames);
    }
  }
}
