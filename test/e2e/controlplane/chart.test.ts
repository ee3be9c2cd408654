// The Helm chart charts/kube-audit-operator. Real processes: the helm 4 binary (lint, template,
// install, upgrade, uninstall), and etcd plus kube-apiserver 1.37 started by the harness, driven
// with the real kubectl. Rendered with the default values and with every option on
// (ci/full-values.yaml), the manifests have the operator's hardening, probes, flags and exactly
// the RBAC of examples/operator/rbac.yaml; the values schema refuses bad values by name; the
// apiserver accepts the renders, and a release keeps its generated CA and token across upgrades.
// There is no scheduler or kubelet: pods never run, so nothing waits for readiness.
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { type ControlPlane, helmPath, startControlPlane } from '../../harness/controlplane.ts';

const CHART = fileURLToPath(new URL('../../../charts/kube-audit-operator', import.meta.url));
const FULL_VALUES = join(CHART, 'ci', 'full-values.yaml');
const RBAC_EXAMPLE = new URL('../../../examples/operator/rbac.yaml', import.meta.url);

const RELEASE = 'kube-audit';
const NAMESPACE = 'kube-audit';
/** The chart's base name for release `kube-audit`: the release name plus the chart name. */
const FULLNAME = 'kube-audit-kube-audit-operator';
/** Inside the harness's --service-cluster-ip-range (10.0.0.0/24). */
const PINNED_IP = '10.0.0.50';

/** A rendered Kubernetes object; fields below `metadata` are read through casts. */
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [field: string]: unknown;
}

interface Container {
  args: string[];
  env: { name: string; value?: string; valueFrom?: unknown }[];
  ports: { name: string; containerPort: number }[];
  startupProbe: {
    httpGet: { path: string; port: string; scheme: string };
    initialDelaySeconds: number;
  };
  readinessProbe: { httpGet: { path: string; port: string; scheme: string } };
  livenessProbe: { httpGet: { path: string; port: string; scheme: string } };
  resources: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext: Record<string, unknown>;
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}

interface Workload {
  spec: {
    replicas: number;
    volumeClaimTemplates?: { metadata: { name: string } }[];
    template: {
      spec: {
        serviceAccountName: string;
        terminationGracePeriodSeconds: number;
        securityContext: Record<string, unknown>;
        containers: Container[];
        volumes: { name: string; emptyDir?: { sizeLimit: string }; secret?: unknown }[];
      };
    };
  };
}

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

let helmHome: string;
let starting: Promise<ControlPlane> | undefined;

/** Runs the real helm with its own config, cache and data directories; never throws on exit. */
function helm(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve, reject) => {
    execFile(
      helmPath(),
      args,
      {
        env: {
          PATH: process.env.PATH ?? '',
          HOME: helmHome,
          HELM_CONFIG_HOME: join(helmHome, 'config'),
          HELM_CACHE_HOME: join(helmHome, 'cache'),
          HELM_DATA_HOME: join(helmHome, 'data'),
        },
        maxBuffer: 32 * 1024 * 1024,
        timeout: 60_000,
      },
      (err, stdout, stderr) => {
        if (err !== null && typeof err.code !== 'number') {
          reject(new Error(`cannot run helm: ${err.message}`, { cause: err }));
          return;
        }
        resolve({ stdout, stderr, code: typeof err?.code === 'number' ? err.code : 0 });
      },
    );
  });
}

/** Runs helm and fails the test, with helm's stderr, unless it succeeds. */
async function helmOk(args: string[]): Promise<string> {
  const result = await helm(args);
  if (result.code !== 0) {
    throw new Error(`helm ${args.join(' ')} exited ${result.code}:\n${result.stderr}`);
  }
  return result.stdout;
}

/** `helm template` of the chart as release {@link RELEASE}, parsed into its objects. */
async function render(args: string[] = []): Promise<Manifest[]> {
  const stdout = await helmOk(['template', RELEASE, CHART, '--namespace', NAMESPACE, ...args]);
  return parseAllDocuments(stdout)
    .map((doc) => doc.toJS() as Manifest | null)
    .filter((m): m is Manifest => m !== null);
}

/** The rendered object of that kind (and name); fails the test when there is none. */
function find(manifests: Manifest[], kind: string, name?: string): Manifest {
  const found = manifests.find(
    (m) => m.kind === kind && (name === undefined || m.metadata.name === name),
  );
  if (found === undefined) throw new Error(`no ${kind} ${name ?? ''} rendered`);
  return found;
}

/** The operator's container of a Deployment or StatefulSet. */
function operatorContainer(workload: Manifest): Container {
  const container = (workload as unknown as Workload).spec.template.spec.containers[0];
  if (container === undefined) throw new Error('the workload has no container');
  return container;
}

/** The value of `--flag=value` in the arguments, or undefined. */
function flag(args: readonly string[], name: string): string | undefined {
  return args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

const b64 = (text: string) => Buffer.from(text, 'base64').toString('utf8');

/** The rules of the RBAC example, by role: what the chart must grant, no more, no less. */
function exampleRules(): {
  cluster: Rule[];
  leader: Rule[];
  metricsAuth: Rule[];
  metricsReader: Rule[];
} {
  const docs = parseAllDocuments(readFileSync(RBAC_EXAMPLE, 'utf8')).map(
    (d) => d.toJS() as Manifest & { rules?: Rule[] },
  );
  const rules = (kind: string, name: string) =>
    docs.find((d) => d.kind === kind && d.metadata.name === name)?.rules ?? [];
  return {
    cluster: rules('ClusterRole', 'kube-audit-operator'),
    leader: rules('Role', 'kube-audit-operator-leader'),
    metricsAuth: rules('ClusterRole', 'kube-audit-operator-metrics-auth'),
    metricsReader: rules('ClusterRole', 'kube-audit-operator-metrics-reader'),
  };
}

beforeAll(async () => {
  helmHome = await mkdtemp(join(tmpdir(), 'kao-chart-helm-'));
  // The control plane starts while the render tests run: they need no cluster.
  starting = startControlPlane();
  starting.catch(() => undefined);
});

afterAll(async () => {
  const cp = await starting?.catch(() => undefined);
  await cp?.stop();
  if (helmHome !== undefined) await rm(helmHome, { recursive: true, force: true });
});

describe('helm lint', () => {
  it('passes with the default values', async () => {
    const out = await helmOk(['lint', CHART, '--strict']);
    expect(out).toContain('0 chart(s) failed');
  });

  it('passes with every option on: cert-manager, pinned ClusterIP, 3 replicas, PVC spool, ServiceMonitor, dashboard, native mode', async () => {
    const out = await helmOk(['lint', CHART, '--strict', '-f', FULL_VALUES]);
    expect(out).toContain('0 chart(s) failed');
  });
});

describe('helm template with the default values', () => {
  let manifests: Manifest[];
  beforeAll(async () => {
    manifests = await render();
  });

  it('runs 2 replicas of a Deployment, non-root with a read-only root filesystem, no privilege escalation, no capabilities and the runtime default seccomp profile', () => {
    const deployment = find(manifests, 'Deployment', FULLNAME);
    const pod = (deployment as unknown as Workload).spec.template.spec;
    expect((deployment as unknown as Workload).spec.replicas).toBe(2);
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(operatorContainer(deployment).securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      runAsUser: 65532,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.serviceAccountName).toBe(FULLNAME);
    expect(find(manifests, 'ServiceAccount', FULLNAME).metadata.namespace).toBe(NAMESPACE);
  });

  it('probes /readyz for readiness and /healthz for liveness over HTTPS on the receiver port, with requests and limits', () => {
    const container = operatorContainer(find(manifests, 'Deployment'));
    expect(container.ports).toEqual([{ name: 'https', containerPort: 8443, protocol: 'TCP' }]);
    expect(container.readinessProbe.httpGet).toEqual({
      path: '/readyz',
      port: 'https',
      scheme: 'HTTPS',
    });
    expect(container.livenessProbe.httpGet).toEqual({
      path: '/healthz',
      port: 'https',
      scheme: 'HTTPS',
    });
    // No probe before the process can answer: each failure is a Warning Event.
    expect(container.startupProbe).toMatchObject({
      httpGet: { path: '/readyz', port: 'https', scheme: 'HTTPS' },
      initialDelaySeconds: 5,
    });
    expect(Object.keys(container.resources.requests ?? {}).sort()).toEqual(['cpu', 'memory']);
    expect(Object.keys(container.resources.limits ?? {}).sort()).toEqual(['cpu', 'memory']);
  });

  it('runs `run` with the mounted certificate, token and spool, leaving for 5 s and draining within 25 s of a 30 s grace period', () => {
    const deployment = find(manifests, 'Deployment');
    const pod = (deployment as unknown as Workload).spec.template.spec;
    const { args, env, volumeMounts } = operatorContainer(deployment);
    expect(args[0]).toBe('run');
    const mounts = Object.fromEntries(volumeMounts.map((m) => [m.name, m.mountPath]));
    expect(flag(args, 'namespace')).toBe(NAMESPACE);
    expect(flag(args, 'listen')).toBe('0.0.0.0:8443');
    expect(flag(args, 'tls-cert-file')).toBe(`${mounts.tls}/tls.crt`);
    expect(flag(args, 'tls-key-file')).toBe(`${mounts.tls}/tls.key`);
    expect(flag(args, 'token-file')).toBe(`${mounts.token}/token`);
    expect(flag(args, 'data-dir')).toBe(mounts.spool);
    expect(flag(args, 'native-audit-sinks')).toBe('off');
    expect(flag(args, 'native-key-file')).toBeUndefined();
    // No pinned ClusterIP: the Service's address from the pod's environment, expanded by the kubelet.
    expect(flag(args, 'advertise-url')).toBe(
      'https://$(KUBE_AUDIT_KUBE_AUDIT_OPERATOR_SERVICE_HOST):443',
    );
    expect(flag(args, 'shutdown-grace-seconds')).toBe('25');
    // Readiness off and batches still taken for 5 s of it, while kube-proxy catches up (ADR 0026).
    expect(flag(args, 'shutdown-delay-seconds')).toBe('5');
    expect(pod.terminationGracePeriodSeconds).toBe(30);
    expect(env.find((e) => e.name === 'POD_NAME')?.valueFrom).toEqual({
      fieldRef: { fieldPath: 'metadata.name' },
    });
    expect(pod.volumes.find((v) => v.name === 'spool')?.emptyDir?.sizeLimit).toBe('4Gi');
  });

  it('grants exactly the rules of examples/operator/rbac.yaml to its ServiceAccount, the Lease Role in the release namespace', () => {
    const example = exampleRules();
    expect(example.cluster.length).toBeGreaterThan(0);
    expect(find(manifests, 'ClusterRole', FULLNAME).rules).toEqual(example.cluster);
    const role = find(manifests, 'Role');
    expect(role.metadata.namespace).toBe(NAMESPACE);
    expect(role.rules).toEqual(example.leader);
    const subject = [{ kind: 'ServiceAccount', name: FULLNAME, namespace: NAMESPACE }];
    const clusterBinding = find(manifests, 'ClusterRoleBinding', FULLNAME);
    expect(clusterBinding.subjects).toEqual(subject);
    expect(clusterBinding.roleRef).toMatchObject({ kind: 'ClusterRole', name: FULLNAME });
    const binding = find(manifests, 'RoleBinding');
    expect(binding.subjects).toEqual(subject);
    expect(binding.roleRef).toMatchObject({ kind: 'Role', name: role.metadata.name });
  });

  it('lets its ServiceAccount review tokens and access for /metrics, and has a metrics-reader ClusterRole for scrapers, bound to nobody by default', () => {
    const example = exampleRules();
    expect(example.metricsAuth.length).toBeGreaterThan(0);
    const auth = `${FULLNAME}-metrics-auth`;
    expect(find(manifests, 'ClusterRole', auth).rules).toEqual(example.metricsAuth);
    const authBinding = find(manifests, 'ClusterRoleBinding', auth);
    expect(authBinding.subjects).toEqual([
      { kind: 'ServiceAccount', name: FULLNAME, namespace: NAMESPACE },
    ]);
    expect(authBinding.roleRef).toMatchObject({ kind: 'ClusterRole', name: auth });
    const reader = `${FULLNAME}-metrics-reader`;
    expect(find(manifests, 'ClusterRole', reader).rules).toEqual(example.metricsReader);
    expect(example.metricsReader).toEqual([{ nonResourceURLs: ['/metrics'], verbs: ['get'] }]);
    expect(
      manifests.filter((m) => m.kind === 'ClusterRoleBinding' && m.metadata.name === reader),
    ).toEqual([]);
  });

  it('creates the leader-election Lease that the replicas campaign for, empty', () => {
    const lease = find(manifests, 'Lease', FULLNAME);
    expect(lease.apiVersion).toBe('coordination.k8s.io/v1');
    expect(lease.spec).toEqual({});
    const { args } = operatorContainer(find(manifests, 'Deployment'));
    expect(args).toContain(`--lease-name=${FULLNAME}`);
  });

  it('exposes the receivers on a ClusterIP Service, port 443 named https to the container’s 8443', () => {
    const spec = find(manifests, 'Service').spec as Record<string, unknown>;
    expect(spec.type).toBe('ClusterIP');
    expect(spec.clusterIP).toBeUndefined();
    expect(spec.ports).toEqual([
      { name: 'https', port: 443, targetPort: 'https', protocol: 'TCP' },
    ]);
  });

  it('protects 2 replicas with a PodDisruptionBudget of minAvailable 1, and a single replica with none', async () => {
    expect(find(manifests, 'PodDisruptionBudget').spec).toMatchObject({ minAvailable: 1 });
    const single = await render(['--set', 'replicas=1']);
    expect(single.filter((m) => m.kind === 'PodDisruptionBudget')).toEqual([]);
  });

  it('generates a CA and a serving certificate it signed for the Service’s DNS names, and a token', () => {
    const tls = find(manifests, 'Secret', `${FULLNAME}-tls`);
    expect(tls.type).toBe('kubernetes.io/tls');
    const data = tls.data as Record<string, string>;
    const ca = new X509Certificate(b64(data['ca.crt'] as string));
    const cert = new X509Certificate(b64(data['tls.crt'] as string));
    expect(ca.ca).toBe(true);
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.subjectAltName?.split(', ')).toEqual(
      expect.arrayContaining([
        `DNS:${FULLNAME}`,
        `DNS:${FULLNAME}.${NAMESPACE}.svc`,
        `DNS:${FULLNAME}.${NAMESPACE}.svc.cluster.local`,
      ]),
    );
    const caSecret = find(manifests, 'Secret', `${FULLNAME}-ca`).data as Record<string, string>;
    expect(caSecret['ca.crt']).toBe(data['ca.crt']);
    const token = find(manifests, 'Secret', `${FULLNAME}-token`).data as Record<string, string>;
    expect(b64(token.token as string)).toMatch(/^[A-Za-z0-9]{48}$/);
    // Both are in the apiserver's webhook kubeconfig: helm uninstall leaves them.
    for (const name of [`${FULLNAME}-ca`, `${FULLNAME}-token`]) {
      expect(find(manifests, 'Secret', name).metadata.annotations).toEqual({
        'helm.sh/resource-policy': 'keep',
      });
    }
    expect(find(manifests, 'Secret', `${FULLNAME}-tls`).metadata.annotations).not.toHaveProperty(
      'helm.sh/resource-policy',
    );
    expect(manifests.filter((m) => m.kind === 'ServiceMonitor' || m.kind === 'ConfigMap')).toEqual(
      [],
    );
  });
});

describe('helm template of nodeOptions', () => {
  /** The Dockerfile's `ENV NODE_OPTIONS="..."`: the image's own V8 heap limits (ADR 0021). */
  const imageNodeOptions = /^ENV NODE_OPTIONS="([^"]*)"$/m.exec(
    readFileSync(new URL('../../../Dockerfile', import.meta.url), 'utf8'),
  )?.[1];
  const nodeOptions = (manifests: Manifest[]) =>
    operatorContainer(find(manifests, 'Deployment')).env.find((e) => e.name === 'NODE_OPTIONS');

  it('passes the image’s V8 heap limits as NODE_OPTIONS by default', async () => {
    expect(imageNodeOptions).toMatch(/--max-old-space-size=\d+/);
    expect(nodeOptions(await render())).toEqual({ name: 'NODE_OPTIONS', value: imageNodeOptions });
  });

  it('runs the image’s entrypoint, whose node flags NODE_OPTIONS cannot carry', async () => {
    for (const [values, kind] of [
      [[], 'Deployment'],
      [['-f', FULL_VALUES], 'StatefulSet'],
    ] as const) {
      const container = operatorContainer(find(await render([...values]), kind));
      // A `command` would replace the ENTRYPOINT and its V8 flags (ADR 0021).
      expect(container).not.toHaveProperty('command');
      expect(container.args[0]).toBe('run');
    }
  });

  it('passes a user’s flags instead, and an empty NODE_OPTIONS (Node.js’s defaults) when set empty', async () => {
    const own = '--max-semi-space-size=8 --max-old-space-size=512';
    expect(nodeOptions(await render(['--set-string', `nodeOptions=${own}`]))).toEqual({
      name: 'NODE_OPTIONS',
      value: own,
    });
    expect(nodeOptions(await render(['--set-string', 'nodeOptions=']))).toEqual({
      name: 'NODE_OPTIONS',
      value: '',
    });
  });
});

describe('helm template with other certificate sources', () => {
  it('names a pinned ClusterIP in the generated certificate', async () => {
    const manifests = await render(['--set', 'service.clusterIP=10.96.0.50']);
    const data = find(manifests, 'Secret', `${FULLNAME}-tls`).data as Record<string, string>;
    const cert = new X509Certificate(b64(data['tls.crt'] as string));
    expect(cert.subjectAltName?.split(', ')).toContain('IP Address:10.96.0.50');
  });

  it('generates no Secret when the certificate and the token are Secrets of the user', async () => {
    const manifests = await render([
      '--set',
      'certificate.mode=existing-secret',
      '--set',
      'certificate.existingSecret=my-tls',
      '--set',
      'receiverToken.existingSecret=my-token',
      '--set',
      'receiverToken.key=apiserver',
    ]);
    expect(manifests.filter((m) => m.kind === 'Secret' || m.kind === 'Certificate')).toEqual([]);
    const deployment = find(manifests, 'Deployment') as unknown as Workload;
    expect(deployment.spec.template.spec.volumes.map((v) => v.secret)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ secretName: 'my-tls' }),
        expect.objectContaining({ secretName: 'my-token' }),
      ]),
    );
    const { args } = operatorContainer(find(manifests, 'Deployment'));
    expect(flag(args, 'token-file')).toBe('/etc/kube-audit/token/apiserver');
  });
});

describe('helm template with every option on (ci/full-values.yaml)', () => {
  let manifests: Manifest[];
  beforeAll(async () => {
    manifests = await render(['-f', FULL_VALUES]);
  });

  it('pins the Service’s ClusterIP and advertises the receivers at it', () => {
    expect((find(manifests, 'Service').spec as Record<string, unknown>).clusterIP).toBe(
      '10.96.0.50',
    );
    const { args } = operatorContainer(find(manifests, 'StatefulSet'));
    expect(flag(args, 'advertise-url')).toBe('https://10.96.0.50:443');
  });

  it('runs 3 replicas as a StatefulSet with one spool claim per replica, and a PodDisruptionBudget', () => {
    expect(manifests.filter((m) => m.kind === 'Deployment')).toEqual([]);
    const workload = find(manifests, 'StatefulSet') as unknown as Workload;
    expect(workload.spec.replicas).toBe(3);
    expect(workload.spec.volumeClaimTemplates?.map((c) => c.metadata.name)).toEqual(['spool']);
    expect(workload.spec.template.spec.volumes.map((v) => v.name)).not.toContain('spool');
    expect(find(manifests, 'PodDisruptionBudget').spec).toMatchObject({ minAvailable: 1 });
  });

  it('asks cert-manager for a certificate naming the pinned ClusterIP, and generates none itself', () => {
    const certificate = find(manifests, 'Certificate', `${FULLNAME}-tls`);
    expect(certificate.apiVersion).toBe('cert-manager.io/v1');
    expect(certificate.spec).toMatchObject({
      secretName: `${FULLNAME}-tls`,
      ipAddresses: ['10.96.0.50'],
      issuerRef: { kind: 'Issuer', name: `${FULLNAME}-ca` },
    });
    expect((certificate.spec as { dnsNames: string[] }).dnsNames).toContain(
      'audit.example.internal',
    );
    expect(find(manifests, 'Certificate', `${FULLNAME}-ca`).spec).toMatchObject({ isCA: true });
    expect(
      manifests
        .filter((m) => m.kind === 'Secret')
        .map((m) => m.metadata.name)
        .sort(),
    ).toEqual([`${FULLNAME}-native-key`, `${FULLNAME}-token`]);
  });

  it('binds the metrics-reader ClusterRole to the subjects of metrics.readerSubjects', () => {
    const reader = `${FULLNAME}-metrics-reader`;
    const binding = find(manifests, 'ClusterRoleBinding', reader);
    expect(binding.roleRef).toEqual({
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: reader,
    });
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'prometheus-k8s', namespace: 'monitoring' },
    ]);
  });

  it('registers native AuditSinks with a generated signing key', () => {
    const { args } = operatorContainer(find(manifests, 'StatefulSet'));
    expect(flag(args, 'native-audit-sinks')).toBe('auto');
    expect(flag(args, 'native-key-file')).toBe('/etc/kube-audit/native-key/key');
    const key = find(manifests, 'Secret', `${FULLNAME}-native-key`).data as Record<string, string>;
    expect(b64(key.key as string).length).toBeGreaterThanOrEqual(16);
  });

  it('adds a ServiceMonitor for /metrics over HTTPS with Prometheus’s token and the chart’s CA, and the Grafana dashboard ConfigMap', () => {
    const monitor = find(manifests, 'ServiceMonitor');
    expect(monitor.metadata.labels).toMatchObject({ release: 'prometheus' });
    expect((monitor.spec as { endpoints: unknown[] }).endpoints).toEqual([
      {
        port: 'https',
        path: '/metrics',
        scheme: 'https',
        interval: '30s',
        bearerTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
        tlsConfig: {
          serverName: `${FULLNAME}.${NAMESPACE}.svc`,
          ca: { secret: { name: `${FULLNAME}-tls`, key: 'ca.crt' } },
        },
      },
    ]);
    const dashboard = find(manifests, 'ConfigMap');
    expect(dashboard.metadata.namespace).toBe('monitoring');
    expect(dashboard.metadata.labels).toMatchObject({ grafana_dashboard: '1' });
    const json = JSON.parse((dashboard.data as Record<string, string>)['kube-audit.json'] ?? '');
    expect(json).toEqual(
      JSON.parse(readFileSync(join(CHART, 'dashboards', 'kube-audit.json'), 'utf8')),
    );
  });
});

describe('values.schema.json', () => {
  it.each([
    ['replicas=0', "'/replicas'"],
    ['logLevel=loud', "'/logLevel'"],
    ['unknownKey=1', "'unknownKey'"],
    ['certificate.mode=acme', "'/certificate/mode'"],
    ['metrics.readerSubjects[0].kind=ServiceAccount', "'/metrics/readerSubjects/0'"],
  ])('refuses --set %s, naming the value', async (set, named) => {
    const result = await helm(['template', RELEASE, CHART, '--set', set]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("values don't meet the specifications of the schema");
    expect(result.stderr).toContain(named);
  });

  it.each([
    [
      ['shutdownGraceSeconds=30'],
      'shutdownGraceSeconds must be less than terminationGracePeriodSeconds',
    ],
    [['shutdownDelaySeconds=25'], 'shutdownDelaySeconds must be less than shutdownGraceSeconds'],
    [
      ['shutdownGraceSeconds=4', 'shutdownDelaySeconds=5'],
      'shutdownDelaySeconds must be less than shutdownGraceSeconds',
    ],
  ])('refuses --set %j, whose periods do not nest', async (sets, message) => {
    const result = await helm([
      'template',
      RELEASE,
      CHART,
      ...sets.flatMap((set) => ['--set', set]),
    ]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message);
  });
});

describe('on kube-apiserver 1.37', () => {
  let cp: ControlPlane;

  /** Runs kubectl and fails the test, with kubectl's stderr, unless it succeeds. */
  async function kubectl(args: string[], input?: string): Promise<string> {
    const result = await cp.kubectl(args, input === undefined ? {} : { input });
    if (result.code !== 0) {
      throw new Error(`kubectl ${args.join(' ')} exited ${result.code}:\n${result.stderr}`);
    }
    return result.stdout;
  }

  async function secretData(name: string): Promise<Record<string, string>> {
    const secret = JSON.parse(
      await kubectl(['get', 'secret', name, '-n', NAMESPACE, '-o', 'json']),
    );
    return secret.data as Record<string, string>;
  }

  beforeAll(async () => {
    if (starting === undefined) throw new Error('the control plane was not started');
    cp = await starting;
  });

  it('accepts the default render, CRDs included, in a server-side dry run', async () => {
    await kubectl(['create', 'namespace', 'dry-run']);
    const out = await helmOk([
      'template',
      RELEASE,
      CHART,
      '--namespace',
      'dry-run',
      '--include-crds',
    ]);
    const applied = await kubectl(['apply', '--dry-run=server', '-f', '-'], out);
    expect(applied).toContain(
      'customresourcedefinition.apiextensions.k8s.io/auditsinks.kube-audit.dev created (server dry run)',
    );
    expect(applied).toContain(`deployment.apps/${FULLNAME} created (server dry run)`);
  });

  it('accepts the full render in a server-side dry run, beside stand-in cert-manager and Prometheus Operator CRDs', async () => {
    await kubectl(['apply', '-f', '-'], JSON.stringify(standInCrds()));
    await kubectl(['create', 'namespace', 'monitoring']);
    await kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=30s',
      'crd/certificates.cert-manager.io',
      'crd/issuers.cert-manager.io',
      'crd/servicemonitors.monitoring.coreos.com',
    ]);
    const out = await helmOk([
      'template',
      RELEASE,
      CHART,
      '--namespace',
      'dry-run',
      '-f',
      FULL_VALUES,
      // The harness's service range instead of the example's.
      '--set',
      `service.clusterIP=${PINNED_IP}`,
    ]);
    const applied = await kubectl(['apply', '--dry-run=server', '-f', '-'], out);
    expect(applied).toContain(`statefulset.apps/${FULLNAME} created (server dry run)`);
    expect(applied).toContain(
      `servicemonitor.monitoring.coreos.com/${FULLNAME} created (server dry run)`,
    );
  });

  it('installs: the CRDs are registered, and the Deployment, Service, RBAC and Secrets exist', async () => {
    const out = await helmOk([
      'install',
      RELEASE,
      CHART,
      '--kubeconfig',
      cp.kubeconfig(),
      '--namespace',
      NAMESPACE,
      '--create-namespace',
      // Pods never run here; hookOnly waits for nothing the chart has.
      '--wait=hookOnly',
    ]);
    expect(out).toContain('STATUS: deployed');
    expect(out).toContain(
      '--audit-webhook-config-file=/etc/kubernetes/audit/audit-webhook.kubeconfig',
    );
    await kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=30s',
      'crd/auditsinks.kube-audit.dev',
      'crd/auditpipelines.kube-audit.dev',
    ]);
    const names = (
      await kubectl([
        'get',
        '-n',
        NAMESPACE,
        'deployment,service,serviceaccount,role,rolebinding,secret,poddisruptionbudget',
        // The chart's objects, not Helm's release records.
        `--selector=app.kubernetes.io/instance=${RELEASE}`,
        '-o',
        'name',
      ])
    )
      .trim()
      .split('\n')
      .sort();
    expect(names).toEqual(
      [
        `deployment.apps/${FULLNAME}`,
        `poddisruptionbudget.policy/${FULLNAME}`,
        `role.rbac.authorization.k8s.io/${FULLNAME}-leader`,
        `rolebinding.rbac.authorization.k8s.io/${FULLNAME}-leader`,
        `secret/${FULLNAME}-ca`,
        `secret/${FULLNAME}-tls`,
        `secret/${FULLNAME}-token`,
        `service/${FULLNAME}`,
        `serviceaccount/${FULLNAME}`,
      ].sort(),
    );
    await kubectl(['get', 'clusterrole,clusterrolebinding', FULLNAME]);
    // The bindings grant the ServiceAccount what the operator needs, and only that.
    const sa = `system:serviceaccount:${NAMESPACE}:${FULLNAME}`;
    const can = async (...args: string[]) =>
      (await cp.kubectl(['auth', 'can-i', ...args, `--as=${sa}`])).stdout.trim();
    expect(await can('patch', 'auditpipelines.kube-audit.dev', '--subresource=status', '-A')).toBe(
      'yes',
    );
    expect(await can('watch', 'secrets', '-A')).toBe('yes');
    expect(await can('get', 'secrets', '-n', NAMESPACE)).toBe('no');
    expect(await can('update', 'leases.coordination.k8s.io', '-n', NAMESPACE)).toBe('yes');
    expect(await can('update', 'leases.coordination.k8s.io', '-n', 'default')).toBe('no');
    // /metrics: it asks the apiserver about scrapers' tokens; it reads no metrics itself.
    expect(await can('create', 'tokenreviews.authentication.k8s.io')).toBe('yes');
    expect(await can('create', 'subjectaccessreviews.authorization.k8s.io')).toBe('yes');
    expect(await can('get', '/metrics')).toBe('no');
    await kubectl(['get', 'clusterrole,clusterrolebinding', `${FULLNAME}-metrics-auth`]);
    await kubectl(['get', 'clusterrole', `${FULLNAME}-metrics-reader`]);
  });

  it('keeps the generated CA and token on upgrade, and signs a certificate for the Service’s ClusterIP with that CA', async () => {
    const before = {
      ca: await secretData(`${FULLNAME}-ca`),
      tls: await secretData(`${FULLNAME}-tls`),
      token: await secretData(`${FULLNAME}-token`),
    };
    const clusterIP = (
      await kubectl([
        'get',
        'service',
        FULLNAME,
        '-n',
        NAMESPACE,
        '-o',
        'jsonpath={.spec.clusterIP}',
      ])
    ).trim();
    expect(clusterIP).toMatch(/^10\.0\.0\.\d+$/);
    const upgrade = () =>
      helmOk([
        'upgrade',
        RELEASE,
        CHART,
        '--kubeconfig',
        cp.kubeconfig(),
        '--namespace',
        NAMESPACE,
      ]);

    // The first upgrade knows the ClusterIP that Kubernetes picked at install.
    const notes = await upgrade();
    expect(notes).toContain(`--server https://${clusterIP}:443`);
    const after = {
      ca: await secretData(`${FULLNAME}-ca`),
      tls: await secretData(`${FULLNAME}-tls`),
      token: await secretData(`${FULLNAME}-token`),
    };
    expect(after.ca).toEqual(before.ca);
    expect(after.token).toEqual(before.token);
    expect(after.tls['ca.crt']).toBe(before.tls['ca.crt']);
    const ca = new X509Certificate(b64(after.ca['ca.crt'] as string));
    const cert = new X509Certificate(b64(after.tls['tls.crt'] as string));
    expect(cert.verify(ca.publicKey)).toBe(true);
    expect(cert.subjectAltName?.split(', ')).toContain(`IP Address:${clusterIP}`);
    expect(new X509Certificate(b64(before.tls['tls.crt'] as string)).subjectAltName).not.toContain(
      'IP Address',
    );

    // From then on, an upgrade changes none of them.
    await upgrade();
    expect(await secretData(`${FULLNAME}-ca`)).toEqual(after.ca);
    expect(await secretData(`${FULLNAME}-tls`)).toEqual(after.tls);
    expect(await secretData(`${FULLNAME}-token`)).toEqual(after.token);
  });

  it('uninstalls: the release’s objects are gone but the CA and the token, which a reinstall reads back; the CRDs (never deleted by Helm) stay', async () => {
    const uninstall = () =>
      helmOk(['uninstall', RELEASE, '--kubeconfig', cp.kubeconfig(), '--namespace', NAMESPACE]);
    const leftBehind = async () =>
      (
        await kubectl([
          'get',
          '-n',
          NAMESPACE,
          'deployment,service,serviceaccount,role,rolebinding,secret,poddisruptionbudget,lease',
          `--selector=app.kubernetes.io/instance=${RELEASE}`,
          '-o',
          'name',
        ])
      )
        .trim()
        .split('\n')
        .filter((n) => n !== '')
        .sort();
    const kept = {
      ca: await secretData(`${FULLNAME}-ca`),
      token: await secretData(`${FULLNAME}-token`),
    };
    await uninstall();
    expect(await leftBehind()).toEqual([`secret/${FULLNAME}-ca`, `secret/${FULLNAME}-token`]);
    // A reinstall under the same name: the apiserver's files stay valid.
    await helmOk([
      'install',
      RELEASE,
      CHART,
      '--kubeconfig',
      cp.kubeconfig(),
      '--namespace',
      NAMESPACE,
      '--wait=hookOnly',
    ]);
    expect(await secretData(`${FULLNAME}-ca`)).toEqual(kept.ca);
    expect(await secretData(`${FULLNAME}-token`)).toEqual(kept.token);
    const tls = await secretData(`${FULLNAME}-tls`);
    expect(tls['ca.crt']).toBe(kept.ca['ca.crt']);
    await uninstall();
    // As the notes say, to remove it for good.
    await kubectl(['delete', 'secret', '-n', NAMESPACE, `${FULLNAME}-ca`, `${FULLNAME}-token`]);
    expect(await leftBehind()).toEqual([]);
    for (const name of [FULLNAME, `${FULLNAME}-metrics-auth`, `${FULLNAME}-metrics-reader`]) {
      const cluster = await cp.kubectl(['get', 'clusterrole', name]);
      expect(cluster.code).not.toBe(0);
      expect(cluster.stderr).toContain('NotFound');
    }
    const binding = await cp.kubectl(['get', 'clusterrolebinding', FULLNAME]);
    expect(binding.stderr).toContain('NotFound');
    await kubectl(['get', 'crd', 'auditsinks.kube-audit.dev', 'auditpipelines.kube-audit.dev']);
  });
});

/** Minimal CRDs for the kinds of cert-manager and the Prometheus Operator the chart can create. */
function standInCrds(): object {
  const crd = (group: string, kind: string, plural: string) => ({
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.${group}` },
    spec: {
      group,
      scope: 'Namespaced',
      names: { kind, plural, singular: kind.toLowerCase(), listKind: `${kind}List` },
      versions: [
        {
          name: 'v1',
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
          },
        },
      ],
    },
  });
  return {
    apiVersion: 'v1',
    kind: 'List',
    items: [
      crd('cert-manager.io', 'Issuer', 'issuers'),
      crd('cert-manager.io', 'Certificate', 'certificates'),
      crd('monitoring.coreos.com', 'ServiceMonitor', 'servicemonitors'),
    ],
  };
}
