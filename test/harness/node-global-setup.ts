/**
 * Vitest global setup of the `node` project: reaps a single-node cluster left by a crashed
 * earlier run, installs the Debian packages the node needs, builds its binaries and the pause
 * image once per machine (a cold build is not charged to a test's timeout), then starts ONE
 * cluster for the whole run and hands its connection to the test files (`inject('node')`).
 * The teardown stops it (unless a test did) and puts the machine back.
 */
import type { TestProject } from 'vitest/node';
import {
  ensureNodeBinaries,
  ensureNodePackages,
  NODE_KUBE_VERSION,
  type NodeCluster,
  type NodeConnection,
  nodeBinariesCached,
  nodeConnection,
  reapCrashedNode,
  startNode,
} from './node.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The run's single-node cluster; `attachNode()` gives its methods. */
    node: NodeConnection;
  }
}

function seconds(since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1);
}

let cluster: NodeCluster | undefined;

/** Runs before the node tests. */
export async function setup(project: TestProject): Promise<void> {
  if (await reapCrashedNode()) {
    console.log('node: reaped a single-node cluster left by a crashed run');
  }
  let began = performance.now();
  await ensureNodePackages();
  const cached = nodeBinariesCached();
  if (!cached) {
    console.log(
      `node: building Kubernetes ${NODE_KUBE_VERSION} (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy) from the Go module proxy (first run on this machine: about 10 minutes on 2 cores)`,
    );
  }
  await ensureNodeBinaries();
  if (!cached) console.log(`node: binaries ready in ${seconds(began)} s`);

  began = performance.now();
  cluster = await startNode();
  const { timings } = cluster;
  console.log(
    `node: cluster ${NODE_KUBE_VERSION} up in ${seconds(began)} s (processes ${timings.processesStarted} ms, node Ready ${timings.nodeReady} ms, default ServiceAccount ${timings.defaultServiceAccount} ms)`,
  );
  project.provide('node', nodeConnection(cluster));
}

/** Runs after the tests: stops the cluster and restores the machine. */
export async function teardown(): Promise<void> {
  if (cluster === undefined) return;
  const began = performance.now();
  await cluster.stop();
  console.log(`node: cluster stopped in ${seconds(began)} s`);
}
