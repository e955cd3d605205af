// The link limit for bench/ptpip.ts: the least a PTP/IP initiator can do to list and read every object of a
// camera, with nothing else in the way. Init Command / Init Event handshake, OpenSession, GetStorageIDs,
// GetObjectHandles per folder, GetObjectInfo and GetObject per object, the object bytes counted and thrown
// away (no hashing, no writing). A reference measurement, not product code: a raw `node:net` socket reading
// into one reused buffer and a hand-rolled packet parser, sharing nothing with Shuttle's transport, so that
// it measures the link and the camera (here: the simulator), not our code.
// Run:  ./node_modules/.bin/node bench/ptpip-bare-loop.ts HOST PORT
// Prints "bare-loop files=N bytes=N secs=S" (secs from the first connect to the last byte).
import net from 'node:net';

const host = process.argv[2] ?? '127.0.0.1';
const port = Number(process.argv[3] ?? '15740');

const T = {
  InitCommandRequest: 1,
  InitCommandAck: 2,
  InitEventRequest: 3,
  InitEventAck: 4,
  InitFail: 5,
  OperationRequest: 6,
  OperationResponse: 7,
  StartData: 9,
  Data: 10,
  EndData: 12,
};
const Op = { OpenSession: 0x1002, CloseSession: 0x1003, GetStorageIDs: 0x1004, GetObjectHandles: 0x1007, GetObjectInfo: 0x1008, GetObject: 0x1009 };
const OK = 0x2001;
const ASSOCIATION = 0x3001;
const ROOT = 0xffffffff;

interface Packet {
  type: number;
  /** Bytes after the 8-byte header (a copy). */
  body: Buffer;
}

/** One TCP connection: reads into one reused 4 MiB buffer; control packets are copied out, data payloads go to `sink`. */
class Link {
  readonly socket: net.Socket;
  /** Where the payload of Data/EndData packets goes; valid only during the call. */
  sink: (bytes: Buffer) => void = () => undefined;
  private readonly head = Buffer.alloc(12);
  private headLen = 0;
  private control: Buffer | undefined;
  private controlLen = 0;
  private controlType = 0;
  private payloadLeft = 0;
  private readonly packets: Packet[] = [];
  private waiter: ((p: Packet) => void) | undefined;
  private failure: Error | undefined;
  private failWaiter: ((e: Error) => void) | undefined;

  private constructor(socket: net.Socket) {
    this.socket = socket;
  }

  static open(role: string): Promise<Link> {
    return new Promise((resolve, reject) => {
      let link: Link | undefined = undefined;
      const socket = net.connect({
        host,
        port,
        onread: {
          buffer: Buffer.allocUnsafe(4 * 1024 * 1024),
          callback: (n: number, buf: Uint8Array) => {
            link!.feed(buf as Buffer, n);
            return true;
          },
        },
      });
      link = new Link(socket);
      socket.setNoDelay(true);
      socket.once('connect', () => resolve(link!));
      socket.on('error', (e) => {
        link!.fail(new Error(`${role} connection: ${e.message}`));
        reject(e);
      });
      socket.on('close', () => link!.fail(new Error(`${role} connection closed`)));
    });
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.failWaiter?.(e);
  }

  private emit(p: Packet): void {
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      this.failWaiter = undefined;
      w(p);
    } else this.packets.push(p);
  }

  feed(buf: Buffer, n: number): void {
    let pos = 0;
    while (pos < n) {
      if (this.payloadLeft > 0) {
        const k = Math.min(this.payloadLeft, n - pos);
        this.sink(buf.subarray(pos, pos + k));
        this.payloadLeft -= k;
        pos += k;
        continue;
      }
      if (this.control) {
        const k = Math.min(this.control.length - this.controlLen, n - pos);
        buf.copy(this.control, this.controlLen, pos, pos + k);
        this.controlLen += k;
        pos += k;
        if (this.controlLen === this.control.length) {
          this.emit({ type: this.controlType, body: this.control });
          this.control = undefined;
        }
        continue;
      }
      const need = this.headLen < 8 ? 8 : 12;
      const k = Math.min(need - this.headLen, n - pos);
      buf.copy(this.head, this.headLen, pos, pos + k);
      this.headLen += k;
      pos += k;
      if (this.headLen < 8) continue;
      const length = this.head.readUInt32LE(0);
      const type = this.head.readUInt32LE(4);
      if (type === T.Data || type === T.EndData) {
        if (this.headLen < 12) continue;
        this.payloadLeft = length - 12;
      } else if (length === 8) {
        this.emit({ type, body: Buffer.alloc(0) });
      } else {
        this.control = Buffer.allocUnsafe(length - 8);
        this.controlLen = 0;
        this.controlType = type;
      }
      this.headLen = 0;
    }
  }

  next(): Promise<Packet> {
    const p = this.packets.shift();
    if (p) return Promise.resolve(p);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = resolve;
      this.failWaiter = reject;
    });
  }

  send(type: number, body: Buffer): void {
    const head = Buffer.alloc(8);
    head.writeUInt32LE(8 + body.length, 0);
    head.writeUInt32LE(type, 4);
    this.socket.write(Buffer.concat([head, body]));
  }
}

const started = performance.now();
const cmd = await Link.open('command');
const name = Buffer.from('bare loop\0', 'utf16le');
const version = Buffer.alloc(4);
version.writeUInt32LE(0x00010000);
cmd.send(T.InitCommandRequest, Buffer.concat([Buffer.alloc(16, 0x42), name, version]));
const ack = await cmd.next();
if (ack.type !== T.InitCommandAck) throw new Error(`expected InitCommandAck, got packet type ${ack.type}`);
const evt = await Link.open('event');
evt.send(T.InitEventRequest, ack.body.subarray(0, 4));
const evAck = await evt.next();
if (evAck.type !== T.InitEventAck) throw new Error(`expected InitEventAck, got packet type ${evAck.type}`);

let tid = 0;
/** One operation with a data-in phase or none; payload bytes go to `onData`; resolves with the response code. */
async function transaction(code: number, params: number[], onData: (bytes: Buffer) => void): Promise<number> {
  const body = Buffer.alloc(10 + 4 * params.length);
  body.writeUInt32LE(1, 0);
  body.writeUInt16LE(code, 4);
  body.writeUInt32LE(code === Op.OpenSession ? 0 : ++tid, 6);
  params.forEach((v, i) => body.writeUInt32LE(v >>> 0, 10 + 4 * i));
  cmd.sink = onData;
  cmd.send(T.OperationRequest, body);
  for (;;) {
    const p = await cmd.next();
    if (p.type === T.OperationResponse) return p.body.readUInt16LE(0);
    if (p.type !== T.StartData) throw new Error(`unexpected packet type ${p.type}`);
  }
}

async function dataset(code: number, params: number[]): Promise<Buffer> {
  const parts: Buffer[] = [];
  const rc = await transaction(code, params, (b) => parts.push(Buffer.from(b)));
  if (rc !== OK) throw new Error(`operation 0x${code.toString(16)} answered 0x${rc.toString(16)}`);
  return Buffer.concat(parts);
}

const u32Array = (b: Buffer): number[] => Array.from({ length: b.readUInt32LE(0) }, (_, i) => b.readUInt32LE(4 + 4 * i));

if ((await transaction(Op.OpenSession, [1], () => undefined)) !== OK) throw new Error('OpenSession refused');
let files = 0;
let bytes = 0;
for (const storage of u32Array(await dataset(Op.GetStorageIDs, []))) {
  const folders = [ROOT];
  while (folders.length > 0) {
    const parent = folders.pop()!;
    for (const handle of u32Array(await dataset(Op.GetObjectHandles, [storage, 0, parent]))) {
      const info = await dataset(Op.GetObjectInfo, [handle]);
      if (info.readUInt16LE(4) === ASSOCIATION) {
        folders.push(handle);
        continue;
      }
      const size = info.readUInt32LE(8);
      let got = 0;
      const rc = await transaction(Op.GetObject, [handle], (b) => (got += b.length));
      if (rc !== OK || got !== size) throw new Error(`GetObject 0x${handle.toString(16)}: response 0x${rc.toString(16)}, ${got} of ${size} bytes`);
      files += 1;
      bytes += got;
    }
  }
}
const secs = (performance.now() - started) / 1000;
await transaction(Op.CloseSession, [], () => undefined);
cmd.socket.destroy();
evt.socket.destroy();
process.stdout.write(`bare-loop files=${files} bytes=${bytes} secs=${secs.toFixed(2)}\n`);
