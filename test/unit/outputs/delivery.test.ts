// The delivery loop against an in-test queue and output: ordering, commit only after a write,
// backoff and Retry-After, permanent failures, drain and abort. Starts no process.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { type QueuedEvent, StoredPoint } from '../../../src/audit/stored-point.ts';
import {
  DEFAULT_BACKOFF,
  FLUSH_PHASES,
  flushPhaseOf,
  type DeliveryObserver,
  type DeliveryOptions,
  retryDelay,
  runDelivery,
  untilFlush,
  writeIsolating,
} from '../../../src/outputs/delivery.ts';
import {
  errorForStatus,
  eventsOnly,
  type Output,
  OutputError,
  type PreparedWrite,
  type PreparingOutput,
} from '../../../src/outputs/types.ts';

interface Batch {
  readonly events: readonly QueuedEvent[];
  readonly upTo: number;
}

/** A queue of numbered events; `next` never waits (tests drive time themselves). */
class ListQueue {
  readonly events: QueuedEvent[];
  committed = 0;
  constructor(count: number) {
    this.events = Array.from({ length: count }, (_, i) => ({
      level: 'Metadata',
      auditID: `e${i}`,
      stage: 'ResponseComplete',
      requestURI: '/version',
      verb: 'get',
      user: {},
      stageTimestamp: '2026-11-22T04:08:57.440160Z',
    }));
  }
  /** Every commit, in the order made. */
  readonly commits: number[] = [];
  next(max: number, _wait = 0, _signal?: AbortSignal, after?: Batch): Promise<Batch | null> {
    const from = Math.max(this.committed, after?.upTo ?? 0);
    if (from >= this.events.length) return Promise.resolve(null);
    const upTo = Math.min(this.events.length, from + max);
    return Promise.resolve({ events: this.events.slice(from, upTo), upTo });
  }
  commit(batch: Batch): Promise<void> {
    this.committed = batch.upTo;
    this.commits.push(batch.upTo);
    return Promise.resolve();
  }
  get pending(): number {
    return this.events.length - this.committed;
  }
}

/** An output that fails according to a script, then succeeds. */
class ScriptedOutput implements Output {
  readonly kind = 'influxdb' as const;
  readonly target = 'test';
  readonly written: string[] = [];
  readonly #failures: OutputError[];
  constructor(failures: OutputError[] = []) {
    this.#failures = failures;
  }
  write(events: readonly QueuedEvent[]): Promise<void> {
    const failure = this.#failures.shift();
    if (failure !== undefined) return Promise.reject(failure);
    this.written.push(...events.map((e) => e.auditID));
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * A destination that refuses, as a whole and without saying which, any write holding one of the
 * `bad` events (InfluxDB's 400 for a line it cannot parse); counts its requests.
 */
class RefusingOutput implements Output {
  readonly kind = 'influxdb' as const;
  readonly target = 'refusing';
  readonly written: string[] = [];
  requests = 0;
  readonly #bad: ReadonlySet<string>;
  readonly #code: 'REJECTED' | 'UNENCODABLE';
  constructor(bad: readonly string[], code: 'REJECTED' | 'UNENCODABLE' = 'REJECTED') {
    this.#bad = new Set(bad);
    this.#code = code;
  }
  write(events: readonly QueuedEvent[]): Promise<void> {
    this.requests++;
    const refused = events.find((e) => this.#bad.has(e.auditID));
    if (refused !== undefined) {
      return Promise.reject(
        new OutputError(this.#code, `400: cannot take ${refused.auditID}`, { retryable: false }),
      );
    }
    this.written.push(...events.map((e) => e.auditID));
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * A destination that answers only when the test says so (a slow one), or never: each write waits
 * for {@link HeldOutput.answer}, or for its abort signal when the output honours it.
 */
class HeldOutput implements Output {
  readonly kind = 'webhook' as const;
  readonly target = 'held';
  readonly writesInFlight: number;
  readonly written: string[] = [];
  readonly signals: (AbortSignal | undefined)[] = [];
  /** The first event of each write waiting for an answer, oldest first. */
  readonly waiting: string[] = [];
  readonly #waiting: { answer: () => void; fail: () => void }[] = [];
  readonly #honoursAbort: boolean;
  constructor(honoursAbort = true, writesInFlight = 1) {
    this.#honoursAbort = honoursAbort;
    this.writesInFlight = writesInFlight;
  }
  write(events: readonly QueuedEvent[], signal?: AbortSignal): Promise<void> {
    this.signals.push(signal);
    return new Promise((resolve, reject) => {
      this.waiting.push(events[0]?.auditID ?? '');
      this.#waiting.push({
        answer: () => {
          this.written.push(...events.map((e) => e.auditID));
          resolve();
        },
        fail: () => reject(new OutputError('UNREACHABLE', 'connection reset', { retryable: true })),
      });
      if (!this.#honoursAbort) return;
      signal?.addEventListener(
        'abort',
        () => reject(new OutputError('UNREACHABLE', 'request aborted', { retryable: true })),
        { once: true },
      );
    });
  }
  /** Writes waiting for an answer. */
  get inFlight(): number {
    return this.#waiting.length;
  }
  /** The destination answers a write waiting, the oldest by default. */
  answer(index = 0): void {
    this.waiting.splice(index, 1);
    this.#waiting.splice(index, 1)[0]?.answer();
  }
  /** A write waiting fails, the oldest by default. */
  fail(index = 0): void {
    this.waiting.splice(index, 1);
    this.#waiting.splice(index, 1)[0]?.fail();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Lets the loop run until `condition` holds (promise callbacks only; no timers). */
async function settle(condition: () => boolean): Promise<void> {
  for (let turn = 0; !condition(); turn++) {
    if (turn > 1_000) throw new Error('condition not met');
    await Promise.resolve();
  }
}

function recorder() {
  const log: string[] = [];
  const observer: DeliveryObserver = {
    delivered: (count) => log.push(`delivered ${count}`),
    failed: (error, count, attempt) => log.push(`failed ${error.code} ${count} #${attempt}`),
    refused: (refusals) => {
      log.push(`refused ${refusals.map((r) => `${r.event.auditID} ${r.error.code}`).join(', ')}`);
      return Promise.resolve();
    },
  };
  return { log, observer };
}

function run(
  queue: ListQueue,
  output: Output,
  observer: DeliveryObserver,
  extra: Partial<DeliveryOptions> = {},
) {
  const delays: number[] = [];
  const stop = new AbortController();
  stop.abort(); // drain what is queued, then return
  const options: DeliveryOptions = {
    batchSize: 3,
    idleWaitMs: 10,
    backoff: DEFAULT_BACKOFF,
    random: () => 0.5,
    sleep: (ms) => {
      delays.push(ms);
      return Promise.resolve();
    },
    ...extra,
  };
  return {
    delays,
    done: runDelivery(queue, output, observer, options, {
      stop: stop.signal,
      abort: new AbortController().signal,
    }),
  };
}

describe('delivery loop', () => {
  it('writes every queued event in order, in batches, and commits each after its write', async () => {
    const queue = new ListQueue(7);
    const output = new ScriptedOutput();
    const { log, observer } = recorder();
    await run(queue, output, observer).done;
    expect(output.written).toEqual(['e0', 'e1', 'e2', 'e3', 'e4', 'e5', 'e6']);
    expect(queue.committed).toBe(7);
    expect(log).toEqual(['delivered 3', 'delivered 3', 'delivered 1']);
  });

  /**
   * Runs the loop over batches of 10 with a flush interval of 250 ms until `written` (called after
   * each write) returns true; `sleep` stands in for every wait.
   */
  function lingering(
    source: Parameters<typeof runDelivery<Batch>>[0],
    output: ScriptedOutput,
    options: {
      observer?: DeliveryObserver;
      written: () => boolean;
      sleep: (ms: number) => Promise<void>;
      /** The loop's clock (0 when absent: every wait is the whole interval). */
      now?: () => number;
      flushPhase?: number;
    },
  ): Promise<void> {
    const stop = new AbortController();
    return runDelivery(
      source,
      {
        kind: output.kind,
        target: output.target,
        write: async (events) => {
          await output.write(events);
          if (options.written()) stop.abort();
        },
        close: () => output.close(),
      },
      options.observer ?? recorder().observer,
      {
        batchSize: 10,
        flushIntervalMs: 250,
        ...(options.flushPhase === undefined ? {} : { flushPhase: options.flushPhase }),
        idleWaitMs: 10,
        backoff: DEFAULT_BACKOFF,
        sleep: options.sleep,
        now: options.now ?? (() => 0),
      },
      { stop: stop.signal, abort: new AbortController().signal },
    );
  }

  it('lets a batch that is not full wait up to the flush interval, and writes what came meanwhile with it', async () => {
    const queue = new ListQueue(5);
    // One event is there at first; the other four arrive while the loop waits.
    let visible = 1;
    const growing = {
      next: (max: number) =>
        queue
          .next(Math.min(max, visible - queue.committed))
          .then((b) => (b !== null && b.events.length > 0 ? b : null)),
      commit: (batch: Batch) => queue.commit(batch),
    };
    const output = new ScriptedOutput();
    const { log, observer } = recorder();
    const waits: number[] = [];
    await lingering(growing, output, {
      observer,
      written: () => true,
      sleep: (ms) => {
        waits.push(ms);
        visible = 5;
        return Promise.resolve();
      },
    });
    expect(waits).toEqual([250]);
    expect(log).toEqual(['delivered 5']);
    expect(output.written).toEqual(['e0', 'e1', 'e2', 'e3', 'e4']);
  });

  it('waits for the next tick of the flush interval, at the loop’s phase, so that sinks write together', async () => {
    const waits: number[] = [];
    for (const [clock, flushPhase] of [
      [1_100, undefined],
      [1_100, 0.5],
      [1_000, 0],
    ] as const) {
      const queue = new ListQueue(2);
      await lingering(queue, new ScriptedOutput(), {
        written: () => true,
        sleep: (ms) => {
          waits.push(ms);
          return Promise.resolve();
        },
        now: () => clock,
        ...(flushPhase === undefined ? {} : { flushPhase }),
      });
    }
    // Ticks every 250 ms from 0: 1,250 is next. From 125 (half the interval): 1,125. At a tick
    // itself, the whole interval.
    expect(waits).toEqual([150, 25, 250]);
  });

  it('reads events that already wait, fewer than a batch, once: after the flush interval', async () => {
    const queue = new ListQueue(3);
    const steps: string[] = [];
    const counted = {
      next: (max: number, wait?: number, signal?: AbortSignal, after?: Batch) => {
        steps.push(`next ${String(max)}`);
        return queue.next(max, wait, signal, after);
      },
      commit: (batch: Batch) => queue.commit(batch),
      get pending() {
        return queue.pending;
      },
    };
    const output = new ScriptedOutput();
    await lingering(counted, output, {
      written: () => true,
      sleep: (ms) => {
        steps.push(`sleep ${String(ms)}`);
        return Promise.resolve();
      },
    });
    expect(steps.slice(0, 2)).toEqual(['sleep 250', 'next 10']);
    expect(output.written).toEqual(['e0', 'e1', 'e2']);
  });

  it('does not hold the events it read through the flush interval, nor a written batch through the next', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const queue = new ListQueue(6);
    // Two events at first and two more during the first wait; two more once those four are written.
    let visible = 2;
    const reads: WeakRef<object>[] = [];
    const source = {
      next: async (max: number) => {
        const batch = await queue.next(Math.min(max, visible - queue.committed));
        if (batch === null || batch.events.length === 0) return null;
        reads.push(new WeakRef(batch.events));
        return batch;
      },
      commit: (batch: Batch) => queue.commit(batch),
    };
    const output = new ScriptedOutput();
    const heldDuringWaits: boolean[][] = [];
    await lingering(source, output, {
      written: () => {
        if (visible !== 4) return true;
        visible = 6;
        return false;
      },
      sleep: async () => {
        // A macrotask first: a WeakRef keeps its target until the current job ends.
        await new Promise((resolve) => setImmediate(resolve));
        gc();
        heldDuringWaits.push(reads.map((ref) => ref.deref() !== undefined));
        visible = Math.max(visible, 4);
      },
    });
    expect(output.written).toEqual(['e0', 'e1', 'e2', 'e3', 'e4', 'e5']);
    // Read before the first wait: e0-e1. Before the second: e0-e3 (written), then e4-e5.
    expect(heldDuringWaits).toEqual([[false], [false, false, false]]);
  });

  it('writes a full batch, and anything while draining, without waiting', async () => {
    const queue = new ListQueue(7);
    const output = new ScriptedOutput();
    const { log, observer } = recorder();
    const { delays, done } = run(queue, output, observer, { flushIntervalMs: 250 });
    await done;
    expect(delays).toEqual([]);
    expect(log).toEqual(['delivered 3', 'delivered 3', 'delivered 1']);
  });

  it('keeps a batch queued while the output fails, and retries it with growing delays', async () => {
    const queue = new ListQueue(2);
    const down = () => new OutputError('UNREACHABLE', 'connection refused', { retryable: true });
    const output = new ScriptedOutput([down(), down(), down()]);
    const { log, observer } = recorder();
    const { delays, done } = run(queue, output, observer);
    await done;
    expect(output.written).toEqual(['e0', 'e1']);
    expect(log).toEqual([
      'failed UNREACHABLE 2 #1',
      'failed UNREACHABLE 2 #2',
      'failed UNREACHABLE 2 #3',
      'delivered 2',
    ]);
    expect(delays).toEqual([500, 1000, 2000]);
  });

  it('waits at least as long as the server asks with Retry-After', async () => {
    const queue = new ListQueue(1);
    const throttled = new OutputError('THROTTLED', '429', { retryable: true, retryAfterMs: 7_000 });
    const { delays, done } = run(queue, new ScriptedOutput([throttled]), recorder().observer);
    await done;
    expect(delays).toEqual([7_000]);
  });

  it('re-checks a permanent failure slowly instead of retrying hot', async () => {
    const queue = new ListQueue(1);
    const unauthorized = new OutputError('UNAUTHORIZED', 'bad token', { retryable: false });
    const output = new ScriptedOutput([unauthorized, unauthorized]);
    const delays: number[] = [];
    const stop = new AbortController();
    await runDelivery(
      queue,
      output,
      // Not draining: the loop runs until the batch got through.
      { ...recorder().observer, delivered: () => stop.abort() },
      {
        batchSize: 3,
        idleWaitMs: 10,
        backoff: DEFAULT_BACKOFF,
        sleep: (ms) => {
          delays.push(ms);
          return Promise.resolve();
        },
      },
      { stop: stop.signal, abort: new AbortController().signal },
    );
    expect(delays).toEqual([60_000, 60_000]);
    expect(output.written).toEqual(['e0']);
  });

  it('ends a drain at a permanent failure instead of waiting a minute for its re-check', async () => {
    const queue = new ListQueue(2);
    const unauthorized = new OutputError('UNAUTHORIZED', 'bad token', { retryable: false });
    const { log, observer } = recorder();
    const { delays, done } = run(queue, new ScriptedOutput([unauthorized]), observer);
    await done;
    expect(delays).toEqual([]);
    expect(log).toEqual(['failed UNAUTHORIZED 2 #1']);
    expect(queue.committed).toBe(0);
  });

  it('sets aside only the event a destination refuses, writes the rest of its batch, and goes on', async () => {
    const queue = new ListQueue(7);
    const output = new RefusingOutput(['e1']);
    const { log, observer } = recorder();
    const { delays, done } = run(queue, output, observer);
    await done;
    expect(delays).toEqual([]);
    expect(output.written.sort()).toEqual(['e0', 'e2', 'e3', 'e4', 'e5', 'e6']);
    expect(queue.committed).toBe(7);
    expect(log).toEqual([
      'failed REJECTED 1 #1',
      'refused e1 REJECTED',
      'delivered 2',
      'delivered 3',
      'delivered 1',
    ]);
  });

  it('sets aside an event its output cannot encode, as unencodable', async () => {
    const queue = new ListQueue(3);
    const output = new RefusingOutput(['e2'], 'UNENCODABLE');
    const { log, observer } = recorder();
    await run(queue, output, observer).done;
    expect(output.written.sort()).toEqual(['e0', 'e1']);
    expect(log).toEqual(['failed UNENCODABLE 1 #1', 'refused e2 UNENCODABLE', 'delivered 2']);
  });

  it('sets aside, as unencodable, the points an output that sends events meets (queued before it was added to the sink)', async () => {
    const queue = new ListQueue(6);
    // Events 2 and 3 were queued as points for the sink's InfluxDB destination.
    queue.events[2] = new StoredPoint('audit,verb=get audit_id="e2" 1');
    queue.events[3] = new StoredPoint('audit,verb=get audit_id="e3" 2');
    const sent: string[] = [];
    const output: Output = {
      kind: 'webhook',
      target: 'https://receiver.example/audit',
      write: (events) => {
        sent.push(...eventsOnly(events, 'https://receiver.example/audit').map((e) => e.auditID));
        return Promise.resolve();
      },
      close: () => Promise.resolve(),
    };
    const { log, observer } = recorder();
    await run(queue, output, observer).done;
    expect(sent.sort()).toEqual(['e0', 'e1', 'e4', 'e5']);
    expect(queue.committed).toBe(6);
    expect(log).toContain('refused e2 UNENCODABLE');
    expect(log).toContain('refused e3 UNENCODABLE');
  });

  it('keeps the refused events before it commits their batch', async () => {
    const queue = new ListQueue(3);
    const output = new RefusingOutput(['e0']);
    const order: string[] = [];
    const commit = queue.commit.bind(queue);
    queue.commit = (batch) => {
      order.push(`commit ${batch.upTo}`);
      return commit(batch);
    };
    const { observer } = recorder();
    await run(queue, output, {
      ...observer,
      refused: async (refusals) => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        order.push(`kept ${refusals.length}`);
      },
    }).done;
    expect(order).toEqual(['kept 1', 'commit 3']);
  });

  it('retries the whole batch when a retryable failure comes while isolating refused events', async () => {
    const queue = new ListQueue(3);
    const refusing = new RefusingOutput(['e1']);
    let calls = 0;
    const output: Output = {
      kind: 'influxdb',
      target: 'flaky',
      write: (events) => {
        calls++;
        // The second request (the first half) meets a network failure once.
        if (calls === 2) {
          return Promise.reject(new OutputError('UNREACHABLE', 'reset', { retryable: true }));
        }
        return refusing.write(events);
      },
      close: () => Promise.resolve(),
    };
    const { log, observer } = recorder();
    const { delays, done } = run(queue, output, observer);
    await done;
    expect(delays).toHaveLength(1);
    expect(refusing.written.sort()).toEqual(['e0', 'e2']);
    expect(log).toEqual([
      'failed UNREACHABLE 3 #1',
      'failed REJECTED 1 #2',
      'refused e1 REJECTED',
      'delivered 2',
    ]);
    expect(queue.committed).toBe(3);
  });

  it('survives a queue that fails to commit, and delivers the batch again', async () => {
    const queue = new ListQueue(2);
    const commit = queue.commit.bind(queue);
    let failures = 1;
    queue.commit = (batch) =>
      failures-- > 0 ? Promise.reject(new Error('ENOSPC')) : commit(batch);
    const output = new ScriptedOutput();
    const { log, observer } = recorder();
    await run(queue, output, observer).done;
    expect(queue.committed).toBe(2);
    expect(output.written).toEqual(['e0', 'e1', 'e0', 'e1']);
    expect(log).toEqual(['delivered 2', 'failed IO_ERROR 0 #1', 'delivered 2']);
  });

  it('treats an unexpected exception as a retryable I/O error', async () => {
    const queue = new ListQueue(1);
    const output = new ScriptedOutput();
    let thrown = false;
    const flaky: Output = {
      ...output,
      kind: 'file',
      target: 'flaky',
      write: (events) => {
        if (!thrown) {
          thrown = true;
          return Promise.reject(new Error('EIO'));
        }
        return output.write(events);
      },
      close: () => Promise.resolve(),
    };
    const { log, observer } = recorder();
    await run(queue, flaky, observer).done;
    expect(log).toEqual(['failed IO_ERROR 1 #1', 'delivered 1']);
  });

  it('returns on abort during a retry without committing the batch', async () => {
    const queue = new ListQueue(2);
    const abort = new AbortController();
    const output = new ScriptedOutput([
      new OutputError('UNREACHABLE', 'down', { retryable: true }),
    ]);
    const options: DeliveryOptions = {
      batchSize: 10,
      idleWaitMs: 10,
      backoff: DEFAULT_BACKOFF,
      sleep: () => {
        abort.abort();
        return Promise.resolve();
      },
    };
    await runDelivery(queue, output, recorder().observer, options, {
      stop: new AbortController().signal,
      abort: abort.signal,
    });
    expect(queue.committed).toBe(0);
    expect(output.written).toEqual([]);
  });
});

describe('delivery loop at the end of the shutdown grace period', () => {
  /** A draining loop over `queue`; `deadline` is the end of the drain. */
  function draining(queue: ListQueue, output: Output, observer: DeliveryObserver) {
    const stop = new AbortController();
    stop.abort();
    const deadline = new AbortController();
    const options: DeliveryOptions = {
      batchSize: 3,
      idleWaitMs: 10,
      backoff: DEFAULT_BACKOFF,
      sleep: () => Promise.resolve(),
    };
    const done = runDelivery(queue, output, observer, options, {
      stop: stop.signal,
      abort: deadline.signal,
    });
    return { deadline, done };
  }

  it('aborts the write in flight at the deadline: nothing committed, nothing counted as failed', async () => {
    const queue = new ListQueue(5);
    const output = new HeldOutput();
    const { log, observer } = recorder();
    const { deadline, done } = draining(queue, output, observer);
    await settle(() => output.inFlight === 1);
    expect(output.signals[0]?.aborted).toBe(false);
    deadline.abort();
    await done;
    // The output saw the deadline as its write's abort signal, and rejected.
    expect(output.signals[0]?.aborted).toBe(true);
    expect(output.written).toEqual([]);
    expect(queue.committed).toBe(0);
    expect(log).toEqual([]);
  });

  it('keeps the batches already delivered committed, and only the one in flight queued', async () => {
    const queue = new ListQueue(7);
    const output = new HeldOutput();
    const { log, observer } = recorder();
    const { deadline, done } = draining(queue, output, observer);
    await settle(() => output.inFlight === 1);
    output.answer();
    await settle(() => output.signals.length === 2);
    deadline.abort();
    await done;
    expect(output.written).toEqual(['e0', 'e1', 'e2']);
    expect(queue.committed).toBe(3);
    expect(log).toEqual(['delivered 3']);
  });

  it('stops waiting at the deadline for a write that cannot be cancelled', async () => {
    const queue = new ListQueue(2);
    const output = new HeldOutput(false);
    const { log, observer } = recorder();
    const { deadline, done } = draining(queue, output, observer);
    await settle(() => output.inFlight === 1);
    deadline.abort();
    await done;
    expect(queue.committed).toBe(0);
    // It finishes later, unobserved: the loop is gone, and the batch stays queued.
    output.answer();
    await settle(() => output.written.length === 2);
    expect(queue.committed).toBe(0);
    expect(log).toEqual([]);
  });

  it('ends a retry wait at the deadline without a further attempt', async () => {
    const queue = new ListQueue(2);
    const deadline = new AbortController();
    const output = new ScriptedOutput([
      new OutputError('SERVER_ERROR', '503', { retryable: true, retryAfterMs: 30_000 }),
    ]);
    const stop = new AbortController();
    stop.abort();
    const waits: { ms: number; signal: AbortSignal }[] = [];
    const { log, observer } = recorder();
    const done = runDelivery(
      queue,
      output,
      observer,
      {
        batchSize: 3,
        idleWaitMs: 10,
        backoff: DEFAULT_BACKOFF,
        random: () => 0.5,
        // A wait that ends only by its signal: the injected clock never reaches 30 s.
        sleep: (ms, signal) =>
          new Promise((resolve) => {
            waits.push({ ms, signal });
            signal.addEventListener('abort', () => resolve(), { once: true });
          }),
      },
      { stop: stop.signal, abort: deadline.signal },
    );
    await settle(() => waits.length === 1);
    deadline.abort();
    await done;
    expect(waits.map((w) => w.ms)).toEqual([30_000]);
    expect(output.written).toEqual([]);
    expect(queue.committed).toBe(0);
    // The 503 before the deadline was a real failure; the deadline added none.
    expect(log).toEqual(['failed SERVER_ERROR 2 #1']);
  });

  it('ends an idle wait as soon as the drain starts, after one more look for events', async () => {
    const calls: { wait: number; aborted: boolean }[] = [];
    const idle = {
      // Nothing queued: waits as long as it may, or until its signal aborts.
      next: (_max: number, wait: number, signal?: AbortSignal): Promise<Batch | null> => {
        calls.push({ wait, aborted: signal?.aborted ?? false });
        if (wait === 0) return Promise.resolve(null);
        return new Promise((resolve) =>
          signal?.addEventListener('abort', () => resolve(null), { once: true }),
        );
      },
      commit: () => Promise.resolve(),
    };
    const stop = new AbortController();
    const done = runDelivery(
      idle,
      new ScriptedOutput(),
      recorder().observer,
      { batchSize: 3, idleWaitMs: 60_000, backoff: DEFAULT_BACKOFF },
      { stop: stop.signal, abort: new AbortController().signal },
    );
    await settle(() => calls.length === 1);
    stop.abort();
    await done;
    expect(calls).toEqual([
      { wait: 60_000, aborted: false },
      { wait: 0, aborted: false },
    ]);
  });

  it('drains a slow destination completely when it answers before the deadline', async () => {
    const queue = new ListQueue(7);
    const output = new HeldOutput();
    const { log, observer } = recorder();
    const { done } = draining(queue, output, observer);
    let finished = false;
    void done.then(() => (finished = true));
    while (!finished) {
      await settle(() => output.inFlight === 1 || finished);
      output.answer();
    }
    expect(output.written).toEqual(['e0', 'e1', 'e2', 'e3', 'e4', 'e5', 'e6']);
    expect(queue.committed).toBe(7);
    expect(log).toEqual(['delivered 3', 'delivered 3', 'delivered 1']);
    expect(output.signals.every((signal) => signal?.aborted === false)).toBe(true);
  });
});

describe('delivery loop with two writes in flight', () => {
  /** A draining loop whose backoff waits take no time. */
  function pipelined(events: number) {
    const queue = new ListQueue(events);
    const output = new HeldOutput(true, 2);
    const { log, observer } = recorder();
    const stop = new AbortController();
    stop.abort();
    const deadline = new AbortController();
    const done = runDelivery(
      queue,
      output,
      observer,
      { batchSize: 3, idleWaitMs: 10, backoff: DEFAULT_BACKOFF, sleep: () => Promise.resolve() },
      { stop: stop.signal, abort: deadline.signal },
    );
    return { queue, output, log, deadline, done };
  }

  it('writes the next full batch while the first is in flight, and commits them in order', async () => {
    const { queue, output, log, done } = pipelined(7);
    await settle(() => output.inFlight === 2);
    expect(output.waiting).toEqual(['e0', 'e3']);
    // The later batch is stored first: nothing is committed past the one still in flight.
    output.answer(1);
    await settle(() => output.written.length === 3);
    expect(queue.commits).toEqual([]);
    output.answer();
    // The last event is not a full batch: it waits for no write, as none is left in flight.
    await settle(() => output.waiting[0] === 'e6');
    expect(queue.commits).toEqual([3, 6]);
    expect(output.inFlight).toBe(1);
    output.answer();
    await done;
    expect(queue.commits).toEqual([3, 6, 7]);
    expect(log).toEqual(['delivered 3', 'delivered 3', 'delivered 1']);
  });

  it('keeps a batch that is not full until the write ahead of it is answered', async () => {
    const { queue, output, done } = pipelined(5);
    await settle(() => output.inFlight === 1);
    for (let turn = 0; turn < 50; turn++) await Promise.resolve();
    expect(output.waiting).toEqual(['e0']);
    output.answer();
    await settle(() => output.waiting[0] === 'e3');
    output.answer();
    await done;
    expect(queue.commits).toEqual([3, 5]);
  });

  it('retries the first batch alone when it fails while the next is in flight, then writes the next again', async () => {
    const { queue, output, log, done } = pipelined(6);
    await settle(() => output.inFlight === 2);
    output.fail();
    // The write behind it is let finish, not committed, and written again after the retry.
    await settle(() => output.signals.length === 2 && output.waiting.length === 1);
    output.answer();
    await settle(() => output.signals.length === 3);
    expect(output.waiting).toEqual(['e0']);
    expect(queue.commits).toEqual([]);
    output.answer();
    await settle(() => output.signals.length === 4);
    expect(output.waiting).toEqual(['e3']);
    output.answer();
    await done;
    expect(queue.commits).toEqual([3, 6]);
    expect(log).toEqual(['failed UNREACHABLE 3 #1', 'delivered 3', 'delivered 3']);
  });

  it('commits the first batch when only the second fails, and retries the second', async () => {
    const { queue, output, log, done } = pipelined(6);
    await settle(() => output.inFlight === 2);
    output.fail(1);
    output.answer();
    await settle(() => output.signals.length === 3);
    expect(queue.commits).toEqual([3]);
    expect(output.waiting).toEqual(['e3']);
    output.answer();
    await done;
    expect(queue.commits).toEqual([3, 6]);
    expect(log).toEqual(['delivered 3', 'failed UNREACHABLE 3 #1', 'delivered 3']);
  });

  it('aborts both writes at the deadline and commits neither', async () => {
    const { queue, output, log, deadline, done } = pipelined(6);
    await settle(() => output.inFlight === 2);
    deadline.abort();
    await done;
    expect(output.signals.map((s) => s?.aborted)).toEqual([true, true]);
    expect(queue.commits).toEqual([]);
    expect(log).toEqual([]);
  });

  it('writes one batch at a time to an output that does not say it takes more', async () => {
    const queue = new ListQueue(9);
    const output = new HeldOutput();
    const { observer } = recorder();
    const stop = new AbortController();
    stop.abort();
    const done = runDelivery(
      queue,
      output,
      observer,
      { batchSize: 3, idleWaitMs: 10, backoff: DEFAULT_BACKOFF },
      { stop: stop.signal, abort: new AbortController().signal },
    );
    for (const first of ['e0', 'e3', 'e6']) {
      await settle(() => output.waiting[0] === first);
      for (let turn = 0; turn < 50; turn++) await Promise.resolve();
      expect(output.inFlight).toBe(1);
      output.answer();
    }
    await done;
    expect(queue.commits).toEqual([3, 6, 9]);
  });
});

describe('delivery loop with an output that encodes before it sends', () => {
  /** A {@link ListQueue} whose batches let their events go, as the sink queue's do. */
  class ReleasingQueue extends ListQueue {
    /** Every read: its first event and how many it asked for. */
    readonly reads: string[] = [];
    override async next(max: number, wait = 0, signal?: AbortSignal, after?: Batch) {
      const batch = await super.next(max, wait, signal, after);
      if (batch === null) return null;
      this.reads.push(`${batch.events[0]?.auditID ?? ''}+${String(max)}`);
      let events = batch.events;
      return {
        upTo: batch.upTo,
        get events() {
          return events;
        },
        release: () => {
          events = [];
        },
      };
    }
  }

  /**
   * Encodes each event as its auditID. Sending fails as scripted, then refuses (as a whole, like
   * InfluxDB's 400) any encoding holding one of the `bad` events; `unencodable` ones cannot be
   * encoded at all. Records what the loop still held of each batch when it was sent.
   */
  class EncodingOutput implements PreparingOutput {
    readonly kind = 'influxdb' as const;
    readonly target = 'encoding';
    readonly writesInFlight: number;
    readonly written: string[] = [];
    readonly prepared: string[][] = [];
    sends = 0;
    readonly #failures: OutputError[];
    readonly #bad: ReadonlySet<string>;
    readonly #unencodable: ReadonlySet<string>;
    readonly #batches: (() => readonly QueuedEvent[])[] = [];
    /** The events the loop's batch still held at each send. */
    readonly heldAtSend: number[] = [];
    constructor(
      script: { failures?: OutputError[]; bad?: string[]; unencodable?: string[] },
      writesInFlight = 1,
    ) {
      this.#failures = script.failures ?? [];
      this.#bad = new Set(script.bad);
      this.#unencodable = new Set(script.unencodable);
      this.writesInFlight = writesInFlight;
    }
    /** Watches the batches the loop writes, to see what they hold when they are sent. */
    watch(batch: () => readonly QueuedEvent[]): void {
      this.#batches.push(batch);
    }
    async write(events: readonly QueuedEvent[], signal?: AbortSignal): Promise<void> {
      await (await this.prepare(events)).send(signal);
    }
    prepare(events: readonly QueuedEvent[]): Promise<PreparedWrite> {
      const bad = events.find((e) => this.#unencodable.has(e.auditID));
      if (bad !== undefined) {
        const error = new OutputError('UNENCODABLE', `cannot encode ${bad.auditID}`, {
          retryable: false,
        });
        return Promise.reject(error);
      }
      const lines = events.map((e) => e.auditID);
      this.prepared.push(lines);
      return Promise.resolve({ count: lines.length, send: () => this.#send(lines) });
    }
    #send(lines: readonly string[]): Promise<void> {
      this.sends++;
      this.heldAtSend.push(...this.#batches.splice(0).map((events) => events().length));
      const failure = this.#failures.shift();
      if (failure !== undefined) return Promise.reject(failure);
      const refused = lines.find((line) => this.#bad.has(line));
      if (refused !== undefined) {
        return Promise.reject(errorForStatus(400, `unable to parse '${refused}'`));
      }
      this.written.push(...lines);
      return Promise.resolve();
    }
    close(): Promise<void> {
      return Promise.resolve();
    }
  }

  function drain(queue: ReleasingQueue, output: EncodingOutput) {
    const { log, observer } = recorder();
    const stop = new AbortController();
    stop.abort();
    const watched = {
      next: async (max: number, wait?: number, signal?: AbortSignal, after?: Batch) => {
        const batch = await queue.next(max, wait, signal, after);
        if (batch !== null) output.watch(() => batch.events);
        return batch;
      },
      commit: (batch: Batch) => queue.commit(batch),
      get pending() {
        return queue.pending;
      },
    };
    const done = runDelivery(
      watched,
      output,
      observer,
      { batchSize: 3, idleWaitMs: 10, backoff: DEFAULT_BACKOFF, sleep: () => Promise.resolve() },
      { stop: stop.signal, abort: new AbortController().signal },
    );
    return { log, done };
  }

  it('lets a batch’s events go once encoded, before the destination is asked, and still counts and commits them', async () => {
    const queue = new ReleasingQueue(7);
    const output = new EncodingOutput({});
    const { log, done } = drain(queue, output);
    await done;
    expect(output.heldAtSend).toEqual([0, 0, 0]);
    expect(output.written).toEqual(['e0', 'e1', 'e2', 'e3', 'e4', 'e5', 'e6']);
    expect(queue.commits).toEqual([3, 6, 7]);
    expect(log).toEqual(['delivered 3', 'delivered 3', 'delivered 1']);
  });

  it('sends the same encoding again on a retry, without reading or encoding the batch again', async () => {
    const queue = new ReleasingQueue(4);
    const unreachable = new OutputError('UNREACHABLE', 'connection refused', { retryable: true });
    const output = new EncodingOutput({ failures: [unreachable, errorForStatus(503, 'busy')] });
    const { log, done } = drain(queue, output);
    await done;
    expect(output.prepared).toEqual([['e0', 'e1', 'e2'], ['e3']]);
    expect(output.sends).toBe(4);
    expect(queue.reads).toEqual(['e0+3', 'e3+3']);
    expect(output.written).toEqual(['e0', 'e1', 'e2', 'e3']);
    expect(log).toEqual([
      'failed UNREACHABLE 3 #1',
      'failed SERVER_ERROR 3 #2',
      'delivered 3',
      'delivered 1',
    ]);
  });

  it('reads a batch the destination refused again, from its start, to set aside only the refused event', async () => {
    const queue = new ReleasingQueue(7);
    const output = new EncodingOutput({ bad: ['e4'] });
    const { log, done } = drain(queue, output);
    await done;
    expect(queue.reads).toEqual(['e0+3', 'e3+3', 'e3+3', 'e6+3']);
    expect(output.written).toEqual(['e0', 'e1', 'e2', 'e3', 'e5', 'e6']);
    expect(queue.commits).toEqual([3, 6, 7]);
    expect(log).toEqual([
      'delivered 3',
      'failed REJECTED 1 #1',
      'refused e4 REJECTED',
      'delivered 2',
      'delivered 1',
    ]);
  });

  it('reads the second of two writes in flight again from its own start once the first is committed', async () => {
    const queue = new ReleasingQueue(9);
    const output = new EncodingOutput({ bad: ['e5'] }, 2);
    const { log, done } = drain(queue, output);
    await done;
    // The third batch, written while the second was in flight, is read and written again after
    // the second is isolated: writes are idempotent, and only the oldest is ever committed.
    expect(queue.reads).toEqual(['e0+3', 'e3+3', 'e6+3', 'e3+3', 'e6+3']);
    expect(output.written).toEqual([
      'e0',
      'e1',
      'e2',
      'e6',
      'e7',
      'e8',
      'e3',
      'e4',
      'e6',
      'e7',
      'e8',
    ]);
    expect(queue.commits).toEqual([3, 6, 9]);
    expect(log).toContain('refused e5 REJECTED');
  });

  it('sets aside an event it cannot encode from the events still held, without reading them again', async () => {
    const queue = new ReleasingQueue(4);
    const output = new EncodingOutput({ unencodable: ['e1'] });
    const { log, done } = drain(queue, output);
    await done;
    expect(queue.reads).toEqual(['e0+3', 'e3+3']);
    expect(output.written).toEqual(['e0', 'e2', 'e3']);
    expect(log).toEqual([
      'failed UNENCODABLE 1 #1',
      'refused e1 UNENCODABLE',
      'delivered 2',
      'delivered 1',
    ]);
  });
});

describe('flush ticks', () => {
  it('are at most the interval away, whatever the clock reads', () => {
    expect(untilFlush(0, 1_000, 0)).toBe(1_000);
    expect(untilFlush(999.5, 1_000, 0)).toBe(0.5);
    expect(untilFlush(2_300, 1_000, 0)).toBe(700);
    expect(untilFlush(2_300, 1_000, 500)).toBe(200);
    expect(untilFlush(2_300, 1_000, 300)).toBe(1_000);
    // A clock that reads less than the phase (a process that just started).
    expect(untilFlush(100, 1_000, 875)).toBe(775);
  });

  it('fall at one of a few phases per sink, the same for the same sink', () => {
    const phases = new Set<number>();
    for (let i = 0; i < 200; i++) {
      const phase = flushPhaseOf(`audit/tenant-${String(i)}`);
      expect(phase).toBe(flushPhaseOf(`audit/tenant-${String(i)}`));
      expect(phase * FLUSH_PHASES).toBe(Math.floor(phase * FLUSH_PHASES));
      phases.add(phase);
    }
    expect([...phases].sort((a, b) => a - b)).toEqual(
      Array.from({ length: FLUSH_PHASES }, (_, i) => i / FLUSH_PHASES),
    );
  });
});

describe('retry delays', () => {
  const error = (retryable: boolean, retryAfterMs?: number) =>
    new OutputError(
      'SERVER_ERROR',
      'x',
      retryAfterMs === undefined ? { retryable } : { retryable, retryAfterMs },
    );

  it.each([
    [1, 0.5, 500],
    [2, 0.5, 1_000],
    [7, 0.5, 30_000],
    [20, 0.5, 30_000],
    [1, 0, 400],
    [1, 1, 600],
  ])('waits, before attempt %i with random %f, %i ms', (attempt, random, ms) => {
    expect(retryDelay(error(true), attempt, DEFAULT_BACKOFF, () => random)).toBeCloseTo(ms);
  });

  it('never shortens Retry-After with jitter', () => {
    expect(retryDelay(error(true, 1_000), 1, DEFAULT_BACKOFF, () => 1)).toBe(1_000);
  });

  it('uses the permanent delay for errors a retry cannot fix', () => {
    expect(retryDelay(error(false), 1, DEFAULT_BACKOFF, () => 0.5)).toBe(60_000);
  });
});

describe('HTTP status classification', () => {
  it.each([
    [400, 'REJECTED', false],
    [422, 'REJECTED', false],
    [302, 'REFUSED', false],
    [413, 'REFUSED', false],
    [405, 'REFUSED', false],
    [401, 'UNAUTHORIZED', false],
    [404, 'NOT_FOUND', false],
    [408, 'TIMEOUT', true],
    [429, 'THROTTLED', true],
    [503, 'SERVER_ERROR', true],
  ] as const)('classifies %i as %s (retryable: %s)', (status, code, retryable) => {
    expect(errorForStatus(status, 'x')).toMatchObject({ code, retryable });
  });
});

describe('isolating refused events', () => {
  const events = (count: number): QueuedEvent[] => new ListQueue(count).events;
  const never = new AbortController().signal;

  it('finds every refused event of a batch, in order, and writes all the others', async () => {
    const output = new RefusingOutput(['e3', 'e100', 'e101', 'e399']);
    const refusals = await writeIsolating(events(400), output, never);
    expect(refusals.map((r) => r.event.auditID)).toEqual(['e3', 'e100', 'e101', 'e399']);
    expect(new Set(output.written).size).toBe(396);
    expect(output.written).not.toContain('e3');
  });

  it('costs about 2·log2(n) requests for one bad event in 400', async () => {
    const output = new RefusingOutput(['e217']);
    await writeIsolating(events(400), output, never);
    // 1 refused write, then two halves per level down to the single event (9 levels).
    expect(output.requests).toBe(1 + 2 * Math.ceil(Math.log2(400)));
  });

  it('writes once when nothing is refused', async () => {
    const output = new RefusingOutput([]);
    expect(await writeIsolating(events(400), output, never)).toEqual([]);
    expect(output.requests).toBe(1);
  });

  it('passes on every other failure untouched', async () => {
    const unauthorized = new OutputError('UNAUTHORIZED', 'bad token', { retryable: false });
    await expect(writeIsolating(events(4), new ScriptedOutput([unauthorized]), never)).rejects.toBe(
      unauthorized,
    );
  });
});
