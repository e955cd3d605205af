/**
 * A PTP camera as a Source: the ingest pipeline lists, opens and stats camera objects the way it does
 * files on a card. Works over any PtpTransport; `openPtpIpCameraSource` connects over PTP/IP.
 */
import type { Readable } from 'node:stream';
import { ShuttleError, throwIfAborted } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { PtpCamera } from './ptp/camera.js';
import { parsePtpDate } from './ptp/codec.js';
import { ObjectFormat, OperationCode, ProtectionStatus, ResponseCode, hex32 } from './ptp/codes.js';
import type { ObjectInfo } from './ptp/datasets.js';
import { ListingBudget, type ListingLimits } from './ptp/listing-budget.js';
import type { PtpQuirks } from './ptp/quirks.js';
import { responseCodeOf } from './ptp/session.js';
import { connectPtpIp, initiatorIdentity } from './ptpip/transport.js';
import type { ItemState, OpenOptions, Reread, Source, SourceIdentity, SourceItem, SourceRemoval } from './source.js';

/** The folder name of objects the camera holds in memory only (capture target host). */
export const CAMERA_MEMORY = 'camera-memory';

/** What a camera item's `handle` holds. */
export interface CameraItemHandle {
  storageId: number;
  objectHandle: number;
}

export interface CameraSourceOptions {
  /** IANA zone of the camera's clock: ObjectInfo dates without a zone marker are read in it. Default: this host's zone. */
  timeZone?: string;
  /** Bounds on a listing, against a device that lists without end (defaults: DEFAULT_LISTING_LIMITS). */
  listingLimits?: Partial<ListingLimits>;
  logger?: Logger;
}

/** `camera:<manufacturer>:<model>:<serial>`, the identity key of a camera across sessions and transports. */
export function cameraKey(manufacturer: string, model: string, serial: string): string {
  return `camera:${manufacturer}:${model}:${serial}`;
}

function isCameraHandle(h: unknown): h is CameraItemHandle {
  return typeof h === 'object' && h !== null && typeof (h as CameraItemHandle).storageId === 'number' && typeof (h as CameraItemHandle).objectHandle === 'number';
}

/** A u64 of all ones: what a device sends for a value it does not know. */
const UNKNOWN_U64 = 0xffffffffffffffffn;

export class PtpCameraSource implements Source {
  private readonly timeZone: string | undefined;
  private readonly log: Logger;
  private readonly listingLimits: Partial<ListingLimits>;
  /** Storage folder names by id, from the last listing (new objects are named as the listing named their storage). */
  private storageNamesById: Map<number, string> | undefined;

  constructor(
    readonly camera: PtpCamera,
    readonly uri: string,
    opts: CameraSourceOptions = {},
  ) {
    this.timeZone = opts.timeZone;
    this.log = opts.logger ?? silentLogger;
    this.listingLimits = opts.listingLimits ?? {};
  }

  async identity(signal?: AbortSignal): Promise<SourceIdentity> {
    throwIfAborted(signal);
    const id = this.camera.identity();
    return {
      kind: 'camera',
      key: cameraKey(id.manufacturer, id.model, id.serialNumber),
      label: `${id.manufacturer} ${id.model}`.trim(),
      details: { manufacturer: id.manufacturer, model: id.model, serialNumber: id.serialNumber, deviceVersion: id.deviceVersion, uri: this.uri },
    };
  }

  /** Modification date (else capture date) in epoch ms; 0 when the camera gives none or an unreadable one. */
  private mtimeOf(info: ObjectInfo): number {
    for (const text of [info.modificationDate, info.captureDate]) {
      if (!text) continue;
      try {
        return parsePtpDate(text, this.timeZone);
      } catch {
        this.log.debug({ date: text, filename: info.filename }, 'unreadable object date');
      }
    }
    return 0;
  }

  /** Storage folder names: the description the camera gives, else the id; made unique when two slots share one. */
  private async storageNames(budget: ListingBudget, signal?: AbortSignal): Promise<Map<number, string>> {
    const ids = await this.camera.storageIds(signal);
    budget.entriesListed(ids.length);
    const names = new Map<number, string>();
    const seen = new Map<string, number>();
    for (const id of ids) {
      let name = '';
      try {
        name = (await this.camera.storageInfo(id, signal)).storageDescription.trim();
      } catch (err) {
        if (responseCodeOf(err) === undefined) throw err;
      }
      if (name === '') name = hex32(id);
      seen.set(name, (seen.get(name) ?? 0) + 1);
      names.set(id, name);
    }
    for (const [id, name] of names) if ((seen.get(name) ?? 0) > 1) names.set(id, `${name} ${hex32(id)}`);
    this.storageNamesById = names;
    return names;
  }

  /**
   * The used space of the camera's storages (MaxCapacity − FreeSpaceInBytes of each): at most what its
   * listing can total. Undefined when a storage reports no sane capacity (none, all ones, or less than
   * its free space).
   */
  async listingBound(signal?: AbortSignal): Promise<number | undefined> {
    let used = 0n;
    for (const id of await this.camera.storageIds(signal)) {
      const { maxCapacity, freeSpaceInBytes } = await this.camera.storageInfo(id, signal);
      if (maxCapacity === 0n || maxCapacity === UNKNOWN_U64 || freeSpaceInBytes > maxCapacity) return undefined;
      used += maxCapacity - freeSpaceInBytes;
    }
    return used <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(used) : undefined;
  }

  /** Files as the camera's walk finds them, within the listing limits (SOURCE_LIMIT past them). */
  async *list(signal?: AbortSignal): AsyncIterable<SourceItem> {
    const budget = new ListingBudget(this.listingLimits, { uri: this.uri });
    const names = await this.storageNames(budget, signal);
    for (const [storageId, storageName] of names) {
      for await (const obj of this.camera.walk(storageId, signal, budget)) {
        const size = await this.camera.objectSize(obj.handle, obj.info, signal);
        const handle: CameraItemHandle = { storageId, objectHandle: obj.handle };
        yield { path: [storageName, ...obj.path].join('/'), size: size ?? obj.info.compressedSize, mtimeMs: this.mtimeOf(obj.info), handle };
      }
    }
  }

  /**
   * The item for one object the camera announced (ObjectAdded), named as a listing names it; undefined
   * for a folder.
   */
  async itemOf(objectHandle: number, signal?: AbortSignal): Promise<SourceItem | undefined> {
    const info = await this.camera.objectInfo(objectHandle, signal);
    if (info.objectFormat === ObjectFormat.Association) return undefined;
    let names = this.storageNamesById;
    // Storage 0: a capture held in camera memory (capture target host), on no card.
    if (info.storageId !== 0 && !names?.has(info.storageId)) names = await this.storageNames(new ListingBudget(this.listingLimits, { uri: this.uri }), signal);
    const storageName = info.storageId === 0 ? CAMERA_MEMORY : (names?.get(info.storageId) ?? hex32(info.storageId));
    const parent = info.parentObject === objectHandle ? 0 : info.parentObject;
    const folders = parent === info.storageId ? [] : await this.camera.pathOf(parent, signal);
    const size = await this.camera.objectSize(objectHandle, info, signal);
    const handle: CameraItemHandle = { storageId: info.storageId, objectHandle };
    return { path: [storageName, ...folders, info.filename].join('/'), size: size ?? info.compressedSize, mtimeMs: this.mtimeOf(info), handle };
  }

  private handleOf(item: SourceItem): CameraItemHandle {
    if (!isCameraHandle(item.handle)) {
      throw new ShuttleError('INTERNAL', `item ${item.path} was not listed by a camera source`, { context: { path: item.path, uri: this.uri } });
    }
    return item.handle;
  }

  async open(item: SourceItem, options: OpenOptions = {}): Promise<Readable> {
    const h = this.handleOf(item);
    throwIfAborted(options.signal);
    // 0xFFFFFFFF is ObjectInfo's "4 GiB or more" when the real size was not available: let the camera layer find out.
    const size = item.size === 0xffffffff ? undefined : item.size;
    return this.camera.download(h.objectHandle, { offset: options.offset ?? 0, size, signal: options.signal, recycle: options.recycle });
  }

  async stat(item: SourceItem, signal?: AbortSignal): Promise<ItemState | undefined> {
    const h = this.handleOf(item);
    let info: ObjectInfo;
    try {
      info = await this.camera.objectInfo(h.objectHandle, signal);
    } catch (err) {
      if (responseCodeOf(err) === ResponseCode.InvalidObjectHandle) {
        throw new ShuttleError('SOURCE_NOT_FOUND', `${item.path} is no longer on the camera`, { context: { path: item.path, handle: h.objectHandle, uri: this.uri }, cause: err });
      }
      throw err;
    }
    const size = await this.camera.objectSize(h.objectHandle, info, signal);
    if (size === undefined) return undefined;
    return { size, mtimeMs: this.mtimeOf(info) };
  }

  /** Deleting from the camera's card (a wipe): see CameraRemoval. */
  get removal(): SourceRemoval {
    return (this.#removal ??= new CameraRemoval(
      this,
      (item) => this.handleOf(item),
      (info) => this.mtimeOf(info),
    ));
  }

  #removal: CameraRemoval | undefined;

  async close(): Promise<void> {
    await this.camera.close();
  }
}

/**
 * A camera's side of a wipe. The second read is a fresh GetObject of the object (the camera's card, no
 * page cache of this host between), after its ObjectInfo was checked to still be the item listed; the
 * deletion checks the ObjectInfo again (name, size, time, not protected) and sends DeleteObject for that
 * handle only. Folders are never deleted: listings hold files only.
 */
class CameraRemoval implements SourceRemoval {
  /** The name each reread object had, by handle: the deletion must find the same object there. */
  readonly #read = new Map<number, string>();

  constructor(
    private readonly source: PtpCameraSource,
    private readonly handleOf: (item: SourceItem) => CameraItemHandle,
    private readonly mtimeOf: (info: ObjectInfo) => number,
  ) {}

  async ready(): Promise<void> {
    if (!this.source.camera.supports(OperationCode.DeleteObject)) {
      throw new ShuttleError('SOURCE_DELETE_FAILED', `cannot delete from ${this.source.uri}: the camera does not offer DeleteObject`, { context: { source: this.source.uri } });
    }
  }

  /** The object's ObjectInfo, checked to be the item listed (same name, size and time). */
  async #checked(item: SourceItem, signal?: AbortSignal): Promise<{ h: CameraItemHandle; info: ObjectInfo }> {
    const h = this.handleOf(item);
    let info: ObjectInfo;
    try {
      info = await this.source.camera.objectInfo(h.objectHandle, signal);
    } catch (cause) {
      if (responseCodeOf(cause) === undefined) throw cause;
      throw new ShuttleError('SOURCE_CHANGED', `${item.path} is no longer on the camera`, { cause, context: { path: item.path, handle: h.objectHandle } });
    }
    const size = await this.source.camera.objectSize(h.objectHandle, info, signal);
    const name = item.path.slice(item.path.lastIndexOf('/') + 1);
    if (info.filename !== name || size !== item.size || this.mtimeOf(info) !== item.mtimeMs) {
      throw new ShuttleError('SOURCE_CHANGED', `${item.path} on the camera is no longer the object listed`, { context: { path: item.path, handle: h.objectHandle } });
    }
    return { h, info };
  }

  async reread(item: SourceItem, signal?: AbortSignal): Promise<Reread> {
    const { h, info } = await this.#checked(item, signal);
    this.#read.set(h.objectHandle, info.filename);
    const size = item.size === 0xffffffff ? undefined : item.size;
    return { stream: this.source.camera.download(h.objectHandle, { size, signal }), direct: () => true };
  }

  async remove(item: SourceItem, signal?: AbortSignal): Promise<void> {
    const refuse = (why: string, cause?: unknown): ShuttleError =>
      new ShuttleError('SOURCE_DELETE_FAILED', `${item.path} not deleted from ${this.source.uri}: ${why}`, {
        ...(cause === undefined ? {} : { cause }),
        context: { path: item.path, source: this.source.uri },
      });
    const h = this.handleOf(item);
    if (!this.#read.has(h.objectHandle)) throw refuse('it was not read a second time');
    let info: ObjectInfo;
    try {
      ({ info } = await this.#checked(item, signal));
    } catch (cause) {
      throw refuse(cause instanceof Error ? cause.message : String(cause), cause);
    }
    if (info.protectionStatus !== ProtectionStatus.None) throw refuse('it is protected on the camera');
    try {
      await this.source.camera.deleteObject(h.objectHandle, signal);
    } catch (cause) {
      const code = responseCodeOf(cause);
      throw refuse(code === ResponseCode.ObjectWriteProtected ? 'the camera says it is write-protected' : cause instanceof Error ? cause.message : String(cause), cause);
    }
    this.#read.delete(h.objectHandle);
  }
}

export interface PtpIpCameraSourceOptions extends CameraSourceOptions {
  host: string;
  port?: number;
  /** Where the initiator GUID and name persist (cameras pair with them). */
  stateDir: string;
  quirks?: Partial<PtpQuirks>;
  signal?: AbortSignal;
}

/** Connects to a PTP/IP camera, opens a session and wraps it as a Source (uri `ptpip:host[:port]`). */
export async function openPtpIpCameraSource(opts: PtpIpCameraSourceOptions): Promise<PtpCameraSource> {
  // A new identity is synced to disk while the camera is connected and its session opened.
  const { identity, saved } = await initiatorIdentity(opts.stateDir);
  let camera: PtpCamera;
  try {
    const transport = await connectPtpIp({ host: opts.host, port: opts.port, identity, signal: opts.signal, logger: opts.logger });
    // One GetObject per file: a 1 MiB partial block costs a round trip of command and response packets.
    camera = await PtpCamera.open(transport, { logger: opts.logger, quirks: opts.quirks, signal: opts.signal, wholeObjectDownloads: true });
  } catch (e) {
    await saved.catch(() => {});
    throw e;
  }
  try {
    await saved;
  } catch (e) {
    await camera.close().catch(() => {});
    throw e;
  }
  const uri = opts.port === undefined ? `ptpip:${opts.host}` : `ptpip:${opts.host}:${opts.port}`;
  return new PtpCameraSource(camera, uri, opts);
}
