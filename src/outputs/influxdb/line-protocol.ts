/**
 * The InfluxDB schema of an audit event (SPEC 4.3), encoded as line protocol. Pure.
 *
 * One point per event: bounded-cardinality tags, everything else as fields, and a timestamp that
 * keeps two different events apart while a retried copy of the same event overwrites itself.
 */
import type { AuditEvent } from '../../audit/types.ts';
import { TAG_NAMES, type TagName } from '../../sinks/types.ts';

/** Schema version, written nowhere but documented with the schema; bump on incompatible change. */
export const SCHEMA_VERSION = 1;

/** How a sink's points look. */
export interface PointSchema {
  readonly measurement: string;
  /** Tags to write as tags; the other known tags are written as string fields of the same name. */
  readonly tags: readonly TagName[];
  readonly staticTags: Readonly<Record<string, string>>;
  /** Value of the `sink` tag. */
  readonly sink: string;
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

/** Encodes events of one sink; keeps the timestamp slots it handed out (see {@link PointTimestamps}). */
export class LineProtocolEncoder {
  readonly #schema: PointSchema;
  readonly #tagsAsFields: readonly TagName[];
  readonly #timestamps: PointTimestamps;
  readonly #measurement: string;
  readonly #staticTags: readonly [string, string][];

  constructor(schema: PointSchema, timestamps = new PointTimestamps()) {
    this.#schema = schema;
    this.#timestamps = timestamps;
    this.#measurement = escapeMeasurement(schema.measurement);
    this.#staticTags = Object.entries(schema.staticTags).map(([k, v]) => [k, v]);
    this.#tagsAsFields = TAG_NAMES.filter((t) => !schema.tags.includes(t));
  }

  /** One line of line protocol for `event`, without the trailing newline. */
  encode(event: AuditEvent): string {
    const tags: [string, string][] = [...this.#staticTags];
    for (const tag of this.#schema.tags) {
      const value = tagValue(tag, event, this.#schema.sink);
      if (value !== '') tags.push([tag, value]);
    }
    // Sorted tag keys: InfluxDB's own order, so the series key is canonical.
    tags.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    let series = this.#measurement;
    for (const [k, v] of tags) series += `,${escapeTag(k)}=${escapeTag(v)}`;

    let fields = `audit_id=${quote(event.auditID)}`;
    const addString = (key: string, value: string | undefined) => {
      if (value !== undefined && value !== '') fields += `,${key}=${quote(value)}`;
    };
    addString('request_uri', event.requestURI);
    addString('name', event.objectRef?.name);
    addString('user_groups', event.user.groups?.join(','));
    addString('impersonated_user', event.impersonatedUser?.username);
    addString('source_ip', event.sourceIPs?.join(','));
    addString('user_agent', event.userAgent);
    const latency = latencyMs(event);
    if (latency !== undefined) fields += `,latency_ms=${formatFloat(latency)}`;
    addString('reason', event.responseStatus?.reason);
    if (event.annotations !== undefined && Object.keys(event.annotations).length > 0) {
      addString('annotations', JSON.stringify(event.annotations));
    }
    if (event.requestObject !== undefined)
      addString('request_object', JSON.stringify(event.requestObject));
    if (event.responseObject !== undefined)
      addString('response_object', JSON.stringify(event.responseObject));
    for (const tag of this.#tagsAsFields) addString(tag, tagValue(tag, event, this.#schema.sink));

    const micros = epochMicros(event.stageTimestamp);
    const offset = this.#timestamps.slot(series, micros, `${event.auditID}\u0000${event.stage}`);
    return `${series} ${fields} ${micros}${String(offset).padStart(3, '0')}`;
  }
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
 * Memory is bounded: the slots of the oldest `maxBuckets` (series, microsecond) pairs are forgotten
 * first. A retried event whose bucket was forgotten is written at its hashed slot again, which is
 * the slot it got unless it had collided.
 */
export class PointTimestamps {
  readonly #buckets = new Map<string, Map<number, string>>();
  readonly #maxBuckets: number;

  /** @param maxBuckets how many (series, microsecond) pairs to remember; 65,536 by default. */
  constructor(maxBuckets = 65_536) {
    this.#maxBuckets = maxBuckets;
  }

  /** The slot of `eventKey` in the bucket of `series` at `micros`. */
  slot(series: string, micros: string, eventKey: string): number {
    const start = fnv1a(eventKey) % 1000;
    const bucketKey = `${micros} ${series}`;
    let bucket = this.#buckets.get(bucketKey);
    if (bucket === undefined) {
      bucket = new Map([[start, eventKey]]);
      this.#buckets.set(bucketKey, bucket);
      if (this.#buckets.size > this.#maxBuckets) {
        // Maps iterate in insertion order: the first key is the oldest bucket.
        const oldest = this.#buckets.keys().next().value as string;
        this.#buckets.delete(oldest);
      }
      return start;
    }
    for (let i = 0; i < 1000; i++) {
      const slot = (start + i) % 1000;
      const holder = bucket.get(slot);
      if (holder === eventKey) return slot;
      if (holder === undefined) {
        bucket.set(slot, eventKey);
        return slot;
      }
    }
    // 1,000 events in one series and microsecond: nothing left to keep them apart.
    return start;
  }
}

/** FNV-1a, 32 bits, over UTF-16 code units: fast, stable, well spread for short keys. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

const TIMESTAMP = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

/** Microseconds since the epoch of an RFC 3339 timestamp, as a decimal string (no precision loss). */
export function epochMicros(timestamp: string): string {
  const m = TIMESTAMP.exec(timestamp);
  if (m === null) throw new RangeError(`not an RFC 3339 timestamp: ${timestamp}`);
  const seconds = Date.parse(`${m[1] as string}${m[3] as string}`) / 1000;
  const micros = ((m[2] ?? '') + '000000').slice(0, 6);
  return (BigInt(seconds) * 1_000_000n + BigInt(micros)).toString();
}

function latencyMs(event: AuditEvent): number | undefined {
  if (event.requestReceivedTimestamp === undefined) return undefined;
  const micros =
    Number(epochMicros(event.stageTimestamp)) - Number(epochMicros(event.requestReceivedTimestamp));
  return micros / 1000;
}

// Always with a decimal point, so that InfluxDB types the field as float even for whole values.
function formatFloat(value: number): string {
  const text = String(value);
  return /[.e]/.test(text) ? text : `${text}.0`;
}

/** Measurement names escape commas and spaces (and line breaks, which line protocol cannot carry). */
export function escapeMeasurement(text: string): string {
  return text.replace(/[, \\\n\r]/g, escapeChar);
}

/** Tag keys, tag values and field keys escape commas, equals signs and spaces. */
export function escapeTag(text: string): string {
  return text.replace(/[,= \\\n\r]/g, escapeChar);
}

function escapeChar(c: string): string {
  if (c === '\n') return '\\n';
  if (c === '\r') return '\\r';
  return `\\${c}`;
}

/** A string field value: quoted, with backslashes and double quotes escaped. */
export function quote(text: string): string {
  return `"${text.replace(/["\\]/g, '\\$&')}"`;
}
