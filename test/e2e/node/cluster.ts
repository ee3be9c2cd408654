/**
 * The cluster the install scenario (install.test.ts) runs against, behind one interface so that
 * the same scenario file runs on the tests' single-node cluster (on-node.ts, in `npm test`) and
 * on a kind cluster (on-kind.ts, e2e/kind/run.sh): everything the scenario does that differs
 * between the two (loading the image, restarting the kube-apiserver with audit flags, reading
 * its audit log, reaching ClusterIPs and pod IPs, a container's cgroup and processes, a node
 * directory for a local PersistentVolume) goes through here; the rest is kubectl and helm.
 * `KUBE_AUDIT_E2E_CLUSTER=kind` selects kind. Starts nothing itself.
 */
import type { ClientResult } from '../../harness/kube-access.ts';

/** An HTTPS request sent from the node's network, where ClusterIPs and pod IPs answer. */
export interface NodeRequest {
  readonly method: 'GET' | 'POST';
  readonly url: string;
  /** PEM of the CA to trust. */
  readonly ca: string;
  /** The name the server's certificate must carry, when the URL names an address it lacks. */
  readonly servername?: string;
  readonly token?: string;
  readonly body?: string;
}

/** An answer to a {@link NodeRequest}. */
export interface NodeAnswer {
  readonly status: number;
  readonly body: string;
}

/** What the kernel says of a container's main process. */
export interface ContainerProcess {
  readonly uid: number;
  readonly gid: number;
  /** Effective capabilities, the hexadecimal mask of /proc/<pid>/status. */
  readonly capEff: string;
  readonly noNewPrivs: boolean;
  /** Whether its root file system is mounted read-only. */
  readonly readOnlyRoot: boolean;
}

/** A directory on the node for a local PersistentVolume. */
export interface NodeDirectory {
  /** Its path on the node. */
  readonly path: string;
  /** Paths of the regular files under it, relative to it. */
  files(): Promise<string[]>;
}

/** The cluster under test. */
export interface ClusterUnderTest {
  /** For messages: `single-node` or `kind`. */
  readonly name: string;
  /** The node the pods run on (its `kubernetes.io/hostname` label). */
  readonly nodeName: string;
  /** The user name the apiserver records for {@link kubectl}'s requests. */
  readonly adminUser: string;
  /** An admin kubeconfig file. */
  readonly kubeconfig: string;
  /** The kubectl binary, for commands run as the README and the chart's notes print them. */
  readonly kubectlBinary: string;
  /** Directories holding kubectl and helm, put first on PATH for those commands. */
  readonly binDirs: readonly string[];
  /** A free address of the service range, pinned as the chart's ClusterIP. */
  readonly serviceIP: string;
  /** An address of this machine that pods reach (where the tests' influxd listens). */
  readonly hostAddress: string;
  /** Runs kubectl as admin; never throws on a non-zero exit. */
  kubectl(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<ClientResult>;
  /** Runs helm as admin; never throws on a non-zero exit. */
  helm(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<ClientResult>;
  /**
   * Builds the operator's image (scripts/build-image.sh, cached) and makes it available to the
   * kubelet under the chart's default name, `kube-audit-operator:<appVersion>`. Returns what the
   * build reported, for the test's note.
   */
  loadImage(): Promise<{
    readonly built: boolean;
    readonly seconds: number;
    readonly sizeBytes: number;
  }>;
  /**
   * Makes the kube-apiserver use the audit webhook kubeconfig and policy in `dir` (the files
   * `apiserver-config` printed, named as `flags` name them) with `flags` as the chart's notes
   * print them, plus an audit log (the oracle): restarts it and waits until it is ready. Returns
   * what reads that audit log (JSON lines).
   */
  configureAudit(dir: string, flags: readonly string[]): Promise<() => Promise<string>>;
  /** The kube-apiserver's own log (its webhook backend's errors). */
  apiserverLog(): Promise<string>;
  /** Sends an HTTPS request from the node's network. */
  request(request: NodeRequest): Promise<NodeAnswer>;
  /** A container's peak memory in bytes since it started, from its cgroup (containerd id). */
  containerPeakMemory(containerId: string): Promise<number>;
  /** The kernel's view of a container's main process (containerd id). */
  containerProcess(containerId: string): Promise<ContainerProcess>;
  /** SIGKILLs a container's processes (containerd id), as an OOM kill or a crash would. */
  killContainer(containerId: string): Promise<void>;
  /** Creates an empty directory on the node for a local PersistentVolume. */
  nodeDirectory(name: string): Promise<NodeDirectory>;
  /** Removes what this object created on the machine (not the cluster itself). */
  dispose(): Promise<void>;
}

/** Which implementation `KUBE_AUDIT_E2E_CLUSTER` selects. */
export function selectedCluster(env: NodeJS.ProcessEnv = process.env): 'node' | 'kind' {
  const value = env.KUBE_AUDIT_E2E_CLUSTER ?? 'node';
  if (value !== 'node' && value !== 'kind') {
    throw new Error(`KUBE_AUDIT_E2E_CLUSTER=${value}: expected node or kind`);
  }
  return value;
}

/** The cluster selected by `KUBE_AUDIT_E2E_CLUSTER`. */
export async function clusterUnderTest(): Promise<ClusterUnderTest> {
  if (selectedCluster() === 'kind') return (await import('./on-kind.ts')).kindCluster();
  return (await import('./on-node.ts')).singleNodeCluster();
}

/** Hexadecimal capability mask `CapEff` to the number of capabilities it holds. */
export function capabilityCount(mask: string): number {
  let n = BigInt(`0x${mask}`);
  let count = 0;
  while (n > 0n) {
    count += Number(n & 1n);
    n >>= 1n;
  }
  return count;
}

/** The facts of {@link ContainerProcess} from /proc/<pid>/status and /proc/<pid>/mountinfo. */
export function processFacts(status: string, mountinfo: string): ContainerProcess {
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(.*)$`, 'm').exec(status);
    if (m === null) throw new Error(`/proc/<pid>/status has no ${name}`);
    return (m[1] as string).trim();
  };
  // mountinfo: id parent major:minor root mountpoint options ... - fstype source super-options
  const root = mountinfo
    .split('\n')
    .map((line) => line.split(' '))
    .find((f) => f[4] === '/');
  if (root === undefined) throw new Error('/proc/<pid>/mountinfo has no root mount');
  return {
    uid: Number(field('Uid').split(/\s+/)[1]),
    gid: Number(field('Gid').split(/\s+/)[1]),
    capEff: field('CapEff'),
    noNewPrivs: field('NoNewPrivs') === '1',
    readOnlyRoot: (root[5] ?? '').split(',').includes('ro'),
  };
}
