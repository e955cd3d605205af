// Guest-side timestamps for the tethering suite and benchmark over usb-mtp, printed on the console as
// "HIL:stamp NAME EPOCH_MS TEXT" lines (the guest's clock; the host maps it onto its own with `clock`).
//   node stamp.mjs lines NAME FILE         each line of stdin, also appended to FILE
//   node stamp.mjs watch NAME DIR SIZES    each file in DIR (not below) once it has reached the size the JSON
//                                          map SIZES (file name -> bytes) gives for it; the stamp's text is the name
//   node stamp.mjs clock COUNT             COUNT lines "HIL:clock EPOCH_MS MONOTONIC_MS" 50 ms apart, for the host to
//                                          estimate the clock offset (the monotonic clock is usbmon's)
// Plain JavaScript: it starts in about a second under TCG, and nothing here needs the project's code.
import { appendFileSync, readFileSync, statSync, watch } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const [mode, name, a, b] = process.argv.slice(2);
const stamp = (text) => process.stdout.write(`HIL:stamp ${name} ${Date.now()} ${text}\n`);

if (mode === 'lines') {
  createInterface({ input: process.stdin }).on('line', (line) => {
    stamp(line);
    appendFileSync(a, `${line}\n`);
  });
} else if (mode === 'watch') {
  const sizes = new Map(Object.entries(JSON.parse(readFileSync(b, 'utf8'))));
  const done = new Set();
  // inotify through fs.watch: a file is stamped at the first event that finds it whole (a tool that writes
  // in place fires one event per write; one that renames a temp file into place, one for the rename).
  const check = (file) => {
    if (!file || done.has(file) || !sizes.has(file)) return;
    let size;
    try {
      size = statSync(join(a, file)).size;
    } catch {
      return;
    }
    if (size !== sizes.get(file)) return;
    done.add(file);
    stamp(file);
  };
  watch(a, (_event, file) => check(file));
  process.stdout.write(`HIL:stamp ${name} ${Date.now()} watching\n`);
} else if (mode === 'clock') {
  let left = Number(name);
  const tick = () => {
    process.stdout.write(`HIL:clock ${Date.now()} ${(Number(process.hrtime.bigint()) / 1e6).toFixed(3)}\n`);
    if (--left > 0) setTimeout(tick, 50);
  };
  tick();
} else {
  throw new Error(`stamp.mjs: unknown mode ${mode}`);
}
