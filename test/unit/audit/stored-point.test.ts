// A stored point's auditID, read back from its line protocol: whatever the series key and the
// auditID hold, it is the event's auditID as the encoder wrote it.
import { describe, expect, it } from 'vitest';
import { auditIdOfLine, StoredPoint } from '../../../src/audit/stored-point.ts';
import { LineProtocolEncoder } from '../../../src/outputs/influxdb/line-protocol.ts';
import { recordedEvents } from '../../support/recorded.ts';

describe('a stored point', () => {
  it('reads the auditID the encoder wrote, through escaped series keys and quoted values', () => {
    const encoder = new LineProtocolEncoder({
      measurement: 'kubernetes audit,"x"',
      tags: ['user', 'namespace', 'verb'],
      staticTags: { 'cluster name': 'a=b,c' },
      sink: 'shop/orders',
    });
    const [event] = recordedEvents();
    for (const auditID of ['plain', 'with "quotes" and \\backslashes\\', 'a b,c=d', '', 'ünï €']) {
      const e = { ...event!, auditID, user: { username: 'DOMAIN\\ name "x"' } };
      const point = new StoredPoint(encoder.encode(e));
      expect(point.auditID).toBe(auditID);
    }
  });

  it('has an empty auditID when the line has no audit_id field first', () => {
    expect(auditIdOfLine('m,t=v other="x" 1')).toBe('');
    expect(auditIdOfLine('m audit_id="unterminated')).toBe('');
    expect(auditIdOfLine('')).toBe('');
  });
});
