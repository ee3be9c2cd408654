/**
 * Vitest global setup of the server-backed projects: reaps test servers left behind by a crashed
 * earlier run or worker, and starts in the background, at low CPU priority, the builds of the
 * servers the project names (`provide.servers` in vitest.config.ts; test/harness/builds.ts). It
 * returns at once, so projects that need no server (unit) run while the builds go on; the
 * project's setup file (test/harness/servers-ready.ts) waits for them before its test files load,
 * and no test timeout pays for a build.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { releaseBuild, runBuild, SERVER_BUILDS, type ServerName } from './builds.ts';
import { reapOrphanedControlPlanes } from './controlplane.ts';
import { reapOrphanedDockerEngine } from './docker.ts';
import { reapOrphanedServers } from './influxd.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The server builds a project's tests need (vitest.config.ts). */
    servers: ServerName[];
    /** Those of them its setup file waits for before any test file loads. */
    awaitedServers: ServerName[];
    /** Where this run's builds write their outcomes (test/harness/builds.ts). */
    buildStatusDir: string;
  }
}

// Builds lower their priority so that tests running beside them keep their timing; a build that
// tests are waiting for has the cores to itself anyway.
const BUILD_NICE = '10';

/**
 * This run's builds: every project's global setup runs in this process, and a server two
 * projects need is built once. Kept on globalThis because each project may load this module on
 * its own.
 */
interface RunBuilds {
  readonly dir: string;
  /** Set by the teardown: on-demand builds nobody asked for stop waiting. */
  closing: boolean;
  readonly started: Map<ServerName, Promise<unknown>>;
  /** The last build queued in each lane: a lane runs one build at a time. */
  readonly lanes: Map<string, Promise<unknown>>;
}
const KEY = Symbol.for('kube-audit-operator.test-builds');
type WithBuilds = typeof globalThis & { [KEY]?: RunBuilds };

function runState(): RunBuilds {
  const global = globalThis as WithBuilds;
  global[KEY] ??= {
    dir: mkdtempSync(join(tmpdir(), 'kube-audit-operator-builds-')),
    closing: false,
    started: new Map(),
    lanes: new Map(),
  };
  return global[KEY];
}

/** Runs before a server-backed project's tests; returns before the builds finish. */
export async function setup(project: TestProject): Promise<void> {
  reapOrphanedServers();
  reapOrphanedControlPlanes();
  await reapOrphanedDockerEngine();
  const state = runState();
  project.provide('buildStatusDir', state.dir);
  process.env.INFLUXD_NICE ??= BUILD_NICE;
  process.env.KUBE_APISERVER_NICE ??= BUILD_NICE;
  // In the order projects ask for them, within each lane: the first project's servers are ready
  // soonest.
  for (const name of project.config.provide.servers ?? []) {
    if (state.started.has(name)) continue;
    const build = SERVER_BUILDS[name];
    const first = [
      state.lanes.get(build.lane) ?? Promise.resolve(),
      ...(build.after ?? []).map((b) => state.started.get(b) ?? Promise.resolve()),
    ];
    const done = Promise.all(first).then(() =>
      runBuild(
        name,
        state.dir,
        (line) => console.log(line),
        () => state.closing,
      ),
    );
    state.lanes.set(build.lane, done);
    state.started.set(name, done);
  }
}

/** Runs after every test: waits for builds still running, releases them, reaps orphans. */
export async function teardown(): Promise<void> {
  const state = (globalThis as WithBuilds)[KEY];
  if (state !== undefined) {
    delete (globalThis as WithBuilds)[KEY];
    state.closing = true;
    for (const [name, done] of state.started) await releaseBuild(name, await done);
    rmSync(state.dir, { recursive: true, force: true });
  }
  reapOrphanedServers();
  reapOrphanedControlPlanes();
}
