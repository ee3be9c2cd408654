// Sustained overload: runs the built CLI (`node dist/main.js standalone`) against a real influxd
// (test/harness) whose writes are throttled by a fault-injecting TCP proxy
// (test/harness/faulty-proxy.ts), and offers it several times what InfluxDB takes for about
// 100 s, as a kube-apiserver posting 400-event batches to the fan-in endpoint would (its only sink
// full, the fan-in endpoint answers 429 too). The receiver must refuse the excess
// with 429 instead of losing it, keep its memory bounded, and drain its backlog once input stops.
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditWebhookClient, RecordedEvents } from '../harness/audit-client.ts';
import { type FaultyProxy, startFaultyProxy } from '../harness/faulty-proxy.ts';
import {
  auditPointCounts,
  duplicatedAuditIds,
  freePort,
  type InfluxServer,
  startInfluxd,
} from '../harness/influxd.ts';
import {
  shippedNodeOptions,
  type StandaloneProcess,
  startStandalone,
} from '../harness/standalone.ts';
import { metricSum as metric } from '../support/metrics.ts';
import { eventually } from '../support/wait.ts';

const MIB = 1024 * 1024;

/** The sink's spool cap (`--spool-max-bytes`): what the receiver holds before it answers 429. */
const QUEUE_LIMIT_BYTES = 32 * MIB;
/** How long the client offers new events. */
const INPUT_MS = 100_000;
/** The first half-minute is warm-up: V8 sizes its heap, the spool fills to its cap. */
const WARM_UP_MS = 30_000;
/**
 * The apiserver's default `--audit-webhook-batch-max-size` is 400 events; a batch every 40 ms
 * offers 10,000 events/s.
 */
const BATCH_EVENTS = 400;
const BATCH_INTERVAL_MS = 40;
/**
 * Batches waiting for an answer at most: the apiserver's default buffer of 10,000 events
 * (`--audit-webhook-batch-buffer-size`). When it is full the client skips a tick, where the
 * apiserver would drop the batch.
 */
const MAX_IN_FLIGHT = 10_000 / BATCH_EVENTS;
/**
 * InfluxDB's pace: writes reach influxd at 64 KiB/s. Recorded events, gzipped by the writer, take
 * about 35 bytes each, so the sink writes under 2,000 events per second: a fifth of what the client
 * offers.
 */
const INFLUX_BYTES_PER_SECOND = 64 * 1024;
/** After input stops, the backlog (at most the spool cap plus the batches in flight) must drain in this time. */
const DRAIN_LIMIT_MS = 60_000;

let influx: InfluxServer;
let proxy: FaultyProxy;
let dir: string;
let receiver: StandaloneProcess | undefined;

beforeAll(async () => {
  influx = await startInfluxd();
  // A day's retention, as a real trail has one: the recorded events are made new at the time of
  // the run (test/harness/audit-client.ts), so every acknowledged event must still be kept.
  await influx.createBucket('load', 24 * 3600);
  proxy = await startFaultyProxy({ port: Number(new URL(influx.url).port) });
  dir = await mkdtemp(join(tmpdir(), 'kao-load-'));
});
afterAll(async () => {
  await receiver?.stop('SIGKILL');
  await proxy.close();
  await influx.dispose();
  await rm(dir, { recursive: true, force: true });
});

async function startReceiver(port: number): Promise<StandaloneProcess> {
  await mkdir(join(dir, 'manifests'));
  await writeFile(
    join(dir, 'manifests', 'sinks.yaml'),
    `apiVersion: kube-audit.dev/v1alpha1
kind: AuditSink
metadata: {name: load}
spec:
  policy: {level: RequestResponse, stages: [ResponseComplete]}
  influxdb:
    url: ${proxy.url}
    org: ${influx.org}
    bucket: load
    flushInterval: 100ms
    tokenSecretRef: {name: influx, key: token}
---
apiVersion: v1
kind: Secret
metadata: {name: influx, namespace: kube-audit}
stringData: {token: ${influx.token}}
`,
  );
  receiver = await startStandalone({
    manifests: join(dir, 'manifests'),
    port,
    dataDir: join(dir, 'data'),
    logLevel: 'error',
    args: ['--spool-max-bytes', String(QUEUE_LIMIT_BYTES)],
    // As the image runs it: with its V8 heap limits, not Node.js's defaults for a 24 GiB machine.
    nodeOptions: shippedNodeOptions(),
    readyTimeoutMs: 30_000,
  });
  return receiver;
}

/** Resident memory of a process, in bytes. */
function rss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN) * 1024;
}

/** Points and distinct auditIDs in the bucket, counted by influxd. */
const counts = () => auditPointCounts(influx, 'load');

const mib = (bytes: number) => (bytes / MIB).toFixed(1);

describe('sustained overload into a throttled real InfluxDB', () => {
  it('answers 429 instead of losing events, keeps memory bounded and drains the backlog', async () => {
    proxy.throttle({ bytesPerSecond: INFLUX_BYTES_PER_SECOND });
    const running = await startReceiver(await freePort());
    const metrics = async () => (await fetch(`${running.url}/metrics`)).text();
    // Idle, before any event: what the process needs for itself.
    const baseline = rss(running.pid);
    const client = new AuditWebhookClient(`${running.url}/audit/v1/events`, {
      initialMs: 100,
      maxMs: 2_000,
      giveUpMs: 180_000,
    });
    const events = new RecordedEvents('load');
    const samples: { at: number; rss: number }[] = [];
    const started = performance.now();
    const sampler = setInterval(() => {
      try {
        samples.push({ at: performance.now() - started, rss: rss(running.pid) });
      } catch {
        // The receiver is gone; the assertions below say so.
      }
    }, 1_000);
    let skipped = 0;
    let largestBody = 0;
    let inFlight = 0;
    const sends: Promise<void>[] = [];
    try {
      while (performance.now() - started < INPUT_MS) {
        if (inFlight >= MAX_IN_FLIGHT) skipped++;
        else {
          inFlight++;
          const batch = events.batch(BATCH_EVENTS);
          largestBody = Math.max(largestBody, Buffer.byteLength(batch.body));
          sends.push(client.send(batch).finally(() => inFlight--));
        }
        await new Promise((resolve) => setTimeout(resolve, BATCH_INTERVAL_MS));
      }
      const inputStopped = performance.now();
      await Promise.all(sends);
      await eventually(
        'the backlog to drain',
        async () =>
          metric(await metrics(), 'kube_audit_sink_queue_events') === 0 &&
          (await counts()).distinct >= client.counts.ackedEvents,
        DRAIN_LIMIT_MS,
        250,
      );
      const drainMs = performance.now() - inputStopped;
      clearInterval(sampler);
      samples.push({ at: performance.now() - started, rss: rss(running.pid) });

      /*
       * The bound. What the load can make the receiver hold is its queue, at most the queue limit
       * of encoded events (the spool keeps them on disk; counted here as if all were in memory),
       * and the batches in flight, each parsed and routed before the queue accepts or refuses
       * it. An event in memory takes about 5 times its JSON size (the parsed event, its copy at
       * the sink's level, its encoded record), and V8 lets its heap grow to about twice what is
       * live between full collections; the native allocator keeps up to 64 MiB more (freed heap
       * pages, zlib and socket buffers). So: the idle baseline plus 2 x 5 x (queue limit + the
       * bodies in flight) plus 64 MiB; with 32 MiB and 25 bodies of 0.55 MiB, about 600 MiB.
       */
      const bound = baseline + 2 * 5 * (QUEUE_LIMIT_BYTES + MAX_IN_FLIGHT * largestBody) + 64 * MIB;
      const peak = Math.max(...samples.map((s) => s.rss));
      const peakAfterWarmUp = Math.max(
        ...samples.filter((s) => s.at >= WARM_UP_MS).map((s) => s.rss),
      );
      // Bounded, not merely below a ceiling: the last 30 s of input need no more than the 40 s
      // before them, give or take what one full collection frees.
      const peakIn = (from: number, to: number) =>
        Math.max(...samples.filter((s) => s.at >= from && s.at < to).map((s) => s.rss));
      const middle = peakIn(WARM_UP_MS, INPUT_MS - 30_000);
      const late = peakIn(INPUT_MS - 30_000, INPUT_MS);
      const seconds = INPUT_MS / 1000;
      const rate = (n: number) => `${n} (${Math.round(n / seconds)}/s)`;
      console.log(
        `load summary: ${seconds} s of input, offered ${1000 / BATCH_INTERVAL_MS} batches/s of ` +
          `${BATCH_EVENTS}; new events posted ${rate(events.count)}; events posted with retries ` +
          `${rate(client.counts.attempts * BATCH_EVENTS)}; events acked with 200 ` +
          `${rate(client.counts.ackedEvents)}; 429 answers ${client.counts.throttled}; ticks ` +
          `skipped with ${MAX_IN_FLIGHT} batches in flight ${skipped}; peak RSS ${mib(peak)} MiB ` +
          `(after warm-up ${mib(peakAfterWarmUp)} MiB, ${mib(middle)} then ${mib(late)} MiB, ` +
          `idle ${mib(baseline)} MiB, bound ` +
          `${mib(bound)} MiB); drained ${(drainMs / 1000).toFixed(1)} s after input stopped`,
      );

      expect(client.counts.throttled).toBeGreaterThan(0);
      expect(client.counts.serverErrors).toBe(0);
      expect(client.counts.ackedEvents).toBe(events.count);
      expect(peakAfterWarmUp).toBeLessThan(bound);
      expect(late).toBeLessThan(middle + 64 * MIB);
      const written = await counts();
      if (written.points !== written.distinct) {
        console.log('duplicated:', JSON.stringify(await duplicatedAuditIds(influx, 'load')));
      }
      expect(written).toEqual({
        points: client.counts.ackedEvents,
        distinct: client.counts.ackedEvents,
      });
      expect(
        metric(await metrics(), 'kube_audit_sink_dropped_events_total', { reason: 'overflow' }),
      ).toBe(0);
    } finally {
      clearInterval(sampler);
    }
    expect(await running.stop('SIGTERM')).toBe(0);
  }, 240_000);
});
