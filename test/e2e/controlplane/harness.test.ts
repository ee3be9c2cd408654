// Starts real control planes with the harness: etcd plus kube-apiserver 1.37 (static audit webhook)
// and etcd plus kube-apiserver 1.18 (native dynamic audit), drives them with the real kubectl, and
// receives their audit webhooks on a small node:https server in this process on 127.0.0.1. The
// `openssl` command-line tool issues the receiver's certificate.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ControlPlane,
  KUBE_VERSION,
  LEGACY_KUBE_VERSION,
  startControlPlane,
} from '../../harness/controlplane.ts';
import { type Issued, TestPki } from '../../harness/pki.ts';
import { COLD_BUILD_TIMEOUT_MS, serversLater } from '../../harness/servers-later.ts';
import { alive } from '../../harness/processes.ts';
import { waitFor } from '../../support/wait.ts';

const WEBHOOK_TOKEN = 'static-audit-webhook-token-4d1e';

interface Post {
  /** Without the query: the apiserver adds `?timeout=30s`. */
  readonly path: string;
  readonly authorization: string | undefined;
  readonly body: {
    kind?: string;
    apiVersion?: string;
    items?: {
      verb?: string;
      stage?: string;
      level?: string;
      objectRef?: { resource?: string; name?: string; namespace?: string };
      requestObject?: unknown;
    }[];
  };
}

/** An HTTPS server that records every POST and answers 200, as an audit receiver would. */
class RecordingReceiver {
  readonly posts: Post[] = [];
  readonly #server: Server;

  constructor(serving: Issued) {
    this.#server = createServer({ cert: serving.cert, key: serving.key }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        this.posts.push({
          path: new URL(req.url ?? '/', 'https://receiver').pathname,
          authorization: req.headers.authorization,
          body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Post['body'],
        });
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
  }

  get url(): string {
    return `https://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  /** The posts to `path` whose EventList has an event matching `match`. */
  matching(path: string, match: (item: NonNullable<Post['body']['items']>[number]) => boolean) {
    return this.posts.filter((p) => p.path === path && (p.body.items ?? []).some(match));
  }
}

/** Whether something accepts TCP connections on the URL's port. */
function listening(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

let pki: TestPki;
let ca: Issued;
let receiver: RecordingReceiver;

beforeAll(async () => {
  pki = new TestPki(await mkdtemp(join(tmpdir(), 'controlplane-e2e-')));
  await pki.init();
  ca = await pki.ca('receiver-ca');
  receiver = new RecordingReceiver(await pki.leaf('receiver', 'receiver-ca', 'server'));
  await receiver.listen();
});

afterAll(async () => {
  await receiver?.close();
  if (pki !== undefined) await rm(pki.dir, { recursive: true, force: true });
});

describe(`kube-apiserver ${KUBE_VERSION} with a static audit webhook`, () => {
  let plane: ControlPlane;

  beforeAll(async () => {
    plane = await startControlPlane({
      auditWebhook: { url: `${receiver.url}/static`, token: WEBHOOK_TOKEN, caFile: ca.certFile },
    });
  });

  afterAll(async () => {
    await plane?.stop();
  });

  it('serves HTTPS on a free loopback port with a certificate from its own CA', () => {
    expect(plane.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(plane.caPem).toContain('BEGIN CERTIFICATE');
    expect(plane.version).toBe(KUBE_VERSION);
  });

  it('answers kubectl as admin', async () => {
    const result = await plane.kubectl(['get', 'namespace', 'default', '-o', 'name']);
    expect(result).toMatchObject({ code: 0, stdout: 'namespace/default\n' });
    const version = await plane.kubectl(['version', '-o', 'json']);
    expect(JSON.parse(version.stdout)).toMatchObject({
      serverVersion: { gitVersion: `v${KUBE_VERSION}` },
    });
  });

  it('forbids alice, who has no bindings, to list secrets', async () => {
    const result = await plane.kubectl(['get', 'secrets', '-A'], { user: 'alice' });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/forbidden/i);
    expect(result.stderr).toContain('User "alice"');
  });

  it('lets admin grant the operator user a role', async () => {
    const before = await plane.kubectl(['get', 'configmaps'], { user: 'operator' });
    expect(before.code).not.toBe(0);
    // An explicit role: the aggregated admin, edit and view roles stay empty without the
    // controller manager that fills them.
    const role = await plane.kubectl([
      'create',
      'clusterrole',
      'configmap-reader',
      '--verb=get,list,watch',
      '--resource=configmaps',
    ]);
    expect(role.code).toBe(0);
    const grant = await plane.kubectl([
      'create',
      'clusterrolebinding',
      'operator-configmap-reader',
      '--clusterrole=configmap-reader',
      `--user=${plane.users.operator.name}`,
    ]);
    expect(grant.code).toBe(0);
    // The RBAC authorizer reads bindings through an informer: allowed within moments.
    const allowed = await waitFor(
      'the new binding to allow reading configmaps',
      () => plane.kubectl(['get', 'configmaps'], { user: 'operator' }),
      (after) => after.code === 0,
      10_000,
      250,
    );
    expect(allowed.code).toBe(0);
  });

  it('posts audit.k8s.io/v1 EventLists with the bearer token to the webhook', async () => {
    const created = await plane.kubectl(['create', 'configmap', 'x', '--from-literal=k=v']);
    expect(created.code).toBe(0);
    // Batches leave at most 1 s after the event (--audit-webhook-batch-max-wait).
    const posts = await waitFor(
      'a POST to /static with the configmap create',
      () =>
        receiver.matching(
          '/static',
          (e) =>
            e.verb === 'create' &&
            e.stage === 'ResponseComplete' &&
            e.objectRef?.resource === 'configmaps' &&
            e.objectRef.name === 'x',
        ),
      (found) => found.length > 0,
      20_000,
      250,
    );
    expect(posts).not.toHaveLength(0);
    expect(posts[0]?.body).toMatchObject({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1' });
    const event = posts[0]?.body.items?.find((e) => e.objectRef?.name === 'x');
    // The default policy: RequestResponse, so the request body is there.
    expect(event).toMatchObject({ level: 'RequestResponse', objectRef: { namespace: 'default' } });
    expect(event?.requestObject).toMatchObject({ kind: 'ConfigMap', data: { k: 'v' } });
    const toStatic = receiver.posts.filter((p) => p.path === '/static');
    expect(new Set(toStatic.map((p) => p.authorization))).toEqual(
      new Set([`Bearer ${WEBHOOK_TOKEN}`]),
    );
  });

  it('stop() leaves no process, port or directory behind', async () => {
    const dir = dirname(plane.logs.apiserver);
    expect(plane.pids).toHaveLength(2);
    expect(plane.pids.every(alive)).toBe(true);
    expect(await listening(plane.url)).toBe(true);
    await plane.stop();
    expect(plane.pids.filter(alive)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    expect(await listening(plane.url)).toBe(false);
  });
});

describe(`kube-apiserver ${LEGACY_KUBE_VERSION} with native dynamic audit`, () => {
  let plane: ControlPlane;

  beforeAll(async () => {
    await serversLater(['controlplane-legacy']);
    plane = await startControlPlane({ legacy: true, dynamicAudit: true });
  }, COLD_BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await plane?.stop();
  });

  it('answers kubectl 1.35 as admin despite the version skew', async () => {
    const version = await plane.kubectl(['version', '-o', 'json']);
    expect(JSON.parse(version.stdout)).toMatchObject({
      serverVersion: { gitVersion: `v${LEGACY_KUBE_VERSION}` },
    });
    const result = await plane.kubectl(['get', 'namespace', 'default', '-o', 'name']);
    expect(result).toMatchObject({ code: 0, stdout: 'namespace/default\n' });
  });

  it('forbids alice to list secrets', async () => {
    const result = await plane.kubectl(['get', 'secrets', '-A'], { user: 'alice' });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/forbidden/i);
  });

  it('serves auditregistration.k8s.io/v1alpha1 AuditSinks', async () => {
    const result = await plane.kubectl(['get', '--raw', '/apis/auditregistration.k8s.io/v1alpha1']);
    expect(result.code).toBe(0);
    const list = JSON.parse(result.stdout) as { resources: { name: string; kind: string }[] };
    expect(list.resources).toContainEqual(
      expect.objectContaining({ name: 'auditsinks', kind: 'AuditSink' }),
    );
  });

  it('posts to a native AuditSink after a kubectl action', async () => {
    const sink = {
      apiVersion: 'auditregistration.k8s.io/v1alpha1',
      kind: 'AuditSink',
      metadata: { name: 'e2e-receiver' },
      spec: {
        policy: { level: 'Metadata', stages: ['ResponseComplete'] },
        webhook: {
          throttle: { qps: 10, burst: 15 },
          clientConfig: {
            url: `${receiver.url}/dynamic`,
            caBundle: ca.cert.toString('base64'),
          },
        },
      },
    };
    const created = await plane.kubectl(['create', '-f', '-'], { input: JSON.stringify(sink) });
    expect(created).toMatchObject({ code: 0 });
    // The apiserver picks the sink up through an informer, so an action right after creating it
    // may come too early to be audited there: act again every 5 s until a batch arrives. Batches
    // of a dynamic sink leave at most 30 s after the event (fixed in 1.18, no flag).
    let n = 0;
    const act = () => plane.kubectl(['create', 'configmap', `y-${n++}`]);
    let last = Date.now();
    await act();
    const posts = await waitFor(
      'a POST to /dynamic with a configmap create',
      async () => {
        if (Date.now() - last >= 5_000) {
          last = Date.now();
          await act();
        }
        return receiver.matching(
          '/dynamic',
          (e) => e.verb === 'create' && e.objectRef?.resource === 'configmaps',
        );
      },
      (found) => found.length > 0,
      75_000,
      250,
    );
    expect(posts).not.toHaveLength(0);
    expect(posts[0]?.body).toMatchObject({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1' });
    const event = posts[0]?.body.items?.find((e) => e.objectRef?.resource === 'configmaps');
    // The sink's own policy applies: Metadata, so no request body.
    expect(event).toMatchObject({ level: 'Metadata', stage: 'ResponseComplete' });
    expect(event?.requestObject).toBeUndefined();
    // A native sink has no credentials to send.
    expect(posts[0]?.authorization).toBeUndefined();
  });

  it('stop() leaves no process, port or directory behind', async () => {
    const dir = dirname(plane.logs.apiserver);
    expect(await listening(plane.url)).toBe(true);
    await plane.stop();
    expect(plane.pids.filter(alive)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    expect(await listening(plane.url)).toBe(false);
  });
});

describe('startControlPlane', () => {
  it('refuses dynamic audit on the current apiserver, which has no AuditSink API', async () => {
    await expect(startControlPlane({ dynamicAudit: true })).rejects.toThrow(/legacy/);
  });
});
