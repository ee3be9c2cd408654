/**
 * A keyed work queue in the manner of client-go's: a key added many times while it waits is
 * reconciled once; a key is never reconciled twice at the same time (one added while it runs is
 * run again afterwards); failures are retried with exponential backoff, terminal errors are not.
 * Timers are injected so that tests never sleep.
 */

/** What a reconcile asks for next. */
export type ReconcileResult =
  /** Done until the key is added again. */
  | { readonly done: true }
  /** Run again after a delay, e.g. to refresh status; not a failure. */
  | { readonly requeueAfterMs: number };

/** A reconcile result meaning "done". */
export const DONE: ReconcileResult = Object.freeze({ done: true });

/** An error that retrying cannot fix (an invalid spec): reported, not retried. */
export class TerminalError extends Error {
  override readonly name = 'TerminalError';
  readonly code = 'TERMINAL';
}

/** Timers, injectable for tests. */
export interface QueueClock {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Milliseconds, to compare delayed adds; `Date.now` when absent. */
  now?(): number;
}

/** How the queue runs reconciles. */
export interface WorkQueueOptions {
  readonly reconcile: (key: string) => Promise<ReconcileResult>;
  /** Told about every failure, with the delay before the retry (undefined when terminal). */
  readonly onError?: (key: string, err: unknown, retryInMs: number | undefined) => void;
  /** First retry delay; doubles per consecutive failure of the same key. */
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Keys reconciled at the same time (different keys only). */
  readonly concurrency?: number;
  readonly clock?: QueueClock;
}

/** client-go's controller defaults: 5 ms doubling up to 1000 s; ours caps at 5 minutes. */
const DEFAULT_BASE_DELAY_MS = 5;
const DEFAULT_MAX_DELAY_MS = 5 * 60_000;

const realClock: QueueClock = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout: (handle) => {
    clearTimeout(handle as NodeJS.Timeout);
  },
};

/** A queue of object keys with one reconcile per key at a time. */
export class WorkQueue {
  readonly #options: WorkQueueOptions;
  readonly #clock: QueueClock;
  // Keys waiting to run, in order; `#queued` mirrors it for O(1) membership.
  readonly #order: string[] = [];
  readonly #queued = new Set<string>();
  readonly #running = new Set<string>();
  // Keys added while running: they run again when the current run ends.
  readonly #dirty = new Set<string>();
  readonly #failures = new Map<string, number>();
  // Delayed adds, with when each is due: the earliest of several delayed adds wins.
  readonly #timers = new Map<string, { handle: unknown; due: number }>();
  #active = 0;
  #closed = false;
  #idle: (() => void)[] = [];

  constructor(options: WorkQueueOptions) {
    this.#options = options;
    this.#clock = options.clock ?? realClock;
  }

  /** Keys waiting or running. */
  get length(): number {
    return this.#queued.size + this.#running.size;
  }

  /** Queues a key now; a pending delayed add of the same key is superseded. */
  add(key: string): void {
    if (this.#closed) return;
    this.#cancelTimer(key);
    if (this.#running.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    this.#queued.add(key);
    this.#order.push(key);
    this.#pump();
  }

  /** Queues a key after a delay, unless it is added sooner. */
  addAfter(key: string, ms: number): void {
    if (this.#closed || this.#queued.has(key)) return;
    const due = (this.#clock.now?.() ?? Date.now()) + ms;
    const pending = this.#timers.get(key);
    if (pending !== undefined && pending.due <= due) return;
    this.#cancelTimer(key);
    const handle = this.#clock.setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, ms);
    this.#timers.set(key, { handle, due });
  }

  /** Stops taking keys, cancels delayed ones and waits for running reconciles to end. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const key of [...this.#timers.keys()]) this.#cancelTimer(key);
    this.#order.length = 0;
    this.#queued.clear();
    this.#dirty.clear();
    if (this.#active === 0) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  /** Resolves once nothing is queued or running (delayed keys aside); for tests and shutdown. */
  async settled(): Promise<void> {
    if (this.length === 0) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
    return this.settled();
  }

  #cancelTimer(key: string): void {
    const timer = this.#timers.get(key);
    if (timer === undefined) return;
    this.#clock.clearTimeout(timer.handle);
    this.#timers.delete(key);
  }

  #pump(): void {
    const concurrency = this.#options.concurrency ?? 1;
    while (!this.#closed && this.#active < concurrency && this.#order.length > 0) {
      const key = this.#order.shift() as string;
      this.#queued.delete(key);
      this.#running.add(key);
      this.#active++;
      void this.#run(key);
    }
  }

  async #run(key: string): Promise<void> {
    try {
      const result = await this.#options.reconcile(key);
      this.#failures.delete(key);
      if ('requeueAfterMs' in result) this.addAfter(key, result.requeueAfterMs);
    } catch (err) {
      this.#failed(key, err);
    } finally {
      this.#running.delete(key);
      this.#active--;
      if (this.#dirty.delete(key)) this.add(key);
      this.#pump();
      if (this.length === 0 || this.#active === 0) {
        const waiting = this.#idle;
        this.#idle = [];
        for (const resolve of waiting) resolve();
      }
    }
  }

  #failed(key: string, err: unknown): void {
    if (err instanceof TerminalError) {
      this.#failures.delete(key);
      this.#options.onError?.(key, err, undefined);
      return;
    }
    const failures = (this.#failures.get(key) ?? 0) + 1;
    this.#failures.set(key, failures);
    const base = this.#options.baseDelayMs ?? DEFAULT_BASE_DELAY_MS;
    const max = this.#options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    const delay = Math.min(max, base * 2 ** (failures - 1));
    this.#options.onError?.(key, err, delay);
    // A newer add supersedes the retry: the dirty re-run happens at once.
    if (!this.#dirty.has(key)) this.addAfter(key, delay);
  }
}
