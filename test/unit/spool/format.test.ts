// The spool's on-disk format: record framing, torn-tail detection, file names, cursors. Pure:
// starts no process.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  cursorFileName,
  decodeCursor,
  decodeRecord,
  encodeCursor,
  encodeEvent,
  encodeLines,
  isConsumerName,
  parseCursorFileName,
  parseSegmentFileName,
  scanSegment,
  segmentFileName,
} from '../../../src/spool/format.ts';
import { StoredPoint } from '../../../src/audit/stored-point.ts';
import type { AuditEvent, JsonValue } from '../../../src/audit/types.ts';
import { event } from './support.ts';

/** The segment line of one event. */
function lineOf(e: AuditEvent): string {
  const encoded = encodeEvent(e);
  return encodeLines([encoded], encoded.bytes).toString('utf8');
}

const line = lineOf(event('a'));

describe('records', () => {
  it('encodes an event as one JSON line, newlines inside strings escaped', () => {
    const e = { ...event('a'), annotations: { note: 'two\nlines\r\u2028 µ 😀' } };
    const encoded = lineOf(e);
    expect(encoded).toBe(`${JSON.stringify(e)}\n`);
    expect(encoded.indexOf('\n')).toBe(encoded.length - 1);
    const buf = Buffer.from(encoded);
    expect(encodeEvent(e).bytes).toBe(buf.length);
    expect(decodeRecord(buf, 0, buf.length)).toEqual(e);
  });

  it('stores a point as the marker and its line, of the size it counts, and reads it back', () => {
    const point = new StoredPoint('kubernetes_audit,verb=get audit_id="a",user="µ 😀" 1');
    const encoded = encodeEvent(point);
    const buf = encodeLines([encoded], encoded.bytes);
    expect(buf.toString('utf8')).toBe(`!${point.line}\n`);
    expect(buf.length).toBe(encoded.bytes);
    const read = decodeRecord(buf, 0, buf.length);
    expect(read).toBeInstanceOf(StoredPoint);
    expect((read as StoredPoint).line).toBe(point.line);
    expect((read as StoredPoint).auditID).toBe('a');
    expect(decodeRecord(Buffer.from('!\n'), 0, 2)).toBeNull();
  });

  it('stores an event with bodies as JSON that reads back equal, of the size JSON.stringify gives', () => {
    const body = fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 });
    fc.assert(
      fc.property(
        fc.option(body, { nil: undefined }),
        fc.option(body, { nil: undefined }),
        (request, response) => {
          const e: AuditEvent = { ...event('b'), level: 'RequestResponse' };
          if (request !== undefined) e.requestObject = request as JsonValue;
          if (response !== undefined) e.responseObject = response as JsonValue;
          const encoded = encodeEvent(e);
          const line = encodeLines([encoded], encoded.bytes);
          expect(decodeRecord(line, 0, line.length)).toEqual(JSON.parse(JSON.stringify(e)));
          expect(encoded.bytes).toBe(Buffer.byteLength(JSON.stringify(e)) + 1);
        },
      ),
    );
  });

  it('lays several events out as consecutive lines', () => {
    const records = [event('a'), event('b'), event('c')].map(encodeEvent);
    const bytes = records.reduce((n, r) => n + r.bytes, 0);
    const buf = encodeLines(records, bytes);
    expect(buf.toString()).toBe(records.map((r) => `${r.json}\n`).join(''));
    expect(scanSegment(buf, true).ends).toEqual([
      records[0]?.bytes,
      (records[0]?.bytes ?? 0) + (records[1]?.bytes ?? 0),
      bytes,
    ]);
  });

  it.each([
    ['no trailing newline', line.slice(0, -1)],
    ['a cut line', line.slice(0, 40)],
    ['zeros', '\0\0\0\n'],
    ['a JSON array', '[1]\n'],
    ['JSON null', 'null\n'],
    ['a JSON string', '"a"\n'],
    ['an empty line', '\n'],
  ])('refuses %s as a record', (_name, text) => {
    const buf = Buffer.from(text);
    expect(decodeRecord(buf, 0, buf.length)).toBeNull();
  });

  it('never takes a cut event for a record, even when a newline follows the cut', () => {
    fc.assert(
      fc.property(fc.string(), fc.nat(), (id, cut) => {
        const encoded = Buffer.from(lineOf(event(id)));
        const end = cut % encoded.length;
        const torn = encoded.subarray(0, end);
        expect(scanSegment(torn, true)).toEqual({ ends: [], validBytes: 0 });
        // A proper prefix of a JSON object is never JSON: its closing brace comes last.
        const terminated = Buffer.concat([
          encoded.subarray(0, Math.min(end, encoded.length - 2)),
          Buffer.from('\n'),
        ]);
        expect(decodeRecord(terminated, 0, terminated.length)).toBeNull();
      }),
      { numRuns: 500 },
    );
  });
});

describe('scanning a segment', () => {
  const two = line + line;
  const size = Buffer.byteLength(line);

  it.each([
    ['complete records', two, true, [size, size * 2]],
    ['a torn last line', `${two}{"level":"Meta`, true, [size, size * 2]],
    ['trailing garbage lines', `${two}\0\0\n[]\n`, true, [size, size * 2]],
    [
      'a bad line with good ones after it',
      `${line}\0\0\n${line}`,
      true,
      [size, size + 3, size * 2 + 3],
    ],
    ['a sealed segment, lines not parsed', `${line}\0\0\n`, false, [size, size + 3]],
  ])('keeps %s', (_name, text, validate, ends) => {
    const scan = scanSegment(Buffer.from(text), validate);
    expect(scan.ends).toEqual(ends);
    expect(scan.validBytes).toBe(ends.at(-1));
  });
});

describe('file names and cursors', () => {
  it('names segments by their first sequence number, sortable as text', () => {
    expect(segmentFileName(0)).toBe('00000000000000000000.jsonl');
    expect(segmentFileName(1234)).toBe('00000000000000001234.jsonl');
    expect(parseSegmentFileName('00000000000000001234.jsonl')).toBe(1234);
    expect(parseSegmentFileName('1234.jsonl')).toBeNull();
    expect(parseSegmentFileName('99999999999999999999.jsonl')).toBeNull();
    expect(parseSegmentFileName('cursor-a.json')).toBeNull();
  });

  it('accepts consumer names that are safe file names only', () => {
    expect(['influxdb', 'webhook', 'file', 'out-2', 'a.b_c'].every(isConsumerName)).toBe(true);
    expect(['', '.hidden', '../x', 'a/b', 'a b', 'x'.repeat(64)].some(isConsumerName)).toBe(false);
    expect(parseCursorFileName(cursorFileName('influxdb'))).toBe('influxdb');
    expect(parseCursorFileName('cursor-../x.json')).toBeNull();
  });

  it('round-trips a cursor and refuses anything else', () => {
    expect(decodeCursor(encodeCursor('influxdb', 42), 'influxdb')).toBe(42);
    expect(decodeCursor(encodeCursor('influxdb', 42), 'webhook')).toBeNull();
    expect(decodeCursor('{"version":2,"consumer":"influxdb","next":1}', 'influxdb')).toBeNull();
    expect(decodeCursor('{"version":1,"consumer":"influxdb","next":-1}', 'influxdb')).toBeNull();
    expect(decodeCursor('{"version":1,"consumer":"influxdb","next":1.5}', 'influxdb')).toBeNull();
    expect(decodeCursor('{"version":1,"consu', 'influxdb')).toBeNull();
  });
});
