import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * The CLI tests run the built program, as users do: build it once before any test. Type errors are
 * the typecheck step's business (scripts/test.sh runs it first); tsc still emits, so tests go on.
 */
export default function setup(): void {
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const tsc = fileURLToPath(new URL('../../node_modules/typescript/bin/tsc', import.meta.url));
  try {
    execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'pipe' });
  } catch (e) {
    process.stderr.write(`build reported errors (tests continue with what was emitted):\n${(e as { stdout?: Buffer }).stdout?.toString().slice(0, 4000) ?? ''}\n`);
  }
}
