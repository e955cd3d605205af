import { createHash } from 'node:crypto';
import { mkdir, open, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { errnoCode, ShuttleError, throwIfAborted } from '../errors.js';
import { garbleExif, jpegWithExif, rawTiffHead, wavHeader, xmpSidecar, type ShotExif } from './content.js';
import { cr3Head } from './cr3.js';
import { Prng } from './prng.js';

export interface SampleCamera {
  make: string;
  model: string;
  serial: string;
  lens: string;
}

export interface SampleCardOptions {
  /** Shots (JPEG + CR2 pairs); default 6. */
  count?: number;
  /** Shots per DCIM folder before the camera opens the next one and restarts at IMG_0001; default half of count, rounded up. */
  perFolder?: number;
  /** Bytes of each RAW (a real TIFF with EXIF, or a CR3 head, then pseudo-random bytes); default 256 KiB, never less than the head itself. */
  rawSize?: number;
  /** RAW flavour: 'CR2' (TIFF-based, default) or 'CR3' (ISO BMFF with Canon's CMT boxes). */
  rawFormat?: 'CR2' | 'CR3';
  /** Bytes of each JPEG (padded after its EOI marker); default 0 = the encoder's size, a few KiB. */
  jpegSize?: number;
  /** Seed of all content; the same seed and options give the same bytes. Default 1. */
  seed?: number;
  /** XMP sidecars on some shots (`IMG_0001.XMP` and darktable-style `IMG_0003.CR2.xmp`); default true. */
  sidecars?: boolean;
  /** A WAV voice memo beside the first shot; default true. */
  voiceMemo?: boolean;
  /** The last N shots' JPEGs get garbage inside their EXIF segment; default 0. */
  brokenExif?: number;
  /** Folder and file names with accents and CJK, one of them in NFD; default false. */
  unicodeNames?: boolean;
  /** A 0-byte file in MISC/; default false. */
  emptyFile?: boolean;
  /** Names with characters FAT forbids, control characters, trailing dots, Shuttle's reserved names (where this filesystem allows them); default false. */
  hostileNames?: boolean;
  /** Camera clock of the first shot, EXIF style; default '2024:05:06 10:00:00'. Shots are 37 s apart. */
  start?: string;
  /** OffsetTimeOriginal written with every shot; null writes none (file times then take the clock as UTC). Default '+02:00'. */
  offsetTime?: string | null;
  camera?: Partial<SampleCamera>;
  signal?: AbortSignal;
}

export interface SampleFile {
  /** '/'-separated, relative to the card root. */
  path: string;
  size: number;
  sha256: string;
  mtimeMs: number;
  /** DateTimeOriginal written into the file, when it has EXIF. */
  exifDate?: string;
  /** True when the file's EXIF was deliberately garbled. */
  brokenExif?: boolean;
}

export interface SampleCard {
  /** Every file written, sorted by path. */
  files: SampleFile[];
  /** Hostile names this filesystem refused (so they are absent from `files`). */
  skippedNames: string[];
}

export const DEFAULT_SAMPLE_CAMERA: SampleCamera = {
  make: 'Canon',
  model: 'Canon EOS R5',
  serial: '032021001234',
  lens: 'RF24-70mm F2.8 L IS USM',
};

const SHOT_INTERVAL_MS = 37_000;
const CHUNK_BYTES = 1 << 20;

interface FileSpec {
  path: string;
  head: Buffer;
  /** Total size; the bytes after `head` are pseudo-random. */
  size: number;
  prng: Prng;
  mtimeMs: number;
  exifDate?: string;
  brokenExif?: boolean;
  /** A name that exists to test sanitizing: the filesystem may refuse it. */
  hostile?: boolean;
}

function nonNegativeInt(name: string, v: number | undefined, dflt: number, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 0 || v > max) {
    throw new ShuttleError('USAGE', `sample card option ${name} must be an integer from 0 to ${max}, got ${v}`, { context: { option: name, value: v } });
  }
  return v;
}

function parseWall(s: string): number {
  const m = /^(\d{4}):(\d{2}):(\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(s);
  if (m === null) throw new ShuttleError('USAGE', `sample card start must look like "2024:05:06 10:00:00", got "${s}"`, { context: { start: s } });
  const [y, mo, d, h, mi, se] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  return Date.UTC(y, mo - 1, d, h, mi, se);
}

function formatWall(ms: number): string {
  const d = new Date(ms);
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${p(d.getUTCFullYear(), 4)}:${p(d.getUTCMonth() + 1)}:${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
}

function offsetMinutes(offset: string | null): number {
  if (offset === null) return 0;
  const m = /^([+-])(\d{2}):(\d{2})$/.exec(offset);
  if (m === null) throw new ShuttleError('USAGE', `sample card offsetTime must look like "+02:00", got "${offset}"`, { context: { offsetTime: offset } });
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
}

/** Writes one file: its head, then pseudo-random bytes in reused chunks, hashing as it goes. */
async function writeSpec(root: string, spec: FileSpec, chunk: Buffer, signal: AbortSignal | undefined): Promise<SampleFile> {
  const abs = join(root, ...spec.path.split('/'));
  await mkdir(dirname(abs), { recursive: true });
  const hash = createHash('sha256');
  const fh = await open(abs, 'w');
  try {
    const head = spec.head.length > spec.size ? spec.head.subarray(0, spec.size) : spec.head;
    hash.update(head);
    if (head.length > 0) await fh.write(head);
    let left = spec.size - head.length;
    while (left > 0) {
      throwIfAborted(signal);
      const part = left >= chunk.length ? chunk : chunk.subarray(0, left);
      spec.prng.fill(part);
      hash.update(part);
      await fh.write(part);
      left -= part.length;
    }
  } finally {
    await fh.close();
  }
  await utimes(abs, spec.mtimeMs / 1000, spec.mtimeMs / 1000);
  const file: SampleFile = { path: spec.path, size: spec.size, sha256: hash.digest('hex'), mtimeMs: spec.mtimeMs };
  if (spec.exifDate !== undefined) file.exifDate = spec.exifDate;
  if (spec.brokenExif === true) file.brokenExif = true;
  return file;
}

/** Errors a filesystem gives for a name it cannot store (exFAT/FAT/NTFS mounts, or too long). */
const NAME_REFUSED = new Set(['EINVAL', 'EILSEQ', 'ENAMETOOLONG', 'EPERM', 'EACCES', 'ENOENT', 'EEXIST', 'EISDIR']);

const HOSTILE_NAMES = [
  'a:b*c?.JPG',
  '<angle>|pipe".JPG',
  'back\\slash.JPG',
  'ctrl\u0001char.JPG',
  'trailing dot.',
  'trailing space ',
  'ascmhl',
  'IMG_9999.JPG.shuttle-tmp',
  'CON.JPG',
  `${'é'.repeat(125)}.JPG`, // 254 bytes: at the limit, in 2-byte characters
  'Cafe\u0301.JPG', // NFD; its NFC twin below collides with it once normalized
  'Caf\u00e9.JPG',
];

/**
 * Writes a camera-card-like tree under `dir` (which may exist): DCIM/100CANON with IMG_nnnn.JPG +
 * IMG_nnnn.CR2 (or .CR3) pairs, DCIM/101CANON restarting at IMG_0001 with different content, XMP sidecars,
 * a WAV voice memo, MISC/AUTPRINT.MRK, and optionally unicode, empty, hostile and broken-EXIF files.
 * Content is deterministic for a seed; big files are streamed in 1 MiB chunks, never held whole.
 * File times are set to the capture instants.
 */
export async function makeSampleCard(dir: string, options: SampleCardOptions = {}): Promise<SampleCard> {
  const { signal } = options;
  throwIfAborted(signal);
  const count = nonNegativeInt('count', options.count, 6, 100_000);
  if (count < 1) throw new ShuttleError('USAGE', 'sample card option count must be at least 1', { context: { option: 'count', value: count } });
  const perFolder = nonNegativeInt('perFolder', options.perFolder, Math.ceil(count / 2), 9999) || 1;
  if (Math.ceil(count / perFolder) > 900) {
    throw new ShuttleError('USAGE', `sample card needs ${Math.ceil(count / perFolder)} DCIM folders; cameras stop at 999CANON`, { context: { count, perFolder } });
  }
  const rawSize = nonNegativeInt('rawSize', options.rawSize, 256 * 1024);
  const jpegSize = nonNegativeInt('jpegSize', options.jpegSize, 0);
  const seed = nonNegativeInt('seed', options.seed, 1, 0xffff_ffff);
  const rawFormat = options.rawFormat ?? 'CR2';
  if (rawFormat !== 'CR2' && rawFormat !== 'CR3') {
    throw new ShuttleError('USAGE', `sample card rawFormat must be CR2 or CR3, got ${String(rawFormat)}`, { context: { option: 'rawFormat', value: rawFormat } });
  }
  const brokenExif = nonNegativeInt('brokenExif', options.brokenExif, 0, count);
  const offsetTime = options.offsetTime === undefined ? '+02:00' : options.offsetTime;
  const offsetMs = offsetMinutes(offsetTime) * 60_000;
  const startWall = parseWall(options.start ?? '2024:05:06 10:00:00');
  const camera: SampleCamera = { ...DEFAULT_SAMPLE_CAMERA, ...options.camera };

  const chunk = Buffer.allocUnsafeSlow(CHUNK_BYTES);
  const files: SampleFile[] = [];
  const skippedNames: string[] = [];
  const emit = async (spec: FileSpec): Promise<void> => {
    throwIfAborted(signal);
    try {
      files.push(await writeSpec(dir, spec, chunk, signal));
    } catch (err) {
      const code = errnoCode(err);
      if (spec.hostile === true && code !== undefined && NAME_REFUSED.has(code)) {
        skippedNames.push(spec.path);
        return;
      }
      throw new ShuttleError('DEST_WRITE_FAILED', `cannot write sample file ${spec.path}: ${(err as Error).message}`, { cause: err, context: { path: spec.path } });
    }
  };
  const exifFor = (wallMs: number): ShotExif => ({
    make: camera.make,
    model: camera.model,
    serial: camera.serial,
    lens: camera.lens,
    dateTimeOriginal: formatWall(wallMs),
    offsetTimeOriginal: offsetTime ?? undefined,
  });
  const small = (path: string, content: Buffer, mtimeMs: number, extra: Partial<FileSpec> = {}): FileSpec => ({
    path,
    head: content,
    size: content.length,
    prng: Prng.from(seed, path),
    mtimeMs,
    ...extra,
  });

  for (let k = 0; k < count; k++) {
    const folder = `DCIM/${100 + Math.floor(k / perFolder)}CANON`;
    const stem = `IMG_${String((k % perFolder) + 1).padStart(4, '0')}`;
    const wallMs = startWall + k * SHOT_INTERVAL_MS;
    const mtimeMs = wallMs - offsetMs;
    const exif = exifFor(wallMs);

    const jpegPath = `${folder}/${stem}.JPG`;
    const jpegPrng = Prng.from(seed, jpegPath);
    const jpeg = await jpegWithExif(jpegPrng, exif);
    const broken = k >= count - brokenExif && garbleExif(jpeg, jpegPrng);
    await emit({ path: jpegPath, head: jpeg, size: Math.max(jpegSize, jpeg.length), prng: jpegPrng, mtimeMs, exifDate: exif.dateTimeOriginal, brokenExif: broken });

    const rawPath = `${folder}/${stem}.${rawFormat}`;
    const rawPrng = Prng.from(seed, rawPath);
    const raw = rawFormat === 'CR3' ? cr3Head(exif, rawSize) : await rawTiffHead(rawPrng, exif);
    await emit({ path: rawPath, head: raw, size: Math.max(rawSize, raw.length), prng: rawPrng, mtimeMs, exifDate: exif.dateTimeOriginal });

    if (options.sidecars ?? true) {
      // Lightroom names a sidecar after the shot, darktable after the RAW file.
      if (k % 4 === 0) await emit(small(`${folder}/${stem}.XMP`, xmpSidecar(exif, k % 6), mtimeMs + 60_000));
      if (k % 4 === 2) await emit(small(`${folder}/${stem}.${rawFormat}.xmp`, xmpSidecar(exif, k % 6), mtimeMs + 60_000));
    }
    if (k === 0 && (options.voiceMemo ?? true)) {
      const path = `${folder}/${stem}.WAV`;
      const prng = Prng.from(seed, path);
      await emit({ path, head: wavHeader(16_000), size: 44 + 16_000, prng, mtimeMs: mtimeMs + 5_000 });
    }
  }

  const lastMtime = startWall - offsetMs + (count - 1) * SHOT_INTERVAL_MS;
  const dpof = `[HDR]\r\nGEN REV = 01.10\r\nGEN CRT = "${camera.model}" -01.00\r\nGEN DTM = ${formatWall(startWall).replace(' ', ':')}\r\n`;
  await emit(small('MISC/AUTPRINT.MRK', Buffer.from(dpof, 'latin1'), lastMtime));

  if (options.unicodeNames === true) {
    const wallMs = startWall + count * SHOT_INTERVAL_MS;
    const path = 'MISC/Été – 日本/Café_0001.JPG';
    const prng = Prng.from(seed, path);
    const jpeg = await jpegWithExif(prng, exifFor(wallMs));
    await emit({ path, head: jpeg, size: jpeg.length, prng, mtimeMs: wallMs - offsetMs, exifDate: formatWall(wallMs) });
    await emit(small('MISC/Re\u0301sume\u0301 – メモ.txt', Buffer.from('notes from the shoot\n', 'utf8'), lastMtime));
  }
  if (options.emptyFile === true) await emit(small('MISC/EMPTY.DAT', Buffer.alloc(0), lastMtime));
  if (options.hostileNames === true) {
    for (const name of HOSTILE_NAMES) {
      await emit(small(`MISC/HOSTILE/${name}`, Buffer.from(`hostile name ${JSON.stringify(name)}\n`, 'utf8'), lastMtime, { hostile: true }));
    }
  }

  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { files, skippedNames };
}
