import { configDefaults, defineConfig } from 'vitest/config';
import type { ServerName } from './test/harness/builds.ts';

/**
 * What a server-backed project needs: its servers are built in the background by the global
 * setup while earlier groups run, and its setup file waits for them before its first test
 * (test/harness/builds.ts). Servers only a few of its files need (`later`) are built after the
 * others, and those files wait for them themselves (test/harness/servers-later.ts), so the
 * project's other files do not.
 */
function servers(names: ServerName[], later: ServerName[] = []) {
  return {
    globalSetup: ['test/harness/global-setup.ts'],
    setupFiles: ['test/harness/servers-ready.ts'],
    provide: { servers: [...names, ...later], awaitedServers: names },
  };
}

/** The install scenario's cluster is kind's (test/e2e/node/cluster.ts). */
const ON_KIND = process.env.KUBE_AUDIT_E2E_CLUSTER === 'kind';

// Projects run one group after another (one worker on 2 cores, by vitest's default): unit tests
// first, then each server-backed project in the order its servers are built, so on a cold
// machine tests start at once and every later group finds its servers built, or nearly.
export default defineConfig({
  test: {
    // Separate processes: CLI tests spawn the built binary and must not share state with unit tests.
    pool: 'forks',
    // Every project: property tests from a fixed seed (FC_SEED to explore), never the clock.
    setupFiles: ['test/support/fast-check-seed.ts'],
    reporters: ['default', 'json'],
    outputFile: { json: '.vitest-results.json' },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts', 'test/cli/**/*.test.ts'],
          testTimeout: 20_000,
          // First, and while the other projects' servers are still being built. Not group 0: with
          // one worker (2 cores), vitest runs the files of group 0 after every numbered group.
          sequence: { groupOrder: 1 },
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
            'test/e2e/image/**',
            'test/e2e/load.test.ts',
            'test/e2e/node/**',
            'test/e2e/node-lifecycle/**',
          ],
          ...servers(['influxd']),
          // Real servers: starting one takes about a second, a loaded CI machine far longer.
          testTimeout: 60_000,
          hookTimeout: 60_000,
          sequence: { groupOrder: 2 },
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['test/e2e/controlplane/**/*.test.ts'],
          ...servers(['influxd', 'controlplane'], ['controlplane-legacy']),
          // A control plane starts in about 10 s on 2 idle cores; a dynamic AuditSink batches for
          // up to 30 s; both take far longer while other test files run beside them.
          testTimeout: 120_000,
          hookTimeout: 180_000,
          sequence: { groupOrder: 3 },
        },
      },
      {
        extends: true,
        test: {
          name: 'image',
          include: ['test/e2e/image/**/*.test.ts'],
          // A Docker engine, the base images (or their stand-ins) and the image built from the
          // Dockerfile; the control plane for `run` in a container.
          ...servers(['controlplane', 'image']),
          testTimeout: 120_000,
          hookTimeout: 240_000,
          sequence: { groupOrder: 4 },
        },
      },
      {
        extends: true,
        test: {
          name: 'load',
          include: ['test/e2e/load.test.ts'],
          ...servers(['influxd']),
          testTimeout: 240_000,
          hookTimeout: 60_000,
          // Sustained overload for minutes would starve the timing-sensitive tests beside it (a
          // policy change within a second): a group of its own runs alone, never beside another.
          sequence: { groupOrder: 5 },
        },
      },
      {
        extends: true,
        test: {
          name: 'node',
          // On kind (e2e/kind/run.sh) the install scenario alone, against the cluster run.sh
          // made, with only influxd built here; otherwise every file, on one single-node cluster
          // for the whole run (machine-wide state allows one per machine), started when this
          // group begins, and the image to install on it.
          ...(ON_KIND
            ? { include: ['test/e2e/node/install.test.ts'], ...servers(['influxd']) }
            : {
                include: ['test/e2e/node/**/*.test.ts'],
                ...servers(['influxd', 'controlplane', 'image', 'node-binaries', 'node']),
              }),
          // The files share that cluster and 2 cores: one at a time.
          maxWorkers: 1,
          sequence: { groupOrder: 6 },
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
          ...servers(['node-binaries']),
          maxWorkers: 1,
          sequence: { groupOrder: 7 },
          testTimeout: 600_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
