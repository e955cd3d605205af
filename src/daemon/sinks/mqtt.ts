import { randomBytes } from 'node:crypto';
import type { IClientOptions, MqttClient } from 'mqtt';
import { maskUrlPassword } from '../../config/issues.js';
import type { Logger } from '../../log.js';
import type { EventHub, StationEvent } from '../events.js';

/**
 * The daemon's events on an MQTT broker, for operators who watch many stations in one place:
 *
 * - every event as JSON on `<prefix>/<station>/events/<type>` (a job's progress at most every
 *   `progressMs`, with the newest figures);
 * - the station's state, retained, on `<prefix>/<station>/state`, published whenever it changes, so a
 *   subscriber that comes later still learns it at once;
 * - a last will on the same topic that says `online: false`: the broker publishes it when the daemon's
 *   connection ends without a goodbye (a crash, a kill, a pulled cable), so a dead station never shows
 *   its last state as current. A clean stop publishes the same.
 *
 * The hub calls listeners synchronously from the ingest's own path, so nothing here waits on the network:
 * events go into a bounded queue that is sent while connected. While the broker is away the oldest events
 * are dropped beyond `queueLimit` (the retained state is kept apart and always sent on reconnect), and the
 * connection is retried with a growing delay.
 */

export interface MqttSinkOptions {
  /** `mqtt://[user[:password]@]host[:port]/prefix` or `mqtts://…`. */
  url: string;
  /** Used when the URL names none. */
  username?: string | undefined;
  password?: string | undefined;
  station: string;
  hub: EventHub;
  /** The station's state as published on the state topic (online is added here). */
  state: () => Record<string, unknown>;
  progressMs: number;
  queueLimit: number;
  logger: Logger;
  /** First and longest wait between connection attempts. */
  backoffMs?: { first: number; max: number } | undefined;
}

interface Message {
  topic: string;
  payload: string;
  retain: boolean;
}

const DEFAULT_PREFIX = 'shuttle';
const DEFAULT_BACKOFF = { first: 1_000, max: 30_000 };
/** Messages sent but not yet acknowledged; the rest wait in the queue, where the bound applies. */
const MAX_IN_FLIGHT = 64;
/** How long a clean stop waits to hand over what is queued and say goodbye. */
const CLOSE_FLUSH_MS = 3_000;

/** A topic level made of a free-form name: MQTT gives `/`, `+` and `#` meanings of their own. */
export function topicLevel(name: string): string {
  const level = name.replace(/[/+#\u0000]/g, '_');
  return level === '' ? '_' : level;
}

export interface MqttTopics {
  /** `<prefix>/<station>`. */
  base: string;
  state: string;
  event(type: string): string;
}

export function mqttTopics(url: string, station: string): MqttTopics {
  const prefix = decodeURIComponent(new URL(url).pathname).replace(/^\/+|\/+$/g, '') || DEFAULT_PREFIX;
  const base = `${prefix}/${topicLevel(station)}`;
  return { base, state: `${base}/state`, event: (type) => `${base}/events/${type}` };
}

/** The URL as logs may show it. */
export function redactedMqttUrl(url: string): string {
  return maskUrlPassword(url) ?? 'mqtt://[unparseable]';
}

let mqttLoaded: Promise<typeof import('mqtt').default> | undefined;

/** The MQTT client library, loaded when a broker is configured: a daemon without one never reads it. */
function loadMqtt(): Promise<typeof import('mqtt').default> {
  mqttLoaded ??= import('mqtt').then((m) => m.default);
  return mqttLoaded;
}

export class MqttSink {
  readonly topics: MqttTopics;
  readonly #o: MqttSinkOptions;
  readonly #log: Logger;
  readonly #backoff: { first: number; max: number };
  readonly #queue: Message[] = [];
  readonly #inFlight = new Map<number, Message>();
  #nextMessage = 1;
  /** The newest state not yet acknowledged by the broker (it replaces any older one). */
  #pendingState: string | undefined;
  #lastState: string | undefined;
  readonly #progressSentAt = new Map<number, number>();
  readonly #progressPending = new Map<number, StationEvent>();
  #progressTimer: NodeJS.Timeout | undefined;
  #client: MqttClient | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  #delay: number;
  #outage: { since: number; dropped: number; error?: string } | undefined;
  #unsubscribe: (() => void) | undefined;
  #closing = false;
  #flushed: (() => void) | undefined;

  constructor(opts: MqttSinkOptions) {
    this.#o = opts;
    this.topics = mqttTopics(opts.url, opts.station);
    this.#log = opts.logger.child({ mqtt: redactedMqttUrl(opts.url) });
    this.#backoff = opts.backoffMs ?? DEFAULT_BACKOFF;
    this.#delay = this.#backoff.first;
  }

  /** Subscribes to the hub and connects in the background; an unreachable broker is retried, never fatal. */
  start(): void {
    this.#unsubscribe = this.#o.hub.subscribe((e) => this.#onEvent(e));
    this.#stateChanged();
    // Made before the library loads: a URL it cannot use fails the daemon's start, not a background task.
    void this.#connect(this.#clientOptions());
  }

  async #connect(options: IClientOptions): Promise<void> {
    let mqtt: typeof import('mqtt').default;
    try {
      mqtt = await loadMqtt();
    } catch (err) {
      this.#log.error({ err }, 'MQTT is unavailable: its client library does not load; no events are published');
      return;
    }
    if (this.#closing) return;
    this.#client = mqtt.connect(options);
    this.#client.on('connect', () => this.#onConnect());
    this.#client.on('close', () => this.#onClose());
    this.#client.on('error', (err) => {
      if (this.#outage) this.#outage.error = err.message;
      else this.#log.warn({ err: { message: err.message, code: (err as { code?: unknown }).code } }, 'MQTT broker error');
    });
  }

  /** Hands over what is queued (for a few seconds at most), marks the station offline and disconnects. */
  async close(): Promise<void> {
    this.#unsubscribe?.();
    this.#closing = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#progressTimer);
    const client = this.#client;
    if (!client) return;
    if (client.connected) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, CLOSE_FLUSH_MS);
        this.#flushed = () => {
          clearTimeout(timer);
          resolve();
        };
        this.#queue.push({ topic: this.topics.state, payload: JSON.stringify(this.#offline('the daemon stopped')), retain: true });
        this.#pump();
      });
    }
    await client.endAsync(!client.connected).catch(() => undefined);
  }

  #clientOptions(): IClientOptions {
    const u = new URL(this.#o.url);
    const tls = u.protocol === 'mqtts:';
    const username = u.username !== '' ? decodeURIComponent(u.username) : this.#o.username;
    const password = u.password !== '' ? decodeURIComponent(u.password) : this.#o.password;
    return {
      protocol: tls ? 'mqtts' : 'mqtt',
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port: u.port !== '' ? Number(u.port) : tls ? 8883 : 1883,
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
      clientId: `shuttle-${topicLevel(this.#o.station)}-${randomBytes(4).toString('hex')}`,
      clean: true,
      keepalive: 30,
      connectTimeout: 10_000,
      // Reconnects are ours (#onClose), with a growing delay instead of the library's fixed period.
      reconnectPeriod: 0,
      will: { topic: this.topics.state, payload: Buffer.from(JSON.stringify(this.#offline('connection to the station lost'))), qos: 1, retain: true },
    };
  }

  #offline(reason: string): Record<string, unknown> {
    return { station: this.#o.station, online: false, state: 'offline', reason };
  }

  #onConnect(): void {
    this.#delay = this.#backoff.first;
    const outage = this.#outage;
    this.#outage = undefined;
    if (outage) this.#log.info({ offlineMs: Date.now() - outage.since, eventsDropped: outage.dropped, queued: this.#queue.length }, 'MQTT broker reachable again');
    else this.#log.info({ state: this.topics.state }, 'MQTT connected');
    // A broker that restarted lost the retained state: send it again.
    this.#pendingState = this.#lastState;
    this.#pump();
  }

  #onClose(): void {
    // What was sent but not acknowledged goes out again after the reconnect (at least once).
    if (this.#inFlight.size > 0) {
      this.#queue.unshift(...[...this.#inFlight.values()].filter((m) => m.topic !== this.topics.state));
      this.#inFlight.clear();
    }
    if (this.#closing) return;
    if (!this.#outage) {
      this.#outage = { since: Date.now(), dropped: 0 };
      this.#log.warn({ retryInMs: this.#delay }, 'MQTT broker unreachable; events are queued and the connection retried');
    }
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      if (!this.#closing) this.#client?.reconnect();
    }, this.#delay);
    this.#retryTimer.unref();
    this.#delay = Math.min(this.#backoff.max, this.#delay * 2);
  }

  #onEvent(e: StationEvent): void {
    if (e.type === 'job.progress') {
      this.#progress(e.job.id, e);
      return;
    }
    if (e.type === 'job.finished') {
      this.#progressPending.delete(e.job.id);
      this.#progressSentAt.delete(e.job.id);
    }
    this.#enqueue(e);
    this.#stateChanged();
  }

  #progress(id: number, e: StationEvent): void {
    const now = performance.now();
    const last = this.#progressSentAt.get(id) ?? -Infinity;
    if (now - last >= this.#o.progressMs && !this.#progressPending.has(id)) {
      this.#progressSentAt.set(id, now);
      this.#enqueue(e);
      return;
    }
    this.#progressPending.set(id, e);
    this.#progressTimer ??= setTimeout(() => this.#flushProgress(), Math.max(0, last + this.#o.progressMs - now)).unref();
  }

  #flushProgress(): void {
    this.#progressTimer = undefined;
    const now = performance.now();
    let next = Infinity;
    for (const [id, e] of [...this.#progressPending]) {
      const due = (this.#progressSentAt.get(id) ?? -Infinity) + this.#o.progressMs;
      if (due <= now) {
        this.#progressPending.delete(id);
        this.#progressSentAt.set(id, now);
        this.#enqueue(e);
      } else {
        next = Math.min(next, due - now);
      }
    }
    if (next !== Infinity && !this.#closing) this.#progressTimer = setTimeout(() => this.#flushProgress(), next).unref();
  }

  #enqueue(e: StationEvent): void {
    this.#queue.push({ topic: this.topics.event(e.type), payload: JSON.stringify({ station: this.#o.station, ...e }), retain: false });
    if (this.#queue.length > this.#o.queueLimit) {
      this.#queue.shift();
      if (this.#outage) {
        if (this.#outage.dropped === 0) this.#log.warn({ limit: this.#o.queueLimit }, 'MQTT queue full while the broker is unreachable; dropping the oldest events');
        this.#outage.dropped++;
      }
    }
    this.#pump();
  }

  #stateChanged(): void {
    const payload = JSON.stringify({ station: this.#o.station, online: true, ...this.#o.state() });
    if (payload === this.#lastState) return;
    this.#lastState = payload;
    this.#pendingState = payload;
    this.#pump();
  }

  #pump(): void {
    const client = this.#client;
    if (!client?.connected) return;
    while (this.#inFlight.size < MAX_IN_FLIGHT) {
      let m: Message | undefined;
      if (this.#pendingState !== undefined && !this.#closing) {
        m = { topic: this.topics.state, payload: this.#pendingState, retain: true };
        this.#pendingState = undefined;
      } else {
        m = this.#queue.shift();
      }
      if (!m) break;
      const id = this.#nextMessage++;
      this.#inFlight.set(id, m);
      client.publish(m.topic, m.payload, { qos: 1, retain: m.retain }, (err) => {
        // Unknown id: the connection closed first and #onClose requeued the message.
        if (!this.#inFlight.delete(id)) return;
        if (err) {
          this.#log.debug({ err: { message: err.message }, topic: m.topic }, 'MQTT publish failed');
          if (m.topic === this.topics.state) this.#pendingState ??= m.payload;
          else this.#queue.unshift(m);
          return;
        }
        this.#pump();
      });
    }
    if (this.#flushed && this.#queue.length === 0 && this.#inFlight.size === 0) this.#flushed();
  }
}
