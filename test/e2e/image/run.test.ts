// `run` (the operator) in the operator's image, run with `docker run` as the chart runs it, against
// a real kube-apiserver whose audit webhook posts to the container's receiver over HTTPS with a
// bearer token: it lists the sinks, reports them Ready with the documented RBAC, serves /readyz,
// forwards the apiserver's events to an AuditSink's webhook, and exits 0 on SIGTERM.
// Real processes: etcd, kube-apiserver and kubectl (test/harness/controlplane.ts), the Docker
// engine of the global setup and the operator's container; the webhook is an HTTP server here.
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { type ControlPlane, startControlPlane } from '../../harness/controlplane.ts';
import { freePort } from '../../harness/influxd.ts';
import { TestPki } from '../../harness/pki.ts';
import { eventually } from '../../support/wait.ts';
import { conditionOf, kubectlOk, sinkStatus } from '../controlplane/kube.ts';
import {
  AS_THE_CHART_RUNS_IT,
  type Container,
  giveToNonroot,
  hostDir,
  https,
  removeAll,
  runContainer,
} from './container.ts';

const OPERATOR_NS = 'kube-audit';
/** 30 s: the chart's terminationGracePeriodSeconds; `run` drains and releases its Lease first. */
const SIGTERM_EXIT_MS = 30_000;

let cp: ControlPlane;
let operator: Container;
let webhook: Server;
let ca: string;
let receiverUrl: string;
/** EventLists the AuditSink's webhook received. */
const forwarded: AuditEvent[] = [];

beforeAll(async () => {
  const dir = await hostDir();
  const pki = new TestPki(dir);
  await pki.init();
  await pki.ca('ca');
  const serving = await pki.leaf('tls', 'ca', 'server');
  ca = readFileSync(join(dir, 'ca.crt'), 'utf8');
  const token = `apiserver-token-${process.pid}`;
  await writeFile(join(dir, 'token'), `${token}\n`);
  const port = await freePort();
  receiverUrl = `https://127.0.0.1:${port}`;

  webhook = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      forwarded.push(
        ...(JSON.parse(Buffer.concat(chunks).toString('utf8')) as { items: AuditEvent[] }).items,
      );
      res.end();
    });
  });
  await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
  const webhookPort = (webhook.address() as AddressInfo).port;

  cp = await startControlPlane({
    auditWebhook: { url: `${receiverUrl}/audit/v1/events`, token, caFile: join(dir, 'ca.crt') },
  });
  await kubectlOk(cp, ['apply', '-f', 'crds/']);
  await kubectlOk(cp, ['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
  await kubectlOk(cp, ['create', 'namespace', OPERATOR_NS]);
  await kubectlOk(cp, ['apply', '-f', 'examples/operator/rbac.yaml']);
  await kubectlOk(
    cp,
    ['apply', '-f', '-'],
    stringify({
      apiVersion: 'kube-audit.dev/v1alpha1',
      kind: 'AuditSink',
      metadata: { name: 'cluster-trail' },
      spec: {
        policy: { level: 'Metadata', stages: ['ResponseComplete'] },
        webhook: { clientConfig: { url: `http://127.0.0.1:${webhookPort}/events` } },
      },
    }),
  );

  // The kubeconfig of the operator's user, its CA inline: the container sees no host path.
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(
    kubeconfig,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'test',
          cluster: {
            server: cp.url,
            'certificate-authority-data': Buffer.from(cp.caPem).toString('base64'),
          },
        },
      ],
      users: [{ name: 'operator', user: { token: cp.users.operator.token } }],
      contexts: [{ name: 'test', context: { cluster: 'test', user: 'operator' } }],
      'current-context': 'test',
    }),
  );
  await giveToNonroot(serving.certFile, serving.keyFile, join(dir, 'token'), kubeconfig);

  operator = runContainer(
    [...AS_THE_CHART_RUNS_IT, '-v', `${dir}:/config:ro`],
    [
      'run',
      '--kubeconfig=/config/kubeconfig',
      `--namespace=${OPERATOR_NS}`,
      `--listen=127.0.0.1:${port}`,
      '--tls-cert-file=/config/tls.crt',
      '--tls-key-file=/config/tls.key',
      '--token-file=/config/token',
      `--advertise-url=${receiverUrl}`,
      '--status-interval-seconds=1',
    ],
  );
  await Promise.race([
    eventually(
      'the operator to be ready',
      async () => (await https(`${receiverUrl}/readyz`, { ca })).status === 200,
      90_000,
    ),
    operator.exited.then((code) => {
      throw new Error(`the operator exited with ${code}:\n${operator.output()}`);
    }),
  ]);
}, 240_000);

afterAll(async () => {
  await removeAll();
  await cp?.stop();
  await new Promise((resolve) => webhook?.close(resolve));
});

describe('run in the image, as the chart runs it', () => {
  it('lists the AuditSink and reports it Ready with its endpoint', async () => {
    const status = await eventually(
      'AuditSink cluster-trail Ready',
      async () => {
        const s = await sinkStatus(cp, 'auditsink', 'cluster-trail');
        return conditionOf(s, 'Ready')?.status === 'True' ? s : undefined;
      },
      60_000,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}\noperator output:\n${operator.output()}`);
    });
    expect(status.endpoint).toBe(`${receiverUrl}/audit/v1/sinks/cluster-trail`);
  });

  it("forwards the apiserver's audit events of the sink's policy to its webhook", async () => {
    const name = `seen-${process.pid}`;
    await kubectlOk(cp, ['create', 'configmap', name, '-n', OPERATOR_NS, '--from-literal=a=b']);
    const events = await eventually(
      'the create of the ConfigMap at the webhook',
      () => {
        const found = forwarded.filter((e) => e.objectRef?.name === name);
        return found.length > 0 ? found : undefined;
      },
      60_000,
    );
    expect(events.map((e) => [e.verb, e.level, e.stage])).toContainEqual([
      'create',
      'Metadata',
      'ResponseComplete',
    ]);
    // Only what the sink's policy keeps: the last stage, at Metadata (no bodies).
    expect(new Set(forwarded.map((e) => `${e.stage} ${e.level}`))).toEqual(
      new Set(['ResponseComplete Metadata']),
    );
    expect(forwarded.filter((e) => e.requestObject !== undefined)).toEqual([]);
  });

  it('serves /readyz, and exits 0 on SIGTERM within the grace period', async () => {
    expect((await https(`${receiverUrl}/readyz`, { ca })).status).toBe(200);
    const { code, ms } = await operator.stop('SIGTERM');
    expect(code, operator.output()).toBe(0);
    expect(ms).toBeLessThan(SIGTERM_EXIT_MS);
  });
});
