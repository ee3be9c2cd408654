/**
 * Durations as Kubernetes users write them: Go's `time.ParseDuration` syntax and units (`ns` to
 * `h`, fractions such as `1.5h` or `.5s`), plus `d` and `w`, which retention settings commonly use
 * (`30d`, `2w`). Pure.
 */

// Nanoseconds per unit, as integers: Go computes durations in whole nanoseconds.
const UNIT_NS: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n,
  μs: 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
  d: 86_400_000_000_000n,
  w: 604_800_000_000_000n,
};

const PART = /(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h|d|w)/y;

/**
 * Parses `1h30m`, `500ms`, `1.5h`, `30d` or `0` into milliseconds (fractional below 1 ms).
 *
 * @returns the duration, or an error message naming what is wrong.
 */
export function parseDuration(input: string): number | { error: string } {
  const text = input.startsWith('+') ? input.slice(1) : input;
  if (text === '0') return 0;
  const invalid = (rest: string) => ({
    error: `invalid duration ${JSON.stringify(input)} at ${JSON.stringify(rest)}: use e.g. "30s", "1h30m" or "30d"`,
  });
  if (text === '') return { error: 'empty duration: use e.g. "30s", "1h30m" or "30d"' };
  let ns = 0n;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const at = PART.lastIndex;
    const m = PART.exec(text);
    const whole = m?.[1] ?? '';
    const fraction = m?.[2] ?? '';
    if (m === null || (whole === '' && fraction === '')) return invalid(text.slice(at));
    const unit = UNIT_NS[m[3] as string] as bigint;
    ns += BigInt(whole === '' ? '0' : whole) * unit;
    if (fraction !== '') ns += (BigInt(fraction) * unit) / 10n ** BigInt(fraction.length);
  }
  return Number(ns) / 1e6;
}

/** The text {@link parseDuration} accepts, as an OpenAPI pattern (a property test holds them equal). */
export const DURATION_PATTERN = '^\\+?(0|((\\d+(\\.\\d*)?|\\.\\d+)(ns|us|µs|μs|ms|s|m|h|d|w))+)$';

/** The durations CEL's `duration()` reads: the same, without `d` and `w`. */
export const CEL_DURATION_PATTERN = '^\\+?(0|((\\d+(\\.\\d*)?|\\.\\d+)(ns|us|µs|μs|ms|s|m|h))+)$';
