// Runs the built CLI (`node dist/main.js standalone`) as a user would, and a real HTTP server as a
// webhook destination; posts the batches a real kube-apiserver recorded. Certificates come from the
// openssl command-line tool (test/harness/pki.ts).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Issued, TestPki } from '../harness/pki.ts';
import {
  type StandaloneProcess,
  startStandalone as startStandaloneProcess,
} from '../harness/standalone.ts';
import { recordedBatches, recordedEvents } from '../support/recorded.ts';
import { eventually, waitFor } from '../support/wait.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(ROOT, 'dist', 'main.js');
const BATCHES = recordedBatches();
const EVENTS = recordedEvents();

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

beforeAll(() => {
  if (!existsSync(MAIN))
    throw new Error('dist/main.js is missing: run `npm run build` (npm test does)');
});

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kao-e2e-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

interface Running {
  readonly url: string;
  readonly child: ChildProcess;
  readonly stderr: () => string;
  /** Its JSON log (stdout). */
  readonly stdout: () => string;
  readonly exited: Promise<number | null>;
}

/** Starts `standalone` with `args`, collecting its stderr; it is killed after the test. */
function spawnStandalone(args: readonly string[]): Omit<Running, 'url'> {
  const child = spawn(process.execPath, [MAIN, 'standalone', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { child, stderr: () => stderr, stdout: () => stdout, exited };
}

async function startStandalone(
  manifests: string,
  dataDir: string,
  port: number,
): Promise<StandaloneProcess> {
  const running = await startStandaloneProcess({
    manifests,
    dataDir,
    port,
    args: ['--shutdown-grace-seconds', '5'],
  });
  cleanups.push(async () => {
    await running.stop('SIGKILL');
  });
  return running;
}

async function post(url: string, body: string): Promise<Response> {
  return fetch(`${url}/audit/v1/events?timeout=30s`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
}

/** Waits until `file` has `count` lines; says how many it had at the deadline. */
async function untilLines(file: string, count: number): Promise<void> {
  await waitFor(
    `${count} lines in ${file}`,
    async () => (await lines(file)).length,
    (n) => n === count,
    10_000,
    50,
  );
}

async function lines(file: string): Promise<string[]> {
  return existsSync(file) ? (await readFile(file, 'utf8')).split('\n').filter(Boolean) : [];
}

async function copyExamples(): Promise<string> {
  const dir = await tempDir();
  const manifests = join(dir, 'manifests');
  await mkdir(manifests);
  for (const file of ['cluster-trail.yaml', 'shop-pipeline.yaml']) {
    await copyFile(join(ROOT, 'examples', 'standalone', file), join(manifests, file));
  }
  return manifests;
}

describe('standalone mode', () => {
  it('writes each sink line protocol from recorded apiserver batches, and drains on SIGTERM', async () => {
    const manifests = await copyExamples();
    const dataDir = await tempDir();
    const running = await startStandalone(manifests, dataDir, await freePort());
    for (const batch of BATCHES) expect((await post(running.url, batch)).status).toBe(200);

    const cluster = join(dataDir, 'sinks', 'cluster-trail.lp');
    const shop = join(dataDir, 'pipelines', 'shop', 'orders.lp');
    const billing = join(dataDir, 'pipelines', 'billing', 'ledger.lp');
    const inNs = (ns: string) => EVENTS.filter((e) => e.objectRef?.namespace === ns).length;
    await untilLines(cluster, EVENTS.length);
    await untilLines(shop, inNs('shop'));
    await untilLines(billing, inNs('billing'));
    for (const line of await lines(shop))
      expect(line).toMatch(/^kubernetes_audit,.*namespace=shop,.*sink=shop\/orders/);

    expect(await running.stop('SIGTERM')).toBe(0);
  });

  it('applies an edited manifest within seconds, without a restart', async () => {
    const manifests = await copyExamples();
    const dataDir = await tempDir();
    const running = await startStandalone(manifests, dataDir, await freePort());
    const file = join(manifests, 'shop-pipeline.yaml');
    // Stop the shop pipeline from keeping anything.
    await writeFile(
      file,
      (await readFile(file, 'utf8'))
        .replaceAll('level: RequestResponse', 'level: None')
        .replaceAll('level: Metadata', 'level: None'),
    );
    await new Promise((r) => setTimeout(r, 2_500));
    for (const batch of BATCHES) expect((await post(running.url, batch)).status).toBe(200);
    const cluster = join(dataDir, 'sinks', 'cluster-trail.lp');
    await untilLines(cluster, EVENTS.length);
    expect(await lines(join(dataDir, 'pipelines', 'shop', 'orders.lp'))).toEqual([]);
  });

  it('keeps every acknowledged event through SIGKILL while the destination is down, and delivers it after restart', async () => {
    const dataDir = await tempDir();
    const manifests = join(await tempDir(), 'manifests');
    await mkdir(manifests);
    const webhookPort = await freePort();
    await writeFile(
      join(manifests, 'forward.yaml'),
      `apiVersion: kube-audit.dev/v1alpha1
kind: AuditSink
metadata:
  name: forward
spec:
  policy:
    level: Metadata
    stages: ["ResponseComplete"]
  webhook:
    throttle: {qps: 50, burst: 50}
    clientConfig:
      url: http://127.0.0.1:${webhookPort}/audit
`,
    );
    const port = await freePort();
    const first = await startStandalone(manifests, dataDir, port);
    for (const batch of BATCHES) expect((await post(first.url, batch)).status).toBe(200);
    await first.stop('SIGKILL');

    const received: string[] = [];
    const server: Server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        const list = JSON.parse(body) as {
          kind: string;
          apiVersion: string;
          items: { auditID: string }[];
        };
        expect(list).toMatchObject({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1' });
        received.push(...list.items.map((i) => i.auditID));
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(webhookPort, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(() => resolve())));

    await startStandalone(manifests, dataDir, port);
    await waitFor(
      'every event at the webhook',
      () => new Set(received).size,
      (n) => n === EVENTS.length,
      10_000,
      50,
    );
    expect(new Set(received)).toEqual(new Set(EVENTS.map((e) => e.auditID)));
  });

  it('serves a sink on its dedicated listener, feeding that sink only, and stops it when removed', async () => {
    const manifests = await copyExamples();
    const dataDir = await tempDir();
    const dedicated = await freePort();
    const file = join(manifests, 'direct.yaml');
    const manifest = (receiver: string) => `apiVersion: kube-audit.dev/v1alpha1
kind: AuditPipeline
metadata: {name: direct, namespace: shop}
spec:
  policy:
    rules: [{level: Metadata}]
${receiver}`;
    await writeFile(file, manifest(`  receiver: {port: ${dedicated}}\n`));
    const running = await startStandalone(manifests, dataDir, await freePort());
    const url = `http://127.0.0.1:${dedicated}`;
    for (const batch of BATCHES) expect((await post(url, batch)).status).toBe(200);
    const direct = join(dataDir, 'pipelines', 'shop', 'direct.lp');
    const inShop = EVENTS.filter((e) => e.objectRef?.namespace === 'shop').length;
    await untilLines(direct, inShop);
    // Only that sink: nothing reached the cluster-wide trail through this listener.
    expect(await lines(join(dataDir, 'sinks', 'cluster-trail.lp'))).toEqual([]);
    const other = await fetch(`${url}/audit/v1/sinks/cluster-trail`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: BATCHES[0] ?? '',
    });
    expect(other.status).toBe(404);

    await writeFile(file, manifest(''));
    await eventually(
      'the dedicated listener to close',
      () =>
        fetch(`${url}/healthz`).then(
          () => false,
          () => true,
        ),
      10_000,
      50,
    );
    expect((await post(running.url, BATCHES[0] ?? '')).status).toBe(200);
  });

  it('serves a dedicated listener with the certificate of its own TLS Secret, and authenticates', async () => {
    const dir = await tempDir();
    const cert = (name: string) => {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-days',
          '1',
          '-subj',
          `/CN=${name}`,
          '-addext',
          'subjectAltName=IP:127.0.0.1',
          '-keyout',
          join(dir, `${name}.key`),
          '-out',
          join(dir, `${name}.crt`),
        ],
        { stdio: 'ignore' },
      );
      return {
        cert: readFileSync(join(dir, `${name}.crt`), 'utf8'),
        key: readFileSync(join(dir, `${name}.key`), 'utf8'),
      };
    };
    cert('shared');
    const own = cert('own');
    await writeFile(join(dir, 'tokens'), 'sekret-token\n');
    const manifests = join(dir, 'manifests');
    await mkdir(manifests);
    const dedicated = await freePort();
    const indent = (pem: string) =>
      pem
        .trim()
        .split('\n')
        .map((l) => `    ${l}`)
        .join('\n');
    await writeFile(
      join(manifests, 'direct.yaml'),
      `apiVersion: kube-audit.dev/v1alpha1
kind: AuditPipeline
metadata: {name: direct, namespace: shop}
spec:
  policy: {rules: [{level: Metadata}]}
  receiver: {port: ${dedicated}, tlsSecretName: direct-tls}
---
apiVersion: v1
kind: Secret
metadata: {name: direct-tls, namespace: shop}
type: kubernetes.io/tls
stringData:
  tls.crt: |
${indent(own.cert)}
  tls.key: |
${indent(own.key)}
`,
    );
    const port = await freePort();
    spawnStandalone([
      '-f',
      manifests,
      '--listen',
      `127.0.0.1:${port}`,
      '--tls-cert-file',
      join(dir, 'shared.crt'),
      '--tls-key-file',
      join(dir, 'shared.key'),
      '--token-file',
      join(dir, 'tokens'),
      '--data-dir',
      join(dir, 'data'),
      '--log-level',
      'warn',
    ]);
    const request = (token: string | undefined) =>
      new Promise<{ status: number; issuer: string }>((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port: dedicated,
            path: '/audit/v1/events',
            method: 'POST',
            ca: own.cert,
            headers: {
              'content-type': 'application/json',
              ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
            },
          },
          (res) => {
            res.resume();
            const peer = (res.socket as TLSSocket).getPeerCertificate();
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, issuer: peer.subject.CN as string }),
            );
          },
        );
        req.on('error', reject);
        req.end(BATCHES[0]);
      });
    await waitFor(
      'the own token to be accepted',
      () => request('sekret-token'),
      (r) => r.status === 200,
      15_000,
      50,
    );
    expect(await request('sekret-token')).toEqual({ status: 200, issuer: 'own' });
    expect((await request(undefined)).status).toBe(401);
    expect((await request('wrong')).status).toBe(401);
  });

  it('serves /metrics only to its receiver token and to client certificates of its client CA; /healthz and /readyz to anyone', async () => {
    const dir = await tempDir();
    const pki = new TestPki(join(dir, 'pki'));
    await mkdir(pki.dir);
    await pki.init();
    const ca = await pki.ca('ca');
    await pki.ca('stranger-ca');
    const serving = await pki.leaf('receiver', 'ca', 'server');
    const client = await pki.leaf('scraper', 'ca', 'client');
    const stranger = await pki.leaf('stranger', 'stranger-ca', 'client');
    await writeFile(join(dir, 'tokens'), 'scrape-token\n');
    const port = await freePort();
    spawnStandalone([
      '-f',
      await copyExamples(),
      '--listen',
      `127.0.0.1:${port}`,
      '--tls-cert-file',
      serving.certFile,
      '--tls-key-file',
      serving.keyFile,
      '--client-ca-file',
      ca.certFile,
      '--token-file',
      join(dir, 'tokens'),
      '--data-dir',
      join(dir, 'data'),
      '--log-level',
      'warn',
    ]);
    const get = (path: string, credentials: { token?: string; client?: Issued } = {}) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port,
            path,
            ca: ca.cert,
            agent: false,
            headers:
              credentials.token === undefined
                ? {}
                : { authorization: `Bearer ${credentials.token}` },
            ...(credentials.client === undefined
              ? {}
              : { cert: credentials.client.cert, key: credentials.client.key }),
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
            );
          },
        );
        req.on('error', reject);
        req.end();
      });
    await waitFor(
      'the receiver to be ready',
      () => get('/readyz'),
      (r) => r.status === 200,
      15_000,
      50,
    );
    expect((await get('/healthz')).status).toBe(200);
    expect((await get('/metrics')).status).toBe(401);
    expect((await get('/metrics', { token: 'not-the-token' })).status).toBe(401);
    expect((await get('/metrics', { client: stranger })).status).toBe(403);
    const byToken = await get('/metrics', { token: 'scrape-token' });
    expect(byToken.status).toBe(200);
    expect(byToken.body).toContain('kube_audit_sink_queue_events');
    expect((await get('/metrics', { client })).status).toBe(200);
  });

  it('exits with a clear error, instead of hanging, when its port is taken', async () => {
    const manifests = await copyExamples();
    const dataDir = await tempDir();
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => taken.close(() => resolve())));
    const { port } = taken.address() as AddressInfo;
    const launched = spawnStandalone([
      '-f',
      manifests,
      '--insecure',
      '--listen',
      `127.0.0.1:${port}`,
      '--data-dir',
      dataDir,
    ]);
    const code = await launched.exited;
    expect(code).toBe(1);
    expect(launched.stderr()).toContain('EADDRINUSE');
  });
});

describe("standalone: each sink's own writers (spec.receiver.tokenSecretRef)", () => {
  const inNs = (ns: string) => EVENTS.filter((e) => e.objectRef?.namespace === ns).length;

  /** The two tenants' pipelines, and their writers' tokens as Secret manifests beside them. */
  function manifests(shopTokens: string, billingTokens: string | undefined): string {
    const pipeline = (namespace: string, name: string) => `apiVersion: kube-audit.dev/v1alpha1
kind: AuditPipeline
metadata: {name: ${name}, namespace: ${namespace}}
spec:
  policy: {rules: [{level: Metadata}]}
  receiver:
    tokenSecretRef: {name: writers, key: tokens}
`;
    const secret = (namespace: string, tokens: string) => `apiVersion: v1
kind: Secret
metadata: {name: writers, namespace: ${namespace}}
stringData:
  tokens: ${JSON.stringify(tokens)}
`;
    return [
      pipeline('shop', 'orders'),
      secret('shop', shopTokens),
      pipeline('billing', 'ledger'),
      ...(billingTokens === undefined ? [] : [secret('billing', billingTokens)]),
    ].join('---\n');
  }

  it("admits a tenant's token on its own endpoint only, follows a rotation, and never logs a token", async () => {
    const dir = await tempDir();
    const pki = new TestPki(join(dir, 'pki'));
    await mkdir(pki.dir);
    await pki.init();
    const ca = await pki.ca('ca');
    const serving = await pki.leaf('receiver', 'ca', 'server');
    const apiserverToken = 'apiserver-token-3f9c1e7a2b';
    const shopToken = 'shop-writer-8d2e4a6c0f';
    const billingToken = 'billing-writer-5b7d9f1a3c';
    const rotatedShopToken = 'shop-writer-rotated-1e3a5c7e9b';
    await writeFile(join(dir, 'tokens'), `${apiserverToken}\n`);
    const manifestDir = join(dir, 'manifests');
    await mkdir(manifestDir);
    // billing's Secret is not there yet: its endpoint admits the receiver-wide token only.
    await writeFile(join(manifestDir, 'tenants.yaml'), manifests(shopToken, undefined));
    const dataDir = join(dir, 'data');
    const port = await freePort();
    const launched = spawnStandalone([
      '-f',
      manifestDir,
      '--listen',
      `127.0.0.1:${port}`,
      '--tls-cert-file',
      serving.certFile,
      '--tls-key-file',
      serving.keyFile,
      '--token-file',
      join(dir, 'tokens'),
      '--data-dir',
      dataDir,
      '--log-level',
      'info',
    ]);
    const post = (path: string, token: string | undefined, body: string) =>
      new Promise<number>((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port,
            path: `${path}?timeout=30s`,
            method: 'POST',
            ca: ca.cert,
            headers: {
              'content-type': 'application/json',
              ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
            },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        req.end(body);
      });
    const SHOP = '/audit/v1/pipelines/shop/orders';
    const BILLING = '/audit/v1/pipelines/billing/ledger';
    const FAN_IN = '/audit/v1/events';
    const first = BATCHES[0] as string;
    await waitFor(
      'the receiver to admit the apiserver',
      () => post(FAN_IN, apiserverToken, EMPTY),
      (s) => s === 200,
      15_000,
      50,
    );

    // Every recorded batch through the shop's own endpoint with the shop's own token.
    for (const batch of BATCHES) expect(await post(SHOP, shopToken, batch)).toBe(200);
    const shopFile = join(dataDir, 'pipelines', 'shop', 'orders.lp');
    await untilLines(shopFile, inNs('shop'));

    expect({
      shopOnFanIn: await post(FAN_IN, shopToken, first),
      shopOnBilling: await post(BILLING, shopToken, first),
      billingBeforeItsSecret: await post(BILLING, billingToken, first),
      unknown: await post(SHOP, 'nobody-knows-this', first),
      none: await post(SHOP, undefined, first),
      apiserverOnShop: await post(SHOP, apiserverToken, EMPTY),
      apiserverOnBilling: await post(BILLING, apiserverToken, EMPTY),
    }).toEqual({
      shopOnFanIn: 403,
      shopOnBilling: 403,
      billingBeforeItsSecret: 401,
      unknown: 401,
      none: 401,
      apiserverOnShop: 200,
      apiserverOnBilling: 200,
    });
    // The refused batches reached no trail: billing's file was never written.
    expect(await lines(join(dataDir, 'pipelines', 'billing', 'ledger.lp'))).toEqual([]);
    expect(await lines(shopFile)).toHaveLength(inNs('shop'));

    // billing's Secret arrives, and shop rotates: both apply on the reload, without a restart.
    await writeFile(
      join(manifestDir, 'tenants.yaml'),
      manifests(`${shopToken}\n${rotatedShopToken}`, billingToken),
    );
    await waitFor(
      "billing's token admitted",
      () => post(BILLING, billingToken, EMPTY),
      (s) => s === 200,
      15_000,
      50,
    );
    expect(await post(SHOP, rotatedShopToken, EMPTY)).toBe(200);
    expect(await post(SHOP, shopToken, EMPTY)).toBe(200);
    expect(await post(SHOP, billingToken, EMPTY)).toBe(403);
    await writeFile(join(manifestDir, 'tenants.yaml'), manifests(rotatedShopToken, billingToken));
    await waitFor(
      'the old shop token refused',
      () => post(SHOP, shopToken, EMPTY),
      (s) => s === 401,
      15_000,
      50,
    );
    expect(await post(SHOP, rotatedShopToken, first)).toBe(200);
    expect(await post(BILLING, billingToken, first)).toBe(200);
    // The line-protocol file appends: the first batch's shop events a second time.
    const shopInFirst = (
      JSON.parse(first) as { items: { objectRef?: { namespace?: string } }[] }
    ).items.filter((e) => e.objectRef?.namespace === 'shop').length;
    await untilLines(shopFile, inNs('shop') + shopInFirst);

    const log = launched.stdout() + launched.stderr();
    // billing's missing Secret was reported, by name.
    expect(log).toContain("the sink's own tokens are missing");
    expect(log).toContain('Secret billing/writers');
    for (const token of [apiserverToken, shopToken, billingToken, rotatedShopToken]) {
      expect(log).not.toContain(token);
    }
  });
});

const EMPTY = JSON.stringify({ apiVersion: 'audit.k8s.io/v1', kind: 'EventList', items: [] });
