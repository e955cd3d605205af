import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { previewPathFor } from '../../src/ingest/preview.js';
import { Journal } from '../../src/store/journal.js';

/**
 * A journal that already holds `count` verified shots of one earlier card, each with a small preview
 * where the daemon keeps previews, written in one transaction: a long session's history without
 * ingesting thousands of files first. The copies' destination is a folder of its own, never a
 * destination the daemon writes to in the test.
 */
export async function seedVerifiedShots(stateDir: string, count: number, opts: { destination: string; label?: string }): Promise<{ fileIds: number[] }> {
  await mkdir(stateDir, { recursive: true });
  const preview = await sharp({ create: { width: 160, height: 120, channels: 3, background: { r: 90, g: 110, b: 130 } } })
    .jpeg({ quality: 70 })
    .toBuffer();
  const journal = Journal.open(stateDir);
  const fileIds: number[] = [];
  const rels: string[] = [];
  try {
    journal.tx(() => {
      const source = journal.upsertSource({ kind: 'card', key: 'card:seed', label: opts.label ?? 'EARLIER_CARD', details: {} });
      const dest = journal.upsertDestination('seed-marker', opts.destination, undefined);
      const ingest = journal.startIngest(['/media/shuttle/EARLIER_CARD'], [opts.destination]);
      for (let i = 0; i < count; i++) {
        const name = `DCIM/100CANON/IMG_${String(i).padStart(5, '0')}.JPG`;
        const row = journal.fileFor(source, name, 1000 + i, 1_700_000_000_000 + i * 1000);
        const rel = `2026/03/14/${name.slice('DCIM/100CANON/'.length)}`;
        const hex = i.toString(16).padStart(8, '0');
        journal.markVerified(row.id, dest, { destPath: rel, size: 1000 + i, sha256: hex.repeat(8), xxh128: hex.repeat(4), hashes: {}, readback: 'direct', dedup: false }, ingest);
        journal.setFileState(row.id, 'verified');
        fileIds.push(row.id);
        rels.push(rel);
      }
      journal.finishIngest(ingest, 'complete', { seeded: count });
    });
  } finally {
    journal.close();
  }
  for (const rel of rels) {
    const path = previewPathFor(stateDir, rel);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, preview);
  }
  await mkdir(join(opts.destination), { recursive: true });
  return { fileIds };
}
