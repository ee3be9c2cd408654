/**
 * The grace period of a shutdown (`--shutdown-grace-seconds`, counted from the signal) and how it
 * is split: the queues drain until only the part reserved for what follows the drain is left;
 * at the end of the grace period whatever still runs is abandoned (docs/adr/0005, 0009).
 */

/** The part of the grace period kept for what follows the drain: a fraction, capped. */
export interface AfterDrain {
  readonly fraction: number;
  readonly maxMs: number;
}

/**
 * What follows the drain in each mode. `release`: closing outputs and spools (cursor files
 * synced), milliseconds on a healthy disk: a tenth of the grace period, at most 1 s. `operator`:
 * that, the final status and the Lease release, a few API calls that a healthy apiserver answers
 * in milliseconds and an unreachable one never does (each has its own 10 s deadline, longer than
 * is left): a fifth of the grace period, at most 5 s.
 */
export const AFTER_DRAIN = Object.freeze({
  release: Object.freeze({ fraction: 0.1, maxMs: 1_000 }),
  operator: Object.freeze({ fraction: 0.2, maxMs: 5_000 }),
});

/** One shutdown's deadlines, as signals that abort when each is reached. */
export interface ShutdownBudget {
  /** The whole grace period, in milliseconds. */
  readonly graceMs: number;
  /** Until when the queues drain: then in-flight writes are aborted, their batches stay spooled. */
  readonly drain: AbortSignal;
  /** The end of the grace period: what still runs is abandoned, and the process exits. */
  readonly end: AbortSignal;
}

/** Timers, injectable so that tests control time. */
export interface BudgetTimers {
  readonly setTimeout: (run: () => void, ms: number) => { unref?: () => unknown };
}

/** Starts the clock of a shutdown now: `graceMs` in all, `after` of it kept after the drain. */
export function shutdownBudget(
  graceMs: number,
  after: AfterDrain,
  timers: BudgetTimers = { setTimeout: (run, ms) => setTimeout(run, ms) },
): ShutdownBudget {
  const reserveMs = Math.min(after.maxMs, graceMs * after.fraction);
  return {
    graceMs,
    drain: deadline(graceMs - reserveMs, timers),
    end: deadline(graceMs, timers),
  };
}

function deadline(ms: number, timers: BudgetTimers): AbortSignal {
  const controller = new AbortController();
  if (ms <= 0) {
    controller.abort();
    return controller.signal;
  }
  // Unreferenced: a shutdown that finished early must not keep the process alive until then.
  timers.setTimeout(() => controller.abort(), ms).unref?.();
  return controller.signal;
}

/**
 * Waits for `work` until `signal` aborts: true when it finished, false when it was abandoned
 * (it keeps running, unobserved; a failure of it is then ignored). A failure before that is thrown.
 */
export async function within(work: Promise<unknown>, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return false;
  }
  let stop: (() => void) | undefined;
  const aborted = new Promise<false>((resolve) => {
    stop = () => resolve(false);
    signal.addEventListener('abort', stop, { once: true });
  });
  try {
    return await Promise.race([work.then(() => true as const), aborted]);
  } finally {
    if (stop !== undefined) signal.removeEventListener('abort', stop);
    work.catch(() => undefined);
  }
}
