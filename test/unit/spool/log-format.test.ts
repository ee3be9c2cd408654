/** The durable log's records as reads decode them: their lines, without the shares (ADR 0012). */
import { describe, expect, it } from 'vitest';
import { StoredPoint } from '../../../src/audit/stored-point.ts';
import { encodeEvent } from '../../../src/spool/format.ts';
import {
  decodeLogEvent,
  decodeLogLines,
  decodeLogRecord,
  encodeLogRecord,
  FRAME_HEADER_BYTES,
  type LogLines,
  type StreamShare,
} from '../../../src/spool/log/format.ts';
import { event } from './support.ts';

/** A record of three events and a point, shared by `streams` tenants keeping one line each. */
function record(streams: number): Buffer {
  const point = new StoredPoint('audit,namespace=a audit_id="p-1" 1700000000000000000');
  const lines = [event('e-0'), event('e-1'), point, event('e-2')].map(encodeEvent);
  const shares: StreamShare[] = Array.from({ length: streams }, (_, id) => ({
    id,
    key: `tenant-${id}/trail`,
    selection: Uint32Array.of(id % lines.length),
  }));
  return encodeLogRecord(7, lines, shares).subarray(FRAME_HEADER_BYTES);
}

describe("a record's lines", () => {
  it('are where the whole decode puts them, and read back as the same events and points', () => {
    const payload = record(100);
    const whole = decodeLogRecord(payload);
    const lines = decodeLogLines(payload);
    if (whole === null || lines === null) throw new Error('the record does not decode');
    expect(whole.shares).toHaveLength(100);
    expect(lines.lines).toEqual(whole.lines);
    expect(lines.payload).toBe(payload);
    expect(lines).not.toHaveProperty('shares');
    const read = (from: LogLines) => [0, 1, 2, 3].map((i) => decodeLogEvent(from, i)?.auditID);
    expect(read(lines)).toEqual(['e-0', 'e-1', 'p-1', 'e-2']);
    expect(read(whole)).toEqual(read(lines));
  });

  it('leave the header undecoded: a header the whole decode refuses still gives the lines', () => {
    const payload = Buffer.from(record(2));
    // The header's record number, no longer a number: the shares cannot be trusted, the lines can.
    const header = payload.indexOf('"r":7');
    payload.write('"r":x', header);
    expect(decodeLogRecord(payload)).toBeNull();
    expect(decodeLogLines(payload)?.lines).toHaveLength(5);
  });

  it('are none without a header line, or with a last line cut short', () => {
    expect(decodeLogLines(Buffer.from('{"r":1,"s":[]}'))).toBeNull();
    const payload = record(1);
    expect(decodeLogLines(payload.subarray(0, payload.length - 1))).toBeNull();
  });
});
