// `apiserver-config`: the webhook kubeconfig and superset audit policy for the kube-apiserver, from
// manifest files. Runs the built CLI binary (`node dist/main.js`) as child processes, as a user
// would; runs `npm run build` once first if dist/main.js is missing. Starts no other process.
import { KubeConfig } from '@kubernetes/client-node';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_PARSE_LIMITS, parseAuditPayload } from '../../src/audit/parse.ts';
import { type AuditEvent, levelRank, STAGES } from '../../src/audit/types.ts';
import { attributesFromEvent } from '../../src/policy/attributes.ts';
import { compilePolicy, evaluatePolicy } from '../../src/policy/checker.ts';
import { loadPolicy } from '../../src/policy/load.ts';
import { defaultOperatorUser, ownTrafficRules } from '../../src/operator/own-traffic.ts';
import { supersetPolicy } from '../../src/policy/superset.ts';
import { loadResources } from '../../src/standalone/resources.ts';
import type { Sink } from '../../src/sinks/types.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(ROOT, 'dist', 'main.js');
const EXAMPLES = 'examples/standalone';
const EVENTS = join(ROOT, 'test/fixtures/apiserver-1.20/events.jsonl');
const SERVER = 'https://10.96.0.50';
const TOKEN = 'apiserver-token-0c5e2d1f';
// PEM-shaped: the command copies the bytes, nothing here parses the certificate.
const CA_PEM =
  '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUDq0hYw2J0f6m\n-----END CERTIFICATE-----\n';
const CLIENT_CERT =
  '-----BEGIN CERTIFICATE-----\nMIIBrjCCAVSgAwIBAgIUSQzJ8kV3c1ZA\n-----END CERTIFICATE-----\n';
const CLIENT_KEY =
  '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIB3s\n-----END PRIVATE KEY-----\n';

// A Node stack frame, as an uncaught error would print it.
const STACK_FRAME = '    at ';
// The first rules of every superset the command prints: the operator's own traffic left out.
const OWN_TRAFFIC = ownTrafficRules(defaultOperatorUser('kube-audit'), 'kube-audit');

/**
 * Sinks whose policies pull the superset in different directions: None rules for some users only,
 * per-rule stages, a legacy AuditSink keeping RequestReceived, and one invalid pipeline.
 */
const MANIFESTS = `apiVersion: kube-audit.dev/v1alpha1
kind: AuditPipeline
metadata:
  name: config-changes
  namespace: shop
spec:
  policy:
    omitStages: ["RequestReceived", "ResponseStarted"]
    omitManagedFields: true
    rules:
      - level: None
        users: ["dev"]
      - level: RequestResponse
        resources:
          - group: ""
            resources: ["configmaps"]
      - level: Metadata
        verbs: ["get", "list"]
---
apiVersion: kube-audit.dev/v1alpha1
kind: AuditPipeline
metadata:
  name: rbac
  namespace: kube-audit
spec:
  policy:
    rules:
      - level: None
        nonResourceURLs: ["/version", "/openapi/*"]
      - level: Request
        omitStages: ["RequestReceived"]
        resources:
          - group: rbac.authorization.k8s.io
      - level: Metadata
        omitStages: ["RequestReceived", "Panic"]
        resources:
          - group: ""
            resources: ["secrets"]
---
apiVersion: kube-audit.dev/v1alpha1
kind: AuditSink
metadata:
  name: secrets-watch
spec:
  policy:
    level: Metadata
    stages: ["RequestReceived", "ResponseComplete"]
---
apiVersion: kube-audit.dev/v1alpha1
kind: AuditPipeline
metadata:
  name: broken
  namespace: shop
spec:
  policy:
    rules:
      - level: Everything
`;

/**
 * Pipelines that use the group "*" of kube-apiserver 1.36: a None rule every sink starts with (its
 * core entry can stay, its wildcard entry cannot before 1.36), scale changes in every group (the
 * recording holds one, of a Deployment), and status writes in every group within one namespace.
 */
const WILDCARD_MANIFESTS = `apiVersion: kube-audit.dev/v1alpha1
kind: AuditPipeline
metadata:
  name: scaling
  namespace: kube-audit
spec:
  policy:
    rules:
      - level: None
        resources:
          - group: ""
            resources: ["events"]
          - group: "*"
            resources: ["*/status"]
      - level: RequestResponse
        verbs: ["update", "patch"]
        resources:
          - group: "*"
            resources: ["*/scale"]
---
apiVersion: kube-audit.dev/v1alpha1
kind: AuditPipeline
metadata:
  name: status-writes
  namespace: kube-audit
spec:
  policy:
    rules:
      - level: None
        resources:
          - group: ""
            resources: ["events"]
          - group: "*"
            resources: ["*/status"]
      - level: Request
        namespaces: ["shop"]
        resources:
          - group: "*"
      - level: Metadata
        resources:
          - group: ""
            resources: ["configmaps"]
`;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI with `args` from the repository root and collects its output and exit code. */
function cli(args: readonly string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.KUBECONFIG;
    const child = spawn(process.execPath, [MAIN, ...args], { cwd: ROOT, env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end();
  });
}

/** The kubeconfig and the policy printed on stdout, as YAML documents. */
function printedDocuments(run: Run): { kubeconfig: string; policy: string } {
  const docs = parseAllDocuments(run.stdout);
  if (!Array.isArray(docs) || docs.length !== 2) {
    throw new Error(`expected two YAML documents, got:\n${run.stdout}`);
  }
  for (const doc of docs) expect(doc.errors).toEqual([]);
  const [kubeconfig, policy] = docs.map((d) => d.toString());
  return { kubeconfig: kubeconfig ?? '', policy: policy ?? '' };
}

let dir = '';
let caFile = '';
let tokenFile = '';
let manifests = '';
let wildcardManifests = '';
let events: AuditEvent[] = [];

beforeAll(async () => {
  if (!existsSync(MAIN)) {
    await promisify(execFile)('npm', ['run', 'build'], { cwd: ROOT });
  }
  dir = await mkdtemp(join(tmpdir(), 'apiserver-config-test-'));
  caFile = join(dir, 'ca.crt');
  tokenFile = join(dir, 'token');
  manifests = join(dir, 'manifests');
  await writeFile(caFile, CA_PEM);
  // As a mounted Secret holds it: a trailing newline that is no part of the token.
  await writeFile(tokenFile, `${TOKEN}\n`);
  await mkdir(manifests);
  await writeFile(join(manifests, 'sinks.yaml'), MANIFESTS);
  wildcardManifests = join(dir, 'wildcard');
  await mkdir(wildcardManifests);
  await writeFile(join(wildcardManifests, 'sinks.yaml'), WILDCARD_MANIFESTS);
  events = readFileSync(EVENTS, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .flatMap(
      // The recording holds bare EventList items, as `policy eval` reads them.
      (line) => parseAuditPayload(line, DEFAULT_PARSE_LIMITS, { allowBareEvent: true }).events,
    );
}, 120_000);

afterAll(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

function credentials(): string[] {
  return ['--server', SERVER, '--ca-file', caFile, '--token-file', tokenFile];
}

describe('the webhook kubeconfig', () => {
  it('points the apiserver at the fan-in endpoint, trusting the CA and presenting the token', async () => {
    const run = await cli(['apiserver-config', '-f', EXAMPLES, ...credentials()]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const kc = new KubeConfig();
    kc.loadFromString(printedDocuments(run).kubeconfig);
    expect(kc.getCurrentCluster()).toMatchObject({
      server: 'https://10.96.0.50/audit/v1/events',
      caData: Buffer.from(CA_PEM).toString('base64'),
    });
    expect(kc.getCurrentUser()).toMatchObject({ token: TOKEN });
  });

  it('is a v1 Config whose current context joins the cluster and the user', async () => {
    const run = await cli(['apiserver-config', '-f', EXAMPLES, ...credentials()]);
    const config = parseAllDocuments(run.stdout);
    const kubeconfig = (Array.isArray(config) ? config[0]?.toJS() : undefined) as Record<
      string,
      unknown
    >;
    expect(kubeconfig).toEqual({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'kube-audit-operator',
          cluster: {
            server: 'https://10.96.0.50/audit/v1/events',
            'certificate-authority-data': Buffer.from(CA_PEM).toString('base64'),
          },
        },
      ],
      users: [{ name: 'kube-apiserver', user: { token: TOKEN } }],
      contexts: [
        { name: 'default', context: { cluster: 'kube-audit-operator', user: 'kube-apiserver' } },
      ],
      'current-context': 'default',
    });
  });

  it.each([
    ['https://kube-audit.kube-audit.svc:8443', 'https://kube-audit.kube-audit.svc:8443'],
    // The scheme's default port too: what the chart's NOTES print, and what a user checks for.
    ['https://10.96.0.50:443', 'https://10.96.0.50:443'],
    ['https://10.96.0.50:443/', 'https://10.96.0.50:443'],
    ['https://10.96.0.50', 'https://10.96.0.50'],
  ])('keeps --server %s as written, port included', async (given, base) => {
    const run = await cli([
      'apiserver-config',
      '-f',
      EXAMPLES,
      '--server',
      given,
      '--token-file',
      tokenFile,
    ]);
    expect(run.code).toBe(0);
    const kc = new KubeConfig();
    kc.loadFromString(printedDocuments(run).kubeconfig);
    expect(kc.getCurrentCluster()?.server).toBe(`${base}/audit/v1/events`);
  });

  it('presents a client certificate instead of a token when given one', async () => {
    const cert = join(dir, 'client.crt');
    const key = join(dir, 'client.key');
    await writeFile(cert, CLIENT_CERT);
    await writeFile(key, CLIENT_KEY);
    const run = await cli([
      'apiserver-config',
      '-f',
      EXAMPLES,
      '--server',
      SERVER,
      '--client-cert-file',
      cert,
      '--client-key-file',
      key,
    ]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const kc = new KubeConfig();
    kc.loadFromString(printedDocuments(run).kubeconfig);
    const user = kc.getCurrentUser();
    expect(user?.certData).toBe(Buffer.from(CLIENT_CERT).toString('base64'));
    expect(user?.keyData).toBe(Buffer.from(CLIENT_KEY).toString('base64'));
    expect(user?.token).toBeUndefined();
    expect(kc.getCurrentCluster()?.caData).toBeUndefined();
  });
});

describe('the superset policy', () => {
  it.each([
    { name: 'the standalone examples', path: EXAMPLES },
    { name: 'sinks with None rules and per-rule stages', path: 'manifests' },
    { name: 'sinks with the group wildcard', path: 'wildcard' },
  ])(
    'is an audit.k8s.io/v1 Policy, the superset of every valid sink of $name',
    async ({ path }) => {
      const from = localPath(path);
      const run = await cli(['apiserver-config', '-f', from, ...credentials()]);
      expect(run.code).toBe(0);
      const text = printedDocuments(run).policy;
      expect(parseAllDocuments(text)).toHaveLength(1);
      expect(text).toMatch(/^apiVersion: audit\.k8s\.io\/v1\nkind: Policy\n/m);
      const sinks = await sinksOf(from);
      expect(loadPolicy(text).policy).toEqual(
        supersetPolicy(
          sinks.map((s) => s.policy),
          { groupWildcard: false, exclude: OWN_TRAFFIC },
        ),
      );
      expect(run.stdout).toContain(
        `# Superset of the policies of: ${sinks.map((s) => s.key).join(', ')}\n`,
      );
    },
  );

  it.each([
    { name: 'the standalone examples', path: EXAMPLES, version: [] },
    { name: 'sinks with None rules and per-rule stages', path: 'manifests', version: [] },
    { name: 'sinks with the group wildcard', path: 'wildcard', version: [] },
    {
      name: 'sinks with the group wildcard, for 1.36',
      path: 'wildcard',
      version: ['--apiserver-version', '1.36'],
    },
  ])(
    'never decides a lower level, or omits a stage or managed fields, where a sink of $name keeps them, for any recorded event',
    async ({ path, version }) => {
      const from = localPath(path);
      const run = await cli(['apiserver-config', '-f', from, ...credentials(), ...version]);
      expect(run.code).toBe(0);
      const superset = compilePolicy(loadPolicy(printedDocuments(run).policy).policy);
      const sinks = await sinksOf(from);
      expect(sinks.length).toBeGreaterThanOrEqual(2);
      const compared = new Map<string, number>();
      for (const event of events) {
        const attrs = attributesFromEvent(event);
        const wide = evaluatePolicy(superset, attrs);
        for (const sink of sinks) {
          const own = evaluatePolicy(sink.compiledPolicy, attrs);
          if (own.level === 'None') continue;
          const what = `${sink.key} ${event.verb} ${event.requestURI}`;
          expect(levelRank(wide.level), what).toBeGreaterThanOrEqual(levelRank(own.level));
          const kept = STAGES.filter((s) => !own.omitStages.includes(s));
          for (const stage of kept) expect(wide.omitStages, what).not.toContain(stage);
          if (!own.omitManagedFields) expect(wide.omitManagedFields, what).toBe(false);
          compared.set(sink.key, (compared.get(sink.key) ?? 0) + 1);
        }
      }
      // Every sink captures something of the recording, so the comparison is not vacuous.
      for (const sink of sinks) expect(compared.get(sink.key), sink.key).toBeGreaterThan(0);
    },
  );

  it('widens group "*" by default, so that an apiserver before 1.36 accepts the policy, and says so', async () => {
    const run = await cli(['apiserver-config', '-f', wildcardManifests, ...credentials()]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const text = printedDocuments(run).policy;
    expect(text).not.toMatch(/group: "?\*/);
    expect(run.stdout).toContain(
      '# Rules with group "*" are widened to every API group: releases before 1.36 refuse it (--apiserver-version 1.36 or later keeps it).\n',
    );
    expect(loadPolicy(text).policy).toEqual({
      rules: [
        ...OWN_TRAFFIC,
        { level: 'None', resources: [{ group: '', resources: ['events'] }] },
        { level: 'RequestResponse', verbs: ['update', 'patch'] },
        { level: 'Request', namespaces: ['shop'] },
        { level: 'Metadata', resources: [{ group: '', resources: ['configmaps'] }] },
      ],
    });
  });

  it.each(['1.36', 'v1.36.2', '1.37.0-rc.1', 'v2.0'])(
    'keeps group "*" for --apiserver-version %s',
    async (version) => {
      const run = await cli([
        'apiserver-config',
        '-f',
        wildcardManifests,
        ...credentials(),
        '--apiserver-version',
        version,
      ]);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      const text = printedDocuments(run).policy;
      expect(run.stdout).not.toContain('widened');
      const sinks = await sinksOf(wildcardManifests);
      expect(loadPolicy(text).policy).toEqual(
        supersetPolicy(
          sinks.map((s) => s.policy),
          { groupWildcard: true, exclude: OWN_TRAFFIC },
        ),
      );
      expect(text).toContain('- group: "*"');
    },
  );

  it.each(['1.35', 'v1.35.4', '1.18.19'])(
    'widens group "*" for --apiserver-version %s',
    async (version) => {
      const run = await cli([
        'apiserver-config',
        '-f',
        wildcardManifests,
        ...credentials(),
        '--apiserver-version',
        version,
      ]);
      expect(run.code).toBe(0);
      const sinks = await sinksOf(wildcardManifests);
      expect(loadPolicy(printedDocuments(run).policy).policy).toEqual(
        supersetPolicy(
          sinks.map((s) => s.policy),
          { groupWildcard: false, exclude: OWN_TRAFFIC },
        ),
      );
      expect(run.stdout).toContain('widened');
    },
  );

  it("leaves out the operator's own Lease renewals and status patches, and says so", async () => {
    const run = await cli(['apiserver-config', '-f', EXAMPLES, ...credentials()]);
    expect(run.code).toBe(0);
    const user = 'system:serviceaccount:kube-audit:kube-audit-operator';
    expect(run.stdout).toContain(
      `# The first rules leave out the Lease renewals, replica reports and status patches of ${user} (--operator-user).\n`,
    );
    const superset = compilePolicy(loadPolicy(printedDocuments(run).policy).policy);
    const API_GROUPS: Record<string, string> = {
      leases: 'coordination.k8s.io',
      auditpipelines: 'kube-audit.dev',
      configmaps: '',
    };
    const decide = (username: string, verb: string, resource: string, namespace: string) =>
      evaluatePolicy(superset, {
        user: { name: username, groups: ['system:serviceaccounts'] },
        verb,
        resourceRequest: true,
        apiGroup: API_GROUPS[resource.split('/')[0] as string] ?? '',
        resource: resource.split('/')[0] as string,
        subresource: resource.split('/')[1] ?? '',
        namespace,
        name: 'x',
        path: '',
      }).level;
    expect(decide(user, 'update', 'leases', 'kube-audit')).toBe('None');
    expect(decide(user, 'get', 'leases', 'kube-audit')).toBe('None');
    expect(decide(user, 'patch', 'auditpipelines/status', 'shop')).toBe('None');
    expect(decide(user, 'update', 'configmaps', 'kube-audit')).toBe('None');
    expect(decide(user, 'list', 'configmaps', 'kube-audit')).toBe('None');
    // Everything else of the operator, and the same calls by anyone else, as the sinks ask.
    expect(decide(user, 'create', 'leases', 'kube-audit')).not.toBe('None');
    expect(decide(user, 'update', 'leases', 'shop')).not.toBe('None');
    expect(decide('alice', 'update', 'leases', 'kube-audit')).not.toBe('None');
    expect(decide(user, 'patch', 'auditpipelines', 'shop')).not.toBe('None');
  });

  it.each([
    ['another identity', ['--operator-user', 'kube-audit-operator'], 'kube-audit-operator'],
    ['none, keeping all of its traffic', ['--operator-user', ''], undefined],
  ])('takes --operator-user: %s', async (_name, flag, user) => {
    const run = await cli(['apiserver-config', '-f', EXAMPLES, ...credentials(), ...flag]);
    expect(run.code).toBe(0);
    const { rules } = loadPolicy(printedDocuments(run).policy).policy;
    const own = rules.filter((r) => r.users !== undefined);
    expect(own).toEqual(user === undefined ? [] : ownTrafficRules(user, 'kube-audit'));
  });

  it('says nothing about widening when no sink uses group "*"', async () => {
    const run = await cli(['apiserver-config', '-f', manifests, ...credentials()]);
    expect(run.stdout).not.toContain('widened');
  });

  it('skips an invalid sink with a warning naming it and its field, and still succeeds', async () => {
    const run = await cli(['apiserver-config', '-f', manifests, ...credentials()]);
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(
      /^warning: skipped: .*AuditPipeline shop\/broken.*rules\[0\]\.level/m,
    );
    expect(run.stdout).not.toContain('AuditPipeline/shop/broken');
  });

  it('captures nothing when there are no sinks, and says so', async () => {
    const empty = join(dir, 'empty');
    await mkdir(empty, { recursive: true });
    const run = await cli(['apiserver-config', '-f', empty, ...credentials()]);
    expect(run.code).toBe(0);
    const text = printedDocuments(run).policy;
    expect(text).toContain('(no sinks)');
    expect(loadPolicy(text).policy).toEqual({ rules: [{ level: 'None' }] });
  });
});

describe('--output-dir', () => {
  it('writes the kubeconfig (owner-only) and the policy, and says how to start the apiserver', async () => {
    const out = join(dir, 'out', 'nested');
    const run = await cli(['apiserver-config', '-f', EXAMPLES, ...credentials(), '-o', out]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const webhookPath = join(out, 'audit-webhook.kubeconfig');
    const policyPath = join(out, 'audit-policy.yaml');
    expect(run.stdout).toContain(`--audit-webhook-config-file=${webhookPath}`);
    expect(run.stdout).toContain(`--audit-policy-file=${policyPath}`);
    expect((await stat(webhookPath)).mode & 0o777).toBe(0o600);

    const printed = printedDocuments(
      await cli(['apiserver-config', '-f', EXAMPLES, ...credentials()]),
    );
    const kc = new KubeConfig();
    kc.loadFromFile(webhookPath);
    expect(kc.getCurrentCluster()?.server).toBe('https://10.96.0.50/audit/v1/events');
    expect(kc.getCurrentUser()?.token).toBe(TOKEN);
    const policyText = await readFile(policyPath, 'utf8');
    expect(loadPolicy(policyText).policy).toEqual(loadPolicy(printed.policy).policy);
    expect(policyText).toMatch(/^# Superset of the policies of: AuditSink\/cluster-trail/);
  });
});

describe('errors', () => {
  it.each([
    {
      name: 'no credentials',
      args: ['--server', SERVER, '--ca-file', 'CA'],
      message:
        'error: the receivers authenticate: give --token-file or --client-cert-file and --client-key-file',
    },
    {
      name: 'a --server that is no URL',
      args: ['--server', '10.96.0.50:443', '--token-file', 'TOKEN'],
      message: 'error: --server: expected a URL, got "10.96.0.50:443"',
    },
    {
      name: 'a --server that is not http(s)',
      args: ['--server', 'ftp://10.96.0.50', '--token-file', 'TOKEN'],
      message:
        'error: --server: expected the receivers\' base URL (https://host[:port], no path), got "ftp://10.96.0.50"',
    },
    {
      name: 'a --server with a path, which the webhook URL would lose',
      args: ['--server', 'https://10.96.0.50/audit', '--token-file', 'TOKEN'],
      message:
        'error: --server: expected the receivers\' base URL (https://host[:port], no path), got "https://10.96.0.50/audit"',
    },
    {
      name: 'a client certificate without its key',
      args: ['--server', SERVER, '--client-cert-file', 'CA'],
      message: 'error: --client-cert-file and --client-key-file go together',
    },
    {
      name: 'a client key without its certificate',
      args: ['--server', SERVER, '--client-key-file', 'CA'],
      message: 'error: --client-cert-file and --client-key-file go together',
    },
    {
      name: 'an --apiserver-version that is no release',
      args: [...['--server', SERVER, '--token-file', 'TOKEN'], '--apiserver-version', 'latest'],
      message:
        'error: --apiserver-version: expected a Kubernetes release such as 1.36 or v1.36.2, got "latest"',
    },
    {
      name: 'no --server',
      args: ['--token-file', 'TOKEN'],
      message: "error: required option '--server <url>' not specified",
    },
  ])(
    'exits 2 with a usage message for $name, printing nothing on stdout',
    async ({ args, message }) => {
      const resolved = args.map((a) => (a === 'CA' ? caFile : a === 'TOKEN' ? tokenFile : a));
      const run = await cli(['apiserver-config', '-f', EXAMPLES, ...resolved]);
      expect(run.code).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr.startsWith(message)).toBe(true);
      expect(run.stderr).not.toContain(STACK_FRAME);
    },
  );

  it('exits 1 naming the file when --kubeconfig does not exist', async () => {
    const missing = join(dir, 'no-such.kubeconfig');
    const run = await cli(['apiserver-config', '--kubeconfig', missing, ...credentials()]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^error: cannot read the cluster: /);
    expect(run.stderr).toContain(missing);
    expect(run.stderr).not.toContain(STACK_FRAME);
  });

  it('exits 1 naming the file when the token file cannot be read', async () => {
    const missing = join(dir, 'no-such-token');
    const run = await cli([
      'apiserver-config',
      '-f',
      EXAMPLES,
      '--server',
      SERVER,
      '--token-file',
      missing,
    ]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^error: --token-file: cannot read /);
    expect(run.stderr).toContain(missing);
  });

  it('exits 1 when the token file holds no token', async () => {
    const blank = join(dir, 'blank-token');
    await writeFile(blank, '\n');
    const run = await cli([
      'apiserver-config',
      '-f',
      EXAMPLES,
      '--server',
      SERVER,
      '--token-file',
      blank,
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`error: --token-file: ${blank} holds no token\n`);
  });
});

/** The directory a test case names: one of those written by beforeAll, or a repository path. */
function localPath(path: string): string {
  if (path === 'manifests') return manifests;
  if (path === 'wildcard') return wildcardManifests;
  return path;
}

/** The sinks the command reads from `path`, loaded the way it loads them. */
async function sinksOf(path: string): Promise<Sink[]> {
  const loaded = await loadResources(
    path.startsWith('/') ? path : join(ROOT, path),
    { clusterWideNamespaces: ['kube-audit'], requireDestination: false },
    'kube-audit',
  );
  return loaded.sinks;
}
