// Policy loading and validation: upstream reader_test.go and validation_test.go cases, plus the
// errors users meet. Pure: starts no process.
import { describe, expect, it } from 'vitest';
import { loadPolicies, loadPolicy, PolicyLoadError } from '../../../src/policy/load.ts';
import type { Policy, PolicyRule } from '../../../src/policy/types.ts';
import { formatFieldError, validatePolicy } from '../../../src/policy/validate.ts';

function problemsOf(text: string): readonly string[] {
  try {
    loadPolicies(text, 'policy.yaml');
  } catch (err) {
    if (err instanceof PolicyLoadError) return err.problems;
    throw err;
  }
  throw new Error('expected the policy to be rejected');
}

const upstreamPolicy = (apiVersion: string) => `
apiVersion: ${apiVersion}
kind: Policy
rules:
  - level: None
    nonResourceURLs:
      - /healthz*
      - /version
  - level: RequestResponse
    users: ["tim"]
    userGroups: ["testers", "developers"]
    verbs: ["patch", "delete", "create"]
    resources:
      - group: ""
      - group: "rbac.authorization.k8s.io"
        resources: ["clusterroles", "clusterrolebindings"]
    namespaces: ["default", "kube-system"]
  - level: Metadata
`;

const expectedUpstream: Policy = {
  rules: [
    { level: 'None', nonResourceURLs: ['/healthz*', '/version'] },
    {
      level: 'RequestResponse',
      users: ['tim'],
      userGroups: ['testers', 'developers'],
      verbs: ['patch', 'delete', 'create'],
      resources: [
        { group: '' },
        { group: 'rbac.authorization.k8s.io', resources: ['clusterroles', 'clusterrolebindings'] },
      ],
      namespaces: ['default', 'kube-system'],
    },
    { level: 'Metadata' },
  ],
};

describe('loading policies (upstream reader_test.go)', () => {
  it('parses the upstream v1 policy', () => {
    const loaded = loadPolicy(upstreamPolicy('audit.k8s.io/v1'), 'policy.yaml');
    expect(loaded.policy).toEqual(expectedUpstream);
    expect(loaded.warnings).toEqual([]);
  });

  it('parses the same policy written as JSON', () => {
    const json = JSON.stringify({
      apiVersion: 'audit.k8s.io/v1',
      kind: 'Policy',
      ...expectedUpstream,
    });
    expect(loadPolicy(json).policy).toEqual(expectedUpstream);
  });

  it('accepts the deprecated v1beta1 with a warning', () => {
    const loaded = loadPolicy(upstreamPolicy('audit.k8s.io/v1beta1'));
    expect(loaded.policy).toEqual(expectedUpstream);
    expect(loaded.warnings).toEqual([
      expect.stringMatching(/^apiVersion: "audit.k8s.io\/v1beta1" is deprecated/),
    ]);
  });

  it('rejects a policy without apiVersion and kind', () => {
    const text = upstreamPolicy('x').replace('apiVersion: x\nkind: Policy\n', '');
    expect(problemsOf(text)).toEqual(['apiVersion: Required value: "audit.k8s.io/v1"']);
  });

  it('rejects an unknown apiVersion and a wrong kind', () => {
    expect(
      problemsOf('apiVersion: audit.k8s.io/v1alpha1\nkind: Policy\nrules: [{level: None}]'),
    ).toEqual([
      'apiVersion: Unsupported value: "audit.k8s.io/v1alpha1": supported values: "audit.k8s.io/v1", "audit.k8s.io/v1beta1"',
    ]);
    expect(
      problemsOf('apiVersion: audit.k8s.io/v1\nkind: PolicyList\nrules: [{level: None}]'),
    ).toEqual(['kind: Unsupported value: "PolicyList": supported values: "Policy"']);
  });

  it('defaults an absent kind to Policy, as decoding into a Policy does', () => {
    expect(loadPolicy('apiVersion: audit.k8s.io/v1\nrules: [{level: Metadata}]').policy).toEqual({
      rules: [{ level: 'Metadata' }],
    });
  });

  it('ignores an unknown field like the apiserver, and warns about it', () => {
    // upstream TestParsePolicyWithUnknownField: `verbs` indented into the GroupResources.
    const loaded = loadPolicy(`
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    resources:
      - group: coordination.k8s.io
        resources: ["leases"]
        verbs: ["watch", "get", "list"]
`);
    expect(loaded.policy.rules).toEqual([
      { level: 'None', resources: [{ group: 'coordination.k8s.io', resources: ['leases'] }] },
    ]);
    expect(loaded.warnings).toEqual([
      'rules[0].resources[0].verbs: unknown field, ignored (as the kube-apiserver ignores it)',
    ]);
  });

  it('rejects a policy with no rules', () => {
    expect(problemsOf('apiVersion: audit.k8s.io/v1\nkind: Policy')).toEqual([
      'rules: Required value: a policy needs at least one rule',
    ]);
    expect(problemsOf('apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []')).toEqual([
      'rules: Required value: a policy needs at least one rule',
    ]);
  });

  it('loads the group wildcard of kube-apiserver 1.36, quoted as YAML needs it', () => {
    const loaded = loadPolicy(`
apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    verbs: ["update", "patch"]
    resources:
      - group: "*"
        resources: ["*/status"]
`);
    expect(loaded.policy.rules).toEqual([
      {
        level: 'None',
        verbs: ['update', 'patch'],
        resources: [{ group: '*', resources: ['*/status'] }],
      },
    ]);
    expect(loaded.warnings).toEqual([]);
  });

  it('says to quote a wildcard that YAML read as an alias', () => {
    const hint =
      'a value starting with * is a YAML alias; quote a wildcard, e.g. "*" or "*/status"';
    const bareGroup = problemsOf(
      'apiVersion: audit.k8s.io/v1\nrules:\n  - level: None\n    resources:\n      - group: *\n',
    );
    expect(bareGroup).toEqual([
      expect.stringMatching(/^malformed YAML\/JSON: .*line 5, column 16/),
    ]);
    expect(bareGroup[0]?.endsWith(`: ${hint}`)).toBe(true);
    const bareResource = problemsOf(
      'apiVersion: audit.k8s.io/v1\nrules:\n  - level: None\n    resources:\n      - resources: [*/status]\n',
    );
    expect(bareResource).toEqual([expect.stringMatching(/^malformed YAML\/JSON: .*\/status: /)]);
    expect(bareResource[0]?.endsWith(`: ${hint}`)).toBe(true);
  });

  it('rejects an empty file', () => {
    expect(problemsOf('')).toEqual(['no Policy found: the file is empty']);
    expect(problemsOf('# only a comment\n---\n')).toEqual(['no Policy found: the file is empty']);
  });

  it('reports malformed YAML and JSON', () => {
    expect(problemsOf('rules: [level: None')[0]).toMatch(/^malformed YAML\/JSON: /);
    expect(problemsOf('{"apiVersion": "audit.k8s.io/v1", "rules": [}')[0]).toMatch(
      /^malformed YAML\/JSON: /,
    );
  });

  it('reports wrong types with their field paths', () => {
    expect(
      problemsOf(`
apiVersion: audit.k8s.io/v1
kind: Policy
omitManagedFields: "yes"
rules:
  - level: 3
  - level: Metadata
    users: tim
  - level: Metadata
    resources:
      - group: ""
        resources: [pods, 7]
  - "Metadata"
`),
    ).toEqual([
      'omitManagedFields: expected true or false, got string "yes"',
      'rules[0].level: expected a string, got number 3',
      'rules[1].users: expected an array of strings, got string "tim"',
      'rules[2].resources[0].resources[1]: expected a string, got number 7',
      'rules[3]: expected a rule object, got string "Metadata"',
    ]);
  });

  it('loads every document of a multi-document file, and every item of a List', () => {
    const two =
      'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None}]\n---\napiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: Metadata}]\n';
    expect(loadPolicies(two, 'p.yaml').map((l) => [l.source, l.policy.rules[0]?.level])).toEqual([
      ['p.yaml#1', 'None'],
      ['p.yaml#2', 'Metadata'],
    ]);
    const list = JSON.stringify({
      apiVersion: 'v1',
      kind: 'List',
      items: [
        { apiVersion: 'audit.k8s.io/v1', kind: 'Policy', rules: [{ level: 'Request' }] },
        { apiVersion: 'audit.k8s.io/v1', kind: 'Policy', rules: [{ level: 'Bogus' }] },
      ],
    });
    expect(() => loadPolicies(list, 'l.json')).toThrow(PolicyLoadError);
    expect(problemsOf(list)).toEqual([
      'items[1].rules[0].level: Unsupported value: "Bogus": supported values: "None", "Metadata", "Request", "RequestResponse"',
    ]);
  });

  it('names the document of each problem in a multi-document file', () => {
    const text =
      'apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{level: None}]\n---\napiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [{}]\n';
    expect(problemsOf(text)).toEqual(['document 2: rules[0].level: Required value']);
  });

  it('refuses more than one policy where exactly one is needed', () => {
    const text =
      'apiVersion: audit.k8s.io/v1\nrules: [{level: None}]\n---\napiVersion: audit.k8s.io/v1\nrules: [{level: None}]\n';
    expect(() => loadPolicy(text, 'p.yaml')).toThrow(/expected one Policy, found 2/);
  });

  it('names the source and every problem in the error message', () => {
    expect(() =>
      loadPolicy('apiVersion: audit.k8s.io/v1\nrules: [{}, {level: X}]', 'mine.yaml'),
    ).toThrow(
      'mine.yaml: invalid audit policy:\n  rules[0].level: Required value\n  rules[1].level: Unsupported value: "X"',
    );
  });
});

describe('validating policies (upstream validation_test.go)', () => {
  const valid: PolicyRule[] = [
    { level: 'Metadata' },
    { level: 'None', userGroups: ['system:serviceaccounts', 'system:nodes'] },
    {
      level: 'RequestResponse',
      verbs: ['get'],
      resources: [{ group: 'rbac.authorization.k8s.io', resources: ['roles', 'rolebindings'] }],
      namespaces: ['kube-system'],
    },
    {
      level: 'Metadata',
      userGroups: ['developers'],
      nonResourceURLs: ['/logs*', '/healthz*', '/metrics', '*'],
    },
    { level: 'Metadata', omitStages: ['RequestReceived'] },
    // kube-apiserver 1.36 and later: the group "*", alone or with resources, names and namespaces.
    {
      level: 'RequestResponse',
      verbs: ['update'],
      resources: [{ group: '*', resources: ['*/status'] }],
    },
    { level: 'Metadata', namespaces: [''], resources: [{ group: '*' }] },
    {
      level: 'None',
      resources: [
        { group: '', resources: ['pods/*'] },
        { group: '*', resources: ['leases', '*/scale'], resourceNames: ['kube-scheduler'] },
      ],
    },
  ];

  it.each(valid.map((rule) => [rule]))('accepts %j', (rule) => {
    expect(validatePolicy({ rules: [rule] })).toEqual([]);
  });

  it('accepts an empty policy, policy-level omitStages, and several rules', () => {
    expect(validatePolicy({ rules: [] })).toEqual([]);
    expect(validatePolicy({ rules: [], omitStages: ['RequestReceived'] })).toEqual([]);
    expect(validatePolicy({ rules: valid })).toEqual([]);
  });

  const invalid: [string, Policy, string[]][] = [
    ['a rule without level', { rules: [{} as PolicyRule] }, ['rules[0].level: Required value']],
    [
      'a resource rule without level',
      {
        rules: [
          {
            verbs: ['get'],
            resources: [{ resources: ['secrets'] }],
            namespaces: ['kube-system'],
          } as PolicyRule,
        ],
      },
      ['rules[0].level: Required value'],
    ],
    [
      'an unknown level',
      { rules: [{ level: 'FooBar' } as unknown as PolicyRule] },
      [
        'rules[0].level: Unsupported value: "FooBar": supported values: "None", "Metadata", "Request", "RequestResponse"',
      ],
    ],
    [
      'namespaces with nonResourceURLs',
      { rules: [{ level: 'Metadata', namespaces: ['default'], nonResourceURLs: ['/logs*'] }] },
      [
        'rules[0].nonResourceURLs: Invalid value: ["/logs*"]: rules cannot apply to both regular resources and non-resource URLs',
      ],
    ],
    [
      'resources with nonResourceURLs',
      {
        rules: [
          {
            level: 'Metadata',
            resources: [{ resources: ['secrets'] }],
            nonResourceURLs: ['/logs*'],
          },
        ],
      },
      [
        'rules[0].nonResourceURLs: Invalid value: ["/logs*"]: rules cannot apply to both regular resources and non-resource URLs',
      ],
    ],
    [
      'a group with a version',
      {
        rules: [
          {
            level: 'Metadata',
            resources: [{ group: 'rbac.authorization.k8s.io/v1beta1', resources: ['roles'] }],
          },
        ],
      },
      [
        expect.stringMatching(
          /^rules\[0\]\.resources\[0\]\.group: Invalid value: "rbac.authorization.k8s.io\/v1beta1": a lowercase RFC 1123 subdomain/,
        ) as string,
      ],
    ],
    [
      'a group pattern: "*" is the only group wildcard',
      {
        rules: [
          {
            level: 'Metadata',
            resources: [{ group: '*.k8s.io' }, { group: 'example.*' }, { group: '**' }],
          },
        ],
      },
      ['*.k8s.io', 'example.*', '**'].map(
        (group, i) =>
          `rules[0].resources[${i}].group: Invalid value: "${group}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com'); an API group has no version, e.g. 'rbac.authorization.k8s.io'`,
      ),
    ],
    [
      'resourceNames without resources, in every group too',
      { rules: [{ level: 'Metadata', resources: [{ group: '*', resourceNames: ['leader'] }] }] },
      [
        'rules[0].resources[0].resourceNames: Invalid value: ["leader"]: using resourceNames requires at least one resource',
      ],
    ],
    [
      'the group "*" beside non-resource URLs',
      {
        rules: [{ level: 'Metadata', resources: [{ group: '*' }], nonResourceURLs: ['/healthz'] }],
      },
      [
        'rules[0].nonResourceURLs: Invalid value: ["/healthz"]: rules cannot apply to both regular resources and non-resource URLs',
      ],
    ],
    [
      'a non-resource URL without a leading slash',
      { rules: [{ level: 'Metadata', nonResourceURLs: ['logs', '/healthz*'] }] },
      [
        'rules[0].nonResourceURLs[0]: Invalid value: "logs": non-resource URL rules must begin with a \'/\' character',
      ],
    ],
    [
      'an empty non-resource URL',
      { rules: [{ level: 'Metadata', nonResourceURLs: ['', '/healthz*'] }] },
      [
        'rules[0].nonResourceURLs[0]: Invalid value: "": non-resource URL rules must begin with a \'/\' character',
      ],
    ],
    [
      'a wildcard in the middle of a URL',
      { rules: [{ level: 'Metadata', nonResourceURLs: ['/logs/*/*', '/metrics'] }] },
      [
        'rules[0].nonResourceURLs[0]: Invalid value: "/logs/*/*": non-resource URL wildcards \'*\' must be the final character of the rule',
      ],
    ],
    [
      'a wildcard before a suffix',
      { rules: [{ level: 'Metadata', nonResourceURLs: ['/metrics', '/logs/*.log'] }] },
      [
        'rules[0].nonResourceURLs[1]: Invalid value: "/logs/*.log": non-resource URL wildcards \'*\' must be the final character of the rule',
      ],
    ],
    [
      'resourceNames without resources',
      {
        rules: [
          {
            level: 'Metadata',
            verbs: ['get'],
            resources: [{ resourceNames: ['leader'] }],
            namespaces: ['kube-system'],
          },
        ],
      },
      [
        'rules[0].resources[0].resourceNames: Invalid value: ["leader"]: using resourceNames requires at least one resource',
      ],
    ],
    [
      'an unknown rule stage',
      { rules: [{ level: 'Metadata', omitStages: ['foo'] } as unknown as PolicyRule] },
      [
        'rules[0].omitStages[0]: Invalid value: "foo": allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic',
      ],
    ],
    [
      'a bad rule after good ones',
      { rules: [...valid, {} as PolicyRule] },
      ['rules[8].level: Required value'],
    ],
    [
      'an unknown policy stage',
      { omitStages: ['foo'], rules: [{ level: 'Metadata' }] } as unknown as Policy,
      [
        'omitStages[0]: Invalid value: "foo": allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic',
      ],
    ],
  ];

  it.each(invalid)('rejects %s', (_name, policy, messages) => {
    expect(validatePolicy(policy).map(formatFieldError)).toEqual(messages);
  });

  it('reports both URL problems and both group problems at once', () => {
    const errors = validatePolicy({
      rules: [
        { level: 'Metadata', nonResourceURLs: ['a*b'] },
        { level: 'Metadata', resources: [{ group: `${'a'.repeat(254)}-` }] },
      ],
    }).map(formatFieldError);
    expect(errors).toHaveLength(3);
    expect(errors[0]).toMatch(/^rules\[0\]\.nonResourceURLs\[0\]: .*must begin with a '\/'/);
    expect(errors[1]).toMatch(/^rules\[0\]\.nonResourceURLs\[0\]: .*must be the final character/);
    expect(errors[2]).toMatch(
      /^rules\[1\]\.resources\[0\]\.group: .*must be no more than 253 characters, a lowercase/,
    );
  });
});
