import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { checkDestination } from '../../src/ingest/destination.js';
import type { Journal } from '../../src/store/journal.js';

export interface TestDestination {
  id: number;
  root: string;
}

/** A destination folder `name` under `parent`, checked (and marked) as an ingest does, with its journal row. */
export async function journalDestination(journal: Journal, parent: string, name: string): Promise<TestDestination> {
  const root = join(parent, name);
  await mkdir(root, { recursive: true });
  const checked = await checkDestination(root, { create: true, station: 'test' });
  return { id: journal.upsertDestination(checked.id, root, undefined), root };
}

/** The test's own connection to the journal's file, for what no store reads or writes. */
export function onJournalFile<T>(journal: Journal, fn: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(journal.path);
  try {
    return fn(db);
  } finally {
    db.close();
  }
}
