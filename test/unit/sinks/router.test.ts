// Routing received events to sinks: tenant scope, each sink's policy, credential redaction, and
// the events recorded from a real kube-apiserver 1.20. Pure: starts no process.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PARSE_LIMITS, parseAuditPayload } from '../../../src/audit/parse.ts';
import type { AuditEvent, JsonValue } from '../../../src/audit/types.ts';
import type { RequestAttributes } from '../../../src/policy/attributes.ts';
import {
  carriesCredentials,
  type RoutingSettings,
  routeEvent,
  type SinkOutcome,
} from '../../../src/sinks/router.ts';
import { type SinkSettings, sinkFromResource } from '../../../src/sinks/spec.ts';
import type { Sink } from '../../../src/sinks/types.ts';
import { auditSinkResource, pipelineResource } from '../../support/resources.ts';

// Standalone settings: no destination needed; `kube-audit` is the operator's own namespace.
const SINK_SETTINGS: SinkSettings = {
  clusterWideNamespaces: ['kube-audit'],
  requireDestination: false,
};
const REDACT: RoutingSettings = { allowSecretPayloads: false };
const ALLOW_SECRETS: RoutingSettings = { allowSecretPayloads: true };

const EVERYTHING = { rules: [{ level: 'RequestResponse' }] };
const CATCH_METADATA = { rules: [{ level: 'Metadata' }] };

function pipeline(namespace: string, policy: unknown = EVERYTHING, name = 'trail'): Sink {
  return sinkFromResource(pipelineResource({ policy }, namespace, name), SINK_SETTINGS);
}

function auditSink(level: string, stages: string[], name = 'legacy'): Sink {
  return sinkFromResource(auditSinkResource({ policy: { level, stages } }, name), SINK_SETTINGS);
}

const managed = [{ manager: 'kubectl', operation: 'Update', fieldsV1: { 'f:data': {} } }];

function configMap(namespace: string): JsonValue {
  return {
    kind: 'ConfigMap',
    apiVersion: 'v1',
    metadata: { name: 'settings', namespace, managedFields: managed },
    data: { mode: 'fast' },
  };
}

/** An update of configmap `settings` in `namespace`, recorded at RequestResponse. */
function configMapUpdate(namespace: string, overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    level: 'RequestResponse',
    auditID: `cm-${namespace}`,
    stage: 'ResponseComplete',
    requestURI: `/api/v1/namespaces/${namespace}/configmaps/settings`,
    verb: 'update',
    user: { username: 'admin', groups: ['system:masters', 'system:authenticated'] },
    objectRef: { resource: 'configmaps', namespace, name: 'settings', apiVersion: 'v1' },
    responseStatus: { code: 200 },
    requestObject: configMap(namespace),
    responseObject: configMap(namespace),
    stageTimestamp: '2021-01-20T10:00:00.000000Z',
    ...overrides,
  };
}

const createNamespace: AuditEvent = {
  level: 'RequestResponse',
  auditID: 'ns-create',
  stage: 'ResponseComplete',
  requestURI: '/api/v1/namespaces?fieldManager=kubectl-create',
  verb: 'create',
  user: { username: 'admin', groups: ['system:masters'] },
  objectRef: { resource: 'namespaces', name: 'shop', apiVersion: 'v1' },
  requestObject: { kind: 'Namespace', apiVersion: 'v1', metadata: { name: 'shop' } },
  responseObject: { kind: 'Namespace', apiVersion: 'v1', metadata: { name: 'shop' } },
  stageTimestamp: '2021-01-20T10:00:00.000000Z',
};

const getClusterRole: AuditEvent = {
  level: 'Metadata',
  auditID: 'clusterrole-get',
  stage: 'ResponseComplete',
  requestURI: '/apis/rbac.authorization.k8s.io/v1/clusterroles/admin',
  verb: 'get',
  user: { username: 'admin', groups: ['system:masters'] },
  objectRef: {
    resource: 'clusterroles',
    name: 'admin',
    apiGroup: 'rbac.authorization.k8s.io',
    apiVersion: 'v1',
  },
  stageTimestamp: '2021-01-20T10:00:00.000000Z',
};

const getVersion: AuditEvent = {
  level: 'Metadata',
  auditID: 'version',
  stage: 'ResponseComplete',
  requestURI: '/version?timeout=32s',
  verb: 'get',
  user: { username: 'admin', groups: ['system:masters'] },
  stageTimestamp: '2021-01-20T10:00:00.000000Z',
};

/** A create of a ClusterRole whose body claims namespace `shop`: the URL addresses no namespace. */
const sneakyClusterRole: AuditEvent = {
  level: 'RequestResponse',
  auditID: 'sneaky',
  stage: 'ResponseComplete',
  requestURI: '/apis/rbac.authorization.k8s.io/v1/clusterroles?fieldManager=kubectl-create',
  verb: 'create',
  user: { username: 'admin', groups: ['system:masters'] },
  objectRef: {
    resource: 'clusterroles',
    namespace: 'shop',
    name: 'escalate',
    apiGroup: 'rbac.authorization.k8s.io',
    apiVersion: 'v1',
  },
  requestObject: { kind: 'ClusterRole', metadata: { name: 'escalate', namespace: 'shop' } },
  stageTimestamp: '2021-01-20T10:00:00.000000Z',
};

/** The event without its request and response objects, as Metadata keeps it. */
function withoutBodies(event: AuditEvent): AuditEvent {
  const { requestObject: _request, responseObject: _response, ...rest } = event;
  return rest;
}

function only(outcomes: SinkOutcome[]): SinkOutcome {
  expect(outcomes).toHaveLength(1);
  return outcomes[0] as SinkOutcome;
}

/** The event a sink kept; fails the test when it dropped it. */
function kept(outcome: SinkOutcome): AuditEvent {
  if (!outcome.kept) throw new Error(`expected ${outcome.sink.key} to keep the event`);
  return outcome.event;
}

function keptEvent(event: AuditEvent, sink: Sink, settings = REDACT): AuditEvent {
  return kept(only(routeEvent(event, [sink], settings)));
}

describe('tenant scope', () => {
  const shop = pipeline('shop');

  it('keeps the events of its own namespace', () => {
    expect(only(routeEvent(configMapUpdate('shop'), [shop], REDACT)).kept).toBe(true);
  });

  it.each([
    ['another namespace', configMapUpdate('billing')],
    ['a namespace creation', createNamespace],
    ['a cluster-scoped resource', getClusterRole],
    ['a non-resource request', getVersion],
  ])('drops %s for reason namespace, before evaluating its policy', (_what, event) => {
    const outcome = only(routeEvent(event, [shop], REDACT));
    expect(outcome).toEqual({ sink: shop, kept: false, reason: 'namespace' });
  });

  it('does not deliver a create whose body names the tenant while its URL names no namespace', () => {
    expect(only(routeEvent(sneakyClusterRole, [shop], REDACT))).toMatchObject({
      kept: false,
      reason: 'namespace',
    });
  });

  it.each([
    ['a cluster-wide pipeline', pipeline('kube-audit')],
    ['an AuditSink', auditSink('RequestResponse', ['ResponseComplete'])],
  ])('lets %s see every namespace, cluster-scoped and non-resource requests', (_what, sink) => {
    for (const event of [
      configMapUpdate('shop'),
      configMapUpdate('billing'),
      createNamespace,
      getClusterRole,
      getVersion,
      sneakyClusterRole,
    ]) {
      expect(only(routeEvent(event, [sink], REDACT)).kept).toBe(true);
    }
  });

  it('still applies the policy of a cluster-wide sink', () => {
    const sink = pipeline('kube-audit', {
      rules: [{ level: 'None', nonResourceURLs: ['/version'] }, { level: 'Metadata' }],
    });
    expect(only(routeEvent(getVersion, [sink], REDACT))).toMatchObject({
      kept: false,
      reason: 'policy',
    });
    expect(only(routeEvent(getClusterRole, [sink], REDACT)).kept).toBe(true);
  });

  it('answers for every sink, in the order given', () => {
    const billing = pipeline('billing');
    const outcomes = routeEvent(configMapUpdate('billing'), [shop, billing], REDACT);
    expect(outcomes.map((o) => [o.sink.key, o.kept])).toEqual([
      ['AuditPipeline/shop/trail', false],
      ['AuditPipeline/billing/trail', true],
    ]);
  });
});

describe('policy', () => {
  it('drops what the policy drops, for reason policy, with the decision', () => {
    const sink = pipeline('shop', {
      rules: [
        { level: 'None', resources: [{ group: '', resources: ['configmaps'] }] },
        { level: 'Metadata' },
      ],
    });
    const outcome = only(routeEvent(configMapUpdate('shop'), [sink], REDACT));
    expect(outcome).toMatchObject({
      kept: false,
      reason: 'policy',
      decision: { level: 'None', ruleLevel: 'None', emitted: false, ruleIndex: 0 },
    });
  });

  it('drops an omitted stage for reason policy', () => {
    const sink = pipeline('shop', {
      omitStages: ['RequestReceived'],
      rules: [{ level: 'Metadata' }],
    });
    const outcome = only(
      routeEvent(configMapUpdate('shop', { stage: 'RequestReceived' }), [sink], REDACT),
    );
    expect(outcome).toMatchObject({
      kept: false,
      reason: 'policy',
      decision: { level: 'Metadata', emitted: false, omitStages: ['RequestReceived'] },
    });
  });

  it('trims a kept event to the decided level', () => {
    const request = keptEvent(
      configMapUpdate('shop'),
      pipeline('shop', { rules: [{ level: 'Request' }] }),
    );
    expect(request.level).toBe('Request');
    expect(request.requestObject).toEqual(configMap('shop'));
    expect(request).not.toHaveProperty('responseObject');

    const metadata = keptEvent(configMapUpdate('shop'), pipeline('shop', CATCH_METADATA));
    expect(metadata.level).toBe('Metadata');
    expect(metadata).not.toHaveProperty('requestObject');
    expect(metadata).not.toHaveProperty('responseObject');
  });

  it('never raises an event above the level it was recorded at', () => {
    const recorded = configMapUpdate('shop', { level: 'Metadata' });
    delete recorded.requestObject;
    delete recorded.responseObject;
    const outcome = only(routeEvent(recorded, [pipeline('shop')], REDACT));
    expect(outcome).toMatchObject({
      kept: true,
      decision: { level: 'Metadata', captureInsufficient: true },
    });
    expect(kept(outcome)).toEqual(recorded);
  });

  it('removes managedFields when the policy says so', () => {
    const event = keptEvent(
      configMapUpdate('shop'),
      pipeline('shop', { omitManagedFields: true, rules: [{ level: 'RequestResponse' }] }),
    );
    expect(event.requestObject).toEqual({
      kind: 'ConfigMap',
      apiVersion: 'v1',
      metadata: { name: 'settings', namespace: 'shop' },
      data: { mode: 'fast' },
    });
    expect(event.responseObject).toEqual(event.requestObject);
  });

  it('never mutates the received event, and gives each sink its own trimmed copy', () => {
    const event = configMapUpdate('shop');
    const before = structuredClone(event);
    const metadataSink = pipeline('shop', CATCH_METADATA, 'metadata');
    const strippedSink = pipeline(
      'shop',
      { omitManagedFields: true, rules: [{ level: 'RequestResponse' }] },
      'stripped',
    );
    const fullSink = pipeline('shop', EVERYTHING, 'full');

    const [metadata, stripped, full] = routeEvent(
      event,
      [metadataSink, strippedSink, fullSink],
      REDACT,
    ).map(kept);

    expect(event).toEqual(before);
    expect(metadata).toEqual({ ...withoutBodies(before), level: 'Metadata' });
    expect(stripped?.requestObject).toEqual({
      kind: 'ConfigMap',
      apiVersion: 'v1',
      metadata: { name: 'settings', namespace: 'shop' },
      data: { mode: 'fast' },
    });
    expect(full).toEqual(before);
    expect(metadata).not.toBe(event);
    expect(stripped).not.toBe(event);
    expect(stripped).not.toBe(metadata);
    // The copy with managedFields removed shares nothing mutable on the path it changed.
    expect(stripped?.requestObject).not.toBe(event.requestObject);
  });
});

describe('credential redaction', () => {
  const secret = {
    kind: 'Secret',
    apiVersion: 'v1',
    metadata: { name: 'tls-key', namespace: 'shop' },
    data: { 'tls.key': 'LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t' },
  };
  const base = {
    level: 'RequestResponse' as const,
    stage: 'ResponseComplete' as const,
    user: { username: 'admin', groups: ['system:masters'] },
    stageTimestamp: '2021-01-20T10:00:00.000000Z',
  };
  const credentialEvents: [string, AuditEvent][] = [
    [
      'a Secret create',
      {
        ...base,
        auditID: 'secret-create',
        verb: 'create',
        requestURI: '/api/v1/namespaces/shop/secrets',
        objectRef: { resource: 'secrets', namespace: 'shop', name: 'tls-key', apiVersion: 'v1' },
        requestObject: secret,
        responseObject: secret,
      },
    ],
    [
      'a Secret get',
      {
        ...base,
        auditID: 'secret-get',
        verb: 'get',
        requestURI: '/api/v1/namespaces/shop/secrets/tls-key',
        objectRef: { resource: 'secrets', namespace: 'shop', name: 'tls-key', apiVersion: 'v1' },
        responseObject: secret,
      },
    ],
    [
      'a Secret list',
      {
        ...base,
        auditID: 'secret-list',
        verb: 'list',
        requestURI: '/api/v1/namespaces/shop/secrets?limit=500',
        objectRef: { resource: 'secrets', namespace: 'shop', apiVersion: 'v1' },
        responseObject: { kind: 'SecretList', apiVersion: 'v1', items: [secret] },
      },
    ],
    [
      'a service account TokenRequest',
      {
        ...base,
        auditID: 'token-request',
        verb: 'create',
        requestURI: '/api/v1/namespaces/shop/serviceaccounts/builder/token',
        objectRef: {
          resource: 'serviceaccounts',
          subresource: 'token',
          namespace: 'shop',
          name: 'builder',
          apiVersion: 'v1',
        },
        requestObject: { kind: 'TokenRequest', spec: { audiences: ['api'] } },
        responseObject: { kind: 'TokenRequest', status: { token: 'eyJhbGciOiJSUzI1NiJ9.e30.sig' } },
      },
    ],
    [
      'a TokenReview',
      {
        ...base,
        auditID: 'token-review',
        verb: 'create',
        requestURI: '/apis/authentication.k8s.io/v1/tokenreviews',
        objectRef: {
          resource: 'tokenreviews',
          apiGroup: 'authentication.k8s.io',
          apiVersion: 'v1',
        },
        requestObject: { kind: 'TokenReview', spec: { token: 'eyJhbGciOiJSUzI1NiJ9.e30.sig' } },
        responseObject: { kind: 'TokenReview', status: { authenticated: true } },
      },
    ],
  ];
  // Cluster-wide, so that the cluster-scoped TokenReview reaches it too.
  const everything = pipeline('kube-audit');

  it.each(credentialEvents)(
    'reduces %s to Metadata although the policy asks for RequestResponse',
    (_what, event) => {
      const before = structuredClone(event);
      const outcome = only(routeEvent(event, [everything], REDACT));
      expect(kept(outcome)).toEqual({ ...withoutBodies(before), level: 'Metadata' });
      expect(event).toEqual(before);
    },
  );

  it('reduces Secret payloads in a tenant pipeline too', () => {
    const [, create] = credentialEvents[0] as [string, AuditEvent];
    const event = keptEvent(create, pipeline('shop'));
    expect(event.level).toBe('Metadata');
    expect(event).not.toHaveProperty('requestObject');
    expect(event).not.toHaveProperty('responseObject');
  });

  it('keeps the payloads of requests that carry no credentials', () => {
    expect(keptEvent(configMapUpdate('shop'), everything)).toEqual(configMapUpdate('shop'));
  });

  it.each(credentialEvents)('keeps %s whole when allowSecretPayloads is on', (_what, event) => {
    expect(keptEvent(event, everything, ALLOW_SECRETS)).toEqual(event);
  });

  it('still honours a policy below Metadata: redaction never keeps what the policy drops', () => {
    const [, create] = credentialEvents[0] as [string, AuditEvent];
    const sink = pipeline('shop', {
      rules: [
        { level: 'None', resources: [{ group: '', resources: ['secrets'] }] },
        { level: 'RequestResponse' },
      ],
    });
    expect(only(routeEvent(create, [sink], ALLOW_SECRETS))).toMatchObject({
      kept: false,
      reason: 'policy',
    });
    expect(only(routeEvent(create, [sink], REDACT))).toMatchObject({
      kept: false,
      reason: 'policy',
    });
  });

  const resource = (overrides: Partial<RequestAttributes>): RequestAttributes => ({
    user: { name: 'admin', groups: [] },
    verb: 'get',
    resourceRequest: true,
    namespace: 'shop',
    apiGroup: '',
    resource: '',
    subresource: '',
    name: '',
    path: '/api/v1/namespaces/shop',
    ...overrides,
  });

  it.each<[string, Partial<RequestAttributes>, boolean]>([
    ['core secrets', { resource: 'secrets' }, true],
    ['core serviceaccounts/token', { resource: 'serviceaccounts', subresource: 'token' }, true],
    [
      'authentication.k8s.io tokenreviews',
      { apiGroup: 'authentication.k8s.io', resource: 'tokenreviews', namespace: '' },
      true,
    ],
    ['core serviceaccounts', { resource: 'serviceaccounts' }, false],
    ['core configmaps', { resource: 'configmaps' }, false],
    ['secrets of another API group', { apiGroup: 'example.com', resource: 'secrets' }, false],
    ['tokenreviews of another API group', { resource: 'tokenreviews' }, false],
    [
      'authentication.k8s.io selfsubjectreviews',
      { apiGroup: 'authentication.k8s.io', resource: 'selfsubjectreviews', namespace: '' },
      false,
    ],
    [
      'authorization.k8s.io subjectaccessreviews',
      { apiGroup: 'authorization.k8s.io', resource: 'subjectaccessreviews', namespace: '' },
      false,
    ],
    [
      'a non-resource request',
      { resourceRequest: false, resource: '', path: '/api/v1/secrets' },
      false,
    ],
  ])('carriesCredentials: %s → %s', (_what, overrides, expected) => {
    expect(carriesCredentials(resource(overrides))).toBe(expected);
  });
});

describe('the events recorded from kube-apiserver 1.20', () => {
  const events: AuditEvent[] = readFileSync(
    new URL('../../fixtures/apiserver-1.20/events.jsonl', import.meta.url),
    'utf8',
  )
    .split('\n')
    .filter((line) => line !== '')
    .flatMap(
      (line) => parseAuditPayload(line, DEFAULT_PARSE_LIMITS, { allowBareEvent: true }).events,
    );

  // (a) a migrated AuditSink, (b) the shop tenant recording everything, (c) the billing tenant.
  const legacy = auditSink('Metadata', ['ResponseComplete']);
  const shop = pipeline('shop', EVERYTHING);
  const billing = pipeline('billing', CATCH_METADATA);
  const sinks = [legacy, shop, billing];
  const routed = events.map((event) => ({ event, outcomes: routeEvent(event, sinks, REDACT) }));

  /**
   * The namespace a request addressed, read from its URL as the apiserver's RequestInfo does:
   * `/api/v1/namespaces/<ns>...` or `/apis/<group>/<version>/namespaces/<ns>...`; "" otherwise.
   */
  function addressedNamespace(event: AuditEvent): string {
    if (event.objectRef === undefined) return '';
    const match = /^\/(?:api\/v1|apis\/[^/]+\/[^/]+)\/namespaces\/([^/?]+)/.exec(event.requestURI);
    return match?.[1] ?? '';
  }

  function keptBy(sink: Sink): string[] {
    return routed.flatMap(({ event, outcomes }) =>
      outcomes.some((o) => o.sink === sink && o.kept) ? [event.auditID] : [],
    );
  }

  const ids = (list: AuditEvent[]) => list.map((e) => e.auditID);

  it('holds the 23 recorded events, all at ResponseComplete', () => {
    expect(events).toHaveLength(23);
    expect(new Set(events.map((e) => e.stage))).toEqual(new Set(['ResponseComplete']));
  });

  it('has objectRef.namespace agree with the URL wherever the event carries one', () => {
    for (const event of events) {
      if (event.objectRef?.namespace !== undefined) {
        expect(addressedNamespace(event)).toBe(event.objectRef.namespace);
      }
    }
  });

  it('gives the AuditSink every event, at Metadata', () => {
    expect(keptBy(legacy)).toEqual(ids(events));
    for (const { outcomes } of routed) {
      const event = kept(outcomes[0] as SinkOutcome);
      expect(event.level).toBe('Metadata');
      expect(event).not.toHaveProperty('requestObject');
      expect(event).not.toHaveProperty('responseObject');
    }
  });

  it('gives the shop pipeline the 15 events addressed to shop, unchanged', () => {
    const expected = events.filter((e) => addressedNamespace(e) === 'shop');
    expect(expected).toHaveLength(15);
    expect(keptBy(shop)).toEqual(ids(expected));
    for (const { event, outcomes } of routed) {
      const outcome = outcomes[1] as SinkOutcome;
      if (outcome.kept) expect(outcome.event).toEqual(event);
      else expect(outcome).toMatchObject({ reason: 'namespace' });
    }
  });

  it('gives the billing pipeline the 4 events addressed to billing, including its own deletion', () => {
    const expected = events.filter((e) => addressedNamespace(e) === 'billing');
    expect(expected.map((e) => `${e.verb} ${e.objectRef?.resource}`)).toEqual([
      'create roles',
      'create rolebindings',
      'list configmaps',
      'delete namespaces',
    ]);
    expect(keptBy(billing)).toEqual(ids(expected));
  });

  it('gives no tenant the namespace creations and non-resource requests', () => {
    const clusterLevel = events.filter((e) => addressedNamespace(e) === '');
    expect(clusterLevel.map((e) => e.requestURI.split('?')[0])).toEqual([
      '/api/v1/namespaces',
      '/api/v1/namespaces',
      '/version',
      '/openapi/v2',
    ]);
    for (const id of ids(clusterLevel)) {
      expect(keptBy(shop)).not.toContain(id);
      expect(keptBy(billing)).not.toContain(id);
    }
  });

  it('keeps no Secret payload in the shop pipeline, even from an event recorded with one', () => {
    const secretEvents = events.filter(
      (e) => e.objectRef?.resource === 'secrets' && addressedNamespace(e) === 'shop',
    );
    expect(secretEvents.map((e) => e.verb)).toEqual(['create', 'list']);
    for (const recorded of secretEvents) {
      // As recorded (the apiserver's own policy already said Metadata), and as if it had not.
      const withBody: AuditEvent = {
        ...recorded,
        level: 'RequestResponse',
        requestObject: { kind: 'Secret', data: { password: 'aHVudGVyMg==' } },
        responseObject: { kind: 'Secret', data: { password: 'aHVudGVyMg==' } },
      };
      for (const event of [recorded, withBody]) {
        const trimmed = kept(routeEvent(event, sinks, REDACT)[1] as SinkOutcome);
        expect(trimmed.level).toBe('Metadata');
        expect(trimmed).not.toHaveProperty('requestObject');
        expect(trimmed).not.toHaveProperty('responseObject');
      }
    }
  });
});
