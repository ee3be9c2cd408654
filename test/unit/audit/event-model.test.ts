// The Event model as one declaration (EVENT_MODEL): every field it declares is checked when a batch
// is parsed, with a 400 from the receiver naming the item and the field; and whatever parsing
// accepts, everything downstream handles without throwing: the policy, the router with redaction
// and trimming, the spool record, the line-protocol encoder (InfluxDB and file outputs) and the
// webhook output's EventList. The checked paths and the generated events are derived from the
// declaration, so a field added to the model is covered here without editing this file.
// Starts no process: the receiver answers through fastify's inject(), the webhook output posts to
// an HTTP server in this process, the file output writes to a temporary directory.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditParseError, parseAuditPayload } from '../../../src/audit/parse.ts';
import {
  type AuditEvent,
  EVENT_MODEL,
  type FieldDecl,
  type FieldDecls,
  type JsonValue,
  LEVELS,
  POINT_TIME_RANGE,
} from '../../../src/audit/types.ts';
import { LineProtocolFileOutput } from '../../../src/outputs/file/file-output.ts';
import {
  FIELD_KEYS,
  LineProtocolEncoder,
  MAX_FIELD_BYTES,
  type PointSchema,
} from '../../../src/outputs/influxdb/line-protocol.ts';
import { Throttle, WebhookOutput } from '../../../src/outputs/webhook/webhook-output.ts';
import { enforceLevel } from '../../../src/policy/enforce.ts';
import { EventRouting, type RoutingSettings } from '../../../src/sinks/router.ts';
import { SINK_API_VERSION, sinkFromResource } from '../../../src/sinks/spec.ts';
import type { Sink } from '../../../src/sinks/types.ts';
import { TAG_NAMES } from '../../../src/sinks/types.ts';
import { decodeRecord, encodeEvent } from '../../../src/spool/format.ts';
import { fieldsOf, seriesOf, timeOf } from '../../support/line-protocol.ts';
import { recordedEvents } from '../../support/recorded.ts';
import { post, testReceiver } from '../receiver/harness.ts';

/** One field the model declares: its dotted path from the event, and its declaration. */
interface DeclaredPath {
  readonly path: string;
  readonly decl: FieldDecl;
}

/** Every field of `fields`, depth first, objects before their own fields. */
function declaredPaths(fields: FieldDecls, prefix = ''): DeclaredPath[] {
  return Object.entries(fields).flatMap(([name, decl]) => {
    const path = prefix === '' ? name : `${prefix}.${name}`;
    return decl.type === 'object'
      ? [{ path, decl }, ...declaredPaths(decl.fields, path)]
      : [{ path, decl }];
  });
}

const PATHS = declaredPaths(EVENT_MODEL);

/** Values of the wrong JSON type for `decl`, or out of its range, with what each is. */
function wrongValues(decl: FieldDecl): [string, unknown][] {
  const others: [string, unknown][] = [
    ['a number', 42],
    ['a boolean', true],
    ['an array', ['x']],
    ['an object', { x: 'y' }],
    ['a string', 'x'],
  ];
  const except = (...kinds: string[]) => others.filter(([what]) => !kinds.includes(what));
  switch (decl.type) {
    case 'string':
      return [...except('a string'), ...(decl.required === true ? [['empty', '']] : [])] as [
        string,
        unknown,
      ][];
    case 'enum':
      return [...except('a string'), ['a value outside the enum', 'Other']];
    case 'timestamp':
      return [
        ...except('a string'),
        ['not RFC 3339', '2026-11-22 04:08:57'],
        ['a day the month does not have', '2026-02-29T00:00:00Z'],
        ...(decl.pointTime === true
          ? ([
              ['in year 0001', '0001-01-01T00:00:00Z'],
              ['in year 1600', '1600-06-01T12:00:00Z'],
              ['in 1677 before the bound', '1677-09-21T00:12:43.145224999Z'],
              ['in 2262 after the bound', '2262-04-11T23:47:16.854775Z'],
              ['in year 2300', '2300-01-01T00:00:00Z'],
              ['in year 9999', '9999-12-31T23:59:59.999999999Z'],
            ] as [string, unknown][])
          : []),
      ];
    case 'int32':
      return [
        ...except('a number'),
        ['a fraction', 200.5],
        ['beyond int32', 2 ** 31],
        ['a numeric string', '200'],
      ];
    case 'strings':
      return [...except('an array'), ['an array holding a number', ['a', 5]]];
    case 'stringMap':
      return [...except('an object'), ['an object holding a number', { a: 'b', c: 5 }]];
    case 'stringsMap':
      return [
        ...except('an object'),
        ['an object holding a string', { a: 'b' }],
        ['an object holding an array with a number', { a: ['b', 5] }],
      ];
    case 'object':
      return except('an object');
    case 'json':
      return [];
  }
}

/** A copy of `event` with the field at `path` set to `value` (undefined removes it). */
function withField(event: AuditEvent, path: string, value: unknown): Record<string, unknown> {
  const copy = structuredClone(event) as unknown as Record<string, unknown>;
  const names = path.split('.');
  let at = copy;
  for (const name of names.slice(0, -1)) {
    if (typeof at[name] !== 'object' || at[name] === null) at[name] = {};
    at = at[name] as Record<string, unknown>;
  }
  const last = names.at(-1) as string;
  if (value === undefined) delete at[last];
  else at[last] = value;
  return copy;
}

function eventList(items: unknown[]): string {
  return JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items });
}

/** A recorded event with every declared field present, so each path has a parent to live in. */
const BASE: AuditEvent = (() => {
  const recorded = recordedEvents().find(
    (e) => e.responseStatus !== undefined && e.sourceIPs !== undefined,
  ) as AuditEvent;
  return {
    ...recorded,
    impersonatedUser: { username: 'dev', uid: 'u-2', groups: ['devs'], extra: { a: ['b'] } },
    userAgent: 'kubectl/v1.35.2',
    user: { ...recorded.user, uid: 'u-1', extra: { scopes: ['all'] } },
    objectRef: {
      resource: 'deployments',
      namespace: 'shop',
      name: 'web',
      uid: 'o-1',
      apiGroup: 'apps',
      apiVersion: 'v1',
      resourceVersion: '7',
      subresource: 'scale',
    },
    responseStatus: { code: 200, status: 'Success', message: 'ok', reason: 'Fine' },
    requestObject: { kind: 'Scale', spec: { replicas: 3 } },
    responseObject: { kind: 'Scale', spec: { replicas: 3 } },
    requestReceivedTimestamp: '2026-11-22T04:08:57.000000Z',
    annotations: { 'authorization.k8s.io/decision': 'allow' },
  };
})();

const RECEIVER = testReceiver();

afterAll(async () => {
  await RECEIVER.app.close();
});

describe('the fields EVENT_MODEL declares', () => {
  it('are the fields of audit.k8s.io/v1 Event that the operator reads or keeps typed', () => {
    // The list the documentation gives (ADR 0004); a field added to the model shows up here.
    expect(PATHS.map(({ path, decl }) => `${path}: ${decl.type}`)).toEqual([
      'level: enum',
      'auditID: string',
      'stage: enum',
      'requestURI: string',
      'verb: string',
      'user: object',
      'user.username: string',
      'user.uid: string',
      'user.groups: strings',
      'user.extra: stringsMap',
      'impersonatedUser: object',
      'impersonatedUser.username: string',
      'impersonatedUser.uid: string',
      'impersonatedUser.groups: strings',
      'impersonatedUser.extra: stringsMap',
      'sourceIPs: strings',
      'userAgent: string',
      'objectRef: object',
      'objectRef.resource: string',
      'objectRef.namespace: string',
      'objectRef.name: string',
      'objectRef.uid: string',
      'objectRef.apiGroup: string',
      'objectRef.apiVersion: string',
      'objectRef.resourceVersion: string',
      'objectRef.subresource: string',
      'responseStatus: object',
      'responseStatus.status: string',
      'responseStatus.message: string',
      'responseStatus.reason: string',
      'responseStatus.code: int32',
      'requestObject: json',
      'responseObject: json',
      'requestReceivedTimestamp: timestamp',
      'stageTimestamp: timestamp',
      'annotations: stringMap',
    ]);
  });

  it('are all present in the base event of the table below, which parses', () => {
    const parsed = parseAuditPayload(eventList([BASE, BASE])).events;
    expect(parsed).toEqual([BASE, BASE]);
    for (const { path } of PATHS) {
      expect(
        path.split('.').reduce<unknown>((v, k) => (v as never)[k], BASE),
        path,
      ).toBeDefined();
    }
  });
});

const CASES = PATHS.flatMap(({ path, decl }) => [
  ...wrongValues(decl).map(([what, value]) => ({ path, what, value })),
  ...('required' in decl && decl.required === true
    ? [
        { path, what: 'absent', value: undefined },
        { path, what: 'null', value: null },
      ]
    : []),
]);

describe('a field of the wrong type, or a value no destination can store', () => {
  it.each(CASES)('$path $what: 400 naming items[1].$path', async ({ path, value }) => {
    const body = eventList([BASE, withField(BASE, path, value)]);
    let error: unknown;
    try {
      parseAuditPayload(body);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(AuditParseError);
    const parseError = error as AuditParseError;
    expect(parseError.code).toBe('INVALID_EVENT');
    // The field itself, or the element of an array or map that is wrong.
    expect(parseError.field).toMatch(
      new RegExp(`^items\\[1\\]\\.${path.replaceAll('.', '\\.')}(\\[[^\\]]+\\]){0,2}$`),
    );
    expect(parseError.message.startsWith(`${parseError.field}: `)).toBe(true);

    const response = await post(RECEIVER.app, '/audit/v1/events?timeout=30s', body);
    expect(response.statusCode).toBe(400);
    expect(response.json()).toEqual({ code: 'INVALID_EVENT', message: parseError.message });
  });

  it('names the range InfluxDB can store when it refuses a stageTimestamp', () => {
    const body = eventList([withField(BASE, 'stageTimestamp', '9999-12-31T23:59:59Z')]);
    expect(() => parseAuditPayload(body)).toThrow(
      'items[0].stageTimestamp: unsupported value "9999-12-31T23:59:59Z": must be from ' +
        '1677-09-21T00:12:43.145225Z through 2262-04-11T23:47:16.854774999Z, ' +
        'the times InfluxDB can store',
    );
  });

  it.each([POINT_TIME_RANGE.earliest, POINT_TIME_RANGE.latest, '1677-09-21T00:12:43.145225001Z'])(
    'accepts the stageTimestamp %s, at the bound',
    (stageTimestamp) => {
      const [event] = parseAuditPayload(
        eventList([withField(BASE, 'stageTimestamp', stageTimestamp)]),
      ).events;
      expect(event?.stageTimestamp).toBe(stageTimestamp);
    },
  );

  it('accepts any year Go reads in requestReceivedTimestamp: only latency is computed from it', () => {
    for (const requestReceivedTimestamp of ['0001-01-01T00:00:00Z', '9999-12-31T23:59:59Z']) {
      const body = eventList([
        withField(BASE, 'requestReceivedTimestamp', requestReceivedTimestamp),
      ]);
      expect(parseAuditPayload(body).events).toHaveLength(1);
    }
  });

  it('drops a null responseStatus.reason, as Go decodes it, instead of handing it on', () => {
    const [event] = parseAuditPayload(
      eventList([withField(BASE, 'responseStatus.reason', null)]),
    ).events;
    expect(event?.responseStatus).toEqual({ code: 200, status: 'Success', message: 'ok' });
  });

  it('keeps fields the model does not declare as sent, without checking them', () => {
    const sent = { ...withField(BASE, 'responseStatus.details', { causes: 5 }), extra: [1] };
    const [event] = parseAuditPayload(eventList([sent])).events;
    expect(event).toEqual(sent);
  });
});

// ---- whatever parsing accepts, everything downstream handles ----------------------------------

const jsonValue: fc.Arbitrary<JsonValue> = fc
  .json({ maxDepth: 3 })
  .map((text) => JSON.parse(text) as JsonValue);

/** Strings as they come, and some far longer than any tag may be. */
const text = fc.oneof(
  { arbitrary: fc.string({ unit: 'binary', maxLength: 12 }), weight: 60 },
  { arbitrary: fc.constantFrom('shop', 'system:admin', 'apps', 'v1', ''), weight: 30 },
  {
    arbitrary: fc
      .tuple(
        fc.constantFrom('r', '€', '😀', '\\', ',', ' '),
        fc.integer({ min: 4_000, max: 70_000 }),
      )
      .map(([c, n]) => c.repeat(n)),
    weight: 1,
  },
);

/** Timestamps near and beyond the bounds of POINT_TIME_RANGE, and ordinary ones. */
const timestamp = fc.oneof(
  {
    arbitrary: fc.constantFrom(
      POINT_TIME_RANGE.earliest,
      POINT_TIME_RANGE.latest,
      '1677-09-21T00:12:43.145224192Z',
      '2262-04-11T23:47:16.854775807Z',
      '0001-01-01T00:00:00Z',
      '9999-12-31T23:59:59.999999Z',
      '1969-12-31T23:59:59.999999Z',
      '2026-11-22T04:08:57.440160+01:00',
    ),
    weight: 1,
  },
  {
    arbitrary: fc
      .date({
        min: new Date('1678-01-01T00:00:00Z'),
        max: new Date('2261-12-31T23:59:59Z'),
        noInvalidDate: true,
      })
      .map((d) => d.toISOString()),
    weight: 8,
  },
  {
    arbitrary: fc
      .date({
        min: new Date('0001-01-01T00:00:00Z'),
        max: new Date('9999-12-31T23:59:59Z'),
        noInvalidDate: true,
      })
      .map((d) => d.toISOString()),
    weight: 1,
  },
);

/** A value of the declared type, mostly; sometimes any JSON value, null, or nothing. */
function valueFor(decl: FieldDecl): fc.Arbitrary<unknown> {
  const valid = validFor(decl);
  return fc.oneof(
    { arbitrary: valid, weight: 80 },
    { arbitrary: jsonValue, weight: 1 },
    { arbitrary: fc.constant(null), weight: 1 },
  );
}

function validFor(decl: FieldDecl): fc.Arbitrary<unknown> {
  switch (decl.type) {
    case 'string':
      return decl.required === true ? text.filter((s) => s !== '') : text;
    case 'enum':
      return fc.constantFrom(...decl.values);
    case 'timestamp':
      return timestamp;
    case 'int32':
      return fc.oneof(fc.integer({ min: 100, max: 599 }), fc.integer());
    case 'strings':
      return fc.array(text, { maxLength: 3 });
    case 'stringMap':
      return fc.dictionary(
        fc.oneof(fc.constant('authorization.k8s.io/decision'), fc.string()),
        text,
        {
          maxKeys: 3,
        },
      );
    case 'stringsMap':
      return fc.dictionary(fc.string(), fc.array(text, { maxLength: 2 }), { maxKeys: 2 });
    case 'object':
      return objectOf(decl.fields);
    case 'json':
      return jsonValue;
  }
}

function objectOf(fields: FieldDecls): fc.Arbitrary<Record<string, unknown>> {
  const model = Object.fromEntries(
    Object.entries(fields).map(([name, decl]) => [name, valueFor(decl)]),
  );
  return fc.record(model, { requiredKeys: [] });
}

/** Events generated from the model, over a recorded event so that most fields stay realistic. */
const generatedEvent = fc
  .tuple(fc.constantFrom(...recordedEvents()), objectOf(EVENT_MODEL))
  .map(([recorded, fields]) => ({ ...recorded, ...fields }));

// Sinks that together read every attribute a policy can match, at every level, with redaction on
// and off, and with each point schema: every tag as a tag, tags as fields, static tags.
const SINKS: Sink[] = [
  {
    kind: 'AuditSink',
    namespace: undefined,
    policy: { level: 'RequestResponse', stages: ['ResponseStarted', 'ResponseComplete', 'Panic'] },
  },
  {
    kind: 'AuditPipeline',
    namespace: 'shop',
    policy: { omitManagedFields: true, rules: [{ level: 'RequestResponse' }] },
  },
  {
    // A pipeline in the operator's namespace sees every event, as a cluster-wide sink.
    kind: 'AuditPipeline',
    namespace: 'kube-audit',
    policy: {
      rules: [
        { level: 'None', users: ['system:kube-proxy'], verbs: ['watch'] },
        { level: 'Metadata', userGroups: ['system:nodes'], namespaces: ['kube-system'] },
        { level: 'Request', resources: [{ group: 'apps', resources: ['deployments/scale'] }] },
        {
          level: 'RequestResponse',
          resources: [{ group: '', resources: ['configmaps'], resourceNames: ['settings'] }],
        },
        { level: 'Metadata', nonResourceURLs: ['/healthz*', '/version'] },
        { level: 'Request', omitStages: ['ResponseStarted'] },
      ],
    },
  },
].map(({ kind, namespace, policy }, i) =>
  sinkFromResource(
    {
      apiVersion: SINK_API_VERSION,
      kind,
      metadata: { name: `sink-${i}`, ...(namespace === undefined ? {} : { namespace }) },
      spec: { policy },
    },
    { clusterWideNamespaces: ['kube-audit'], requireDestination: false },
  ),
);

const SCHEMAS: PointSchema[] = [
  { measurement: 'kubernetes_audit', tags: TAG_NAMES, staticTags: {}, sink: 'sink-0' },
  { measurement: 'kubernetes_audit', tags: ['verb', 'sink'], staticTags: {}, sink: 'shop/sink-1' },
  {
    measurement: 'audit',
    tags: TAG_NAMES,
    staticTags: { cluster: 'prod-eu', region: 'e'.repeat(8_000) },
    sink: 'sink-2',
  },
];

// influxd's models.MinNanoTime and MaxNanoTime.
const MIN_NANO = -(2n ** 63n) + 2n;
const MAX_NANO = 2n ** 63n - 2n;

/**
 * What influxd needs to store the point of `line` (measured by
 * test/integration/influxdb/limits.test.ts): the series key, `#!~#` and each field key within
 * 65,535 bytes, the time within int64 nanoseconds less its three reserved values, string fields
 * within 1 MiB, and valid UTF-8.
 */
function expectStorable(line: string): void {
  const problems: string[] = [];
  if (!line.isWellFormed()) problems.push('not well-formed');
  const series = Buffer.byteLength(seriesOf(line));
  const time = timeOf(line);
  if (time < MIN_NANO || time > MAX_NANO) problems.push(`time ${time}`);
  for (const [key, value] of fieldsOf(line)) {
    if (!KNOWN_FIELDS.has(key)) problems.push(`unknown field ${key}`);
    if (series + 4 + Buffer.byteLength(key) > 65_535) problems.push(`key of ${key} too long`);
    if (Buffer.byteLength(value) > MAX_FIELD_BYTES) problems.push(`${key} longer than 1 MiB`);
  }
  expect(problems).toEqual([]);
}

const KNOWN_FIELDS = new Set(FIELD_KEYS);

let webhookServer: Server;
let webhookBodies: string[] = [];
let dataDir: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'kao-event-model-'));
  webhookServer = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      webhookBodies.push(body);
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => webhookServer.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  await new Promise((resolve) => webhookServer.close(resolve));
  await rm(dataDir, { recursive: true, force: true });
});

describe('events generated from the model with any value in any declared field', () => {
  it('are refused naming a declared field, or handled by everything downstream without an error', async () => {
    const declared = new Set(PATHS.map(({ path }) => path));
    const seen = { refused: 0, accepted: 0, cut: 0 };
    const kept: AuditEvent[] = [];
    fc.assert(
      fc.property(fc.array(generatedEvent, { minLength: 1, maxLength: 2 }), (items) => {
        let events: AuditEvent[];
        try {
          events = parseAuditPayload(eventList(items)).events;
        } catch (err) {
          expect(err).toBeInstanceOf(AuditParseError);
          const { code, field } = err as AuditParseError;
          expect(code).toBe('INVALID_EVENT');
          const path = /^items\[\d+\]\.([^[]+)/.exec(field)?.[1];
          expect(declared, field).toContain(path);
          seen.refused++;
          return;
        }
        seen.accepted++;
        const encoders = SCHEMAS.map((schema) => new LineProtocolEncoder(schema));
        for (const event of events) {
          for (const level of LEVELS.slice(1)) enforceLevel(event, level, true);
          for (const settings of [
            { allowSecretPayloads: false },
            { allowSecretPayloads: true },
          ] satisfies RoutingSettings[]) {
            const routing = new EventRouting(event, settings);
            for (const sink of SINKS) {
              const outcome = routing.route(sink);
              if (!outcome.kept) continue;
              for (const encoder of encoders) {
                const line = encoder.encode(outcome.event);
                expectStorable(line);
                if (line.includes('_full="')) seen.cut++;
              }
              const spooled = encodeEvent(outcome.event);
              const record = Buffer.from(`${spooled.json}\n`);
              expect(decodeRecord(record, 0, record.length)).toEqual(outcome.event);
            }
          }
          if (kept.length < 200) kept.push(event);
        }
      }),
      { numRuns: 250 },
    );
    // Both outcomes must be common, or the property checks less than it seems to.
    expect(seen.refused).toBeGreaterThan(50);
    expect(seen.accepted).toBeGreaterThan(50);
    expect(seen.cut).toBeGreaterThan(10);

    // The webhook output forwards what it got as an EventList that parses to the same events.
    webhookBodies = [];
    const { port } = webhookServer.address() as AddressInfo;
    const webhook = new WebhookOutput(
      { url: `http://127.0.0.1:${port}/audit`, qps: 1000, burst: 1000 },
      { throttle: new Throttle(1000, 1000) },
    );
    await webhook.write(kept);
    expect(webhookBodies).toHaveLength(1);
    expect(parseAuditPayload(webhookBodies[0] as string).events).toEqual(kept);

    // The file output appends the same lines as the encoder makes, one per event.
    const path = join(dataDir, 'sink.lp');
    const schema = SCHEMAS[0] as PointSchema;
    const file = new LineProtocolFileOutput(path, schema);
    await file.write(kept);
    await file.close();
    const encoder = new LineProtocolEncoder(schema);
    expect(await readFile(path, 'utf8')).toBe(kept.map((e) => `${encoder.encode(e)}\n`).join(''));
  });
});
