/**
 * Previews of tethered shots: a small JPEG per shot for the photographer's screen, kept in the state
 * folder, out of the library, since it can always be made again. Made from the bytes already in memory
 * as the file streams from the camera (PreviewBytes), else from the verified copy at a destination
 * (writePreview): never a second read of the camera.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { dirname, extname, join } from 'node:path';
import { ShuttleError } from '../errors.js';
import { tempPathFor } from '../io/durable.js';
import { EMBEDDED_PREVIEW_FORMATS, findEmbeddedPreview, jpegOrientation, jpegSize, mpfImages, plainJpegSize, type ByteRange } from './embedded-preview.js';

const JPEG = /^\.(jpe?g)$/i;

/**
 * Bytes one file's preview may hold in memory while the file streams: a JPEG up to this size is kept
 * whole, a RAW's first bytes up to this much are searched for its embedded preview. Beyond it the
 * preview is made from the verified copy instead.
 */
export const PREVIEW_HOLD_BYTES = 24 * 1024 * 1024;

/** What a file's preview is made of: the JPEG itself, a RAW's embedded JPEG, or nothing. */
export function previewKind(name: string): 'jpeg' | 'raw' | undefined {
  const ext = extname(name);
  if (JPEG.test(ext)) return 'jpeg';
  return EMBEDDED_PREVIEW_FORMATS.has(ext.slice(1).toLowerCase()) ? 'raw' : undefined;
}

/**
 * Where the preview of a copy at `rel` below a library goes: the same path below `<stateDir>/previews`,
 * a JPEG's as .jpg, any other file's with .jpg added (the RAW of a RAW+JPEG pair must not take the
 * JPEG's preview).
 */
export function previewPathFor(stateDir: string, rel: string): string {
  const safe = rel.split('/').filter((p) => p !== '' && p !== '.' && p !== '..');
  const last = safe.pop() ?? 'preview';
  const ext = extname(last);
  return join(stateDir, 'previews', ...safe, JPEG.test(ext) ? `${last.slice(0, last.length - ext.length)}.jpg` : `${last}.jpg`);
}

/**
 * The JPEG a preview is made of, gathered from a file's bytes as they are read from its source (each
 * chunk copied, since the source may reuse its buffer). A JPEG is held whole; a RAW's first bytes are
 * held only until its embedded preview has arrived, which is handed out then, before the rest of the
 * file. `jpeg` resolves with those bytes, or with undefined when the stream cannot give them (the file
 * or its preview lies beyond `maxBytes`, the RAW has none, the read ended early): the verified copy is
 * then the preview's source. Never more than `maxBytes` are held.
 */
export class PreviewBytes {
  readonly jpeg: Promise<Buffer | undefined>;
  /** A RAW's EXIF orientation, once its embedded JPEG is found (see findEmbeddedPreview). */
  orientation: number | undefined;
  #resolve!: (jpeg: Buffer | undefined) => void;
  #buf: Buffer | undefined;
  #have = 0;
  /** A RAW's search runs again once this many bytes are here. */
  #waitFor = 0;
  readonly #limit: number;

  /** A collector for a file of this name and size, or undefined when its kind has no preview to take. */
  static forFile(name: string, size: number, maxBytes: number = PREVIEW_HOLD_BYTES): PreviewBytes | undefined {
    const kind = previewKind(name);
    return kind === undefined ? undefined : new PreviewBytes(kind, size, maxBytes);
  }

  private constructor(
    private readonly kind: 'jpeg' | 'raw',
    private readonly size: number,
    maxBytes: number,
  ) {
    this.jpeg = new Promise((resolve) => (this.#resolve = resolve));
    this.#limit = Math.min(size, maxBytes);
    if (kind === 'jpeg' && size > maxBytes) this.#settle(undefined);
    else this.#buf = Buffer.allocUnsafe(kind === 'jpeg' ? size : Math.min(this.#limit, FIRST_HOLD));
  }

  /** Bytes held now. */
  get held(): number {
    return this.#buf?.length ?? 0;
  }

  /** The next bytes of the file. */
  chunk(data: Buffer): void {
    const buf = this.#buf;
    if (buf === undefined) return;
    const take = Math.min(data.length, this.#limit - this.#have);
    if (this.kind === 'jpeg' && take < data.length) return this.#settle(undefined);
    if (take <= 0) return;
    let into = buf;
    if (this.#have + take > buf.length) {
      into = Buffer.allocUnsafe(Math.min(this.#limit, Math.max(buf.length * 2, this.#have + take)));
      buf.copy(into, 0, 0, this.#have);
      this.#buf = into;
    }
    data.copy(into, this.#have, 0, take);
    this.#have += take;
    if (this.kind === 'raw' && this.#have >= this.#waitFor) this.#search();
  }

  /** The read is over: complete, or broken off with `error`. */
  end(error?: unknown): void {
    if (this.#buf === undefined) return;
    if (this.kind === 'jpeg' && error === undefined && this.#have === this.size) {
      const whole = this.#buf;
      this.#buf = undefined;
      this.#resolve(whole);
      return;
    }
    this.#settle(undefined);
  }

  #search(): void {
    const buf = this.#buf!;
    const have = this.#have;
    const r = findEmbeddedPreview((offset, length) => (offset + length <= have ? buf.subarray(offset, offset + length) : undefined), this.size, this.#limit);
    if ('none' in r) return this.#settle(undefined);
    const wanted: ByteRange = 'found' in r ? r.found : r.need;
    if (wanted.offset + wanted.length > have) {
      this.#waitFor = wanted.offset + wanted.length;
      return;
    }
    if ('found' in r) {
      this.orientation = r.orientation;
      this.#settle(Buffer.from(buf.subarray(r.found.offset, r.found.offset + r.found.length)));
    }
  }

  #settle(jpeg: Buffer | undefined): void {
    this.#buf = undefined;
    this.#resolve(jpeg);
  }
}

/** A RAW's first bytes held at once; more as they are needed, up to the cap. */
const FIRST_HOLD = 1024 * 1024;

type SharpFactory = typeof import('sharp').default;

let sharpLoaded: Promise<SharpFactory> | undefined;

/**
 * sharp, loaded with the first picture to decode: libvips and its threads are the largest part of the
 * idle daemon's memory that is not Node's own, and a daemon, ingest or command that makes no preview
 * never needs them. When it cannot load (a missing platform package, a CPU the prebuilt libvips cannot
 * run on) every preview fails with the reason; the process keeps running (Node keeps a module that failed
 * to load failed, so there is nothing to try again).
 */
function loadSharp(): Promise<SharpFactory> {
  sharpLoaded ??= (async () => {
    const cpu = sharpCpuProblem(readCpuinfo());
    // Loading it would not throw: libvips's code dies with SIGILL, taking the process with it.
    if (cpu !== undefined) throw new ShuttleError('INTERNAL', `previews are unavailable: ${cpu}`);
    try {
      return (await import('sharp')).default;
    } catch (cause) {
      const reason = cause instanceof Error ? cause.message.split('\n')[0] : String(cause);
      throw new ShuttleError('INTERNAL', `previews are unavailable: sharp (libvips) does not load: ${reason}`, { cause });
    }
  })();
  return sharpLoaded;
}

function readCpuinfo(): string | undefined {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Why sharp cannot run on the CPU that /proc/cpuinfo describes, or undefined: its prebuilt libvips for
 * x86-64 needs SSE4.2 (x86-64-v2). Only x86 lists "flags"; other architectures have nothing to check.
 */
export function sharpCpuProblem(cpuinfo: string | undefined): string | undefined {
  const flags = cpuinfo === undefined ? undefined : /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1]?.trim().split(/\s+/);
  if (flags === undefined || flags.includes('sse4_2')) return undefined;
  return 'this CPU lacks SSE4.2, which sharp (libvips) needs on x86-64';
}

/**
 * What turns a picture stored as EXIF orientation 2–8 says upright, in the order sharp applies them
 * (mirror first, then rotate clockwise).
 */
const UPRIGHT: Readonly<Record<number, { flop?: true; flip?: true; rotate?: number }>> = {
  2: { flop: true },
  3: { rotate: 180 },
  4: { flip: true },
  5: { flop: true, rotate: 270 },
  6: { rotate: 90 },
  7: { flop: true, rotate: 90 },
  8: { rotate: 270 },
};

/**
 * Writes a JPEG of `input` (a JPEG file's path, or JPEG bytes) turned upright and scaled to fit
 * `longEdge` on its longer side (never enlarged) at `target`, replacing an older one (readers see the old
 * or the new file whole, never part of one). Upright by `orientation` when given (a RAW's, for the JPEG
 * it embeds), else by the JPEG's own EXIF orientation. Tuned for speed: the decoder scales down while it
 * decodes (shrink-on-load), and the output skips the second pass that optimising its Huffman tables
 * would take. JPEG bytes already upright, without metadata and no more than AS_IS_MARGIN over `longEdge`
 * are written as they are (see previewAsIs).
 */
export async function renderPreview(input: string | Buffer, target: string, longEdge: number, orientation?: number): Promise<void> {
  if (typeof input !== 'string' && previewAsIs(input, longEdge, orientation)) return writeAtomically(target, input);
  const turn = orientation === undefined ? undefined : UPRIGHT[orientation];
  const sharp = await loadSharp();
  let img = sharp(input, { sequentialRead: true });
  if (orientation === undefined) img = img.rotate();
  else if (turn !== undefined)
    img = img
      .flop(turn.flop === true)
      .flip(turn.flip === true)
      .rotate(turn.rotate ?? 0);
  const data = await img
    .resize({ width: longEdge, height: longEdge, fit: 'inside', withoutEnlargement: true, fastShrinkOnLoad: true })
    .jpeg({ quality: 80, optimiseCoding: false })
    .toBuffer();
  writeAtomically(target, data);
}

/**
 * How far over the preview's long edge a picture may be and still be shown as it is: cameras embed
 * screen-sized previews a little over the common 1600 (Canon's CR3 1620, Sony's ARW 1616), and decoding,
 * scaling and encoding one again to lose those few pixels is most of the wait for the picture, for a
 * difference no screen shows.
 */
export const AS_IS_MARGIN = 1.02;

/**
 * Whether JPEG bytes can be the preview as they are: upright (`orientation` 1 or none, and no EXIF of their
 * own), carrying no metadata, whole, and no longer than `longEdge` (never enlarged anyway) or AS_IS_MARGIN
 * over it.
 */
export function previewAsIs(jpeg: Buffer, longEdge: number, orientation?: number): boolean {
  if (orientation !== undefined && orientation !== 1) return false;
  const size = plainJpegSize(jpeg);
  return size !== undefined && Math.max(size.width, size.height) <= Math.floor(longEdge * AS_IS_MARGIN);
}

/** Writes `data` at `target` so that readers see the old file or the new one whole. */
function writeAtomically(target: string, data: Buffer): void {
  // Not synced: a preview can always be made again, and an fsync here would wait on the copies' own
  // writes (one journal commit for the filesystem) just when the photographer waits for the picture.
  // Written from the event loop: a screen-sized file goes into the page cache at once, where the thread
  // pool would queue each of its steps behind the copies' writes of megabytes.
  mkdirSync(dirname(target), { recursive: true });
  const temp = tempPathFor(target);
  try {
    writeFileSync(temp, data, { flag: 'wx' });
    renameSync(temp, target);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
}

/**
 * What a JPEG's preview is made of: the smallest of the pictures it carries (itself, and the previews in
 * its MPF segment) that still fills `longEdge`, with the orientation to turn it by (the main image's
 * EXIF speaks for the previews appended to it; undefined: the picture's own).
 */
export function jpegPreviewSource(jpeg: Buffer, longEdge: number): { jpeg: Buffer; orientation: number | undefined } {
  const main = jpegSize(jpeg);
  let best: Buffer | undefined;
  let bestPixels = main === undefined ? 0 : main.width * main.height;
  for (const r of mpfImages(jpeg)) {
    const picture = jpeg.subarray(r.offset, r.offset + r.length);
    const size = jpegSize(picture);
    if (size === undefined || Math.max(size.width, size.height) < longEdge || size.width * size.height >= bestPixels) continue;
    best = picture;
    bestPixels = size.width * size.height;
  }
  return best === undefined ? { jpeg, orientation: undefined } : { jpeg: best, orientation: jpegOrientation(jpeg) ?? 1 };
}

/**
 * Writes the preview of the file at `source` (a verified copy) at `target`: a JPEG is scaled itself (or
 * the screen-sized preview it carries, see jpegPreviewSource); a
 * RAW gives the largest JPEG it embeds, read alone from the file. False when there is nothing to make a
 * preview of.
 */
export async function writePreview(source: string, target: string, longEdge: number): Promise<boolean> {
  const kind = previewKind(source);
  if (kind === undefined) return false;
  if (kind === 'jpeg') {
    const picture = jpegPreviewSource(await readFile(source), longEdge);
    await renderPreview(picture.jpeg, target, longEdge, picture.orientation);
    return true;
  }
  const embedded = await embeddedPreviewOf(source);
  if (embedded === undefined) return false;
  await renderPreview(embedded.jpeg, target, longEdge, embedded.orientation);
  return true;
}

/** Reads of a RAW's structure are at least this long, so that a few reads find its preview. */
const STRUCTURE_READ = 64 * 1024;

/** The JPEG a RAW file embeds (its largest) and the RAW's orientation, read without reading the rest of the file. */
async function embeddedPreviewOf(path: string): Promise<{ jpeg: Buffer; orientation: number | undefined } | undefined> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const loaded: Array<{ offset: number; data: Buffer }> = [];
    const load = async (offset: number, length: number): Promise<Buffer> => {
      const data = Buffer.allocUnsafe(length);
      const { bytesRead } = await fh.read(data, 0, length, offset);
      return data.subarray(0, bytesRead);
    };
    const read = (offset: number, length: number): Buffer | undefined => {
      const hit = loaded.find((l) => l.offset <= offset && offset + length <= l.offset + l.data.length);
      return hit?.data.subarray(offset - hit.offset, offset - hit.offset + length);
    };
    for (let reads = 0; reads < 64; reads++) {
      const r = findEmbeddedPreview(read, size);
      if ('none' in r) return undefined;
      if ('found' in r) return { jpeg: await load(r.found.offset, r.found.length), orientation: r.orientation };
      loaded.push({ offset: r.need.offset, data: await load(r.need.offset, Math.min(size - r.need.offset, Math.max(r.need.length, STRUCTURE_READ))) });
    }
    return undefined;
  } finally {
    await fh.close();
  }
}
