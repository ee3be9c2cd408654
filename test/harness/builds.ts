/**
 * The real servers test projects need built before their tests start, and how a test worker
 * waits for them. The vitest global setup starts the builds a project names (its `servers`, see
 * vitest.config.ts) in the background and returns at once, so tests that need no server start
 * at once on a cold machine; each build writes its outcome to a file of this run's status
 * directory, and the setup file of a server-backed project (test/harness/servers-ready.ts) waits
 * for those files before the project's first test. Builds themselves are cached outside the
 * repository by version (the scripts/ that each one runs), so only a fresh machine pays for them.
 *
 * Starts build scripts only; no server.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  controlPlaneBinariesCached,
  ensureControlPlaneBinaries,
  KUBE_VERSION,
  LEGACY_KUBE_VERSION,
} from './controlplane.ts';
import { ensureInfluxd, influxdCached, INFLUXD_VERSION } from './influxd.ts';

/** One server build: what it provides, whether it is cached, and how to get it. */
interface ServerBuild {
  /** For the log: what the build provides. */
  readonly what: string;
  /** A cold build's duration on 2 idle cores, for the log line that says a build started. */
  readonly coldMinutes: number;
  readonly cached: () => boolean;
  readonly ensure: () => Promise<unknown>;
}

/** Every build a project can name, in the order they run when several are wanted. */
export const SERVER_BUILDS = {
  influxd: {
    what: `influxd ${INFLUXD_VERSION}`,
    coldMinutes: 7,
    cached: influxdCached,
    ensure: ensureInfluxd,
  },
  controlplane: {
    what: `etcd, kube-apiserver ${KUBE_VERSION}, kubectl and helm`,
    coldMinutes: 6,
    cached: () => controlPlaneBinariesCached(),
    ensure: () => ensureControlPlaneBinaries(),
  },
  'controlplane-legacy': {
    what: `kube-apiserver ${LEGACY_KUBE_VERSION} (native dynamic audit)`,
    coldMinutes: 6,
    cached: () => controlPlaneBinariesCached({ legacy: true }),
    ensure: () => ensureControlPlaneBinaries({ legacy: true }),
  },
} as const satisfies Record<string, ServerBuild>;

/** The name of a server build. */
export type ServerName = keyof typeof SERVER_BUILDS;

/** What a finished build leaves in the status directory. */
type BuildOutcome =
  { readonly ok: true; readonly seconds: number } | { readonly ok: false; readonly error: string };

function statusFile(dir: string, name: ServerName): string {
  return join(dir, `${name}.json`);
}

/**
 * Runs the builds in order, one at a time (each uses every core; see the vitest config's note on
 * the measured alternatives), writing each outcome to `dir`. Resolves when all have settled;
 * never rejects: a failure is the waiting workers' to report.
 */
export async function runBuilds(
  names: readonly ServerName[],
  dir: string,
  log: (line: string) => void,
): Promise<void> {
  mkdirSync(dir, { recursive: true });
  for (const name of names) {
    const build: ServerBuild = SERVER_BUILDS[name];
    const cached = build.cached();
    if (!cached) {
      log(
        `${name}: building ${build.what} (first run on this machine: about ${build.coldMinutes} minutes on 2 cores)`,
      );
    }
    const started = performance.now();
    let outcome: BuildOutcome;
    try {
      await build.ensure();
      outcome = { ok: true, seconds: Math.round((performance.now() - started) / 1000) };
      if (!cached) log(`${name}: ready after ${outcome.seconds} s`);
    } catch (err) {
      outcome = { ok: false, error: err instanceof Error ? err.message : String(err) };
      log(`${name}: build failed: ${outcome.error}`);
    }
    // Written beside and renamed: a waiting worker never reads half a file.
    const file = statusFile(dir, name);
    writeFileSync(`${file}.partial`, JSON.stringify(outcome));
    renameSync(`${file}.partial`, file);
  }
}

/**
 * Resolves once every named build has succeeded; rejects with the build's error when one
 * failed. Without a status directory (no global setup ran) it builds what is missing itself.
 */
export async function serversBuilt(
  names: readonly ServerName[],
  dir: string | undefined,
  pollMs = 1_000,
): Promise<void> {
  for (const name of names) {
    if (dir === undefined) {
      await SERVER_BUILDS[name].ensure();
      continue;
    }
    for (;;) {
      let text: string | undefined;
      try {
        text = readFileSync(statusFile(dir, name), 'utf8');
      } catch {
        // Not finished yet.
      }
      if (text !== undefined) {
        const outcome = JSON.parse(text) as BuildOutcome;
        if (!outcome.ok) throw new Error(`${name} could not be built: ${outcome.error}`);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }
}
