/**
 * Informer semantics on a list-then-watch ({@link ObjectWatch}, client-node's ListWatch in
 * production): list, then watch from the list's resourceVersion; a 410 Gone relists (ListWatch
 * does that itself, reporting deletions it missed); any other failure stops the watch, so here it
 * is restarted with capped exponential backoff.
 */
import type { ObjectWatch } from './kube.ts';

/** What happened to an object. */
export type ChangeType = 'add' | 'update' | 'delete';

/** How an informer reports and retries. */
export interface InformerOptions<T> {
  readonly onChange: (obj: T, type: ChangeType) => void;
  readonly onError: (err: unknown, retryInMs: number) => void;
  /** Waits between restarts; injectable so that tests never sleep. */
  readonly sleep?: (ms: number) => Promise<void>;
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Milliseconds, to tell recent failures from old ones; `Date.now` when absent. */
  readonly now?: () => number;
}

/** 1 s doubling to 30 s: a restarting apiserver is usually back within seconds. */
const BASE_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;

function defaultSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** A restartable list-and-watch with a local cache. */
export class Informer<T> {
  readonly #lw: ObjectWatch<T>;
  readonly #options: InformerOptions<T>;
  #stopped = false;
  #failures = 0;
  #lastErrorAt = Number.NEGATIVE_INFINITY;
  // While a start is in progress its errors are its own; afterwards an error starts a restart.
  #starting = false;
  #startError: unknown;

  constructor(lw: ObjectWatch<T>, options: InformerOptions<T>) {
    this.#lw = lw;
    this.#options = options;
    lw.on('add', (obj) => options.onChange(obj, 'add'));
    lw.on('update', (obj) => options.onChange(obj, 'update'));
    lw.on('delete', (obj) => options.onChange(obj, 'delete'));
    lw.on('error', (err) => {
      if (this.#starting) {
        this.#startError = err ?? new Error('watch failed');
      } else if (!this.#stopped) {
        void this.#restart(err);
      }
    });
  }

  /** Lists (unless a watch can resume) and watches; resolves once that worked, retrying until then. */
  async start(): Promise<void> {
    const sleep = this.#options.sleep ?? defaultSleep;
    while (!this.#stopped) {
      this.#starting = true;
      this.#startError = undefined;
      try {
        await this.#lw.start();
      } catch (err) {
        this.#startError = err;
      } finally {
        this.#starting = false;
      }
      // Stopped while the list was in flight: ListWatch would go on to watch regardless.
      if (this.#stopped) {
        await this.#lw.stop();
        return;
      }
      if (this.#startError === undefined) return;
      const delay = this.#nextDelay();
      this.#options.onError(this.#startError, delay);
      await sleep(delay);
    }
  }

  // A watch that failed after it was established: resume at once the first time, back off when
  // it keeps failing (a server that accepts watches and drops them straight away).
  async #restart(err: unknown): Promise<void> {
    let delay = 0;
    if (this.#recentlyFailed()) delay = this.#nextDelay();
    else this.#failures = 0;
    this.#lastErrorAt = this.#now();
    this.#options.onError(err, delay);
    if (delay > 0) await (this.#options.sleep ?? defaultSleep)(delay);
    await this.start();
  }

  // Within twice the longest back-off of the last failure: a wait of the longest back-off itself
  // must not count as a watch that held.
  #recentlyFailed(): boolean {
    return this.#now() - this.#lastErrorAt < 2 * (this.#options.maxDelayMs ?? MAX_DELAY_MS);
  }

  #now(): number {
    return this.#options.now?.() ?? Date.now();
  }

  #nextDelay(): number {
    // Failures long ago do not count: a watch that held for a while starts from the base delay.
    if (!this.#recentlyFailed()) this.#failures = 0;
    this.#failures++;
    this.#lastErrorAt = this.#now();
    return Math.min(
      this.#options.maxDelayMs ?? MAX_DELAY_MS,
      (this.#options.baseDelayMs ?? BASE_DELAY_MS) * 2 ** (this.#failures - 1),
    );
  }

  /** Stops watching; the cache keeps its last contents. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#lw.stop();
  }

  /** Every cached object. */
  list(): readonly T[] {
    return this.#lw.list();
  }

  /** A cached object. */
  get(name: string, namespace?: string): T | undefined {
    return this.#lw.get(name, namespace);
  }
}
