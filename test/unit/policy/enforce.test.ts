// Deciding and enforcing a policy on received events: attributes from the event, the effective
// level, stage omission, trimming and managedFields. Pure: starts no process.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AuditEvent, JsonValue, Level, Stage } from '../../../src/audit/types.ts';
import { LEVELS, levelRank, STAGES } from '../../../src/audit/types.ts';
import { attributesFromEvent, namespaceOfPath, pathOf } from '../../../src/policy/attributes.ts';
import { compilePolicy } from '../../../src/policy/checker.ts';
import {
  applyPolicy,
  decideLevel,
  enforceLevel,
  withoutManagedFields,
} from '../../../src/policy/enforce.ts';
import type { Policy } from '../../../src/policy/types.ts';

const managed = [{ manager: 'kubectl', operation: 'Update', fieldsV1: { 'f:data': {} } }];

function event(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    level: 'RequestResponse',
    auditID: 'a1',
    stage: 'ResponseComplete',
    requestURI: '/api/v1/namespaces/shop/configmaps/settings',
    verb: 'update',
    user: { username: 'admin', groups: ['system:masters', 'system:authenticated'] },
    objectRef: { resource: 'configmaps', namespace: 'shop', name: 'settings', apiVersion: 'v1' },
    requestObject: { kind: 'ConfigMap', metadata: { name: 'settings', managedFields: managed } },
    responseObject: { kind: 'ConfigMap', metadata: { name: 'settings', managedFields: managed } },
    stageTimestamp: '2026-11-22T04:08:57.440160Z',
    ...overrides,
  };
}

describe('attributes derived from an event', () => {
  it('evaluates a create with no name, as the apiserver did before filling objectRef.name from the body', () => {
    const attrs = attributesFromEvent(
      event({
        verb: 'create',
        requestURI: '/api/v1/namespaces/shop/configmaps?fieldManager=kubectl-create',
        objectRef: {
          resource: 'configmaps',
          namespace: 'shop',
          name: 'settings',
          apiVersion: 'v1',
        },
      }),
    );
    expect(attrs.name).toBe('');
    expect(attrs.namespace).toBe('shop');
  });

  it('keeps the name of a create on a subresource, which is in the URL', () => {
    const attrs = attributesFromEvent(
      event({
        verb: 'create',
        requestURI: '/api/v1/namespaces/shop/pods/web-0/eviction',
        objectRef: {
          resource: 'pods',
          subresource: 'eviction',
          namespace: 'shop',
          name: 'web-0',
          apiVersion: 'v1',
        },
      }),
    );
    expect(attrs.name).toBe('web-0');
    expect(attrs.subresource).toBe('eviction');
  });

  it('takes the namespace of a create from the URL, not from the body', () => {
    const attrs = attributesFromEvent(
      event({
        verb: 'create',
        requestURI: '/apis/rbac.authorization.k8s.io/v1/clusterroles',
        objectRef: {
          resource: 'clusterroles',
          namespace: 'sneaky',
          name: 'x',
          apiGroup: 'rbac.authorization.k8s.io',
        },
      }),
    );
    expect(attrs.namespace).toBe('');
  });

  it('drops the query of the request URI', () => {
    expect(
      attributesFromEvent(
        event({ requestURI: '/healthz?verbose=1', objectRef: undefined } as never),
      ).path,
    ).toBe('/healthz');
  });

  it('evaluates a request that failed authentication with no user', () => {
    expect(attributesFromEvent(event({ user: {} })).user).toBeNull();
    expect(attributesFromEvent(event({ user: { username: '', groups: ['x'] } })).user).toBeNull();
  });

  it('evaluates the authenticated user, not the impersonated one', () => {
    const attrs = attributesFromEvent(
      event({
        user: { username: 'admin', groups: ['g'] },
        impersonatedUser: { username: 'dev', groups: ['d'] },
      }),
    );
    expect(attrs.user).toEqual({ name: 'admin', groups: ['g'] });
  });

  it('treats an event without objectRef as a non-resource request', () => {
    const { objectRef: _omit, ...rest } = event({ verb: 'get', requestURI: '/version' });
    expect(attributesFromEvent(rest)).toMatchObject({
      resourceRequest: false,
      path: '/version',
      namespace: '',
    });
  });

  it.each([
    ['/api/v1/namespaces/a%20b/pods', '/api/v1/namespaces/a b/pods'],
    ['/api/v1/pods?watch=true', '/api/v1/pods'],
    ['/logs/%zz', '/logs/%zz'],
    ['/', '/'],
  ])('decodes the path of %j as %j', (uri, path) => {
    expect(pathOf(uri)).toBe(path);
  });

  it.each([
    ['/api/v1/namespaces/shop/configmaps', 'shop'],
    ['/apis/apps/v1/namespaces/shop/deployments', 'shop'],
    ['/apis/apps/v1/watch/namespaces/shop/deployments', 'shop'],
    ['/api/v1/namespaces', ''],
    ['/api/v1/namespaces/shop', 'shop'],
    ['/apis/rbac.authorization.k8s.io/v1/clusterroles', ''],
    ['/version', ''],
  ])('reads the namespace of %j as %j', (path, namespace) => {
    expect(namespaceOfPath(path)).toBe(namespace);
  });
});

describe('deciding the level of an event', () => {
  const policy = (p: Policy) => compilePolicy(p);

  it('takes the lower of the event level and the rule level', () => {
    const p = policy({ rules: [{ level: 'RequestResponse' }] });
    expect(decideLevel(p, event({ level: 'Metadata' }))).toMatchObject({
      level: 'Metadata',
      ruleLevel: 'RequestResponse',
      emitted: true,
      captureInsufficient: true,
    });
    const q = policy({ rules: [{ level: 'Metadata' }] });
    expect(decideLevel(q, event())).toMatchObject({
      level: 'Metadata',
      captureInsufficient: false,
    });
  });

  it('drops an event whose rule level is None', () => {
    const d = decideLevel(
      policy({ rules: [{ level: 'None', users: ['admin'] }, { level: 'Metadata' }] }),
      event(),
    );
    expect(d).toMatchObject({ level: 'None', emitted: false, ruleIndex: 0 });
  });

  it('drops an event no rule matches', () => {
    expect(
      decideLevel(policy({ rules: [{ level: 'Metadata', verbs: ['delete'] }] }), event()),
    ).toMatchObject({
      level: 'None',
      emitted: false,
      ruleIndex: -1,
    });
  });

  it('drops RequestReceived when the rule omits it', () => {
    const p = policy({ rules: [{ level: 'Metadata', omitStages: ['RequestReceived'] }] });
    expect(decideLevel(p, event({ stage: 'RequestReceived' })).emitted).toBe(false);
    expect(decideLevel(p, event({ stage: 'ResponseComplete' })).emitted).toBe(true);
  });

  it('drops a stage the policy omits even when the rule does not', () => {
    const p = policy({ omitStages: ['ResponseStarted'], rules: [{ level: 'Metadata' }] });
    expect(decideLevel(p, event({ stage: 'ResponseStarted' }))).toMatchObject({
      emitted: false,
      omitStages: ['ResponseStarted'],
    });
  });

  it('matches secrets at Metadata while the apiserver captured RequestResponse for configmaps', () => {
    const p = policy({
      rules: [
        { level: 'Metadata', resources: [{ group: '', resources: ['secrets'] }] },
        { level: 'Request', resources: [{ group: '', resources: ['configmaps'] }] },
      ],
    });
    const out = applyPolicy(p, event());
    expect(out.decision.level).toBe('Request');
    expect(out.event?.level).toBe('Request');
    expect(out.event?.requestObject).toBeDefined();
    expect(out.event).not.toHaveProperty('responseObject');
  });
});

describe('event-side edge cases, decided as the apiserver decided them', () => {
  const decide = (p: Policy, e: AuditEvent) => decideLevel(compilePolicy(p), e);

  it('does not match resourceNames on a create, whose objectRef.name came from the body', () => {
    const p: Policy = {
      rules: [
        {
          level: 'RequestResponse',
          resources: [{ group: '', resources: ['configmaps'], resourceNames: ['settings'] }],
        },
        { level: 'Metadata' },
      ],
    };
    const create = event({
      verb: 'create',
      requestURI:
        '/api/v1/namespaces/shop/configmaps?fieldManager=kubectl-create&fieldValidation=Strict',
    });
    expect(decide(p, create)).toMatchObject({ level: 'Metadata', ruleIndex: 1 });
    expect(decide(p, event({ verb: 'update' }))).toMatchObject({
      level: 'RequestResponse',
      ruleIndex: 0,
    });
  });

  it('matches a non-resource URL whatever the query string', () => {
    const { objectRef: _none, ...version } = event({
      verb: 'get',
      requestURI: '/version?timeout=32s',
    });
    expect(
      decide({ rules: [{ level: 'Metadata', nonResourceURLs: ['/version'] }] }, version).emitted,
    ).toBe(true);
  });

  it('evaluates a failed authentication (empty user) against user rules as no user', () => {
    const p: Policy = {
      rules: [{ level: 'None', userGroups: ['system:unauthenticated'] }, { level: 'Metadata' }],
    };
    expect(decide(p, event({ user: {} }))).toMatchObject({ level: 'Metadata', ruleIndex: 1 });
    const anonymous = event({
      user: { username: 'system:anonymous', groups: ['system:unauthenticated'] },
    });
    expect(decide(p, anonymous)).toMatchObject({ level: 'None', ruleIndex: 0 });
  });

  it('selects an all-namespaces list with namespaces [""]', () => {
    const list = event({
      verb: 'list',
      requestURI: '/api/v1/pods?limit=500',
      objectRef: { resource: 'pods', apiVersion: 'v1' },
    });
    const p: Policy = { rules: [{ level: 'Request', namespaces: [''] }, { level: 'Metadata' }] };
    expect(decide(p, list)).toMatchObject({ level: 'Request', ruleIndex: 0 });
    expect(decide(p, event())).toMatchObject({ level: 'Metadata', ruleIndex: 1 });
  });

  it('matches pods/* against a plain pods request and */scale against a scale request', () => {
    const pods = event({
      objectRef: { resource: 'pods', namespace: 'shop', name: 'web', apiVersion: 'v1' },
    });
    expect(
      decide({ rules: [{ level: 'Request', resources: [{ resources: ['pods/*'] }] }] }, pods).level,
    ).toBe('Request');
    const scale = event({
      verb: 'patch',
      requestURI: '/apis/apps/v1/namespaces/shop/deployments/api/scale',
      objectRef: {
        resource: 'deployments',
        subresource: 'scale',
        namespace: 'shop',
        name: 'api',
        apiGroup: 'apps',
      },
    });
    expect(
      decide(
        { rules: [{ level: 'Request', resources: [{ group: 'apps', resources: ['*/scale'] }] }] },
        scale,
      ).level,
    ).toBe('Request');
  });
});

describe('enforcing a level', () => {
  it('strips both objects at Metadata and the response at Request', () => {
    const metadata = enforceLevel(event(), 'Metadata');
    expect(metadata.level).toBe('Metadata');
    expect(metadata).not.toHaveProperty('requestObject');
    expect(metadata).not.toHaveProperty('responseObject');
    const request = enforceLevel(event(), 'Request');
    expect(request.requestObject).toEqual(event().requestObject);
    expect(request).not.toHaveProperty('responseObject');
  });

  it('returns the same event when nothing changes', () => {
    const e = event();
    expect(enforceLevel(e, 'RequestResponse')).toBe(e);
  });

  it('refuses level None, which drops rather than trims', () => {
    expect(() => enforceLevel(event(), 'None')).toThrow(RangeError);
  });

  it('removes managedFields from the objects it keeps, without touching the input', () => {
    const e = event();
    const before = structuredClone(e);
    const out = enforceLevel(e, 'RequestResponse', true);
    expect(out.requestObject).toEqual({ kind: 'ConfigMap', metadata: { name: 'settings' } });
    expect(out.responseObject).toEqual({ kind: 'ConfigMap', metadata: { name: 'settings' } });
    expect(e).toEqual(before);
  });
});

describe('removing managedFields', () => {
  it('removes them from each item of a list', () => {
    const list = {
      kind: 'ConfigMapList',
      metadata: { resourceVersion: '1' },
      items: [
        { metadata: { name: 'a', managedFields: managed } },
        { metadata: { name: 'b' } },
        'odd',
      ],
    };
    expect(withoutManagedFields(list)).toEqual({
      kind: 'ConfigMapList',
      metadata: { resourceVersion: '1' },
      items: [{ metadata: { name: 'a' } }, { metadata: { name: 'b' } }, 'odd'],
    });
  });

  it('removes them from the row objects of a Table', () => {
    const table = {
      kind: 'Table',
      apiVersion: 'meta.k8s.io/v1',
      rows: [
        { cells: ['a'], object: { metadata: { name: 'a', managedFields: managed } } },
        { cells: ['b'] },
      ],
    };
    expect(withoutManagedFields(table)).toEqual({
      kind: 'Table',
      apiVersion: 'meta.k8s.io/v1',
      rows: [{ cells: ['a'], object: { metadata: { name: 'a' } } }, { cells: ['b'] }],
    });
  });

  it('leaves payloads that are not objects unchanged', () => {
    for (const value of [
      null,
      'patch',
      3,
      [1, { metadata: { managedFields: managed } }],
    ] as JsonValue[]) {
      expect(withoutManagedFields(value)).toBe(value);
    }
    const status = { kind: 'Status', code: 404 };
    expect(withoutManagedFields(status)).toBe(status);
  });
});

const jsonObject = fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), {
  maxKeys: 3,
});
const k8sObject = fc.record(
  {
    kind: fc.constantFrom('ConfigMap', 'Table', 'List'),
    metadata: fc.record(
      { name: fc.string(), managedFields: fc.constant(managed as unknown as JsonValue) },
      {
        requiredKeys: ['name'],
      },
    ),
    items: fc.array(
      fc.oneof(
        jsonObject,
        fc.record({ metadata: fc.record({ managedFields: fc.constant(managed) }) }),
      ),
      {
        maxLength: 3,
      },
    ),
    rows: fc.array(
      fc.record({
        object: fc.record({ metadata: fc.record({ managedFields: fc.constant(managed) }) }),
      }),
      {
        maxLength: 2,
      },
    ),
  },
  { requiredKeys: ['kind'] },
);
const arbitraryEvent = fc.record({
  level: fc.constantFrom<Level>('Metadata', 'Request', 'RequestResponse'),
  stage: fc.constantFrom<Stage>(...STAGES),
  requestObject: fc.option(k8sObject, { nil: undefined }),
  responseObject: fc.option(k8sObject, { nil: undefined }),
});
const enforceLevelArg = fc.constantFrom<Level>('Metadata', 'Request', 'RequestResponse');

interface GeneratedEvent {
  level: Level;
  stage: Stage;
  requestObject: object | undefined;
  responseObject: object | undefined;
}

function build(e: GeneratedEvent): AuditEvent {
  const out = event({ level: e.level, stage: e.stage });
  delete out.requestObject;
  delete out.responseObject;
  if (e.requestObject !== undefined) out.requestObject = e.requestObject as JsonValue;
  if (e.responseObject !== undefined) out.responseObject = e.responseObject as JsonValue;
  return out;
}

describe('enforcement properties', () => {
  it('never raises a level', () => {
    fc.assert(
      fc.property(arbitraryEvent, enforceLevelArg, fc.boolean(), (raw, level, omit) => {
        const e = build(raw);
        const out = enforceLevel(e, level, omit);
        expect(levelRank(out.level)).toBeLessThanOrEqual(
          Math.min(levelRank(e.level), levelRank(level)),
        );
        if (levelRank(out.level) < levelRank('Request')) expect(out.requestObject).toBeUndefined();
        if (out.level !== 'RequestResponse') expect(out.responseObject).toBeUndefined();
      }),
    );
  });

  it('is idempotent: enforcing twice equals enforcing once', () => {
    fc.assert(
      fc.property(arbitraryEvent, enforceLevelArg, fc.boolean(), (raw, level, omit) => {
        const once = enforceLevel(build(raw), level, omit);
        expect(enforceLevel(once, level, omit)).toEqual(once);
      }),
    );
  });

  it('never mutates its input and leaves no managedFields where asked', () => {
    fc.assert(
      fc.property(arbitraryEvent, enforceLevelArg, (raw, level) => {
        const e = build(raw);
        const before = structuredClone(e);
        const out = enforceLevel(e, level, true);
        expect(e).toEqual(before);
        for (const object of [out.requestObject, out.responseObject]) {
          if (object === undefined) continue;
          expect(JSON.stringify(withoutManagedFields(object))).toBe(JSON.stringify(object));
          const o = object as { metadata?: object; items?: { metadata?: object }[] };
          expect(o.metadata ?? {}).not.toHaveProperty('managedFields');
          for (const item of o.items ?? [])
            expect(item?.metadata ?? {}).not.toHaveProperty('managedFields');
        }
      }),
    );
  });

  it('keeps the decided level consistent with what applyPolicy emits', () => {
    const rule = fc.record({
      level: fc.constantFrom<Level>(...LEVELS),
      omitStages: fc.subarray([...STAGES]),
      omitManagedFields: fc.boolean(),
    });
    fc.assert(
      fc.property(arbitraryEvent, fc.array(rule, { minLength: 1, maxLength: 3 }), (raw, rules) => {
        const e = build(raw);
        const out = applyPolicy(compilePolicy({ rules }), e);
        expect(out.event === null).toBe(!out.decision.emitted);
        if (out.event !== null) expect(out.event.level).toBe(out.decision.level);
      }),
    );
  });
});
