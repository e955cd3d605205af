/**
 * The system's zone (no zone named) and UTC are read without Intl, whose first formatter is most of a
 * second of start-up in the TCG guest; the answers must still be those a named zone gives.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { formatPtpDate, parsePtpDate } from '../src/device/ptp/codec.js';
import * as tz from '../src/time-zone.js';
import { instantOf, isValidTimeZone, wallClockAt, zoneOffsetMs } from '../src/time-zone.js';

/** Runs `fn` with this process's zone set to `tz` (Node re-reads TZ when it is assigned). */
function inZone<T>(tz: string, fn: () => T): T {
  const saved = process.env['TZ'];
  process.env['TZ'] = tz;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env['TZ'];
    else process.env['TZ'] = saved;
  }
}

describe('time zones', () => {
  test('the-system-zone-gives-what-the-same-zone-by-name-gives-across-dst-changes', () => {
    const instants = [
      Date.UTC(2024, 2, 31, 0, 59, 59),
      Date.UTC(2024, 2, 31, 1, 0, 0),
      Date.UTC(2024, 9, 27, 0, 30),
      Date.UTC(2024, 9, 27, 1, 30),
      Date.UTC(1999, 11, 31, 23, 59),
      0,
    ];
    const walls = [
      { year: 2024, month: 3, day: 31, hour: 2, minute: 30, second: 0, millisecond: 0 },
      { year: 2024, month: 10, day: 27, hour: 2, minute: 30, second: 0, millisecond: 0 },
    ];
    for (const zone of ['Europe/Berlin', 'America/St_Johns', 'Australia/Lord_Howe', 'UTC']) {
      const system = inZone(zone, () => ({
        walls: instants.map((t) => wallClockAt(t)),
        offsets: instants.map((t) => zoneOffsetMs(t, undefined)),
        instants: walls.map((w) => instantOf(w)),
        ptp: parsePtpDate('20240715T143000', undefined),
      }));
      expect(system, zone).toEqual({
        walls: instants.map((t) => wallClockAt(t, zone)),
        offsets: instants.map((t) => zoneOffsetMs(t, zone)),
        instants: walls.map((w) => instantOf(w, zone)),
        ptp: instantOf({ year: 2024, month: 7, day: 15, hour: 14, minute: 30, second: 0, millisecond: 0 }, zone).epochMs,
      });
    }
  });

  test('neither-the-system-zone-nor-utc-builds-an-intl-formatter', () => {
    const Real = Intl.DateTimeFormat;
    let formatters = 0;
    Intl.DateTimeFormat = function (...args: ConstructorParameters<typeof Real>) {
      formatters++;
      return new Real(...args);
    } as unknown as typeof Intl.DateTimeFormat;
    try {
      const t = Date.UTC(2024, 6, 15, 12);
      const wall = inZone('Asia/Kolkata', () => {
        tz.wallClockAt(t, 'UTC');
        tz.wallClockAt(t, 'Etc/UTC');
        tz.instantOf({ year: 2024, month: 7, day: 15, hour: 14, minute: 30, second: 0, millisecond: 0 });
        parsePtpDate('20240715T143000', undefined);
        parsePtpDate('20240715T143000', 'UTC');
        formatPtpDate(t, { timeZone: undefined });
        return tz.wallClockAt(t);
      });
      expect(wall).toEqual({ year: 2024, month: 7, day: 15, hour: 17, minute: 30, second: 0, millisecond: 0 });
      expect(formatters).toBe(0);
      // The control: a zone named for the first time does build one, which the count would have seen.
      tz.wallClockAt(t, 'Asia/Tbilisi');
      expect(formatters).toBe(1);
    } finally {
      Intl.DateTimeFormat = Real;
    }
  });

  test('a-named-zone-round-trips-any-instant-through-its-wall-clock', () => {
    const zones = ['Europe/Berlin', 'America/Los_Angeles', 'Asia/Kathmandu', 'Pacific/Chatham'];
    fc.assert(
      fc.property(fc.integer({ min: Date.UTC(1970, 0, 1), max: Date.UTC(2100, 0, 1) }), fc.constantFrom(...zones), (t, zone) => {
        const back = instantOf(wallClockAt(t, zone), zone).epochMs;
        // Exact, except in the hour a DST change repeats, where the earlier of the two instants is taken.
        expect(back === t || (back < t && t - back <= 3_600_000)).toBe(true);
      }),
    );
  });

  test('utc-by-any-of-its-names-is-valid-and-an-unknown-name-is-not', () => {
    for (const name of ['UTC', 'utc', 'Etc/UTC', 'GMT', 'Europe/Berlin']) expect(isValidTimeZone(name), name).toBe(true);
    for (const name of ['Mars/Olympus', '', 'UTC+1']) expect(isValidTimeZone(name), name).toBe(false);
  });
});
