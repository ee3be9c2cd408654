// Load spread across replicas: two real `kube-audit-operator standalone` processes (the built
// binary, plain HTTP on 127.0.0.1, one AuditSink each writing its line-protocol file) behind a TCP
// proxy that balances per connection as kube-proxy does (test/harness/round-robin-proxy.ts), fed a
// steady stream of batches by a client that keeps its connection alive and retries as the
// kube-apiserver's webhook does (test/harness/audit-client.ts). Without connection limits the one
// connection pins every batch to one replica; with them both replicas receive a share, and every
// event is written exactly once: no batch lost, refused or retried.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditWebhookClient, RecordedEvents } from '../harness/audit-client.ts';
import { freePort } from '../harness/influxd.ts';
import { startRoundRobinProxy } from '../harness/round-robin-proxy.ts';
import { type StandaloneProcess, startStandalone } from '../harness/standalone.ts';
import { metricSum } from '../support/metrics.ts';

const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

/** A steady stream: one batch every 50 ms (the apiserver sends about one a second under load). */
const BATCHES = 80;
const EVENTS_PER_BATCH = 25;
const INTERVAL_MS = 50;

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

beforeAll(() => {
  if (!existsSync(MAIN)) {
    throw new Error('dist/main.js is missing: run `npm run build` (npm test does)');
  }
});

interface Replica {
  readonly process: StandaloneProcess;
  readonly dataDir: string;
}

/** Two standalone replicas with the same sink, each with its own data directory. */
async function replicas(limits: readonly string[]): Promise<Replica[]> {
  const dir = await mkdtemp(join(tmpdir(), 'kao-spread-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const manifests = join(dir, 'manifests');
  await mkdir(manifests);
  await writeFile(
    join(manifests, 'sink.yaml'),
    `apiVersion: kube-audit.dev/v1alpha1
kind: AuditSink
metadata: {name: trail}
spec:
  policy: {level: Metadata, stages: [RequestReceived, ResponseStarted, ResponseComplete, Panic]}
`,
  );
  return Promise.all(
    ['a', 'b'].map(async (name) => {
      const dataDir = join(dir, name);
      const process = await startStandalone({
        manifests,
        port: await freePort(),
        dataDir,
        args: limits,
      });
      cleanups.push(async () => {
        await process.stop('SIGKILL');
      });
      return { process, dataDir };
    }),
  );
}

/** Batches each replica answered 200 on the fan-in endpoint, from its own metrics. */
async function acknowledged(replica: Replica): Promise<number> {
  const text = await (await fetch(`${replica.process.url}/metrics`)).text();
  return metricSum(text, 'kube_audit_receiver_requests_total', {
    endpoint: 'events',
    status: '200',
  });
}

/** The auditIDs a replica wrote to its sink's line-protocol file (read after it stopped). */
async function written(replica: Replica): Promise<string[]> {
  const file = join(replica.dataDir, 'sinks', 'trail.lp');
  if (!existsSync(file)) return [];
  const text = await readFile(file, 'utf8');
  return [...text.matchAll(/audit_id="([^"]+)"/g)].map((m) => m[1] as string);
}

/** Sends the stream through a per-connection balancer in front of `pair`; what happened. */
async function stream(pair: Replica[], prefix: string) {
  const proxy = await startRoundRobinProxy(
    pair.map((r) => ({ host: '127.0.0.1', port: Number(new URL(r.process.url).port) })),
  );
  cleanups.push(() => proxy.close());
  const client = new AuditWebhookClient(`${proxy.url}/audit/v1/events`);
  const events = new RecordedEvents(prefix);
  const sent: string[] = [];
  for (let i = 0; i < BATCHES; i++) {
    const batch = events.batch(EVENTS_PER_BATCH);
    sent.push(...batch.auditIDs);
    await client.send(batch);
    await sleep(INTERVAL_MS);
  }
  const shares = await Promise.all(pair.map(acknowledged));
  // SIGTERM drains each replica's queue into its file.
  const codes = await Promise.all(pair.map((r) => r.process.stop('SIGTERM')));
  expect(codes).toEqual([0, 0]);
  const writtenIds = (await Promise.all(pair.map(written))).flat();
  return { client, proxy, sent, shares, writtenIds };
}

describe('two receivers behind a load balancer that balances per connection', () => {
  it('without connection limits: the client keeps one connection and one replica receives everything', async () => {
    const pair = await replicas([
      '--max-requests-per-connection=0',
      '--max-connection-age-seconds=0',
    ]);
    const { client, proxy, sent, shares, writtenIds } = await stream(pair, 'pinned');
    expect(client.counts.acked).toBe(BATCHES);
    expect(proxy.connections).toEqual([1, 0]);
    expect(shares).toEqual([BATCHES, 0]);
    expect(writtenIds.sort()).toEqual([...sent].sort());
  });

  it('with connection limits: both replicas receive a share of the stream, and every event is written once, none refused or retried', async () => {
    const pair = await replicas([
      '--max-requests-per-connection=10',
      '--max-connection-age-seconds=1',
    ]);
    const { client, proxy, sent, shares, writtenIds } = await stream(pair, 'spread');
    console.info(
      `load spread: ${BATCHES} batches over ${proxy.connections.reduce((a, b) => a + b)} connections, replica shares ${shares.join(' / ')}`,
    );
    // Every batch answered 200 on its first attempt: no reset, no 503, no retry.
    expect(client.counts).toMatchObject({
      attempts: BATCHES,
      acked: BATCHES,
      throttled: 0,
      serverErrors: 0,
      connectionErrors: 0,
    });
    expect(proxy.errors).toBe(0);
    expect(shares.reduce((a, b) => a + b)).toBe(BATCHES);
    // A new connection at least every 10 batches, alternating between the replicas.
    expect(Math.min(...proxy.connections)).toBeGreaterThanOrEqual(4);
    for (const share of shares) expect(share).toBeGreaterThanOrEqual(BATCHES * 0.3);
    expect(writtenIds).toHaveLength(sent.length);
    expect(new Set(writtenIds)).toEqual(new Set(sent));
  });
});
