// One bad event among good ones, posted to the built CLI (`node dist/main.js standalone`) in front
// of a real influxd (test/harness): 50 recorded events, one a hostile client made, 50 more. An
// event no destination can take is refused with a 400 naming it, before anything is acknowledged;
// an event with tags too long for a series key is written, cut; an event influxd refuses on its
// own is set aside as a dead letter (the point the sink stored, exported with the built CLI as
// line protocol and written into a bucket without the conflict) while the other 100 are written;
// a body that no sink keeps (and the receiver does not build) is still refused when it is not
// JSON; and the sink keeps writing what comes next. Starts one influxd for the file and one
// standalone process per test.
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/types.ts';
import { type DeadLetterRecord, readDeadLetters } from '../../src/sinks/dead-letter.ts';
import { CUT_MARKER, MAX_TAG_VALUE_BYTES } from '../../src/outputs/influxdb/line-protocol.ts';
import { freePort, type InfluxServer, startInfluxd } from '../harness/influxd.ts';
import { type StandaloneProcess, startStandalone } from '../harness/standalone.ts';
import { recordedEvents } from '../support/recorded.ts';
import { waitFor } from '../support/wait.ts';

const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));
const BUCKET = 'bad-events';
const RECORDED = recordedEvents();

let influx: InfluxServer;
let dir: string;
let running: StandaloneProcess;

beforeAll(async () => {
  influx = await startInfluxd();
  await influx.createBucket(BUCKET);
});
afterAll(async () => {
  await influx.dispose();
});
afterEach(async () => {
  await running?.stop('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

/** Standalone with one AuditSink that keeps every event at `level` (whole by default), writing to `bucket`. */
async function start(bucket = BUCKET, level = 'RequestResponse'): Promise<StandaloneProcess> {
  dir = await mkdtemp(join(tmpdir(), 'kao-e2e-bad-events-'));
  await mkdir(join(dir, 'manifests'));
  await writeFile(
    join(dir, 'manifests', 'sink.yaml'),
    `apiVersion: kube-audit.dev/v1alpha1
kind: AuditSink
metadata: {name: trail}
spec:
  policy: {level: ${level}, stages: [ResponseStarted, ResponseComplete, Panic]}
  influxdb:
    url: ${influx.url}
    org: ${influx.org}
    bucket: ${bucket}
    flushInterval: 100ms
    tokenSecretRef: {name: influx, key: token}
---
apiVersion: v1
kind: Secret
metadata: {name: influx, namespace: kube-audit}
stringData: {token: ${influx.token}}
`,
  );
  running = await startStandalone({
    manifests: join(dir, 'manifests'),
    port: await freePort(),
    dataDir: join(dir, 'data'),
  });
  return running;
}

/** `count` recorded events made new by their auditIDs `<run>-<i>`. */
function goodEvents(run: string, count: number, from = 0): AuditEvent[] {
  return Array.from({ length: count }, (_, k) => {
    const i = from + k;
    return { ...(RECORDED[i % RECORDED.length] as AuditEvent), auditID: `${run}-${i}` };
  });
}

/** 50 good events, the bad one (a good one changed by `spoil`), 50 good events. */
function batchWithBadEvent(run: string, spoil: (event: Record<string, unknown>) => void) {
  const bad = goodEvents(run, 1, 50)[0] as unknown as Record<string, unknown>;
  spoil(bad);
  return [...goodEvents(run, 50), bad, ...goodEvents(run, 50, 51)];
}

function eventList(items: unknown[]): string {
  return JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items });
}

async function post(
  url: string,
  items: unknown[] | string,
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${url}/audit/v1/events?timeout=30s`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof items === 'string' ? items : eventList(items),
  });
  return { status: res.status, body: await res.json() };
}

/** The auditIDs in `bucket` that start with `run-`. */
async function written(run: string, bucket = BUCKET): Promise<Set<string>> {
  const rows = await influx.query(`import "strings"
    from(bucket: "${bucket}")
    |> range(start: 0)
    |> filter(fn: (r) => r._measurement == "kubernetes_audit" and r._field == "audit_id")
    |> filter(fn: (r) => strings.hasPrefix(v: r._value, prefix: "${run}-"))
    |> keep(columns: ["_value"])`);
  return new Set(rows.map((r) => String(r._value)));
}

async function untilWritten(run: string, count: number, bucket = BUCKET): Promise<Set<string>> {
  return waitFor(
    `${count} events of ${run} in ${bucket}`,
    () => written(run, bucket),
    (ids) => ids.size === count,
  );
}

/** The sink's lines of `/metrics` that count failed writes or events dropped as rejected. */
async function failures(url: string): Promise<string[]> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text
    .split('\n')
    .filter(
      (line) =>
        (line.startsWith('kube_audit_sink_write_failures_total{') ||
          (line.startsWith('kube_audit_sink_dropped_events_total{') &&
            line.includes('reason="rejected"'))) &&
        !line.endsWith(' 0'),
    );
}

// The apiserver never sends these; a hostile client found each one stopping a sink or losing a
// whole write before they were checked at the receiver.
const REFUSED = [
  { what: 'a number as responseStatus.reason', field: 'responseStatus.reason', value: 42 },
  {
    what: 'an array as responseStatus.reason',
    field: 'responseStatus.reason',
    value: ['Forbidden'],
  },
  { what: 'an object as responseStatus.reason', field: 'responseStatus.reason', value: { x: 1 } },
  { what: 'a stageTimestamp in year 0001', field: 'stageTimestamp', value: '0001-01-01T00:00:00Z' },
  { what: 'a stageTimestamp in year 1600', field: 'stageTimestamp', value: '1600-02-29T12:00:00Z' },
  {
    what: 'a stageTimestamp in 1677, before the bound',
    field: 'stageTimestamp',
    value: '1677-09-21T00:12:43.145224Z',
  },
  {
    what: 'a stageTimestamp in 2262, after the bound',
    field: 'stageTimestamp',
    value: '2262-04-11T23:47:16.854775Z',
  },
  { what: 'a stageTimestamp in year 2300', field: 'stageTimestamp', value: '2300-01-01T00:00:00Z' },
  {
    what: 'a stageTimestamp in year 9999',
    field: 'stageTimestamp',
    value: '9999-12-31T23:59:59.999999Z',
  },
];

describe('one bad event among 100 good ones, against standalone and a real influxd', () => {
  it('refuses every batch holding an event no destination can store, naming it, and keeps writing the next', async () => {
    const { url } = await start();
    for (const [n, { what, field, value }] of REFUSED.entries()) {
      const run = `bad-${n}`;
      const items = batchWithBadEvent(run, (event) => {
        if (field === 'stageTimestamp') event.stageTimestamp = value;
        else event.responseStatus = { code: 403, reason: value };
      });
      const answer = await post(url, items);
      expect(answer, what).toMatchObject({ status: 400, body: { code: 'INVALID_EVENT' } });
      const message = (answer.body as { message: string }).message;
      expect(message.startsWith(`items[50].${field}: `), message).toBe(true);
      if (field === 'stageTimestamp') {
        expect(message).toContain(
          'must be from 1677-09-21T00:12:43.145225Z through 2262-04-11T23:47:16.854774999Z',
        );
      }
      // The same client sends the next batch, good: it is written, and nothing of the refused one.
      expect((await post(url, goodEvents(`next-${n}`, 101))).status).toBe(200);
      await untilWritten(`next-${n}`, 101);
      expect(await written(run), what).toEqual(new Set());
    }
    expect(await failures(url)).toEqual([]);
  });

  it.each([
    [
      'a 70,000-character objectRef.resource',
      'resource',
      (e: Record<string, unknown>) => {
        e.objectRef = { ...(e.objectRef as object), resource: 'r'.repeat(70_000) };
      },
    ],
    [
      'a 70,000-character user name',
      'user',
      (e: Record<string, unknown>) => {
        e.user = { ...(e.user as object), username: `oidc:${'ü'.repeat(69_995)}` };
      },
    ],
  ] as const)(
    'writes all 101 events when one has %s, the long tag cut and kept whole in its field',
    async (_, tag, spoil) => {
      const { url } = await start();
      const run = `long-${tag}`;
      const items = batchWithBadEvent(run, spoil);
      expect((await post(url, items)).status).toBe(200);
      await untilWritten(run, 101);

      const long = items[50] as AuditEvent;
      const whole = tag === 'resource' ? long.objectRef?.resource : long.user.username;
      const rows = await influx.query(`from(bucket: "${BUCKET}")
      |> range(start: 0)
      |> filter(fn: (r) => r._measurement == "kubernetes_audit" and r._field == "${tag}_full")
      |> filter(fn: (r) => r.sink == "trail")`);
      const point = rows.find((r) => r._value === whole);
      expect(point, `${tag}_full holding the whole value`).toBeDefined();
      const cut = String(point?.[tag]);
      expect(cut.endsWith(CUT_MARKER)).toBe(true);
      expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(MAX_TAG_VALUE_BYTES);
      expect(whole?.startsWith(cut.slice(0, -1))).toBe(true);

      // The sink keeps flowing: a later batch is written too.
      expect((await post(url, goodEvents(`after-${tag}`, 101))).status).toBe(200);
      await untilWritten(`after-${tag}`, 101);
      expect(await failures(url)).toEqual([]);
    },
  );

  it('with a sink that keeps Metadata only, refuses a batch whose one body is not JSON and writes the next', async () => {
    const bucket = 'metadata-only';
    await influx.createBucket(bucket);
    const { url } = await start(bucket, 'Metadata');
    const withBodies = (run: string) =>
      goodEvents(run, 101).map((event) => ({ ...event, requestObject: { kind: 'Pod' } }));
    // No sink keeps the bodies, so the receiver does not build them; it still checks them.
    const items = withBodies('malformed');
    (items[50] as Record<string, unknown>).requestObject = { marker: 'cut-here' };
    const text = eventList(items).replace('{"marker":"cut-here"}', '{"marker":"cut-here",}');
    const answer = await post(url, text);
    expect(answer).toMatchObject({ status: 400, body: { code: 'MALFORMED_JSON' } });
    expect((await post(url, withBodies('well-formed'))).status).toBe(200);
    await untilWritten('well-formed', 101, bucket);
    expect(await written('malformed', bucket)).toEqual(new Set());
    // Metadata points: no body field.
    const bodies = await influx.query(`from(bucket: "${bucket}")
      |> range(start: 0)
      |> filter(fn: (r) => r._field == "request_object" or r._field == "response_object")`);
    expect(bodies).toEqual([]);
    expect(await failures(url)).toEqual([]);
  });

  it('sets aside the one event influxd refuses on its own, writes the other 100, and keeps writing', async () => {
    const bucket = 'conflict';
    await influx.createBucket(bucket);
    const { url } = await start(bucket);
    const run = 'conflict';
    const items = batchWithBadEvent(run, (e) => {
      e.objectRef = { ...(e.objectRef as object), resource: 'r'.repeat(70_000) };
    });
    const bad = items[50] as AuditEvent;
    // The bucket already holds resource_full as an integer in the shard of the event's time: its
    // point, with resource_full as a string, is refused by influxd (field type conflict), and the
    // 100 others are not.
    const ns = BigInt(Date.parse(bad.stageTimestamp)) * 1_000_000n;
    const seeded = await fetch(
      `${influx.url}/api/v2/write?org=${influx.org}&bucket=${bucket}&precision=ns`,
      {
        method: 'POST',
        headers: { authorization: `Token ${influx.token}` },
        body: `kubernetes_audit,sink=elsewhere resource_full=1i ${ns}`,
      },
    );
    expect(seeded.status).toBe(204);

    expect((await post(url, items)).status).toBe(200);
    const ids = await untilWritten(run, 100, bucket);
    expect(ids.has(bad.auditID)).toBe(false);
    const letters = await waitFor(
      'the refused event in the dead-letter file',
      () => deadLetters(join(dir, 'data', 'dead-letter', 'sinks', 'trail.jsonl')),
      (records) => records.length === 1,
    );
    // The sink's one destination is InfluxDB: it stored the point, which is what is kept.
    expect(letters[0]).toMatchObject({
      sink: 'trail',
      output: 'influxdb',
      reason: 'refused',
      code: 'REJECTED',
      auditID: bad.auditID,
    });
    expect(letters[0]?.event).toBeUndefined();
    expect(letters[0]?.point).toContain(`resource_full="${'r'.repeat(70_000)}"`);
    expect(letters[0]?.message).toContain('field type conflict');
    // Exported as line protocol, the point is written as it is once the cause is fixed: here,
    // into a bucket without the conflicting field.
    const exported = await runCli([
      'dead-letter',
      'export',
      '--data-dir',
      join(dir, 'data'),
      '--sink',
      'trail',
      '--format',
      'line-protocol',
    ]);
    expect(exported.stdout).toBe(`${letters[0]?.point}\n`);
    const fixed = `${bucket}-fixed`;
    await influx.createBucket(fixed);
    const replayed = await fetch(
      `${influx.url}/api/v2/write?org=${influx.org}&bucket=${fixed}&precision=ns`,
      {
        method: 'POST',
        headers: { authorization: `Token ${influx.token}` },
        body: exported.stdout,
      },
    );
    expect(replayed.status).toBe(204);
    expect(await written(run, fixed)).toEqual(new Set([bad.auditID]));
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toContain(
      'kube_audit_sink_dead_letter_events_total{sink="AuditSink/trail",output="influxdb",reason="refused"} 1',
    );
    expect(metrics).not.toMatch(
      /kube_audit_sink_dropped_events_total\{[^}]*reason="rejected"\} [1-9]/,
    );
    // Logged at warn by auditID, without the event's contents.
    const warning = running
      .log()
      .split('\n')
      .find((line) => line.includes('set aside as dead letters'));
    expect(warning).toContain(bad.auditID);
    expect(warning).not.toContain('r'.repeat(1_000));

    // The sink keeps flowing.
    expect((await post(url, goodEvents('after-conflict', 101))).status).toBe(200);
    await untilWritten('after-conflict', 101, bucket);
  });
});

/** Runs the built CLI. */
async function runCli(args: readonly string[]): Promise<{ stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [MAIN, ...args], { maxBuffer: 16 * 1024 * 1024 });
}

/** The records of a dead-letter file. */
async function deadLetters(path: string): Promise<DeadLetterRecord[]> {
  const records: DeadLetterRecord[] = [];
  for await (const line of readDeadLetters(path)) if (line.ok) records.push(line.record);
  return records;
}
