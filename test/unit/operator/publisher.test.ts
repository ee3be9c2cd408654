// Status and Events as the leader writes them, on the in-memory fake of the Kubernetes API and a
// manual clock: a write only when the status changed and at most once per interval, only while
// leading; status that says which generation keeps running after an invalid change; Warning and
// Normal Events on condition transitions, not repeated by a new leader. The controller, reporter
// and tally are the real ones. Starts no process and opens no socket.
import { afterEach, describe, expect, it } from 'vitest';
import type { Condition, ConditionType, ResourceStatus } from '../../../src/operator/status.ts';
import { FakeKubeApi, notFound, serverError } from '../../support/fake-kube-api.ts';
import { flush, ManualClock } from '../../support/manual-clock.ts';
import {
  auditSink,
  INTERVAL_MS,
  LEVELS,
  pipeline,
  type Replica,
  secret,
  startReplica,
} from './fixtures.ts';

const ORDERS = 'AuditPipeline/shop/orders';

const replicas: Replica[] = [];
afterEach(async () => {
  for (const r of replicas.splice(0)) await r.stop();
});

async function replica(
  api: FakeKubeApi,
  clock: ManualClock,
  options: Parameters<typeof startReplica>[2] = {},
): Promise<Replica> {
  const r = await startReplica(api, clock, options);
  replicas.push(r);
  return r;
}

function statusOf(api: FakeKubeApi, name = 'orders'): ResourceStatus | undefined {
  return api.get('AuditPipeline', 'shop', name)?.status as ResourceStatus | undefined;
}

function condition(status: ResourceStatus | undefined, type: ConditionType): Condition | undefined {
  return status?.conditions.find((c) => c.type === type);
}

/** The Events created, as `type reason: message`. */
function eventsOf(api: FakeKubeApi): string[] {
  return api.events.map((e) => `${e.type} ${e.reason}: ${e.message}`);
}

async function applied(r: Replica): Promise<void> {
  await flush();
  await r.controller.settled();
}

describe('when status is written', () => {
  it('writes only when the status changed', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    api.put('AuditPipeline', pipeline('orders'));
    const r = await replica(api, clock);
    await r.publisher.publish();
    await r.publisher.publish();
    await clock.advance(1_000);
    await r.publisher.publish();
    expect(api.count('patchStatus')).toBe(1);
    r.registry.set(ORDERS, { received: 3, written: 3 });
    await r.publisher.publish();
    await r.publisher.publish();
    expect(api.count('patchStatus')).toBe(2);
    expect(statusOf(api)).toMatchObject({ received: 3, written: 3, observedGeneration: 1 });
  });

  it('writes at most once per interval, however often the counters change', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    api.put('AuditPipeline', pipeline('orders'));
    const r = await replica(api, clock);
    r.publisher.start();
    const writes: number[] = [];
    for (let second = 1; second <= 3 * (INTERVAL_MS / 1000); second++) {
      r.registry.set(ORDERS, { received: second });
      await clock.advance(1_000);
      writes.push(api.count('patchStatus'));
    }
    // One write at the end of each interval, each with the counters as they were then.
    expect(writes).toEqual([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3]);
    expect(statusOf(api)?.received).toBe(15);
  });

  it('writes nothing while following, and writes at the first pass after it leads', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    api.put('AuditPipeline', pipeline('orders', { invalid: true }));
    const r = await replica(api, clock, { leading: false });
    r.publisher.start();
    await clock.advance(3 * INTERVAL_MS);
    expect({ patches: api.count('patchStatus'), events: api.events.length }).toEqual({
      patches: 0,
      events: 0,
    });
    r.leading = true;
    await clock.advance(INTERVAL_MS);
    expect(api.count('patchStatus')).toBe(1);
  });

  it('tries again at the next pass when a write fails, and logs it with the key', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    api.put('AuditPipeline', pipeline('orders'));
    const r = await replica(api, clock);
    api.failNext('patchStatus', serverError());
    await r.publisher.publish();
    expect(statusOf(api)).toBeUndefined();
    expect(r.lines.find((l) => l.msg === 'status not written')).toMatchObject({
      level: LEVELS.warn,
      module: 'status',
      key: ORDERS,
      err: { message: 'Internal error occurred: etcdserver: request timed out' },
    });
    await r.publisher.publish();
    expect(statusOf(api)?.observedGeneration).toBe(1);
  });

  it('does not warn about a resource deleted before its status was written', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    api.put('AuditPipeline', pipeline('orders'));
    const r = await replica(api, clock);
    api.failNext('patchStatus', notFound('AuditPipeline shop/orders'));
    await r.publisher.publish();
    expect(r.lines.filter((l) => l.level >= LEVELS.warn)).toEqual([]);
  });

  it('keeps the conditions as they were in the last write after the listeners closed', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    api.put('AuditPipeline', pipeline('orders'));
    const r = await replica(api, clock);
    await r.publisher.publish();
    const before = statusOf(api)?.conditions;
    r.publisher.stop();
    // Shutting down: the sink's endpoint is gone, and a last count came in.
    r.plane.applied.push([]);
    r.registry.set(ORDERS, { received: 7 });
    await clock.advance(5_000);
    await r.publisher.flush();
    expect(statusOf(api)?.received).toBe(7);
    expect(statusOf(api)?.conditions).toEqual(before);
  });
});

describe('an invalid change', () => {
  it('says which generation keeps running, and what is wrong with the new one', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    api.put('AuditPipeline', pipeline('orders'));
    const r = await replica(api, clock);
    await r.publisher.publish();
    api.put('AuditPipeline', pipeline('orders', { invalid: true }));
    await applied(r);
    await r.publisher.publish();
    const status = statusOf(api);
    expect(status?.observedGeneration).toBe(2);
    expect(condition(status, 'PolicyValid')).toMatchObject({
      status: 'False',
      reason: 'InvalidSpec',
      observedGeneration: 2,
    });
    expect(condition(status, 'PolicyValid')?.message).toMatch(
      /spec\.influxdb\.url: .*; generation 1 keeps running$/,
    );
    expect(condition(status, 'Ready')).toMatchObject({ status: 'False', reason: 'InvalidSpec' });
    // The running sink is still served, and its endpoint shown.
    expect(condition(status, 'ReceiverReady')).toMatchObject({ status: 'True', reason: 'Serving' });
    expect(status?.endpoint).toBe(
      'https://kube-audit-operator.kube-audit.svc:8443/audit/v1/pipelines/shop/orders',
    );
  });

  it('says a resource that was never valid runs nothing', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    api.put('AuditPipeline', pipeline('orders', { invalid: true }));
    const r = await replica(api, clock);
    await r.publisher.publish();
    const status = statusOf(api);
    expect(condition(status, 'PolicyValid')?.message).not.toContain('keeps running');
    expect(condition(status, 'ReceiverReady')).toMatchObject({
      status: 'False',
      reason: 'InvalidSpec',
    });
    expect(status?.endpoint).toBeUndefined();
  });
});

describe('Events', () => {
  it.each<{
    name: string;
    /** Sets the scene before the first write. */
    given: (api: FakeKubeApi, r: Replica) => void;
    /** What changes before the second write. */
    then: (api: FakeKubeApi, r: Replica) => void;
    first: string[];
    second: string[];
  }>([
    {
      name: 'none for a resource that is ready from the start',
      given: () => undefined,
      then: (_, r) => r.registry.set(ORDERS, { received: 1, written: 1 }),
      first: [],
      second: [],
    },
    {
      name: 'a Warning per condition that turns False, a Normal one when Ready recovers',
      given: (_, r) =>
        r.registry.set(ORDERS, {
          influxdb: { ready: false, reason: 'UNAUTHORIZED', message: 'HTTP 401: unauthorized' },
        }),
      then: (_, r) =>
        r.registry.set(ORDERS, {
          written: 5,
          influxdb: { ready: true, reason: 'Delivered', message: '' },
        }),
      first: [
        // Summed across replicas (ADR 0013): the message names where it fails.
        'Warning UNAUTHORIZED: Ready: influxdb: HTTP 401: unauthorized (on 1 of 1 replica: kao-a)',
        'Warning UNAUTHORIZED: DestinationReady: influxdb: HTTP 401: unauthorized (on 1 of 1 replica: kao-a)',
      ],
      second: ['Normal Ready: receiving and delivering again'],
    },
    {
      name: 'a Warning for a missing Secret, a Normal one once it is created',
      given: (api) => {
        api.put('AuditPipeline', pipeline('orders', { tokenSecret: 'token' }));
      },
      then: (api) => {
        api.put('Secret', secret('shop', 'token', { token: 's3cr3t' }));
      },
      first: [
        'Warning SecretNotFound: Ready: not found: Secret shop/token labelled kube-audit.dev/usable-by-sinks=true',
        'Warning SecretNotFound: DestinationReady: not found: Secret shop/token labelled kube-audit.dev/usable-by-sinks=true',
      ],
      second: ['Normal Ready: receiving and delivering again'],
    },
    {
      name: 'a Warning for each condition an invalid change turns False',
      given: () => undefined,
      then: (api) => {
        api.put('AuditPipeline', pipeline('orders', { invalid: true }));
      },
      first: [],
      second: [
        expect.stringMatching(/^Warning InvalidSpec: Ready: spec\.influxdb\.url: /) as string,
        expect.stringMatching(/^Warning InvalidSpec: PolicyValid: spec\.influxdb\.url: /) as string,
      ],
    },
  ])('$name', async ({ given, then, first, second }) => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    api.put('AuditPipeline', pipeline('orders'));
    const r = await replica(api, clock);
    given(api, r);
    await applied(r);
    await r.publisher.publish();
    expect(eventsOf(api)).toEqual(first);
    then(api, r);
    await applied(r);
    await clock.advance(INTERVAL_MS);
    await r.publisher.publish();
    expect(eventsOf(api).slice(first.length)).toEqual(second);
    // Nothing changes: nothing more is said.
    await clock.advance(INTERVAL_MS);
    await r.publisher.publish();
    expect(eventsOf(api)).toHaveLength(first.length + second.length);
  });

  it('records Events about an AuditSink in default, where kubectl describe looks', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    api.put('AuditSink', auditSink('cluster-trail', { tokenSecret: 'trail-token' }));
    const r = await replica(api, clock);
    await r.publisher.publish();
    expect(api.events.map((e) => [e.namespace, e.involved.kind, e.involved.namespace])).toEqual([
      ['default', 'AuditSink', ''],
      ['default', 'AuditSink', ''],
    ]);
    expect(api.events[0]?.component).toBe('kube-audit-operator');
  });

  it('does not repeat, as a new leader, what the previous leader said', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    api.put('AuditPipeline', pipeline('orders', { tokenSecret: 'token' }));
    const a = await replica(api, clock, { name: 'kao-a' });
    await a.publisher.publish();
    const said = eventsOf(api);
    const transitions = condition(statusOf(api), 'Ready')?.lastTransitionTime;
    a.leading = false;
    const b = await replica(api, clock, { name: 'kao-b' });
    await clock.advance(INTERVAL_MS);
    await b.publisher.publish();
    expect(eventsOf(api)).toEqual(said);
    expect(condition(statusOf(api), 'Ready')?.lastTransitionTime).toBe(transitions);
  });

  it('logs an Event it could not record, and still writes the status', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    api.put('AuditPipeline', pipeline('orders', { tokenSecret: 'token' }));
    const r = await replica(api, clock);
    api.forbid('createEvent');
    await r.publisher.publish();
    expect(condition(statusOf(api), 'Ready')?.status).toBe('False');
    expect(r.lines.filter((l) => l.msg === 'Event not recorded')).toMatchObject([
      {
        module: 'status',
        key: ORDERS,
        reason: 'SecretNotFound',
        err: { message: 'createEvent is forbidden' },
      },
      { module: 'status', key: ORDERS, reason: 'SecretNotFound' },
    ]);
  });
});
