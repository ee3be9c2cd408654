// Parsing durations as users write them in resources (`retention: 30d`, `flushInterval: 500ms`).
// Pure: starts no process.
import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../../src/config/duration.ts';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

describe('parseDuration', () => {
  it.each([
    ['0', 0],
    ['0s', 0],
    ['500ms', 500],
    ['1500ns', 0.0015],
    ['250us', 0.25],
    ['250µs', 0.25],
    ['30s', 30 * SECOND],
    ['5m', 5 * MINUTE],
    ['2h', 2 * HOUR],
    ['30d', 30 * DAY],
    ['2w', 14 * DAY],
    ['1h30m', HOUR + 30 * MINUTE],
    ['1d12h', DAY + 12 * HOUR],
    ['1m30s500ms', MINUTE + 30 * SECOND + 500],
    ['1.5h', 1.5 * HOUR],
    ['0.5s', 500],
    ['1h0.5m', HOUR + 30 * SECOND],
  ] as const)('reads %j as %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it('reads 30d as the 2,592,000 s a bucket retention of 30 days needs', () => {
    expect(parseDuration('30d')).toBe(2_592_000 * SECOND);
  });

  it('parses decimal fractions exactly, as Go does (1.001s is 1001 ms, 2.01h is 7236 s)', () => {
    // Go's time.ParseDuration works in integer nanoseconds; multiplying the float 1.001 by 1000
    // gives 1000.9999999999999.
    expect(parseDuration('1.001s')).toBe(1_001);
    expect(parseDuration('2.01h')).toBe(7_236 * SECOND);
  });

  it.each([
    ['', /empty duration/],
    ['10', /invalid duration "10" at "10"/],
    ['h', /invalid duration "h" at "h"/],
    ['5x', /invalid duration "5x" at "5x"/],
    ['1h x', /invalid duration "1h x" at " x"/],
    ['1h ', /at " "/],
    [' 1h', /at " 1h"/],
    ['-1h', /at "-1h"/],
    ['1H', /at "1H"/],
    ['1e3s', /at "1e3s"/],
  ] as const)('rejects %j with a message naming where it goes wrong', (text, message) => {
    const result = parseDuration(text);
    expect(result).toEqual({ error: expect.stringMatching(message) });
  });

  it('suggests the accepted forms in its error', () => {
    expect(parseDuration('soon')).toEqual({
      error: 'invalid duration "soon" at "soon": use e.g. "30s", "1h30m" or "30d"',
    });
  });

  it('gives the same answer when called again after an error (no state left in the parser)', () => {
    expect(parseDuration('1h x')).toHaveProperty('error');
    expect(parseDuration('90s')).toBe(90 * SECOND);
    expect(parseDuration('90s')).toBe(90 * SECOND);
  });
});
