/**
 * AuditSink and AuditPipeline manifests that must not become sinks, each with the field path its
 * error names. Shared by the schema tests (test/unit/crds.test.ts) and the tests that apply them
 * to a real kube-apiserver (test/e2e/controlplane/crds.test.ts), so both hold the CRDs and the
 * operator to the same cases. Pure data: starts no process.
 */

import { auditSinkResource, type Json, PEM_BASE64, pipelineResource } from './resources.ts';

/** Which check refuses a manifest at `kubectl apply` time, if any. */
export type CaughtBy =
  /** The OpenAPI keywords of the CRD schema: type, enum, pattern, bounds, required. */
  | 'schema'
  /** A CEL rule (x-kubernetes-validations) of the CRD schema. */
  | 'cel'
  /** Strict field validation: kubectl's default refuses a field the schema does not declare. */
  | 'unknown-field'
  /** Nothing at apply time: the operator refuses it and reports it in the resource's status. */
  | 'operator';

/** One manifest that the operator refuses, and where the apiserver refuses it too. */
export interface InvalidResource {
  /** What is wrong, as a sentence fragment for test names. */
  readonly name: string;
  readonly manifest: Record<string, unknown>;
  /** The field path both the operator's and the apiserver's errors name. */
  readonly path: string;
  /**
   * The apiserver's spelling of the path where it differs from the operator's, e.g.
   * `spec.influxdb.staticTags.cluster` for the operator's `spec.influxdb.staticTags["cluster"]`.
   */
  readonly apiserverPath?: string;
  readonly caughtBy: CaughtBy;
}

/** The namespace every invalid AuditPipeline is in; a real apiserver needs it to exist. */
export const INVALID_NAMESPACE = 'invalid-cases';

const INFLUX = {
  url: 'http://influxdb.monitoring.svc:8086',
  org: 'platform',
  bucket: 'audit',
} as const;

const LEGACY_POLICY = { level: 'Metadata', stages: ['ResponseComplete'] } as const;

const CATCH_ALL = { rules: [{ level: 'Metadata' }] } as const;

const WEBHOOK_URL = 'https://audit.example.com/events';

function auditSink(name: string, spec: Json): Json {
  return auditSinkResource(spec, name);
}

function pipeline(name: string, spec: Json): Json {
  return pipelineResource(spec, INVALID_NAMESPACE, name);
}

/** An AuditSink writing to InfluxDB whose influxdb block is INFLUX with `overrides`. */
function influxSink(name: string, overrides: Record<string, unknown>): Record<string, unknown> {
  return auditSink(name, { policy: LEGACY_POLICY, influxdb: { ...INFLUX, ...overrides } });
}

/** An AuditSink forwarding to a webhook with this clientConfig. */
function webhookSink(name: string, clientConfig: Record<string, unknown>): Record<string, unknown> {
  return auditSink(name, { policy: LEGACY_POLICY, webhook: { clientConfig } });
}

/** An AuditPipeline writing to InfluxDB with this policy. */
function policyPipeline(name: string, policy: Record<string, unknown>): Record<string, unknown> {
  return pipeline(name, { policy, influxdb: INFLUX });
}

/** One rule of a pipeline policy, as the only rule. */
function rulePipeline(name: string, rule: Record<string, unknown>): Record<string, unknown> {
  return policyPipeline(name, { rules: [rule] });
}

/** Every invalid case; names (metadata.name) are unique so a real apiserver can take them all. */
export const INVALID_RESOURCES: readonly InvalidResource[] = [
  // AuditSink policy, as upstream auditregistration validation.
  {
    name: 'an AuditSink policy without level',
    manifest: auditSink('no-level', {
      policy: { stages: ['ResponseComplete'] },
      influxdb: INFLUX,
    }),
    path: 'spec.policy.level',
    caughtBy: 'schema',
  },
  {
    name: 'an AuditSink level that does not exist',
    manifest: auditSink('bad-level', {
      policy: { level: 'Verbose', stages: ['ResponseComplete'] },
      influxdb: INFLUX,
    }),
    path: 'spec.policy.level',
    caughtBy: 'schema',
  },
  {
    name: 'an AuditSink level other than None without stages',
    manifest: auditSink('no-stages', { policy: { level: 'Metadata' }, influxdb: INFLUX }),
    path: 'spec.policy.stages',
    caughtBy: 'cel',
  },
  {
    name: 'an AuditSink stage that does not exist',
    manifest: auditSink('bad-stage', {
      policy: { level: 'Metadata', stages: ['ResponseFinished'] },
      influxdb: INFLUX,
    }),
    path: 'spec.policy.stages[0]',
    caughtBy: 'schema',
  },
  {
    name: 'an AuditSink with neither influxdb nor a webhook',
    manifest: auditSink('no-destination', { policy: LEGACY_POLICY }),
    path: 'spec',
    caughtBy: 'cel',
  },
  {
    name: 'a dedicated receiver on an AuditSink',
    manifest: auditSink('sink-receiver', {
      policy: LEGACY_POLICY,
      influxdb: INFLUX,
      receiver: { port: 9443 },
    }),
    path: 'spec.receiver.port',
    caughtBy: 'unknown-field',
  },
  {
    name: 'write tokens without the key',
    manifest: pipeline('writers-no-key', {
      policy: CATCH_ALL,
      influxdb: INFLUX,
      receiver: { tokenSecretRef: { name: 'trail-writers' } },
    }),
    path: 'spec.receiver.tokenSecretRef.key',
    caughtBy: 'schema',
  },
  {
    name: 'write tokens in a Secret whose name is no DNS subdomain',
    manifest: pipeline('writers-bad-name', {
      policy: CATCH_ALL,
      influxdb: INFLUX,
      receiver: { tokenSecretRef: { name: 'Trail_Writers', key: 'tokens' } },
    }),
    path: 'spec.receiver.tokenSecretRef.name',
    caughtBy: 'schema',
  },

  // Webhook forwarding.
  {
    name: 'a webhook with both url and service',
    manifest: webhookSink('url-and-service', {
      url: WEBHOOK_URL,
      service: { namespace: 'audit', name: 'collector' },
    }),
    path: 'spec.webhook.clientConfig',
    caughtBy: 'cel',
  },
  {
    name: 'a webhook with neither url nor service',
    manifest: webhookSink('no-url-no-service', { caBundle: PEM_BASE64 }),
    path: 'spec.webhook.clientConfig',
    caughtBy: 'cel',
  },
  {
    name: 'a webhook URL that is not http or https',
    manifest: webhookSink('ftp-url', { url: 'ftp://audit.example.com/events' }),
    path: 'spec.webhook.clientConfig.url',
    caughtBy: 'schema',
  },
  {
    name: 'a webhook URL with credentials',
    manifest: webhookSink('credentials-url', { url: 'https://audit:secret@audit.example.com/' }),
    path: 'spec.webhook.clientConfig.url',
    caughtBy: 'schema',
  },
  {
    name: 'a webhook URL with a fragment',
    manifest: webhookSink('fragment-url', { url: 'https://audit.example.com/#events' }),
    path: 'spec.webhook.clientConfig.url',
    caughtBy: 'schema',
  },
  {
    name: 'a webhook Service without name',
    manifest: webhookSink('service-no-name', { service: { namespace: 'audit' } }),
    path: 'spec.webhook.clientConfig.service.name',
    caughtBy: 'schema',
  },
  {
    name: 'a webhook Service port 0',
    manifest: webhookSink('service-port-0', {
      service: { namespace: 'audit', name: 'collector', port: 0 },
    }),
    path: 'spec.webhook.clientConfig.service.port',
    caughtBy: 'schema',
  },
  {
    name: 'a webhook Service port above 65535',
    manifest: webhookSink('service-port-65536', {
      service: { namespace: 'audit', name: 'collector', port: 65_536 },
    }),
    path: 'spec.webhook.clientConfig.service.port',
    caughtBy: 'schema',
  },
  {
    name: 'a webhook Service path without leading slash',
    manifest: webhookSink('service-relative-path', {
      service: { namespace: 'audit', name: 'collector', path: 'events' },
    }),
    path: 'spec.webhook.clientConfig.service.path',
    caughtBy: 'schema',
  },
  {
    name: 'a caBundle that is not base64',
    manifest: webhookSink('ca-not-base64', { url: WEBHOOK_URL, caBundle: 'not base64!' }),
    path: 'spec.webhook.clientConfig.caBundle',
    caughtBy: 'schema',
  },
  {
    name: 'a caBundle without a PEM certificate',
    manifest: webhookSink('ca-not-pem', {
      url: WEBHOOK_URL,
      caBundle: Buffer.from('not a certificate').toString('base64'),
    }),
    path: 'spec.webhook.clientConfig.caBundle',
    caughtBy: 'cel',
  },
  {
    name: 'a throttle qps of 0',
    manifest: auditSink('qps-0', {
      policy: LEGACY_POLICY,
      webhook: { throttle: { qps: 0 }, clientConfig: { url: WEBHOOK_URL } },
    }),
    path: 'spec.webhook.throttle.qps',
    caughtBy: 'schema',
  },
  {
    name: 'a throttle burst of 0',
    manifest: auditSink('burst-0', {
      policy: LEGACY_POLICY,
      webhook: { throttle: { burst: 0 }, clientConfig: { url: WEBHOOK_URL } },
    }),
    path: 'spec.webhook.throttle.burst',
    caughtBy: 'schema',
  },
  {
    name: 'a throttle without a webhook to throttle',
    manifest: auditSink('throttle-only', {
      policy: LEGACY_POLICY,
      influxdb: INFLUX,
      webhook: { throttle: { qps: 5 } },
    }),
    path: 'spec.webhook.clientConfig',
    caughtBy: 'cel',
  },

  // InfluxDB destination (SPEC 2.3).
  {
    name: 'an InfluxDB destination without bucket',
    manifest: auditSink('no-bucket', {
      policy: LEGACY_POLICY,
      influxdb: { url: INFLUX.url, org: INFLUX.org },
    }),
    path: 'spec.influxdb.bucket',
    caughtBy: 'schema',
  },
  {
    name: 'an empty InfluxDB org',
    manifest: influxSink('empty-org', { org: '' }),
    path: 'spec.influxdb.org',
    caughtBy: 'schema',
  },
  {
    name: 'an InfluxDB URL that is not http or https',
    manifest: influxSink('influx-udp-url', { url: 'udp://influxdb:8089' }),
    path: 'spec.influxdb.url',
    caughtBy: 'schema',
  },
  {
    name: 'an InfluxDB URL with credentials',
    manifest: influxSink('influx-credentials-url', { url: 'http://admin:secret@influxdb:8086' }),
    path: 'spec.influxdb.url',
    caughtBy: 'schema',
  },
  {
    name: 'an InfluxDB URL with a port above 65535',
    manifest: influxSink('influx-port-99999', { url: 'http://influxdb:99999' }),
    path: 'spec.influxdb.url',
    caughtBy: 'operator',
  },
  {
    name: 'a token reference without key',
    manifest: influxSink('token-no-key', { tokenSecretRef: { name: 'influxdb-token' } }),
    path: 'spec.influxdb.tokenSecretRef.key',
    caughtBy: 'schema',
  },
  {
    name: 'a token Secret name that no Secret can have',
    manifest: influxSink('token-bad-name', {
      tokenSecretRef: { name: 'InfluxDB_Token', key: 'token' },
    }),
    path: 'spec.influxdb.tokenSecretRef.name',
    caughtBy: 'schema',
  },
  {
    name: 'a token Secret name longer than any Secret name',
    manifest: influxSink('token-long-name', {
      tokenSecretRef: { name: 'a'.repeat(254), key: 'token' },
    }),
    path: 'spec.influxdb.tokenSecretRef.name',
    caughtBy: 'schema',
  },
  {
    name: 'a token Secret key longer than any Secret key',
    manifest: influxSink('token-long-key', {
      tokenSecretRef: { name: 'influxdb-token', key: 'k'.repeat(254) },
    }),
    path: 'spec.influxdb.tokenSecretRef.key',
    caughtBy: 'schema',
  },
  {
    name: 'a token Secret key that no Secret can have',
    manifest: influxSink('token-bad-key', {
      tokenSecretRef: { name: 'influxdb-token', key: 'api token' },
    }),
    path: 'spec.influxdb.tokenSecretRef.key',
    caughtBy: 'schema',
  },
  {
    name: 'a measurement InfluxDB would drop',
    manifest: influxSink('bad-measurement', { measurement: '#audit' }),
    path: 'spec.influxdb.measurement',
    caughtBy: 'schema',
  },
  {
    name: 'a retention without createBucket',
    manifest: influxSink('retention-no-create', { retention: '30d' }),
    path: 'spec.influxdb.retention',
    caughtBy: 'cel',
  },
  {
    name: 'a retention that is no duration',
    manifest: influxSink('retention-not-duration', { createBucket: true, retention: 'a month' }),
    path: 'spec.influxdb.retention',
    caughtBy: 'schema',
  },
  {
    name: 'a retention under InfluxDB’s one hour',
    manifest: influxSink('retention-30m', { createBucket: true, retention: '30m' }),
    path: 'spec.influxdb.retention',
    caughtBy: 'cel',
  },
  {
    name: 'a retention under one hour written in days',
    manifest: influxSink('retention-0-01d', { createBucket: true, retention: '0.01d' }),
    path: 'spec.influxdb.retention',
    caughtBy: 'operator',
  },
  {
    name: 'a batchSize of 0',
    manifest: influxSink('batch-0', { batchSize: 0 }),
    path: 'spec.influxdb.batchSize',
    caughtBy: 'schema',
  },
  {
    name: 'a batchSize above 100000',
    manifest: influxSink('batch-100001', { batchSize: 100_001 }),
    path: 'spec.influxdb.batchSize',
    caughtBy: 'schema',
  },
  {
    name: 'a flushInterval that is no duration',
    manifest: influxSink('flush-not-duration', { flushInterval: 'often' }),
    path: 'spec.influxdb.flushInterval',
    caughtBy: 'schema',
  },
  {
    name: 'a flushInterval under 10ms',
    manifest: influxSink('flush-5ms', { flushInterval: '5ms' }),
    path: 'spec.influxdb.flushInterval',
    caughtBy: 'cel',
  },
  {
    name: 'a flushInterval over 1h',
    manifest: influxSink('flush-2h', { flushInterval: '2h' }),
    path: 'spec.influxdb.flushInterval',
    caughtBy: 'cel',
  },
  {
    name: 'a flushInterval over 1h written in days',
    manifest: influxSink('flush-1d', { flushInterval: '1d' }),
    path: 'spec.influxdb.flushInterval',
    caughtBy: 'operator',
  },
  {
    name: 'a tag the schema does not have',
    manifest: influxSink('unknown-tag', { tags: ['verb', 'host'] }),
    path: 'spec.influxdb.tags[1]',
    caughtBy: 'schema',
  },
  {
    name: 'a tag listed twice',
    manifest: influxSink('duplicate-tag', { tags: ['verb', 'user', 'verb'] }),
    path: 'spec.influxdb.tags[2]',
    caughtBy: 'schema',
  },
  {
    name: 'a field the schema does not have',
    manifest: influxSink('unknown-field', { fields: ['request_uri', 'host'] }),
    path: 'spec.influxdb.fields[1]',
    caughtBy: 'schema',
  },
  {
    name: 'a tag written as a tag, by default, listed in fields',
    manifest: influxSink('field-default-tag', { fields: ['request_uri', 'verb'] }),
    path: 'spec.influxdb.fields',
    caughtBy: 'cel',
  },
  {
    name: 'a tag written as a tag listed in fields',
    manifest: influxSink('field-listed-tag', { tags: ['verb'], fields: ['user', 'verb'] }),
    path: 'spec.influxdb.fields',
    caughtBy: 'cel',
  },
  {
    name: 'a static tag named like a column of the schema',
    manifest: influxSink('static-tag-reserved', { staticTags: { time: 'now' } }),
    path: 'spec.influxdb.staticTags',
    caughtBy: 'cel',
  },
  {
    name: 'a static tag name with a space',
    manifest: influxSink('static-tag-space', { staticTags: { 'my cluster': 'prod' } }),
    path: 'spec.influxdb.staticTags',
    caughtBy: 'cel',
  },
  {
    name: 'an empty static tag value',
    manifest: influxSink('static-tag-empty', { staticTags: { cluster: '' } }),
    path: 'spec.influxdb.staticTags["cluster"]',
    apiserverPath: 'spec.influxdb.staticTags.cluster',
    caughtBy: 'schema',
  },
  {
    name: 'a static tag value with a line break',
    manifest: influxSink('static-tag-newline', { staticTags: { cluster: 'prod\neu' } }),
    path: 'spec.influxdb.staticTags["cluster"]',
    apiserverPath: 'spec.influxdb.staticTags.cluster',
    caughtBy: 'schema',
  },

  // AuditPipeline policy, as upstream audit policy validation.
  {
    name: 'an AuditPipeline without policy',
    manifest: pipeline('no-policy', { influxdb: INFLUX }),
    path: 'spec.policy',
    caughtBy: 'schema',
  },
  {
    name: 'a policy without rules',
    manifest: policyPipeline('no-rules', { omitStages: ['RequestReceived'] }),
    path: 'spec.policy.rules',
    caughtBy: 'schema',
  },
  {
    name: 'a policy with an empty rule list',
    manifest: policyPipeline('empty-rules', { rules: [] }),
    path: 'spec.policy.rules',
    caughtBy: 'schema',
  },
  {
    name: 'a rule without level',
    manifest: rulePipeline('rule-no-level', { verbs: ['delete'] }),
    path: 'spec.policy.rules[0].level',
    caughtBy: 'schema',
  },
  {
    name: 'a rule level that does not exist',
    manifest: rulePipeline('rule-bad-level', { level: 'Everything' }),
    path: 'spec.policy.rules[0].level',
    caughtBy: 'schema',
  },
  {
    name: 'a rule with both resources and non-resource URLs',
    manifest: rulePipeline('urls-and-resources', {
      level: 'Metadata',
      nonResourceURLs: ['/healthz'],
      resources: [{ group: '', resources: ['pods'] }],
    }),
    path: 'spec.policy.rules[0].nonResourceURLs',
    caughtBy: 'cel',
  },
  {
    name: 'a rule with both namespaces and non-resource URLs',
    manifest: rulePipeline('urls-and-namespaces', {
      level: 'Metadata',
      nonResourceURLs: ['/healthz'],
      namespaces: ['team-payments'],
    }),
    path: 'spec.policy.rules[0].nonResourceURLs',
    caughtBy: 'cel',
  },
  {
    name: 'a non-resource URL without leading slash',
    manifest: rulePipeline('url-relative', { level: 'None', nonResourceURLs: ['healthz'] }),
    path: 'spec.policy.rules[0].nonResourceURLs[0]',
    caughtBy: 'schema',
  },
  {
    name: 'a non-resource URL with a wildcard before its end',
    manifest: rulePipeline('url-inner-wildcard', {
      level: 'None',
      nonResourceURLs: ['/healthz', '/api/*/status'],
    }),
    path: 'spec.policy.rules[0].nonResourceURLs[1]',
    caughtBy: 'schema',
  },
  {
    name: 'a group pattern: "*" is the only group wildcard',
    manifest: rulePipeline('group-pattern', {
      level: 'Metadata',
      resources: [{ group: '*' }, { group: '*.example.com', resources: ['widgets'] }],
    }),
    path: 'spec.policy.rules[0].resources[1].group',
    caughtBy: 'schema',
  },
  {
    name: 'a group with its version',
    manifest: rulePipeline('group-version', {
      level: 'Metadata',
      resources: [{ group: 'apps' }, { group: 'apps/v1', resources: ['deployments'] }],
    }),
    path: 'spec.policy.rules[0].resources[1].group',
    caughtBy: 'schema',
  },
  {
    name: 'resourceNames without resources',
    manifest: rulePipeline('names-without-resources', {
      level: 'Metadata',
      resources: [{ group: '', resourceNames: ['kube-root-ca.crt'] }],
    }),
    path: 'spec.policy.rules[0].resources[0].resourceNames',
    caughtBy: 'cel',
  },
  {
    name: 'a policy omitStages entry that is no stage',
    manifest: policyPipeline('policy-bad-omit', { omitStages: ['Finished'], ...CATCH_ALL }),
    path: 'spec.policy.omitStages[0]',
    caughtBy: 'schema',
  },
  {
    name: 'a rule omitStages entry that is no stage',
    manifest: rulePipeline('rule-bad-omit', { level: 'Metadata', omitStages: ['Finished'] }),
    path: 'spec.policy.rules[0].omitStages[0]',
    caughtBy: 'schema',
  },
  {
    name: 'a pasted Policy of an apiVersion that does not exist',
    manifest: policyPipeline('policy-v2', { apiVersion: 'audit.k8s.io/v2', ...CATCH_ALL }),
    path: 'spec.policy.apiVersion',
    caughtBy: 'schema',
  },
  {
    name: 'a pasted Policy kind without apiVersion',
    manifest: policyPipeline('policy-kind-only', { kind: 'Policy', ...CATCH_ALL }),
    path: 'spec.policy.apiVersion',
    caughtBy: 'cel',
  },
  {
    name: 'a pasted document that is no Policy',
    manifest: policyPipeline('policy-list', {
      apiVersion: 'audit.k8s.io/v1',
      kind: 'PolicyList',
      ...CATCH_ALL,
    }),
    path: 'spec.policy.kind',
    caughtBy: 'schema',
  },

  // AuditPipeline receiver (SPEC 4.2).
  {
    name: 'a dedicated receiver on a privileged port',
    manifest: pipeline('receiver-port-443', {
      policy: CATCH_ALL,
      influxdb: INFLUX,
      receiver: { port: 443 },
    }),
    path: 'spec.receiver.port',
    caughtBy: 'schema',
  },
  {
    name: 'a receiver TLS Secret without a dedicated port',
    manifest: pipeline('receiver-tls-no-port', {
      policy: CATCH_ALL,
      influxdb: INFLUX,
      receiver: { tlsSecretName: 'trail-tls' },
    }),
    path: 'spec.receiver.tlsSecretName',
    caughtBy: 'cel',
  },
];

/**
 * Whether an error text names `path` as a field: followed by `:`, `[`, `"` or the end, so that
 * `spec.policy` is not found inside `spec.policy.level`.
 */
export function namesField(text: string, path: string): boolean {
  const escaped = path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[\\s"'(])${escaped}(?=[:["]|$)`, 'm').test(text);
}
