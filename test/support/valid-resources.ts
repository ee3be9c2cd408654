/**
 * AuditSink and AuditPipeline manifests at the edges of what is valid: the CRD schemas must accept
 * each of them as the operator does, so a bound or pattern in the schema that is stricter than the
 * operator shows up here. Shared by the schema tests and the real-apiserver tests. Pure data.
 */

import { auditSinkResource, type Json, PEM_BASE64, pipelineResource } from './resources.ts';

/** One manifest both the apiserver and the operator accept. */
export interface ValidResource {
  /** What is at the edge, as a sentence fragment for test names. */
  readonly name: string;
  readonly manifest: Record<string, unknown>;
}

/** The namespace every valid AuditPipeline is in; a real apiserver needs it to exist. */
export const VALID_NAMESPACE = 'valid-cases';

const INFLUX = { url: 'http://influxdb.monitoring.svc:8086', org: 'platform', bucket: 'audit' };
const LEGACY_POLICY = { level: 'Metadata', stages: ['ResponseComplete'] };
const CATCH_ALL = { rules: [{ level: 'Metadata' }] };

function auditSink(name: string, spec: Json): Json {
  return auditSinkResource(spec, name);
}

function pipeline(name: string, spec: Json): Json {
  return pipelineResource(spec, VALID_NAMESPACE, name);
}

function influxSink(name: string, overrides: Record<string, unknown>): Record<string, unknown> {
  return auditSink(name, { policy: LEGACY_POLICY, influxdb: { ...INFLUX, ...overrides } });
}

function webhookSink(name: string, clientConfig: Record<string, unknown>): Record<string, unknown> {
  return auditSink(name, { policy: LEGACY_POLICY, webhook: { clientConfig } });
}

/** Every valid edge case; names (metadata.name) are unique so a real apiserver can take them all. */
export const VALID_RESOURCES: readonly ValidResource[] = [
  {
    name: 'level None without stages',
    manifest: auditSink('level-none', { policy: { level: 'None' }, influxdb: INFLUX }),
  },
  {
    name: 'a stage listed twice, as the removed API accepted',
    manifest: auditSink('stage-twice', {
      policy: { level: 'Request', stages: ['ResponseComplete', 'ResponseComplete'] },
      influxdb: INFLUX,
    }),
  },
  {
    name: 'a plain-http webhook URL with a query, as the removed API accepted',
    manifest: webhookSink('http-query-url', { url: 'http://collector.audit:8080/in?tenant=a' }),
  },
  {
    name: 'an upper-case URL scheme',
    manifest: webhookSink('upper-case-scheme', { url: 'HTTPS://audit.example.com' }),
  },
  {
    name: 'an IPv6 webhook URL with a port',
    manifest: webhookSink('ipv6-url', { url: 'https://[fd00::10]:8443/events' }),
  },
  {
    name: 'a webhook Service with neither path nor port',
    manifest: webhookSink('service-defaults', { service: { namespace: 'audit', name: 'c' } }),
  },
  {
    name: 'a webhook Service with path "/" and port 65535',
    manifest: webhookSink('service-root-path', {
      service: { namespace: 'audit', name: 'collector', path: '/', port: 65_535 },
      caBundle: PEM_BASE64,
    }),
  },
  {
    name: 'a throttle with qps 1 and no burst',
    manifest: auditSink('throttle-qps-1', {
      policy: LEGACY_POLICY,
      webhook: { throttle: { qps: 1 }, clientConfig: { url: 'https://audit.example.com/' } },
    }),
  },
  {
    name: 'both destinations',
    manifest: auditSink('both-destinations', {
      policy: LEGACY_POLICY,
      influxdb: INFLUX,
      webhook: { clientConfig: { url: 'https://audit.example.com/' } },
    }),
  },
  {
    name: 'an InfluxDB 1.8 database/retention-policy bucket without token',
    manifest: influxSink('influx-1-8', { bucket: 'telegraf/autogen', org: '-' }),
  },
  {
    name: 'a retention of 0, forever',
    manifest: influxSink('retention-0', { createBucket: true, retention: '0' }),
  },
  {
    name: 'a retention of exactly 1h with a sign',
    manifest: influxSink('retention-plus-1h', { createBucket: true, retention: '+1h' }),
  },
  {
    name: 'a retention in weeks',
    manifest: influxSink('retention-2w', { createBucket: true, retention: '2w' }),
  },
  {
    name: 'a fractional retention',
    manifest: influxSink('retention-1-5h', { createBucket: true, retention: '1.5h' }),
  },
  {
    name: 'a flushInterval of 10ms',
    manifest: influxSink('flush-10ms', { flushInterval: '10ms' }),
  },
  {
    name: 'a flushInterval of 1h in three units',
    manifest: influxSink('flush-1h0m0s', { flushInterval: '1h0m0s' }),
  },
  {
    name: 'a flushInterval of half a second written as .5s',
    manifest: influxSink('flush-dot-5s', { flushInterval: '.5s' }),
  },
  {
    name: 'a batchSize of 100000',
    manifest: influxSink('batch-100000', { batchSize: 100_000 }),
  },
  {
    name: 'no tags at all',
    manifest: influxSink('no-tags', { tags: [] }),
  },
  {
    name: 'fields naming schema fields and tags written as fields',
    manifest: influxSink('some-fields', {
      tags: ['verb', 'namespace'],
      fields: ['user', 'latency_ms', 'audit_id', 'request_uri'],
    }),
  },
  {
    name: 'no fields but audit_id',
    manifest: influxSink('no-fields', { fields: [] }),
  },
  {
    name: 'static tags with dots, dashes and a leading underscore',
    manifest: influxSink('static-tag-names', {
      staticTags: { 'k8s.cluster': 'prod eu, west=1', _region: 'eu-west-1', 'x-team': 'ü' },
    }),
  },
  {
    name: 'a pasted Policy document with apiVersion, kind and metadata',
    manifest: pipeline('pasted-policy', {
      policy: {
        apiVersion: 'audit.k8s.io/v1',
        kind: 'Policy',
        metadata: { name: 'tenant', labels: { team: 'payments' } },
        omitStages: ['RequestReceived'],
        rules: [{ level: 'Metadata' }],
      },
      influxdb: INFLUX,
    }),
  },
  {
    name: 'a pasted v1beta1 Policy',
    manifest: pipeline('v1beta1-policy', {
      policy: { apiVersion: 'audit.k8s.io/v1beta1', ...CATCH_ALL },
      influxdb: INFLUX,
    }),
  },
  {
    name: 'every kind of selector upstream allows',
    manifest: pipeline('all-selectors', {
      policy: {
        omitManagedFields: false,
        rules: [
          { level: 'None', nonResourceURLs: ['*'], users: ['system:kube-proxy'] },
          { level: 'None', nonResourceURLs: ['/healthz', '/api*'], verbs: ['get'] },
          {
            level: 'RequestResponse',
            userGroups: ['system:masters'],
            namespaces: [''],
            resources: [
              { group: '', resources: ['pods/*', '*/scale'] },
              { group: 'rbac.authorization.k8s.io', resources: ['*'] },
              { group: 'apps', resources: ['deployments'], resourceNames: ['web'] },
              { group: 'storage.k8s.io' },
            ],
            omitStages: ['ResponseStarted', 'Panic'],
            omitManagedFields: true,
          },
          { level: 'Request', namespaces: [VALID_NAMESPACE] },
          { level: 'Metadata' },
        ],
      },
      influxdb: INFLUX,
    }),
  },
  {
    name: 'the group wildcard of kube-apiserver 1.36, with resources, names and namespaces',
    manifest: pipeline('group-wildcard', {
      policy: {
        rules: [
          {
            level: 'None',
            verbs: ['update', 'patch'],
            resources: [{ group: '*', resources: ['*/status'] }],
          },
          {
            level: 'RequestResponse',
            namespaces: [VALID_NAMESPACE, ''],
            resources: [
              { group: '', resources: ['configmaps'] },
              { group: '*', resources: ['*/scale', 'leases'], resourceNames: ['web'] },
            ],
          },
          { level: 'Metadata', resources: [{ group: '*' }] },
        ],
      },
      influxdb: INFLUX,
    }),
  },
  {
    name: 'a dedicated receiver on port 1024 with its own TLS Secret',
    manifest: pipeline('receiver-1024', {
      policy: CATCH_ALL,
      influxdb: INFLUX,
      receiver: { port: 1024, tlsSecretName: 'trail-tls' },
    }),
  },
  {
    name: 'a dedicated receiver on port 65535 with the operator’s certificate',
    manifest: pipeline('receiver-65535', {
      policy: CATCH_ALL,
      webhook: { clientConfig: { url: 'https://audit.example.com/' } },
      receiver: { port: 65_535 },
    }),
  },
  {
    name: 'a pipeline with its own write tokens',
    manifest: pipeline('own-writers', {
      policy: CATCH_ALL,
      influxdb: INFLUX,
      receiver: { tokenSecretRef: { name: 'trail-writers', key: 'tokens' } },
    }),
  },
  {
    name: 'an AuditSink with its own write tokens',
    manifest: auditSink('own-writers', {
      policy: LEGACY_POLICY,
      influxdb: INFLUX,
      receiver: { tokenSecretRef: { name: 'cluster-writers', key: 'tokens.txt' } },
    }),
  },
];
