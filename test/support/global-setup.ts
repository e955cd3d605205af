import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * The CLI tests run the built program, as users do: build it once before any test (scripts/build.mjs,
 * the same build the artifact ships, bar the test hooks that its --release leaves out). Type errors are the typecheck step's business (scripts/test.sh
 * runs it first); the build only strips types, so tests go on.
 */
export default function setup(): void {
  const build = fileURLToPath(new URL('../../scripts/build.mjs', import.meta.url));
  execFileSync(process.execPath, [build], { stdio: 'pipe' });
}
