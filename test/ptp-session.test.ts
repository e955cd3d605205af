/**
 * The session layer alone, over an in-memory transport that plays a scripted device. (The whole stack
 * runs over real TCP against the simulator in ptpip-camera.test.ts.)
 */
import { describe, expect, test } from 'vitest';
import { ShuttleError, isShuttleError } from '../src/errors.js';
import { OperationCode, ResponseCode } from '../src/device/ptp/codes.js';
import { PtpSession, nextTransactionId, responseCodeOf } from '../src/device/ptp/session.js';
import type { PtpCommand } from '../src/device/ptp/transport.js';
import { ScriptedDevice, type Script } from './support/ptp-scripted-device.js';

const okToAll: Script = (cmd, dev) => dev.ok(cmd);

async function rejection(p: Promise<unknown>): Promise<ShuttleError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof ShuttleError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

describe('transaction ids', () => {
  test('OpenSession goes out with id 0, then operations count from 1', async () => {
    const dev = new ScriptedDevice(okToAll);
    const s = new PtpSession(dev);
    await s.openSession(1);
    await s.run({ code: OperationCode.GetStorageIDs });
    await s.run({ code: OperationCode.GetStorageIDs });
    expect(dev.commands.map((c) => [c.code, c.transactionId, c.params])).toEqual([
      [OperationCode.OpenSession, 0, [1]],
      [OperationCode.GetStorageIDs, 1, []],
      [OperationCode.GetStorageIDs, 2, []],
    ]);
    expect(s.sessionId).toBe(1);
  });

  test('ids wrap past 0xFFFFFFFF to 1, never 0', async () => {
    expect(nextTransactionId(0xfffffffe)).toBe(0xffffffff);
    expect(nextTransactionId(0xffffffff)).toBe(1);
    const dev = new ScriptedDevice(okToAll);
    const s = new PtpSession(dev, { firstTransactionId: 0xfffffffe });
    await s.openSession();
    for (let i = 0; i < 3; i++) await s.run({ code: OperationCode.GetNumObjects });
    expect(dev.commands.slice(1).map((c) => c.transactionId)).toEqual([0xfffffffe, 0xffffffff, 1]);
  });

  test('a reply to an earlier transaction is discarded, also across the wrap', async () => {
    // The id `n` transactions before `tid`, counting the way the session does (0 is never used).
    const before = (tid: number, n: number): number => {
      let t = tid;
      for (let i = 0; i < n; i++) t = t === 1 ? 0xffffffff : t - 1;
      return t;
    };
    const dev = new ScriptedDevice((cmd, d) => {
      const old = before(cmd.transactionId, 1);
      d.reply(
        { kind: 'response', code: ResponseCode.OK, transactionId: before(cmd.transactionId, 2), params: [99] },
        { kind: 'data-start', transactionId: old, totalLength: 3 },
        { kind: 'data', transactionId: old, bytes: Buffer.from('old') },
        { kind: 'response', code: ResponseCode.OK, transactionId: cmd.transactionId, params: [7] },
      );
    });
    const s = new PtpSession(dev, { firstTransactionId: 0xffffffff });
    const first = await s.run({ code: OperationCode.GetNumObjects });
    expect(first.transactionId).toBe(0xffffffff);
    expect(first.params).toEqual([7]);
    const second = await s.runDataIn({ code: OperationCode.GetObjectHandles });
    expect(second.response.transactionId).toBe(1);
    expect(second.data.length).toBe(0);
  });

  test('a reply for a transaction that has not started is a protocol error', async () => {
    const dev = new ScriptedDevice((cmd, d) => d.reply({ kind: 'response', code: ResponseCode.OK, transactionId: cmd.transactionId + 5, params: [] }));
    const err = await rejection(new PtpSession(dev).run({ code: OperationCode.GetStorageIDs }));
    expect(err.code).toBe('PTP_PROTOCOL');
    expect(err.context['expected']).toBe(1);
    expect(err.context['actual']).toBe(6);
  });

  test('a response carrying id 0 is accepted only when the quirk says so', async () => {
    const zero: Script = (_cmd, d) => d.reply({ kind: 'response', code: ResponseCode.OK, transactionId: 0, params: [] });
    const strict = new PtpSession(new ScriptedDevice(zero), { quirks: { operationTimeoutMs: 200 } });
    expect((await rejection(strict.run({ code: OperationCode.CloseSession }))).code).toBe('PTP_TIMEOUT');
    const leica = new PtpSession(new ScriptedDevice(zero), { quirks: { acceptZeroTransactionId: true } });
    expect((await leica.run({ code: OperationCode.CloseSession })).transactionId).toBe(0);
  });
});

describe('responses', () => {
  test('a non-OK response throws PTP_RESPONSE with the operation and response names', async () => {
    const dev = new ScriptedDevice((cmd, d) => d.reply({ kind: 'response', code: ResponseCode.InvalidObjectHandle, transactionId: cmd.transactionId, params: [] }));
    const err = await rejection(new PtpSession(dev).run({ code: OperationCode.GetObjectInfo, params: [42] }));
    expect(err.code).toBe('PTP_RESPONSE');
    expect(err.message).toBe('GetObjectInfo failed: InvalidObjectHandle (0x2009)');
    expect(responseCodeOf(err)).toBe(ResponseCode.InvalidObjectHandle);
    expect(err.retryable).toBe(false);
  });

  test('DeviceBusy is retryable', async () => {
    const dev = new ScriptedDevice((cmd, d) => d.reply({ kind: 'response', code: ResponseCode.DeviceBusy, transactionId: cmd.transactionId, params: [] }));
    expect((await rejection(new PtpSession(dev).run({ code: OperationCode.InitiateCapture }))).retryable).toBe(true);
  });

  test('SessionAlreadyOpen from OpenSession counts as an open session', async () => {
    const dev = new ScriptedDevice((cmd, d) => {
      if (cmd.code === OperationCode.OpenSession) d.reply({ kind: 'response', code: ResponseCode.SessionAlreadyOpen, transactionId: 0, params: [] });
      else d.ok(cmd);
    });
    const s = new PtpSession(dev);
    await s.openSession(1);
    expect(s.sessionId).toBe(1);
    await s.run({ code: OperationCode.GetStorageIDs });
  });

  test('InvalidTransactionID on OpenSession tries the next session id', async () => {
    const dev = new ScriptedDevice((cmd, d) => {
      if (cmd.code === OperationCode.OpenSession && cmd.params[0] === 1) d.reply({ kind: 'response', code: ResponseCode.InvalidTransactionID, transactionId: 0, params: [] });
      else d.ok(cmd);
    });
    const s = new PtpSession(dev);
    await s.openSession(1);
    expect(s.sessionId).toBe(2);
  });
});

describe('data phases', () => {
  test('data-in is pulled: the device is read again only after the consumer took the chunk', async () => {
    const dev = new ScriptedDevice((cmd, d) =>
      d.reply(
        { kind: 'data-start', transactionId: cmd.transactionId, totalLength: 6 },
        { kind: 'data', transactionId: cmd.transactionId, bytes: Buffer.from('ab') },
        { kind: 'data', transactionId: cmd.transactionId, bytes: Buffer.from('cd') },
        { kind: 'data', transactionId: cmd.transactionId, bytes: Buffer.from('ef') },
        { kind: 'data-end', transactionId: cmd.transactionId },
        { kind: 'response', code: ResponseCode.OK, transactionId: cmd.transactionId, params: [] },
      ),
    );
    const s = new PtpSession(dev);
    const seen: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const done = s.runDataInTo({ code: OperationCode.GetObject, params: [1] }, async (chunk) => {
      seen.push(Buffer.from(chunk).toString());
      if (seen.length === 1) await gate;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual(['ab']);
    expect(dev.receiveCalls).toBe(2);
    release();
    await done;
    expect(seen).toEqual(['ab', 'cd', 'ef']);
  });

  test('more data than the device announced is a protocol error', async () => {
    const dev = new ScriptedDevice((cmd, d) =>
      d.reply({ kind: 'data-start', transactionId: cmd.transactionId, totalLength: 2 }, { kind: 'data', transactionId: cmd.transactionId, bytes: Buffer.from('abc') }),
    );
    expect((await rejection(new PtpSession(dev).runDataIn({ code: OperationCode.GetObject, params: [1] }))).code).toBe('PTP_PROTOCOL');
  });

  test('runDataIn refuses a dataset above its limit and abandons the transaction', async () => {
    const dev = new ScriptedDevice((cmd, d) =>
      d.reply({ kind: 'data-start', transactionId: cmd.transactionId, totalLength: 100 }, { kind: 'data', transactionId: cmd.transactionId, bytes: Buffer.alloc(100) }),
    );
    const err = await rejection(new PtpSession(dev).runDataIn({ code: OperationCode.GetObjectHandles }, 64));
    expect(err.code).toBe('PTP_PROTOCOL');
    expect(dev.cancelled).toEqual([1]);
  });

  test('data-out sends the bytes with the operation and reads the response after', async () => {
    const dev = new ScriptedDevice(okToAll);
    const s = new PtpSession(dev);
    async function* parts(): AsyncGenerator<Uint8Array> {
      yield Buffer.from('hello ');
      yield Buffer.from('camera');
    }
    await s.runDataOut({ code: OperationCode.SendObject }, { length: 12, chunks: parts() });
    expect(dev.commands[0]?.dataPhase).toBe('out');
    expect(dev.dataOut.map(String)).toEqual(['hello camera']);
  });
});

describe('timeouts and cancellation', () => {
  test('a silent device makes the operation fail with PTP_TIMEOUT; the session then runs the next one', async () => {
    let first = true;
    const dev = new ScriptedDevice((cmd, d) => {
      if (first) first = false;
      else d.ok(cmd);
    });
    const s = new PtpSession(dev);
    const started = Date.now();
    const err = await rejection(s.run({ code: OperationCode.GetStorageIDs, timeoutMs: 150 }));
    expect(err.code).toBe('PTP_TIMEOUT');
    expect(err.context['operation']).toBe('GetStorageIDs');
    expect(Date.now() - started).toBeLessThan(2000);
    expect(dev.cancelled).toEqual([1]);
    expect((await s.run({ code: OperationCode.GetStorageIDs })).transactionId).toBe(2);
  });

  test('aborting rejects with the reason, cancels on the device, and late replies are dropped by the next operation', async () => {
    let pending: PtpCommand | undefined;
    const dev = new ScriptedDevice((cmd, d) => {
      if (pending === undefined) pending = cmd;
      else {
        // The abandoned transaction's response arrives late, before the current one's.
        d.ok(pending, [111]);
        d.ok(cmd, [222]);
      }
    });
    const s = new PtpSession(dev);
    const ac = new AbortController();
    const p = s.run({ code: OperationCode.InitiateCapture, signal: ac.signal });
    setTimeout(() => ac.abort(new ShuttleError('ABORTED', 'unplugged')), 20);
    const err = await rejection(p);
    expect(err.code).toBe('ABORTED');
    expect(err.message).toBe('unplugged');
    expect(dev.cancelled).toEqual([1]);
    expect((await s.run({ code: OperationCode.GetStorageIDs })).params).toEqual([222]);
  });

  test('an already aborted signal sends nothing', async () => {
    const dev = new ScriptedDevice(okToAll);
    const ac = new AbortController();
    ac.abort();
    expect(isShuttleError(await rejection(new PtpSession(dev).run({ code: OperationCode.GetStorageIDs, signal: ac.signal })), 'ABORTED')).toBe(true);
    expect(dev.commands).toEqual([]);
  });

  test('operations run one at a time: the second command waits for the first response', async () => {
    const held: PtpCommand[] = [];
    const dev = new ScriptedDevice((cmd) => held.push(cmd));
    const s = new PtpSession(dev);
    const a = s.run({ code: OperationCode.GetStorageIDs });
    const b = s.run({ code: OperationCode.GetNumObjects });
    await new Promise((r) => setTimeout(r, 30));
    expect(dev.commands.map((c) => c.code)).toEqual([OperationCode.GetStorageIDs]);
    dev.ok(held[0] as PtpCommand);
    await a;
    await new Promise((r) => setTimeout(r, 10));
    dev.ok(held[1] as PtpCommand);
    await b;
    expect(dev.commands.map((c) => c.code)).toEqual([OperationCode.GetStorageIDs, OperationCode.GetNumObjects]);
  });
});

describe('events', () => {
  test('a subscription buffers events from the moment it is made, in order', async () => {
    const dev = new ScriptedDevice(okToAll);
    const s = new PtpSession(dev);
    dev.event({ code: 0x4002, transactionId: 0, params: [1] });
    const sub = s.subscribe();
    dev.event({ code: 0x4002, transactionId: 0, params: [2] });
    dev.event({ code: 0x400d, transactionId: 0, params: [] });
    expect(await sub.next()).toEqual({ code: 0x4002, transactionId: 0, params: [2] });
    expect((await sub.next()).code).toBe(0x400d);
    expect((await rejection(sub.next(undefined, 50))).code).toBe('PTP_TIMEOUT');
    sub.close();
  });

  test('events() ends when its signal aborts', async () => {
    const dev = new ScriptedDevice(okToAll);
    const s = new PtpSession(dev);
    const ac = new AbortController();
    const got: number[] = [];
    const loop = (async () => {
      for await (const e of s.events(ac.signal)) got.push(e.params[0] ?? -1);
    })();
    await new Promise((r) => setTimeout(r, 5));
    dev.event({ code: 0x4002, transactionId: 0, params: [5] });
    await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    await loop;
    expect(got).toEqual([5]);
  });
});
