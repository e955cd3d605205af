/**
 * Test-only crash points: with SHUTTLE_TEST_CRASH_AT=<point>:<n> the process kills itself with SIGKILL
 * the n-th time it reaches <point>, so the crash test can hit every step of a durable copy (between
 * temp creation, write, fsync, read-back, publish and journal) instead of hoping a random timer does.
 * Unset (always, outside tests) this is one string comparison.
 */
export type CrashPoint = 'temp-created' | 'written' | 'sealed' | 'read-back' | 'published' | 'journaled' | 'manifest' | 'generation-written';

const spec = process.env['SHUTTLE_TEST_CRASH_AT'];
const [wanted, nth] = spec ? [spec.split(':')[0], Number(spec.split(':')[1] ?? '1')] : [undefined, 0];
let reached = 0;

export function crashPoint(point: CrashPoint): void {
  if (wanted !== point) return;
  reached++;
  if (reached === nth) process.kill(process.pid, 'SIGKILL');
}
