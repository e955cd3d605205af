/**
 * The camera side of PTP/IP: accepts initiators on TCP, pairs each command connection with its event
 * connection, and runs their operations one at a time through an OperationHandler (the device model,
 * e.g. ./simulator.ts). Data phases stream in both directions; a client that disconnects at any point
 * only ends its own session.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { ShuttleError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { ResponseCode, hex16, operationName } from '../ptp/codes.js';
import { DataPhaseInfo, InitFailReason, PTPIP_VERSION, UNKNOWN_TOTAL_LENGTH, encodeControlPacket, encodeDataPacketHeader, type ControlPacket } from './packets.js';
import { PacketSocket } from './packet-socket.js';

export interface ResponderRequest {
  code: number;
  transactionId: number;
  params: number[];
  /** Bytes the initiator sends with this operation (data-out phase), streamed; drained by the responder if the handler leaves some. */
  dataOut: AsyncIterable<Uint8Array> | undefined;
  /** Length announced by StartData; undefined when unknown or without a data phase. */
  dataOutLength: number | undefined;
  /** Aborts when the initiator cancels this transaction or disconnects. */
  signal: AbortSignal;
}

export type ResponderReply =
  | { code: number; params?: number[] }
  | { code: number; params?: number[]; data: Uint8Array }
  /** A data-in phase streamed from `chunks`; each chunk is in the kernel before the next is pulled, so chunks may share one buffer. */
  | { code: number; params?: number[]; stream: { length: number; chunks: AsyncIterable<Uint8Array> } };

export interface ResponderSession {
  readonly initiatorName: string;
  readonly initiatorGuid: Uint8Array;
  readonly connectionNumber: number;
  /** Sends an event on the event connection; failures (client gone) are logged, never thrown. */
  sendEvent(code: number, transactionId: number, params?: number[]): void;
  /** Aborts when the initiator disconnects. */
  readonly signal: AbortSignal;
}

export interface OperationHandler {
  handle(req: ResponderRequest): Promise<ResponderReply>;
  /** The initiator is gone (closed or dropped). */
  close(): void;
}

export interface ResponderOptions {
  host?: string;
  port?: number;
  guid?: Uint8Array;
  friendlyName: string;
  /** Creates the device model for one connected initiator. */
  connect: (session: ResponderSession) => OperationHandler;
  /** Initiators served at once; more get InitFail(busy), as cameras do. Default 1. */
  maxSessions?: number;
  /** How long a command connection may wait for its event connection. */
  eventConnectTimeoutMs?: number;
  logger?: Logger;
}

const MAX_DATA_PACKET_PAYLOAD = 512 * 1024;

interface PendingCommand {
  cmd: PacketSocket;
  connectionNumber: number;
  initiatorName: string;
  initiatorGuid: Uint8Array;
  timer: NodeJS.Timeout;
}

export class PtpIpResponder {
  private readonly server: net.Server;
  private readonly log: Logger;
  readonly guid: Uint8Array;
  private nextConnectionNumber = 1;
  private readonly pending = new Map<number, PendingCommand>();
  private readonly sessions = new Set<{ close: () => void }>();
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly opts: ResponderOptions) {
    this.log = opts.logger ?? silentLogger;
    this.guid = opts.guid ?? Uint8Array.from(randomBytes(16));
    this.server = net.createServer((socket) => this.accept(socket));
  }

  /** Starts listening; resolves with the bound address (port 0 picks a free port). */
  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void =>
        reject(
          new ShuttleError('TRANSPORT', `cannot listen on ${this.opts.host ?? '127.0.0.1'}:${this.opts.port ?? 15740}: ${err.message}`, {
            cause: err,
            context: { host: this.opts.host, port: this.opts.port },
          }),
        );
      this.server.once('error', onError);
      this.server.listen(this.opts.port ?? 15740, this.opts.host ?? '127.0.0.1', () => {
        this.server.off('error', onError);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Stops accepting, drops every client, resolves when the server is closed. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.cmd.close();
    }
    this.pending.clear();
    for (const s of [...this.sessions]) s.close();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    const peer = { remote: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}` };
    const sock = new PacketSocket(socket, { role: 'incoming', context: peer });
    const firstPacket = AbortSignal.timeout(10_000);
    sock
      .next(firstPacket)
      .then((part) => {
        if (part.kind !== 'packet') throw new ShuttleError('PTP_PROTOCOL', 'data before the PTP/IP handshake', { context: { operation: 'PTP/IP handshake', ...peer } });
        this.onFirstPacket(sock, part.packet, peer);
      })
      .catch((err: unknown) => {
        this.log.debug({ err, ...peer }, 'PTP/IP connection dropped before its handshake');
        sock.close();
      });
  }

  private onFirstPacket(sock: PacketSocket, packet: ControlPacket, peer: Record<string, unknown>): void {
    const fail = (reason: number, why: string): void => {
      this.log.info({ ...peer, reason, why }, 'refusing PTP/IP connection');
      sock.write(encodeControlPacket({ type: 'InitFail', reason })).then(
        () => sock.close(),
        () => sock.close(),
      );
    };
    if (packet.type === 'InitCommandRequest') {
      if (this.sessions.size + this.pending.size >= (this.opts.maxSessions ?? 1)) return fail(InitFailReason.Busy, 'another initiator is connected');
      const connectionNumber = this.nextConnectionNumber++;
      const timer = setTimeout(() => {
        this.pending.delete(connectionNumber);
        this.log.info({ ...peer, connectionNumber }, 'no event connection followed; closing');
        sock.close();
      }, this.opts.eventConnectTimeoutMs ?? 10_000);
      this.pending.set(connectionNumber, { cmd: sock, connectionNumber, initiatorName: packet.friendlyName, initiatorGuid: packet.guid, timer });
      sock.onClose(() => {
        const p = this.pending.get(connectionNumber);
        if (p?.cmd === sock) {
          clearTimeout(p.timer);
          this.pending.delete(connectionNumber);
        }
      });
      this.log.info({ ...peer, initiator: packet.friendlyName, connectionNumber }, 'PTP/IP initiator connected');
      sock
        .write(encodeControlPacket({ type: 'InitCommandAck', connectionNumber, guid: this.guid, friendlyName: this.opts.friendlyName, protocolVersion: PTPIP_VERSION }))
        .catch(() => sock.close());
      return;
    }
    if (packet.type === 'InitEventRequest') {
      const p = this.pending.get(packet.connectionNumber);
      if (!p) return fail(InitFailReason.Rejected, `unknown connection number ${packet.connectionNumber}`);
      clearTimeout(p.timer);
      this.pending.delete(packet.connectionNumber);
      sock
        .write(encodeControlPacket({ type: 'InitEventAck' }))
        .then(() => this.runSession(p, sock))
        .catch(() => {
          sock.close();
          p.cmd.close();
        });
      return;
    }
    fail(InitFailReason.Unspecified, `${packet.type} before InitCommandRequest`);
  }

  private runSession(p: PendingCommand, evt: PacketSocket): void {
    const { cmd } = p;
    const controller = new AbortController();
    const log = this.log.child({ connectionNumber: p.connectionNumber, initiator: p.initiatorName });
    let handler: OperationHandler | undefined;
    const entry = {
      close: (): void => {
        if (controller.signal.aborted) return;
        controller.abort(new ShuttleError('TRANSPORT', 'initiator disconnected'));
        this.sessions.delete(entry);
        cmd.close();
        evt.close();
        try {
          handler?.close();
        } catch (err) {
          log.warn({ err }, 'device model failed to close');
        }
        log.info('PTP/IP initiator disconnected');
      },
    };
    this.sessions.add(entry);
    cmd.onClose(() => entry.close());
    evt.onClose(() => entry.close());
    const session: ResponderSession = {
      initiatorName: p.initiatorName,
      initiatorGuid: p.initiatorGuid,
      connectionNumber: p.connectionNumber,
      signal: controller.signal,
      sendEvent: (code, transactionId, params = []) => {
        if (controller.signal.aborted) return;
        evt.write(encodeControlPacket({ type: 'Event', code, transactionId, params })).catch((err: unknown) => log.debug({ err }, 'event not delivered'));
      },
    };
    handler = this.opts.connect(session);
    void this.eventLoop(evt, log);
    void this.commandLoop(cmd, handler, controller.signal, log)
      .catch((err: unknown) => log.warn({ err }, 'command loop failed'))
      .finally(() => entry.close());
  }

  private async eventLoop(evt: PacketSocket, log: Logger): Promise<void> {
    for (;;) {
      let part;
      try {
        part = await evt.next();
      } catch {
        return;
      }
      if (part.kind === 'packet' && part.packet.type === 'ProbeRequest') {
        evt.write(encodeControlPacket({ type: 'ProbeResponse' })).catch(() => undefined);
      } else if (part.kind === 'packet' && part.packet.type === 'Cancel') {
        log.debug({ transactionId: part.packet.transactionId }, 'Cancel on the event connection');
      } else {
        log.debug({ part: part.kind === 'packet' ? part.packet.type : 'payload' }, 'ignoring packet on the event connection');
      }
    }
  }

  private async commandLoop(cmd: PacketSocket, handler: OperationHandler, sessionSignal: AbortSignal, log: Logger): Promise<void> {
    for (;;) {
      let part;
      try {
        part = await cmd.next();
      } catch (err) {
        if (!sessionSignal.aborted) log.debug({ err }, 'command connection ended');
        return;
      }
      if (part.kind !== 'packet') {
        log.warn({ transactionId: part.transactionId }, 'data packet outside a data phase; closing the connection');
        return;
      }
      const pkt = part.packet;
      if (pkt.type === 'ProbeRequest') {
        await cmd.write(encodeControlPacket({ type: 'ProbeResponse' })).catch(() => undefined);
        continue;
      }
      if (pkt.type === 'Cancel') {
        log.debug({ transactionId: pkt.transactionId }, 'Cancel for a transaction that is not running');
        continue;
      }
      if (pkt.type !== 'OperationRequest') {
        log.warn({ packet: pkt.type }, 'unexpected packet on the command connection; closing it');
        return;
      }
      try {
        await this.runOperation(cmd, handler, pkt, sessionSignal, log);
      } catch (err) {
        if (!sessionSignal.aborted) log.warn({ err, operation: operationName(pkt.code) }, 'operation broke the connection; closing it');
        return;
      }
    }
  }

  private async runOperation(
    cmd: PacketSocket,
    handler: OperationHandler,
    pkt: Extract<ControlPacket, { type: 'OperationRequest' }>,
    sessionSignal: AbortSignal,
    log: Logger,
  ): Promise<void> {
    const tid = pkt.transactionId;
    const cancel = new AbortController();
    const signal = AbortSignal.any([sessionSignal, cancel.signal]);
    let dataOut: DataOutReader | undefined;
    let dataOutLength: number | undefined;
    if (pkt.dataPhase === DataPhaseInfo.Out) {
      const start = await cmd.next(sessionSignal);
      if (start.kind !== 'packet' || start.packet.type !== 'StartData' || start.packet.transactionId !== tid) {
        throw new ShuttleError('PTP_PROTOCOL', `expected StartData for transaction ${tid}`, { context: { operation: operationName(pkt.code) } });
      }
      dataOutLength = start.packet.totalLength === UNKNOWN_TOTAL_LENGTH ? undefined : Number(start.packet.totalLength);
      dataOut = new DataOutReader(cmd, tid, sessionSignal);
    }
    log.debug({ operation: operationName(pkt.code), code: hex16(pkt.code), transactionId: tid, params: pkt.params }, 'operation');
    let reply: ResponderReply;
    try {
      reply = await handler.handle({ code: pkt.code, transactionId: tid, params: pkt.params, dataOut, dataOutLength, signal });
    } catch (err) {
      if (sessionSignal.aborted) throw err;
      log.warn({ err, operation: operationName(pkt.code) }, 'operation failed inside the device model');
      reply = { code: ResponseCode.GeneralError };
    }
    await dataOut?.drain();
    if ('data' in reply || 'stream' in reply) {
      const stream = 'data' in reply ? { length: reply.data.byteLength, chunks: [reply.data] } : reply.stream;
      const completed = await this.sendDataIn(cmd, tid, stream, cancel, sessionSignal);
      if (!completed) {
        await cmd.write(encodeControlPacket({ type: 'OperationResponse', code: ResponseCode.TransactionCancelled, transactionId: tid, params: [] }));
        return;
      }
    }
    await cmd.write(encodeControlPacket({ type: 'OperationResponse', code: reply.code, transactionId: tid, params: reply.params ?? [] }));
  }

  /**
   * StartData, Data…, EndData. While sending, a reader watches the command connection for a Cancel of this
   * transaction (nothing else may arrive then). Returns false when cancelled.
   */
  private async sendDataIn(
    cmd: PacketSocket,
    tid: number,
    stream: { length: number; chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> },
    cancel: AbortController,
    sessionSignal: AbortSignal,
  ): Promise<boolean> {
    const signal = AbortSignal.any([sessionSignal, cancel.signal]);
    const stopWatching = new AbortController();
    let watchError: unknown;
    const watcher = (async (): Promise<void> => {
      for (;;) {
        const part = await cmd.next(stopWatching.signal);
        if (part.kind === 'packet' && part.packet.type === 'Cancel' && part.packet.transactionId === tid) {
          cancel.abort(new ShuttleError('ABORTED', 'initiator cancelled the transaction'));
          return;
        }
        if (part.kind === 'packet' && part.packet.type === 'ProbeRequest') {
          await cmd.write(encodeControlPacket({ type: 'ProbeResponse' }));
          continue;
        }
        throw new ShuttleError('PTP_PROTOCOL', 'initiator sent a packet during a data-in phase', { context: { operation: 'PTP/IP data-in phase', transactionId: tid } });
      }
    })().catch((err: unknown) => {
      // A protocol violation or a dead link: stop sending; the command loop then ends the session.
      if (!stopWatching.signal.aborted) {
        watchError = err;
        cancel.abort(err);
      }
    });
    const cancelled = (): boolean => {
      if (watchError !== undefined) throw watchError;
      return cancel.signal.aborted && !sessionSignal.aborted;
    };
    try {
      await cmd.write(encodeControlPacket({ type: 'StartData', transactionId: tid, totalLength: BigInt(stream.length) }), signal);
      if (stream.length === 0) {
        await cmd.write(encodeDataPacketHeader(true, tid, 0), signal);
        return true;
      }
      let sent = 0;
      for await (const chunk of stream.chunks) {
        for (let off = 0; off < chunk.byteLength; ) {
          if (cancelled()) return false;
          const piece = chunk.subarray(off, off + MAX_DATA_PACKET_PAYLOAD);
          off += piece.byteLength;
          if (sent + piece.byteLength > stream.length)
            throw new ShuttleError('SOURCE_CHANGED', `object grew past the ${stream.length} bytes announced`, { context: { transactionId: tid } });
          sent += piece.byteLength;
          // The stream may reuse the chunk's buffer once it is pulled again: the chunk's last piece is flushed first.
          await cmd.write([encodeDataPacketHeader(sent === stream.length, tid, piece.byteLength), piece], signal, { flushed: off >= chunk.byteLength });
        }
      }
      if (sent !== stream.length) {
        // The announced length cannot be honoured any more; the only clean way out is to drop the connection.
        throw new ShuttleError('SOURCE_CHANGED', `object ended after ${sent} of ${stream.length} announced bytes`, { context: { transactionId: tid } });
      }
      return true;
    } catch (err) {
      if (cancelled()) return false;
      throw err;
    } finally {
      stopWatching.abort();
      await watcher;
    }
  }
}

/**
 * The initiator's data-out phase as an async iterable. Breaking out of a for-await does not end it:
 * the responder drains whatever the device model left unread, so the next packet is a fresh request.
 */
class DataOutReader implements AsyncIterable<Uint8Array> {
  private done = false;

  constructor(
    private readonly cmd: PacketSocket,
    private readonly tid: number,
    private readonly signal: AbortSignal,
  ) {}

  private async read(): Promise<IteratorResult<Uint8Array, undefined>> {
    while (!this.done) {
      const part = await this.cmd.next(this.signal);
      if (part.kind !== 'payload' || part.transactionId !== this.tid) {
        throw new ShuttleError('PTP_PROTOCOL', `expected Data/EndData for transaction ${this.tid}`, { context: { operation: 'PTP/IP data-out phase', transactionId: this.tid } });
      }
      if (part.final && part.packetEnd) this.done = true;
      if (part.bytes.byteLength > 0) return { done: false, value: part.bytes };
    }
    return { done: true, value: undefined };
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array, undefined> {
    return {
      next: () => this.read(),
      return: () => Promise.resolve({ done: true, value: undefined }),
    };
  }

  async drain(): Promise<void> {
    while (!(await this.read()).done);
  }
}
