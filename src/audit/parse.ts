/**
 * Decoding of audit webhook payloads: `audit.k8s.io/v1` and `v1beta1` EventList or single Event,
 * validated field by field, with limits that bound the work one request can cause.
 *
 * Pure: no I/O, no clock, no logger.
 */
import { JsonReader, lastNonSpace, skipSpace } from './json-value.ts';
import { isPointTime } from './time.ts';
import {
  AUDIT_V1,
  AUDIT_V1BETA1,
  type AuditEvent,
  EVENT_MODEL,
  type FieldDecl,
  type FieldDecls,
  isRecord,
  type Level,
  POINT_TIME_RANGE,
} from './types.ts';

/** Why a payload was rejected; stable, for clients and metrics. */
export type AuditParseErrorCode =
  | 'MALFORMED_JSON'
  | 'TOO_DEEP'
  | 'WRONG_API_VERSION'
  | 'WRONG_KIND'
  | 'INVALID_EVENT'
  | 'TOO_MANY_EVENTS';

/** A payload that is not an acceptable audit Event or EventList. Never retryable. */
export class AuditParseError extends Error {
  override readonly name = 'AuditParseError';
  /** Stable error code. */
  readonly code: AuditParseErrorCode;
  /** Field path of the offending value (e.g. `items[3].stage`), empty for the whole document. */
  readonly field: string;

  constructor(code: AuditParseErrorCode, field: string, message: string, options?: ErrorOptions) {
    super(field === '' ? message : `${field}: ${message}`, options);
    this.code = code;
    this.field = field;
  }
}

/** Limits applied while decoding one payload. */
export interface ParseLimits {
  /** Most events accepted in one EventList. */
  readonly maxEvents: number;
  /** Deepest JSON nesting accepted anywhere in the document. */
  readonly maxDepth: number;
}

/**
 * Defaults for {@link ParseLimits}.
 *
 * - maxEvents 10,000: the kube-apiserver's default webhook buffer size
 *   (`--audit-webhook-batch-buffer-size`); no batch cut from that buffer can be larger.
 * - maxDepth 512: far deeper than any Kubernetes object nests, and shallow enough that
 *   re-serialising a payload can never exhaust the stack.
 */
export const DEFAULT_PARSE_LIMITS: ParseLimits = Object.freeze({
  maxEvents: 10_000,
  maxDepth: 512,
});

/** Which apiVersion a payload arrived in. */
export type AuditApiVersion = typeof AUDIT_V1 | typeof AUDIT_V1BETA1;

/** A decoded payload: its events in v1 form and what it was sent as. */
export interface DecodedPayload {
  readonly apiVersion: AuditApiVersion;
  readonly kind: 'EventList' | 'Event';
  readonly events: AuditEvent[];
  /**
   * Per event, its JSON as received when that is one line that parses back to the event as
   * decoded (decoding neither converted nor removed anything of it), else undefined: a spool can
   * store it instead of serialising the event again. Only {@link parseAuditPayload} gives them,
   * for a `v1` EventList whose items hold no line break.
   */
  readonly sources?: readonly (string | undefined)[];
  /**
   * Per event, its text as received (less any body left out) with its `level` given anew, where
   * that parses back to the event at that level: what a copy of an event without bodies that
   * differs from it in its level only (a sink that keeps it at a lower level) serialises to. Given
   * with {@link sources}, for the same payloads.
   */
  readonly levelled?: LevelledSources;
}

/**
 * Parses a request body holding an EventList or a single Event.
 *
 * @throws AuditParseError for anything that is not a valid payload within `limits`.
 */
export function parseAuditPayload(
  body: string,
  limits: ParseLimits = DEFAULT_PARSE_LIMITS,
  options: PayloadOptions = {},
): DecodedPayload {
  const items: number[] = [];
  const levels: number[] = [];
  const omit: Omissions | null =
    options.omitBodies === true ? { spans: [], items: [], end: -1 } : null;
  scanJson(body, limits.maxDepth, { items, levels }, omit);
  const value = parseJson(body, omit);
  const unchanged: boolean[] = [];
  const payload = decode(value, limits, options, unchanged);
  const { events } = payload;
  // Every element of `items` is an event, so an object the scan found: the objects are the
  // events, in order, when there are as many (none in another array at the second level, nor in
  // a first of two keys that both spell `items`, one escaped, of which JSON.parse keeps the
  // last). They are lines when no line break comes between the first's start and the last's end
  // (the apiserver ends its bodies with one).
  if (
    payload.kind !== 'EventList' ||
    payload.apiVersion !== AUDIT_V1 ||
    events.length === 0 ||
    items.length !== 2 * events.length
  ) {
    return payload;
  }
  const lineBreak = body.indexOf('\n', items[0]);
  if (lineBreak !== -1 && lineBreak < (items.at(-1) as number)) return payload;
  const sources = new Array<string | undefined>(events.length);
  // An item that lost a body is no longer its text.
  const cut = omit?.items ?? [];
  let next = 0;
  for (let i = 0; i < events.length; i++) {
    const omitted = cut[next] === i;
    if (omitted) next++;
    sources[i] =
      unchanged[i] === true && !omitted ? body.slice(items[2 * i], items[2 * i + 1]) : undefined;
  }
  const levelled = new LevelledSources(body, items, levels, unchanged, omit?.spans ?? []);
  return { ...payload, sources, levelled };
}

/**
 * The texts of a payload's events with their `level` given anew ({@link DecodedPayload.levelled}):
 * each item's text less the bodies cut out of it, the value of its one `level` member replaced.
 * Built when asked, from offsets the scan noted; only for events decoded unchanged.
 */
export class LevelledSources {
  readonly #text: string;
  readonly #items: readonly number[];
  readonly #levels: readonly number[];
  readonly #unchanged: readonly boolean[];
  readonly #spans: readonly number[];

  constructor(
    text: string,
    items: readonly number[],
    levels: readonly number[],
    unchanged: readonly boolean[],
    spans: readonly number[],
  ) {
    this.#text = text;
    this.#items = items;
    this.#levels = levels;
    this.#unchanged = unchanged;
    this.#spans = spans;
  }

  /**
   * The `index`th event's text at `level`: it parses to the event as decoded with that level.
   * Undefined when there is none: the event was converted or lost a null member as decoded, or its
   * item has no single `level` member spelt plainly, or a key that spells it with an escape.
   */
  at(index: number, level: Level): string | undefined {
    const levelStart = this.#levels[2 * index] ?? -1;
    if (levelStart < 0 || this.#unchanged[index] !== true) return undefined;
    const levelEnd = this.#levels[2 * index + 1] as number;
    const start = this.#items[2 * index] as number;
    const end = this.#items[2 * index + 1] as number;
    const text = this.#text;
    const spans = this.#spans;
    let out = '';
    let at = start;
    // The cuts inside the item, in order; the level's value lies between two of them, or around.
    for (
      let k = firstAtOrAfter(spans, start);
      k < spans.length && (spans[k] as number) < end;
      k += 2
    ) {
      const cut = spans[k] as number;
      if (at <= levelStart && levelStart < cut) {
        out += `${text.slice(at, levelStart)}"${level}"`;
        at = levelEnd;
      }
      out += text.slice(at, cut);
      at = spans[k + 1] as number;
    }
    if (at <= levelStart) {
      out += `${text.slice(at, levelStart)}"${level}"`;
      at = levelEnd;
    }
    out += text.slice(at, end);
    // Escapes are rare outside bodies (Go writes `&` as one in a request URI): only a text with
    // one is walked for a key that spells level with it.
    return out.includes('\\') && spellsLevelEscaped(out) ? undefined : out;
  }
}

/** The index of the first span of `spans` (pairs, in order) that starts at or after `offset`. */
function firstAtOrAfter(spans: readonly number[], offset: number): number {
  let low = 0;
  let high = spans.length >> 1;
  while (low < high) {
    const mid = (low + high) >> 1;
    if ((spans[2 * mid] as number) < offset) low = mid + 1;
    else high = mid;
  }
  return 2 * low;
}

/**
 * `JSON.parse` of the text, without the spans `omit` cut when that parses to an EventList; else of
 * the whole text (the cuts are then forgotten), so that an error is the whole text's.
 */
function parseJson(body: string, omit: Omissions | null): unknown {
  if (omit !== null && omit.spans.length > 0) {
    try {
      const value: unknown = JSON.parse(without(body, omit.spans));
      if (isRecord(value) && value.kind === 'EventList') return value;
    } catch {
      // Reported below, as the whole text's error.
    }
    omit.items.length = 0;
    omit.spans.length = 0;
  }
  try {
    return JSON.parse(body);
  } catch (err) {
    throw new AuditParseError('MALFORMED_JSON', '', `malformed JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** How {@link parseAuditPayload} reads a payload. */
export interface PayloadOptions extends DecodeOptions {
  /**
   * Leave out the `requestObject` and `responseObject` of an EventList's items: their text is
   * checked to be JSON, as `JSON.parse` would, and never built into objects. For a receiver none
   * of whose sinks keeps a body (every policy's highest level is below Request): most of a
   * RequestResponse event's size is its bodies. A body that cannot be left out safely (its key
   * escaped, its text not valid JSON, the members around it malformed) is parsed as usual.
   */
  readonly omitBodies?: boolean;
}

/** How lenient decoding is about the document's type. */
export interface DecodeOptions {
  /**
   * Accept an object with neither `apiVersion` nor `kind` as an `audit.k8s.io/v1` Event, as audit
   * tools often store bare items of an EventList. The webhook receiver never sets this.
   */
  readonly allowBareEvent?: boolean;
}

/**
 * Decodes an already parsed JSON value holding an EventList or a single Event.
 *
 * Events are validated in place and returned without copying; v1beta1-only fields are removed.
 */
export function decodeAuditPayload(
  value: unknown,
  limits: ParseLimits = DEFAULT_PARSE_LIMITS,
  options: DecodeOptions = {},
): DecodedPayload {
  return decode(value, limits, options, null);
}

/** {@link decodeAuditPayload}, noting in `unchanged` (when given) which events it left as parsed. */
function decode(
  value: unknown,
  limits: ParseLimits,
  options: DecodeOptions,
  unchanged: boolean[] | null,
): DecodedPayload {
  if (!isRecord(value)) {
    throw new AuditParseError(
      'INVALID_EVENT',
      '',
      `expected a JSON object, got ${describe(value)}`,
    );
  }
  if (
    options.allowBareEvent === true &&
    value.apiVersion === undefined &&
    value.kind === undefined
  ) {
    return { apiVersion: AUDIT_V1, kind: 'Event', events: [toEvent(value, -1, AUDIT_V1)] };
  }
  const apiVersion = value.apiVersion;
  if (apiVersion !== AUDIT_V1 && apiVersion !== AUDIT_V1BETA1) {
    throw new AuditParseError(
      'WRONG_API_VERSION',
      'apiVersion',
      `unsupported value ${JSON.stringify(apiVersion ?? null)}: supported values: "${AUDIT_V1}", "${AUDIT_V1BETA1}"`,
    );
  }
  const kind = value.kind;
  if (kind === 'Event') {
    return { apiVersion, kind, events: [toEvent(value, -1, apiVersion)] };
  }
  if (kind !== 'EventList') {
    throw new AuditParseError(
      'WRONG_KIND',
      'kind',
      `unsupported value ${JSON.stringify(kind ?? null)}: supported values: "EventList", "Event"`,
    );
  }
  const items = value.items;
  // Go decodes an absent or null `items` as an empty list.
  if (items === undefined || items === null) {
    return { apiVersion, kind, events: [] };
  }
  if (!Array.isArray(items)) {
    throw new AuditParseError(
      'INVALID_EVENT',
      'items',
      `expected an array, got ${describe(items)}`,
    );
  }
  if (items.length > limits.maxEvents) {
    throw new AuditParseError(
      'TOO_MANY_EVENTS',
      'items',
      `${items.length} events exceed the limit of ${limits.maxEvents} per request`,
    );
  }
  const events = new Array<AuditEvent>(items.length);
  for (let i = 0; i < items.length; i++) {
    events[i] = toEvent(items[i], i, apiVersion);
    if (unchanged !== null) unchanged[i] = !at.changed;
  }
  return { apiVersion, kind, events };
}

/**
 * Parses one line of an apiserver audit log (`--audit-log-format=json`): a single Event.
 *
 * @throws AuditParseError when the line is not a valid Event.
 */
export function parseAuditLogLine(
  line: string,
  limits: ParseLimits = DEFAULT_PARSE_LIMITS,
): AuditEvent {
  const payload = parseAuditPayload(line, limits);
  if (payload.kind !== 'Event') {
    throw new AuditParseError('WRONG_KIND', 'kind', 'expected a single Event per line');
  }
  // biome-ignore lint/style/noNonNullAssertion: a decoded Event payload always holds one event.
  return payload.events[0]!;
}

/**
 * Where the check is, for its error messages: the item of the list (-1 for a single Event) and
 * the objects it descended into; and whether it changed the event (removed a field). Checks are
 * synchronous; each event starts afresh (an error leaves them as they were when it was thrown),
 * and a path is only built for an error.
 */
const at = { item: -1, objects: [] as string[], depth: 0, changed: false };

/** The path of `name` (of `key` of it, when given) where the check is, e.g. `items[3].user.uid`. */
function pathTo(name?: string, key?: string): string {
  let path = at.item === -1 ? '' : `items[${at.item}]`;
  for (let i = 0; i < at.depth; i++) path = join(path, at.objects[i] as string);
  if (name !== undefined) path = join(path, name);
  return key === undefined ? path : `${path}[${key}]`;
}

// Item-level apiVersion/kind are optional inside a list (the apiserver omits them), but when
// present they must agree with the list's version.
function toEvent(value: unknown, item: number, listVersion: AuditApiVersion): AuditEvent {
  at.item = item;
  // Not the array's length: setting it to 0 would free its storage, to be allocated again.
  at.depth = 0;
  at.changed = false;
  if (!isRecord(value)) {
    throw invalid(pathTo(), `expected an Event object, got ${describe(value)}`);
  }
  if (item !== -1) {
    if (value.apiVersion !== undefined && value.apiVersion !== listVersion) {
      throw new AuditParseError(
        'WRONG_API_VERSION',
        pathTo('apiVersion'),
        `${JSON.stringify(value.apiVersion)} does not match the list's "${listVersion}"`,
      );
    }
    if (value.kind !== undefined && value.kind !== 'Event') {
      throw new AuditParseError(
        'WRONG_KIND',
        pathTo('kind'),
        `unsupported value ${JSON.stringify(value.kind)}: supported values: "Event"`,
      );
    }
  }
  if (listVersion === AUDIT_V1BETA1) {
    convertFromV1beta1(value);
    at.changed = true;
  }
  checkFields(value, EVENT_FIELDS);
  if (value.apiVersion !== undefined || value.kind !== undefined) {
    at.changed = true;
    delete value.apiVersion;
    delete value.kind;
  }
  return value as unknown as AuditEvent;
}

/**
 * A declared field, ready to check: the declaration walked once, not for every event, into objects
 * of one shape (the checks then read their properties at one place in memory).
 */
interface FieldCheck {
  readonly name: string;
  readonly type: FieldDecl['type'];
  readonly required: boolean;
  readonly pointTime: boolean;
  /** The values of an enum. */
  readonly values: readonly string[];
  /** The fields of an object. */
  readonly fields: readonly FieldCheck[];
}

function compile(fields: FieldDecls): readonly FieldCheck[] {
  return Object.entries(fields).map(([name, decl]) => ({
    name,
    type: decl.type,
    required: 'required' in decl && decl.required === true,
    pointTime: decl.type === 'timestamp' && decl.pointTime === true,
    values: decl.type === 'enum' ? decl.values : [],
    fields: decl.type === 'object' ? compile(decl.fields) : [],
  }));
}

const EVENT_FIELDS = compile(EVENT_MODEL);

/**
 * Checks the declared fields of `obj` in place, and removes its null values: Go decodes null as
 * absent, and so does the model.
 */
function checkFields(obj: Record<string, unknown>, fields: readonly FieldCheck[]) {
  for (const field of fields) checkField(obj[field.name], field);
  for (const key in obj) {
    if (obj[key] === null) {
      delete obj[key];
      at.changed = true;
    }
  }
}

// The path of a field is only built when it is wrong.
function checkField(value: unknown, field: FieldCheck): void {
  if (value === undefined || value === null) {
    if (field.required) throw invalid(pathTo(field.name), 'Required value');
    return;
  }
  switch (field.type) {
    case 'string':
      if (typeof value !== 'string') {
        throw invalid(pathTo(field.name), `expected a string, got ${describe(value)}`);
      }
      if (value === '' && field.required) throw invalid(pathTo(field.name), 'Required value');
      return;
    case 'enum':
      if (typeof value !== 'string' || !field.values.includes(value)) {
        throw enumError(pathTo(field.name), value, field.values);
      }
      return;
    case 'timestamp':
      if (typeof value !== 'string' || !isRfc3339(value)) {
        throw invalid(pathTo(field.name), `expected an RFC 3339 timestamp, got ${describe(value)}`);
      }
      if (field.pointTime && !isPointTime(value)) {
        throw invalid(
          pathTo(field.name),
          `unsupported value ${JSON.stringify(value)}: must be from ${POINT_TIME_RANGE.earliest} ` +
            `through ${POINT_TIME_RANGE.latest}, the times InfluxDB can store`,
        );
      }
      return;
    case 'int32':
      if (!Number.isInteger(value)) {
        throw invalid(pathTo(field.name), `expected an integer, got ${describe(value)}`);
      }
      if ((value as number) < INT32_MIN || (value as number) > INT32_MAX) {
        throw invalid(
          pathTo(field.name),
          `expected an integer from ${INT32_MIN} to ${INT32_MAX}, got ${describe(value)}`,
        );
      }
      return;
    case 'strings':
      checkStrings(value, field);
      return;
    case 'stringMap': {
      if (!isRecord(value)) {
        throw invalid(pathTo(field.name), `expected an object of strings, got ${describe(value)}`);
      }
      for (const key in value) {
        if (typeof value[key] !== 'string') {
          throw invalid(
            pathTo(field.name, JSON.stringify(key)),
            `expected a string, got ${describe(value[key])}`,
          );
        }
      }
      return;
    }
    case 'stringsMap': {
      if (!isRecord(value)) {
        throw invalid(pathTo(field.name), `expected an object, got ${describe(value)}`);
      }
      for (const key in value) {
        checkStrings(value[key], field, key);
      }
      return;
    }
    case 'object': {
      if (!isRecord(value)) {
        throw invalid(pathTo(field.name), `expected an object, got ${describe(value)}`);
      }
      at.objects[at.depth++] = field.name;
      checkFields(value, field.fields);
      at.depth--;
      return;
    }
    case 'json':
      return;
  }
}

// Go's int32, the type of metav1.Status.code.
const INT32_MIN = -2_147_483_648;
const INT32_MAX = 2_147_483_647;

/** An array of strings: the value of `field`, or of its `key` in a map of them. */
function checkStrings(value: unknown, field: FieldCheck, key?: string): void {
  if (value === undefined || value === null) return;
  if (!Array.isArray(value)) {
    throw invalid(stringsPath(field, key), `expected an array of strings, got ${describe(value)}`);
  }
  for (let i = 0; i < value.length; i++) {
    if (typeof value[i] !== 'string') {
      throw invalid(
        `${stringsPath(field, key)}[${i}]`,
        `expected a string, got ${describe(value[i])}`,
      );
    }
  }
}

function stringsPath(field: FieldCheck, key: string | undefined): string {
  return pathTo(field.name, key === undefined ? undefined : JSON.stringify(key));
}

/**
 * v1beta1 carried ObjectMeta and a deprecated `timestamp`; v1 dropped both. As upstream
 * `v1beta1/conversion.go`: `metadata.creationTimestamp` fills an empty `stageTimestamp`, and
 * `timestamp` an empty `requestReceivedTimestamp`.
 */
function convertFromV1beta1(value: Record<string, unknown>): void {
  const metadata = value.metadata;
  if (isEmpty(value.stageTimestamp) && isRecord(metadata) && !isEmpty(metadata.creationTimestamp)) {
    value.stageTimestamp = metadata.creationTimestamp;
  }
  if (isEmpty(value.requestReceivedTimestamp) && !isEmpty(value.timestamp)) {
    value.requestReceivedTimestamp = value.timestamp;
  }
  delete value.metadata;
  delete value.timestamp;
}

function isEmpty(value: unknown): boolean {
  return value === undefined || value === null || value === '';
}

// RFC 3339 with optional fraction, as metav1.MicroTime serialises.
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:Z|([+-])(\d{2}):(\d{2}))$/;

/**
 * Whether `value` is an RFC 3339 timestamp Go's `time.Parse` accepts: fields in range, the day
 * existing in its month (no 29 February 2021, no 24:00).
 */
export function isRfc3339(value: string): boolean {
  // The second of the timestamp checked last, again (most timestamps of a batch): no copies.
  if (lastSecond !== '' && value.startsWith(lastSecond)) return hasValidTail(value);
  // The events of a batch share a few seconds: the date and time part is checked once per second.
  const second = value.slice(0, 19);
  if (CHECKED_SECONDS.has(second)) {
    lastSecond = second;
    return hasValidTail(value);
  }
  // Only a valid timestamp vouches for its first 19 characters; an invalid one is checked whole.
  if (!isRfc3339Slow(value)) return false;
  if (CHECKED_SECONDS.size >= 256) CHECKED_SECONDS.clear();
  CHECKED_SECONDS.add(second);
  lastSecond = second;
  return true;
}

// `YYYY-MM-DDTHH:MM:SS` prefixes already found valid, and the one that matched last.
const CHECKED_SECONDS = new Set<string>();
let lastSecond = '';
// What may follow a valid date and time, from its 20th character: a fraction, then Z or an offset
// within range.
const RFC3339_TAIL = /(?:\.\d{1,9})?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$/y;

function hasValidTail(value: string): boolean {
  RFC3339_TAIL.lastIndex = 19;
  return RFC3339_TAIL.test(value);
}

function isRfc3339Slow(value: string): boolean {
  const m = RFC3339.exec(value);
  if (m === null) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59) return false;
  if (m[7] !== undefined && (Number(m[8]) > 23 || Number(m[9]) > 59)) return false;
  return day >= 1 && day <= daysInMonth(year, month);
}

/**
 * Days in a month of the proleptic Gregorian calendar, as Go counts them for every year; not
 * `Date.UTC`, which reads years 0 to 99 as 1900 to 1999 and so took 0000-02-29 for invalid.
 */
function daysInMonth(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
}

/**
 * Rejects documents nested deeper than `maxDepth` before `JSON.parse` builds them.
 *
 * A single pass over the text that tracks brackets outside string literals; malformed text is
 * left for `JSON.parse` to report.
 */
export function checkJsonDepth(text: string, maxDepth: number): void {
  scanJson(text, maxDepth, null, null);
}

/**
 * The bodies an EventList's items leave out of the text `JSON.parse` reads: the spans
 * `[start, end)` cut (a member with its comma), the items they were in, in order; and where the
 * last cut ended (after a comma when it took the one after its member).
 */
interface Omissions {
  readonly spans: number[];
  readonly items: number[];
  end: number;
}

/** Where {@link scanJson} notes what it finds of the elements of an array at the second level. */
interface Found {
  /** Where each object begins and ends (the offsets of `{` and after `}`). */
  readonly items: number[];
  /**
   * For each, where the value of its one `level` member begins and ends (the quotes of its
   * string), or -1 and -1: no such member, more than one spelt plainly, or a value that is not a
   * string. (A key that spells it with an escape is looked for when a text is asked for.)
   */
  readonly levels: number[];
}

/**
 * {@link checkJsonDepth}; also notes in `found` the objects that are elements of an array at the
 * second level, and in `omit`, when given, the `requestObject` and `responseObject` members of
 * the elements of `items` (see {@link omitBody}). Valid JSON is assumed for `found`: it is only of
 * use once the text parsed.
 */
function scanJson(
  text: string,
  maxDepth: number,
  found: Found | null,
  omit: Omissions | null,
): void {
  const n = text.length;
  let depth = 0;
  // Whether the open value at the second level is an array; whether it is the value of `items`;
  // whether the last string at the first level spelled `items` (the key of what follows).
  let inList = false;
  let inItems = false;
  let itemsKey = false;
  // Whether the open value at the third level is an element of `items` that is an object.
  let inItem = false;
  // The value of the open element's `level` member: its span, or -2 once it cannot be told.
  let levelStart = -1;
  let levelEnd = -1;
  let reader: JsonReader | undefined;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      // Jump to the closing quote: most of a payload is strings, and indexOf is native.
      const end = stringEnd(text, i);
      if (end === -1) return; // unterminated: JSON.parse reports it
      if (depth === 1) {
        itemsKey = end - i === 6 && text.startsWith('items', i + 1);
      } else if (depth === 3 && inItem) {
        if (omit !== null && isBodyKey(text, i, end)) {
          reader ??= new JsonReader(text, maxDepth);
          const valueEnd = omitBody(
            text,
            i,
            end + 1,
            reader,
            omit,
            (found?.items.length ?? 1) >> 1,
          );
          // A body read whole is skipped; one that is not valid JSON is scanned as any value.
          if (valueEnd !== -1) {
            i = valueEnd - 1;
            continue;
          }
        } else if (
          end - i === 6 &&
          found !== null &&
          text.startsWith('level', i + 1) &&
          isKey(text, i)
        ) {
          const value = skipSpace(text, skipSpace(text, end + 1) + 1);
          levelStart = levelStart === -1 && text.charCodeAt(value) === 0x22 ? value : -2;
          levelEnd = levelStart === -2 ? -1 : stringEnd(text, value) + 1;
        }
      }
      i = end;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > maxDepth) {
        throw new AuditParseError(
          'TOO_DEEP',
          '',
          `JSON nesting exceeds the limit of ${maxDepth} levels`,
        );
      }
      if (depth === 2) {
        inList = c === 0x5b;
        inItems = inList && itemsKey;
      } else if (depth === 3 && inList && c === 0x7b) {
        found?.items.push(i);
        inItem = inItems;
        levelStart = -1;
        levelEnd = -1;
      } else if (depth === 3) {
        inItem = false;
      }
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      if (depth === 3 && inList && c === 0x7d && found !== null) {
        found.items.push(i + 1);
        const known = inItem && levelStart >= 0;
        found.levels.push(known ? levelStart : -1, known ? levelEnd : -1);
      }
      depth--;
    }
  }
}

/** Whether the string that opens at `quote`, at the third level, is a key: after `{` or `,`. */
function isKey(text: string, quote: number): boolean {
  const before = text.charCodeAt(lastNonSpace(text, quote));
  return before === 0x7b /* { */ || before === 0x2c; /* , */
}

/**
 * Whether an object's text has a key that spells `level` with an escape: `JSON.parse` takes it for
 * the member of that name, the scan does not.
 */
function spellsLevelEscaped(text: string): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const close = stringEnd(text, i);
      if (
        depth === 1 &&
        hasBackslash(text, i, close) &&
        isKey(text, i) &&
        JSON.parse(text.slice(i, close + 1)) === 'level'
      ) {
        return true;
      }
      i = close;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      depth++;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    }
  }
  return false;
}

/** Whether the string from the quote at `start` to the one at `end` holds a backslash. */
function hasBackslash(text: string, start: number, end: number): boolean {
  for (let k = start + 1; k < end; k++) if (text.charCodeAt(k) === 0x5c) return true;
  return false;
}

/** The closing quote of the string that opens at `quote` (-1 when there is none). */
function stringEnd(text: string, quote: number): number {
  let end = text.indexOf('"', quote + 1);
  while (end !== -1 && isEscaped(text, end)) end = text.indexOf('"', end + 1);
  return end;
}

/** Whether the string from the quote at `start` to the one at `end` is a body's key, unescaped. */
function isBodyKey(text: string, start: number, end: number): boolean {
  return (
    (end - start === 14 && text.startsWith('requestObject', start + 1)) ||
    (end - start === 15 && text.startsWith('responseObject', start + 1))
  );
}

/**
 * For a body's key at `key` in an item of `items` (the string ends at `keyEnd`): where its value
 * ends when it is valid JSON (-1 when not, or when the key is not followed by `:`), and the
 * member cut out of the text when that is sure to leave the rest as valid, or invalid, as it was:
 * with the comma before it when one follows a value there; first in its object (after `{`, or
 * after a member cut with the comma after it), with the comma after it when a key follows that,
 * or alone when `}` does. Anything else (`{,`, `,,`, a trailing comma, no comma) stays for
 * `JSON.parse` to report. `item` is the index of the element of `items` the key is in.
 */
function omitBody(
  text: string,
  key: number,
  keyEnd: number,
  reader: JsonReader,
  omit: Omissions,
  item: number,
): number {
  const colon = skipSpace(text, keyEnd);
  if (text.charCodeAt(colon) !== 0x3a /* : */) return -1;
  // Three levels around the value: the list, its `items`, the item.
  const valueEnd = reader.valueEnd(skipSpace(text, colon + 1), 3);
  if (valueEnd === -1) return -1;
  const after = skipSpace(text, valueEnd);
  const next = text.charCodeAt(after);
  const before = lastNonSpace(text, key);
  const previous = text.charCodeAt(before);
  let span: [number, number] | undefined;
  // A comma that ends the last cut was taken with a first member: this one is first now.
  if (previous === 0x7b /* { */ || (previous === 0x2c && before === omit.end - 1)) {
    if (next === 0x7d /* } */) {
      span = [key, valueEnd];
    } else if (next === 0x2c /* , */ && text.charCodeAt(skipSpace(text, after + 1)) === 0x22) {
      span = [key, after + 1];
    }
  } else if (previous === 0x2c && (next === 0x2c || next === 0x7d)) {
    const beforeComma = text.charCodeAt(lastNonSpace(text, before));
    if (beforeComma !== 0x7b && beforeComma !== 0x2c) span = [before, valueEnd];
  }
  if (span !== undefined) {
    omit.spans.push(span[0], span[1]);
    if (omit.items.at(-1) !== item) omit.items.push(item);
    omit.end = span[1];
  }
  return valueEnd;
}

/** `text` without the spans `[start, end)` of `spans`, in order. */
function without(text: string, spans: readonly number[]): string {
  let kept = text.slice(0, spans[0]);
  for (let i = 1; i < spans.length - 1; i += 2) {
    kept += text.slice(spans[i], spans[i + 1]);
  }
  return kept + text.slice(spans.at(-1));
}

// A quote is escaped when an odd number of backslashes precede it.
function isEscaped(text: string, quote: number): boolean {
  let k = quote - 1;
  while (text.charCodeAt(k) === 0x5c) k--;
  return (quote - 1 - k) % 2 === 1;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === 'object') return 'an object';
  // Only numbers and booleans are left in parsed JSON.
  return `${typeof value} ${JSON.stringify(value)}`;
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

function invalid(path: string, message: string): AuditParseError {
  return new AuditParseError('INVALID_EVENT', path, message);
}

function enumError(path: string, value: unknown, supported: readonly string[]): AuditParseError {
  if (value === undefined || value === null || value === '') return invalid(path, 'Required value');
  return invalid(
    path,
    `unsupported value ${JSON.stringify(value)}: supported values: ${supported.map((s) => `"${s}"`).join(', ')}`,
  );
}
