// What this CPU hashes and copies per second on one thread: the hashes Shuttle computes on every chunk
// (SHA-256 by node:crypto for the cloud, xxh128 by hash-wasm on the copy and again on its read-back) and
// one memory copy. bench/usb.ts prints it beside its figures, since under TCG the CPU, not the bus, bounds
// a verified copy.
// Its own process, apart from the bare read loop it used to follow: V8 under TCG has died with a fatal
// error while tiering up hash-wasm's WebAssembly (Runtime_WasmTriggerTierUp walking the stack into
// GcSafeFindCodeForInnerPointer), and that took the bus-limit reference down with it. Run it with
// --no-wasm-dynamic-tiering, which compiles the module once with the optimising compiler so that no
// tier-up happens while it runs (the rate is then the optimised code's, as in a long ingest).
// Run:  node --no-wasm-dynamic-tiering bench/cpu-rates.ts   Prints "cpu-rates sha256=MB/s xxh128=MB/s copy=MB/s".
import { createHash } from 'node:crypto';
import { createXXHash128 } from 'hash-wasm';

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
