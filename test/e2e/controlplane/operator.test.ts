// The operator end to end. Real processes: etcd and kube-apiserver (current release, static audit
// webhook to the operator over HTTPS with a bearer token, plus an audit log file as the oracle),
// influxd, kubectl, and `kube-audit-operator run` itself (the built binary, with the least
// privilege RBAC a deployment grants it). Every sink's bucket must hold exactly what its policy and
// tenant scope allow of the events the apiserver recorded.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { parseAuditLogLine } from '../../../src/audit/parse.ts';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { type ControlPlane, startControlPlane } from '../../harness/controlplane.ts';
import { freePort, type InfluxServer, startInfluxd } from '../../harness/influxd.ts';
import {
  type OperatorProcess,
  operatorRunArgs,
  startOperatorProcess,
} from '../../harness/operator.ts';
import { TestPki } from '../../harness/pki.ts';
import { eventually } from '../../support/wait.ts';
import { conditionOf, kubectlOk, postJson, type SinkStatus, sinkStatus } from './kube.ts';
import { AuditOracle, type WrittenBy } from './oracle.ts';

const OPERATOR_NS = 'kube-audit';
const MAIN = fileURLToPath(new URL('../../../dist/main.js', import.meta.url));
const execFileAsync = promisify(execFile);
const VALUES = fileURLToPath(
  new URL('../../../charts/kube-audit-operator/values.yaml', import.meta.url),
);

interface Env {
  cp: ControlPlane;
  influx: InfluxServer;
  operator: OperatorProcess;
  dir: string;
  receiverUrl: string;
  receiverToken: string;
  ca: string;
  auditLog: string;
  /** The resources applied at start, by name. */
  resources: Record<string, Record<string, unknown>>;
  oracle: AuditOracle;
}

let env: Env;

const influxSpec = (bucket: string, secret: string, extra: Record<string, unknown> = {}) => ({
  url: '',
  org: '',
  bucket,
  tokenSecretRef: { name: secret, key: 'token' },
  flushInterval: '200ms',
  ...extra,
});

/** The AuditSink and two AuditPipelines every test starts from, writing to `influx`. */
function testResources(influx: InfluxServer): Record<string, Record<string, unknown>> {
  return {
    'cluster-metadata': {
      apiVersion: 'kube-audit.dev/v1alpha1',
      kind: 'AuditSink',
      metadata: { name: 'cluster-metadata' },
      spec: {
        policy: { level: 'Metadata', stages: ['ResponseComplete'] },
        influxdb: { ...influxSpec('cluster', 'cluster-token'), url: influx.url, org: influx.org },
      },
    },
    'a-trail': {
      apiVersion: 'kube-audit.dev/v1alpha1',
      kind: 'AuditPipeline',
      metadata: { name: 'a-trail', namespace: 'team-a' },
      spec: {
        policy: {
          omitStages: ['RequestReceived'],
          rules: [
            { level: 'None', verbs: ['get', 'list', 'watch'] },
            { level: 'Metadata', resources: [{ group: '', resources: ['secrets'] }] },
            { level: 'RequestResponse', resources: [{ group: '', resources: ['configmaps'] }] },
            {
              level: 'Request',
              resources: [{ group: 'apps', resources: ['deployments', 'deployments/scale'] }],
            },
          ],
        },
        influxdb: { ...influxSpec('team-a', 'influxdb'), url: influx.url, org: influx.org },
      },
    },
    'b-trail': {
      apiVersion: 'kube-audit.dev/v1alpha1',
      kind: 'AuditPipeline',
      metadata: { name: 'b-trail', namespace: 'team-b' },
      spec: {
        policy: { omitStages: ['RequestReceived'], rules: [{ level: 'Metadata' }] },
        influxdb: {
          ...influxSpec('team-b', 'influxdb', { createBucket: true, retention: '24h' }),
          url: influx.url,
          org: influx.org,
        },
      },
    },
  };
}

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kao-operator-e2e-'));
  const pki = new TestPki(dir);
  await pki.init();
  await pki.ca('ca');
  const serving = await pki.leaf('receiver', 'ca', 'server');
  const ca = await readFile(join(dir, 'ca.crt'), 'utf8');
  const receiverToken = randomBytes(24).toString('base64url');
  const tokenFile = join(dir, 'receiver-tokens');
  await writeFile(tokenFile, `${receiverToken}\n`);
  const port = await freePort();
  const receiverUrl = `https://127.0.0.1:${port}`;
  const auditLog = join(dir, 'audit.log');

  const influx = await startInfluxd();
  const resources = testResources(influx);
  // The apiserver runs with exactly what `apiserver-config` generates for these sinks: the
  // webhook kubeconfig and the superset policy.
  const manifests = join(dir, 'sinks.yaml');
  await writeFile(
    manifests,
    Object.values(resources)
      .map((o) => stringify(o))
      .join('---\n'),
  );
  const generated = join(dir, 'apiserver');
  await execFileAsync(process.execPath, [
    MAIN,
    'apiserver-config',
    `--filename=${manifests}`,
    `--namespace=${OPERATOR_NS}`,
    `--server=${receiverUrl}`,
    `--ca-file=${join(dir, 'ca.crt')}`,
    `--token-file=${tokenFile}`,
    `--output-dir=${generated}`,
    // The harness's user the operator runs as (in a cluster, its ServiceAccount).
    '--operator-user=kube-audit-operator',
  ]);
  const cp = await startControlPlane({
    extraApiserverArgs: [
      `--audit-webhook-config-file=${join(generated, 'audit-webhook.kubeconfig')}`,
      `--audit-policy-file=${join(generated, 'audit-policy.yaml')}`,
      // A test waits seconds, not the default 30 s batches and 10 s first back-off. The apiserver
      // retries a batch five times, backing off by 1.5 each time: about 13 s from a first 1 s,
      // which a restarted operator must answer within on a loaded machine.
      '--audit-webhook-batch-max-wait=1s',
      '--audit-webhook-initial-backoff=1s',
      // The oracle: the apiserver's own log of every event, at the level its policy captured.
      `--audit-log-path=${auditLog}`,
      '--audit-log-format=json',
    ],
  });
  const kubectl = async (args: string[], input?: string) => {
    const r = await cp.kubectl(args, input === undefined ? {} : { input });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  await kubectl(['apply', '-f', 'crds/']);
  await kubectl(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
  for (const ns of [OPERATOR_NS, 'team-a', 'team-b']) await kubectl(['create', 'namespace', ns]);
  // The operator runs as a user with exactly the documented RBAC.
  await kubectl(['apply', '-f', 'examples/operator/rbac.yaml']);

  await Promise.all(['cluster', 'team-a'].map((b) => influx.createBucket(b)));
  const writeToken = async (bucket: string) =>
    influx.createToken([
      { action: 'write', bucket },
      { action: 'read', bucket },
    ]);
  const secret = (namespace: string, name: string, token: string) => ({
    apiVersion: 'v1',
    kind: 'Secret',
    // Secrets are usable by sinks only when their owners say so.
    metadata: { namespace, name, labels: { 'kube-audit.dev/usable-by-sinks': 'true' } },
    stringData: { token },
  });
  const secrets = [
    secret(OPERATOR_NS, 'cluster-token', await writeToken('cluster')),
    secret('team-a', 'influxdb', await writeToken('team-a')),
    // team-b's bucket is created by the operator: that needs an org-wide token.
    secret('team-b', 'influxdb', influx.token),
  ];
  await kubectl(['apply', '-f', '-'], secrets.map((o) => stringify(o)).join('---\n'));

  await kubectl(
    ['apply', '-f', '-'],
    Object.values(resources)
      .map((o) => stringify(o))
      .join('---\n'),
  );

  const operator = await startOperatorProcess(
    operatorRunArgs({
      kubeconfig: cp.kubeconfig('operator'),
      port,
      serving,
      tokenFile,
      dataDir: join(dir, 'data'),
      namespace: OPERATOR_NS,
    }),
    { url: receiverUrl, ca },
    join(dir, 'operator.log'),
  );
  env = {
    cp,
    influx,
    operator,
    dir,
    receiverUrl,
    receiverToken,
    ca,
    auditLog,
    resources,
    oracle: new AuditOracle([cp.users.admin.name, cp.users.alice.name], influx, auditLog, [
      OPERATOR_NS,
    ]),
  };

  for (const [kind, name] of [
    ['auditsink', 'cluster-metadata'],
    ['auditpipeline', 'a-trail'],
    ['auditpipeline', 'b-trail'],
  ] as const) {
    let last: Status = {};
    await eventually(`${kind} ${name} Ready`, async () => {
      last = await getStatus(kind, name);
      return condition(last, 'Ready')?.status === 'True';
    }).catch((err: unknown) => {
      throw new Error(
        `${String(err)}\nstatus: ${JSON.stringify(last)}\noperator log:\n${operator.log().slice(-4000)}`,
      );
    });
  }
  // Before the operator was ready the apiserver gave up on its batches: not ours to deliver.
  env.oracle.since = new Date();
}, 300_000);

afterAll(async () => {
  await env?.operator.stop();
  await Promise.all([env?.cp.stop(), env?.influx.dispose()]);
  if (env !== undefined) await rm(env.dir, { recursive: true, force: true });
});

// ---- helpers ---------------------------------------------------------------------------------

const NAMESPACE_OF: Record<string, string> = {
  'a-trail': 'team-a',
  'b-trail': 'team-b',
  'c-late': 'team-b',
  'd-invalid': 'team-a',
};

async function kubectl(args: string[], opts: { input?: string; user?: 'admin' | 'alice' } = {}) {
  return env.cp.kubectl(args, opts);
}

function must(args: string[], input?: string): Promise<string> {
  return kubectlOk(env.cp, args, input);
}

type Status = SinkStatus;

function getStatus(kind: 'auditsink' | 'auditpipeline', name: string): Promise<Status> {
  const namespace = kind === 'auditpipeline' ? (NAMESPACE_OF[name] ?? 'default') : undefined;
  return sinkStatus(env.cp, kind, name, namespace);
}

const condition = conditionOf;

/** The bucket and `sink` tag of each sink of the test. */
const WRITTEN_BY: Record<string, WrittenBy> = {
  'cluster-metadata': { bucket: 'cluster', sink: 'cluster-metadata' },
  'a-trail': { bucket: 'team-a', sink: 'team-a/a-trail' },
  'b-trail': { bucket: 'team-b', sink: 'team-b/b-trail' },
};

function loggedEvents(): Promise<AuditEvent[]> {
  return env.oracle.loggedEvents();
}

function expectedFor(resource: unknown, events: readonly AuditEvent[]): Set<string> {
  return env.oracle.expectedFor(resource, events);
}

function bucketContents(name: string): Promise<Set<string>> {
  return env.oracle.written(WRITTEN_BY[name] as WrittenBy);
}

function sameSets(name: string, expected: () => Promise<Set<string>>): Promise<void> {
  return env.oracle.expectExactly(WRITTEN_BY[name] as WrittenBy, expected);
}

async function field(bucket: string, auditID: string, name: string): Promise<unknown[]> {
  const rows = await env.influx.query(`
    import "influxdata/influxdb/schema"
    from(bucket: "${bucket}")
      |> range(start: 0)
      |> filter(fn: (r) => r._measurement == "kubernetes_audit")
      |> schema.fieldsAsCols()
      |> filter(fn: (r) => r.audit_id == "${auditID}")`);
  return rows.map((r) => r[name]);
}

function post(path: string, body: string, token = env.receiverToken): Promise<number> {
  return postJson(`${env.receiverUrl}${path}`, body, { ca: env.ca, token });
}

// ---- tests -----------------------------------------------------------------------------------

describe('the operator against a real kube-apiserver', () => {
  it('writes to every sink exactly what its policy and tenant scope allow of real kubectl work', async () => {
    await must(['create', 'configmap', 'cm1', '-n', 'team-a', '--from-literal=colour=blue']);
    await must(['patch', 'configmap', 'cm1', '-n', 'team-a', '-p', '{"data":{"colour":"red"}}']);
    await must(['get', 'configmap', 'cm1', '-n', 'team-a']);
    await must(['delete', 'configmap', 'cm1', '-n', 'team-a']);
    await must([
      'create',
      'secret',
      'generic',
      's1',
      '-n',
      'team-a',
      '--from-literal=password=hunter2',
    ]);
    await must(['create', 'deployment', 'web', '-n', 'team-a', '--image=nginx']);
    await must(['scale', 'deployment', 'web', '-n', 'team-a', '--replicas=3']);
    await must(['create', 'configmap', 'cm-b', '-n', 'team-b', '--from-literal=k=v']);
    const forbidden = await kubectl(['get', 'secrets', '-n', 'team-a'], { user: 'alice' });
    expect(forbidden.code).not.toBe(0);
    expect(forbidden.stderr).toMatch(/forbidden/i);
    const impersonated = await kubectl(['get', 'configmaps', '-n', 'team-b', '--as=alice']);
    expect(impersonated.stderr).toMatch(/forbidden/i);
    await must(['get', '--raw', '/version']);

    const events = await loggedEvents();
    // The oracle covers every kind of request the issue names.
    expect(events.some((e) => e.verb === 'patch' && e.objectRef?.resource === 'configmaps')).toBe(
      true,
    );
    expect(events.some((e) => e.objectRef?.subresource === 'scale')).toBe(true);
    expect(events.some((e) => e.annotations?.['authorization.k8s.io/decision'] === 'forbid')).toBe(
      true,
    );
    expect(events.some((e) => e.impersonatedUser?.username === 'alice')).toBe(true);
    expect(events.some((e) => e.requestURI === '/version')).toBe(true);

    const { resources } = env;
    await sameSets('cluster-metadata', async () =>
      expectedFor(resources['cluster-metadata'], await loggedEvents()),
    );
    await sameSets('a-trail', async () => expectedFor(resources['a-trail'], await loggedEvents()));
    await sameSets('b-trail', async () => expectedFor(resources['b-trail'], await loggedEvents()));
  });

  it('keeps bodies where the policy asks, and reduces Secrets to metadata', async () => {
    const events = await loggedEvents();
    const createCm = events.find(
      (e) => e.verb === 'create' && e.objectRef?.name === 'cm1' && e.stage === 'ResponseComplete',
    );
    const createSecret = events.find(
      (e) => e.verb === 'create' && e.objectRef?.name === 's1' && e.stage === 'ResponseComplete',
    );
    expect(createCm).toBeDefined();
    expect(createSecret).toBeDefined();
    const cmBody = await field('team-a', createCm?.auditID ?? '', 'request_object');
    expect(String(cmBody[0])).toContain('blue');
    const secretBody = await field('team-a', createSecret?.auditID ?? '', 'request_object');
    expect(secretBody).toEqual([undefined]);
    // Nothing of team-a reached team-b's bucket.
    const rows = await env.influx.query(`
      from(bucket: "team-b") |> range(start: 0)
        |> filter(fn: (r) => r._measurement == "kubernetes_audit" and r.namespace == "team-a")`);
    expect(rows).toEqual([]);
  });

  it('reports Ready, counters and the endpoint in status and printer columns', async () => {
    const status = await eventually('counters', async () => {
      const s = await getStatus('auditpipeline', 'a-trail');
      return (s.written ?? 0) > 0 ? s : undefined;
    });
    expect(condition(status, 'Ready')?.status).toBe('True');
    expect(condition(status, 'PolicyValid')?.status).toBe('True');
    expect(condition(status, 'DestinationReady')?.reason).toBe('Delivered');
    // The apiserver runs the superset policy `apiserver-config` generated: it captures enough.
    expect(condition(status, 'CaptureSufficient')?.status).toBe('True');
    expect(status.endpoint).toBe(`${env.receiverUrl}/audit/v1/pipelines/team-a/a-trail`);
    expect(status.received).toBeGreaterThanOrEqual(status.written ?? 0);
    expect(status.dropped?.namespace).toBeGreaterThan(0);
    const table = await must(['get', 'auditpipelines', '-A']);
    expect(table).toMatch(/READY\s+BUCKET\s+RECEIVED\s+WRITTEN\s+AGE/);
    expect(table).toMatch(/team-a\s+a-trail\s+True\s+team-a\s+\d+\s+\d+/);
  });

  it('shows a missing token Secret as DestinationReady=False, and recovers when it appears', async () => {
    const late = {
      apiVersion: 'kube-audit.dev/v1alpha1',
      kind: 'AuditPipeline',
      metadata: { name: 'c-late', namespace: 'team-b' },
      spec: {
        policy: { rules: [{ level: 'Metadata' }] },
        influxdb: {
          ...influxSpec('team-b', 'late-token'),
          url: env.influx.url,
          org: env.influx.org,
        },
      },
    };
    await must(['apply', '-f', '-'], stringify(late));
    const missing = await eventually('DestinationReady=False', async () => {
      const c = condition(await getStatus('auditpipeline', 'c-late'), 'DestinationReady');
      return c?.status === 'False' ? c : undefined;
    });
    expect(missing.reason).toBe('SecretNotFound');
    expect(missing.message).toContain('team-b/late-token');
    const events = await must([
      'get',
      'events',
      '-n',
      'team-b',
      '--field-selector',
      'involvedObject.name=c-late',
      '-o',
      'json',
    ]);
    expect(events).toContain('SecretNotFound');

    await must([
      'create',
      'secret',
      'generic',
      'late-token',
      '-n',
      'team-b',
      `--from-literal=token=${env.influx.token}`,
    ]);
    // Not yet labelled usable by sinks: still as good as missing.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(condition(await getStatus('auditpipeline', 'c-late'), 'DestinationReady')?.status).toBe(
      'False',
    );
    await must([
      'label',
      'secret',
      'late-token',
      '-n',
      'team-b',
      'kube-audit.dev/usable-by-sinks=true',
    ]);
    await eventually('DestinationReady=True', async () => {
      const s = await getStatus('auditpipeline', 'c-late');
      return (
        condition(s, 'DestinationReady')?.status === 'True' &&
        condition(s, 'Ready')?.status === 'True'
      );
    });
    await must(['delete', 'auditpipeline', 'c-late', '-n', 'team-b']);
  });

  it('applies a changed policy within a second', async () => {
    const changed = structuredClone(env.resources['b-trail']) as {
      spec: { policy: { rules: unknown[] } };
    };
    changed.spec.policy.rules = [
      { level: 'None', resources: [{ group: '', resources: ['configmaps'] }] },
      { level: 'Metadata' },
    ];
    await must(['apply', '-f', '-'], stringify(changed));
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await must(['create', 'configmap', 'after-change', '-n', 'team-b']);
    await must(['create', 'secret', 'generic', 'after-change', '-n', 'team-b']);
    await sameSets('b-trail', async () => {
      const events = await loggedEvents();
      const cut = events.findIndex((e) => e.objectRef?.name === 'after-change');
      // Before the change the old policy applied; from the first request after it, the new one.
      const before = expectedFor(env.resources['b-trail'], events.slice(0, cut));
      const after = expectedFor(changed, events.slice(cut));
      return new Set([...before, ...after]);
    });
    const status = await getStatus('auditpipeline', 'b-trail');
    expect(status.observedGeneration).toBe(2);
  });

  it('reports a spec the schema cannot catch in status, keeps the last valid sink, and disturbs no other sink', async () => {
    const valid = {
      apiVersion: 'kube-audit.dev/v1alpha1',
      kind: 'AuditPipeline',
      metadata: { name: 'd-invalid', namespace: 'team-a' },
      spec: {
        policy: { rules: [{ level: 'Metadata' }] },
        influxdb: { ...influxSpec('team-a', 'influxdb'), url: env.influx.url, org: env.influx.org },
      },
    };
    await must(['apply', '-f', '-'], stringify(valid));
    await eventually('d-invalid Ready', async () => {
      const s = await getStatus('auditpipeline', 'd-invalid');
      return condition(s, 'Ready')?.status === 'True';
    });
    const invalid = structuredClone(valid);
    invalid.spec.influxdb.url = 'http://influxdb:99999';
    await must(['apply', '-f', '-'], stringify(invalid));
    const policyValid = await eventually('PolicyValid=False', async () => {
      const c = condition(await getStatus('auditpipeline', 'd-invalid'), 'PolicyValid');
      return c?.status === 'False' ? c : undefined;
    });
    expect(policyValid.reason).toBe('InvalidSpec');
    expect(policyValid.message).toContain('spec.influxdb.url');
    expect(policyValid.message).toContain('generation 1 keeps running');
    const status = await getStatus('auditpipeline', 'd-invalid');
    expect(condition(status, 'ReceiverReady')?.status).toBe('True');
    expect(condition(status, 'Ready')?.status).toBe('False');

    const rejected = await kubectl(['apply', '-f', '-'], {
      input: stringify({
        ...invalid,
        spec: { ...invalid.spec, policy: { rules: [{ level: 'Loud' }] } },
      }),
    });
    expect(rejected.code).not.toBe(0);
    expect(rejected.stderr).toContain('spec.policy.rules[0].level');

    // The last valid generation still writes, and nothing else was disturbed.
    await must(['create', 'configmap', 'still-flowing', '-n', 'team-a']);
    await eventually('the last valid sink to write the new event', async () => {
      const id = (await loggedEvents()).find((e) => e.objectRef?.name === 'still-flowing')?.auditID;
      const written = await env.oracle.written({ bucket: 'team-a', sink: 'team-a/d-invalid' });
      return id !== undefined && [...written].some((k) => k.startsWith(id));
    });
    await sameSets('a-trail', async () =>
      expectedFor(env.resources['a-trail'], await loggedEvents()),
    );
    await must(['delete', 'auditpipeline', 'd-invalid', '-n', 'team-a']);
  });

  it('stops a deleted pipeline and removes its endpoint', async () => {
    const path = '/audit/v1/pipelines/team-b/b-trail';
    const list = JSON.stringify({ apiVersion: 'audit.k8s.io/v1', kind: 'EventList', items: [] });
    expect(await post(path, list)).toBe(200);
    await must(['delete', 'auditpipeline', 'b-trail', '-n', 'team-b']);
    await eventually(
      'the endpoint to be gone',
      async () => (await post(path, list)) === 404,
      5_000,
      50,
    );
    const before = await bucketContents('b-trail');
    await must(['create', 'configmap', 'after-delete', '-n', 'team-b']);
    // The other sinks still receive the request, so it has been delivered when they have it.
    await eventually('the cluster sink to have the request', async () => {
      const events = await loggedEvents();
      const id = events.find((e) => e.objectRef?.name === 'after-delete')?.auditID;
      return (
        id !== undefined &&
        [...(await bucketContents('cluster-metadata'))].some((k) => k.startsWith(id))
      );
    });
    expect(await bucketContents('b-trail')).toEqual(before);
  });

  it('loses nothing when the operator is killed and restarted mid-stream', async () => {
    const names = Array.from({ length: 24 }, (_, i) => `restart-${i}`);
    for (const [i, name] of names.entries()) {
      if (i === 8) await env.operator.stop('SIGKILL');
      if (i === 12) await env.operator.restart();
      await must(['create', 'configmap', name, '-n', 'team-a']);
    }
    await sameSets('a-trail', async () =>
      expectedFor(env.resources['a-trail'], await loggedEvents()),
    );
    const created = await bucketContents('a-trail');
    const events = await loggedEvents();
    for (const name of names) {
      const id = events.find((e) => e.objectRef?.name === name && e.verb === 'create')?.auditID;
      expect([...created].filter((k) => k.startsWith(`${id}/ResponseComplete`))).toHaveLength(1);
    }
  });

  it("keeps the operator's own Lease renewals, replica reports and status patches out of the apiserver's audit trail, and nothing else of it", async () => {
    const operator = env.cp.users.operator.name;
    const own = (await readFile(env.auditLog, 'utf8'))
      .split('\n')
      .filter((line) => line.trim() !== '')
      .map((line) => parseAuditLogLine(line))
      .filter((e) => e.user.username === operator);
    const what = (e: AuditEvent) =>
      `${e.verb} ${e.objectRef?.resource ?? e.requestURI}${e.objectRef?.subresource === undefined ? '' : `/${e.objectRef.subresource}`}`;
    const seen = new Set(own.map(what));
    // It leads and writes status throughout the file, yet none of that was recorded...
    expect(seen).not.toContain('update leases');
    expect(seen).not.toContain('get leases');
    expect(seen).not.toContain('patch auditpipelines/status');
    expect(seen).not.toContain('patch auditsinks/status');
    expect(seen).not.toContain('update configmaps');
    // ...while its other calls were, as the sinks' policies ask.
    expect(seen).toContain('watch auditpipelines');
    expect(seen).toContain('create events');
  });

  it('never logs a token', () => {
    const log = env.operator.log();
    expect(log).toContain('operator ready');
    expect(log).not.toContain(env.receiverToken);
    expect(log).not.toContain(env.influx.token);
    expect(log).not.toContain(env.cp.users.operator.token);
  });

  it("stays within the chart's memory request through all of the above", async () => {
    const values = parse(await readFile(VALUES, 'utf8')) as {
      resources: { requests: { memory: string } };
    };
    const request = /^(\d+)Mi$/.exec(values.resources.requests.memory)?.[1];
    expect(request).toBeDefined();
    const status = await readFile(`/proc/${String(env.operator.pid)}/status`, 'utf8');
    const mib = (field: string): number =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1]) / 1024;
    // The process started again after its SIGKILL above: ready, watching, and receiving since.
    console.log(
      `operator resident memory: ${mib('VmRSS').toFixed(0)} MiB now, ${mib('VmHWM').toFixed(0)} MiB at most`,
    );
    expect(mib('VmHWM')).toBeGreaterThan(0);
    expect(mib('VmHWM')).toBeLessThan(Number(request));
  });

  it('writes nothing but JSON log records, stdout and stderr together as a container log is', () => {
    const lines = env.operator
      .log()
      .split('\n')
      .filter((line) => line !== '');
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.filter((line) => !isJsonRecord(line))).toEqual([]);
  });
});

function isJsonRecord(line: string): boolean {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && 'msg' in value;
  } catch {
    return false;
  }
}
