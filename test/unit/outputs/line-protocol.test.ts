// The line-protocol encoder as a pure function: tag set, fields and their types, tags written as
// fields, static tags, escaping, the size limit, timestamps and their collision slots. Starts no
// process; test/integration/influxdb/escaping.test.ts checks the same rules against a real influxd.
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/types.ts';
import {
  escapeMeasurement,
  escapeTag,
  LineProtocolEncoder,
  MAX_FIELD_BYTES,
  type PointSchema,
  PointTimestamps,
  quote,
} from '../../../src/outputs/influxdb/line-protocol.ts';
import { TAG_NAMES } from '../../../src/sinks/types.ts';
import { recordedEvents } from '../../support/recorded.ts';

/** Real events recorded from kube-apiserver 1.20. */
const RECORDED: AuditEvent[] = recordedEvents();

const SCHEMA: PointSchema = {
  measurement: 'kubernetes_audit',
  tags: TAG_NAMES,
  staticTags: {},
  sink: 'audit/trail',
};

/** A small event with every field the schema reads. */
function event(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    level: 'Request',
    auditID: '0b6ad7a4-6c4e-4f3c-9a4e-2f0c1d1e2a3b',
    stage: 'ResponseComplete',
    requestURI: '/apis/apps/v1/namespaces/shop/deployments/web/scale',
    verb: 'update',
    user: { username: 'alice', groups: ['dev', 'system:authenticated'] },
    impersonatedUser: { username: 'bob' },
    sourceIPs: ['10.0.0.1', '10.0.0.2'],
    userAgent: 'kubectl/v1.35.2',
    objectRef: {
      resource: 'deployments',
      subresource: 'scale',
      namespace: 'shop',
      name: 'web',
      apiGroup: 'apps',
      apiVersion: 'v1',
    },
    responseStatus: { code: 409, reason: 'Conflict' },
    requestObject: { spec: { replicas: 3 } },
    requestReceivedTimestamp: '2026-11-22T04:08:57.000000Z',
    stageTimestamp: '2026-11-22T04:08:57.002500Z',
    annotations: { 'authorization.k8s.io/decision': 'allow' },
    ...overrides,
  };
}

/** The three parts of a line: series key, field set, timestamp (no escaped spaces in these tests). */
function parts(line: string): { series: string; fields: string; time: string } {
  const [series, fields, time] = line.split(' ');
  return { series: series as string, fields: fields as string, time: time as string };
}

describe('LineProtocolEncoder', () => {
  it('writes the documented tags, sorted by key, and the fields with their types', () => {
    const line = new LineProtocolEncoder(SCHEMA).encode(event());
    const { series, fields, time } = parts(line);
    expect(series).toBe(
      'kubernetes_audit,api_group=apps,api_version=v1,code=409,decision=allow,level=Request,' +
        'namespace=shop,resource=deployments,sink=audit/trail,stage=ResponseComplete,' +
        'subresource=scale,user=alice,verb=update',
    );
    expect(fields).toBe(
      [
        'audit_id="0b6ad7a4-6c4e-4f3c-9a4e-2f0c1d1e2a3b"',
        'request_uri="/apis/apps/v1/namespaces/shop/deployments/web/scale"',
        'name="web"',
        'user_groups="[\\"dev\\",\\"system:authenticated\\"]"',
        'impersonated_user="bob"',
        'source_ip="10.0.0.1,10.0.0.2"',
        'user_agent="kubectl/v1.35.2"',
        'latency_ms=2.5',
        'reason="Conflict"',
        'annotations="{\\"authorization.k8s.io/decision\\":\\"allow\\"}"',
        'request_object="{\\"spec\\":{\\"replicas\\":3}}"',
      ].join(','),
    );
    expect(time.slice(0, -3)).toBe('1795320537002500');
  });

  it('writes the recorded RequestResponse events with both objects as JSON text', () => {
    const encoder = new LineProtocolEncoder(SCHEMA);
    for (const recorded of RECORDED) {
      const line = encoder.encode(recorded);
      expect(line).not.toContain('\n');
      if (recorded.requestObject !== undefined) {
        expect(line).toContain(`request_object=${quote(JSON.stringify(recorded.requestObject))}`);
      }
      if (recorded.responseObject !== undefined) {
        expect(line).toContain(`response_object=${quote(JSON.stringify(recorded.responseObject))}`);
      }
    }
  });

  it('omits the tags and fields an event does not have', () => {
    const line = new LineProtocolEncoder(SCHEMA).encode({
      level: 'Metadata',
      auditID: 'a1',
      stage: 'ResponseComplete',
      requestURI: '/healthz',
      verb: 'get',
      user: {},
      stageTimestamp: '2026-11-22T04:08:57.440160Z',
    });
    expect(line).toMatch(
      /^kubernetes_audit,level=Metadata,sink=audit\/trail,stage=ResponseComplete,verb=get audit_id="a1",request_uri="\/healthz" 1795320537440160\d{3}$/,
    );
  });

  it('leaves out empty strings, as tags and as fields', () => {
    const line = new LineProtocolEncoder(SCHEMA).encode(
      event({ userAgent: '', user: { username: '', groups: [] }, sourceIPs: [], annotations: {} }),
    );
    expect(line).not.toContain('user_agent=');
    expect(line).not.toContain('source_ip=');
    expect(line).toContain(',user_groups="[]",');
    expect(line).toContain(',annotations="{}",');
    expect(parts(line).series).not.toContain(',user=');
  });

  it('writes the tags left out of an overridden tag set as string fields of the same name', () => {
    const encoder = new LineProtocolEncoder({ ...SCHEMA, tags: ['verb', 'sink'] });
    const { series, fields } = parts(encoder.encode(event()));
    expect(series).toBe('kubernetes_audit,sink=audit/trail,verb=update');
    expect(fields).toMatch(
      /,level="Request",stage="ResponseComplete",api_group="apps",api_version="v1",resource="deployments",subresource="scale",namespace="shop",user="alice",code="409",decision="allow"$/,
    );
  });

  it('adds static tags in key order among the schema tags', () => {
    const encoder = new LineProtocolEncoder({
      ...SCHEMA,
      tags: ['level', 'verb'],
      staticTags: { zone: 'b', cluster: 'prod-eu', environment: 'x=y' },
    });
    expect(parts(encoder.encode(event())).series).toBe(
      'kubernetes_audit,cluster=prod-eu,environment=x\\=y,level=Request,verb=update,zone=b',
    );
  });

  it('gives a retried event the same line, and a different event of the same microsecond a different time', () => {
    const encoder = new LineProtocolEncoder(SCHEMA);
    const first = encoder.encode(event());
    const other = encoder.encode(event({ auditID: 'another' }));
    expect(encoder.encode(event())).toBe(first);
    expect(new LineProtocolEncoder(SCHEMA).encode(event())).toBe(first);
    const time = (line: string) => line.slice(line.lastIndexOf(' ') + 1);
    expect(time(other)).not.toBe(time(first));
    expect(time(other).slice(0, -3)).toBe(time(first).slice(0, -3));
  });

  it('cuts a string field at the size limit on a character boundary and records the full size', () => {
    const encoder = new LineProtocolEncoder({ ...SCHEMA, maxFieldBytes: 10 });
    // "€" is 3 bytes: 9 bytes fit, the 4th would end at byte 12.
    const line = encoder.encode(event({ userAgent: '€€€€€', requestObject: 'abc' }));
    expect(line).toContain(',user_agent="€€€",user_agent_bytes=15i,');
    expect(line).toContain(',request_object="\\"abc\\"" ');
  });

  it('keeps fields up to MAX_FIELD_BYTES whole by default', () => {
    const big = 'x'.repeat(MAX_FIELD_BYTES - 2); // JSON adds the two quotes
    const line = new LineProtocolEncoder(SCHEMA).encode(event({ requestObject: big }));
    expect(line).toContain(`request_object="\\"${big}\\""`);
    expect(line).not.toContain('request_object_bytes');
    const over = new LineProtocolEncoder(SCHEMA).encode(event({ requestObject: `${big}y` }));
    expect(over).toContain(`,request_object_bytes=${MAX_FIELD_BYTES + 1}i`);
  });
});

describe('escaping', () => {
  it.each([
    ['plain', 'plain'],
    ['a b', 'a\\ b'],
    ['a,b', 'a\\,b'],
    ['a=b', 'a\\=b'],
    ['"quoted"', '"quoted"'],
    ['back\\slash', 'back\\slash'],
    ['back\\,comma', 'back\ufffd\\,comma'],
    ['two\\\\ before space', 'two\ufffd\ufffd\\ before\\ space'],
    ['trailing\\', 'trailing\ufffd'],
    ['domain\\user', 'domain\\user'],
    ['break\\\n', 'break\\\\n'],
    ['line\nbreak', 'line\\nbreak'],
    ['carriage\rreturn', 'carriage\\rreturn'],
    ['tab\there', 'tab\there'],
    ['ünïcødé ☃ 😀', 'ünïcødé\\ ☃\\ 😀'],
    ['lone \ud800 surrogate', 'lone\\ \ufffd\\ surrogate'],
  ])('escapes the tag value %j as %j', (value, escaped) => {
    expect(escapeTag(value)).toBe(escaped);
  });

  it.each([
    ['plain', '"plain"'],
    ['', '""'],
    ['say "hi"', '"say \\"hi\\""'],
    ['back\\slash', '"back\\\\slash"'],
    ['trailing\\', '"trailing\\\\"'],
    ['multi\nline\r\n', '"multi\nline\r\n"'],
    ['a,b=c d', '"a,b=c d"'],
    ['lone \udfff', '"lone \ufffd"'],
  ])('quotes the string field %j as %j', (value, quoted) => {
    expect(quote(value)).toBe(quoted);
  });

  it.each([
    ['kubernetes_audit', 'kubernetes_audit'],
    ['audit log', 'audit\\ log'],
    ['a,b', 'a\\,b'],
    ['a=b"c', 'a\\=b\\"c'],
    ['ends\\', 'ends\ufffd'],
    ['a\\"b', 'a\ufffd\\"b'],
  ])('escapes the measurement %j as %j', (value, escaped) => {
    expect(escapeMeasurement(value)).toBe(escaped);
  });
});

/** Event keys whose hashed slots are equal, found by trying (about 40 tries for a pair). */
function collidingKeys(count: number): string[] {
  const probe = new PointTimestamps();
  const bySlot = new Map<number, string[]>();
  for (let i = 0; ; i++) {
    const key = `event-${i}`;
    // A fresh bucket per key: the answer is the key's hashed slot.
    const slot = probe.slot(`series-${i}`, '1', key);
    const keys = bySlot.get(slot) ?? [];
    keys.push(key);
    bySlot.set(slot, keys);
    if (keys.length === count) return keys;
  }
}

describe('PointTimestamps', () => {
  it('moves the second of two colliding events to the next slot, and keeps both slots on retry', () => {
    const [a, b] = collidingKeys(2) as [string, string];
    const slots = new PointTimestamps();
    const first = slots.slot('s', '1', a);
    const second = slots.slot('s', '1', b);
    expect(second).toBe((first + 1) % 1000);
    expect(slots.slot('s', '1', b)).toBe(second);
    expect(slots.slot('s', '1', a)).toBe(first);
    expect(slots.size).toBe(2);
  });

  it('keeps colliding events of different series or microseconds at their hashed slot', () => {
    const [a, b] = collidingKeys(2) as [string, string];
    const slots = new PointTimestamps();
    const first = slots.slot('s', '1', a);
    expect(slots.slot('t', '1', b)).toBe(first);
    expect(slots.slot('s', '2', b)).toBe(first);
  });

  it('gives 1,000 different events of one series and microsecond 1,000 different slots', () => {
    const slots = new PointTimestamps();
    const taken = new Set<number>();
    for (let i = 0; i < 1000; i++) taken.add(slots.slot('s', '1', `e${i}`));
    expect(taken.size).toBe(1000);
    // The 1,001st has nowhere to go: it shares its hashed slot (documented limit).
    const extra = slots.slot('s', '1', 'one-too-many');
    expect(extra).toBe(new PointTimestamps().slot('x', '1', 'one-too-many'));
  });

  it('keeps its memory in order while it grows to maxEvents, forgetting the oldest first', () => {
    const slots = new PointTimestamps(5_000);
    const [a, b] = collidingKeys(2) as [string, string];
    const hashed = slots.slot('s', '0', a);
    // Past the first growth steps, and past maxEvents: the bucket of `a` is the oldest.
    for (let i = 1; i < 4_999; i++) slots.slot('s', String(i), `e${i}`);
    expect(slots.slot('s', '0', b)).toBe((hashed + 1) % 1000);
    for (let i = 5_000; i < 5_010; i++) slots.slot('s', String(i), `e${i}`);
    expect(slots.size).toBe(5_000);
    // Forgotten: a colliding event now gets the hashed slot again.
    expect(slots.slot('s', '0', b)).toBe(hashed);
  });

  it('remembers at most maxEvents events, forgetting the oldest buckets first', () => {
    const slots = new PointTimestamps(100);
    const [a, b] = collidingKeys(2) as [string, string];
    const hashed = slots.slot('s', '0', a);
    expect(slots.slot('s', '0', b)).toBe((hashed + 1) % 1000);
    for (let i = 1; i <= 10_000; i++) slots.slot('s', String(i), `e${i}`);
    expect(slots.size).toBe(100);
    // Forgotten: the collided event is back at its hashed slot (the documented residual).
    expect(slots.slot('s', '0', b)).toBe(hashed);
  });

  it('stays within its bound when one bucket holds many events', () => {
    const slots = new PointTimestamps(500);
    for (let i = 0; i < 999; i++) slots.slot('s', '1', `e${i}`);
    for (let i = 0; i < 10; i++) slots.slot('s', '2', `f${i}`);
    expect(slots.size).toBeLessThanOrEqual(500);
  });
});
