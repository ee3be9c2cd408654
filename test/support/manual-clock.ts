/**
 * A clock for the operator's parts whose timers fire only when a test advances it, so that
 * retries, intervals and lease expiry are tested without sleeping. Starts nothing.
 */
import type { Clock } from '../../src/operator/clock.ts';

/**
 * Lets every promise chain that is waiting on nothing but other promises run to its end: a
 * macrotask runs only once the microtask queue is empty.
 */
export async function flush(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Time stands still until {@link ManualClock.advance}. */
export class ManualClock implements Clock {
  #time: number;
  #nextId = 0;
  readonly #timers = new Map<number, { readonly at: number; readonly fn: () => void }>();

  constructor(start: Date | number = new Date('2026-03-01T10:00:00.000Z')) {
    this.#time = typeof start === 'number' ? start : start.getTime();
  }

  now(): number {
    return this.#time;
  }

  /** The time as a Date. */
  date(): Date {
    return new Date(this.#time);
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#nextId;
    this.#timers.set(id, { at: this.#time + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Delays (from now) of the timers still pending, soonest first. */
  pending(): number[] {
    return [...this.#timers.values()].map((t) => t.at - this.#time).sort((a, b) => a - b);
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due in order, each at its own time,
   * and letting what it started run (see {@link flush}) before the next one fires.
   */
  async advance(ms: number): Promise<void> {
    const until = this.#time + ms;
    await flush();
    for (;;) {
      const due = [...this.#timers.entries()]
        .filter(([, t]) => t.at <= until)
        .sort(([ia, a], [ib, b]) => a.at - b.at || ia - ib)[0];
      if (due === undefined) break;
      const [id, timer] = due;
      this.#timers.delete(id);
      this.#time = timer.at;
      timer.fn();
      await flush();
    }
    this.#time = until;
  }
}
