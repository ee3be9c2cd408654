/**
 * The install scenario's cluster (cluster.ts) on a kind cluster that e2e/kind/run.sh created
 * from e2e/kind/kind-config.yaml: one node container running the control plane and the pods.
 * The kube-apiserver is a static pod there, started with the audit flags of that config, which
 * reads its files from a host directory mounted into the node (`KIND_AUDIT_DIR`) and writes its
 * audit log inside the node; it is restarted by stopping its container
 * (`crictl stop`: the kubelet starts it again). ClusterIPs, pod IPs, cgroups and container
 * processes are inside the node container: `docker exec`. The image is built by
 * scripts/build-image.sh and loaded with `kind load docker-image`; influxd runs on this machine
 * on the kind network's gateway, which pods reach.
 *
 * Needs docker, kind, kubectl and helm on PATH, and `KIND_CLUSTER_NAME` and `KIND_AUDIT_DIR`
 * from run.sh. Runs only where kind runs; here it is type-checked.
 */
import { execFile } from 'node:child_process';
import { copyFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { runClient } from '../../harness/kube-access.ts';
import {
  type ClusterUnderTest,
  type ContainerProcess,
  type NodeAnswer,
  type NodeRequest,
  processFacts,
} from './cluster.ts';

const run = promisify(execFile);

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** The ClusterIP pinned for the chart (and in run.sh's placeholder): in kind-config.yaml's serviceSubnet. */
export const KIND_SERVICE_IP = '10.96.100.100';

/** Where kind-config.yaml mounts the audit files inside the node. */
export const KIND_AUDIT_MOUNT = '/etc/kubernetes/audit';

/** The apiserver's audit log inside the node (kind-config.yaml's `audit-log-path`). */
export const KIND_AUDIT_LOG = '/var/log/kubernetes/audit/audit.log';

/** A required environment variable (run.sh sets them). */
function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Error(`${name} is not set: the kind scenario runs from e2e/kind/run.sh`);
  }
  return value;
}

/** Runs a command; resolves with its stdout, rejects with its stderr. */
async function ok(cmd: string, args: readonly string[], input?: string): Promise<string> {
  if (input === undefined) {
    const { stdout } = await run(cmd, [...args], { maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  }
  const r = await runClient(cmd, [...args], input, 120_000);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A path on PATH, or the bare name. */
async function which(name: string): Promise<string> {
  try {
    return (await ok('sh', ['-c', `command -v ${name}`])).trim();
  } catch {
    throw new Error(`${name} is not installed`);
  }
}

/** The kind cluster run.sh created, as the scenario's cluster. */
export async function kindCluster(): Promise<ClusterUnderTest> {
  const cluster = required('KIND_CLUSTER_NAME');
  const auditDir = required('KIND_AUDIT_DIR');
  const node = `${cluster}-control-plane`;
  const kubeconfig = join(dirname(auditDir), 'kubeconfig');
  await writeFile(kubeconfig, await ok('kind', ['get', 'kubeconfig', '--name', cluster]), {
    mode: 0o600,
  });
  const kubectlBinary = await which('kubectl');
  const helmBinary = await which('helm');
  const exec = (args: readonly string[], input?: string) =>
    ok('docker', ['exec', ...(input === undefined ? [] : ['-i']), node, ...args], input);
  // Pods reach this machine at the gateway of kind's Docker network.
  const hostAddress = (
    await ok('docker', [
      'network',
      'inspect',
      'kind',
      '--format',
      '{{range .IPAM.Config}}{{if .Gateway}}{{.Gateway}} {{end}}{{end}}',
    ])
  )
    .trim()
    .split(' ')
    .find((ip) => /^\d+\.\d+\.\d+\.\d+$/.test(ip));
  if (hostAddress === undefined) throw new Error('the kind network has no IPv4 gateway');
  const kubectl = (args: string[], opts: { input?: string; timeoutMs?: number } = {}) =>
    runClient(kubectlBinary, [`--kubeconfig=${kubeconfig}`, ...args], opts.input, opts.timeoutMs);
  const inspect = async (containerId: string) =>
    JSON.parse(await exec(['crictl', 'inspect', containerId])) as { info: { pid: number } };
  const apiserverContainer = async () =>
    (await exec(['crictl', 'ps', '--name', 'kube-apiserver', '-q'])).trim().split('\n')[0] ?? '';
  const apiserverReady = async () =>
    (await kubectl(['get', '--raw=/readyz'], { timeoutMs: 10_000 })).code === 0;

  return {
    name: 'kind',
    nodeName: node,
    // kind's admin kubeconfig authenticates with a client certificate of this name.
    adminUser: 'kubernetes-admin',
    kubeconfig,
    kubectlBinary,
    binDirs: [dirname(kubectlBinary), dirname(helmBinary)],
    serviceIP: KIND_SERVICE_IP,
    hostAddress,
    kubectl,
    helm: (args, opts = {}) =>
      runClient(helmBinary, [`--kubeconfig=${kubeconfig}`, ...args], opts.input, opts.timeoutMs),
    async loadImage() {
      const began = performance.now();
      const ref = (await ok('bash', [join(ROOT, 'scripts', 'build-image.sh'), ...caArgs()]))
        .trim()
        .split('\n')
        .at(-1) as string;
      const seconds = (performance.now() - began) / 1000;
      const chartRef = ref.replace(/-[0-9a-f]{12}$/, '');
      await ok('kind', ['load', 'docker-image', chartRef, '--name', cluster]);
      const size = Number(
        (await ok('docker', ['image', 'inspect', '--format', '{{.Size}}', chartRef])).trim(),
      );
      return { built: seconds > 30, seconds, sizeBytes: size };
    },
    async configureAudit(dir, flags) {
      // kind-config.yaml started the apiserver with these flags and mounts; the notes' must be
      // the same, since a static pod's flags cannot change here.
      const manifest = await exec(['cat', '/etc/kubernetes/manifests/kube-apiserver.yaml']);
      for (const flag of flags) {
        if (/^--audit-webhook-batch-max-wait=/.test(flag)) continue;
        if (!manifest.includes(`- ${flag}`)) {
          throw new Error(`the kind apiserver does not run with ${flag} (kind-config.yaml)`);
        }
        const file = /^--audit-[a-z-]+-file=(.+)$/.exec(flag)?.[1];
        if (file !== undefined) {
          if (dirname(file) !== KIND_AUDIT_MOUNT)
            throw new Error(`${flag}: not in ${KIND_AUDIT_MOUNT}`);
          await copyFile(join(dir, basename(file)), join(auditDir, basename(file)));
        }
      }
      const old = await apiserverContainer();
      if (old === '') throw new Error(`no kube-apiserver container on ${node}`);
      await exec(['crictl', 'stop', old]);
      const deadline = Date.now() + 180_000;
      for (;;) {
        const now = await apiserverContainer().catch(() => '');
        if (now !== '' && now !== old && (await apiserverReady())) break;
        if (Date.now() > deadline) throw new Error('the kube-apiserver did not come back');
        await new Promise((r) => setTimeout(r, 2_000));
      }
      return () => exec(['cat', KIND_AUDIT_LOG]);
    },
    async apiserverLog() {
      const r = await kubectl(['-n', 'kube-system', 'logs', `kube-apiserver-${node}`]);
      return r.stdout;
    },
    async request(req: NodeRequest): Promise<NodeAnswer> {
      // curl inside the node, the CA on its stdin; the status code on the last line.
      const url = new URL(req.url);
      const args = ['curl', '-sS', '--max-time', '15', '--cacert', '/dev/stdin', '-X', req.method];
      if (req.servername !== undefined) {
        args.push('--resolve', `${req.servername}:${url.port || '443'}:${url.hostname}`);
        url.hostname = req.servername;
      }
      if (req.token !== undefined) args.push('-H', `Authorization: Bearer ${req.token}`);
      if (req.body !== undefined) {
        args.push('-H', 'Content-Type: application/json', '--data-raw', req.body);
      }
      args.push('-w', '\\n%{http_code}', url.toString());
      const out = await exec(args, req.ca);
      const cut = out.lastIndexOf('\n');
      return { status: Number(out.slice(cut + 1)), body: out.slice(0, cut) };
    },
    async containerPeakMemory(containerId) {
      const { pid } = (await inspect(containerId)).info;
      // cgroup v2 in kind's node: the container's own cgroup, by its main process.
      const cgroup = (await exec(['cat', `/proc/${pid}/cgroup`])).trim().split('\n').at(-1) ?? '';
      const path = cgroup.slice(cgroup.indexOf('::') + 2);
      return Number((await exec(['cat', `/sys/fs/cgroup${path}/memory.peak`])).trim());
    },
    async containerProcess(containerId): Promise<ContainerProcess> {
      const { pid } = (await inspect(containerId)).info;
      return processFacts(
        await exec(['cat', `/proc/${pid}/status`]),
        await exec(['cat', `/proc/${pid}/mountinfo`]),
      );
    },
    async killContainer(containerId) {
      const { pid } = (await inspect(containerId)).info;
      await exec(['kill', '-KILL', String(pid)]);
    },
    async nodeDirectory(name) {
      const path = `/var/local/kube-audit-e2e/${name}`;
      await exec(['mkdir', '-p', path]);
      return {
        path,
        files: async () =>
          (await exec(['find', path, '-type', 'f', '-printf', '%P\\n']))
            .split('\n')
            .filter((f) => f !== '')
            .sort(),
      };
    },
    async dispose() {
      await exec(['rm', '-rf', '/var/local/kube-audit-e2e']).catch(() => undefined);
    },
  };
}

/** `--ca-file` for the image build when `BUILD_CA_FILE` names a proxy's CA bundle. */
function caArgs(): string[] {
  const file = process.env.BUILD_CA_FILE;
  return file === undefined || file === '' ? [] : ['--ca-file', file];
}
