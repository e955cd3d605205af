/**
 * PTP/IP initiator: the command/data connection and the event connection to a camera on TCP 15740, the
 * Init Command / Init Event handshake, and the PtpTransport the session runs on. The initiator's GUID and
 * friendly name are persistent (cameras pair with a GUID).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { hostname } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { sleep } from '../../async.js';
import { ShuttleError, abortReason, errnoCode, isShuttleError, throwIfAborted } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { protocolError } from '../ptp/codec.js';
import { PtpEventListeners, type PtpCommand, type PtpEvent, type PtpIncoming, type PtpTransport } from '../ptp/transport.js';
import {
  DataPhaseInfo,
  InitFailReason,
  PTPIP_DEFAULT_PORT,
  PTPIP_VERSION,
  UNKNOWN_TOTAL_LENGTH,
  encodeControlPacket,
  encodeDataPacketHeader,
  type ControlPacket,
} from './packets.js';
import { PacketSocket, SlabReads, transportError } from './packet-socket.js';

export interface InitiatorIdentity {
  guid: Uint8Array;
  friendlyName: string;
}

export const INITIATOR_IDENTITY_FILE = 'ptpip-initiator.json';

function guidHex(guid: Uint8Array): string {
  return Buffer.from(guid).toString('hex');
}

/**
 * The initiator identity kept in `stateDir`: created once (random GUID, friendly name from the host name),
 * then reused so that a camera which paired with this machine recognises it. A damaged file is an error,
 * not silently replaced, because replacing it would unpair every camera.
 */
export async function loadOrCreateInitiatorIdentity(stateDir: string, opts: { friendlyName?: string } = {}): Promise<InitiatorIdentity> {
  const { identity, saved } = await initiatorIdentity(stateDir, opts);
  await saved;
  return identity;
}

/**
 * As loadOrCreateInitiatorIdentity, but a new identity is handed out while it is still being written:
 * `saved` settles once it is on disk (or could not be), so a first connection need not wait for the sync.
 */
export async function initiatorIdentity(stateDir: string, opts: { friendlyName?: string } = {}): Promise<{ identity: InitiatorIdentity; saved: Promise<void> }> {
  const file = path.join(stateDir, INITIATOR_IDENTITY_FILE);
  let text: string | undefined;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw new ShuttleError('CONFIG_UNREADABLE', `cannot read ${file}`, { context: { path: file }, cause: err });
  }
  if (text !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (cause) {
      throw new ShuttleError('CONFIG_INVALID', `${file} is not JSON`, { context: { path: file }, cause });
    }
    const rec = parsed as { guid?: unknown; friendlyName?: unknown };
    if (typeof rec.guid !== 'string' || !/^[0-9a-f]{32}$/i.test(rec.guid) || typeof rec.friendlyName !== 'string' || rec.friendlyName.length === 0) {
      throw new ShuttleError('CONFIG_INVALID', `${file} does not hold a 32-hex-digit guid and a friendlyName`, { context: { path: file, value: text.slice(0, 200) } });
    }
    return { identity: { guid: Uint8Array.from(Buffer.from(rec.guid, 'hex')), friendlyName: rec.friendlyName }, saved: Promise.resolve() };
  }
  const identity: InitiatorIdentity = {
    guid: Uint8Array.from(randomBytes(16)),
    friendlyName: (opts.friendlyName ?? `Shuttle ${hostname()}`).slice(0, 39),
  };
  const saved = (async () => {
    await mkdir(stateDir, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    const handle = await open(tmp, 'w', 0o600);
    try {
      await handle.writeFile(`${JSON.stringify({ guid: guidHex(identity.guid), friendlyName: identity.friendlyName }, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  })();
  // Its failure is the awaiter's to report.
  saved.catch(() => {});
  return { identity, saved };
}

export interface PtpIpConnectOptions {
  host: string;
  port?: number;
  /** Some devices listen for the event connection on another port. */
  eventPort?: number;
  identity: InitiatorIdentity;
  connectTimeoutMs?: number;
  handshakeTimeoutMs?: number;
  signal?: AbortSignal;
  logger?: Logger;
}

export interface ResponderIdentity {
  connectionNumber: number;
  guid: Uint8Array;
  friendlyName: string;
  protocolVersion: number | undefined;
}

/** Largest payload put in one Data packet when sending. */
const MAX_DATA_PACKET_PAYLOAD = 1024 * 1024;

function openSocket(host: string, port: number, role: string, timeoutMs: number, signal: AbortSignal | undefined, reads: SlabReads): Promise<net.Socket> {
  throwIfAborted(signal);
  const context = { host, port, connection: role };
  return new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect({ host, port, onread: reads.onread });
    const timer = setTimeout(() => {
      finish();
      socket.destroy();
      reject(transportError(`PTP/IP ${role} connection to ${host}:${port} timed out after ${timeoutMs} ms`, context));
    }, timeoutMs);
    const onAbort = (): void => {
      finish();
      socket.destroy();
      reject(abortReason(signal as AbortSignal));
    };
    const onError = (err: Error): void => {
      finish();
      socket.destroy();
      reject(transportError(`cannot open PTP/IP ${role} connection to ${host}:${port}: ${errnoCode(err) ?? err.message}`, context, err));
    };
    const onConnect = (): void => {
      finish();
      resolve(socket);
    };
    const finish = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('error', onError);
      socket.off('connect', onConnect);
    };
    socket.once('connect', onConnect);
    socket.once('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function nextControl(sock: PacketSocket, signal: AbortSignal, what: string): Promise<ControlPacket> {
  const part = await sock.next(signal);
  if (part.kind !== 'packet') throw protocolError(what, 'data packet during the handshake', { expected: 'control packet' });
  return part.packet;
}

function initFailError(reason: number, context: Record<string, unknown>): ShuttleError {
  const why =
    reason === InitFailReason.Busy ? 'busy (another initiator is connected)' : reason === InitFailReason.Rejected ? 'rejected this initiator' : `refused (reason ${reason})`;
  return new ShuttleError('TRANSPORT', `camera ${why}`, { context: { ...context, initFailReason: reason }, retryable: reason === InitFailReason.Busy });
}

function handshakeSignal(timeoutMs: number, signal: AbortSignal | undefined, context: Record<string, unknown>): AbortSignal {
  const controller = new AbortController();
  const t = setTimeout(() => controller.abort(new ShuttleError('PTP_TIMEOUT', `PTP/IP handshake timed out after ${timeoutMs} ms`, { context, retryable: true })), timeoutMs);
  t.unref();
  return signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
}

/** Connects both PTP/IP connections and completes the handshake. Errors: TRANSPORT (refused, reset, InitFail), PTP_TIMEOUT, PTP_PROTOCOL. */
export async function connectPtpIp(opts: PtpIpConnectOptions): Promise<PtpIpTransport> {
  const port = opts.port ?? PTPIP_DEFAULT_PORT;
  const eventPort = opts.eventPort ?? port;
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
  const context = { host: opts.host, port };
  const hs = handshakeSignal(opts.handshakeTimeoutMs ?? 10_000, opts.signal, context);
  const log = opts.logger ?? silentLogger;

  const cmdReads = new SlabReads();
  const cmd = new PacketSocket(await openSocket(opts.host, port, 'command', connectTimeoutMs, hs, cmdReads), { role: 'command', context, reads: cmdReads });
  let evt: PacketSocket | undefined;
  try {
    await cmd.write(encodeControlPacket({ type: 'InitCommandRequest', guid: opts.identity.guid, friendlyName: opts.identity.friendlyName, protocolVersion: PTPIP_VERSION }), hs);
    const ack = await nextControl(cmd, hs, 'InitCommandAck');
    if (ack.type === 'InitFail') throw initFailError(ack.reason, context);
    if (ack.type !== 'InitCommandAck')
      throw protocolError('PTP/IP handshake', `expected InitCommandAck, got ${ack.type}`, { ...context, expected: 'InitCommandAck', actual: ack.type });
    const responder: ResponderIdentity = {
      connectionNumber: ack.connectionNumber,
      guid: ack.guid,
      friendlyName: ack.friendlyName,
      protocolVersion: ack.protocolVersion,
    };
    log.debug({ ...context, responder: responder.friendlyName, connectionNumber: responder.connectionNumber }, 'PTP/IP command connection ready');

    // Some cameras (Ricoh Theta) open the event port a moment after acknowledging: retry a refused connect twice.
    let evtSocket: net.Socket | undefined;
    // A refused connect reads nothing, so one slab reader serves every attempt.
    const evtReads = new SlabReads();
    for (let attempt = 0; !evtSocket; attempt++) {
      try {
        evtSocket = await openSocket(opts.host, eventPort, 'event', connectTimeoutMs, hs, evtReads);
      } catch (err) {
        if (attempt >= 2 || !isShuttleError(err, 'TRANSPORT') || err.context.errno !== 'ECONNREFUSED') throw err;
        await sleep(100);
      }
    }
    evt = new PacketSocket(evtSocket, { role: 'event', context: { ...context, port: eventPort }, reads: evtReads });
    await evt.write(encodeControlPacket({ type: 'InitEventRequest', connectionNumber: responder.connectionNumber }), hs);
    const evAck = await nextControl(evt, hs, 'InitEventAck');
    if (evAck.type === 'InitFail') throw initFailError(evAck.reason, context);
    if (evAck.type !== 'InitEventAck')
      throw protocolError('PTP/IP handshake', `expected InitEventAck, got ${evAck.type}`, { ...context, expected: 'InitEventAck', actual: evAck.type });
    return new PtpIpTransport(cmd, evt, responder, log, context);
  } catch (err) {
    cmd.close();
    evt?.close();
    if (opts.signal?.aborted) throw abortReason(opts.signal);
    if (hs.aborted && !isShuttleError(err, 'TRANSPORT') && !isShuttleError(err, 'PTP_PROTOCOL')) throw hs.reason as ShuttleError;
    throw err;
  }
}

export class PtpIpTransport implements PtpTransport {
  private readonly listeners: PtpEventListeners;
  private pendingEnd: PtpIncoming | undefined;
  private readonly probes = new Set<() => void>();
  private closed = false;

  constructor(
    private readonly cmd: PacketSocket,
    private readonly evt: PacketSocket,
    readonly responder: ResponderIdentity,
    private readonly log: Logger,
    private readonly context: Record<string, unknown>,
  ) {
    this.listeners = new PtpEventListeners(log);
    // Losing either connection loses the camera.
    cmd.onClose(() => this.evt.close());
    evt.onClose(() => this.cmd.close());
    void this.eventLoop();
  }

  private async eventLoop(): Promise<void> {
    for (;;) {
      let part;
      try {
        part = await this.evt.next();
      } catch {
        return;
      }
      if (part.kind !== 'packet') continue;
      const p = part.packet;
      if (p.type === 'Event') this.listeners.emit({ code: p.code, transactionId: p.transactionId, params: p.params });
      else if (p.type === 'ProbeRequest') this.evt.write(encodeControlPacket({ type: 'ProbeResponse' })).catch(() => undefined);
      else if (p.type === 'ProbeResponse') this.resolveProbes();
      else this.log.debug({ ...this.context, packet: p.type }, 'ignoring unexpected packet on the event connection');
    }
  }

  private resolveProbes(): void {
    for (const p of this.probes) p();
    this.probes.clear();
  }

  async sendCommand(command: PtpCommand, signal?: AbortSignal): Promise<void> {
    await this.cmd.write(
      encodeControlPacket({
        type: 'OperationRequest',
        dataPhase: command.dataPhase === 'out' ? DataPhaseInfo.Out : DataPhaseInfo.NoDataOrIn,
        code: command.code,
        transactionId: command.transactionId,
        params: [...command.params],
      }),
      signal,
    );
  }

  async sendData(transactionId: number, code: number, totalLength: number, chunks: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<void> {
    await this.cmd.write(encodeControlPacket({ type: 'StartData', transactionId, totalLength: BigInt(totalLength) }), signal);
    let sent = 0;
    if (totalLength === 0) await this.cmd.write(encodeDataPacketHeader(true, transactionId, 0), signal);
    for await (const chunk of chunks) {
      for (let off = 0; off < chunk.byteLength; ) {
        const piece = chunk.subarray(off, off + MAX_DATA_PACKET_PAYLOAD);
        off += piece.byteLength;
        if (sent + piece.byteLength > totalLength) {
          throw new ShuttleError('INTERNAL', `data-out source yields more than the ${totalLength} bytes announced`, { context: { ...this.context, code, transactionId } });
        }
        sent += piece.byteLength;
        await this.cmd.write([encodeDataPacketHeader(sent === totalLength, transactionId, piece.byteLength), piece], signal);
      }
    }
    if (sent !== totalLength) {
      throw new ShuttleError('INTERNAL', `data-out source ended after ${sent} of ${totalLength} bytes`, { context: { ...this.context, code, transactionId } });
    }
  }

  async receive(signal?: AbortSignal): Promise<PtpIncoming> {
    if (this.pendingEnd) {
      const e = this.pendingEnd;
      this.pendingEnd = undefined;
      return e;
    }
    for (;;) {
      const part = await this.cmd.next(signal);
      if (part.kind === 'payload') {
        const end: PtpIncoming | undefined = part.final && part.packetEnd ? { kind: 'data-end', transactionId: part.transactionId } : undefined;
        if (part.bytes.byteLength > 0) {
          this.pendingEnd = end;
          return { kind: 'data', transactionId: part.transactionId, bytes: part.bytes, ...(part.release ? { release: part.release } : {}) };
        }
        if (end) return end;
        continue;
      }
      const p = part.packet;
      switch (p.type) {
        case 'StartData':
          return { kind: 'data-start', transactionId: p.transactionId, totalLength: p.totalLength === UNKNOWN_TOTAL_LENGTH ? undefined : Number(p.totalLength) };
        case 'OperationResponse':
          return { kind: 'response', code: p.code, transactionId: p.transactionId, params: p.params };
        case 'ProbeRequest':
          await this.cmd.write(encodeControlPacket({ type: 'ProbeResponse' }), signal);
          continue;
        case 'ProbeResponse':
          this.resolveProbes();
          continue;
        case 'Event':
          this.listeners.emit({ code: p.code, transactionId: p.transactionId, params: p.params });
          continue;
        case 'Cancel':
          this.log.debug({ ...this.context, transactionId: p.transactionId }, 'camera cancelled a transaction');
          continue;
        case 'InitFail':
          throw initFailError(p.reason, this.context);
        default:
          throw protocolError('PTP/IP receive', `unexpected ${p.type} on the command connection`, { ...this.context, actual: p.type });
      }
    }
  }

  onEvent(listener: (event: PtpEvent) => void): () => void {
    return this.listeners.add(listener);
  }

  async cancel(transactionId: number, signal?: AbortSignal): Promise<void> {
    await this.cmd.write(encodeControlPacket({ type: 'Cancel', transactionId }), signal);
  }

  /** PTP/IP has no device reset request; a stuck camera is recovered by reconnecting. */
  async reset(): Promise<void> {}

  /** Probe Request on the event connection; resolves on the Probe Response (a liveness check). */
  async probe(signal?: AbortSignal, timeoutMs = 2500): Promise<void> {
    let answered!: () => void;
    const done = new Promise<void>((resolve) => (answered = resolve));
    this.probes.add(answered);
    await this.evt.write(encodeControlPacket({ type: 'ProbeRequest' }), signal);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new ShuttleError('PTP_TIMEOUT', `no Probe Response within ${timeoutMs} ms`, { context: this.context, retryable: true })), timeoutMs);
    });
    let offClose: (() => void) | undefined;
    const closed = new Promise<never>((_, reject) => {
      offClose = this.evt.onClose(reject);
    });
    try {
      await Promise.race([done, timeout, closed]);
    } finally {
      clearTimeout(timer);
      offClose?.();
      this.probes.delete(answered);
    }
  }

  get isClosed(): boolean {
    return this.closed || this.cmd.error !== undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.cmd.close();
    this.evt.close();
  }
}
