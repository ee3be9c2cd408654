// The InfluxDB output against a real influxd 2.7 (built by scripts/build-influxd.sh, started by
// test/harness/influxd.ts): one server for the file, stopped and restarted by one test. Throttling
// and hanging servers, which influxd OSS never is, are node:http servers on 127.0.0.1 answering as
// InfluxDB Cloud does (429 with Retry-After) or not at all; another keeps the bytes the output
// sends (gzip, cuts between lines), which influxd does not show.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StoredPoint } from '../../../src/audit/stored-point.ts';
import { epochMicros } from '../../../src/audit/time.ts';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { RequestSlots } from '../../../src/outputs/server-slots.ts';
import { InfluxOutput } from '../../../src/outputs/influxdb/writer.ts';
import { OutputError } from '../../../src/outputs/types.ts';
import type { InfluxDestination } from '../../../src/outputs/influxdb/spec.ts';
import { destinationOn, type InfluxServer, type Row, startInfluxd } from '../../harness/influxd.ts';
import { recordedEvents } from '../../support/recorded.ts';
import { rejectionOf } from '../../support/rejection.ts';

const RECORDED = recordedEvents();
const SINK = 'audit/trail';

let server: InfluxServer;
let buckets = 0;

beforeAll(async () => {
  server = await startInfluxd();
});

afterAll(async () => {
  await server?.dispose();
});

/** A fresh bucket per test, so counts never see another test's points. */
async function freshBucket(retentionSeconds = 0): Promise<InfluxDestination> {
  const bucket = `writer-${++buckets}`;
  await server.createBucket(bucket, retentionSeconds);
  return destinationOn(server, { bucket });
}

function output(destination: InfluxDestination, token: string | undefined = server.token) {
  return new InfluxOutput(destination, SINK, () => token);
}

/** One row per point: tags as columns, fields pivoted into columns. */
function points(bucket: string): Promise<Row[]> {
  return server.query(`from(bucket: "${bucket}")
    |> range(start: 0)
    |> filter(fn: (r) => r._measurement == "kubernetes_audit")
    |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    |> map(fn: (r) => ({ r with time_ns: string(v: int(v: r._time)) }))`);
}

/** What docs/influxdb-schema.md says a point of `event` holds, written out independently. */
function documentedPoint(event: AuditEvent): Record<string, unknown> {
  const ref = event.objectRef;
  const point: Record<string, unknown> = {
    level: event.level,
    stage: event.stage,
    verb: event.verb,
    api_group: ref?.apiGroup,
    api_version: ref?.apiVersion,
    resource: ref?.resource,
    subresource: ref?.subresource,
    namespace: ref?.namespace,
    user: event.user.username,
    code: event.responseStatus?.code === undefined ? undefined : String(event.responseStatus.code),
    decision: event.annotations?.['authorization.k8s.io/decision'],
    sink: SINK,
    audit_id: event.auditID,
    request_uri: event.requestURI,
    name: ref?.name,
    user_groups: event.user.groups && JSON.stringify(event.user.groups),
    impersonated_user: event.impersonatedUser?.username,
    source_ip: event.sourceIPs?.join(','),
    user_agent: event.userAgent,
    reason: event.responseStatus?.reason,
    annotations: event.annotations && JSON.stringify(event.annotations),
    request_object:
      event.requestObject === undefined ? undefined : JSON.stringify(event.requestObject),
    response_object:
      event.responseObject === undefined ? undefined : JSON.stringify(event.responseObject),
  };
  if (event.requestReceivedTimestamp !== undefined) {
    point.latency_ms =
      (Number(epochMicros(event.stageTimestamp)) -
        Number(epochMicros(event.requestReceivedTimestamp))) /
      1000;
  }
  // Flux leaves a missing tag or field out of the row (or empty, when another point has it).
  for (const key of Object.keys(point)) if (point[key] === undefined) delete point[key];
  return point;
}

function withoutEmpty(row: Row): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    if (k.startsWith('_') || k === 'result' || k === 'table') continue;
    if (v !== '' && v !== null && v !== undefined) out[k] = v;
  }
  return out;
}

describe('InfluxOutput against a real influxd', () => {
  it('writes the recorded events with the documented tags and fields', async () => {
    const destination = await freshBucket();
    await output(destination).write(RECORDED);
    const rows = await points(destination.bucket);
    expect(rows).toHaveLength(RECORDED.length);
    const byId = new Map(rows.map((r) => [r.audit_id as string, r]));
    for (const event of RECORDED) {
      const row = byId.get(event.auditID) as Row;
      const { time_ns: timeNs, ...columns } = withoutEmpty(row);
      expect(columns).toEqual(documentedPoint(event));
      // Time: the stage timestamp's microsecond, then a slot below one microsecond.
      expect(timeNs).toMatch(new RegExp(`^${epochMicros(event.stageTimestamp)}\\d{3}$`));
    }
  });

  it('writes the points it made when the events were queued as the events themselves, mixed in one batch', async () => {
    const destination = await freshBucket();
    const out = output(destination);
    // Every other event queued as its point (ADR 0027), the others as events, as after a restart
    // across the change or for an event whose line would hold a line break.
    const queued = RECORDED.map((event, i) =>
      i % 2 === 0 ? event : (out.pointOf(event) as StoredPoint),
    );
    expect(queued.filter((q) => q instanceof StoredPoint)).toHaveLength(
      Math.floor(RECORDED.length / 2),
    );
    await out.write(queued);
    const rows = await points(destination.bucket);
    expect(rows).toHaveLength(RECORDED.length);
    const byId = new Map(rows.map((r) => [r.audit_id as string, r]));
    for (const event of RECORDED) {
      const { time_ns: timeNs, ...columns } = withoutEmpty(byId.get(event.auditID) as Row);
      expect(columns).toEqual(documentedPoint(event));
      expect(timeNs).toMatch(new RegExp(`^${epochMicros(event.stageTimestamp)}\\d{3}$`));
    }
    // Written again as events by an output with a new encoder (a replay): the same points.
    await output(destination).write(RECORDED);
    expect(await points(destination.bucket)).toHaveLength(RECORDED.length);
  });

  it('stores every batch of many sinks sharing two request slots to the server', async () => {
    let mostWaiting = 0;
    const slots = new (class extends RequestSlots {
      override acquire(signal?: AbortSignal): Promise<() => void> {
        const granted = super.acquire(signal);
        mostWaiting = Math.max(mostWaiting, this.waiting);
        return granted;
      }
    })(2);
    const destinations = await Promise.all(Array.from({ length: 12 }, () => freshBucket()));
    const outputs = destinations.map(
      (destination) => new InfluxOutput(destination, SINK, () => server.token, { slots }),
    );
    await Promise.all(outputs.map((out) => out.write(RECORDED)));
    // Some waited for a slot, and every one got one.
    expect(mostWaiting).toBeGreaterThan(0);
    expect([slots.busy, slots.waiting]).toEqual([0, 0]);
    for (const destination of destinations) {
      expect(await points(destination.bucket)).toHaveLength(RECORDED.length);
    }
  });

  it('writes only the tags of tags and the fields of fields, audit_id always', async () => {
    const destination: InfluxDestination = {
      ...(await freshBucket()),
      tags: ['verb', 'namespace'],
      fields: ['request_uri', 'latency_ms', 'user'],
    };
    await output(destination).write(RECORDED);
    const rows = await points(destination.bucket);
    expect(rows).toHaveLength(RECORDED.length);
    const kept = ['verb', 'namespace', 'audit_id', 'request_uri', 'latency_ms', 'user'];
    const byId = new Map(rows.map((r) => [r.audit_id as string, r]));
    for (const event of RECORDED) {
      const { time_ns: _time, ...columns } = withoutEmpty(byId.get(event.auditID) as Row);
      const expected = Object.entries(documentedPoint(event)).filter(([k]) => kept.includes(k));
      expect(columns).toEqual(Object.fromEntries(expected));
    }
    const keys = await server.query(`import "influxdata/influxdb/schema"
      schema.fieldKeys(bucket: "${destination.bucket}")`);
    expect(keys.map((r) => r._value).sort()).toEqual([
      'audit_id',
      'latency_ms',
      'request_uri',
      'user',
    ]);
  });

  it('leaves exactly one copy of each event when the same batch is written again', async () => {
    const destination = await freshBucket();
    const out = output(destination);
    await out.write(RECORDED);
    await out.write(RECORDED); // a retry by the delivery loop
    await output(destination).write(RECORDED); // a replay after a restart: a new encoder
    const rows = await points(destination.bucket);
    expect(rows).toHaveLength(RECORDED.length);
  });

  it('keeps 1,000 distinct events with the same stageTimestamp and tags as 1,000 points', async () => {
    const destination = await freshBucket();
    const template = RECORDED.find((e) => e.level === 'Metadata');
    if (template === undefined) throw new Error('the fixtures hold a Metadata event');
    const events = Array.from({ length: 1000 }, (_, i) => ({
      ...template,
      auditID: `same-microsecond-${i}`,
    }));
    const out = output(destination);
    for (let i = 0; i < events.length; i += 400) await out.write(events.slice(i, i + 400));
    const rows = await server.query(`from(bucket: "${destination.bucket}")
      |> range(start: 0)
      |> filter(fn: (r) => r._field == "audit_id")
      |> group()
      |> count()`);
    expect(rows[0]?._value).toBe(1000);
    const times = await server.query(`from(bucket: "${destination.bucket}")
      |> range(start: 0)
      |> filter(fn: (r) => r._field == "audit_id")
      |> group()
      |> map(fn: (r) => ({ _value: string(v: r._time) }))
      |> distinct()
      |> count()`);
    expect(times[0]?._value).toBe(1000);
  });

  it('splits a batch larger than maxRequestBytes into several requests that all land', async () => {
    const destination = await freshBucket();
    const out = new InfluxOutput(destination, SINK, () => server.token, { maxRequestBytes: 4096 });
    await out.write(RECORDED);
    expect(await points(destination.bucket)).toHaveLength(RECORDED.length);
  });

  it('stores the same points from gzipped and plain bodies', async () => {
    const gzipped = await freshBucket();
    await new InfluxOutput(gzipped, SINK, () => server.token, { gzipThreshold: 0 }).write(RECORDED);
    const plain = await freshBucket();
    await new InfluxOutput(plain, SINK, () => server.token, {
      gzipThreshold: Number.MAX_SAFE_INTEGER,
    }).write(RECORDED);
    const stored = async (bucket: string) =>
      (await points(bucket))
        .map(withoutEmpty)
        .sort((a, b) => String(a.time_ns).localeCompare(String(b.time_ns)));
    expect(await stored(gzipped.bucket)).toHaveLength(RECORDED.length);
    expect(await stored(gzipped.bucket)).toEqual(await stored(plain.bucket));
  });

  it('cuts an object over the 1 MiB field limit, which the server would refuse, and records its size', async () => {
    const destination = await freshBucket();
    const huge = {
      ...(RECORDED[0] as AuditEvent),
      responseObject: { data: 'x'.repeat(2_000_000) },
    };
    await output(destination).write([huge]);
    const field = (name: string, value: string) =>
      server.query(`import "strings"
        from(bucket: "${destination.bucket}")
        |> range(start: 0)
        |> filter(fn: (r) => r._field == "${name}")
        |> map(fn: (r) => ({ _value: ${value} }))`);
    const [text] = await field('response_object', 'strings.strlen(v: r._value)');
    const [bytes] = await field('response_object_bytes', 'r._value');
    expect(text?._value).toBe(1_048_576);
    expect(bytes?._value).toBe(JSON.stringify(huge.responseObject).length);
  });
  it('answers a bad token with UNAUTHORIZED, not retryable, and never shows the token', async () => {
    const destination = await freshBucket();
    const secret = 'not-a-real-token-5f2c9a';
    const err = await rejectionOf(output(destination, secret).write(RECORDED), OutputError);
    expect(err.code).toBe('UNAUTHORIZED');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('401');
    expect(inspect(err, { depth: 10, showHidden: true })).not.toContain(secret);
    expect(JSON.stringify(err)).not.toContain(secret);
  });

  it('says when no token is configured', async () => {
    const destination = await freshBucket();
    const anonymous = new InfluxOutput(destination, SINK, () => undefined);
    const err = await rejectionOf(anonymous.write(RECORDED), OutputError);
    expect(err.code).toBe('UNAUTHORIZED');
    expect(err.message).toContain('no token configured');
  });

  it('answers a token of another bucket with UNAUTHORIZED (403), not retryable', async () => {
    const destination = await freshBucket();
    const other = await freshBucket();
    const token = await server.createToken([{ action: 'write', bucket: other.bucket }]);
    const err = await rejectionOf(output(destination, token).write(RECORDED), OutputError);
    expect(err.code).toBe('UNAUTHORIZED');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('403');
  });

  it('answers a missing bucket with NOT_FOUND, not retryable', async () => {
    const err = await rejectionOf(
      output(destinationOn(server, { bucket: 'no-such-bucket' })).write(RECORDED),
      OutputError,
    );
    expect(err.code).toBe('NOT_FOUND');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('no-such-bucket');
  });

  it('answers a missing org with NOT_FOUND, not retryable', async () => {
    const err = await rejectionOf(
      output(destinationOn(server, { org: 'no-such-org' })).write(RECORDED),
      OutputError,
    );
    expect(err.code).toBe('NOT_FOUND');
    expect(err.retryable).toBe(false);
  });

  it('answers points the server refuses with REJECTED, not retryable', async () => {
    // "time" is a reserved tag key: influxd answers 400 for the whole batch.
    const destination = await freshBucket();
    const reserved = output({ ...destination, staticTags: { time: 'x' } });
    const err = await rejectionOf(reserved.write(RECORDED), OutputError);
    expect(err.code).toBe('REJECTED');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('400');
  });

  it('answers events older than the bucket retention with REJECTED (422)', async () => {
    const destination = await freshBucket(3600);
    const err = await rejectionOf(output(destination).write(RECORDED.slice(0, 1)), OutputError);
    expect(err.code).toBe('REJECTED');
    expect(err.message).toContain('422');
  });

  it('takes a rotated token from the provider on the next write', async () => {
    const destination = await freshBucket();
    const second = await server.createToken([{ action: 'write', bucket: destination.bucket }]);
    let current: string | undefined = server.token;
    const out = new InfluxOutput(destination, SINK, () => current);
    await out.write(RECORDED.slice(0, 5));
    current = 'revoked-token';
    expect((await rejectionOf(out.write(RECORDED.slice(5, 10)), OutputError)).code).toBe(
      'UNAUTHORIZED',
    );
    current = second;
    await out.write(RECORDED.slice(5, 10));
    expect(await points(destination.bucket)).toHaveLength(10);
  });

  it('sends a prepared batch again with the token of the moment, the same points once', async () => {
    const destination = await freshBucket();
    let current: string | undefined = 'revoked-token';
    const out = new InfluxOutput(destination, SINK, () => current);
    const prepared = await out.prepare(RECORDED);
    expect(prepared.count).toBe(RECORDED.length);
    expect((await rejectionOf(prepared.send(), OutputError)).code).toBe('UNAUTHORIZED');
    current = server.token;
    await prepared.send();
    // Sent once more: an identical point overwrites itself.
    await prepared.send();
    const rows = await points(destination.bucket);
    expect(rows).toHaveLength(RECORDED.length);
    expect(new Set(rows.map((r) => r.audit_id))).toEqual(new Set(RECORDED.map((e) => e.auditID)));
  });

  it('reports a stopped server as UNREACHABLE and retryable, and writes the same batch after a restart', async () => {
    const destination = await freshBucket();
    const out = output(destination);
    await server.stop();
    try {
      const err = await rejectionOf(out.write(RECORDED), OutputError);
      expect(err.code).toBe('UNREACHABLE');
      expect(err.retryable).toBe(true);
      expect(err.message).toContain('ECONNREFUSED');
    } finally {
      await server.restart();
    }
    await out.write(RECORDED);
    expect(await points(destination.bucket)).toHaveLength(RECORDED.length);
  });
});

/** A node:http server on 127.0.0.1 whose every answer `respond` decides. */
async function standIn(
  respond: (res: ServerResponse) => void,
): Promise<{ url: string; server: Server }> {
  const http = createServer((req, res) => {
    req.resume();
    req.on('end', () => respond(res));
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`, server: http };
}

async function closed(http: Server): Promise<void> {
  http.closeAllConnections();
  await new Promise((resolve) => http.close(resolve));
}

/** What a stand-in received: one entry per request. */
interface Received {
  readonly encoding: string | undefined;
  readonly body: Buffer;
}

/** A node:http server on 127.0.0.1 that keeps every request and answers 204, as influxd does. */
async function recorder(): Promise<{ url: string; server: Server; received: Received[] }> {
  const received: Received[] = [];
  const http = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      received.push({
        encoding: req.headers['content-encoding'],
        body: Buffer.concat(chunks),
      });
      res.writeHead(204);
      res.end();
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  return { url, server: http, received };
}

describe('the bodies InfluxOutput sends', () => {
  it('gzips a body over the threshold, and sends the same bytes again on a retry', async () => {
    const { url, server: http, received } = await recorder();
    try {
      const out = new InfluxOutput({ ...destinationOn(server), url }, SINK, () => 't', {
        gzipThreshold: 1024,
      });
      const prepared = await out.prepare(RECORDED);
      await prepared.send();
      await prepared.send();
      expect(received).toHaveLength(2);
      const [first, second] = received as [Received, Received];
      expect(first.encoding).toBe('gzip');
      expect(second.body.equals(first.body)).toBe(true);
      const lines = gunzipSync(first.body).toString('utf8').split('\n');
      expect(lines).toHaveLength(RECORDED.length);
      expect(lines.map((line) => /audit_id="([^"]+)"/.exec(line)?.[1])).toEqual(
        RECORDED.map((e) => e.auditID),
      );
    } finally {
      await closed(http);
    }
  });

  it('sends a body at or under the threshold as plain text, split at maxRequestBytes on lines', async () => {
    const { url, server: http, received } = await recorder();
    try {
      const out = new InfluxOutput({ ...destinationOn(server), url }, SINK, () => 't', {
        maxRequestBytes: 4096,
      });
      await out.write(RECORDED);
      expect(received.length).toBeGreaterThan(1);
      const lines: string[] = [];
      for (const { encoding, body } of received) {
        expect(encoding).toBeUndefined();
        const text = body.toString('utf8');
        // Only a line longer than the limit by itself makes a longer body.
        if (body.length > 4096) expect(text).not.toContain('\n');
        expect(text.startsWith('kubernetes_audit,')).toBe(true);
        expect(text.endsWith('\n')).toBe(false);
        lines.push(...text.split('\n'));
      }
      expect(lines).toHaveLength(RECORDED.length);
    } finally {
      await closed(http);
    }
  });

  it('counts bytes, not characters, against maxRequestBytes', async () => {
    const { url, server: http, received } = await recorder();
    try {
      // Characters of two, three and four bytes in UTF-8.
      const names = ['jürgen', '€uro', 'emoji-😀😀😀'];
      const events = RECORDED.map((event, i) => ({
        ...event,
        requestURI: `/api/v1/namespaces/${names[i % names.length]}/${'€'.repeat(500 + (i % 500))}`,
      }));
      const limit = 10_000;
      const out = new InfluxOutput({ ...destinationOn(server), url }, SINK, () => 't', {
        maxRequestBytes: limit,
      });
      await out.write(events);
      let lines = 0;
      for (const { body } of received) {
        const text = body.toString('utf8');
        if (text.includes('\n')) expect(body.length).toBeLessThanOrEqual(limit);
        lines += text.split('\n').length;
      }
      expect(received.length).toBeGreaterThan(5);
      // Some body fills the limit to within a line: the count is not far too cautious either.
      expect(Math.max(...received.map(({ body }) => body.length))).toBeGreaterThan(limit / 2);
      expect(lines).toBe(events.length);
    } finally {
      await closed(http);
    }
  });
});

describe('InfluxOutput against servers that throttle or hang', () => {
  it('honours Retry-After in seconds on 429', async () => {
    const { url, server: http } = await standIn((res) => {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '7' });
      res.end('{"code":"too many requests","message":"org exceeded its write limit"}');
    });
    try {
      const out = new InfluxOutput({ ...destinationOn(server), url }, SINK, () => 't');
      const err = await rejectionOf(out.write(RECORDED), OutputError);
      expect(err.code).toBe('THROTTLED');
      expect(err.retryable).toBe(true);
      expect(err.retryAfterMs).toBe(7000);
      expect(err.message).toContain('org exceeded its write limit');
    } finally {
      await closed(http);
    }
  });

  it('honours Retry-After as an HTTP date on 503', async () => {
    const { url, server: http } = await standIn((res) => {
      res.writeHead(503, { 'retry-after': new Date(Date.now() + 60_000).toUTCString() });
      res.end('overloaded');
    });
    try {
      const out = new InfluxOutput({ ...destinationOn(server), url }, SINK, () => 't');
      const err = await rejectionOf(out.write(RECORDED), OutputError);
      expect(err.code).toBe('SERVER_ERROR');
      expect(err.retryable).toBe(true);
      expect(err.retryAfterMs).toBeGreaterThan(55_000);
      expect(err.retryAfterMs).toBeLessThanOrEqual(60_000);
    } finally {
      await closed(http);
    }
  });

  it('gives up on a server that never answers with TIMEOUT, retryable, at the deadline', async () => {
    const { url, server: http } = await standIn(() => undefined);
    try {
      const out = new InfluxOutput({ ...destinationOn(server), url }, SINK, () => 't', {
        timeoutMs: 300,
      });
      const started = performance.now();
      const err = await rejectionOf(out.write(RECORDED), OutputError);
      expect(err.code).toBe('TIMEOUT');
      expect(err.retryable).toBe(true);
      expect(performance.now() - started).toBeLessThan(5_000);
    } finally {
      await closed(http);
    }
  });

  it('sends no more requests at once than the slots allow, each deadline starting when it is sent', async () => {
    let open = 0;
    let most = 0;
    const { url, server: http } = await standIn((res) => {
      most = Math.max(most, ++open);
      setTimeout(() => {
        open--;
        res.writeHead(204);
        res.end();
      }, 250);
    });
    try {
      const slots = new RequestSlots(1);
      const outputs = Array.from(
        { length: 3 },
        () =>
          new InfluxOutput({ ...destinationOn(server), url }, SINK, () => 't', {
            slots,
            timeoutMs: 400,
          }),
      );
      const started = performance.now();
      // The last one waits 500 ms for its slot, longer than its deadline: it counts from the send.
      await Promise.all(outputs.map((out) => out.write(RECORDED)));
      expect(performance.now() - started).toBeGreaterThanOrEqual(700);
      expect(most).toBe(1);
    } finally {
      await closed(http);
    }
  });

  it("stops waiting for a slot as soon as the write's signal aborts, sending nothing", async () => {
    let requests = 0;
    const { url, server: http } = await standIn(() => requests++);
    try {
      const slots = new RequestSlots(1);
      const out = new InfluxOutput({ ...destinationOn(server), url }, SINK, () => 't', { slots });
      const holding = rejectionOf(out.write(RECORDED, AbortSignal.timeout(500)), OutputError);
      const waiting = new AbortController();
      const pending = rejectionOf(out.write(RECORDED, waiting.signal), OutputError);
      await new Promise((r) => setTimeout(r, 100));
      expect([slots.busy, slots.waiting]).toEqual([1, 1]);
      const started = performance.now();
      waiting.abort();
      const err = await pending;
      expect(performance.now() - started).toBeLessThan(100);
      expect(err).toMatchObject({ code: 'UNREACHABLE', retryable: true });
      expect(err.message).toContain('request aborted');
      expect(slots.waiting).toBe(0);
      expect((await holding).message).toContain('request aborted');
      expect([requests, slots.busy]).toEqual([1, 0]);
    } finally {
      await closed(http);
    }
  });

  it('ends a write to a server that never answers as soon as its signal aborts', async () => {
    const { url, server: http } = await standIn(() => undefined);
    try {
      const out = new InfluxOutput({ ...destinationOn(server), url }, SINK, () => 't');
      const deadline = new AbortController();
      const pending = rejectionOf(out.write(RECORDED, deadline.signal), OutputError);
      await new Promise((r) => setTimeout(r, 100));
      const started = performance.now();
      deadline.abort();
      const err = await pending;
      // Well inside the 10 s request deadline.
      expect(performance.now() - started).toBeLessThan(100);
      expect(err).toMatchObject({ code: 'UNREACHABLE', retryable: true });
      expect(err.message).toContain('request aborted');
      // The signal was this write's: the output itself stays usable.
      const next = rejectionOf(out.write(RECORDED, AbortSignal.timeout(50)), OutputError);
      expect((await next).message).toContain('request aborted');
    } finally {
      await closed(http);
    }
  });

  it('aborts a write in flight on close, leaving the batch to be retried', async () => {
    const { url, server: http } = await standIn(() => undefined);
    try {
      const out = new InfluxOutput({ ...destinationOn(server), url }, SINK, () => 't');
      const pending = rejectionOf(out.write(RECORDED), OutputError);
      await new Promise((r) => setTimeout(r, 100));
      await out.close();
      const err = await pending;
      expect(err.code).toBe('UNREACHABLE');
      expect(err.retryable).toBe(true);
      await expect(out.write(RECORDED)).rejects.toThrow('closed');
    } finally {
      await closed(http);
    }
  });
});
