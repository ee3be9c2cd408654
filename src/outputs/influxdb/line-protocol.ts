/**
 * The InfluxDB schema of an audit event (SPEC 4.3, docs/influxdb-schema.md), encoded as line
 * protocol. Pure.
 *
 * One point per event: bounded-cardinality tags, everything else as fields, and a timestamp that
 * keeps two different events apart while a retried copy of the same event overwrites itself.
 *
 * Escaping follows what influxd's parser actually does (models/points.go), checked against a real
 * server by test/integration/influxdb/escaping.test.ts:
 * - tag keys and values: `,`, `=` and space get a backslash; a backslash is kept as is (the server
 *   removes only the backslash of `\,`, `\=` and `\ `). Two things a tag cannot carry are
 *   transformed: a line break is written as the two characters `\n` (or `\r`), and each backslash
 *   of a run that ends the value or stands right before `,`, `=` or a space is written as U+FFFD
 *   (the server's parser would take it as escaping what follows).
 * - string field values: `"` and `\` get a backslash; every other character, line breaks included,
 *   is carried exactly. An empty string is not written at all, as an empty tag cannot be.
 * - a string field longer than {@link MAX_FIELD_BYTES} is cut to that many bytes, and
 *   `<field>_bytes` records its full size.
 * - a tag value longer than its share of the series key ({@link MAX_TAG_VALUE_BYTES} at most) is
 *   cut on a character boundary and ends with {@link CUT_MARKER}; the field `<tag>_full` holds the
 *   whole value.
 *
 * Events reach the encoder as `audit/parse.ts` checked them: every field it reads has its declared
 * type, and `stageTimestamp` lies in `POINT_TIME_RANGE`. An event that did not pass those checks
 * (spooled by an older version) fails with a non-retryable `UNENCODABLE` error rather than a
 * TypeError that delivery would retry forever; delivery sets that event aside as a dead letter and
 * writes the rest of its batch.
 */
import { bodyJson } from '../../audit/body-json.ts';
import { type QueuedEvent, StoredPoint } from '../../audit/stored-point.ts';
import { epochMicros, isPointTime } from '../../audit/time.ts';
import { type AuditEvent, POINT_TIME_RANGE } from '../../audit/types.ts';
import { OutputError } from '../types.ts';
import {
  FIELD_KEYS,
  FIELD_NAMES,
  type FieldName,
  type SelectableField,
  STRING_FIELDS,
  type StringFieldName,
  TAG_NAMES,
  type TagName,
} from './schema.ts';

/**
 * 1 MiB: influxd's largest string field value (`tsdb.MaxFieldValueLength`); it drops a longer
 * point and answers 422, which would block the sink on one oversized event.
 */
export const MAX_FIELD_BYTES = 1_048_576;

/** A string field the encoder writes. */
type StringField = StringFieldName | TagName | `${TagName}_full`;

/** Where a string field's value comes from: text, or JSON text written as is. */
type FieldSource =
  | { readonly text: (event: AuditEvent) => string | undefined }
  | { readonly json: (event: AuditEvent) => string | undefined };

/**
 * The value of each string field of the schema (`schema.ts`): a field added there does not compile
 * until it has its source here. Written in the schema's order.
 */
const FIELD_SOURCES: { readonly [F in StringFieldName]: FieldSource } = {
  audit_id: { text: (event) => event.auditID },
  request_uri: { text: (event) => event.requestURI },
  name: { text: (event) => event.objectRef?.name },
  // JSON, not a joined list: group names may contain commas (LDAP DNs from OIDC claims do).
  user_groups: { json: (event) => event.user.groups && JSON.stringify(event.user.groups) },
  impersonated_user: { text: (event) => event.impersonatedUser?.username },
  source_ip: { text: (event) => event.sourceIPs?.join(',') },
  user_agent: { text: (event) => event.userAgent },
  reason: { text: (event) => event.responseStatus?.reason },
  annotations: { json: (event) => event.annotations && JSON.stringify(event.annotations) },
  request_object: {
    json: (event) =>
      event.requestObject === undefined ? undefined : bodyJson(event.requestObject),
  },
  response_object: {
    json: (event) =>
      event.responseObject === undefined ? undefined : bodyJson(event.responseObject),
  },
};

/**
 * The longest series key a point may have: 65,535 bytes (influxd's `models.MaxKeyLength`) less
 * what influxd adds to it to store each field, `#!~#` and the field key, for the longest field key
 * (`impersonated_user_bytes`, 23 bytes): 65,508. A series key counts as written in line protocol,
 * escapes included. influxd 2.7.12 refuses a longer one, and with it the whole write (400); the
 * limit is measured by test/integration/influxdb/limits.test.ts.
 */
export const MAX_SERIES_KEY_BYTES =
  65_535 - 4 - Math.max(...FIELD_KEYS.map((key) => Buffer.byteLength(key)));

/**
 * 4,096 bytes: the longest tag value written, escapes included. The twelve schema tags at this
 * length take 49,258 bytes of the series key with their keys, which leaves about 16 KB for the
 * measurement and static tags. Far longer than any Kubernetes name (253 characters) or user name
 * an authenticator issues in practice; a tag that long is already useless for grouping.
 */
export const MAX_TAG_VALUE_BYTES = 4_096;

/** Ends a tag value that was cut; the field `<tag>_full` holds the whole value. */
export const CUT_MARKER = '\u2026';

const CUT_MARKER_BYTES = 3;

/** How a sink's points look. */
export interface PointSchema {
  readonly measurement: string;
  /** Tags to write as tags; the other known tags are written as string fields of the same name. */
  readonly tags: readonly TagName[];
  readonly staticTags: Readonly<Record<string, string>>;
  /** Value of the `sink` tag. */
  readonly sink: string;
  /**
   * The fields to write, tags not written as tags among them; absent: all of them. `audit_id` is
   * written either way.
   */
  readonly fields?: readonly SelectableField[];
  /** Longest string field value in UTF-8 bytes; {@link MAX_FIELD_BYTES} by default. */
  readonly maxFieldBytes?: number;
  /**
   * Longest tag value as written, in UTF-8 bytes; {@link MAX_TAG_VALUE_BYTES} by default, less
   * when the measurement and static tags leave a smaller share of {@link MAX_SERIES_KEY_BYTES}.
   */
  readonly maxTagValueBytes?: number;
}

/** The value of each schema tag for an event; empty means absent. */
function tagValue(tag: TagName, event: AuditEvent, sink: string): string {
  const ref = event.objectRef;
  switch (tag) {
    case 'level':
      return event.level;
    case 'stage':
      return event.stage;
    case 'verb':
      return event.verb;
    case 'api_group':
      return ref?.apiGroup ?? '';
    case 'api_version':
      return ref?.apiVersion ?? '';
    case 'resource':
      return ref?.resource ?? '';
    case 'subresource':
      return ref?.subresource ?? '';
    case 'namespace':
      return ref?.namespace ?? '';
    case 'user':
      return event.user.username ?? '';
    case 'code':
      return event.responseStatus?.code === undefined ? '' : String(event.responseStatus.code);
    case 'decision':
      return event.annotations?.['authorization.k8s.io/decision'] ?? '';
    case 'sink':
      return sink;
  }
}

/** `,<key>=` of every string field, made once. */
const FIELD_PREFIX: Readonly<Record<string, string>> = Object.fromEntries(
  [...STRING_FIELDS, ...TAG_NAMES].map((key) => [key, `,${key}=`]),
);

/** A tag of the series key: a fixed (static) value, or a schema tag read from each event. */
type SeriesTag =
  | { readonly key: string; readonly value: string }
  | { readonly key: string; readonly tag: TagName; readonly prefix: string };

/** Encodes the events of one sink, keeping the timestamp slots it handed out ({@link PointTimestamps}). */
export class LineProtocolEncoder {
  readonly #sink: string;
  // The fields written after audit_id, in the schema's order.
  readonly #fields: readonly Exclude<FieldName, 'audit_id'>[];
  readonly #tagsAsFields: readonly TagName[];
  readonly #timestamps: PointTimestamps;
  readonly #measurement: string;
  readonly #maxFieldBytes: number;
  readonly #maxTagValueBytes: number;
  // Sorted by key once, as InfluxDB sorts them: the series key is canonical with no per-event sort.
  readonly #seriesTags: readonly SeriesTag[];
  // The series key's hash before its event tags: the measurement, each tag key and static value.
  readonly #seriesSeed: number;

  constructor(schema: PointSchema, timestamps = new PointTimestamps()) {
    this.#sink = schema.sink;
    this.#timestamps = timestamps;
    this.#measurement = escapeMeasurement(schema.measurement);
    const tags: SeriesTag[] = [
      ...Object.entries(schema.staticTags)
        .filter(([, v]) => v !== '')
        .map(([k, v]) => ({ key: escapeTag(k), value: escapeTag(v) })),
      ...schema.tags.map((tag) => {
        const key = escapeTag(tag);
        return { key, tag, prefix: `,${key}=` };
      }),
    ];
    this.#seriesTags = tags.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    this.#seriesSeed = fnv1a(
      this.#seriesTags.map((t) => ('value' in t ? `${t.key}=${t.value}` : t.key)).join(','),
      fnv1a(this.#measurement),
    );
    const selected = (field: SelectableField) => schema.fields?.includes(field) ?? true;
    this.#fields = FIELD_NAMES.filter(
      (f): f is Exclude<FieldName, 'audit_id'> => f !== 'audit_id' && selected(f),
    );
    this.#tagsAsFields = TAG_NAMES.filter((t) => !schema.tags.includes(t) && selected(t));
    this.#maxFieldBytes = schema.maxFieldBytes ?? MAX_FIELD_BYTES;
    this.#maxTagValueBytes = Math.min(
      schema.maxTagValueBytes ?? MAX_TAG_VALUE_BYTES,
      tagValueShare(this.#measurement, this.#seriesTags),
    );
  }

  /** The longest tag value this encoder writes, in UTF-8 bytes as written. */
  get maxTagValueBytes(): number {
    return this.#maxTagValueBytes;
  }

  /**
   * One line of line protocol for `event`, without the trailing newline.
   *
   * @throws OutputError `UNENCODABLE` when the event was not checked by `audit/parse.ts` and cannot
   * be a point: the data itself is wrong, so retrying cannot help.
   */
  /**
   * The point of `event`, to be stored in its place (ADR 0027); undefined when the event cannot be
   * encoded or its line holds a line break (a string field's value with one).
   */
  point(event: AuditEvent): StoredPoint | undefined {
    let line: string;
    try {
      line = this.#encode(event);
    } catch {
      return undefined;
    }
    return line.includes('\n') ? undefined : new StoredPoint(line);
  }

  /** The line of an event, or of a point as it was made. */
  lineOf(queued: QueuedEvent): string {
    return queued instanceof StoredPoint ? queued.line : this.encode(queued);
  }

  encode(event: AuditEvent): string {
    try {
      return this.#encode(event);
    } catch (err) {
      throw new OutputError(
        'UNENCODABLE',
        `event ${JSON.stringify(String(event.auditID).slice(0, 100))} cannot be written as a point: ${(err as Error).message}`,
        { retryable: false, cause: err },
      );
    }
  }

  #encode(event: AuditEvent): string {
    if (!isPointTime(event.stageTimestamp)) {
      throw new RangeError(
        `stageTimestamp ${event.stageTimestamp} is outside ${POINT_TIME_RANGE.earliest} to ${POINT_TIME_RANGE.latest}`,
      );
    }
    let series = this.#measurement;
    // The series key's hash, from what varies in it: each event tag's value in the key's order.
    let seriesHash = this.#seriesSeed;
    // Tags cut to fit the series key, with their whole value: rare, so allocated only when needed.
    let cut: [TagName, string][] | undefined;
    for (const t of this.#seriesTags) {
      if ('value' in t) {
        series += `,${t.key}=${t.value}`;
        continue;
      }
      const value = tagValue(t.tag, event, this.#sink);
      if (value === '') {
        seriesHash = Math.imul(seriesHash, 0x01000193);
        continue;
      }
      let escaped = escapeTag(value);
      // A UTF-16 unit is at most 3 UTF-8 bytes: most values need no byte count at all.
      if (
        escaped.length * 3 > this.#maxTagValueBytes &&
        Buffer.byteLength(escaped) > this.#maxTagValueBytes
      ) {
        escaped = cutTag(value, this.#maxTagValueBytes);
        (cut ??= []).push([t.tag, value]);
      }
      // The value as written: values that escaping or cutting makes equal make one series.
      seriesHash = Math.imul(fnv1a(escaped, seriesHash), 0x01000193);
      series += t.prefix + escaped;
    }

    const micros = epochMicros(event.stageTimestamp);
    // The line is built in place: audit_id first and always, as every point has it.
    let line = `${series} audit_id=${this.#stringField('audit_id', event.auditID)}`;
    for (const key of this.#fields) {
      if (key === 'latency_ms') {
        if (event.requestReceivedTimestamp !== undefined) {
          const received = epochMicros(event.requestReceivedTimestamp);
          line += `,latency_ms=${formatFloat((Number(micros) - Number(received)) / 1000)}`;
        }
        continue;
      }
      const source = FIELD_SOURCES[key];
      if ('text' in source) line = this.#field(line, key, source.text(event));
      else {
        const json = source.json(event);
        if (json !== undefined) line += FIELD_PREFIX[key] + this.#jsonField(key, json);
      }
    }
    for (const tag of this.#tagsAsFields)
      line = this.#field(line, tag, tagValue(tag, event, this.#sink));
    if (cut !== undefined)
      for (const [tag, value] of cut) line = this.#field(line, `${tag}_full`, value);

    const offset = this.#timestamps.slotInSeries(
      seriesHash >>> 0,
      micros,
      eventHashOf(event.auditID, event.stage),
    );
    return `${line} ${pointNanos(micros, offset)}`;
  }

  /**
   * `,<key>=<value>` for a string field, or nothing for an absent or empty value: influxd 2.7's Flux
   * reader shifts the later values of a series after an empty string (the escaping integration test
   * shows it).
   */
  #field(line: string, key: StringField, value: string | undefined): string {
    if (value === undefined || value === '') return line;
    return line + (FIELD_PREFIX[key] ?? `,${key}=`) + this.#stringField(key, value);
  }

  /**
   * A JSON text as a string field, as long as the size limit allows. A text JSON.stringify wrote
   * holds no control character and no lone surrogate, so quoting it as a JSON string escapes
   * exactly its quotes and backslashes, which is what a string field needs; and V8 does that
   * several times faster than two `replaceAll` passes.
   */
  #jsonField(key: StringField, json: string): string {
    if (json.length * 3 > this.#maxFieldBytes) return this.#stringField(key, json);
    return JSON.stringify(json);
  }

  /** A quoted string field, cut to the size limit (with `<key>_bytes` added) when longer. */
  #stringField(key: StringField, value: string): string {
    // A UTF-16 unit is at most 3 UTF-8 bytes: most values need no byte count at all.
    if (value.length * 3 <= this.#maxFieldBytes) return quote(value);
    const bytes = Buffer.from(value.toWellFormed(), 'utf8');
    if (bytes.length <= this.#maxFieldBytes) return quote(value);
    // Cut on a character boundary: back up over UTF-8 continuation bytes (10xxxxxx).
    let end = this.#maxFieldBytes;
    while (end > 0 && ((bytes[end] as number) & 0xc0) === 0x80) end--;
    return `${quote(bytes.toString('utf8', 0, end))},${key}_bytes=${bytes.length}i`;
  }
}

/**
 * The bytes each event tag value may take so that the whole series key stays within
 * {@link MAX_SERIES_KEY_BYTES}: what the measurement, the static tags and every tag key leave,
 * shared equally among the tags read from events.
 */
function tagValueShare(measurement: string, tags: readonly SeriesTag[]): number {
  let fixed = Buffer.byteLength(measurement);
  let shared = 0;
  for (const t of tags) {
    // `,key=value` for a static tag, `,key=` for an event tag.
    fixed += 2 + Buffer.byteLength(t.key) + ('value' in t ? Buffer.byteLength(t.value) : 0);
    if (!('value' in t)) shared++;
  }
  return shared === 0 ? Infinity : Math.max(0, Math.floor((MAX_SERIES_KEY_BYTES - fixed) / shared));
}

/**
 * A tag value cut so that, escaped and with {@link CUT_MARKER}, it takes at most `maxBytes` bytes.
 * Cut between code points, never inside one; each character is counted at the most its escape can
 * take (a backslash may become U+FFFD, 3 bytes), so the result fits whatever follows it.
 */
function cutTag(value: string, maxBytes: number): string {
  const budget = maxBytes - CUT_MARKER_BYTES;
  let bytes = 0;
  let end = 0;
  while (end < value.length) {
    const code = value.codePointAt(end) as number;
    const cost =
      code === 0x5c // a backslash
        ? 3
        : code === 0x2c || code === 0x3d || code === 0x20 || code === 0x0a || code === 0x0d
          ? 2
          : code < 0x80
            ? 1
            : code < 0x800
              ? 2
              : code < 0x10000
                ? 3 // a lone surrogate too: it becomes U+FFFD
                : 4;
    if (bytes + cost > budget) break;
    bytes += cost;
    end += code < 0x10000 ? 1 : 2;
  }
  return escapeTag(`${value.slice(0, end)}${CUT_MARKER}`);
}

/**
 * Hands out the sub-microsecond part of point timestamps.
 *
 * The apiserver stamps events to the microsecond, and InfluxDB keeps one point per series and
 * timestamp: two events of the same series in the same microsecond would overwrite each other. Each
 * event gets a slot in [0, 999] ns, starting from a hash of its auditID and stage and moving to the
 * next free slot on a collision, so that
 * - the same event (a retried batch) always gets the same slot and overwrites itself, and
 * - up to 1,000 different events of one series and microsecond all survive.
 *
 * Memory is bounded by the number of events remembered ({@link size}): when it passes the limit,
 * the oldest (series, microsecond) buckets are forgotten first. Buckets and events are remembered
 * by hash, not by their strings (bench/influxdb.ts measures the bytes per event). A retried event
 * whose bucket was forgotten is written at its hashed slot again, which is the slot it got unless
 * it had collided.
 */
export class PointTimestamps {
  // Buckets by hash, in open addressing with linear probing: `#keys` holds a bucket's hash + 1
  // (0: free), `#events` the event hash of its only event (the common case), or CROWDED when it
  // holds several, kept in `#crowded` (slot -> event hash). Typed arrays rather than a Map: no
  // boxed number per event (the hashes pass 31 bits) and no table to compact as buckets are
  // forgotten, one per event.
  #keys: Int32Array;
  #events: Float64Array;
  #mask: number;
  #buckets = 0;
  readonly #crowded = new Map<number, Map<number, number>>();
  // Bucket hashes in creation order, in a ring: the oldest is forgotten first.
  #order: Int32Array;
  #head = 0;
  #count = 0;
  readonly #maxEvents: number;
  #size = 0;

  /**
   * @param maxEvents how many events to remember; 65,536 by default, seconds to minutes of a busy
   * sink, far longer than a retried batch takes to come back.
   */
  constructor(maxEvents = 65_536) {
    this.#maxEvents = maxEvents;
    // Grown as needed up to one entry per event, plus the one being added (every bucket holds an
    // event): a quiet sink among a thousand should not hold a quarter megabyte for nothing.
    this.#order = new Int32Array(Math.min(maxEvents + 1, 64));
    this.#keys = new Int32Array(INITIAL_TABLE);
    this.#events = new Float64Array(INITIAL_TABLE);
    this.#mask = INITIAL_TABLE - 1;
  }

  /** How many events are remembered now. */
  get size(): number {
    return this.#size;
  }

  /** The slot of `eventKey` in the bucket of `series` at `micros`. */
  slot(series: string, micros: string, eventKey: string): number {
    return this.slotInSeries(fnv1a(series), micros, eventHash(eventKey));
  }

  /**
   * {@link slot} for a series named by a 32-bit hash of its key, which the encoder computes from
   * the values that vary rather than from the whole key, and an event's hash ({@link eventHashOf}).
   * Equal keys must have equal hashes; two keys that share one only make their events skip each
   * other's slots.
   */
  slotInSeries(seriesHash: number, micros: string, event: number): number {
    const start = slotOf(event);
    // 30 bits keep the key a small integer; two buckets that share a hash only make their events
    // skip each other's slots, never overwrite each other.
    const bucketKey = fnv1a(micros, seriesHash) & 0x3fffffff;
    let at = this.#indexOf(bucketKey);
    if (this.#keys[at] === 0) {
      // At most three quarters full, so that a probe for a new bucket (most are) stays short.
      if ((this.#buckets + 1) * 4 > this.#keys.length * 3) {
        this.#growTable();
        at = this.#indexOf(bucketKey);
      }
      this.#keys[at] = bucketKey + 1;
      this.#events[at] = event;
      this.#buckets++;
      if (this.#count === this.#order.length) this.#growOrder();
      this.#order[(this.#head + this.#count) % this.#order.length] = bucketKey;
      this.#count++;
      this.#grew();
      return start;
    }
    const only = this.#events[at] as number;
    let slots: Map<number, number>;
    if (only !== CROWDED) {
      if (only === event) return start;
      slots = new Map([[slotOf(only), only]]);
      this.#crowded.set(bucketKey, slots);
      this.#events[at] = CROWDED;
    } else {
      slots = this.#crowded.get(bucketKey) as Map<number, number>;
    }
    for (let i = 0; i < 1000; i++) {
      const slot = (start + i) % 1000;
      const holder = slots.get(slot);
      if (holder === event) return slot;
      if (holder === undefined) {
        slots.set(slot, event);
        this.#grew();
        return slot;
      }
    }
    // 1,000 events in one series and microsecond: nothing left to keep them apart.
    return start;
  }

  /** Where the bucket is in the table, or the free place where it would go. */
  #indexOf(bucketKey: number): number {
    const keys = this.#keys;
    const mask = this.#mask;
    const stored = bucketKey + 1;
    let at = bucketKey & mask;
    for (;;) {
      const key = keys[at];
      if (key === stored || key === 0) return at;
      at = (at + 1) & mask;
    }
  }

  /**
   * Frees the table's place `at`: each later entry of its run that may sit earlier on its probe
   * path moves back into the hole, so that no lookup stops short of it (no tombstones).
   */
  #removeAt(at: number): void {
    const keys = this.#keys;
    const events = this.#events;
    const mask = this.#mask;
    let hole = at;
    let next = at;
    for (;;) {
      next = (next + 1) & mask;
      const key = keys[next] as number;
      if (key === 0) break;
      const home = (key - 1) & mask;
      if (((next - home) & mask) >= ((next - hole) & mask)) {
        keys[hole] = key;
        events[hole] = events[next] as number;
        hole = next;
      }
    }
    keys[hole] = 0;
    this.#buckets--;
  }

  #growTable(): void {
    const keys = this.#keys;
    const events = this.#events;
    this.#keys = new Int32Array(keys.length * 2);
    this.#events = new Float64Array(keys.length * 2);
    this.#mask = keys.length * 2 - 1;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i] as number;
      if (key === 0) continue;
      const at = this.#indexOf(key - 1);
      this.#keys[at] = key;
      this.#events[at] = events[i] as number;
    }
  }

  #growOrder(): void {
    const grown = new Int32Array(Math.min(this.#order.length * 2, this.#maxEvents + 1));
    for (let i = 0; i < this.#count; i++) {
      grown[i] = this.#order[(this.#head + i) % this.#order.length] as number;
    }
    this.#order = grown;
    this.#head = 0;
  }

  #grew(): void {
    this.#size++;
    while (this.#size > this.#maxEvents && this.#count > 0) {
      const oldest = this.#order[this.#head] as number;
      this.#head = (this.#head + 1) % this.#order.length;
      this.#count--;
      const at = this.#indexOf(oldest);
      if (this.#keys[at] === 0) continue;
      const crowded = this.#events[at] === CROWDED ? this.#crowded.get(oldest) : undefined;
      this.#size -= crowded?.size ?? 1;
      if (crowded !== undefined) this.#crowded.delete(oldest);
      this.#removeAt(at);
    }
  }
}

/** The table's first size, in places (a power of two). */
const INITIAL_TABLE = 64;

/** Marks a bucket of several events; an event hash is never negative. */
const CROWDED = -1;

/** FNV-1a, 32 bits, over UTF-16 code units: fast, stable, well spread for short keys. */
function fnv1a(text: string, seed = 0x811c9dc5): number {
  let hash = seed;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/**
 * 53 bits identifying an event (two FNV-1a variants): two different events of one bucket taken
 * for the same one would overwrite each other, so 32 bits are not enough.
 */
function eventHash(key: string): number {
  const low = fnv1a(key);
  const high = fnv1a(key, 0x050c5d1f) & 0x1fffff;
  return high * 0x1_0000_0000 + low;
}

/**
 * `eventHash(`${auditID}\u0000${stage}`)` in one pass over both strings and without building the
 * key: the same value, for a fraction of the work on every point.
 */
export function eventHashOf(auditID: string, stage: string): number {
  let low = 0x811c9dc5;
  let high = 0x050c5d1f;
  for (let i = 0; i < auditID.length; i++) {
    const c = auditID.charCodeAt(i);
    low = Math.imul(low ^ c, 0x01000193);
    high = Math.imul(high ^ c, 0x01000193);
  }
  low = Math.imul(low, 0x01000193); // the separator, U+0000: x ^ 0 is x
  high = Math.imul(high, 0x01000193);
  for (let i = 0; i < stage.length; i++) {
    const c = stage.charCodeAt(i);
    low = Math.imul(low ^ c, 0x01000193);
    high = Math.imul(high ^ c, 0x01000193);
  }
  return ((high >>> 0) & 0x1fffff) * 0x1_0000_0000 + (low >>> 0);
}

/** The hashed slot of an event: its low 32 bits modulo 1,000. */
function slotOf(event: number): number {
  return (event % 0x1_0000_0000) % 1000;
}

/** The point time in nanoseconds: the microsecond's first nanosecond plus the slot. */
function pointNanos(micros: string, slot: number): string {
  // Before 1970 the digits of the slot would count backwards from a negative microsecond.
  if (micros.charCodeAt(0) === 0x2d /* - */) return String(BigInt(micros) * 1000n + BigInt(slot));
  return `${micros}${slot < 10 ? '00' : slot < 100 ? '0' : ''}${slot}`;
}

// Always with a decimal point, so that InfluxDB types the field as float even for whole values.
function formatFloat(value: number): string {
  const text = String(value);
  return Number.isInteger(value) && !text.includes('e') ? `${text}.0` : text;
}

/**
 * A measurement name: `,` and space separate, and the server unescapes `\=` and `\"` too, so all
 * four get a backslash; line breaks and backslashes before them as for tags.
 */
export function escapeMeasurement(text: string): string {
  return text
    .toWellFormed()
    .replace(/\\+(?=[,= "]|$)/g, unrepresentable)
    .replace(/[,= "\n\r]/g, escapeChar);
}

/** A tag key, tag value or field key: see the module comment for the rules. */
export function escapeTag(text: string): string {
  if (!TAG_SPECIAL.test(text) && text.isWellFormed()) return text;
  return text
    .toWellFormed()
    .replace(/\\+(?=[,= ]|$)/g, unrepresentable)
    .replace(/[,= \n\r]/g, escapeChar);
}

const TAG_SPECIAL = /[,= \n\r\\]/;

function escapeChar(c: string): string {
  if (c === '\n') return '\\n';
  if (c === '\r') return '\\r';
  return `\\${c}`;
}

// influxd's line scanner pairs backslashes (`\\` is one unit) while its tag scanner only looks one
// character back: an odd run of backslashes before a separator or the end makes them disagree on
// where the value ends, and lines split in the wrong place (found by the property test). Every
// backslash of such a run, odd or even, becomes U+FFFD: one rule, for values that never occur in
// practice (Kubernetes names cannot hold a backslash; `DOMAIN\\user` is written as it is).
function unrepresentable(run: string): string {
  return '\ufffd'.repeat(run.length);
}

const FIELD_SPECIAL = /["\\]/;

/**
 * A string field value: quoted, with backslashes and double quotes escaped. Lone UTF-16
 * surrogates (possible in JSON input) become U+FFFD, as any UTF-8 encoder makes them.
 */
export function quote(text: string): string {
  if (!FIELD_SPECIAL.test(text) && text.isWellFormed()) return `"${text}"`;
  // Two plain-string passes beat one regular expression with a replacement pattern, by far.
  return `"${text.toWellFormed().replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}
