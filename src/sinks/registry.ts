/**
 * The live set of sinks: routes received events into each sink's queue, runs each sink's delivery
 * loops, and applies configuration changes without dropping events of other sinks.
 */
import type { AuditEvent } from '../audit/types.ts';
import {
  type BackoffOptions,
  DEFAULT_BACKOFF,
  type DeliveryObserver,
  flushPhaseOf,
  type Refusal,
  runDelivery,
} from '../outputs/delivery.ts';
import { batchingFor, destinationsOf } from '../outputs/kinds.ts';
import type { Output, OutputKind } from '../outputs/types.ts';
import { keepsBodies } from '../policy/checker.ts';
import {
  encodedAs,
  encodeEvent,
  QueueFullError,
  type SharedEncodings,
  type SinkQueue,
} from '../spool/index.ts';
import { type DeadLetter, DeadLetterStore } from './dead-letter.ts';
import { type IngestResult, type IngestTarget, type ReceivedTexts, textOf } from './ingest.ts';
import { EventRouting, RouteIndex, type RoutingSettings } from './router.ts';
import { SinkStatus, type SinkStatusSnapshot } from './status.ts';
import type { Sink } from './types.ts';

/** Builds what a sink needs at run time; the composition root decides paths and clients. */
export interface SinkRuntimeFactory {
  openQueue(sink: Sink): Promise<SinkQueue>;
  createOutputs(sink: Sink): Promise<Output[]>;
  /** Where the sink keeps the events its destinations refuse one by one; by default nowhere. */
  openDeadLetters?(sink: Sink): DeadLetterStore;
}

/** Something told about routing and delivery, e.g. metrics. */
export interface SinkObserver {
  routed?(
    sink: Sink,
    kept: number,
    dropped: Readonly<Record<'policy' | 'namespace', number>>,
  ): void;
  overflowed?(sink: Sink, count: number): void;
  /** Events refused one by one that could not be kept as dead letters: they are lost. */
  rejected?(sink: Sink, output: Output, count: number): void;
  /**
   * Events an output refused one by one: `kept` are in the sink's dead-letter store; `lost` could
   * not be kept (store full or failing, with `failure`, or no data directory).
   */
  deadLettered?(
    sink: Sink,
    output: Output,
    kept: readonly DeadLetter[],
    lost: readonly DeadLetter[],
    failure: Error | undefined,
  ): void;
  delivered?(sink: Sink, output: Output, count: number, seconds: number): void;
  failed?(sink: Sink, output: Output, error: Error, count: number, attempt: number): void;
}

/** One observer that tells each of `observers`, in order. */
export function everyObserver(...observers: readonly SinkObserver[]): SinkObserver {
  return {
    routed: (...args) => observers.forEach((o) => o.routed?.(...args)),
    overflowed: (...args) => observers.forEach((o) => o.overflowed?.(...args)),
    rejected: (...args) => observers.forEach((o) => o.rejected?.(...args)),
    deadLettered: (...args) => observers.forEach((o) => o.deadLettered?.(...args)),
    delivered: (...args) => observers.forEach((o) => o.delivered?.(...args)),
    failed: (...args) => observers.forEach((o) => o.failed?.(...args)),
  };
}

/** How the registry runs sinks. */
export interface RegistryOptions {
  readonly factory: SinkRuntimeFactory;
  readonly routing: RoutingSettings;
  readonly backoff?: BackoffOptions;
  /** How long an idle delivery loop waits for events before re-checking for shutdown. */
  readonly idleWaitMs?: number;
  /** How long a deleted sink may keep delivering what it had queued before its queue is removed. */
  readonly removalDrainMs?: number;
  readonly observer?: SinkObserver;
  readonly now?: () => Date;
}

/** What a shutdown's drain left behind, for the log line at its deadline. */
export interface DrainReport {
  /** Whether the deadline came first: delivery loops still ran, and their writes were aborted. */
  readonly cutOff: boolean;
  /**
   * Sinks with events that some destination has not yet got, and how many per destination kind;
   * they stay in the spool for the next start.
   */
  readonly undelivered: readonly {
    readonly sink: string;
    readonly destinations: Readonly<Partial<Record<OutputKind, number>>>;
  }[];
}

interface RuntimeCore {
  /** Replaced on update; delivery reads it on every report, so it always sees the current sink. */
  sink: Sink;
  readonly queue: SinkQueue;
  readonly deadLetters: DeadLetterStore;
  readonly status: SinkStatus;
  /** Fired (and replaced) by {@link SinkRegistry.retryNow}: ends the delivery loops' waits. */
  retry: AbortController;
}

interface Runtime extends RuntimeCore {
  delivery: Delivery;
}

/** What one sink made of one ingested batch. */
interface Tally {
  readonly kept: AuditEvent[];
  /** Events in the sink's scope. */
  inScope: number;
  /** Of those, events its policy dropped. */
  policy: number;
}

interface Delivery {
  readonly outputs: readonly Output[];
  readonly stop: AbortController;
  readonly abort: AbortController;
  readonly loops: Promise<void>;
}

/** The sinks currently configured, each with its queue and delivery loops. */
export class SinkRegistry {
  readonly #runtimes = new Map<string, Runtime>();
  readonly #closed = new Map<string, SinkStatus>();
  readonly #options: RegistryOptions;
  // Rebuilt on the first ingest after the set of sinks or any sink changed.
  #index: RouteIndex<Runtime> | null = null;
  // Deleted sinks still draining, by key; and what failed while removing one, for the next apply.
  readonly #removing = new Map<string, Promise<void>>();
  readonly #removalFailures: Error[] = [];
  // Configuration changes are applied one at a time, in order.
  #applying: Promise<void> = Promise.resolve();
  // Set by drain(): nothing is routed any more, and what is still running is told to stop.
  #draining: Promise<DrainReport> | undefined;
  readonly #deadline = new AbortController();
  #released: Promise<void> | undefined;

  constructor(options: RegistryOptions) {
    this.#options = options;
  }

  /** Whether a sink with this key exists. */
  hasSink(key: string): boolean {
    return this.#runtimes.has(key);
  }

  /** The current sinks. */
  sinks(): Sink[] {
    return [...this.#runtimes.values()].map((r) => r.sink);
  }

  /** A sink's status, or undefined for an unknown key; after {@link close}, the final one. */
  status(key: string): SinkStatusSnapshot | undefined {
    return (this.#runtimes.get(key)?.status ?? this.#closed.get(key))?.snapshot();
  }

  /**
   * Ends every retry wait of a sink's delivery loops, e.g. once its token Secret changed: a
   * destination refused for a credential is tried again at once.
   */
  retryNow(key: string): void {
    const runtime = this.#runtimes.get(key);
    if (runtime === undefined) return;
    const fired = runtime.retry;
    runtime.retry = new AbortController();
    fired.abort();
  }

  /** Events queued but not yet delivered, per sink key. */
  queueDepths(): Map<string, number> {
    return new Map([...this.#runtimes].map(([key, r]) => [key, r.queue.stats().events]));
  }

  /**
   * Makes `sinks` the configured set: starts new sinks, updates changed ones, removes the rest.
   * A new or changed sink receives events before anything of the old state stops.
   */
  apply(sinks: readonly Sink[]): Promise<void> {
    const next = this.#applying.then(() => this.#apply(sinks));
    this.#applying = next.catch(() => undefined);
    return next;
  }

  async #apply(sinks: readonly Sink[]): Promise<void> {
    // Shutting down: a change now would only start what is about to stop.
    if (this.#draining !== undefined) return;
    const wanted = new Map(sinks.map((s) => [s.key, s]));
    // One sink that cannot start (its spool unreadable, say) must not hold up the others' changes.
    const failures: Error[] = [];
    for (const sink of wanted.values()) {
      const runtime = this.#runtimes.get(sink.key);
      try {
        if (runtime === undefined) await this.#start(sink);
        else await this.#update(runtime, sink);
      } catch (err) {
        failures.push(new Error(`${sink.key}: ${(err as Error).message}`, { cause: err }));
      }
    }
    const removed = [...this.#runtimes.values()].filter((r) => !wanted.has(r.sink.key));
    for (const runtime of removed) {
      this.#runtimes.delete(runtime.sink.key);
      this.#startRemoval(runtime);
    }
    this.#index = null;
    // What went wrong removing sinks since the last change is reported with this one.
    failures.push(...this.#removalFailures.splice(0));
    const [first] = failures;
    if (first !== undefined && failures.length === 1) throw first;
    if (failures.length > 1)
      throw new AggregateError(failures, failures.map((f) => f.message).join('; '));
  }

  async #start(sink: Sink): Promise<void> {
    // A sink created again right after its removal reopens the same spool: once that one is done.
    await this.#removing.get(sink.key);
    const queue = await this.#options.factory.openQueue(sink);
    const core: RuntimeCore = {
      sink,
      queue,
      deadLetters:
        this.#options.factory.openDeadLetters?.(sink) ??
        new DeadLetterStore({ sink: sink.label, maxBytes: 0 }),
      status: new SinkStatus(this.#options.now),
      retry: new AbortController(),
    };
    const runtime: Runtime = Object.assign(core, { delivery: await this.#startDelivery(core) });
    this.#runtimes.set(sink.key, runtime);
    this.#index = null;
  }

  async #update(runtime: Runtime, sink: Sink): Promise<void> {
    const destinationsChanged =
      destinationFingerprint(runtime.sink) !== destinationFingerprint(sink);
    // Routing switches at once: the next event already sees the new policy and scope.
    runtime.sink = sink;
    this.#index = null;
    if (!destinationsChanged) return;
    // Same queue, new outputs: what was queued goes to the new destinations.
    const old = runtime.delivery;
    old.abort.abort();
    await old.loops;
    await Promise.all(old.outputs.map((o) => o.close()));
    runtime.delivery = await this.#startDelivery(runtime);
    // A destination that is gone must not hold the queue's space forever.
    const kinds = new Set(runtime.delivery.outputs.map((o) => o.kind));
    for (const output of old.outputs) {
      if (!kinds.has(output.kind)) await runtime.queue.removeConsumer(output.kind);
    }
  }

  /**
   * Drains and removes a deleted sink in the background: its queue may take up to removalDrainMs
   * to deliver, and the changes after it must not wait for that.
   */
  #startRemoval(runtime: Runtime): void {
    const key = runtime.sink.key;
    const removal: Promise<void> = this.#remove(runtime)
      .catch((err: unknown) => {
        this.#removalFailures.push(
          new Error(`${key}: removing: ${(err as Error).message}`, { cause: err }),
        );
      })
      .finally(() => {
        if (this.#removing.get(key) === removal) this.#removing.delete(key);
      });
    this.#removing.set(key, removal);
  }

  async #remove(runtime: Runtime): Promise<void> {
    const { delivery, queue } = runtime;
    delivery.stop.abort();
    // Until the removal grace, or a shutdown's deadline if that comes first.
    const drained = await settlesWithin(
      delivery.loops,
      this.#deadline.signal,
      this.#options.removalDrainMs ?? 5_000,
    );
    if (!drained) delivery.abort.abort();
    await delivery.loops;
    await Promise.all(delivery.outputs.map((o) => o.close()));
    await queue.destroy();
  }

  async #startDelivery(runtime: RuntimeCore): Promise<Delivery> {
    const outputs = await this.#options.factory.createOutputs(runtime.sink);
    const stop = new AbortController();
    const abort = new AbortController();
    const loops = Promise.all(
      outputs.map((output) => {
        runtime.status.setDestination(output.kind, false, 'Pending', `writing to ${output.target}`);
        const batching = batchingFor(runtime.sink, output.kind);
        return runDelivery(
          runtime.queue.consumer(output.kind),
          output,
          this.#observerFor(runtime, output),
          {
            batchSize: batching.size,
            flushIntervalMs: batching.flushIntervalMs,
            flushPhase: flushPhaseOf(runtime.sink.key),
            idleWaitMs: this.#options.idleWaitMs ?? 1_000,
            backoff: this.#options.backoff ?? DEFAULT_BACKOFF,
          },
          { stop: stop.signal, abort: abort.signal, retryNow: () => runtime.retry.signal },
        );
      }),
    ).then(() => undefined);
    return { outputs, stop, abort, loops };
  }

  #observerFor(runtime: RuntimeCore, output: Output): DeliveryObserver {
    const observer = this.#options.observer;
    return {
      delivered: (count, seconds) => {
        runtime.status.written += count;
        runtime.status.setDestination(
          output.kind,
          true,
          'Delivered',
          `writing to ${output.target}`,
        );
        observer?.delivered?.(runtime.sink, output, count, seconds);
      },
      refused: (refusals) => this.#deadLetter(runtime, output, refusals),
      failed: (error, count, attempt) => {
        runtime.status.failed += 1;
        runtime.status.setDestination(output.kind, false, error.code, error.message);
        observer?.failed?.(runtime.sink, output, error, count, attempt);
      },
    };
  }

  /**
   * Keeps events an output refused one by one in the sink's dead-letter store; what cannot be
   * kept is counted as dropped (`rejected`). Never rejects: the delivery loop goes on either way.
   */
  async #deadLetter(
    runtime: RuntimeCore,
    output: Output,
    refusals: readonly Refusal[],
  ): Promise<void> {
    const letters = refusals.map(({ event, error }): DeadLetter => ({
      output: output.kind,
      reason: error.code === 'UNENCODABLE' ? 'unencodable' : 'refused',
      code: error.code,
      message: error.message,
      event,
    }));
    let kept = 0;
    let failure: Error | undefined;
    try {
      kept = await runtime.deadLetters.add(letters);
    } catch (err) {
      failure = err as Error;
    }
    for (const letter of letters.slice(0, kept)) runtime.status.deadLettered[letter.reason]++;
    const lost = letters.length - kept;
    runtime.status.dropped.rejected += lost;
    const observer = this.#options.observer;
    observer?.deadLettered?.(
      runtime.sink,
      output,
      letters.slice(0, kept),
      letters.slice(kept),
      failure,
    );
    if (lost > 0) observer?.rejected?.(runtime.sink, output, lost);
  }

  /**
   * The Retry-After, in seconds, when the target cannot take a batch now: its sink's queue, or on
   * the fan-in endpoint every sink's, still refuses what it last refused. The receiver answers 429
   * without reading the body, so that overload costs no parsing.
   */
  refusing(target: IngestTarget): number | undefined {
    const runtimes =
      target.kind === 'all' ? [...this.#runtimes.values()] : [this.#runtimes.get(target.key)];
    let wait: number | undefined;
    for (const runtime of runtimes) {
      const seconds = runtime?.queue.refusing();
      if (seconds === undefined) return undefined;
      wait = Math.max(wait ?? 0, seconds);
    }
    return wait;
  }

  /** Whether some sink of the target may keep a request or response body. */
  keepsBodies(target: IngestTarget): boolean {
    if (target.kind === 'all') return this.#routesFor(target).keepsBodies;
    const runtime = this.#runtimes.get(target.key);
    return runtime !== undefined && keepsBodies(runtime.sink.compiledPolicy);
  }

  /**
   * Routes events to the target sinks and queues what each keeps. Resolves once every kept event
   * is queued (and spooled). On the fan-in endpoint a full sink drops its share, counted as
   * overflow, so that one stuck sink never blocks the others, unless no sink took its share; on
   * a sink's own endpoint a full queue answers "come back later".
   */
  async ingest(
    events: readonly AuditEvent[],
    target: IngestTarget,
    texts?: ReceivedTexts,
  ): Promise<IngestResult> {
    // A request that outlived the receiver's close: a 500 makes the sender post it again
    // elsewhere, where a 200 with nothing queued would lose it.
    if (this.#draining !== undefined) throw new Error('shutting down: no sink takes events');
    const index = this.#routesFor(target);
    const tallies = new Map<Runtime, Tally>();
    // Each event serialised once for every sink that keeps it, in a map that dies with this call;
    // an event kept as it came is stored as the text it came in, and a copy of an event without
    // bodies that differs from it in its level only as that text with the level given anew.
    let shared: SharedEncodings | undefined;
    for (let i = 0; i < events.length; i++) {
      const event = events[i] as AuditEvent;
      const routing = new EventRouting(event, this.#options.routing);
      for (const runtime of index.candidates(routing)) {
        const outcome = routing.route(runtime.sink);
        let tally = tallies.get(runtime);
        if (tally === undefined) {
          tally = { kept: [], inScope: 0, policy: 0 };
          tallies.set(runtime, tally);
        }
        if (outcome.decision?.captureInsufficient === true) {
          runtime.status.noteCaptureInsufficient();
        }
        if (outcome.kept) {
          tally.inScope++;
          tally.kept.push(outcome.event);
          const kept = outcome.event;
          if (texts !== undefined && !shared?.has(kept)) {
            const json = textOf(texts, i, event, kept);
            if (json !== undefined) (shared ??= new Map()).set(kept, encodedAs(kept, json));
          }
        } else if (outcome.reason === 'policy') {
          tally.inScope++;
          tally.policy++;
        }
      }
    }
    const appending = index.all.flatMap((runtime): [Runtime, AuditEvent[]][] => {
      const kept = tallies.get(runtime)?.kept;
      return kept === undefined || kept.length === 0 ? [] : [[runtime, kept]];
    });
    if (appending.length > 1) shared ??= new Map();
    const appended = await Promise.allSettled(
      appending.map(([r, batch]) => r.queue.append(batch, pointsOf(r, batch, shared) ?? shared)),
    );
    const refused = refusal(appended, target);
    if (refused !== null) return refused;
    // Counters of every sink, also of those the batch did not concern: one step per sink and batch.
    for (const runtime of index.all) {
      const tally = tallies.get(runtime);
      const dropped = {
        policy: tally?.policy ?? 0,
        namespace: events.length - (tally?.inScope ?? 0),
      };
      runtime.status.received += events.length;
      runtime.status.dropped.policy += dropped.policy;
      runtime.status.dropped.namespace += dropped.namespace;
      this.#options.observer?.routed?.(runtime.sink, tally?.kept.length ?? 0, dropped);
    }
    const now = (this.#options.now ?? (() => new Date()))();
    for (const [i, result] of appended.entries()) {
      const [runtime, batch] = appending[i] as [Runtime, AuditEvent[]];
      if (result.status === 'fulfilled') {
        runtime.status.lastEventTime = now;
        continue;
      }
      // Another sink took the batch: this one's share is its loss, counted as overflow, so that
      // its outage never holds up the others (see refusal()).
      runtime.status.dropped.overflow += batch.length;
      this.#options.observer?.overflowed?.(runtime.sink, batch.length);
    }
    return { ok: true, accepted: events.length };
  }

  #routesFor(target: IngestTarget): RouteIndex<Runtime> {
    if (target.kind === 'all') {
      this.#index ??= new RouteIndex([...this.#runtimes.values()]);
      return this.#index;
    }
    const runtime = this.#runtimes.get(target.key);
    return new RouteIndex(runtime === undefined ? [] : [runtime]);
  }

  /**
   * Stops routing and lets every sink's delivery drain what is queued until `deadline` aborts;
   * then the writes in flight are aborted (neither committed nor counted as failures) and the
   * loops end. Reports what stays queued, for the next start. Called again, returns the same.
   */
  drain(deadline: AbortSignal): Promise<DrainReport> {
    this.#draining ??= this.#drain(deadline);
    return this.#draining;
  }

  async #drain(deadline: AbortSignal): Promise<DrainReport> {
    const reached = () => this.#deadline.abort();
    if (deadline.aborted) reached();
    else deadline.addEventListener('abort', reached, { once: true });
    // A change being applied finishes first (unless it is still stuck at the deadline); deleted
    // sinks drain too, up to the same deadline.
    await settlesWithin(this.#applying, this.#deadline.signal);
    await Promise.all(this.#removing.values());
    const runtimes = [...this.#runtimes.values()];
    for (const r of runtimes) r.delivery.stop.abort();
    const all = Promise.all(runtimes.map((r) => r.delivery.loops));
    const drained = runtimes.length === 0 || (await settlesWithin(all, this.#deadline.signal));
    deadline.removeEventListener('abort', reached);
    if (!drained) for (const r of runtimes) r.delivery.abort.abort();
    await all;
    const undelivered = runtimes.flatMap((r) => {
      const destinations: Partial<Record<OutputKind, number>> = {};
      for (const output of r.delivery.outputs) {
        const pending = r.queue.consumer(output.kind).pending;
        if (pending > 0) destinations[output.kind] = pending;
      }
      return Object.keys(destinations).length === 0 ? [] : [{ sink: r.sink.key, destinations }];
    });
    return { cutOff: !drained, undelivered };
  }

  /**
   * Stops every sink ({@link drain} until `deadline`, at once by default), then closes their
   * outputs and queues; durable queues keep what was not delivered for the next start.
   */
  async close(deadline: AbortSignal = AbortSignal.abort()): Promise<DrainReport> {
    const report = await this.drain(deadline);
    this.#released ??= this.#release();
    await this.#released;
    return report;
  }

  async #release(): Promise<void> {
    const runtimes = [...this.#runtimes.values()];
    this.#runtimes.clear();
    this.#index = null;
    // Kept for status(): the operator publishes the counters as they are once drained.
    for (const r of runtimes) this.#closed.set(r.sink.key, r.status);
    await Promise.all(
      runtimes.map(async (r) => {
        // Ended by the drain, unless a change stuck past its deadline started the sink after it.
        r.delivery.abort.abort();
        await r.delivery.loops;
        await Promise.all(r.delivery.outputs.map((o) => o.close()));
        await r.queue.close();
      }),
    );
  }
}

/**
 * The answer that sends a batch back to its sender (429 when full, else an error for a 500, both
 * retried), or null to accept it. On a sink's own endpoint any failure goes back. On the fan-in
 * endpoint only when no sink took its share: a retry then costs nobody anything, while sending it
 * back after another sink took its share would make one stuck sink hold up the apiserver's
 * buffer, and so every other sink's events.
 */
/**
 * The points a sink stores in place of its events, when its one output writes line protocol
 * (ADR 0027): made now, so that the log holds what delivery sends, and no event is decoded back
 * from the log to be encoded. An event without a point (one the output cannot encode, or whose
 * line would hold a line break) keeps its encoding, as for other sinks. Undefined for any other
 * sink: its events are stored as events.
 */
function pointsOf(
  runtime: Runtime,
  events: readonly AuditEvent[],
  shared: SharedEncodings | undefined,
): SharedEncodings | undefined {
  const outputs = runtime.delivery.outputs;
  const output = outputs.length === 1 ? outputs[0] : undefined;
  if (output?.pointOf === undefined) return undefined;
  const points: SharedEncodings = new Map();
  for (const event of events) {
    const point = output.pointOf(event);
    const encoded = point === undefined ? shared?.get(event) : encodeEvent(point);
    if (encoded !== undefined) points.set(event, encoded);
  }
  return points;
}

function refusal(
  appended: readonly PromiseSettledResult<void>[],
  target: IngestTarget,
): IngestResult | null {
  const failures = appended.flatMap((r) =>
    r.status === 'rejected'
      ? [r.reason instanceof Error ? r.reason : new Error(String(r.reason))]
      : [],
  );
  if (failures.length === 0) return null;
  if (target.kind === 'all' && failures.length < appended.length) return null;
  const other = failures.find((f) => !(f instanceof QueueFullError));
  if (other !== undefined) throw other;
  const retryAfterSeconds = Math.max(
    ...failures.map((f) => (f as QueueFullError).retryAfterSeconds),
  );
  return { ok: false, reason: 'full', retryAfterSeconds };
}

// What decides whether outputs must be rebuilt: the destinations, not the policy.
function destinationFingerprint(sink: Sink): string {
  return JSON.stringify(destinationsOf(sink).map((d) => [d.name, d.destination]));
}

/** Whether `work` settles before `signal` aborts and, when given, before `ms` pass. */
function settlesWithin(work: Promise<unknown>, signal: AbortSignal, ms?: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve(false);
      return;
    }
    const timer = ms === undefined ? undefined : setTimeout(() => done(false), ms).unref();
    function done(settled: boolean) {
      clearTimeout(timer);
      signal.removeEventListener('abort', cut);
      resolve(settled);
    }
    function cut() {
      done(false);
    }
    signal.addEventListener('abort', cut, { once: true });
    work.then(
      () => done(true),
      () => done(true),
    );
  });
}
