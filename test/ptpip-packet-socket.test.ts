import net from 'node:net';
import { afterEach, expect, test } from 'vitest';
import { PacketSocket, SlabReads } from '../src/device/ptpip/packet-socket.js';
import { encodeDataPacketHeader } from '../src/device/ptpip/packets.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** A connected pair on loopback: the server's socket, and the client's socket made with `reads`. */
async function pair(reads?: SlabReads): Promise<{ server: net.Socket; client: net.Socket }> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const client = net.connect({ host: '127.0.0.1', port, ...(reads ? { onread: reads.onread } : {}) });
  await new Promise<void>((r) => client.once('connect', r));
  const server = await accepted;
  cleanups.push(() => {
    client.destroy();
    server.destroy();
    srv.close();
  });
  return { server, client };
}

/** Bytes that differ at every position of a long stream, so a slice overwritten by later data shows. */
function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 17 + (i >> 11)) & 0xff;
  return b;
}

test('payload slices read into slabs stay intact while megabytes of later reads arrive', async () => {
  const reads = new SlabReads();
  const { server, client } = await pair(reads);
  const sock = new PacketSocket(client, { role: 'command', reads });
  const packets = Array.from({ length: 24 }, (_, i) => pattern(300_000 + i * 1000, i));
  for (const [i, p] of packets.entries()) server.write(Buffer.concat([encodeDataPacketHeader(i === packets.length - 1, 7, p.length), p]));

  // Every slice is held (not copied) until the end, as a consumer that is slow to let go would.
  const held: Uint8Array[] = [];
  for (;;) {
    const part = await sock.next();
    if (part.kind !== 'payload') throw new Error('expected payload');
    held.push(part.bytes);
    if (part.final && part.packetEnd) break;
  }
  expect(Buffer.concat(held).equals(Buffer.concat(packets))).toBe(true);
  // Reads were large: far fewer slices than Node's 64 KiB reads would give.
  expect(held.length).toBeLessThan(packets.reduce((n, p) => n + p.length, 0) / 65536);
});

test('a flushed write resolves only once the kernel has the bytes, so the sender may reuse its buffer', async () => {
  const { server, client } = await pair();
  const sender = new PacketSocket(server, { role: 'incoming' });
  client.pause();
  // Fill the kernel's buffers so that later small writes have to wait in the socket while write() says "ok".
  const filler = Buffer.alloc(4096, 0xee);
  let filled = 0;
  while (server.writableLength === 0) {
    server.write(filler);
    filled += filler.length;
  }
  const reused = Buffer.alloc(1000);
  const expected: Buffer[] = [];
  const received: Buffer[] = [];
  let total = 0;
  client.on('data', (d: Buffer) => {
    received.push(d);
    total += d.length;
  });
  setTimeout(() => client.resume(), 200);
  for (let i = 0; i < 20; i++) {
    reused.fill(i);
    expected.push(Buffer.from(reused));
    await sender.write(reused, undefined, { flushed: true });
  }
  while (total < filled + 20 * 1000) await new Promise((r) => setTimeout(r, 10));
  expect(Buffer.concat(received).subarray(filled).equals(Buffer.concat(expected))).toBe(true);
});

/** Sends `packets` as Data packets of transaction 7 (the last as EndData). */
function sendData(server: net.Socket, packets: readonly Buffer[]): void {
  for (const [i, p] of packets.entries()) server.write(Buffer.concat([encodeDataPacketHeader(i === packets.length - 1, 7, p.length), p]));
}

test('slices given back let the reader run on a few reused slabs', async () => {
  const reads = new SlabReads();
  const { server, client } = await pair(reads);
  const sock = new PacketSocket(client, { role: 'command', reads });
  const packets = Array.from({ length: 64 }, (_, i) => pattern(700_000 + i * 100, i));
  sendData(server, packets);

  const copied: Buffer[] = [];
  const slabs = new Set<ArrayBufferLike>();
  for (;;) {
    const part = await sock.next();
    if (part.kind !== 'payload') throw new Error('expected payload');
    copied.push(Buffer.from(part.bytes));
    slabs.add(part.bytes.buffer);
    expect(part.release).toBeTypeOf('function');
    part.release?.();
    if (part.final && part.packetEnd) break;
  }
  expect(Buffer.concat(copied).equals(Buffer.concat(packets))).toBe(true);
  // 45 MB went through 2 MiB slabs: without reuse that is some 22 of them.
  expect(slabs.size).toBeLessThanOrEqual(8);
  expect(reads.allocated).toBe(slabs.size);
});

test('a slice still held is never overwritten, while the slices given back around it are reused', async () => {
  const reads = new SlabReads();
  const { server, client } = await pair(reads);
  const sock = new PacketSocket(client, { role: 'command', reads });
  const packets = Array.from({ length: 64 }, (_, i) => pattern(700_000 + i * 100, i));
  sendData(server, packets);

  // Three slices, spread over the stream (its first, and the first after 15 MB and after 30 MB), are
  // held to the end uncopied; every other slice is copied and given back at once. Which slices those are
  // depends on how the kernel cut the reads, not on the slab layout, so the test does not either.
  const total = packets.reduce((sum, p) => sum + p.length, 0);
  const holdAt = [0, 15_000_000, 30_000_000];
  const held: Array<{ bytes: Uint8Array; copy: Buffer }> = [];
  const copied: Buffer[] = [];
  let seen = 0;
  for (;;) {
    const part = await sock.next();
    if (part.kind !== 'payload') throw new Error('expected payload');
    copied.push(Buffer.from(part.bytes));
    if (held.length < holdAt.length && seen >= (holdAt[held.length] ?? Number.POSITIVE_INFINITY)) {
      held.push({ bytes: part.bytes, copy: Buffer.from(part.bytes) });
    } else part.release?.();
    seen += part.bytes.byteLength;
    if (part.final && part.packetEnd) break;
  }
  expect(Buffer.concat(copied).equals(Buffer.concat(packets))).toBe(true);
  expect(held).toHaveLength(3);
  for (const h of held) expect(Buffer.from(h.bytes).equals(h.copy)).toBe(true);
  // The slabs holding a kept slice stayed out of reuse, the rest were reused: the reader got by on the
  // pinned slabs plus the same working set as when everything is given back (the test above), far
  // fewer than the 2 MiB slabs the stream would take without reuse.
  const withoutReuse = Math.ceil(total / (2 * 1024 * 1024));
  expect(reads.allocated).toBeLessThanOrEqual(held.length + 8);
  expect(reads.allocated).toBeLessThan(withoutReuse / 2);
});

test('giving a slice back twice counts once', async () => {
  const reads = new SlabReads();
  const { server, client } = await pair(reads);
  const sock = new PacketSocket(client, { role: 'command', reads });
  const packets = Array.from({ length: 64 }, (_, i) => pattern(700_000 + i * 100, i));
  sendData(server, packets);
  // Each slice's release is called twice: were that counted twice, a slice of the same slab held here
  // would be read over.
  const held: Array<{ bytes: Uint8Array; copy: Buffer }> = [];
  let n = 0;
  for (;;) {
    const part = await sock.next();
    if (part.kind !== 'payload') throw new Error('expected payload');
    if (n++ % 2 === 0) held.push({ bytes: part.bytes, copy: Buffer.from(part.bytes) });
    else {
      part.release?.();
      part.release?.();
    }
    if (part.final && part.packetEnd) break;
  }
  for (const h of held) expect(Buffer.from(h.bytes).equals(h.copy)).toBe(true);
});
