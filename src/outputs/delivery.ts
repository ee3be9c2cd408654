/**
 * The delivery loop of one output of one sink: take a batch from the sink's queue, write it, commit
 * it; on failure keep it queued and retry with backoff. Nothing is removed from the queue before the
 * destination has it, so an event acknowledged to the apiserver survives any output outage.
 */
import type { AuditEvent } from '../audit/types.ts';
import { type Output, OutputError } from './types.ts';

/** The part of a sink queue the loop consumes (see `spool/`). */
export interface DeliverySource<B extends { readonly events: readonly AuditEvent[] }> {
  next(maxEvents: number, maxWaitMs: number, signal?: AbortSignal): Promise<B | null>;
  commit(batch: B): Promise<void>;
}

/** Retry timing. */
export interface BackoffOptions {
  /** First delay after a retryable failure. */
  readonly initialMs: number;
  /** Longest delay between retryable attempts. */
  readonly maxMs: number;
  readonly factor: number;
  /** Fraction of each delay that is randomised, so many sinks do not retry in step. */
  readonly jitter: number;
  /** Delay after a permanent failure (bad token, missing bucket): a slow re-check, not a hot loop. */
  readonly permanentMs: number;
}

/**
 * Defaults: 500 ms doubling to 30 s with 20% jitter, the shape of the apiserver's own webhook
 * backoff; permanent failures re-checked every 60 s, so a rotated token or created bucket is
 * picked up within a minute.
 */
export const DEFAULT_BACKOFF: BackoffOptions = Object.freeze({
  initialMs: 500,
  maxMs: 30_000,
  factor: 2,
  jitter: 0.2,
  permanentMs: 60_000,
});

/** What the loop reports, for metrics and status. */
export interface DeliveryObserver {
  delivered(count: number, seconds: number): void;
  failed(error: OutputError, count: number, attempt: number): void;
  /** A batch the destination refused as data was skipped, so that it cannot block the queue. */
  rejected?(count: number, error: OutputError): void;
}

/** How one loop runs; clock and sleep are injected so tests never wait for real backoff. */
export interface DeliveryOptions {
  readonly batchSize: number;
  /**
   * How long a batch that is not full may wait for more events before it is written (a sink's
   * flushInterval); 0 writes whatever is there at once.
   */
  readonly flushIntervalMs?: number;
  /** How long an idle loop waits for events before checking for shutdown. */
  readonly idleWaitMs: number;
  readonly backoff: BackoffOptions;
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly random?: () => number;
  readonly now?: () => number;
}

/** When a loop stops. */
export interface DeliverySignals {
  /**
   * Graceful stop: deliver what is queued, then return (SIGTERM drain). A permanent failure ends
   * the drain of this output at once instead of waiting for its re-check.
   */
  readonly stop: AbortSignal;
  /**
   * Hard stop (end of the drain, a destination change): aborts the write in flight and every
   * wait, and returns at once. The batch in flight is neither committed nor reported as failed;
   * the queue keeps it and the rest.
   */
  readonly abort: AbortSignal;
  /**
   * The signal that cuts a retry wait short, asked for at each wait: e.g. fired when the token
   * Secret changes, so that a fixed credential is used at once rather than at the next re-check.
   */
  readonly retryNow?: () => AbortSignal;
}

/**
 * Delivers queued batches until `signals.stop` finds the queue empty, or `signals.abort` fires.
 * Undelivered events, including a batch whose write was aborted, stay queued for the next start.
 */
export async function runDelivery<B extends { readonly events: readonly AuditEvent[] }>(
  source: DeliverySource<B>,
  output: Output,
  observer: DeliveryObserver,
  options: DeliveryOptions,
  signals: DeliverySignals,
): Promise<void> {
  const { stop, abort } = signals;
  const sleep = options.sleep ?? abortableSleep;
  const random = options.random ?? Math.random;
  const now = options.now ?? performance.now.bind(performance);
  let queueFailures = 0;
  // The queue itself can fail (disk full while saving a cursor, a read error): report it, back
  // off and try again, instead of ending the loop and leaving the destination without delivery.
  const queueFailed = async (err: unknown) => {
    queueFailures++;
    const error = new OutputError('IO_ERROR', `queue failed: ${(err as Error).message}`, {
      retryable: true,
      cause: err,
    });
    observer.failed(error, 0, queueFailures);
    await sleep(retryDelay(error, queueFailures, options.backoff, random), abort);
  };
  // An idle wait ends when the drain starts too: a shutdown with nothing queued takes no time.
  const idleWake = AbortSignal.any([stop, abort]);
  let committing: Promise<void> = Promise.resolve();
  try {
    await deliver();
  } finally {
    await committing;
  }

  async function deliver(): Promise<void> {
    while (!abort.aborted) {
      let batch: B | null;
      const draining = stop.aborted;
      try {
        batch = await source.next(
          options.batchSize,
          draining ? 0 : options.idleWaitMs,
          draining ? abort : idleWake,
        );
      } catch (err) {
        await queueFailed(err);
        continue;
      }
      if (batch === null) {
        // Woken by the drain's start: one more look, without waiting, for what came meanwhile.
        if (draining) return;
        continue;
      }
      batch = await filled(batch);
      if (abort.aborted) return;
      for (let attempt = 1; ; attempt++) {
        const started = now();
        try {
          await untilAborted(output.write(batch.events, abort), abort);
        } catch (err) {
          // Cut off at the end of the grace period (or by a destination change): not a failure of
          // the destination, and not a delivery. The batch stays queued, uncommitted, for the
          // next start, where idempotent writes make a copy the destination already has harmless.
          if (abort.aborted) return;
          const error =
            err instanceof OutputError
              ? err
              : new OutputError('IO_ERROR', `output failed: ${(err as Error).message}`, {
                  retryable: true,
                  cause: err,
                });
          observer.failed(error, batch.events.length, attempt);
          if (error.code === 'REJECTED') {
            // The destination refuses this data itself (400, 422): the same batch can never
            // succeed, and holding it would block every event behind it. Counted, logged, skipped.
            observer.rejected?.(batch.events.length, error);
            await committing;
            committing = commit(batch);
            break;
          }
          // A drain does not wait a minute for a permanent failure's re-check: the batch stays
          // queued for the next start, which may well have the fixed configuration.
          if (stop.aborted && !error.retryable) return;
          const wake = signals.retryNow?.();
          await sleep(
            retryDelay(error, attempt, options.backoff, random),
            wake === undefined ? abort : AbortSignal.any([abort, wake]),
          );
          if (abort.aborted) return;
          continue;
        }
        observer.delivered(batch.events.length, (now() - started) / 1000);
        // The next batch is read and written while this commit is persisted: the queue reads from
        // the last commit, persisted or not. One commit at a time; the queue coalesces them.
        await committing;
        committing = commit(batch);
        break;
      }
    }
  }

  /**
   * A batch that is not full waits up to the flush interval for more events, so that a quiet sink
   * (one tenant among many) writes a few large requests rather than many small ones. Stopping
   * ends the wait: a drain writes what is there.
   */
  async function filled(batch: B): Promise<B> {
    const linger = options.flushIntervalMs ?? 0;
    if (linger <= 0 || batch.events.length >= options.batchSize || stop.aborted) return batch;
    await sleep(linger, AbortSignal.any([stop, abort]));
    if (abort.aborted) return batch;
    try {
      // The queue reads from the last commit again: the same events and what came since.
      return (await source.next(options.batchSize, 0, abort)) ?? batch;
    } catch {
      return batch;
    }
  }

  async function commit(batch: B): Promise<void> {
    try {
      await source.commit(batch);
      queueFailures = 0;
    } catch (err) {
      await queueFailed(err);
    }
  }
}

/** The wait before retry `attempt` (1-based) after `error`. */
export function retryDelay(
  error: OutputError,
  attempt: number,
  backoff: BackoffOptions,
  random: () => number,
): number {
  if (!error.retryable) return backoff.permanentMs;
  const exponential = Math.min(backoff.maxMs, backoff.initialMs * backoff.factor ** (attempt - 1));
  const jittered = exponential * (1 - backoff.jitter + 2 * backoff.jitter * random());
  // The server's Retry-After is a floor, never shortened by jitter.
  return Math.max(jittered, error.retryAfterMs ?? 0);
}

/**
 * Settles as `write` does, or rejects as soon as `signal` aborts: the grace period holds even for
 * an output that cannot stop at once (a write to a hung file system cannot be cancelled). Such a
 * write runs on unobserved; its batch stays queued.
 */
function untilAborted(write: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) {
    write.catch(() => undefined);
    return Promise.reject(signal.reason as Error);
  }
  return new Promise((resolve, reject) => {
    const aborted = () => {
      write.catch(() => undefined);
      reject(signal.reason as Error);
    };
    signal.addEventListener('abort', aborted, { once: true });
    write.then(
      () => {
        signal.removeEventListener('abort', aborted);
        resolve();
      },
      (err: Error) => {
        signal.removeEventListener('abort', aborted);
        reject(err);
      },
    );
  });
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
