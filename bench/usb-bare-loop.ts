// The bus limit for bench/usb.ts: the least a PTP-over-USB reader can do to list and read every object of a
// camera, with nothing else in the way. GetObjectHandles per folder, GetObjectInfo per object, GetObject
// read and thrown away (no hashing, no writing). A reference measurement run inside the guest next to
// Shuttle, not product code. It drives Shuttle's own USB transfer path (the libusb link and the PTP-over-USB
// transport: reused libusb transfers, 4 MiB reads into reused buffers, two pending inside a data phase) without the session,
// the camera layer or the ingest pipeline: node-usb's per-call `endpoint.transfer` crashed the guest's node
// with SIGSEGV in about half the runs, Shuttle's path never did, and the limit is then the one Shuttle's
// own transport could reach.
// Run (as root, camera attached):  node --experimental-transform-types bench/usb-bare-loop.ts
// Prints "bare-loop files=N bytes=N secs=S" (secs from the device open to the last byte). What this CPU
// hashes and copies per second is bench/cpu-rates.ts's, in a process of its own.
await import(new URL('../test/support/ts-resolve-hooks.mjs', import.meta.url).href);
const { OperationCode, ObjectFormat, ROOT_OBJECTS } = await import('../src/device/ptp/codes.js');
const { decodeObjectInfo, decodeStorageIds, decodeU32Array } = await import('../src/device/ptp/datasets.js');
const { usbQuirksFor } = await import('../src/device/ptp/quirks.js');
const { findUsbCameras } = await import('../src/device/usb/discovery.js');
const { openLibusbLink } = await import('../src/device/usb/libusb.js');
const { UsbPtpTransport } = await import('../src/device/usb/transport.js');

const found = (await findUsbCameras())[0];
if (!found) throw new Error('no Still Image class device on the bus');
const started = performance.now();
const link = openLibusbLink(found.device, { interfaceNumber: found.info.interfaceNumber });
const transport = new UsbPtpTransport(link, { quirks: usbQuirksFor({ vendorId: found.info.vendorId, productId: found.info.productId }).usb });

let tid = 0;
/** One transaction; data slices go to `onData`; resolves with the response code. */
async function transaction(code: number, params: number[], dataIn: boolean, onData: (bytes: Uint8Array) => void, expectedDataBytes?: number): Promise<number> {
  const transactionId = code === OperationCode.OpenSession ? 0 : ++tid;
  await transport.sendCommand({ code, transactionId, params, dataPhase: dataIn ? 'in' : 'none', ...(expectedDataBytes === undefined ? {} : { expectedDataBytes }) });
  for (;;) {
    const item = await transport.receive();
    if (item.kind === 'data') {
      onData(item.bytes);
      // As Shuttle's reader does: the read buffer serves again.
      item.release?.();
    } else if (item.kind === 'response') return item.code;
  }
}

async function dataset(code: number, params: number[]): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  const rc = await transaction(code, params, true, (b) => parts.push(Buffer.from(b)));
  if (rc !== 0x2001) throw new Error(`operation 0x${code.toString(16)} answered 0x${rc.toString(16)}`);
  return Buffer.concat(parts);
}

await transaction(OperationCode.OpenSession, [1], false, () => undefined);
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
      const rc = await transaction(OperationCode.GetObject, [handle], true, (b) => (got += b.byteLength), info.compressedSize);
      if (rc !== 0x2001 || got !== info.compressedSize) throw new Error(`GetObject ${info.filename}: response 0x${rc.toString(16)}, ${got} of ${info.compressedSize} bytes`);
      files += 1;
      bytes += got;
    }
  }
}
const secs = (performance.now() - started) / 1000;
await transaction(OperationCode.CloseSession, [], false, () => undefined);
await transport.close();

process.stdout.write(`bare-loop files=${files} bytes=${bytes} secs=${secs.toFixed(2)}\n`);
