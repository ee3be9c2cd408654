// Runs the built CLI (`node dist/main.js standalone`) against a real influxd (test/harness), posting
// the batches a real kube-apiserver recorded: points per bucket, duplicates, outages, SIGKILL.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/types.ts';
import { freePort, type InfluxServer, startInfluxd } from '../harness/influxd.ts';
import { type StandaloneProcess, startStandalone } from '../harness/standalone.ts';
import { batchesMovedToNow, recordedBatches, recordedEvents } from '../support/recorded.ts';
import { waitFor } from '../support/wait.ts';

const BATCHES = recordedBatches();
const EVENTS = recordedEvents();
const SHOP = EVENTS.filter((e) => e.objectRef?.namespace === 'shop').length;

/** The batches with every auditID suffixed: the same requests, made again. */
function again(suffix: string, batches: readonly string[] = BATCHES): string[] {
  return batches.map((b) => {
    const list = JSON.parse(b) as { items: AuditEvent[] };
    for (const item of list.items) item.auditID = `${item.auditID}-${suffix}`;
    return JSON.stringify(list);
  });
}

let influx: InfluxServer;
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  influx = await startInfluxd();
  await influx.createBucket('cluster-audit');
  await influx.createBucket('shop-audit');
});
afterAll(async () => {
  await influx.dispose();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function manifests(shopToken = influx.token): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kao-e2e-influx-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const destination = (bucket: string) =>
    `  influxdb:\n    url: ${influx.url}\n    org: ${influx.org}\n    bucket: ${bucket}\n    flushInterval: 100ms\n    tokenSecretRef: {name: influx, key: token}\n`;
  await mkdir(join(dir, 'manifests'));
  await writeFile(
    join(dir, 'manifests', 'sinks.yaml'),
    `apiVersion: kube-audit.dev/v1alpha1
kind: AuditSink
metadata: {name: cluster}
spec:
  policy: {level: Metadata, stages: [ResponseComplete]}
${destination('cluster-audit')}---
apiVersion: kube-audit.dev/v1alpha1
kind: AuditPipeline
metadata: {name: orders, namespace: shop}
spec:
  policy:
    rules: [{level: RequestResponse}]
${destination('shop-audit')}---
apiVersion: v1
kind: Secret
metadata: {name: influx, namespace: kube-audit}
stringData: {token: ${influx.token}}
---
apiVersion: v1
kind: Secret
metadata: {name: influx, namespace: shop}
stringData: {token: ${shopToken}}
`,
  );
  return dir;
}

async function start(dir: string, port: number, args: string[] = []): Promise<StandaloneProcess> {
  const running = await startStandalone({
    manifests: join(dir, 'manifests'),
    port,
    dataDir: join(dir, 'data'),
    args,
  });
  cleanups.push(async () => {
    await running.stop('SIGKILL');
  });
  return running;
}

async function postAll(url: string, batches: readonly string[]): Promise<void> {
  for (const body of batches) {
    const res = await fetch(`${url}/audit/v1/events?timeout=30s`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(res.status).toBe(200);
  }
}

/** Points (one per event) and distinct auditIDs in a bucket. */
async function counts(bucket: string): Promise<{ points: number; distinct: number }> {
  const rows = await influx.query(
    `from(bucket: "${bucket}") |> range(start: 0) |> filter(fn: (r) => r._measurement == "kubernetes_audit" and r._field == "audit_id") |> group() |> keep(columns: ["_value"])`,
  );
  return { points: rows.length, distinct: new Set(rows.map((r) => r._value)).size };
}

/** Waits until `bucket` holds `distinct` events; says what it held at the deadline. */
async function untilHolds(bucket: string, distinct: number, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    `${distinct} events in ${bucket}`,
    () => counts(bucket),
    (c) => c.distinct === distinct,
    timeoutMs,
  );
}

/** Every series of `/metrics` (its name and labels, as written) with its value. */
async function scrape(url: string): Promise<Map<string, number>> {
  const series = new Map<string, number>();
  for (const line of (await (await fetch(`${url}/metrics`)).text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    series.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return series;
}

async function emptyBuckets(): Promise<void> {
  for (const bucket of ['cluster-audit', 'shop-audit']) {
    await fetch(`${influx.url}/api/v2/delete?org=${influx.org}&bucket=${bucket}`, {
      method: 'POST',
      headers: { authorization: `Token ${influx.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ start: '1970-01-01T00:00:00Z', stop: '2100-01-01T00:00:00Z' }),
    });
  }
}

describe('standalone mode into a real InfluxDB', () => {
  it('writes each sink its own points, once each even when batches arrive twice', async () => {
    await emptyBuckets();
    const running = await start(await manifests(), await freePort());
    await postAll(running.url, BATCHES);
    await postAll(running.url, BATCHES);
    await untilHolds('cluster-audit', EVENTS.length);
    await untilHolds('shop-audit', SHOP);
    expect(await counts('cluster-audit')).toEqual({
      points: EVENTS.length,
      distinct: EVENTS.length,
    });
    expect(await counts('shop-audit')).toEqual({ points: SHOP, distinct: SHOP });
    // Every batch answered 200 was synced to the durable log first, which /metrics shows.
    const metrics = await scrape(running.url);
    expect(metrics.get('kube_audit_log_bytes')).toBeGreaterThan(0);
    expect(metrics.get('kube_audit_log_written_bytes_total')).toBeGreaterThan(0);
    expect(metrics.get('kube_audit_log_sync_duration_seconds_count')).toBeGreaterThanOrEqual(1);
  });

  it('keeps answering 200 while InfluxDB is down, then delivers everything, also across SIGKILL', async () => {
    await emptyBuckets();
    const dir = await manifests();
    const port = await freePort();
    const first = await start(dir, port);
    await influx.stop();
    await postAll(first.url, again('outage'));
    await first.stop('SIGKILL');
    const second = await start(dir, port);
    await postAll(second.url, again('after-restart'));
    await influx.restart();
    await untilHolds('cluster-audit', 2 * EVENTS.length, 60_000);
    expect((await counts('shop-audit')).distinct).toBeLessThanOrEqual(2 * SHOP);
    await untilHolds('shop-audit', 2 * SHOP, 60_000);
    expect(await second.stop('SIGTERM')).toBe(0);
  });

  it('reports a sink with a bad token in metrics without delaying the other sink', async () => {
    await emptyBuckets();
    const running = await start(await manifests('not-a-valid-token'), await freePort());
    await postAll(running.url, again('bad-token'));
    await untilHolds('cluster-audit', EVENTS.length);
    await waitFor(
      'an UNAUTHORIZED write failure of the shop pipeline in /metrics',
      async () =>
        (await (await fetch(`${running.url}/metrics`)).text())
          .split('\n')
          .filter((line) => line.startsWith('kube_audit_sink_write_failures_total')),
      (lines) =>
        lines.some((line) =>
          /^kube_audit_sink_write_failures_total\{sink="AuditPipeline\/shop\/orders",output="influxdb",code="UNAUTHORIZED"\} [1-9]/.test(
            line,
          ),
        ),
    );
    expect((await counts('shop-audit')).points).toBe(0);
  });

  it('answers 429 on a full sink endpoint and loses nothing it answered 200 for', async () => {
    await emptyBuckets();
    const running = await start(await manifests(), await freePort(), [
      '--spool-max-bytes',
      String(1024 * 1024),
    ]);
    await influx.stop();
    const acknowledged = new Set<string>();
    let refused = false;
    for (let i = 0; i < 400 && !refused; i++) {
      const body = again(`full-${i}`)[0] as string;
      const res = await fetch(`${running.url}/audit/v1/pipelines/shop/orders?timeout=30s`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      if (res.status === 429) {
        refused = true;
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
        continue;
      }
      expect(res.status).toBe(200);
      const list = JSON.parse(body) as { items: AuditEvent[] };
      for (const item of list.items)
        if (item.objectRef?.namespace === 'shop') acknowledged.add(item.auditID);
    }
    expect(refused).toBe(true);
    await influx.restart();
    await untilHolds('shop-audit', acknowledged.size, 60_000);
  });

  it('creates a missing bucket with its retention when the sink asks for it, and keeps recent events there', async () => {
    const dir = await manifests();
    const file = join(dir, 'manifests', 'sinks.yaml');
    const text = await readFile(file, 'utf8');
    await writeFile(
      file,
      text.replace(
        '    bucket: shop-audit\n',
        '    bucket: shop-created\n    createBucket: true\n    retention: 48h\n',
      ),
    );
    const running = await start(dir, await freePort());
    // A 48 h bucket keeps only recent events: the recorded ones are moved to now.
    await postAll(running.url, again('created', batchesMovedToNow()));
    await untilHolds('shop-created', SHOP);
    const res = await fetch(`${influx.url}/api/v2/buckets?org=${influx.org}&name=shop-created`, {
      headers: { authorization: `Token ${influx.token}` },
    });
    const { buckets } = (await res.json()) as {
      buckets: { retentionRules: { everySeconds: number }[] }[];
    };
    expect(buckets[0]?.retentionRules[0]?.everySeconds).toBe(48 * 3600);
  });

  it('keeps --influxdb-max-requests-per-server requests in flight to a hung server, the others waiting in /metrics, and delivers all once it answers', async () => {
    await emptyBuckets();
    const running = await start(await manifests(), await freePort(), [
      '--influxdb-max-requests-per-server=1',
    ]);
    const server = (name: string) => `${name}{server="${new URL(influx.url).origin}"}`;
    // Paused, influxd takes connections and answers nothing: the first write holds the one slot
    // until its 10 s deadline, and the other sink's write waits for it in the process.
    influx.pause();
    try {
      await postAll(running.url, again('one-slot'));
      await waitFor(
        'one request in flight to the paused influxd and one waiting',
        () => scrape(running.url),
        (m) =>
          m.get(server('kube_audit_output_server_requests_in_flight')) === 1 &&
          (m.get(server('kube_audit_output_server_requests_waiting')) ?? 0) >= 1,
        8_000,
      );
    } finally {
      influx.resume();
    }
    await untilHolds('cluster-audit', EVENTS.length, 60_000);
    await untilHolds('shop-audit', SHOP, 60_000);
    const after = await scrape(running.url);
    expect(after.get(server('kube_audit_output_server_requests_waiting'))).toBe(0);
    expect(after.get(server('kube_audit_output_server_wait_seconds_total'))).toBeGreaterThan(0);
  });
});
