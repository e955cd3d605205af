import type { HashAlgorithm, HashSet } from '../../io/hashing.js';

export type MhlAction = 'original' | 'verified' | 'failed';
export type MhlProcessType = 'transfer' | 'in-place' | 'flatten';

export const MHL_ACTIONS: readonly MhlAction[] = ['original', 'verified', 'failed'];
export const MHL_PROCESS_TYPES: readonly MhlProcessType[] = ['transfer', 'in-place', 'flatten'];

/**
 * Every hash element the v2.0 schema allows inside `<hash>`, in the order its `<sequence>` demands
 * (alphabetical), so writers that follow this order produce schema-valid documents.
 */
export const MHL_HASH_FORMATS = ['c4', 'md5', 'sha1', 'xxh128', 'xxh3', 'xxh64'] as const;
export type MhlHashFormat = (typeof MHL_HASH_FORMATS)[number];

/** The algorithms Shuttle can both compute and record in an MHL (sha256 has no MHL element), in schema order. */
export const MHL_ALGORITHMS = ['md5', 'xxh128', 'xxh64'] as const satisfies readonly HashAlgorithm[];
export type MhlAlgorithm = (typeof MHL_ALGORITHMS)[number];

export function isMhlAlgorithm(name: string): name is MhlAlgorithm {
  return (MHL_ALGORITHMS as readonly string[]).includes(name);
}

/** One file to record in a new generation. */
export interface ManifestEntry {
  /** Relative to the destination root, '/'-separated. */
  path: string;
  size: number;
  lastModified: Date;
  /** Only the MHL algorithms (md5, xxh128, xxh64) are written; at least one must be present. */
  hashes: HashSet;
  action: MhlAction;
  hashDate: Date;
}

export interface MhlAuthor {
  name: string;
  email?: string;
  phone?: string;
  role?: string;
}

/** Who wrote a generation. */
export interface CreatorInfo {
  tool: { name: string; version: string };
  /** Defaults to os.hostname(). */
  hostname?: string;
  author?: MhlAuthor;
  location?: string;
  comment?: string;
}

export interface GenerationInfo extends CreatorInfo {
  process: MhlProcessType;
  /** Recorded after the previous generation's patterns and the reference tool's defaults, which are kept. */
  ignore?: readonly string[];
  /** When the operation started; goes into `creationdate` and the file name. Defaults to now. */
  creationDate?: Date;
}

export interface WrittenGeneration {
  sequence: number;
  /** Absolute path of the new .mhl file. */
  file: string;
  c4: string;
}

/** One hash element as read from a generation. */
export interface RecordedHash {
  format: MhlHashFormat;
  /** Lowercase for the hex formats; c4 as written. */
  value: string;
  action: MhlAction;
  hashDate?: Date;
}

/** One `<hash>` element as read from a generation. */
export interface RecordedFile {
  path: string;
  size?: number;
  lastModified?: Date;
  creationDate?: Date;
  previousPath?: string;
  hashes: RecordedHash[];
}

/** A generation document, parsed. */
export interface ParsedGeneration {
  creator: {
    creationDate: Date;
    hostname: string;
    tool: { name: string; version?: string };
    authors: MhlAuthor[];
    location?: string;
    comment?: string;
  };
  process: MhlProcessType;
  ignore: string[];
  files: RecordedFile[];
}

/** One generation of a history, as the chain lists it and as its file says. */
export interface GenerationSummary {
  sequence: number;
  /** File name inside `ascmhl/`. */
  name: string;
  c4: string;
  creationDate: Date;
  hostname: string;
  tool: { name: string; version?: string };
  process: MhlProcessType;
  ignore: string[];
  fileCount: number;
}

/** What the history knows about one path. */
export interface KnownFile {
  path: string;
  /** The newest record of the path. */
  latest: {
    generation: number;
    size?: number;
    lastModified?: Date;
    /** Values of the formats Shuttle computes (md5, xxh128, xxh64) in that record. */
    hashes: HashSet;
    actions: Partial<Record<MhlAlgorithm, MhlAction>>;
    /** Formats in that record Shuttle cannot compute (c4, sha1, xxh3), kept for reporting. */
    otherFormats: Partial<Record<MhlHashFormat, string>>;
  };
  /**
   * Values a verification compares against: per algorithm, the newest value labelled original or verified
   * (the spec forbids verifying against failed ones), so a file changed once keeps failing afterwards.
   */
  reference: HashSet;
  /** Size recorded with the newest original/verified record, if any. */
  referenceSize?: number;
}

export interface History {
  root: string;
  generations: GenerationSummary[];
  files: Map<string, KnownFile>;
  /** Generation-named .mhl files in `ascmhl/` that the chain does not list (not trusted). */
  orphans: string[];
}
