/**
 * Durations as Kubernetes users write them: Go's `time.ParseDuration` units (`ns` to `h`), plus
 * `d` and `w`, which retention settings commonly use (`30d`, `2w`). Pure.
 */

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

const PART = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d|w)/y;

/**
 * Parses `1h30m`, `500ms`, `30d` or `0` into milliseconds.
 *
 * @returns the duration, or an error message naming what is wrong.
 */
export function parseDuration(text: string): number | { error: string } {
  if (text === '0') return 0;
  if (text === '') return { error: 'empty duration' };
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const at = PART.lastIndex;
    const m = PART.exec(text);
    if (m === null) {
      return {
        error: `invalid duration ${JSON.stringify(text)} at ${JSON.stringify(text.slice(at))}: use e.g. "30s", "1h30m" or "30d"`,
      };
    }
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  }
  return total;
}
