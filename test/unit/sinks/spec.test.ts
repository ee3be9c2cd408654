// Building sinks from AuditSink and AuditPipeline resources: the revived auditregistration API,
// pipeline policies, destinations, scope, and field-path errors. Pure: starts no process.
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { decideLevel } from '../../../src/policy/enforce.ts';
import { decodePolicyBody } from '../../../src/policy/load.ts';
import {
  SINK_API_VERSION,
  type SinkSettings,
  SinkSpecError,
  sinkFromResource,
} from '../../../src/sinks/spec.ts';
import { SELECTABLE_FIELDS, TAG_NAMES } from '../../../src/outputs/influxdb/schema.ts';
import type { Sink } from '../../../src/sinks/types.ts';
import {
  auditSinkResource as auditSink,
  type Json,
  PEM_CERTIFICATE as PEM,
  pipelineResource as pipeline,
} from '../../support/resources.ts';

/** The operator's settings: its own namespace sees every namespace; a destination is required. */
const OPERATOR: SinkSettings = { clusterWideNamespaces: ['kube-audit'], requireDestination: true };
/** Standalone mode: a sink without destination gets the embedded line-protocol file. */
const STANDALONE: SinkSettings = { clusterWideNamespaces: [], requireDestination: false };

const INFLUX = { url: 'http://influxdb.monitoring:8086', org: 'platform', bucket: 'audit' };
const CATCH_ALL = { rules: [{ level: 'Metadata' }] };

/** A pipeline whose influxdb block is INFLUX with `overrides` applied. */
function influxPipeline(overrides: Json): Json {
  return pipeline({ policy: CATCH_ALL, influxdb: { ...INFLUX, ...overrides } });
}

/** An AuditSink forwarding to a webhook whose clientConfig is `clientConfig`. */
function webhookSink(clientConfig: Json): Json {
  return auditSink({
    policy: { level: 'Metadata', stages: ['ResponseComplete'] },
    webhook: { clientConfig },
  });
}

function rejection(resource: unknown, settings: SinkSettings = OPERATOR): SinkSpecError {
  try {
    sinkFromResource(resource, settings);
  } catch (err) {
    if (err instanceof SinkSpecError) return err;
    throw err;
  }
  throw new Error('expected the resource to be rejected');
}

function problemsOf(resource: unknown, settings: SinkSettings = OPERATOR): readonly string[] {
  return rejection(resource, settings).problems;
}

/** The sink without its compiled policy, which is an implementation detail to compare. */
function shape(sink: Sink): Omit<Sink, 'compiledPolicy'> {
  const { compiledPolicy: _compiled, ...rest } = sink;
  return rest;
}

function event(stage: AuditEvent['stage']): AuditEvent {
  return {
    level: 'RequestResponse',
    auditID: `e-${stage}`,
    stage,
    requestURI: '/api/v1/namespaces/shop/configmaps/settings',
    verb: 'get',
    user: { username: 'admin', groups: ['system:masters'] },
    objectRef: { resource: 'configmaps', namespace: 'shop', name: 'settings', apiVersion: 'v1' },
    stageTimestamp: '2021-01-20T10:00:00.000000Z',
  };
}

describe('AuditSink: the removed auditregistration.k8s.io/v1alpha1 API, revived', () => {
  // The manifest of the Kubernetes 1.13 documentation, with only apiVersion changed.
  const migrated = {
    apiVersion: 'kube-audit.dev/v1alpha1',
    kind: 'AuditSink',
    metadata: { name: 'mysink', generation: 3 },
    spec: {
      policy: { level: 'Metadata', stages: ['ResponseComplete'] },
      webhook: {
        throttle: { qps: 10, burst: 15 },
        clientConfig: { url: 'https://audit.example.com/audit' },
      },
    },
  };

  it('migrates an old manifest by changing apiVersion only', () => {
    const sink = sinkFromResource(migrated, OPERATOR);
    expect(shape(sink)).toEqual({
      ref: { kind: 'AuditSink', namespace: '', name: 'mysink' },
      key: 'AuditSink/mysink',
      label: 'mysink',
      generation: 3,
      policy: {
        rules: [{ level: 'Metadata' }],
        omitStages: ['RequestReceived', 'ResponseStarted', 'Panic'],
      },
      scope: { namespace: null },
      webhook: { url: 'https://audit.example.com/audit', qps: 10, burst: 15 },
      warnings: [],
    });
  });

  it('keeps only the listed stages, at the listed level, as the dynamic backend did', () => {
    const sink = sinkFromResource(migrated, OPERATOR);
    const complete = decideLevel(sink.compiledPolicy, event('ResponseComplete'));
    expect(complete).toMatchObject({ level: 'Metadata', emitted: true, ruleIndex: 0 });
    for (const stage of ['RequestReceived', 'ResponseStarted', 'Panic'] as const) {
      expect(decideLevel(sink.compiledPolicy, event(stage)).emitted).toBe(false);
    }
  });

  it('keeps every stage when all four are listed, without an omitStages', () => {
    const sink = sinkFromResource(
      auditSink({
        policy: {
          level: 'Request',
          stages: ['RequestReceived', 'ResponseStarted', 'ResponseComplete', 'Panic'],
        },
        webhook: migrated.spec.webhook,
      }),
      OPERATOR,
    );
    expect(sink.policy).toEqual({ rules: [{ level: 'Request' }] });
  });

  it('defaults the throttle to 10 batches per second with a burst of 15', () => {
    const sink = sinkFromResource(webhookSink({ url: 'https://audit.example.com/' }), OPERATOR);
    expect(sink.webhook).toEqual({ url: 'https://audit.example.com/', qps: 10, burst: 15 });
  });

  it('takes the throttle as given, defaulting only the missing half', () => {
    const throttled = (throttle: Json) =>
      sinkFromResource(
        auditSink({
          policy: { level: 'Metadata', stages: ['ResponseComplete'] },
          webhook: { throttle, clientConfig: { url: 'https://audit.example.com/' } },
        }),
        OPERATOR,
      ).webhook;
    expect(throttled({ qps: 2, burst: 4 })).toMatchObject({ qps: 2, burst: 4 });
    expect(throttled({ qps: 2 })).toMatchObject({ qps: 2, burst: 15 });
    expect(throttled({ burst: 40 })).toMatchObject({ qps: 10, burst: 40 });
  });

  it('sees every namespace, whatever the operator settings', () => {
    const sink = sinkFromResource(migrated, { ...OPERATOR, clusterWideNamespaces: [] });
    expect(sink.scope).toEqual({ namespace: null });
  });

  it('accepts level None without stages, as upstream validation does', () => {
    const sink = sinkFromResource(auditSink({ policy: { level: 'None' } }), STANDALONE);
    expect(sink.policy).toEqual({ rules: [{ level: 'None' }] });
  });

  it('requires stages unless the level is None', () => {
    expect(problemsOf(auditSink({ policy: { level: 'Metadata' } }), STANDALONE)).toEqual([
      'spec.policy.stages: Required value: the stages to keep, unless level is None',
    ]);
    expect(
      problemsOf(auditSink({ policy: { level: 'Metadata', stages: [] } }), STANDALONE),
    ).toEqual(['spec.policy.stages: Required value: the stages to keep, unless level is None']);
  });

  it('names the bad level and each bad stage by its path', () => {
    expect(
      problemsOf(
        auditSink({ policy: { level: 'Everything', stages: ['ResponseComplete', 'Done'] } }),
        STANDALONE,
      ),
    ).toEqual([
      'spec.policy.level: Unsupported value: "Everything": supported values: "None", "Metadata", "Request", "RequestResponse"',
      'spec.policy.stages[1]: Unsupported value: "Done": supported values: "RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"',
    ]);
  });

  it('does not add "stages required" on top of a bad stage', () => {
    expect(
      problemsOf(auditSink({ policy: { level: 'Metadata', stages: ['Done'] } }), STANDALONE),
    ).toEqual([expect.stringMatching(/^spec\.policy\.stages\[0\]: Unsupported value: "Done"/)]);
  });

  it('requires a policy with a level', () => {
    expect(problemsOf(auditSink({}), STANDALONE)).toEqual(['spec.policy: Required value']);
    expect(problemsOf(auditSink({ policy: { stages: ['Panic'] } }), STANDALONE)).toEqual([
      'spec.policy.level: Required value',
    ]);
  });

  it('rejects a dedicated listener in spec.receiver: dedicated receivers are a pipeline setting', () => {
    expect(
      problemsOf(
        auditSink({
          policy: { level: 'Metadata', stages: ['ResponseComplete'] },
          influxdb: INFLUX,
          receiver: { port: 9443 },
        }),
      ),
    ).toEqual([
      'spec.receiver.port: unknown field: dedicated receivers are an AuditPipeline setting',
    ]);
  });

  it('treats spec.receiver: null as absent, as it does spec.influxdb: null and a pipeline does', () => {
    // Bug: the AuditSink branch tests `spec.receiver !== undefined`, so an empty `receiver:` key
    // (null in YAML) is rejected, while the pipeline branch and every other field accept null.
    const sink = sinkFromResource(
      auditSink({
        policy: { level: 'Metadata', stages: ['ResponseComplete'] },
        influxdb: INFLUX,
        receiver: null,
      }),
      OPERATOR,
    );
    expect(sink.receiver).toBeUndefined();
  });
});

describe('webhook clientConfig', () => {
  it('resolves a service reference the way the apiserver does, on port 443 by default', () => {
    const sink = sinkFromResource(
      webhookSink({ service: { namespace: 'logging', name: 'collector', path: '/audit' } }),
      OPERATOR,
    );
    expect(sink.webhook?.url).toBe('https://collector.logging.svc:443/audit');
  });

  it('uses the service port when given, and no path when none is given', () => {
    const sink = sinkFromResource(
      webhookSink({ service: { namespace: 'logging', name: 'collector', port: 8443 } }),
      OPERATOR,
    );
    expect(sink.webhook?.url).toBe('https://collector.logging.svc:8443');
  });

  it('names the missing parts of a service reference', () => {
    expect(problemsOf(webhookSink({ service: { name: 'collector', path: 'audit' } }))).toEqual(
      expect.arrayContaining([
        'spec.webhook.clientConfig.service.namespace: Required value',
        'spec.webhook.clientConfig.service.path: Invalid value: "audit": must start with "/"',
      ]),
    );
  });

  it('decodes a base64 caBundle, as the Kubernetes API carries []byte', () => {
    const sink = sinkFromResource(
      webhookSink({
        url: 'https://audit.example.com/',
        caBundle: Buffer.from(PEM).toString('base64'),
      }),
      OPERATOR,
    );
    expect(sink.webhook?.caBundle).toBe(PEM);
  });

  it('accepts a caBundle written as PEM text', () => {
    const sink = sinkFromResource(
      webhookSink({ url: 'https://audit.example.com/', caBundle: PEM }),
      OPERATOR,
    );
    expect(sink.webhook?.caBundle).toBe(PEM);
  });

  it.each([
    ['base64 of something else', Buffer.from('not a certificate').toString('base64')],
    ['a PEM private key', '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n'],
  ])('rejects a caBundle that holds no certificate: %s', (_what, caBundle) => {
    expect(problemsOf(webhookSink({ url: 'https://audit.example.com/', caBundle }))).toEqual([
      'spec.webhook.clientConfig.caBundle: Invalid value: no PEM certificate found (expected base64-encoded PEM)',
    ]);
  });

  it('accepts an http URL, as the removed API did, so old manifests migrate unchanged', () => {
    const sink = sinkFromResource(webhookSink({ url: 'http://audit.example.com/' }), OPERATOR);
    expect(sink.webhook?.url).toBe('http://audit.example.com/');
  });

  it('refuses a webhook URL with a scheme other than http(s)', () => {
    expect(problemsOf(webhookSink({ url: 'ftp://audit.example.com/' }))).toContain(
      'spec.webhook.clientConfig.url: Invalid value: "ftp://audit.example.com/": the scheme must be http or https',
    );
  });

  it('refuses a fragment in the webhook URL', () => {
    expect(problemsOf(webhookSink({ url: 'https://audit.example.com/#events' }))).toContain(
      'spec.webhook.clientConfig.url: Invalid value: "https://audit.example.com/#events": fragments are not allowed',
    );
  });

  it('requires exactly one of url and service', () => {
    const both = webhookSink({
      url: 'https://audit.example.com/',
      service: { namespace: 'logging', name: 'collector' },
    });
    expect(problemsOf(both)).toContain(
      'spec.webhook.clientConfig: Required value: exactly one of url or service',
    );
    expect(problemsOf(webhookSink({}))).toContain(
      'spec.webhook.clientConfig: Required value: exactly one of url or service',
    );
  });

  it('refuses credentials in the URL', () => {
    expect(problemsOf(webhookSink({ url: 'https://audit:hunter2@audit.example.com/' }))).toContain(
      'spec.webhook.clientConfig.url: Invalid value: credentials do not belong in the URL: use a token Secret',
    );
  });

  it('refuses a throttle without a webhook to throttle', () => {
    expect(
      problemsOf(
        auditSink({
          policy: { level: 'Metadata', stages: ['ResponseComplete'] },
          influxdb: INFLUX,
          webhook: { throttle: { qps: 5 } },
        }),
      ),
    ).toEqual([
      'spec.webhook.clientConfig: Required value: a throttle needs a webhook to throttle',
    ]);
  });
});

describe('AuditPipeline', () => {
  const policy = {
    omitStages: ['RequestReceived'],
    omitManagedFields: true,
    rules: [
      { level: 'None', users: ['system:kube-proxy'], verbs: ['watch'] },
      {
        level: 'RequestResponse',
        resources: [{ group: '', resources: ['configmaps'] }],
        omitManagedFields: false,
      },
      { level: 'Metadata', omitStages: ['ResponseStarted'] },
    ],
  };

  it('builds the InfluxDB destination from a full spec', () => {
    const sink = sinkFromResource(
      pipeline({
        policy,
        influxdb: {
          url: 'https://influx.example.com',
          org: 'platform',
          bucket: 'audit-shop',
          tokenSecretRef: { name: 'influx-token', key: 'token' },
          createBucket: true,
          retention: '30d',
          batchSize: 500,
          flushInterval: '500ms',
          tags: ['user', 'verb', 'namespace', 'level'],
          staticTags: { cluster: 'prod-eu' },
        },
      }),
      OPERATOR,
    );
    expect(shape(sink)).toEqual({
      ref: { kind: 'AuditPipeline', namespace: 'shop', name: 'orders' },
      key: 'AuditPipeline/shop/orders',
      label: 'shop/orders',
      policy,
      scope: { namespace: 'shop' },
      influxdb: {
        url: 'https://influx.example.com',
        org: 'platform',
        bucket: 'audit-shop',
        tokenSecretRef: { name: 'influx-token', key: 'token' },
        measurement: 'kubernetes_audit',
        createBucket: true,
        retentionSeconds: 2_592_000,
        batchSize: 500,
        flushIntervalMs: 500,
        // In the documented schema order, whatever order the resource lists them in.
        tags: ['level', 'verb', 'namespace', 'user'],
        staticTags: { cluster: 'prod-eu' },
      },
      warnings: [],
    });
  });

  it('pins the InfluxDB defaults: measurement, batch size, flush interval, every tag', () => {
    const sink = sinkFromResource(pipeline({ policy: CATCH_ALL, influxdb: INFLUX }), OPERATOR);
    expect(sink.influxdb).toEqual({
      ...INFLUX,
      measurement: 'kubernetes_audit',
      createBucket: false,
      retentionSeconds: 0,
      batchSize: 2_500,
      flushIntervalMs: 1_000,
      tags: [
        'level',
        'stage',
        'verb',
        'api_group',
        'api_version',
        'resource',
        'subresource',
        'namespace',
        'user',
        'code',
        'decision',
        'sink',
      ],
      staticTags: {},
    });
    expect(sink.influxdb?.tags).toEqual(TAG_NAMES);
  });

  it('reads fields in the schema order, tags written as fields among them', () => {
    const sink = sinkFromResource(
      influxPipeline({ tags: ['verb'], fields: ['namespace', 'latency_ms', 'audit_id', 'name'] }),
      OPERATOR,
    );
    expect(sink.influxdb?.fields).toEqual(['audit_id', 'name', 'latency_ms', 'namespace']);
    expect(sinkFromResource(influxPipeline({ fields: [] }), OPERATOR).influxdb?.fields).toEqual([]);
  });

  it('accepts retention 0 (keep forever) for a created bucket', () => {
    const sink = sinkFromResource(influxPipeline({ createBucket: true, retention: '0' }), OPERATOR);
    expect(sink.influxdb).toMatchObject({ createBucket: true, retentionSeconds: 0 });
  });

  it('evaluates the policy it was given', () => {
    const sink = sinkFromResource(pipeline({ policy, influxdb: INFLUX }), OPERATOR);
    expect(decideLevel(sink.compiledPolicy, event('ResponseComplete'))).toMatchObject({
      level: 'RequestResponse',
      ruleIndex: 1,
      omitManagedFields: false,
    });
  });

  it('keeps a generation it is given', () => {
    const resource = pipeline({ policy: CATCH_ALL, influxdb: INFLUX });
    (resource.metadata as Json).generation = 7;
    expect(sinkFromResource(resource, OPERATOR).generation).toBe(7);
  });

  it('reports policy problems under spec.policy, with the path of each', () => {
    expect(
      problemsOf(
        pipeline({
          policy: {
            omitStages: ['Sometimes'],
            rules: [{ level: 'Everything' }, { verbs: ['get'] }, { level: 'None' }],
          },
          influxdb: INFLUX,
        }),
      ),
    ).toEqual([
      expect.stringMatching(/^spec\.policy\.omitStages\[0\]: Invalid value: "Sometimes"/),
      expect.stringMatching(/^spec\.policy\.rules\[0\]\.level: Unsupported value: "Everything"/),
      'spec.policy.rules[1].level: Required value',
    ]);
  });

  it('reports a malformed rule by its path', () => {
    expect(problemsOf(pipeline({ policy: { rules: ['Metadata'] }, influxdb: INFLUX }))).toEqual([
      'spec.policy.rules[0]: expected a rule object, got string "Metadata"',
    ]);
  });

  it('requires a policy with at least one rule', () => {
    expect(problemsOf(pipeline({ influxdb: INFLUX }))).toEqual(['spec.policy: Required value']);
    expect(problemsOf(pipeline({ policy: {}, influxdb: INFLUX }))).toEqual([
      'spec.policy.rules: Required value: a policy needs at least one rule',
    ]);
  });

  it('names spec.policy itself when it is not an object', () => {
    for (const policyValue of ['Metadata', [{ level: 'Metadata' }]]) {
      const problems = problemsOf(pipeline({ policy: policyValue, influxdb: INFLUX }));
      expect(problems).toHaveLength(1);
      expect(problems[0]).toMatch(/^spec\.policy: expected a Policy object/);
    }
  });

  it('ignores apiVersion and kind inside spec.policy: a pasted Policy document still works', () => {
    const document = { apiVersion: 'audit.k8s.io/v1', kind: 'Policy', ...CATCH_ALL };
    const sink = sinkFromResource(pipeline({ policy: document, influxdb: INFLUX }), OPERATOR);
    expect(sink.policy).toEqual(CATCH_ALL);
    expect(sink.warnings).toEqual([]);
    expect(decodePolicyBody(document)).toEqual({ policy: CATCH_ALL, problems: [], warnings: [] });
  });

  it('checks the type of a pasted Policy document', () => {
    const wrong = { apiVersion: 'audit.k8s.io/v1alpha1', kind: 'Policy', ...CATCH_ALL };
    expect(problemsOf(pipeline({ policy: wrong, influxdb: INFLUX }))).toEqual([
      'spec.policy.apiVersion: Unsupported value: "audit.k8s.io/v1alpha1": supported values: "audit.k8s.io/v1", "audit.k8s.io/v1beta1"',
    ]);
  });

  it('hands on policy warnings, such as a mis-indented key, with their field paths', () => {
    const policy = { rules: [{ level: 'Metadata', resources: [{ group: '', verbs: ['get'] }] }] };
    const sink = sinkFromResource(pipeline({ policy, influxdb: INFLUX }), OPERATOR);
    expect(sink.warnings).toEqual([
      'spec.policy.rules[0].resources[0].verbs: unknown field, ignored (as the kube-apiserver ignores it)',
    ]);
  });

  it('scopes a pipeline to its own namespace', () => {
    const sink = sinkFromResource(pipeline({ policy: CATCH_ALL, influxdb: INFLUX }), OPERATOR);
    expect(sink.scope).toEqual({ namespace: 'shop' });
  });

  it('lets a pipeline in a cluster-wide namespace see every namespace', () => {
    const resource = pipeline({ policy: CATCH_ALL, influxdb: INFLUX }, 'kube-audit', 'all');
    expect(sinkFromResource(resource, OPERATOR).scope).toEqual({ namespace: null });
    expect(
      sinkFromResource(resource, { ...OPERATOR, clusterWideNamespaces: ['platform'] }).scope,
    ).toEqual({ namespace: 'kube-audit' });
  });

  it('accepts a dedicated receiver port and TLS Secret', () => {
    const sink = sinkFromResource(
      pipeline({
        policy: CATCH_ALL,
        influxdb: INFLUX,
        receiver: { port: 9443, tlsSecretName: 'audit-tls' },
      }),
      OPERATOR,
    );
    expect(sink.receiver).toEqual({ port: 9443, tlsSecretName: 'audit-tls' });
  });

  it('refuses a privileged receiver port', () => {
    expect(
      problemsOf(pipeline({ policy: CATCH_ALL, influxdb: INFLUX, receiver: { port: 443 } })),
    ).toEqual(['spec.receiver.port: Invalid value: 443: must be an integer from 1024 to 65535']);
  });

  it('refuses a TLS Secret without a dedicated port', () => {
    expect(
      problemsOf(
        pipeline({ policy: CATCH_ALL, influxdb: INFLUX, receiver: { tlsSecretName: 'audit-tls' } }),
      ),
    ).toEqual(['spec.receiver.tlsSecretName: Forbidden: a TLS Secret needs a dedicated port']);
  });
});

describe("a sink's own write tokens (spec.receiver.tokenSecretRef)", () => {
  const ref = { name: 'audit-writers', key: 'tokens' };

  it('keeps the reference of a pipeline, without a dedicated listener', () => {
    const sink = sinkFromResource(
      pipeline({ policy: CATCH_ALL, influxdb: INFLUX, receiver: { tokenSecretRef: ref } }),
      OPERATOR,
    );
    expect(sink.receiver).toEqual({ tokenSecretRef: ref });
  });

  it('keeps it beside a dedicated listener', () => {
    const sink = sinkFromResource(
      pipeline({
        policy: CATCH_ALL,
        influxdb: INFLUX,
        receiver: { port: 9443, tokenSecretRef: ref },
      }),
      OPERATOR,
    );
    expect(sink.receiver).toEqual({ port: 9443, tokenSecretRef: ref });
  });

  it('keeps the reference of an AuditSink', () => {
    const sink = sinkFromResource(
      auditSink({
        policy: { level: 'Metadata', stages: ['ResponseComplete'] },
        influxdb: INFLUX,
        receiver: { tokenSecretRef: ref },
      }),
      OPERATOR,
    );
    expect(sink.receiver).toEqual({ tokenSecretRef: ref });
  });

  it.each([
    [{ name: 'audit-writers' }, ['spec.receiver.tokenSecretRef.key: Required value']],
    [{ key: 'tokens' }, ['spec.receiver.tokenSecretRef.name: Required value']],
    [
      { name: 'Audit_Writers', key: 'tokens' },
      [
        'spec.receiver.tokenSecretRef.name: Invalid value: "Audit_Writers": a Secret name is a lowercase RFC 1123 subdomain',
      ],
    ],
    [
      { name: 'audit-writers', key: 'to/kens' },
      [
        'spec.receiver.tokenSecretRef.key: Invalid value: "to/kens": a Secret key is letters, digits, "-", "_" and "."',
      ],
    ],
    ['audit-writers', ['spec.receiver.tokenSecretRef: expected an object with name and key']],
  ])('refuses %j, naming the field', (value, problems) => {
    expect(
      problemsOf(
        pipeline({ policy: CATCH_ALL, influxdb: INFLUX, receiver: { tokenSecretRef: value } }),
      ),
    ).toEqual(problems);
  });
});

describe('destinations required', () => {
  it('requires InfluxDB or a webhook in the operator', () => {
    expect(problemsOf(pipeline({ policy: CATCH_ALL }))).toEqual([
      'spec: Required value: at least one of spec.influxdb and spec.webhook.clientConfig',
    ]);
  });

  it('accepts a sink without destination in standalone mode', () => {
    const sink = sinkFromResource(pipeline({ policy: CATCH_ALL }), STANDALONE);
    expect(sink.influxdb).toBeUndefined();
    expect(sink.webhook).toBeUndefined();
  });

  it('accepts a webhook alone as the destination of a pipeline', () => {
    const sink = sinkFromResource(
      pipeline({
        policy: CATCH_ALL,
        webhook: { clientConfig: { url: 'https://audit.example.com/' } },
      }),
      OPERATOR,
    );
    expect(sink.webhook).toEqual({ url: 'https://audit.example.com/', qps: 10, burst: 15 });
  });

  it('reports a broken destination once, without also claiming none was given', () => {
    // Bug: influxDestination (and webhookDestination) return undefined when the block is invalid,
    // and the destination check then adds "spec: Required value" although the block is present.
    const brokenWebhook = pipeline({ policy: CATCH_ALL, webhook: { clientConfig: {} } });
    expect({
      influxdb: problemsOf(influxPipeline({ url: undefined })),
      webhook: problemsOf(brokenWebhook),
    }).toEqual({
      influxdb: ['spec.influxdb.url: Required value'],
      webhook: ['spec.webhook.clientConfig: Required value: exactly one of url or service'],
    });
  });
});

describe('errors', () => {
  it('collects every problem of a resource at once, each starting with its field path', () => {
    const resource = {
      apiVersion: 'kube-audit.dev/v1',
      kind: 'AuditPipeline',
      metadata: { name: 'orders', namespace: 'shop' },
      spec: {
        policy: { rules: [{ level: 'Loud' }] },
        influxdb: { ...INFLUX, batchSize: 0, flushInterval: '5ms', staticTags: { user: 'x' } },
      },
    };
    const err = rejection(resource);
    expect(err.problems).toHaveLength(5);
    expect(err.problems.map((p) => p.slice(0, p.indexOf(': ')))).toEqual([
      'apiVersion',
      'spec.policy.rules[0].level',
      'spec.influxdb.batchSize',
      'spec.influxdb.flushInterval',
      'spec.influxdb.staticTags["user"]',
    ]);
  });

  it('throws a SinkSpecError with a stable code whose message names the resource', () => {
    const err = rejection(influxPipeline({ batchSize: 0 }));
    expect(err).toBeInstanceOf(Error);
    expect(err.name).toBe('SinkSpecError');
    expect(err.code).toBe('INVALID_SINK');
    expect(err.message).toBe(
      'AuditPipeline shop/orders: invalid: spec.influxdb.batchSize: Invalid value: 0: must be an integer from 1 to 100000',
    );
  });

  it('names an AuditSink by its name alone', () => {
    expect(rejection(auditSink({ policy: { level: 'Metadata' } }, 'mysink')).message).toMatch(
      /^AuditSink mysink: invalid: /,
    );
  });

  it.each([
    ['another kind', { ...pipeline({ policy: CATCH_ALL }), kind: 'AuditPolicy' }],
    ['no kind', { apiVersion: SINK_API_VERSION, metadata: { name: 'x' }, spec: {} }],
  ])('refuses %s before looking further', (_what, resource) => {
    const err = rejection(resource);
    expect(err.problems).toEqual([
      expect.stringMatching(
        /^kind: Unsupported value: .*: supported values: "AuditSink", "AuditPipeline"$/,
      ),
    ]);
  });

  it.each<[string, unknown]>([
    ['null', null],
    ['a string', 'AuditSink'],
    ['a list of resources', [auditSink({})]],
  ])('refuses a resource that is %s', (_what, resource) => {
    expect(problemsOf(resource)).toEqual(['expected an object']);
  });

  it('refuses the removed API group: only the apiVersion changes on migration', () => {
    const resource = {
      ...auditSink({ policy: { level: 'None' }, influxdb: INFLUX }),
      apiVersion: 'auditregistration.k8s.io/v1alpha1',
    };
    expect(problemsOf(resource)).toEqual([
      'apiVersion: Unsupported value: "auditregistration.k8s.io/v1alpha1": supported values: "kube-audit.dev/v1alpha1"',
    ]);
  });

  it('requires metadata.name', () => {
    const resource = {
      ...auditSink({ policy: { level: 'None' }, influxdb: INFLUX }),
      metadata: {},
    };
    expect(problemsOf(resource)).toEqual(['metadata.name: Required value']);
  });

  it('requires metadata.namespace of a pipeline', () => {
    const resource = { ...influxPipeline({}), metadata: { name: 'orders' } };
    expect(problemsOf(resource)).toEqual(['metadata.namespace: Required value']);
  });

  it('requires spec', () => {
    const { spec: _spec, ...resource } = influxPipeline({});
    const err = rejection(resource);
    expect(err.problems).toEqual(['spec: Required value']);
    expect(err.message).toBe('AuditPipeline shop/orders: invalid: spec: Required value');
  });
});

describe('InfluxDB destination validation', () => {
  it.each<[string, Json, string]>([
    ['the url', { url: '' }, 'spec.influxdb.url: Required value'],
    ['the org', { org: undefined }, 'spec.influxdb.org: Required value'],
    ['the bucket', { bucket: '' }, 'spec.influxdb.bucket: Required value'],
  ])('requires %s', (_what, overrides, problem) => {
    // toContain: these also draw a spurious "spec: Required value" (see the destinations tests).
    expect(problemsOf(influxPipeline(overrides))).toContain(problem);
  });

  it.each<[string, Json, string]>([
    [
      'a URL scheme other than http(s)',
      { url: 'udp://influxdb:8089' },
      'spec.influxdb.url: Invalid value: "udp://influxdb:8089": the scheme must be http or https',
    ],
    [
      'text that is no URL',
      { url: 'influxdb:8086' },
      'spec.influxdb.url: Invalid value: "influxdb:8086": the scheme must be http or https',
    ],
  ])('rejects %s as the url', (_what, overrides, problem) => {
    expect(problemsOf(influxPipeline(overrides))).toContain(problem);
  });

  it.each<[string, Json, string]>([
    [
      'a retention under one hour',
      { createBucket: true, retention: '30m' },
      'spec.influxdb.retention: Invalid value: "30m": InfluxDB needs at least 1h, or 0 to keep data forever',
    ],
    [
      'a retention that is no duration',
      { createBucket: true, retention: 'a month' },
      'spec.influxdb.retention: Invalid value: "a month": invalid duration "a month" at "a month": use e.g. "30s", "1h30m" or "30d"',
    ],
    [
      'a retention without createBucket',
      { retention: '30d' },
      'spec.influxdb.retention: Forbidden: retention applies only to a bucket the operator creates (createBucket: true)',
    ],
    [
      'a batch size of 0',
      { batchSize: 0 },
      'spec.influxdb.batchSize: Invalid value: 0: must be an integer from 1 to 100000',
    ],
    [
      'a batch size of a million',
      { batchSize: 1e6 },
      'spec.influxdb.batchSize: Invalid value: 1000000: must be an integer from 1 to 100000',
    ],
    [
      'a fractional batch size',
      { batchSize: 10.5 },
      'spec.influxdb.batchSize: Invalid value: 10.5: must be an integer from 1 to 100000',
    ],
    [
      'a flush interval of 5ms',
      { flushInterval: '5ms' },
      'spec.influxdb.flushInterval: Invalid value: "5ms": must be between 10ms and 1h',
    ],
    [
      'a flush interval over an hour',
      { flushInterval: '2h' },
      'spec.influxdb.flushInterval: Invalid value: "2h": must be between 10ms and 1h',
    ],
    [
      'an unknown tag name',
      { tags: ['verb', 'pod'] },
      'spec.influxdb.tags[1]: Unsupported value: "pod": supported values: "level", "stage", "verb", "api_group", "api_version", "resource", "subresource", "namespace", "user", "code", "decision", "sink"',
    ],
    [
      'a duplicate tag',
      { tags: ['verb', 'user', 'verb'] },
      'spec.influxdb.tags[2]: Duplicate value: "verb"',
    ],
    [
      'an unknown field name',
      { fields: ['request_uri', 'pod'] },
      `spec.influxdb.fields[1]: Unsupported value: "pod": supported values: ${SELECTABLE_FIELDS.map((f) => `"${f}"`).join(', ')}`,
    ],
    [
      'a field listed twice',
      { fields: ['name', 'name'] },
      'spec.influxdb.fields[1]: Duplicate value: "name"',
    ],
    [
      'a tag written as a tag by default listed in fields',
      { fields: ['request_uri', 'verb'] },
      'spec.influxdb.fields: Invalid value: a tag written as a tag (see tags; all of them by default) cannot be listed in fields',
    ],
    [
      'a tag written as a tag listed in fields',
      { tags: ['verb', 'user'], fields: ['namespace', 'user'] },
      'spec.influxdb.fields: Invalid value: a tag written as a tag (see tags; all of them by default) cannot be listed in fields',
    ],
    [
      'a static tag shadowing a schema tag',
      { staticTags: { user: 'ops' } },
      'spec.influxdb.staticTags["user"]: Invalid value: "user" is a tag or field of the audit schema',
    ],
    [
      'a static tag shadowing a schema field',
      { staticTags: { audit_id: 'x' } },
      'spec.influxdb.staticTags["audit_id"]: Invalid value: "audit_id" is a tag or field of the audit schema',
    ],
    [
      'a static tag value with a line break',
      { staticTags: { cluster: 'prod\neu' } },
      'spec.influxdb.staticTags["cluster"]: Invalid value: line protocol cannot carry a line break in a tag',
    ],
    [
      'an empty static tag value',
      { staticTags: { cluster: '' } },
      'spec.influxdb.staticTags["cluster"]: Invalid value: must be a non-empty string',
    ],
    [
      'a Secret name that is no RFC 1123 subdomain',
      { tokenSecretRef: { name: 'Influx_Token', key: 'token' } },
      'spec.influxdb.tokenSecretRef.name: Invalid value: "Influx_Token": a Secret name is a lowercase RFC 1123 subdomain',
    ],
    [
      'a Secret key with a slash',
      { tokenSecretRef: { name: 'influx-token', key: 'auth/token' } },
      'spec.influxdb.tokenSecretRef.key: Invalid value: "auth/token": a Secret key is letters, digits, "-", "_" and "."',
    ],
    [
      'a Secret reference without key',
      { tokenSecretRef: { name: 'influx-token' } },
      'spec.influxdb.tokenSecretRef.key: Required value',
    ],
  ])('rejects %s', (_what, overrides, problem) => {
    expect(problemsOf(influxPipeline(overrides))).toEqual([problem]);
  });

  it('accepts the edges of the ranges: batch size 1 and 100000, flush 10ms and 1h', () => {
    for (const [batchSize, flushInterval, ms] of [
      [1, '10ms', 10],
      [100_000, '1h', 3_600_000],
    ] as const) {
      const sink = sinkFromResource(influxPipeline({ batchSize, flushInterval }), OPERATOR);
      expect(sink.influxdb).toMatchObject({ batchSize, flushIntervalMs: ms });
    }
  });

  it('accepts a 1.8 database/retention-policy bucket and a dotted Secret name', () => {
    const sink = sinkFromResource(
      influxPipeline({
        bucket: 'audit/autogen',
        tokenSecretRef: { name: 'influx.token', key: 'INFLUX_TOKEN' },
      }),
      OPERATOR,
    );
    expect(sink.influxdb).toMatchObject({
      bucket: 'audit/autogen',
      tokenSecretRef: { name: 'influx.token', key: 'INFLUX_TOKEN' },
    });
  });
});

describe('names InfluxDB would refuse or hide', () => {
  const CATCH_ALL_POLICY = { rules: [{ level: 'Metadata' }] };

  it.each(['#audit', 'audit"log', 'a=b', 'with space', ''])(
    'rejects the measurement %j',
    (measurement) => {
      const problems = problemsOf(
        pipeline({ policy: CATCH_ALL_POLICY, influxdb: { ...INFLUX, measurement } }),
      );
      expect(problems).toEqual([
        expect.stringMatching(/^spec\.influxdb\.measurement: Invalid value/),
      ]);
    },
  );

  it.each(['time', '_field', '_measurement', '_value', 'request_object_bytes', 'user_full'])(
    'rejects the static tag %j, which collides with InfluxDB or the schema',
    (tag) => {
      const problems = problemsOf(
        pipeline({ policy: CATCH_ALL_POLICY, influxdb: { ...INFLUX, staticTags: { [tag]: 'x' } } }),
      );
      expect(problems).toEqual([
        `spec.influxdb.staticTags[${JSON.stringify(tag)}]: Invalid value: ${JSON.stringify(tag)} is a tag or field of the audit schema`,
      ]);
    },
  );
});
