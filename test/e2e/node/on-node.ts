/**
 * The install scenario's cluster (cluster.ts) on the tests' single-node cluster: the run's
 * cluster of test/harness/node.ts (etcd, kube-apiserver, controller-manager, scheduler, kubelet,
 * kube-proxy, containerd) on this machine, so ClusterIPs, pod IPs, cgroups and container
 * processes are all local; the image built by the `image` build and imported into containerd.
 * Starts nothing but what it is asked to: the apiserver's restarts go through the harness.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { copyFile, mkdtemp, readFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { builtValue } from '../../harness/builds.ts';
import { helmPath, kubectlPath } from '../../harness/controlplane.ts';
import { saveImageTarball } from '../../harness/image.ts';
import { attachNode, NODE_IP, NODE_STATE_DIR } from '../../harness/node.ts';
import { containerPeakMemory } from '../../harness/node-host.ts';
import {
  type ClusterUnderTest,
  type ContainerProcess,
  type NodeAnswer,
  type NodeRequest,
  processFacts,
} from './cluster.ts';

const run = promisify(execFile);

/** The address the README pins the chart's Service to: free in the node's 10.96.0.0/16. */
const SERVICE_IP = '10.96.0.50';

/** containerd's socket of the run's cluster (node.ts keeps every file under its state directory). */
const CONTAINERD_SOCKET = join(NODE_STATE_DIR, 'containerd', 'containerd.sock');

/** `ctr` against the cluster's containerd, in the kubelet's namespace. */
async function ctr(args: string[]): Promise<string> {
  const { stdout } = await run('ctr', ['-a', CONTAINERD_SOCKET, '-n', 'k8s.io', ...args]);
  return stdout;
}

/** The host pid of a container's main process, from containerd's task list. */
async function taskPid(containerId: string): Promise<number> {
  for (const line of (await ctr(['tasks', 'ls'])).split('\n').slice(1)) {
    const [id, pid] = line.trim().split(/\s+/);
    if (id === containerId) return Number(pid);
  }
  throw new Error(`no running task for container ${containerId}`);
}

/** One HTTPS request from this machine, which is the node. */
function request(req: NodeRequest): Promise<NodeAnswer> {
  const headers: Record<string, string> = {};
  if (req.token !== undefined) headers.authorization = `Bearer ${req.token}`;
  if (req.body !== undefined) headers['content-type'] = 'application/json';
  return new Promise((resolve, reject) => {
    const r = httpsRequest(
      req.url,
      {
        method: req.method,
        ca: req.ca,
        headers,
        agent: false,
        timeout: 15_000,
        ...(req.servername === undefined ? {} : { servername: req.servername }),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    r.on('timeout', () => r.destroy(new Error(`${req.method} ${req.url}: timed out`)));
    r.on('error', reject);
    r.end(req.body);
  });
}

/** Files under `dir`, relative to it. */
function filesUnder(dir: string): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) found.push(relative(dir, path));
    }
  };
  walk(dir);
  return found.sort();
}

/** The run's single-node cluster as the scenario's cluster. */
export async function singleNodeCluster(): Promise<ClusterUnderTest> {
  const node = attachNode();
  const { engine, image } = builtValue('image');
  const work = await mkdtemp(join(tmpdir(), 'kao-install-'));
  const auditDir = join(work, 'audit');
  const volumes = join(work, 'volumes');
  return {
    name: 'single-node',
    nodeName: node.nodeName,
    adminUser: 'admin',
    kubeconfig: node.kubeconfig,
    kubectlBinary: kubectlPath(),
    binDirs: [dirname(kubectlPath()), dirname(helmPath())],
    serviceIP: SERVICE_IP,
    hostAddress: NODE_IP,
    kubectl: (args, opts) => node.kubectl(args, opts),
    helm: (args, opts) => node.helm(args, opts),
    async loadImage() {
      // Saved under both names; containerd sees docker.io/library/kube-audit-operator:<tag>,
      // which the chart's default `kube-audit-operator:<appVersion>` means.
      await node.importImage(await saveImageTarball(engine, image));
      return { built: image.built, seconds: image.seconds, sizeBytes: image.sizeBytes };
    },
    async configureAudit(dir, flags) {
      // The notes' files go where the flags name them, on this machine: a directory of the
      // test's own instead of /etc/kubernetes/audit.
      mkdirSync(auditDir, { recursive: true });
      const args: string[] = [];
      for (const flag of flags) {
        const m = /^(--audit-[a-z-]+-file)=(.+)$/.exec(flag);
        if (m === null) {
          args.push(flag);
          continue;
        }
        const file = join(auditDir, basename(m[2] as string));
        await copyFile(join(dir, basename(m[2] as string)), file);
        args.push(`${m[1]}=${file}`);
      }
      const log = join(auditDir, 'audit.log');
      rmSync(log, { force: true });
      await node.restartApiserver([
        ...args,
        // Later flags win: batches every second instead of the notes' 5 s, a first retry after a
        // second (the apiserver retries a batch five times, backing off by 1.5 each time).
        '--audit-webhook-batch-max-wait=1s',
        '--audit-webhook-initial-backoff=1s',
        // The oracle: every event the policy captured, as the apiserver recorded it.
        `--audit-log-path=${log}`,
        '--audit-log-format=json',
      ]);
      return () => readFile(log, 'utf8');
    },
    apiserverLog: () => readFile(node.logFile('kube-apiserver'), 'utf8'),
    request,
    containerPeakMemory(containerId) {
      const peak = containerPeakMemory(containerId);
      if (peak === undefined) {
        return Promise.reject(new Error(`no memory cgroup for container ${containerId}`));
      }
      return Promise.resolve(peak);
    },
    async containerProcess(containerId): Promise<ContainerProcess> {
      const pid = await taskPid(containerId);
      return processFacts(
        readFileSync(`/proc/${pid}/status`, 'utf8'),
        readFileSync(`/proc/${pid}/mountinfo`, 'utf8'),
      );
    },
    async killContainer(containerId) {
      await ctr(['tasks', 'kill', '--all', '--signal', 'SIGKILL', containerId]);
    },
    nodeDirectory(name) {
      const path = join(volumes, name);
      mkdirSync(path, { recursive: true });
      return Promise.resolve({ path, files: () => Promise.resolve(filesUnder(path)) });
    },
    dispose() {
      rmSync(work, { recursive: true, force: true });
      return Promise.resolve();
    },
  };
}
