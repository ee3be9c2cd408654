// The superset policy for the apiserver: never captures less than any sink policy asks for, and
// stays small. Pure: starts no process.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LEVELS, type Level, levelRank, STAGES, type Stage } from '../../../src/audit/types.ts';
import type { RequestAttributes } from '../../../src/policy/attributes.ts';
import { compilePolicy, evaluatePolicy } from '../../../src/policy/checker.ts';
import {
  type SupersetOptions,
  supersetPolicy,
  usesGroupWildcard,
} from '../../../src/policy/superset.ts';
import type { Policy, PolicyRule } from '../../../src/policy/types.ts';
import { validatePolicy } from '../../../src/policy/validate.ts';

const kubeSystemNoise: PolicyRule[] = [
  { level: 'None', users: ['system:kube-proxy'], verbs: ['watch'] },
  { level: 'None', nonResourceURLs: ['/healthz*', '/version'] },
];

describe('superset policy', () => {
  it('orders capturing rules by level, highest first', () => {
    const a: Policy = { rules: [{ level: 'Metadata', resources: [{ resources: ['secrets'] }] }] };
    const b: Policy = {
      rules: [{ level: 'RequestResponse', resources: [{ group: 'apps' }] }, { level: 'Request' }],
    };
    expect(supersetPolicy([a, b]).rules).toEqual([
      { level: 'RequestResponse', resources: [{ group: 'apps' }] },
      { level: 'Request' },
    ]);
  });

  it('keeps None rules every policy starts with, and drops the others', () => {
    const a: Policy = { rules: [...kubeSystemNoise, { level: 'Metadata' }] };
    const b: Policy = {
      rules: [
        kubeSystemNoise[1] as PolicyRule,
        kubeSystemNoise[0] as PolicyRule,
        { level: 'None', users: ['bob'] },
        { level: 'Request' },
      ],
    };
    expect(supersetPolicy([a, b]).rules).toEqual([...kubeSystemNoise, { level: 'Request' }]);
  });

  it('puts the excluded requests first, before the None rules every policy shares, once each', () => {
    const exclude: PolicyRule[] = [
      { level: 'None', users: ['operator'], verbs: ['update'], resources: [{ group: 'x' }] },
    ];
    const a: Policy = { rules: [...kubeSystemNoise, { level: 'Metadata' }] };
    const b: Policy = {
      rules: [...kubeSystemNoise, exclude[0] as PolicyRule, { level: 'Request' }],
    };
    expect(supersetPolicy([a, b], { groupWildcard: false, exclude }).rules).toEqual([
      ...exclude,
      ...kubeSystemNoise,
      { level: 'Request' },
    ]);
    const superset = compilePolicy(supersetPolicy([a, b], { groupWildcard: false, exclude }));
    const request: RequestAttributes = {
      user: { name: 'operator', groups: [] },
      verb: 'update',
      resourceRequest: true,
      namespace: 'ns',
      apiGroup: 'x',
      resource: 'things',
      subresource: '',
      name: 'n',
      path: '/apis/x/v1/namespaces/ns/things/n',
    };
    expect(evaluatePolicy(superset, request).level).toBe('None');
    expect(evaluatePolicy(superset, { ...request, verb: 'create' }).level).toBe('Request');
  });

  it('drops a None rule that only some policies have', () => {
    const a: Policy = { rules: [{ level: 'None', users: ['bob'] }, { level: 'Metadata' }] };
    const b: Policy = { rules: [{ level: 'Metadata', users: ['bob'] }] };
    expect(supersetPolicy([a, b]).rules).toEqual([{ level: 'Metadata' }]);
  });

  it('removes duplicate rules and rules after a catch-all', () => {
    const a: Policy = {
      rules: [
        { level: 'Request', verbs: ['create', 'delete'] },
        { level: 'Metadata' },
        { level: 'Metadata', verbs: ['get'] },
      ],
    };
    const b: Policy = { rules: [{ level: 'Request', verbs: ['delete', 'create'] }] };
    expect(supersetPolicy([a, b]).rules).toEqual([
      { level: 'Request', verbs: ['create', 'delete'] },
      { level: 'Metadata' },
    ]);
  });

  it('omits only the stages that every policy omits', () => {
    const a: Policy = {
      omitStages: ['RequestReceived', 'ResponseStarted'],
      rules: [{ level: 'Metadata' }],
    };
    const b: Policy = { rules: [{ level: 'Request', omitStages: ['RequestReceived'] }] };
    expect(supersetPolicy([a, b]).omitStages).toEqual(['RequestReceived']);
    expect(supersetPolicy([a]).omitStages).toEqual(['RequestReceived', 'ResponseStarted']);
  });

  it('omits managed fields only when every capturing rule does', () => {
    const a: Policy = { omitManagedFields: true, rules: [{ level: 'Metadata' }] };
    const b: Policy = { rules: [{ level: 'Request', omitManagedFields: true }, { level: 'None' }] };
    const c: Policy = {
      omitManagedFields: true,
      rules: [{ level: 'Request', omitManagedFields: false }],
    };
    expect(supersetPolicy([a, b]).omitManagedFields).toBe(true);
    expect(supersetPolicy([a, c])).not.toHaveProperty('omitManagedFields');
  });

  it('captures nothing when no policy captures anything', () => {
    expect(supersetPolicy([])).toEqual({ rules: [{ level: 'None' }] });
    expect(supersetPolicy([{ rules: [{ level: 'None' }] }])).toEqual({
      rules: [{ level: 'None' }],
    });
  });

  it('is itself a valid policy', () => {
    const p = supersetPolicy([
      { rules: [...kubeSystemNoise, { level: 'RequestResponse', namespaces: ['a'] }] },
    ]);
    expect(validatePolicy(p)).toEqual([]);
  });
});

describe('superset policy with the group wildcard', () => {
  const current: SupersetOptions = { groupWildcard: true };
  const statusWrites: PolicyRule = {
    level: 'RequestResponse',
    verbs: ['update', 'patch'],
    resources: [
      { group: '', resources: ['secrets'] },
      { group: '*', resources: ['*/status'] },
    ],
  };
  const groupsOf = (p: Policy) => p.rules.flatMap((r) => (r.resources ?? []).map((gr) => gr.group));

  it('keeps group "*" for an apiserver that accepts it (1.36 and later)', () => {
    const p: Policy = { rules: [statusWrites, { level: 'Metadata' }] };
    expect(supersetPolicy([p], current).rules).toEqual([statusWrites, { level: 'Metadata' }]);
  });

  it('widens a capturing rule with group "*" to every resource by default, keeping its users, verbs and namespaces', () => {
    const p: Policy = {
      rules: [
        statusWrites,
        {
          level: 'Request',
          users: ['alice'],
          namespaces: ['a'],
          resources: [{ group: '*', resources: ['configmaps'], resourceNames: ['x'] }],
        },
        { level: 'Metadata', namespaces: ['b'] },
      ],
    };
    const superset = supersetPolicy([p]);
    expect(superset.rules).toEqual([
      { level: 'RequestResponse', verbs: ['update', 'patch'] },
      { level: 'Request', users: ['alice'], namespaces: ['a'] },
      { level: 'Metadata', namespaces: ['b'] },
    ]);
    expect(groupsOf(superset)).toEqual([]);
  });

  it('drops the rules after a rule that widening made a catch-all', () => {
    const p: Policy = {
      rules: [
        { level: 'Request', resources: [{ group: '*', resources: ['*/scale'] }] },
        { level: 'Metadata', verbs: ['get'] },
      ],
    };
    expect(supersetPolicy([p]).rules).toEqual([{ level: 'Request' }]);
    expect(supersetPolicy([p], current).rules).toEqual(p.rules);
  });

  it('narrows a shared None rule to its entries of named groups by default, or leaves it out', () => {
    const noise: PolicyRule = {
      level: 'None',
      resources: [
        { group: '', resources: ['events'] },
        { group: '*', resources: ['*/status'] },
      ],
    };
    const onlyWildcard: PolicyRule = {
      level: 'None',
      namespaces: ['kube-system'],
      resources: [{ group: '*', resources: ['leases'] }],
    };
    const a: Policy = { rules: [noise, onlyWildcard, { level: 'Metadata' }] };
    const b: Policy = { rules: [onlyWildcard, noise, { level: 'Request' }] };
    expect(supersetPolicy([a, b]).rules).toEqual([
      { level: 'None', resources: [{ group: '', resources: ['events'] }] },
      { level: 'Request' },
    ]);
    expect(supersetPolicy([a, b], current).rules).toEqual([
      noise,
      onlyWildcard,
      { level: 'Request' },
    ]);
  });

  it('tells whether a policy uses the group wildcard', () => {
    expect(usesGroupWildcard({ rules: [{ level: 'Metadata' }, statusWrites] })).toBe(true);
    expect(
      usesGroupWildcard({ rules: [{ level: 'Metadata', resources: [{ group: 'apps' }] }] }),
    ).toBe(false);
  });
});

// Small alphabets so that random rules and requests actually meet.
const users = ['alice', 'bob', 'system:kube-proxy'];
const groups = ['devs', 'system:masters'];
const verbs = ['get', 'list', 'create', 'delete', 'watch'];
const namespaces = ['', 'a', 'b'];
const resources = [
  'pods',
  'pods/log',
  'secrets',
  '*',
  'pods/*',
  '*/scale',
  '*/status',
  'deployments',
];
// Rules name "*" (every group); requests also come from a group no rule names.
const apiGroups = ['', 'apps', '*'];
const urls = ['/healthz*', '/version', '/metrics', '*'];

const some = <T>(values: readonly T[]) => fc.subarray([...values], { maxLength: 2 });

const resourceRule = fc.record(
  {
    users: some(users),
    userGroups: some(groups),
    verbs: some(verbs),
    namespaces: some(namespaces),
    resources: fc.array(
      fc.record({
        group: fc.constantFrom(...apiGroups),
        resources: some(resources),
        resourceNames: some(['x', 'y']),
      }),
      { maxLength: 2 },
    ),
  },
  { requiredKeys: [] },
);
const nonResourceRule = fc.record(
  { users: some(users), userGroups: some(groups), verbs: some(verbs), nonResourceURLs: some(urls) },
  { requiredKeys: [] },
);
const rule: fc.Arbitrary<PolicyRule> = fc
  .tuple(
    fc.oneof(resourceRule, nonResourceRule),
    fc.constantFrom<Level>(...LEVELS),
    fc.option(fc.subarray<Stage>([...STAGES]), { nil: undefined }),
    fc.option(fc.boolean(), { nil: undefined }),
  )
  .map(([criteria, level, omitStages, omitManagedFields]) => {
    const r: PolicyRule = { ...criteria, level };
    // Keep generated resourceNames valid: upstream requires resources alongside them.
    for (const gr of r.resources ?? [])
      if ((gr.resources ?? []).length === 0) delete gr.resourceNames;
    if (omitStages !== undefined) r.omitStages = omitStages;
    if (omitManagedFields !== undefined) r.omitManagedFields = omitManagedFields;
    return r;
  });
const policy: fc.Arbitrary<Policy> = fc
  .tuple(
    fc.array(rule, { minLength: 1, maxLength: 6 }),
    fc.option(fc.subarray<Stage>([...STAGES]), { nil: undefined }),
    fc.option(fc.boolean(), { nil: undefined }),
  )
  .map(([rules, omitStages, omitManagedFields]) => {
    const p: Policy = { rules };
    if (omitStages !== undefined) p.omitStages = omitStages;
    if (omitManagedFields !== undefined) p.omitManagedFields = omitManagedFields;
    return p;
  });
const request: fc.Arbitrary<RequestAttributes> = fc.record({
  user: fc.option(fc.record({ name: fc.constantFrom(...users), groups: some(groups) }), {
    nil: null,
  }),
  verb: fc.constantFrom(...verbs),
  resourceRequest: fc.boolean(),
  namespace: fc.constantFrom(...namespaces),
  apiGroup: fc.constantFrom('', 'apps', 'batch'),
  resource: fc.constantFrom('pods', 'secrets', 'deployments'),
  subresource: fc.constantFrom('', 'log', 'scale', 'status'),
  name: fc.constantFrom('', 'x', 'z'),
  path: fc.constantFrom('/healthz', '/healthz/etcd', '/version', '/metrics', '/apis'),
});

const modes: [string, SupersetOptions][] = [
  ['for an apiserver before 1.36', { groupWildcard: false }],
  ['for an apiserver 1.36 or later', { groupWildcard: true }],
];

describe.each(modes)('superset properties %s', (_, options) => {
  /** The superset's decision covers every policy's, for every request. */
  function expectCovers(policies: Policy[], requests: RequestAttributes[]): void {
    const superset = compilePolicy(supersetPolicy(policies, options));
    const compiled = policies.map(compilePolicy);
    for (const attrs of requests) {
      const got = evaluatePolicy(superset, attrs);
      for (const p of compiled) {
        const want = evaluatePolicy(p, attrs);
        expect(levelRank(got.level)).toBeGreaterThanOrEqual(levelRank(want.level));
        if (want.level === 'None') continue;
        for (const stage of STAGES) {
          if (!want.omitStages.includes(stage)) expect(got.omitStages).not.toContain(stage);
        }
        if (!want.omitManagedFields) expect(got.omitManagedFields).toBe(false);
      }
    }
  }

  it('never captures less than any policy, in level, stages or managed fields', () => {
    fc.assert(
      fc.property(
        fc.array(policy, { minLength: 1, maxLength: 4 }),
        fc.array(request, { minLength: 1, maxLength: 20 }),
        expectCovers,
      ),
      { numRuns: 500 },
    );
  });

  it('never captures less when every policy starts with the same None rules', () => {
    // The superset keeps these None rules (narrowed where they name group "*"): the case where
    // a wrong rewrite would drop what a policy keeps.
    const noneRules = fc.array(
      rule.map((r) => ({ ...r, level: 'None' as const })),
      { minLength: 1, maxLength: 3 },
    );
    fc.assert(
      fc.property(
        noneRules,
        fc.array(policy, { minLength: 1, maxLength: 3 }),
        fc.array(request, { minLength: 1, maxLength: 20 }),
        (shared, policies, requests) => {
          expectCovers(
            policies.map((p) => ({ ...p, rules: [...shared, ...p.rules] })),
            requests,
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  it('captures nothing a shared leading None rule drops', () => {
    fc.assert(
      fc.property(fc.array(policy, { minLength: 1, maxLength: 3 }), request, (policies, attrs) => {
        const withNoise = policies.map((p) => ({ ...p, rules: [...kubeSystemNoise, ...p.rules] }));
        const got = evaluatePolicy(compilePolicy(supersetPolicy(withNoise, options)), attrs);
        const droppedByAll = withNoise.every(
          (p) =>
            evaluatePolicy(compilePolicy(p), attrs).ruleIndex < kubeSystemNoise.length &&
            evaluatePolicy(compilePolicy(p), attrs).ruleIndex >= 0,
        );
        if (droppedByAll) expect(got.level).toBe('None');
      }),
      { numRuns: 300 },
    );
  });

  it('always produces a valid policy, with group "*" only where the apiserver accepts it', () => {
    fc.assert(
      fc.property(fc.array(policy, { maxLength: 4 }), (policies) => {
        const superset = supersetPolicy(policies, options);
        expect(validatePolicy(superset)).toEqual([]);
        if (!options.groupWildcard) expect(usesGroupWildcard(superset)).toBe(false);
      }),
    );
  });
});
