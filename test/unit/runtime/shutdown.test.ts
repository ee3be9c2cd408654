// How a shutdown's grace period is split between the drain and what follows it, on an injected
// clock, and waiting for work only until a deadline. Starts no process.
import { describe, expect, it } from 'vitest';
import {
  AFTER_DRAIN,
  type AfterDrain,
  type BudgetTimers,
  shutdownBudget,
  within,
} from '../../../src/runtime/shutdown.ts';

/** Timers that fire only when the test moves the clock. */
class ManualClock implements BudgetTimers {
  now = 0;
  readonly #timers: { at: number; run: () => void }[] = [];
  readonly setTimeout = (run: () => void, ms: number) => {
    this.#timers.push({ at: this.now + ms, run });
    return {};
  };
  advance(ms: number): void {
    this.now += ms;
    for (const timer of this.#timers.filter((t) => t.at <= this.now)) {
      this.#timers.splice(this.#timers.indexOf(timer), 1);
      timer.run();
    }
  }
}

/** When (ms after the signal) the drain and the grace period end. */
function split(graceMs: number, after: AfterDrain): { drain: number; end: number } {
  const clock = new ManualClock();
  const budget = shutdownBudget(graceMs, after, clock);
  const at: { drain?: number; end?: number } = {};
  const check = () => {
    if (budget.drain.aborted) at.drain ??= clock.now;
    if (budget.end.aborted) at.end ??= clock.now;
  };
  check();
  while (at.end === undefined) {
    clock.advance(100);
    check();
  }
  return { drain: at.drain ?? -1, end: at.end };
}

describe('shutdown budget', () => {
  it.each([
    // [grace, mode, drain ends, grace ends]: a fifth (at most 5 s) after the operator's drain,
    // a tenth (at most 1 s) after standalone's.
    [25_000, 'operator', 20_000, 25_000],
    [60_000, 'operator', 55_000, 60_000],
    [3_000, 'operator', 2_400, 3_000],
    [25_000, 'release', 24_000, 25_000],
    [3_000, 'release', 2_700, 3_000],
    [0, 'release', 0, 0],
  ] as const)(
    'splits %i ms of grace for %s: drain until %i, end at %i',
    (grace, mode, drain, end) => {
      expect(split(grace, AFTER_DRAIN[mode])).toEqual({ drain, end });
    },
  );
});

describe('within', () => {
  it('reports work that finishes before the deadline', async () => {
    const deadline = new AbortController();
    expect(await within(Promise.resolve('done'), deadline.signal)).toBe(true);
  });

  it('abandons work still running at the deadline', async () => {
    const deadline = new AbortController();
    const waiting = within(new Promise(() => undefined), deadline.signal);
    deadline.abort();
    expect(await waiting).toBe(false);
  });

  it('does not wait at all once the deadline has passed, and ignores the late failure', async () => {
    let fail: (err: Error) => void = () => undefined;
    const work = new Promise<void>((_resolve, reject) => (fail = reject));
    expect(await within(work, AbortSignal.abort())).toBe(false);
    fail(new Error('too late'));
    await new Promise((resolve) => setImmediate(resolve));
  });

  it('passes on a failure before the deadline', async () => {
    await expect(
      within(Promise.reject(new Error('refused')), new AbortController().signal),
    ).rejects.toThrow('refused');
  });
});
