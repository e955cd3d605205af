/**
 * Source trees, disk images and checks for the hardware-in-the-loop suite, all on this machine: the camera
 * card QEMU serves over MTP, the FAT32 card image, the ext4 destination disk the guest writes (read back
 * here with debugfs, no mount needed), and streaming hashes to compare every byte.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { makeSampleCard } from '../../src/sample/index.js';

export interface TreeFile {
  size: number;
  sha256: string;
}

/** Every regular file under root ('/'-separated relative paths) with size and SHA-256, read as a stream. */
export async function hashTree(root: string, opts: { skip?: (rel: string) => boolean } = {}): Promise<Map<string, TreeFile>> {
  const out = new Map<string, TreeFile>();
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const abs = join(dir, e.name);
      const rel = relative(root, abs).split('\\').join('/');
      if (opts.skip?.(rel)) continue;
      if (e.isDirectory()) await walk(abs);
      else if (e.isFile()) out.set(rel, { size: (await stat(abs)).size, sha256: await sha256File(abs) });
    }
  };
  await walk(root);
  return out;
}

export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

/** Content hashes with multiplicity: a source tree against a destination that renamed everything. */
export function contents(tree: Map<string, TreeFile>): string[] {
  return [...tree.values()].map((f) => `${f.sha256}:${f.size}`).sort();
}

/**
 * A big file written fast: 1 MiB of random bytes, each block stamped with its index so that no two
 * blocks are alike (a transfer that repeats or skips a block changes the hash).
 */
export async function writeBigFile(path: string, size: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const block = randomBytes(1024 * 1024);
  const fh = await open(path, 'w');
  try {
    for (let pos = 0, i = 0; pos < size; pos += block.length, i++) {
      block.writeUInt32LE(i, 0);
      block.writeUInt32LE(i ^ 0x5a5a5a5a, block.length - 4);
      const n = Math.min(block.length, size - pos);
      await fh.write(block, 0, n, pos);
    }
  } finally {
    await fh.close();
  }
}

/**
 * The camera card of the MTP tests: a sample card (RAW+JPEG pairs, names repeated across DCIM folders,
 * sidecars, a voice memo) plus deeper folders and, if asked, big clips.
 */
export async function makeCameraTree(dir: string, opts: { shots: number; perFolder: number; seed: number; clips: number[] }): Promise<void> {
  await makeSampleCard(dir, { count: opts.shots, perFolder: opts.perFolder, seed: opts.seed });
  // Nested folders several levels down, and names that repeat names in DCIM.
  const nested: Array<[string, string]> = [
    ['PRIVATE/M4ROOT/STATUS.BIN', 'status\n'],
    ['PRIVATE/M4ROOT/SUB/A/B/C/IMG_0001.JPG', 'not really a jpeg, same name as one in DCIM\n'],
    ['PRIVATE/M4ROOT/SUB/A/B/notes.txt', 'deep\n'],
    ['DCIM/100CANON/EXTRA/IMG_0002.JPG', 'another repeated name\n'],
  ];
  for (const [rel, text] of nested) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeFile(join(dir, rel), text);
  }
  for (const [i, size] of opts.clips.entries()) await writeBigFile(join(dir, 'PRIVATE/M4ROOT/CLIP', `C${String(i + 1).padStart(4, '0')}.MP4`), size);
}

/** A sparse ext4 image for the guest's destination disk. */
export function makeExt4Image(path: string, sizeBytes: number): void {
  execFileSync('truncate', ['-s', String(sizeBytes), path]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=1,lazy_journal_init=1', path]);
}

/** Copies a folder out of an ext4 image (debugfs rdump: no mount, no loop device). */
export function extractFromExt4(image: string, inside: string, to: string): void {
  execFileSync('mkdir', ['-p', to]);
  execFileSync('debugfs', ['-R', `rdump ${inside} ${to}`, image], { stdio: 'pipe' });
}

/** A FAT32 card image (label EOS_DIGITAL, the given volume id) holding everything under `from`; mtools, no mount. */
export function makeFat32Image(path: string, sizeMiB: number, volumeId: string, from: string): void {
  execFileSync('mkfs.vfat', ['-F', '32', '-n', 'EOS_DIGITAL', '-i', volumeId, '-C', path, String(sizeMiB * 1024)], { stdio: 'pipe' });
  const entries = execFileSync('ls', ['-A', from], { encoding: 'utf8' }).split('\n').filter(Boolean);
  execFileSync('mcopy', ['-s', '-m', '-i', path, ...entries.map((e) => join(from, e)), '::/'], { stdio: 'pipe', env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
}

export interface JournalFacts {
  sources: Array<{ key: string; kind: string; details: Record<string, unknown> }>;
  /** Verified copies by the ingest run that verified them. */
  verifiedByIngest: Map<number, string[]>;
  /** Copies in any other state, by state. */
  otherCopies: Map<string, number>;
  /** Modification time the journal recorded for each source path. */
  mtimes: Map<string, number>;
}

/** What the journal the guest left says, read from its extracted state folder. */
export function readJournal(stateDir: string): JournalFacts {
  const db = new DatabaseSync(join(stateDir, 'journal.sqlite'), { readOnly: true });
  try {
    const sources = (db.prepare('SELECT key, kind, details FROM sources').all() as Array<{ key: string; kind: string; details: string }>).map((s) => ({
      key: s.key,
      kind: s.kind,
      details: JSON.parse(s.details) as Record<string, unknown>,
    }));
    const verifiedByIngest = new Map<number, string[]>();
    const otherCopies = new Map<string, number>();
    const rows = db.prepare('SELECT c.state, c.ingest_id, f.rel_path FROM copies c JOIN files f ON f.id = c.file_id').all() as Array<{
      state: string;
      ingest_id: number;
      rel_path: string;
    }>;
    for (const r of rows) {
      if (r.state === 'verified') verifiedByIngest.set(r.ingest_id, [...(verifiedByIngest.get(r.ingest_id) ?? []), r.rel_path]);
      else otherCopies.set(r.state, (otherCopies.get(r.state) ?? 0) + 1);
    }
    const mtimes = new Map<string, number>();
    for (const f of db.prepare('SELECT rel_path, mtime_ms FROM files').all() as Array<{ rel_path: string; mtime_ms: number }>) mtimes.set(f.rel_path, f.mtime_ms);
    return { sources, verifiedByIngest, otherCopies, mtimes };
  } finally {
    db.close();
  }
}

/** A line a guest helper stamped with the guest's clock: "HIL:stamp NAME EPOCH_MS TEXT" (test/hil/guest/stamp.mjs). */
export interface Stamp {
  name: string;
  /** The guest's Date.now() when the line was stamped. */
  guestMs: number;
  text: string;
  /** This machine's Date.now() when the console line arrived. */
  hostMs: number;
}

/**
 * Console lines of a guest as they arrive (pass `add` as the guest's onLine): stamped lines by name, and
 * waits for the n-th line matching a pattern that end early, with the console, when the guest exits.
 */
export class GuestLines {
  readonly all: string[] = [];
  readonly stamps: Stamp[] = [];
  /** The guest's real-time and monotonic clocks, and this machine's clock when the line arrived, from "HIL:clock MS MONO" lines. */
  readonly clocks: Array<{ guestMs: number; monoMs: number; hostMs: number }> = [];
  private readonly waiters = new Set<{ pattern: RegExp; n: number; resolve: () => void }>();
  private readonly probes = new Set<() => void>();

  add(line: string): void {
    const hostMs = Date.now();
    this.all.push(line);
    const s = /HIL:stamp (\S+) (\d+) (.*)$/.exec(line);
    if (s) this.stamps.push({ name: s[1]!, guestMs: Number(s[2]), text: s[3]!, hostMs });
    const c = /HIL:clock (\d+) ([\d.]+)$/.exec(line);
    if (c) this.clocks.push({ guestMs: Number(c[1]), monoMs: Number(c[2]), hostMs });
    for (const w of this.waiters) {
      if (this.count(w.pattern) >= w.n) {
        this.waiters.delete(w);
        w.resolve();
      }
    }
    for (const p of this.probes) p();
  }

  /**
   * Resolves with what `probe` returns once it returns something, asked again after every line; rejects
   * after `timeoutMs` or when the guest exits first.
   */
  until<T>(probe: () => T | undefined, why: string, timeoutMs: number, exited: Promise<unknown>): Promise<T> {
    const now = probe();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const finish = (err?: Error, value?: T): void => {
        this.probes.delete(check);
        clearTimeout(t);
        if (err) reject(err);
        else resolve(value as T);
      };
      const check = (): void => {
        const v = probe();
        if (v !== undefined) finish(undefined, v);
      };
      const fail = (reason: string): void => finish(new Error(`${why}: ${reason}\n--- console ---\n${this.all.slice(-60).join('\n')}`));
      const t = setTimeout(() => fail(`nothing within ${timeoutMs} ms`), timeoutMs);
      this.probes.add(check);
      void exited.then(() => {
        if (this.probes.has(check)) fail('the guest exited');
      });
    });
  }

  count(pattern: RegExp): number {
    return this.all.filter((l) => pattern.test(l)).length;
  }

  /** Resolves once `n` lines matched `pattern`; rejects after `timeoutMs` or when the guest exits first. */
  nth(pattern: RegExp, n: number, timeoutMs: number, exited: Promise<unknown>): Promise<void> {
    if (this.count(pattern) >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const fail = (why: string): void => {
        this.waiters.delete(w);
        reject(new Error(`${why}: waiting for line ${n} matching ${pattern}\n--- console ---\n${this.all.slice(-80).join('\n')}`));
      };
      const t = setTimeout(() => fail(`nothing within ${timeoutMs} ms`), timeoutMs);
      const w = {
        pattern,
        n,
        resolve: () => {
          clearTimeout(t);
          resolve();
        },
      };
      this.waiters.add(w);
      void exited.then(() => {
        if (this.waiters.has(w)) {
          clearTimeout(t);
          fail('the guest exited');
        }
      });
    });
  }

  /** The JSON objects stamped under `name` (the lines a command printed, forwarded by stamp.mjs). */
  json(name: string): Array<Record<string, unknown> & { guestMs: number }> {
    return this.stamps.filter((s) => s.name === name && s.text.startsWith('{')).map((s) => ({ ...(JSON.parse(s.text) as Record<string, unknown>), guestMs: s.guestMs }));
  }

  /**
   * This machine's clock minus the guest's, from the "HIL:clock" lines: the smallest difference seen, since
   * a line can only arrive after it was stamped (its delay on the serial console is what remains).
   */
  clockOffsetMs(): number {
    if (this.clocks.length === 0) throw new Error('the guest printed no HIL:clock lines');
    return Math.min(...this.clocks.map((c) => c.hostMs - c.guestMs));
  }

  /** The guest's real-time clock minus its monotonic clock (both read in the same instant by stamp.mjs). */
  monotonicOffsetMs(): number {
    const c = this.clocks[0];
    if (!c) throw new Error('the guest printed no HIL:clock lines');
    return c.guestMs - c.monoMs;
  }
}

/**
 * ObjectAdded events (0x4002) the device sent on an interrupt IN endpoint, from usbmon's text log (0u):
 * the object handle and usbmon's timestamp (µs of the guest's monotonic clock modulo 4096 s, which is the
 * monotonic clock itself in a guest up for less than that).
 */
export function objectAddedInUsbmon(text: string): Array<{ handle: number; usbmonUs: number }> {
  const out: Array<{ handle: number; usbmonUs: number }> = [];
  // "TAG TIMESTAMP C Ii:BUS:DEV:EP STATUS:INTERVAL LENGTH = WORDS": an event container is 16 bytes,
  // length 0x10, type 4, code 0x4002, transaction 0, then the handle, each word as the bytes come.
  const re = /^\S+ (\d+) C Ii:\d+:\d+:\d+ \S+ 16 = 10000000 04000240 00000000 ([0-9a-f]{8})/gm;
  for (const m of text.matchAll(re)) out.push({ handle: Buffer.from(m[2]!, 'hex').readUInt32LE(0), usbmonUs: Number(m[1]) });
  return out;
}
