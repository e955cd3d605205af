import { Command, InvalidArgumentError, Option } from 'commander';
import { resolve } from 'node:path';

const UNITS: Record<string, number> = { '': 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3, kb: 1e3, mb: 1e6, gb: 1e9 };

/** "25000000", "25MB" (decimal), "24M" or "24MiB" (binary). */
export function parseByteSize(text: string): number {
  const m = /^\s*(\d+)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m === null ? undefined : UNITS[m[2]!.toLowerCase()];
  const n = m === null || unit === undefined ? NaN : Number(m[1]) * unit;
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`expected a byte count such as 25000000, 25MB or 24MiB, got "${text}"`);
  return n;
}

function parseCount(text: string): number {
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`expected a whole number, got "${text}"`);
  return n;
}

function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

interface SampleCliOptions {
  count?: number;
  rawSize?: number;
  rawFormat?: 'CR2' | 'CR3';
  jpegSize?: number;
  seed?: number;
  brokenExif?: number;
  unicode?: boolean;
  hostile?: boolean;
  empty?: boolean;
}

/** `shuttle sample DIR`: writes a camera-card-like tree to try ingest on (README demo, benchmark). */
export function sampleCardCommand(write: (text: string) => void = (t) => void process.stdout.write(t)): Command {
  return new Command('sample')
    .description('write a realistic sample camera card (JPEG+CR2 pairs with EXIF, repeated names, sidecars) into DIR')
    .argument('<dir>', 'folder to write the card into (created if missing)')
    .option('--count <n>', 'number of shots (JPEG + CR2 pairs)', parseCount)
    .option('--raw-size <bytes>', 'size of each CR2, e.g. 25MB (default 256KiB)', parseByteSize)
    .addOption(new Option('--raw-format <format>', 'RAW flavour').choices(['CR2', 'CR3']).default('CR2'))
    .option('--jpeg-size <bytes>', 'size of each JPEG, e.g. 8MB (default: as encoded, a few KiB)', parseByteSize)
    .option('--seed <n>', 'seed of all content: same seed, same bytes', parseCount)
    .option('--broken-exif <n>', 'garble the EXIF of the last N JPEGs', parseCount)
    .option('--unicode', 'add folder and file names with accents and CJK')
    .option('--hostile', 'add names that FAT/exFAT cannot store or that Shuttle reserves')
    .option('--empty', 'add a 0-byte file')
    .action(async (dir: string, opts: SampleCliOptions) => {
      const root = resolve(dir);
      const started = performance.now();
      // Loaded on use: the generator pulls in sharp (libvips), which no other command needs.
      const { makeSampleCard } = await import('../sample/card.js');
      const card = await makeSampleCard(root, {
        count: opts.count,
        rawSize: opts.rawSize,
        rawFormat: opts.rawFormat,
        jpegSize: opts.jpegSize,
        seed: opts.seed,
        brokenExif: opts.brokenExif,
        unicodeNames: opts.unicode === true,
        hostileNames: opts.hostile === true,
        emptyFile: opts.empty === true,
      });
      const bytes = card.files.reduce((sum, f) => sum + f.size, 0);
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      const skipped = card.skippedNames.length > 0 ? `, ${card.skippedNames.length} hostile names refused by the filesystem` : '';
      write(`sample card: ${card.files.length} files, ${humanBytes(bytes)} in ${root} (seed ${opts.seed ?? 1}, ${seconds} s${skipped})\n`);
    });
}
