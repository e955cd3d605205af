/**
 * A PTP transport for tests of the layers above it (session, camera, vendor event polling): it plays a
 * scripted device, answering each command by queueing replies that `receive` hands out one per call.
 */
import { ShuttleError } from '../../src/errors.js';
import { ResponseCode } from '../../src/device/ptp/codes.js';
import type { PtpCommand, PtpEvent, PtpIncoming, PtpTransport } from '../../src/device/ptp/transport.js';

export type Script = (cmd: PtpCommand, dev: ScriptedDevice) => void;

/** A device that answers each command by queueing replies; `receive` hands them out one per call. */
export class ScriptedDevice implements PtpTransport {
  readonly commands: PtpCommand[] = [];
  readonly cancelled: number[] = [];
  readonly dataOut: Buffer[] = [];
  receiveCalls = 0;
  private readonly queue: PtpIncoming[] = [];
  private waiter: ((i: PtpIncoming) => void) | undefined;
  private readonly listeners = new Set<(e: PtpEvent) => void>();

  constructor(private readonly script: Script) {}

  reply(...items: PtpIncoming[]): void {
    for (const i of items) {
      const w = this.waiter;
      if (w) {
        this.waiter = undefined;
        w(i);
      } else this.queue.push(i);
    }
  }

  ok(cmd: PtpCommand, params: number[] = []): void {
    this.reply({ kind: 'response', code: ResponseCode.OK, transactionId: cmd.transactionId, params });
  }

  event(e: PtpEvent): void {
    for (const l of this.listeners) l(e);
  }

  async sendCommand(cmd: PtpCommand): Promise<void> {
    this.commands.push(cmd);
    if (cmd.dataPhase !== 'out') this.script(cmd, this);
  }

  async sendData(transactionId: number, _code: number, totalLength: number, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    const got: Buffer[] = [];
    for await (const c of chunks) got.push(Buffer.from(c));
    const all = Buffer.concat(got);
    if (all.length !== totalLength) throw new ShuttleError('INTERNAL', 'length mismatch in test device');
    this.dataOut.push(all);
    this.script(this.commands[this.commands.length - 1] as PtpCommand, this);
    void transactionId;
  }

  receive(signal?: AbortSignal): Promise<PtpIncoming> {
    this.receiveCalls += 1;
    const next = this.queue.shift();
    if (next) return Promise.resolve(next);
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.waiter = undefined;
        reject(signal?.reason);
      };
      this.waiter = (i) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(i);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  onEvent(listener: (e: PtpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async cancel(transactionId: number): Promise<void> {
    this.cancelled.push(transactionId);
  }

  async reset(): Promise<void> {}
  async close(): Promise<void> {}
}
