/**
 * Set by scripts/build.mjs: false in the release build (`--release`), which leaves the test hooks
 * (crash points, injected faults) out of the program; true in the build the tests run. Undefined when
 * the sources run unbundled (vitest, bench): hooks on.
 */
declare const SHUTTLE_TEST_HOOKS: boolean | undefined;
