/**
 * Reading event timestamps as the instants they name: microseconds since the epoch, exactly, and
 * whether an instant can be the time of a stored point. Pure.
 */
import { POINT_TIME_RANGE } from './types.ts';

const TIMESTAMP = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

// What the apiserver writes: UTC with exactly six fraction digits (metav1.MicroTime).
const MICRO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

// Seconds already read, as the digits that start their microseconds (a number before 1970): the
// events of a batch (and their requestReceivedTimestamps) share a few seconds, and Date.parse and
// formatting the seconds are most of the cost of reading a timestamp. Cleared when it reaches 64.
const SECONDS = new Map<string, string | number>();

// The second (its first 19 characters) of the last timestamp in the apiserver's form read after
// 1970, and its seconds' digits.
let last: { readonly second: string; readonly digits: string } | null = null;

// `.` and six digits at 19 to 25: the rest of the apiserver's form, once its first 19 characters
// are known to be a second's (they equal `last.second`).
function isMicroFraction(timestamp: string): boolean {
  if (timestamp.charCodeAt(19) !== 0x2e) return false;
  for (let i = 20; i < 26; i++) {
    const c = timestamp.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/**
 * Microseconds since the epoch of an RFC 3339 timestamp, as exact decimal digits; digits beyond
 * the microsecond are dropped, so the result is the microsecond the instant falls in.
 *
 * @throws RangeError when `timestamp` is not RFC 3339.
 */
export function epochMicros(timestamp: string): string {
  if (timestamp.length === 27 && timestamp.charCodeAt(26) === 0x5a) {
    // The second read last, again (most events of a batch): its digits, no look-up.
    if (last !== null && timestamp.startsWith(last.second) && isMicroFraction(timestamp)) {
      return `${last.digits}${timestamp.slice(20, 26)}`;
    }
    if (MICRO_UTC.test(timestamp)) {
      const seconds = secondsOf(timestamp, `${timestamp.slice(0, 19)}Z`);
      if (typeof seconds === 'string') last = { second: timestamp.slice(0, 19), digits: seconds };
      return microsOf(seconds, timestamp.slice(20, 26));
    }
  }
  const m = TIMESTAMP.exec(timestamp);
  if (m === null) throw new RangeError(`not an RFC 3339 timestamp: ${timestamp}`);
  const fraction = (m[2] ?? '').slice(0, 6).padEnd(6, '0');
  return microsOf(secondsOf(timestamp, `${m[1] as string}${m[3] as string}`), fraction);
}

/** The seconds of `second` (RFC 3339 without a fraction): see {@link SECONDS}. */
function secondsOf(timestamp: string, second: string): string | number {
  let seconds = SECONDS.get(second);
  if (seconds === undefined) {
    const ms = Date.parse(second);
    if (Number.isNaN(ms)) throw new RangeError(`not an RFC 3339 timestamp: ${timestamp}`);
    // Digits after the seconds' digits: exact, and cheaper than formatting a 16-digit number.
    seconds = ms > 0 ? String(ms / 1000) : ms / 1000;
    if (SECONDS.size >= 64) SECONDS.clear();
    SECONDS.set(second, seconds);
  }
  return seconds;
}

function microsOf(seconds: string | number, fraction: string): string {
  if (typeof seconds === 'string') return `${seconds}${fraction}`;
  // Before 1970 the fraction counts up from a negative second; before 1684 the microseconds
  // pass 2^53, where a double is no longer exact.
  return String(BigInt(seconds) * 1_000_000n + BigInt(fraction));
}

/**
 * Whether an RFC 3339 timestamp can be the time of a stored point: its microsecond lies in
 * {@link POINT_TIME_RANGE}.
 */
export function isPointTime(timestamp: string): boolean {
  // Any year strictly between the bounds' years is inside, whatever its offset (under a day).
  const year =
    (timestamp.charCodeAt(0) - 48) * 1000 +
    (timestamp.charCodeAt(1) - 48) * 100 +
    (timestamp.charCodeAt(2) - 48) * 10 +
    (timestamp.charCodeAt(3) - 48);
  if (year > 1677 && year < 2262) return true;
  const micros = BigInt(epochMicros(timestamp));
  return micros >= POINT_TIME_RANGE.earliestMicros && micros <= POINT_TIME_RANGE.latestMicros;
}
