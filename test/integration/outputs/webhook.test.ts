// The webhook output against real destinations: node:http and node:https servers on 127.0.0.1
// (port 0), with a CA and server certificates made by the `openssl` CLI in a temp dir. Starts those
// servers and the `openssl` processes; the throttle tests use an injected clock and start nothing.
// Aborted writes run against a server that reads the request and never answers.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { OutputError } from '../../../src/outputs/types.ts';
import { Throttle, WebhookOutput } from '../../../src/outputs/webhook/webhook-output.ts';
import { recordedEvents } from '../../support/recorded.ts';

/** Real events recorded from kube-apiserver 1.20. */
const EVENTS: AuditEvent[] = recordedEvents();

/** Long enough for any local round trip, short enough that a hang fails the test quickly. */
const BOUND_MS = 5_000;

interface Received {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** What the destination answers: a status and headers, nothing at all, or a closed connection. */
type Answer =
  { status: number; headers?: Record<string, string>; body?: string } | 'never' | 'hang up';

interface Destination {
  /** `http(s)://127.0.0.1:<port>`. */
  readonly origin: string;
  readonly received: Received[];
  close(): Promise<void>;
}

const open: Server[] = [];

afterEach(async () => {
  await Promise.all(open.splice(0).map(closeServer));
});

function closeServer(server: Server): Promise<void> {
  // The global agent keeps connections alive: drop them, or close() waits for them.
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Starts a destination that records every request and answers as `answer` says. */
async function startDestination(
  answer: (request: Received) => Answer,
  tls?: { key: string; cert: string },
): Promise<Destination> {
  const received: Received[] = [];
  const server: Server = tls === undefined ? createHttpServer() : createHttpsServer(tls);
  server.on('request', (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      const request = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body,
      };
      received.push(request);
      const reply = answer(request);
      if (reply === 'never') return;
      if (reply === 'hang up') {
        req.socket.destroy();
        return;
      }
      res.writeHead(reply.status, reply.headers ?? {});
      res.end(reply.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  open.push(server);
  const { port } = server.address() as AddressInfo;
  return {
    origin: `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`,
    received,
    close: () => closeServer(server),
  };
}

/** A port that nothing listens on: bound once, then released. */
async function closedPort(): Promise<number> {
  const server = createHttpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Rejects if `promise` is still pending after `ms`: a hang fails the test instead of stalling it. */
function within<T>(promise: Promise<T>, ms = BOUND_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/** The OutputError a write fails with; fails the test if it resolves or throws anything else. */
async function failure(write: Promise<void>): Promise<OutputError> {
  try {
    await within(write);
  } catch (err) {
    expect(err).toBeInstanceOf(OutputError);
    return err as OutputError;
  }
  throw new Error('expected the write to fail, but it resolved');
}

function output(url: string, extra: { caBundle?: string } = {}): WebhookOutput {
  return new WebhookOutput({ url, qps: 10, burst: 15, ...extra });
}

describe('webhook output over HTTP', () => {
  it('posts a batch as one audit.k8s.io/v1 EventList whose items are exactly the events', async () => {
    const destination = await startDestination(() => ({ status: 200 }));
    await within(output(`${destination.origin}/audit`).write(EVENTS));

    expect(destination.received).toHaveLength(1);
    const [request] = destination.received;
    expect(request?.method).toBe('POST');
    expect(request?.url).toBe('/audit');
    expect(request?.headers['content-type']).toBe('application/json');
    expect(Number(request?.headers['content-length'])).toBe(Buffer.byteLength(request?.body ?? ''));
    expect(JSON.parse(request?.body ?? '')).toEqual({
      kind: 'EventList',
      apiVersion: 'audit.k8s.io/v1',
      metadata: {},
      items: EVENTS,
    });
  });

  it('sends one POST per batch, in order', async () => {
    const destination = await startDestination(() => ({ status: 200 }));
    const webhook = output(`${destination.origin}/audit`);
    await within(webhook.write(EVENTS.slice(0, 2)));
    await within(webhook.write(EVENTS.slice(2, 5)));

    const batches = destination.received.map(
      (r) => (JSON.parse(r.body) as { items: AuditEvent[] }).items,
    );
    expect(batches.map((items) => items.map((e) => e.auditID))).toEqual([
      EVENTS.slice(0, 2).map((e) => e.auditID),
      EVENTS.slice(2, 5).map((e) => e.auditID),
    ]);
  });

  it('sends nothing for an empty batch', async () => {
    const destination = await startDestination(() => ({ status: 200 }));
    await within(output(`${destination.origin}/audit`).write([]));
    expect(destination.received).toEqual([]);
  });

  it('keeps the query string of the configured URL on the request', async () => {
    const destination = await startDestination(() => ({ status: 200 }));
    await within(output(`${destination.origin}/audit?tenant=shop`).write(EVENTS.slice(0, 1)));
    expect(destination.received[0]?.url).toBe('/audit?tenant=shop');
  });

  it.each([200, 201, 202, 204])('resolves when the destination answers %d', async (status) => {
    const destination = await startDestination(() => ({ status }));
    await expect(
      within(output(`${destination.origin}/audit`).write(EVENTS.slice(0, 1))),
    ).resolves.toBeUndefined();
  });

  it.each([
    [401, 'UNAUTHORIZED', false],
    [403, 'UNAUTHORIZED', false],
    [404, 'NOT_FOUND', false],
    [400, 'REJECTED', false],
    [422, 'REJECTED', false],
    [408, 'TIMEOUT', true],
    [429, 'THROTTLED', true],
    [500, 'SERVER_ERROR', true],
    [502, 'SERVER_ERROR', true],
    [503, 'SERVER_ERROR', true],
  ] as const)('classifies an answer %d as %s (retryable: %s)', async (status, code, retryable) => {
    const destination = await startDestination(() => ({ status, body: 'nope' }));
    const error = await failure(output(`${destination.origin}/audit`).write(EVENTS.slice(0, 1)));
    expect(error.code).toBe(code);
    expect(error.retryable).toBe(retryable);
    expect(error.retryAfterMs).toBeUndefined();
    expect(error.message).toContain(String(status));
  });

  it('reports 429 with Retry-After: 3 as THROTTLED, retryable, after 3000 ms', async () => {
    const destination = await startDestination(() => ({
      status: 429,
      headers: { 'retry-after': '3' },
    }));
    const error = await failure(output(`${destination.origin}/audit`).write(EVENTS.slice(0, 1)));
    expect(error).toMatchObject({ code: 'THROTTLED', retryable: true, retryAfterMs: 3000 });
  });

  it('carries Retry-After on a 503 too', async () => {
    const destination = await startDestination(() => ({
      status: 503,
      headers: { 'retry-after': '10' },
    }));
    const error = await failure(output(`${destination.origin}/audit`).write(EVENTS.slice(0, 1)));
    expect(error).toMatchObject({ code: 'SERVER_ERROR', retryable: true, retryAfterMs: 10_000 });
  });

  it('reads a Retry-After given as an HTTP-date', async () => {
    const destination = await startDestination(() => ({
      status: 429,
      headers: { 'retry-after': new Date(Date.now() + 5_000).toUTCString() },
    }));
    const error = await failure(output(`${destination.origin}/audit`).write(EVENTS.slice(0, 1)));
    expect(error.code).toBe('THROTTLED');
    // HTTP-dates have whole seconds: anything from 3 s to 5 s is the server's wish.
    expect(error.retryAfterMs).toBeGreaterThanOrEqual(3_000);
    expect(error.retryAfterMs).toBeLessThanOrEqual(5_000);
  });

  it('fails with a retryable UNREACHABLE when the port is closed (connection refused)', async () => {
    const port = await closedPort();
    const error = await failure(output(`http://127.0.0.1:${port}/audit`).write(EVENTS.slice(0, 1)));
    expect(error).toMatchObject({ code: 'UNREACHABLE', retryable: true });
    expect((error.cause as NodeJS.ErrnoException).code).toBe('ECONNREFUSED');
  });

  it('fails with a retryable UNREACHABLE when the destination hangs up without answering', async () => {
    const destination = await startDestination(() => 'hang up');
    const error = await failure(output(`${destination.origin}/audit`).write(EVENTS.slice(0, 1)));
    expect(error).toMatchObject({ code: 'UNREACHABLE', retryable: true });
  });

  it('fails with a retryable OutputError when the connection drops in the middle of the answer', async () => {
    const server = createHttpServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-length': '100' });
        res.write('partial');
        setTimeout(() => res.socket?.destroy(), 20);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    open.push(server);
    const { port } = server.address() as AddressInfo;
    const error = await failure(output(`http://127.0.0.1:${port}/audit`).write(EVENTS.slice(0, 1)));
    expect(error).toMatchObject({ code: 'UNREACHABLE', retryable: true });
  });

  it('fails with a retryable TIMEOUT when the destination never answers', async () => {
    const server = createHttpServer(() => {
      // Reads nothing and never answers.
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    open.push(server);
    const { port } = server.address() as AddressInfo;
    const webhook = new WebhookOutput(
      { url: `http://127.0.0.1:${port}/audit`, qps: 10, burst: 15 },
      { timeoutMs: 200 },
    );
    const error = await failure(webhook.write(EVENTS.slice(0, 1)));
    expect(error).toMatchObject({ code: 'TIMEOUT', retryable: true });
  });

  it('times out a destination that trickles its answer, by a deadline for the whole exchange', async () => {
    const server = createHttpServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-length': '1000' });
      const drip = setInterval(() => res.write('.'), 50);
      res.on('close', () => clearInterval(drip));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    open.push(server);
    const { port } = server.address() as AddressInfo;
    const webhook = new WebhookOutput(
      { url: `http://127.0.0.1:${port}/audit`, qps: 10, burst: 15 },
      { timeoutMs: 300 },
    );
    const error = await failure(webhook.write(EVENTS.slice(0, 1)));
    expect(error).toMatchObject({ code: 'TIMEOUT', retryable: true });
  });
});

describe('webhook output aborted (end of the shutdown grace period)', () => {
  /** A server that reads requests and never answers, counting its open connections. */
  async function silentServer(): Promise<{ port: number; connections: () => number }> {
    let connections = 0;
    const server = createHttpServer((req) => {
      req.resume();
    });
    server.on('connection', (socket) => {
      connections++;
      socket.on('close', () => connections--);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    open.push(server);
    return { port: (server.address() as AddressInfo).port, connections: () => connections };
  }

  it('ends a write to a destination that never answers as soon as its signal aborts, and closes the connection', async () => {
    const { port, connections } = await silentServer();
    const controller = new AbortController();
    const write = output(`http://127.0.0.1:${port}/audit`).write(EVENTS, controller.signal);
    await eventuallyTrue(() => connections() === 1);
    const started = performance.now();
    controller.abort();
    const error = await failure(write);
    expect(performance.now() - started).toBeLessThan(100);
    expect(error).toMatchObject({ code: 'UNREACHABLE', retryable: true });
    expect(error.message).toContain('request aborted');
    await eventuallyTrue(() => connections() === 0);
  });

  it('aborts requests in flight on close, and refuses writes after it', async () => {
    const { port, connections } = await silentServer();
    const webhook = output(`http://127.0.0.1:${port}/audit`);
    const write = webhook.write(EVENTS);
    await eventuallyTrue(() => connections() === 1);
    await webhook.close();
    expect(await failure(write)).toMatchObject({ code: 'UNREACHABLE' });
    expect((await failure(webhook.write(EVENTS))).message).toContain('closed');
  });

  it('ends a wait for the throttle when its signal aborts, sending nothing', async () => {
    const destination = await startDestination(() => ({ status: 200 }));
    const throttle = new Throttle(1, 1);
    const webhook = new WebhookOutput(
      { url: `${destination.origin}/audit`, qps: 1, burst: 1 },
      { throttle },
    );
    await within(webhook.write(EVENTS.slice(0, 1)));
    const controller = new AbortController();
    // The next token is a second away.
    const write = webhook.write(EVENTS.slice(1, 2), controller.signal);
    setTimeout(() => controller.abort(), 50);
    const started = performance.now();
    await expect(within(write)).rejects.toThrow();
    expect(performance.now() - started).toBeLessThan(500);
    expect(destination.received).toHaveLength(1);
  });
});

/** Polls `condition` every 10 ms, for up to BOUND_MS. */
async function eventuallyTrue(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + BOUND_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('webhook output target', () => {
  it('names origin and path only: no query string, no credentials', async () => {
    const destination = await startDestination(() => ({ status: 500 }));
    const url = new URL(`${destination.origin}/audit/v1?token=s3cret&x=1`);
    url.username = 'admin';
    url.password = 'hunter2';
    const webhook = output(url.href);

    expect(webhook.target).toBe(`${destination.origin}/audit/v1`);
    expect(webhook.kind).toBe('webhook');
    const error = await failure(webhook.write(EVENTS.slice(0, 1)));
    for (const secret of ['s3cret', 'hunter2', 'admin']) {
      expect(webhook.target).not.toContain(secret);
      expect(error.message).not.toContain(secret);
    }
  });

  it('keeps credentials out of a connection error too', async () => {
    const port = await closedPort();
    const webhook = output(`http://admin:hunter2@127.0.0.1:${port}/audit?token=s3cret`);
    const error = await failure(webhook.write(EVENTS.slice(0, 1)));
    expect(error.message).not.toMatch(/hunter2|s3cret/);
  });
});

describe('webhook output over HTTPS', () => {
  let dir: string;
  let ca: string;
  let otherCa: string;
  let serving: { key: string; cert: string };
  let wrongName: { key: string; cert: string };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'webhook-tls-'));
    const openssl = (...args: string[]) =>
      execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    const makeCa = (name: string) => {
      // prettier-ignore
      openssl(
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`,
        '-addext', 'basicConstraints=critical,CA:TRUE',
        '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
      );
      return readFileSync(join(dir, `${name}.crt`), 'utf8');
    };
    const makeLeaf = (name: string, san: string) => {
      // prettier-ignore
      openssl(
        'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`,
      );
      writeFileSync(
        join(dir, `${name}.ext`),
        `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`,
      );
      // prettier-ignore
      openssl(
        'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key',
        '-CAcreateserial', '-days', '1', '-out', `${name}.crt`, '-extfile', `${name}.ext`,
      );
      return {
        key: readFileSync(join(dir, `${name}.key`), 'utf8'),
        cert: readFileSync(join(dir, `${name}.crt`), 'utf8'),
      };
    };
    ca = makeCa('ca');
    otherCa = makeCa('other-ca');
    serving = makeLeaf('server', 'IP:127.0.0.1');
    wrongName = makeLeaf('elsewhere', 'IP:127.0.0.2');
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('verifies the destination with caBundle and delivers', async () => {
    const destination = await startDestination(() => ({ status: 200 }), serving);
    await within(output(`${destination.origin}/audit`, { caBundle: ca }).write(EVENTS));
    expect(destination.received).toHaveLength(1);
    expect((JSON.parse(destination.received[0]?.body ?? '') as { items: unknown[] }).items).toEqual(
      EVENTS,
    );
  });

  // A certificate that does not verify is reported as UNREACHABLE, retryable, with the TLS error
  // as cause: the destination cannot be reached securely, which a rotated CA may fix.
  it.each([
    ['without a caBundle (system roots only)', () => ({}), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
    ['with another CA', () => ({ caBundle: otherCa }), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
  ] as const)(
    'fails %s as a retryable UNREACHABLE, without hanging',
    async (_what, extra, cause) => {
      const destination = await startDestination(() => ({ status: 200 }), serving);
      const error = await failure(
        output(`${destination.origin}/audit`, extra()).write(EVENTS.slice(0, 1)),
      );
      expect(error).toMatchObject({ code: 'UNREACHABLE', retryable: true });
      expect((error.cause as NodeJS.ErrnoException).code).toBe(cause);
      expect(destination.received).toEqual([]);
    },
  );

  it('fails when the certificate names another address, even from the right CA', async () => {
    const destination = await startDestination(() => ({ status: 200 }), wrongName);
    const error = await failure(
      output(`${destination.origin}/audit`, { caBundle: ca }).write(EVENTS.slice(0, 1)),
    );
    expect(error).toMatchObject({ code: 'UNREACHABLE', retryable: true });
    expect((error.cause as NodeJS.ErrnoException).code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(destination.received).toEqual([]);
  });

  it('classifies HTTPS answers like HTTP ones', async () => {
    const destination = await startDestination(() => ({ status: 401 }), serving);
    const error = await failure(
      output(`${destination.origin}/audit`, { caBundle: ca }).write(EVENTS.slice(0, 1)),
    );
    expect(error).toMatchObject({ code: 'UNAUTHORIZED', retryable: false });
  });
});

/** A clock that only moves when the throttle sleeps; records when each take returned. */
function fakeTime() {
  let now = 0;
  const sleeps: number[] = [];
  return {
    now: () => now,
    advance: (ms: number) => (now += ms),
    sleeps,
    sleep: (ms: number) => {
      sleeps.push(ms);
      now += ms;
      return Promise.resolve();
    },
  };
}

async function takeTimes(throttle: Throttle, count: number, now: () => number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    await throttle.take();
    times.push(now());
  }
  return times;
}

describe('Throttle', () => {
  it('lets a burst of 15 through at once, then spaces takes 100 ms apart at 10 qps', async () => {
    const time = fakeTime();
    const throttle = new Throttle(10, 15, time.now, time.sleep);
    const times = await takeTimes(throttle, 20, time.now);
    expect(times.slice(0, 15)).toEqual(Array(15).fill(0));
    expect(times.slice(15)).toEqual([100, 200, 300, 400, 500]);
    expect(time.sleeps).toEqual([100, 100, 100, 100, 100]);
  });

  it('spaces takes 1 s apart at 1 qps with a burst of 1', async () => {
    const time = fakeTime();
    const throttle = new Throttle(1, 1, time.now, time.sleep);
    expect(await takeTimes(throttle, 4, time.now)).toEqual([0, 1000, 2000, 3000]);
  });

  it('refills while idle, but never beyond the burst', async () => {
    const time = fakeTime();
    const throttle = new Throttle(10, 15, time.now, time.sleep);
    await takeTimes(throttle, 15, time.now);
    time.advance(60_000);
    const times = await takeTimes(throttle, 16, time.now);
    expect(times.slice(0, 15)).toEqual(Array(15).fill(60_000));
    expect(times[15]).toBe(60_100);
  });

  it('refills partly: half the interval leaves half a wait', async () => {
    const time = fakeTime();
    const throttle = new Throttle(1, 1, time.now, time.sleep);
    await throttle.take();
    time.advance(500);
    await throttle.take();
    expect(time.sleeps).toEqual([500]);
    expect(time.now()).toBe(1000);
  });

  it('is taken once per non-empty write by the webhook output', async () => {
    const destination = await startDestination(() => ({ status: 200 }));
    const time = fakeTime();
    const webhook = new WebhookOutput(
      { url: `${destination.origin}/audit`, qps: 1, burst: 1 },
      { throttle: new Throttle(1, 1, time.now, time.sleep) },
    );
    await within(webhook.write(EVENTS.slice(0, 1)));
    await within(webhook.write([]));
    await within(webhook.write(EVENTS.slice(1, 2)));
    expect(time.sleeps).toEqual([1000]);
    expect(destination.received).toHaveLength(2);
  });
});
