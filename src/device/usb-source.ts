/**
 * Cameras on USB as ingest sources: `usb:` (whatever camera is attached), `usb:VID:PID` or `usb:BUS-PORT`
 * become PtpCameraSources over the libusb transport, with the quirks their USB ids call for. Also the
 * listing behind `shuttle devices`.
 */
import { ShuttleError, isShuttleError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { PtpCameraSource, type CameraSourceOptions } from './camera-source.js';
import { PtpCamera } from './ptp/camera.js';
import { explainQuirks, usbQuirksFor, type PtpQuirks, type QuirkExplanation } from './ptp/quirks.js';
import type { SourceIdentity } from './source.js';
import { findUsbCameras, hex4, parseUsbSelector, type FoundUsbCamera, type UsbCameraInfo } from './usb/discovery.js';
import { usbDeviceHolders } from './usb/holders.js';
import { openLibusbLink } from './usb/libusb.js';
import { UsbPtpTransport } from './usb/transport.js';

export { parseUsbSelector, type UsbCameraInfo, type UsbSelector } from './usb/discovery.js';

export interface UsbCameraSourceOptions extends CameraSourceOptions {
  /** Overrides on top of the quirks table (configuration). */
  quirks?: Partial<PtpQuirks>;
  signal?: AbortSignal;
}

/** A camera on USB. Its identity is the camera's (make, model, serial), whatever socket it is plugged into. */
export class UsbCameraSource extends PtpCameraSource {
  /** Its transport reads an object's bytes into page-aligned shared memory laid out like the file (see UsbPtpTransport). */
  readonly lendsBlocks = true;

  constructor(
    camera: PtpCamera,
    uri: string,
    readonly usb: UsbCameraInfo,
    opts: CameraSourceOptions = {},
  ) {
    super(camera, uri, opts);
  }

  override async identity(signal?: AbortSignal): Promise<SourceIdentity> {
    const id = await super.identity(signal);
    const details: Record<string, string | number> = {
      ...id.details,
      usbVendorId: hex4(this.usb.vendorId),
      usbProductId: hex4(this.usb.productId),
      usbLocation: this.usb.location,
    };
    return { ...id, details };
  }
}

function contextOf(info: UsbCameraInfo): Record<string, unknown> {
  return { usb: `${hex4(info.vendorId)}:${hex4(info.productId)}`, location: info.location };
}

/** Failures worth one more attempt after a reset: the device may be holding a dead client's transaction. */
function worthRetrying(err: unknown): boolean {
  return isShuttleError(err, 'PTP_TIMEOUT') || isShuttleError(err, 'PTP_PROTOCOL') || isShuttleError(err, 'TRANSPORT');
}

/** How libusb failed (`busy`, `access`, `gone`…), when it did. */
function usbFailureOf(err: unknown): string | undefined {
  return isShuttleError(err) ? (err.context as { usbError?: string } | undefined)?.usbError : undefined;
}

/**
 * A claim refused "busy" names the processes that hold the device (gvfsd-gphoto2, gvfsd-mtp, gphoto2…) in
 * its message and as `heldBy` in its context; any other error is returned as it is.
 */
async function namingHolders(err: unknown, info: UsbCameraInfo): Promise<unknown> {
  if (usbFailureOf(err) !== 'busy') return err;
  const holders = await usbDeviceHolders(info.busNumber, info.deviceAddress);
  if (holders.length === 0) return err;
  const names = holders.map((h) => `${h.name} (pid ${h.pid})`).join(', ');
  return new ShuttleError('TRANSPORT', `${(err as Error).message} [held by ${names}]`, { context: { ...(err as ShuttleError).context, heldBy: holders }, cause: err });
}

/** Opens a session with one found camera: claim, transport, OpenSession + DeviceInfo, with one reset-and-retry. */
export async function openUsbCamera(found: FoundUsbCamera, opts: { logger?: Logger; quirks?: Partial<PtpQuirks>; signal?: AbortSignal } = {}): Promise<PtpCamera> {
  const log = opts.logger ?? silentLogger;
  const { info } = found;
  const context = contextOf(info);
  const quirks = usbQuirksFor({ vendorId: info.vendorId, productId: info.productId });
  const attempt = async (resetFirst: boolean): Promise<PtpCamera> => {
    const link = openLibusbLink(found.device, { interfaceNumber: info.interfaceNumber, logger: log, context });
    const transport = new UsbPtpTransport(link, { quirks: quirks.usb, logger: log, context });
    if (resetFirst) {
      try {
        await transport.reset(opts.signal);
      } catch (err) {
        await transport.close();
        throw err;
      }
    }
    // PtpCamera.open closes the transport when it fails.
    // One GetObject per file: its data streams in large bulk reads, where 1 MiB partial blocks cost a
    // command and a response each (under emulation, several times the bus time of the block itself).
    return PtpCamera.open(transport, { logger: log, quirks: { ...quirks.ptp, ...opts.quirks }, signal: opts.signal, wholeObjectDownloads: true });
  };
  try {
    return await attempt(false);
  } catch (err) {
    if (opts.signal?.aborted || !worthRetrying(err) || usbFailureOf(err) === 'busy') throw await namingHolders(err, info);
    log.info({ ...context, err }, 'opening the camera failed; resetting it and trying once more');
    return attempt(true);
  }
}

/** What reopening a USB camera does, step by step (tests script them). */
export interface UsbReopenSteps {
  /** The cameras on the bus now. */
  find(): Promise<FoundUsbCamera[]>;
  /** A session with one of them (see openUsbCamera). */
  open(found: FoundUsbCamera): Promise<PtpCamera>;
  /** A reset of the device's USB port (libusb_reset_device), for a camera the drop left wedged. */
  reset(found: FoundUsbCamera): Promise<void>;
}

/**
 * How likely `now` is the camera that was `was`, after it re-enumerated (a new device address, perhaps
 * another socket): 3 the same USB serial, 2 the same socket, 1 the same ids elsewhere, 0 other ids. Only a
 * hint: some devices' USB serial names their port (QEMU's), so the PTP identity (make, model, serial) of the
 * camera opened decides (see TetheredCameraSource).
 */
export function usbMatchRank(was: UsbCameraInfo, now: UsbCameraInfo): number {
  if (now.vendorId !== was.vendorId || now.productId !== was.productId) return 0;
  if (was.serialNumber !== undefined && now.serialNumber === was.serialNumber) return 3;
  return now.location === was.location ? 2 : 1;
}

/**
 * Opens the camera that was `was` again, once it is back on the bus: found by serial (or socket, or ids), opened,
 * and if that fails, its USB port reset and opened once more. DEVICE_GONE while it is not on the bus; a
 * claim refused busy or for permissions is not reset (that would pull the camera from under whoever has it).
 */
export async function reopenUsbCamera(was: UsbCameraInfo, steps: UsbReopenSteps, logger?: Logger): Promise<{ camera: PtpCamera; info: UsbCameraInfo }> {
  const log = logger ?? silentLogger;
  const find = async (): Promise<FoundUsbCamera> => {
    let found: FoundUsbCamera | undefined;
    let best = 0;
    for (const f of await steps.find()) {
      const rank = usbMatchRank(was, f.info);
      if (rank > best) [found, best] = [f, rank];
    }
    if (found) return found;
    const serial = was.serialNumber === undefined ? '' : `, serial ${was.serialNumber}`;
    throw new ShuttleError('DEVICE_GONE', `the camera (${hex4(was.vendorId)}:${hex4(was.productId)}${serial}, last at ${was.location}) is not on the bus`, {
      context: contextOf(was),
    });
  };
  const found = await find();
  try {
    return { camera: await steps.open(found), info: found.info };
  } catch (err) {
    const failure = usbFailureOf(err);
    if (failure === 'busy' || failure === 'access' || !(worthRetrying(err) || isShuttleError(err, 'DEVICE_GONE'))) throw err;
    log.info({ ...contextOf(found.info), err }, 'opening the camera again failed; resetting its USB port and trying once more');
    await steps.reset(found);
    // A reset may re-enumerate the device under a new address.
    const again = await find();
    return { camera: await steps.open(again), info: again.info };
  }
}

/** libusb_reset_device on a device from node-usb's list (it must be open for that). */
function resetUsbPort(found: FoundUsbCamera): Promise<void> {
  const { device } = found;
  return new Promise((resolve, reject) => {
    try {
      device.open(false);
    } catch (err) {
      reject(new ShuttleError('DEVICE_GONE', `resetting the camera's USB port failed: ${(err as Error).message}`, { context: contextOf(found.info), cause: err }));
      return;
    }
    device.reset((err) => {
      try {
        device.close();
      } catch {
        // A device that re-enumerated after the reset has no handle left to close.
      }
      if (err) reject(new ShuttleError('DEVICE_GONE', `resetting the camera's USB port failed: ${err.message}`, { context: contextOf(found.info), cause: err }));
      else resolve();
    });
  });
}

/** `previous` opened again after it dropped (see reopenUsbCamera), as a source with the same uri. */
export async function reopenUsbCameraSource(previous: UsbCameraSource, opts: UsbCameraSourceOptions = {}): Promise<UsbCameraSource> {
  const steps: UsbReopenSteps = {
    find: () => findUsbCameras({ kind: 'any' }, { logger: opts.logger }),
    open: (found) => openUsbCamera(found, opts),
    reset: resetUsbPort,
  };
  const { camera, info } = await reopenUsbCamera(previous.usb, steps, opts.logger);
  return sourceFor(camera, previous.uri, info, opts);
}

function sourceFor(camera: PtpCamera, uri: string, info: UsbCameraInfo, opts: UsbCameraSourceOptions): UsbCameraSource {
  // A device that writes its dates in a known zone (QEMU: UTC) overrides the configured camera clock zone.
  const timeZone = camera.quirks.objectDatesZone ?? opts.timeZone;
  return new UsbCameraSource(camera, uri, info, { logger: opts.logger, ...(timeZone ? { timeZone } : {}), ...(opts.listingLimits ? { listingLimits: opts.listingLimits } : {}) });
}

function noCamera(selector: string): ShuttleError {
  return new ShuttleError('SOURCE_NOT_FOUND', `no USB camera matches ${selector} (is it on, unlocked, and in PTP/MTP mode rather than mass storage?)`, {
    context: { source: selector },
  });
}

/**
 * One USB camera as a Source: the first match of `selector` in bus/port order (for `usb:`, the first
 * camera attached). Its uri is the selector as given. SOURCE_NOT_FOUND when nothing matches; USAGE for
 * a malformed selector.
 */
export async function openUsbCameraSource(selector: string, opts: UsbCameraSourceOptions = {}): Promise<UsbCameraSource> {
  const sel = parseUsbSelector(selector);
  const found = await findUsbCameras(sel, { logger: opts.logger });
  const first = found[0];
  if (!first) throw noCamera(selector);
  const camera = await openUsbCamera(first, opts);
  return sourceFor(camera, selector, first.info, opts);
}

export interface UsbCameraListing extends UsbCameraInfo {
  /** `usb:BUS-PORT`, ready to pass to `shuttle ingest`. */
  selector: string;
  /** Maker by vendor id (or the PTP vendor extension once a session is open). */
  vendor: string | undefined;
  quirks: QuirkExplanation['applied'];
}

/** Attached cameras with the quirks that would apply to them; no session is opened (strings come from USB descriptors). */
export async function listUsbCameras(opts: { logger?: Logger; selector?: string } = {}): Promise<UsbCameraListing[]> {
  const sel = parseUsbSelector(opts.selector ?? 'usb:');
  const found = await findUsbCameras(sel, { logger: opts.logger });
  return found.map(({ info }) => {
    const explained = explainQuirks(info.manufacturer === undefined ? undefined : { manufacturer: info.manufacturer, model: info.product ?? '' }, {
      vendorId: info.vendorId,
      productId: info.productId,
    });
    return { ...info, selector: `usb:${info.location}`, vendor: explained.vendor, quirks: explained.applied };
  });
}
