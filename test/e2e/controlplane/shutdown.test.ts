// SIGTERM against `kube-audit-operator run` (the built binary, as a user with exactly the
// documented RBAC) whose sink writes to an InfluxDB that never answers (a TCP server on 127.0.0.1
// that accepts connections, reads and never responds): the shutdown ends within the grace period
// with the final status written and the Lease released, and also when the apiserver stops
// answering too (test/harness/faulty-proxy.ts holding every byte between them); the next start,
// pointed at a real influxd, delivers every acknowledged event exactly once. Real processes: etcd
// and kube-apiserver (current release), influxd, kubectl, and the operator.
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { RecordedEvents } from '../../harness/audit-client.ts';
import { type ControlPlane, startControlPlane } from '../../harness/controlplane.ts';
import { type FaultyProxy, startFaultyProxy } from '../../harness/faulty-proxy.ts';
import {
  auditPointCounts,
  freePort,
  type InfluxServer,
  startInfluxd,
} from '../../harness/influxd.ts';
import {
  type OperatorProcess,
  operatorRunArgs,
  startOperatorProcess,
} from '../../harness/operator.ts';
import { TestPki } from '../../harness/pki.ts';
import { eventually } from '../../support/wait.ts';
import { kubectlOk, postJson, sinkStatus } from './kube.ts';

const OPERATOR_NS = 'kube-audit';
const LEASE = 'kube-audit-operator';
/** An AuditSink: it sees every namespace of the recorded events. */
const SINK = 'trail';
const BUCKET = 'shutdown';
const GRACE_SECONDS = 5;
/** A fifth of the grace period (at most 5 s) follows the drain: the final status and the Lease. */
const DRAIN_MS = GRACE_SECONDS * 800;
/** The signal's delivery and the process's exit on a loaded 2-core machine. */
const EXIT_MARGIN_MS = 1_000;

let cp: ControlPlane | undefined;
let influx: InfluxServer | undefined;
let apiProxy: FaultyProxy | undefined;
let silent: { url: string; bytes: () => number; close(): Promise<void> } | undefined;
let dir = '';
let ca = '';
let token = '';
let start: () => Promise<{ url: string; process: OperatorProcess }>;
const started: OperatorProcess[] = [];
const events = new RecordedEvents('shutdown');
/** Every auditID answered 200 by any operator run. */
const acknowledged: string[] = [];

/** A TCP server that accepts connections and reads what they send, and never answers. */
async function startSilentServer(): Promise<NonNullable<typeof silent>> {
  const sockets = new Set<Socket>();
  let bytes = 0;
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('data', (chunk) => (bytes += chunk.length));
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    bytes: () => bytes,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function running<T>(what: string, value: T | undefined): T {
  if (value === undefined) throw new Error(`${what} is not running`);
  return value;
}

function must(args: string[], input?: string): Promise<string> {
  return kubectlOk(running('the control plane', cp), args, input);
}

/** The sink, writing to `url`. */
async function applySink(url: string): Promise<void> {
  const server = running('influxd', influx);
  await must(
    ['apply', '-f', '-'],
    stringify({
      apiVersion: 'kube-audit.dev/v1alpha1',
      kind: 'AuditSink',
      metadata: { name: SINK },
      spec: {
        policy: { level: 'Metadata', stages: ['ResponseComplete'] },
        influxdb: {
          url,
          org: server.org,
          bucket: BUCKET,
          tokenSecretRef: { name: 'influxdb', key: 'token' },
          flushInterval: '100ms',
        },
      },
    }),
  );
}

async function leaseHolder(): Promise<string> {
  const out = await must(['get', 'lease', LEASE, '-n', OPERATOR_NS, '-o', 'json']);
  return (JSON.parse(out) as { spec?: { holderIdentity?: string } }).spec?.holderIdentity ?? '';
}

/** Posts a batch of 400 new events to the sink's endpoint; they count once answered 200. */
async function post(url: string): Promise<void> {
  const batch = events.batch();
  const status = await postJson(`${url}/audit/v1/sinks/${SINK}`, batch.body, {
    ca,
    token,
  });
  expect(status).toBe(200);
  acknowledged.push(...batch.auditIDs);
}

/** SIGTERM, and how long until the process exited, with its exit code. */
async function terminate(process: OperatorProcess): Promise<{ code: number | null; ms: number }> {
  const begun = performance.now();
  const code = await process.stop('SIGTERM');
  return { code, ms: Math.round(performance.now() - begun) };
}

/**
 * The JSON lines the operator logged after `from` (a length of its log, which spans restarts)
 * whose message contains `text`.
 */
function logLines(process: OperatorProcess, from: number, text: string): Record<string, unknown>[] {
  return process
    .log()
    .slice(from)
    .split('\n')
    .flatMap((line) => {
      if (!line.startsWith('{')) return [];
      try {
        return [JSON.parse(line) as Record<string, unknown>];
      } catch {
        return [];
      }
    })
    .filter((entry) => typeof entry.msg === 'string' && entry.msg.includes(text));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kao-shutdown-e2e-'));
  const pki = new TestPki(dir);
  await pki.init();
  await pki.ca('ca');
  const serving = await pki.leaf('receiver', 'ca', 'server');
  ca = await readFile(join(dir, 'ca.crt'), 'utf8');
  token = randomBytes(24).toString('base64url');
  const tokenFile = join(dir, 'receiver-tokens');
  await writeFile(tokenFile, `${token}\n`);

  const [server, controlPlane] = await Promise.all([startInfluxd(), startControlPlane()]);
  influx = server;
  cp = controlPlane;
  silent = await startSilentServer();
  // The operator reaches the apiserver through a proxy that can stop answering.
  apiProxy = await startFaultyProxy({ port: Number(new URL(controlPlane.url).port) });
  const kubeconfig = join(dir, 'operator.kubeconfig');
  await writeFile(
    kubeconfig,
    (await readFile(controlPlane.kubeconfig('operator'), 'utf8')).replaceAll(
      controlPlane.url,
      apiProxy.url.replace('http://', 'https://'),
    ),
  );

  await must(['apply', '-f', 'crds/']);
  await must(['wait', '--for=condition=Established', 'crd', '--all', '--timeout=60s']);
  await must(['create', 'namespace', OPERATOR_NS]);
  await must(['apply', '-f', 'examples/operator/rbac.yaml']);
  await server.createBucket(BUCKET);
  await must(
    ['apply', '-f', '-'],
    stringify({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: {
        namespace: OPERATOR_NS,
        name: 'influxdb',
        labels: { 'kube-audit.dev/usable-by-sinks': 'true' },
      },
      stringData: { token: server.token },
    }),
  );
  await applySink(silent.url);

  const port = await freePort();
  const url = `https://127.0.0.1:${port}`;
  start = async () => {
    const process = await startOperatorProcess(
      operatorRunArgs(
        {
          kubeconfig,
          port,
          serving,
          tokenFile,
          dataDir: join(dir, 'data'),
          namespace: OPERATOR_NS,
        },
        `--shutdown-grace-seconds=${GRACE_SECONDS}`,
      ),
      { url, ca },
      join(dir, 'operator.log'),
    );
    started.push(process);
    return { url, process };
  };
}, 300_000);

afterAll(async () => {
  await Promise.all(started.map((p) => p.stop('SIGKILL')));
  await apiProxy?.close();
  await silent?.close();
  await Promise.all([cp?.stop(), influx?.dispose()]);
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

describe('operator shutdown within the grace period', () => {
  it('aborts the writes to a destination that never answers at the drain deadline, then writes the final status and releases the Lease, all within the grace period', async () => {
    const operator = await start();
    const from = operator.process.log().length;
    await eventually('the Lease to be held', async () => (await leaseHolder()) !== '');
    for (let i = 0; i < 2; i++) await post(operator.url);
    const destination = running('the silent server', silent);
    await eventually('a write to the destination', () => destination.bytes() > 0, 10_000, 50);

    const { code, ms } = await terminate(operator.process);
    console.log(
      `run, destination never answers, grace ${GRACE_SECONDS} s: exited ${code} after ${ms} ms`,
    );
    expect(code).toBe(0);
    expect(ms).toBeGreaterThanOrEqual(DRAIN_MS);
    expect(ms).toBeLessThan(GRACE_SECONDS * 1000 + EXIT_MARGIN_MS);
    const [deadline] = logLines(operator.process, from, 'shutdown deadline reached');
    expect(deadline).toMatchObject({
      undelivered: [{ sink: `AuditSink/${SINK}`, destinations: { influxdb: 800 } }],
    });
    expect(logLines(operator.process, from, 'stopped').map((l) => l.msg)).toEqual(['stopped']);
    // After the drain: the Lease released, and the final counters in status.
    expect(await leaseHolder()).toBe('');
    expect(await sinkStatus(running('the control plane', cp), 'auditsink', SINK)).toMatchObject({
      received: 800,
      written: 0,
    });
  }, 120_000);

  it('exits at the end of the grace period when the apiserver stops answering too', async () => {
    const operator = await start();
    const from = operator.process.log().length;
    await eventually('the Lease to be held', async () => (await leaseHolder()) !== '');
    await post(operator.url);
    const proxy = running('the apiserver proxy', apiProxy);
    await proxy.set({ kind: 'hold' });
    try {
      const { code, ms } = await terminate(operator.process);
      console.log(
        `run, destination and apiserver never answer, grace ${GRACE_SECONDS} s: exited ${code} after ${ms} ms`,
      );
      expect(code).toBe(0);
      expect(ms).toBeLessThan(GRACE_SECONDS * 1000 + EXIT_MARGIN_MS);
      expect(logLines(operator.process, from, 'shutdown deadline reached')).toHaveLength(1);
      expect(logLines(operator.process, from, 'grace period over before')).not.toEqual([]);
    } finally {
      await proxy.set({ kind: 'forward' });
    }
  }, 120_000);

  it('delivers every acknowledged event exactly once at the next start, to a working InfluxDB', async () => {
    const server = running('influxd', influx);
    await applySink(server.url);
    const operator = await start();
    await eventually(
      `${acknowledged.length} events in the bucket`,
      async () => (await auditPointCounts(server, BUCKET)).distinct >= acknowledged.length,
      60_000,
      250,
    );
    expect(await auditPointCounts(server, BUCKET)).toEqual({
      points: acknowledged.length,
      distinct: acknowledged.length,
    });
    const { code, ms } = await terminate(operator.process);
    console.log(`run, nothing queued: exited ${code} after ${ms} ms`);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(DRAIN_MS);
  }, 120_000);
});
