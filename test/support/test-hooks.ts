import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CRASH_POINTS } from '../../src/ingest/crash-points.js';

/**
 * The test hooks as the sources name them (crash points, injected faults), and what of them a built
 * program still holds: the release build (scripts/build.mjs --release) must hold none.
 */

const SRC = fileURLToPath(new URL('../../src', import.meta.url));
const CALL = /\bcrashPoint\(\s*'([^']*)'\s*\)/g;

async function sources(): Promise<Array<{ path: string; text: string }>> {
  const out: Array<{ path: string; text: string }> = [];
  for (const rel of await readdir(SRC, { recursive: true })) {
    if (rel.endsWith('.ts') && !rel.endsWith('.d.ts')) out.push({ path: rel, text: await readFile(join(SRC, rel), 'utf8') });
  }
  return out;
}

/** Every `crashPoint('name')` call in src/, by name, with the files it is in. */
export async function crashPointCalls(): Promise<Map<string, string[]>> {
  const calls = new Map<string, string[]>();
  for (const { path, text } of await sources()) {
    for (const m of text.matchAll(CALL)) calls.set(m[1]!, [...(calls.get(m[1]!) ?? []), path]);
  }
  return calls;
}

/**
 * Strings that only the test hooks put in a build. A crash point's name counts only where the sources
 * use it for nothing else ('published' is also what publishNoReplace returns).
 */
export async function hookMarkers(): Promise<string[]> {
  const others = (await sources()).filter((s) => !s.path.endsWith('crash-points.ts')).map((s) => s.text.replace(CALL, ''));
  const crashOnly = CRASH_POINTS.filter((n) => !others.some((t) => t.includes(`'${n}'`) || t.includes(`"${n}"`)));
  return ['SHUTTLE_TEST_FAULT', 'SHUTTLE_TEST_CRASH_AT', 'crashPoint', 'applyTestFault', 'flip-byte', 'applySourceTestFault', 'change-source', ...crashOnly.map((n) => `"${n}"`)];
}

/** Which hook markers the .js files of a built program hold, as `marker in file`. */
export async function hookTraces(dist: string): Promise<string[]> {
  const markers = await hookMarkers();
  const found: string[] = [];
  for (const rel of await readdir(dist, { recursive: true })) {
    if (!rel.endsWith('.js')) continue;
    const text = await readFile(join(dist, rel), 'utf8');
    for (const m of markers) if (text.includes(m)) found.push(`${m} in ${rel}`);
  }
  return found;
}
