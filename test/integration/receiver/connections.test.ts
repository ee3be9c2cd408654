// Connection limits on real sockets: the real receiver (fastify, plain HTTP on 127.0.0.1, started
// in this process) and node:http keep-alive clients that reuse one connection, as the
// kube-apiserver's webhook client does. The answer that reaches a limit says `Connection: close`
// and the server closes the connection after it; the client's next request opens a new one, and
// nothing is ever reset or refused on the way. The Ingest behind it is a small recording object.
import { Agent, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/types.ts';
import {
  type Receiver,
  startReceiver,
  validateReceiverOptions,
} from '../../../src/receiver/index.ts';
import type { Ingest, IngestResult } from '../../../src/sinks/ingest.ts';

/** Accepts every batch, after `delayMs`; refuses before the body while `wait` is set. */
class RecordingIngest implements Ingest {
  batches = 0;
  delayMs = 0;
  wait: number | undefined;

  async ingest(events: AuditEvent[]): Promise<IngestResult> {
    if (this.delayMs > 0) await sleep(this.delayMs);
    this.batches++;
    return { ok: true, accepted: events.length };
  }

  hasSink(): boolean {
    return false;
  }

  refusing(): number | undefined {
    return this.wait;
  }
}

const ONE_EVENT = JSON.stringify({
  kind: 'EventList',
  apiVersion: 'audit.k8s.io/v1',
  items: [
    {
      level: 'Metadata',
      auditID: '6d1a7c1e-0000-4000-8000-000000000001',
      stage: 'ResponseComplete',
      requestURI: '/api/v1/namespaces',
      verb: 'list',
      user: { username: 'admin' },
      stageTimestamp: '2026-11-22T04:08:57.440160Z',
    },
  ],
});

/** What one answer said, and on which connection (the client's local port) it came. */
interface Answer {
  readonly status: number;
  readonly connection: string | undefined;
  readonly port: number;
  readonly at: number;
}

const started: Receiver[] = [];
const agents: Agent[] = [];

afterEach(async () => {
  for (const agent of agents.splice(0)) agent.destroy();
  await Promise.all(started.splice(0).map((r) => r.close()));
});

async function receiver(
  limits: { maxRequestsPerConnection: number; maxConnectionAgeMs: number },
  ingest = new RecordingIngest(),
): Promise<{
  url: string;
  ingest: RecordingIngest;
  closed: () => Promise<Record<string, number>>;
  receiver: Receiver;
}> {
  const registry = new Registry();
  const r = await startReceiver(
    validateReceiverOptions({ host: '127.0.0.1', port: 0, insecure: true, ...limits }),
    ingest,
    registry,
  );
  started.push(r);
  /** kube_audit_receiver_connections_closed_total by limit. */
  const closed = async () => {
    const metric = registry.getSingleMetric('kube_audit_receiver_connections_closed_total');
    const values = (await metric?.get())?.values ?? [];
    return Object.fromEntries(values.map((v) => [String(v.labels.limit), v.value]));
  };
  return { url: r.url, ingest, closed, receiver: r };
}

/** A client that keeps one connection open and reuses it, as Go's http.Transport does. */
function keepAliveClient(url: string) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  agents.push(agent);
  const { hostname, port } = new URL(url);
  return (body: string = ONE_EVENT): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = request(
        {
          host: hostname,
          port,
          agent,
          method: 'POST',
          path: '/audit/v1/events?timeout=30s',
          headers: { 'content-type': 'application/json' },
        },
        (res) => {
          // Read now: once the answer ends, the agent takes the socket back.
          const localPort = res.socket.localPort ?? 0;
          res.resume();
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              connection: res.headers.connection,
              port: localPort,
              at: Date.now(),
            }),
          );
          res.on('error', reject);
        },
      );
      // A reset or a refused connection fails the test.
      req.on('error', reject);
      req.end(body);
    });
}

describe('connection limits on real sockets', () => {
  it('closes a connection with the answer to its 3rd request; the client goes on, on a new one', async () => {
    const { url, ingest, closed } = await receiver({
      maxRequestsPerConnection: 3,
      maxConnectionAgeMs: 0,
    });
    const post = keepAliveClient(url);
    const answers: Answer[] = [];
    for (let i = 0; i < 7; i++) answers.push(await post());
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200, 200]);
    expect(answers.map((a) => a.connection)).toEqual([
      'keep-alive',
      'keep-alive',
      'close',
      'keep-alive',
      'keep-alive',
      'close',
      'keep-alive',
    ]);
    // Three connections, used 3, 3 and 1 times.
    const ports = answers.map((a) => a.port);
    expect(new Set(ports.slice(0, 3)).size).toBe(1);
    expect(new Set(ports.slice(3, 6)).size).toBe(1);
    expect(new Set(ports).size).toBe(3);
    expect(ingest.batches).toBe(7);
    expect(await closed()).toEqual({ requests: 2 });
  });

  it('closes a connection with its first answer past its age (300 ms ±10 %)', async () => {
    const { url, closed } = await receiver({
      maxRequestsPerConnection: 0,
      maxConnectionAgeMs: 300,
    });
    const post = keepAliveClient(url);
    const answers: Answer[] = [];
    const begin = Date.now();
    while (Date.now() - begin < 1_000) {
      answers.push(await post());
      await sleep(20);
    }
    expect(answers.every((a) => a.status === 200)).toBe(true);
    const firstClose = answers.findIndex((a) => a.connection === 'close');
    expect(firstClose).toBeGreaterThan(0);
    const first = answers[0] as Answer;
    const closing = answers[firstClose] as Answer;
    // The request was sent at least 270 ms after the connection's first one (its earliest age).
    expect(closing.at - first.at).toBeGreaterThanOrEqual(270);
    expect(answers.slice(0, firstClose).every((a) => a.port === first.port)).toBe(true);
    expect(answers[firstClose + 1]?.port).not.toBe(first.port);
    const closes = answers.filter((a) => a.connection === 'close').length;
    expect(await closed()).toEqual({ age: closes });
  });

  it('finishes a request in flight when the age passes, then closes: never a reset', async () => {
    const ingest = new RecordingIngest();
    const { url } = await receiver(
      { maxRequestsPerConnection: 0, maxConnectionAgeMs: 100 },
      ingest,
    );
    const post = keepAliveClient(url);
    const first = await post();
    // The next batch takes 400 ms to be queued: the connection turns 100 ms old meanwhile.
    ingest.delayMs = 400;
    const slow = await post();
    expect(slow).toMatchObject({ status: 200, connection: 'close', port: first.port });
    ingest.delayMs = 0;
    const after = await post();
    expect(after.status).toBe(200);
    expect(after.port).not.toBe(first.port);
  });

  it('keeps the connection when the answer at the limit refuses a large body before reading it, and closes with the next one', async () => {
    const ingest = new RecordingIngest();
    const { url } = await receiver({ maxRequestsPerConnection: 2, maxConnectionAgeMs: 0 }, ingest);
    const post = keepAliveClient(url);
    const first = await post();
    // 8 MiB, refused with 429 before it is read: closing now would reset the client mid-upload.
    ingest.wait = 1;
    const large = `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[],"pad":"${'x'.repeat(8 * 1024 * 1024)}"}`;
    const refused = await post(large);
    expect(refused).toMatchObject({ status: 429, connection: 'keep-alive', port: first.port });
    ingest.wait = undefined;
    const next = await post();
    expect(next).toMatchObject({ status: 200, connection: 'close', port: first.port });
  });

  it('never closes a connection when both limits are 0', async () => {
    const { url, closed } = await receiver({ maxRequestsPerConnection: 0, maxConnectionAgeMs: 0 });
    const post = keepAliveClient(url);
    const answers: Answer[] = [];
    for (let i = 0; i < 150; i++) answers.push(await post());
    expect(new Set(answers.map((a) => a.port)).size).toBe(1);
    expect(answers.some((a) => a.connection === 'close')).toBe(false);
    expect(await closed()).toEqual({});
  });
});

describe('leaving the load balancers at a shutdown, on real sockets', () => {
  it('answers /readyz 503 and accepts every batch, closing each connection after its answer, until close() refuses connections', async () => {
    const {
      url,
      ingest,
      closed,
      receiver: r,
    } = await receiver({
      maxRequestsPerConnection: 0,
      maxConnectionAgeMs: 0,
    });
    const post = keepAliveClient(url);
    const before = [await post(), await post()];
    expect(before.map((a) => a.connection)).toEqual(['keep-alive', 'keep-alive']);
    r.leave();
    const readyz = await fetch(`${url}/readyz`);
    expect(readyz.status).toBe(503);
    expect(((await readyz.json()) as { code: string }).code).toBe('SHUTTING_DOWN');
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    const during: Answer[] = [];
    for (let i = 0; i < 4; i++) during.push(await post());
    expect(during.map((a) => [a.status, a.connection])).toEqual(
      Array.from({ length: 4 }, () => [200, 'close']),
    );
    // The first still came on the connection opened before; each of the others on its own.
    expect(during[0]?.port).toBe(before[0]?.port);
    expect(new Set(during.map((a) => a.port)).size).toBe(4);
    expect(ingest.batches).toBe(6);
    // Not a connection limit: not counted as one.
    expect(await closed()).toEqual({});
    await r.close();
    await expect(post()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('keeps the connection while leaving when it refuses a large body before reading it', async () => {
    const ingest = new RecordingIngest();
    const { url, receiver: r } = await receiver(
      { maxRequestsPerConnection: 0, maxConnectionAgeMs: 0 },
      ingest,
    );
    const post = keepAliveClient(url);
    const first = await post();
    r.leave();
    ingest.wait = 1;
    const large = `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[],"pad":"${'x'.repeat(8 * 1024 * 1024)}"}`;
    const refused = await post(large);
    expect(refused).toMatchObject({ status: 429, connection: 'keep-alive', port: first.port });
    ingest.wait = undefined;
    expect(await post()).toMatchObject({ status: 200, connection: 'close', port: first.port });
  });
});
