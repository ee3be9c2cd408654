// The kube-apiserver's own audit webhook spread over two replicas: etcd and kube-apiserver
// (current release, audit webhook posting every second) send to a TCP proxy that balances per
// connection as kube-proxy does (test/harness/round-robin-proxy.ts), in front of two real
// `kube-audit-operator standalone` processes (the built binary, plain HTTP on 127.0.0.1, one
// AuditSink each writing its line-protocol file) that close connections after 2 requests or 1 s.
// Go's HTTP client honours `Connection: close`: both replicas receive batches, the apiserver
// reports no webhook error, and every ConfigMap created during the stream is written exactly once.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ControlPlane, startControlPlane } from '../../harness/controlplane.ts';
import { freePort } from '../../harness/influxd.ts';
import { type RoundRobinProxy, startRoundRobinProxy } from '../../harness/round-robin-proxy.ts';
import { type StandaloneProcess, startStandalone } from '../../harness/standalone.ts';
import { metricSum } from '../../support/metrics.ts';
import { eventually } from '../../support/wait.ts';
import { kubectlOk } from './kube.ts';

/** ConfigMaps created while the stream runs, one every 250 ms. */
const MARKERS = 40;

let dir = '';
let cp: ControlPlane | undefined;
let proxy: RoundRobinProxy | undefined;
const replicas: { process: StandaloneProcess; dataDir: string }[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kao-webhook-spread-'));
  const manifests = join(dir, 'manifests');
  await mkdir(manifests);
  await writeFile(
    join(manifests, 'sink.yaml'),
    `apiVersion: kube-audit.dev/v1alpha1
kind: AuditSink
metadata: {name: trail}
spec:
  policy: {level: Metadata, stages: [ResponseComplete]}
`,
  );
  for (const name of ['a', 'b']) {
    const dataDir = join(dir, name);
    const process = await startStandalone({
      manifests,
      port: await freePort(),
      dataDir,
      args: ['--max-requests-per-connection=2', '--max-connection-age-seconds=1'],
    });
    replicas.push({ process, dataDir });
  }
  proxy = await startRoundRobinProxy(
    replicas.map((r) => ({ host: '127.0.0.1', port: Number(new URL(r.process.url).port) })),
  );
  // Plain HTTP: the apiserver sends no credentials there, and --insecure asks for none.
  cp = await startControlPlane({ auditWebhook: { url: `${proxy.url}/audit/v1/events` } });
}, 180_000);

afterAll(async () => {
  await cp?.stop();
  await proxy?.close();
  await Promise.all(replicas.map((r) => r.process.stop('SIGKILL')));
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

/** Batches a replica answered, by status, from its own metrics. */
async function answered(url: string): Promise<{ ok: number; other: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const all = metricSum(text, 'kube_audit_receiver_requests_total', { endpoint: 'events' });
  const ok = metricSum(text, 'kube_audit_receiver_requests_total', {
    endpoint: 'events',
    status: '200',
  });
  return { ok, other: all - ok };
}

describe('the apiserver’s audit webhook behind a per-connection balancer', () => {
  it('reaches both replicas, reconnecting after each Connection: close, and every event is written once', async () => {
    const controlPlane = cp as ControlPlane;
    for (let i = 0; i < MARKERS; i++) {
      await kubectlOk(controlPlane, ['create', 'configmap', `spread-${i}`, '-n', 'default']);
      await sleep(250);
    }
    // Every marker's create reaches one replica or the other (the batch wait is 1 s).
    const markerCounts = async () => {
      const counts = new Map<string, number>();
      for (const { dataDir } of replicas) {
        const file = join(dataDir, 'sinks', 'trail.lp');
        if (!existsSync(file)) continue;
        for (const m of (await readFile(file, 'utf8')).matchAll(/name="(spread-\d+)"/g)) {
          counts.set(m[1] as string, (counts.get(m[1] as string) ?? 0) + 1);
        }
      }
      return counts;
    };
    const counts = await eventually('every marker written', async () => {
      const c = await markerCounts();
      return c.size === MARKERS ? c : undefined;
    });
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    const shares = await Promise.all(replicas.map((r) => answered(r.process.url)));
    console.info(
      `apiserver webhook spread: ${proxy?.connections.join(' / ')} connections, ${shares.map((s) => s.ok).join(' / ')} batches`,
    );
    for (const share of shares) {
      expect(share.other).toBe(0);
      expect(share.ok).toBeGreaterThan(0);
    }
    expect(proxy?.errors).toBe(0);
    expect(Math.min(...(proxy?.connections ?? [0]))).toBeGreaterThanOrEqual(2);
    // The apiserver's webhook backend logs every batch it could not deliver.
    const log = await readFile(controlPlane.logs.apiserver, 'utf8');
    expect(log).not.toMatch(/Error in audit plugin/);
  });
});
