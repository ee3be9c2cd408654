// Two operator replicas against one cluster: every replica serves every sink, one Lease elects the
// replica that writes status, and leadership moves on SIGTERM (at once) and on SIGKILL (after the
// lease expires). Real processes: etcd and kube-apiserver (current release), influxd, kubectl, and
// two `kube-audit-operator run` processes (the built binary, each with its own port and data
// directory, run as a user with exactly the documented RBAC). Audit events are recorded ones
// (test/fixtures/apiserver-1.20) posted to the replicas' pipeline endpoints.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { type ControlPlane, startControlPlane } from '../../harness/controlplane.ts';
import { freePort, type InfluxServer, startInfluxd } from '../../harness/influxd.ts';
import { movedToNow, recordedEvents } from '../../support/recorded.ts';
import {
  type OperatorProcess,
  operatorRunArgs,
  startOperatorProcess,
} from '../../harness/operator.ts';
import { TestPki } from '../../harness/pki.ts';
import { eventually } from '../../support/wait.ts';
import { conditionOf, kubectlOk, postJson, type SinkStatus, sinkStatus } from './kube.ts';

const OPERATOR_NS = 'kube-audit';
const TENANT_NS = 'team-a';
const LEASE = 'kube-audit-operator';
const BUCKET = 'ha';
/** Keeps every event at Metadata: the pipeline that must receive everything. */
const TRAIL = 'ha-trail';
/** Asks RequestResponse for configmaps: the pipeline that learns the apiserver captures less. */
const CAPTURE = 'capture';
/** client-go's lease duration, which the operator uses. */
const LEASE_SECONDS = 15;

/** One operator process and how to reach it. */
interface Replica {
  readonly name: 'A' | 'B';
  readonly url: string;
  readonly process: OperatorProcess;
}

// Set up step by step in beforeAll; afterAll stops whatever was started.
let cp: ControlPlane | undefined;
let influx: InfluxServer | undefined;
let dir = '';
let ca = '';
let token = '';
const replicas: Replica[] = [];
/** Set by the election test; swapped by the failover tests. */
let leader: Replica;
let follower: Replica;

const pipeline = (server: InfluxServer, name: string, rules: unknown[]) => ({
  apiVersion: 'kube-audit.dev/v1alpha1',
  kind: 'AuditPipeline',
  metadata: { name, namespace: TENANT_NS },
  spec: {
    policy: { omitStages: ['RequestReceived'], rules },
    influxdb: {
      url: server.url,
      org: server.org,
      bucket: BUCKET,
      tokenSecretRef: { name: 'influxdb', key: 'token' },
      flushInterval: '200ms',
    },
  },
});

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kao-ha-e2e-'));
  const pki = new TestPki(dir);
  await pki.init();
  await pki.ca('ca');
  const serving = await pki.leaf('receiver', 'ca', 'server');
  ca = await readFile(join(dir, 'ca.crt'), 'utf8');
  token = randomBytes(24).toString('base64url');
  const tokenFile = join(dir, 'receiver-tokens');
  await writeFile(tokenFile, `${token}\n`);

  const [server, controlPlane] = await Promise.all([startInfluxd(), startControlPlane()]);
  influx = server;
  cp = controlPlane;

  await must(['apply', '-f', 'crds/']);
  await must(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
  for (const ns of [OPERATOR_NS, TENANT_NS]) await must(['create', 'namespace', ns]);
  // The operator runs as a user with exactly the documented RBAC, Lease included.
  await must(['apply', '-f', 'examples/operator/rbac.yaml']);
  // A one-hour retention, as a real trail has one: it keeps the recorded events only because they
  // are moved to now (configmapEvent), which the first test shows.
  await server.createBucket(BUCKET, 3600);
  const influxToken = await server.createToken([
    { action: 'write', bucket: BUCKET },
    { action: 'read', bucket: BUCKET },
  ]);
  const secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      namespace: TENANT_NS,
      name: 'influxdb',
      labels: { 'kube-audit.dev/usable-by-sinks': 'true' },
    },
    stringData: { token: influxToken },
  };
  const resources = [
    secret,
    pipeline(server, TRAIL, [{ level: 'Metadata' }]),
    pipeline(server, CAPTURE, [
      { level: 'RequestResponse', resources: [{ group: '', resources: ['configmaps'] }] },
    ]),
  ];
  await must(['apply', '-f', '-'], resources.map((o) => stringify(o)).join('---\n'));

  const start = async (name: Replica['name']): Promise<Replica> => {
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    const process = await startOperatorProcess(
      operatorRunArgs({
        kubeconfig: controlPlane.kubeconfig('operator'),
        port,
        serving,
        tokenFile,
        dataDir: join(dir, `data-${name}`),
        namespace: OPERATOR_NS,
      }),
      { url, ca },
      join(dir, `operator-${name}.log`),
    );
    return { name, url, process };
  };
  // One after the other, so that a failed start leaves the first in `replicas` to be stopped.
  replicas.push(await start('A'));
  replicas.push(await start('B'));

  for (const name of [TRAIL, CAPTURE]) {
    await eventually(`${name} Ready`, async () => {
      return condition(await getStatus(name), 'Ready')?.status === 'True';
    }).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${logs()}`);
    });
  }
}, 300_000);

afterAll(async () => {
  await Promise.all(replicas.map((r) => r.process.stop()));
  await Promise.all([cp?.stop(), influx?.dispose()]);
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

// ---- helpers ---------------------------------------------------------------------------------

function running<T>(what: string, value: T | undefined): T {
  if (value === undefined) throw new Error(`${what} is not running`);
  return value;
}

function must(args: string[], input?: string): Promise<string> {
  return kubectlOk(running('the control plane', cp), args, input);
}

type Status = SinkStatus;

function getStatus(name: string): Promise<Status> {
  return sinkStatus(running('the control plane', cp), 'auditpipeline', name, TENANT_NS);
}

const condition = conditionOf;

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  leaseTransitions?: number;
  renewTime?: string;
}

async function leaseSpec(): Promise<LeaseSpec> {
  const out = await must(['get', 'lease', LEASE, '-n', OPERATOR_NS, '-o', 'json']);
  return (JSON.parse(out) as { spec?: LeaseSpec }).spec ?? {};
}

/** Waits until the holder has renewed the Lease twice more, i.e. for two rounds of the election. */
async function twoRenewals(): Promise<LeaseSpec> {
  const seen = new Set([(await leaseSpec()).renewTime]);
  return eventually('two renewals of the Lease', async () => {
    const spec = await leaseSpec();
    seen.add(spec.renewTime);
    return seen.size >= 3 ? spec : undefined;
  });
}

/** The JSON lines a replica logged, across restarts (stderr's plain lines left out). */
function logLines(replica: Replica): Record<string, unknown>[] {
  return replica.process
    .log()
    .split('\n')
    .flatMap((line) => {
      if (!line.startsWith('{')) return [];
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}

/** How many times a replica has logged that it became the leader. */
function timesLeading(replica: Replica): number {
  return logLines(replica).filter((l) => l.msg === 'leading: writing status' && l.leading === true)
    .length;
}

function logs(): string {
  return replicas.map((r) => `operator ${r.name} log:\n${r.process.log().slice(-3000)}`).join('\n');
}

/** A recorded `create configmap` event, made new: our namespace, a fresh auditID, moved to now. */
function configmapEvent(level: 'Metadata' | 'RequestResponse' = 'RequestResponse'): AuditEvent {
  const recorded = recordedEvents().find(
    (e) =>
      e.verb === 'create' &&
      e.objectRef?.resource === 'configmaps' &&
      e.level === 'RequestResponse' &&
      e.stage === 'ResponseComplete',
  );
  if (recorded?.objectRef === undefined) throw new Error('no recorded create configmap event');
  const [recent] = movedToNow([recorded]);
  const event: AuditEvent = {
    ...(recent as AuditEvent),
    auditID: randomUUID(),
    objectRef: { ...recorded.objectRef, namespace: TENANT_NS },
    requestURI: `/api/v1/namespaces/${TENANT_NS}/configmaps`,
    level,
  };
  if (level === 'Metadata') {
    // What an apiserver whose own policy says Metadata sends: no bodies.
    delete event.requestObject;
    delete event.responseObject;
  }
  return event;
}

/** POSTs an EventList to a replica's endpoint of a pipeline; resolves with the HTTP status. */
function post(replica: Replica, name: string, events: readonly AuditEvent[]): Promise<number> {
  const body = JSON.stringify({ apiVersion: 'audit.k8s.io/v1', kind: 'EventList', items: events });
  return postJson(`${replica.url}/audit/v1/pipelines/${TENANT_NS}/${name}`, body, { ca, token });
}

/** The auditIDs a pipeline wrote to the bucket. */
async function written(name: string): Promise<Set<string>> {
  const rows = await running('influxd', influx).query(`
    from(bucket: "${BUCKET}")
      |> range(start: 0)
      |> filter(fn: (r) => r._measurement == "kubernetes_audit" and r._field == "audit_id")
      |> filter(fn: (r) => r.sink == "${TENANT_NS}/${name}")`);
  return new Set(rows.map((r) => String(r._value)));
}

/** Posts `count` new events to a replica's TRAIL endpoint and waits until they are written. */
async function postAndLand(replica: Replica, count: number): Promise<string[]> {
  const events = Array.from({ length: count }, () => configmapEvent());
  expect(await post(replica, TRAIL, events)).toBe(200);
  const ids = events.map((e) => e.auditID);
  await eventually(`${ids.length} events posted to ${replica.name} to be written`, async () => {
    const have = await written(TRAIL);
    return ids.every((id) => have.has(id));
  });
  return ids;
}

/** Waits until the TRAIL's status was written by `replica` (its endpoint) and returns it. */
async function statusBy(replica: Replica, check: (s: Status) => boolean = () => true) {
  return eventually(`status written by replica ${replica.name}`, async () => {
    const s = await getStatus(TRAIL);
    return s.endpoint?.startsWith(`${replica.url}/`) === true && check(s) ? s : undefined;
  });
}

/** Both replicas, as started. */
function pair(): [Replica, Replica] {
  const [a, b] = replicas;
  if (a === undefined || b === undefined) throw new Error('both replicas must have started');
  return [a, b];
}

// ---- tests -----------------------------------------------------------------------------------

describe('two operator replicas', () => {
  it('serve every sink: an EventList posted to either replica lands in the bucket', async () => {
    const [a, b] = pair();
    const toA = await postAndLand(a, 2);
    const toB = await postAndLand(b, 2);
    const have = await written(TRAIL);
    expect([...toA, ...toB].filter((id) => !have.has(id))).toEqual([]);
  });

  it('elect exactly one leader: it holds the Lease and is the only one that logs leading', async () => {
    const [a, b] = pair();
    await eventually('a replica to log that it leads', () => timesLeading(a) + timesLeading(b) > 0);
    const spec = await leaseSpec();
    const holder = spec.holderIdentity ?? '';
    // The hostname (the pod's name in a cluster) and a random suffix, unique per process.
    expect(holder.startsWith(`${hostname()}_`)).toBe(true);
    expect(holder.slice(hostname().length + 1)).toMatch(/^[0-9a-f]{8}$/);
    expect(spec.leaseDurationSeconds).toBe(LEASE_SECONDS);
    expect([timesLeading(a), timesLeading(b)].sort()).toEqual([0, 1]);
    [leader, follower] = timesLeading(a) === 1 ? [a, b] : [b, a];
    // It stays that way while both run: the leader renews, the follower follows.
    expect((await twoRenewals()).holderIdentity).toBe(holder);
    expect([timesLeading(leader), timesLeading(follower)]).toEqual([1, 0]);
  });

  it('let the leader write status and keep it current', async () => {
    const first = await statusBy(leader);
    expect(first.observedGeneration).toBe(1);
    expect(condition(first, 'Ready')?.status).toBe('True');
    expect(condition(first, 'PolicyValid')?.status).toBe('True');
    expect(condition(first, 'ReceiverReady')?.status).toBe('True');

    const before = first.received ?? 0;
    await postAndLand(leader, 3);
    const after = await statusBy(
      leader,
      (s) => (s.received ?? 0) >= before + 3 && (s.written ?? 0) >= before + 3,
    );
    expect(after.received).toBe(before + 3);
    expect(after.lastEventTime).toBeDefined();
    expect(condition(after, 'DestinationReady')?.reason).toBe('Delivered');
  });

  it('report CaptureSufficient=False (ApiserverCapturesLess) for events below the policy level, and stay Ready', async () => {
    const before = await getStatus(CAPTURE);
    expect(condition(before, 'CaptureSufficient')?.status).toBe('True');

    const event = configmapEvent('Metadata');
    expect(await post(leader, CAPTURE, [event])).toBe(200);

    const status = await eventually('CaptureSufficient=False', async () => {
      const s = await getStatus(CAPTURE);
      return condition(s, 'CaptureSufficient')?.status === 'False' ? s : undefined;
    });
    expect(condition(status, 'CaptureSufficient')?.reason).toBe('ApiserverCapturesLess');
    expect(condition(status, 'CaptureSufficient')?.message).toMatch(/^1 events arrived/);
    expect(condition(status, 'Ready')?.status).toBe('True');
    // Kept at the level it arrived with.
    await eventually('the event to be written', async () =>
      (await written(CAPTURE)).has(event.auditID),
    );
    const events = await must([
      'get',
      'events',
      '-n',
      TENANT_NS,
      '--field-selector',
      `involvedObject.name=${CAPTURE}`,
      '-o',
      'json',
    ]);
    expect(events).toContain('ApiserverCapturesLess');
  });

  it('hand the Lease over at once when the leader is stopped with SIGTERM', async () => {
    const old = (await leaseSpec()).holderIdentity;
    const stopping = Date.now();
    expect(await leader.process.stop('SIGTERM')).toBe(0);
    const exited = Date.now();
    const released = await leaseSpec();
    // Released (empty holder), or already taken by the other replica.
    expect(released.holderIdentity).not.toBe(old);

    await eventually(
      `replica ${follower.name} to lead`,
      () => timesLeading(follower) === 1,
      LEASE_SECONDS * 1000,
      100,
    );
    const tookOver = Date.now();
    // The follower tries every 2 s (client-go's retry period): far sooner than a 15 s expiry.
    expect(tookOver - exited).toBeLessThan(5_000);
    const taken = await leaseSpec();
    expect(taken.holderIdentity).not.toBe(old);
    expect(taken.holderIdentity?.startsWith(`${hostname()}_`)).toBe(true);
    expect(logLines(leader).some((l) => l.msg === 'stopped')).toBe(true);
    console.log(
      `SIGTERM: exited after ${exited - stopping} ms, replica ${follower.name} led ${tookOver - exited} ms later`,
    );
    [leader, follower] = [follower, leader];

    // The new leader writes status: its endpoint, then its counters as it receives more.
    const first = await statusBy(leader);
    await postAndLand(leader, 2);
    await statusBy(leader, (s) => (s.received ?? 0) === (first.received ?? 0) + 2);
  });

  it('move leadership once the lease expires when the leader is killed with SIGKILL', async () => {
    await follower.process.restart();
    const holder = (await leaseSpec()).holderIdentity;
    const ledBefore = timesLeading(follower);
    // The restarted replica follows: the Lease is held and renewed.
    expect((await twoRenewals()).holderIdentity).toBe(holder);
    expect(timesLeading(follower)).toBe(ledBefore);

    const killed = Date.now();
    expect(await leader.process.stop('SIGKILL')).toBeNull();
    await eventually(
      `replica ${follower.name} to lead`,
      () => timesLeading(follower) === ledBefore + 1,
      30_000,
      100,
    );
    const tookOver = Date.now() - killed;
    console.log(`SIGKILL: replica ${follower.name} led ${tookOver} ms after the kill`);
    // Not before the Lease expired (the killed replica renewed it at most 2 s before it died),
    // and within twice its duration.
    expect(tookOver).toBeGreaterThan(10_000);
    expect(tookOver).toBeLessThan(30_000);
    const spec = await leaseSpec();
    expect(spec.holderIdentity).not.toBe(holder);
    expect(spec.holderIdentity?.startsWith(`${hostname()}_`)).toBe(true);
    [leader, follower] = [follower, leader];

    const first = await statusBy(leader);
    expect(condition(first, 'Ready')?.status).toBe('True');
    await postAndLand(leader, 1);
    await statusBy(leader, (s) => (s.received ?? 0) === (first.received ?? 0) + 1);
  });
});
