// Native dynamic mode: the auditregistration.k8s.io/v1alpha1 AuditSink that mirrors each sink (its
// one level and kept stages, its signed URL), the names those objects get, and their sync, on the
// in-memory fake of the Kubernetes API and a manual clock: only labelled objects are created,
// replaced or deleted, only while leading, retried after a failure. Starts no process and opens
// no socket.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Level, Stage } from '../../../src/audit/types.ts';
import {
  NATIVE_MANAGED_BY,
  NATIVE_SINK_ANNOTATION,
  nativeCapture,
  nativeSinkFor,
  nativeSinkName,
  NativeSinks,
} from '../../../src/operator/native.ts';
import { nativeSignature, nativeSignatureMatches } from '../../../src/receiver/auth.ts';
import { SINK_API_VERSION, type SinkSettings, sinkFromResource } from '../../../src/sinks/spec.ts';
import type { Sink } from '../../../src/sinks/types.ts';
import { conflict, FakeKubeApi, type Stored } from '../../support/fake-kube-api.ts';
import { flush, ManualClock } from '../../support/manual-clock.ts';
import { capturedLogger, LEVELS } from './fixtures.ts';

/** The operator's settings: a destination is required. */
const OPERATOR: SinkSettings = { clusterWideNamespaces: ['kube-audit'], requireDestination: true };
const INFLUX = { url: 'http://influxdb.monitoring:8086', org: 'platform', bucket: 'audit' };
const KEY = 'native-key-0123456789abcdef';
const BASE = 'https://10.96.0.50';
// PEM-shaped: only its bytes matter here, nothing parses it.
const CA_PEM =
  '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUDq0hYw2J0f6m\n-----END CERTIFICATE-----\n';

/** An AuditSink as the removed API had it: one level and the stages to keep. */
function auditSink(policy: Record<string, unknown>, name = 'cluster-trail'): Sink {
  return sinkFromResource(
    {
      apiVersion: SINK_API_VERSION,
      kind: 'AuditSink',
      metadata: { name, generation: 1 },
      spec: { policy, influxdb: INFLUX },
    },
    OPERATOR,
  );
}

/** An AuditPipeline with a full audit.k8s.io Policy. */
function pipeline(policy: Record<string, unknown>, namespace = 'shop', name = 'orders'): Sink {
  return sinkFromResource(
    {
      apiVersion: SINK_API_VERSION,
      kind: 'AuditPipeline',
      metadata: { name, namespace, generation: 1 },
      spec: { policy, influxdb: INFLUX },
    },
    OPERATOR,
  );
}

const WRITES = ['create', 'update', 'patch', 'delete'];

describe('nativeCapture', () => {
  it.each<{ name: string; sink: Sink; level: Level; stages: Stage[] }>([
    {
      name: 'an AuditSink keeps its own level and stages',
      sink: auditSink({ level: 'Metadata', stages: ['ResponseComplete'] }),
      level: 'Metadata',
      stages: ['ResponseComplete'],
    },
    {
      name: 'an AuditSink keeping every stage keeps every stage',
      sink: auditSink({
        level: 'RequestResponse',
        stages: ['Panic', 'ResponseComplete', 'RequestReceived', 'ResponseStarted'],
      }),
      level: 'RequestResponse',
      stages: ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'],
    },
    {
      name: 'an AuditSink of level None captures nothing',
      sink: auditSink({ level: 'None' }),
      level: 'None',
      stages: [],
    },
    {
      name: 'a pipeline takes its highest rule level, whatever the rule order',
      sink: pipeline({
        omitStages: ['RequestReceived'],
        rules: [
          { level: 'Metadata', resources: [{ group: '', resources: ['secrets'] }] },
          { level: 'RequestResponse', verbs: WRITES },
          { level: 'Request' },
        ],
      }),
      level: 'RequestResponse',
      stages: ['ResponseStarted', 'ResponseComplete', 'Panic'],
    },
    {
      name: 'a pipeline keeps every stage that some capturing rule keeps',
      sink: pipeline({
        omitStages: ['RequestReceived', 'Panic'],
        rules: [
          { level: 'RequestResponse', verbs: WRITES, omitStages: ['ResponseStarted'] },
          { level: 'Metadata', omitStages: ['ResponseComplete'] },
        ],
      }),
      level: 'RequestResponse',
      stages: ['ResponseStarted', 'ResponseComplete'],
    },
    {
      name: 'a stage that every capturing rule omits is not kept',
      sink: pipeline({
        rules: [
          { level: 'Request', verbs: WRITES, omitStages: ['RequestReceived', 'ResponseStarted'] },
          { level: 'Metadata', omitStages: ['RequestReceived'] },
        ],
      }),
      level: 'Request',
      stages: ['ResponseStarted', 'ResponseComplete', 'Panic'],
    },
    {
      name: 'the stages of None rules do not count',
      sink: pipeline({
        rules: [
          { level: 'None', users: ['system:kube-proxy'] },
          { level: 'Metadata', omitStages: ['RequestReceived', 'ResponseStarted'] },
        ],
      }),
      level: 'Metadata',
      stages: ['ResponseComplete', 'Panic'],
    },
    {
      name: 'a policy of None rules only captures nothing',
      sink: pipeline({
        rules: [{ level: 'None', users: ['system:kube-proxy'] }, { level: 'None' }],
      }),
      level: 'None',
      stages: [],
    },
  ])('$name', ({ sink, level, stages }) => {
    expect(nativeCapture(sink)).toEqual({ level, stages });
  });
});

describe('nativeSinkFor', () => {
  const trail = auditSink({ level: 'Metadata', stages: ['ResponseComplete'] });
  const orders = pipeline({ omitStages: ['RequestReceived'], rules: [{ level: 'Request' }] });

  it('points an AuditSink at its signed sink endpoint', () => {
    const native = nativeSinkFor(trail, BASE, KEY, undefined);
    const signature = nativeSignature(KEY, 'AuditSink/cluster-trail');
    expect(native.spec).toMatchObject({
      webhook: {
        clientConfig: { url: `${BASE}/audit/v1/native/${signature}/sinks/cluster-trail` },
      },
    });
  });

  it('points an AuditPipeline at its signed pipeline endpoint', () => {
    const native = nativeSinkFor(orders, BASE, KEY, undefined);
    const signature = nativeSignature(KEY, 'AuditPipeline/shop/orders');
    expect(native.spec).toMatchObject({
      webhook: {
        clientConfig: { url: `${BASE}/audit/v1/native/${signature}/pipelines/shop/orders` },
      },
    });
  });

  it('signs the URL so that it admits this sink only, and only under this key', () => {
    const url = (
      nativeSinkFor(orders, BASE, KEY, undefined).spec as {
        webhook: { clientConfig: { url: string } };
      }
    ).webhook.clientConfig.url;
    const signature = /\/native\/([^/]+)\//.exec(url)?.[1] ?? '';
    expect(signature).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(nativeSignatureMatches(KEY, 'AuditPipeline/shop/orders', signature)).toBe(true);
    expect(nativeSignatureMatches(KEY, 'AuditSink/cluster-trail', signature)).toBe(false);
    expect(nativeSignatureMatches(`${KEY}-rotated`, 'AuditPipeline/shop/orders', signature)).toBe(
      false,
    );
  });

  it('is an auditregistration.k8s.io/v1alpha1 AuditSink, labelled as ours and naming its sink', () => {
    const native = nativeSinkFor(orders, BASE, KEY, undefined);
    expect(native).toMatchObject({
      apiVersion: 'auditregistration.k8s.io/v1alpha1',
      kind: 'AuditSink',
      metadata: {
        name: nativeSinkName('AuditPipeline/shop/orders'),
        labels: { 'app.kubernetes.io/managed-by': 'kube-audit-operator' },
        annotations: { 'kube-audit.dev/sink': 'AuditPipeline/shop/orders' },
      },
    });
    expect(native.metadata?.labels).toEqual(NATIVE_MANAGED_BY);
    expect(native.metadata?.annotations).toEqual({
      [NATIVE_SINK_ANNOTATION]: 'AuditPipeline/shop/orders',
    });
  });

  it("captures with the sink's native policy", () => {
    expect(nativeSinkFor(trail, BASE, KEY, undefined).spec).toMatchObject({
      policy: { level: 'Metadata', stages: ['ResponseComplete'] },
    });
    expect(nativeSinkFor(orders, BASE, KEY, undefined).spec).toMatchObject({
      policy: { level: 'Request', stages: ['ResponseStarted', 'ResponseComplete', 'Panic'] },
    });
  });

  it("throttles as the removed API's defaults did: 10 batches a second, bursts of 15", () => {
    expect(nativeSinkFor(trail, BASE, KEY, undefined).spec).toMatchObject({
      webhook: { throttle: { qps: 10, burst: 15 } },
    });
  });

  it('carries the CA bundle base64-encoded, as the API field is bytes', () => {
    const native = nativeSinkFor(trail, BASE, KEY, CA_PEM);
    const clientConfig = (native.spec as { webhook: { clientConfig: Record<string, string> } })
      .webhook.clientConfig;
    expect(clientConfig.caBundle).toBe(Buffer.from(CA_PEM).toString('base64'));
    expect(Buffer.from(clientConfig.caBundle ?? '', 'base64').toString('utf8')).toBe(CA_PEM);
  });

  it('leaves the CA bundle out when the system roots verify the receivers', () => {
    const native = nativeSinkFor(trail, BASE, KEY, undefined);
    const clientConfig = (native.spec as { webhook: { clientConfig: Record<string, string> } })
      .webhook.clientConfig;
    expect('caBundle' in clientConfig).toBe(false);
  });

  it('is the same object for the same sink, so that an unchanged sink is never rewritten', () => {
    expect(nativeSinkFor(orders, BASE, KEY, CA_PEM)).toEqual(
      nativeSinkFor(
        pipeline({ omitStages: ['RequestReceived'], rules: [{ level: 'Request' }] }),
        BASE,
        KEY,
        CA_PEM,
      ),
    );
  });
});

describe('nativeSinkName', () => {
  // A DNS-1123 label: what every object name may be, and at most 63 characters.
  const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

  it('is stable for a key', () => {
    expect(nativeSinkName('AuditPipeline/shop/orders')).toBe(
      nativeSinkName('AuditPipeline/shop/orders'),
    );
  });

  it.each([
    'AuditSink/a',
    'AuditSink/cluster-trail',
    'AuditPipeline/shop/orders',
    `AuditPipeline/${'n'.repeat(63)}/${'o'.repeat(253)}`,
    'AuditPipeline/Ünïcode/with spaces',
  ])('is a DNS-1123 label of at most 63 characters for %s', (key) => {
    const name = nativeSinkName(key);
    expect(name).toMatch(DNS1123_LABEL);
    expect(name.length).toBeLessThanOrEqual(63);
  });

  it('differs for keys that a naive joining of parts would confuse', () => {
    const keys = [
      'AuditSink/shop-orders',
      'AuditPipeline/shop/orders',
      'AuditPipeline/shop-orders/x',
      'AuditPipeline/shop/orders-x',
      'AuditSink/orders',
    ];
    expect(new Set(keys.map(nativeSinkName)).size).toBe(keys.length);
  });

  it('differs for different keys', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (a, b) => {
        fc.pre(a !== b);
        return nativeSinkName(a) !== nativeSinkName(b);
      }),
    );
  });
});

describe('NativeSinks', () => {
  const RESYNC_MS = 60_000;

  /** A NativeSinks on the fake API; `leading` and `ca` are the test's to change. */
  function setUp(api = new FakeKubeApi()) {
    api.servesNative = true;
    const clock = new ManualClock();
    const { log, lines } = capturedLogger();
    const scene = { leading: true, ca: undefined as string | undefined };
    const native = new NativeSinks({
      api,
      endpointBase: BASE,
      key: KEY,
      caBundle: () => Promise.resolve(scene.ca),
      resyncMs: RESYNC_MS,
      log,
      leading: () => scene.leading,
      clock,
    });
    return Object.assign(scene, { api, clock, native, lines });
  }

  /** The native AuditSinks as stored: name to the sink they mirror, or `(not ours)`. */
  function mirrored(api: FakeKubeApi): Record<string, string> {
    return Object.fromEntries(
      api
        .list('NativeAuditSink')
        .map((o) => [
          o.metadata.name,
          o.metadata.annotations?.[NATIVE_SINK_ANNOTATION] ?? '(not ours)',
        ]),
    );
  }

  const orders = pipeline({ rules: [{ level: 'Metadata' }] }, 'shop', 'orders');
  const trail = auditSink({ level: 'Request', stages: ['ResponseComplete'] });

  /** A native AuditSink an administrator made by hand: not labelled as ours. */
  const theirs = {
    apiVersion: 'auditregistration.k8s.io/v1alpha1',
    kind: 'AuditSink',
    metadata: { name: 'security-team' },
    spec: {
      policy: { level: 'Metadata' },
      webhook: { clientConfig: { url: 'https://siem.example' } },
    },
  };

  it('creates one labelled native AuditSink per sink, naming the sink it mirrors', async () => {
    const s = setUp();
    s.native.sync([orders, trail]);
    await flush();
    expect(mirrored(s.api)).toEqual({
      [nativeSinkName(orders.key)]: orders.key,
      [nativeSinkName(trail.key)]: trail.key,
    });
    const stored = s.api.get('NativeAuditSink', '', nativeSinkName(orders.key));
    expect(stored?.metadata.labels).toEqual(NATIVE_MANAGED_BY);
    expect(stored?.spec).toEqual(nativeSinkFor(orders, BASE, KEY, undefined).spec);
    await s.native.stop();
  });

  it('deletes the labelled ones no sink wants, and never touches one that is not labelled', async () => {
    const s = setUp();
    s.api.put('NativeAuditSink', theirs);
    s.native.sync([orders, trail]);
    await flush();
    s.native.sync([trail]);
    await flush();
    expect(mirrored(s.api)).toEqual({
      [nativeSinkName(trail.key)]: trail.key,
      'security-team': '(not ours)',
    });
    s.native.sync([]);
    await flush();
    expect(mirrored(s.api)).toEqual({ 'security-team': '(not ours)' });
    expect(s.api.get('NativeAuditSink', '', 'security-team')?.spec).toEqual(theirs.spec);
    await s.native.stop();
  });

  it('rewrites only what differs: an edit by hand, a renewed CA at the next resync', async () => {
    const s = setUp();
    s.native.sync([orders, trail]);
    await flush();
    expect(s.api.count('applyNativeSink')).toBe(2);
    // Unchanged: listed, not written.
    s.native.sync([orders, trail]);
    await flush();
    expect(s.api.count('applyNativeSink')).toBe(2);
    // Someone points ours elsewhere: the next sync puts it back.
    const name = nativeSinkName(orders.key);
    const edited = s.api.get('NativeAuditSink', '', name) as Stored;
    s.api.put('NativeAuditSink', {
      ...edited,
      spec: { ...(edited.spec as object), webhook: { clientConfig: { url: 'https://elsewhere' } } },
    });
    // The serving certificate is renewed: every native sink gets the new CA at the resync.
    s.ca = CA_PEM;
    await s.clock.advance(RESYNC_MS);
    expect(s.api.count('applyNativeSink')).toBe(4);
    for (const sink of [orders, trail]) {
      expect(s.api.get('NativeAuditSink', '', nativeSinkName(sink.key))?.spec).toEqual(
        nativeSinkFor(sink, BASE, KEY, CA_PEM).spec,
      );
    }
    await s.native.stop();
  });

  it('writes nothing while following, and catches up at the first sync after it leads', async () => {
    const s = setUp();
    s.leading = false;
    s.native.sync([orders]);
    await s.clock.advance(3 * RESYNC_MS);
    expect(s.api.calls).toEqual([]);
    s.leading = true;
    await s.clock.advance(RESYNC_MS);
    expect(Object.values(mirrored(s.api))).toEqual([orders.key]);
    await s.native.stop();
  });

  it('retries a failed sync after 2 s, with the latest set of sinks', async () => {
    const s = setUp();
    s.api.forbid('listNativeSinks');
    s.native.sync([orders]);
    await flush();
    // While the retry waits, the sinks change: the retry syncs the newer set.
    s.native.sync([trail]);
    s.api.allow('listNativeSinks');
    await s.clock.advance(1_999);
    expect(mirrored(s.api)).toEqual({});
    await s.clock.advance(1);
    expect(mirrored(s.api)).toEqual({ [nativeSinkName(trail.key)]: trail.key });
    expect(s.lines.find((l) => l.msg === 'native AuditSinks not synced; retrying')).toMatchObject({
      level: LEVELS.error,
      module: 'native',
      retryInMs: 2_000,
      err: { message: 'listNativeSinks is forbidden' },
    });
    await s.native.stop();
  });

  it('retries a replace that lost a race with another writer (409)', async () => {
    const s = setUp();
    s.native.sync([orders]);
    await flush();
    s.ca = CA_PEM;
    s.api.failNext('applyNativeSink', conflict('auditsinks.auditregistration.k8s.io'));
    s.native.sync([orders]);
    await flush();
    expect(s.api.get('NativeAuditSink', '', nativeSinkName(orders.key))?.spec).toEqual(
      nativeSinkFor(orders, BASE, KEY, undefined).spec,
    );
    await s.clock.advance(2_000);
    expect(s.api.get('NativeAuditSink', '', nativeSinkName(orders.key))?.spec).toEqual(
      nativeSinkFor(orders, BASE, KEY, CA_PEM).spec,
    );
    await s.native.stop();
  });

  it('stops resyncing when stopped, and leaves the native sinks in place', async () => {
    const s = setUp();
    s.native.sync([orders]);
    await flush();
    await s.native.stop();
    const calls = s.api.calls.length;
    await s.clock.advance(3 * RESYNC_MS);
    expect(s.api.calls.length).toBe(calls);
    expect(Object.values(mirrored(s.api))).toEqual([orders.key]);
  });
});
