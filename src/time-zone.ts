/**
 * Wall clocks in time zones, for naming files by capture time and for reading and writing camera dates.
 * A zone given as `undefined` is this system's (TZ, else /etc/localtime): read through Date's local time,
 * never through Intl, whose first formatter loads ICU's locale data. That cost 50 ms of every start here
 * and most of a second in the TCG test guest, for commands that mostly never name a zone. UTC needs
 * neither. Only a named zone builds an Intl formatter, once per zone.
 */

/** A calendar date and time of day, with no zone attached. */
export interface WallClock {
  /** Astronomical numbering: 0 is 1 BC. */
  year: number;
  /** 1–12 */
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  millisecond: number;
}

import { ShuttleError } from './errors.js';

/** Zones found valid: the check builds a formatter, which costs more than the rest of naming a file. */
const knownTimeZones = new Set<string>();

/** True when `timeZone` is an IANA zone this runtime knows (any case: Intl accepts `europe/berlin`). */
export function isValidTimeZone(timeZone: string): boolean {
  if (knownTimeZones.has(timeZone) || isUtc(timeZone)) return true;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
  } catch {
    return false;
  }
  knownTimeZones.add(timeZone);
  return true;
}

/** A zone a setting names (undefined = this system's) that this runtime does not know: CONFIG_INVALID. */
export function checkTimeZone(timeZone: string | undefined): void {
  if (timeZone !== undefined && !isValidTimeZone(timeZone)) {
    throw new ShuttleError('CONFIG_INVALID', `unknown time zone "${timeZone}" (expected an IANA name such as "Europe/Berlin")`, {
      context: { timeZone },
    });
  }
}

const UTC_NAMES = new Set(['utc', 'etc/utc', 'gmt', 'etc/gmt', 'etc/universal', 'universal', 'etc/zulu', 'zulu', 'etc/gmt0', 'gmt0', 'etc/uct', 'uct']);

function isUtc(timeZone: string): boolean {
  return UTC_NAMES.has(timeZone.toLowerCase());
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (f === undefined) {
    // Throws RangeError for a zone Intl does not know; callers check names first (isValidTimeZone).
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
      era: 'short',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The instant whose UTC fields are the wall clock `w` (years below 100 included, which Date.UTC remaps). */
export function wallAsUtcMs(w: WallClock): number {
  const d = new Date(0);
  d.setUTCFullYear(w.year, w.month - 1, w.day);
  d.setUTCHours(w.hour, w.minute, w.second, w.millisecond);
  return d.getTime();
}

/** Offset of the zone from UTC at an instant, in milliseconds, positive east of Greenwich. */
export function zoneOffsetMs(epochMs: number, timeZone: string | undefined): number {
  if (timeZone === undefined) {
    // Date counts minutes west of Greenwich; negated as is, UTC would come out as -0.
    const west = new Date(epochMs).getTimezoneOffset();
    return west === 0 ? 0 : -west * 60_000;
  }
  if (isUtc(timeZone)) return 0;
  const whole = Math.floor(epochMs / 1000) * 1000;
  const parts: Record<string, string> = {};
  for (const p of formatterFor(timeZone).formatToParts(new Date(whole))) parts[p.type] = p.value;
  const yearOfEra = Number(parts['year']);
  const year = parts['era'] === 'BC' || parts['era'] === 'B' ? 1 - yearOfEra : yearOfEra;
  const wall = {
    year,
    month: Number(parts['month']),
    day: Number(parts['day']),
    hour: Number(parts['hour']),
    minute: Number(parts['minute']),
    second: Number(parts['second']),
    millisecond: 0,
  };
  return wallAsUtcMs(wall) - whole;
}

/** Wall clock of an instant in a zone (undefined = this system's). */
export function wallClockAt(epochMs: number, timeZone?: string): WallClock {
  const d = new Date(epochMs + zoneOffsetMs(epochMs, timeZone));
  return {
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    second: d.getUTCSeconds(),
    millisecond: d.getUTCMilliseconds(),
  };
}

/**
 * The instant a wall-clock time names in a zone (undefined = this system's). When the clock was set back
 * (the hour happens twice) the earlier instant is taken; when it jumped forward (the time never happened)
 * the offset before the jump is used, which lands after the gap: the same choice as Temporal's 'compatible'.
 */
export function instantOf(w: WallClock, timeZone?: string): { epochMs: number; offsetMinutes: number } {
  const asUtc = wallAsUtcMs(w);
  const offsetMinutes = (t: number): number => Math.round(zoneOffsetMs(t, timeZone) / 60_000);
  const day = 86_400_000;
  const before = offsetMinutes(asUtc - day);
  const candidates: Array<{ epochMs: number; offsetMinutes: number }> = [];
  for (const off of new Set([before, offsetMinutes(asUtc + day), offsetMinutes(asUtc)])) {
    const t = asUtc - off * 60_000;
    if (offsetMinutes(t) === off) candidates.push({ epochMs: t, offsetMinutes: off });
  }
  candidates.sort((a, b) => a.epochMs - b.epochMs);
  return candidates[0] ?? { epochMs: asUtc - before * 60_000, offsetMinutes: before };
}
