// Runs the built CLI (`node dist/main.js standalone`) against a real influxd (test/harness), with a
// fault-injecting TCP proxy (test/harness/faulty-proxy.ts) between them, and posts thousands of
// distinct events as the kube-apiserver does while InfluxDB is slow, down or failing, while the
// receiver is killed, while a spool is full and while batches come again. Each bucket must then
// hold exactly one point per event: none lost, none twice.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type AuditBatch,
  AuditWebhookClient,
  type ClientCounts,
  RecordedEvents,
} from '../harness/audit-client.ts';
import { type FaultyProxy, type ProxyMode, startFaultyProxy } from '../harness/faulty-proxy.ts';
import {
  auditPointCounts,
  duplicatedAuditIds,
  freePort,
  type InfluxServer,
  startInfluxd,
} from '../harness/influxd.ts';
import { type StandaloneProcess, startStandalone } from '../harness/standalone.ts';
import { metricSum as metric } from '../support/metrics.ts';
import { eventually } from '../support/wait.ts';

/** Both sinks take every event, each at its own level, each into its own bucket. */
const SINKS = ['metadata', 'full'] as const;
type SinkName = (typeof SINKS)[number];

let influx: InfluxServer;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  influx = await startInfluxd();
});
afterAll(async () => {
  await influx.dispose();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A receiver process, with its metrics. */
interface Receiver extends StandaloneProcess {
  metrics(): Promise<string>;
}

/** One scenario: its buckets, the proxy in front of influxd, a manifest directory, a data dir. */
interface Scenario {
  readonly influxProxy: FaultyProxy;
  readonly port: number;
  readonly buckets: Record<SinkName, string>;
  start(): Promise<Receiver>;
}

async function scenario(name: string, extraArgs: readonly string[] = []): Promise<Scenario> {
  const dir = await mkdtemp(join(tmpdir(), 'kao-faults-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const influxProxy = await startFaultyProxy({ port: Number(new URL(influx.url).port) });
  cleanups.push(() => influxProxy.close());
  const buckets = { metadata: `${name}-metadata`, full: `${name}-full` };
  for (const bucket of Object.values(buckets)) await influx.createBucket(bucket);
  const sink = (sinkName: SinkName, level: string) =>
    `apiVersion: kube-audit.dev/v1alpha1
kind: AuditSink
metadata: {name: ${sinkName}}
spec:
  policy: {level: ${level}, stages: [ResponseComplete]}
  influxdb:
    url: ${influxProxy.url}
    org: ${influx.org}
    bucket: ${buckets[sinkName]}
    flushInterval: 100ms
    tokenSecretRef: {name: influx, key: token}
---
`;
  await mkdir(join(dir, 'manifests'));
  await writeFile(
    join(dir, 'manifests', 'sinks.yaml'),
    `${sink('metadata', 'Metadata')}${sink('full', 'RequestResponse')}apiVersion: v1
kind: Secret
metadata: {name: influx, namespace: kube-audit}
stringData: {token: ${influx.token}}
`,
  );
  const port = await freePort();
  return {
    influxProxy,
    port,
    buckets,
    start: () => startReceiver(dir, port, extraArgs),
  };
}

async function startReceiver(
  dir: string,
  port: number,
  extraArgs: readonly string[],
): Promise<Receiver> {
  const running = await startStandalone({
    manifests: join(dir, 'manifests'),
    port,
    dataDir: join(dir, 'data'),
    logLevel: 'error',
    args: extraArgs,
    readyTimeoutMs: 30_000,
  });
  cleanups.push(async () => {
    await running.stop('SIGKILL');
  });
  return { ...running, metrics: async () => (await fetch(`${running.url}/metrics`)).text() };
}

const counts = (bucket: string) => auditPointCounts(influx, bucket);

/**
 * Waits until both sinks' queues are empty and both buckets hold `expected` events (or 90 s
 * passed), then asserts exactly `expected` points with `expected` distinct auditIDs in each, and no
 * event dropped as overflow.
 */
async function expectEachEventOnce(s: Scenario, receiver: Receiver, expected: number) {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const text = await receiver.metrics();
    const queued = metric(text, 'kube_audit_sink_queue_events');
    const found = await Promise.all(SINKS.map((sink) => counts(s.buckets[sink])));
    if ((queued === 0 && found.every((c) => c.distinct >= expected)) || Date.now() > deadline) {
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  for (const sink of SINKS) {
    const written = await counts(s.buckets[sink]);
    if (written.points !== written.distinct) {
      console.log('duplicated:', JSON.stringify(await duplicatedAuditIds(influx, s.buckets[sink])));
    }
    expect({ sink, ...written }).toEqual({
      sink,
      points: expected,
      distinct: expected,
    });
  }
  expect(
    metric(await receiver.metrics(), 'kube_audit_sink_dropped_events_total', {
      reason: 'overflow',
    }),
  ).toBe(0);
}

/** Sends a new batch every `intervalMs` until `done` settles; resolves once every batch is acknowledged. */
async function postPaced(
  clients: readonly AuditWebhookClient[],
  events: RecordedEvents,
  intervalMs: number,
  done: Promise<unknown>,
): Promise<void> {
  let stop = false;
  const finish = () => {
    stop = true;
  };
  done.then(finish, finish);
  const sends: Promise<void>[] = [];
  while (!stop) {
    const batch = events.batch();
    for (const client of clients) sends.push(client.send(batch));
    await Promise.race([new Promise((resolve) => setTimeout(resolve, intervalMs)), done]);
  }
  // A failed fault script fails the test at once; otherwise every batch must get its 200.
  await done;
  await Promise.all(sends);
}

/**
 * Holds `mode` for at least `minMs` and until `hit` says the fault reached the receiver's writes
 * (at most 20 s), then forwards again until `written` shows that a write got through.
 */
async function fault(
  proxy: FaultyProxy,
  mode: ProxyMode,
  hit: () => boolean | Promise<boolean>,
  written: () => Promise<number>,
  minMs: number,
): Promise<void> {
  await proxy.set(mode);
  await new Promise((resolve) => setTimeout(resolve, minMs));
  await eventually(`the fault ${mode.kind} to hit a write`, hit, 20_000, 50);
  const before = await written();
  await proxy.set({ kind: 'forward' });
  await eventually(
    `a write to succeed after ${mode.kind}`,
    async () => (await written()) > before,
    40_000,
    100,
  );
}

function sumCounts(clients: readonly AuditWebhookClient[], key: keyof ClientCounts): number {
  return clients.reduce((sum, c) => sum + c.counts[key], 0);
}

describe('delivery under faults, into a real InfluxDB behind a faulty network', () => {
  it('writes every event exactly once while InfluxDB is so slow that writes time out', async () => {
    const s = await scenario('slow');
    const receiver = await s.start();
    const client = new AuditWebhookClient(`${receiver.url}/audit/v1/events`);
    const events = new RecordedEvents('slow');
    // Requests trickle in at 16 KiB/s and every answer comes 10.5 s late: past the writer's
    // 10 s deadline, after influxd has stored the points. Both are retried, the second overwrites.
    s.influxProxy.throttle({ bytesPerSecond: 16 * 1024 }, { delayMs: 10_500 });
    const slow = (async () => {
      await eventually(
        'a write to time out',
        async () =>
          metric(await receiver.metrics(), 'kube_audit_sink_write_failures_total', {
            code: 'TIMEOUT',
          }) >= 2,
        30_000,
        200,
      );
      s.influxProxy.throttle({});
    })();
    await postPaced([client], events, 1_000, slow);
    expect(events.count).toBeGreaterThanOrEqual(4_000);
    await expectEachEventOnce(s, receiver, events.count);
  }, 150_000);

  it('writes every event exactly once across resets, refused connections, error answers and an influxd crash', async () => {
    const s = await scenario('outage');
    const receiver = await s.start();
    const client = new AuditWebhookClient(`${receiver.url}/audit/v1/events`);
    const events = new RecordedEvents('outage');
    const written = async () =>
      metric(await receiver.metrics(), 'kube_audit_sink_written_events_total');
    const failures = async (code: string) =>
      metric(await receiver.metrics(), 'kube_audit_sink_write_failures_total', { code });
    const proxy = s.influxProxy;
    // Each fault with what shows that it reached a write: two, one per sink.
    const faults: [ProxyMode, () => Promise<() => Promise<boolean> | boolean>][] = [
      [{ kind: 'reset' }, () => Promise.resolve(() => proxy.stats.reset >= 2)],
      [
        { kind: 'refuse' },
        async () => {
          const before = await failures('UNREACHABLE');
          return async () => (await failures('UNREACHABLE')) >= before + 2;
        },
      ],
      ...[
        { kind: 'answer', status: 503, headers: { 'retry-after': '1' } } as const,
        { kind: 'answer', status: 500 } as const,
        { kind: 'answer', status: 429, headers: { 'retry-after': '1' } } as const,
      ].map((mode): [ProxyMode, () => Promise<() => boolean>] => [
        mode,
        () => {
          const before = proxy.stats.answered;
          return Promise.resolve(() => proxy.stats.answered >= before + 2);
        },
      ]),
      // influxd stores the points, the answer never arrives: the retry writes them again.
      [{ kind: 'cut' }, () => Promise.resolve(() => proxy.stats.cut >= 2)],
    ];
    const script = (async () => {
      // Let delivery start before the first fault.
      await eventually('a first write', async () => (await written()) > 0, 20_000, 100);
      for (const [mode, hitFrom] of faults) {
        const hit = await hitFrom();
        const minMs = mode.kind === 'refuse' ? 3_000 : 1_000;
        // After each fault, a write must get through before the next one starts.
        await fault(proxy, mode, hit, written, minMs);
      }
      // influxd itself crashes and comes back on the same data: what it acknowledged survives.
      const before = await failures('UNREACHABLE');
      await influx.kill();
      await eventually(
        'a write to fail while influxd is down',
        async () => (await failures('UNREACHABLE')) >= before + 2,
        20_000,
        50,
      );
      const writtenBefore = await written();
      await influx.restart();
      await eventually(
        'a write to succeed after influxd restarted',
        async () => (await written()) > writtenBefore,
        40_000,
        100,
      );
    })();
    await postPaced([client], events, 400, script);
    const text = await receiver.metrics();
    for (const code of ['UNREACHABLE', 'SERVER_ERROR', 'THROTTLED']) {
      expect(metric(text, 'kube_audit_sink_write_failures_total', { code }), code).toBeGreaterThan(
        0,
      );
    }
    expect(events.count).toBeGreaterThanOrEqual(4_000);
    await expectEachEventOnce(s, receiver, events.count);
  }, 150_000);

  it('writes every event exactly once when the receiver is killed twice mid-stream', async () => {
    const s = await scenario('killed');
    let receiver = await s.start();
    const client = new AuditWebhookClient(`http://127.0.0.1:${s.port}/audit/v1/events`);
    const events = new RecordedEvents('killed');
    // InfluxDB holds every write meanwhile, so the killed receivers leave a spool to replay.
    await s.influxProxy.set({ kind: 'hold' });
    const script = (async () => {
      for (let kill = 0; kill < 2; kill++) {
        await new Promise((resolve) => setTimeout(resolve, 2_000));
        // Acknowledged events wait in the spool: the next receiver must replay them.
        expect(metric(await receiver.metrics(), 'kube_audit_sink_queue_events')).toBeGreaterThan(0);
        await receiver.stop('SIGKILL');
        receiver = await s.start();
      }
      await s.influxProxy.set({ kind: 'forward' });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    })();
    await postPaced([client], events, 250, script);
    expect(client.counts.connectionErrors).toBeGreaterThan(0);
    expect(events.count).toBeGreaterThanOrEqual(4_000);
    await expectEachEventOnce(s, receiver, events.count);
    expect(await receiver.stop('SIGTERM')).toBe(0);
  }, 150_000);

  it('answers 429 with Retry-After when a spool is full, and delivers everything once InfluxDB is back', async () => {
    // 1 MiB, the smallest cap: about two batches of RequestResponse events.
    const s = await scenario('full', ['--spool-max-bytes', String(1024 * 1024)]);
    const receiver = await s.start();
    // Only a sink's own endpoint answers 429; the fan-in endpoint keeps the other sinks going.
    const clients = SINKS.map(
      (sink) => new AuditWebhookClient(`${receiver.url}/audit/v1/sinks/${sink}`),
    );
    const events = new RecordedEvents('full');
    await s.influxProxy.set({ kind: 'refuse' });
    const script = (async () => {
      await eventually(
        'both spools to fill',
        () => clients.every((c) => c.counts.throttled >= 3),
        40_000,
        50,
      );
      // Full spools for a while: every batch posted meanwhile is refused until there is room.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      await s.influxProxy.set({ kind: 'forward' });
    })();
    await postPaced(clients, events, 250, script);
    for (const client of clients) {
      expect(client.counts.throttled).toBeGreaterThanOrEqual(3);
      expect(client.counts.minRetryAfter).toBeGreaterThanOrEqual(1);
      expect(client.counts.acked).toBe(events.count / 400);
    }
    expect(events.count).toBeGreaterThanOrEqual(4_000);
    await expectEachEventOnce(s, receiver, events.count);
  }, 150_000);

  it('writes one point per event when the apiserver posts batches again, after a 200 and after a cut answer', async () => {
    const s = await scenario('again');
    const receiver = await s.start();
    const receiverProxy = await startFaultyProxy({ port: s.port });
    cleanups.push(() => receiverProxy.close());
    const direct = new AuditWebhookClient(`${receiver.url}/audit/v1/events`);
    const viaProxy = new AuditWebhookClient(`${receiverProxy.url}/audit/v1/events`);
    const events = new RecordedEvents('again');
    const batches: AuditBatch[] = Array.from({ length: 10 }, () => events.batch());
    // Each batch twice after its 200, every third one three times.
    for (const [i, batch] of batches.entries()) {
      for (let copy = 0; copy < (i % 3 === 0 ? 3 : 2); copy++) await direct.send(batch);
    }
    expect(direct.counts.acked).toBe(24);
    // The receiver queues the batch and answers 200, but the connection is cut before the answer
    // arrives: the client sees a connection error and posts the batch again.
    await receiverProxy.set({ kind: 'cut', count: 5 });
    await Promise.all(Array.from({ length: 5 }, () => viaProxy.send(events.batch())));
    expect(receiverProxy.stats.cut).toBe(5);
    expect(viaProxy.counts.connectionErrors).toBe(5);
    expect(viaProxy.counts.acked).toBe(5);
    expect(events.count).toBe(6_000);
    await expectEachEventOnce(s, receiver, events.count);
    expect(sumCounts([direct, viaProxy], 'ackedEvents')).toBe(24 * 400 + 5 * 400);
  }, 150_000);
});
