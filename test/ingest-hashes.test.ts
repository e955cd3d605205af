import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { xxhash128 } from 'hash-wasm';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { FolderSource } from '../src/device/card/folder-source.js';
import { runIngest, type IngestSettings } from '../src/ingest/pipeline.js';
import { hashWorkerForTests } from '../src/io/hash-worker-client.js';
import { silentLogger } from '../src/log.js';
import { Journal } from '../src/store/journal.js';
import { bytes, ingestSettings, writeBytes } from './support/fixtures.js';
import { tempDir } from './support/tree.js';

/**
 * Which hashes an ingest takes of the source's bytes: xxh128 (the read-back's comparison, the journal's
 * content key) and the manifests' only; SHA-256 and MD5 are the upload's to compute from the verified
 * copy. The large file is hashed in the hash workers, the small one on the main thread.
 */
let work: { path: string; cleanup: () => Promise<void> };
const files = { 'big.bin': bytes(3_000_000, 41), 'small.bin': bytes(10_000, 42) };

beforeEach(async () => {
  work = await tempDir('shuttle-ingest-hashes-');
  for (const [name, data] of Object.entries(files)) await writeBytes(join(work.path, 'card', name), data, new Date('2026-01-01T10:00:00Z'));
});
afterEach(async () => {
  await work.cleanup();
});

interface Recorded {
  rel_path: string;
  file_sha256: string | null;
  file_xxh128: string | null;
  sha256: string | null;
  xxh128: string | null;
  hashes: string;
}

async function ingest(settings: IngestSettings): Promise<{ rows: Recorded[]; problems: string[] }> {
  const state = join(work.path, 'state');
  const journal = Journal.open(state);
  let problems: string[];
  try {
    const summary = await runIngest({
      sources: [new FolderSource(join(work.path, 'card'))],
      destinations: [{ path: join(work.path, 'lib') }],
      journal,
      settings,
      logger: silentLogger,
      signal: new AbortController().signal,
    });
    expect(summary).toMatchObject({ status: 'complete', copied: 2, failed: 0 });
    problems = journal.inconsistencies();
  } finally {
    journal.close();
  }
  const db = new DatabaseSync(join(state, 'journal.sqlite'), { readOnly: true });
  try {
    const rows = db
      .prepare(
        `SELECT f.rel_path, f.sha256 AS file_sha256, f.xxh128 AS file_xxh128, c.sha256, c.xxh128, c.hashes
         FROM copies c JOIN files f ON f.id = c.file_id WHERE c.state = 'verified' ORDER BY f.rel_path`,
      )
      .all() as unknown as Recorded[];
    return { rows, problems };
  } finally {
    db.close();
  }
}

// First in this file: no earlier test has started a SHA-256 or MD5 worker in this process.
test('an-ingest-whose-files-are-not-uploaded-takes-xxh128-and-neither-sha256-nor-md5', async () => {
  const { rows, problems } = await ingest(ingestSettings('{name}'));
  expect(rows.map((r) => r.rel_path)).toEqual(['big.bin', 'small.bin']);
  for (const r of rows) {
    const data = files[r.rel_path as keyof typeof files];
    const xxh128 = await xxhash128(data);
    expect(r, r.rel_path).toMatchObject({ sha256: null, file_sha256: null, xxh128, file_xxh128: xxh128 });
    expect(JSON.parse(r.hashes), r.rel_path).toEqual({ xxh128 });
  }
  // A verified copy without SHA-256 is consistent.
  expect(problems).toEqual([]);
  // The big file went through the xxh128 worker; no SHA-256 nor MD5 worker was ever started.
  expect(hashWorkerForTests('xxh128')).toBeDefined();
  expect(hashWorkerForTests('sha256')).toBeUndefined();
  expect(hashWorkerForTests('md5')).toBeUndefined();
});

test('an-ingest-whose-files-go-on-to-an-upload-takes-neither-as-well-the-upload-computes-them', async () => {
  const { rows, problems } = await ingest({ ...ingestSettings('{name}'), forUpload: true });
  expect(rows.map((r) => r.rel_path)).toEqual(['big.bin', 'small.bin']);
  for (const r of rows) {
    const xxh128 = await xxhash128(files[r.rel_path as keyof typeof files]);
    expect(r, r.rel_path).toMatchObject({ sha256: null, file_sha256: null, xxh128 });
    expect(JSON.parse(r.hashes), r.rel_path).toEqual({ xxh128 });
  }
  expect(problems).toEqual([]);
});
