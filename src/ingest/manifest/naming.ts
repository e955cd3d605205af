import path from 'node:path';

export const ASCMHL_FOLDER = 'ascmhl';
export const CHAIN_FILE_NAME = 'ascmhl_chain.xml';
export const MHL_NAMESPACE = 'urn:ASC:MHL:v2.0';
export const MHL_DIRECTORY_NAMESPACE = 'urn:ASC:MHL:DIRECTORY:v2.0';
/** Suffix of every temp file Shuttle leaves while writing; verification skips these. */

/** `NNNN` (4 digits, more past 9999), then anything, then `.mhl`. `._` AppleDouble twins are not generations. */
const GENERATION_NAME = /^(\d{4,})(?:_.*)?\.mhl$/s;

export function ascmhlDir(destRoot: string): string {
  return path.join(destRoot, ASCMHL_FOLDER);
}

/** The folder name the spec puts in generation file names; '/' itself has none, so fall back to 'root'. */
export function rootFolderName(destRoot: string): string {
  return path.basename(path.resolve(destRoot)) || 'root';
}

/** `YYYY-MM-DD_HHMMSSZ` in UTC, as the spec's file naming convention wants. */
export function fileNameTimestamp(date: Date): string {
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${p(date.getUTCFullYear(), 4)}-${p(date.getUTCMonth() + 1)}-${p(date.getUTCDate())}_` + `${p(date.getUTCHours())}${p(date.getUTCMinutes())}${p(date.getUTCSeconds())}Z`;
}

export function generationFileName(sequence: number, folderName: string, date: Date): string {
  return `${String(sequence).padStart(4, '0')}_${folderName}_${fileNameTimestamp(date)}.mhl`;
}

/** The sequence number a generation file name carries, or undefined when the name is not a generation's. */
export function sequenceOfFileName(name: string): number | undefined {
  if (name.startsWith('._')) return undefined;
  const m = GENERATION_NAME.exec(name);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/** xs:dateTime with millisecond precision in UTC; `Date#toISOString` already has that shape. */
export function formatDateTime(date: Date): string {
  return date.toISOString();
}

const XS_DATE_TIME = /^-?\d{4,}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?$/;

/** Parses an xs:dateTime; undefined when the text is not one. */
export function parseDateTime(text: string): Date | undefined {
  const t = text.trim();
  if (!XS_DATE_TIME.test(t)) return undefined;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? undefined : new Date(ms);
}
