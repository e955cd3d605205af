/**
 * PTP transactions over any transport (USB, PTP/IP): one operation at a time, transaction ids that wrap
 * and skip 0, data phases streamed in both directions, stale replies discarded, an inactivity timeout and
 * an AbortSignal on every operation, and non-OK responses turned into ShuttleError('PTP_RESPONSE').
 */
import { Mutex, linkSignals } from '../../async.js';
import { ShuttleError, abortReason, isShuttleError, throwIfAborted } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { protocolError } from './codec.js';
import { OperationCode, ResponseCode, hex16, operationName, responseName } from './codes.js';
import { DEFAULT_QUIRKS, type PtpQuirks } from './quirks.js';
import { PtpEventListeners, type DataPhase, type PtpCommand, type PtpEvent, type PtpTransport } from './transport.js';

export interface OperationRequest {
  code: number;
  params?: readonly number[];
  /** Longest the device may stay silent during this operation; defaults to the session's. */
  timeoutMs?: number;
  /** Payload bytes expected in the data-in phase, when known (see PtpCommand). */
  expectedDataBytes?: number | undefined;
  /**
   * Most payload bytes the data-in phase may have (an object's size from ObjectInfo, a partial read's
   * length): a device announcing or sending more fails the operation at once, before the excess is passed on.
   */
  maxDataBytes?: number | undefined;
  signal?: AbortSignal | undefined;
  /**
   * Where the data-in slices a transport lends (PtpIncoming.release) go once yielded: given back as the
   * consumer pulls on. Without it a slice is the consumer's to keep.
   */
  slices?: SliceLeases | undefined;
}

/**
 * Gives slices back to their transport as the consumer of a data-in phase pulls on. The consumer promises
 * to be done with each slice before it has pulled `keep` more (OpenOptions.recycle); one more is kept than
 * that, for a stream between that reads one slice ahead of its reader. The last ones are given back only by
 * `releaseAll`, once the reader says it is done with them (PtpCamera.download: the stream destroyed).
 */
export class SliceLeases {
  readonly #held: Array<() => void> = [];

  constructor(private readonly keep: number) {}

  /** A slice was yielded and the consumer has pulled again. */
  pulledPast(release: () => void): void {
    this.#held.push(release);
    while (this.#held.length > this.keep) this.#held.shift()!();
  }

  releaseAll(): void {
    for (const r of this.#held.splice(0)) r();
  }
}

export interface PtpResponse {
  code: number;
  transactionId: number;
  params: number[];
}

export interface DataOut {
  length: number;
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

export interface SessionOptions {
  quirks?: Partial<PtpQuirks>;
  logger?: Logger;
  /** Maximum events kept for a slow `events()` reader before the oldest are dropped. */
  eventBacklog?: number;
  /** First transaction id after OpenSession (normally 1); lets tests start next to the wrap. */
  firstTransactionId?: number;
}

/** Largest dataset (DeviceInfo, ObjectInfo, handle lists) read into memory by `runDataIn`. */
export const DEFAULT_DATASET_LIMIT = 16 * 1024 * 1024;

/** The transaction id after `tid`: wraps past 0xFFFFFFFF and skips 0, which belongs to OpenSession. */
export function nextTransactionId(tid: number): number {
  return tid >= 0xffffffff ? 1 : tid + 1;
}

export function responseError(operation: number, response: PtpResponse): ShuttleError {
  const op = operationName(operation);
  const name = responseName(response.code);
  return new ShuttleError('PTP_RESPONSE', `${op} failed: ${name} (${hex16(response.code)})`, {
    context: {
      operation: op,
      operationCode: hex16(operation),
      response: name,
      responseCode: response.code,
      transactionId: response.transactionId,
      params: response.params,
    },
    retryable: response.code === ResponseCode.DeviceBusy,
  });
}

/** The PTP response code a PTP_RESPONSE error carries, if any. */
export function responseCodeOf(err: unknown): number | undefined {
  return isShuttleError(err, 'PTP_RESPONSE') ? err.context.responseCode : undefined;
}

/** A data-in phase slower than `minBytes` per `windowMs` of waiting fails (see PtpQuirks.minDataRate). */
interface RateFloor {
  windowMs: number;
  minBytes: number;
}

/**
 * Aborts its signal when the device has been silent for `ms`, or, while measuring a data-in phase, when it
 * delivered less than the floor over a window of waiting. Paused while the consumer holds a chunk: only
 * time spent waiting for the device counts. Re-arming per chunk only moves a deadline: the one timer
 * pending checks it when it fires and sleeps on for what is left, instead of a clearTimeout + setTimeout
 * per chunk.
 */
class DeviceWatch {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;
  private deadline = 0;
  private running = false;
  /** Start of the waiting not yet added to `waited`. */
  private since = 0;
  private measuring = false;
  /** Waiting time and bytes of the current floor window. */
  private waited = 0;
  private bytes = 0;

  constructor(
    private readonly ms: number,
    private readonly floor: RateFloor | undefined,
    private readonly silentError: () => ShuttleError,
    private readonly slowError: (bytes: number, waitedMs: number) => ShuttleError,
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  arm(): void {
    if (this.controller.signal.aborted) return;
    const now = Date.now();
    if (!this.running) {
      this.running = true;
      this.since = now;
    }
    this.deadline = now + this.ms;
    if (!this.timer) this.schedule(now);
  }

  /** Starts (or stops) holding the device's data to the floor; a new window begins. */
  measure(on: boolean): void {
    if (!this.floor || this.measuring === on) return;
    const now = Date.now();
    this.measuring = on;
    this.waited = 0;
    this.bytes = 0;
    this.since = now;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.running) this.schedule(now);
  }

  received(bytes: number): void {
    this.bytes += bytes;
  }

  private schedule(now: number): void {
    let at = this.deadline;
    if (this.measuring && this.floor) at = Math.min(at, this.since + this.floor.windowMs - this.waited);
    this.timer = setTimeout(() => this.check(), Math.max(0, at - now));
  }

  private check(): void {
    this.timer = undefined;
    if (!this.running) return;
    const now = Date.now();
    if (now >= this.deadline) {
      this.controller.abort(this.silentError());
      return;
    }
    this.account(now);
    if (!this.controller.signal.aborted) this.schedule(now);
  }

  /** Adds the waiting since the last call to the window, and judges the window once it is full. */
  private account(now: number): void {
    if (!this.measuring || !this.floor) return;
    this.waited += now - this.since;
    this.since = now;
    if (this.waited < this.floor.windowMs) return;
    if (this.bytes < this.floor.minBytes) {
      this.controller.abort(this.slowError(this.bytes, this.waited));
      return;
    }
    this.waited = 0;
    this.bytes = 0;
  }

  pause(): void {
    if (this.running) this.account(Date.now());
    this.running = false;
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

async function* touching(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, timer: DeviceWatch): AsyncGenerator<Uint8Array> {
  for await (const c of chunks) {
    timer.arm();
    yield c;
  }
}

export class PtpSession {
  readonly quirks: PtpQuirks;
  private readonly log: Logger;
  private readonly lock = new Mutex();
  private lastTransactionId: number;
  private readonly firstTransactionId: number;
  private currentSessionId = 0;
  private readonly eventListeners: PtpEventListeners;
  private readonly eventBacklog: number;
  private readonly unsubscribe: () => void;

  constructor(
    readonly transport: PtpTransport,
    opts: SessionOptions = {},
  ) {
    this.quirks = { ...DEFAULT_QUIRKS, ...opts.quirks };
    this.log = opts.logger ?? silentLogger;
    this.eventBacklog = opts.eventBacklog ?? 1000;
    this.firstTransactionId = opts.firstTransactionId ?? 1;
    this.lastTransactionId = this.firstTransactionId - 1;
    this.eventListeners = new PtpEventListeners(this.log);
    this.unsubscribe = transport.onEvent((e) => this.eventListeners.emit(e));
  }

  get sessionId(): number {
    return this.currentSessionId;
  }

  /** Changes quirks once DeviceInfo has identified the device. */
  setQuirks(q: Partial<PtpQuirks>): void {
    Object.assign(this.quirks, q);
  }

  private allocateTransactionId(): number {
    this.lastTransactionId = nextTransactionId(this.lastTransactionId);
    return this.lastTransactionId;
  }

  /** Where a reply with transaction id `got` belongs while transaction `want` is running. */
  private classify(got: number, want: number, code: number): 'current' | 'stale' | 'foreign' {
    if (got === want) return 'current';
    if (got === 0 && this.quirks.acceptZeroTransactionId) return 'current';
    // Leftovers of an earlier session (after a crash) may carry any id.
    if (code === OperationCode.OpenSession) return 'stale';
    const behind = (want - got) >>> 0;
    return behind > 0 && behind < 0x80000000 ? 'stale' : 'foreign';
  }

  /**
   * One transaction. Yields data-in slices as the device sends them (the next slice is read only when the
   * consumer asks), returns the response. Leaving early (return/throw from the consumer) abandons the
   * transaction: the device is asked to cancel and its late replies are discarded by the next transaction.
   */
  async *exchange(req: OperationRequest, phase: DataPhase, dataOut?: DataOut): AsyncGenerator<Uint8Array, PtpResponse, void> {
    const signal = req.signal;
    throwIfAborted(signal);
    const release = await this.lock.acquire(signal);
    const opName = operationName(req.code);
    const tid = req.code === OperationCode.OpenSession ? 0 : this.allocateTransactionId();
    const timeoutMs = req.timeoutMs ?? this.quirks.operationTimeoutMs;
    const max = req.maxDataBytes;
    const context = { operation: opName, operationCode: hex16(req.code), transactionId: tid };
    const rate = this.quirks.minDataRate;
    const windowMs = this.quirks.dataRateWindowMs;
    const floor = phase === 'in' && rate > 0 ? { windowMs, minBytes: Math.ceil((rate * windowMs) / 1000) } : undefined;
    const timer = new DeviceWatch(
      timeoutMs,
      floor,
      () => new ShuttleError('PTP_TIMEOUT', `${opName}: the device sent nothing for ${timeoutMs} ms`, { context: { ...context, timeoutMs }, retryable: true }),
      (bytes, waitedMs) =>
        new ShuttleError(
          'PTP_TIMEOUT',
          `${opName}: the device sent only ${bytes} bytes in ${(waitedMs / 1000).toFixed(1)} s, slower than the floor of ${rate} bytes/s; transfer abandoned`,
          {
            context: { ...context, bytes, waitedMs, minDataRate: rate },
            retryable: true,
          },
        ),
    );
    const link = linkSignals(signal, timer.signal);
    const linkSignal = link.signal;
    let completed = false;
    try {
      timer.arm();
      const command: PtpCommand = { code: req.code, transactionId: tid, params: req.params ?? [], dataPhase: phase };
      if (req.expectedDataBytes !== undefined) command.expectedDataBytes = req.expectedDataBytes;
      await this.transport.sendCommand(command, linkSignal);
      if (phase === 'out') {
        if (!dataOut) throw new ShuttleError('INTERNAL', `${opName}: data-out phase without data`, { context });
        await this.transport.sendData(tid, req.code, dataOut.length, touching(dataOut.chunks, timer), linkSignal);
      }
      timer.arm();
      let announced: number | undefined;
      let received = 0;
      for (;;) {
        const item = await this.transport.receive(linkSignal);
        timer.arm();
        const verdict = this.classify(item.transactionId, tid, req.code);
        if (verdict === 'stale') {
          this.log.debug({ ...context, stale: item.transactionId, kind: item.kind }, 'discarding reply to an earlier transaction');
          if (item.kind === 'data') item.release?.();
          continue;
        }
        if (verdict === 'foreign') {
          throw protocolError(opName, `reply for transaction ${item.transactionId} while ${tid} is running`, { ...context, expected: tid, actual: item.transactionId });
        }
        if (item.kind === 'response') {
          completed = true;
          if (announced !== undefined && received < announced && item.code === ResponseCode.OK) {
            throw protocolError(opName, `data phase ended after ${received} of ${announced} announced bytes`, { ...context, expected: announced, actual: received });
          }
          const response: PtpResponse = { code: item.code, transactionId: item.transactionId, params: item.params };
          if (item.code !== ResponseCode.OK) throw responseError(req.code, response);
          return response;
        }
        if (phase !== 'in') {
          this.log.debug({ ...context, kind: item.kind }, 'discarding data the operation does not expect');
          if (item.kind === 'data') item.release?.();
          continue;
        }
        if (item.kind === 'data-start') {
          announced = item.totalLength;
          if (max !== undefined && announced !== undefined && announced > max) {
            throw protocolError(opName, `device announced ${announced} bytes, more than the ${max} asked for`, { ...context, expected: max, actual: announced });
          }
          timer.measure(true);
          continue;
        }
        if (item.kind === 'data-end') {
          timer.measure(false);
          continue;
        }
        if (item.kind === 'data') {
          received += item.bytes.byteLength;
          if (announced !== undefined && received > announced) {
            throw protocolError(opName, `device sent ${received} bytes, more than the ${announced} it announced`, { ...context, expected: announced, actual: received });
          }
          if (max !== undefined && received > max) {
            throw protocolError(opName, `device sent more than the ${max} bytes asked for`, { ...context, expected: max, actual: received });
          }
          timer.received(item.bytes.byteLength);
          timer.pause();
          if (timer.signal.aborted) throw timer.signal.reason as ShuttleError;
          yield item.bytes;
          if (item.release) req.slices?.pulledPast(item.release);
          throwIfAborted(signal);
          timer.arm();
        }
      }
    } catch (err) {
      if (signal?.aborted) throw abortReason(signal);
      if (timer.signal.aborted) throw timer.signal.reason as ShuttleError;
      throw err;
    } finally {
      timer.stop();
      link.dispose();
      if (!completed) this.abandon(tid, opName);
      release();
    }
  }

  private abandon(tid: number, opName: string): void {
    this.log.debug({ transactionId: tid, operation: opName }, 'transaction abandoned; asking the device to cancel');
    this.transport.cancel(tid).catch((err: unknown) => this.log.debug({ err, transactionId: tid }, 'cancel failed'));
  }

  /** An operation without data phase. */
  async run(req: OperationRequest): Promise<PtpResponse> {
    const gen = this.exchange(req, 'none');
    for (;;) {
      const r = await gen.next();
      if (r.done) return r.value;
    }
  }

  /** An operation whose data-in phase is a dataset: read whole, refusing more than `maxBytes` (as it is announced or arrives). */
  async runDataIn(req: OperationRequest, maxBytes = DEFAULT_DATASET_LIMIT): Promise<{ response: PtpResponse; data: Buffer }> {
    const chunks: Uint8Array[] = [];
    let total = 0;
    // Each slice is copied before the next is pulled, so it goes back to the transport at once.
    const slices = new SliceLeases(0);
    const gen = this.exchange({ ...req, maxDataBytes: Math.min(maxBytes, req.maxDataBytes ?? maxBytes), slices }, 'in');
    for (;;) {
      const r = await gen.next();
      if (r.done) return { response: r.value, data: Buffer.concat(chunks, total) };
      total += r.value.byteLength;
      chunks.push(Buffer.from(r.value));
    }
  }

  /** An operation whose data-in phase goes to `consume` chunk by chunk; the next chunk is read after the returned promise settles. */
  async runDataInTo(req: OperationRequest, consume: (chunk: Uint8Array) => void | Promise<void>): Promise<PtpResponse> {
    const gen = this.exchange(req, 'in');
    for (;;) {
      const r = await gen.next();
      if (r.done) return r.value;
      try {
        await consume(r.value);
      } catch (err) {
        await gen.return(undefined as never).catch(() => undefined);
        throw err;
      }
    }
  }

  /** An operation with a data-out phase. */
  async runDataOut(req: OperationRequest, data: Uint8Array | DataOut): Promise<PtpResponse> {
    const out: DataOut = data instanceof Uint8Array ? { length: data.byteLength, chunks: [data] } : data;
    const gen = this.exchange(req, 'out', out);
    for (;;) {
      const r = await gen.next();
      if (r.done) return r.value;
    }
  }

  /**
   * OpenSession (transaction id 0). SessionAlreadyOpen counts as success (libgphoto2 does the same after a
   * crashed client); InvalidTransactionID makes it try the next session id.
   */
  async openSession(sessionId = 1, signal?: AbortSignal): Promise<void> {
    let sid = sessionId;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.run({ code: OperationCode.OpenSession, params: [sid], signal });
        break;
      } catch (err) {
        const code = responseCodeOf(err);
        if (code === ResponseCode.SessionAlreadyOpen) {
          this.log.info({ sessionId: sid }, 'device reports a session already open; using it');
          break;
        }
        if (code === ResponseCode.InvalidTransactionID && attempt < 3) {
          sid += 1;
          continue;
        }
        throw err;
      }
    }
    this.currentSessionId = sid;
    this.lastTransactionId = this.firstTransactionId - 1;
  }

  async closeSession(signal?: AbortSignal): Promise<void> {
    if (this.currentSessionId === 0) return;
    try {
      await this.run({ code: OperationCode.CloseSession, signal });
    } finally {
      this.currentSessionId = 0;
    }
  }

  onEvent(listener: (e: PtpEvent) => void): () => void {
    return this.eventListeners.add(listener);
  }

  /**
   * Delivers an event that did not come from the transport to this session's listeners, as if it had:
   * vendor event polling (Canon EOS GetEvent, Nikon CheckEvent; see vendor-events.ts) feeds its events here.
   */
  dispatchEvent(e: PtpEvent): void {
    this.eventListeners.emit(e);
  }

  /**
   * Starts buffering events now (up to the backlog; the oldest are dropped with a warning). Subscribe
   * before starting an operation whose events you wait for: they may arrive before its response.
   */
  subscribe(): EventSubscription {
    return new EventSubscription(this, this.eventBacklog, this.log);
  }

  /** Events as an async iterable; ends when `signal` aborts. */
  async *events(signal?: AbortSignal): AsyncGenerator<PtpEvent> {
    const sub = this.subscribe();
    try {
      for (;;) {
        const e = await sub.next(signal).catch((err: unknown) => {
          if (signal?.aborted) return undefined;
          throw err;
        });
        if (!e) return;
        yield e;
      }
    } finally {
      sub.close();
    }
  }

  /** Closes the session if open and the transport. */
  async dispose(signal?: AbortSignal): Promise<void> {
    try {
      if (this.currentSessionId !== 0) await this.closeSession(signal).catch((err: unknown) => this.log.debug({ err }, 'CloseSession failed'));
    } finally {
      this.unsubscribe();
      await this.transport.close();
    }
  }
}

/** A buffered event stream from one session; see PtpSession.subscribe. */
export class EventSubscription {
  private readonly queue: PtpEvent[] = [];
  private wake: (() => void) | undefined;
  private readonly off: () => void;

  constructor(session: PtpSession, backlog: number, log: Logger) {
    this.off = session.onEvent((e) => {
      this.queue.push(e);
      if (this.queue.length > backlog) log.warn({ dropped: this.queue.shift() }, 'event backlog full; dropping the oldest event');
      this.wake?.();
    });
  }

  /** The next event; rejects with PTP_TIMEOUT after `timeoutMs`, or with the abort reason. */
  async next(signal?: AbortSignal, timeoutMs?: number): Promise<PtpEvent> {
    for (;;) {
      const e = this.queue.shift();
      if (e) return e;
      throwIfAborted(signal);
      await new Promise<void>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined;
        const done = (): void => {
          this.wake = undefined;
          if (timer) clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        };
        const onAbort = (): void => {
          done();
          reject(abortReason(signal as AbortSignal));
        };
        this.wake = () => {
          done();
          resolve();
        };
        if (timeoutMs !== undefined) {
          timer = setTimeout(() => {
            done();
            reject(new ShuttleError('PTP_TIMEOUT', `no event from the device within ${timeoutMs} ms`, { context: { timeoutMs }, retryable: true }));
          }, timeoutMs);
        }
        signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  }

  close(): void {
    this.off();
    this.wake = undefined;
  }
}
