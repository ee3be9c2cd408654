/**
 * The on-disk format of the process's durable log, version 1 (ADR 0019).
 *
 * - `<dir>/<n>.wal`, `n` the 20-digit zero-padded number of its first record: a segment, a run of
 *   framed records. Record numbers are consecutive across segments and never reused.
 * - A record is one group commit: every batch appended while the previous write was syncing, for
 *   every stream (sink) at once. Its frame is `KAL1`, the payload's length (u32 LE), the payload's
 *   CRC-32 (u32 LE), then the payload: a header line, `{"r":n,"s":[[id,"key",[first,length,...]]]}`
 *   (`r` the record's number, so that numbering survives a damaged record being skipped), then
 *   each distinct event once, as one JSON line (the spool's event JSON, `../format.ts`), or a
 *   point (ADR 0027) as `!` and its line protocol. Each stream lists the events it keeps, in
 *   order, as runs of consecutive event indexes. A share
 *   copied forward by a relocation has two more items, `base` (the first record of the copy) and
 *   `final` (1 in the record completing it): `[id,"key",[runs],base,final]`.
 * - `<dir>/state.json`: the streams (key, id, the base of the last completed relocation when it
 *   has one, and per consumer the position of its first
 *   undelivered event: `[record, events of its share in that record already delivered]`) and the
 *   next stream id. Replaced atomically (temporary file, fsync, rename).
 *
 * Pure: no I/O.
 */
import { crc32 } from 'node:zlib';
import type { ReusedBuffer } from '../../audit/reused-buffer.ts';
import type { QueuedEvent } from '../../audit/stored-point.ts';
import type { AuditEvent } from '../../audit/types.ts';
import { decodePoint, POINT_MARKER_BYTE } from '../format.ts';
import { singleSelection } from './stream-index.ts';

/** Version of the state file; bump it with any change to this format. */
export const LOG_FORMAT_VERSION = 1;

/** The frame's marker: lets a scan find the next record after a damaged one. */
const MAGIC = Buffer.from('KAL1', 'latin1');
/** Marker, length and checksum. */
export const FRAME_HEADER_BYTES = 12;
const NEWLINE = 0x0a;
const SEGMENT = /^(\d{20})\.wal$/;

/**
 * A relocated share (ADR 0019, "Relocation"): a copy of a stream's retained events, written in one
 * or more records starting at record `base`; `final` marks the record that completes the copy.
 */
export interface Relocation {
  readonly base: number;
  readonly final: boolean;
}

/** One stream's share of a record: the indexes of the events it keeps, in order. */
export interface StreamShare {
  readonly id: number;
  readonly key: string;
  readonly selection: Uint32Array;
  /** Set when the share is part of a relocation copy rather than newly appended events. */
  readonly relocation?: Relocation;
}

/**
 * What a record needs of an event: its JSON line, or a point's line protocol (`point`, written
 * after the marker), and its size with the marker and the newline.
 */
export interface LogLine {
  readonly json: string;
  readonly bytes: number;
  readonly point?: true;
}

/** File name of the segment whose first record is `first`. */
export function logSegmentFileName(first: number): string {
  return `${String(first).padStart(20, '0')}.wal`;
}

/** The first record number of a segment file name, or null for any other file. */
export function parseLogSegmentFileName(name: string): number | null {
  const match = SEGMENT.exec(name);
  if (match === null) return null;
  const first = Number(match[1]);
  return Number.isSafeInteger(first) ? first : null;
}

/** Runs of consecutive increasing indexes: `[first, length, first, length, ...]`. */
export function runsOf(selection: Uint32Array): number[] {
  const runs: number[] = [];
  let i = 0;
  while (i < selection.length) {
    const first = selection[i] as number;
    let length = 1;
    while (i + length < selection.length && selection[i + length] === first + length) length++;
    runs.push(first, length);
    i += length;
  }
  return runs;
}

/** The indexes that `runs` describe; null when they are malformed or point past `variants`. */
export function selectionOf(runs: unknown, variants: number): Uint32Array | null {
  if (!Array.isArray(runs) || runs.length % 2 !== 0) return null;
  let total = 0;
  for (let i = 0; i < runs.length; i += 2) {
    const first: unknown = runs[i];
    const length: unknown = runs[i + 1];
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(length)) return null;
    if ((first as number) < 0 || (length as number) < 1) return null;
    if ((first as number) + (length as number) > variants) return null;
    total += length as number;
  }
  if (total === 1) return singleSelection(runs[0] as number);
  const selection = new Uint32Array(total);
  let at = 0;
  for (let i = 0; i < runs.length; i += 2) {
    const first = runs[i] as number;
    const length = runs[i + 1] as number;
    for (let k = 0; k < length; k++) selection[at++] = first + k;
  }
  return selection;
}

/**
 * One framed record of `variants` (each event once) and the streams' shares of them: one buffer,
 * one UTF-8 pass over the events' JSON, which each event got once however many streams keep it.
 */
export function encodeLogRecord(
  record: number,
  variants: readonly LogLine[],
  shares: readonly StreamShare[],
): Buffer {
  return sealLogFrame(encodeLogFrame(record, variants, shares));
}

/**
 * {@link encodeLogRecord} without its checksum, which {@link sealLogFrame} adds: the log writes
 * the payload while the checksum is computed, and the frame's header only after it. Until then
 * the frame is no record: a scan finds no marker where it starts. With `into`, the frame is
 * written into that buffer (valid until its next use) instead of a new one.
 */
export function encodeLogFrame(
  record: number,
  variants: readonly LogLine[],
  shares: readonly StreamShare[],
  into?: ReusedBuffer,
): Buffer {
  const header = JSON.stringify({
    r: record,
    s: shares.map((share) =>
      share.relocation === undefined
        ? [share.id, share.key, runsOf(share.selection)]
        : [
            share.id,
            share.key,
            runsOf(share.selection),
            share.relocation.base,
            share.relocation.final ? 1 : 0,
          ],
    ),
  });
  let payloadBytes = Buffer.byteLength(header, 'utf8') + 1;
  for (const variant of variants) payloadBytes += variant.bytes;
  const size = FRAME_HEADER_BYTES + payloadBytes;
  const buf = into === undefined ? Buffer.allocUnsafe(size) : into.take(size);
  buf.fill(0, 0, FRAME_HEADER_BYTES);
  let at = FRAME_HEADER_BYTES;
  at += buf.write(header, at, 'utf8');
  buf[at++] = NEWLINE;
  for (const variant of variants) {
    if (variant.point === true) buf[at++] = POINT_MARKER_BYTE;
    at += buf.write(variant.json, at, 'utf8');
    buf[at++] = NEWLINE;
  }
  return buf;
}

/** Completes a frame of {@link encodeLogFrame}: its marker, length and checksum. */
export function sealLogFrame(buf: Buffer): Buffer {
  MAGIC.copy(buf, 0);
  buf.writeUInt32LE(buf.length - FRAME_HEADER_BYTES, 4);
  buf.writeUInt32LE(crc32(buf.subarray(FRAME_HEADER_BYTES)), 8);
  return buf;
}

/** Whether a complete, intact frame starts at `at`; its total size if so, else 0. */
export function frameAt(buf: Buffer, at: number): number {
  if (at + FRAME_HEADER_BYTES > buf.length) return 0;
  if (buf.compare(MAGIC, 0, 4, at, at + 4) !== 0) return 0;
  const length = buf.readUInt32LE(at + 4);
  const end = at + FRAME_HEADER_BYTES + length;
  if (length === 0 || end > buf.length) return 0;
  const payload = buf.subarray(at + FRAME_HEADER_BYTES, end);
  if (crc32(payload) !== buf.readUInt32LE(at + 8)) return 0;
  return FRAME_HEADER_BYTES + length;
}

/** Where a segment's intact records are, and what is damaged. */
export interface LogSegmentScan {
  /** Offset and total size of each intact record, in order. */
  readonly records: { readonly offset: number; readonly size: number }[];
  /** Damaged stretches followed by an intact record: skipped and counted, never cut. */
  readonly corrupt: number;
  /** Where the intact records end; bytes after it are a damaged tail. */
  readonly validBytes: number;
}

/**
 * Finds the intact records of a segment. After a damaged stretch the scan looks for the next
 * intact frame: if one follows, the stretch is counted as corrupt (records after it were
 * acknowledged and must be kept); if none does, the stretch is a tail (`validBytes` marks it).
 */
export function scanLogSegment(buf: Buffer): LogSegmentScan {
  const records: { offset: number; size: number }[] = [];
  let corrupt = 0;
  let at = 0;
  while (at < buf.length) {
    const size = frameAt(buf, at);
    if (size > 0) {
      records.push({ offset: at, size });
      at += size;
      continue;
    }
    let next = buf.indexOf(MAGIC, at + 1);
    while (next !== -1 && frameAt(buf, next) === 0) next = buf.indexOf(MAGIC, next + 1);
    if (next === -1) break;
    corrupt++;
    at = next;
  }
  const last = records.at(-1);
  return { records, corrupt, validBytes: last === undefined ? 0 : last.offset + last.size };
}

/** A record's event lines: what a read of its events needs. */
export interface LogLines {
  /** Payload (without the frame header). */
  readonly payload: Buffer;
  /** Start of each event's line in `payload`; one more entry for the end of the last line. */
  readonly lines: readonly number[];
}

/** A decoded record: its number and the streams' shares, with its event lines. */
export interface LogRecord extends LogLines {
  /** The record's number. */
  readonly record: number;
  readonly shares: readonly StreamShare[];
}

/**
 * Where each event's line is in a framed record's payload, its header left undecoded: a read of a
 * stream's share takes the selection from the stream's index, so the shares of every other stream
 * (a hundred tenants of one record) are neither parsed nor kept. Null when it has no header line.
 */
export function decodeLogLines(payload: Buffer): LogLines | null {
  const headerEnd = payload.indexOf(NEWLINE);
  if (headerEnd === -1) return null;
  const lines: number[] = [];
  let at = headerEnd + 1;
  while (at < payload.length) {
    lines.push(at);
    const newline = payload.indexOf(NEWLINE, at);
    if (newline === -1) return null;
    at = newline + 1;
  }
  lines.push(at);
  return { payload, lines };
}

/** Decodes a framed record's payload; null when it is not one this version writes. */
export function decodeLogRecord(payload: Buffer): LogRecord | null {
  const decoded = decodeLogLines(payload);
  if (decoded === null) return null;
  const { lines } = decoded;
  // The header line ends where the first event's line starts.
  const headerEnd = (lines[0] as number) - 1;
  let header: unknown;
  try {
    header = JSON.parse(payload.toString('utf8', 0, headerEnd));
  } catch {
    return null;
  }
  const streams = (header as { s?: unknown } | null)?.s;
  const record = (header as { r?: unknown } | null)?.r;
  if (!Array.isArray(streams) || !Number.isSafeInteger(record) || (record as number) < 0) {
    return null;
  }
  const shares: StreamShare[] = [];
  for (const entry of streams as unknown[]) {
    if (!Array.isArray(entry) || (entry.length !== 3 && entry.length !== 5)) return null;
    const [id, key, runs, base, final] = entry as [unknown, unknown, unknown, unknown, unknown];
    if (!Number.isSafeInteger(id) || typeof key !== 'string') return null;
    const selection = selectionOf(runs, lines.length - 1);
    if (selection === null) return null;
    if (entry.length === 3) {
      shares.push({ id: id as number, key, selection });
      continue;
    }
    if (!Number.isSafeInteger(base) || (base as number) < 0 || (final !== 0 && final !== 1)) {
      return null;
    }
    shares.push({
      id: id as number,
      key,
      selection,
      relocation: { base: base as number, final: final === 1 },
    });
  }
  return { record: record as number, shares, payload, lines };
}

/**
 * The event on line `index` of a decoded record, or the point (ADR 0027) when the line is one;
 * null when it does not parse.
 */
export function decodeLogEvent(record: LogLines, index: number): QueuedEvent | null {
  const start = record.lines[index];
  const end = record.lines[index + 1];
  if (start === undefined || end === undefined) return null;
  if (record.payload[start] === POINT_MARKER_BYTE) return decodePoint(record.payload, start, end);
  try {
    const value: unknown = JSON.parse(record.payload.toString('utf8', start, end - 1));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as AuditEvent)
      : null;
  } catch {
    return null;
  }
}

/** A consumer's position: the record of its first undelivered event and how many it passed there. */
export type LogPosition = readonly [record: number, passed: number];

/** One stream in the state file. */
export interface StreamState {
  readonly key: string;
  readonly id: number;
  /**
   * The record the stream's last completed relocation began at (0 when it never moved): its
   * events are those of relocated shares with this base and of ordinary shares from it on.
   */
  readonly base: number;
  readonly cursors: ReadonlyMap<string, LogPosition>;
}

/** The content of the state file. */
export interface LogState {
  readonly nextId: number;
  readonly streams: readonly StreamState[];
}

/** One stream's part of the state file, cached by the log until its positions change. */
export function encodeStreamState(stream: StreamState): string {
  return JSON.stringify({
    key: stream.key,
    id: stream.id,
    ...(stream.base === 0 ? {} : { base: stream.base }),
    cursors: Object.fromEntries(stream.cursors),
  });
}

/** The state file's text, from each stream's part ({@link encodeStreamState}). */
export function encodeLogState(nextId: number, streams: readonly string[]): string {
  return `{"version":${LOG_FORMAT_VERSION},"nextId":${nextId},"streams":[${streams.join(',')}]}\n`;
}

function isPosition(value: unknown): value is LogPosition {
  return (
    Array.isArray(value) &&
    value.length === 2 &&
    value.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)
  );
}

/** The state in a state file's text, or null when it is not a valid state of this version. */
export function decodeLogState(text: string): LogState | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const raw = value as { version?: unknown; nextId?: unknown; streams?: unknown };
  if (raw.version !== LOG_FORMAT_VERSION || !Number.isSafeInteger(raw.nextId)) return null;
  if (!Array.isArray(raw.streams)) return null;
  const streams: StreamState[] = [];
  for (const entry of raw.streams as unknown[]) {
    const s = entry as { key?: unknown; id?: unknown; base?: unknown; cursors?: unknown } | null;
    if (s === null || typeof s.key !== 'string' || !Number.isSafeInteger(s.id)) return null;
    const base = s.base ?? 0;
    if (!Number.isSafeInteger(base) || (base as number) < 0) return null;
    if (typeof s.cursors !== 'object' || s.cursors === null) return null;
    const cursors = new Map<string, LogPosition>();
    for (const [consumer, position] of Object.entries(s.cursors)) {
      if (!isPosition(position)) return null;
      cursors.set(consumer, position);
    }
    streams.push({ key: s.key, id: s.id as number, base: base as number, cursors });
  }
  return { nextId: raw.nextId as number, streams };
}
