/**
 * Waiting for a condition in tests: polls instead of sleeping a fixed time, so a fast machine is
 * not slowed and a slow one gets until the deadline, and says at the deadline what it last saw.
 * Starts nothing.
 */
import { inspect } from 'node:util';

/** How long to wait and how often to look. */
export interface WaitOptions {
  /** Give up after this long; default 30 s. */
  readonly timeoutMs?: number;
  /** Between two probes; default 200 ms. */
  readonly intervalMs?: number;
}

/** The probe's last outcome, for the message at the deadline. */
type Outcome = { readonly value: unknown } | { readonly error: unknown } | undefined;

/** `WaitOptions` from the positional form `(timeoutMs, intervalMs)` or an options object. */
function optionsOf(timeout: number | WaitOptions | undefined, intervalMs?: number): WaitOptions {
  if (typeof timeout === 'object') return timeout;
  return {
    ...(timeout === undefined ? {} : { timeoutMs: timeout }),
    ...(intervalMs === undefined ? {} : { intervalMs }),
  };
}

function describeOutcome(outcome: Outcome): string {
  if (outcome === undefined) return 'the probe never finished';
  if ('error' in outcome) {
    const { error } = outcome;
    return `last error: ${error instanceof Error ? error.message : inspect(error)}`;
  }
  return `last value: ${inspect(outcome.value, { depth: 4, breakLength: Infinity, maxArrayLength: 20 })}`;
}

/**
 * Probes a value until `accept` takes it and returns that value; at the deadline throws with
 * `what` and the last value probed, or the last error the probe threw (a probe may fail while
 * what it reads is not there yet, e.g. a bucket still to be created).
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T> | T,
  accept: (value: T) => boolean,
  timeout?: number | WaitOptions,
  intervalMs?: number,
): Promise<T> {
  const { timeoutMs = 30_000, intervalMs: interval = 200 } = optionsOf(timeout, intervalMs);
  const deadline = Date.now() + timeoutMs;
  let last: Outcome;
  for (;;) {
    try {
      const value = await probe();
      if (accept(value)) return value;
      last = { value };
    } catch (error) {
      last = { error };
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}; ${describeOutcome(last)}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/**
 * Polls `check` until it returns true (or a value other than false/undefined) and returns that
 * value; at the deadline throws with `what` and the last error `check` threw, or what it last
 * returned when that says more than `false`.
 */
export function eventually<T>(
  what: string,
  check: () => Promise<T | false | undefined> | T | false | undefined,
  timeout?: number | WaitOptions,
  intervalMs?: number,
): Promise<T> {
  return waitFor(
    what,
    check,
    (value): value is T => value !== false && value !== undefined,
    timeout,
    intervalMs,
  ) as Promise<T>;
}
