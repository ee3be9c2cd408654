/**
 * Receiver benchmark: 400-event batches (the apiserver's default) posted over loopback HTTP to the
 * real receiver, routed through 1, 10 and 100 sinks into in-memory queues whose output discards
 * what it gets. Measures events per second, ack latency p50/p99 (what the apiserver waits for), CPU
 * seconds per 100k events and peak RSS. Client and server share the process, so CPU figures are
 * an upper bound for the server alone.
 */
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import type { AuditEvent } from '../src/audit/types.ts';
import type { Output } from '../src/outputs/types.ts';
import { startReceiver, validateReceiverOptions } from '../src/receiver/index.ts';
import { SinkRegistry } from '../src/sinks/registry.ts';
import { sinkFromResource } from '../src/sinks/spec.ts';
import type { Sink } from '../src/sinks/types.ts';
import { openQueue } from '../src/spool/index.ts';

/** One measured workload. */
export interface ReceiverResult {
  readonly name: string;
  readonly sinks: number;
  readonly batch: 'Metadata' | 'RequestResponse';
  readonly eventsPerSecond: number;
  readonly cpuSecondsPer100k: number;
  readonly ackP50Millis: number;
  readonly ackP99Millis: number;
  readonly peakRssMiB: number;
}

const FIXTURES = new URL('../test/fixtures/apiserver-1.20/', import.meta.url);
const POLICY = {
  omitStages: ['RequestReceived'],
  rules: [
    { level: 'None', users: ['system:apiserver'] },
    { level: 'Metadata', resources: [{ group: '', resources: ['secrets'] }] },
    {
      level: 'RequestResponse',
      resources: [{ group: '', resources: ['configmaps', 'namespaces'] }, { group: 'apps' }],
    },
    { level: 'Request', verbs: ['create', 'update', 'patch', 'delete'] },
    { level: 'Metadata' },
  ],
};

function body(level: 'Metadata' | 'RequestResponse'): string {
  const recorded = readFileSync(new URL('events.jsonl', FIXTURES), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as AuditEvent);
  const items = Array.from({ length: 400 }, (_, i) => {
    const e = { ...(recorded[i % recorded.length] as AuditEvent), auditID: `bench-${i}`, level };
    if (level === 'Metadata') {
      delete e.requestObject;
      delete e.responseObject;
    }
    return e;
  });
  return JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items });
}

/** Half cluster-wide trails, half tenant pipelines in the recorded namespaces. */
function sinks(n: number): Sink[] {
  const settings = { clusterWideNamespaces: ['kube-audit'], requireDestination: false };
  return Array.from({ length: n }, (_, i) =>
    sinkFromResource(
      i % 2 === 0
        ? {
            apiVersion: 'kube-audit.dev/v1alpha1',
            kind: 'AuditPipeline',
            metadata: { name: `p${i}`, namespace: ['shop', 'billing'][i % 4 === 0 ? 0 : 1] },
            spec: { policy: POLICY },
          }
        : {
            apiVersion: 'kube-audit.dev/v1alpha1',
            kind: 'AuditSink',
            metadata: { name: `s${i}` },
            spec: { policy: { level: 'Metadata', stages: ['ResponseComplete'] } },
          },
      settings,
    ),
  );
}

const discard: Output = {
  kind: 'file',
  target: 'discard',
  write: () => Promise.resolve(),
  close: () => Promise.resolve(),
};

/** Runs the receiver workloads for `millis` each. */
export async function runReceiverBench(millis: number): Promise<ReceiverResult[]> {
  const results: ReceiverResult[] = [];
  for (const batch of ['Metadata', 'RequestResponse'] as const) {
    const payload = body(batch);
    for (const n of [1, 10, 100]) {
      const registry = new SinkRegistry({
        routing: { allowSecretPayloads: false },
        factory: {
          openQueue: () => openQueue({ maxBytes: 2 ** 32 }),
          createOutputs: () => Promise.resolve([discard]),
        },
        idleWaitMs: 20,
      });
      await registry.apply(sinks(n));
      const receiver = await startReceiver(
        validateReceiverOptions({
          host: '127.0.0.1',
          port: 0,
          insecure: true,
          certificateCheckIntervalMs: 0,
        }),
        registry,
        new Registry(),
      );
      const url = `${receiver.url}/audit/v1/events?timeout=30s`;
      const post = async () => {
        const started = performance.now();
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: payload,
        });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`status ${res.status}`);
        return performance.now() - started;
      };
      for (let i = 0; i < 5; i++) await post();
      const latencies: number[] = [];
      let peakRss = process.memoryUsage.rss();
      const cpu = process.cpuUsage();
      const started = performance.now();
      // Two requests in flight: the apiserver sends batches asynchronously.
      await Promise.all(
        [0, 1].map(async () => {
          while (performance.now() - started < millis) {
            latencies.push(await post());
            peakRss = Math.max(peakRss, process.memoryUsage.rss());
          }
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      const used = process.cpuUsage(cpu);
      const events = latencies.length * 400;
      latencies.sort((a, b) => a - b);
      results.push({
        name: `${batch}, ${n} sink${n === 1 ? '' : 's'}`,
        sinks: n,
        batch,
        eventsPerSecond: Math.round(events / seconds),
        cpuSecondsPer100k: Number(
          (((used.user + used.system) / 1e6) * (100_000 / events)).toFixed(3),
        ),
        ackP50Millis: Number((latencies[Math.floor(latencies.length * 0.5)] ?? 0).toFixed(2)),
        ackP99Millis: Number((latencies[Math.floor(latencies.length * 0.99)] ?? 0).toFixed(2)),
        peakRssMiB: Math.round(peakRss / 2 ** 20),
      });
      await receiver.close();
      await registry.close(AbortSignal.timeout(1_000));
    }
  }
  return results;
}

/** The overload workload's result. */
export interface OverloadResult {
  readonly name: string;
  readonly acceptedEventsPerSecond: number;
  readonly deliveredEventsPerSecond: number;
  readonly overflowDropped: number;
  /** Batches answered 429 (no sink took them): the sender keeps and retries them. */
  readonly refusedBatches: number;
  readonly queueCapMiB: number;
  readonly rssBeforeMiB: number;
  readonly peakRssMiB: number;
}

/**
 * Input far faster than the destination: RequestResponse batches into one sink whose output
 * takes 100 ms per batch of at most 1,000 events, with a 64 MiB queue. Memory must stay bounded:
 * past the cap the fan-in endpoint drops the sink's share (counted) instead of growing.
 */
export async function runOverloadBench(millis: number): Promise<OverloadResult> {
  const cap = 64 * 2 ** 20;
  let delivered = 0;
  const slow: Output = {
    kind: 'influxdb',
    target: 'slow',
    write: (events) =>
      new Promise((resolve) =>
        setTimeout(() => {
          delivered += events.length;
          resolve();
        }, 100),
      ),
    close: () => Promise.resolve(),
  };
  const registry = new SinkRegistry({
    routing: { allowSecretPayloads: false },
    factory: {
      openQueue: () => openQueue({ maxBytes: cap }),
      createOutputs: () => Promise.resolve([slow]),
    },
    idleWaitMs: 20,
  });
  const [sink] = sinks(2).filter((s) => s.ref.kind === 'AuditSink');
  await registry.apply([sink as Sink]);
  const receiver = await startReceiver(
    validateReceiverOptions({
      host: '127.0.0.1',
      port: 0,
      insecure: true,
      certificateCheckIntervalMs: 0,
    }),
    registry,
    new Registry(),
  );
  const payload = body('RequestResponse');
  const url = `${receiver.url}/audit/v1/events?timeout=30s`;
  global.gc?.();
  const rssBefore = process.memoryUsage.rss();
  let peak = rssBefore;
  let accepted = 0;
  // Sent back with 429: the only sink is full, so the sender keeps the batch and retries.
  let refused = 0;
  const started = performance.now();
  await Promise.all(
    [0, 1].map(async () => {
      while (performance.now() - started < millis) {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: payload,
        });
        await res.arrayBuffer();
        if (res.status === 200) accepted += 400;
        else if (res.status === 429) refused++;
        else throw new Error(`POST ${url}: ${res.status}`);
        peak = Math.max(peak, process.memoryUsage.rss());
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const overflow = registry.status((sink as Sink).key)?.dropped.overflow ?? 0;
  await receiver.close();
  await registry.close();
  return {
    name: 'RequestResponse into a destination taking 100 ms per batch, 64 MiB queue',
    acceptedEventsPerSecond: Math.round(accepted / seconds),
    deliveredEventsPerSecond: Math.round(delivered / seconds),
    overflowDropped: overflow,
    refusedBatches: refused,
    queueCapMiB: cap / 2 ** 20,
    rssBeforeMiB: Math.round(rssBefore / 2 ** 20),
    peakRssMiB: Math.round(peak / 2 ** 20),
  };
}
