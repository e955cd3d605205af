import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { expect } from 'vitest';
import { DEFAULT_SAMPLE_CAMERA } from '../../src/sample/index.js';
import { jpegWithExif } from '../../src/sample/content.js';
import { Prng } from '../../src/sample/prng.js';
import { spawnCli } from './cli.js';

/** `shuttle tether --json` as the tethering suites drive it: its events, waited for as they come. */
export interface TetherEvent {
  event: string;
  name?: string;
  files?: string[];
  preview?: string | null;
  ms?: { verified: number; preview: number | null } | null;
  copied?: number;
  alreadyVerified?: number;
  failed?: number;
  status?: string;
  queued?: boolean;
  upload?: { queued: number; pending: number };
  /** reconnected: attempts it took, files found on the camera, reconnects so far. */
  attempts?: number;
  found?: number;
  reconnects?: number;
  error?: { code: string; message: string };
}

/**
 * Puts files into a simulated camera's `folder` the way a camera finishes them: written whole in `aside`
 * (a folder the simulator does not watch), then renamed in, so that it never announces a partial file.
 */
export async function dropFiles(files: ReadonlyMap<string, Buffer>, aside: string, folder: string): Promise<void> {
  await mkdir(aside, { recursive: true });
  for (const [name, data] of files) await writeFile(join(aside, name), data);
  await Promise.all([...files.keys()].map((name) => rename(join(aside, name), join(folder, name))));
}

/** A real JPEG with camera EXIF (96×64), different for every name. */
export const shotJpeg = (name: string): Promise<Buffer> =>
  jpegWithExif(Prng.from(13, name), { ...DEFAULT_SAMPLE_CAMERA, dateTimeOriginal: '2026:03:14 09:26:53', offsetTimeOriginal: '+00:00' });

/** A TIFF-based RAW stand-in whose IFD1 holds a JPEG thumbnail, where CR2, ARW and others keep one. */
export function rawWithThumbnail(jpeg: Buffer): Buffer {
  const head = Buffer.alloc(56);
  head.write('II', 0);
  head.writeUInt16LE(42, 2);
  head.writeUInt32LE(8, 4);
  head.writeUInt16LE(1, 8);
  head.writeUInt16LE(0x0100, 10);
  head.writeUInt16LE(3, 12);
  head.writeUInt32LE(1, 14);
  head.writeUInt32LE(96, 18);
  head.writeUInt32LE(26, 22);
  head.writeUInt16LE(2, 26);
  head.writeUInt16LE(0x0201, 28);
  head.writeUInt16LE(4, 30);
  head.writeUInt32LE(1, 32);
  head.writeUInt32LE(56, 36);
  head.writeUInt16LE(0x0202, 40);
  head.writeUInt16LE(4, 42);
  head.writeUInt32LE(1, 44);
  head.writeUInt32LE(jpeg.length, 48);
  head.writeUInt32LE(0, 52);
  return Buffer.concat([head, jpeg]);
}

/** Starts `shuttle tether SOURCE --json …`; `children` collects the process for the suite's clean-up. */
export function startTether(children: ChildProcess[], args: string[], env: Record<string, string> = {}) {
  const child = spawnCli(['tether', ...args, '--json'], { env });
  children.push(child);
  const events: TetherEvent[] = [];
  const waiters: Array<() => void> = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    for (const w of waiters.splice(0)) w();
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    events.push(JSON.parse(line) as TetherEvent);
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  let closed = false;
  void exited.then(() => {
    closed = true;
    for (const w of waiters.splice(0)) w();
  });
  /** Resolves once `count` events of this kind have arrived; fails if the process ends first. */
  const waitFor = async (kind: string, count = 1): Promise<TetherEvent[]> => {
    for (;;) {
      const got = events.filter((e) => e.event === kind);
      if (got.length >= count) return got;
      if (closed) throw new Error(`tether ended before ${count} ${kind} event(s); got ${JSON.stringify(events)}\nstderr:\n${stderr}`);
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  /** Resolves once the log on stderr matches; fails if the process ends first. */
  const waitForLog = async (re: RegExp): Promise<void> => {
    while (!re.test(stderr)) {
      if (closed) throw new Error(`tether ended before its log matched ${re}; stderr:\n${stderr}`);
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  const stop = async (): Promise<{ code: number | null; stopped: TetherEvent }> => {
    child.kill('SIGTERM');
    const code = await exited;
    const stopped = events.find((e) => e.event === 'stopped');
    if (!stopped) throw new Error(`no stopped event; stderr:\n${stderr}`);
    return { code, stopped };
  };
  return { child, events, waitFor, waitForLog, stop, exited, stderr: () => stderr };
}

/** Every verified event's copies hold the shot's bytes exactly (looked up by the file's name). */
export async function expectCopies(verified: TetherEvent[], expected: ReadonlyMap<string, Buffer>, destinations: number): Promise<void> {
  for (const e of verified) {
    const name = e.name!.split('/').pop()!;
    expect(e.files).toHaveLength(destinations);
    for (const f of e.files!) expect((await readFile(f)).equals(expected.get(name)!), f).toBe(true);
  }
}
