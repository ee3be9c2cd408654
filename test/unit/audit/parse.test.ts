// Decoding of audit webhook payloads, against batches recorded from a real kube-apiserver 1.20 and
// against generated input. Pure: starts no process.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AuditParseError,
  type AuditParseErrorCode,
  checkJsonDepth,
  isRfc3339,
  DEFAULT_PARSE_LIMITS,
  type DecodedPayload,
  type DecodeOptions,
  decodeAuditPayload,
  type ParseLimits,
  type PayloadOptions,
  parseAuditLogLine,
  parseAuditPayload,
} from '../../../src/audit/parse.ts';
import {
  type AuditEvent,
  isLevel,
  isStage,
  type JsonValue,
  LEVELS,
  STAGES,
} from '../../../src/audit/types.ts';
import { eventList } from '../../support/events.ts';

const FIXTURES = new URL('../../fixtures/apiserver-1.20/', import.meta.url);

function fixture(name: string): string {
  return readFileSync(new URL(name, FIXTURES), 'utf8');
}

// Item counts of the two POST bodies the apiserver sent (see the fixture README).
const BATCHES = [
  { file: 'batches/00001.json', count: 13 },
  { file: 'batches/00002.json', count: 10 },
] as const;

type JsonRecord = Record<string, unknown>;

const V1 = 'audit.k8s.io/v1';
const V1BETA1 = 'audit.k8s.io/v1beta1';

/** A minimal valid v1 event, as a list item (no apiVersion or kind). */
function item(overrides: JsonRecord = {}): JsonRecord {
  return {
    level: 'Metadata',
    auditID: '5b46c944-305e-45a0-93cd-c2f87c45e9bc',
    stage: 'ResponseComplete',
    requestURI: '/api/v1/namespaces/shop/pods?limit=500',
    verb: 'list',
    user: { username: 'admin', groups: ['system:masters'] },
    stageTimestamp: '2026-11-22T04:08:57.440160Z',
    ...overrides,
  };
}

function singleEvent(fields: JsonRecord, apiVersion: string = V1): string {
  return JSON.stringify({ kind: 'Event', apiVersion, ...fields });
}

/** Parses `body` and returns the AuditParseError it throws; fails on success or any other error. */
function rejection(
  body: string,
  limits: ParseLimits = DEFAULT_PARSE_LIMITS,
  options: DecodeOptions = {},
): AuditParseError {
  try {
    parseAuditPayload(body, limits, options);
  } catch (err) {
    if (err instanceof AuditParseError) return err;
    throw err;
  }
  throw new Error('expected an AuditParseError, but the payload parsed');
}

/** The outcome of parsing: the payload or the AuditParseError; any other error propagates. */
function outcome(body: string, options: PayloadOptions = {}): DecodedPayload | AuditParseError {
  try {
    return parseAuditPayload(body, DEFAULT_PARSE_LIMITS, options);
  } catch (err) {
    if (err instanceof AuditParseError) return err;
    throw err;
  }
}

const CODES: readonly AuditParseErrorCode[] = [
  'MALFORMED_JSON',
  'TOO_DEEP',
  'WRONG_API_VERSION',
  'WRONG_KIND',
  'INVALID_EVENT',
  'TOO_MANY_EVENTS',
];

/** What every rejection promises: a known code, and the field path leading the message. */
function expectWellFormed(err: AuditParseError): void {
  expect(err.name).toBe('AuditParseError');
  expect(CODES).toContain(err.code);
  if (err.field !== '') expect(err.message.startsWith(`${err.field}: `)).toBe(true);
}

function nested(depth: number): string {
  return `${'['.repeat(depth)}${']'.repeat(depth)}`;
}

describe('parseAuditPayload on batches recorded from kube-apiserver 1.20', () => {
  it.each(BATCHES)('parses $file as a v1 EventList of $count events', ({ file, count }) => {
    const text = fixture(file);
    const payload = parseAuditPayload(text);
    expect(payload.apiVersion).toBe(V1);
    expect(payload.kind).toBe('EventList');
    expect(payload.events).toHaveLength(count);
    // v1 items carry nothing the decoder removes, so the events are the items unchanged.
    expect(payload.events).toEqual((JSON.parse(text) as { items: unknown[] }).items);
  });

  it('decodes the same events from the batches as from events.jsonl, in the same order', () => {
    const fromBatches = BATCHES.flatMap(({ file }) => parseAuditPayload(fixture(file)).events);
    const fromLines = fixture('events.jsonl')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => parseAuditPayload(line, DEFAULT_PARSE_LIMITS, { allowBareEvent: true }));
    expect(fromLines.every((p) => p.kind === 'Event' && p.events.length === 1)).toBe(true);
    expect(fromLines.flatMap((p) => p.events)).toEqual(fromBatches);
  });

  it('keeps every recorded level and stage as sent', () => {
    const events = parseAuditPayload(fixture('batches/00001.json')).events;
    expect(events.map((e) => e.level)).toEqual([
      'RequestResponse',
      'RequestResponse',
      'RequestResponse',
      'Metadata',
      'RequestResponse',
      'RequestResponse',
      'RequestResponse',
      'RequestResponse',
      'RequestResponse',
      'Request',
      'Request',
      'RequestResponse',
      'Metadata',
    ]);
    expect(new Set(events.map((e) => e.stage))).toEqual(new Set(['ResponseComplete']));
  });
});

/**
 * Every source a parse gives is one line that parses back to its event, keys in their order; every
 * text at another level, to the event with that level. Returns how many sources it gave.
 */
function expectSourcesMatch(payload: DecodedPayload): number {
  let given = 0;
  for (const [i, source] of (payload.sources ?? []).entries()) {
    if (source === undefined) continue;
    given++;
    expect(source).not.toContain('\n');
    expect(JSON.stringify(JSON.parse(source))).toBe(JSON.stringify(payload.events[i]));
  }
  expectLevelledMatch(payload);
  return given;
}

/** Every text at a level a parse gives parses to its event at that level. Returns how many. */
function expectLevelledMatch(payload: DecodedPayload): number {
  let given = 0;
  for (const [i, event] of payload.events.entries()) {
    for (const level of LEVELS) {
      const text = payload.levelled?.at(i, level);
      if (text === undefined) continue;
      given++;
      expect(text).not.toContain('\n');
      expect(JSON.stringify(JSON.parse(text))).toBe(JSON.stringify({ ...event, level }));
    }
  }
  return given;
}

describe('parseAuditPayload sources: the events as received', () => {
  it.each(BATCHES)('gives the text of every event of $file', ({ file, count }) => {
    const text = fixture(file);
    const payload = parseAuditPayload(text);
    expect(payload.sources).toHaveLength(count);
    expect(expectSourcesMatch(payload)).toBe(count);
    // The item's own text, not the event serialised again.
    for (const source of payload.sources ?? []) expect(text).toContain(`${source}`);
    expect(expectLevelledMatch(payload)).toBe(count * LEVELS.length);
  });

  it("gives the text at another level with the item's one level member replaced", () => {
    const spaced = JSON.stringify(item({ level: 'Request' }))
      .replace('"level":', '"level" :\t')
      .replace(',"stage"', ' ,"stage"');
    const payload = parseAuditPayload(
      eventList([
        item({ level: 'RequestResponse' }),
        JSON.parse(spaced) as JsonRecord,
        item({ level: 'Metadata', requestObject: { kind: 'Pod' } }),
      ]).replace(JSON.stringify(JSON.parse(spaced)), spaced),
    );
    expect(payload.levelled?.at(0, 'Metadata')).toBe(
      JSON.stringify(item({ level: 'RequestResponse' })).replace(
        '"level":"RequestResponse"',
        '"level":"Metadata"',
      ),
    );
    expect(payload.levelled?.at(1, 'None')).toBe(
      spaced.replace('"level" :\t"Request"', '"level" :\t"None"'),
    );
    // Bodies stay: only an event without bodies is its text at another level.
    expect(payload.levelled?.at(2, 'Request')).toContain('"requestObject"');
    expect(expectLevelledMatch(payload)).toBe(3 * LEVELS.length);
  });

  it('gives none at another level when a key spells level with an escape, level is repeated, or decoding changed the event', () => {
    const plain = JSON.stringify(item());
    const texts = [
      // A key that spells level with an escape, before or after the plain one.
      plain.replace('{', '{"\\u006cevel":"Request",'),
      plain.replace(/\}$/, ',"\\u006cevel":"Request"}'),
      // Two plain level members: JSON.parse keeps the last.
      plain.replace(/\}$/, ',"level":"Request"}'),
      // Decoding drops a null member.
      JSON.stringify(item({ userAgent: null })),
    ];
    const payload = parseAuditPayload(
      `{"kind":"EventList","apiVersion":"${V1}","items":[${texts.join(',')},${plain}]}`,
    );
    expect(payload.events).toHaveLength(texts.length + 1);
    for (const [i] of texts.entries()) expect(payload.levelled?.at(i, 'Metadata')).toBeUndefined();
    expect(payload.levelled?.at(texts.length, 'Metadata')).toBeDefined();
    // An escaped key that spells another name, or escapes in values, change nothing.
    const other = parseAuditPayload(
      eventList([item({ requestURI: '/api/v1/pods?limit=500\u0026watch=1' })])
        .replace('"verb"', '"v\\u0065rb"')
        .replace('\u0026', '\\u0026'),
    );
    expect(other.events[0]?.requestURI).toBe('/api/v1/pods?limit=500&watch=1');
    expect(expectLevelledMatch(other)).toBe(LEVELS.length);
    // Neither a value that reads level nor a key that spells it in a nested object is the member.
    const nested = parseAuditPayload(
      eventList([
        item({ userAgent: 'level' }),
        item({ user: { username: 'u', extra: { level: ['x'] } } }),
      ]).replace('"extra":{"level"', '"extra":{"\\u006cevel"'),
    );
    expect(nested.events[1]?.user.extra).toEqual({ level: ['x'] });
    expect(expectLevelledMatch(nested)).toBe(2 * LEVELS.length);
    // A value with an escape is replaced whole; one in a body or a nested object is not a member.
    const escaped = parseAuditPayload(
      eventList([
        item(),
        item({ user: { username: 'u', level: 'x' }, requestObject: { level: 'y' } }),
      ]).replace('"level":"Metadata"', '"level":"Meta\\u0064ata"'),
    );
    expect(expectLevelledMatch(escaped)).toBe(2 * LEVELS.length);
  });

  it('gives none for an event that decoding changed, and the others still', () => {
    const payload = parseAuditPayload(
      eventList([
        item(),
        item({ userAgent: null }),
        item({ kind: 'Event', apiVersion: V1 }),
        item({ user: { username: 'u', uid: null } }),
        item(),
      ]),
    );
    expect(payload.sources?.map((source) => source !== undefined)).toEqual([
      true,
      false,
      false,
      false,
      true,
    ]);
    expectSourcesMatch(payload);
  });

  it('gives none for v1beta1, a single Event, text with line breaks, or objects in another list', () => {
    const list = JSON.parse(eventList([item(), item()])) as JsonRecord;
    expect(parseAuditPayload(eventList([item()], V1BETA1)).sources).toBeUndefined();
    expect(parseAuditPayload(singleEvent(item())).sources).toBeUndefined();
    expect(parseAuditPayload(JSON.stringify(list, null, 1)).sources).toBeUndefined();
    // JSON.parse keeps the last of two keys that name `items`; the first list is not the events.
    const two = `{"kind":"EventList","apiVersion":"${V1}","items":[${JSON.stringify(item({ auditID: 'first' }))}],"\\u0069tems":[${JSON.stringify(item({ auditID: 'second' }))}]}`;
    const payload = parseAuditPayload(two);
    expect(payload.events.map((e) => e.auditID)).toEqual(['second']);
    expect(payload.sources).toBeUndefined();
    const beside = `{"kind":"EventList","apiVersion":"${V1}","x":[{}],"items":[${JSON.stringify(item())}]}`;
    expect(parseAuditPayload(beside).sources).toBeUndefined();
    // Arrays without objects beside `items` change nothing.
    const plain = `{"kind":"EventList","apiVersion":"${V1}","x":[1,[{}]],"items":[${JSON.stringify(item())}]}`;
    expect(expectSourcesMatch(parseAuditPayload(plain))).toBe(1);
  });

  it('finds the items beside other objects and arrays inside them', () => {
    const body = `{"kind":"EventList","apiVersion":"${V1}","metadata":{"a":[{"b":[{}]}]},"items":[${JSON.stringify(item({ requestObject: { spec: { list: [{ a: [1, { b: '}]' }] }] } } }))} , ${JSON.stringify(item({ annotations: { 'x/y': '[{"' } }))}]}`;
    const payload = parseAuditPayload(body);
    expect(expectSourcesMatch(payload)).toBe(2);
  });
});

describe('parseAuditPayload levelled: the events as received at another level', () => {
  it('gives only texts that parse to the event at that level, whatever spells level', () => {
    // A key with some of its characters written as escapes, chosen by the bits of `mask`.
    const spelt = (key: string, mask: number) =>
      [...key]
        .map((c, i) =>
          (mask >> i) & 1 ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : c,
        )
        .join('');
    const member = (key: string, value: unknown) =>
      fc
        .tuple(fc.nat({ max: 63 }), fc.boolean(), fc.constantFrom('', ' ', '\t'))
        .map(([mask, escape, space]) =>
          [
            '"',
            escape ? spelt(key, mask) : key,
            '"',
            space,
            ':',
            space,
            JSON.stringify(value),
          ].join(''),
        );
    const fields = Object.entries(item()).map(([key, value]) => member(key, value));
    const extra = fc.constantFrom(
      ...['level', 'requestObject', 'responseObject'].flatMap((key) =>
        [LEVELS[1], LEVELS[2], { kind: 'Pod' }].map((value) => member(key, value)),
      ),
    );
    const anItem = fc
      .tuple(
        fc.tuple(...fields),
        fc.array(
          extra.chain((m) => m),
          { maxLength: 2 },
        ),
      )
      .chain(([own, more]) =>
        fc.shuffledSubarray([...own, ...more], { minLength: own.length + more.length }),
      )
      .map((members) => `{${members.join(',')}}`);
    const seen = { given: 0, withheld: 0 };
    fc.assert(
      fc.property(
        fc.array(anItem, { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        (items, omitBodies) => {
          const result = outcome(
            `{"kind":"EventList","apiVersion":"${V1}","items":[${items.join(',')}]}`,
            { omitBodies },
          );
          if (result instanceof AuditParseError) return;
          expectSourcesMatch(result);
          for (const i of result.events.keys()) {
            if (result.levelled?.at(i, 'None') === undefined) seen.withheld++;
            else seen.given++;
          }
        },
      ),
      { numRuns: 2000 },
    );
    // Both outcomes must be common, or the property checks less than it seems to.
    expect(seen.given).toBeGreaterThan(500);
    expect(seen.withheld).toBeGreaterThan(500);
  });
});

describe('parseAuditPayload on single events', () => {
  it('parses a single v1 Event and strips its apiVersion and kind', () => {
    const payload = parseAuditPayload(singleEvent(item({ userAgent: 'kubectl/v1.35.2' })));
    expect(payload).toEqual({
      apiVersion: V1,
      kind: 'Event',
      events: [item({ userAgent: 'kubectl/v1.35.2' })],
    });
  });

  it('parses one audit log line as an Event', () => {
    expect(parseAuditLogLine(singleEvent(item()))).toEqual(item());
  });

  it('rejects an EventList as an audit log line', () => {
    let err: unknown;
    try {
      parseAuditLogLine(eventList([item()]));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AuditParseError);
    expect(err).toMatchObject({ code: 'WRONG_KIND', field: 'kind' });
  });

  it('rejects a bare event (no apiVersion, no kind) unless allowBareEvent is set', () => {
    const bare = JSON.stringify(item());
    expect(rejection(bare)).toMatchObject({ code: 'WRONG_API_VERSION', field: 'apiVersion' });
    expect(parseAuditPayload(bare, DEFAULT_PARSE_LIMITS, { allowBareEvent: true })).toEqual({
      apiVersion: V1,
      kind: 'Event',
      events: [item()],
    });
  });

  it('does not treat an object with only a kind as a bare event', () => {
    const body = JSON.stringify({ kind: 'Event', ...item() });
    expect(rejection(body, DEFAULT_PARSE_LIMITS, { allowBareEvent: true })).toMatchObject({
      code: 'WRONG_API_VERSION',
      field: 'apiVersion',
    });
  });

  it('validates a bare event as strictly as any other', () => {
    const body = JSON.stringify(item({ stage: 'Finished' }));
    expect(rejection(body, DEFAULT_PARSE_LIMITS, { allowBareEvent: true })).toMatchObject({
      code: 'INVALID_EVENT',
      field: 'stage',
    });
  });

  it('decodes an already parsed value as parseAuditPayload decodes its text', () => {
    const text = fixture('batches/00002.json');
    const { sources, levelled, ...decoded } = parseAuditPayload(text);
    expect(sources).toBeDefined();
    expect(levelled).toBeDefined();
    expect(decodeAuditPayload(JSON.parse(text))).toEqual(decoded);
  });
});

describe('parseAuditPayload on empty lists', () => {
  it('gives no events for items: null', () => {
    expect(parseAuditPayload(eventList(null)).events).toEqual([]);
  });

  it('gives no events for items: []', () => {
    expect(parseAuditPayload(eventList([])).events).toEqual([]);
  });

  it('gives no events when items is absent, as Go decodes it', () => {
    expect(parseAuditPayload('{"apiVersion":"audit.k8s.io/v1","kind":"EventList"}').events).toEqual(
      [],
    );
  });
});

describe('parseAuditPayload on audit.k8s.io/v1beta1', () => {
  const v1beta1Item = (overrides: JsonRecord = {}): JsonRecord => ({
    ...item(),
    metadata: { creationTimestamp: '2019-03-01T10:00:01Z' },
    timestamp: '2019-03-01T10:00:00Z',
    ...overrides,
  });

  it('converts a v1beta1 EventList to v1 events without metadata and timestamp', () => {
    const payload = parseAuditPayload(eventList([v1beta1Item(), v1beta1Item()], V1BETA1));
    expect(payload.apiVersion).toBe(V1BETA1);
    expect(payload.kind).toBe('EventList');
    expect(payload.events).toHaveLength(2);
    for (const event of payload.events) {
      expect(event).not.toHaveProperty('metadata');
      expect(event).not.toHaveProperty('timestamp');
    }
  });

  it.each([
    ['absent', undefined],
    ['null', null],
    ['the empty string', ''],
  ])(
    'takes stageTimestamp from metadata.creationTimestamp when stageTimestamp is %s',
    (_, value) => {
      const [event] = parseAuditPayload(
        eventList([v1beta1Item({ stageTimestamp: value })], V1BETA1),
      ).events;
      expect(event?.stageTimestamp).toBe('2019-03-01T10:00:01Z');
    },
  );

  it.each([
    ['absent', undefined],
    ['null', null],
    ['the empty string', ''],
  ])(
    'takes requestReceivedTimestamp from timestamp when requestReceivedTimestamp is %s',
    (_, value) => {
      const [event] = parseAuditPayload(
        eventList([v1beta1Item({ requestReceivedTimestamp: value })], V1BETA1),
      ).events;
      expect(event?.requestReceivedTimestamp).toBe('2019-03-01T10:00:00Z');
    },
  );

  it('keeps explicit stageTimestamp and requestReceivedTimestamp over the v1beta1 fields', () => {
    const [event] = parseAuditPayload(
      eventList(
        [
          v1beta1Item({
            stageTimestamp: '2019-03-01T10:00:02.123456Z',
            requestReceivedTimestamp: '2019-03-01T10:00:00.654321Z',
          }),
        ],
        V1BETA1,
      ),
    ).events;
    expect(event?.stageTimestamp).toBe('2019-03-01T10:00:02.123456Z');
    expect(event?.requestReceivedTimestamp).toBe('2019-03-01T10:00:00.654321Z');
  });

  it('requires a stageTimestamp when metadata.creationTimestamp cannot supply one', () => {
    const body = eventList([v1beta1Item({ stageTimestamp: undefined, metadata: {} })], V1BETA1);
    expect(rejection(body)).toMatchObject({
      code: 'INVALID_EVENT',
      field: 'items[0].stageTimestamp',
      message: 'items[0].stageTimestamp: Required value',
    });
  });

  it('converts a single v1beta1 Event', () => {
    const payload = parseAuditPayload(singleEvent(v1beta1Item({ stageTimestamp: '' }), V1BETA1));
    expect(payload.apiVersion).toBe(V1BETA1);
    expect(payload.events).toEqual([
      item({
        stageTimestamp: '2019-03-01T10:00:01Z',
        requestReceivedTimestamp: '2019-03-01T10:00:00Z',
      }),
    ]);
  });
});

interface Rejection {
  readonly behaviour: string;
  readonly body: string;
  readonly code: AuditParseErrorCode;
  readonly field: string;
  readonly message?: RegExp;
  readonly limits?: ParseLimits;
}

// The second item is the bad one, so every path shows that the index is the offending item's.
const badItem = (overrides: JsonRecord): string => eventList([item(), item(overrides)]);

const rejections: Rejection[] = [
  {
    behaviour: 'rejects text that is not JSON',
    body: '{"kind":"EventList",',
    code: 'MALFORMED_JSON',
    field: '',
    message: /^malformed JSON: /,
  },
  {
    behaviour: 'rejects an empty body as malformed JSON',
    body: '',
    code: 'MALFORMED_JSON',
    field: '',
  },
  {
    behaviour: 'rejects 600 nested arrays inside requestObject before parsing them',
    body: eventList([item({ requestObject: '@' })]).replace('"@"', nested(600)),
    code: 'TOO_DEEP',
    field: '',
    message: /exceeds the limit of 512 levels/,
  },
  {
    behaviour: 'rejects nesting one level deeper than a custom limit',
    body: nested(4),
    code: 'TOO_DEEP',
    field: '',
    limits: { maxEvents: 10, maxDepth: 3 },
  },
  {
    behaviour: 'rejects a JSON value that is not an object',
    body: '[]',
    code: 'INVALID_EVENT',
    field: '',
    message: /expected a JSON object, got an array/,
  },
  {
    behaviour: 'rejects a list with an unsupported apiVersion',
    body: eventList([item()], 'audit.k8s.io/v2'),
    code: 'WRONG_API_VERSION',
    field: 'apiVersion',
    message: /"audit\.k8s\.io\/v2"/,
  },
  {
    behaviour: 'rejects a document without apiVersion',
    body: JSON.stringify({ kind: 'EventList', items: [] }),
    code: 'WRONG_API_VERSION',
    field: 'apiVersion',
  },
  {
    behaviour: "rejects an item whose apiVersion differs from the list's",
    body: badItem({ apiVersion: V1BETA1 }),
    code: 'WRONG_API_VERSION',
    field: 'items[1].apiVersion',
  },
  {
    behaviour: 'rejects a document of another kind',
    body: JSON.stringify({ kind: 'Pod', apiVersion: V1 }),
    code: 'WRONG_KIND',
    field: 'kind',
    message: /"Pod"/,
  },
  {
    behaviour: 'rejects a document without kind',
    body: JSON.stringify({ apiVersion: V1, items: [] }),
    code: 'WRONG_KIND',
    field: 'kind',
  },
  {
    behaviour: 'rejects an item whose kind is not Event',
    body: badItem({ kind: 'EventList' }),
    code: 'WRONG_KIND',
    field: 'items[1].kind',
  },
  {
    behaviour: 'rejects an EventList whose items is not an array',
    body: eventList({ 0: item() }),
    code: 'INVALID_EVENT',
    field: 'items',
    message: /expected an array, got an object/,
  },
  {
    behaviour: 'rejects an item that is not an object',
    body: eventList([42]),
    code: 'INVALID_EVENT',
    field: 'items[0]',
  },
  {
    behaviour: 'rejects an item without auditID',
    body: badItem({ auditID: undefined }),
    code: 'INVALID_EVENT',
    field: 'items[1].auditID',
    message: /Required value/,
  },
  {
    behaviour: 'rejects an empty auditID',
    body: badItem({ auditID: '' }),
    code: 'INVALID_EVENT',
    field: 'items[1].auditID',
  },
  {
    behaviour: 'rejects an auditID that is not a string',
    body: badItem({ auditID: 7 }),
    code: 'INVALID_EVENT',
    field: 'items[1].auditID',
    message: /expected a string, got number 7/,
  },
  {
    behaviour: 'rejects an empty verb',
    body: badItem({ verb: '' }),
    code: 'INVALID_EVENT',
    field: 'items[1].verb',
  },
  {
    behaviour: 'rejects an item without requestURI',
    body: badItem({ requestURI: undefined }),
    code: 'INVALID_EVENT',
    field: 'items[1].requestURI',
  },
  {
    behaviour: 'rejects a level outside the enum and lists the supported ones',
    body: badItem({ level: 'Everything' }),
    code: 'INVALID_EVENT',
    field: 'items[1].level',
    message: /unsupported value "Everything": supported values: "None", "Metadata"/,
  },
  {
    behaviour: 'rejects a missing level as a required value',
    body: badItem({ level: undefined }),
    code: 'INVALID_EVENT',
    field: 'items[1].level',
    message: /Required value/,
  },
  {
    behaviour: 'rejects a stage outside the enum',
    body: badItem({ stage: 'Done' }),
    code: 'INVALID_EVENT',
    field: 'items[1].stage',
    message: /unsupported value "Done"/,
  },
  {
    behaviour: 'rejects a stageTimestamp that is not RFC 3339',
    body: badItem({ stageTimestamp: 'yesterday' }),
    code: 'INVALID_EVENT',
    field: 'items[1].stageTimestamp',
    message: /expected an RFC 3339 timestamp, got the string "yesterday"/,
  },
  {
    behaviour: 'rejects a stageTimestamp without a time zone',
    body: badItem({ stageTimestamp: '2026-11-22T04:08:57.440160' }),
    code: 'INVALID_EVENT',
    field: 'items[1].stageTimestamp',
  },
  {
    behaviour: 'rejects a stageTimestamp with a month 13',
    body: badItem({ stageTimestamp: '2026-13-01T00:00:00Z' }),
    code: 'INVALID_EVENT',
    field: 'items[1].stageTimestamp',
  },
  {
    behaviour: 'rejects a stageTimestamp given as epoch seconds',
    body: badItem({ stageTimestamp: 1795320537 }),
    code: 'INVALID_EVENT',
    field: 'items[1].stageTimestamp',
  },
  {
    behaviour: 'rejects a requestReceivedTimestamp with a space for the T',
    body: badItem({ requestReceivedTimestamp: '2026-11-22 04:08:57Z' }),
    code: 'INVALID_EVENT',
    field: 'items[1].requestReceivedTimestamp',
  },
  {
    behaviour: 'rejects an item without stageTimestamp',
    body: badItem({ stageTimestamp: undefined }),
    code: 'INVALID_EVENT',
    field: 'items[1].stageTimestamp',
    message: /Required value/,
  },
  {
    behaviour: 'rejects an item without user',
    body: badItem({ user: undefined }),
    code: 'INVALID_EVENT',
    field: 'items[1].user',
    message: /Required value/,
  },
  {
    behaviour: 'rejects a user that is not an object',
    body: badItem({ user: 'admin' }),
    code: 'INVALID_EVENT',
    field: 'items[1].user',
    message: /expected an object, got the string "admin"/,
  },
  {
    behaviour: 'rejects a username that is not a string',
    body: badItem({ user: { username: ['admin'] } }),
    code: 'INVALID_EVENT',
    field: 'items[1].user.username',
  },
  {
    behaviour: 'rejects user groups that are not strings',
    body: badItem({ user: { username: 'admin', groups: ['system:masters', false] } }),
    code: 'INVALID_EVENT',
    field: 'items[1].user.groups[1]',
  },
  {
    behaviour: 'rejects user extra values that are not string arrays',
    body: badItem({ user: { username: 'admin', extra: { scopes: 'all' } } }),
    code: 'INVALID_EVENT',
    field: 'items[1].user.extra["scopes"]',
  },
  {
    behaviour: 'rejects an impersonatedUser that is not an object',
    body: badItem({ impersonatedUser: ['dev'] }),
    code: 'INVALID_EVENT',
    field: 'items[1].impersonatedUser',
  },
  {
    behaviour: 'rejects an objectRef field that is not a string',
    body: badItem({ objectRef: { resource: 'pods', namespace: 5 } }),
    code: 'INVALID_EVENT',
    field: 'items[1].objectRef.namespace',
    message: /expected a string, got number 5/,
  },
  {
    behaviour: 'rejects an objectRef that is not an object',
    body: badItem({ objectRef: 'pods' }),
    code: 'INVALID_EVENT',
    field: 'items[1].objectRef',
  },
  {
    behaviour: 'rejects sourceIPs that are not strings',
    body: badItem({ sourceIPs: ['127.0.0.1', 2130706433] }),
    code: 'INVALID_EVENT',
    field: 'items[1].sourceIPs[1]',
  },
  {
    behaviour: 'rejects sourceIPs that are not an array',
    body: badItem({ sourceIPs: '127.0.0.1' }),
    code: 'INVALID_EVENT',
    field: 'items[1].sourceIPs',
  },
  {
    behaviour: 'rejects a userAgent that is not a string',
    body: badItem({ userAgent: { name: 'kubectl' } }),
    code: 'INVALID_EVENT',
    field: 'items[1].userAgent',
  },
  {
    behaviour: 'rejects annotation values that are not strings',
    body: badItem({ annotations: { 'authorization.k8s.io/decision': true } }),
    code: 'INVALID_EVENT',
    field: 'items[1].annotations["authorization.k8s.io/decision"]',
  },
  {
    behaviour: 'rejects annotations that are not an object',
    body: badItem({ annotations: ['a=b'] }),
    code: 'INVALID_EVENT',
    field: 'items[1].annotations',
  },
  {
    behaviour: 'rejects a responseStatus.code that is not an integer',
    body: badItem({ responseStatus: { code: 200.5 } }),
    code: 'INVALID_EVENT',
    field: 'items[1].responseStatus.code',
    message: /expected an integer, got number 200.5/,
  },
  {
    behaviour: 'rejects a responseStatus.code given as a string',
    body: badItem({ responseStatus: { code: '200' } }),
    code: 'INVALID_EVENT',
    field: 'items[1].responseStatus.code',
  },
  {
    behaviour: 'rejects a responseStatus that is not an object',
    body: badItem({ responseStatus: 200 }),
    code: 'INVALID_EVENT',
    field: 'items[1].responseStatus',
  },
  {
    behaviour: 'names no items prefix for a field of a single Event',
    body: singleEvent(item({ level: 'Loud' })),
    code: 'INVALID_EVENT',
    field: 'level',
  },
  {
    behaviour: 'rejects more events than a custom limit allows',
    body: eventList([item(), item(), item()]),
    code: 'TOO_MANY_EVENTS',
    field: 'items',
    message: /3 events exceed the limit of 2 per request/,
    limits: { maxEvents: 2, maxDepth: 512 },
  },
];

describe('parseAuditPayload rejections', () => {
  it.each(rejections)('$behaviour', ({ body, code, field, message, limits }) => {
    const err = rejection(body, limits);
    expect(err.code).toBe(code);
    expect(err.field).toBe(field);
    expectWellFormed(err);
    if (message !== undefined) expect(err.message).toMatch(message);
  });

  it('accepts as many events as a custom limit allows', () => {
    const limits = { maxEvents: 2, maxDepth: 512 };
    expect(parseAuditPayload(eventList([item(), item()]), limits).events).toHaveLength(2);
  });

  it('accepts the default limit of 10,000 events and rejects one more', () => {
    const one = JSON.stringify(item());
    const list = (n: number) =>
      `{"kind":"EventList","apiVersion":"${V1}","items":[${Array(n).fill(one).join(',')}]}`;
    expect(parseAuditPayload(list(10_000)).events).toHaveLength(10_000);
    expect(rejection(list(10_001)).code).toBe('TOO_MANY_EVENTS');
  });

  it('keeps the cause of a JSON syntax error', () => {
    expect(rejection('{').cause).toBeInstanceOf(SyntaxError);
  });

  // Upstream decodes with Go's time.Parse(RFC3339), which refuses days a month does not have.
  it.each(['2021-02-29T00:00:00Z', '2026-04-31T10:00:00Z', '2026-11-22T24:00:00Z'])(
    'rejects the impossible stageTimestamp %s',
    (stageTimestamp) => {
      expect(rejection(badItem({ stageTimestamp }))).toMatchObject({
        code: 'INVALID_EVENT',
        field: 'items[1].stageTimestamp',
      });
    },
  );
});

describe('optional fields', () => {
  const OPTIONAL = [
    'impersonatedUser',
    'sourceIPs',
    'userAgent',
    'objectRef',
    'responseStatus',
    'requestObject',
    'responseObject',
    'requestReceivedTimestamp',
    'annotations',
  ] as const;

  it.each(OPTIONAL)('accepts a recorded event without %s', (key) => {
    const items = (JSON.parse(fixture('batches/00002.json')) as { items: JsonRecord[] }).items;
    for (const recorded of items) delete recorded[key];
    expect(parseAuditPayload(eventList(items)).events).toHaveLength(items.length);
  });

  // AuditEvent declares these as absent-or-typed (exactOptionalPropertyTypes): a null must not
  // reach consumers, as the decoder already ensures for objectRef and the request objects.
  it.each(OPTIONAL)('leaves no null in %s of a decoded event', (key) => {
    const [event] = parseAuditPayload(eventList([item({ [key]: null })])).events;
    expect(event).toBeDefined();
    expect(event).not.toHaveProperty(key);
  });
});

describe('checkJsonDepth', () => {
  it('accepts nesting exactly at the limit', () => {
    expect(() => checkJsonDepth(nested(5), 5)).not.toThrow();
  });

  it('rejects nesting one level deeper than the limit', () => {
    expect(() => checkJsonDepth(nested(6), 5)).toThrow(AuditParseError);
  });

  it('counts objects and arrays alike', () => {
    expect(() => checkJsonDepth('{"a":[{"b":[]}]}', 4)).not.toThrow();
    expect(() => checkJsonDepth('{"a":[{"b":[]}]}', 3)).toThrow(/exceeds the limit of 3/);
  });

  it('ignores brackets inside strings', () => {
    expect(() => checkJsonDepth(JSON.stringify({ a: '[[[[{{{{' }), 1)).not.toThrow();
  });

  it('is not fooled by an escaped quote inside a string', () => {
    expect(() => checkJsonDepth(JSON.stringify({ a: '"[[[["', b: '\\"{{' }), 1)).not.toThrow();
  });

  it('ends a string after an escaped backslash and counts the brackets that follow', () => {
    const text = JSON.stringify({ a: 'C:\\', b: [[1]] });
    expect(text).toContain('"C:\\\\"');
    expect(() => checkJsonDepth(text, 3)).not.toThrow();
    expect(() => checkJsonDepth(text, 2)).toThrow(AuditParseError);
  });

  it('does not count closing brackets inside strings', () => {
    // A scanner that counted the `]]]` would let the three real levels after it through.
    expect(() => checkJsonDepth(JSON.stringify([']]]', [[[]]]]), 3)).toThrow(AuditParseError);
  });

  it('lets an event whose annotation holds 600 brackets parse with the default limit', () => {
    const body = eventList([item({ annotations: { note: '['.repeat(600) } })]);
    expect(parseAuditPayload(body).events).toHaveLength(1);
  });

  it('matches the true depth of any JSON value', () => {
    const depthOf = (value: unknown): number =>
      value !== null && typeof value === 'object'
        ? 1 + Math.max(0, ...Object.values(value).map(depthOf))
        : 0;
    // Strings made mostly of the characters a scanner could trip on.
    const tricky = fc.constantFrom('[', ']', '{', '}', '"', '\\', ':', ',', 'a', 'é', '\u2028');
    fc.assert(
      fc.property(
        fc.oneof(fc.jsonValue({ maxDepth: 6 }), fc.jsonValue({ maxDepth: 6, stringUnit: tricky })),
        (value) => {
          const text = JSON.stringify(value);
          const depth = depthOf(value);
          expect(() => checkJsonDepth(text, depth)).not.toThrow();
          if (depth > 0) expect(() => checkJsonDepth(text, depth - 1)).toThrow(AuditParseError);
        },
      ),
      { numRuns: 1000 },
    );
  });
});

// Each field of an event mostly valid, sometimes any JSON value, so that generated payloads both
// parse and reach every check.
const jsonValue = fc.json({ maxDepth: 3 }).map((text) => JSON.parse(text) as JsonValue);
const maybe = <T>(valid: fc.Arbitrary<T>) =>
  fc.oneof({ arbitrary: valid, weight: 20 }, { arbitrary: jsonValue, weight: 1 });

/** RFC 3339 timestamps between `min` and `max`, with any fraction and offset Go accepts. */
function timestampBetween(min: string, max: string): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.date({ min: new Date(min), max: new Date(max), noInvalidDate: true }),
      fc.option(fc.stringMatching(/^[0-9]{1,9}$/), { nil: '' }),
      fc.oneof(
        fc.constant('Z'),
        fc
          .tuple(
            fc.constantFrom('+', '-'),
            fc.integer({ min: 0, max: 23 }),
            fc.integer({ min: 0, max: 59 }),
          )
          .map(
            ([sign, h, m]) => `${sign}${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`,
          ),
      ),
    )
    .map(([date, fraction, zone]) => {
      const seconds = date.toISOString().slice(0, 19);
      return `${seconds}${fraction === '' ? '' : `.${fraction}`}${zone}`;
    });
}

/** Any timestamp Go's time.Parse reads: what requestReceivedTimestamp may hold. */
const timestamp = timestampBetween('0001-01-01T00:00:00Z', '9999-12-31T23:59:59Z');

/** A stageTimestamp InfluxDB can store, a day inside the bounds so that any offset keeps it there. */
const pointTimestamp = timestampBetween('1677-09-22T00:12:44Z', '2262-04-10T23:47:16Z');

const strings = fc.array(fc.string(), { maxLength: 3 });
const dictionary = <T>(value: fc.Arbitrary<T>) =>
  fc.dictionary(fc.string(), value, { maxKeys: 3, noNullPrototype: true });

const user = fc.record(
  {
    username: fc.string(),
    uid: fc.string(),
    groups: strings,
    extra: dictionary(strings),
  },
  { requiredKeys: [] },
);

const objectRef = fc.record(
  {
    resource: fc.string(),
    namespace: fc.string(),
    name: fc.string(),
    uid: fc.string(),
    apiGroup: fc.string(),
    apiVersion: fc.string(),
    resourceVersion: fc.string(),
    subresource: fc.string(),
  },
  { requiredKeys: [] },
);

const responseStatus = fc.record(
  {
    code: fc.integer({ min: 0, max: 599 }),
    status: fc.string(),
    message: fc.string(),
    reason: fc.string(),
  },
  { requiredKeys: [] },
);

// The decoder drops a null request or response object, as the apiserver omits it.
const object = jsonValue.filter((v) => v !== null);

const validEvent: fc.Arbitrary<AuditEvent> = fc.record(
  {
    level: fc.constantFrom(...LEVELS),
    auditID: fc.string({ minLength: 1 }),
    stage: fc.constantFrom(...STAGES),
    requestURI: fc.string({ minLength: 1 }),
    verb: fc.string({ minLength: 1 }),
    user,
    impersonatedUser: user,
    sourceIPs: strings,
    userAgent: fc.string(),
    objectRef,
    responseStatus,
    requestObject: object,
    responseObject: object,
    requestReceivedTimestamp: timestamp,
    stageTimestamp: pointTimestamp,
    annotations: dictionary(fc.string()),
  },
  { requiredKeys: ['level', 'auditID', 'stage', 'requestURI', 'verb', 'user', 'stageTimestamp'] },
);

const roughEvent = fc.record(
  {
    level: maybe(fc.constantFrom(...LEVELS)),
    auditID: maybe(fc.string()),
    stage: maybe(fc.constantFrom(...STAGES)),
    requestURI: maybe(fc.string()),
    verb: maybe(fc.string()),
    user: maybe(user),
    impersonatedUser: maybe(user),
    sourceIPs: maybe(strings),
    userAgent: maybe(fc.string()),
    objectRef: maybe(objectRef),
    responseStatus: maybe(responseStatus),
    requestReceivedTimestamp: maybe(timestamp),
    stageTimestamp: maybe(pointTimestamp),
    annotations: maybe(dictionary(fc.string())),
    apiVersion: maybe(fc.constantFrom(V1, V1BETA1)),
    kind: maybe(fc.constant('Event')),
  },
  { requiredKeys: ['level', 'auditID', 'stage', 'requestURI', 'verb', 'user', 'stageTimestamp'] },
);

describe('parseAuditPayload on generated input', () => {
  /** Fails the property if parsing throws anything but an AuditParseError. */
  function expectParsesOrRejects(body: string, options: DecodeOptions = {}): void {
    const result = outcome(body, options);
    if (result instanceof AuditParseError) expectWellFormed(result);
  }

  it('throws only AuditParseError for arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (text) => {
        expectParsesOrRejects(text);
      }),
      { numRuns: 1000 },
    );
  });

  it('throws only AuditParseError for arbitrary JSON documents', () => {
    fc.assert(
      fc.property(fc.json(), fc.boolean(), (text, allowBareEvent) => {
        expectParsesOrRejects(text, { allowBareEvent });
      }),
      { numRuns: 1000 },
    );
  });

  it('throws only AuditParseError for arbitrary serialised values', () => {
    const serialised = fc
      .anything({ withNullPrototype: true, withObjectString: true })
      .map((value) => {
        try {
          return JSON.stringify(value);
        } catch {
          return undefined;
        }
      })
      .filter((text): text is string => typeof text === 'string');
    fc.assert(
      fc.property(serialised, (text) => {
        expectParsesOrRejects(text, { allowBareEvent: true });
      }),
      { numRuns: 500 },
    );
  });

  it('throws only AuditParseError for lists of events with arbitrary fields', () => {
    const seen = { parsed: 0, rejected: 0 };
    fc.assert(
      fc.property(
        fc.constantFrom(V1, V1BETA1),
        fc.array(roughEvent, { minLength: 1, maxLength: 3 }),
        (apiVersion, items) => {
          const result = outcome(eventList(items, apiVersion));
          if (result instanceof AuditParseError) {
            seen.rejected++;
            expectWellFormed(result);
            expect(result.field).toMatch(/^items\[\d+\]/);
          } else {
            seen.parsed++;
            expect(result.events).toHaveLength(items.length);
            expectSourcesMatch(result);
          }
        },
      ),
      { numRuns: 1000 },
    );
    // Both outcomes must be common, or the property checks less than it seems to.
    expect(seen.parsed).toBeGreaterThan(50);
    expect(seen.rejected).toBeGreaterThan(50);
  });

  it('round-trips a valid event through JSON, alone and in a list', () => {
    fc.assert(
      fc.property(validEvent, (event) => {
        const [alone] = parseAuditPayload(singleEvent({ ...event })).events;
        expect(alone).toEqual(event);
        const listed = parseAuditPayload(eventList([event, event])).events;
        expect(listed).toEqual([event, event]);
      }),
      { numRuns: 500 },
    );
  });
});

/** The events without their request and response objects. */
function withoutBodies(events: readonly AuditEvent[]): AuditEvent[] {
  return events.map(({ requestObject: _request, responseObject: _response, ...rest }) => rest);
}

const OMIT = { omitBodies: true } as const;

/**
 * Parses `text` with and without `omitBodies`: the same events less their bodies, or the same
 * error. Returns the payload parsed with it, or the error.
 */
function expectOmittedAlike(text: string): DecodedPayload | AuditParseError {
  const whole = outcome(text);
  const omitted = outcome(text, OMIT);
  if (whole instanceof AuditParseError) {
    expect(omitted).toBeInstanceOf(AuditParseError);
    expect((omitted as AuditParseError).code).toBe(whole.code);
    expect((omitted as AuditParseError).message).toBe(whole.message);
    return omitted;
  }
  expect(omitted).not.toBeInstanceOf(AuditParseError);
  const payload = omitted as DecodedPayload;
  expect(payload.events).toEqual(withoutBodies(whole.events));
  expect(payload.kind).toBe(whole.kind);
  expect(payload.apiVersion).toBe(whole.apiVersion);
  expectSourcesMatch(payload);
  return payload;
}

describe('parseAuditPayload omitBodies: bodies no sink keeps are checked, not built', () => {
  it.each(BATCHES)('parses $file into its events less their bodies', ({ file, count }) => {
    const text = fixture(file);
    const payload = expectOmittedAlike(text) as DecodedPayload;
    expect(payload.events).toHaveLength(count);
    // Nothing of a body is left; an item that had none is still its text.
    const whole = parseAuditPayload(text).events;
    for (const [i, event] of payload.events.entries()) {
      expect(event.requestObject).toBeUndefined();
      expect(event.responseObject).toBeUndefined();
      const hadBody =
        whole[i]?.requestObject !== undefined || whole[i]?.responseObject !== undefined;
      expect(payload.sources?.[i] === undefined).toBe(hadBody);
    }
    expect(whole.some((event) => event.responseObject !== undefined)).toBe(true);
  });

  it("leaves out bodies wherever they stand among an item's members", () => {
    const body = { kind: 'Pod', metadata: { name: 'web' }, spec: { containers: [] } };
    for (const text of [
      eventList([item({ requestObject: body }), item({ responseObject: body })]),
      eventList([{ requestObject: body, responseObject: [1, 'x'], ...item() }]),
      eventList([{ ...item(), requestObject: 'text', responseObject: 12.5e3 }]),
      eventList([{ requestObject: true, ...item(), responseObject: false }]),
      eventList([item({ requestObject: null })]),
      // Whitespace anywhere JSON allows it.
      JSON.stringify(JSON.parse(eventList([item({ requestObject: body }), item()])), null, 2),
      `{"kind":"EventList","apiVersion":"${V1}","items":[ { "requestObject" : {} , ${JSON.stringify(item()).slice(1, -1)} , "responseObject" :[ ] } ]}`,
    ]) {
      const payload = expectOmittedAlike(text) as DecodedPayload;
      expect(payload.events.length).toBeGreaterThan(0);
      for (const event of payload.events) expect(event.requestObject).toBeUndefined();
    }
  });

  it('answers malformed text around or inside a body exactly as without it', () => {
    const fields = JSON.stringify(item()).slice(1, -1);
    const list = (members: string) =>
      `{"kind":"EventList","apiVersion":"${V1}","items":[{${members}}]}`;
    for (const members of [
      `"requestObject":{"a":},${fields}`,
      `"requestObject":{"a":1}${fields}`,
      `"requestObject":{"a":1},,${fields}`,
      `,"requestObject":{"a":1},${fields}`,
      `${fields},"requestObject":{"a":1},`,
      `${fields},,"requestObject":{"a":1}`,
      `${fields}"requestObject":{"a":1}`,
      `${fields},"requestObject"{"a":1}`,
      `${fields},"requestObject":`,
      `"requestObject":{"a":1},"responseObject":{},`,
      `"requestObject":{"a":1},`,
      `,"requestObject":{"a":1}`,
      `,"requestObject":{"a":1},"responseObject":{}`,
      `"requestObject":{"a":1}, ,"responseObject":{},${fields}`,
      `${fields},"requestObject":"bad\\escape\\x"`,
      `${fields},"requestObject":"tab\there"`,
      `${fields},"requestObject":[1,2,]`,
      `${fields},"requestObject":01`,
      `${fields},"requestObject":1.e5`,
      `${fields},"requestObject":.5`,
    ]) {
      const result = expectOmittedAlike(list(members));
      expect(result, members).toBeInstanceOf(AuditParseError);
      expect((result as AuditParseError).code).toBe('MALFORMED_JSON');
    }
    // Past the end of the list, and a body nested deeper than the limit.
    expect(expectOmittedAlike(`${list(`${fields},"requestObject":{}`)}]`)).toBeInstanceOf(
      AuditParseError,
    );
    const deep = list(`${fields},"requestObject":${nested(DEFAULT_PARSE_LIMITS.maxDepth)}`);
    expect((expectOmittedAlike(deep) as AuditParseError).code).toBe('TOO_DEEP');
  });

  it('parses as usual a body whose key is escaped, a single Event, and other lists', () => {
    const body = { kind: 'Pod' };
    // JSON.parse reads "requestObj\u0065ct" as requestObject: it is not cut, and kept as parsed.
    const escaped = `{"kind":"EventList","apiVersion":"${V1}","items":[{${JSON.stringify(item()).slice(1, -1)},"requestObj\\u0065ct":{"kind":"Pod"}}]}`;
    expect(parseAuditPayload(escaped, DEFAULT_PARSE_LIMITS, OMIT).events[0]?.requestObject).toEqual(
      body,
    );
    // Not an EventList: nothing is left out, even of a member that looks like a list of events.
    const single = singleEvent({ ...item({ requestObject: body }), items: [{ requestObject: 1 }] });
    const [event] = parseAuditPayload(single, DEFAULT_PARSE_LIMITS, OMIT).events;
    expect(event?.requestObject).toEqual(body);
    expect((event as unknown as JsonRecord).items).toEqual([{ requestObject: 1 }]);
    expectOmittedAlike(eventList([item({ requestObject: body })], V1BETA1));
    // A body in another list beside `items` stays.
    const beside = `{"kind":"EventList","apiVersion":"${V1}","other":[{"requestObject":{}}],"items":[${JSON.stringify(item({ responseObject: body }))}]}`;
    expect(parseAuditPayload(beside, DEFAULT_PARSE_LIMITS, OMIT).events[0]?.responseObject).toBe(
      undefined,
    );
  });

  it('agrees with the whole parse on edits of short items, bodies among their members', () => {
    const bodies = [
      '"requestObject":{"a":[1,{"b":"c"}]}',
      '"responseObject":"x"',
      '"requestObject":[]',
      '"responseObject":-1.5',
    ];
    const fields = Object.entries(item()).map(
      ([key, value]) => `"${key}":${JSON.stringify(value)}`,
    );
    // Bodies among an event's fields (or alone), in any order.
    const members = fc.tuple(fc.subarray(bodies), fc.boolean()).chain(([some, valid]) => {
      const all = valid ? [...some, ...fields] : some;
      return fc.shuffledSubarray(all, { minLength: all.length });
    });
    const edit = fc.record({
      at: fc.nat(),
      remove: fc.nat({ max: 2 }),
      insert: fc.constantFrom('', ',', '{', '}', '"', ':', ' ', ',,', '[', ']'),
    });
    const seen = { parsed: 0, rejected: 0, malformed: 0 };
    fc.assert(
      fc.property(
        fc.array(members, { minLength: 1, maxLength: 3 }),
        fc.array(edit, { maxLength: 2 }),
        (items, edits) => {
          let text = items.map((each) => `{${each.join(',')}}`).join(',');
          for (const { at, remove, insert } of edits) {
            const where = at % (text.length + 1);
            text = text.slice(0, where) + insert + text.slice(where + remove);
          }
          const result = expectOmittedAlike(
            `{"kind":"EventList","apiVersion":"${V1}","items":[${text}]}`,
          );
          if (!(result instanceof AuditParseError)) seen.parsed++;
          else if (result.code === 'MALFORMED_JSON') seen.malformed++;
          else seen.rejected++;
        },
      ),
      { numRuns: 3000 },
    );
    expect(seen.parsed).toBeGreaterThan(100);
    expect(seen.rejected).toBeGreaterThan(100);
    expect(seen.malformed).toBeGreaterThan(300);
  });

  it("agrees with the whole parse on edits of a recorded batch's text", () => {
    const text = fixture('batches/00001.json');
    // Where the edits land: around and inside the bodies, where the cuts are made.
    const keys = [...text.matchAll(/"(?:request|response)Object"/g)].map((m) => m.index);
    expect(keys.length).toBeGreaterThan(10);
    const edit = fc.record({
      key: fc.constantFrom(...keys),
      offset: fc.integer({ min: -40, max: 400 }),
      remove: fc.nat({ max: 3 }),
      insert: fc
        .array(fc.constantFrom(...'{}[]",:\\ ae019.-\n\u0001'), { maxLength: 3 })
        .map((chars) => chars.join('')),
    });
    const seen = { parsed: 0, rejected: 0 };
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 3 }), (edits) => {
        let edited = text;
        for (const { key, offset, remove, insert } of edits) {
          const at = Math.min(Math.max(key + offset, 0), edited.length);
          edited = edited.slice(0, at) + insert + edited.slice(at + remove);
        }
        if (expectOmittedAlike(edited) instanceof AuditParseError) seen.rejected++;
        else seen.parsed++;
      }),
      { numRuns: 3000 },
    );
    // Both outcomes must be common, or the property checks less than it seems to.
    expect(seen.parsed).toBeGreaterThan(300);
    expect(seen.rejected).toBeGreaterThan(300);
  });
});

describe('mutations of a recorded batch', () => {
  const recorded = JSON.parse(fixture('batches/00001.json')) as { items: JsonRecord[] };
  type Container = JsonRecord | unknown[];

  const isContainer = (value: unknown): value is Container =>
    typeof value === 'object' && value !== null;

  const keysOf = (value: Container): (string | number)[] =>
    Array.isArray(value) ? value.map((_, i) => i) : Object.keys(value);

  /**
   * Walks from `root` taking the `steps` (each picks a child by index modulo the child count) and
   * returns the container and key reached, with the path walked.
   */
  function locate(root: Container, steps: readonly number[]) {
    let parent = root;
    let keys = keysOf(parent);
    let key = keys[(steps[0] ?? 0) % keys.length] as string | number;
    let path = String(key);
    for (const step of steps.slice(1)) {
      const child: unknown = (parent as Record<string | number, unknown>)[key];
      if (!isContainer(child) || keysOf(child).length === 0) break;
      parent = child;
      keys = keysOf(child);
      key = keys[step % keys.length] as string | number;
      path += `.${key}`;
    }
    return { parent, key, path };
  }

  function remove(parent: Container, key: string | number): void {
    if (Array.isArray(parent)) parent.splice(Number(key), 1);
    else delete parent[key];
  }

  const mutation = fc.record({
    index: fc.nat({ max: recorded.items.length - 1 }),
    steps: fc.array(fc.nat(), { minLength: 1, maxLength: 6 }),
    replacement: fc.option(jsonValue, { nil: undefined }),
  });

  it('either parses or rejects the mutated item, never another', () => {
    const seen = { parsed: 0, rejected: 0, sources: 0 };
    fc.assert(
      fc.property(mutation, ({ index, steps, replacement }) => {
        const doc = structuredClone(recorded);
        const target = doc.items[index] as JsonRecord;
        const { parent, key } = locate(target, steps);
        if (replacement === undefined) remove(parent, key);
        else (parent as Record<string | number, unknown>)[key] = replacement;

        const result = outcome(JSON.stringify(doc));
        if (result instanceof AuditParseError) {
          seen.rejected++;
          expectWellFormed(result);
          expect(result.code).toBe('INVALID_EVENT');
          expect(result.field.startsWith(`items[${index}]`)).toBe(true);
        } else {
          seen.parsed++;
          expect(result.events).toHaveLength(recorded.items.length);
          seen.sources += expectSourcesMatch(result);
          for (const event of result.events) {
            expect(isLevel(event.level)).toBe(true);
            expect(isStage(event.stage)).toBe(true);
          }
        }
      }),
      { numRuns: 1000 },
    );
    expect(seen.parsed).toBeGreaterThan(50);
    expect(seen.rejected).toBeGreaterThan(50);
    expect(seen.sources).toBeGreaterThan(50 * recorded.items.length);
  });

  it('always parses when only a request or response object is mutated', () => {
    const withObjects = recorded.items
      .map((recordedItem, index) => ({ recordedItem, index }))
      .filter(({ recordedItem }) => isContainer(recordedItem.responseObject));
    expect(withObjects.length).toBeGreaterThan(0);
    fc.assert(
      fc.property(
        fc.constantFrom(...withObjects.map(({ index }) => index)),
        fc.constantFrom('requestObject', 'responseObject'),
        fc.array(fc.nat(), { minLength: 1, maxLength: 6 }),
        fc.option(jsonValue, { nil: undefined }),
        (index, field, steps, replacement) => {
          const doc = structuredClone(recorded);
          const root = (doc.items[index] as JsonRecord)[field];
          if (!isContainer(root) || keysOf(root).length === 0) return;
          const { parent, key } = locate(root, steps);
          if (replacement === undefined) remove(parent, key);
          else (parent as Record<string | number, unknown>)[key] = replacement;
          expect(parseAuditPayload(JSON.stringify(doc)).events).toHaveLength(recorded.items.length);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('isRfc3339', () => {
  it('checks the whole timestamp even when its second was seen before', () => {
    expect(isRfc3339('2026-11-22T04:08:57.440160Z')).toBe(true);
    expect(isRfc3339('2026-11-22T04:08:57.440161Z')).toBe(true);
    expect(isRfc3339('2026-11-22T04:08:57Z')).toBe(true);
    expect(isRfc3339('2026-11-22T04:08:57.5+01:30')).toBe(true);
    for (const bad of [
      '2026-11-22T04:08:57.Z',
      '2026-11-22T04:08:57.1234567890Z',
      '2026-11-22T04:08:57+24:00',
      '2026-11-22T04:08:57+01:60',
      '2026-11-22T04:08:57',
      '2026-11-22T04:08:57z',
      '2026-11-22T04:08:57.440160Z ',
      '2026-11-22T04:08:5',
    ]) {
      expect(isRfc3339(bad), bad).toBe(false);
    }
  });

  it('never lets an invalid date vouch for its second', () => {
    expect(isRfc3339('2021-02-29T00:00:00Z')).toBe(false);
    expect(isRfc3339('2021-02-29T00:00:00.1Z')).toBe(false);
  });

  // Go's calendar is the proleptic Gregorian one for every year, where year 0 is a leap year
  // (divisible by 400); JavaScript's Date.UTC reads years 0 to 99 as 1900 to 1999.
  it.each([
    ['0000-02-29T00:00:00Z', true],
    ['0004-02-29T00:00:00Z', true],
    ['0099-02-29T00:00:00Z', false],
    ['0100-02-29T00:00:00Z', false],
    ['0400-02-29T00:00:00Z', true],
    ['1900-02-29T00:00:00Z', false],
    ['2000-02-29T00:00:00Z', true],
  ])('reads 29 February of %s as Go does: valid %s', (timestamp, valid) => {
    expect(isRfc3339(timestamp)).toBe(valid);
  });
});
