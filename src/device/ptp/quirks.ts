/**
 * Device quirks as data: what a camera does differently from the standard, looked up by what DeviceInfo
 * says (and, for USB, vendor/product ids the USB layer adds later). The protocol layers read flags;
 * they never test for brands themselves.
 */
import { VendorExtension } from './codes.js';
import type { DeviceInfo } from './datasets.js';

export interface PtpQuirks {
  /** Accept a response carrying transaction id 0 as the reply to the current transaction (Leica answers CloseSession that way). */
  acceptZeroTransactionId: boolean;
  /** ObjectInfo may carry a 64-bit CompressedSize (Samsung Galaxy); see decodeObjectInfo. */
  detectObjectSize64: boolean;
  /** Do not use GetPartialObject even when offered (Fuji, libgphoto2 #653): download with one GetObject. */
  avoidPartialObject: boolean;
  /** Block size for partial downloads; libgphoto2 uses 1 MiB ("EOS R does not like 5MB blobs"). */
  partialObjectBlockSize: number;
  /** Inactivity timeout for ordinary operations in milliseconds (libgphoto2: 20 s). */
  operationTimeoutMs: number;
  /**
   * Slowest a data-in phase may deliver, in bytes per second over `dataRateWindowMs` of waiting for the
   * device (time the reader spends on a chunk does not count); 0 turns the floor off. A device that
   * trickles a byte now and then is never silent long enough for the inactivity timeout.
   */
  minDataRate: number;
  dataRateWindowMs: number;
  /**
   * IANA zone the device writes ObjectInfo dates in when it adds no zone marker, if that is a property of
   * the device rather than of its owner's clock (QEMU usb-mtp writes UTC). Undefined: the camera clock's
   * zone from configuration applies.
   */
  objectDatesZone: string | undefined;
  /** A capture ends with the new object's announcement: the device never sends CaptureComplete although it may list it. */
  noCaptureComplete: boolean;
  /** Time after the remote-mode connect before the body can be fired, in milliseconds (0: at once). */
  captureWarmUpMs: number;
}

export const DEFAULT_QUIRKS: Readonly<PtpQuirks> = Object.freeze({
  acceptZeroTransactionId: false,
  detectObjectSize64: false,
  avoidPartialObject: false,
  partialObjectBlockSize: 1024 * 1024,
  operationTimeoutMs: 20_000,
  // Far below a camera on a weak Wi-Fi link; a trickle slower than this would hold a 30 MB RAW for half an hour.
  minDataRate: 16 * 1024,
  dataRateWindowMs: 30_000,
  objectDatesZone: undefined,
  noCaptureComplete: false,
  captureWarmUpMs: 0,
});

interface QuirkRule {
  /** Matched against DeviceInfo.Manufacturer. */
  manufacturer: RegExp;
  model?: RegExp;
  quirks: Partial<PtpQuirks>;
  why: string;
}

const RULES: readonly QuirkRule[] = [
  { manufacturer: /leica/i, quirks: { acceptZeroTransactionId: true }, why: 'Leica answers CloseSession with transaction id 0 (libgphoto2 ptp.c)' },
  { manufacturer: /samsung/i, quirks: { detectObjectSize64: true }, why: 'Samsung Galaxy emits a 64-bit ObjectCompressedSize (libgphoto2 ptp-pack.c)' },
  { manufacturer: /fujifilm/i, quirks: { avoidPartialObject: true }, why: 'Fuji mishandles GetPartialObject in 1 MiB blocks (libgphoto2 #653)' },
  {
    manufacturer: /leica/i,
    model: /\b(Q3|SL3)\b/i,
    quirks: { noCaptureComplete: true },
    why: 'Leica Q3 and SL3 announce the new image but send no CaptureComplete (libgphoto2 device table; gphoto2 #601, libgphoto2 #1203)',
  },
  {
    manufacturer: /sony/i,
    quirks: { avoidPartialObject: true },
    why: 'a Sony body in PC Remote mode serves each shot once at its memory handle, and libgphoto2 reads it with one GetObject (library.c)',
  },
  {
    manufacturer: /sony/i,
    model: /^(ZV-E10|ZV-1|DSC-RX100M7|ILCE-7RM4A?|DSC-RX0M2|ILCE-7M3|ILCE-7SM3|ILCE-7M4|ILCE-7M5|ILCE-9M2|ILCE-1|ILCE-7C)$/,
    quirks: { captureWarmUpMs: 3000 },
    why: 'these Sony bodies cannot be fired for about 3 s after the remote-mode connect (libgphoto2 camera_sony_capture)',
  },
];

function matchingRules(info: Pick<DeviceInfo, 'manufacturer' | 'model'> | undefined): QuirkRule[] {
  if (!info) return [];
  return RULES.filter((rule) => rule.manufacturer.test(info.manufacturer) && (!rule.model || rule.model.test(info.model)));
}

/** Quirks for a device, from its DeviceInfo, with explicit overrides (configuration) applied last. */
export function quirksFor(info: Pick<DeviceInfo, 'manufacturer' | 'model'> | undefined, overrides: Partial<PtpQuirks> = {}): PtpQuirks {
  const q: PtpQuirks = { ...DEFAULT_QUIRKS };
  for (const rule of matchingRules(info)) Object.assign(q, rule.quirks);
  return Object.assign(q, overrides);
}

// ---- USB: quirks keyed by vendor/product id, and the vendor behind an MTP-flavoured camera ----

export interface UsbDeviceIds {
  vendorId: number;
  productId: number;
}

/** How the USB transport talks to a device below the PTP layer. */
export interface UsbTransportQuirks {
  /** The device answers the class request Get Device Status (0x67); it is polled after a cancel until the device is idle. */
  deviceStatusRequest: boolean;
  /** The device answers the class request Device Reset (0x66); without it, recovery is Cancel plus clear-halt. */
  deviceResetRequest: boolean;
}

export const DEFAULT_USB_QUIRKS: Readonly<UsbTransportQuirks> = Object.freeze({
  deviceStatusRequest: true,
  deviceResetRequest: true,
});

export interface UsbQuirkRule {
  /** What the device is, for listings and the generated udev rules. */
  name: string;
  vendorId: number;
  /** Every product of the vendor when absent. */
  productId?: number;
  ptp?: Partial<PtpQuirks>;
  usb?: Partial<UsbTransportQuirks>;
  why: string;
}

/** Exported as data: scripts/gen-udev-rules.ts gives every USB id listed here to the service user. */
export const USB_QUIRK_RULES: readonly UsbQuirkRule[] = [
  {
    name: 'QEMU usb-mtp',
    vendorId: 0x46f4,
    productId: 0x0004,
    ptp: { objectDatesZone: 'UTC' },
    usb: { deviceStatusRequest: false, deviceResetRequest: false },
    why: 'QEMU usb-mtp answers only the Cancel class request and writes ObjectInfo dates in UTC without a zone marker (hw/usb/dev-mtp.c)',
  },
];

/** Camera and phone makers by USB vendor id. */
const USB_VENDORS: ReadonlyMap<number, string> = new Map([
  [0x040a, 'Kodak'],
  [0x04a9, 'Canon'],
  [0x04b0, 'Nikon'],
  [0x04cb, 'Fujifilm'],
  [0x04da, 'Panasonic'],
  [0x04e8, 'Samsung'],
  [0x054c, 'Sony'],
  [0x05ca, 'Ricoh'],
  [0x07b4, 'Olympus'],
  [0x07cf, 'Casio'],
  [0x0a17, 'Pentax'],
  [0x1003, 'Sigma'],
  [0x18d1, 'Google'],
  [0x1a98, 'Leica'],
  [0x2672, 'GoPro'],
  [0x46f4, 'QEMU'],
]);

/** PTP vendor extension ids that name a maker (6 is Microsoft's MTP, which many makers report). */
const VENDOR_EXTENSIONS: ReadonlyMap<number, string> = new Map([
  [VendorExtension.Nikon, 'Nikon'],
  [VendorExtension.Canon, 'Canon'],
  [VendorExtension.Fuji, 'Fujifilm'],
  [VendorExtension.Sony, 'Sony'],
]);

/**
 * The camera's maker. The vendor extension id names it, except that newer Canon and Nikon bodies (and
 * most others) report 6, Microsoft's MTP: then the USB vendor id decides, as in libgphoto2.
 */
export function vendorOf(info: Pick<DeviceInfo, 'vendorExtensionId'> | undefined, usb?: UsbDeviceIds): string | undefined {
  const ext = info ? VENDOR_EXTENSIONS.get(info.vendorExtensionId) : undefined;
  return ext ?? (usb ? USB_VENDORS.get(usb.vendorId) : undefined);
}

function matchingUsbRules(usb: UsbDeviceIds | undefined): UsbQuirkRule[] {
  if (!usb) return [];
  return USB_QUIRK_RULES.filter((r) => r.vendorId === usb.vendorId && (r.productId === undefined || r.productId === usb.productId));
}

/** What the USB vendor/product id adds: PTP quirks (to pass as overrides below configuration) and transport quirks. */
export function usbQuirksFor(usb: UsbDeviceIds): { ptp: Partial<PtpQuirks>; usb: UsbTransportQuirks } {
  const ptp: Partial<PtpQuirks> = {};
  const transport: UsbTransportQuirks = { ...DEFAULT_USB_QUIRKS };
  for (const rule of matchingUsbRules(usb)) {
    Object.assign(ptp, rule.ptp);
    Object.assign(transport, rule.usb);
  }
  return { ptp, usb: transport };
}

export interface QuirkExplanation {
  ptp: PtpQuirks;
  usb: UsbTransportQuirks;
  vendor: string | undefined;
  /** Every rule that matched, with the settings it changes and why. */
  applied: Array<{ settings: Record<string, unknown>; why: string }>;
}

/** Every quirk decision for a device and its reason (what `shuttle devices` shows). */
export function explainQuirks(
  info: (Pick<DeviceInfo, 'manufacturer' | 'model'> & Partial<Pick<DeviceInfo, 'vendorExtensionId'>>) | undefined,
  usb?: UsbDeviceIds,
): QuirkExplanation {
  const applied: QuirkExplanation['applied'] = [];
  const fromUsb = usb ? usbQuirksFor(usb) : { ptp: {}, usb: { ...DEFAULT_USB_QUIRKS } };
  for (const rule of matchingRules(info)) applied.push({ settings: { ...rule.quirks }, why: rule.why });
  for (const rule of matchingUsbRules(usb)) applied.push({ settings: { ...rule.ptp, ...rule.usb }, why: rule.why });
  const vendor = vendorOf(info?.vendorExtensionId === undefined ? undefined : { vendorExtensionId: info.vendorExtensionId }, usb);
  return { ptp: quirksFor(info, fromUsb.ptp), usb: fromUsb.usb, vendor, applied };
}
