import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from '../log.js';
import { ShuttleError, isShuttleError } from '../errors.js';
import type { ItemState, Source, SourceIdentity } from '../device/source.js';
import type { WallClock } from '../time-zone.js';
import type { HashAlgorithm } from '../io/hashing.js';
import { IngestHasher } from '../io/hash-worker-client.js';
import { readCaptureMetadata, METADATA_HEAD_BYTES } from './metadata.js';
import { renderName } from './naming.js';
import { crashPoint } from './crash-points.js';
import { LENT_BLOCKS, STAGE_BLOCK, fanOut, readHead, joinHead, type ReadResult } from './copy.js';
import { DestinationWriter } from './destination-writer.js';
import type { PlannedFile } from './plan.js';
import type { IngestRun, IngestSettings, ReadTap } from './run.js';
import type { RunDestination } from './run-destination.js';

/** The source's chunks, each shown to `tap` as it is pulled; ending early ends the source's iteration as before. */
function tapped(iter: AsyncIterator<Buffer>, tap: ReadTap): AsyncIterator<Buffer> {
  return {
    next: async () => {
      const r = await iter.next();
      if (r.done !== true) tap.chunk(r.value);
      return r;
    },
    return: async (value?: unknown) => (await iter.return?.(value)) ?? { done: true, value: undefined },
  };
}

/** The source's chunks; `ended` is called once when the source says there are no more. */
function endingWith(iter: AsyncIterator<Buffer>, ended: () => void): AsyncIterator<Buffer> {
  return {
    next: async () => {
      const r = await iter.next();
      if (r.done === true) ended();
      return r;
    },
    return: async (value?: unknown) => (await iter.return?.(value)) ?? { done: true, value: undefined },
  };
}

/** Name fields a whole RAW+JPEG group shares, decided once from its best member. */
export interface GroupFields {
  /** Capture time on the camera's clock, which names folders. */
  local: WallClock;
  make?: string | undefined;
  model?: string | undefined;
  serial?: string | undefined;
}

/** A source file read once into a temp file at every live destination. */
export interface WrittenFile {
  pf: PlannedFile;
  read: ReadResult;
  writers: DestinationWriter[];
  fields: GroupFields;
}

/**
 * What a source read hashes: xxh128, which the read-back of every copy compares and the journal finds
 * content by, plus what the manifests record. SHA-256 and MD5 serve the cloud alone, and the upload
 * computes them from the verified copy (src/upload/content-hashes.ts).
 */
export function sourceAlgorithms(settings: Pick<IngestSettings, 'manifestHashes'>): HashAlgorithm[] {
  return [...new Set<HashAlgorithm>(['xxh128', ...settings.manifestHashes])];
}

/**
 * Groups whose name fields are kept at hand: a group's members come close together in a listing, and
 * the journal has the fields of every group published before.
 */
const RECENT_GROUPS = 256;

/** Reads one source's files, each once, into every destination that needs them. */
export class SourceReader {
  readonly #fields = new Map<string, GroupFields>();
  readonly #algorithms: readonly HashAlgorithm[];

  constructor(
    private readonly run: IngestRun,
    readonly source: Source,
    private readonly identity: SourceIdentity,
    readonly sourceId: number,
    private readonly log: Logger,
  ) {
    this.#algorithms = sourceAlgorithms(run.settings);
  }

  /**
   * Reads one source file once into a temp file at every live destination, its bytes hashed on the way.
   * Reads again if the file changes under the read. A destination that cannot take the file's temp is ended.
   * `sourceDone` is called (once) when the source has sent the file's last byte and been asked whether it
   * changed: the source is free for the next file while this one's writes and digest finish.
   */
  async copy(pf: PlannedFile, live: RunDestination[], sourceDone?: () => void): Promise<WrittenFile> {
    const { run, source } = this;
    const { journal, settings, signal, summary, logger } = run;
    let reported = false;
    /** The file changed under the plan: the next attempt reads the version there now, under its own journal row. */
    const follow = (now: ItemState | undefined, why: string): void => {
      if (!now) return;
      const item = { ...pf.item, size: now.size, mtimeMs: now.mtimeMs };
      journal.setFileState(pf.file.id, 'failed', why);
      pf.item = item;
      pf.file = journal.fileFor(this.sourceId, item.path, item.size, item.mtimeMs, item.pathBytes);
      summary.fileIds.push(pf.file.id);
    };
    const lent = source.lendsBlocks ? LENT_BLOCKS : 1;
    for (let attempt = 0; ; attempt++) {
      let stream: Readable;
      try {
        // fanOut keeps a chunk no longer than `lent` pulls (LENT_BLOCKS for chunks whose pages it writes
        // from where they are; one for chunks it copies out), and readHead copies what it keeps. A camera's
        // transport reuses a read buffer only once every slice of it is given back.
        stream = await source.open(pf.item, { signal, recycle: lent, chunkSize: STAGE_BLOCK });
      } catch (e) {
        // Not the file listed any more (another size or time, or now a link or a FIFO, never followed).
        if (!isShuttleError(e, 'SOURCE_CHANGED') || attempt >= settings.changeRetries) throw e;
        logger.warn({ path: pf.item.path, attempt, err: e }, 'source file changed since it was listed; trying again');
        follow(await source.stat(pf.item, signal), 'changed since listed');
        continue;
      }
      // Hashed in the hash worker (bar small files): this thread only moves the bytes.
      const hasher = new IngestHasher(this.#algorithms);
      const iter = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      const writers: DestinationWriter[] = [];
      let tap: ReadTap | undefined;
      // Asked as soon as the last byte is in (a camera answers it before the next file's GetObject).
      let stat: Promise<ItemState | undefined> | undefined;
      const ended = (): Promise<ItemState | undefined> => {
        if (stat) return stat;
        stat = source.stat(pf.item, signal);
        stat.catch(() => {});
        sourceDone?.();
        sourceDone = undefined;
        return stat;
      };
      try {
        const { head } = await readHead(iter, METADATA_HEAD_BYTES);
        const fields = await this.#groupFields(pf, joinHead(head), live[0]!.id);
        const rendered = renderName(settings.template, {
          name: posix.basename(pf.item.path),
          date: fields.local,
          make: fields.make,
          model: fields.model,
          serial: fields.serial,
          seq: pf.seq,
          shot: pf.shot,
          job: settings.job,
          client: settings.client,
          session: settings.session,
        });
        if (!reported) {
          reported = true;
          const renamed = [...(pf.item.pathBytes ? [{ from: pf.item.pathBytes.toString('utf8'), to: pf.item.path, reason: 'not-utf8' }] : []), ...rendered.renamed];
          for (const r of renamed) {
            summary.renamed.push(r);
            logger.info({ path: pf.item.path, from: r.from, to: r.to, reason: r.reason }, 'name sanitized');
          }
        }
        tap = run.request.onRead?.({ path: pf.item.path, size: pf.item.size, rel: rendered.path, shot: pf.group.members.map((m) => m.item.path) });
        for (const c of head) tap?.chunk(c);
        const of = { fileId: pf.file.id, item: pf.item, sourceId: this.sourceId, groupKey: pf.group.key };
        for (const d of live) {
          if (d.dead) continue;
          const opened = await DestinationWriter.open(run, d, rendered.path, of, this.log);
          if (opened instanceof DestinationWriter) writers.push(opened);
          else run.killDestination(d, opened.error);
        }
        await fanOut(
          { [Symbol.asyncIterator]: () => endingWith(tap === undefined ? iter : tapped(iter, tap), () => void ended()) },
          head,
          writers.map((w) => w.target),
          hasher,
          signal,
          lent,
        );
        // Done with every chunk: a camera's transport may read the next file into their memory.
        stream.destroy();
        // Before the hashes and the stat: a preview made of the bytes need not wait for them.
        tap?.end();
        tap = undefined;
        // The source was asked again (a round trip to a camera) while the writes and the digest finished.
        const [hashes, now] = await Promise.all([hasher.digest(), ended()]);
        const read: ReadResult = { size: hasher.bytes, hashes };
        crashPoint('written');
        const changed = read.size !== pf.item.size || (now !== undefined && (now.size !== pf.item.size || now.mtimeMs !== pf.item.mtimeMs));
        if (changed) {
          await Promise.all(writers.splice(0).map((w) => w.discard()));
          if (attempt >= settings.changeRetries) {
            throw new ShuttleError('SOURCE_CHANGED', `${pf.item.path} changed while it was read (planned ${pf.item.size} bytes, read ${read.size}, now ${now?.size ?? 'gone'})`, {
              context: { path: pf.item.path, planned: pf.item.size, read: read.size, now: now?.size },
            });
          }
          logger.warn({ path: pf.item.path, attempt }, 'source file changed while read; reading again');
          follow(now, 'changed while read');
          continue;
        }
        if (writers.length === 0) throw new ShuttleError('DEST_WRITE_FAILED', `no destination could take ${pf.item.path}`, { context: { path: pf.item.path } });
        return { pf, read, writers, fields };
      } catch (e) {
        tap?.end(e);
        await Promise.all(writers.map((w) => w.discard()));
        throw e;
      } finally {
        stream.destroy();
        hasher.dispose();
      }
    }
  }

  /**
   * The group's name fields: decided by its first member read (the JPEG before the RAW, but on a tethered
   * camera a RAW that embeds a preview, whose EXIF is the same: see readOrder), or stored by an earlier run.
   */
  async #groupFields(pf: PlannedFile, head: Buffer, destId: number): Promise<GroupFields> {
    const { journal, settings } = this.run;
    const key = pf.group.key;
    const cached = this.#fields.get(key);
    if (cached) return cached;
    const stored = journal.groupName(this.sourceId, key, destId);
    let fields: GroupFields;
    if (stored) {
      fields = JSON.parse(stored.fields) as GroupFields;
    } else {
      const md = await readCaptureMetadata(head, { mtimeMs: pf.item.mtimeMs }, { timeZone: settings.timeZone });
      if (md.warnings.length) this.run.logger.info({ path: pf.item.path, warnings: md.warnings, dateSource: md.dateSource }, 'metadata problems; name falls back');
      const { details } = this.identity;
      fields = {
        local: md.local,
        make: md.make ?? (details['manufacturer'] as string | undefined),
        model: md.model ?? (details['model'] as string | undefined),
        serial: md.serial ?? (details['serial'] as string | undefined),
      };
    }
    this.#fields.set(key, fields);
    // A never-ending listing (a tethered camera) must not grow this without bound.
    if (this.#fields.size > RECENT_GROUPS) this.#fields.delete(this.#fields.keys().next().value!);
    return fields;
  }
}
