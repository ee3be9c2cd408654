// Native dynamic mode end to end. Real processes: etcd and kube-apiserver 1.18 started with
// `--audit-dynamic-configuration` and no static audit webhook at all (plus its audit log as the
// oracle), influxd, kubectl, and `kube-audit-operator run` with a native key, as a user bound to
// the documented RBAC. The operator registers one native AuditSink per sink; the apiserver posts
// to each sink's signed endpoint itself, and each bucket must get exactly its sink's events.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { type ControlPlane, startControlPlane } from '../../harness/controlplane.ts';
import { freePort, type InfluxServer, startInfluxd } from '../../harness/influxd.ts';
import {
  type OperatorProcess,
  operatorRunArgs,
  startOperatorProcess,
} from '../../harness/operator.ts';
import { TestPki } from '../../harness/pki.ts';
import { serversLater } from '../../harness/servers-later.ts';
import { grantedPermissions, OPERATOR_RBAC, requestsBy } from '../../support/rbac.ts';
import { eventually } from '../../support/wait.ts';
import { kubectlOk, postJson } from './kube.ts';
import { AuditOracle, type WrittenBy } from './oracle.ts';

// Built after the other servers of this project: only this file and one other need it.
await serversLater(['controlplane-legacy']);

const OPERATOR_NS = 'kube-audit';

/** Native AuditSinks as `kubectl get` lists them. */
interface NativeSink {
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: { policy: { level: string; stages: string[] }; webhook: { clientConfig: { url: string } } };
}

interface Env {
  cp: ControlPlane;
  influx: InfluxServer;
  operator: OperatorProcess;
  oracle: AuditOracle;
  /** The apiserver's own audit log: the oracle, and what the operator called. */
  auditLog: string;
  dir: string;
  ca: string;
  resources: Record<string, Record<string, unknown>>;
}

let env: Env;

const SINKS: Record<string, WrittenBy> = {
  everything: { bucket: 'everything', sink: 'everything' },
  'a-trail': { bucket: 'team-a', sink: 'team-a/a-trail' },
};

function resourcesFor(influx: InfluxServer): Record<string, Record<string, unknown>> {
  const influxdb = (bucket: string, secret: string) => ({
    url: influx.url,
    org: influx.org,
    bucket,
    tokenSecretRef: { name: secret, key: 'token' },
    flushInterval: '200ms',
  });
  return {
    everything: {
      apiVersion: 'kube-audit.dev/v1alpha1',
      kind: 'AuditSink',
      metadata: { name: 'everything' },
      spec: {
        policy: { level: 'Metadata', stages: ['ResponseComplete'] },
        influxdb: influxdb('everything', 'influxdb'),
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
            // No `group: ""`: the 1.18 apiserver under test reads an empty string in a custom
            // resource as null and refuses it; an omitted group is the core group as well.
            { level: 'RequestResponse', resources: [{ resources: ['configmaps'] }] },
            { level: 'Metadata' },
          ],
        },
        influxdb: influxdb('team-a', 'influxdb'),
      },
    },
  };
}

beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kao-native-e2e-'));
  const pki = new TestPki(dir);
  await pki.init();
  await pki.ca('ca');
  const serving = await pki.leaf('receiver', 'ca', 'server');
  const ca = await readFile(join(dir, 'ca.crt'), 'utf8');
  const tokenFile = join(dir, 'receiver-tokens');
  await writeFile(tokenFile, `${randomBytes(24).toString('base64url')}\n`);
  const keyFile = join(dir, 'native-key');
  await writeFile(keyFile, randomBytes(32).toString('base64url'));
  const port = await freePort();
  const auditLog = join(dir, 'audit.log');

  const [influx, cp] = await Promise.all([
    startInfluxd(),
    startControlPlane({
      legacy: true,
      dynamicAudit: true,
      extraApiserverArgs: [`--audit-log-path=${auditLog}`, '--audit-log-format=json'],
    }),
  ]);
  const kubectl = async (args: string[], input?: string) => {
    const r = await cp.kubectl(args, input === undefined ? {} : { input });
    if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  // kubectl 1.35 validates against the server's OpenAPI, which 1.18 serves without the CEL
  // extension the CRDs carry; 1.18 itself stores the CRDs without it.
  await kubectl(['apply', '--validate=false', '-f', 'crds/']);
  // `kubectl wait` of 1.35 asks for watch-list streaming, which 1.18 lacks: poll instead.
  await eventually('the CRDs to be established', async () => {
    const out = await kubectl([
      'get',
      'crd',
      '-o',
      'jsonpath={.items[*].status.conditions[?(@.type=="Established")].status}',
    ]);
    return out.split(' ').filter((s) => s === 'True').length === 2;
  });
  await kubectl(['create', 'namespace', OPERATOR_NS]);
  await kubectl(['create', 'namespace', 'team-a']);
  await kubectl(['apply', '-f', 'examples/operator/rbac.yaml']);
  await Promise.all(['everything', 'team-a'].map((b) => influx.createBucket(b)));
  for (const ns of [OPERATOR_NS, 'team-a']) {
    await kubectl([
      'create',
      'secret',
      'generic',
      'influxdb',
      '-n',
      ns,
      `--from-literal=token=${influx.token}`,
    ]);
    await kubectl(['label', 'secret', 'influxdb', '-n', ns, 'kube-audit.dev/usable-by-sinks=true']);
  }
  const resources = resourcesFor(influx);
  await kubectl(
    ['apply', '--validate=false', '-f', '-'],
    Object.values(resources)
      .map((o) => stringify(o))
      .join('---\n'),
  );

  const receiverUrl = `https://127.0.0.1:${port}`;
  const operator = await startOperatorProcess(
    operatorRunArgs(
      {
        kubeconfig: cp.kubeconfig('operator'),
        port,
        serving,
        tokenFile,
        dataDir: join(dir, 'data'),
        namespace: OPERATOR_NS,
      },
      `--native-key-file=${keyFile}`,
      `--advertise-url=${receiverUrl}`,
    ),
    { url: receiverUrl, ca },
    join(dir, 'operator.log'),
  );
  env = {
    cp,
    influx,
    operator,
    oracle: new AuditOracle([cp.users.admin.name, cp.users.alice.name], influx, auditLog, [
      OPERATOR_NS,
    ]),
    auditLog,
    dir,
    ca,
    resources,
  };
}, 300_000);

afterAll(async () => {
  await env?.operator.stop();
  await Promise.all([env?.cp.stop(), env?.influx.dispose()]);
  if (env !== undefined) await rm(env.dir, { recursive: true, force: true });
});

function must(args: string[]): Promise<string> {
  return kubectlOk(env.cp, args);
}

async function nativeSinks(): Promise<NativeSink[]> {
  const out = await must(['get', 'auditsinks.auditregistration.k8s.io', '-o', 'json']);
  return (JSON.parse(out) as { items: NativeSink[] }).items;
}

function postWithoutCredentials(url: string): Promise<number> {
  const body = JSON.stringify({ apiVersion: 'audit.k8s.io/v1', kind: 'EventList', items: [] });
  return postJson(url, body, { ca: env.ca });
}

describe('native dynamic AuditSinks on a 1.18 kube-apiserver', () => {
  it('registers one native AuditSink per sink, pointing at its signed endpoint', async () => {
    const sinks = await eventually('two native AuditSinks', async () => {
      const items = await nativeSinks();
      return items.length === 2 ? items : undefined;
    });
    const bySink = new Map(sinks.map((s) => [s.metadata.annotations?.['kube-audit.dev/sink'], s]));
    const everything = bySink.get('AuditSink/everything');
    const trail = bySink.get('AuditPipeline/team-a/a-trail');
    expect(everything?.spec.policy).toEqual({ level: 'Metadata', stages: ['ResponseComplete'] });
    expect(trail?.spec.policy).toEqual({
      level: 'RequestResponse',
      stages: ['ResponseStarted', 'ResponseComplete', 'Panic'],
    });
    expect(everything?.spec.webhook.clientConfig.url).toMatch(
      /^https:\/\/127\.0\.0\.1:\d+\/audit\/v1\/native\/[\w-]{43}\/sinks\/everything$/,
    );
    expect(trail?.spec.webhook.clientConfig.url).toMatch(
      /\/audit\/v1\/native\/[\w-]{43}\/pipelines\/team-a\/a-trail$/,
    );
    for (const sink of sinks) {
      expect(sink.metadata.labels?.['app.kubernetes.io/managed-by']).toBe('kube-audit-operator');
    }
    // The signed path is the credential: it works without a token, and only for its own sink.
    const url = everything?.spec.webhook.clientConfig.url ?? '';
    expect(await postWithoutCredentials(url)).toBe(200);
    expect(await postWithoutCredentials(url.replace('/sinks/everything', '/sinks/other'))).toBe(
      404,
    );
  });

  it('has the apiserver post each sink its own events, exactly as its policy keeps them', async () => {
    // The apiserver picks native sinks up from its own watch: wait until a probe arrives.
    await eventually(
      'the apiserver to post to the native sinks',
      async () => {
        await must([
          'create',
          'configmap',
          `probe-${randomBytes(3).toString('hex')}`,
          '-n',
          'team-a',
        ]);
        return (await env.oracle.written(SINKS['a-trail'] as WrittenBy)).size > 0;
      },
      90_000,
      5_000,
    );
    env.oracle.since = new Date();
    await must(['create', 'configmap', 'cm1', '-n', 'team-a', '--from-literal=k=v']);
    await must(['patch', 'configmap', 'cm1', '-n', 'team-a', '-p', '{"data":{"k":"w"}}']);
    await must(['create', 'secret', 'generic', 's1', '-n', 'team-a', '--from-literal=p=q']);
    await must(['get', 'configmaps', '-n', 'team-a']);
    await must(['create', 'namespace', 'team-b']);
    await must(['create', 'configmap', 'elsewhere', '-n', 'team-b']);
    const forbidden = await env.cp.kubectl(['get', 'secrets', '-n', 'team-a'], { user: 'alice' });
    expect(forbidden.code).not.toBe(0);
    // Native sinks batch for up to 30 s in the apiserver (not configurable there).
    for (const [name, by] of Object.entries(SINKS)) {
      await env.oracle.expectExactly(
        by,
        async () => env.oracle.expectedFor(env.resources[name], await env.oracle.loggedEvents()),
        90_000,
      );
    }
  });

  it("updates a native AuditSink when its sink's policy changes", async () => {
    await must([
      'patch',
      // Not `auditsink`: that name is the native kind's too on this apiserver.
      'auditsinks.kube-audit.dev',
      'everything',
      '--type=merge',
      '-p',
      '{"spec":{"policy":{"level":"Request","stages":["ResponseComplete"]}}}',
    ]);
    await eventually('the native AuditSink at level Request', async () => {
      const sink = (await nativeSinks()).find(
        (s) => s.metadata.annotations?.['kube-audit.dev/sink'] === 'AuditSink/everything',
      );
      return sink?.spec.policy.level === 'Request';
    });
  });

  it('removes the native AuditSink with its sink', async () => {
    await must(['delete', 'auditpipeline', 'a-trail', '-n', 'team-a']);
    await eventually('one native AuditSink left', async () => (await nativeSinks()).length === 1);
    const [left] = await nativeSinks();
    expect(left?.metadata.annotations?.['kube-audit.dev/sink']).toBe('AuditSink/everything');
  });

  it('is granted exactly the native AuditSink verbs it calls, none refused', async () => {
    const granted = grantedPermissions(OPERATOR_RBAC, (g) => g === 'auditregistration.k8s.io');
    expect(granted).toHaveLength(4);
    const { used, refused } = await requestsBy(env.auditLog, env.cp.users.operator.name);
    expect(granted.filter((p) => !used.has(p))).toEqual([]);
    expect(refused).toEqual([]);
  });
});
