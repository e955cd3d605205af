import { join, relative } from 'node:path';
import { previewPathFor, writePreview } from '../ingest/preview.js';
import type { FileOutcome } from '../ingest/pipeline.js';
import type { MadePreview } from '../ingest/tether-previews.js';
import type { Logger } from '../log.js';
import type { EventHub } from './events.js';

/**
 * Previews of the daemon's verified shots for the dashboard's contact sheet (src/ingest/preview.ts: from
 * the verified copy at a destination, never a second read of the source, under the state folder); a
 * tethering session's come made of the streamed bytes (src/ingest/tether-previews.ts). One at a time, behind the ingest: a preview is a nicety and must not
 * take the CPU the copies and their hashes need; when shots arrive faster than previews are made, the
 * oldest waiting ones are dropped (the newest matter on a contact sheet). Each preview gets a thumbnail
 * too, for the sheet's tiles: a page of 60 tiles must not load 60 full-size previews.
 */

/** The API's address of a file's preview; `thumb` for the small one. */
export function previewUrl(fileId: number, size: 'full' | 'thumb' = 'full'): string {
  return `/api/v1/files/${fileId}/preview${size === 'thumb' ? '?size=thumb' : ''}`;
}

/**
 * Longer side of a thumbnail: a tile is about 160 CSS pixels wide, twice that for a screen with two
 * device pixels to one CSS pixel (phones, most laptops).
 */
export const THUMB_LONG_EDGE = 320;

/** Where the thumbnail of a preview goes: the same path below `<stateDir>/thumbnails` as the preview's below `previews`. */
export function thumbnailPathFor(stateDir: string, preview: string): string {
  return join(stateDir, 'thumbnails', relative(join(stateDir, 'previews'), preview));
}

/** Makes the thumbnail of a preview (scaled from the preview, not from the shot: a small image to decode). */
export async function writeThumbnail(stateDir: string, preview: string): Promise<string> {
  const target = thumbnailPathFor(stateDir, preview);
  await writePreview(preview, target, THUMB_LONG_EDGE);
  return target;
}

const MAX_WAITING = 500;

interface Wanted {
  job: number;
  file: FileOutcome;
  done: (preview: string | undefined) => void;
}

export class PreviewMaker {
  readonly #waiting: Wanted[] = [];
  #running: Promise<void> | undefined;
  #closed = false;

  constructor(private readonly o: { stateDir: string; longEdge: number; hub: EventHub; logger: Logger }) {}

  /**
   * Queues a verified file; its `preview.ready` event follows once the preview is written. Resolves with
   * the preview's path, or undefined when none is made (not an image, dropped, closed). `streamed`: the
   * preview a tethering session made of the file, taken instead of making one.
   */
  add(job: number, file: FileOutcome, streamed?: Promise<MadePreview | undefined>): Promise<string | undefined> {
    if (this.#closed || file.state !== 'verified' || file.copies.length === 0) return Promise.resolve(undefined);
    if (streamed !== undefined) return this.#adopt(job, file, streamed);
    let done!: (preview: string | undefined) => void;
    const made = new Promise<string | undefined>((resolve) => (done = resolve));
    this.#waiting.push({ job, file, done });
    if (this.#waiting.length > MAX_WAITING) {
      const dropped = this.#waiting.shift()!;
      this.o.logger.debug({ path: dropped.file.path }, 'preview skipped: too many waiting');
      dropped.done(undefined);
    }
    this.#running ??= this.#drain().finally(() => (this.#running = undefined));
    return made;
  }

  /**
   * A preview a tethering session made (of the streamed bytes, else of the verified copy): not queued
   * behind the others, since the photographer is waiting for it; its thumbnail and event follow.
   */
  async #adopt(job: number, file: FileOutcome, made: Promise<MadePreview | undefined>): Promise<string | undefined> {
    const preview = (await made)?.path;
    if (preview === undefined || this.#closed) return undefined;
    await writeThumbnail(this.o.stateDir, preview).catch((err: unknown) => this.o.logger.warn({ err, path: file.path }, 'no thumbnail'));
    if (this.#closed) return undefined;
    this.o.hub.publish({ type: 'preview.ready', job, fileId: file.fileId, path: file.path, preview, url: previewUrl(file.fileId) });
    return preview;
  }

  /** Stops after the preview being made; the waiting ones are dropped. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const w of this.#waiting.splice(0)) w.done(undefined);
    await this.#running;
  }

  async #drain(): Promise<void> {
    for (let w = this.#waiting.shift(); w !== undefined && !this.#closed; w = this.#waiting.shift()) {
      const first = w.file.copies[0]!;
      const target = previewPathFor(this.o.stateDir, first.rel);
      let made = false;
      try {
        made = await writePreview(join(first.root, first.rel), target, this.o.longEdge);
      } catch (err) {
        this.o.logger.warn({ err, path: w.file.path }, 'no preview');
      }
      // Without one, the API makes the thumbnail when it is first asked for.
      if (made) await writeThumbnail(this.o.stateDir, target).catch((err: unknown) => this.o.logger.warn({ err, path: w.file.path }, 'no thumbnail'));
      if (made && !this.#closed)
        this.o.hub.publish({ type: 'preview.ready', job: w.job, fileId: w.file.fileId, path: w.file.path, preview: target, url: previewUrl(w.file.fileId) });
      w.done(made ? target : undefined);
    }
  }
}
