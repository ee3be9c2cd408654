/**
 * The on-disk format of a durable queue, version 1. Plain enough to inspect with `cat` and `jq`:
 *
 * - `<dir>/<n>.jsonl`, `n` a 20-digit zero-padded sequence number: a segment. One event per line,
 *   the event as JSON (the text it was received as when that was one line, else with
 *   `requestObject` and `responseObject` last) then `\n`; JSON escapes every newline inside
 *   strings, so `\n` frames records exactly. Sequence numbers are implicit: line `k` (from 0) of
 *   segment `n` is event `n + k`. Segments only grow at the end; a new one starts when the last
 *   reaches its size limit.
 * - `<dir>/cursor-<consumer>.json`: `{"version":1,"consumer":"<name>","next":<n>}`, the sequence
 *   number of the first event that consumer has not committed. Replaced atomically: written to
 *   `<file>.tmp`, fsynced, renamed over the old one (the directory is fsynced for a new one).
 *
 * A crash can leave only one kind of damage, because records are written in order and a write is
 * acknowledged after its fsync: an unacknowledged tail at the end of the last segment, possibly
 * cut mid-line or, after a power loss, partly zeros. A line counts as a record only if it ends in
 * `\n` and parses as a JSON object; a prefix of a JSON object never does, because its closing
 * brace is its last character. Opening cuts that tail (see `scanSegment`); a bad line with good
 * records after it is kept and skipped when read (`stats().corrupt`). There is no checksum:
 * damage inside a record that still parses (bit rot) is not detected. Segments carry no version
 * marker: a different record encoding needs a different file extension.
 *
 * Pure: no I/O.
 */
import { bodyJson } from '../audit/body-json.ts';
import { type QueuedEvent, StoredPoint } from '../audit/stored-point.ts';
import type { AuditEvent } from '../audit/types.ts';

/** Version written into cursor files; bump it with any change to this format. */
export const FORMAT_VERSION = 1;

const NEWLINE = 0x0a;
const SEGMENT = /^(\d{20})\.jsonl$/;
const CURSOR = /^cursor-(.+)\.json$/;
// Consumer names become file names: keep them to characters that are safe on every filesystem.
const CONSUMER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/**
 * An event serialized for a segment: its line without the `\n` (the event's JSON, or a point's
 * line protocol, written after {@link POINT_MARKER}), and the size of its line with the marker and
 * the `\n`.
 */
export interface EncodedEvent {
  readonly event: QueuedEvent;
  readonly json: string;
  readonly bytes: number;
  /** Set for a point: `json` is its line protocol, written after the marker. */
  readonly point?: true;
}

/**
 * The first character of a point's line in the durable log (ADR 0027); an event's line, a JSON
 * object, always starts with `{`.
 */
export const POINT_MARKER = '!';

/** The marker's byte. */
export const POINT_MARKER_BYTE = POINT_MARKER.charCodeAt(0);

/**
 * Serializes an event, or a point, for a segment. A point's line is not copied behind its marker
 * (the writer puts the marker's byte first): it is flattened once, when it is checked for line
 * breaks, and written from there.
 */
export function encodeEvent(event: QueuedEvent): EncodedEvent {
  if (event instanceof StoredPoint) {
    return {
      event,
      json: event.line,
      bytes: Buffer.byteLength(event.line, 'utf8') + 2,
      point: true,
    };
  }
  return encodedAs(event, eventJson(event));
}

/**
 * An event for a segment whose JSON is known already: one line that parses back to it (the text
 * it was received as, `DecodedPayload.sources`).
 */
export function encodedAs(event: AuditEvent, json: string): EncodedEvent {
  return { event, json, bytes: Buffer.byteLength(json, 'utf8') + 1 };
}

/**
 * The encodings of one received batch's events, shared by the queues of every sink it is appended
 * to, so that an event several sinks keep is serialised once; or one sink's own, when it stores
 * points (an event's encoding then holds the point its output made, ADR 0027). It lives for that
 * one append and holds at most the batch: a cache that outlived it (a WeakMap by event, even one
 * cleared every turn) made the scavenger keep events and their JSON alive until they were
 * promoted (ADR 0023).
 */
export type SharedEncodings = Map<AuditEvent, EncodedEvent>;

/** {@link encodeEvent}, reusing and adding to `shared` when given. */
export function encodeShared(event: AuditEvent, shared: SharedEncodings | undefined): EncodedEvent {
  if (shared === undefined) return encodeEvent(event);
  let encoded = shared.get(event);
  if (encoded === undefined) {
    encoded = encodeEvent(event);
    shared.set(event, encoded);
  }
  return encoded;
}

/**
 * `JSON.stringify(event)`, up to the order of keys: the bodies come last, as texts shared with
 * the line-protocol encoder (see `audit/body-json.ts`).
 */
function eventJson(event: AuditEvent): string {
  if (event.requestObject === undefined && event.responseObject === undefined) {
    return JSON.stringify(event);
  }
  const { requestObject, responseObject, ...rest } = event;
  let json = JSON.stringify(rest).slice(0, -1);
  const separator = () => (json.length > 1 ? ',' : '');
  if (requestObject !== undefined)
    json += `${separator()}"requestObject":${bodyJson(requestObject)}`;
  if (responseObject !== undefined) {
    json += `${separator()}"responseObject":${bodyJson(responseObject)}`;
  }
  return `${json}}`;
}

/**
 * The lines of `records`, in order, as one buffer of `bytes` (their total size): one allocation
 * and one UTF-8 pass, where joining the strings first would copy everything twice more.
 */
export function encodeLines(records: readonly EncodedEvent[], bytes: number): Buffer {
  const buf = Buffer.allocUnsafe(bytes);
  let at = 0;
  for (const record of records) {
    if (record.point === true) buf[at++] = POINT_MARKER_BYTE;
    at += buf.write(record.json, at, 'utf8');
    buf[at++] = NEWLINE;
  }
  return buf;
}

/**
 * The point on the line `buf[start, end)` (its `\n` included) that starts with the marker; null
 * when the marker has no line after it.
 */
export function decodePoint(buf: Buffer, start: number, end: number): StoredPoint | null {
  return end - 1 > start + 1 ? new StoredPoint(buf.toString('utf8', start + 1, end - 1)) : null;
}

/**
 * The event (or point) stored in `buf[start, end)`, a line including its `\n`; null when the bytes
 * are not a complete record (torn or corrupt).
 */
export function decodeRecord(buf: Buffer, start: number, end: number): QueuedEvent | null {
  if (end <= start || buf[end - 1] !== NEWLINE) return null;
  if (buf[start] === POINT_MARKER_BYTE) return decodePoint(buf, start, end);
  let value: unknown;
  try {
    value = JSON.parse(buf.toString('utf8', start, end - 1));
  } catch {
    // Not JSON: the torn or zero-filled tail of an unacknowledged write.
    return null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  // Events were validated by the receiver before they were appended; framing is all we check here.
  return value as AuditEvent;
}

/** Where a segment's records end, and how many bytes of it to keep. */
export interface SegmentScan {
  /** End offset (exclusive) of each record, in order. */
  readonly ends: number[];
  /** Bytes covered by the records; anything after is a torn tail to cut. */
  readonly validBytes: number;
}

/**
 * Finds the records of a segment. A line without its `\n` is never a record. With `validate` (the
 * last segment, the only one a crash can leave unfinished), lines after the last decodable record
 * are cut too: they can only be the unacknowledged tail of the write a crash interrupted. A bad
 * line with good ones after it stays, to be skipped when read, because records after it were
 * acknowledged and cutting there would lose them.
 */
export function scanSegment(buf: Buffer, validate: boolean): SegmentScan {
  const ends: number[] = [];
  let kept = 0;
  let start = 0;
  for (;;) {
    const newline = buf.indexOf(NEWLINE, start);
    if (newline === -1) break;
    ends.push(newline + 1);
    if (!validate || decodeRecord(buf, start, newline + 1) !== null) kept = ends.length;
    start = newline + 1;
  }
  ends.length = kept;
  return { ends, validBytes: ends.at(-1) ?? 0 };
}

/** File name of the segment whose first event has sequence number `firstSeq`. */
export function segmentFileName(firstSeq: number): string {
  return `${String(firstSeq).padStart(20, '0')}.jsonl`;
}

/** The first sequence number of a segment file name, or null for any other file. */
export function parseSegmentFileName(name: string): number | null {
  const match = SEGMENT.exec(name);
  if (match === null) return null;
  const seq = Number(match[1]);
  return Number.isSafeInteger(seq) ? seq : null;
}

/** Whether `name` can name a consumer (it becomes part of a file name). */
export function isConsumerName(name: string): boolean {
  return CONSUMER_NAME.test(name);
}

/** File name of a consumer's cursor. */
export function cursorFileName(consumer: string): string {
  return `cursor-${consumer}.json`;
}

/** The consumer a cursor file belongs to, or null for any other file. */
export function parseCursorFileName(name: string): string | null {
  const consumer = CURSOR.exec(name)?.[1];
  return consumer !== undefined && isConsumerName(consumer) ? consumer : null;
}

/** The content of a cursor file. */
export function encodeCursor(consumer: string, next: number): string {
  return `${JSON.stringify({ version: FORMAT_VERSION, consumer, next })}\n`;
}

/** The `next` sequence number of a cursor file, or null when the file is not a valid cursor. */
export function decodeCursor(text: string, consumer: string): number | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const cursor = value as { version?: unknown; consumer?: unknown; next?: unknown };
  if (cursor.version !== FORMAT_VERSION || cursor.consumer !== consumer) return null;
  return typeof cursor.next === 'number' && Number.isSafeInteger(cursor.next) && cursor.next >= 0
    ? cursor.next
    : null;
}
