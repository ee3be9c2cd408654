import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Separate processes: CLI tests spawn the built binary and must not share state with unit tests.
    pool: 'forks',
    reporters: ['default', 'json'],
    outputFile: { json: '.vitest-results.json' },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'test/cli/**/*.test.ts'],
          testTimeout: 20_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'test/e2e/**/*.test.ts'],
          exclude: [
            ...configDefaults.exclude,
            'test/e2e/controlplane/**',
            'test/e2e/load.test.ts',
            'test/e2e/node/**',
            'test/e2e/node-lifecycle/**',
          ],
          // Builds influxd and the control plane's binaries once per machine before any test, so
          // no test timeout pays for it.
          globalSetup: ['test/harness/global-setup.ts'],
          // Real servers: starting one takes about a second, a loaded CI machine far longer.
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/e2e/controlplane/**/*.test.ts'],
          globalSetup: ['test/harness/global-setup.ts'],
          // A control plane starts in about 10 s on 2 idle cores; a dynamic AuditSink batches for
          // up to 30 s; both take far longer while other test files run beside them.
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'load',
          include: ['test/e2e/load.test.ts'],
          globalSetup: ['test/harness/global-setup.ts'],
          testTimeout: 240_000,
          hookTimeout: 60_000,
          // Sustained overload for minutes would starve the timing-sensitive tests beside it (a
          // policy change within a second): a group of its own runs alone, never beside another.
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          name: 'node',
          include: ['test/e2e/node/**/*.test.ts'],
          // One single-node cluster for the whole run (machine-wide state allows one per machine).
          globalSetup: ['test/harness/node-global-setup.ts'],
          // The files share that cluster and 2 cores: one at a time.
          maxWorkers: 1,
          sequence: { groupOrder: 2 },
          // A Deployment is available in about 15 s on 2 idle cores, far later under load.
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'node-lifecycle',
          include: ['test/e2e/node-lifecycle/**/*.test.ts'],
          // Stops the run's cluster, so it runs after every file that uses it.
          maxWorkers: 1,
          sequence: { groupOrder: 3 },
          testTimeout: 600_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
