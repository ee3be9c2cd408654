// The reconciler's decisions, on the in-memory fake of the Kubernetes API and a manual clock: an
// invalid generation keeps the last valid sink of the same object, a deleted and re-created
// resource never inherits the old one's, a Secret is watched while some sink references it and
// its changes re-apply its users at once, status-only updates reconcile nothing, and every
// reconcile is counted, timed and logged with its key. Starts no process and opens no socket.
import { Registry } from 'prom-client';
import { beforeEach, describe, expect, it } from 'vitest';
import { SinkController } from '../../../src/operator/controller.ts';
import { ReconcileMetrics } from '../../../src/telemetry/metrics.ts';
import { FakeKubeApi } from '../../support/fake-kube-api.ts';
import { flush, ManualClock } from '../../support/manual-clock.ts';
import { metricSum } from '../../support/metrics.ts';
import {
  auditSink,
  capturedLogger,
  ENDPOINT_BASE,
  LEVELS,
  type LogLine,
  OPERATOR_NAMESPACE,
  pipeline,
  type PipelineShape,
  RecordingPlane,
  secret,
  SINK_SETTINGS,
} from './fixtures.ts';

const ORDERS = 'AuditPipeline/shop/orders';

interface Harness {
  api: FakeKubeApi;
  clock: ManualClock;
  plane: RecordingPlane;
  controller: SinkController;
  metrics: Registry;
  lines: LogLine[];
}

function harness(api = new FakeKubeApi()): Harness {
  const clock = new ManualClock();
  const plane = new RecordingPlane();
  const metrics = new Registry();
  const { log, lines } = capturedLogger();
  const controller = new SinkController({
    api,
    plane,
    sinkSettings: SINK_SETTINGS,
    namespace: OPERATOR_NAMESPACE,
    endpointBase: ENDPOINT_BASE,
    log,
    metrics: new ReconcileMetrics(metrics, ['AuditSink', 'AuditPipeline']),
    clock,
  });
  return { api, clock, plane, controller, metrics, lines };
}

/** Lets the watches deliver and the queue run dry. */
async function settle(h: Harness): Promise<void> {
  await flush();
  await h.controller.settled();
  await flush();
}

function stateOf(h: Harness, key: string) {
  return h.controller.states().find((s) => {
    const m = s.object.metadata;
    return (
      key ===
      (s.kind === 'AuditSink' ? `AuditSink/${m?.name}` : `${s.kind}/${m?.namespace}/${m?.name}`)
    );
  });
}

async function reconciles(h: Harness, kind: string, result: string): Promise<number> {
  return metricSum(await h.metrics.metrics(), 'kube_audit_reconcile_total', { kind, result });
}

describe('an invalid generation and a re-created resource', () => {
  type Step =
    | { readonly apply: PipelineShape }
    | { readonly recreate: PipelineShape }
    | { readonly delete: true };
  interface Case {
    readonly name: string;
    readonly steps: readonly Step[];
    /** The generation whose sink runs, or none. */
    readonly runs: number | undefined;
    /** Whether the current generation is invalid. */
    readonly invalid: boolean;
    /** The bucket of the running sink: which object's spec it was built from. */
    readonly bucket?: string;
  }
  const valid: PipelineShape = {};
  const invalid: PipelineShape = { invalid: true };

  it.each<Case>([
    { name: 'runs a valid resource', steps: [{ apply: valid }], runs: 1, invalid: false },
    {
      name: 'runs nothing for a resource that was never valid',
      steps: [{ apply: invalid }],
      runs: undefined,
      invalid: true,
    },
    {
      name: 'keeps the last valid generation running when a new one is invalid',
      steps: [{ apply: valid }, { apply: invalid }],
      runs: 1,
      invalid: true,
    },
    {
      name: 'keeps the last valid generation through several invalid ones',
      steps: [
        { apply: valid },
        { apply: { bucket: 'b2' } },
        { apply: invalid },
        { apply: { invalid: true, bucket: 'b3' } },
      ],
      runs: 2,
      invalid: true,
      bucket: 'b2',
    },
    {
      name: 'runs a valid generation that follows an invalid one',
      steps: [{ apply: valid }, { apply: invalid }, { apply: { bucket: 'b2' } }],
      runs: 3,
      invalid: false,
      bucket: 'b2',
    },
    {
      name: 'does not hand a deleted resource’s sink to an invalid one re-created under its name',
      steps: [{ apply: valid }, { delete: true }, { apply: invalid }],
      runs: undefined,
      invalid: true,
    },
    {
      name: 'does not hand the old sink to a resource deleted and re-created invalid in a watch gap',
      steps: [{ apply: valid }, { recreate: invalid }],
      runs: undefined,
      invalid: true,
    },
    {
      name: 'runs the sink of a resource deleted and re-created valid in a watch gap',
      steps: [{ apply: valid }, { recreate: { bucket: 'b2' } }],
      runs: 1,
      invalid: false,
      bucket: 'b2',
    },
    {
      name: 'runs nothing once the resource is deleted',
      steps: [{ apply: valid }, { apply: invalid }, { delete: true }],
      runs: undefined,
      invalid: false,
    },
  ])('$name', async ({ steps, runs, invalid: isInvalid, bucket = 'audit' }) => {
    const h = harness();
    await h.controller.start();
    let uid: string | undefined;
    for (const step of steps) {
      if ('apply' in step) {
        uid = h.api.put('AuditPipeline', pipeline('orders', step.apply)).metadata.uid;
      } else if ('delete' in step) {
        h.api.remove('AuditPipeline', 'shop', 'orders');
        uid = undefined;
      } else {
        // The watch is down while the resource is deleted and re-created: the relist shows an
        // object of the same name and generation 1, with another uid.
        const relist = h.api.hold('sinkWatch');
        h.api.dropWatches('AuditPipeline');
        h.api.remove('AuditPipeline', 'shop', 'orders');
        uid = h.api.put('AuditPipeline', pipeline('orders', step.recreate)).metadata.uid;
        relist.release();
      }
      await settle(h);
    }
    const running = h.plane.running.get(ORDERS);
    expect(running?.generation).toBe(runs);
    if (running !== undefined) expect(JSON.stringify(running)).toContain(`"bucket":"${bucket}"`);
    const state = stateOf(h, ORDERS);
    if (uid === undefined) {
      expect(state).toBeUndefined();
      return;
    }
    expect(state?.object.metadata?.uid).toBe(uid);
    expect(state?.sink?.generation).toBe(runs);
    expect(state?.problems.length !== 0).toBe(isInvalid);
    if (isInvalid) expect(state?.problems.join()).toContain('spec.influxdb.url');
  });

  it('does not retry an invalid generation: it is terminal until the resource changes', async () => {
    const h = harness();
    await h.controller.start();
    h.api.put('AuditPipeline', pipeline('orders', { invalid: true }));
    await settle(h);
    await h.clock.advance(10 * 60_000);
    await settle(h);
    expect(await reconciles(h, 'AuditPipeline', 'terminal')).toBe(1);
    expect(h.clock.pending()).toEqual([]);
  });
});

describe('status-only updates', () => {
  it('reconcile nothing: a status write changes the resourceVersion, not the generation', async () => {
    const h = harness();
    h.api.put('AuditPipeline', pipeline('orders'));
    await h.controller.start();
    const applies = h.plane.applied.length;
    await h.api.patchStatus('AuditPipeline', 'shop', 'orders', { observedGeneration: 1 });
    await settle(h);
    expect(h.plane.applied.length).toBe(applies);
    expect(await reconciles(h, 'AuditPipeline', 'success')).toBe(1);
    // The state holds the object as it is now, status included, for the status writer.
    expect(stateOf(h, ORDERS)?.object.status).toEqual({ observedGeneration: 1 });
  });
});

describe('Secrets referenced by sinks', () => {
  it('watches a Secret from its first reference until no sink references it', async () => {
    const h = harness();
    await h.controller.start();
    const steps: [string, () => void, string[]][] = [
      [
        'orders references token',
        () => h.api.put('AuditPipeline', pipeline('orders', { tokenSecret: 'token' })),
        ['AuditPipeline', 'AuditSink', 'Secret shop/token'],
      ],
      [
        'refunds references token too',
        () => h.api.put('AuditPipeline', pipeline('refunds', { tokenSecret: 'token' })),
        ['AuditPipeline', 'AuditSink', 'Secret shop/token'],
      ],
      [
        'orders turns invalid: its running sink still uses token',
        () =>
          h.api.put('AuditPipeline', pipeline('orders', { tokenSecret: 'token', invalid: true })),
        ['AuditPipeline', 'AuditSink', 'Secret shop/token'],
      ],
      [
        'orders moves to another Secret',
        () => h.api.put('AuditPipeline', pipeline('orders', { tokenSecret: 'rotated' })),
        ['AuditPipeline', 'AuditSink', 'Secret shop/rotated', 'Secret shop/token'],
      ],
      [
        'refunds is deleted: nobody uses token',
        () => h.api.remove('AuditPipeline', 'shop', 'refunds'),
        ['AuditPipeline', 'AuditSink', 'Secret shop/rotated'],
      ],
      [
        'orders drops its token',
        () => h.api.put('AuditPipeline', pipeline('orders')),
        ['AuditPipeline', 'AuditSink'],
      ],
    ];
    for (const [step, act, watching] of steps) {
      act();
      await settle(h);
      expect({ step, watching: h.api.watching() }).toEqual({ step, watching });
    }
    // One list per watch started: token's was not started again for its second user.
    expect(h.api.calls.filter((c) => c.op === 'secretWatch').map((c) => c.args)).toEqual([
      ['shop', 'token'],
      ['shop', 'rotated'],
    ]);
  });

  it("reads an AuditSink's Secrets in the operator's namespace", async () => {
    const h = harness();
    await h.controller.start();
    h.api.put('AuditSink', auditSink('cluster-trail', { tokenSecret: 'trail-token' }));
    await settle(h);
    expect(h.api.watching()).toContain(`Secret ${OPERATOR_NAMESPACE}/trail-token`);
  });

  it('starts a sink with its token when the Secret exists, and reports one that does not', async () => {
    const h = harness();
    h.api.put('Secret', secret('shop', 'token', { token: 's3cr3t' }));
    h.api.put('Secret', secret('shop', 'unlabelled', { token: 'not-offered' }, false));
    h.api.put('AuditPipeline', pipeline('orders', { tokenSecret: 'token' }));
    h.api.put('AuditPipeline', pipeline('refunds', { tokenSecret: 'unlabelled' }));
    await h.controller.start();
    expect(h.controller.secrets().get('shop/token')).toEqual({ token: 's3cr3t' });
    // Not labelled: never read, and reported missing with the label that would offer it.
    expect(h.controller.secrets().has('shop/unlabelled')).toBe(false);
    const refunds = h.plane.running.get('AuditPipeline/shop/refunds');
    expect(refunds && h.controller.missingSecrets(refunds)).toEqual([
      'Secret shop/unlabelled labelled kube-audit.dev/usable-by-sinks=true',
    ]);
    const orders = h.plane.running.get(ORDERS);
    expect(orders && h.controller.missingSecrets(orders)).toEqual([]);
  });

  it.each<{
    name: string;
    change: (api: FakeKubeApi) => void;
    secrets: Record<string, string> | undefined;
  }>([
    {
      name: 'a rotated token',
      change: (api) => api.put('Secret', secret('shop', 'token', { token: 'rotated' })),
      secrets: { token: 'rotated' },
    },
    {
      name: 'a Secret created after its sink',
      change: (api) => {
        api.remove('Secret', 'shop', 'token');
        api.put('Secret', secret('shop', 'token', { token: 'new' }));
      },
      secrets: { token: 'new' },
    },
    {
      name: 'a Secret offered by labelling it',
      change: (api) => {
        api.put('Secret', secret('shop', 'token', { token: 'hidden' }, false));
        api.put('Secret', secret('shop', 'token', { token: 'offered' }));
      },
      secrets: { token: 'offered' },
    },
    {
      name: 'a deleted Secret',
      change: (api) => api.remove('Secret', 'shop', 'token'),
      secrets: undefined,
    },
    {
      name: 'a Secret withdrawn by removing its label',
      change: (api) => api.put('Secret', secret('shop', 'token', { token: 'withdrawn' }, false)),
      secrets: undefined,
    },
  ])(
    're-applies the sinks that use it and ends their back-off at once on $name',
    async ({ change, secrets }) => {
      const h = harness();
      h.api.put('Secret', secret('shop', 'token', { token: 'first' }));
      h.api.put('AuditPipeline', pipeline('orders', { tokenSecret: 'token' }));
      h.api.put('AuditPipeline', pipeline('refunds', { tokenSecret: 'token' }));
      h.api.put('AuditPipeline', pipeline('audit', { tokenSecret: 'other' }));
      await h.controller.start();
      const applies = h.plane.applied.length;
      change(h.api);
      await settle(h);
      expect(h.controller.secrets().get('shop/token')).toEqual(secrets);
      // Only the users of that Secret, each retried once per change it saw.
      expect(new Set(h.plane.retried)).toEqual(new Set([ORDERS, 'AuditPipeline/shop/refunds']));
      expect(h.plane.applied.length).toBeGreaterThan(applies);
    },
  );

  it('waits at most 5 s for a Secret it cannot list, then runs the sink with the Secret missing', async () => {
    const h = harness();
    h.api.forbid('secretWatch');
    h.api.put('AuditPipeline', pipeline('orders', { tokenSecret: 'token' }));
    const started = h.controller.start();
    await h.clock.advance(4_999);
    expect(h.plane.running.has(ORDERS)).toBe(false);
    await h.clock.advance(1);
    await started;
    const sink = h.plane.running.get(ORDERS);
    expect(sink && h.controller.missingSecrets(sink)).toEqual([
      'Secret shop/token labelled kube-audit.dev/usable-by-sinks=true',
    ]);
    // The reconcile took the 5 s wait, by the injected clock.
    const text = await h.metrics.metrics();
    expect(
      metricSum(text, 'kube_audit_reconcile_duration_seconds_sum', { kind: 'AuditPipeline' }),
    ).toBe(5);
    // Its watch keeps trying; once allowed, the Secret arrives and the sink is re-applied.
    h.api.allow('secretWatch');
    h.api.put('Secret', secret('shop', 'token', { token: 's3cr3t' }));
    await h.clock.advance(60_000);
    await settle(h);
    expect(h.controller.secrets().get('shop/token')).toEqual({ token: 's3cr3t' });
    expect(h.plane.retried).toContain(ORDERS);
  });
});

describe('failures', () => {
  it('retries a failed apply with backoff (500 ms doubling), then succeeds', async () => {
    const h = harness();
    await h.controller.start();
    h.plane.failNext(new Error('spool: EACCES'));
    h.plane.failNext(new Error('spool: EACCES'));
    h.api.put('AuditPipeline', pipeline('orders'));
    await settle(h);
    expect(h.clock.pending()).toEqual([500]);
    await h.clock.advance(500);
    expect(h.clock.pending()).toEqual([1_000]);
    await h.clock.advance(1_000);
    await settle(h);
    expect(h.plane.running.has(ORDERS)).toBe(true);
    expect(await reconciles(h, 'AuditPipeline', 'error')).toBe(2);
    expect(await reconciles(h, 'AuditPipeline', 'success')).toBe(1);
  });

  it('resumes a dropped watch and reconciles what changed meanwhile', async () => {
    const h = harness();
    h.api.put('AuditPipeline', pipeline('orders'));
    await h.controller.start();
    const relist = h.api.hold('sinkWatch');
    h.api.dropWatches('AuditPipeline');
    h.api.remove('AuditPipeline', 'shop', 'orders');
    h.api.put('AuditPipeline', pipeline('refunds'));
    relist.release();
    await settle(h);
    expect([...h.plane.running.keys()]).toEqual(['AuditPipeline/shop/refunds']);
  });
});

describe('reconcile metrics', () => {
  it('counts reconciles by kind and result, from zero', async () => {
    const h = harness();
    const before = await h.metrics.metrics();
    for (const kind of ['AuditSink', 'AuditPipeline']) {
      for (const result of ['success', 'error', 'terminal']) {
        expect(before).toContain(`kube_audit_reconcile_total{kind="${kind}",result="${result}"} 0`);
      }
      expect(before).toContain(`kube_audit_reconcile_duration_seconds_count{kind="${kind}"} 0`);
    }
    h.api.put('AuditSink', auditSink('cluster-trail'));
    h.api.put('AuditPipeline', pipeline('orders'));
    h.api.put('AuditPipeline', pipeline('broken', { invalid: true }));
    await h.controller.start();
    h.api.remove('AuditPipeline', 'shop', 'orders');
    await settle(h);
    const after = await h.metrics.metrics();
    expect({
      sinkSuccess: metricSum(after, 'kube_audit_reconcile_total', {
        kind: 'AuditSink',
        result: 'success',
      }),
      pipelineSuccess: metricSum(after, 'kube_audit_reconcile_total', {
        kind: 'AuditPipeline',
        result: 'success',
      }),
      pipelineTerminal: metricSum(after, 'kube_audit_reconcile_total', {
        kind: 'AuditPipeline',
        result: 'terminal',
      }),
      pipelineError: metricSum(after, 'kube_audit_reconcile_total', {
        kind: 'AuditPipeline',
        result: 'error',
      }),
      timedPipelines: metricSum(after, 'kube_audit_reconcile_duration_seconds_count', {
        kind: 'AuditPipeline',
      }),
    }).toEqual({
      sinkSuccess: 1,
      pipelineSuccess: 2,
      pipelineTerminal: 1,
      pipelineError: 0,
      timedPipelines: 3,
    });
  });
});

describe('logs', () => {
  let h: Harness;
  beforeEach(async () => {
    h = harness();
    await h.controller.start();
  });

  it("binds the module and the reconcile's key to each line of a reconcile", async () => {
    h.api.put('AuditPipeline', pipeline('orders'));
    await settle(h);
    h.api.put('AuditPipeline', pipeline('orders', { invalid: true }));
    await settle(h);
    h.api.remove('AuditPipeline', 'shop', 'orders');
    await settle(h);
    const lines = h.lines.filter((l) => l.module === 'controller');
    expect(lines.map((l) => [l.key, l.msg])).toEqual([
      [ORDERS, 'sink applied'],
      [ORDERS, 'resource not applied'],
      [ORDERS, 'sink removed'],
    ]);
    // Each key once: a child's bindings and the line's own fields never both name it.
    const raw = JSON.stringify(lines[0]);
    expect(raw.match(/"key"/g)).toHaveLength(1);
  });

  it('logs a failed reconcile as an error under err, with its key and retry delay', async () => {
    h.plane.failNext(new Error('spool: EACCES'));
    h.api.put('AuditPipeline', pipeline('orders'));
    await settle(h);
    const line = h.lines.find((l) => l.msg === 'reconcile failed; retrying');
    expect(line).toMatchObject({
      level: LEVELS.error,
      module: 'controller',
      key: ORDERS,
      retryInMs: 500,
      err: { message: 'spool: EACCES' },
    });
  });
});
