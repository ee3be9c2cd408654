// Status under HA is the cluster's (ADR 0013): with traffic split across two replicas the
// counters in status add up to the events sent, within two status intervals; a replica killed with
// SIGKILL and restarted, the leader included, neither lowers them nor counts anything twice; a
// destination failing only on the replica that is not the leader makes DestinationReady False and
// records a Warning Event; and the ConfigMap reports use exactly the documented RBAC. Real
// processes: etcd and kube-apiserver (current release, with an audit log of every request, for
// the RBAC and write-rate checks), influxd, kubectl, and two `kube-audit-operator run` processes
// (the built binary, each with its own port and data directory, status every second, run as a
// user with exactly the documented RBAC). Audit events are recorded ones
// (test/fixtures/apiserver-1.20) posted to the replicas' pipeline endpoints.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { type ControlPlane, startControlPlane } from '../../harness/controlplane.ts';
import { freePort, type InfluxServer, startInfluxd } from '../../harness/influxd.ts';
import {
  type OperatorProcess,
  operatorRunArgs,
  startOperatorProcess,
} from '../../harness/operator.ts';
import { TestPki } from '../../harness/pki.ts';
import { movedToNow, recordedEvents } from '../../support/recorded.ts';
import { grantedPermissions, OPERATOR_RBAC, requestsBy } from '../../support/rbac.ts';
import { eventually } from '../../support/wait.ts';
import { conditionOf, kubectlOk, postJson, type SinkStatus } from './kube.ts';

const OPERATOR_NS = 'kube-audit';
const TENANT_NS = 'team-a';
const LEASE = 'kube-audit-operator';
const BUCKET = 'ha-status';
/** Keeps every event at Metadata. */
const TRAIL = 'split-trail';
/** The harness runs the operator with `--status-interval-seconds=1`. */
const INTERVAL_MS = 1_000;
/** A slot expires after 3 heartbeats of 4 intervals (ADR 0013). */
const EXPIRY_MS = 12 * INTERVAL_MS;

/** One operator process and how to reach it. */
interface Replica {
  readonly name: 'A' | 'B' | 'C';
  readonly url: string;
  readonly process: OperatorProcess;
}

// Set up step by step in beforeAll; afterAll stops whatever was started.
let cp: ControlPlane | undefined;
let influx: InfluxServer | undefined;
let dir = '';
let ca = '';
let token = '';
let influxToken = '';
/** The two replicas the tests split traffic across. */
const replicas: Replica[] = [];
/** Starts one more replica (set by beforeAll). */
let startReplica: (name: Replica['name']) => Promise<Replica>;
/** A third replica, started by one test. */
let third: Replica | undefined;
/** Every event acknowledged by a replica, across the tests: what status must add up to. */
let sent = 0;
/** Every `received` seen in status, in order, by the watcher below. */
const seen: { at: number; received: number }[] = [];
let watching: Promise<void> | undefined;
let stopWatching = false;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kao-ha-status-e2e-'));
  const pki = new TestPki(dir);
  await pki.init();
  await pki.ca('ca');
  const serving = await pki.leaf('receiver', 'ca', 'server');
  ca = await readFile(join(dir, 'ca.crt'), 'utf8');
  token = randomBytes(24).toString('base64url');
  const tokenFile = join(dir, 'receiver-tokens');
  await writeFile(tokenFile, `${token}\n`);

  const [server, controlPlane] = await Promise.all([
    startInfluxd(),
    startControlPlane({
      // Every request as the apiserver saw it, without bodies: for the RBAC and write-rate checks.
      auditPolicy: 'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n',
      extraApiserverArgs: [`--audit-log-path=${join(dir, 'apiserver-audit.log')}`],
    }),
  ]);
  influx = server;
  cp = controlPlane;

  await must(['apply', '-f', 'crds/']);
  await must(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
  for (const ns of [OPERATOR_NS, TENANT_NS]) await must(['create', 'namespace', ns]);
  await must(['apply', '-f', 'examples/operator/rbac.yaml']);
  await server.createBucket(BUCKET);
  influxToken = await server.createToken([
    { action: 'write', bucket: BUCKET },
    { action: 'read', bucket: BUCKET },
  ]);
  await setInfluxToken(influxToken);
  const pipeline = {
    apiVersion: 'kube-audit.dev/v1alpha1',
    kind: 'AuditPipeline',
    metadata: { name: TRAIL, namespace: TENANT_NS },
    spec: {
      policy: { omitStages: ['RequestReceived'], rules: [{ level: 'Metadata' }] },
      influxdb: {
        url: server.url,
        org: server.org,
        bucket: BUCKET,
        tokenSecretRef: { name: 'influxdb', key: 'token' },
        flushInterval: '200ms',
      },
    },
  };
  await must(['apply', '-f', '-'], stringify(pipeline));

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
  startReplica = start;
  replicas.push(await start('A'));
  replicas.push(await start('B'));
  await eventually('the pipeline Ready', async () => {
    return conditionOf(await getStatus(), 'Ready')?.status === 'True';
  }).catch((err: unknown) => {
    throw new Error(`${String(err)}\n${logs()}`);
  });
  // From here on, status is read every 100 ms: no reading may be lower than the one before.
  watching = (async () => {
    while (!stopWatching) {
      try {
        seen.push({ at: Date.now(), received: (await getStatus()).received ?? 0 });
      } catch {
        // A failed kubectl is no reading.
      }
      await sleep(100);
    }
  })();
}, 300_000);

afterAll(async () => {
  stopWatching = true;
  await watching;
  await Promise.all(
    [...replicas, third].flatMap((r) => (r === undefined ? [] : [r.process.stop()])),
  );
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

/**
 * GETs an API path as admin, straight from the apiserver: polled every 50 ms, a kubectl process
 * each time would cost more CPU than the operators under test.
 */
function apiGet<T>(path: string): Promise<T> {
  const plane = running('the control plane', cp);
  return new Promise((resolve, reject) => {
    const req = httpsGet(
      `${plane.url}${path}`,
      { ca: plane.caPem, headers: { authorization: `Bearer ${plane.users.admin.token}` } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`GET ${path}: ${res.statusCode} ${body}`));
          else resolve(JSON.parse(body) as T);
        });
      },
    );
    req.on('error', reject);
  });
}

async function getStatus(): Promise<SinkStatus> {
  const path = `/apis/kube-audit.dev/v1alpha1/namespaces/${TENANT_NS}/auditpipelines/${TRAIL}`;
  return (await apiGet<{ status?: SinkStatus }>(path)).status ?? {};
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function setInfluxToken(value: string): Promise<void> {
  const secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      namespace: TENANT_NS,
      name: 'influxdb',
      labels: { 'kube-audit.dev/usable-by-sinks': 'true' },
    },
    stringData: { token: value },
  };
  await must(['apply', '-f', '-'], stringify(secret));
}

function logs(): string {
  return replicas.map((r) => `operator ${r.name} log:\n${r.process.log().slice(-3000)}`).join('\n');
}

/**
 * Whether a replica leads now: its last word on it since it last became ready (the ready line
 * says whether it leads then; a change after it is logged on its own).
 */
function leads(replica: Replica): boolean {
  const lines = replica.process.log().split('\n');
  const started = lines.findLastIndex((l) => l.includes('"msg":"operator ready"'));
  const since = lines.slice(Math.max(0, started));
  const last = since.findLast((l) =>
    /"msg":"(leading: writing status|following|operator ready)"/.test(l),
  );
  return last?.includes('"leading":true') === true;
}

/** The leader and the other one, once exactly one leads. */
async function roles(): Promise<{ leader: Replica; follower: Replica }> {
  return eventually('exactly one replica to lead', () => {
    const leading = replicas.filter(leads);
    const [leader] = leading;
    const follower = replicas.find((r) => r !== leader);
    return leading.length === 1 && leader !== undefined && follower !== undefined
      ? { leader, follower }
      : undefined;
  });
}

/** `count` new Metadata events of a recorded `create configmap`, in our namespace. */
function events(count: number): AuditEvent[] {
  const recorded = recordedEvents().find(
    (e) =>
      e.verb === 'create' &&
      e.objectRef?.resource === 'configmaps' &&
      e.stage === 'ResponseComplete',
  );
  const ref = recorded?.objectRef;
  if (recorded === undefined || ref === undefined) {
    throw new Error('no recorded create configmap event');
  }
  return Array.from({ length: count }, () => {
    const [recent] = movedToNow([recorded]);
    const event: AuditEvent = {
      ...(recent as AuditEvent),
      auditID: randomUUID(),
      level: 'Metadata',
      objectRef: { ...ref, namespace: TENANT_NS },
      requestURI: `/api/v1/namespaces/${TENANT_NS}/configmaps`,
    };
    delete event.requestObject;
    delete event.responseObject;
    return event;
  });
}

/** Posts `count` events to a replica's pipeline endpoint; resolves when acknowledged (200). */
async function post(replica: Replica, count: number): Promise<void> {
  const body = JSON.stringify({
    apiVersion: 'audit.k8s.io/v1',
    kind: 'EventList',
    items: events(count),
  });
  const url = `${replica.url}/audit/v1/pipelines/${TENANT_NS}/${TRAIL}`;
  expect(await postJson(url, body, { ca, token })).toBe(200);
  sent += count;
}

/** Waits until status shows every event sent so far, and returns it. */
function statusShowsAll(timeoutMs = 30_000): Promise<SinkStatus> {
  return eventually(
    `status received to reach ${sent}`,
    async () => {
      const s = await getStatus();
      return (s.received ?? 0) >= sent ? s : undefined;
    },
    timeoutMs,
    50,
  );
}

/** The slot and totals ConfigMaps, as `kubectl get` shows them. */
async function statusParts(): Promise<{ name: string; part: string; data: unknown }[]> {
  const selector = encodeURIComponent(`kube-audit.dev/status-of=${LEASE}`);
  const list = await apiGet<{
    items: {
      metadata: { name: string; labels: Record<string, string> };
      data: Record<string, string>;
    }[];
  }>(`/api/v1/namespaces/${OPERATOR_NS}/configmaps?labelSelector=${selector}`);
  return list.items.map((i) => ({
    name: i.metadata.name,
    part: i.metadata.labels['kube-audit.dev/status-part'] ?? '',
    data: JSON.parse(Object.values(i.data)[0] ?? 'null') as unknown,
  }));
}

/** The incarnations the totals hold as folded. */
async function foldedIncarnations(): Promise<string[]> {
  const totals = (await statusParts()).find((p) => p.part === 'totals')?.data as
    { incarnations?: Record<string, unknown> } | undefined;
  return Object.keys(totals?.incarnations ?? {});
}

/** The incarnations that slots show and the totals do not hold as folded. */
async function liveIncarnations(): Promise<string[]> {
  const folded = await foldedIncarnations();
  return [...(await slotIncarnations()).values()].filter((inc) => !folded.includes(inc));
}

/** The incarnation each slot shows, by slot name. */
async function slotIncarnations(): Promise<Map<string, string>> {
  return new Map(
    (await statusParts())
      .filter((p) => p.part === 'replica')
      .map((p) => [p.name, (p.data as { incarnation: string }).incarnation]),
  );
}

/** The pid of a replica's process, found by its data directory (unique to it) in /proc. */
async function pidOf(replica: Replica): Promise<number> {
  const marker = `--data-dir=${join(dir, `data-${replica.name}`)}`;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(marker)) return Number(entry);
  }
  throw new Error(`no process of replica ${replica.name}`);
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** No reading of `received` was lower than the one before it. */
function neverDecreased(): void {
  const drops = seen.flatMap((s, i) => {
    const before = seen[i - 1];
    return before !== undefined && s.received < before.received ? [[before, s]] : [];
  });
  expect(drops).toEqual([]);
}

// ---- tests -----------------------------------------------------------------------------------

describe('status with two replicas', () => {
  it('adds up traffic split across both replicas to exactly the events sent, within two intervals', async () => {
    const delays: number[] = [];
    for (let round = 0; round < 16; round++) {
      const replica = replicas[round % 2] as Replica;
      await post(replica, 5 + round);
      const acked = Date.now();
      await statusShowsAll();
      delays.push(Date.now() - acked);
    }
    const status = await statusShowsAll();
    expect(status.received).toBe(sent);
    await eventually('every event written', async () => (await getStatus()).written === sent);
    const p50 = percentile(delays, 50);
    const max = Math.max(...delays);
    console.log(
      `ack → status total, ${delays.length} rounds split across 2 replicas, status interval ${INTERVAL_MS} ms: p50 ${p50} ms, max ${max} ms`,
    );
    // A replica writes its report within one interval, the leader sums within one more; the
    // rest is the apiserver's round trips on a loaded machine.
    expect(max).toBeLessThan(2 * INTERVAL_MS + 3_000);
    neverDecreased();
  });

  it('counts a replica that was cut off and taken for gone, whose slot another claimed, once: as a new incarnation', async () => {
    const { follower } = await roles();
    await post(follower, 12);
    await statusShowsAll();
    await sleep(2 * INTERVAL_MS);
    const before = await slotIncarnations();
    expect(before.size).toBe(2);
    // Frozen, it renews nothing: the leader folds its slot once it expires.
    const pid = await pidOf(follower);
    process.kill(pid, 'SIGSTOP');
    try {
      await eventually(
        'the frozen incarnation to be folded',
        async () => (await foldedIncarnations()).length > 0,
        EXPIRY_MS + 20_000,
      );
      // A new replica claims the folded slot rather than creating one.
      third = await startReplica('C');
      const claimed = await eventually('the new replica to claim the folded slot', async () => {
        const now = await slotIncarnations();
        const fresh = [...now.values()].filter((inc) => ![...before.values()].includes(inc));
        return fresh.length === 1 ? now : undefined;
      });
      expect(claimed.size).toBe(2);
      await post(third, 4);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // Back, it finds its slot taken and goes on as a new incarnation in a slot of its own,
    // counting only what came after its last report.
    await eventually(
      'the thawed replica to report in a new slot',
      async () => (await slotIncarnations()).size === 3,
    );
    expect(follower.process.log()).toContain('continuing as a new incarnation');
    await post(follower, 9);
    await statusShowsAll();
    await sleep(3 * INTERVAL_MS);
    expect((await getStatus()).received).toBe(sent);
    // Stopped gracefully, the third replica's final report is folded at once: nothing changes.
    expect(await third.process.stop('SIGTERM')).toBe(0);
    third = undefined;
    await sleep(3 * INTERVAL_MS);
    expect((await getStatus()).received).toBe(sent);
    neverDecreased();
  });

  it('neither lowers nor double-counts when the follower is killed with SIGKILL and restarted', async () => {
    const { follower } = await roles();
    await post(follower, 40);
    await statusShowsAll();
    // Its report is written within an interval of the change: wait for two, then kill.
    await sleep(2 * INTERVAL_MS);
    const slots = await slotIncarnations();
    const live = await liveIncarnations();
    expect(live).toHaveLength(2);
    expect(await follower.process.stop('SIGKILL')).toBeNull();
    await follower.process.restart();
    // The dead incarnation keeps its slot (and its counts in status) until it expires; the new
    // one claims the slot the stopped third replica left, rather than creating one.
    await eventually('the restarted replica to report', async () => {
      const now = [...(await slotIncarnations()).values()];
      return now.some((inc) => ![...slots.values()].includes(inc));
    });
    expect((await slotIncarnations()).size).toBe(slots.size);
    await post(follower, 30);
    await statusShowsAll();
    // Folded once its slot expired (the leader's stays live): exactly the events sent, none twice.
    await eventually(
      'the killed incarnation to be folded',
      async () => (await foldedIncarnations()).some((inc) => live.includes(inc)),
      EXPIRY_MS + 20_000,
    );
    await sleep(3 * INTERVAL_MS);
    expect((await getStatus()).received).toBe(sent);
    neverDecreased();
  });

  it('neither lowers nor double-counts when the leader is killed with SIGKILL, and the restarted replica reuses a folded slot', async () => {
    const { leader, follower } = await roles();
    await post(leader, 25);
    await post(follower, 15);
    await statusShowsAll();
    await sleep(2 * INTERVAL_MS);
    const slots = await slotIncarnations();
    const live = await liveIncarnations();
    expect(await leader.process.stop('SIGKILL')).toBeNull();
    // The other replica takes the Lease once it expires (15 s), then folds the dead leader's
    // slot once that expires too; status holds meanwhile.
    await eventually('the other replica to lead', () => leads(follower), 40_000);
    await post(follower, 10);
    await statusShowsAll(40_000);
    await eventually(
      'the dead leader’s incarnation to be folded',
      async () => (await foldedIncarnations()).some((inc) => live.includes(inc)),
      EXPIRY_MS + 30_000,
    );
    await leader.process.restart();
    await post(leader, 20);
    await statusShowsAll();
    expect((await slotIncarnations()).size).toBe(slots.size);
    await sleep(3 * INTERVAL_MS);
    expect((await getStatus()).received).toBe(sent);
    await eventually('every event written', async () => (await getStatus()).written === sent);
    neverDecreased();
  });

  it('shows a destination failing only on the replica that is not the leader: DestinationReady=False, a Warning Event, then Ready again', async () => {
    const { leader, follower } = await roles();
    // The leader has delivered before: its own view of the destination is fine throughout.
    await post(leader, 3);
    await statusShowsAll();
    await setInfluxToken(randomBytes(24).toString('base64url'));
    // Give both replicas the new (wrong) token before any write needs it.
    await sleep(2 * INTERVAL_MS);
    await post(follower, 7);
    const failing = await eventually(
      'DestinationReady=False',
      async () => {
        const s = await getStatus();
        return conditionOf(s, 'DestinationReady')?.status === 'False' ? s : undefined;
      },
      30_000,
    );
    const destination = conditionOf(failing, 'DestinationReady');
    expect(destination?.message).toMatch(/^influxdb: .* \(on 1 of 2 replicas: .+\)$/);
    expect(conditionOf(failing, 'Ready')?.status).toBe('False');
    expect(failing.received).toBe(sent);
    const warnings = await eventually('a Warning Event naming the destination', async () => {
      const out = await must([
        'get',
        'events',
        '-n',
        TENANT_NS,
        '--field-selector',
        `involvedObject.name=${TRAIL},type=Warning`,
        '-o',
        'json',
      ]);
      const items = (JSON.parse(out) as { items: { reason: string; message: string }[] }).items;
      const found = items.filter((e) => e.message.startsWith('DestinationReady: influxdb:'));
      return found.length > 0 ? found : undefined;
    });
    expect(warnings[0]?.reason).toBe(destination?.reason);

    await setInfluxToken(influxToken);
    await eventually(
      'Ready again, every event written',
      async () => {
        const s = await getStatus();
        return conditionOf(s, 'Ready')?.status === 'True' && s.written === sent;
      },
      30_000,
    );
    neverDecreased();
  });

  it('writes each replica’s report a bounded number of times a minute, and uses exactly the documented RBAC', async () => {
    const log = join(dir, 'apiserver-audit.log');
    const operatorUser = running('the control plane', cp).users.operator.name;
    // Idle for a while: only heartbeats.
    const idleFrom = Date.now();
    await sleep(20_000);
    const idleTo = Date.now();
    // Busy: events to both replicas every 200 ms.
    const busyFrom = Date.now();
    for (let i = 0; i < 75; i++) {
      await post(replicas[i % 2] as Replica, 2);
      await sleep(200);
    }
    const busyTo = Date.now();
    await statusShowsAll();

    type Logged = {
      user: { username: string };
      verb: string;
      stage: string;
      objectRef?: { resource?: string; name?: string; subresource?: string };
      stageTimestamp: string;
    };
    const lines = (await readFile(log, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Logged)
      .filter((e) => e.user.username === operatorUser && e.stage === 'ResponseComplete');
    // Writes per slot in a window: the count, and the same per minute for the log line.
    const writes = (from: number, to: number, match: (e: Logged) => boolean) => {
      const bySlot = new Map<string, number>();
      for (const e of lines) {
        const at = Date.parse(e.stageTimestamp);
        if (at < from || at > to || !match(e)) continue;
        const name = e.objectRef?.name ?? '';
        bySlot.set(name, (bySlot.get(name) ?? 0) + 1);
      }
      const minutes = (to - from) / 60_000;
      return [...bySlot].map(([name, count]) => ({
        count,
        shown: `${name} ${(count / minutes).toFixed(1)}/min`,
      }));
    };
    const reportWrites = (e: Logged) =>
      e.objectRef?.resource === 'configmaps' &&
      e.verb === 'update' &&
      e.objectRef.name?.includes('-replica-') === true;
    const statusWrites = (e: Logged) => e.objectRef?.subresource === 'status';
    const idle = writes(idleFrom, idleTo, reportWrites);
    const busy = writes(busyFrom, busyTo, reportWrites);
    const status = writes(busyFrom, busyTo, statusWrites);
    const shown = (list: typeof idle) => list.map((w) => w.shown).join(', ');
    console.log(
      `apiserver writes at a ${INTERVAL_MS} ms status interval (the default 5 s makes them 5 times fewer): report writes idle [${shown(idle)}], busy [${shown(busy)}]; status patches busy [${shown(status)}]`,
    );
    // Idle: one heartbeat per 4 intervals; busy: at most one write per interval. A window of n
    // intervals can hold a write at each of its ends: n + 1 at most, counted in whole writes.
    const intervals = (from: number, to: number, each: number) =>
      (to - from) / (each * INTERVAL_MS);
    for (const { count } of idle) {
      expect(count).toBeLessThanOrEqual(Math.floor(intervals(idleFrom, idleTo, 4)) + 1);
      // The heartbeat: a replica idle for longer than the expiry is still alive.
      expect(count).toBeGreaterThanOrEqual(Math.floor(intervals(idleFrom, idleTo, 6)));
    }
    for (const { count } of busy) {
      expect(count).toBeLessThanOrEqual(Math.floor(intervals(busyFrom, busyTo, 1)) + 1);
    }
    expect([idle.length, busy.length]).toEqual([2, 2]);

    const granted = grantedPermissions(OPERATOR_RBAC, (g) => g !== 'auditregistration.k8s.io');
    const { used, refused } = await requestsBy(log, operatorUser);
    expect(granted.filter((p) => p.startsWith(' configmaps') && !used.has(p))).toEqual([]);
    expect(refused).toEqual([]);
  });
});
