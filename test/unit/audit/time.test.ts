// Reading event timestamps as instants: exact microseconds since the epoch over the whole range
// Go's time.Parse reads, and the range a stored point may have. Pure: starts no process.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { epochMicros, isPointTime } from '../../../src/audit/time.ts';
import { POINT_TIME_RANGE } from '../../../src/audit/types.ts';

describe('epochMicros', () => {
  it.each([
    ['2026-11-22T04:08:57Z', '1795320537000000'],
    ['2026-11-22T04:08:57.4Z', '1795320537400000'],
    ['2026-11-22T04:08:57.440160Z', '1795320537440160'],
    ['2026-11-22T04:08:57.440160999Z', '1795320537440160'],
    ['2026-11-22T05:08:57.440160+01:00', '1795320537440160'],
    ['1970-01-01T00:00:00.000001Z', '1'],
    ['1970-01-01T00:00:00Z', '0'],
    ['1969-12-31T23:59:59.999999Z', '-1'],
    ['1969-12-31T23:59:59.9999999Z', '-1'],
    // Past 2^53 µs, where a double would round: the digits stay exact.
    ['1677-09-21T00:12:43.145225Z', '-9223372036854775'],
    ['1677-09-21T00:12:43.145224999Z', '-9223372036854776'],
    ['2262-04-11T23:47:16.854774Z', '9223372036854774'],
    ['0001-01-01T00:00:00.000001Z', '-62135596799999999'],
    ['9999-12-31T23:59:59.999999Z', '253402300799999999'],
  ])('reads %s as %s µs', (timestamp, micros) => {
    expect(epochMicros(timestamp)).toBe(micros);
  });

  it('rejects a timestamp that is not RFC 3339', () => {
    expect(() => epochMicros('22/11/2026')).toThrow(RangeError);
  });

  it('reads a run of timestamps of the same second as each alone, and rejects one that only starts like them', () => {
    expect(epochMicros('2026-11-22T04:08:57.440160Z')).toBe('1795320537440160');
    expect(epochMicros('2026-11-22T04:08:57.000001Z')).toBe('1795320537000001');
    for (const bad of [
      '2026-11-22T04:08:57.44016xZ',
      '2026-11-22T04:08:57,440160Z',
      '2026-11-22T04:08:57.440160z',
    ]) {
      expect(() => epochMicros(bad)).toThrow(RangeError);
    }
    expect(epochMicros('2026-11-22T04:08:57.440160999Z')).toBe('1795320537440160');
    expect(epochMicros('1970-01-01T00:00:00.000001Z')).toBe('1');
    expect(epochMicros('1970-01-01T00:00:00.000002Z')).toBe('2');
    expect(epochMicros('1969-12-31T23:59:59.999999Z')).toBe('-1');
    expect(epochMicros('1969-12-31T23:59:59.999998Z')).toBe('-2');
    expect(epochMicros('2026-11-22T04:08:58.000000Z')).toBe('1795320538000000');
  });

  it('agrees with BigInt arithmetic on timestamps that come in any order', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            // 1960 to 2100, a few seconds apart: runs of one second and jumps back and forth.
            second: fc.integer({ min: -315_619_200, max: 4_102_444_800 }).map((s) => s - (s % 3)),
            micros: fc.integer({ min: 0, max: 999_999 }),
          }),
          { minLength: 1, maxLength: 20 },
        ),
        (times) => {
          for (const { second, micros } of times) {
            const text = `${new Date(second * 1000).toISOString().slice(0, 19)}.${String(micros).padStart(6, '0')}Z`;
            expect(epochMicros(text)).toBe(String(BigInt(second) * 1_000_000n + BigInt(micros)));
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('isPointTime', () => {
  it('names the bounds of POINT_TIME_RANGE by its own microseconds', () => {
    expect(BigInt(epochMicros(POINT_TIME_RANGE.earliest))).toBe(POINT_TIME_RANGE.earliestMicros);
    expect(BigInt(epochMicros(POINT_TIME_RANGE.latest))).toBe(POINT_TIME_RANGE.latestMicros);
  });

  it("keeps the encoder's nanoseconds, 0 to 999 past the microsecond, inside influxd's range", () => {
    // models.MinNanoTime and MaxNanoTime: int64's range without its two lowest and its highest value.
    const minNano = -(2n ** 63n) + 2n;
    const maxNano = 2n ** 63n - 2n;
    expect(POINT_TIME_RANGE.earliestMicros * 1000n).toBeGreaterThanOrEqual(minNano);
    expect((POINT_TIME_RANGE.earliestMicros - 1n) * 1000n).toBeLessThan(minNano);
    expect(POINT_TIME_RANGE.latestMicros * 1000n + 999n).toBeLessThanOrEqual(maxNano);
    expect((POINT_TIME_RANGE.latestMicros + 1n) * 1000n + 999n).toBeGreaterThan(maxNano);
  });

  it.each([
    ['1677-09-21T00:12:43.145225Z', true],
    ['1677-09-21T00:12:43.145224999Z', false],
    ['1677-09-21T00:12:43.145224Z', false],
    ['1677-09-21T00:12:43.145224192Z', false],
    ['1677-09-21T01:12:43.145225+01:00', true],
    ['1677-09-21T00:12:43.145225+00:01', false],
    ['1677-12-31T23:59:59Z', true],
    ['1678-01-01T00:00:00+23:59', true],
    ['2261-12-31T23:59:59-23:59', true],
    ['2262-04-11T23:47:16.854774999Z', true],
    ['2262-04-11T23:47:16.854775Z', false],
    ['2262-04-11T23:47:16.854775807Z', false],
    ['2262-04-11T23:46:16.854774-00:01', true],
    ['2262-04-11T23:47:16.854774-00:01', false],
    ['2262-01-01T00:00:00Z', true],
    ['0001-01-01T00:00:00Z', false],
    ['1600-06-01T00:00:00Z', false],
    ['2300-01-01T00:00:00Z', false],
    ['9999-12-31T23:59:59.999999999Z', false],
    ['2026-11-22T04:08:57.440160Z', true],
  ])('%s can be a point time: %s', (timestamp, expected) => {
    expect(isPointTime(timestamp)).toBe(expected);
  });
});
