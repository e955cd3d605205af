// The bus limit for bench/usb.ts: the least a PTP-over-USB reader can do to list and read every object of a
// camera, with nothing else in the way. One bulk transfer at a time: GetObjectHandles per folder,
// GetObjectInfo per object, GetObject read in 4 MiB bulk transfers and thrown away (no hashing, no
// writing). A reference measurement run inside the guest next to Shuttle, not product code: it uses the
// `usb` package directly, the project's pure PTP codec and its pure USB container framing.
// Run (as root, camera attached):  node bench/usb-bare-loop.ts
// Prints "cpu-rates sha256=MB/s xxh128=MB/s copy=MB/s" (what this CPU hashes and copies per second,
// measured after the loop), then "bare-loop files=N bytes=N secs=S" (secs from the device open to the last byte).
import type { InEndpoint, OutEndpoint } from 'usb';

await import(new URL('../test/support/ts-resolve-hooks.mjs', import.meta.url).href);
const { ContainerType, encodeOperationContainer } = await import('../src/device/ptp/codec.js');
const { UsbContainerFramer } = await import('../src/device/usb/framing.js');
const { OperationCode, ObjectFormat, ROOT_OBJECTS } = await import('../src/device/ptp/codes.js');
const { decodeObjectInfo, decodeStorageIds, decodeU32Array } = await import('../src/device/ptp/datasets.js');
const { getDeviceList } = await import('usb');

const OBJECT_READ_BYTES = 4 * 1024 * 1024;
const DATASET_READ_BYTES = 16 * 1024;

const device = getDeviceList().find((d) => d.configDescriptor?.interfaces.some((alts) => alts[0]?.bInterfaceClass === 6));
if (!device) throw new Error('no Still Image class device on the bus');
const started = performance.now();
device.open();
const ifaceNumber = device.configDescriptor!.interfaces.findIndex((alts) => alts[0]?.bInterfaceClass === 6);
const iface = device.interface(ifaceNumber);
if (iface.isKernelDriverActive()) iface.detachKernelDriver();
iface.claim();
const bulkIn = iface.endpoints.find((e) => e.direction === 'in' && e.transferType === 2) as InEndpoint;
const bulkOut = iface.endpoints.find((e) => e.direction === 'out' && e.transferType === 2) as OutEndpoint;
bulkIn.timeout = 10_000;
bulkOut.timeout = 10_000;

const write = (bytes: Buffer): Promise<void> => new Promise((resolve, reject) => bulkOut.transfer(bytes, (err) => (err ? reject(err) : resolve())));
const read = (length: number): Promise<Buffer> => new Promise((resolve, reject) => bulkIn.transfer(length, (err, data) => (err ? reject(err) : resolve(data ?? Buffer.alloc(0)))));

let tid = 0;
/** One transaction; data slices go to `onData`; resolves with the response code. */
async function transaction(code: number, params: number[], readBytes: number, onData: (bytes: Uint8Array) => void): Promise<number> {
  const transactionId = code === OperationCode.OpenSession ? 0 : ++tid;
  await write(encodeOperationContainer({ type: ContainerType.Command, code, transactionId, params }));
  const framer = new UsbContainerFramer();
  for (;;) {
    const bytes = await read(readBytes);
    framer.push(bytes, bytes.length < readBytes);
    for (let f = framer.next(); f; f = framer.next()) {
      if (f.kind === 'data') onData(f.bytes);
      else if (f.kind === 'response') return f.code;
    }
  }
}

async function dataset(code: number, params: number[]): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  const rc = await transaction(code, params, DATASET_READ_BYTES, (b) => parts.push(Buffer.from(b)));
  if (rc !== 0x2001) throw new Error(`operation 0x${code.toString(16)} answered 0x${rc.toString(16)}`);
  return Buffer.concat(parts);
}

await transaction(OperationCode.OpenSession, [1], DATASET_READ_BYTES, () => undefined);
let files = 0;
let bytes = 0;
for (const storage of decodeStorageIds(await dataset(OperationCode.GetStorageIDs, []))) {
  const folders = [ROOT_OBJECTS];
  while (folders.length > 0) {
    const parent = folders.pop()!;
    for (const handle of decodeU32Array(await dataset(OperationCode.GetObjectHandles, [storage, 0, parent]), 'handles')) {
      const info = decodeObjectInfo(await dataset(OperationCode.GetObjectInfo, [handle]));
      if (info.objectFormat === ObjectFormat.Association) {
        folders.push(handle);
        continue;
      }
      let got = 0;
      const rc = await transaction(OperationCode.GetObject, [handle], OBJECT_READ_BYTES, (b) => (got += b.byteLength));
      if (rc !== 0x2001 || got !== info.compressedSize) throw new Error(`GetObject ${info.filename}: response 0x${rc.toString(16)}, ${got} of ${info.compressedSize} bytes`);
      files += 1;
      bytes += got;
    }
  }
}
const secs = (performance.now() - started) / 1000;
await transaction(OperationCode.CloseSession, [], DATASET_READ_BYTES, () => undefined);
await new Promise<void>((resolve) => iface.release(true, () => resolve()));
device.close();

// What the same CPU does per byte besides reading: the hashes Shuttle computes on every chunk (SHA-256
// by node:crypto, xxh128 by hash-wasm, the latter again on read-back) and one copy of it.
const { createHash } = await import('node:crypto');
const { createXXHash128 } = await import('hash-wasm');
const sample = Buffer.alloc(32 * 1024 * 1024, 0x5a);
const rate = (work: () => void): number => {
  const t = performance.now();
  work();
  return sample.length / 1e6 / ((performance.now() - t) / 1000);
};
const xxh = await createXXHash128();
const chunks = (f: (c: Buffer) => void): void => {
  for (let off = 0; off < sample.length; off += 1024 * 1024) f(sample.subarray(off, off + 1024 * 1024));
};
const sha256Rate = rate(() => {
  const h = createHash('sha256');
  chunks((c) => h.update(c));
  h.digest();
});
const xxh128Rate = rate(() => {
  xxh.init();
  chunks((c) => xxh.update(c));
  xxh.digest();
});
const copyTarget = Buffer.allocUnsafe(1024 * 1024);
const copyRate = rate(() => chunks((c) => c.copy(copyTarget)));
process.stdout.write(`cpu-rates sha256=${sha256Rate.toFixed(1)} xxh128=${xxh128Rate.toFixed(1)} copy=${copyRate.toFixed(1)}\n`);
process.stdout.write(`bare-loop files=${files} bytes=${bytes} secs=${secs.toFixed(2)}\n`);
