// Cluster-wide status through the API (ADR 0013), on the in-memory fake of the Kubernetes API and
// a manual clock: each replica claims a ConfigMap slot and writes its report when it changed (at
// most once per interval, at least once per heartbeat); the leader sums the reports into status,
// folds a replica that is gone into the totals exactly once (whichever leader does it), reuses
// folded slots, and a replica whose slot was taken while it was cut off counts on as a new
// incarnation without counting anything twice. reports.test.ts has the fold's arithmetic; this
// file drives the reporter and tally that read and write it. Starts no process, opens no socket.
import { afterEach, describe, expect, it } from 'vitest';
import type { OwnerReference } from '../../../src/operator/kube.ts';
import { decodeReport, decodeTotals, type StatusTotals } from '../../../src/operator/reports.ts';
import type { ResourceStatus } from '../../../src/operator/status.ts';
import { conflict, FakeKubeApi, type Stored } from '../../support/fake-kube-api.ts';
import { ManualClock } from '../../support/manual-clock.ts';
import {
  INTERVAL_MS,
  LEASE,
  LEVELS,
  OPERATOR_NAMESPACE,
  pipeline,
  type Replica,
  startReplica,
} from './fixtures.ts';

const ORDERS = 'AuditPipeline/shop/orders';
const HEARTBEAT_MS = 4 * INTERVAL_MS;
const EXPIRY_MS = 3 * HEARTBEAT_MS;

const running: Replica[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) await r.stop();
});

/** A cluster: the fake API with one AuditPipeline, and replicas joining it. */
function cluster() {
  const api = new FakeKubeApi();
  const clock = new ManualClock();
  api.put('AuditPipeline', pipeline('orders'));
  const join = async (name: string, leading = false, owner?: () => OwnerReference | undefined) => {
    const r = await startReplica(api, clock, {
      name,
      leading,
      ...(owner === undefined ? {} : { owner }),
    });
    running.push(r);
    return r;
  };
  return { api, clock, join };
}

function configMap(api: FakeKubeApi, name: string): Stored | undefined {
  return api.get('ConfigMap', OPERATOR_NAMESPACE, name);
}

function reportIn(api: FakeKubeApi, slot: string) {
  const data = configMap(api, slot)?.data?.['report.json'];
  return data === undefined ? undefined : decodeReport(data);
}

function totalsOf(api: FakeKubeApi): StatusTotals | undefined {
  const data = configMap(api, `${LEASE}-totals`)?.data?.['totals.json'];
  return data === undefined ? undefined : decodeTotals(data);
}

function received(api: FakeKubeApi): number | undefined {
  return (api.get('AuditPipeline', 'shop', 'orders')?.status as ResourceStatus | undefined)
    ?.received;
}

/** The Lease as the chart creates it, and the owner reference the elector makes of it. */
function chartLease(api: FakeKubeApi): OwnerReference {
  const lease = api.put('Lease', {
    metadata: { name: LEASE, namespace: OPERATOR_NAMESPACE },
    spec: {},
  });
  const uid = lease.metadata.uid ?? '';
  return { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', name: LEASE, uid };
}

/** Writes of the totals ConfigMap so far. */
function totalsWrites(api: FakeKubeApi): number {
  return api.calls.filter(
    (c) =>
      (c.op === 'createConfigMap' || c.op === 'replaceConfigMap') &&
      (c.args[0] as Stored).metadata.name === `${LEASE}-totals`,
  ).length;
}

describe('replica reports', () => {
  it('gives each replica a slot of its own, labelled for this installation', async () => {
    const { api, join } = cluster();
    const a = await join('kao-a');
    const b = await join('kao-b');
    a.registry.set(ORDERS, { received: 3 });
    b.registry.set(ORDERS, { received: 5 });
    await a.reporter.publish();
    await b.reporter.publish();
    expect([a.reporter.slot, b.reporter.slot]).toEqual([
      `${LEASE}-replica-0`,
      `${LEASE}-replica-1`,
    ]);
    expect(configMap(api, `${LEASE}-replica-0`)?.metadata.labels).toEqual({
      'kube-audit.dev/status-of': LEASE,
      'kube-audit.dev/status-part': 'replica',
    });
    const report = reportIn(api, `${LEASE}-replica-1`);
    expect(report).toMatchObject({
      replica: 'kao-b',
      final: false,
      incarnation: b.reporter.incarnation,
    });
    expect(report?.sinks[ORDERS]?.counts.received).toBe(5);
  });

  it('names the Lease as owner of every slot and of the totals, so that deleting the Lease deletes them all', async () => {
    const { api, join } = cluster();
    const lease = chartLease(api);
    // A's slot is claimed before its elector has read the Lease; B's after.
    const elector: { owner?: OwnerReference } = {};
    const a = await join('kao-a', true, () => elector.owner);
    await a.reporter.publish();
    expect(configMap(api, `${LEASE}-replica-0`)?.metadata.ownerReferences).toBeUndefined();
    elector.owner = lease;
    const b = await join('kao-b', false, () => elector.owner);
    await b.reporter.publish();
    await b.reporter.publishFinal();
    await a.publisher.publish();
    // A's next write (a heartbeat at the latest) names the owner too.
    a.registry.set(ORDERS, { received: 1 });
    await a.reporter.publish();
    for (const name of [`${LEASE}-replica-0`, `${LEASE}-replica-1`, `${LEASE}-totals`]) {
      expect(configMap(api, name)?.metadata.ownerReferences, name).toEqual([lease]);
    }
    // `helm uninstall` deletes the Lease; the garbage collector then deletes what it owns.
    api.remove('Lease', OPERATOR_NAMESPACE, LEASE);
    expect(api.collectGarbage()).toEqual([
      `ConfigMap/${OPERATOR_NAMESPACE}/${LEASE}-replica-0`,
      `ConfigMap/${OPERATOR_NAMESPACE}/${LEASE}-replica-1`,
      `ConfigMap/${OPERATOR_NAMESPACE}/${LEASE}-totals`,
    ]);
    expect(api.list('ConfigMap')).toEqual([]);
  });

  it('writes when its counts changed, at most once per interval, and at least once per heartbeat', async () => {
    const { api, clock, join } = cluster();
    const a = await join('kao-a');
    a.reporter.start();
    const writes = () => api.count('createConfigMap') + api.count('replaceConfigMap');
    const seen: number[] = [];
    // Busy for 20 s: a count every second.
    for (let s = 1; s <= 20; s++) {
      a.registry.set(ORDERS, { received: s });
      await clock.advance(1_000);
      if (s % 5 === 0) seen.push(writes());
    }
    // Idle for 60 s: only the heartbeats.
    for (let s = 5; s <= 60; s += 5) {
      await clock.advance(5_000);
      seen.push(writes());
    }
    expect(seen).toEqual([2, 3, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7, 8]);
    expect(reportIn(api, `${LEASE}-replica-0`)?.sinks[ORDERS]?.counts.received).toBe(20);
  });
});

describe('the leader’s sums', () => {
  it("sums every replica's counts into status, its own taken live", async () => {
    const { api, join } = cluster();
    const a = await join('kao-a', true);
    const b = await join('kao-b');
    a.registry.set(ORDERS, { received: 3 });
    b.registry.set(ORDERS, { received: 5 });
    await a.reporter.publish();
    await b.reporter.publish();
    // Counted after A's last report: the leader reads its own counts, not its slot.
    a.registry.set(ORDERS, { received: 4 });
    await a.publisher.publish();
    expect(received(api)).toBe(9);
  });

  it('folds a replica that stopped gracefully into the totals once, whichever leader sees it', async () => {
    const { api, clock, join } = cluster();
    const a = await join('kao-a', true);
    const b = await join('kao-b');
    a.registry.set(ORDERS, { received: 3 });
    b.registry.set(ORDERS, { received: 5 });
    await a.reporter.publish();
    await b.reporter.publish();
    await b.reporter.publishFinal();
    await a.publisher.publish();
    expect(received(api)).toBe(8);
    const totals = totalsOf(api);
    expect(totals?.resources[ORDERS]?.base.received).toBe(5);
    expect(totals?.incarnations[b.reporter.incarnation]?.slot).toBe(`${LEASE}-replica-1`);
    expect(totalsWrites(api)).toBe(1);
    // The same leader again, then a new one: the fold is not repeated, the sum does not change.
    await clock.advance(INTERVAL_MS);
    await a.publisher.publish();
    a.leading = false;
    const c = await join('kao-c', true);
    await clock.advance(INTERVAL_MS);
    await c.publisher.publish();
    expect(totalsWrites(api)).toBe(1);
    expect(received(api)).toBe(8);
  });

  it('takes a replica for gone after three heartbeats without a write, by its own clock', async () => {
    const { api, clock, join } = cluster();
    const a = await join('kao-a', true);
    const b = await join('kao-b');
    b.registry.set(ORDERS, { received: 5 });
    await b.reporter.publish();
    await a.publisher.publish();
    // B goes silent (SIGKILL): its slot stays as it was.
    await clock.advance(EXPIRY_MS);
    await a.publisher.publish();
    expect(totalsOf(api)).toBeUndefined();
    await clock.advance(1);
    await a.publisher.publish();
    expect(totalsOf(api)?.incarnations[b.reporter.incarnation]).toBeDefined();
    expect(received(api)).toBe(5);
  });

  it('gives a new replica a slot that was folded instead of a new one', async () => {
    const { api, join } = cluster();
    const a = await join('kao-a', true);
    const b = await join('kao-b');
    await a.reporter.publish();
    await b.reporter.publish();
    await b.reporter.publishFinal();
    await a.publisher.publish();
    const c = await join('kao-c');
    await c.reporter.publish();
    expect(c.reporter.slot).toBe(`${LEASE}-replica-1`);
    expect(api.list('ConfigMap').map((o) => o.metadata.name)).toEqual([
      `${LEASE}-replica-0`,
      `${LEASE}-replica-1`,
      `${LEASE}-totals`,
    ]);
  });

  it('counts nothing twice when a replica cut off long enough to be folded comes back', async () => {
    const { api, clock, join } = cluster();
    const a = await join('kao-a', true);
    const b = await join('kao-b');
    await a.reporter.publish();
    b.registry.set(ORDERS, { received: 5 });
    await b.reporter.publish();
    await a.publisher.publish();
    const first = b.reporter.incarnation;
    // B is cut off from the apiserver; meanwhile it counts 2 more, its slot expires, is folded,
    // and a new replica claims it.
    b.registry.set(ORDERS, { received: 7 });
    await clock.advance(EXPIRY_MS + 1);
    await a.publisher.publish();
    const c = await join('kao-c');
    c.registry.set(ORDERS, { received: 1 });
    await c.reporter.publish();
    expect(c.reporter.slot).toBe(`${LEASE}-replica-1`);
    // B is back: its write meets C's version (409), so it counts on as a new incarnation, in a
    // new slot, from what its last landed write said.
    await b.reporter.publish();
    expect(b.reporter.incarnation).not.toBe(first);
    await b.reporter.publish();
    expect(b.reporter.slot).toBe(`${LEASE}-replica-2`);
    expect(reportIn(api, `${LEASE}-replica-2`)?.sinks[ORDERS]?.counts.received).toBe(2);
    expect(b.lines.find((l) => l.msg.startsWith('replica report slot lost'))).toMatchObject({
      level: LEVELS.warn,
      module: 'reporter',
      incarnation: first,
    });
    await clock.advance(INTERVAL_MS);
    await a.publisher.publish();
    // 5 folded from B's first incarnation, 2 from its second, 1 from C.
    expect(received(api)).toBe(8);
  });

  it('redoes a totals write that lost a race at the next pass, without a warning', async () => {
    const { api, clock, join } = cluster();
    const a = await join('kao-a', true);
    const b = await join('kao-b');
    b.registry.set(ORDERS, { received: 5 });
    await b.reporter.publish();
    await b.reporter.publishFinal();
    api.failNext('createConfigMap', conflict(`configmaps "${LEASE}-totals"`));
    await a.publisher.publish();
    expect(totalsOf(api)).toBeUndefined();
    expect(received(api)).toBe(5);
    await clock.advance(INTERVAL_MS);
    await a.publisher.publish();
    expect(totalsOf(api)?.resources[ORDERS]?.base.received).toBe(5);
    expect(received(api)).toBe(5);
    expect(a.lines.filter((l) => l.level >= LEVELS.warn)).toEqual([]);
  });

  it('shows its own counts and holds the rest when it may not list the reports', async () => {
    const { api, clock, join } = cluster();
    const a = await join('kao-a', true);
    const b = await join('kao-b');
    a.registry.set(ORDERS, { received: 3 });
    b.registry.set(ORDERS, { received: 5 });
    await b.reporter.publish();
    await a.publisher.publish();
    expect(received(api)).toBe(8);
    api.forbid('listConfigMaps');
    a.registry.set(ORDERS, { received: 4, written: 4 });
    await clock.advance(INTERVAL_MS);
    await a.publisher.publish();
    // Never backwards: 3 + 1 of its own would be 4; the status holds 8 until the sums return.
    expect(received(api)).toBe(8);
    expect(a.lines.find((l) => l.msg.startsWith('replica reports not listed'))).toMatchObject({
      level: LEVELS.warn,
      module: 'tally',
      err: { message: 'listConfigMaps is forbidden' },
    });
    api.allow('listConfigMaps');
    await clock.advance(INTERVAL_MS);
    await a.publisher.publish();
    expect(received(api)).toBe(9);
  });
});
