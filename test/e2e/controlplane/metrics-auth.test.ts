// Who may read /metrics in `run`, against the real kube-apiserver: etcd and kube-apiserver (current
// release, static token users, RBAC, an audit log of every request for counting the operator's
// reviews), `kube-audit-operator run` (the built binary, as the user examples/operator/rbac.yaml
// binds), kubectl, and helm rendering the chart's metrics-reader ClusterRole and its binding.
// Tokens of static users and of ServiceAccounts (TokenRequest) are reviewed by the apiserver: 401
// without a token or with one it does not know, 403 without `get` on /metrics, 200 with it; the
// decisions are cached (one TokenReview and one SubjectAccessReview per token and TTL), and a
// grant applies once a cached denial expires. Also measures the latency of /metrics with a cached
// and an uncached decision.
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { type ControlPlane, helmPath, startControlPlane } from '../../harness/controlplane.ts';
import { freePort } from '../../harness/influxd.ts';
import {
  type OperatorProcess,
  operatorRunArgs,
  startOperatorProcess,
} from '../../harness/operator.ts';
import { TestPki } from '../../harness/pki.ts';
import { type GetAnswer, httpsGet, kubectlOk } from './kube.ts';

const CHART = fileURLToPath(new URL('../../../charts/kube-audit-operator', import.meta.url));
const OPERATOR_NS = 'kube-audit';
/** The operator's default: how long a refused token stays refused. */
const DENY_TTL_MS = 10_000;
/** The ServiceAccount the chart's values bind to the metrics-reader ClusterRole, as Prometheus's. */
const SCRAPER = { namespace: 'monitoring', name: 'prometheus' };

let cp: ControlPlane | undefined;
let operator: OperatorProcess | undefined;
let dir = '';
let ca = '';
let metricsUrl = '';
let auditLog = '';
let readerRole = '';
/** Every credential handed out: none may reach the operator's log. */
const secrets = new Map<string, string>();

function running<T>(what: string, value: T | undefined): T {
  if (value === undefined) throw new Error(`${what} is not running`);
  return value;
}

function must(args: string[], input?: string): Promise<string> {
  return kubectlOk(running('the control plane', cp), args, input);
}

/** `helm template` of the chart's metrics RBAC, with `set` values; its objects. */
async function renderMetricsRbac(set: string[]): Promise<Record<string, unknown>[]> {
  const home = join(dir, 'helm');
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(
      helmPath(),
      [
        'template',
        'kube-audit',
        CHART,
        '--namespace',
        OPERATOR_NS,
        '--show-only',
        'templates/metrics-rbac.yaml',
        ...set.flatMap((s) => ['--set', s]),
      ],
      {
        env: {
          PATH: process.env.PATH ?? '',
          HOME: home,
          HELM_CONFIG_HOME: join(home, 'config'),
          HELM_CACHE_HOME: join(home, 'cache'),
          HELM_DATA_HOME: join(home, 'data'),
        },
      },
      (err, out, stderr) => (err === null ? resolve(out) : reject(new Error(stderr))),
    );
  });
  return parseAllDocuments(stdout)
    .map((d) => d.toJS() as Record<string, unknown> | null)
    .filter((o): o is Record<string, unknown> => o !== null);
}

/** A new token of a ServiceAccount (the TokenRequest API, as the kubelet mounts them). */
async function serviceAccountToken(namespace: string, name: string): Promise<string> {
  const controlPlane = running('the control plane', cp);
  const body = JSON.stringify({
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenRequest',
    spec: { expirationSeconds: 3600 },
  });
  const text = await new Promise<string>((resolve, reject) => {
    const req = httpsRequest(
      `${controlPlane.url}/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
      {
        method: 'POST',
        ca: controlPlane.caPem,
        headers: {
          authorization: `Bearer ${controlPlane.users.admin.token}`,
          'content-type': 'application/json',
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const out = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode === 201) resolve(out);
          else reject(new Error(`TokenRequest answered ${res.statusCode}: ${out}`));
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
  const token = (JSON.parse(text) as { status: { token: string } }).status.token;
  secrets.set(`token ${secrets.size} of ${namespace}/${name}`, token);
  return token;
}

function metrics(token?: string, agent?: Agent): Promise<GetAnswer> {
  return httpsGet(`${metricsUrl}/metrics`, {
    ca,
    ...(token === undefined ? {} : { token }),
    ...(agent === undefined ? {} : { agent }),
  });
}

/** The reviews the operator asked the apiserver for, from its audit log. */
async function reviews(): Promise<{ tokenReviews: number; accessReviews: Map<string, number> }> {
  const operatorUser = running('the control plane', cp).users.operator.name;
  const events = (await readFile(auditLog, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as AuditEvent)
    .filter((e) => e.user.username === operatorUser && e.stage === 'ResponseComplete');
  const accessReviews = new Map<string, number>();
  let tokenReviews = 0;
  for (const e of events) {
    if (e.objectRef?.resource === 'tokenreviews') tokenReviews++;
    if (e.objectRef?.resource === 'subjectaccessreviews') {
      const user = (e.requestObject as { spec?: { user?: string } } | undefined)?.spec?.user ?? '';
      accessReviews.set(user, (accessReviews.get(user) ?? 0) + 1);
    }
  }
  return { tokenReviews, accessReviews };
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

function summary(latencies: number[]): { p50: number; p99: number } {
  const sorted = [...latencies].sort((a, b) => a - b);
  const round = (ms: number) => Math.round(ms * 100) / 100;
  return { p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)) };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kao-metrics-auth-'));
  const pki = new TestPki(join(dir, 'pki'));
  await mkdir(pki.dir);
  await pki.init();
  await pki.ca('ca');
  const serving = await pki.leaf('receiver', 'ca', 'server');
  ca = await readFile(join(pki.dir, 'ca.crt'), 'utf8');
  const receiverToken = randomBytes(24).toString('base64url');
  secrets.set('receiver token', receiverToken);
  const tokenFile = join(dir, 'receiver-tokens');
  await writeFile(tokenFile, `${receiverToken}\n`);
  auditLog = join(dir, 'apiserver-audit.log');

  cp = await startControlPlane({ extraApiserverArgs: [`--audit-log-path=${auditLog}`] });
  for (const [name, user] of Object.entries(cp.users)) {
    secrets.set(`apiserver user ${name}'s token`, user.token);
  }
  await must(['apply', '-f', 'crds/']);
  await must(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
  for (const ns of [OPERATOR_NS, SCRAPER.namespace]) await must(['create', 'namespace', ns]);
  await must(['create', 'serviceaccount', SCRAPER.name, '-n', SCRAPER.namespace]);
  await must(['create', 'serviceaccount', 'stranger', '-n', SCRAPER.namespace]);
  // The operator's RBAC, as documented; the scraper's, as the chart renders it for a ServiceAccount
  // in metrics.readerSubjects.
  await must(['apply', '-f', 'examples/operator/rbac.yaml']);
  const rendered = await renderMetricsRbac([
    'metrics.readerSubjects[0].kind=ServiceAccount',
    `metrics.readerSubjects[0].name=${SCRAPER.name}`,
    `metrics.readerSubjects[0].namespace=${SCRAPER.namespace}`,
  ]);
  const reader = rendered.filter((o) =>
    String((o.metadata as { name: string }).name).endsWith('-metrics-reader'),
  );
  expect(reader.map((o) => o.kind).sort()).toEqual(['ClusterRole', 'ClusterRoleBinding']);
  readerRole = (reader[0]?.metadata as { name: string }).name;
  await must(
    ['apply', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: reader }),
  );

  const port = await freePort();
  metricsUrl = `https://127.0.0.1:${port}`;
  operator = await startOperatorProcess(
    operatorRunArgs({
      kubeconfig: cp.kubeconfig('operator'),
      port,
      serving,
      tokenFile,
      dataDir: join(dir, 'data'),
      namespace: OPERATOR_NS,
    }),
    { url: metricsUrl, ca },
    join(dir, 'operator.log'),
  );
}, 180_000);

afterAll(async () => {
  await operator?.stop();
  await cp?.stop();
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

describe('GET /metrics in run, decided by the kube-apiserver', () => {
  it('answers 401 with WWW-Authenticate: Bearer without a token', async () => {
    const answer = await metrics();
    expect({ status: answer.status, scheme: answer.wwwAuthenticate }).toEqual({
      status: 401,
      scheme: 'Bearer',
    });
    expect(answer.body).not.toContain('kube_audit');
  });

  it('answers 401 to a token the apiserver does not know, and to the receiver’s own token', async () => {
    const forged = randomBytes(24).toString('base64url');
    secrets.set('forged token', forged);
    expect((await metrics(forged)).status).toBe(401);
    expect((await metrics(secrets.get('receiver token'))).status).toBe(401);
  });

  it('answers 403 to a user and to a ServiceAccount the apiserver knows but does not allow to get /metrics', async () => {
    const controlPlane = running('the control plane', cp);
    const answer = await metrics(controlPlane.users.alice.token);
    expect(answer.status).toBe(403);
    expect(answer.body).not.toContain('kube_audit');
    expect((await metrics(await serviceAccountToken(SCRAPER.namespace, 'stranger'))).status).toBe(
      403,
    );
  });

  it('serves the metrics to a cluster administrator, and to the ServiceAccount the chart binds to its metrics-reader ClusterRole', async () => {
    const controlPlane = running('the control plane', cp);
    const admin = await metrics(controlPlane.users.admin.token);
    expect(admin.status).toBe(200);
    expect(admin.body).toContain(
      'kube_audit_receiver_requests_total{endpoint="metrics",status="401"}',
    );
    const scraper = await metrics(await serviceAccountToken(SCRAPER.namespace, SCRAPER.name));
    expect(scraper.status).toBe(200);
    expect(scraper.body).toContain('process_resident_memory_bytes');
  });

  it('reviews a token once per TTL: 20 scrapes cost one TokenReview and one SubjectAccessReview', async () => {
    const token = await serviceAccountToken(SCRAPER.namespace, SCRAPER.name);
    const before = await reviews();
    for (let i = 0; i < 20; i++) expect((await metrics(token)).status).toBe(200);
    const after = await reviews();
    expect(after.tokenReviews - before.tokenReviews).toBe(1);
    const sa = `system:serviceaccount:${SCRAPER.namespace}:${SCRAPER.name}`;
    expect((after.accessReviews.get(sa) ?? 0) - (before.accessReviews.get(sa) ?? 0)).toBe(1);
  });

  it('serves a user once the chart’s metrics-reader ClusterRole is bound to it, after the cached denial expires', async () => {
    const token = running('the control plane', cp).users.alice.token;
    const aliceReviews = async () => (await reviews()).accessReviews.get('alice') ?? 0;
    // Scrape until alice's denial is reviewed afresh (an earlier test may have left one cached):
    // from then on it is remembered for the deny TTL.
    const base = await aliceReviews();
    let previousStart = Date.now();
    let reviewedNoEarlierThan: number | undefined;
    while (reviewedNoEarlierThan === undefined) {
      const start = Date.now();
      expect((await metrics(token)).status).toBe(403);
      // The audit log is written as the review completes; a moment later it is there.
      await sleep(300);
      if ((await aliceReviews()) > base) {
        // The review came from this request or, seen late, from the one before.
        reviewedNoEarlierThan = start === previousStart ? start : previousStart;
      }
      previousStart = start;
    }
    await must([
      'create',
      'clusterrolebinding',
      'alice-reads-metrics',
      `--clusterrole=${readerRole}`,
      '--user=alice',
    ]);
    const grantedAt = Date.now();
    let status = 403;
    while (status === 403 && Date.now() - grantedAt < DENY_TTL_MS + 15_000) {
      status = (await metrics(token)).status;
      if (status === 403) await sleep(250);
    }
    const allowedAt = Date.now();
    expect(status).toBe(200);
    // Cached: not allowed before the denial expired, however soon after it the grant came...
    expect(allowedAt - reviewedNoEarlierThan).toBeGreaterThanOrEqual(DENY_TTL_MS);
    // ...and allowed within one TTL of the grant.
    expect(allowedAt - grantedAt).toBeLessThanOrEqual(DENY_TTL_MS + 2_000);
    // Scraping every 250 ms while denied cost one SubjectAccessReview per TTL, not one per scrape.
    const asked = (await aliceReviews()) - base;
    expect(asked).toBeLessThanOrEqual(
      Math.ceil((allowedAt - reviewedNoEarlierThan) / DENY_TTL_MS) + 1,
    );
  });

  it('leaves /healthz and /readyz open for probes', async () => {
    expect((await httpsGet(`${metricsUrl}/healthz`, { ca })).status).toBe(200);
    expect((await httpsGet(`${metricsUrl}/readyz`, { ca })).status).toBe(200);
  });

  it('measures the latency of /metrics with a cached decision and with a new token each time', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const token = await serviceAccountToken(SCRAPER.namespace, SCRAPER.name);
      // Warm: the decision cached, the connection open.
      expect((await metrics(token, agent)).status).toBe(200);
      const timed = async (t: string) => {
        const start = performance.now();
        const answer = await metrics(t, agent);
        expect(answer.status).toBe(200);
        return performance.now() - start;
      };
      const before = await reviews();
      const cached: number[] = [];
      for (let i = 0; i < 200; i++) cached.push(await timed(token));
      const middle = await reviews();
      const fresh = await Promise.all(
        Array.from({ length: 100 }, () => serviceAccountToken(SCRAPER.namespace, SCRAPER.name)),
      );
      const uncached: number[] = [];
      for (const t of fresh) uncached.push(await timed(t));
      const after = await reviews();
      // Cached: no review at all; uncached: one TokenReview per token.
      expect(middle.tokenReviews - before.tokenReviews).toBe(0);
      expect(after.tokenReviews - middle.tokenReviews).toBe(100);
      const report = { cachedMs: summary(cached), uncachedMs: summary(uncached) };
      console.info(
        `GET /metrics latency against kube-apiserver ${running('the control plane', cp).version}: ${JSON.stringify(report)}`,
      );
    } finally {
      agent.destroy();
    }
  });

  it('never logs a token', () => {
    const log = running('the operator', operator).log();
    expect(log).toContain('operator ready');
    const leaked = [...secrets].filter(([, value]) => log.includes(value)).map(([what]) => what);
    expect(leaked).toEqual([]);
  });
});
