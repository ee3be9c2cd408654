// The receiver's HTTP behaviour through fastify's inject() (no socket), with an Ingest that records
// what it is handed. Starts no process.
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RECEIVED_BODIES } from '../../../src/receiver/body.ts';
import type { AccessDecision } from '../../../src/receiver/metrics-access.ts';
import type { IngestResult } from '../../../src/sinks/ingest.ts';
import {
  BATCHES,
  expectError,
  item,
  post,
  RecordingIngest,
  TOKEN,
  type TestReceiver,
  testReceiver,
} from './harness.ts';
import { eventList } from '../../support/events.ts';

const open: TestReceiver[] = [];

function receiver(...args: Parameters<typeof testReceiver>): TestReceiver {
  const r = testReceiver(...args);
  open.push(r);
  return r;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.app.close()));
});

describe('POST /audit/v1/events', () => {
  it('answers 200 with the number accepted and hands every event to all sinks', async () => {
    const { app, ingest } = receiver();
    const batch = BATCHES[0];
    const response = await post(app, '/audit/v1/events', batch.text);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ accepted: batch.count });
    expect(ingest.calls).toHaveLength(1);
    expect(ingest.calls[0]?.target).toEqual({ kind: 'all' });
    expect(ingest.calls[0]?.events.map((e) => e.auditID)).toEqual(
      (JSON.parse(batch.text) as { items: { auditID: string }[] }).items.map((e) => e.auditID),
    );
  });

  it('answers only after ingest has resolved', async () => {
    const { app, ingest } = receiver();
    let resolve: (result: IngestResult) => void = () => undefined;
    ingest.answer = () => new Promise((r) => (resolve = r));
    let answered = false;
    const pending = post(app, '/audit/v1/events', eventList([item()])).then((response) => {
      answered = true;
      return response;
    });
    await vi.waitFor(() => expect(ingest.calls).toHaveLength(1));
    await new Promise((r) => setTimeout(r, 20));
    expect(answered).toBe(false);
    resolve({ ok: true, accepted: 1 });
    const response = await pending;
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ accepted: 1 });
  });

  it('reports what ingest accepted, not what was sent', async () => {
    const { app, ingest } = receiver();
    ingest.answer = () => Promise.resolve({ ok: true, accepted: 0 });
    const response = await post(app, '/audit/v1/events', eventList([item(), item()]));
    expect(response.json()).toEqual({ accepted: 0 });
  });

  it('accepts a single Event as well as an EventList', async () => {
    const { app, ingest } = receiver();
    const event = { kind: 'Event', apiVersion: 'audit.k8s.io/v1', ...item() };
    const response = await post(app, '/audit/v1/events', event);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ accepted: 1 });
    expect(ingest.calls[0]?.events).toEqual([item()]);
  });

  it('leaves out the bodies when no sink of the target keeps one, and still refuses malformed ones', async () => {
    const { app, ingest } = receiver();
    const batch = BATCHES[0];
    const recorded = (JSON.parse(batch.text) as { items: Record<string, unknown>[] }).items;
    expect(recorded.some((e) => e.responseObject !== undefined)).toBe(true);
    ingest.bodies = false;
    expect((await post(app, '/audit/v1/events', batch.text)).statusCode).toBe(200);
    expect(ingest.bodiesAsked).toEqual([{ kind: 'all' }]);
    const events = ingest.calls[0]?.events ?? [];
    expect(events.map((e) => e.auditID)).toEqual(recorded.map((e) => e.auditID));
    expect(
      events.every((e) => e.requestObject === undefined && e.responseObject === undefined),
    ).toBe(true);
    // A body no sink keeps is still checked: malformed, the whole batch is refused.
    const broken = eventList([item({ responseObject: { kind: 'Pod' } })]).replace(
      '{"kind":"Pod"}',
      '{"kind":"Pod",}',
    );
    expectError(await post(app, '/audit/v1/events', broken), 400, 'MALFORMED_JSON');
    expect(ingest.calls).toHaveLength(1);
    // A sink that keeps bodies gets them.
    ingest.bodies = true;
    expect((await post(app, '/audit/v1/events', batch.text)).statusCode).toBe(200);
    expect(ingest.calls[1]?.events.some((e) => e.responseObject !== undefined)).toBe(true);
  });

  it('converts audit.k8s.io/v1beta1 events to v1 before ingest', async () => {
    const { app, ingest } = receiver();
    const v1beta1 = item({
      stageTimestamp: undefined,
      metadata: { creationTimestamp: '2020-01-02T03:04:05Z' },
      timestamp: '2020-01-02T03:04:04Z',
    });
    const response = await post(
      app,
      '/audit/v1/events',
      eventList([v1beta1], 'audit.k8s.io/v1beta1'),
    );
    expect(response.statusCode).toBe(200);
    const event = ingest.calls[0]?.events[0];
    expect(event?.stageTimestamp).toBe('2020-01-02T03:04:05Z');
    expect(event?.requestReceivedTimestamp).toBe('2020-01-02T03:04:04Z');
    expect(event).not.toHaveProperty('metadata');
    expect(event).not.toHaveProperty('timestamp');
  });

  it('ignores the ?timeout= query the apiserver appends', async () => {
    const { app, ingest } = receiver();
    const response = await post(app, '/audit/v1/events?timeout=30s', BATCHES[1].text);
    expect(response.statusCode).toBe(200);
    expect(ingest.calls[0]?.events).toHaveLength(BATCHES[1].count);
  });

  it.each([
    'application/json; charset=utf-8',
    'application/json;charset=UTF-8',
    'Application/JSON',
  ])('accepts the content type %j', async (contentType) => {
    const { app } = receiver();
    const response = await post(app, '/audit/v1/events', eventList([item()]), {
      'content-type': contentType,
    });
    expect(response.statusCode).toBe(200);
  });

  it('answers 200 to an empty EventList without calling ingest', async () => {
    const { app, ingest } = receiver();
    for (const body of [eventList([]), '{"kind":"EventList","apiVersion":"audit.k8s.io/v1"}']) {
      const response = await post(app, '/audit/v1/events', body);
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({ accepted: 0 });
    }
    expect(ingest.calls).toEqual([]);
  });

  it('answers 429 with Retry-After in whole seconds when a queue is full', async () => {
    const { app, ingest } = receiver();
    ingest.answer = () => Promise.resolve({ ok: false, reason: 'full', retryAfterSeconds: 2.3 });
    const response = await post(app, '/audit/v1/events', eventList([item()]));
    expectError(response, 429, 'QUEUE_FULL');
    expect(response.headers['retry-after']).toBe('3');
  });

  it('answers 429 before reading the body while the queues still refuse, and takes batches again after', async () => {
    const { app, ingest } = receiver();
    ingest.wait = 1.5;
    // Not even JSON: the body is never read.
    const refused = await post(app, '/audit/v1/events', 'not json at all');
    expectError(refused, 429, 'QUEUE_FULL');
    expect(refused.headers['retry-after']).toBe('2');
    expect(ingest.calls).toEqual([]);
    ingest.wait = undefined;
    const taken = await post(app, '/audit/v1/events', eventList([item()]));
    expect(taken.statusCode).toBe(200);
    expect(ingest.calls).toHaveLength(1);
  });

  it('never sends a Retry-After below one second or a non-number', async () => {
    const { app, ingest } = receiver();
    for (const [seconds, header] of [
      [0, '1'],
      [Number.NaN, '1'],
      [Number.POSITIVE_INFINITY, '1'],
    ] as const) {
      ingest.answer = () =>
        Promise.resolve({ ok: false, reason: 'full', retryAfterSeconds: seconds });
      const response = await post(app, '/audit/v1/events', eventList([item()]));
      expect(response.headers['retry-after']).toBe(header);
    }
  });

  it('answers 500 INGEST_FAILED, without the error text, when ingest fails', async () => {
    const logged: unknown[] = [];
    const { app, ingest } = receiver({
      log: (level, bindings) => logged.push({ level, bindings }),
    });
    ingest.answer = () => Promise.reject(new Error('disk full at /var/lib/secret-path'));
    const response = await post(app, '/audit/v1/events', eventList([item()]));
    expectError(response, 500, 'INGEST_FAILED');
    expect(response.body).not.toContain('secret-path');
    expect(logged).toEqual([expect.objectContaining({ level: 'error' })]);
  });

  it.each([
    ['MALFORMED_JSON', '{"kind":"EventList",'],
    ['MALFORMED_JSON', ''],
    ['TOO_DEEP', `${'['.repeat(600)}${']'.repeat(600)}`],
    ['WRONG_API_VERSION', eventList([item()], 'audit.k8s.io/v2')],
    ['WRONG_KIND', JSON.stringify({ kind: 'Policy', apiVersion: 'audit.k8s.io/v1' })],
    ['INVALID_EVENT', eventList([item({ stage: 'Sometime' })])],
    ['INVALID_EVENT', '[]'],
    ['TOO_MANY_EVENTS', eventList(Array.from({ length: 11 }, () => item()))],
  ])('answers 400 %s for malformed input, without calling ingest', async (code, body) => {
    const { app, ingest } = receiver({ parseLimits: { maxEvents: 10, maxDepth: 512 } });
    const response = await post(app, '/audit/v1/events', body);
    expectError(response, 400, code);
    expect(ingest.calls).toEqual([]);
  });

  it('names the offending field in a 400 message', async () => {
    const { app } = receiver();
    const response = await post(app, '/audit/v1/events', eventList([item(), item({ stage: 'x' })]));
    expect(response.json<{ message: string }>().message).toMatch(/^items\[1\]\.stage: /);
  });

  it.each([
    'text/plain',
    'application/x-www-form-urlencoded',
    'application/yaml',
    'application/json-patch+json',
    'application/json; charset=iso-8859-1',
  ])('answers 415 for Content-Type %j', async (contentType) => {
    const { app, ingest } = receiver();
    const response = await post(app, '/audit/v1/events', eventList([item()]), {
      'content-type': contentType,
    });
    expectError(response, 415, 'UNSUPPORTED_MEDIA_TYPE');
    expect(ingest.calls).toEqual([]);
  });

  it('answers 415 when there is no Content-Type, with or without a body', async () => {
    const { app } = receiver();
    const withBody = await post(app, '/audit/v1/events', eventList([item()]), {}, ['content-type']);
    expectError(withBody, 415, 'UNSUPPORTED_MEDIA_TYPE');
    const empty = await app.inject({
      method: 'POST',
      url: '/audit/v1/events',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    expectError(empty, 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('answers 415 to a compressed body rather than misreading it', async () => {
    const { app } = receiver();
    const response = await post(app, '/audit/v1/events', eventList([item()]), {
      'content-encoding': 'gzip',
    });
    expectError(response, 415, 'UNSUPPORTED_CONTENT_ENCODING');
    const identity = await post(app, '/audit/v1/events', eventList([item()]), {
      'content-encoding': 'identity',
    });
    expect(identity.statusCode).toBe(200);
  });

  it('answers 413 above bodyLimitBytes, without calling ingest', async () => {
    const limit = BATCHES[1].text.length;
    const { app, ingest } = receiver({ bodyLimitBytes: limit });
    const atLimit = await post(app, '/audit/v1/events', BATCHES[1].text);
    expect(atLimit.statusCode).toBe(200);
    const response = await post(app, '/audit/v1/events', `${BATCHES[1].text} `);
    expectError(response, 413, 'BODY_TOO_LARGE');
    expect(response.json<{ message: string }>().message).toContain(String(limit));
    expect(ingest.calls).toHaveLength(1);
  });

  it('answers 413 to a chunked body that grows past the limit, without a Content-Length', async () => {
    const { app, ingest } = receiver({ bodyLimitBytes: 4096 });
    const response = await app.inject({
      method: 'POST',
      url: '/audit/v1/events',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      // A stream has no length up front, as with Transfer-Encoding: chunked.
      payload: Readable.from(Array.from({ length: 8 }, () => Buffer.alloc(1024, 0x20))),
    });
    expectError(response, 413, 'BODY_TOO_LARGE');
    expect(ingest.calls).toEqual([]);
  });

  it('reads bodies of several chunks through the process’s one buffer, whichever receiver gets them', async () => {
    const inChunks = (text: string): Readable => {
      const bytes = Buffer.from(text);
      const cut = bytes.length >> 1;
      return Readable.from([bytes.subarray(0, cut), bytes.subarray(cut)]);
    };
    const send = (app: TestReceiver['app'], text: string) =>
      app.inject({
        method: 'POST',
        url: '/audit/v1/events',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
        payload: inChunks(text),
      });
    const small = eventList(Array.from({ length: 3 }, (_, i) => item({ auditID: `small-${i}` })));
    const large = eventList(
      Array.from({ length: 2000 }, (_, i) => item({ auditID: `large-${i}` })),
    );
    const first = receiver();
    const second = receiver();
    expect((await send(first.app, small)).json()).toEqual({ accepted: 3 });
    const held = RECEIVED_BODIES.bytes;
    expect(held).toBeGreaterThanOrEqual(Buffer.byteLength(small));
    expect(Buffer.byteLength(large)).toBeGreaterThan(held);
    // The other receiver's larger body grows the same buffer, and both decode whole.
    expect((await send(second.app, large)).json()).toEqual({ accepted: 2000 });
    expect(RECEIVED_BODIES.bytes).toBeGreaterThanOrEqual(Buffer.byteLength(large));
    expect(second.ingest.calls[0]?.events.map((e) => e.auditID).at(-1)).toBe('large-1999');
    expect((await send(first.app, small)).json()).toEqual({ accepted: 3 });
  });

  it('keeps serving after malformed, oversized and unsupported input', async () => {
    const { app } = receiver({ bodyLimitBytes: 1024 });
    expect((await post(app, '/audit/v1/events', '{')).statusCode).toBe(400);
    expect((await post(app, '/audit/v1/events', 'x'.repeat(2048))).statusCode).toBe(413);
    expect(
      (await post(app, '/audit/v1/events', 'a', { 'content-type': 'text/plain' })).statusCode,
    ).toBe(415);
    expect((await post(app, '/audit/v1/events', eventList([item()]))).statusCode).toBe(200);
  });
});

describe('JSON schemas', () => {
  it('has no route with one: fastify loads no compiler, and a schema fails at start', async () => {
    const { app } = receiver();
    // Ajv and fast-json-stringify's compiler take 5 MiB of resident memory once loaded
    // (the precompiled error serializer needs only fast-json-stringify's small runtime).
    const compilers = Object.keys(createRequire(import.meta.url).cache).filter((path) =>
      /[\\/]node_modules[\\/](ajv|@fastify[\\/]\w+-compiler|fast-json-stringify[\\/]index)/.test(
        path,
      ),
    );
    expect(compilers).toEqual([]);
    app.post('/extra', { schema: { body: { type: 'object' } } }, () => 'never');
    await expect(app.ready()).rejects.toThrow(/declares no JSON schemas/);
  });

  it('answers objects and errors without a serializer compiler', async () => {
    const { app } = receiver();
    const response = await post(app, '/audit/v1/events', eventList([item()]));
    expect(response.statusCode).toBe(200);
    expect(response.json()).toMatchObject({ accepted: 1 });
    const missing = await app.inject({ method: 'GET', url: '/nowhere' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('per-sink endpoints', () => {
  it('hands events posted to /audit/v1/sinks/<name> to AuditSink/<name>', async () => {
    const { app, ingest } = receiver({}, new RecordingIngest(['AuditSink/everything']));
    const response = await post(app, '/audit/v1/sinks/everything?timeout=30s', BATCHES[1].text);
    expect(response.statusCode).toBe(200);
    expect(ingest.calls[0]?.target).toEqual({ kind: 'sink', key: 'AuditSink/everything' });
  });

  it('hands events posted to /audit/v1/pipelines/<namespace>/<name> to that pipeline', async () => {
    const { app, ingest } = receiver({}, new RecordingIngest(['AuditPipeline/shop/trail']));
    const response = await post(app, '/audit/v1/pipelines/shop/trail', BATCHES[1].text);
    expect(response.statusCode).toBe(200);
    expect(ingest.calls[0]?.target).toEqual({ kind: 'sink', key: 'AuditPipeline/shop/trail' });
  });

  it.each(['/audit/v1/sinks/gone', '/audit/v1/pipelines/shop/gone'])(
    'answers 404 SINK_NOT_FOUND for %s, a sink that does not exist',
    async (url) => {
      const { app, ingest } = receiver({}, new RecordingIngest(['AuditSink/other']));
      const response = await post(app, url, BATCHES[1].text);
      expectError(response, 404, 'SINK_NOT_FOUND');
      expect(ingest.calls).toEqual([]);
    },
  );

  it('answers 404 before looking at the body of a request for a missing sink', async () => {
    const { app } = receiver();
    const response = await post(app, '/audit/v1/sinks/gone', 'not json', {
      'content-type': 'text/plain',
    });
    expectError(response, 404, 'SINK_NOT_FOUND');
  });

  it('refuses a percent-encoded slash that would make another key', async () => {
    const ingest = new RecordingIngest(['AuditSink/a/b', 'AuditPipeline/a/b/c']);
    const { app } = receiver({}, ingest);
    expectError(
      await post(app, '/audit/v1/sinks/a%2Fb', eventList([item()])),
      404,
      'SINK_NOT_FOUND',
    );
    expectError(
      await post(app, '/audit/v1/pipelines/a%2Fb/c', eventList([item()])),
      404,
      'SINK_NOT_FOUND',
    );
    expect(ingest.calls).toEqual([]);
  });

  it('serves names of the longest length Kubernetes allows (253 characters)', async () => {
    const name = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    expect(name).toHaveLength(253);
    const { app, ingest } = receiver({}, new RecordingIngest([`AuditSink/${name}`]));
    const response = await post(app, `/audit/v1/sinks/${name}`, eventList([item()]));
    expect(response.statusCode).toBe(200);
    expect(ingest.calls[0]?.target).toEqual({ kind: 'sink', key: `AuditSink/${name}` });
  });
});

describe('authentication', () => {
  it('answers 401 with WWW-Authenticate: Bearer when no credentials are sent', async () => {
    const { app, ingest } = receiver();
    const response = await post(app, '/audit/v1/events', eventList([item()]), {}, [
      'authorization',
    ]);
    expectError(response, 401, 'UNAUTHENTICATED');
    expect(response.headers['www-authenticate']).toBe('Bearer');
    expect(ingest.calls).toEqual([]);
  });

  it.each(['Basic YWRtaW46YWRtaW4=', 'Bearer', 'Bearer ', 'Token abc'])(
    'answers 401 to the Authorization header %j, which holds no bearer token',
    async (authorization) => {
      const { app } = receiver();
      const response = await post(app, '/audit/v1/events', eventList([item()]), { authorization });
      expectError(response, 401, 'UNAUTHENTICATED');
    },
  );

  it('answers 401 INVALID_TOKEN for a token no one accepts, and never echoes it', async () => {
    const { app, ingest } = receiver();
    const wrong = 'wrong-token-d0e1f2';
    const response = await post(app, '/audit/v1/events', eventList([item()]), {
      authorization: `Bearer ${wrong}`,
    });
    expectError(response, 401, 'INVALID_TOKEN');
    expect(response.headers['www-authenticate']).toBe('Bearer');
    expect(response.body).not.toContain(wrong);
    expect(response.body).not.toContain(TOKEN);
    expect(ingest.calls).toEqual([]);
  });

  it('accepts the bearer scheme in any case', async () => {
    const { app } = receiver();
    const response = await post(app, '/audit/v1/events', eventList([item()]), {
      authorization: `bearer ${TOKEN}`,
    });
    expect(response.statusCode).toBe(200);
  });

  it('reads the tokens on every request, so a rotated token applies at once', async () => {
    const { app, tokens } = receiver();
    const rotated = 'rotated-token-77aa';
    const send = (token: string) =>
      post(app, '/audit/v1/events', eventList([item()]), { authorization: `Bearer ${token}` });
    expect((await send(rotated)).statusCode).toBe(401);
    tokens.add(rotated);
    expect((await send(rotated)).statusCode).toBe(200);
    tokens.delete(TOKEN);
    expect((await send(TOKEN)).statusCode).toBe(401);
  });

  it('checks credentials before readiness, sink existence and the body', async () => {
    const { app } = receiver({ readiness: () => false });
    const response = await post(app, '/audit/v1/sinks/unknown', 'not json', {}, ['authorization']);
    expectError(response, 401, 'UNAUTHENTICATED');
  });

  it('needs no credentials for health and readiness, which probes call and which reveal nothing', async () => {
    const { app } = receiver();
    for (const url of ['/healthz', '/readyz']) {
      expect((await app.inject({ method: 'GET', url })).statusCode).toBe(200);
    }
  });

  it('needs no credentials when insecure on a loopback address', async () => {
    const { app } = receiver({ insecure: true });
    const response = await post(app, '/audit/v1/events', eventList([item()]), {}, [
      'authorization',
    ]);
    expect(response.statusCode).toBe(200);
  });
});

function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

const getMetrics = (app: TestReceiver['app'], headers: Record<string, string> = {}) =>
  app.inject({ method: 'GET', url: '/metrics', headers });

describe('who may read /metrics with the receiver’s own credentials (standalone)', () => {
  it('answers 401 with WWW-Authenticate: Bearer without credentials', async () => {
    const { app } = receiver();
    const response = await getMetrics(app);
    expectError(response, 401, 'UNAUTHENTICATED');
    expect(response.headers['www-authenticate']).toBe('Bearer');
    expect(response.body).not.toContain('kube_audit');
  });

  it('answers 401 to a token the audit endpoints would refuse', async () => {
    const { app } = receiver();
    expectError(await getMetrics(app, bearer('not-the-token')), 401, 'INVALID_TOKEN');
  });

  it('serves the metrics to a token the audit endpoints accept, and follows its rotation', async () => {
    const { app, tokens } = receiver();
    expect((await getMetrics(app, bearer(TOKEN))).statusCode).toBe(200);
    tokens.delete(TOKEN);
    expect((await getMetrics(app, bearer(TOKEN))).statusCode).toBe(401);
  });

  it('is open only when insecure on a loopback address', async () => {
    const { app } = receiver({ insecure: true });
    expect((await getMetrics(app)).statusCode).toBe(200);
  });
});

describe('who may read /metrics when a review decides (run)', () => {
  /** A review that records the tokens it is asked about and answers from a table. */
  function reviewing(decisions: Record<string, AccessDecision | Error>) {
    const asked: string[] = [];
    const metricsAccess = (token: string): Promise<AccessDecision> => {
      asked.push(token);
      const decision = decisions[token];
      if (decision === undefined)
        return Promise.resolve({ allowed: false, reason: 'unauthenticated' });
      return decision instanceof Error ? Promise.reject(decision) : Promise.resolve(decision);
    };
    return { asked, metricsAccess };
  }
  const table = {
    'prometheus-sa-token': { allowed: true, user: 'system:serviceaccount:monitoring:prometheus' },
    'alice-token': { allowed: false, reason: 'forbidden', user: 'alice' },
  } as const;

  it('answers 401 with WWW-Authenticate: Bearer without a token, asking nobody', async () => {
    const review = reviewing(table);
    const { app } = receiver({ metricsAccess: review.metricsAccess });
    const response = await getMetrics(app);
    expectError(response, 401, 'METRICS_UNAUTHENTICATED');
    expect(response.headers['www-authenticate']).toBe('Bearer');
    expect(review.asked).toEqual([]);
  });

  it('answers 401 to a token the review does not know', async () => {
    const review = reviewing(table);
    const { app } = receiver({ metricsAccess: review.metricsAccess });
    const response = await getMetrics(app, bearer('forged-token'));
    expectError(response, 401, 'METRICS_UNAUTHENTICATED');
    expect(response.headers['www-authenticate']).toBe('Bearer');
    expect(review.asked).toEqual(['forged-token']);
  });

  it('answers 403 to a known user without the permission, 200 to one with it', async () => {
    const review = reviewing(table);
    const { app } = receiver({ metricsAccess: review.metricsAccess });
    const refused = await getMetrics(app, bearer('alice-token'));
    expectError(refused, 403, 'METRICS_FORBIDDEN');
    expect(refused.headers['www-authenticate']).toBeUndefined();
    const allowed = await getMetrics(app, bearer('prometheus-sa-token'));
    expect(allowed.statusCode).toBe(200);
    expect(allowed.body).toContain('kube_audit_receiver_requests_total');
  });

  it('does not let the audit endpoints’ credentials read /metrics: the apiserver’s token is for posting events', async () => {
    const review = reviewing(table);
    const { app } = receiver({ metricsAccess: review.metricsAccess });
    expectError(await getMetrics(app, bearer(TOKEN)), 401, 'METRICS_UNAUTHENTICATED');
    expect(review.asked).toEqual([TOKEN]);
  });

  it('answers 503 with Retry-After when the review fails, logging the failure without the token', async () => {
    const logged: unknown[] = [];
    const review = reviewing({ 'some-token': new Error('connect ECONNREFUSED 10.96.0.1:443') });
    const { app } = receiver({
      metricsAccess: review.metricsAccess,
      log: (level, bindings, message) => logged.push({ level, bindings, message }),
    });
    const response = await getMetrics(app, bearer('some-token'));
    expectError(response, 503, 'METRICS_ACCESS_UNAVAILABLE');
    expect(response.headers['retry-after']).toBe('1');
    expect(response.body).not.toContain('ECONNREFUSED');
    // A second failure at once is counted, not logged again.
    expect((await getMetrics(app, bearer('some-token'))).statusCode).toBe(503);
    expect(logged).toMatchObject([
      {
        level: 'warn',
        bindings: { failures: 1 },
        message: 'the credentials for /metrics could not be reviewed',
      },
    ]);
    expect(
      JSON.stringify(logged, (_k, v: unknown) => (v instanceof Error ? v.message : v)),
    ).not.toContain('some-token');
  });

  it('protects HEAD /metrics as GET', async () => {
    const review = reviewing(table);
    const { app } = receiver({ metricsAccess: review.metricsAccess });
    expect((await app.inject({ method: 'HEAD', url: '/metrics' })).statusCode).toBe(401);
    const head = await app.inject({
      method: 'HEAD',
      url: '/metrics',
      headers: bearer('alice-token'),
    });
    expect(head.statusCode).toBe(403);
  });

  it('leaves health and readiness open, and the audit endpoints to their own credentials', async () => {
    const review = reviewing(table);
    const { app } = receiver({ metricsAccess: review.metricsAccess });
    for (const url of ['/healthz', '/readyz']) {
      expect((await app.inject({ method: 'GET', url })).statusCode).toBe(200);
    }
    expect((await post(app, '/audit/v1/events', eventList([item()]))).statusCode).toBe(200);
    const withScraperToken = await post(app, '/audit/v1/events', eventList([item()]), {
      authorization: 'Bearer prometheus-sa-token',
    });
    expectError(withScraperToken, 401, 'INVALID_TOKEN');
    expect(review.asked).toEqual([]);
  });
});

describe('health, readiness and shutdown', () => {
  it('answers /healthz 200 while the process is alive, ready or not', async () => {
    const { app } = receiver({ readiness: () => false });
    const response = await app.inject({ method: 'GET', url: '/healthz' });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ok' });
  });

  it('answers /readyz from the readiness callback, on every request', async () => {
    let ready = false;
    const { app } = receiver({ readiness: () => ready });
    const notReady = await app.inject({ method: 'GET', url: '/readyz' });
    expectError(notReady, 503, 'NOT_READY');
    ready = true;
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
  });

  it('answers audit requests 503 with Retry-After while not ready, so the apiserver retries', async () => {
    const { app, ingest } = receiver({ readiness: () => false });
    const response = await post(app, '/audit/v1/events', eventList([item()]));
    expectError(response, 503, 'NOT_READY');
    expect(response.headers['retry-after']).toBe('1');
    expect(ingest.calls).toEqual([]);
  });

  // Connections closing after an audit request, read in full, are checked on real sockets
  // (test/integration/receiver/connections.test.ts): inject() never marks a request complete.
  it('while leaving, answers /readyz 503 but takes audit requests, and closes connections after bodyless ones', async () => {
    const { app, ingest, markLeaving } = receiver();
    markLeaving();
    expectError(await app.inject({ method: 'GET', url: '/readyz' }), 503, 'SHUTTING_DOWN');
    const response = await post(app, '/audit/v1/events', eventList([item()]));
    expect(response.statusCode).toBe(200);
    expect(ingest.calls).toHaveLength(1);
    const health = await app.inject({ method: 'GET', url: '/healthz' });
    expect(health.statusCode).toBe(200);
    expect(health.headers.connection).toBe('close');
  });

  it('answers 503 with Retry-After and closes the connection once shutting down', async () => {
    const { app, markClosing } = receiver();
    markClosing();
    const response = await post(app, '/audit/v1/events', eventList([item()]));
    expectError(response, 503, 'SHUTTING_DOWN');
    expect(response.headers['retry-after']).toBe('1');
    expect(response.headers.connection).toBe('close');
    expectError(await app.inject({ method: 'GET', url: '/readyz' }), 503, 'SHUTTING_DOWN');
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
  });

  it('answers 500 INTERNAL and logs it when a callback it was given throws', async () => {
    const logged: string[] = [];
    let broken = true;
    const { app } = receiver({
      readiness: () => {
        if (broken) throw new Error('readiness probe crashed with token=hunter2');
        return true;
      },
      log: (level, _bindings, message) => logged.push(`${level}: ${message}`),
    });
    const response = await post(app, '/audit/v1/events', eventList([item()]));
    expectError(response, 500, 'INTERNAL');
    expect(response.body).not.toContain('hunter2');
    expect(logged).toEqual(['error: request failed']);
    broken = false;
    expect((await post(app, '/audit/v1/events', eventList([item()]))).statusCode).toBe(200);
  });

  it('answers unknown paths and methods with a JSON 404', async () => {
    const { app } = receiver();
    expectError(await post(app, '/audit/v1/event', eventList([item()])), 404, 'NOT_FOUND');
    expectError(await app.inject({ method: 'GET', url: '/audit/v1/events' }), 404, 'NOT_FOUND');
  });
});

describe('GET /metrics', () => {
  it('serves Prometheus text with requests, events, body bytes and ack latency', async () => {
    const { app } = receiver();
    await post(app, '/audit/v1/events', BATCHES[0].text);
    await post(app, '/audit/v1/events', '{');
    await post(app, '/audit/v1/events', BATCHES[0].text, {}, ['authorization']);
    const response = await app.inject({ method: 'GET', url: '/metrics', headers: bearer(TOKEN) });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = response.body;
    expect(text).toContain('kube_audit_receiver_requests_total{endpoint="events",status="200"} 1');
    expect(text).toContain('kube_audit_receiver_requests_total{endpoint="events",status="400"} 1');
    expect(text).toContain('kube_audit_receiver_requests_total{endpoint="events",status="401"} 1');
    expect(text).toContain(
      `kube_audit_receiver_events_received_total{endpoint="events"} ${BATCHES[0].count}`,
    );
    // The 401 body was never read: two bodies, the batch and "{".
    expect(text).toContain('kube_audit_receiver_request_body_bytes_count{endpoint="events"} 2');
    expect(text).toContain(
      `kube_audit_receiver_request_body_bytes_sum{endpoint="events"} ${Buffer.byteLength(BATCHES[0].text) + 1}`,
    );
    expect(text).toContain(
      'kube_audit_receiver_ack_latency_seconds_count{endpoint="events",status="200"} 1',
    );
  });

  it('labels requests by route, not by sink name, so cardinality stays bounded', async () => {
    const { app, registry } = receiver({}, new RecordingIngest(['AuditSink/a', 'AuditSink/b']));
    await post(app, '/audit/v1/sinks/a', eventList([item()]));
    await post(app, '/audit/v1/sinks/b', eventList([item()]));
    await app.inject({ method: 'GET', url: '/nowhere' });
    const text = await registry.metrics();
    expect(text).toContain('kube_audit_receiver_requests_total{endpoint="sinks",status="200"} 2');
    expect(text).toContain(
      'kube_audit_receiver_requests_total{endpoint="unmatched",status="404"} 1',
    );
  });
});
