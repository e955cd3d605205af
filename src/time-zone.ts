/** Zones found valid: the check builds a formatter, which costs more than the rest of naming a file. */
const knownTimeZones = new Set<string>();

/** True when `timeZone` is an IANA zone this runtime knows (any case: Intl accepts `europe/berlin`). */
export function isValidTimeZone(timeZone: string): boolean {
  if (knownTimeZones.has(timeZone)) return true;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
  } catch {
    return false;
  }
  knownTimeZones.add(timeZone);
  return true;
}
