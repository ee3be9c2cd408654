/**
 * The real servers test projects need built before their tests start, and how a test worker
 * waits for them. The vitest global setup starts the builds a project names (its `servers`, see
 * vitest.config.ts) in the background and returns at once, so tests that need no server start
 * at once on a cold machine; each build writes its outcome to a file of this run's status
 * directory, and the setup file of a server-backed project (test/harness/servers-ready.ts) waits
 * for those files before the project's test files are even loaded. Builds themselves are cached
 * outside the repository by version or by their inputs (the scripts/ each one runs), so only a
 * fresh machine pays for them.
 *
 * Builds run in lanes, each one build at a time, the lanes side by side: `go` (compiling:
 * influxd, Kubernetes), `docker` (the Docker engine, base images and the operator's image: mostly
 * downloads and package installs) and `cluster` (the single-node cluster). An on-demand build (the
 * cluster) starts only once a worker asks for it, so a cluster does not idle through the groups
 * that run before its tests.
 *
 * Starts build scripts, the Docker engine of the `image` build and the cluster of the `node`
 * build; the global teardown releases both.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  controlPlaneBinariesCached,
  ensureControlPlaneBinaries,
  KUBE_VERSION,
  LEGACY_KUBE_VERSION,
} from './controlplane.ts';
import { type DockerEngine, ensureDockerEngine, releaseDockerEngine } from './docker.ts';
import {
  type BuiltImage,
  ensureImage,
  imageCached,
  removeOlderImages,
  removeTestLeftovers,
} from './image.ts';
import { ensureInfluxd, influxdCached, INFLUXD_VERSION } from './influxd.ts';
import {
  attachNode,
  ensureNodeBinaries,
  ensureNodePackages,
  NODE_KUBE_VERSION,
  type NodeConnection,
  nodeBinariesCached,
  nodeConnection,
  nodeRunning,
  reapCrashedNode,
  startNode,
} from './node.ts';

/** What the `image` build gives the tests: the engine to run containers on, and the image. */
export interface ImageBuild {
  readonly engine: DockerEngine;
  readonly image: BuiltImage;
}

/** One server build: what it provides, whether it is cached, and how to get it. */
interface ServerBuild {
  /** For the log: what the build provides. */
  readonly what: string;
  /** Which lane it runs in (see the module's header). */
  readonly lane: 'go' | 'docker' | 'cluster';
  /** Runs only once a worker asks for it ({@link serversBuilt}). */
  readonly onDemand?: boolean;
  /** Builds that must have succeeded first (they run in their own lanes). */
  readonly after?: readonly ServerName[];
  /** A cold build's duration on 2 idle cores, for the log line that says a build started. */
  readonly coldMinutes: number;
  readonly cached: () => boolean;
  /** Builds or finds it; resolves with what the tests need to know of it (JSON). */
  readonly ensure: () => Promise<unknown>;
  /** Ends what `ensure` started that must not outlive the run (a Docker engine). */
  readonly release?: (value: unknown) => Promise<void>;
}

/** The name of a server build. */
export type ServerName =
  'influxd' | 'controlplane' | 'controlplane-legacy' | 'image' | 'node-binaries' | 'node';

/** Every build a project can name. */
export const SERVER_BUILDS: Readonly<Record<ServerName, ServerBuild>> = {
  influxd: {
    what: `influxd ${INFLUXD_VERSION}`,
    lane: 'go',
    coldMinutes: 7,
    cached: influxdCached,
    ensure: async () => ({ path: await ensureInfluxd() }),
  },
  controlplane: {
    what: `etcd, kube-apiserver ${KUBE_VERSION}, kubectl and helm`,
    lane: 'go',
    coldMinutes: 6,
    cached: () => controlPlaneBinariesCached(),
    ensure: () => ensureControlPlaneBinaries(),
  },
  'controlplane-legacy': {
    what: `kube-apiserver ${LEGACY_KUBE_VERSION} (native dynamic audit)`,
    lane: 'go',
    coldMinutes: 6,
    cached: () => controlPlaneBinariesCached({ legacy: true }),
    ensure: () => ensureControlPlaneBinaries({ legacy: true }),
  },
  image: {
    what: "a Docker engine, the Dockerfile's base images (or local stand-ins) and the operator's image",
    lane: 'docker',
    coldMinutes: 5,
    cached: imageCached,
    ensure: async (): Promise<ImageBuild> => {
      const engine = await ensureDockerEngine();
      try {
        await removeTestLeftovers(engine);
        const image = await ensureImage(engine);
        await removeOlderImages(engine, image);
        return { engine, image };
      } catch (err) {
        await releaseDockerEngine(engine);
        throw err;
      }
    },
    release: async (value: unknown) => {
      const { engine } = value as ImageBuild;
      await removeTestLeftovers(engine);
      await releaseDockerEngine(engine);
    },
  },
  'node-binaries': {
    what: `kubelet, kube-proxy, kube-scheduler, kube-controller-manager and kube-apiserver ${NODE_KUBE_VERSION}, the pause image, and Debian's containerd, runc and CNI plugins`,
    lane: 'go',
    coldMinutes: 15,
    cached: () => nodeBinariesCached(),
    ensure: async () => {
      await ensureNodePackages();
      await ensureNodeBinaries();
      return {};
    },
  },
  node: {
    what: `the single-node Kubernetes ${NODE_KUBE_VERSION} cluster`,
    lane: 'cluster',
    onDemand: true,
    after: ['node-binaries'],
    coldMinutes: 1,
    cached: () => true,
    ensure: startRunNode,
    release: async () => {
      // A test may have stopped it already (the lifecycle tests do).
      if (nodeRunning()) await attachNode().stop();
    },
  },
};

/**
 * Starts the run's single-node cluster, after reaping one that a crashed run left: one cluster
 * per machine. Resolves with how test files reach it.
 */
export async function startRunNode(): Promise<NodeConnection> {
  if (await reapCrashedNode()) console.log('node: reaped a cluster left by a crashed run');
  const cluster = await startNode();
  const { timings } = cluster;
  console.log(
    `node: cluster ${NODE_KUBE_VERSION} up: processes ${timings.processesStarted} ms, node Ready ${timings.nodeReady} ms, default ServiceAccount ${timings.defaultServiceAccount} ms`,
  );
  return nodeConnection(cluster);
}

/** What a finished build leaves in the status directory. */
type BuildOutcome =
  | { readonly ok: true; readonly seconds: number; readonly value: unknown }
  | { readonly ok: false; readonly error: string };

function statusFile(dir: string, name: ServerName): string {
  return join(dir, `${name}.json`);
}

/** Left by a worker that waits for an on-demand build: the sign to start it. */
function wantedFile(dir: string, name: ServerName): string {
  return join(dir, `${name}.wanted`);
}

/**
 * Runs one build, writing its outcome to `dir`. Resolves with its value, or undefined when it
 * failed; never rejects: a failure is the waiting workers' to report.
 */
export async function runBuild(
  name: ServerName,
  dir: string,
  log: (line: string) => void,
  cancelled: () => boolean = () => false,
): Promise<unknown> {
  mkdirSync(dir, { recursive: true });
  const build = SERVER_BUILDS[name];
  if (build.onDemand === true) {
    while (!existsSync(wantedFile(dir, name))) {
      if (cancelled()) return undefined;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  const cached = build.cached();
  if (!cached) {
    log(
      `${name}: building ${build.what} (first run on this machine: about ${build.coldMinutes} minutes on 2 cores)`,
    );
  }
  const started = performance.now();
  let outcome: BuildOutcome;
  try {
    const value = await build.ensure();
    outcome = { ok: true, seconds: Math.round((performance.now() - started) / 1000), value };
    if (!cached) log(`${name}: ready after ${outcome.seconds} s`);
  } catch (err) {
    outcome = { ok: false, error: err instanceof Error ? err.message : String(err) };
    log(`${name}: build failed: ${outcome.error}`);
  }
  // Written beside and renamed: a waiting worker never reads half a file.
  const file = statusFile(dir, name);
  writeFileSync(`${file}.partial`, JSON.stringify(outcome));
  renameSync(`${file}.partial`, file);
  return outcome.ok ? outcome.value : undefined;
}

/** Releases what a build started (see {@link ServerBuild.release}); for the global teardown. */
export async function releaseBuild(name: ServerName, value: unknown): Promise<void> {
  const build = SERVER_BUILDS[name];
  if (value !== undefined) await build.release?.(value);
}

/** Values of the builds this worker waited for. */
const built = new Map<ServerName, unknown>();

/**
 * Resolves once every named build has succeeded, keeping their values for {@link builtValue};
 * rejects with the build's error when one failed. Without a status directory (no global setup
 * ran) it builds what is missing itself.
 */
export async function serversBuilt(
  names: readonly ServerName[],
  dir: string | undefined,
  pollMs = 1_000,
): Promise<void> {
  for (const name of names) {
    if (dir === undefined) {
      built.set(name, await SERVER_BUILDS[name].ensure());
      continue;
    }
    writeFileSync(wantedFile(dir, name), '');
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
        built.set(name, outcome.value);
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }
}

/** What a build that this worker waited for gave (see {@link serversBuilt}). */
export function builtValue(name: 'image'): ImageBuild;
export function builtValue(name: 'node'): NodeConnection;
export function builtValue(name: ServerName): unknown {
  if (!built.has(name)) {
    throw new Error(`${name} is not among the servers of this test's project (vitest.config.ts)`);
  }
  return built.get(name);
}
