// What docs/security.md promises, checked against real processes: who may post audit events, which
// tenant sees which events, which Secrets the operator may use, and that no credential reaches its
// log. Real processes: etcd and kube-apiserver (current release, static audit webhook to the
// operator's fan-in endpoint with a bearer token), influxd, kubectl, and `kube-audit-operator run`
// (the built binary, with a token file and a client CA for mTLS, run as a user with exactly the
// documented RBAC, which is checked against what it calls; /metrics reviewed by the apiserver). One AuditPipeline has a dedicated listener, one has not; one AuditSink sees the
// whole cluster. Both tenants' pipelines name their own writers' tokens (ADR 0018), a third
// names a Secret that does not exist yet.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { type ControlPlane, startControlPlane } from '../../harness/controlplane.ts';
import { freePort, type InfluxServer, type Row, startInfluxd } from '../../harness/influxd.ts';
import {
  type OperatorProcess,
  operatorRunArgs,
  startOperatorProcess,
} from '../../harness/operator.ts';
import { type Issued, TestPki } from '../../harness/pki.ts';
import { metricSum } from '../../support/metrics.ts';
import { grantedPermissions, OPERATOR_RBAC, requestsBy } from '../../support/rbac.ts';
import { eventually } from '../../support/wait.ts';
import { conditionOf, httpsGet, kubectlOk, type SinkStatus, sinkStatus } from './kube.ts';

const OPERATOR_NS = 'kube-audit';
const USABLE = { 'kube-audit.dev/usable-by-sinks': 'true' };
/** The pipeline with a catch-all RequestResponse policy and its own listener. */
const A_ALL = { namespace: 'team-a', name: 'a-all', sink: 'team-a/a-all', bucket: 'team-a' };
/** A pipeline on the shared listener only. */
const B_META = { namespace: 'team-b', name: 'b-meta', sink: 'team-b/b-meta', bucket: 'team-b' };
/** A pipeline whose token Secret exists but does not carry the opt-in label. */
const A_UNLABELLED = { namespace: 'team-a', name: 'a-unlabelled', sink: 'team-a/a-unlabelled' };
const CLUSTER = { name: 'cluster', sink: 'cluster', bucket: 'cluster' };
/** A pipeline whose writers' token Secret does not exist until a test creates it. */
const B_PENDING = { namespace: 'team-b', name: 'b-pending', sink: 'team-b/b-pending' };

// Set up step by step in beforeAll; afterAll stops whatever was started.
let cp: ControlPlane | undefined;
let influx: InfluxServer | undefined;
let operator: OperatorProcess | undefined;
let dir = '';
let ca = '';
let receiverUrl = '';
let dedicatedUrl = '';
let receiverToken = '';
let trustedClient: Issued;
let strangerClient: Issued;
/** Each tenant's own writers' tokens (spec.receiver.tokenSecretRef). */
let teamAWriter = '';
let teamBWriter = '';
/** Every credential and Secret value the test hands out: none may reach the operator's log. */
const secrets = new Map<string, string>();

const pipeline = (
  server: InfluxServer,
  ref: { namespace: string; name: string },
  bucket: string,
  tokenSecret: string,
  spec: Record<string, unknown>,
) => ({
  apiVersion: 'kube-audit.dev/v1alpha1',
  kind: 'AuditPipeline',
  metadata: { name: ref.name, namespace: ref.namespace },
  spec: {
    ...spec,
    influxdb: {
      url: server.url,
      org: server.org,
      bucket,
      tokenSecretRef: { name: tokenSecret, key: 'token' },
      flushInterval: '200ms',
    },
  },
});

const secret = (
  namespace: string,
  name: string,
  data: Record<string, string>,
  labelled = true,
) => ({
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { namespace, name, ...(labelled ? { labels: USABLE } : {}) },
  stringData: data,
});

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kao-security-e2e-'));
  const pki = new TestPki(dir);
  await pki.init();
  await pki.ca('ca');
  await pki.ca('stranger-ca');
  const serving = await pki.leaf('receiver', 'ca', 'server');
  trustedClient = await pki.leaf('trusted-client', 'ca', 'client');
  strangerClient = await pki.leaf('stranger-client', 'stranger-ca', 'client');
  ca = await readFile(join(dir, 'ca.crt'), 'utf8');
  receiverToken = randomBytes(24).toString('base64url');
  secrets.set('receiver token', receiverToken);
  const tokenFile = join(dir, 'receiver-tokens');
  await writeFile(tokenFile, `${receiverToken}\n`);
  const port = await freePort();
  // Below the ephemeral range: the operator binds it only after the cluster objects exist, and
  // a port from the ephemeral range may be handed to another process's socket meanwhile.
  let dedicatedPort = await freeFixedPort();
  while (dedicatedPort === port) dedicatedPort = await freeFixedPort();
  receiverUrl = `https://127.0.0.1:${port}`;
  dedicatedUrl = `https://127.0.0.1:${dedicatedPort}`;

  const [server, controlPlane] = await Promise.all([
    startInfluxd(),
    // The default policy captures RequestResponse: Secret bodies reach the operator, which must
    // drop them.
    startControlPlane({
      auditWebhook: {
        url: `${receiverUrl}/audit/v1/events`,
        token: receiverToken,
        caFile: join(dir, 'ca.crt'),
      },
      // Every request, the operator's own included, as the apiserver saw it: for the RBAC check.
      extraApiserverArgs: [`--audit-log-path=${join(dir, 'apiserver-audit.log')}`],
    }),
  ]);
  influx = server;
  cp = controlPlane;
  secrets.set('InfluxDB operator token', server.token);
  for (const [name, user] of Object.entries(controlPlane.users)) {
    secrets.set(`apiserver user ${name}'s token`, user.token);
  }

  await must(['apply', '-f', 'crds/']);
  await must(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
  for (const ns of [OPERATOR_NS, 'team-a', 'team-b']) await must(['create', 'namespace', ns]);
  // The operator runs as a user with exactly the documented RBAC.
  await must(['apply', '-f', 'examples/operator/rbac.yaml']);

  const writeToken = async (bucket: string) => {
    await server.createBucket(bucket);
    const token = await server.createToken([
      { action: 'write', bucket },
      { action: 'read', bucket },
    ]);
    secrets.set(`InfluxDB token of ${bucket}`, token);
    return token;
  };
  const [clusterToken, teamAToken, teamBToken] = await Promise.all(
    [CLUSTER.bucket, A_ALL.bucket, B_META.bucket].map(writeToken),
  );
  // A token that would work, so that only the missing label keeps the pipeline from writing.
  const unlabelledToken = await server.createToken([{ action: 'write', bucket: A_ALL.bucket }]);
  secrets.set('token in the unlabelled Secret', unlabelledToken);

  teamAWriter = randomBytes(24).toString('base64url');
  teamBWriter = randomBytes(24).toString('base64url');
  secrets.set("team-a's writer token", teamAWriter);
  secrets.set("team-b's writer token", teamBWriter);

  const resources = [
    secret('team-a', 'a-writers', { tokens: `${teamAWriter}\n` }),
    secret('team-b', 'b-writers', {
      tokens: `# the payments cluster's apiserver\n${teamBWriter}\n`,
    }),
    secret(OPERATOR_NS, 'cluster-token', { token: clusterToken as string }),
    secret('team-a', 'influxdb', { token: teamAToken as string }),
    secret('team-b', 'influxdb', { token: teamBToken as string }),
    secret('team-a', 'database', { token: unlabelledToken }, false),
    {
      apiVersion: 'kube-audit.dev/v1alpha1',
      kind: 'AuditSink',
      metadata: { name: CLUSTER.name },
      spec: {
        policy: { level: 'Metadata', stages: ['ResponseComplete'] },
        influxdb: {
          url: server.url,
          org: server.org,
          bucket: CLUSTER.bucket,
          tokenSecretRef: { name: 'cluster-token', key: 'token' },
          flushInterval: '200ms',
        },
      },
    },
    pipeline(server, A_ALL, A_ALL.bucket, 'influxdb', {
      policy: { omitStages: ['RequestReceived'], rules: [{ level: 'RequestResponse' }] },
      receiver: { port: dedicatedPort, tokenSecretRef: { name: 'a-writers', key: 'tokens' } },
    }),
    pipeline(server, B_META, B_META.bucket, 'influxdb', {
      policy: { omitStages: ['RequestReceived'], rules: [{ level: 'Metadata' }] },
      receiver: { tokenSecretRef: { name: 'b-writers', key: 'tokens' } },
    }),
    pipeline(server, B_PENDING, B_META.bucket, 'influxdb', {
      policy: { omitStages: ['RequestReceived'], rules: [{ level: 'Metadata' }] },
      receiver: { tokenSecretRef: { name: 'b-pending-writers', key: 'tokens' } },
    }),
    pipeline(server, A_UNLABELLED, A_ALL.bucket, 'database', {
      policy: { rules: [{ level: 'Metadata' }] },
    }),
  ];
  await must(['apply', '-f', '-'], resources.map((o) => stringify(o)).join('---\n'));

  operator = await startOperatorProcess(
    operatorRunArgs(
      {
        kubeconfig: controlPlane.kubeconfig('operator'),
        port,
        serving,
        tokenFile,
        dataDir: join(dir, 'data'),
        namespace: OPERATOR_NS,
      },
      `--client-ca-file=${join(dir, 'ca.crt')}`,
    ),
    { url: receiverUrl, ca },
    join(dir, 'operator.log'),
  );
  const started = operator;
  for (const [kind, name, namespace] of [
    ['auditsink', CLUSTER.name, undefined],
    ['auditpipeline', A_ALL.name, A_ALL.namespace],
    ['auditpipeline', B_META.name, B_META.namespace],
  ] as const) {
    await eventually(`${kind} ${name} Ready`, async () => {
      return condition(await getStatus(kind, name, namespace), 'Ready')?.status === 'True';
    }).catch((err: unknown) => {
      throw new Error(`${String(err)}\noperator log:\n${started.log().slice(-4000)}`);
    });
  }
}, 120_000);

afterAll(async () => {
  await operator?.stop();
  await Promise.all([cp?.stop(), influx?.dispose()]);
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

// ---- helpers ---------------------------------------------------------------------------------

function running<T>(what: string, value: T | undefined): T {
  if (value === undefined) throw new Error(`${what} is not running`);
  return value;
}

function kubectl(args: string[], input?: string) {
  return running('the control plane', cp).kubectl(args, input === undefined ? {} : { input });
}

function must(args: string[], input?: string): Promise<string> {
  return kubectlOk(running('the control plane', cp), args, input);
}

type Status = SinkStatus;

function getStatus(
  kind: 'auditsink' | 'auditpipeline',
  name: string,
  namespace?: string,
): Promise<Status> {
  return sinkStatus(running('the control plane', cp), kind, name, namespace);
}

const condition = conditionOf;

/** Every point a sink wrote, one row per point with its fields as columns. */
function rowsOf(bucket: string, sink: string): Promise<Row[]> {
  return running('influxd', influx).query(`
    import "influxdata/influxdb/schema"
    from(bucket: "${bucket}")
      |> range(start: 0)
      |> filter(fn: (r) => r._measurement == "kubernetes_audit" and r.sink == "${sink}")
      |> schema.fieldsAsCols()`);
}

/** How a request authenticates, if at all. */
interface Credentials {
  token?: string;
  client?: Issued;
}

/** The status code of a POST, or `refused` when the TLS handshake or connection failed. */
function post(
  url: string,
  body: string,
  credentials: Credentials,
): Promise<{ status: number | 'refused'; wwwAuthenticate?: string | undefined }> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (credentials.token !== undefined) headers.authorization = `Bearer ${credentials.token}`;
  const client =
    credentials.client === undefined
      ? {}
      : { cert: credentials.client.cert, key: credentials.client.key };
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      // No agent: a pooled connection would carry another test's client certificate.
      { method: 'POST', ca, headers, agent: false, timeout: 10_000, ...client },
      (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, wwwAuthenticate: res.headers['www-authenticate'] });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`POST ${url} timed out`)));
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET' || err.code?.startsWith('ERR_SSL') === true) {
        resolve({ status: 'refused' });
      } else reject(err);
    });
    req.end(body);
  });
}

const EMPTY_LIST = JSON.stringify({ apiVersion: 'audit.k8s.io/v1', kind: 'EventList', items: [] });

function eventList(events: readonly AuditEvent[]): string {
  return JSON.stringify({ apiVersion: 'audit.k8s.io/v1', kind: 'EventList', items: events });
}

/** A ResponseComplete configmap event at RequestResponse, as the apiserver would send it. */
function configmapEvent(
  verb: 'create' | 'update',
  objectNamespace: string,
  uriNamespace: string,
  name: string,
): AuditEvent {
  const now = new Date().toISOString();
  const body = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace: objectNamespace },
    data: { claim: 'forged' },
  };
  return {
    level: 'RequestResponse',
    auditID: randomUUID(),
    stage: 'ResponseComplete',
    requestURI:
      verb === 'create'
        ? `/api/v1/namespaces/${uriNamespace}/configmaps`
        : `/api/v1/namespaces/${uriNamespace}/configmaps/${name}`,
    verb,
    user: { username: 'mallory', groups: ['system:authenticated'] },
    sourceIPs: ['10.0.0.66'],
    objectRef: { resource: 'configmaps', namespace: objectNamespace, name, apiVersion: 'v1' },
    responseStatus: { code: verb === 'create' ? 201 : 200 },
    requestObject: body,
    responseObject: body,
    requestReceivedTimestamp: now,
    stageTimestamp: now,
  };
}

/** The points a sink wrote about the object `name`. */
async function rowsNamed(bucket: string, sink: string, name: string): Promise<Row[]> {
  return (await rowsOf(bucket, sink)).filter((r) => r.name === name);
}

// ---- tests -----------------------------------------------------------------------------------

describe('receiver authentication', () => {
  const endpoints = () => [
    { what: 'the fan-in endpoint', url: `${receiverUrl}/audit/v1/events` },
    { what: "the AuditSink's endpoint", url: `${receiverUrl}/audit/v1/sinks/${CLUSTER.name}` },
    {
      what: "team-b's pipeline on the shared listener",
      url: `${receiverUrl}/audit/v1/pipelines/${B_META.namespace}/${B_META.name}`,
    },
    {
      what: "team-a's pipeline on the shared listener",
      url: `${receiverUrl}/audit/v1/pipelines/${A_ALL.namespace}/${A_ALL.name}`,
    },
    { what: "team-a's dedicated listener", url: `${dedicatedUrl}/audit/v1/events` },
  ];
  // Any well-formed signature: without native mode no path alone admits events.
  const nativeUrl = () =>
    `${receiverUrl}/audit/v1/native/${randomBytes(32).toString('base64url')}/sinks/${CLUSTER.name}`;

  it('answers 401 with WWW-Authenticate: Bearer to a request without credentials, on every endpoint', async () => {
    for (const { what, url } of endpoints()) {
      const answer = await post(url, EMPTY_LIST, {});
      expect({ what, ...answer }).toEqual({ what, status: 401, wwwAuthenticate: 'Bearer' });
    }
  });

  it('answers 401 to a bearer token no one accepts, on every endpoint', async () => {
    const wrong = randomBytes(24).toString('base64url');
    secrets.set('wrong receiver token', wrong);
    for (const { what, url } of endpoints()) {
      expect({ what, status: (await post(url, EMPTY_LIST, { token: wrong })).status }).toEqual({
        what,
        status: 401,
      });
    }
  });

  it('refuses a client certificate of an untrusted CA, on every endpoint', async () => {
    for (const { what, url } of endpoints()) {
      const { status } = await post(url, EMPTY_LIST, { client: strangerClient });
      expect({ what, refused: status === 403 || status === 'refused' }).toEqual({
        what,
        refused: true,
      });
    }
  });

  it('accepts a valid bearer token and a client certificate of the trusted CA, on every endpoint', async () => {
    for (const { what, url } of endpoints()) {
      for (const credentials of [{ token: receiverToken }, { client: trustedClient }]) {
        const { status } = await post(url, EMPTY_LIST, credentials);
        expect({ what, via: Object.keys(credentials)[0], status }).toEqual({
          what,
          via: Object.keys(credentials)[0],
          status: 200,
        });
      }
    }
  });

  it('answers 404 on a native signed endpoint while native mode is off, whatever the credentials', async () => {
    for (const credentials of [
      {},
      { token: 'not-a-token' },
      { client: strangerClient },
      { token: receiverToken },
      { client: trustedClient },
    ]) {
      expect((await post(nativeUrl(), EMPTY_LIST, credentials)).status).toBe(404);
    }
  });
});

describe('who may read /metrics', () => {
  // test/e2e/controlplane/metrics-auth.test.ts covers the cache and ServiceAccounts; here the
  // operator runs under exactly the documented RBAC, which the last test checks against its calls.
  const get = (url: string, token?: string) =>
    httpsGet(`${url}/metrics`, { ca, ...(token === undefined ? {} : { token }) });

  it('answers 401 without a token, 401 to a token the apiserver does not know, 403 to a user without get on /metrics, 200 to one with it, on every listener', async () => {
    const { alice, admin } = running('the control plane', cp).users;
    for (const url of [receiverUrl, dedicatedUrl]) {
      const statuses = {
        none: (await get(url)).status,
        receiverToken: (await get(url, receiverToken)).status,
        alice: (await get(url, alice.token)).status,
        admin: (await get(url, admin.token)).status,
      };
      expect({ url, ...statuses }).toEqual({
        url,
        none: 401,
        receiverToken: 401,
        alice: 403,
        admin: 200,
      });
    }
  });

  it('serves the reconciles of both kinds, counted by result and timed, to a reader with access', async () => {
    const { admin } = running('the control plane', cp).users;
    const { status, body } = await get(receiverUrl, admin.token);
    expect(status).toBe(200);
    for (const kind of ['AuditSink', 'AuditPipeline']) {
      const total = (result: string) =>
        metricSum(body, 'kube_audit_reconcile_total', { kind, result });
      expect({ kind, success: total('success') > 0 }).toEqual({ kind, success: true });
      for (const result of ['error', 'terminal']) {
        expect(body).toContain(`kube_audit_reconcile_total{kind="${kind}",result="${result}"}`);
      }
      expect(
        metricSum(body, 'kube_audit_reconcile_duration_seconds_count', { kind }),
      ).toBeGreaterThan(0);
    }
  });

  it('leaves /healthz and /readyz open for probes', async () => {
    for (const path of ['/healthz', '/readyz']) {
      expect((await httpsGet(`${receiverUrl}${path}`, { ca })).status).toBe(200);
    }
  });
});

describe('tenant scope', () => {
  it("keeps events of team-b out of team-a's catch-all pipeline, whatever the posted body claims", async () => {
    const targets = [
      `${receiverUrl}/audit/v1/pipelines/${A_ALL.namespace}/${A_ALL.name}`,
      `${receiverUrl}/audit/v1/events`,
      `${dedicatedUrl}/audit/v1/events`,
    ];
    const forged: AuditEvent[] = [];
    const markers: AuditEvent[] = [];
    for (const [i, url] of targets.entries()) {
      const batch = [
        // Plainly team-b's.
        configmapEvent('create', 'team-b', 'team-b', `forged-b-${i}`),
        configmapEvent('update', 'team-b', 'team-b', `forged-b-${i}`),
        // A create is scoped by its URL, not by the namespace its body names.
        configmapEvent('create', 'team-a', 'team-b', `forged-create-${i}`),
        // Any other verb by its object, not by a URL edited to point at team-a.
        configmapEvent('update', 'team-b', 'team-a', `forged-update-${i}`),
      ];
      // A genuine team-a event in the same batch shows when the batch has been written.
      const marker = configmapEvent('create', 'team-a', 'team-a', `marker-${i}`);
      forged.push(...batch);
      markers.push(marker);
      const { status } = await post(url, eventList([...batch, marker]), { token: receiverToken });
      expect({ url, status }).toEqual({ url, status: 200 });
    }
    const rows = await eventually('the markers in the bucket', async () => {
      const all = await rowsOf(A_ALL.bucket, A_ALL.sink);
      const ids = new Set(all.map((r) => r.audit_id));
      return markers.every((m) => ids.has(m.auditID)) ? all : undefined;
    });
    const forgedIDs = new Set(forged.map((e) => e.auditID));
    expect(rows.filter((r) => forgedIDs.has(r.audit_id as string))).toEqual([]);
    expect(rows.filter((r) => r.namespace !== 'team-a')).toEqual([]);
  });

  it("never writes real kubectl work in team-b to team-a's bucket", async () => {
    await must(['create', 'configmap', 'b-work', '-n', 'team-b', '--from-literal=k=v']);
    await must(['patch', 'configmap', 'b-work', '-n', 'team-b', '-p', '{"data":{"k":"w"}}']);
    await must(['delete', 'configmap', 'b-work', '-n', 'team-b']);
    await must(['create', 'configmap', 'a-work', '-n', 'team-a', '--from-literal=k=v']);
    // The cluster sink and team-b's pipeline see the work, so it has been delivered.
    await eventually('team-b work in the cluster and team-b buckets', async () => {
      const cluster = await rowsNamed(CLUSTER.bucket, CLUSTER.sink, 'b-work');
      const teamB = await rowsNamed(B_META.bucket, B_META.sink, 'b-work');
      const teamA = await rowsNamed(A_ALL.bucket, A_ALL.sink, 'a-work');
      return cluster.length >= 3 && teamB.length >= 3 && teamA.length >= 1;
    });
    const rows = await rowsOf(A_ALL.bucket, A_ALL.sink);
    expect(rows.filter((r) => r.name === 'b-work')).toEqual([]);
    expect(rows.filter((r) => r.namespace !== 'team-a')).toEqual([]);
  });

  it('refuses a tokenSecretRef that names another namespace', async () => {
    const server = running('influxd', influx);
    const crossing = pipeline(server, { namespace: 'team-a', name: 'crossing' }, 'team-a', 'x', {
      policy: { rules: [{ level: 'Metadata' }] },
    });
    const ref = { name: 'cluster-token', key: 'token', namespace: OPERATOR_NS };
    const manifest = stringify({
      ...crossing,
      spec: { ...crossing.spec, influxdb: { ...crossing.spec.influxdb, tokenSecretRef: ref } },
    });
    const refused = await kubectl(['apply', '-f', '-'], manifest);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/unknown field "spec\.influxdb\.tokenSecretRef\.namespace"/);
    const missing = await kubectl(['get', 'auditpipeline', 'crossing', '-n', 'team-a']);
    expect(missing.code).not.toBe(0);
    // Without client-side strictness the schema prunes the field: the reference stays in team-a.
    await must(['apply', '--validate=false', '-f', '-'], manifest);
    const stored = JSON.parse(
      await must(['get', 'auditpipeline', 'crossing', '-n', 'team-a', '-o', 'json']),
    ) as { spec: { influxdb: { tokenSecretRef: Record<string, string> } } };
    expect(stored.spec.influxdb.tokenSecretRef).toEqual({ name: 'cluster-token', key: 'token' });
    await must(['delete', 'auditpipeline', 'crossing', '-n', 'team-a']);
  });

  it("writes a Secret's creation to the tenant's bucket without its request or response body", async () => {
    const password = randomBytes(18).toString('base64url');
    secrets.set('Secret data written by kubectl', password);
    await must([
      'create',
      'secret',
      'generic',
      'a-secret',
      '-n',
      'team-a',
      `--from-literal=password=${password}`,
    ]);
    await must(['create', 'configmap', 'a-body', '-n', 'team-a', '--from-literal=colour=blue']);
    const [secretRows, configmapRows] = await eventually('both creates in the bucket', async () => {
      const s = await rowsNamed(A_ALL.bucket, A_ALL.sink, 'a-secret');
      const c = await rowsNamed(A_ALL.bucket, A_ALL.sink, 'a-body');
      return s.length > 0 && c.length > 0 ? ([s, c] as const) : undefined;
    });
    // The policy keeps bodies, as the ConfigMap shows; the Secret is kept at Metadata.
    expect(String(configmapRows[0]?.request_object)).toContain('blue');
    for (const row of secretRows) {
      expect(row).toMatchObject({ resource: 'secrets', namespace: 'team-a', level: 'Metadata' });
      expect(row.request_object).toBeUndefined();
      expect(row.response_object).toBeUndefined();
    }
    const everything = JSON.stringify([
      await rowsOf(A_ALL.bucket, A_ALL.sink),
      await rowsOf(CLUSTER.bucket, CLUSTER.sink),
    ]);
    expect(everything).not.toContain(password);
  });
});

describe("each sink's own writers (spec.receiver.tokenSecretRef)", () => {
  const fanIn = () => `${receiverUrl}/audit/v1/events`;
  const sharedA = () => `${receiverUrl}/audit/v1/pipelines/${A_ALL.namespace}/${A_ALL.name}`;
  const dedicatedA = () => `${dedicatedUrl}/audit/v1/events`;
  const sharedB = () => `${receiverUrl}/audit/v1/pipelines/${B_META.namespace}/${B_META.name}`;
  const clusterSink = () => `${receiverUrl}/audit/v1/sinks/${CLUSTER.name}`;
  const pendingB = () =>
    `${receiverUrl}/audit/v1/pipelines/${B_PENDING.namespace}/${B_PENDING.name}`;
  const statusOf = async (url: string, token: string) =>
    (await post(url, EMPTY_LIST, { token })).status;
  const applySecret = (namespace: string, name: string, tokens: string) =>
    must(['apply', '-f', '-'], stringify(secret(namespace, name, { tokens })));

  it("lets team-b's token write to team-b's pipeline, and answers it 403 everywhere else", async () => {
    const event = configmapEvent('create', B_META.namespace, B_META.namespace, 'b-by-own-writer');
    expect((await post(sharedB(), eventList([event]), { token: teamBWriter })).status).toBe(200);
    const written = await eventually("team-b's own writer's event in its bucket", async () => {
      const rows = await rowsNamed(B_META.bucket, B_META.sink, 'b-by-own-writer');
      return rows.length > 0 ? rows : undefined;
    });
    expect(written.map((r) => r.user)).toEqual(['mallory']);
    const refused = {
      'the fan-in endpoint': await statusOf(fanIn(), teamBWriter),
      "the AuditSink's endpoint": await statusOf(clusterSink(), teamBWriter),
      "team-a's pipeline on the shared listener": await statusOf(sharedA(), teamBWriter),
      "team-a's dedicated listener": await statusOf(dedicatedA(), teamBWriter),
    };
    expect(refused).toEqual({
      'the fan-in endpoint': 403,
      "the AuditSink's endpoint": 403,
      "team-a's pipeline on the shared listener": 403,
      "team-a's dedicated listener": 403,
    });
    // Nothing of team-b's forged body reached another trail through a refused request.
    expect(await rowsNamed(A_ALL.bucket, A_ALL.sink, 'b-by-own-writer')).toEqual([]);
    expect(await rowsNamed(CLUSTER.bucket, CLUSTER.sink, 'b-by-own-writer')).toEqual([]);
  });

  it("lets team-a's token write to team-a's pipeline, on the shared listener and its dedicated one, and nowhere else", async () => {
    expect({
      dedicated: await statusOf(dedicatedA(), teamAWriter),
      shared: await statusOf(sharedA(), teamAWriter),
      teamB: await statusOf(sharedB(), teamAWriter),
      fanIn: await statusOf(fanIn(), teamAWriter),
    }).toEqual({ dedicated: 200, shared: 200, teamB: 403, fanIn: 403 });
  });

  it("keeps the apiserver's receiver-wide token working on every endpoint, the tenants' own included", async () => {
    for (const url of [fanIn(), clusterSink(), sharedA(), dedicatedA(), sharedB(), pendingB()]) {
      expect({ url, status: await statusOf(url, receiverToken) }).toEqual({ url, status: 200 });
    }
  });

  it("follows a rotated writers' Secret without a restart: old and new during the rotation, then the new one only", async () => {
    const rotated = randomBytes(24).toString('base64url');
    secrets.set("team-b's rotated writer token", rotated);
    await applySecret('team-b', 'b-writers', `${teamBWriter}\n${rotated}\n`);
    await eventually(
      'the new token accepted',
      async () => (await statusOf(sharedB(), rotated)) === 200,
    );
    expect(await statusOf(sharedB(), teamBWriter)).toBe(200);
    await applySecret('team-b', 'b-writers', `${rotated}\n`);
    await eventually(
      'the old token refused',
      async () => (await statusOf(sharedB(), teamBWriter)) === 401,
    );
    expect({
      oldOnOwn: await statusOf(sharedB(), teamBWriter),
      oldOnFanIn: await statusOf(fanIn(), teamBWriter),
      newOnOwn: await statusOf(sharedB(), rotated),
      newOnTeamA: await statusOf(sharedA(), rotated),
    }).toEqual({ oldOnOwn: 401, oldOnFanIn: 401, newOnOwn: 200, newOnTeamA: 403 });
    teamBWriter = rotated;
  });

  it("reports a missing writers' Secret on ReceiverReady, admits only the receiver-wide credentials meanwhile, and follows its creation", async () => {
    const status = await eventually('ReceiverReady=False', async () => {
      const s = await getStatus('auditpipeline', B_PENDING.name, B_PENDING.namespace);
      return condition(s, 'ReceiverReady')?.status === 'False' ? s : undefined;
    });
    const receiver = condition(status, 'ReceiverReady');
    expect(receiver?.reason).toBe('SecretNotFound');
    expect(receiver?.message).toContain('team-b/b-pending-writers');
    expect(receiver?.message).toContain('receiver-wide credentials only');
    // The destination is fine: only who may post is narrowed.
    expect(condition(status, 'DestinationReady')?.status).toBe('True');
    const pendingWriter = randomBytes(24).toString('base64url');
    secrets.set("b-pending's writer token", pendingWriter);
    expect({
      receiverWide: await statusOf(pendingB(), receiverToken),
      // team-b's other pipeline's token: known, but not for this pipeline.
      neighbour: await statusOf(pendingB(), teamBWriter),
      notYetIssued: await statusOf(pendingB(), pendingWriter),
    }).toEqual({ receiverWide: 200, neighbour: 403, notYetIssued: 401 });

    await applySecret('team-b', 'b-pending-writers', `${pendingWriter}\n`);
    await eventually(
      'the new Secret admitted',
      async () => (await statusOf(pendingB(), pendingWriter)) === 200,
    );
    await eventually('ReceiverReady=True', async () => {
      const s = await getStatus('auditpipeline', B_PENDING.name, B_PENDING.namespace);
      return condition(s, 'ReceiverReady')?.status === 'True';
    });
    expect(await statusOf(sharedB(), pendingWriter)).toBe(403);
  });
});

describe('Secrets', () => {
  it('never uses a Secret without the opt-in label: SecretNotFound, and nothing written', async () => {
    const status = await eventually('DestinationReady=False', async () => {
      const s = await getStatus('auditpipeline', A_UNLABELLED.name, A_UNLABELLED.namespace);
      return condition(s, 'DestinationReady')?.status === 'False' ? s : undefined;
    });
    const destination = condition(status, 'DestinationReady');
    expect(destination?.reason).toBe('SecretNotFound');
    expect(destination?.message).toContain('team-a/database');
    expect(destination?.message).toContain('kube-audit.dev/usable-by-sinks');
    expect(condition(status, 'Ready')?.status).toBe('False');
    // team-a's own work has reached the pipeline by now, and none of it was written.
    expect(status.written ?? 0).toBe(0);
    expect(await rowsOf(A_ALL.bucket, A_UNLABELLED.sink)).toEqual([]);
  });

  it('never logs a credential or Secret value', () => {
    const log = running('the operator', operator).log();
    expect(log).toContain('operator ready');
    expect(secrets.size).toBeGreaterThanOrEqual(10);
    const leaked = [...secrets].filter(([, value]) => log.includes(value)).map(([what]) => what);
    expect(leaked).toEqual([]);
  });

  it('is granted exactly what it calls: every rule of the documented RBAC used, no call refused', async () => {
    const operatorUser = running('the control plane', cp).users.operator.name;
    const log = join(dir, 'apiserver-audit.log');
    // Served only by apiservers with dynamic audit (1.13 to 1.18): native.test.ts checks those.
    const granted = grantedPermissions(OPERATOR_RBAC, (g) => g !== 'auditregistration.k8s.io');
    expect(granted.length).toBeGreaterThanOrEqual(11);
    // /metrics above made the operator review tokens and access.
    expect(granted).toEqual(
      expect.arrayContaining([
        'authentication.k8s.io tokenreviews create',
        'authorization.k8s.io subjectaccessreviews create',
      ]),
    );
    const unused = async () => {
      const { used } = await requestsBy(log, operatorUser);
      return granted.filter((p) => !used.has(p));
    };
    // The Lease is renewed every few seconds: wait for that much, then nothing may stay unused.
    await eventually(
      'every granted permission used',
      async () => (await unused()).length === 0,
    ).catch(() => undefined);
    expect(await unused()).toEqual([]);
    expect((await requestsBy(log, operatorUser)).refused).toEqual([]);
  });
});

/** A free loopback port from 20000 to 32767, below Linux's ephemeral range (32768 on). */
async function freeFixedPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_768);
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (free) return port;
  }
}
