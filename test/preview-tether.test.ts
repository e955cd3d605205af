import { afterEach, beforeEach, expect, test } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import sharp from 'sharp';
import { CameraSimulator } from '../src/device/ptpip/simulator.js';
import { PREVIEW_HOLD_BYTES } from '../src/ingest/preview.js';
import { spawnCli } from './support/cli.js';
import { solidJpeg, tiffRaw } from './support/preview-raws.js';
import { tempDir } from './support/tree.js';
import { dropFiles } from './support/tether-session.js';

/**
 * `shuttle tether --json` previews from the bytes as they stream from the camera: a RAW's embedded
 * preview is announced (`{"event":"preview"}`) before the RAW is verified, a pair shows one preview
 * (its JPEG's when its RAW embeds none), a preview past the cap comes from the verified copy, and a
 * broken one fails nothing.
 */
const LONG_EDGE = 48;
let work: { path: string; cleanup: () => Promise<void> };
let sim: CameraSimulator | undefined;
let card: string;
let state: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  work = await tempDir('shuttle-preview-tether-');
  card = join(work.path, 'card');
  state = join(work.path, 'state');
  await mkdir(join(card, 'DCIM', '100CANON'), { recursive: true });
  sim = await CameraSimulator.start({ dir: card, port: 0, timeZone: 'UTC' });
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await sim?.stop();
  await work.cleanup();
});

interface Line {
  event: string;
  name?: string;
  preview?: string | null;
  files?: string[];
  ms?: number | { verified: number; preview: number | null } | null;
  status?: string;
  failed?: number;
}

function tether() {
  const child = spawnCli(['tether', `ptpip:127.0.0.1:${sim!.port}`, '--dest', join(work.path, 'lib'), '--state', state, '--socket', join(state, 'tether.sock'), '--json'], {
    env: { SHUTTLE_TETHER_PREVIEW_LONG_EDGE: String(LONG_EDGE) },
  });
  children.push(child);
  const lines: Line[] = [];
  const waiters: Array<() => void> = [];
  let stderr = '';
  let closed = false;
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout! }).on('line', (l) => {
    lines.push(JSON.parse(l) as Line);
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  void exited.then(() => {
    closed = true;
    for (const w of waiters.splice(0)) w();
  });
  const waitFor = async (kind: string, count = 1): Promise<Line[]> => {
    for (;;) {
      const got = lines.filter((e) => e.event === kind);
      if (got.length >= count) return got;
      if (closed) throw new Error(`tether ended before ${count} ${kind}; got ${JSON.stringify(lines)}\n${stderr}`);
      await new Promise<void>((r) => waiters.push(r));
    }
  };
  const stop = async (): Promise<{ code: number | null; stopped: Line | undefined }> => {
    child.kill('SIGTERM');
    const code = await exited;
    return { code, stopped: lines.find((e) => e.event === 'stopped') };
  };
  return { lines, waitFor, stop, stderr: () => stderr };
}

/** Puts a shot's files on the card the way a camera finishes them: written aside, then renamed in. */
async function shoot(files: Map<string, Buffer>): Promise<void> {
  await dropFiles(files, join(work.path, 'incoming'), join(card, 'DCIM', '100CANON'));
}

async function look(path: string): Promise<{ longEdge: number; red: number }> {
  const meta = await sharp(path).metadata();
  const stats = await sharp(path).stats();
  return { longEdge: Math.max(meta.width, meta.height), red: Math.round(stats.channels[0]!.mean) };
}

const index = (lines: Line[], event: string, name: string): number => lines.findIndex((l) => l.event === event && l.name?.endsWith(name));

test('a-raws-embedded-preview-is-announced-before-the-raw-is-verified-and-a-pair-shows-one-preview-its-jpegs-when-its-raw-embeds-none', async () => {
  const t = tether();
  await t.waitFor('ready');
  // A RAW alone: its embedded preview near its start, 12 MB of sensor data after it.
  await shoot(new Map([['IMG_0001.CR2', tiffRaw({ preview: await solidJpeg(320, 200, 200), thumbnail: await solidJpeg(40, 25, 10), size: 12_000_000 })]]));
  const [v] = await t.waitFor('verified');
  const p = t.lines.find((l) => l.event === 'preview' && l.name!.endsWith('IMG_0001.CR2'))!;
  expect(p, JSON.stringify(t.lines)).toBeDefined();
  expect(index(t.lines, 'preview', 'IMG_0001.CR2')).toBeLessThan(index(t.lines, 'verified', 'IMG_0001.CR2'));
  // Made from the bytes in memory, before the copy was verified (not after, from the copy).
  const ms = v!.ms as { verified: number; preview: number };
  expect(p.ms).toBe(ms.preview);
  expect(ms.preview).toBeLessThan(ms.verified);
  expect(v!.preview).toBe(p.preview);
  expect(relative(state, p.preview!).startsWith('previews/')).toBe(true);
  expect(await look(p.preview!)).toMatchObject({ longEdge: LONG_EDGE, red: expect.closeTo(200, -1) });

  // A RAW+JPEG pair whose RAW embeds a preview: one preview, announced once, carried by both verified
  // lines (which of the two depends on whether the RAW is being read when the JPEG is verified: see
  // tether-previews.test.ts).
  await shoot(
    new Map([
      ['IMG_0002.CR2', tiffRaw({ preview: await solidJpeg(320, 200, 30), size: 3_000_000 })],
      ['IMG_0002.JPG', await solidJpeg(300, 200, 150)],
    ]),
  );
  const pair = (await t.waitFor('verified', 3)).slice(1);
  // In either order: a tethered camera's RAW that can embed a preview is read first (readOrder).
  expect(pair.map((l) => l.name!.split('/').pop()).sort()).toEqual(['IMG_0002.CR2', 'IMG_0002.JPG']);
  const previews = t.lines.filter((l) => l.event === 'preview').slice(1);
  expect(previews).toHaveLength(1);
  expect(pair.map((l) => l.preview)).toEqual([previews[0]!.preview, previews[0]!.preview]);
  const shown = previews[0]!.name!.endsWith('.CR2') ? 30 : 150;
  expect(await look(previews[0]!.preview!)).toMatchObject({ longEdge: LONG_EDGE, red: expect.closeTo(shown, -1) });

  // A pair whose RAW embeds none: the JPEG's.
  await shoot(
    new Map([
      ['IMG_0003.CR2', Buffer.alloc(2_000_000, 0x33)],
      ['IMG_0003.JPG', await solidJpeg(300, 200, 150)],
    ]),
  );
  const plain = (await t.waitFor('verified', 5)).slice(3);
  expect(plain.map((l) => l.name!.split('/').pop()).sort()).toEqual(['IMG_0003.CR2', 'IMG_0003.JPG']);
  const third = t.lines.filter((l) => l.event === 'preview').slice(2);
  expect(third.map((l) => l.name!.split('/').pop())).toEqual(['IMG_0003.JPG']);
  expect(plain.map((l) => l.preview)).toEqual([third[0]!.preview, third[0]!.preview]);
  expect(await look(third[0]!.preview!)).toMatchObject({ longEdge: LONG_EDGE, red: expect.closeTo(150, -1) });
  const { code, stopped } = await t.stop();
  expect(code, t.stderr()).toBe(0);
  expect(stopped).toMatchObject({ copied: 5, failed: 0, status: 'complete' });
});

test('a-preview-past-the-cap-comes-from-the-verified-copy-and-a-broken-one-fails-nothing', async () => {
  const t = tether();
  await t.waitFor('ready');
  // The large preview lies past what may be held in memory: made from the verified copy, after it.
  const preview = await solidJpeg(320, 200, 90);
  const far = tiffRaw({ preview, previewAt: PREVIEW_HOLD_BYTES + 500_000 });
  await shoot(new Map([['IMG_0001.CR2', far]]));
  const [v] = await t.waitFor('verified');
  const ms = v!.ms as { verified: number; preview: number };
  expect(index(t.lines, 'preview', 'IMG_0001.CR2')).toBeGreaterThanOrEqual(0);
  expect(index(t.lines, 'preview', 'IMG_0001.CR2')).toBeLessThan(index(t.lines, 'verified', 'IMG_0001.CR2'));
  expect(ms.preview).toBeGreaterThanOrEqual(ms.verified);
  expect(await look(v!.preview!)).toMatchObject({ longEdge: LONG_EDGE, red: expect.closeTo(90, -1) });
  expect((await readFile(v!.files![0]!)).equals(far)).toBe(true);

  // A RAW whose embedded JPEG is garbage after its SOI marker: verified byte-exact, no preview.
  const garbage = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xdb]), Buffer.alloc(4000, 0x5a)]);
  const broken = tiffRaw({ preview: garbage, size: 1_000_000 });
  await shoot(new Map([['IMG_0002.CR2', broken]]));
  const [, b] = await t.waitFor('verified', 2);
  expect(b!.name).toMatch(/IMG_0002\.CR2$/);
  expect(b!.preview).toBeNull();
  expect((await readFile(b!.files![0]!)).equals(broken)).toBe(true);
  expect(index(t.lines, 'preview', 'IMG_0002.CR2')).toBe(-1);
  const { code, stopped } = await t.stop();
  expect(code, t.stderr()).toBe(0);
  expect(stopped).toMatchObject({ copied: 2, failed: 0, status: 'complete' });
});
