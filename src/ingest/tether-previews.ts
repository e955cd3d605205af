/**
 * Previews of a tethering session's shots, made from the bytes as they stream from the camera, for
 * `shuttle tether` and the daemon's tether sessions alike. A shot shows one preview, the first its files
 * can give: a RAW's embedded JPEG when the RAW has one within its first bytes (a smaller picture than
 * the shot's own JPEG, so decoded in a fraction of the time), else the JPEG's. A file the stream gave
 * nothing for gets its preview from the verified copy, never from a second read of the camera.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log.js';
import { jpegSize } from './embedded-preview.js';
import type { FileOutcome, FileReading, ReadTap } from './pipeline.js';
import { jpegPreviewSource, PreviewBytes, previewKind, previewPathFor, renderPreview, writePreview } from './preview.js';

/** A preview written under the state folder, and when (performance.now()). */
export interface MadePreview {
  path: string;
  at: number;
}

export interface TetherPreviewsOptions {
  stateDir: string;
  longEdge: number;
  logger: Logger;
  /** A shot's preview was written, made of the file at `name` (a source path): once per shot. */
  onPreview?: (name: string, made: MadePreview) => void;
}

interface Candidate {
  /** The source path of the file it came from. */
  path: string;
  rel: string;
  jpeg: Buffer;
  /** The RAW's orientation, for a JPEG it embeds. */
  orientation: number | undefined;
}

interface Shot {
  made: MadePreview | undefined;
  /** Renders run one after the other: a second one starts only if the first gave nothing. */
  rendering: Promise<void>;
  /** A JPEG's bytes kept back while a RAW of the shot may still give its embedded preview. */
  held: Candidate | undefined;
  /** A RAW's embedded JPEG smaller than the preview's size, kept in case the shot's JPEG gives none. */
  spare: Candidate | undefined;
  /** The shot has a JPEG of its own. */
  hasJpeg: boolean;
  /** A RAW of the shot gave the preview's picture: its JPEG's bytes are not kept. */
  fromRaw: boolean;
  /** The shot's RAWs whose streams have not told yet whether they embed a preview. */
  rawsOpen: Set<string>;
  /** By member: resolves once its stream's bytes were dealt with (rendered, held or found empty). */
  streamed: Map<string, Promise<void>>;
}

/** Shots kept at hand, by each of their files' source paths: the last ones read, for their verified files. */
const KEPT_PATHS = 64;

export class TetherPreviews {
  readonly #o: TetherPreviewsOptions;
  readonly #shots = new Map<string, Shot>();

  constructor(o: TetherPreviewsOptions) {
    this.#o = o;
  }

  /** The pipeline's onRead: a tap that keeps the bytes a preview is made of, for a file that can have one. */
  readonly onRead = (r: FileReading): ReadTap | undefined => {
    const shot = this.#shotOf(r);
    // A tethered RAW is read before its JPEG (readOrder): once its embedded picture is the shot's, holding
    // the JPEG whole (megabytes, copied chunk by chunk) is for nothing; should that picture not decode, the
    // verified JPEG gives the preview.
    if (shot.fromRaw && previewKind(r.path) === 'jpeg') return undefined;
    const bytes = PreviewBytes.forFile(r.path, r.size);
    if (bytes === undefined) return undefined;
    shot.streamed.set(
      r.path,
      bytes.jpeg.then((jpeg) => this.#offer(shot, r, jpeg, bytes.orientation)),
    );
    return bytes;
  };

  /**
   * The preview to show with a file now verified (or failed): its shot's, once the streams that could
   * give it have; else one made from the verified copy. Undefined when there is none.
   */
  async forFile(f: FileOutcome): Promise<MadePreview | undefined> {
    const shot = this.#shots.get(f.path);
    if (f.state === 'failed') {
      if (shot?.held?.path === f.path) shot.held = undefined;
      return undefined;
    }
    if (shot) {
      await shot.streamed.get(f.path);
      // A RAW of the shot being read tells soon (its embedded preview is near its start); one not being
      // read yet may never be (already copied): the JPEG waits for no more than the first.
      await Promise.all([...shot.rawsOpen].map((p) => shot.streamed.get(p)));
      this.#release(shot, true);
      await shot.rendering;
      if (shot.made) return shot.made;
    }
    const first = f.copies[0];
    if (first === undefined) return undefined;
    const target = previewPathFor(this.#o.stateDir, first.rel);
    try {
      if (!(await writePreview(join(first.root, first.rel), target, this.#o.longEdge))) return undefined;
    } catch (err) {
      this.#o.logger.warn({ err, path: f.path }, 'no preview');
      return undefined;
    }
    const made = { path: target, at: performance.now() };
    if (shot && shot.made === undefined) shot.made = made;
    this.#o.onPreview?.(f.path, made);
    return made;
  }

  #shotOf(r: FileReading): Shot {
    // A member seen before makes it the same shot: a camera that hands over a shot's files one at a time
    // (Sony's memory) lists the JPEG only once the RAW was read, when the RAW's preview may be shown already.
    const known = [r.path, ...r.shot].map((p) => this.#shots.get(p)).find((s) => s !== undefined);
    if (known) {
      for (const p of r.shot) this.#shots.set(p, known);
      return known;
    }
    const shot: Shot = {
      made: undefined,
      rendering: Promise.resolve(),
      held: undefined,
      spare: undefined,
      hasJpeg: r.shot.some((p) => previewKind(p) === 'jpeg'),
      fromRaw: false,
      rawsOpen: new Set(r.shot.filter((p) => p !== r.path && previewKind(p) === 'raw')),
      streamed: new Map(),
    };
    for (const p of r.shot) {
      this.#shots.delete(p);
      this.#shots.set(p, shot);
    }
    while (this.#shots.size > KEPT_PATHS) this.#shots.delete(this.#shots.keys().next().value!);
    return shot;
  }

  /** One file's stream has given its JPEG (or nothing): render it, keep it back, or let a held one go. */
  async #offer(shot: Shot, r: FileReading, jpeg: Buffer | undefined, orientation: number | undefined): Promise<void> {
    const kind = previewKind(r.path);
    const picture = jpeg !== undefined && kind === 'jpeg' ? jpegPreviewSource(jpeg, this.#o.longEdge) : { jpeg, orientation };
    const candidate = picture.jpeg === undefined ? undefined : { path: r.path, rel: r.rel, jpeg: picture.jpeg, orientation: picture.orientation };
    if (kind === 'raw' && candidate !== undefined && shot.hasJpeg && !this.#fills(candidate.jpeg)) {
      // A thumbnail does not stand in for the shot's own JPEG: kept only in case that one gives none.
      shot.spare = candidate;
      shot.rawsOpen.delete(r.path);
      return this.#release(shot);
    }
    shot.rawsOpen.delete(r.path);
    if (candidate === undefined || shot.made !== undefined) return this.#release(shot);
    if (kind === 'jpeg' && shot.rawsOpen.size > 0) {
      // The shot's RAW is read next and its embedded preview is near its start: it is decoded sooner.
      shot.held = candidate;
      return;
    }
    if (kind === 'raw') shot.fromRaw = true;
    this.#render(shot, candidate);
    await shot.rendering;
    this.#release(shot);
  }

  /** Whether an embedded JPEG is as large as the preview (its frame header says). */
  #fills(jpeg: Buffer): boolean {
    const size = jpegSize(jpeg);
    return size !== undefined && Math.max(size.width, size.height) >= this.#o.longEdge;
  }

  /** Renders a held JPEG once no RAW can give the shot's preview first (or, `now`, at once); drops it once the shot has one. */
  #release(shot: Shot, now = false): void {
    const held = shot.held;
    if (held === undefined || (shot.rawsOpen.size > 0 && shot.made === undefined && !now)) return;
    shot.held = undefined;
    if (shot.made === undefined) this.#render(shot, held);
  }

  #render(shot: Shot, c: Candidate): void {
    shot.rendering = shot.rendering.then(async () => {
      for (let next: Candidate | undefined = c; next !== undefined && shot.made === undefined; next = shot.spare) {
        if (next === shot.spare) shot.spare = undefined;
        const target = previewPathFor(this.#o.stateDir, next.rel);
        try {
          await renderPreview(next.jpeg, target, this.#o.longEdge, next.orientation);
        } catch (err) {
          this.#o.logger.warn({ err, path: next.path }, 'no preview: the JPEG read from the camera does not decode');
          continue;
        }
        shot.made = { path: target, at: performance.now() };
        this.#o.onPreview?.(next.path, shot.made);
      }
    });
  }
}
