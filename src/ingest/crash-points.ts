import { writeSync } from 'node:fs';

/**
 * Test-only crash points: with SHUTTLE_TEST_CRASH_AT=<point>:<n> the process kills itself with SIGKILL
 * the n-th time it reaches <point>, so the crash test can hit every step of a durable copy (between
 * temp creation, write, fsync, read-back, publish, the folder's fsync and journal) instead of hoping a
 * random timer does. It says so on stderr first, so the test knows the kill was this one. The release build has none of
 * it: with SHUTTLE_TEST_HOOKS false the body is empty and esbuild drops it and every call.
 */
export const CRASH_POINTS = [
  'temp-created',
  'written',
  'sealed',
  'read-back',
  'published',
  'folder-synced',
  'journaled',
  'manifest-start',
  'generation-written',
  'wipe-begun',
] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number];

let reached = 0;

export function crashPoint(point: CrashPoint): void {
  if (typeof SHUTTLE_TEST_HOOKS === 'undefined' || SHUTTLE_TEST_HOOKS) {
    const spec = process.env['SHUTTLE_TEST_CRASH_AT'];
    if (spec === undefined) return;
    const [wanted, nth = '1'] = spec.split(':');
    if (wanted !== point || ++reached !== Number(nth)) return;
    writeSync(2, `crash point ${spec} reached\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}
