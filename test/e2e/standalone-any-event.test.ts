// A property of the whole path from the receiver to InfluxDB, against the built CLI (`node
// dist/main.js standalone`) in front of a real influxd (test/harness): for any event the receiver
// answers 200, the event ends written or dead-lettered, every other event of its batch is
// written, and the sink keeps writing what comes next; an event it answers 400 is named
// (`items[N].<field>`) and nothing of its batch is written.
//
// Each batch is 20 recorded events and, at a random place among them, one recorded event with one
// to three of the fields the outputs read set to an arbitrary value: wrong JSON types, long and
// multi-byte strings, control characters, the characters line protocol escapes, timestamps across
// and beyond InfluxDB's range. Whether the receiver must take the value is predicted from the
// field's type in `audit.k8s.io/v1` (the table below), so a receiver refusing too much fails as
// well as one taking too much. The changed event is found by a marker in its requestURI, not by
// its auditID, which may be among the changed fields. `level` never becomes `None`: the policy
// would drop the event, as it should.
//
// Batches are posted one after another, then a last good one; once that is written the sink has
// delivered everything before it, and the bucket and the sink's dead-letter file are compared
// with what each answer promised. Starts one influxd and one standalone process for the file.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditEvent, POINT_TIME_RANGE, STAGES } from '../../src/audit/types.ts';
import {
  type DeadLetterRecord,
  deadLetterPath,
  readDeadLetters,
} from '../../src/sinks/dead-letter.ts';
import { freePort, type InfluxServer, startInfluxd } from '../harness/influxd.ts';
import { type StandaloneProcess, startStandalone } from '../harness/standalone.ts';
import { recordedEvents } from '../support/recorded.ts';
import { waitFor } from '../support/wait.ts';

const BUCKET = 'any-event';
const RECORDED = recordedEvents();
/** Good events around the changed one in each batch. */
const GOOD_PER_BATCH = 20;
/**
 * Batches posted: 100 reach every field with most kinds of value in a few seconds (2 s for 40 on
 * 2 cores); `ANY_EVENT_RUNS=<n>` explores further, with `FC_SEED=random`.
 */
const RUNS = Number(process.env.ANY_EVENT_RUNS ?? 100);
/** The query parameter marking the changed event's requestURI with its batch number. */
const MARK = 'kao-any';

let influx: InfluxServer;
let dir: string;
let standalone: StandaloneProcess;

beforeAll(async () => {
  influx = await startInfluxd();
  await influx.createBucket(BUCKET);
  dir = await mkdtemp(join(tmpdir(), 'kao-e2e-any-event-'));
  await mkdir(join(dir, 'manifests'));
  // Every stage kept, so that a changed stage changes nothing but the point's stage tag.
  await writeFile(
    join(dir, 'manifests', 'sink.yaml'),
    `apiVersion: kube-audit.dev/v1alpha1
kind: AuditSink
metadata: {name: trail}
spec:
  policy: {level: RequestResponse, stages: [RequestReceived, ResponseStarted, ResponseComplete, Panic]}
  influxdb:
    url: ${influx.url}
    org: ${influx.org}
    bucket: ${BUCKET}
    flushInterval: 100ms
    tokenSecretRef: {name: influx, key: token}
---
apiVersion: v1
kind: Secret
metadata: {name: influx, namespace: kube-audit}
stringData: {token: ${influx.token}}
`,
  );
  standalone = await startStandalone({
    manifests: join(dir, 'manifests'),
    port: await freePort(),
    dataDir: join(dir, 'data'),
  });
});
afterAll(async () => {
  await standalone?.stop('SIGKILL');
  await influx?.dispose();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

// ---- what the receiver must take --------------------------------------------------------------

/** The JSON type of a field in `audit.k8s.io/v1`, and whether the apiserver always sets it. */
type Kind =
  | 'string'
  | 'requiredString'
  | 'level'
  | 'stage'
  | 'strings'
  | 'stringMap'
  | 'int32'
  | 'timestamp'
  | 'pointTime'
  | 'object'
  | 'requiredObject';

/**
 * The fields the outputs read, typed as k8s.io/apiserver/pkg/apis/audit/v1/types.go declares
 * them; `pointTime`: a timestamp that becomes the point's time, so within what InfluxDB stores.
 */
const FIELDS: Readonly<Record<string, Kind>> = {
  level: 'level',
  auditID: 'requiredString',
  stage: 'stage',
  verb: 'requiredString',
  user: 'requiredObject',
  'user.username': 'string',
  'user.groups': 'strings',
  sourceIPs: 'strings',
  userAgent: 'string',
  objectRef: 'object',
  'objectRef.resource': 'string',
  'objectRef.namespace': 'string',
  'objectRef.name': 'string',
  'objectRef.uid': 'string',
  'objectRef.apiGroup': 'string',
  'objectRef.apiVersion': 'string',
  'objectRef.resourceVersion': 'string',
  'objectRef.subresource': 'string',
  responseStatus: 'object',
  'responseStatus.code': 'int32',
  'responseStatus.reason': 'string',
  annotations: 'stringMap',
  requestReceivedTimestamp: 'timestamp',
  stageTimestamp: 'pointTime',
};

const LEVELS_KEPT = ['Metadata', 'Request', 'RequestResponse'] as const;
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;
const REQUIRED: readonly Kind[] = [
  'requiredString',
  'level',
  'stage',
  'pointTime',
  'requiredObject',
];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Whether a field of `kind` may hold `value` (as JSON reads it back; undefined: absent). */
function accepts(kind: Kind, value: unknown): boolean {
  // Go decodes null as absent.
  if (value === undefined || value === null) return !REQUIRED.includes(kind);
  switch (kind) {
    case 'string':
      return typeof value === 'string';
    case 'requiredString':
      return typeof value === 'string' && value !== '';
    case 'level':
      return (LEVELS_KEPT as readonly unknown[]).includes(value);
    case 'stage':
      return (STAGES as readonly unknown[]).includes(value);
    case 'strings':
      return Array.isArray(value) && value.every((v) => typeof v === 'string');
    case 'stringMap':
      return isRecord(value) && Object.values(value).every((v) => typeof v === 'string');
    case 'int32':
      return (
        Number.isInteger(value) && (value as number) >= INT32_MIN && (value as number) <= INT32_MAX
      );
    case 'timestamp':
      return typeof value === 'string' && epochNanos(value) !== undefined;
    case 'pointTime': {
      const nanos = typeof value === 'string' ? epochNanos(value) : undefined;
      // A point's time is its microsecond times 1,000 plus a slot of up to 999 ns.
      return (
        nanos !== undefined &&
        nanos >= POINT_TIME_RANGE.earliestMicros * 1000n &&
        nanos <= POINT_TIME_RANGE.latestMicros * 1000n + 999n
      );
    }
    case 'object':
    case 'requiredObject':
      // Whole objects are only ever set to `{}` or to something that is not an object.
      return isRecord(value);
  }
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:Z|([+-])(\d{2}):(\d{2}))$/;

function isLeap(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

function daysInMonth(year: number, month: number): number {
  return month === 2 ? (isLeap(year) ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/**
 * Nanoseconds since the epoch of a timestamp Go's `time.Parse(time.RFC3339Nano, …)` takes;
 * undefined for one it refuses.
 */
function epochNanos(text: string): bigint | undefined {
  const m = RFC3339.exec(text);
  if (m === null) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const offsetHours = Number(m[9] ?? 0);
  const offsetMinutes = Number(m[10] ?? 0);
  if (offsetHours > 23 || offsetMinutes > 59) return undefined;
  const offset = (m[8] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60;
  const seconds =
    BigInt(daysFromCivil(year, month, day)) * 86_400n +
    BigInt(hour * 3600 + minute * 60 + second - offset);
  return seconds * 1_000_000_000n + BigInt((m[7] ?? '').padEnd(9, '0'));
}

// ---- values ------------------------------------------------------------------------------------

/** Characters that line protocol, JSON, UTF-8 or a log line treat specially. */
const SPECIALS = [
  '\\',
  '\\\\',
  ',',
  '=',
  ' ',
  '"',
  "'",
  '\n',
  '\r',
  '\t',
  '\u0000',
  '\u001b',
  '\u007f',
  '\u0085',
  '\u2028',
  '\ufeff',
  '\ufffd',
  'ü',
  '€',
  '\u{1f600}',
  '\ud800',
  '\udc00',
  '\u2026',
  '#!~#',
  '{',
];

const piece = fc.oneof(
  fc.constantFrom(...SPECIALS),
  fc.string({ unit: 'binary', maxLength: 4 }),
  fc.string({ unit: 'grapheme-ascii', maxLength: 8 }),
);

const shortText = fc.array(piece, { maxLength: 12 }).map((pieces) => pieces.join(''));

/** 5,000 to 100,000 UTF-16 units: past a tag's share of the series key, multi-byte or not. */
const longText = fc
  .tuple(
    fc.array(piece, { minLength: 1, maxLength: 4 }).map((pieces) => pieces.join('') || 'x'),
    fc.integer({ min: 5_000, max: 100_000 }),
  )
  .map(([unit, length]) => unit.repeat(Math.ceil(length / unit.length)).slice(0, length));

const text = fc.oneof({ weight: 4, arbitrary: shortText }, { weight: 1, arbitrary: longText });

/** JSON values of any type but a string. */
const other = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
);

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** A valid RFC 3339 timestamp of any year 0000 to 9999, often near InfluxDB's bounds. */
const validTimestamp = fc
  .record({
    year: fc.oneof(
      fc.integer({ min: 0, max: 9999 }),
      fc.integer({ min: 1677, max: 1678 }),
      fc.integer({ min: 2261, max: 2262 }),
      fc.integer({ min: 1970, max: 2100 }),
    ),
    month: fc.integer({ min: 1, max: 12 }),
    day: fc.integer({ min: 1, max: 31 }),
    hour: fc.integer({ min: 0, max: 23 }),
    minute: fc.integer({ min: 0, max: 59 }),
    second: fc.integer({ min: 0, max: 59 }),
    fraction: fc.option(fc.stringMatching(/^\d{1,9}$/), { nil: undefined }),
    zone: fc.oneof(
      fc.constant('Z'),
      fc
        .tuple(
          fc.constantFrom('+', '-'),
          fc.integer({ min: 0, max: 23 }),
          fc.integer({ min: 0, max: 59 }),
        )
        .map(([sign, h, m]) => `${sign}${pad(h)}:${pad(m)}`),
    ),
  })
  .map(
    (t) =>
      `${pad(t.year, 4)}-${pad(t.month)}-${pad(Math.min(t.day, daysInMonth(t.year, t.month)))}` +
      `T${pad(t.hour)}:${pad(t.minute)}:${pad(t.second)}` +
      `${t.fraction === undefined ? '' : `.${t.fraction}`}${t.zone}`,
  );

/** Timestamps at and just beyond InfluxDB's bounds, and dates only some parsers get right. */
const BOUNDARY_TIMESTAMPS = [
  POINT_TIME_RANGE.earliest,
  POINT_TIME_RANGE.latest,
  '1677-09-21T00:12:43.145224999Z',
  '1677-09-21T00:12:43.145224Z',
  '1677-09-21T00:12:43.145225+00:00',
  '1677-09-21T23:59:59+23:59',
  '2262-04-11T23:47:16.854774Z',
  '2262-04-11T23:47:16.854775Z',
  '2262-04-11T00:00:00-23:59',
  '0000-02-29T00:00:00Z',
  '0001-01-01T00:00:00Z',
  '1969-12-31T23:59:59.999999999Z',
  '1970-01-01T00:00:00Z',
  '9999-12-31T23:59:59.999999999Z',
];

const MALFORMED_TIMESTAMPS = [
  '',
  '2021-02-29T00:00:00Z',
  '2100-02-29T00:00:00Z',
  '2021-04-31T00:00:00Z',
  '2021-13-01T00:00:00Z',
  '2021-01-01T24:00:00Z',
  '2021-01-01T00:60:00Z',
  '2021-01-01T00:00:60Z',
  '2021-01-01 00:00:00Z',
  '2021-01-01T00:00:00',
  '2021-01-01T00:00:00.Z',
  '2021-01-01T00:00:00.1234567890Z',
  '2021-01-01T00:00:00+24:00',
  '2021-01-01T00:00:00+01:60',
  '+12021-01-01T00:00:00Z',
  '-0001-01-01T00:00:00Z',
  '1e9',
];

const timestamp = fc.oneof(
  { weight: 3, arbitrary: validTimestamp },
  { weight: 2, arbitrary: fc.constantFrom(...BOUNDARY_TIMESTAMPS) },
  { weight: 1, arbitrary: fc.constantFrom(...MALFORMED_TIMESTAMPS) },
  { weight: 1, arbitrary: shortText },
  { weight: 1, arbitrary: other },
);

const annotationKey = fc.oneof(
  fc.constantFrom(
    'authorization.k8s.io/decision',
    'authorization.k8s.io/reason',
    '__proto__',
    'constructor',
    '',
  ),
  shortText,
);

/** Values for a field of each kind: mostly what the kind allows, often what it does not. */
const VALUES: { readonly [K in Kind]: fc.Arbitrary<unknown> } = {
  string: fc.oneof({ weight: 4, arbitrary: text }, fc.constant(''), other),
  requiredString: fc.oneof({ weight: 4, arbitrary: text }, fc.constant(''), other),
  level: fc.oneof(fc.constantFrom(...LEVELS_KEPT, 'metadata', 'Metadata '), shortText, other),
  stage: fc.oneof(fc.constantFrom(...STAGES, 'responseComplete'), shortText, other),
  strings: fc.oneof(
    { weight: 3, arbitrary: fc.array(text, { maxLength: 4 }) },
    fc.array(fc.oneof(shortText, other), { minLength: 1, maxLength: 4 }),
    shortText,
    other,
  ),
  stringMap: fc.oneof(
    { weight: 3, arbitrary: fc.dictionary(annotationKey, text, { maxKeys: 4 }) },
    fc.dictionary(annotationKey, fc.oneof(shortText, other), { minKeys: 1, maxKeys: 3 }),
    shortText,
    other,
  ),
  int32: fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: INT32_MIN, max: INT32_MAX }) },
    fc.constantFrom(INT32_MIN - 1, INT32_MAX + 1, 2 ** 53, 1e21, 0.5, -1.5),
    shortText,
    other,
  ),
  timestamp,
  pointTime: timestamp,
  object: fc.oneof(fc.constant({}), fc.integer(), fc.boolean(), fc.constant(null), shortText),
  requiredObject: fc.oneof(
    fc.constant({}),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    shortText,
  ),
};

/** One field set to one value. */
interface Change {
  readonly path: string;
  readonly value: unknown;
}

const change: fc.Arbitrary<Change> = fc
  .constantFrom(...Object.keys(FIELDS))
  .chain((path) => VALUES[FIELDS[path] as Kind].map((value) => ({ path, value })));

/** One to three fields of one event; a field inside an object that is itself changed is left out. */
const changes = fc
  .uniqueArray(change, { minLength: 1, maxLength: 3, selector: (c) => c.path })
  .map((all) => all.filter((c) => !all.some((p) => c.path.startsWith(`${p.path}.`))));

const batchCase = fc.record({
  /** The recorded event the changed one is made from. */
  base: fc.nat(RECORDED.length - 1),
  /** The recorded event the good ones start from. */
  first: fc.nat(RECORDED.length - 1),
  /** Where the changed event goes among the good ones. */
  position: fc.nat(GOOD_PER_BATCH),
  changes,
});

type BatchCase = typeof batchCase extends fc.Arbitrary<infer T> ? T : never;

// ---- batches -------------------------------------------------------------------------------------

/** A batch as posted, and what its answer promised. */
interface Posted {
  readonly n: number;
  readonly batchCase: BatchCase;
  /** auditIDs of the good events. */
  readonly good: readonly string[];
  /** Paths of the changes the receiver must refuse. */
  readonly refused: readonly string[];
  status?: number;
}

/** `count` recorded events made new by their auditIDs `any<n>-<k>`. */
function goodEvents(n: number | string, count: number, first = 0): AuditEvent[] {
  return Array.from({ length: count }, (_, k) => ({
    ...structuredClone(RECORDED[(first + k) % RECORDED.length] as AuditEvent),
    auditID: `any${n}-${k}`,
  }));
}

function setPath(event: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let target = event;
  for (const key of keys.slice(0, -1)) {
    if (!isRecord(target[key])) target[key] = {};
    target = target[key] as Record<string, unknown>;
  }
  target[keys.at(-1) as string] = value;
}

function getPath(event: unknown, path: string): unknown {
  let value = event;
  for (const key of path.split('.')) value = isRecord(value) ? value[key] : undefined;
  return value;
}

/** Batch `n` of `c`: its events, and which changes must be refused. */
function build(n: number, c: BatchCase): { posted: Posted; items: unknown[] } {
  const good = goodEvents(n, GOOD_PER_BATCH, c.first);
  const changed = structuredClone(RECORDED[c.base] as AuditEvent) as unknown as Record<
    string,
    unknown
  >;
  changed.auditID = `any${n}-changed`;
  const uri = String(changed.requestURI);
  changed.requestURI = `${uri}${uri.includes('?') ? '&' : '?'}${MARK}=${n}`;
  for (const { path, value } of c.changes) setPath(changed, path, value);
  // The event as the receiver reads it: what JSON keeps of each value.
  const sent: unknown = JSON.parse(JSON.stringify(changed));
  const refused = c.changes
    .filter(({ path }) => !accepts(FIELDS[path] as Kind, getPath(sent, path)))
    .map(({ path }) => path);
  const items: unknown[] = [...good];
  items.splice(c.position, 0, changed);
  return { posted: { n, batchCase: c, good: good.map((e) => e.auditID), refused }, items };
}

async function post(items: unknown[]): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${standalone.url}/audit/v1/events?timeout=30s`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items }),
  });
  const body = await res.text();
  try {
    return { status: res.status, body: JSON.parse(body) };
  } catch {
    return { status: res.status, body };
  }
}

/** A value as a failure message shows it: its type, length and start. */
function shown(value: unknown): string {
  const json = JSON.stringify(value) ?? 'undefined';
  return json.length > 120 ? `${json.slice(0, 120)}… (${json.length} characters of JSON)` : json;
}

function describeCase(p: Posted): string {
  const what = p.batchCase.changes.map(({ path, value }) => `${path} = ${shown(value)}`);
  return `batch ${p.n} (changed event at items[${p.batchCase.position}]: ${what.join('; ')})`;
}

// ---- what the bucket and the dead-letter file hold ---------------------------------------------

/** Every time a point can have: Flux's `range` wants bounds, and points before 1970 count too. */
const ALL_TIME = 'start: time(v: -9223372036854775806), stop: time(v: 9223372036854775807)';

/** What the sink has delivered so far. */
interface Delivered {
  /** auditIDs written that start with `any`. */
  readonly written: Set<string>;
  /** Batch numbers whose changed event is written (by the marker in its requestURI). */
  readonly changedWritten: Set<number>;
  /** Dead letters by the batch number in their event's requestURI. */
  readonly deadLetters: Map<number, DeadLetterRecord>;
  /** Dead-letter lines that are not records, or records without a marker. */
  readonly strayLetters: string[];
}

async function delivered(): Promise<Delivered> {
  const ids = await influx.query(`import "strings"
    from(bucket: "${BUCKET}")
    |> range(${ALL_TIME})
    |> filter(fn: (r) => r._measurement == "kubernetes_audit" and r._field == "audit_id")
    |> filter(fn: (r) => strings.hasPrefix(v: r._value, prefix: "any"))
    |> keep(columns: ["_value"])`);
  const uris = await influx.query(`import "strings"
    from(bucket: "${BUCKET}")
    |> range(${ALL_TIME})
    |> filter(fn: (r) => r._measurement == "kubernetes_audit" and r._field == "request_uri")
    |> filter(fn: (r) => strings.containsStr(v: r._value, substr: "${MARK}="))
    |> keep(columns: ["_value"])`);
  const deadLetters = new Map<number, DeadLetterRecord>();
  const strayLetters: string[] = [];
  const path = deadLetterPath(join(dir, 'data'), {
    kind: 'AuditSink',
    namespace: '',
    name: 'trail',
  });
  for await (const line of readDeadLetters(path)) {
    if (!line.ok) {
      strayLetters.push(`line ${line.line}: ${line.error}`);
      continue;
    }
    // The sink's one destination is InfluxDB: an event kept as a point has its URI in a field.
    const n = markOf(line.record.event?.requestURI ?? requestUriOfPoint(line.record.point));
    if (n === undefined)
      strayLetters.push(
        `line ${line.line}: ${shown(line.record.event?.auditID ?? line.record.auditID)}`,
      );
    else deadLetters.set(n, line.record);
  }
  return {
    written: new Set(ids.map((r) => String(r._value))),
    changedWritten: new Set(
      uris.map((r) => markOf(String(r._value))).filter((n) => n !== undefined),
    ),
    deadLetters,
    strayLetters,
  };
}

/** The `request_uri` field of a point's line protocol, unescaped. */
function requestUriOfPoint(point: string | undefined): string | undefined {
  const quoted = point === undefined ? null : /[ ,]request_uri="((?:[^"\\]|\\.)*)"/.exec(point);
  return quoted?.[1]?.replace(/\\(.)/g, '$1');
}

function markOf(uri: unknown): number | undefined {
  const m = new RegExp(`[?&]${MARK}=(\\d+)$`).exec(String(uri));
  return m === null ? undefined : Number(m[1]);
}

/** What `now` breaks of the promises the answers made; empty when every one is kept. */
function broken(posts: readonly Posted[], finalIds: readonly string[], now: Delivered): string[] {
  const problems: string[] = [];
  for (const p of posts) {
    const missing = p.good.filter((id) => !now.written.has(id));
    if (p.status === 200) {
      if (missing.length > 0)
        problems.push(`${describeCase(p)}: answered 200, ${missing.join(', ')} not written`);
      const letter = now.deadLetters.get(p.n);
      if (!now.changedWritten.has(p.n) && letter === undefined) {
        problems.push(
          `${describeCase(p)}: answered 200, the changed event neither written nor dead-lettered`,
        );
      }
      if (
        letter !== undefined &&
        (letter.message === '' ||
          letter.code === '' ||
          !['refused', 'unencodable'].includes(letter.reason))
      ) {
        problems.push(
          `${describeCase(p)}: dead letter without a reason: ${shown({ ...letter, event: undefined, point: undefined })}`,
        );
      }
    } else {
      const kept = p.good.filter((id) => now.written.has(id));
      if (kept.length > 0)
        problems.push(`${describeCase(p)}: answered 400, ${kept.join(', ')} written`);
      if (now.changedWritten.has(p.n) || now.deadLetters.has(p.n)) {
        problems.push(`${describeCase(p)}: answered 400, the changed event kept`);
      }
    }
  }
  const finalMissing = finalIds.filter((id) => !now.written.has(id));
  if (finalMissing.length > 0)
    problems.push(`the last good batch: ${finalMissing.length} events not written`);
  for (const stray of now.strayLetters)
    problems.push(`dead letter not from a changed event: ${stray}`);
  return problems;
}

describe('any event among good ones, against standalone and a real influxd', () => {
  it('writes or dead-letters every event it answers 200, writes the rest of its batch, and keeps writing; names every event it refuses', async () => {
    const posts: Posted[] = [];
    await fc.assert(
      fc.asyncProperty(batchCase, async (c) => {
        const { posted, items } = build(posts.length, c);
        const answer = await post(items);
        posted.status = answer.status;
        posts.push(posted);
        const what = describeCase(posted);
        if (posted.refused.length === 0) {
          expect(answer, what).toMatchObject({ status: 200 });
          return;
        }
        expect(answer, what).toMatchObject({ status: 400, body: { code: 'INVALID_EVENT' } });
        const message = String((answer.body as { message?: unknown }).message);
        const named = posted.refused.some((path) =>
          new RegExp(`^items\\[${c.position}\\]\\.${path.replaceAll('.', '\\.')}[:.[]`).test(
            message,
          ),
        );
        expect(named, `${what}: ${message}`).toBe(true);
      }),
      { numRuns: RUNS },
    );

    // Both answers were reached: a receiver taking everything, or nothing, is not this property.
    expect(posts.filter((p) => p.status === 200).length).toBeGreaterThan(RUNS / 4);
    expect(posts.filter((p) => p.status === 400).length).toBeGreaterThan(RUNS / 4);

    // The sink keeps flowing: a good batch after all of them is written. The sink delivers in
    // order, so by then it has delivered (or dead-lettered) every batch before it.
    const finalIds = goodEvents('-last', GOOD_PER_BATCH).map((e) => e.auditID);
    expect((await post(goodEvents('-last', GOOD_PER_BATCH))).status).toBe(200);
    const now = await waitFor(
      'every batch answered 200 delivered',
      delivered,
      (d) => broken(posts, finalIds, d).length === 0,
      { timeoutMs: 45_000, intervalMs: 500 },
    ).catch(() => delivered());
    expect(broken(posts, finalIds, now)).toEqual([]);
  }, 150_000);
});
