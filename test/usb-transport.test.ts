/**
 * The PTP-over-USB transport alone, over a scripted device behind the UsbLink interface: container
 * framing across reads, the packet-boundary cases (zero-length packets, none, reads that run into the next
 * container, unknown lengths), resynchronising after a cancel, stalls, resets, events, unplugging, and the
 * data-out packet rules. The whole stack runs against QEMU's usb-mtp in test/hil/usb.test.ts.
 */
import { describe, expect, test } from 'vitest';
import { isShuttleError } from '../src/errors.js';
import { ContainerType, encodeDataContainerHeader, encodeOperationContainer } from '../src/device/ptp/codec.js';
import type { PtpCommand, PtpIncoming } from '../src/device/ptp/transport.js';
import { DATASET_READ_BYTES, LARGE_READ_BYTES, SMALL_READ_BYTES, StillImageRequest, UsbPtpTransport } from '../src/device/usb/transport.js';
import { FakePtpDevice, patternBytes, receiveUntilResponse, type CommandHandler, type EndStyle } from './usb-fake-link.js';

const GetObjectInfo = 0x1008;
const GetObject = 0x1009;
const GetPartialObject = 0x101b;
const CloseSession = 0x1003;
const SendObject = 0x100d;

function command(code: number, transactionId: number, dataPhase: PtpCommand['dataPhase'] = 'in', params: number[] = []): PtpCommand {
  return { code, transactionId, params, dataPhase };
}

/** Sends `cmd` and receives until the response. */
async function transaction(t: UsbPtpTransport, cmd: PtpCommand): Promise<{ items: PtpIncoming[]; data: Buffer; response: PtpIncoming }> {
  await t.sendCommand(cmd);
  return receiveUntilResponse(t);
}

const kinds = (items: PtpIncoming[]): string[] => items.map((i) => i.kind);

/** A device that answers every command with `payload(cmd)` as data (if any) and OK. */
function serving(payload: (cmd: { code: number; params: number[] }) => Buffer | undefined): CommandHandler {
  return (cmd, dev) => {
    const p = payload(cmd);
    if (p) dev.sendData(cmd.transactionId, cmd.code, p);
    dev.respond(cmd.transactionId);
  };
}

describe('framing data phases across USB reads', () => {
  for (const endStyle of ['zlp', 'no-zlp', 'qemu'] as EndStyle[]) {
    test(`a-container-filling-its-last-packet-is-framed-whole-when-the-device-ends-it-${endStyle}`, async () => {
      // 12 + 500 = 512 bytes: exactly one full packet, the case where devices differ.
      const payload = patternBytes(0, 500);
      const dev = new FakePtpDevice(
        serving((cmd) => (cmd.code === CloseSession ? undefined : payload)),
        { endStyle },
      );
      const t = new UsbPtpTransport(dev);
      const r = await transaction(t, command(GetObjectInfo, 1));
      expect(kinds(r.items)).toEqual(['data-start', 'data', 'data-end', 'response']);
      expect(r.items[0]).toMatchObject({ kind: 'data-start', transactionId: 1, totalLength: 500 });
      expect(r.data.equals(payload)).toBe(true);
      expect(r.response).toMatchObject({ kind: 'response', code: 0x2001, transactionId: 1 });
      // Nothing left over for the next transaction.
      const again = await transaction(t, command(CloseSession, 2, 'none'));
      expect(kinds(again.items)).toEqual(['response']);
    });
  }

  test('a-response-that-arrives-in-the-same-read-as-the-end-of-the-data-becomes-its-own-item', async () => {
    const payload = patternBytes(7, 1012); // 1024-byte container: two full packets, then the response runs on
    const dev = new FakePtpDevice(
      serving(() => payload),
      { endStyle: 'no-zlp' },
    );
    const t = new UsbPtpTransport(dev);
    const r = await transaction(t, command(GetObjectInfo, 1));
    expect(kinds(r.items)).toEqual(['data-start', 'data', 'data-end', 'response']);
    expect(r.data.equals(payload)).toBe(true);
    // One read brought data and response: the transport did not ask the device again.
    expect(dev.readLengths).toHaveLength(1);
  });

  for (const packetSize of [512, 64]) {
    test(`object-data-spanning-many-reads-arrives-whole-and-in-order-with-${packetSize}-byte-packets`, async () => {
      const size = 3 * 1024 * 1024 + 7;
      const dev = new FakePtpDevice(
        (cmd, d) => {
          d.sendPatternData(cmd.transactionId, cmd.code, 0, size);
          d.respond(cmd.transactionId);
        },
        { endStyle: 'zlp', packetSize },
      );
      const t = new UsbPtpTransport(dev);
      const r = await transaction(t, command(GetObject, 5, 'in', [42]));
      expect(r.items[0]).toMatchObject({ kind: 'data-start', totalLength: size });
      expect(r.data.length).toBe(size);
      expect(r.data.equals(patternBytes(0, size))).toBe(true);
      for (const len of dev.readLengths) {
        expect(len % packetSize).toBe(0);
        expect(len).toBeLessThanOrEqual(LARGE_READ_BYTES + packetSize);
      }
    });
  }

  test('a-header-sent-alone-is-joined-with-the-payload-that-follows', async () => {
    const payload = patternBytes(3, 300);
    const dev = new FakePtpDevice((cmd, d) => {
      d.sendRaw(encodeDataContainerHeader(cmd.code, cmd.transactionId, payload.length));
      d.sendRaw(payload);
      d.respond(cmd.transactionId);
    });
    const t = new UsbPtpTransport(dev);
    const r = await transaction(t, command(GetObjectInfo, 1));
    expect(kinds(r.items)).toEqual(['data-start', 'data', 'data-end', 'response']);
    expect(r.data.equals(payload)).toBe(true);
  });

  test('data-of-unknown-length-ends-with-the-short-transfer-that-closes-it', async () => {
    const size = 2 * 1024 * 1024 + 100;
    const dev = new FakePtpDevice((cmd, d) => {
      d.sendPatternData(cmd.transactionId, cmd.code, 0, size, { unknownLength: true });
      d.respond(cmd.transactionId);
    });
    const t = new UsbPtpTransport(dev);
    const r = await transaction(t, command(GetObject, 1, 'in', [9]));
    expect(r.items[0]).toMatchObject({ kind: 'data-start', totalLength: undefined });
    expect(kinds(r.items).slice(-2)).toEqual(['data-end', 'response']);
    expect(r.data.equals(patternBytes(0, size))).toBe(true);
  });

  test('data-of-unknown-length-that-ends-on-a-read-boundary-ends-at-the-response-that-follows-alone', async () => {
    // Header + payload fill the first read exactly; a device without zero-length packets goes straight on
    // to the response, which must end the data rather than join it.
    const size = LARGE_READ_BYTES - 12;
    const dev = new FakePtpDevice(
      (cmd, d) => {
        d.sendPatternData(cmd.transactionId, cmd.code, 0, size, { unknownLength: true });
        d.respond(cmd.transactionId);
      },
      { endStyle: 'qemu' },
    );
    const t = new UsbPtpTransport(dev);
    const r = await transaction(t, command(GetObject, 1, 'in', [9]));
    expect(r.data.length).toBe(size);
    expect(r.data.equals(patternBytes(0, size))).toBe(true);
    expect(r.response).toMatchObject({ code: 0x2001, transactionId: 1 });
  });

  test('reads-are-sized-for-the-operation-large-for-object-data-small-for-datasets-and-responses', async () => {
    const dev = new FakePtpDevice(serving((cmd) => (cmd.code === CloseSession ? undefined : patternBytes(0, 100))));
    const t = new UsbPtpTransport(dev);
    await transaction(t, command(GetObjectInfo, 1));
    await transaction(t, command(GetPartialObject, 2, 'in', [1, 0, 100]));
    await transaction(t, command(CloseSession, 3, 'none'));
    // Each response is a transfer of its own, read small.
    expect(dev.readLengths).toEqual([DATASET_READ_BYTES, SMALL_READ_BYTES, LARGE_READ_BYTES, SMALL_READ_BYTES, SMALL_READ_BYTES]);
  });

  test('the-response-after-an-empty-data-container-is-read-small-like-after-any-other', async () => {
    const dev = new FakePtpDevice(serving(() => Buffer.alloc(0)));
    const t = new UsbPtpTransport(dev);
    const r = await transaction(t, command(GetObject, 1, 'in', [4]));
    expect(kinds(r.items)).toEqual(['data-start', 'data-end', 'response']);
    expect(dev.readLengths).toEqual([LARGE_READ_BYTES, SMALL_READ_BYTES]);
  });
});

test('an-object-of-known-size-is-read-in-one-transfer-of-its-own-size-and-a-larger-one-than-expected-still-arrives-whole', async () => {
  const sizes = new Map([
    [1, 500_000],
    [2, LARGE_READ_BYTES * 2],
    [3, 100_000],
  ]);
  const dev = new FakePtpDevice(serving((cmd) => patternBytes(0, sizes.get(cmd.params[0]!)!)));
  const t = new UsbPtpTransport(dev);
  const mps = dev.bulkInPacketSize;
  const roundUp = (n: number): number => Math.ceil(n / mps) * mps;
  // Expected as listed: one read of header + object, rounded to packets, instead of 4 MiB.
  const small = await transaction(t, { ...command(GetObject, 1, 'in', [1]), expectedDataBytes: 500_000 });
  expect(small.data.equals(patternBytes(0, 500_000))).toBe(true);
  expect(dev.readLengths[0]).toBe(roundUp(12 + 500_000));
  // Bigger than the hint (the object grew): the rest is read as the container header announces.
  dev.readLengths.length = 0;
  const grown = await transaction(t, { ...command(GetObject, 2, 'in', [3]), expectedDataBytes: 1000 });
  expect(grown.data.equals(patternBytes(0, 100_000))).toBe(true);
  expect(dev.readLengths.length).toBeGreaterThan(2);
  expect(dev.readLengths[0]).toBe(DATASET_READ_BYTES);
  // A large object is still read in large transfers.
  dev.readLengths.length = 0;
  const large = await transaction(t, { ...command(GetObject, 3, 'in', [2]), expectedDataBytes: LARGE_READ_BYTES * 2 });
  expect(large.data.length).toBe(LARGE_READ_BYTES * 2);
  expect(dev.readLengths[0]).toBe(LARGE_READ_BYTES);
});

describe('recovery', () => {
  test('after-a-cancel-leftovers-of-the-abandoned-transfer-are-dropped-and-the-next-transaction-is-framed', async () => {
    let first = true;
    const dev = new FakePtpDevice((cmd, d) => {
      if (first) {
        first = false;
        d.sendPatternData(cmd.transactionId, cmd.code, 0, 4 * 1024 * 1024);
        return;
      }
      d.respond(cmd.transactionId);
    });
    dev.cancelFlushes = false;
    const t = new UsbPtpTransport(dev);
    await t.sendCommand(command(GetObject, 1, 'in', [5]));
    expect(await t.receive()).toMatchObject({ kind: 'data-start', transactionId: 1 });
    expect(await t.receive()).toMatchObject({ kind: 'data' });
    await t.cancel(1);
    const cancel = dev.classRequests.find((r) => r.request === StillImageRequest.Cancel);
    expect(cancel?.data?.readUInt16LE(0)).toBe(0x4001);
    expect(cancel?.data?.readUInt32LE(2)).toBe(1);
    // The device still sends the rest of the abandoned object: the transport must not take it for a container.
    expect(dev.queuedBytes).toBeGreaterThan(0);
    dev.flush();
    dev.sendRaw(patternBytes(99, 700));
    const r = await transaction(t, command(CloseSession, 2, 'none'));
    expect(r.response).toMatchObject({ kind: 'response', transactionId: 2 });
  });

  test('bytes-that-frame-nothing-outside-a-resync-fail-the-operation-and-the-next-one-works', async () => {
    let n = 0;
    const dev = new FakePtpDevice((cmd, d) => {
      n++;
      if (n === 2) {
        const bad = encodeOperationContainer({ type: ContainerType.Response, code: 0x2001, transactionId: cmd.transactionId, params: [] });
        bad.writeUInt16LE(7, 4); // no such container type
        d.sendRaw(bad);
        return;
      }
      d.respond(cmd.transactionId);
    });
    const t = new UsbPtpTransport(dev);
    await transaction(t, command(CloseSession, 1, 'none'));
    await t.sendCommand(command(CloseSession, 2, 'none'));
    const err = await t.receive().catch((e: unknown) => e);
    expect(isShuttleError(err, 'PTP_PROTOCOL')).toBe(true);
    const r = await transaction(t, command(CloseSession, 3, 'none'));
    expect(r.response).toMatchObject({ transactionId: 3 });
  });

  test('a-stalled-bulk-in-pipe-is-cleared-and-read-again', async () => {
    const dev = new FakePtpDevice(serving(() => undefined));
    dev.stallNextIn = true;
    const t = new UsbPtpTransport(dev);
    const r = await transaction(t, command(CloseSession, 1, 'none'));
    expect(r.response).toMatchObject({ transactionId: 1 });
    expect(dev.clearedHalts).toEqual(['bulk-in']);
  });

  test('a-command-the-device-stalls-is-sent-again-after-device-reset-and-clearing-both-halts', async () => {
    const dev = new FakePtpDevice(serving(() => undefined));
    dev.stallNextOut = true;
    const t = new UsbPtpTransport(dev);
    const r = await transaction(t, command(CloseSession, 1, 'none'));
    expect(r.response).toMatchObject({ transactionId: 1 });
    expect(dev.classRequests.map((c) => c.request)).toEqual([StillImageRequest.DeviceReset, StillImageRequest.GetDeviceStatus]);
    expect(dev.clearedHalts).toEqual(['bulk-in', 'bulk-out']);
    expect(dev.commands).toHaveLength(1);
  });

  test('a-device-without-device-reset-is-recovered-with-cancel-and-not-asked-for-its-status', async () => {
    const dev = new FakePtpDevice(serving(() => undefined));
    dev.refusedRequests.add(StillImageRequest.DeviceReset);
    dev.refusedRequests.add(StillImageRequest.GetDeviceStatus);
    dev.stallNextOut = true;
    const t = new UsbPtpTransport(dev);
    await transaction(t, command(CloseSession, 1, 'none'));
    dev.stallNextOut = true;
    await transaction(t, command(CloseSession, 2, 'none'));
    // First time: reset refused, cancel instead, status refused. Second time neither refused request is tried again.
    expect(dev.classRequests.map((c) => c.request)).toEqual([StillImageRequest.DeviceReset, StillImageRequest.Cancel, StillImageRequest.GetDeviceStatus, StillImageRequest.Cancel]);
  });

  test('quirks-that-say-a-device-lacks-reset-and-status-requests-keep-them-off-the-wire', async () => {
    const dev = new FakePtpDevice(serving(() => undefined));
    dev.stallNextOut = true;
    const t = new UsbPtpTransport(dev, { quirks: { deviceResetRequest: false, deviceStatusRequest: false } });
    await transaction(t, command(CloseSession, 1, 'none'));
    await t.cancel(1);
    expect(dev.classRequests.map((c) => c.request)).toEqual([StillImageRequest.Cancel, StillImageRequest.Cancel]);
  });

  test('an-aborted-receive-leaves-its-read-in-flight-so-the-reply-that-comes-later-is-not-lost', async () => {
    let answer: (() => void) | undefined;
    const dev = new FakePtpDevice((cmd, d) => (answer = () => d.respond(cmd.transactionId)));
    const t = new UsbPtpTransport(dev);
    await t.sendCommand(command(CloseSession, 1, 'none'));
    const ac = new AbortController();
    const first = t.receive(ac.signal);
    ac.abort();
    await expect(first).rejects.toMatchObject({ code: 'ABORTED' });
    answer?.();
    expect(await t.receive()).toMatchObject({ kind: 'response', transactionId: 1 });
    expect(dev.readLengths).toHaveLength(1);
  });

  test('unplugging-fails-the-pending-read-and-every-later-operation-with-device-gone', async () => {
    const dev = new FakePtpDevice(() => undefined);
    const t = new UsbPtpTransport(dev);
    await t.sendCommand(command(GetObject, 1, 'in', [3]));
    const pending = t.receive();
    dev.unplug();
    await expect(pending).rejects.toMatchObject({ code: 'DEVICE_GONE' });
    expect(t.isGone).toBe(true);
    await expect(t.sendCommand(command(CloseSession, 2, 'none'))).rejects.toMatchObject({ code: 'DEVICE_GONE' });
    await t.cancel(2); // best effort: no throw once the device is gone
    await t.close();
    expect(dev.closed).toBe(true);
  });
});

describe('events and data out', () => {
  test('events-on-the-interrupt-pipe-reach-listeners-whole-even-when-split-across-transfers', async () => {
    const dev = new FakePtpDevice(() => undefined);
    const t = new UsbPtpTransport(dev);
    const seen: Array<{ code: number; params: number[] }> = [];
    t.onEvent((e) => seen.push({ code: e.code, params: e.params }));
    dev.event(0x4002, [0x1234]);
    dev.event(0x400d, [], 5);
    dev.event(0x4002, [7, 8], 14);
    expect(seen).toEqual([
      { code: 0x4002, params: [0x1234] },
      { code: 0x400d, params: [] },
      { code: 0x4002, params: [7, 8] },
    ]);
  });

  for (const length of [5000, 512 * 1024 * 3 - 12]) {
    test(`data-out-of-${length}-bytes-goes-in-whole-packets-with-a-zero-length-packet-only-when-the-container-fills-its-last-one`, async () => {
      const dev = new FakePtpDevice((cmd, d) => d.respond(cmd.transactionId));
      const t = new UsbPtpTransport(dev);
      const payload = patternBytes(11, length);
      await t.sendCommand(command(SendObject, 4, 'out'));
      // Odd-sized chunks, as a file reader might yield them.
      async function* chunks(): AsyncGenerator<Uint8Array> {
        for (let off = 0; off < payload.length; off += 777_777) yield payload.subarray(off, off + 777_777);
      }
      await t.sendData(4, SendObject, payload.length, chunks());
      expect(await t.receive()).toMatchObject({ kind: 'response', transactionId: 4 });
      const transfers = dev.outTransfers.slice(1); // after the command
      const total = 12 + length;
      const zlp = total % 512 === 0;
      expect(transfers.at(-1)?.length === 0).toBe(zlp);
      for (const tr of transfers.slice(0, zlp ? -2 : -1)) expect(tr.length % 512).toBe(0);
      expect(dev.dataOut.get(4)?.equals(payload)).toBe(true);
    });
  }

  test('a-data-out-source-that-yields-more-than-announced-is-an-internal-error', async () => {
    const dev = new FakePtpDevice(() => undefined);
    const t = new UsbPtpTransport(dev);
    await t.sendCommand(command(SendObject, 1, 'out'));
    async function* tooMuch(): AsyncGenerator<Uint8Array> {
      yield Buffer.alloc(10);
      yield Buffer.alloc(10);
    }
    await expect(t.sendData(1, SendObject, 15, tooMuch())).rejects.toMatchObject({ code: 'INTERNAL' });
  });
});
