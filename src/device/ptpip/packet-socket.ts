/**
 * A TCP socket speaking PTP/IP packets, used by both ends (initiator transport and simulator responder).
 * Reading is pull-based: decoded parts wait in a queue, and the socket is paused while the queue holds more
 * than `highWaterMark` bytes, so a slow consumer slows the peer down instead of filling memory.
 */
import type { OnReadOpts, Socket } from 'node:net';
import { ShuttleError, abortReason, errnoCode, isShuttleError } from '../../errors.js';
import { PacketDecoder, type PacketPart } from './packets.js';

/** Room a slab must have left to take the next socket read; below it the next slab is started. */
const SLAB_MIN_READ = 128 * 1024;
const SLAB_SIZE = 2 * 1024 * 1024;
/** Slabs kept for reuse once given back; more are left to the garbage collector. */
const SLABS_KEPT = 6;

interface Slab {
  readonly bytes: Buffer;
  /** Slices of it lent out (see SlabReads.lend) and not yet given back. */
  lent: number;
  /** Filled: no read lands in it again until it is reused from the start. */
  full: boolean;
}

/**
 * Socket reads into large slabs (net.connect's `onread`) instead of Node's fresh 64 KiB buffer per read:
 * one read takes whatever the kernel holds, up to the slab's free room, so an object streams in few large
 * slices. Each read lands after the previous one in the slab. A filled slab is read into again only once
 * every slice lent from it has been given back (`lend`): a consumer that copies its slices and says so lets
 * a stream run on a few slabs instead of a fresh 2 MiB allocation per 2 MiB received (whose garbage
 * collection and first-touch page faults cost more than the copy). A slice never given back keeps its slab
 * out of reuse for good, so slices handed out without a lease stay valid for as long as anyone holds them.
 */
export class SlabReads {
  private slab: Slab;
  private used = 0;
  private readonly free: Slab[] = [];
  private readonly slabOf = new WeakMap<ArrayBufferLike, Slab>();
  private sink: ((chunk: Buffer) => void) | undefined;
  private early: Buffer[] = [];
  /** Slabs allocated so far (for tests: reuse shows as a count that stops growing). */
  allocated = 0;

  constructor() {
    this.slab = this.newSlab();
  }

  private newSlab(): Slab {
    const slab: Slab = { bytes: Buffer.allocUnsafeSlow(SLAB_SIZE), lent: 0, full: false };
    this.slabOf.set(slab.bytes.buffer, slab);
    this.allocated++;
    return slab;
  }

  /** Pass as `onread` to net.connect / new net.Socket. */
  readonly onread: OnReadOpts = {
    buffer: () => {
      if (this.slab.bytes.length - this.used < SLAB_MIN_READ) {
        const done = this.slab;
        done.full = true;
        if (done.lent === 0) this.reuse(done);
        const next = this.free.pop() ?? this.newSlab();
        next.full = false;
        this.slab = next;
        this.used = 0;
      }
      return this.slab.bytes.subarray(this.used);
    },
    // Never pauses by its return value: PacketSocket pauses the socket itself when its queue is full.
    callback: (bytes: number, buf: Uint8Array) => {
      const chunk = Buffer.from(buf.buffer, buf.byteOffset, bytes);
      this.used += bytes;
      // Before attach nothing takes a lease, so those bytes must not stay in a slab that may be reused.
      if (this.sink) this.sink(chunk);
      else this.early.push(Buffer.from(chunk));
      return true;
    },
  };

  /** Where reads go; reads that arrived before (none in practice: reads start after connect) are replayed. */
  attach(sink: (chunk: Buffer) => void): void {
    this.sink = sink;
    for (const c of this.early.splice(0)) sink(c);
  }

  /**
   * Lends a slice of a read: its slab is not read into again until the returned function has been called
   * (once is enough; later calls do nothing) for it and for every other slice lent from that slab. Undefined
   * for bytes that are not in one of these slabs.
   */
  lend(bytes: Uint8Array): (() => void) | undefined {
    const slab = this.slabOf.get(bytes.buffer);
    if (!slab) return undefined;
    slab.lent++;
    let given = false;
    return () => {
      if (given) return;
      given = true;
      slab.lent--;
      if (slab.lent === 0 && slab.full) this.reuse(slab);
    };
  }

  private reuse(slab: Slab): void {
    if (this.free.length < SLABS_KEPT && !this.free.includes(slab)) this.free.push(slab);
  }
}

export interface PacketSocketOptions {
  /** Named in errors: 'command', 'event'. */
  role: string;
  /** The slab reader the socket was created with; without it the socket's 'data' events are read. */
  reads?: SlabReads;
  maxControlLength?: number;
  highWaterMark?: number;
  /** Extra context for errors (host, port). */
  context?: Record<string, unknown>;
}

export function transportError(message: string, context: Record<string, unknown>, cause?: unknown): ShuttleError {
  const errno = errnoCode(cause);
  return new ShuttleError('TRANSPORT', message, { context: { ...context, ...(errno ? { errno } : {}) }, cause, retryable: true });
}

interface Waiter {
  resolve: (p: PacketPart) => void;
  reject: (e: ShuttleError) => void;
}

export class PacketSocket {
  private readonly decoder: PacketDecoder;
  private readonly queue: PacketPart[] = [];
  private queuedBytes = 0;
  private waiter: Waiter | undefined;
  private failure: ShuttleError | undefined;
  private readonly highWaterMark: number;
  private readonly context: Record<string, unknown>;
  private readonly closeListeners = new Set<(reason: ShuttleError) => void>();

  constructor(
    readonly socket: Socket,
    private readonly opts: PacketSocketOptions,
  ) {
    this.decoder = new PacketDecoder(opts.maxControlLength === undefined ? {} : { maxControlLength: opts.maxControlLength });
    this.highWaterMark = opts.highWaterMark ?? 4 * 1024 * 1024;
    this.context = { connection: opts.role, ...opts.context };
    socket.setNoDelay(true);
    if (opts.reads) opts.reads.attach((chunk) => this.onData(chunk));
    else socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.fail(transportError(`PTP/IP ${opts.role} connection failed: ${err.message}`, this.context, err)));
    socket.on('end', () => {
      // A half-closed peer sends nothing more; close our side too.
      socket.end();
    });
    socket.on('close', () => {
      const where = this.decoder.idle ? '' : ' in the middle of a packet';
      this.fail(transportError(`PTP/IP ${opts.role} connection closed by the peer${where}`, this.context));
    });
  }

  /** Set once the connection is unusable; the reason every later call rejects with. */
  get error(): ShuttleError | undefined {
    return this.failure;
  }

  private onData(chunk: Buffer): void {
    if (this.failure) return;
    let parts: PacketPart[];
    try {
      parts = this.decoder.push(chunk);
    } catch (err) {
      const e = isShuttleError(err) ? err : transportError(String(err), this.context, err);
      this.fail(e);
      this.socket.destroy();
      return;
    }
    for (const p of parts) {
      // Lent until the consumer gives it back: the slab under it is not read into again before.
      if (p.kind === 'payload' && p.bytes.byteLength > 0 && this.opts.reads) {
        const release = this.opts.reads.lend(p.bytes);
        if (release) p.release = release;
      }
      this.deliver(p);
    }
    if (this.queuedBytes > this.highWaterMark && !this.socket.isPaused()) this.socket.pause();
  }

  private deliver(p: PacketPart): void {
    const w = this.waiter;
    if (w && this.queue.length === 0) {
      this.waiter = undefined;
      w.resolve(p);
      return;
    }
    this.queue.push(p);
    if (p.kind === 'payload') this.queuedBytes += p.bytes.byteLength;
  }

  private fail(e: ShuttleError): void {
    if (this.failure) return;
    this.failure = e;
    const w = this.waiter;
    this.waiter = undefined;
    // Parts already queued are still delivered; the failure surfaces after them.
    if (w && this.queue.length === 0) w.reject(e);
    for (const l of this.closeListeners) l(e);
  }

  onClose(listener: (reason: ShuttleError) => void): () => void {
    this.closeListeners.add(listener);
    if (this.failure) listener(this.failure);
    return () => this.closeListeners.delete(listener);
  }

  /** The next decoded part. Aborting the signal leaves later parts in the queue. */
  next(signal?: AbortSignal): Promise<PacketPart> {
    const queued = this.queue.shift();
    if (queued) {
      if (queued.kind === 'payload') {
        this.queuedBytes -= queued.bytes.byteLength;
        if (this.queuedBytes <= this.highWaterMark / 2 && this.socket.isPaused() && !this.failure) this.socket.resume();
      }
      return Promise.resolve(queued);
    }
    if (this.failure) return Promise.reject(this.failure);
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (this.waiter) return Promise.reject(new ShuttleError('INTERNAL', `two concurrent reads on the PTP/IP ${this.opts.role} connection`, { context: this.context }));
    if (this.socket.isPaused()) this.socket.resume();
    return new Promise<PacketPart>((resolve, reject) => {
      const onAbort = (): void => {
        if (this.waiter === waiter) this.waiter = undefined;
        reject(abortReason(signal as AbortSignal));
      };
      const waiter: Waiter = {
        resolve: (p) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(p);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      this.waiter = waiter;
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Writes buffers as one unit; resolves when the socket can take more (drain), rejects if it closes or the
   * signal aborts. With `flushed`, resolves only once the kernel has taken every byte, so the caller may
   * reuse the buffers at once (a sender reading a file into one recycled buffer).
   */
  write(buffers: Uint8Array | readonly Uint8Array[], signal?: AbortSignal, opts: { flushed?: boolean } = {}): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const list = (buffers instanceof Uint8Array ? [buffers] : buffers).filter((b) => b.byteLength > 0);
    let ok = true;
    let written = !opts.flushed;
    let onWritten: (() => void) | undefined;
    this.socket.cork();
    list.forEach((b, i) => {
      const last = i === list.length - 1;
      ok =
        opts.flushed && last
          ? this.socket.write(b, (err) => {
              // A failed write also closes the socket: onClose rejects.
              if (err) return;
              written = true;
              onWritten?.();
            })
          : this.socket.write(b);
    });
    this.socket.uncork();
    if (list.length === 0) written = true;
    if (ok && written) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let drained = ok;
      const cleanup = (): void => {
        this.socket.off('drain', onDrain);
        offClose();
        signal?.removeEventListener('abort', onAbort);
        onWritten = undefined;
      };
      const settle = (): void => {
        if (!drained || !written) return;
        cleanup();
        resolve();
      };
      const onDrain = (): void => {
        drained = true;
        settle();
      };
      onWritten = settle;
      const onAbort = (): void => {
        cleanup();
        reject(abortReason(signal as AbortSignal));
      };
      const offClose = this.onClose((e) => {
        cleanup();
        reject(e);
      });
      if (!drained) this.socket.on('drain', onDrain);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  close(): void {
    this.fail(transportError(`PTP/IP ${this.opts.role} connection closed`, this.context));
    this.socket.destroy();
  }
}
