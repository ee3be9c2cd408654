// SIGTERM against the built CLI (`node dist/main.js standalone`, test/harness/standalone.ts) with an
// InfluxDB and a webhook destination that never answer (TCP servers on 127.0.0.1 that accept
// connections, read every byte and never respond), then restarted on the same spool with working
// destinations: a real influxd (test/harness/influxd.ts) and a node:http EventList receiver; and
// with both destinations answering slowly (influxd behind test/harness/faulty-proxy.ts, the
// receiver after a delay); and with a shutdown delay, batches and a new sink's manifest arriving
// after SIGTERM. Starts those servers and the standalone processes.
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditWebhookClient, RecordedEvents } from '../harness/audit-client.ts';
import { startFaultyProxy } from '../harness/faulty-proxy.ts';
import {
  auditPointCounts,
  duplicatedAuditIds,
  freePort,
  type InfluxServer,
  startInfluxd,
} from '../harness/influxd.ts';
import { type StandaloneProcess, startStandalone } from '../harness/standalone.ts';
import { metricSum } from '../support/metrics.ts';
import { eventually } from '../support/wait.ts';

/**
 * What an exit may take beyond the grace period: the signal's delivery, the process's teardown and
 * the `exit` event reaching the test, on a loaded 2-core machine. Without the deadline, the
 * InfluxDB write would hold the exit 10 s and the webhook write 30 s.
 */
const EXIT_MARGIN_MS = 1_000;

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

/** A TCP server that accepts connections and reads what they send, and never answers. */
interface SilentServer {
  readonly url: string;
  /** Bytes received so far, over all connections. */
  readonly bytes: () => number;
}

async function startSilentServer(): Promise<SilentServer> {
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
  cleanups.push(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${port}`, bytes: () => bytes };
}

/** A webhook destination: records the auditIDs of every EventList, answers 200 after `delayMs`. */
interface EventListReceiver {
  readonly url: string;
  readonly auditIDs: string[];
}

async function startEventListReceiver(delayMs = 0): Promise<EventListReceiver> {
  const auditIDs: string[] = [];
  const server: HttpServer = createHttpServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      setTimeout(() => {
        const list = JSON.parse(body) as { items: { auditID: string }[] };
        auditIDs.push(...list.items.map((item) => item.auditID));
        res.writeHead(200).end();
      }, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  cleanups.push(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  return { url: `http://127.0.0.1:${port}/audit`, auditIDs };
}

/** A manifest directory and data directory for a standalone process with two sinks. */
interface Setup {
  readonly dir: string;
  readonly bucket: string;
  /** Points the sinks at these destinations (written before each start). */
  destinations(influxUrl: string, webhookUrl: string): Promise<void>;
  start(graceSeconds: number, args?: readonly string[]): Promise<StandaloneProcess>;
}

async function setup(name: string, batchSize = 1_000): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'kao-shutdown-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'manifests'));
  const bucket = `${name}-cluster`;
  await influx.createBucket(bucket);
  return {
    dir,
    bucket,
    destinations: (influxUrl, webhookUrl) =>
      writeFile(
        join(dir, 'manifests', 'sinks.yaml'),
        `apiVersion: kube-audit.dev/v1alpha1
kind: AuditSink
metadata: {name: cluster}
spec:
  policy: {level: Metadata, stages: [ResponseComplete]}
  influxdb:
    url: ${influxUrl}
    org: ${influx.org}
    bucket: ${bucket}
    flushInterval: 100ms
    batchSize: ${batchSize}
    tokenSecretRef: {name: influx, key: token}
---
apiVersion: kube-audit.dev/v1alpha1
kind: AuditSink
metadata: {name: forward}
spec:
  policy: {level: Metadata, stages: [ResponseComplete]}
  webhook:
    throttle: {qps: 1000, burst: 1000}
    clientConfig: {url: ${webhookUrl}}
---
apiVersion: v1
kind: Secret
metadata: {name: influx, namespace: kube-audit}
stringData: {token: ${influx.token}}
`,
      ),
    start: async (graceSeconds, args = []) => {
      // Picked at each start, after the test's own servers took theirs: a port picked earlier
      // could have gone to one of them meanwhile.
      const running = await startStandalone({
        manifests: join(dir, 'manifests'),
        port: await freePort(),
        dataDir: join(dir, 'data'),
        args: ['--shutdown-grace-seconds', String(graceSeconds), ...args],
      });
      cleanups.push(async () => {
        await running.stop('SIGKILL');
      });
      return running;
    },
  };
}

/** SIGTERM, and how long until the process exited, with its exit code. */
async function terminate(running: StandaloneProcess): Promise<{ code: number | null; ms: number }> {
  const started = performance.now();
  const code = await running.stop('SIGTERM');
  return { code, ms: Math.round(performance.now() - started) };
}

async function metrics(running: StandaloneProcess): Promise<string> {
  return (await fetch(`${running.url}/metrics`)).text();
}

/** The log lines (JSON) whose message contains `text`. */
function logLines(running: StandaloneProcess, text: string): Record<string, unknown>[] {
  return running
    .log()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((entry) => typeof entry.msg === 'string' && entry.msg.includes(text));
}

async function expectEachOnceInInflux(bucket: string, expected: number): Promise<void> {
  await eventually(
    `${expected} events in ${bucket}`,
    async () => (await auditPointCounts(influx, bucket)).distinct >= expected,
    60_000,
    250,
  );
  const counts = await auditPointCounts(influx, bucket);
  if (counts.points !== counts.distinct) {
    console.log('duplicated:', JSON.stringify(await duplicatedAuditIds(influx, bucket)));
  }
  expect(counts).toEqual({ points: expected, distinct: expected });
}

describe('shutdown within the grace period', () => {
  it('exits 0 within the grace period while the destinations never answer, and the next start delivers every acknowledged event once', async () => {
    const s = await setup('silent');
    const silentInflux = await startSilentServer();
    const silentWebhook = await startSilentServer();
    await s.destinations(silentInflux.url, silentWebhook.url);
    const first = await s.start(3);
    const client = new AuditWebhookClient(`${first.url}/audit/v1/events`);
    const events = new RecordedEvents('silent');
    const acknowledged: string[] = [];
    for (let i = 0; i < 3; i++) {
      const batch = events.batch();
      await client.send(batch);
      acknowledged.push(...batch.auditIDs);
    }
    // Both writes are on the wire, waiting for answers that never come.
    await eventually(
      'both destinations to receive a request',
      () => silentInflux.bytes() > 0 && silentWebhook.bytes() > 0,
      10_000,
      50,
    );

    const { code, ms } = await terminate(first);
    console.log(`never-answering destinations, grace 3 s: exited ${code} after ${ms} ms`);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(3_000 + EXIT_MARGIN_MS);
    // It drained until the deadline (a tenth of the grace period before its end) rather than
    // giving up at once.
    expect(ms).toBeGreaterThanOrEqual(2_700);
    const [deadline] = logLines(first, 'shutdown deadline reached');
    expect(deadline).toMatchObject({
      level: 40,
      graceSeconds: 3,
      undelivered: [
        { sink: 'AuditSink/cluster', destinations: { influxdb: acknowledged.length } },
        { sink: 'AuditSink/forward', destinations: { webhook: acknowledged.length } },
      ],
    });
    expect(first.log()).not.toContain(influx.token);
    expect(first.log()).not.toContain(acknowledged[0]);

    // Restarted on the same spool with working destinations: each event arrives once.
    const webhook = await startEventListReceiver();
    await s.destinations(influx.url, webhook.url);
    const second = await s.start(3);
    await expectEachOnceInInflux(s.bucket, acknowledged.length);
    await eventually(
      'every event at the webhook',
      () => webhook.auditIDs.length >= acknowledged.length,
    );
    expect(webhook.auditIDs).toEqual(acknowledged);
    const text = await metrics(second);
    expect(metricSum(text, 'kube_audit_sink_queue_events')).toBe(0);
    const ended = await terminate(second);
    console.log(`working destinations, nothing queued: exited ${ended.code} after ${ended.ms} ms`);
    expect(ended.code).toBe(0);
    expect(logLines(second, 'stay spooled')).toEqual([]);
  }, 120_000);

  it('drains destinations that answer slowly but within the grace period, without aborting', async () => {
    // Batches of 400 to InfluxDB as to the webhook: six writes each, every one answered late.
    const s = await setup('slow', 400);
    const proxy = await startFaultyProxy({ port: Number(new URL(influx.url).port) });
    cleanups.push(() => proxy.close());
    proxy.throttle({}, { delayMs: 400 });
    const webhook = await startEventListReceiver(400);
    await s.destinations(proxy.url, webhook.url);
    const running = await s.start(10);
    const client = new AuditWebhookClient(`${running.url}/audit/v1/events`);
    const events = new RecordedEvents('slow');
    const acknowledged: string[] = [];
    for (let i = 0; i < 6; i++) {
      const batch = events.batch();
      await client.send(batch);
      acknowledged.push(...batch.auditIDs);
    }
    // Much is still queued when the signal comes.
    expect(metricSum(await metrics(running), 'kube_audit_sink_queue_events')).toBeGreaterThan(400);

    const { code, ms } = await terminate(running);
    console.log(`slow destinations, grace 10 s: drained and exited ${code} after ${ms} ms`);
    expect(code).toBe(0);
    // Well before the drain's deadline (9 s): nothing was cut off.
    expect(ms).toBeLessThan(9_000);
    expect(logLines(running, 'stay spooled')).toEqual([]);
    // Everything arrived before the exit, each once, without a restart.
    await expectEachOnceInInflux(s.bucket, acknowledged.length);
    expect(webhook.auditIDs).toEqual(acknowledged);
  }, 120_000);

  it('with a shutdown delay, keeps accepting batches with readiness off until the delay has passed, each answer closing its connection, applies a sink added meanwhile, and delivers them all', async () => {
    const s = await setup('delay');
    const webhook = await startEventListReceiver();
    await s.destinations(influx.url, webhook.url);
    const running = await s.start(10, ['--shutdown-delay-seconds', '3', '--log-level', 'info']);
    const client = new AuditWebhookClient(`${running.url}/audit/v1/events`);
    const events = new RecordedEvents('delay');
    const acknowledged: string[] = [];
    const send = async () => {
      const batch = events.batch();
      await client.send(batch);
      acknowledged.push(...batch.auditIDs);
    };
    await send();

    const signalled = performance.now();
    process.kill(running.pid, 'SIGTERM');
    await eventually(
      '/readyz to answer 503',
      async () => (await fetch(`${running.url}/readyz`)).status === 503,
      2_000,
      20,
    );
    // A sink created now still starts: the replica serves until the delay is over.
    const late = await startEventListReceiver();
    await writeFile(
      join(s.dir, 'manifests', 'late.yaml'),
      `apiVersion: kube-audit.dev/v1alpha1
kind: AuditSink
metadata: {name: late}
spec:
  policy: {level: Metadata, stages: [ResponseComplete]}
  webhook:
    clientConfig: {url: ${late.url}}
`,
    );
    const lateBatch = events.batch();
    await eventually(
      'the late sink to take a batch',
      async () => {
        const res = await fetch(`${running.url}/audit/v1/sinks/late?timeout=30s`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: lateBatch.body,
        });
        await res.text();
        return res.status === 200;
      },
      2_500,
      100,
    );
    // Batches still arrive while load balancers catch up: each is taken, none refused.
    const answers: { status: number; connection: string | null }[] = [];
    while (performance.now() - signalled < 2_500) {
      await send();
      const res = await fetch(`${running.url}/healthz`);
      answers.push({ status: res.status, connection: res.headers.get('connection') });
      await res.text();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(answers.length).toBeGreaterThanOrEqual(5);
    expect(answers.every((a) => a.status === 200 && a.connection === 'close')).toBe(true);
    expect(client.counts.attempts).toBe(client.counts.acked);
    // Then the listener closes: refused, as the load balancers no longer send anything here.
    await eventually(
      'the listener to close',
      async () => {
        try {
          await fetch(`${running.url}/healthz`);
          return false;
        } catch {
          return true;
        }
      },
      5_000,
      20,
    );
    const closedAfter = performance.now() - signalled;
    console.log(
      `shutdown delay 3 s: ${answers.length} batches taken while leaving, listener closed ${Math.round(closedAfter)} ms after SIGTERM`,
    );
    expect(closedAfter).toBeGreaterThanOrEqual(3_000);
    expect(await running.exited).toBe(0);
    expect(logLines(running, 'leaving')).toMatchObject([{ level: 30, delaySeconds: 3 }]);
    expect(logLines(running, 'stay spooled')).toEqual([]);
    // Everything acknowledged, before and during the delay, delivered before the exit, once.
    await expectEachOnceInInflux(s.bucket, acknowledged.length);
    expect(webhook.auditIDs).toEqual(acknowledged);
    // Its own batch first, then what the shared endpoint took after it was applied.
    expect(late.auditIDs.slice(0, lateBatch.auditIDs.length)).toEqual(lateBatch.auditIDs);
    const taken = new Set(acknowledged);
    expect(late.auditIDs.slice(lateBatch.auditIDs.length).every((id) => taken.has(id))).toBe(true);
  }, 120_000);
});
