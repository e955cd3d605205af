import { mkdir, writeFile, utimes } from 'node:fs/promises';
import { dirname } from 'node:path';
import sharp from 'sharp';
import type { IngestSettings } from '../../src/ingest/pipeline.js';

/** A small real JPEG whose EXIF says when and with what it was shot. */
export async function writeJpeg(path: string, exif: { date?: string; model?: string; serial?: string; seed?: number } = {}): Promise<Buffer> {
  const seed = exif.seed ?? 1;
  const img = sharp({ create: { width: 16, height: 16, channels: 3, background: { r: seed % 256, g: (seed * 7) % 256, b: (seed * 13) % 256 } } });
  const withExif = img.withExif({
    IFD0: { Make: 'Canon', Model: exif.model ?? 'Canon EOS R5' },
    IFD2: { DateTimeOriginal: exif.date ?? '2026:03:14 15:09:26', ...(exif.serial ? { BodySerialNumber: exif.serial } : {}) },
  });
  const buf = await withExif.jpeg({ quality: 80 }).toBuffer();
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, buf);
  return buf;
}

export async function writeBytes(path: string, data: Buffer | string, mtime?: Date): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, data);
  if (mtime) await utimes(path, mtime, mtime);
}

/** Deterministic bytes, distinct per seed, fast for megabytes. */
export function bytes(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b.writeUInt32LE(x, i);
  }
  for (let i = size - (size % 4); i < size; i++) b[i] = seed & 0xff;
  return b;
}

/** Ingest settings for runIngest in tests: UTC, xxh128 manifests, no lock wait; `template` names the copies. */
export function ingestSettings(template: string): IngestSettings {
  return {
    template,
    manifestHashes: ['xxh128'],
    job: '',
    timeZone: 'UTC',
    verifyRetries: 2,
    changeRetries: 2,
    station: 'test',
    lockWaitMs: 0,
    tool: { name: 'shuttle', version: 'test' },
  };
}
