/**
 * A PTP/IP camera serving a folder tree as one storage: what Shuttle's tests, demos and `shuttle
 * simulate-camera` talk to instead of a real camera. Files are never modified: served objects are
 * write-protected unless it is started with `deletable` (then DeleteObject removes the file from the
 * folder, as a camera removes it from its card); images this simulator "captured" (copied in from a pool
 * folder) can always be deleted.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, open, readFile, readdir, realpath, rename, stat, statfs, unlink } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { watch, type FSWatcher } from 'chokidar';
import { ShuttleError, errnoCode } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { formatPtpDate } from '../ptp/codec.js';
import {
  ALL_STORAGES,
  AccessCapability,
  AssociationType,
  FilesystemType,
  ObjectFormat,
  OperationCode,
  ProtectionStatus,
  ROOT_OBJECTS,
  ResponseCode,
  StorageType,
  VendorExtension,
} from '../ptp/codes.js';
import { encodeDeviceInfo, encodeObjectInfo, encodeStorageInfo, encodeU32Array, type DeviceInfo, type ObjectInfo } from '../ptp/datasets.js';
import { CanonEosOperation } from '../ptp/vendor-events.js';
import { PtpReader } from '../ptp/codec.js';
import { SONY_PROTOCOL_VERSION, SonyDataType, SonyEventCode, SonyOperation, SonyProperty, encodeSonyExtDeviceInfo, encodeSonyProps, objectInMemoryValue } from '../ptp/sony.js';
import {
  CanonEosSimOperation,
  NikonOperation,
  personalityOf,
  type BodyEvent,
  type CaptureTarget,
  type EventOutlet,
  type Personality,
  type SimulatorVendor,
} from './personality.js';
import { PtpIpResponder, type OperationHandler, type ResponderReply, type ResponderRequest, type ResponderSession } from './responder.js';

export const SIMULATOR_STORAGE_ID = 0x00010001;

/** The standard FocusMode and CompressionSetting properties, which a Sony body reports among its own. */
const SONY_FOCUS_MODE = 0x500a;
const SONY_COMPRESSION_SETTING = 0x5004;

export interface SimulatorOptions {
  /** Folder served as the camera's storage. */
  dir: string;
  /** Folder of images that InitiateCapture copies in, in name order, cycling. Without it the camera cannot capture. */
  pool?: string;
  host?: string;
  /** 0 picks a free port. Default 15740. */
  port?: number;
  manufacturer?: string;
  model?: string;
  /** Default: derived from the served folder's real path, so the same folder is the same camera. */
  serialNumber?: string;
  storageDescription?: string;
  volumeLabel?: string;
  /** Zone of the camera clock: ObjectInfo dates are written as local time in it, without a zone marker, as most cameras do. */
  timeZone?: string;
  /** Offer GetPartialObject (default true) and Android GetPartialObject64 (default true), to exercise initiator fallbacks. */
  offerPartialObject?: boolean;
  offerPartialObject64?: boolean;
  /** What GetObjectHandles with association 0 returns: 'all' objects (PTP standard) or the 'root' level only (QEMU usb-mtp). */
  associationZeroMeans?: 'all' | 'root';
  /** Served files may be deleted (DeleteObject unlinks them from the folder), as on a camera's card. Default false: write-protected. */
  deletable?: boolean;
  /** Watch the folder and announce new files as the camera's maker does (see personality.ts). Default true. */
  watch?: boolean;
  /** Whose camera this is on the wire: how it announces new objects and which vendor operations it offers. Default generic. */
  vendor?: SimulatorVendor;
  /** Where a capture puts the image: the card (default) or camera memory only, for the host to fetch at once. */
  captureTarget?: CaptureTarget;
  /**
   * Every capture into memory gets the same file name (the first of the series), as Nikon bodies name
   * their SDRAM image; by default the simulator numbers them.
   */
  reuseMemoryName?: boolean;
  /** Test-only: behave like a broken or hostile camera. */
  misbehave?: SimulatorMisbehaviour;
  logger?: Logger;
}

/** What a broken or hostile camera does, for tests of the initiator's bounds. */
export interface SimulatorMisbehaviour {
  /** Only these objects (paths relative to the served folder) misbehave in their data; default: every object. */
  paths?: readonly string[];
  /** GetObject and the partial reads announce and send this many bytes more than the object has (or than asked for). */
  overrunBytes?: number;
  /** Object data goes out `bytes` at a time, `intervalMs` apart. */
  trickle?: { bytes: number; intervalMs: number };
  /** Every GetObjectHandles answer lists its handles this many times over. */
  repeatHandles?: number;
  /** Never send CaptureComplete, although DeviceInfo lists it (Leica Q3 and SL3). */
  withholdCaptureComplete?: boolean;
}

interface SimObject {
  handle: number;
  parent: number;
  name: string;
  /** '/'-separated path relative to the served folder. */
  rel: string;
  folder: boolean;
  size: number;
  mtimeMs: number;
  format: number;
  protection: number;
}

/** An image captured into camera memory (capture target host): served until the host releases it. */
interface MemoryObject {
  handle: number;
  name: string;
  data: Buffer;
  format: number;
  mtimeMs: number;
}

const FORMAT_BY_EXTENSION: Readonly<Record<string, number>> = {
  jpg: ObjectFormat.ExifJpeg,
  jpeg: ObjectFormat.ExifJpeg,
  jpe: ObjectFormat.ExifJpeg,
  tif: ObjectFormat.TIFF,
  tiff: ObjectFormat.TIFF,
  png: ObjectFormat.PNG,
  gif: ObjectFormat.GIF,
  bmp: ObjectFormat.BMP,
  dng: ObjectFormat.DNG,
  jp2: ObjectFormat.JP2,
  avi: ObjectFormat.AVI,
  mpg: ObjectFormat.MPEG,
  mpeg: ObjectFormat.MPEG,
  mov: ObjectFormat.QuickTime,
  mp4: ObjectFormat.MtpMp4,
  wav: ObjectFormat.WAV,
  mp3: ObjectFormat.MP3,
  txt: ObjectFormat.Text,
  htm: ObjectFormat.HTML,
  html: ObjectFormat.HTML,
};

/** PTP object format for a file name, as cameras report them (RAW formats have no PTP code: Undefined). */
export function formatForName(name: string): number {
  const ext = path.extname(name).slice(1).toLowerCase();
  return FORMAT_BY_EXTENSION[ext] ?? ObjectFormat.Undefined;
}

function isHidden(rel: string): boolean {
  return rel.split('/').some((part) => part.startsWith('.'));
}

/** The served folder as PTP objects: handles are assigned once and stay stable while the simulator runs. */
class ObjectTree {
  private readonly byHandle = new Map<number, SimObject>();
  private readonly byRel = new Map<string, SimObject>();
  private readonly byParent = new Map<number, Set<SimObject>>();
  private nextHandle = 1;

  constructor(
    readonly root: string,
    /** The protection of files found in the folder (captured ones are never protected). */
    private readonly served: number = ProtectionStatus.ReadOnly,
  ) {}

  get(handle: number): SimObject | undefined {
    return this.byHandle.get(handle);
  }

  byPath(rel: string): SimObject | undefined {
    return this.byRel.get(rel);
  }

  all(): SimObject[] {
    return [...this.byHandle.values()];
  }

  children(parent: number): SimObject[] {
    return [...(this.byParent.get(parent) ?? [])];
  }

  async scan(): Promise<void> {
    const walk = async (relDir: string): Promise<void> => {
      const abs = path.join(this.root, relDir);
      const entries = (await readdir(abs, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const e of entries) {
        const rel = relDir === '' ? e.name : `${relDir}/${e.name}`;
        if (isHidden(rel)) continue;
        let st: Stats;
        try {
          st = await stat(path.join(this.root, rel));
        } catch {
          continue;
        }
        if (st.isDirectory()) {
          this.add(rel, st);
          await walk(rel);
        } else if (st.isFile()) this.add(rel, st);
      }
    };
    await walk('');
  }

  /** Adds `rel` (and any missing parent folders); returns the objects created, parents first. */
  add(rel: string, st: Pick<Stats, 'size' | 'mtimeMs'> & { isDirectory(): boolean }, protection: number = this.served): SimObject[] {
    const created: SimObject[] = [];
    const parts = rel.split('/');
    let parent = 0;
    for (let i = 0; i < parts.length; i++) {
      const sub = parts.slice(0, i + 1).join('/');
      const existing = this.byRel.get(sub);
      const last = i === parts.length - 1;
      if (existing) {
        if (last && !existing.folder) {
          existing.size = st.size;
          existing.mtimeMs = st.mtimeMs;
        }
        parent = existing.handle;
        continue;
      }
      const folder = !last || st.isDirectory();
      const name = parts[i] as string;
      const obj: SimObject = {
        handle: this.nextHandle++,
        parent,
        name,
        rel: sub,
        folder,
        size: folder ? 0 : st.size,
        mtimeMs: last ? st.mtimeMs : Date.now(),
        format: folder ? ObjectFormat.Association : formatForName(name),
        protection: folder ? ProtectionStatus.ReadOnly : protection,
      };
      this.byHandle.set(obj.handle, obj);
      this.byRel.set(sub, obj);
      let siblings = this.byParent.get(parent);
      if (!siblings) this.byParent.set(parent, (siblings = new Set()));
      siblings.add(obj);
      created.push(obj);
      parent = obj.handle;
    }
    return created;
  }

  /** Removes `rel` and everything below it; returns the removed objects. */
  remove(rel: string): SimObject[] {
    const removed = this.all().filter((o) => o.rel === rel || o.rel.startsWith(`${rel}/`));
    for (const o of removed) {
      this.byHandle.delete(o.handle);
      this.byRel.delete(o.rel);
      this.byParent.get(o.parent)?.delete(o);
      this.byParent.delete(o.handle);
    }
    return removed;
  }

  absolute(o: SimObject): string {
    return path.join(this.root, ...o.rel.split('/'));
  }
}

const READ_CHUNK = 1024 * 1024;

/**
 * A file range in chunks that are views of one buffer, read again for every chunk: the responder has
 * handed a chunk to the kernel before it pulls the next (ResponderReply.stream), and a fresh buffer per
 * read made the simulator spend more time collecting garbage than reading files.
 */
async function* fileChunks(file: string, start: number, length: number, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  if (length === 0) return;
  const fh = await open(file, 'r');
  try {
    let pos = start;
    const end = start + length;
    const buf = Buffer.allocUnsafeSlow(Math.min(READ_CHUNK, length));
    while (pos < end) {
      if (signal.aborted) return;
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - pos), pos);
      if (bytesRead === 0) return;
      pos += bytesRead;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

/** `length` zero bytes, made as they are pulled. */
async function* junk(length: number, signal: AbortSignal, sent: (n: number) => void): AsyncGenerator<Uint8Array> {
  const buf = Buffer.alloc(Math.min(READ_CHUNK, length));
  for (let left = length; left > 0 && !signal.aborted; ) {
    const n = Math.min(buf.length, left);
    left -= n;
    sent(n);
    yield buf.subarray(0, n);
  }
}

/** `chunks` re-cut into pieces of `bytes`, `intervalMs` apart; ends early when the signal aborts. */
async function* trickled(chunks: AsyncIterable<Uint8Array>, bytes: number, intervalMs: number, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks) {
    for (let off = 0; off < chunk.byteLength; off += bytes) {
      try {
        await sleep(intervalMs, undefined, { signal });
      } catch {
        return;
      }
      yield chunk.subarray(off, off + bytes);
    }
  }
}

export class CameraSimulator {
  private readonly log: Logger;
  private readonly outlets = new Map<ResponderSession, EventOutlet>();
  private readonly memory = new Map<number, MemoryObject>();
  /** Nikon: captures waiting for the one virtual SDRAM handle to be released. */
  private readonly memoryBacklog: MemoryObject[] = [];
  private memoryCounter = 0;
  private watcher: FSWatcher | undefined;
  private poolIndex = 0;
  private captureCounter = 0;
  private captureQueue: Promise<void> = Promise.resolve();
  private readonly served = new Map<number, number>();
  private junkSent = 0;

  private constructor(
    private readonly opts: SimulatorOptions,
    private readonly tree: ObjectTree,
    private readonly responder: PtpIpResponder,
    readonly deviceInfo: DeviceInfo,
    private readonly timeZone: string | undefined,
    private readonly personality: Personality,
  ) {
    this.log = opts.logger ?? silentLogger;
  }

  /** Scans the folder, starts watching it and listens. */
  static async start(opts: SimulatorOptions): Promise<CameraSimulator> {
    let root: string;
    try {
      root = await realpath(opts.dir);
      if (!(await stat(root)).isDirectory()) throw new Error('not a directory');
    } catch (cause) {
      throw new ShuttleError('SOURCE_NOT_FOUND', `simulator folder ${opts.dir} is not a readable directory`, { context: { path: opts.dir }, cause });
    }
    if (opts.pool !== undefined) {
      const st = await stat(opts.pool).catch(() => undefined);
      if (!st?.isDirectory()) throw new ShuttleError('SOURCE_NOT_FOUND', `capture pool ${opts.pool} is not a directory`, { context: { path: opts.pool } });
    }
    const tree = new ObjectTree(root, opts.deletable === true ? ProtectionStatus.None : ProtectionStatus.ReadOnly);
    await tree.scan();
    const serial = opts.serialNumber ?? createHash('sha256').update(root).digest('hex').slice(0, 12).toUpperCase();
    const operations: number[] = [
      OperationCode.GetDeviceInfo,
      OperationCode.OpenSession,
      OperationCode.CloseSession,
      OperationCode.GetStorageIDs,
      OperationCode.GetStorageInfo,
      OperationCode.GetNumObjects,
      OperationCode.GetObjectHandles,
      OperationCode.GetObjectInfo,
      OperationCode.GetObject,
      OperationCode.GetThumb,
      OperationCode.DeleteObject,
    ];
    if (opts.offerPartialObject ?? true) operations.push(OperationCode.GetPartialObject);
    if (opts.pool !== undefined) operations.push(OperationCode.InitiateCapture);
    if (opts.offerPartialObject64 ?? true) operations.push(OperationCode.AndroidGetPartialObject64);
    const personality = personalityOf(opts.vendor ?? 'generic');
    const generic: DeviceInfo = {
      standardVersion: 100,
      // MTP, as current Canon, Nikon and Sony bodies report: it also makes libgphoto2 download every format, RAW included.
      vendorExtensionId: VendorExtension.Microsoft,
      vendorExtensionVersion: 100,
      vendorExtensionDesc: 'microsoft.com: 1.0',
      functionalMode: 0,
      operationsSupported: operations,
      eventsSupported: [],
      devicePropertiesSupported: [],
      captureFormats: opts.pool !== undefined ? [ObjectFormat.ExifJpeg] : [],
      imageFormats: [...new Set(Object.values(FORMAT_BY_EXTENSION))].concat(ObjectFormat.Undefined, ObjectFormat.Association),
      manufacturer: opts.manufacturer ?? 'Shuttle',
      model: opts.model ?? 'Simulator',
      deviceVersion: '1.0',
      serialNumber: serial,
    };
    const vendorInfo = personality.deviceInfo(generic, opts.pool !== undefined);
    // A name given explicitly wins over the personality's.
    const deviceInfo: DeviceInfo = { ...vendorInfo, manufacturer: opts.manufacturer ?? vendorInfo.manufacturer, model: opts.model ?? vendorInfo.model };
    const timeZone = opts.timeZone;
    let sim: CameraSimulator | undefined;
    const responder = new PtpIpResponder({
      host: opts.host ?? '127.0.0.1',
      port: opts.port ?? 15740,
      friendlyName: `${deviceInfo.manufacturer} ${deviceInfo.model}`,
      logger: opts.logger,
      connect: (session) => (sim as CameraSimulator).connect(session),
    });
    sim = new CameraSimulator(opts, tree, responder, deviceInfo, timeZone, personality);
    if (opts.watch ?? true) await sim.startWatching();
    try {
      await responder.listen();
    } catch (err) {
      await sim.watcher?.close();
      throw err;
    }
    sim.log.info({ dir: root, serial, vendor: personality.vendor, ...responder.address(), objects: tree.all().length }, 'camera simulator listening');
    return sim;
  }

  get port(): number {
    return this.responder.address().port;
  }

  get host(): string {
    return this.responder.address().address;
  }

  async stop(): Promise<void> {
    await this.watcher?.close();
    await this.responder.close();
    await this.captureQueue;
  }

  /** Tells every connected initiator, the way this maker's camera would (see personality.ts). */
  private announce(e: BodyEvent): void {
    if (e.kind === 'capture-complete' && this.opts.misbehave?.withholdCaptureComplete === true) return;
    for (const outlet of this.outlets.values()) outlet.announce(e);
  }

  private objectAdded(o: SimObject): BodyEvent {
    return { kind: 'object-added', handle: o.handle, storageId: SIMULATOR_STORAGE_ID, format: o.format, size: o.size, parent: o.parent, filename: o.name };
  }

  private async startWatching(): Promise<void> {
    const root = this.tree.root;
    const relOf = (p: string): string => path.relative(root, p).split(path.sep).join('/');
    const watcher = watch(root, {
      ignoreInitial: true,
      alwaysStat: true,
      ignored: (p: string) => p !== root && isHidden(relOf(p)),
      // Announce a file once its size has settled, so ObjectInfo never reports a half-written size.
      awaitWriteFinish: { stabilityThreshold: 200, pollInterval: 50 },
    });
    const added = (p: string, st: Stats | undefined): void => {
      const rel = relOf(p);
      if (rel === '' || this.tree.byPath(rel)) return;
      const info = st ?? { size: 0, mtimeMs: Date.now(), isDirectory: () => false };
      for (const o of this.tree.add(rel, info)) {
        this.log.info({ handle: o.handle, path: o.rel }, 'object added');
        this.announce(this.objectAdded(o));
        if (this.personality.pcRemote && !o.folder) this.captureQueue = this.captureQueue.then(() => this.bodyShot(o));
      }
    };
    watcher.on('add', added);
    watcher.on('addDir', added);
    watcher.on('change', (p: string, st: Stats | undefined) => {
      const o = this.tree.byPath(relOf(p));
      if (!o || !st) return;
      o.size = st.size;
      o.mtimeMs = st.mtimeMs;
      this.announce({ kind: 'object-changed', handle: o.handle });
    });
    const removed = (p: string): void => {
      for (const o of this.tree.remove(relOf(p))) {
        this.log.info({ handle: o.handle, path: o.rel }, 'object removed');
        this.announce({ kind: 'object-removed', handle: o.handle });
      }
    };
    watcher.on('unlink', removed);
    watcher.on('unlinkDir', removed);
    watcher.on('error', (err: unknown) => this.log.warn({ err }, 'folder watcher error'));
    await new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    this.watcher = watcher;
  }

  private connect(session: ResponderSession): OperationHandler {
    this.outlets.set(
      session,
      this.personality.outlet((code, tid, params) => session.sendEvent(code, tid, params)),
    );
    let sessionId = 0;
    const withoutSession = new Set<number>([OperationCode.GetDeviceInfo, OperationCode.OpenSession]);
    return {
      handle: async (req: ResponderRequest): Promise<ResponderReply> => {
        if (req.code === OperationCode.OpenSession) {
          if (sessionId !== 0) return { code: ResponseCode.SessionAlreadyOpen, params: [sessionId] };
          if (req.params[0] === undefined || req.params[0] === 0) return { code: ResponseCode.InvalidParameter };
          sessionId = req.params[0];
          return { code: ResponseCode.OK };
        }
        if (sessionId === 0 && !withoutSession.has(req.code)) return { code: ResponseCode.SessionNotOpen };
        if (req.code === OperationCode.CloseSession) {
          sessionId = 0;
          return { code: ResponseCode.OK };
        }
        return this.operation(req, session);
      },
      close: () => {
        this.outlets.delete(session);
      },
    };
  }

  private checkStorage(id: number, allowAll: boolean): ResponderReply | undefined {
    if (id === SIMULATOR_STORAGE_ID || (allowAll && id === ALL_STORAGES)) return undefined;
    return { code: ResponseCode.InvalidStorageID };
  }

  private selectObjects(storage: number, format: number, parent: number): SimObject[] | ResponderReply {
    const bad = this.checkStorage(storage, true);
    if (bad) return bad;
    let objs: SimObject[];
    const zero = this.opts.associationZeroMeans ?? 'all';
    if (parent === ROOT_OBJECTS || (parent === 0 && zero === 'root')) objs = this.tree.children(0);
    else if (parent === 0) objs = this.tree.all();
    else {
      const p = this.tree.get(parent);
      if (!p) return { code: ResponseCode.InvalidObjectHandle };
      if (!p.folder) return { code: ResponseCode.InvalidParentObject };
      objs = this.tree.children(parent);
    }
    if (format !== 0) objs = objs.filter((o) => o.format === format);
    return objs.sort((a, b) => a.handle - b.handle);
  }

  /** Bytes sent past objects' ends (SimulatorMisbehaviour.overrunBytes), for tests that the initiator cut them off. */
  get overrunBytesSent(): number {
    return this.junkSent;
  }

  /** Captures held in camera memory, exposed or waiting for the virtual handle (for tests). */
  get objectsInMemory(): number {
    return this.memory.size + this.memoryBacklog.length;
  }

  /** How many times an operation was requested since start (for tests and diagnostics). */
  operationCount(code: number): number {
    return this.served.get(code) ?? 0;
  }

  private async operation(req: ResponderRequest, session: ResponderSession): Promise<ResponderReply> {
    this.served.set(req.code, (this.served.get(req.code) ?? 0) + 1);
    const [p1 = 0, p2 = 0, p3 = 0, p4 = 0] = req.params;
    switch (req.code) {
      case OperationCode.GetDeviceInfo:
        return { code: ResponseCode.OK, data: encodeDeviceInfo(this.deviceInfo) };
      case OperationCode.GetStorageIDs:
        // A Sony body in PC Remote mode keeps its card to itself: shots reach the host through memory only.
        return { code: ResponseCode.OK, data: encodeU32Array(this.personality.pcRemote ? [] : [SIMULATOR_STORAGE_ID]) };
      case OperationCode.GetStorageInfo: {
        const bad = this.checkStorage(p1, false);
        if (bad) return bad;
        const fs = await statfs(this.tree.root);
        const free = BigInt(fs.bavail) * BigInt(fs.bsize);
        return {
          code: ResponseCode.OK,
          data: encodeStorageInfo({
            storageType: StorageType.RemovableRAM,
            filesystemType: FilesystemType.GenericHierarchical,
            accessCapability: AccessCapability.ReadOnlyWithDeletion,
            maxCapacity: BigInt(fs.blocks) * BigInt(fs.bsize),
            freeSpaceInBytes: free,
            freeSpaceInImages: Number(free / 5_000_000n > 0xffffffffn ? 0xffffffffn : free / 5_000_000n),
            storageDescription: this.opts.storageDescription ?? 'SD',
            volumeLabel: this.opts.volumeLabel ?? 'SHUTTLE_SIM',
          }),
        };
      }
      case OperationCode.GetNumObjects: {
        const objs = this.selectObjects(p1, p2, p3);
        return Array.isArray(objs) ? { code: ResponseCode.OK, params: [objs.length] } : objs;
      }
      case OperationCode.GetObjectHandles: {
        const objs = this.selectObjects(p1, p2, p3);
        if (!Array.isArray(objs)) return objs;
        const handles = objs.map((o) => o.handle);
        const repeat = this.opts.misbehave?.repeatHandles ?? 1;
        return { code: ResponseCode.OK, data: encodeU32Array(Array.from({ length: repeat }, () => handles).flat()) };
      }
      case OperationCode.GetObjectInfo: {
        const m = this.memory.get(p1);
        if (m) return { code: ResponseCode.OK, data: this.memoryObjectInfo(m) };
        const o = this.tree.get(p1);
        if (!o) return { code: ResponseCode.InvalidObjectHandle };
        return {
          code: ResponseCode.OK,
          data: this.objectInfo({
            storageId: SIMULATOR_STORAGE_ID,
            objectFormat: o.format,
            protectionStatus: o.protection,
            compressedSize: Math.min(o.size, 0xffffffff),
            parentObject: o.parent,
            associationType: o.folder ? AssociationType.GenericFolder : AssociationType.Undefined,
            filename: o.name,
            mtimeMs: o.mtimeMs,
          }),
        };
      }
      case OperationCode.GetObject:
        return this.sendObject(req, p1, 0, Number.MAX_SAFE_INTEGER, false);
      case OperationCode.GetPartialObject:
        if (!(this.opts.offerPartialObject ?? true)) return { code: ResponseCode.OperationNotSupported };
        return this.sendObject(req, p1, p2, p3, true);
      case OperationCode.AndroidGetPartialObject64:
        if (!(this.opts.offerPartialObject64 ?? true)) return { code: ResponseCode.OperationNotSupported };
        return this.sendObject(req, p1, p3 * 0x1_0000_0000 + p2, p4, true);
      case OperationCode.GetThumb:
        return this.tree.get(p1) || this.memory.has(p1) ? { code: ResponseCode.NoThumbnailPresent } : { code: ResponseCode.InvalidObjectHandle };
      case OperationCode.DeleteObject:
        return this.deleteObject(p1);
      case OperationCode.InitiateCapture:
        return this.initiateCapture(req, p1, this.opts.captureTarget ?? 'card');
      default:
        return this.vendorOperation(req, session);
    }
  }

  /** The personality's own operations; anything it does not offer is OperationNotSupported. */
  private async vendorOperation(req: ResponderRequest, session: ResponderSession): Promise<ResponderReply> {
    const code = req.code;
    if (!this.deviceInfo.operationsSupported.includes(code)) return { code: ResponseCode.OperationNotSupported };
    const [p1 = 0] = req.params;
    if (this.personality.vendor === 'sony') return this.sonyOperation(req);
    if (this.personality.captureOperations.includes(code)) {
      const r = this.initiateCapture(req, 0, this.personality.captureTargetOf(code, this.opts.captureTarget ?? 'card'));
      // EOS RemoteRelease answers with a result code in its first parameter: 0 is "released".
      return code === CanonEosSimOperation.RemoteRelease && r.code === ResponseCode.OK ? { code: r.code, params: [0] } : r;
    }
    switch (code) {
      case CanonEosOperation.GetEvent:
      case NikonOperation.GetEvent:
        return { code: ResponseCode.OK, data: this.outlets.get(session)?.drain?.() ?? new Uint8Array(0) };
      case CanonEosOperation.SetRemoteMode:
      case CanonEosOperation.SetEventMode:
      case CanonEosOperation.KeepDeviceOn:
      case NikonOperation.DeviceReady:
        return { code: ResponseCode.OK };
      case CanonEosSimOperation.GetStorageIds:
        return { code: ResponseCode.OK, data: encodeU32Array([SIMULATOR_STORAGE_ID]) };
      case CanonEosSimOperation.GetStorageInfo:
        // libgphoto2 reads and discards it; the content is the camera's own layout.
        return this.checkStorage(p1, false) ?? { code: ResponseCode.OK, data: new Uint8Array(8) };
      case CanonEosOperation.TransferComplete:
      case NikonOperation.DelImageSdram:
        return this.releaseMemoryObject(p1);
      default:
        return { code: ResponseCode.OperationNotSupported };
    }
  }

  /**
   * Sony's SDIO operations. The shutter fires when the full-press button goes down (SetControlDeviceB
   * 0xD2C2 with 2); the other buttons and the priority mode are accepted and have no effect here.
   */
  private async sonyOperation(req: ResponderRequest): Promise<ResponderReply> {
    const [p1 = 0] = req.params;
    switch (req.code) {
      case SonyOperation.SdioConnect:
        // Each phase answers with 8 bytes of zeros (libgphoto2 reads and drops them).
        return p1 >= 1 && p1 <= 3 ? { code: ResponseCode.OK, data: new Uint8Array(8) } : { code: ResponseCode.InvalidParameter };
      case SonyOperation.GetExtDeviceInfo:
        return {
          code: ResponseCode.OK,
          data: encodeSonyExtDeviceInfo({
            version: SONY_PROTOCOL_VERSION,
            properties: [
              SonyProperty.ObjectInMemory,
              SonyProperty.FocusFound,
              SonyProperty.PriorityMode,
              SonyEventCode.ObjectAdded,
              SonyEventCode.ObjectRemoved,
              SonyEventCode.DevicePropChanged,
            ],
            controls: [SonyProperty.ShutterHalfRelease, SonyProperty.ShutterRelease],
          }),
        };
      case SonyOperation.GetAllDevicePropData:
        return {
          code: ResponseCode.OK,
          data: encodeSonyProps([
            { code: SonyProperty.ObjectInMemory, dataType: SonyDataType.UINT16, value: objectInMemoryValue(this.memory.size + this.memoryBacklog.length) },
            { code: SonyProperty.FocusFound, dataType: SonyDataType.UINT8, value: 1 },
            { code: SonyProperty.PriorityMode, dataType: SonyDataType.INT8, value: 1 },
            // Manual focus, so that a libgphoto2 capture does not hold the button waiting for focus.
            { code: SONY_FOCUS_MODE, dataType: SonyDataType.UINT16, value: 1 },
            // JPEG only; libgphoto2 (2.5.30) reads it before every capture.
            { code: SONY_COMPRESSION_SETTING, dataType: SonyDataType.UINT8, value: 0x02 },
          ]),
        };
      case SonyOperation.SetExtDevicePropValue:
        return { code: ResponseCode.OK };
      case SonyOperation.ControlDevice: {
        const chunks: Uint8Array[] = [];
        for await (const c of req.dataOut ?? []) chunks.push(c);
        const data = Buffer.concat(chunks);
        if (data.length < 2) return { code: ResponseCode.InvalidParameter };
        const pressed = new PtpReader(data, 'SetControlDeviceB').u16('value') === 2;
        if (p1 === SonyProperty.ShutterRelease && pressed) return this.initiateCapture(req, 0, 'host');
        return { code: ResponseCode.OK };
      }
      default:
        return { code: ResponseCode.OperationNotSupported };
    }
  }

  private async sendObject(req: ResponderRequest, handle: number, offset: number, maxBytes: number, partial: boolean): Promise<ResponderReply> {
    const m = this.memory.get(handle);
    if (m) {
      if (offset > m.data.length) return { code: ResponseCode.InvalidParameter };
      const data = m.data.subarray(offset, offset + Math.min(maxBytes, m.data.length - offset));
      // A Sony body drops a shot from memory once it was read to its end; the handle then serves the next one.
      if (this.personality.pcRemote && offset + data.length === m.data.length) this.releaseMemoryObject(handle);
      return { code: ResponseCode.OK, params: partial ? [data.length] : [], data };
    }
    const o = this.tree.get(handle);
    if (!o) return { code: ResponseCode.InvalidObjectHandle };
    if (o.folder) return { code: ResponseCode.InvalidObjectHandle };
    const file = this.tree.absolute(o);
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch (err) {
      this.log.warn({ err, path: o.rel }, 'object vanished from the folder');
      return { code: ResponseCode.InvalidObjectHandle };
    }
    o.size = size;
    if (offset > size) return { code: ResponseCode.InvalidParameter };
    const length = Math.min(maxBytes, size - offset);
    const bad = this.opts.misbehave;
    if (!bad || (bad.paths && !bad.paths.includes(o.rel))) {
      return { code: ResponseCode.OK, params: partial ? [length] : [], stream: { length, chunks: fileChunks(file, offset, length, req.signal) } };
    }
    const extra = bad.overrunBytes ?? 0;
    const junkSent = (n: number): void => {
      this.junkSent += n;
    };
    const chunks = async function* (): AsyncGenerator<Uint8Array> {
      yield* fileChunks(file, offset, length, req.signal);
      yield* junk(extra, req.signal, junkSent);
    };
    const t = bad.trickle;
    return {
      code: ResponseCode.OK,
      params: partial ? [length] : [],
      stream: { length: length + extra, chunks: t ? trickled(chunks(), t.bytes, t.intervalMs, req.signal) : chunks() },
    };
  }

  private async deleteObject(handle: number): Promise<ResponderReply> {
    if (this.memory.has(handle)) return this.releaseMemoryObject(handle);
    const o = this.tree.get(handle);
    if (!o) return { code: ResponseCode.InvalidObjectHandle };
    if (o.folder || o.protection !== ProtectionStatus.None) return { code: ResponseCode.ObjectWriteProtected };
    try {
      await unlink(this.tree.absolute(o));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') return { code: ResponseCode.GeneralError };
    }
    this.tree.remove(o.rel);
    this.log.info({ handle, path: o.rel }, 'object deleted by the initiator');
    return { code: ResponseCode.OK };
  }

  private async nextPoolImage(): Promise<string | undefined> {
    const pool = this.opts.pool;
    if (pool === undefined) return undefined;
    const names: string[] = [];
    for (const e of await readdir(pool, { withFileTypes: true })) if (e.isFile() && !e.name.startsWith('.')) names.push(e.name);
    names.sort();
    if (names.length === 0) return undefined;
    const name = names[this.poolIndex % names.length] as string;
    this.poolIndex += 1;
    return path.join(pool, name);
  }

  private initiateCapture(req: ResponderRequest, storage: number, target: CaptureTarget): ResponderReply {
    if (this.opts.pool === undefined) return { code: ResponseCode.OperationNotSupported };
    if (storage !== 0) {
      const bad = this.checkStorage(storage, false);
      if (bad) return bad;
    }
    // The camera acknowledges at once and reports the new image by events, as real ones do.
    const tid = req.transactionId;
    this.captureQueue = this.captureQueue
      .then(() => (target === 'host' && this.personality.memoryHandle ? this.captureToMemory(tid) : this.capture(tid)))
      .catch((err: unknown) => this.log.error({ err }, 'capture failed'));
    return { code: ResponseCode.OK };
  }

  /** The next free `PREFIX_NNNN.EXT` name for a capture from `source` (with reuseMemoryName, always the first). */
  private async captureName(source: string, taken: (name: string) => Promise<boolean>, reuse = false): Promise<string> {
    const ext = path.extname(source).toUpperCase() || '.JPG';
    const prefix = { generic: 'CAP_', canon: 'IMG_', nikon: 'DSC_', sony: 'DSC0', fuji: 'DSCF' }[this.personality.vendor];
    if (reuse) return `${prefix}0001${ext}`;
    for (;;) {
      this.captureCounter += 1;
      const name = `${prefix}${String(this.captureCounter).padStart(4, '0')}${ext}`;
      if (!(await taken(name))) return name;
    }
  }

  /** Copies the next pool image into DCIM/100SHUTL, then announces it and the end of the capture. */
  private async capture(transactionId: number): Promise<void> {
    const source = await this.nextPoolImage();
    if (!source) {
      this.log.warn({ pool: this.opts.pool }, 'capture pool is empty');
      this.announce({ kind: 'capture-complete', transactionId });
      return;
    }
    const folderRel = 'DCIM/100SHUTL';
    const folderAbs = path.join(this.tree.root, 'DCIM', '100SHUTL');
    await mkdir(folderAbs, { recursive: true });
    const name = await this.captureName(
      source,
      async (n) => this.tree.byPath(`${folderRel}/${n}`) !== undefined || (await stat(path.join(folderAbs, n)).catch(() => undefined)) !== undefined,
    );
    const tmp = path.join(folderAbs, `.${name}.capture`);
    await copyFile(source, tmp);
    await rename(tmp, path.join(folderAbs, name));
    const st = await stat(path.join(folderAbs, name));
    const folderStat = await stat(folderAbs);
    const created = [...this.tree.add(folderRel, folderStat), ...this.tree.add(`${folderRel}/${name}`, st, ProtectionStatus.None)];
    for (const o of created) this.announce(this.objectAdded(o));
    this.log.info({ path: `${folderRel}/${name}`, from: source }, 'captured');
    this.announce({ kind: 'capture-complete', transactionId });
  }

  /**
   * Capture target host: the image exists only in camera memory until the host releases it (EOS
   * TransferComplete, Nikon DelImageSDRAM or DeleteObject). A Nikon body has one virtual handle for it,
   * so a second capture waits until the first is released.
   */
  private async captureToMemory(transactionId: number): Promise<void> {
    const source = await this.nextPoolImage();
    if (!source) {
      this.log.warn({ pool: this.opts.pool }, 'capture pool is empty');
      this.announce({ kind: 'capture-complete', transactionId });
      return;
    }
    const inUse = (n: string): boolean => [...this.memory.values(), ...this.memoryBacklog].some((m) => m.name === n);
    const name = await this.captureName(source, async (n) => inUse(n), this.opts.reuseMemoryName === true);
    this.toMemory(name, await readFile(source), Date.now(), transactionId);
    this.log.info({ name, from: source }, 'captured into camera memory');
  }

  /** A new image in camera memory: exposed at once, or queued behind the one that holds the virtual handle. */
  private toMemory(name: string, data: Buffer, mtimeMs: number, transactionId: number): void {
    const handleOf = this.personality.memoryHandle as (n: number) => number;
    const m: MemoryObject = { handle: handleOf(++this.memoryCounter), name, data, format: formatForName(name), mtimeMs };
    if (this.memory.has(m.handle)) {
      this.memoryBacklog.push(m);
      this.announce({ kind: 'memory-changed', count: this.memory.size + this.memoryBacklog.length });
      return;
    }
    this.exposeMemoryObject(m);
    this.announce({ kind: 'capture-complete', transactionId });
  }

  /** PC Remote: a file appearing in the folder is a shot taken with the body's own button, which goes to the host through memory. */
  private async bodyShot(o: SimObject): Promise<void> {
    try {
      const data = await readFile(this.tree.absolute(o));
      this.toMemory(o.name, data, o.mtimeMs, 0);
      this.log.info({ path: o.rel }, 'shot taken on the body went to camera memory');
    } catch (err) {
      this.log.warn({ err, path: o.rel }, 'shot taken on the body could not be read');
    }
  }

  private exposeMemoryObject(m: MemoryObject): void {
    this.memory.set(m.handle, m);
    this.announce({ kind: 'in-memory', handle: m.handle, format: m.format, size: m.data.length, filename: m.name });
    this.announce({ kind: 'memory-changed', count: this.memory.size + this.memoryBacklog.length });
  }

  private releaseMemoryObject(handle: number): ResponderReply {
    if (!this.memory.delete(handle)) return { code: ResponseCode.InvalidObjectHandle };
    if (this.memoryBacklog.every((b) => b.handle !== handle)) this.announce({ kind: 'memory-changed', count: this.memory.size + this.memoryBacklog.length });
    this.log.info({ handle }, 'memory object released by the initiator');
    const next = this.memoryBacklog.findIndex((m) => m.handle === handle);
    if (next >= 0) {
      const [m] = this.memoryBacklog.splice(next, 1);
      this.exposeMemoryObject(m as MemoryObject);
      this.announce({ kind: 'capture-complete', transactionId: 0 });
    }
    return { code: ResponseCode.OK };
  }

  /** ObjectInfo of a memory object: no storage and no parent, as Nikon and Canon report them. */
  private memoryObjectInfo(m: MemoryObject): Uint8Array {
    return this.objectInfo({
      storageId: 0,
      objectFormat: m.format,
      protectionStatus: ProtectionStatus.None,
      compressedSize: m.data.length,
      parentObject: 0,
      associationType: AssociationType.Undefined,
      filename: m.name,
      mtimeMs: m.mtimeMs,
    });
  }

  /** An ObjectInfo as this camera writes every one: no thumbnail or image facts, dated in the camera's zone. */
  private objectInfo(
    o: Pick<ObjectInfo, 'storageId' | 'objectFormat' | 'protectionStatus' | 'compressedSize' | 'parentObject' | 'associationType' | 'filename'> & { mtimeMs: number },
  ): Uint8Array {
    const { mtimeMs, ...fields } = o;
    const date = formatPtpDate(mtimeMs, { timeZone: this.timeZone });
    return encodeObjectInfo({
      ...fields,
      thumbFormat: 0,
      thumbCompressedSize: 0,
      thumbPixWidth: 0,
      thumbPixHeight: 0,
      imagePixWidth: 0,
      imagePixHeight: 0,
      imageBitDepth: 0,
      associationDesc: 0,
      sequenceNumber: 0,
      captureDate: date,
      modificationDate: date,
      keywords: '',
    });
  }
}
