/**
 * The delivery loop of one output of one sink: take a batch from the sink's queue, write it, commit
 * it; on failure keep it queued and retry with backoff. Nothing is removed from the queue before the
 * destination has it, so an event acknowledged to the apiserver survives any output outage.
 */
import { createHash } from 'node:crypto';
import type { QueuedEvent } from '../audit/stored-point.ts';
import { type Output, OutputError, type PreparedWrite } from './types.ts';

/** What the loop needs of a batch. */
export interface DeliveryBatch {
  readonly events: readonly QueuedEvent[];
  /** Lets the events go once the output holds them encoded (see {@link Output.prepare}). */
  release?(): void;
}

/** The part of a sink queue the loop consumes (see `spool/`). */
export interface DeliverySource<B extends DeliveryBatch> {
  /**
   * Up to `maxEvents` events from the last commit, or from the end of `after` (a batch it returned
   * that is not committed yet: the next one to write while `after` is in flight).
   */
  next(maxEvents: number, maxWaitMs: number, signal?: AbortSignal, after?: B): Promise<B | null>;
  commit(batch: B): Promise<void>;
  /** Events not committed yet, when the source knows (a second write starts only for a full batch). */
  readonly pending?: number;
}

/** A batch being written; `outcome` never rejects. */
interface Flight<B> {
  readonly batch: B;
  /** Its events, counted before the batch let them go. */
  readonly count: number;
  readonly started: number;
  readonly outcome: Promise<Outcome>;
}

/** How a write ended. */
type Outcome =
  /** Written, but for the events the destination refused one by one. */
  | { readonly refusals: Refusal[] }
  /** Failed; `prepared` when the batch was encoded, for the retry to send again. */
  | { readonly error: unknown; readonly prepared?: PreparedWrite }
  /** Refused as a whole once its events were let go: to be read again and isolated. */
  | { readonly rejected: OutputError };

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

/** An event (or point) the destination refused on its own (or its output cannot encode), and why. */
export interface Refusal {
  readonly event: QueuedEvent;
  readonly error: OutputError;
}

/** What the loop reports, for metrics and status. */
export interface DeliveryObserver {
  delivered(count: number, seconds: number): void;
  failed(error: OutputError, count: number, attempt: number): void;
  /**
   * Events of a batch the destination refused one by one, isolated from the rest, which was
   * written: kept aside (the sink's dead letters) before the batch is committed, so that they
   * never block the queue nor are lost without a trace. Never rejects: what cannot be kept is
   * counted as dropped by the observer.
   */
  refused(refusals: readonly Refusal[]): Promise<void>;
}

/** How one loop runs; clock and sleep are injected so tests never wait for real backoff. */
export interface DeliveryOptions {
  readonly batchSize: number;
  /**
   * How long a batch that is not full may wait for more events before it is written (a sink's
   * flushInterval); 0 writes whatever is there at once.
   */
  readonly flushIntervalMs?: number;
  /**
   * Where the loop's flush ticks fall in the flush interval, as a fraction of it ([0, 1); 0 when
   * absent): see {@link untilFlush}.
   */
  readonly flushPhase?: number;
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
export async function runDelivery<B extends DeliveryBatch>(
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
  const writesInFlight = Math.max(1, Math.floor(output.writesInFlight ?? 1));
  // Writes started, oldest first; only the oldest is ever committed.
  const flights: Flight<B>[] = [];
  let committing: Promise<void> = Promise.resolve();
  try {
    await deliver();
  } finally {
    // Aborted writes settle at once; nothing of theirs is committed.
    await Promise.all(flights.map((flight) => flight.outcome));
    await committing;
  }

  // Each step is a function of its own, so that no batch outlives its step in a suspended frame:
  // a loop body's locals stay in the frame (V8 keeps them in its registers) through the next
  // wait, and a thousand quiet sinks each held their last written batch through their flush
  // interval (ADR 0021).
  async function deliver(): Promise<void> {
    while (!abort.aborted) {
      if (flights.length === 0) {
        const launched = await launchFirst();
        if (launched === 'done') return;
        if (!launched) continue;
      }
      await fill();
      if (!(await settleHead())) return;
    }
  }

  /** Reads the next batch and starts writing it; false when there is nothing yet. */
  async function launchFirst(): Promise<boolean | 'done'> {
    const batch = await first();
    if (batch === 'done') return 'done';
    if (batch === null) return false;
    flights.push(launch(batch));
    return true;
  }

  /**
   * Waits for the oldest write, retries it until it succeeds, keeps what the destination refused,
   * and commits it. False when the loop must end instead (see {@link backOff}).
   */
  async function settleHead(): Promise<boolean> {
    let head = flights.shift() as Flight<B>;
    let result = await head.outcome;
    let attempt = 1;
    while (!('refusals' in result)) {
      // The writes behind it meet the same destination: they settle, uncommitted (their batches
      // are read and written again after this one), and this batch is retried alone.
      await Promise.all(flights.splice(0).map((flight) => flight.outcome));
      if ('error' in result) {
        if (!(await backOff(result.error, head.count, attempt))) return false;
        attempt++;
        head = launch(head.batch, result.prepared);
      } else {
        // Its events were let go once encoded: read again, from the last commit (where the oldest
        // write starts), to find the ones refused.
        let again: B | null;
        try {
          again = await source.next(head.count, 0, abort);
        } catch (err) {
          await queueFailed(err);
          if (abort.aborted) return false;
          continue;
        }
        // Aborted, or the queue closed: the batch stays queued.
        if (again === null) return false;
        head = {
          batch: again,
          count: again.events.length,
          started: now(),
          outcome: isolate(again.events),
        };
      }
      result = await head.outcome;
    }
    const { refusals } = result;
    if (refusals.length > 0) {
      const firstRefusal = refusals[0] as Refusal;
      observer.failed(firstRefusal.error, refusals.length, attempt);
      // Kept before the commit: a crash in between delivers the batch again, never loses them.
      await observer.refused(refusals);
    }
    const written = head.count - refusals.length;
    if (written > 0) observer.delivered(written, (now() - head.started) / 1000);
    // The next batch is read and written while this commit is persisted: the queue reads from
    // the last commit, persisted or not. One commit at a time; the queue coalesces them.
    await committing;
    committing = commit(head.batch);
    return true;
  }

  /**
   * The next batch when no write is in flight: waits for events, then for the flush interval.
   * Null when there is nothing yet; `done` when the loop ends (drained, or aborted).
   */
  async function first(): Promise<B | null | 'done'> {
    const linger = stop.aborted ? 0 : (options.flushIntervalMs ?? 0);
    // Fewer events than a batch wait already: the flush interval first, then one read of them.
    const waiting = source.pending;
    if (linger > 0 && waiting !== undefined && waiting > 0 && waiting < options.batchSize) {
      return lingered(linger);
    }
    const read = await waitForBatch();
    if (read !== 'linger') return abort.aborted ? 'done' : read;
    return lingered(linger);
  }

  /**
   * Waits for events and reads them. `linger` for a batch that is not full while a flush interval
   * applies: let go, to be read again after the wait, rather than held through it.
   */
  async function waitForBatch(): Promise<B | null | 'done' | 'linger'> {
    const draining = stop.aborted;
    let batch: B | null;
    try {
      batch = await source.next(
        options.batchSize,
        draining ? 0 : options.idleWaitMs,
        draining ? abort : idleWake,
      );
    } catch (err) {
      await queueFailed(err);
      return null;
    }
    // Woken by the drain's start: one more look, without waiting, for what came meanwhile.
    if (batch === null) return draining ? 'done' : null;
    const linger = options.flushIntervalMs ?? 0;
    if (linger <= 0 || batch.events.length >= options.batchSize || stop.aborted) return batch;
    return 'linger';
  }

  /**
   * A batch that is not full waits up to the flush interval for more events, so that a quiet sink
   * (one tenant among many) writes a few large requests rather than many small ones: until the
   * interval's next tick at the loop's phase, so that the sinks sharing a phase write together
   * (ADR 0012, "Later: sinks that wait for their batch write at shared ticks"). Stopping ends
   * the wait: a drain writes what is there.
   */
  async function lingered(linger: number): Promise<B | null | 'done'> {
    const phase = (options.flushPhase ?? 0) * linger;
    await sleep(untilFlush(now(), linger, phase), AbortSignal.any([stop, abort]));
    if (abort.aborted) return 'done';
    try {
      // From the last commit: the events that were there before the wait and what came since.
      return await source.next(options.batchSize, 0, abort);
    } catch (err) {
      await queueFailed(err);
      return null;
    }
  }

  /**
   * While the oldest write is in flight, starts writing the full batches queued behind it, up to
   * the output's writes in flight: a backlog drains at the pace the destination takes parallel
   * requests, not one round trip at a time. A batch that is not full waits for the writes ahead of
   * it, as it would wait for its flush interval.
   */
  async function fill(): Promise<void> {
    while (flights.length < writesInFlight && !abort.aborted) {
      const ahead = flights.reduce((n, flight) => n + flight.count, 0);
      if (source.pending !== undefined && source.pending - ahead < options.batchSize) return;
      const last = flights.at(-1) as Flight<B>;
      let batch: B | null;
      try {
        batch = await source.next(options.batchSize, 0, abort, last.batch);
      } catch {
        // Met again, and reported, by the next read from the last commit.
        return;
      }
      if (batch === null || batch.events.length < options.batchSize) return;
      flights.push(launch(batch));
    }
  }

  /** Starts writing `batch`, or sending it again once encoded (`prepared`). */
  function launch(batch: B, prepared?: PreparedWrite): Flight<B> {
    const started = now();
    const count = prepared?.count ?? batch.events.length;
    return { batch, count, started, outcome: write(batch, prepared) };
  }

  /**
   * Writes a batch. An output that encodes first (see {@link Output.prepare}) has the batch let
   * its events go before the destination is asked: a sink's writes in flight then hold their
   * bodies, a third of the events' size, through the round trip and any retries.
   */
  async function write(batch: B, prepared: PreparedWrite | undefined): Promise<Outcome> {
    if (prepared === undefined) {
      if (output.prepare === undefined) return isolate(batch.events);
      try {
        prepared = await untilAborted(output.prepare(batch.events), abort);
      } catch (error) {
        // An event the output cannot encode: isolated from the rest while the events are here.
        if (!abort.aborted && isRefusal(error)) return isolate(batch.events);
        return { error };
      }
      batch.release?.();
    }
    try {
      await untilAborted(prepared.send(abort), abort);
      return { refusals: [] };
    } catch (error) {
      if (!abort.aborted && isRefusal(error)) return { rejected: error };
      return { error, prepared };
    }
  }

  /** Writes `events`, isolating the ones the destination refuses (see {@link writeIsolating}). */
  async function isolate(events: readonly QueuedEvent[]): Promise<Outcome> {
    try {
      return { refusals: await writeIsolating(events, output, abort) };
    } catch (error) {
      return { error };
    }
  }

  /**
   * Reports a failed write of a batch of `count` events and waits out its backoff. False when the
   * loop must end instead: cut off at the end of the grace period (or by a destination change),
   * which is not a failure of the destination and not a delivery, or a permanent failure during a
   * drain. The batch then stays queued, uncommitted, for the next start, where idempotent writes
   * make a copy the destination already has harmless.
   */
  async function backOff(err: unknown, count: number, attempt: number): Promise<boolean> {
    if (abort.aborted) return false;
    const error =
      err instanceof OutputError
        ? err
        : new OutputError('IO_ERROR', `output failed: ${(err as Error).message}`, {
            retryable: true,
            cause: err,
          });
    observer.failed(error, count, attempt);
    // A drain does not wait a minute for a permanent failure's re-check: the batch stays queued
    // for the next start, which may well have the fixed configuration.
    if (stop.aborted && !error.retryable) return false;
    const wake = signals.retryNow?.();
    await sleep(
      retryDelay(error, attempt, options.backoff, random),
      wake === undefined ? abort : AbortSignal.any([abort, wake]),
    );
    return !abort.aborted;
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

/**
 * Writes `events`. When the destination refuses the data itself (a 400 or 422 that does not say
 * which point) or the output cannot encode an event, the halves are written apart, and so on,
 * until each refused event stands alone: one bad event costs about 2·log2(n) extra requests and
 * only itself, where skipping the batch would drop every event beside it. Parts written before a
 * refusal may be written again; every output's writes are idempotent.
 *
 * @returns the events refused on their own, in order (empty when everything was written).
 * @throws what the output throws for anything else (a retryable failure, a bad token, an abort):
 * the batch is then retried whole.
 */
export async function writeIsolating(
  events: readonly QueuedEvent[],
  output: Output,
  signal: AbortSignal,
): Promise<Refusal[]> {
  try {
    await untilAborted(output.write(events, signal), signal);
    return [];
  } catch (err) {
    if (signal.aborted || !isRefusal(err)) throw err;
    if (events.length === 1) return [{ event: events[0] as QueuedEvent, error: err }];
    const middle = Math.ceil(events.length / 2);
    const left = await writeIsolating(events.slice(0, middle), output, signal);
    const right = await writeIsolating(events.slice(middle), output, signal);
    return left.concat(right);
  }
}

/** Whether a failure is about the data written, so that a smaller write can succeed. */
function isRefusal(err: unknown): err is OutputError {
  return err instanceof OutputError && (err.code === 'REJECTED' || err.code === 'UNENCODABLE');
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
function untilAborted<T>(write: Promise<T>, signal: AbortSignal): Promise<T> {
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
      (value) => {
        signal.removeEventListener('abort', aborted);
        resolve(value);
      },
      (err: Error) => {
        signal.removeEventListener('abort', aborted);
        reject(err);
      },
    );
  });
}

/** Phases of the flush interval that sinks are spread over ({@link flushPhaseOf}). */
export const FLUSH_PHASES = 8;

/**
 * The phase of a sink's flush ticks: one of {@link FLUSH_PHASES} fractions of the interval, chosen
 * by its key, so that sinks with the same interval write in a few groups at fixed moments rather
 * than each at its own: requests that reach InfluxDB together, cursor commits that share a save
 * of the log's state. A few groups rather than one, so that a hundred sinks never read and encode
 * their batches in the same moment, which doubled the acknowledgements' p99 under load.
 */
export function flushPhaseOf(key: string): number {
  return (createHash('sha256').update(key).digest().readUInt32BE(0) % FLUSH_PHASES) / FLUSH_PHASES;
}

/**
 * Milliseconds from `now` until the next flush tick: the ticks fall every `interval` from `phase`
 * on the same clock, so that every loop with the same interval and phase writes at the same
 * moments. In (0, interval]: a batch never waits longer than the interval.
 */
export function untilFlush(now: number, interval: number, phase: number): number {
  const since = (((now - phase) % interval) + interval) % interval;
  return interval - since;
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
