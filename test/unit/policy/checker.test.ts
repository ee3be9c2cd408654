// The upstream checker_test.go table (k8s.io/apiserver/pkg/audit/policy), as data, plus the cases
// upstream leaves implicit. Pure: starts no process.
import { describe, expect, it } from 'vitest';
import type { Stage } from '../../../src/audit/types.ts';
import type { RequestAttributes } from '../../../src/policy/attributes.ts';
import { compilePolicy, evaluatePolicy, pathMatches } from '../../../src/policy/checker.ts';
import type { Policy, PolicyRule } from '../../../src/policy/types.ts';

const tim = { name: 'tim@k8s.io', groups: ['humans', 'developers'] };

const blank: RequestAttributes = {
  user: null,
  verb: '',
  resourceRequest: false,
  namespace: '',
  apiGroup: '',
  resource: '',
  subresource: '',
  name: '',
  path: '',
};

const requests: Record<string, RequestAttributes> = {
  namespaced: {
    ...blank,
    user: tim,
    verb: 'get',
    namespace: 'default',
    resource: 'pods',
    name: 'busybox',
    resourceRequest: true,
    path: '/api/v1/namespaces/default/pods/busybox',
  },
  cluster: {
    ...blank,
    user: tim,
    verb: 'get',
    apiGroup: 'rbac.authorization.k8s.io',
    resource: 'clusterroles',
    name: 'edit',
    resourceRequest: true,
    path: '/apis/rbac.authorization.k8s.io/v1beta1/clusterroles/edit',
  },
  nonResource: { ...blank, user: tim, verb: 'get', path: '/logs/kubelet.log' },
  subresource: {
    ...blank,
    user: tim,
    verb: 'get',
    namespace: 'default',
    resource: 'pods',
    subresource: 'log',
    name: 'busybox',
    resourceRequest: true,
    path: '/api/v1/namespaces/default/pods/busybox',
  },
  // A status write in a named group: the request kube-apiserver 1.36 added for the group wildcard.
  clusterRoleStatusUpdate: {
    ...blank,
    user: tim,
    verb: 'update',
    apiGroup: 'rbac.authorization.k8s.io',
    resource: 'clusterroles',
    subresource: 'status',
    name: 'somerole',
    resourceRequest: true,
    path: '/apis/rbac.authorization.k8s.io/v1beta1/clusterroles/somerole',
  },
  unauthorized: {
    ...blank,
    verb: 'get',
    namespace: 'default',
    resource: 'pods',
    name: 'busybox',
    resourceRequest: true,
    path: '/api/v1/namespaces/default/pods/busybox',
  },
};

const rules: Record<string, PolicyRule> = {
  default: { level: 'Metadata' },
  create: { level: 'Request', verbs: ['create'] },
  tims: { level: 'Metadata', users: ['tim@k8s.io'] },
  humans: { level: 'Metadata', userGroups: ['humans'] },
  serviceAccounts: { level: 'Request', userGroups: ['system:serviceaccounts'] },
  getPods: {
    level: 'RequestResponse',
    verbs: ['get'],
    resources: [{ group: '', resources: ['pods'] }],
  },
  getPodLogs: {
    level: 'Request',
    verbs: ['get'],
    resources: [{ group: '', resources: ['pods/log'] }],
  },
  getPodWildcardMatching: {
    level: 'Request',
    verbs: ['get'],
    resources: [{ group: '', resources: ['*'] }],
  },
  getPodResourceWildcardMatching: {
    level: 'Request',
    verbs: ['get'],
    resources: [{ group: '', resources: ['*/log'] }],
  },
  getPodSubResourceWildcardMatching: {
    level: 'Request',
    verbs: ['get'],
    resources: [{ group: '', resources: ['pods/*'] }],
  },
  getClusterRoles: {
    level: 'RequestResponse',
    verbs: ['get'],
    resources: [{ group: 'rbac.authorization.k8s.io', resources: ['clusterroles'] }],
    namespaces: [''],
  },
  getLogs: { level: 'RequestResponse', verbs: ['get'], nonResourceURLs: ['/logs*'] },
  getMetrics: { level: 'Request', verbs: ['get'], nonResourceURLs: ['/metrics'] },
  clusterRoleEdit: {
    level: 'Request',
    resources: [
      { group: 'rbac.authorization.k8s.io', resources: ['clusterroles'], resourceNames: ['edit'] },
    ],
  },
  updateStatusInEveryGroup: {
    level: 'RequestResponse',
    verbs: ['update'],
    resources: [{ group: '*', resources: ['*/status'] }],
  },
  omitRequestReceived: { level: 'Request', omitStages: ['RequestReceived'] },
  onlyAuditPanic: {
    level: 'Request',
    omitStages: ['RequestReceived', 'ResponseStarted', 'ResponseComplete'],
  },
};

type Case = [request: string, ruleNames: string[], level: string];

// testAuditLevel: every case expects the policy's own omitStages back.
const levelCases: Case[] = [
  ['namespaced', ['default'], 'Metadata'],
  ['namespaced', ['create'], 'None'],
  ['namespaced', ['tims'], 'Metadata'],
  ['namespaced', ['humans'], 'Metadata'],
  ['namespaced', ['serviceAccounts'], 'None'],
  ['namespaced', ['getPods'], 'RequestResponse'],
  ['namespaced', ['getClusterRoles'], 'None'],
  ['namespaced', ['getLogs'], 'None'],
  ['namespaced', ['getMetrics'], 'None'],
  ['namespaced', ['getMetrics', 'serviceAccounts', 'default'], 'Metadata'],
  ['namespaced', ['getMetrics', 'getPods', 'default'], 'RequestResponse'],
  ['namespaced', ['getPodLogs', 'getPods'], 'RequestResponse'],

  ['cluster', ['default'], 'Metadata'],
  ['cluster', ['create'], 'None'],
  ['cluster', ['tims'], 'Metadata'],
  ['cluster', ['humans'], 'Metadata'],
  ['cluster', ['serviceAccounts'], 'None'],
  ['cluster', ['getPods'], 'None'],
  ['cluster', ['getClusterRoles'], 'RequestResponse'],
  ['cluster', ['clusterRoleEdit', 'getClusterRoles'], 'Request'],
  ['cluster', ['getLogs'], 'None'],
  ['cluster', ['getMetrics'], 'None'],
  ['cluster', ['getMetrics', 'serviceAccounts', 'default'], 'Metadata'],
  ['cluster', ['getMetrics', 'getClusterRoles', 'default'], 'RequestResponse'],
  ['cluster', ['getPodLogs', 'getPods'], 'None'],

  ['nonResource', ['default'], 'Metadata'],
  ['nonResource', ['create'], 'None'],
  ['nonResource', ['tims'], 'Metadata'],
  ['nonResource', ['humans'], 'Metadata'],
  ['nonResource', ['serviceAccounts'], 'None'],
  ['nonResource', ['getPods'], 'None'],
  ['nonResource', ['getClusterRoles'], 'None'],
  ['nonResource', ['getLogs'], 'RequestResponse'],
  ['nonResource', ['getMetrics'], 'None'],
  ['nonResource', ['getMetrics', 'serviceAccounts', 'default'], 'Metadata'],
  ['nonResource', ['getLogs', 'getClusterRoles', 'default'], 'RequestResponse'],
  ['nonResource', ['getPodLogs', 'getPods'], 'None'],

  ['subresource', ['getPodLogs', 'getPods'], 'Request'],
  ['subresource', ['getPodWildcardMatching'], 'Request'],
  ['subresource', ['getPodResourceWildcardMatching'], 'Request'],
  ['subresource', ['getPodSubResourceWildcardMatching'], 'Request'],

  ['namespaced', ['updateStatusInEveryGroup'], 'None'],
  ['cluster', ['updateStatusInEveryGroup'], 'None'],
  ['nonResource', ['updateStatusInEveryGroup'], 'None'],
  ['subresource', ['updateStatusInEveryGroup'], 'None'],
  ['clusterRoleStatusUpdate', ['updateStatusInEveryGroup'], 'RequestResponse'],
  ['clusterRoleStatusUpdate', ['getClusterRoles', 'updateStatusInEveryGroup'], 'RequestResponse'],
  ['clusterRoleStatusUpdate', ['clusterRoleEdit', 'updateStatusInEveryGroup'], 'RequestResponse'],

  ['unauthorized', ['tims'], 'None'],
  ['unauthorized', ['tims', 'default'], 'Metadata'],
  ['unauthorized', ['humans'], 'None'],
  ['unauthorized', ['humans', 'default'], 'Metadata'],
];

function evaluate(request: string, ruleNames: string[], policyOmit: Stage[] = []) {
  const attrs = requests[request];
  if (attrs === undefined) throw new Error(`unknown request ${request}`);
  const policy: Policy = {
    omitStages: policyOmit,
    rules: ruleNames.map((name) => {
      const rule = rules[name];
      if (rule === undefined) throw new Error(`unknown rule ${name}`);
      return rule;
    }),
  };
  return evaluatePolicy(compilePolicy(policy), attrs);
}

describe('policy evaluation (upstream checker_test.go)', () => {
  for (const policyOmit of [[], ['RequestReceived', 'ResponseStarted']] as Stage[][]) {
    describe(`with policy omitStages [${policyOmit.join(', ')}]`, () => {
      it.each(levelCases)('decides %s with rules %j: %s', (request, ruleNames, level) => {
        const got = evaluate(request, ruleNames, policyOmit);
        expect(got.level).toBe(level);
        expect(new Set(got.omitStages)).toEqual(new Set(policyOmit));
      });
    });
  }

  it.each([
    [
      'namespaced',
      [],
      ['omitRequestReceived', 'getPods', 'default'],
      'Request',
      ['RequestReceived'],
    ],
    [
      'namespaced',
      [],
      ['onlyAuditPanic', 'getPods', 'default'],
      'Request',
      ['RequestReceived', 'ResponseStarted', 'ResponseComplete'],
    ],
    ['cluster', [], ['omitRequestReceived', 'getPods', 'default'], 'Request', ['RequestReceived']],
    [
      'cluster',
      [],
      ['onlyAuditPanic', 'getPods', 'default'],
      'Request',
      ['RequestReceived', 'ResponseStarted', 'ResponseComplete'],
    ],
    [
      'nonResource',
      [],
      ['omitRequestReceived', 'getPods', 'default'],
      'Request',
      ['RequestReceived'],
    ],
    [
      'nonResource',
      [],
      ['onlyAuditPanic', 'getPods', 'default'],
      'Request',
      ['RequestReceived', 'ResponseStarted', 'ResponseComplete'],
    ],
    [
      'namespaced',
      ['RequestReceived', 'ResponseStarted'],
      ['omitRequestReceived', 'getPods', 'default'],
      'Request',
      ['RequestReceived', 'ResponseStarted'],
    ],
    [
      'namespaced',
      ['RequestReceived', 'ResponseStarted'],
      ['onlyAuditPanic', 'getPods', 'default'],
      'Request',
      ['RequestReceived', 'ResponseStarted', 'ResponseComplete'],
    ],
    [
      'cluster',
      ['RequestReceived', 'ResponseStarted'],
      ['omitRequestReceived', 'getPods', 'default'],
      'Request',
      ['RequestReceived', 'ResponseStarted'],
    ],
    [
      'cluster',
      ['RequestReceived', 'ResponseStarted'],
      ['onlyAuditPanic', 'getPods', 'default'],
      'Request',
      ['RequestReceived', 'ResponseStarted', 'ResponseComplete'],
    ],
    [
      'nonResource',
      ['RequestReceived', 'ResponseStarted'],
      ['default', 'omitRequestReceived', 'getPods'],
      'Metadata',
      ['RequestReceived', 'ResponseStarted'],
    ],
    [
      'nonResource',
      ['RequestReceived', 'ResponseStarted'],
      ['onlyAuditPanic', 'getPods', 'default'],
      'Request',
      ['RequestReceived', 'ResponseStarted', 'ResponseComplete'],
    ],
  ] as [string, Stage[], string[], string, Stage[]][])(
    'unions the omitStages of %s policy %j with those of rules %j',
    (request, policyOmit, ruleNames, level, omit) => {
      const got = evaluate(request, ruleNames, policyOmit);
      expect(got.level).toBe(level);
      expect(got.omitStages).toEqual(omit);
    },
  );

  it('returns union stages deduplicated and in request order', () => {
    const got = evaluatePolicy(
      compilePolicy({
        omitStages: ['Panic', 'RequestReceived', 'RequestReceived'],
        rules: [{ level: 'Metadata', omitStages: ['RequestReceived', 'ResponseStarted'] }],
      }),
      requests.namespaced as RequestAttributes,
    );
    expect(got.omitStages).toEqual(['RequestReceived', 'ResponseStarted', 'Panic']);
  });

  it.each([
    [false, undefined, false],
    [true, undefined, true],
    [true, false, false],
    [false, true, true],
  ] as const)(
    'resolves omitManagedFields: policy %s, rule %s gives %s',
    (policyValue, ruleValue, want) => {
      const rule: PolicyRule = { level: 'RequestResponse', verbs: ['get'] };
      if (ruleValue !== undefined) rule.omitManagedFields = ruleValue;
      const got = evaluatePolicy(compilePolicy({ omitManagedFields: policyValue, rules: [rule] }), {
        ...blank,
        verb: 'get',
      });
      expect(got.omitManagedFields).toBe(want);
    },
  );

  it('falls back to level None with the policy settings when no rule matches', () => {
    const got = evaluatePolicy(
      compilePolicy({
        omitStages: ['RequestReceived'],
        omitManagedFields: true,
        rules: [rules.create as PolicyRule],
      }),
      requests.namespaced as RequestAttributes,
    );
    expect(got).toEqual({
      level: 'None',
      omitStages: ['RequestReceived'],
      omitManagedFields: true,
      ruleIndex: -1,
    });
  });
});

describe('policy evaluation edge cases', () => {
  const one = (rule: PolicyRule, attrs: RequestAttributes) =>
    evaluatePolicy(compilePolicy({ rules: [rule] }), attrs).level;

  it('does not match a subresource request with the plain resource', () => {
    expect(one(rules.getPods as PolicyRule, requests.subresource as RequestAttributes)).toBe(
      'None',
    );
  });

  it('matches the plain resource and every subresource with pods/*', () => {
    expect(
      one(
        rules.getPodSubResourceWildcardMatching as PolicyRule,
        requests.namespaced as RequestAttributes,
      ),
    ).toBe('Request');
  });

  it('needs a subresource for */log', () => {
    expect(
      one(
        rules.getPodResourceWildcardMatching as PolicyRule,
        requests.namespaced as RequestAttributes,
      ),
    ).toBe('None');
  });

  it('matches any resource of any kind with */scale when the subresource is scale', () => {
    const scale: RequestAttributes = {
      ...(requests.namespaced as RequestAttributes),
      apiGroup: 'apps',
      resource: 'deployments',
      subresource: 'scale',
      verb: 'patch',
    };
    expect(
      one({ level: 'Request', resources: [{ group: 'apps', resources: ['*/scale'] }] }, scale),
    ).toBe('Request');
    expect(
      one({ level: 'Request', resources: [{ group: 'apps', resources: ['*/status'] }] }, scale),
    ).toBe('None');
    expect(
      one({ level: 'Request', resources: [{ group: '', resources: ['*/scale'] }] }, scale),
    ).toBe('None');
  });

  it('treats */* and pods/log/* literally, as upstream does', () => {
    expect(
      one(
        { level: 'Request', resources: [{ resources: ['*/*'] }] },
        requests.subresource as RequestAttributes,
      ),
    ).toBe('None');
    expect(
      one(
        { level: 'Request', resources: [{ resources: ['pods/log/*'] }] },
        requests.subresource as RequestAttributes,
      ),
    ).toBe('None');
  });

  it('ignores resourceNames when the group lists no resources', () => {
    const rule: PolicyRule = {
      level: 'Request',
      resources: [{ group: '', resourceNames: ['other'] }],
    };
    expect(one(rule, requests.namespaced as RequestAttributes)).toBe('Request');
  });

  it('matches resourceNames against the request name only', () => {
    const rule: PolicyRule = {
      level: 'Request',
      resources: [
        {
          group: 'rbac.authorization.k8s.io',
          resources: ['clusterroles'],
          resourceNames: ['view'],
        },
      ],
    };
    expect(one(rule, requests.cluster as RequestAttributes)).toBe('None');
    expect(one(rule, { ...(requests.cluster as RequestAttributes), name: 'view' })).toBe('Request');
  });

  it('selects non-namespaced requests with namespaces [""]', () => {
    const rule: PolicyRule = { level: 'Metadata', namespaces: [''] };
    expect(one(rule, requests.cluster as RequestAttributes)).toBe('Metadata');
    expect(one(rule, requests.namespaced as RequestAttributes)).toBe('None');
    expect(one(rule, requests.nonResource as RequestAttributes)).toBe('None');
  });

  it('never matches a non-resource request with a namespace-only rule', () => {
    expect(
      one(
        { level: 'Metadata', namespaces: ['default'] },
        requests.nonResource as RequestAttributes,
      ),
    ).toBe('None');
  });

  it('ignores nonResourceURLs on a rule that also names resources', () => {
    const rule: PolicyRule = {
      level: 'Metadata',
      resources: [{ resources: ['pods'] }],
      nonResourceURLs: ['*'],
    };
    expect(one(rule, requests.nonResource as RequestAttributes)).toBe('None');
    expect(one(rule, requests.namespaced as RequestAttributes)).toBe('Metadata');
  });

  it('treats verbs literally: "*" is not a wildcard', () => {
    expect(one({ level: 'Metadata', verbs: ['*'] }, requests.namespaced as RequestAttributes)).toBe(
      'None',
    );
  });

  it('stops at a matching None rule', () => {
    const got = evaluatePolicy(
      compilePolicy({
        rules: [{ level: 'None', users: ['tim@k8s.io'] }, { level: 'RequestResponse' }],
      }),
      requests.namespaced as RequestAttributes,
    );
    expect(got.level).toBe('None');
    expect(got.ruleIndex).toBe(0);
  });

  it('treats an empty list like an absent one', () => {
    expect(
      one(
        { level: 'Metadata', users: [], verbs: [], resources: [] },
        requests.nonResource as RequestAttributes,
      ),
    ).toBe('Metadata');
  });
});

describe('the group wildcard (kube-apiserver 1.36 and later)', () => {
  const one = (rule: PolicyRule, attrs: RequestAttributes) =>
    evaluatePolicy(compilePolicy({ rules: [rule] }), attrs).level;
  const resource = (
    apiGroup: string,
    resourceName: string,
    extra: Partial<RequestAttributes> = {},
  ): RequestAttributes => ({
    ...blank,
    user: tim,
    verb: 'get',
    resourceRequest: true,
    namespace: 'default',
    apiGroup,
    resource: resourceName,
    name: 'x',
    ...extra,
  });
  const deploymentScale = resource('apps', 'deployments', { subresource: 'scale', verb: 'patch' });
  const rcScale = resource('', 'replicationcontrollers', { subresource: 'scale', verb: 'patch' });
  const crdScale = resource('example.com', 'widgets', { subresource: 'scale', verb: 'patch' });

  it('matches every resource request of every group when the entry lists no resources', () => {
    const rule: PolicyRule = { level: 'Metadata', resources: [{ group: '*' }] };
    for (const attrs of [
      requests.namespaced,
      requests.cluster,
      requests.subresource,
      requests.clusterRoleStatusUpdate,
      crdScale,
    ]) {
      expect(one(rule, attrs as RequestAttributes)).toBe('Metadata');
    }
    expect(one(rule, requests.nonResource as RequestAttributes)).toBe('None');
  });

  it('matches the scale subresource of every resource of every group with */scale', () => {
    const rule: PolicyRule = {
      level: 'Request',
      resources: [{ group: '*', resources: ['*/scale'] }],
    };
    expect(one(rule, deploymentScale)).toBe('Request');
    expect(one(rule, rcScale)).toBe('Request');
    expect(one(rule, crdScale)).toBe('Request');
    // */scale still needs the subresource.
    expect(one(rule, resource('apps', 'deployments', { verb: 'patch' }))).toBe('None');
    expect(one(rule, resource('apps', 'deployments', { subresource: 'status' }))).toBe('None');
  });

  it('matches a resource name in every group that has it, with pods and pods/*', () => {
    // metrics.k8s.io serves a `pods` resource too.
    const metricsPods = resource('metrics.k8s.io', 'pods');
    const plain: PolicyRule = {
      level: 'Request',
      resources: [{ group: '*', resources: ['pods'] }],
    };
    expect(one(plain, requests.namespaced as RequestAttributes)).toBe('Request');
    expect(one(plain, metricsPods)).toBe('Request');
    expect(one(plain, requests.subresource as RequestAttributes)).toBe('None');
    const all: PolicyRule = {
      level: 'Request',
      resources: [{ group: '*', resources: ['pods/*'] }],
    };
    expect(one(all, requests.namespaced as RequestAttributes)).toBe('Request');
    expect(one(all, requests.subresource as RequestAttributes)).toBe('Request');
    expect(one(all, metricsPods)).toBe('Request');
    expect(one(all, requests.cluster as RequestAttributes)).toBe('None');
  });

  it('matches every resource and subresource of every group with resources ["*"]', () => {
    const rule: PolicyRule = { level: 'Request', resources: [{ group: '*', resources: ['*'] }] };
    expect(one(rule, requests.clusterRoleStatusUpdate as RequestAttributes)).toBe('Request');
    expect(one(rule, crdScale)).toBe('Request');
    expect(one(rule, requests.nonResource as RequestAttributes)).toBe('None');
  });

  it('still selects by resourceNames, in every group', () => {
    const rule: PolicyRule = {
      level: 'RequestResponse',
      resources: [
        { group: '*', resources: ['leases', 'configmaps'], resourceNames: ['kube-scheduler'] },
      ],
    };
    const lease = resource('coordination.k8s.io', 'leases', { name: 'kube-scheduler' });
    const configMap = resource('', 'configmaps', { name: 'kube-scheduler' });
    expect(one(rule, lease)).toBe('RequestResponse');
    expect(one(rule, configMap)).toBe('RequestResponse');
    expect(one(rule, { ...lease, name: 'kube-controller-manager' })).toBe('None');
    // A create is authorized before the object has a name.
    expect(one(rule, { ...lease, verb: 'create', name: '' })).toBe('None');
  });

  it('still selects by namespaces, "" being the cluster-scoped requests of every group', () => {
    const inKubeSystem: PolicyRule = {
      level: 'Metadata',
      namespaces: ['kube-system'],
      resources: [{ group: '*' }],
    };
    expect(one(inKubeSystem, resource('apps', 'deployments', { namespace: 'kube-system' }))).toBe(
      'Metadata',
    );
    expect(one(inKubeSystem, resource('apps', 'deployments'))).toBe('None');
    const clusterScoped: PolicyRule = {
      level: 'Metadata',
      namespaces: [''],
      resources: [{ group: '*', resources: ['*/status'] }],
    };
    expect(one(clusterScoped, requests.clusterRoleStatusUpdate as RequestAttributes)).toBe(
      'Metadata',
    );
    expect(one(clusterScoped, resource('apps', 'deployments', { subresource: 'status' }))).toBe(
      'None',
    );
  });

  it('matches when any entry matches, beside entries of named groups', () => {
    const rule: PolicyRule = {
      level: 'Request',
      resources: [
        { group: '', resources: ['secrets'] },
        { group: '*', resources: ['*/status'] },
        { group: 'apps', resources: ['deployments'] },
      ],
    };
    expect(one(rule, resource('', 'secrets'))).toBe('Request');
    expect(one(rule, resource('apps', 'deployments'))).toBe('Request');
    expect(one(rule, resource('batch', 'jobs', { subresource: 'status' }))).toBe('Request');
    expect(one(rule, resource('batch', 'jobs'))).toBe('None');
    expect(one(rule, resource('apps', 'secrets'))).toBe('None');
  });

  it('leaves the first matching rule deciding: a named group above the wildcard wins', () => {
    const policy = compilePolicy({
      rules: [
        { level: 'RequestResponse', resources: [{ group: 'apps', resources: ['*/scale'] }] },
        { level: 'None', resources: [{ group: '*', resources: ['*/scale'] }] },
        { level: 'Metadata' },
      ],
    });
    expect(evaluatePolicy(policy, deploymentScale)).toMatchObject({
      level: 'RequestResponse',
      ruleIndex: 0,
    });
    expect(evaluatePolicy(policy, crdScale)).toMatchObject({ level: 'None', ruleIndex: 1 });
    expect(evaluatePolicy(policy, resource('apps', 'deployments'))).toMatchObject({
      level: 'Metadata',
      ruleIndex: 2,
    });
  });

  it('takes only the whole group "*" as a wildcard, never a pattern', () => {
    for (const group of ['*.k8s.io', '*.authorization.k8s.io', 'rbac.*', '**', ' *']) {
      expect(
        one({ level: 'Request', resources: [{ group }] }, requests.cluster as RequestAttributes),
        group,
      ).toBe('None');
    }
  });
});

describe('non-resource URL matching', () => {
  it.each([
    ['/logs*', '/logs', true],
    ['/logs*', '/logs/kubelet.log', true],
    // Prefix matching is textual, not by path segment.
    ['/logs*', '/logsfoo', true],
    ['/logs**', '/logsfoo', true],
    ['/healthz', '/healthz', true],
    ['/healthz', '/healthz/etcd', false],
    ['/healthz*', '/healthz/etcd', true],
    ['/healthz/*', '/healthz', false],
    ['*', '/anything', true],
    ['*', '', true],
    ['/*', '/version', true],
    ['', '', true],
    ['', '/', false],
    ['/api', '/apis', false],
  ])('spec %j against path %j: %s', (spec, path, want) => {
    expect(pathMatches(path, spec)).toBe(want);
  });
});
