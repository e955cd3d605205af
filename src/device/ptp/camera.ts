/**
 * A camera over a PTP session: identity, storages, the object tree walked folder by folder, downloads as
 * streams (from an offset, for resume) and generic capture. Brand-specific behaviour comes from quirks.
 */
import { Readable } from 'node:stream';
import { ShuttleError, abortReason, isShuttleError, throwIfAborted } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { PtpReader, protocolError } from './codec.js';
import { EventCode, ObjectFormat, OperationCode, ROOT_OBJECTS, ResponseCode, hex32 } from './codes.js';
import {
  decodeDeviceInfo,
  decodeObjectInfo,
  decodeStorageIds,
  decodeStorageInfo,
  decodeU32Array,
  isStorageAvailable,
  type DeviceInfo,
  type ObjectInfo,
  type StorageInfo,
} from './datasets.js';
import { ListingBudget } from './listing-budget.js';
import { quirksFor, type PtpQuirks } from './quirks.js';
import { PtpSession, SliceLeases, responseCodeOf } from './session.js';
import type { PtpTransport } from './transport.js';

/** MTP GetObjectPropValue and the ObjectSize property: the real size when ObjectInfo says 0xFFFFFFFF (≥ 4 GiB). */
const MTP_GET_OBJECT_PROP_VALUE = 0x9803;
const MTP_PROP_OBJECT_SIZE = 0xdc04;
/** Longest a capture may take before its events arrive (libgphoto2: 100 s, for long exposures). */
export const CAPTURE_TIMEOUT_MS = 100_000;

export interface CameraOpenOptions {
  logger?: Logger;
  /** Overrides on top of the quirks table. */
  quirks?: Partial<PtpQuirks>;
  signal?: AbortSignal;
  sessionId?: number;
  /**
   * Download whole objects with one GetObject even where GetPartialObject is offered (blocks are then
   * only for resuming from an offset). Right where a transaction costs far more than streaming its data,
   * as on USB: each 1 MiB block is a command, a data phase and a response, with the bus idle in between.
   */
  wholeObjectDownloads?: boolean;
}

export interface CameraIdentity {
  manufacturer: string;
  model: string;
  serialNumber: string;
  deviceVersion: string;
}

export interface CameraObject {
  storageId: number;
  handle: number;
  info: ObjectInfo;
  /** Folder names from the storage root, then the file name: raw camera names. */
  path: string[];
}

export interface DownloadOptions {
  offset?: number;
  /** Object size if known (from a listing); saves a GetObjectInfo. */
  size?: number;
  signal?: AbortSignal;
  /** The reader's promise of OpenOptions.recycle: the transport may then reuse the memory of chunks read past. */
  recycle?: number | undefined;
}

export class PtpCamera {
  private readonly info: DeviceInfo;
  private readonly log: Logger;

  private constructor(
    readonly session: PtpSession,
    info: DeviceInfo,
    log: Logger,
    private readonly wholeObjectDownloads: boolean,
  ) {
    this.info = info;
    this.log = log;
  }

  /** OpenSession, then GetDeviceInfo (some devices answer it only inside a session), then quirks for the device. */
  static async open(transport: PtpTransport, opts: CameraOpenOptions = {}): Promise<PtpCamera> {
    const log = opts.logger ?? silentLogger;
    const session = new PtpSession(transport, { logger: log, quirks: quirksFor(undefined, opts.quirks) });
    try {
      await session.openSession(opts.sessionId ?? 1, opts.signal);
      const { data } = await session.runDataIn({ code: OperationCode.GetDeviceInfo, signal: opts.signal });
      const info = decodeDeviceInfo(data);
      session.setQuirks(quirksFor(info, opts.quirks));
      log.info({ manufacturer: info.manufacturer, model: info.model, serial: info.serialNumber }, 'PTP session open');
      return new PtpCamera(session, info, log, opts.wholeObjectDownloads ?? false);
    } catch (err) {
      await session.dispose().catch(() => undefined);
      throw err;
    }
  }

  get deviceInfo(): DeviceInfo {
    return this.info;
  }

  get quirks(): PtpQuirks {
    return this.session.quirks;
  }

  identity(): CameraIdentity {
    const { manufacturer, model, serialNumber, deviceVersion } = this.info;
    return { manufacturer, model, serialNumber, deviceVersion };
  }

  supports(operation: number): boolean {
    return this.info.operationsSupported.includes(operation);
  }

  /** Storage ids with media present (ids whose low 16 bits are 0 are empty slots). */
  async storageIds(signal?: AbortSignal): Promise<number[]> {
    const { data } = await this.session.runDataIn({ code: OperationCode.GetStorageIDs, signal });
    return decodeStorageIds(data).filter(isStorageAvailable);
  }

  async storageInfo(storageId: number, signal?: AbortSignal): Promise<StorageInfo> {
    const { data } = await this.session.runDataIn({ code: OperationCode.GetStorageInfo, params: [storageId], signal });
    return decodeStorageInfo(data);
  }

  async objectHandles(storageId: number, parent: number, signal?: AbortSignal, format = 0): Promise<number[]> {
    const { data } = await this.session.runDataIn({ code: OperationCode.GetObjectHandles, params: [storageId, format, parent], signal });
    return decodeU32Array(data, 'ObjectHandles');
  }

  async objectInfo(handle: number, signal?: AbortSignal): Promise<ObjectInfo> {
    const { data } = await this.session.runDataIn({ code: OperationCode.GetObjectInfo, params: [handle], signal });
    return decodeObjectInfo(data, { detectObjectSize64: this.quirks.detectObjectSize64 });
  }

  /** Object size in bytes; asks MTP ObjectSize when ObjectInfo's u32 says "4 GiB or more". Undefined if unknown. */
  async objectSize(handle: number, info: ObjectInfo, signal?: AbortSignal): Promise<number | undefined> {
    if (info.compressedSize !== 0xffffffff) return info.compressedSize;
    if (!this.supports(MTP_GET_OBJECT_PROP_VALUE)) return undefined;
    const { data } = await this.session.runDataIn({ code: MTP_GET_OBJECT_PROP_VALUE, params: [handle, MTP_PROP_OBJECT_SIZE], signal });
    return Number(new PtpReader(data, 'ObjectSize').u64('ObjectSize'));
  }

  /**
   * Every file of a storage, depth first, handed on as it is found. Folders are walked one by one
   * (GetObjectHandles on each association): some devices return only the root level for a whole-storage
   * query, others return everything; handles seen twice are skipped either way, and paths come from each
   * object's parent chain. `budget` bounds the walk (shared by the walks of one camera's storages).
   */
  async *walk(storageId: number, signal?: AbortSignal, budget = new ListingBudget()): AsyncGenerator<CameraObject> {
    const infos = new Map<number, ObjectInfo>();
    const folderPaths = new Map<number, string[]>();
    const visited = new Set<number>();
    const info = async (handle: number): Promise<ObjectInfo> => {
      let i = infos.get(handle);
      if (!i) {
        i = await this.objectInfo(handle, signal);
        infos.set(handle, i);
      }
      return i;
    };
    const folderPath = async (handle: number, depth = 0): Promise<string[]> => {
      // iOS reports the storage id as parent of root objects; a few EOS bodies report an object as its own parent.
      if (handle === 0 || handle === storageId || handle === ROOT_OBJECTS) return [];
      const known = folderPaths.get(handle);
      if (known) return known;
      // A parent chain that loops reads as folders without end.
      budget.folderDepth(depth + 1, `handle ${hex32(handle)}`);
      const i = await info(handle);
      const parent = i.parentObject === handle ? 0 : i.parentObject;
      const p = [...(await folderPath(parent, depth + 1)), i.filename];
      folderPaths.set(handle, p);
      return p;
    };
    const list = async (parent: number): Promise<number[]> => {
      const handles = await this.objectHandles(storageId, parent, signal);
      budget.entriesListed(handles.length);
      return handles;
    };

    let roots: number[];
    try {
      roots = await list(ROOT_OBJECTS);
    } catch (err) {
      const code = responseCodeOf(err);
      if (code !== ResponseCode.ParameterNotSupported && code !== ResponseCode.InvalidParameter && code !== ResponseCode.InvalidObjectHandle) throw err;
      this.log.debug({ storageId }, 'root-level listing refused; listing the whole storage');
      roots = await list(0);
    }
    // Each level is read by index: shifting a list of many thousand handles one by one costs quadratic time.
    const stack: Array<{ handles: number[]; next: number }> = [{ handles: roots, next: 0 }];
    while (stack.length > 0) {
      const level = stack[stack.length - 1] as { handles: number[]; next: number };
      if (level.next >= level.handles.length) {
        stack.pop();
        continue;
      }
      const handle = level.handles[level.next++] as number;
      throwIfAborted(signal);
      if (visited.has(handle)) continue;
      visited.add(handle);
      const i = await info(handle);
      infos.delete(handle);
      const parent = i.parentObject === handle ? 0 : i.parentObject;
      if (i.objectFormat === ObjectFormat.Association) {
        const p = [...(await folderPath(parent)), i.filename];
        budget.folderDepth(p.length, p.join('/'));
        folderPaths.set(handle, p);
        stack.push({ handles: await list(handle), next: 0 });
        continue;
      }
      budget.objectListed();
      yield { storageId, handle, info: i, path: [...(await folderPath(parent)), i.filename] };
    }
  }

  /**
   * The object's bytes from `offset`, as a stream with backpressure: GetPartialObject in blocks when the
   * camera offers it (Android GetPartialObject64 past 4 GiB or when it is the only one), GetObject otherwise
   * (a resume then reads and discards the bytes before `offset`) or when opened with wholeObjectDownloads
   * and reading from the start.
   */
  download(handle: number, opts: DownloadOptions = {}): Readable {
    const signal = opts.signal;
    // One chunk at a time (highWaterMark 0): with more buffered, a read() returns them concatenated into a
    // fresh buffer. Read-ahead is the transport's job (its receive queue keeps the link busy meanwhile).
    const slices = opts.recycle ? new SliceLeases(opts.recycle) : undefined;
    // Not destroyed at its end when it lends slices: a reader that keeps chunks a few pulls (a writer that
    // writes them where they are) may still hold the last ones once it has pulled past the end, and gives
    // them back by destroying the stream (OpenOptions.recycle).
    const readable = Readable.from(this.downloadChunks(handle, opts, slices), { objectMode: false, highWaterMark: 0, autoDestroy: !slices });
    if (slices) readable.once('close', () => slices.releaseAll());
    if (signal) {
      const onAbort = (): void => {
        readable.destroy(abortReason(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      readable.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return readable;
  }

  private async *downloadChunks(handle: number, opts: DownloadOptions, slices: SliceLeases | undefined): AsyncGenerator<Uint8Array> {
    const signal = opts.signal;
    const offset = opts.offset ?? 0;
    throwIfAborted(signal);
    let size = opts.size;
    if (size === undefined) {
      const info = await this.objectInfo(handle, signal);
      size = await this.objectSize(handle, info, signal);
    }
    if (size !== undefined && offset > size) {
      throw new ShuttleError('SOURCE_CHANGED', `resume offset ${offset} is past the end of a ${size}-byte object`, { context: { handle, offset, size } });
    }
    const q = this.quirks;
    const partial32 = this.supports(OperationCode.GetPartialObject) && !q.avoidPartialObject;
    const partial64 = this.supports(OperationCode.AndroidGetPartialObject64) && !q.avoidPartialObject;
    const fits32 = size !== undefined && size <= 0xffffffff;
    // From the start, one GetObject streams the object when the transport prefers it (objects ≥ 4 GiB
    // keep their 64-bit partial reads, which do not depend on the device's unknown-length containers).
    const whole = this.wholeObjectDownloads && offset === 0 && (size === undefined || fits32);
    if (!whole && size !== undefined && (partial64 || (partial32 && fits32))) {
      let pos = offset;
      while (pos < size) {
        const want = Math.min(q.partialObjectBlockSize, size - pos);
        const use64 = !(partial32 && fits32);
        const params = use64 ? [handle, pos % 0x1_0000_0000, Math.floor(pos / 0x1_0000_0000), want] : [handle, pos, want];
        const code = use64 ? OperationCode.AndroidGetPartialObject64 : OperationCode.GetPartialObject;
        let got = 0;
        for await (const chunk of this.transfer(code, params, signal, want, slices)) {
          got += chunk.byteLength;
          yield chunk;
        }
        if (got === 0) {
          throw protocolError('download', `camera returned no data at offset ${pos} of ${size}`, { handle, offset: pos, expected: size });
        }
        pos += got;
      }
      return;
    }
    // One GetObject: the whole object streamed; bytes before the resume offset are read and dropped.
    let skip = offset;
    let total = 0;
    for await (const chunk of this.transfer(OperationCode.GetObject, [handle], signal, size, slices)) {
      total += chunk.byteLength;
      if (skip >= chunk.byteLength) {
        skip -= chunk.byteLength;
        continue;
      }
      yield skip > 0 ? chunk.subarray(skip) : chunk;
      skip = 0;
    }
    if (size !== undefined && total !== size) {
      throw new ShuttleError('SOURCE_CHANGED', `object sent ${total} bytes, ObjectInfo said ${size}`, { context: { handle, expected: size, actual: total } });
    }
  }

  /**
   * The data-in phase of one operation as an iterable; leaving it early abandons the transaction. The
   * device may send no more than `expectedDataBytes` when that is known: more fails at once.
   */
  private async *transfer(code: number, params: number[], signal: AbortSignal | undefined, expectedDataBytes?: number, slices?: SliceLeases): AsyncGenerator<Uint8Array> {
    const gen = this.session.exchange({ code, params, signal, expectedDataBytes, maxDataBytes: expectedDataBytes, slices }, 'in');
    let done = false;
    try {
      for (;;) {
        const r = await gen.next();
        if (r.done) {
          done = true;
          return;
        }
        yield r.value;
      }
    } finally {
      if (!done) await gen.return(undefined as never).catch(() => undefined);
    }
  }

  /**
   * DeleteObject on one object (a file: the format parameter 0 deletes only the object named). A
   * protected object or a read-only storage answers with its response code (PTP_RESPONSE).
   */
  async deleteObject(handle: number, signal?: AbortSignal): Promise<void> {
    if (!this.supports(OperationCode.DeleteObject)) {
      throw new ShuttleError('PTP_RESPONSE', `${this.info.model} does not offer DeleteObject`, {
        context: { operation: 'DeleteObject', responseCode: ResponseCode.OperationNotSupported },
      });
    }
    await this.session.run({ code: OperationCode.DeleteObject, params: [handle, 0], signal });
  }

  /**
   * Generic capture: InitiateCapture, then ObjectAdded (folders ignored) and CaptureComplete in either
   * order (Nikon 1 reverses them). Returns the new object. Cameras that report captures otherwise (Canon
   * EOS, Nikon, Sony) need their vendor module.
   */
  async capture(opts: { signal?: AbortSignal; timeoutMs?: number; storageId?: number; format?: number } = {}): Promise<CameraObject> {
    const { signal } = opts;
    const timeoutMs = opts.timeoutMs ?? CAPTURE_TIMEOUT_MS;
    if (!this.supports(OperationCode.InitiateCapture)) {
      throw new ShuttleError('PTP_RESPONSE', `${this.info.model} does not offer InitiateCapture`, {
        context: { operation: 'InitiateCapture', responseCode: ResponseCode.OperationNotSupported },
      });
    }
    const events = this.session.subscribe();
    try {
      await this.session.run({ code: OperationCode.InitiateCapture, params: [opts.storageId ?? 0, opts.format ?? 0], signal, timeoutMs });
      const deadline = Date.now() + timeoutMs;
      let added: CameraObject | undefined;
      let complete = false;
      while (!added || !complete) {
        const e = await events.next(signal, Math.max(1, deadline - Date.now()));
        if (e.code === EventCode.CaptureComplete) complete = true;
        else if (e.code === EventCode.ObjectAdded && e.params[0] !== undefined) {
          const handle = e.params[0];
          const info = await this.objectInfo(handle, signal);
          if (info.objectFormat === ObjectFormat.Association) continue;
          added = { storageId: info.storageId, handle, info, path: [...(await this.pathOf(info.parentObject, signal)), info.filename] };
        } else if (e.code === EventCode.StoreFull) {
          throw new ShuttleError('PTP_RESPONSE', 'the card ran full during capture', { context: { operation: 'InitiateCapture', event: 'StoreFull' } });
        }
        // A camera that does not list CaptureComplete among its events, or is known not to send it, is done once the new object is announced.
        if (added && !complete && (this.quirks.noCaptureComplete || !this.info.eventsSupported.includes(EventCode.CaptureComplete))) complete = true;
      }
      return added;
    } catch (err) {
      if (isShuttleError(err, 'PTP_TIMEOUT')) {
        throw new ShuttleError('PTP_TIMEOUT', `no capture result within ${timeoutMs} ms`, { context: { timeoutMs }, cause: err, retryable: true });
      }
      throw err;
    } finally {
      events.close();
    }
  }

  /** Folder names from the storage root down to `parent`. */
  async pathOf(parent: number, signal?: AbortSignal): Promise<string[]> {
    const out: string[] = [];
    let h = parent;
    for (let depth = 0; h !== 0 && h !== ROOT_OBJECTS; depth++) {
      if (depth > 64) throw protocolError('object path', `folder chain deeper than 64 at handle ${hex32(h)}`, { handle: h });
      const i = await this.objectInfo(h, signal);
      out.unshift(i.filename);
      if (i.parentObject === h || i.parentObject === i.storageId) break;
      h = i.parentObject;
    }
    return out;
  }

  /** CloseSession and close the transport. */
  async close(signal?: AbortSignal): Promise<void> {
    await this.session.dispose(signal);
  }
}
