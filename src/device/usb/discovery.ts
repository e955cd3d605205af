/**
 * Finding cameras on the USB bus: interfaces of the Still Image class (6/1/1), and Android-style MTP
 * devices whose interface is vendor-specific (0xFF) but which say "MTP" in their interface string or
 * Microsoft OS descriptor. Selectors (`usb:`, `usb:VID:PID`, `usb:BUS-PORT`) pick among them.
 */
import type { Device } from 'usb';
import { ShuttleError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { loadUsb } from './libusb.js';

export interface UsbCameraInfo {
  vendorId: number;
  productId: number;
  busNumber: number;
  deviceAddress: number;
  /** Port path from the root hub, as Linux names it (`1.4` for port 4 of the hub on port 1). */
  portPath: string;
  /** `BUS-PORT`, e.g. `1-1.4`: stable while the camera stays in the same socket. */
  location: string;
  interfaceNumber: number;
  /** `ptp`: Still Image class interface. `mtp`: vendor-specific interface that identifies itself as MTP (Android). */
  protocol: 'ptp' | 'mtp';
  /** USB string descriptors; undefined when the device could not be opened or has none. */
  manufacturer?: string;
  product?: string;
  serialNumber?: string;
  /** Why the strings are missing (no permission, device busy), when they are. */
  problem?: string;
}

export type UsbSelector = { kind: 'any' } | { kind: 'ids'; vendorId: number; productId: number } | { kind: 'location'; busNumber: number; portPath: string };

const STILL_IMAGE_CLASS = 0x06;
const VENDOR_SPECIFIC_CLASS = 0xff;
const STRING_TIMEOUT_MS = 2_000;
/** String descriptor index of the Microsoft OS descriptor ("MSFT100" + vendor request code). */
const MS_OS_STRING_INDEX = 0xee;

/**
 * `usb:` (any camera), `usb:VID:PID` (hex, e.g. `usb:04a9:32d4`) or `usb:BUS-PORT` (e.g. `usb:1-4` or
 * `usb:3-1.2`). USAGE error for anything else.
 */
export function parseUsbSelector(text: string): UsbSelector {
  const m = /^usb:(.*)$/i.exec(text.trim());
  if (!m) throw new ShuttleError('USAGE', `"${text}" is not a USB source (usb:, usb:VID:PID or usb:BUS-PORT)`, { context: { source: text } });
  const rest = m[1] as string;
  if (rest === '') return { kind: 'any' };
  const ids = /^([0-9a-f]{4}):([0-9a-f]{4})$/i.exec(rest);
  if (ids) return { kind: 'ids', vendorId: parseInt(ids[1] as string, 16), productId: parseInt(ids[2] as string, 16) };
  const loc = /^(\d{1,3})-(\d{1,3}(?:\.\d{1,3}){0,6})$/.exec(rest);
  if (loc) return { kind: 'location', busNumber: Number(loc[1]), portPath: loc[2] as string };
  throw new ShuttleError('USAGE', `"${text}": expected usb:, usb:VID:PID (4 hex digits each) or usb:BUS-PORT (like usb:1-4 or usb:3-1.2)`, { context: { source: text } });
}

export function hex4(n: number): string {
  return n.toString(16).padStart(4, '0');
}

export function matchesSelector(info: Pick<UsbCameraInfo, 'vendorId' | 'productId' | 'busNumber' | 'portPath'>, sel: UsbSelector): boolean {
  switch (sel.kind) {
    case 'any':
      return true;
    case 'ids':
      return info.vendorId === sel.vendorId && info.productId === sel.productId;
    case 'location':
      return info.busNumber === sel.busNumber && info.portPath === sel.portPath;
  }
}

/** A camera found on the bus, with the node-usb device to open it by. */
export interface FoundUsbCamera {
  info: UsbCameraInfo;
  device: Device;
}

function stringDescriptor(device: Device, index: number): Promise<string | undefined> {
  if (!index) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    device.timeout = STRING_TIMEOUT_MS;
    device.getStringDescriptor(index, (err, value) => (err ? reject(err) : resolve(value?.replace(/\0+$/, '').trim() || undefined)));
  });
}

/** Vendor request for the Microsoft OS "extended compat ID" descriptor; true when it names MTP (how libmtp spots Android). */
function msOsSaysMtp(device: Device): Promise<boolean> {
  return new Promise((resolve) => {
    device.timeout = STRING_TIMEOUT_MS;
    device.controlTransfer(0x80, 0x06, (0x03 << 8) | MS_OS_STRING_INDEX, 0, 255, (err, data) => {
      if (err || !Buffer.isBuffer(data) || data.length < 18) return resolve(false);
      const sig = data.toString('utf16le', 2, 16);
      if (sig !== 'MSFT100') return resolve(false);
      const vendorCode = data[16] as number;
      device.controlTransfer(0xc0, vendorCode, 0, 4, 40, (err2, compat) => {
        if (err2 || !Buffer.isBuffer(compat) || compat.length < 26) return resolve(false);
        resolve(compat.toString('latin1', 18, 26).replace(/\0+$/, '') === 'MTP');
      });
    });
  });
}

interface Candidate {
  device: Device;
  interfaceNumber: number;
  protocol: 'ptp' | 'mtp';
  /** Vendor-specific interface: needs the device opened to confirm it is MTP. */
  confirm: boolean;
  interfaceString: number;
}

function candidatesOf(device: Device): Candidate[] {
  let config;
  try {
    config = device.configDescriptor;
  } catch {
    return [];
  }
  if (!config) return [];
  const out: Candidate[] = [];
  for (const alts of config.interfaces) {
    const d = alts[0];
    if (!d) continue;
    if (d.bInterfaceClass === STILL_IMAGE_CLASS && d.bInterfaceSubClass === 0x01 && d.bInterfaceProtocol === 0x01) {
      out.push({ device, interfaceNumber: d.bInterfaceNumber, protocol: 'ptp', confirm: false, interfaceString: d.iInterface });
      continue;
    }
    if (d.bInterfaceClass === VENDOR_SPECIFIC_CLASS && d.bNumEndpoints === 3) {
      // MTP's shape: bulk in, bulk out, interrupt in.
      const types = d.endpoints
        .map((e) => `${e.bmAttributes & 0x03}${e.bEndpointAddress & 0x80 ? 'i' : 'o'}`)
        .sort()
        .join(',');
      if (types === '2i,2o,3i') out.push({ device, interfaceNumber: d.bInterfaceNumber, protocol: 'mtp', confirm: true, interfaceString: d.iInterface });
    }
  }
  return out;
}

async function describe(c: Candidate, log: Logger): Promise<UsbCameraInfo | undefined> {
  const { device } = c;
  const dd = device.deviceDescriptor;
  const portPath = (device.portNumbers ?? []).join('.');
  const info: UsbCameraInfo = {
    vendorId: dd.idVendor,
    productId: dd.idProduct,
    busNumber: device.busNumber,
    deviceAddress: device.deviceAddress,
    portPath,
    location: `${device.busNumber}-${portPath}`,
    interfaceNumber: c.interfaceNumber,
    protocol: c.protocol,
  };
  let opened = false;
  try {
    device.open(false);
    opened = true;
    if (c.confirm) {
      const name = await stringDescriptor(device, c.interfaceString).catch(() => undefined);
      if (name !== 'MTP' && !(await msOsSaysMtp(device))) return undefined;
    }
    const manufacturer = await stringDescriptor(device, dd.iManufacturer).catch(() => undefined);
    const product = await stringDescriptor(device, dd.iProduct).catch(() => undefined);
    const serialNumber = await stringDescriptor(device, dd.iSerialNumber).catch(() => undefined);
    if (manufacturer !== undefined) info.manufacturer = manufacturer;
    if (product !== undefined) info.product = product;
    if (serialNumber !== undefined) info.serialNumber = serialNumber;
  } catch (err) {
    // A vendor-specific interface we cannot confirm is not listed; a camera we cannot open still is.
    if (c.confirm) return undefined;
    const errno = (err as { errno?: number }).errno;
    info.problem = errno === -3 ? 'no permission to open the device' : errno === -6 ? 'busy' : err instanceof Error ? err.message : String(err);
    log.debug({ err, location: info.location }, 'could not read the camera strings');
  } finally {
    if (opened) {
      try {
        device.close();
      } catch {
        // Nothing to do.
      }
    }
  }
  return info;
}

/** Every camera on the bus in bus/port order, with its device handle. */
export async function findUsbCameras(selector: UsbSelector = { kind: 'any' }, opts: { logger?: Logger } = {}): Promise<FoundUsbCamera[]> {
  const usb = await loadUsb();
  const log = opts.logger ?? silentLogger;
  const found: FoundUsbCamera[] = [];
  for (const device of usb.getDeviceList()) {
    const cands = candidatesOf(device);
    // A device with both shapes is listed once, by its Still Image interface.
    const pick = cands.find((c) => c.protocol === 'ptp') ?? cands[0];
    if (!pick) continue;
    const dd = device.deviceDescriptor;
    const quick = { vendorId: dd.idVendor, productId: dd.idProduct, busNumber: device.busNumber, portPath: (device.portNumbers ?? []).join('.') };
    if (!matchesSelector(quick, selector)) continue;
    const info = await describe(pick, log);
    if (info) found.push({ info, device });
  }
  found.sort((a, b) => a.info.busNumber - b.info.busNumber || comparePorts(a.info.portPath, b.info.portPath));
  return found;
}

function comparePorts(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}
