// Native dynamic mode: the auditregistration.k8s.io/v1alpha1 AuditSink that mirrors each sink (its
// one level and kept stages, its signed URL) and the names those objects get. Pure: starts no
// process.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Level, Stage } from '../../../src/audit/types.ts';
import {
  NATIVE_MANAGED_BY,
  NATIVE_SINK_ANNOTATION,
  nativeCapture,
  nativeSinkFor,
  nativeSinkName,
} from '../../../src/operator/native.ts';
import { nativeSignature, nativeSignatureMatches } from '../../../src/receiver/auth.ts';
import { SINK_API_VERSION, type SinkSettings, sinkFromResource } from '../../../src/sinks/spec.ts';
import type { Sink } from '../../../src/sinks/types.ts';

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
