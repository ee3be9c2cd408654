/**
 * A real single-node Kubernetes cluster on this machine, for end-to-end tests: etcd,
 * kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kube-proxy (built from the
 * k8s.io/kubernetes Go module by scripts/build-kubernetes.sh, cached by version), containerd, runc
 * and the CNI plugins from Debian. Pods run, Services get ClusterIPs that answer from the host,
 * and pods reach the API through 10.96.0.1 with their ServiceAccount tokens.
 *
 * What it needs: root (it creates a bridge, iptables rules and cgroups, and mounts), cgroups (v1
 * or v2), and Debian's `containerd runc containernetworking-plugins iptables conntrack`, which
 * {@link ensureNodePackages} installs with apt-get when missing.
 *
 * Nothing resolves names, and every packet stays on the machine:
 * - the node's own address {@link NODE_IP} is a /32 on a bridge with no ports (this kernel has
 *   no `dummy` driver); every component listens on it or on 127.0.0.1, and names the others by IP;
 * - the service, pod and node ranges are routed to that bridge, so an address kube-proxy has not
 *   (or no longer) translated ends there instead of on the default route;
 * - a `mangle FORWARD` rule drops anything from the pod range that would leave by another
 *   interface than the pods' bridge, and the CNI bridge does not masquerade (`ipMasq: false`);
 * - pods get no resolver (`resolvConf: ""`, no cluster DNS), images are imported, never pulled
 *   (their names start with `localhost/`).
 *
 * Machine-wide state (bridges, iptables, the `/kubepods` cgroups, sysctls the kubelet, the CNI
 * bridge plugin and kube-proxy change) allows one cluster per machine: a test run starts one in
 * its global setup and shares it (test/harness/node-global-setup.ts). Every start is recorded in
 * {@link NODE_RECORD} before each change it makes (pids, the sysctls' old values, the rules, the
 * bridges), so that {@link reapCrashedNode} can undo all of it after the owning process died, and
 * `stop()` leaves no process, mount, iptables chain or rule, cgroup, bridge, route, network
 * namespace or changed sysctl behind. See docs/adr/0016-single-node-cluster-for-tests.md.
 */
import { execFile, spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { stringify as toYaml } from 'yaml';
import {
  ETCD_GO_VERSION,
  ETCD_VERSION,
  helmPath,
  KUBE_VERSION,
  kubectlPath,
} from './controlplane.ts';
import { freePort } from './influxd.ts';
import {
  type ClientResult,
  getWithToken,
  type KubeUser,
  kubeconfigFor,
  newUser,
  runClient,
  tokenFile,
} from './kube-access.ts';
import {
  commandLine,
  containerPeakMemory as hostContainerPeakMemory,
  createAddressBridge,
  deleteLink,
  deleteRule,
  existingHostDirectories,
  GUARD_COMMENT,
  type HostSnapshot,
  insertRule,
  type IptablesRule,
  NODE_SYSCTLS,
  podProcesses,
  podsMemoryUsage,
  processesNaming,
  readSysctls,
  removeClusterChains,
  removeHostLeftovers,
  removeKubepodsCgroups,
  restoreSysctls,
  shimSocket,
  snapshotHost,
  unmountUnder,
} from './node-host.ts';
import { goImage, type ImageTarball } from './oci-image.ts';
import { type Issued, TestPki } from './pki.ts';

const run = promisify(execFile);

// ---- the cluster's fixed shape ------------------------------------------------------------------

/** The Kubernetes release of every component of the node. */
export const NODE_KUBE_VERSION = KUBE_VERSION;

/** The node's name; nothing resolves it (the apiserver reaches the kubelet by InternalIP). */
export const NODE_NAME = 'kao-node';

/** The node's own address, a /32 on {@link NODE_BRIDGE}. Every component listens here or on 127.0.0.1. */
export const NODE_IP = '10.250.0.1';

/** The ClusterIP range; 10.96.0.1 is the `kubernetes` Service in front of the apiserver. */
export const SERVICE_CIDR = '10.96.0.0/16';

/** The in-cluster address of the apiserver (the first address of {@link SERVICE_CIDR}). */
export const API_SERVICE_IP = '10.96.0.1';

/** The pods' addresses (the CNI bridge's subnet); the cluster CIDR around it is /16. */
export const POD_SUBNET = '10.244.0.0/24';

const CLUSTER_CIDR = '10.244.0.0/16';
/** Routed to the node bridge too, so no address of the cluster's /16s takes the default route. */
const NODE_RANGE = '10.250.0.0/16';

/** Every link the cluster creates starts with this (Linux allows 15 characters per name). */
export const LINK_PREFIX = 'kao-';
const NODE_BRIDGE = `${LINK_PREFIX}node`;
const POD_BRIDGE = `${LINK_PREFIX}pods`;

/** The CNI network's name (libcni caches results as /var/lib/cni/results/<name>-<id>-<if>). */
const CNI_NETWORK = 'kube-audit-operator';

/** Where the Debian CNI plugins are. */
const CNI_BIN_DIR = '/usr/lib/cni';

/** The sandbox image containerd runs for each pod: test/images/pause, imported at start. */
export const PAUSE_IMAGE = 'localhost/kube-audit-operator/pause:1';

/** The apiserver's port on {@link NODE_IP}. */
const API_PORT = 6443;

/** Everything of the node lives under here: the record, and the state directory. */
export const NODE_ROOT = join(tmpdir(), 'kube-audit-operator-node');

/** The record of the running (or crashed) cluster; see {@link NodeRecord}. */
export const NODE_RECORD = join(NODE_ROOT, 'node.json');

/** Every file of the cluster; every process's command line names it. */
const STATE_DIR = join(NODE_ROOT, 'cluster');

/** The processes of a cluster, in start order. */
export const COMPONENTS = [
  'containerd',
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubelet',
  'kube-proxy',
] as const;

/** One process of the cluster. */
export type Component = (typeof COMPONENTS)[number];

/** The components built from the Kubernetes Go module. */
const KUBE_COMPONENTS = [
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubelet',
  'kube-proxy',
] as const;

type KubeComponent = (typeof KUBE_COMPONENTS)[number];

/**
 * What a running cluster needs to be reached and stopped from any process, written to
 * {@link NODE_RECORD} before each change it makes to the machine.
 */
interface NodeRecord {
  /** The process that started the cluster, and its start time (a reused pid is not the owner). */
  readonly owner: number;
  readonly ownerStart: string;
  readonly version: string;
  readonly binaries: Record<Component, string>;
  /** Pids of the running processes; the kube-apiserver's changes when it is restarted. */
  pids: Partial<Record<Component, number>>;
  /** The kube-apiserver's own flags, and the test's extra flags of its current run. */
  apiserverArgs: string[];
  apiserverExtraArgs: string[];
  /** The values before the start of every sysctl a component may change. */
  readonly sysctls: Record<string, string>;
  /** Which of the host directories the components write to existed before the start. */
  readonly hostDirectories: Record<string, boolean>;
  /** iptables rules the harness added. */
  readonly guards: IptablesRule[];
  /** Links the cluster creates (the node's bridge, and the pods' bridge the CNI plugin makes). */
  readonly links: string[];
  /** The machine before the start, for tests that show a stop left nothing behind. */
  readonly hostBefore: HostSnapshot;
  readonly admin: KubeUser;
  readonly containerdSocket: string;
  /** Milliseconds from the start's beginning: processes spawned, node Ready, default ServiceAccount. */
  readonly timings: NodeTimings;
}

/** How long a start took, in milliseconds from its beginning. */
export interface NodeTimings {
  /** Every process spawned and containerd, etcd and the apiserver answering. */
  processesStarted: number;
  nodeReady: number;
  defaultServiceAccount: number;
}

/** What test files get from the global setup (plain data: it crosses to the test workers). */
export interface NodeConnection {
  readonly version: string;
  readonly nodeName: string;
  readonly nodeIp: string;
  /** `https://<node IP>:6443`. */
  readonly url: string;
  readonly caFile: string;
  /** An admin (system:masters) kubeconfig. */
  readonly kubeconfig: string;
  readonly timings: NodeTimings;
}

/** A running single-node cluster. */
export interface NodeCluster extends NodeConnection {
  readonly caPem: string;
  /** Runs the real kubectl as admin; never throws on a non-zero exit. */
  kubectl(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<ClientResult>;
  /** Runs the real helm as admin; never throws on a non-zero exit. */
  helm(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<ClientResult>;
  /** Imports an image tarball (OCI layout or `docker save`) where the kubelet finds it. */
  importImage(tarball: string): Promise<void>;
  /**
   * Restarts the kube-apiserver with its own flags and `extraArgs` (which replace those of an
   * earlier restart): stops the running one by pid (SIGTERM, SIGKILL after a deadline: with held
   * watches and retried audit deliveries it may take over 20 s), waits for it to exit, starts the
   * new one and waits until it is ready.
   */
  restartApiserver(extraArgs?: readonly string[]): Promise<void>;
  /** The log file of each process. */
  logFile(component: Component): string;
  /** A container's peak memory in bytes since it started, from its cgroup. */
  containerPeakMemory(namespace: string, pod: string, container: string): Promise<number>;
  /**
   * Resident memory in bytes of each process of the cluster, of the containerd shims together
   * (`shims`), and of everything in the pods' cgroups (`pods`).
   */
  memory(): Record<string, number>;
  /** The machine as it was before the start (see node-host.ts). */
  readonly hostBefore: HostSnapshot;
  /** Stops the cluster and puts the machine back as it was; safe to call twice. */
  stop(): Promise<void>;
}

// ---- packages and binaries ----------------------------------------------------------------------

/** Debian packages the node needs, and a file each one installs. */
const NODE_PACKAGES: Readonly<Record<string, string>> = {
  containerd: '/usr/bin/containerd-shim-runc-v2',
  runc: '/usr/sbin/runc',
  'containernetworking-plugins': join(CNI_BIN_DIR, 'bridge'),
  iptables: '/usr/sbin/iptables',
  conntrack: '/usr/sbin/conntrack',
};

/** Fails unless this process is root: everything the node does to the machine needs it. */
function requireRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'the single-node cluster needs root: it creates a bridge, iptables rules, cgroups and mounts',
    );
  }
}

/** Installs the Debian packages the node needs (apt-get) unless they are there. */
export async function ensureNodePackages(): Promise<void> {
  const missing = Object.entries(NODE_PACKAGES)
    .filter(([, file]) => !existsSync(file))
    .map(([name]) => name);
  if (missing.length === 0) return;
  requireRoot();
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    run('apt-get', ['install', '-y', '--no-install-recommends', ...missing], {
      env,
      maxBuffer: 16 * 1024 * 1024,
    });
  try {
    await install();
  } catch {
    // A fresh machine has no package lists yet.
    await run('apt-get', ['update'], { env, maxBuffer: 16 * 1024 * 1024 });
    await install().catch((err: Error) => {
      throw new Error(`apt-get install ${missing.join(' ')} failed: ${err.message}`);
    });
  }
}

const BUILD_KUBERNETES = fileURLToPath(
  new URL('../../scripts/build-kubernetes.sh', import.meta.url),
);
const GET_ETCD = fileURLToPath(new URL('../../scripts/get-etcd.sh', import.meta.url));

/** Where scripts/build-kubernetes.sh puts a component (the same rule as the script's). */
export function cachedKubeComponentPath(component: KubeComponent, version: string): string {
  const cache = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  const base = process.env.KUBE_BUILD_CACHE_ROOT ?? join(cache, 'kube-audit-operator');
  const dir =
    component === 'kube-apiserver'
      ? (process.env.KUBE_APISERVER_CACHE_ROOT ?? join(base, 'kube-apiserver'))
      : join(base, component);
  return join(dir, `v${version}`, component);
}

/** Whether every Kubernetes binary of the node is built, so a setup can say when a run builds. */
export function nodeBinariesCached(version = NODE_KUBE_VERSION): boolean {
  return KUBE_COMPONENTS.every((c) => existsSync(cachedKubeComponentPath(c, version)));
}

/** Runs a script that prints paths last; resolves with its last `count` lines. */
async function scriptPaths(script: string, args: string[], count: number): Promise<string[]> {
  const { stdout } = await run('bash', [script, ...args], {
    env: { ...process.env, ETCD_VERSION, ETCD_GO_VERSION },
    maxBuffer: 16 * 1024 * 1024,
  }).catch((err: Error & { stderr?: string }) => {
    throw new Error(`${script} ${args.join(' ')} failed: ${err.message}\n${err.stderr ?? ''}`);
  });
  const paths = stdout.trim().split('\n').slice(-count);
  for (const path of paths) {
    if (!existsSync(path)) throw new Error(`${script} printed no binary path:\n${stdout}`);
  }
  return paths;
}

/**
 * Builds (or finds cached) the five Kubernetes components, fetches etcd and builds the pause
 * image; returns every binary's path and the pause image.
 */
export async function ensureNodeBinaries(version = NODE_KUBE_VERSION): Promise<{
  binaries: Record<Exclude<Component, 'containerd'>, string>;
  pause: ImageTarball;
}> {
  const kube = await scriptPaths(BUILD_KUBERNETES, [version, ...KUBE_COMPONENTS], 5);
  const [etcd] = await scriptPaths(GET_ETCD, [], 1);
  const pause = await goImage('pause', PAUSE_IMAGE);
  const binaries = Object.fromEntries(KUBE_COMPONENTS.map((c, i) => [c, kube[i]])) as Record<
    KubeComponent,
    string
  >;
  return { binaries: { ...binaries, etcd: etcd as string }, pause };
}

// ---- processes ----------------------------------------------------------------------------------

/** The daemons find iptables, runc, conntrack and mount on this PATH. */
const DAEMON_PATH = `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/local/sbin:/usr/sbin:/sbin`;

/**
 * Starts a daemon in a process group of its own, output appended to its log file, not tied to
 * this process: the cluster outlives a test worker that restarts one of its processes, and is
 * stopped by pid (or reaped from the record).
 */
function spawnDaemon(component: Component, binary: string, args: readonly string[]): number {
  const log = openSync(logPath(component), 'a');
  try {
    const child = spawn(binary, args, {
      cwd: STATE_DIR,
      stdio: ['ignore', log, log],
      detached: true,
      env: { ...process.env, PATH: DAEMON_PATH },
    });
    if (child.pid === undefined) throw new Error(`cannot start ${component} (${binary})`);
    child.unref();
    return child.pid;
  } finally {
    closeSync(log);
  }
}

function logPath(component: Component): string {
  return join(STATE_DIR, `${component}.log`);
}

/** Whether `pid` is a live process of this cluster (its command line names the state directory). */
function ours(pid: number | undefined): pid is number {
  return pid !== undefined && (commandLine(pid)?.some((a) => a.includes(STATE_DIR)) ?? false);
}

/** The last 8 KiB of a log: enough to say why a start failed. */
function tail(component: Component): string {
  try {
    return readFileSync(logPath(component), 'utf8').slice(-8192);
  } catch {
    return '(no log)';
  }
}

/** Polls until `gone()`; false at the deadline. */
async function until(gone: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await gone())) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
async function stopProcess(pid: number | undefined, graceMs: number): Promise<void> {
  if (!ours(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return; // exited just now
  }
  if (await until(() => !ours(pid), graceMs)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // exited just now
  }
  if (!(await until(() => !ours(pid), 10_000))) throw new Error(`pid ${pid} survives SIGKILL`);
}

/**
 * Polls `ready` until true. Fails with the log of the first `watched` process that exited, or
 * with `what` at the deadline.
 */
async function waitFor(
  what: string,
  ready: () => Promise<boolean>,
  timeoutMs: number,
  watched: Partial<Record<Component, number>>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const [component, pid] of Object.entries(watched) as [Component, number][]) {
      if (!ours(pid))
        throw new Error(`${component} exited while waiting for ${what}:\n${tail(component)}`);
    }
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The start time of a process (field 22 of /proc/<pid>/stat), to tell a reused pid apart. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

// ---- the record ---------------------------------------------------------------------------------

function readRecord(): NodeRecord | undefined {
  try {
    return JSON.parse(readFileSync(NODE_RECORD, 'utf8')) as NodeRecord;
  } catch {
    return undefined;
  }
}

/** Written whole and renamed into place: a reader never sees half a record. */
function writeRecord(record: NodeRecord): void {
  const partial = `${NODE_RECORD}.${process.pid}`;
  writeFileSync(partial, JSON.stringify(record, null, 2));
  renameSync(partial, NODE_RECORD);
}

function ownerAlive(record: NodeRecord): boolean {
  return startTime(record.owner) === record.ownerStart;
}

// ---- configuration files ------------------------------------------------------------------------

function containerdConfig(socket: string): string {
  const root = join(STATE_DIR, 'containerd');
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  // containerd 1.6's TOML, version 2. Every path of its own under the state directory.
  return `version = 2
root = "${root}/root"
state = "${root}/state"

[grpc]
  address = "${socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "${root}/opt"

[plugins."io.containerd.runtime.v1.linux"]
  runtime_root = "${root}/runc-v1"

[${cri}]
  sandbox_image = "${PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Root here lacks CAP_SYS_RESOURCE: no container may ask for a lower oom_score_adj than ours,
  # or every sandbox fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  # Pods' network namespaces under the state directory, not /run/netns.
  netns_mounts_under_state_dir = true

[${cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[${cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[${cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  # runc's state under the state directory, not /run/containerd/runc.
  Root = "${root}/runc"

[${cri}.cni]
  bin_dir = "${CNI_BIN_DIR}"
  conf_dir = "${join(STATE_DIR, 'cni', 'net.d')}"
  max_conf_num = 1
`;
}

function cniConfig(): string {
  return JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: CNI_NETWORK,
      plugins: [
        {
          type: 'bridge',
          bridge: POD_BRIDGE,
          isGateway: true,
          // No masquerading: a pod's packet has no path off the machine.
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            dataDir: join(STATE_DIR, 'cni', 'ipam'),
            ranges: [[{ subnet: POD_SUBNET }]],
            routes: [{ dst: '0.0.0.0/0' }],
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
}

function kubeletConfig(socket: string, caFile: string): string {
  return toYaml({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    // This machine's cgroups are v1: the kubelet refuses them unless told otherwise (1.35+).
    failCgroupV1: false,
    cgroupDriver: 'cgroupfs',
    failSwapOn: false,
    containerRuntimeEndpoint: `unix://${socket}`,
    imageServiceEndpoint: `unix://${socket}`,
    address: NODE_IP,
    port: 10250,
    readOnlyPort: 0,
    healthzBindAddress: NODE_IP,
    healthzPort: 10248,
    // Only the apiserver holds a client certificate of this CA.
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: false },
      x509: { clientCAFile: caFile },
    },
    authorization: { mode: 'AlwaysAllow' },
    // No cluster DNS, and no host resolver passed to pods: nothing resolves names.
    clusterDNS: [],
    resolvConf: '',
    podCIDR: POD_SUBNET,
    podLogsDir: join(STATE_DIR, 'pod-logs'),
    // Root here cannot lower oom_score_adj: leave the kubelet's own alone.
    oomScoreAdj: 0,
    // A test machine's disk may be fuller than production thresholds allow; never evict or GC
    // the imported images (they cannot be pulled again).
    evictionHard: {
      'memory.available': '100Mi',
      'nodefs.available': '1%',
      'nodefs.inodesFree': '1%',
      'imagefs.available': '1%',
    },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    nodeStatusUpdateFrequency: '5s',
  });
}

function kubeProxyConfig(kubeconfig: string): string {
  return toYaml({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    clientConnection: { kubeconfig },
    mode: 'iptables',
    clusterCIDR: CLUSTER_CIDR,
    hostnameOverride: NODE_NAME,
    bindAddress: NODE_IP,
    healthzBindAddress: `${NODE_IP}:10256`,
    metricsBindAddress: `${NODE_IP}:10249`,
    nodePortAddresses: ['primary'],
    // Leave the machine alone: no route_localnet (localhost NodePorts), no conntrack limits or
    // timeouts, no lower oom_score_adj (which root here cannot set anyway).
    iptables: { localhostNodePorts: false },
    conntrack: { maxPerCore: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
    oomScoreAdj: 0,
  });
}

// ---- HTTP checks --------------------------------------------------------------------------------

/** Whether a plain-HTTP health endpoint answers 200. */
function httpOk(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { timeout: 2_000, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** Whether an HTTPS health endpoint with a self-signed certificate answers 200 (health only). */
function selfSignedHealthOk(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpsRequest(
      url,
      { timeout: 2_000, agent: false, rejectUnauthorized: false },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

// ---- start --------------------------------------------------------------------------------------

/** 180 s per wait: on 2 idle cores each takes seconds, under full load (another suite) far longer. */
const START_TIMEOUT_MS = 180_000;

/** The apiserver may hold watches and retried audit deliveries for over 20 s after SIGTERM. */
const APISERVER_STOP_GRACE_MS = 45_000;

/**
 * A restart's grace: the apiserver stops listening at once on SIGTERM, but may then not exit at all
 * (kubernetes/kubernetes#131052), and an outage longer than the node monitor's grace period (50 s)
 * marks the node NotReady once it is back, which takes every pod out of its Services for a while.
 * Nothing a restart's callers need is lost by a kill: the audit log is written before each request
 * is answered, and the webhook batches still buffered are for the configuration being replaced.
 */
const APISERVER_RESTART_GRACE_MS = 10_000;

/** The other processes stop within a few seconds of SIGTERM. */
const STOP_GRACE_MS = 15_000;

/** The service account issuer; any URL, only the apiserver and the tokens use it. */
const SERVICE_ACCOUNT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

/** Certificates, static-token identities and kubeconfigs of a cluster. */
interface Credentials {
  readonly ca: Issued;
  readonly serving: Issued;
  /** The apiserver's client certificate towards the kubelet. */
  readonly kubeletClient: Issued;
  readonly serviceAccountKey: string;
  readonly tokenFile: string;
  /** Writes the kubeconfig of one identity and returns its path. */
  kubeconfig(identity: Identity): string;
}

/** One static-token identity of the cluster. */
type Identity = 'admin' | 'kubelet' | 'kube-proxy' | 'kube-controller-manager' | 'kube-scheduler';

async function issueCredentials(admin: KubeUser): Promise<Credentials> {
  const pki = new TestPki(join(STATE_DIR, 'pki'));
  await pki.init();
  const ca = await pki.ca('ca');
  // Pods reach the apiserver at 10.96.0.1, the host at the node's address.
  const serving = await pki.leaf('kube-apiserver', 'ca', 'server', [
    API_SERVICE_IP,
    NODE_IP,
    '127.0.0.1',
  ]);
  const kubeletClient = await pki.leaf('kube-apiserver-kubelet-client', 'ca', 'client');
  const serviceAccountKey = await pki.key('service-accounts');
  // The default RBAC bootstrap roles and the Node authorizer know these names and groups.
  const users: Record<Identity, KubeUser> = {
    admin,
    kubelet: newUser(`system:node:${NODE_NAME}`, ['system:nodes']),
    'kube-proxy': newUser('system:kube-proxy', []),
    'kube-controller-manager': newUser('system:kube-controller-manager', []),
    'kube-scheduler': newUser('system:kube-scheduler', []),
  };
  const tokens = join(STATE_DIR, 'tokens.csv');
  writeFileSync(tokens, tokenFile(Object.values(users)), { mode: 0o600 });
  const url = `https://${NODE_IP}:${API_PORT}`;
  return {
    ca,
    serving,
    kubeletClient,
    serviceAccountKey,
    tokenFile: tokens,
    kubeconfig(identity) {
      const file = join(STATE_DIR, `kubeconfig-${identity}.yaml`);
      writeFileSync(file, kubeconfigFor(url, ca.certFile, users[identity]), { mode: 0o600 });
      return file;
    },
  };
}

/** Starts containerd with the CNI configuration and imports the sandbox image into it. */
async function startContainerd(record: NodeRecord, pause: ImageTarball): Promise<void> {
  const toml = join(STATE_DIR, 'containerd', 'config.toml');
  writeFileSync(toml, containerdConfig(record.containerdSocket));
  writeFileSync(join(STATE_DIR, 'cni', 'net.d', '10-kube-audit-operator.conflist'), cniConfig());
  started(record, 'containerd', spawnDaemon('containerd', 'containerd', ['--config', toml]));
  const ctr = (args: string[]) => run('ctr', ['-a', record.containerdSocket, ...args]);
  await waitFor(
    'containerd answering',
    async () => {
      await ctr(['version']);
      return true;
    },
    START_TIMEOUT_MS,
    { containerd: record.pids.containerd as number },
  );
  await ctr(['-n', 'k8s.io', 'images', 'import', pause.path]);
}

/**
 * Starts etcd on 127.0.0.1 (pods can reach the node's address, and etcd authenticates nobody)
 * with free ports, trying others when one is taken before etcd binds it. Returns its client URL.
 */
async function startEtcd(record: NodeRecord): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const [clientPort, peerPort] = [await freePort(), await freePort()];
    const url = `http://127.0.0.1:${clientPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    started(
      record,
      'etcd',
      spawnDaemon('etcd', record.binaries.etcd, [
        '--name=default',
        `--data-dir=${join(STATE_DIR, `etcd-data-${attempt}`)}`,
        `--listen-client-urls=${url}`,
        `--advertise-client-urls=${url}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=default=${peerUrl}`,
        // 3.4 defaults to the deprecated capnslog and says so on every start.
        '--logger=zap',
      ]),
    );
    try {
      await waitFor(
        'etcd answering /health',
        async () => {
          const res = await fetch(`${url}/health`);
          return res.ok && ((await res.json()) as { health?: string }).health === 'true';
        },
        START_TIMEOUT_MS,
        { etcd: record.pids.etcd as number },
      );
      return url;
    } catch (err) {
      await stopProcess(record.pids.etcd, STOP_GRACE_MS);
      if (attempt === 3) throw err;
    }
  }
}

/** The kube-apiserver's own flags. */
function apiserverArgs(etcdUrl: string, credentials: Credentials): string[] {
  return [
    `--etcd-servers=${etcdUrl}`,
    `--bind-address=${NODE_IP}`,
    // The default endpoint reconciler puts this address behind 10.96.0.1.
    `--advertise-address=${NODE_IP}`,
    `--secure-port=${API_PORT}`,
    `--cert-dir=${join(STATE_DIR, 'apiserver-certs')}`,
    `--tls-cert-file=${credentials.serving.certFile}`,
    `--tls-private-key-file=${credentials.serving.keyFile}`,
    `--client-ca-file=${credentials.ca.certFile}`,
    `--token-auth-file=${credentials.tokenFile}`,
    '--authorization-mode=Node,RBAC',
    '--enable-admission-plugins=NodeRestriction',
    `--service-account-issuer=${SERVICE_ACCOUNT_ISSUER}`,
    `--service-account-key-file=${credentials.serviceAccountKey}`,
    `--service-account-signing-key-file=${credentials.serviceAccountKey}`,
    `--service-cluster-ip-range=${SERVICE_CIDR}`,
    '--allow-privileged=true',
    `--kubelet-client-certificate=${credentials.kubeletClient.certFile}`,
    `--kubelet-client-key=${credentials.kubeletClient.keyFile}`,
    // The node's name resolves nowhere.
    '--kubelet-preferred-address-types=InternalIP',
    '--profiling=false',
  ];
}

/** Starts the controller manager, the scheduler, the kubelet and kube-proxy. */
function startNodeComponents(record: NodeRecord, credentials: Credentials): void {
  const { binaries } = record;
  // Each authenticates to the apiserver, and authenticates its own callers, with one kubeconfig.
  const componentAuth = (identity: Identity) => {
    const file = credentials.kubeconfig(identity);
    return [
      `--kubeconfig=${file}`,
      `--authentication-kubeconfig=${file}`,
      `--authorization-kubeconfig=${file}`,
      '--leader-elect=false',
      `--bind-address=${NODE_IP}`,
      '--profiling=false',
    ];
  };
  started(
    record,
    'kube-controller-manager',
    spawnDaemon('kube-controller-manager', binaries['kube-controller-manager'], [
      ...componentAuth('kube-controller-manager'),
      '--secure-port=10257',
      `--cert-dir=${join(STATE_DIR, 'kube-controller-manager-certs')}`,
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${credentials.serviceAccountKey}`,
      `--root-ca-file=${credentials.ca.certFile}`,
      `--cluster-cidr=${CLUSTER_CIDR}`,
      `--service-cluster-ip-range=${SERVICE_CIDR}`,
    ]),
  );
  started(
    record,
    'kube-scheduler',
    spawnDaemon('kube-scheduler', binaries['kube-scheduler'], [
      ...componentAuth('kube-scheduler'),
      '--secure-port=10259',
      `--cert-dir=${join(STATE_DIR, 'kube-scheduler-certs')}`,
    ]),
  );
  const kubeletYaml = join(STATE_DIR, 'kubelet-config.yaml');
  writeFileSync(kubeletYaml, kubeletConfig(record.containerdSocket, credentials.ca.certFile));
  started(
    record,
    'kubelet',
    spawnDaemon('kubelet', binaries.kubelet, [
      `--config=${kubeletYaml}`,
      `--kubeconfig=${credentials.kubeconfig('kubelet')}`,
      `--root-dir=${join(STATE_DIR, 'kubelet')}`,
      // Its default is /var/lib/kubelet/pki, whatever --root-dir says.
      `--cert-dir=${join(STATE_DIR, 'kubelet', 'pki')}`,
      `--hostname-override=${NODE_NAME}`,
      `--node-ip=${NODE_IP}`,
    ]),
  );
  const proxyYaml = join(STATE_DIR, 'kube-proxy-config.yaml');
  writeFileSync(proxyYaml, kubeProxyConfig(credentials.kubeconfig('kube-proxy')));
  started(
    record,
    'kube-proxy',
    spawnDaemon('kube-proxy', binaries['kube-proxy'], [`--config=${proxyYaml}`]),
  );
}

/**
 * Waits until the node is Ready, the `default` ServiceAccount exists and the controller manager,
 * scheduler, kubelet and kube-proxy answer their health checks; returns when the first two
 * happened, in milliseconds since `began`.
 */
async function waitUntilReady(
  record: NodeRecord,
  ca: Buffer,
  began: number,
): Promise<Pick<NodeTimings, 'nodeReady' | 'defaultServiceAccount'>> {
  const watched = { ...record.pids };
  const api = (path: string) =>
    getWithToken(`https://${NODE_IP}:${API_PORT}${path}`, record.admin.token, ca);
  await waitFor(
    'the node Ready',
    async () => {
      const res = await api(`/api/v1/nodes/${NODE_NAME}`);
      if (res.status !== 200) return false;
      const node = JSON.parse(res.body) as {
        status?: { conditions?: { type: string; status: string }[] };
      };
      return (
        node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false
      );
    },
    START_TIMEOUT_MS,
    watched,
  );
  const nodeReady = Math.round(performance.now() - began);
  // The controller manager creates it a few seconds after the node is Ready; pods need it.
  await waitFor(
    'the default ServiceAccount',
    async () => (await api('/api/v1/namespaces/default/serviceaccounts/default')).status === 200,
    START_TIMEOUT_MS,
    watched,
  );
  const defaultServiceAccount = Math.round(performance.now() - began);
  await waitFor(
    'the controller manager, scheduler, kubelet and kube-proxy healthy',
    async () =>
      (await selfSignedHealthOk(`https://${NODE_IP}:10257/healthz`)) &&
      (await selfSignedHealthOk(`https://${NODE_IP}:10259/healthz`)) &&
      (await httpOk(`http://${NODE_IP}:10248/healthz`)) &&
      (await httpOk(`http://${NODE_IP}:10256/healthz`)),
    START_TIMEOUT_MS,
    watched,
  );
  return { nodeReady, defaultServiceAccount };
}

/** Records a started process's pid at once, so that a crash from here on kills it. */
function started(record: NodeRecord, component: Component, pid: number): void {
  record.pids[component] = pid;
  writeRecord(record);
}

/** The harness's own iptables rule: pods' packets leave by the pods' bridge or not at all. */
const FORWARD_GUARD: IptablesRule = {
  family: 'ipv4',
  table: 'mangle',
  chain: 'FORWARD',
  spec: ['-s', CLUSTER_CIDR, '!', '-o', POD_BRIDGE]
    .concat(['-m', 'comment', '--comment', GUARD_COMMENT])
    .concat(['-j', 'DROP']),
};

/**
 * Starts the cluster and waits until every component is healthy, the node is Ready and the
 * `default` ServiceAccount exists. Reaps a crashed earlier cluster first; fails if a live process
 * owns a running one. Call {@link NodeCluster.stop}.
 */
export async function startNode(): Promise<NodeCluster> {
  requireRoot();
  const existing = readRecord();
  if (existing !== undefined && ownerAlive(existing)) {
    throw new Error(
      `a single-node cluster is already running on this machine, owned by pid ${existing.owner}`,
    );
  }
  await reapCrashedNode();
  await ensureNodePackages();
  const { binaries, pause } = await ensureNodeBinaries();
  const began = performance.now();

  mkdirSync(NODE_ROOT, { recursive: true });
  // Written before the first change to the machine, so that a crash from here on is reaped.
  const record: NodeRecord = {
    owner: process.pid,
    ownerStart: startTime(process.pid) ?? '',
    version: NODE_KUBE_VERSION,
    binaries: { ...binaries, containerd: 'containerd' },
    pids: {},
    apiserverArgs: [],
    apiserverExtraArgs: [],
    sysctls: readSysctls(NODE_SYSCTLS),
    hostDirectories: existingHostDirectories(),
    guards: [FORWARD_GUARD],
    links: [NODE_BRIDGE, POD_BRIDGE],
    hostBefore: await snapshotNodeHost(),
    admin: newUser('admin', ['system:masters']),
    containerdSocket: join(STATE_DIR, 'containerd', 'containerd.sock'),
    timings: { processesStarted: 0, nodeReady: 0, defaultServiceAccount: 0 },
  };
  writeRecord(record);

  try {
    for (const dir of ['containerd', 'cni/net.d', 'cni/ipam', 'kubelet', 'pod-logs', 'pki']) {
      mkdirSync(join(STATE_DIR, dir), { recursive: true });
    }
    await createAddressBridge(NODE_BRIDGE, NODE_IP, [SERVICE_CIDR, CLUSTER_CIDR, NODE_RANGE]);
    await insertRule(FORWARD_GUARD);
    const credentials = await issueCredentials(record.admin);
    await startContainerd(record, pause);
    const etcdUrl = await startEtcd(record);

    record.apiserverArgs = apiserverArgs(etcdUrl, credentials);
    started(
      record,
      'kube-apiserver',
      spawnDaemon('kube-apiserver', binaries['kube-apiserver'], record.apiserverArgs),
    );
    await waitApiserverReady(record, credentials.ca.cert);
    credentials.kubeconfig('admin');
    startNodeComponents(record, credentials);
    const processesStarted = Math.round(performance.now() - began);

    const ready = await waitUntilReady(record, credentials.ca.cert, began);
    writeRecord({ ...record, timings: { processesStarted, ...ready } });
    return attachNode();
  } catch (err) {
    await teardown(record, false).catch((cleanup: Error) => {
      throw new AggregateError([err, cleanup], `start failed, and so did the clean-up`);
    });
    throw err;
  }
}

/** Waits until the apiserver of the record answers /readyz (and fails if it exits). */
async function waitApiserverReady(record: NodeRecord, ca: Buffer): Promise<void> {
  await waitFor(
    'the kube-apiserver answering /readyz',
    async () =>
      (await getWithToken(`https://${NODE_IP}:${API_PORT}/readyz`, record.admin.token, ca))
        .status === 200,
    START_TIMEOUT_MS,
    { 'kube-apiserver': record.pids['kube-apiserver'] as number },
  );
}

/**
 * Waits until the kubelet has renewed its node Lease since `sinceMs`: from then on the node
 * monitor sees a live node, and the pods stay in their Services.
 */
async function waitNodeLeaseRenewed(
  record: NodeRecord,
  ca: Buffer,
  sinceMs: number,
): Promise<void> {
  await waitFor(
    'the kubelet renewing its node Lease after the restart',
    async () => {
      const res = await getWithToken(
        `https://${NODE_IP}:${API_PORT}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/${NODE_NAME}`,
        record.admin.token,
        ca,
      );
      if (res.status !== 200) return false;
      const lease = JSON.parse(res.body) as { spec?: { renewTime?: string } };
      const renewed = Date.parse(lease.spec?.renewTime ?? '');
      return Number.isFinite(renewed) && renewed > sinceMs;
    },
    START_TIMEOUT_MS,
    {
      'kube-apiserver': record.pids['kube-apiserver'] as number,
      kubelet: record.pids.kubelet as number,
    },
  );
}

// ---- attach -------------------------------------------------------------------------------------

/** The plain-data view of a cluster that a global setup passes to test files. */
export function nodeConnection(cluster: NodeConnection): NodeConnection {
  const { version, nodeName, nodeIp, url, caFile, kubeconfig, timings } = cluster;
  return { version, nodeName, nodeIp, url, caFile, kubeconfig, timings };
}

/**
 * The running cluster, from its record: works in any process (the global setup that started it,
 * a test worker). Fails if no cluster runs.
 */
export function attachNode(): NodeCluster {
  const initial = readRecord();
  if (initial === undefined) throw new Error(`no single-node cluster is running (${NODE_RECORD})`);
  const caFile = join(STATE_DIR, 'pki', 'ca.crt');
  const kubeconfig = join(STATE_DIR, 'kubeconfig-admin.yaml');
  const caPem = readFileSync(caFile, 'utf8');
  const socket = initial.containerdSocket;
  const current = () => {
    const record = readRecord();
    if (record === undefined) throw new Error('the single-node cluster was stopped');
    return record;
  };

  return {
    version: initial.version,
    nodeName: NODE_NAME,
    nodeIp: NODE_IP,
    url: `https://${NODE_IP}:${API_PORT}`,
    caFile,
    caPem,
    kubeconfig,
    timings: initial.timings,
    hostBefore: initial.hostBefore,
    kubectl: (args, opts = {}) =>
      runClient(
        kubectlPath(),
        [`--kubeconfig=${kubeconfig}`, `--cache-dir=${join(STATE_DIR, 'kube-cache')}`, ...args],
        opts.input,
        opts.timeoutMs,
      ),
    helm: (args, opts = {}) =>
      runClient(helmPath(), [`--kubeconfig=${kubeconfig}`, ...args], opts.input, opts.timeoutMs),
    async importImage(tarball) {
      await run('ctr', ['-a', socket, '-n', 'k8s.io', 'images', 'import', tarball], {
        maxBuffer: 16 * 1024 * 1024,
      }).catch((err: Error & { stderr?: string }) => {
        throw new Error(`ctr images import ${tarball} failed: ${err.stderr ?? err.message}`);
      });
    },
    async restartApiserver(extraArgs = []) {
      const record = current();
      await stopProcess(record.pids['kube-apiserver'], APISERVER_RESTART_GRACE_MS);
      // A renewal from now on went to the new apiserver.
      const stopped = Date.now();
      record.apiserverExtraArgs = [...extraArgs];
      record.pids['kube-apiserver'] = spawnDaemon(
        'kube-apiserver',
        record.binaries['kube-apiserver'],
        [...record.apiserverArgs, ...extraArgs],
      );
      writeRecord(record);
      const ca = Buffer.from(caPem);
      await waitApiserverReady(record, ca);
      await waitNodeLeaseRenewed(record, ca, stopped);
    },
    logFile: logPath,
    async containerPeakMemory(namespace, pod, container) {
      const res = await runClient(
        kubectlPath(),
        [`--kubeconfig=${kubeconfig}`, 'get', 'pod', pod, '-n', namespace, '-o', 'json'],
        undefined,
      );
      if (res.code !== 0) throw new Error(`kubectl get pod ${namespace}/${pod}: ${res.stderr}`);
      const described = JSON.parse(res.stdout) as {
        status?: { containerStatuses?: { name: string; containerID?: string }[] };
      };
      const id = described.status?.containerStatuses
        ?.find((c) => c.name === container)
        ?.containerID?.replace(/^containerd:\/\//, '');
      const peak = id === undefined ? undefined : hostContainerPeakMemory(id);
      if (peak === undefined) {
        throw new Error(`no memory cgroup for container ${container} of ${namespace}/${pod}`);
      }
      return peak;
    },
    memory() {
      const record = current();
      const rss = (pid: number) => {
        try {
          const line = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
          return line === null ? 0 : Number(line[1]) * 1024;
        } catch {
          return 0;
        }
      };
      const usage: Record<string, number> = {};
      const daemons = new Set<number>();
      for (const [component, pid] of Object.entries(record.pids)) {
        if (ours(pid)) {
          usage[component] = rss(pid);
          daemons.add(pid);
        }
      }
      usage.shims = processesNaming(STATE_DIR)
        .filter((pid) => !daemons.has(pid))
        .reduce((sum, pid) => sum + rss(pid), 0);
      usage.pods = podsMemoryUsage();
      return usage;
    },
    async stop() {
      const record = readRecord();
      if (record === undefined) return;
      await teardown(record, true);
    },
  };
}

// ---- stop and reap ------------------------------------------------------------------------------

/**
 * Stops a cluster from its record and puts the machine back. `graceful`: first let the kubelet
 * delete every pod (so that containerd tears down their networks and mounts) and stop each
 * process with SIGTERM, in the order that leaves nothing running that another still needs; not
 * graceful (a crashed owner): kill everything at once. Then, either way: kube-proxy's own
 * clean-up, kill what is left (shims daemonise; containers of killed shims live on in their
 * cgroups), unmount, remove the chains, rules, cgroups and bridges, the files outside the state
 * directory, restore the sysctls, remove the state directory and, last, the record.
 */
async function teardown(record: NodeRecord, graceful: boolean): Promise<void> {
  const problems: string[] = [];
  const attempt = async (what: string, step: () => unknown) => {
    try {
      await step();
    } catch (err) {
      problems.push(`${what}: ${(err as Error).message}`);
    }
  };
  const pids = record.pids;

  if (graceful && ours(pids['kube-apiserver'])) {
    // No controller recreates a pod, no scheduler binds one, while the pods go.
    await attempt('stop kube-controller-manager', () =>
      stopProcess(pids['kube-controller-manager'], STOP_GRACE_MS),
    );
    await attempt('stop kube-scheduler', () => stopProcess(pids['kube-scheduler'], STOP_GRACE_MS));
    if (ours(pids.kubelet) && ours(pids.containerd)) {
      await attempt('delete the pods', async () => {
        const res = await runClient(
          kubectlPath(),
          [
            `--kubeconfig=${join(STATE_DIR, 'kubeconfig-admin.yaml')}`,
            'delete',
            'pods',
            '--all',
            '--all-namespaces',
            '--grace-period=1',
            '--wait=false',
          ],
          undefined,
        );
        if (res.code !== 0) throw new Error(res.stderr);
      });
      // Sandboxes stopped and their network namespaces removed: the kubelet and containerd did
      // all of a pod's clean-up.
      const netns = join(STATE_DIR, 'containerd', 'state', 'io.containerd.grpc.v1.cri', 'netns');
      await attempt('wait for the pods to go', async () => {
        const gone = await until(async () => {
          const { stdout } = await run('ctr', [
            '-a',
            record.containerdSocket,
            '-n',
            'k8s.io',
            'tasks',
            'ls',
            '-q',
          ]);
          return stdout.trim() === '' && (!existsSync(netns) || readdirSync(netns).length === 0);
        }, 60_000);
        if (!gone) throw new Error('pods still running after 60 s');
      });
    }
  }
  const order: [Component, number][] = [
    ['kube-proxy', STOP_GRACE_MS],
    ['kubelet', STOP_GRACE_MS],
    ['kube-scheduler', STOP_GRACE_MS],
    ['kube-controller-manager', STOP_GRACE_MS],
    ['kube-apiserver', APISERVER_STOP_GRACE_MS],
    ['etcd', STOP_GRACE_MS],
    ['containerd', STOP_GRACE_MS],
  ];
  for (const [component, grace] of order) {
    if (component === 'containerd') {
      // kube-proxy's own clean-up of its chains, with its binary, before the generic one below.
      await attempt('kube-proxy --cleanup', () =>
        run(record.binaries['kube-proxy'], ['--cleanup']).catch(() => undefined),
      );
    }
    await attempt(`stop ${component}`, () => stopProcess(pids[component], graceful ? grace : 0));
  }

  // Everything else that names the state directory (shims, a restarted apiserver, runc), and
  // every process in the pods' cgroups.
  const shimSockets: string[] = [];
  for (const pid of processesNaming(STATE_DIR)) {
    const args = commandLine(pid) ?? [];
    const flag = (name: string) => args[args.indexOf(name) + 1];
    const id = flag('-id');
    const ns = flag('-namespace');
    if (args.includes('-address') && id !== undefined && ns !== undefined) {
      shimSockets.push(shimSocket(record.containerdSocket, ns, id));
    }
  }
  await attempt('kill what is left', async () => {
    const left = () => [...processesNaming(STATE_DIR), ...podProcesses()];
    for (let round = 0; round < 50 && left().length > 0; round++) {
      for (const pid of left()) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      await until(() => left().length === 0, 200);
    }
    const survivors = left();
    if (survivors.length > 0) throw new Error(`still running: ${survivors.join(', ')}`);
  });

  await attempt('unmount', () => unmountUnder(STATE_DIR));
  await attempt('remove iptables chains', () => removeClusterChains());
  for (const rule of record.guards) await attempt('remove the guard rule', () => deleteRule(rule));
  await attempt('remove the kubepods cgroups', async () => {
    // A killed process leaves its cgroup a moment after it is gone.
    if (!(await until(() => removeKubepodsCgroups().length === 0, 10_000))) {
      throw new Error(removeKubepodsCgroups().join(', '));
    }
  });
  for (const link of record.links) await attempt(`delete ${link}`, () => deleteLink(link));
  await attempt('remove files outside the state directory', () => {
    for (const socket of shimSockets) rmSync(socket, { force: true });
    removeHostLeftovers(STATE_DIR, CNI_NETWORK, record.hostDirectories);
  });
  const failed = restoreSysctls(record.sysctls);
  if (failed.length > 0) problems.push(`restore sysctls: ${failed.join(', ')}`);
  await attempt('remove the state directory', () =>
    rmSync(STATE_DIR, { recursive: true, force: true }),
  );

  if (problems.length > 0) {
    // Keep the record: the next reap tries again.
    throw new Error(`the single-node cluster did not stop cleanly:\n${problems.join('\n')}`);
  }
  rmSync(NODE_RECORD, { force: true });
}

/**
 * Undoes a cluster whose owning process died (a crashed or killed test run) from its record:
 * kills its processes and puts the machine back. Returns whether there was one to reap; does
 * nothing while the owner lives.
 */
export async function reapCrashedNode(): Promise<boolean> {
  const record = readRecord();
  if (record === undefined) {
    // No record, no change to the machine; only files may be left.
    if (existsSync(STATE_DIR)) {
      await unmountUnder(STATE_DIR);
      rmSync(STATE_DIR, { recursive: true, force: true });
    }
    return false;
  }
  if (ownerAlive(record)) return false;
  requireRoot();
  await teardown(record, false);
  return true;
}

/** Whether a cluster is recorded and its owner alive. */
export function nodeRunning(): boolean {
  const record = readRecord();
  return record !== undefined && ownerAlive(record);
}

/** The state directory, for tests that check what a cluster leaves. */
export const NODE_STATE_DIR = STATE_DIR;

/** What {@link snapshotHost} needs to look at this cluster's traces. */
export function snapshotNodeHost(): Promise<HostSnapshot> {
  return snapshotHost(STATE_DIR, LINK_PREFIX, ['10.244.', '10.96.', '10.250.']);
}
