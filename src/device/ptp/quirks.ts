/**
 * Device quirks as data: what a camera does differently from the standard, looked up by what DeviceInfo
 * says (and, for USB, vendor/product ids the USB layer adds later). The protocol layers read flags;
 * they never test for brands themselves.
 */
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
}

export const DEFAULT_QUIRKS: Readonly<PtpQuirks> = Object.freeze({
  acceptZeroTransactionId: false,
  detectObjectSize64: false,
  avoidPartialObject: false,
  partialObjectBlockSize: 1024 * 1024,
  operationTimeoutMs: 20_000,
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
];

/** Quirks for a device, from its DeviceInfo, with explicit overrides (configuration) applied last. */
export function quirksFor(info: Pick<DeviceInfo, 'manufacturer' | 'model'> | undefined, overrides: Partial<PtpQuirks> = {}): PtpQuirks {
  const q: PtpQuirks = { ...DEFAULT_QUIRKS };
  if (info) {
    for (const rule of RULES) {
      if (rule.manufacturer.test(info.manufacturer) && (!rule.model || rule.model.test(info.model))) Object.assign(q, rule.quirks);
    }
  }
  return Object.assign(q, overrides);
}
