import { defineConfig } from 'vitest/config';

// QEMU guests (test/hil, the box end-to-end suite) take both cores each: they run after everything else,
// one file at a time. The rest runs in parallel.
const guestSuites = ['test/hil/**/*.test.ts', 'test/box-e2e.test.ts'];

export default defineConfig({
  test: {
    // Crash and durability tests spawn the real CLI and hit real disks; give them room on a 2-core box.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    reporters: ['default'],
    globalSetup: ['test/support/global-setup.ts'],
    projects: [
      {
        extends: true,
        test: { name: 'host', include: ['test/**/*.test.ts'], exclude: [...guestSuites, '**/node_modules/**'], sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: { name: 'guest', include: guestSuites, fileParallelism: false, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
