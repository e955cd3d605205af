/**
 * Reading and writing reports on an open HID device: the loop a pedal reads with (ended by an
 * AbortSignal) and the one write call a light driver's reports go through.
 */
import type { HidConnection } from './backend.js';

/** A report for a device: its bytes start with the report ID (0 when the device numbers none). */
export interface HidReport {
  kind: 'output' | 'feature';
  bytes: Uint8Array;
}

/** How long one read waits before the loop looks at its signal again. */
const READ_SLICE_MS = 250;

/**
 * Hands every input report to `onReport` until `signal` aborts (then resolves) or the device fails
 * (rejects, DEVICE_GONE when it was unplugged).
 */
export async function readReports(conn: HidConnection, signal: AbortSignal, onReport: (report: Uint8Array) => void): Promise<void> {
  while (!signal.aborted) {
    const report = await conn.read(READ_SLICE_MS);
    if (report !== undefined && !signal.aborted) onReport(report);
  }
}

/** Writes one report the way its kind travels: an output report on the interrupt pipe (or SET_REPORT), a feature report by SET_REPORT. */
export function writeReport(conn: HidConnection, report: HidReport): Promise<number> {
  return report.kind === 'feature' ? conn.sendFeatureReport(report.bytes) : conn.write(report.bytes);
}
