// The operator's keyed work queue: repeats collapse, one reconcile per key at a time, bounded
// concurrency across keys, backoff on failure, terminal errors, requeues and shutdown. Timers come
// from a manual clock, so no test sleeps. Starts no process.
import { describe, expect, it } from 'vitest';
import {
  DONE,
  type QueueClock,
  type ReconcileResult,
  TerminalError,
  WorkQueue,
  type WorkQueueOptions,
} from '../../../src/operator/workqueue.ts';

/** A clock whose timers fire only when the test advances time. */
class ManualClock implements QueueClock {
  time = 0;
  #nextId = 0;
  readonly #timers = new Map<number, { readonly at: number; readonly fn: () => void }>();

  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.#nextId;
    this.#timers.set(id, { at: this.time + ms, fn });
    return id;
  }

  now(): number {
    return this.time;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Delays (from now) of the timers still pending, soonest first. */
  pending(): number[] {
    return [...this.#timers.values()].map((t) => t.at - this.time).sort((a, b) => a - b);
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms: number): void {
    const until = this.time + ms;
    for (;;) {
      const due = [...this.#timers.entries()]
        .filter(([, t]) => t.at <= until)
        .sort(([, a], [, b]) => a.at - b.at)[0];
      if (due === undefined) break;
      const [id, timer] = due;
      this.#timers.delete(id);
      this.time = timer.at;
      timer.fn();
    }
    this.time = until;
  }
}

/** One reconcile in flight, finished by the test. */
interface Call {
  readonly key: string;
  readonly finish: (result?: ReconcileResult) => void;
  readonly fail: (err: unknown) => void;
}

/** A reconcile that waits for the test to finish each call, and records overlap per key. */
class GatedReconciler {
  readonly calls: Call[] = [];
  readonly inFlight = new Map<string, number>();
  maxInFlightPerKey = 0;
  maxInFlight = 0;

  readonly reconcile = (key: string): Promise<ReconcileResult> => {
    this.inFlight.set(key, (this.inFlight.get(key) ?? 0) + 1);
    this.maxInFlightPerKey = Math.max(this.maxInFlightPerKey, ...this.inFlight.values());
    this.maxInFlight = Math.max(this.maxInFlight, this.running().length);
    return new Promise<ReconcileResult>((resolve, reject) => {
      const end = () => {
        const n = (this.inFlight.get(key) ?? 1) - 1;
        if (n === 0) this.inFlight.delete(key);
        else this.inFlight.set(key, n);
      };
      this.calls.push({
        key,
        finish: (result = DONE) => {
          end();
          resolve(result);
        },
        fail: (err) => {
          end();
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      });
    });
  };

  /** Keys of the calls started so far, in order. */
  keys(): string[] {
    return this.calls.map((c) => c.key);
  }

  /** Keys being reconciled now. */
  running(): string[] {
    return [...this.inFlight.keys()];
  }

  /** The most recent call of `key`. */
  last(key: string): Call {
    const call = this.calls.findLast((c) => c.key === key);
    if (call === undefined) throw new Error(`${key} was never reconciled`);
    return call;
  }
}

interface Reported {
  readonly key: string;
  readonly err: unknown;
  readonly retryInMs: number | undefined;
}

function setup(options: Partial<WorkQueueOptions> = {}) {
  const clock = new ManualClock();
  const reconciler = new GatedReconciler();
  const errors: Reported[] = [];
  const queue = new WorkQueue({
    reconcile: reconciler.reconcile,
    onError: (key, err, retryInMs) => errors.push({ key, err, retryInMs }),
    clock,
    ...options,
  });
  return { clock, reconciler, errors, queue };
}

/** Lets every pending promise callback run (no timer involved). */
async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
  await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('collapsing repeated keys', () => {
  it('reconciles a key added many times while it waits only once', async () => {
    const { reconciler, queue } = setup();
    queue.add('busy');
    queue.add('shop/orders');
    queue.add('shop/orders');
    queue.add('shop/orders');
    expect(queue.length).toBe(2);
    reconciler.last('busy').finish();
    await flush();
    reconciler.last('shop/orders').finish();
    await queue.settled();
    expect(reconciler.keys()).toEqual(['busy', 'shop/orders']);
  });

  it('never reconciles one key twice at once, and runs it once more after the run if added during it', async () => {
    const { reconciler, queue } = setup({ concurrency: 4 });
    queue.add('shop/orders');
    expect(reconciler.running()).toEqual(['shop/orders']);
    queue.add('shop/orders');
    queue.add('shop/orders');
    queue.add('shop/orders');
    await flush();
    expect(reconciler.keys()).toEqual(['shop/orders']);
    reconciler.last('shop/orders').finish();
    await flush();
    expect(reconciler.keys()).toEqual(['shop/orders', 'shop/orders']);
    reconciler.last('shop/orders').finish();
    await queue.settled();
    expect(reconciler.keys()).toEqual(['shop/orders', 'shop/orders']);
    expect(reconciler.maxInFlightPerKey).toBe(1);
  });

  it('does not run a key again when it was not added during its run', async () => {
    const { reconciler, queue } = setup();
    queue.add('trail');
    reconciler.last('trail').finish();
    await queue.settled();
    expect(reconciler.keys()).toEqual(['trail']);
  });
});

describe('concurrency', () => {
  it('reconciles different keys at the same time, up to the concurrency', async () => {
    const { reconciler, queue } = setup({ concurrency: 2 });
    for (const key of ['a', 'b', 'c', 'd']) queue.add(key);
    expect(reconciler.running()).toEqual(['a', 'b']);
    expect(queue.length).toBe(4);
    reconciler.last('a').finish();
    await flush();
    expect(reconciler.running()).toEqual(['b', 'c']);
    reconciler.last('b').finish();
    reconciler.last('c').finish();
    await flush();
    expect(reconciler.running()).toEqual(['d']);
    reconciler.last('d').finish();
    await queue.settled();
    expect(reconciler.keys()).toEqual(['a', 'b', 'c', 'd']);
    expect(reconciler.maxInFlight).toBe(2);
  });

  it('runs one key at a time by default', async () => {
    const { reconciler, queue } = setup();
    queue.add('a');
    queue.add('b');
    expect(reconciler.running()).toEqual(['a']);
    reconciler.last('a').finish();
    await flush();
    expect(reconciler.running()).toEqual(['b']);
    reconciler.last('b').finish();
    await queue.settled();
  });

  it('keeps a key that is busy from holding back other keys', async () => {
    const { reconciler, queue } = setup({ concurrency: 2 });
    queue.add('a');
    queue.add('a');
    queue.add('b');
    expect(reconciler.running()).toEqual(['a', 'b']);
    reconciler.last('a').finish();
    reconciler.last('b').finish();
    await flush();
    expect(reconciler.keys()).toEqual(['a', 'b', 'a']);
    reconciler.last('a').finish();
    await queue.settled();
  });
});

describe('retries', () => {
  // base · 2^(n-1), capped: 10, 20, 40, 80, then 100 for every further failure.
  it.each([
    { failures: 1, delay: 10 },
    { failures: 2, delay: 20 },
    { failures: 3, delay: 40 },
    { failures: 4, delay: 80 },
    { failures: 5, delay: 100 },
    { failures: 6, delay: 100 },
  ])('retries failure $failures after $delay ms', async ({ failures, delay }) => {
    const { clock, reconciler, errors, queue } = setup({ baseDelayMs: 10, maxDelayMs: 100 });
    queue.add('trail');
    for (let n = 1; n < failures; n++) {
      reconciler.last('trail').fail(new Error(`attempt ${n}`));
      await flush();
      clock.advance(clock.pending()[0] ?? 0);
    }
    reconciler.last('trail').fail(new Error('unreachable'));
    await flush();
    expect(errors.at(-1)).toMatchObject({ key: 'trail', retryInMs: delay });
    expect((errors.at(-1)?.err as Error).message).toBe('unreachable');
    expect(clock.pending()).toEqual([delay]);
    clock.advance(delay - 1);
    expect(reconciler.calls).toHaveLength(failures);
    clock.advance(1);
    expect(reconciler.calls).toHaveLength(failures + 1);
    reconciler.last('trail').finish();
    await queue.settled();
  });

  it("uses client-go's base delay of 5 ms by default", async () => {
    const { reconciler, errors, queue } = setup();
    queue.add('trail');
    reconciler.last('trail').fail(new Error('conflict'));
    await flush();
    expect(errors.map((e) => e.retryInMs)).toEqual([5]);
    await queue.close();
  });

  it('starts from the base delay again after a success', async () => {
    const { clock, reconciler, errors, queue } = setup({ baseDelayMs: 10, maxDelayMs: 1000 });
    queue.add('trail');
    reconciler.last('trail').fail(new Error('one'));
    await flush();
    clock.advance(10);
    reconciler.last('trail').fail(new Error('two'));
    await flush();
    clock.advance(20);
    reconciler.last('trail').finish();
    await flush();
    queue.add('trail');
    reconciler.last('trail').fail(new Error('three'));
    await flush();
    expect(errors.map((e) => e.retryInMs)).toEqual([10, 20, 10]);
    await queue.close();
  });

  it('counts failures per key', async () => {
    const { clock, reconciler, errors, queue } = setup({
      baseDelayMs: 10,
      maxDelayMs: 1000,
      concurrency: 2,
    });
    queue.add('a');
    reconciler.last('a').fail(new Error('a1'));
    await flush();
    clock.advance(10);
    reconciler.last('a').fail(new Error('a2'));
    await flush();
    queue.add('b');
    reconciler.last('b').fail(new Error('b1'));
    await flush();
    expect(errors.map((e) => [e.key, e.retryInMs])).toEqual([
      ['a', 10],
      ['a', 20],
      ['b', 10],
    ]);
    await queue.close();
  });

  it('reports a TerminalError without a retry delay and does not retry it', async () => {
    const { clock, reconciler, errors, queue } = setup({ baseDelayMs: 10 });
    queue.add('shop/orders');
    const invalid = new TerminalError('spec.policy.rules[0].level: Required value');
    reconciler.last('shop/orders').fail(invalid);
    await queue.settled();
    expect(errors).toEqual([{ key: 'shop/orders', err: invalid, retryInMs: undefined }]);
    expect(clock.pending()).toEqual([]);
    clock.advance(60 * 60_000);
    expect(reconciler.calls).toHaveLength(1);
  });

  it('reconciles a key that failed terminally again when it is added again', async () => {
    const { reconciler, queue } = setup();
    queue.add('shop/orders');
    reconciler.last('shop/orders').fail(new TerminalError('invalid'));
    await queue.settled();
    queue.add('shop/orders');
    expect(reconciler.calls).toHaveLength(2);
    reconciler.last('shop/orders').finish();
    await queue.settled();
  });

  it('runs a failed key again at once, not after the backoff, when it was added during the run', async () => {
    const { clock, reconciler, errors, queue } = setup({ baseDelayMs: 10 });
    queue.add('trail');
    queue.add('trail');
    reconciler.last('trail').fail(new Error('conflict'));
    await flush();
    expect(errors.map((e) => e.retryInMs)).toEqual([10]);
    expect(reconciler.calls).toHaveLength(2);
    expect(clock.pending()).toEqual([]);
    reconciler.last('trail').finish();
    await queue.settled();
  });
});

describe('delayed keys', () => {
  it('runs a key again after the delay a reconcile asks for, as no failure', async () => {
    const { clock, reconciler, errors, queue } = setup();
    queue.add('trail');
    reconciler.last('trail').finish({ requeueAfterMs: 5_000 });
    await queue.settled();
    expect(clock.pending()).toEqual([5_000]);
    clock.advance(4_999);
    expect(reconciler.calls).toHaveLength(1);
    clock.advance(1);
    expect(reconciler.calls).toHaveLength(2);
    reconciler.last('trail').finish();
    await queue.settled();
    expect(errors).toEqual([]);
    expect(clock.pending()).toEqual([]);
  });

  it('runs a key added after a delay once the delay has passed', async () => {
    const { clock, reconciler, queue } = setup();
    queue.addAfter('trail', 1_000);
    expect(queue.length).toBe(0);
    clock.advance(999);
    expect(reconciler.calls).toHaveLength(0);
    clock.advance(1);
    expect(reconciler.keys()).toEqual(['trail']);
    reconciler.last('trail').finish();
    await queue.settled();
  });

  it('keeps the earliest of several delayed adds of a key', async () => {
    const { clock, reconciler, queue } = setup();
    queue.addAfter('trail', 1_000);
    queue.addAfter('trail', 100);
    queue.addAfter('trail', 500);
    expect(clock.pending()).toEqual([100]);
    clock.advance(100);
    expect(reconciler.keys()).toEqual(['trail']);
    reconciler.last('trail').finish();
    await queue.settled();
    clock.advance(1_000);
    expect(reconciler.keys()).toEqual(['trail']);
  });

  it('supersedes a delayed add with an add now: the key runs once, at once', async () => {
    const { clock, reconciler, queue } = setup();
    queue.addAfter('trail', 1_000);
    queue.add('trail');
    expect(reconciler.keys()).toEqual(['trail']);
    expect(clock.pending()).toEqual([]);
    reconciler.last('trail').finish();
    await queue.settled();
    clock.advance(1_000);
    expect(reconciler.keys()).toEqual(['trail']);
  });

  it('ignores a delayed add of a key that is already waiting', async () => {
    const { clock, reconciler, queue } = setup();
    queue.add('busy');
    queue.add('trail');
    queue.addAfter('trail', 1_000);
    expect(clock.pending()).toEqual([]);
    reconciler.last('busy').finish();
    await flush();
    reconciler.last('trail').finish();
    await queue.settled();
    expect(reconciler.keys()).toEqual(['busy', 'trail']);
  });

  it('cancels a pending retry when the key is added again', async () => {
    const { clock, reconciler, queue } = setup({ baseDelayMs: 1_000 });
    queue.add('trail');
    reconciler.last('trail').fail(new Error('unreachable'));
    await flush();
    expect(clock.pending()).toEqual([1_000]);
    queue.add('trail');
    expect(clock.pending()).toEqual([]);
    reconciler.last('trail').finish();
    await queue.settled();
    clock.advance(1_000);
    expect(reconciler.calls).toHaveLength(2);
  });
});

describe('close', () => {
  it('waits for the running reconcile to end', async () => {
    const { reconciler, queue } = setup();
    queue.add('trail');
    let closed = false;
    const closing = queue.close().then(() => {
      closed = true;
    });
    await flush();
    expect(closed).toBe(false);
    reconciler.last('trail').finish();
    await closing;
    expect(closed).toBe(true);
  });

  it('drops queued and delayed keys, and takes no new ones', async () => {
    const { clock, reconciler, queue } = setup();
    queue.add('running');
    queue.add('queued');
    queue.addAfter('delayed', 1_000);
    const closing = queue.close();
    reconciler.last('running').finish();
    await closing;
    expect(clock.pending()).toEqual([]);
    queue.add('late');
    queue.addAfter('late', 10);
    clock.advance(60_000);
    await flush();
    expect(reconciler.keys()).toEqual(['running']);
    expect(queue.length).toBe(0);
  });

  it('does not rerun or retry a key whose run ends after close', async () => {
    const { clock, reconciler, queue } = setup({ baseDelayMs: 10 });
    queue.add('trail');
    queue.add('trail');
    const closing = queue.close();
    reconciler.last('trail').fail(new Error('unreachable'));
    await closing;
    expect(clock.pending()).toEqual([]);
    expect(reconciler.keys()).toEqual(['trail']);
  });

  it('resolves at once when nothing runs', async () => {
    const { queue } = setup();
    await expect(queue.close()).resolves.toBeUndefined();
  });

  it('waits for every running key when several run at once', async () => {
    const { reconciler, queue } = setup({ concurrency: 2 });
    queue.add('a');
    queue.add('b');
    let closed = false;
    const closing = queue.close().then(() => {
      closed = true;
    });
    reconciler.last('a').finish();
    await flush();
    expect(closed).toBe(false);
    reconciler.last('b').finish();
    await closing;
    expect(closed).toBe(true);
  });
});

describe('settled', () => {
  it('resolves at once when nothing is queued or running', async () => {
    const { queue } = setup();
    await expect(queue.settled()).resolves.toBeUndefined();
  });

  it('resolves only once queued keys and reruns have finished', async () => {
    const { reconciler, queue } = setup();
    queue.add('a');
    queue.add('b');
    queue.add('a');
    let settled = false;
    const settling = queue.settled().then(() => {
      settled = true;
    });
    reconciler.last('a').finish();
    await flush();
    expect(settled).toBe(false);
    reconciler.last('b').finish();
    await flush();
    expect(settled).toBe(false);
    reconciler.last('a').finish();
    await settling;
    expect(settled).toBe(true);
    expect(queue.length).toBe(0);
  });

  it('does not wait for delayed keys', async () => {
    const { clock, reconciler, queue } = setup();
    queue.add('trail');
    reconciler.last('trail').finish({ requeueAfterMs: 60_000 });
    await queue.settled();
    expect(clock.pending()).toEqual([60_000]);
    await queue.close();
  });
});
