/**
 * Vitest global setup of the server-backed projects: reaps test servers left behind by a crashed
 * earlier run or worker, and starts in the background, at low CPU priority, the builds of the
 * servers the project names (`provide.servers` in vitest.config.ts; test/harness/builds.ts). It
 * returns at once, so projects that need no server (unit) run while the builds go on; the
 * project's setup file (test/harness/servers-ready.ts) waits for them before its first test, and
 * no test timeout pays for a build.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { runBuilds, type ServerName } from './builds.ts';
import { reapOrphanedControlPlanes } from './controlplane.ts';
import { reapOrphanedServers } from './influxd.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The server builds a project's tests need (vitest.config.ts). */
    servers: ServerName[];
    /** Where this run's builds write their outcomes (test/harness/builds.ts). */
    buildStatusDir: string;
  }
}

// Builds lower their priority so that tests running beside them keep their timing; a build that
// tests are waiting for has the cores to itself anyway.
const BUILD_NICE = '10';

/**
 * One build queue for the whole run: every project's global setup runs in this process, and a
 * server two projects need is built once. Kept on globalThis because each project may load this
 * module on its own.
 */
interface RunBuilds {
  readonly dir: string;
  readonly queued: Set<ServerName>;
  chain: Promise<void>;
}
const KEY = Symbol.for('kube-audit-operator.test-builds');
type WithBuilds = typeof globalThis & { [KEY]?: RunBuilds };

function runState(): RunBuilds {
  const global = globalThis as WithBuilds;
  global[KEY] ??= {
    dir: mkdtempSync(join(tmpdir(), 'kube-audit-operator-builds-')),
    queued: new Set(),
    chain: Promise.resolve(),
  };
  return global[KEY];
}

/** Runs before a server-backed project's tests; returns before the builds finish. */
export function setup(project: TestProject): void {
  reapOrphanedServers();
  reapOrphanedControlPlanes();
  const state = runState();
  project.provide('buildStatusDir', state.dir);
  const wanted = (project.config.provide.servers ?? []).filter((name) => !state.queued.has(name));
  for (const name of wanted) state.queued.add(name);
  if (wanted.length === 0) return;
  process.env.INFLUXD_NICE ??= BUILD_NICE;
  process.env.KUBE_APISERVER_NICE ??= BUILD_NICE;
  // One build after another, in the order projects ask for them: each uses every core, and the
  // first project's servers are ready soonest.
  state.chain = state.chain.then(() =>
    runBuilds(wanted, state.dir, (line) => {
      console.log(line);
    }),
  );
}

/** Runs after every test: waits for builds still running, then kills orphaned servers. */
export async function teardown(): Promise<void> {
  const state = (globalThis as WithBuilds)[KEY];
  if (state !== undefined) {
    await state.chain;
    rmSync(state.dir, { recursive: true, force: true });
    delete (globalThis as WithBuilds)[KEY];
  }
  reapOrphanedServers();
  reapOrphanedControlPlanes();
}
