// The line-protocol encoder as a pure function: tag set, fields and their types, tags written as
// fields, static tags, escaping, the size limits of fields and of the series key, timestamps and
// their collision slots. Starts no process; test/integration/influxdb/escaping.test.ts checks the
// same rules against a real influxd.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type AuditEvent, type JsonValue, POINT_TIME_RANGE } from '../../../src/audit/types.ts';
import {
  CUT_MARKER,
  escapeMeasurement,
  escapeTag,
  LineProtocolEncoder,
  MAX_FIELD_BYTES,
  MAX_SERIES_KEY_BYTES,
  MAX_TAG_VALUE_BYTES,
  type PointSchema,
  PointTimestamps,
  quote,
  eventHashOf,
} from '../../../src/outputs/influxdb/line-protocol.ts';
import { FIELD_KEYS, TAG_NAMES } from '../../../src/outputs/influxdb/schema.ts';
import { OutputError } from '../../../src/outputs/types.ts';
import { auditEvent as event } from '../../support/events.ts';
import { fieldsOf, seriesOf, tagAsStored, tagsOf, timeOf } from '../../support/line-protocol.ts';
import { recordedEvents } from '../../support/recorded.ts';

/** Real events recorded from kube-apiserver 1.20. */
const RECORDED: AuditEvent[] = recordedEvents();

const SCHEMA: PointSchema = {
  measurement: 'kubernetes_audit',
  tags: TAG_NAMES,
  staticTags: {},
  sink: 'audit/trail',
};

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

  it('writes only the fields listed in fields, audit_id always and in the schema order', () => {
    const encoder = new LineProtocolEncoder({
      ...SCHEMA,
      tags: ['verb', 'sink'],
      fields: ['user', 'request_uri', 'latency_ms', 'namespace'],
    });
    const { series, fields } = parts(encoder.encode(event()));
    expect(series).toBe('kubernetes_audit,sink=audit/trail,verb=update');
    expect(fields).toBe(
      'audit_id="0b6ad7a4-6c4e-4f3c-9a4e-2f0c1d1e2a3b",' +
        'request_uri="/apis/apps/v1/namespaces/shop/deployments/web/scale",latency_ms=2.5,' +
        'namespace="shop",user="alice"',
    );
    const only = new LineProtocolEncoder({ ...SCHEMA, fields: [] });
    expect(parts(only.encode(event())).fields).toBe(
      'audit_id="0b6ad7a4-6c4e-4f3c-9a4e-2f0c1d1e2a3b"',
    );
  });

  it('keeps a selected field cut with its _bytes, and a cut tag whole in _full whatever fields lists', () => {
    const encoder = new LineProtocolEncoder({
      ...SCHEMA,
      fields: ['user_agent'],
      maxFieldBytes: 40,
      maxTagValueBytes: 24,
    });
    const resource = 'r'.repeat(40);
    const line = encoder.encode(event({ userAgent: 'u'.repeat(50), objectRef: { resource } }));
    expect(parts(line).series).toContain(`,resource=${'r'.repeat(21)}${CUT_MARKER},`);
    expect(parts(line).fields).toBe(
      `audit_id="0b6ad7a4-6c4e-4f3c-9a4e-2f0c1d1e2a3b",user_agent="${'u'.repeat(40)}",` +
        `user_agent_bytes=50i,resource_full="${resource}"`,
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

const bytes = (text: string) => Buffer.byteLength(text);

describe('tag values too long for the series key', () => {
  it('cuts a 70,000-character resource to 4,096 bytes with a marker and keeps it whole in resource_full', () => {
    const resource = 'r'.repeat(70_000);
    const line = new LineProtocolEncoder(SCHEMA).encode(
      event({ objectRef: { resource, namespace: 'shop' } }),
    );
    const series = seriesOf(line);
    expect(bytes(series)).toBeLessThanOrEqual(MAX_SERIES_KEY_BYTES);
    const tag = tagsOf(series).get('resource') as string;
    expect(bytes(tag)).toBe(MAX_TAG_VALUE_BYTES);
    expect(tag).toBe(`${'r'.repeat(MAX_TAG_VALUE_BYTES - 3)}${CUT_MARKER}`);
    expect(fieldsOf(line).get('resource_full')).toBe(resource);
    expect(tagsOf(series).get('namespace')).toBe('shop');
    expect(line).not.toContain('namespace_full');
  });

  it('keeps a tag of exactly the limit whole, and cuts one byte more', () => {
    const encoder = new LineProtocolEncoder(SCHEMA);
    const exact = 'u'.repeat(MAX_TAG_VALUE_BYTES);
    const whole = encoder.encode(event({ user: { username: exact } }));
    expect(tagsOf(seriesOf(whole)).get('user')).toBe(exact);
    expect(whole).not.toContain('user_full');
    const over = encoder.encode(event({ user: { username: `${exact}u` } }));
    expect(tagsOf(seriesOf(over)).get('user')).toBe(`${'u'.repeat(MAX_TAG_VALUE_BYTES - 3)}…`);
    expect(fieldsOf(over).get('user_full')).toBe(`${exact}u`);
  });

  it('counts escapes in the limit: a value of commas is cut at half as many characters', () => {
    const encoder = new LineProtocolEncoder({ ...SCHEMA, maxTagValueBytes: 13 });
    const series = seriesOf(encoder.encode(event({ user: { username: ',,,,,,,,,,' } })));
    expect(series).toContain(',user=\\,\\,\\,\\,\\,…,');
    expect(tagsOf(series).get('user')).toBe(',,,,,…');
  });

  it.each([
    ['three-byte characters', '€'.repeat(10), '€€€'],
    ['four-byte characters (surrogate pairs)', '😀'.repeat(10), '😀😀'],
    ['a mix', 'a€😀€😀', 'a€😀'],
  ])('never cuts inside a character: %s', (_, username, kept) => {
    const encoder = new LineProtocolEncoder({ ...SCHEMA, maxTagValueBytes: 12 });
    const tag = tagsOf(seriesOf(encoder.encode(event({ user: { username } })))).get('user');
    expect(tag).toBe(`${kept}…`);
    expect(tag?.isWellFormed()).toBe(true);
  });

  it('leaves a backslash before the marker as it is, since the marker is no separator', () => {
    const encoder = new LineProtocolEncoder({ ...SCHEMA, maxTagValueBytes: 8 });
    const tag = tagsOf(seriesOf(encoder.encode(event({ user: { username: 'ab\\cdefghij' } }))));
    expect(tag.get('user')).toBe('ab\\…');
  });

  it('gives every tag a smaller share when static tags and the measurement take much of the key', () => {
    const staticTags = { cluster: 'c'.repeat(30_000) };
    const encoder = new LineProtocolEncoder({ ...SCHEMA, staticTags });
    const fixed = bytes('kubernetes_audit') + bytes(`,cluster=${staticTags.cluster}`);
    const keys = TAG_NAMES.reduce((sum, tag) => sum + 2 + tag.length, 0);
    expect(encoder.maxTagValueBytes).toBe(
      Math.floor((MAX_SERIES_KEY_BYTES - fixed - keys) / TAG_NAMES.length),
    );
    expect(encoder.maxTagValueBytes).toBeLessThan(MAX_TAG_VALUE_BYTES);
  });

  it('keeps the whole series key within 65,535 bytes when every tag is far too long', () => {
    const long = (c: string) => c.repeat(100_000);
    const encoder = new LineProtocolEncoder({
      ...SCHEMA,
      sink: long('s'),
      staticTags: { cluster: 'prod-eu' },
    });
    const line = encoder.encode(
      event({
        level: 'Request',
        verb: long('\\'),
        user: { username: long('😀') },
        objectRef: {
          apiGroup: long(','),
          apiVersion: long('\n'),
          resource: long('€'),
          subresource: long(' '),
          namespace: long('='),
          name: 'web',
        },
        annotations: { 'authorization.k8s.io/decision': long('\\,') },
      }),
    );
    const series = seriesOf(line);
    expect(bytes(series)).toBeLessThanOrEqual(MAX_SERIES_KEY_BYTES);
    expect(bytes(series)).toBeGreaterThan(MAX_SERIES_KEY_BYTES / 3);
    for (const tag of [
      'verb',
      'user',
      'api_group',
      'api_version',
      'resource',
      'subresource',
      'namespace',
      'decision',
      'sink',
    ]) {
      expect(line, tag).toContain(`,${tag}_full="`);
    }
    expect(line).not.toContain('level_full');
    expect(fieldsOf(line).get('namespace_full')).toBe(long('='));
  });

  it('does not cut a tag written as a field: only the 1 MiB field limit applies there', () => {
    const encoder = new LineProtocolEncoder({ ...SCHEMA, tags: ['verb', 'sink'] });
    const resource = 'r'.repeat(70_000);
    const line = encoder.encode(event({ objectRef: { resource } }));
    expect(fieldsOf(line).get('resource')).toBe(resource);
    expect(line).not.toContain('resource_full');
  });

  it('cuts a whole value above 1 MiB in its _full field too, and records its size', () => {
    const resource = 'r'.repeat(MAX_FIELD_BYTES + 10);
    const line = new LineProtocolEncoder(SCHEMA).encode(event({ objectRef: { resource } }));
    expect(fieldsOf(line).get('resource_full')).toHaveLength(MAX_FIELD_BYTES);
    expect(line).toContain(`,resource_full_bytes=${MAX_FIELD_BYTES + 10}i`);
  });

  it('reads back as a prefix of the value, cut between characters, with the marker', () => {
    const limit = 24;
    const encoder = new LineProtocolEncoder({ ...SCHEMA, maxTagValueBytes: limit });
    const text = fc.string({
      unit: fc.oneof(
        fc.constantFrom(',', '=', ' ', '\\', '\n', '\r', '"', '€', '😀', '\ud800', 'é'),
        fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
      ),
      minLength: 1,
      maxLength: 40,
    });
    fc.assert(
      fc.property(text, (username) => {
        const line = encoder.encode(event({ user: { username } }));
        const tag = tagsOf(seriesOf(line)).get('user') as string;
        expect(tag.isWellFormed()).toBe(true);
        if (!line.includes(',user_full=')) {
          expect(tag).toBe(tagAsStored(username));
          return;
        }
        expect(bytes(escapeTag(`${tag.slice(0, -1)}`))).toBeLessThanOrEqual(limit);
        expect(fieldsOf(line).get('user_full')).toBe(username.toWellFormed());
        // Some prefix of the value, between code points, is what the tag holds.
        const chars = [...username];
        const prefixes = chars.map((_, n) => tagAsStored(`${chars.slice(0, n).join('')}…`));
        expect(prefixes).toContain(tag);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('field keys', () => {
  it('writes only the keys FIELD_KEYS lists, which set the series key limit', () => {
    const encoder = new LineProtocolEncoder({ ...SCHEMA, tags: ['sink'], maxFieldBytes: 4 });
    const long = 'x'.repeat(70_000);
    const line = encoder.encode(
      event({ user: { username: long, groups: ['g'] }, impersonatedUser: { username: long } }),
    );
    const keys = [...fieldsOf(line).keys()];
    expect(keys).toContain('impersonated_user_bytes');
    for (const key of keys) expect(FIELD_KEYS).toContain(key);
    expect(MAX_SERIES_KEY_BYTES).toBe(65_535 - '#!~#'.length - 'impersonated_user_bytes'.length);
  });
});

describe('events that did not pass the checks of audit/parse.ts', () => {
  it.each([
    ['a responseStatus.reason that is a number', { responseStatus: { code: 500, reason: 42 } }],
    ['a stageTimestamp after 2262', { stageTimestamp: '2300-01-01T00:00:00Z' }],
    ['a stageTimestamp before 1677', { stageTimestamp: '1600-01-01T00:00:00Z' }],
    ['a stageTimestamp that is not RFC 3339', { stageTimestamp: 'yesterday' }],
    ['a user that is missing', { user: undefined }],
  ])('fails with a non-retryable UNENCODABLE error for %s', (_, overrides) => {
    const bad = { ...event(), ...overrides } as unknown as AuditEvent;
    let error: unknown;
    try {
      new LineProtocolEncoder(SCHEMA).encode(bad);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(OutputError);
    expect(error).toMatchObject({ code: 'UNENCODABLE', retryable: false });
    expect((error as Error).message).toContain(`event "${bad.auditID}" cannot be written`);
  });

  it('writes the first and the last microsecond of POINT_TIME_RANGE', () => {
    const encoder = new LineProtocolEncoder(SCHEMA);
    const first = encoder.encode(event({ stageTimestamp: POINT_TIME_RANGE.earliest }));
    const last = encoder.encode(event({ stageTimestamp: POINT_TIME_RANGE.latest }));
    const slot = (line: string, micros: bigint) => timeOf(line) - micros * 1000n;
    expect(slot(first, POINT_TIME_RANGE.earliestMicros)).toBeGreaterThanOrEqual(0n);
    expect(slot(first, POINT_TIME_RANGE.earliestMicros)).toBeLessThan(1000n);
    expect(slot(last, POINT_TIME_RANGE.latestMicros)).toBeGreaterThanOrEqual(0n);
    expect(slot(last, POINT_TIME_RANGE.latestMicros)).toBeLessThan(1000n);
  });

  it('puts the slot after the microsecond before 1970 too, not before it', () => {
    const line = new LineProtocolEncoder(SCHEMA).encode(
      event({ stageTimestamp: '1969-12-31T23:59:59.999999Z' }),
    );
    expect(timeOf(line)).toBeGreaterThanOrEqual(-1000n);
    expect(timeOf(line)).toBeLessThan(0n);
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

  it('writes JSON fields (groups, annotations, bodies) as their JSON text quoted as a string field', () => {
    // Strings of every kind of character: control characters, lone surrogates, quotes, backslashes.
    const text = fc.string({ unit: 'binary', maxLength: 12 });
    fc.assert(
      fc.property(
        fc.array(text, { maxLength: 3 }),
        fc.dictionary(text, text, { maxKeys: 3 }),
        fc.jsonValue({ maxDepth: 3, stringUnit: 'binary' }) as fc.Arbitrary<JsonValue>,
        (groups, annotations, body) => {
          const line = new LineProtocolEncoder(SCHEMA).encode(
            event({
              user: { username: 'alice', groups },
              annotations,
              requestObject: body,
              responseObject: { body },
            }),
          );
          for (const [key, value] of [
            ['user_groups', groups],
            ['annotations', annotations],
            ['request_object', body],
            ['response_object', { body }],
          ] as const) {
            expect(line).toContain(`,${key}=${quote(JSON.stringify(value))}`);
          }
        },
      ),
    );
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

/**
 * Event keys whose hashed slots are equal, found by trying (about 40 tries for a pair); with
 * `stage`, auditIDs whose events of that stage hash to one slot.
 */
function collidingKeys(count: number, stage?: string): string[] {
  const probe = new PointTimestamps();
  const bySlot = new Map<number, string[]>();
  for (let i = 0; ; i++) {
    const key = `event-${i}`;
    // A fresh bucket per key: the answer is the key's hashed slot.
    const slot =
      stage === undefined
        ? probe.slot(`series-${i}`, '1', key)
        : probe.slotInSeries(i, '1', eventHashOf(key, stage));
    const keys = bySlot.get(slot) ?? [];
    keys.push(key);
    bySlot.set(slot, keys);
    if (keys.length === count) return keys;
  }
}

describe('PointTimestamps', () => {
  it('gives the slot of the auditID and stage, hashed in one pass, that their joined key gives', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (auditID, stage) => {
        const joined = new PointTimestamps().slot('s', '1', `${auditID}\u0000${stage}`);
        const apart = new PointTimestamps().slotInSeries(0, '1', eventHashOf(auditID, stage));
        expect(apart).toBe(joined);
      }),
      { numRuns: 2000 },
    );
    // Slots are part of what is stored: a retried event must land where an earlier version put it.
    expect(new PointTimestamps().slot('s', '1', 'event-0\u0000ResponseComplete')).toBe(
      new PointTimestamps().slotInSeries(0, '1', eventHashOf('event-0', 'ResponseComplete')),
    );
    expect(eventHashOf('5b46c944-305e-45a0-93cd-c2f87c45e9bc', 'ResponseComplete')).toBe(
      3_325_091_349_578_449,
    );
  });

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

  it('tells series apart by their event tags, whichever tags hold the values, through the encoder', () => {
    // auditIDs whose events hash to one slot: only their bucket keeps them apart.
    const stage = 'ResponseComplete';
    const [a, b] = collidingKeys(2, stage) as [string, string];
    const nanos = (line: string) => timeOf(line) % 1000n;
    const at = { stage, stageTimestamp: '2026-11-22T04:08:57.440160Z' } as const;
    const ref = { resource: 'pods', namespace: 'x', apiVersion: 'v1' };

    // One series: the second event moves to the next slot, on a new encoder with the same schema too.
    const shared = new PointTimestamps();
    const first = nanos(
      new LineProtocolEncoder(SCHEMA, shared).encode(event({ ...at, auditID: a })),
    );
    const next = nanos(
      new LineProtocolEncoder(SCHEMA, shared).encode(event({ ...at, auditID: b })),
    );
    expect(next).toBe((first + 1n) % 1000n);

    // Series that differ in a value, in which tag holds a value, or in a static tag: each its own.
    for (const other of [
      { verb: 'delete' },
      { objectRef: { ...ref, namespace: '', subresource: 'x' } },
      { objectRef: { ...ref, namespace: 'xx' } },
    ]) {
      const slots = new PointTimestamps();
      const encoder = new LineProtocolEncoder(SCHEMA, slots);
      expect(nanos(encoder.encode(event({ ...at, auditID: a, objectRef: ref })))).toBe(first);
      expect(nanos(encoder.encode(event({ ...at, auditID: b, ...other })))).toBe(first);
    }
    // Values written alike (a lone surrogate becomes U+FFFD, and so does a trailing backslash) are
    // one series however they came: the second event moves on rather than overwrite the first.
    const alike: [string, string][] = [
      ['x\uD800', 'x\uDBFF'],
      ['x\\', 'x\uFFFD'],
    ];
    for (const [x, y] of alike) {
      const encoder = new LineProtocolEncoder(SCHEMA, new PointTimestamps());
      const one = encoder.encode(event({ ...at, auditID: a, objectRef: { ...ref, namespace: x } }));
      const two = encoder.encode(event({ ...at, auditID: b, objectRef: { ...ref, namespace: y } }));
      expect(seriesOf(two)).toBe(seriesOf(one));
      expect(nanos(two)).toBe((nanos(one) + 1n) % 1000n);
    }
    const slots = new PointTimestamps();
    new LineProtocolEncoder(SCHEMA, slots).encode(event({ ...at, auditID: a }));
    const elsewhere = new LineProtocolEncoder({ ...SCHEMA, staticTags: { zone: 'b' } }, slots);
    expect(nanos(elsewhere.encode(event({ ...at, auditID: b })))).toBe(first);
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

  it('answers as a plain map of buckets would, through growth, crowded buckets and forgetting', () => {
    // The semantics without the table: buckets (series, microsecond) of slot -> event, in
    // creation order, the oldest forgotten while more than `max` events are remembered.
    function model(max: number) {
      const buckets = new Map<string, Map<number, number>>();
      let size = 0;
      return {
        slot(series: number, micros: string, event: number): number {
          const start = (event % 0x1_0000_0000) % 1000;
          const key = `${series}/${micros}`;
          let bucket = buckets.get(key);
          let slot = start;
          if (bucket === undefined) {
            bucket = new Map();
            buckets.set(key, bucket);
          } else {
            for (let i = 0; i < 1000; i++) {
              slot = (start + i) % 1000;
              const holder = bucket.get(slot);
              if (holder === event) return slot;
              if (holder === undefined) break;
            }
          }
          bucket.set(slot, event);
          size++;
          for (const [oldest, forgotten] of buckets) {
            if (size <= max) break;
            buckets.delete(oldest);
            size -= forgotten.size;
          }
          return slot;
        },
        get size() {
          return size;
        },
      };
    }
    // Events whose hashed slots collide often: few slots, so that buckets crowd.
    const event = fc.nat({ max: 40 }).map((n) => (n % 4) + 1000 * n + 0x1_0000_0000 * (n % 7));
    // Series hashes spread as real ones are (small ones would share buckets' hashes).
    const series = fc.nat({ max: 12 }).map((n) => Math.imul(n + 1, 0x9e3779b1) >>> 0);
    const op = fc.tuple(series, fc.nat({ max: 30 }), event);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.array(op, { minLength: 50, maxLength: 600, size: 'max' }),
        (max, ops) => {
          const slots = new PointTimestamps(max);
          const expected = model(max);
          for (const [hash, micros, e] of ops) {
            expect(slots.slotInSeries(hash, String(micros), e)).toBe(
              expected.slot(hash, String(micros), e),
            );
            expect(slots.size).toBe(expected.size);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('stays within its bound when one bucket holds many events', () => {
    const slots = new PointTimestamps(500);
    for (let i = 0; i < 999; i++) slots.slot('s', '1', `e${i}`);
    for (let i = 0; i < 10; i++) slots.slot('s', '2', `f${i}`);
    expect(slots.size).toBeLessThanOrEqual(500);
  });
});
