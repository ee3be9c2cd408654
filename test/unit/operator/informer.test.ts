// The operator's informer on client-node's real ListWatch: first list, retries of a failing list
// with capped backoff, restarts of a failed watch from the last resourceVersion, relists after
// 410 Gone, and stop. The Watch and the list function are fakes driven by the test, and delays are
// recorded instead of slept. Starts no process and opens no socket.
import { type KubernetesObject, ListWatch, type Watch } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { type ChangeType, Informer, type InformerOptions } from '../../../src/operator/informer.ts';

const PATH = '/apis/kube-audit.dev/v1alpha1/auditpipelines';

type WatchCallback = (phase: string, obj: unknown, watchObj?: unknown) => void;
type DoneCallback = (err: unknown) => void;

/** One watch request as ListWatch made it; the test plays the apiserver's side. */
interface WatchRequest {
  readonly query: Record<string, string | number | boolean | undefined>;
  readonly controller: AbortController;
  /** Sends a watch event (ADDED, MODIFIED, DELETED, ERROR). */
  emit(phase: string, obj: unknown): void;
  /** Ends the request, as client-node's Watch does: `null` for a normal close, else the error. */
  end(err: unknown): void;
}

/** Stands in for client-node's Watch: records each request and lets the test end it. */
class FakeWatch {
  readonly requests: WatchRequest[] = [];
  /** What the next requests do at once, before watch() returns (e.g. fail to connect). */
  readonly failOnConnect: unknown[] = [];
  #waiters: { count: number; resolve: () => void }[] = [];

  watch(
    _path: string,
    query: Record<string, string | number | boolean | undefined>,
    callback: WatchCallback,
    done: DoneCallback,
  ): Promise<AbortController> {
    let ended = false;
    const request: WatchRequest = {
      query,
      controller: new AbortController(),
      emit: (phase, obj) => {
        if (!ended) callback(phase, obj, { type: phase, object: obj });
      },
      end: (err) => {
        if (ended) return;
        ended = true;
        done(err);
      },
    };
    // An aborted request ends with the abort error, as fetch's body does.
    request.controller.signal.addEventListener('abort', () => {
      request.end(new DOMException('This operation was aborted', 'AbortError'));
    });
    this.requests.push(request);
    if (this.failOnConnect.length > 0) request.end(this.failOnConnect.shift());
    this.#waiters = this.#waiters.filter((w) => {
      if (this.requests.length < w.count) return true;
      w.resolve();
      return false;
    });
    return Promise.resolve(request.controller);
  }

  /** Resolves once `count` requests have been made in all. */
  requested(count: number): Promise<void> {
    if (this.requests.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ count, resolve }));
  }

  last(): WatchRequest {
    const request = this.requests.at(-1);
    if (request === undefined) throw new Error('no watch request yet');
    return request;
  }
}

interface ListResult {
  items: KubernetesObject[];
  metadata: { resourceVersion: string };
}

/** Stands in for the list call: answers from a script, one entry per call. */
class FakeList {
  calls = 0;
  readonly #script: (ListResult | Error | Promise<ListResult>)[] = [];

  /** Queues the answer of the next call. */
  answer(result: ListResult | Error | Promise<ListResult>): this {
    this.#script.push(result);
    return this;
  }

  readonly fn = (): Promise<ListResult> => {
    this.calls++;
    const next = this.#script.shift();
    if (next === undefined) return Promise.reject(new Error('no list answer scripted'));
    return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
  };
}

function pipeline(name: string, resourceVersion: string, namespace = 'team-a'): KubernetesObject {
  return {
    apiVersion: 'kube-audit.dev/v1alpha1',
    kind: 'AuditPipeline',
    metadata: { name, namespace, resourceVersion },
  };
}

function listed(resourceVersion: string, ...items: KubernetesObject[]): ListResult {
  return { items, metadata: { resourceVersion } };
}

/** An error as client-node's Watch reports a non-200 answer. */
function httpError(statusCode: number): Error & { statusCode: number } {
  return Object.assign(new Error(`HTTP ${statusCode}`), { statusCode });
}

interface Harness {
  informer: Informer<KubernetesObject>;
  watch: FakeWatch;
  list: FakeList;
  changes: [name: string, type: ChangeType][];
  errors: [message: string, retryInMs: number][];
  delays: number[];
  /** ListWatch's own reconnect delays (after a watch closed normally). */
  reconnectDelays: number[];
  /** The informer's clock in ms; its sleeps advance it. */
  clock: { now: number };
}

function setUp(options: Partial<InformerOptions<KubernetesObject>> = {}): Harness {
  const watch = new FakeWatch();
  const list = new FakeList();
  const changes: Harness['changes'] = [];
  const errors: Harness['errors'] = [];
  const delays: number[] = [];
  const reconnectDelays: number[] = [];
  const clock = { now: 0 };
  const lw = new ListWatch<KubernetesObject>(
    PATH,
    watch as unknown as Watch,
    list.fn,
    false,
    undefined,
    undefined,
    {
      delayFn: (ms) => {
        reconnectDelays.push(ms);
        return Promise.resolve();
      },
    },
  );
  const informer = new Informer(lw, {
    onChange: (obj, type) => changes.push([obj.metadata?.name ?? '', type]),
    onError: (err, retryInMs) =>
      errors.push([err instanceof Error ? err.message : String(err), retryInMs]),
    sleep: (ms) => {
      delays.push(ms);
      clock.now += ms;
      return Promise.resolve();
    },
    now: () => clock.now,
    ...options,
  });
  return { informer, watch, list, changes, errors, delays, reconnectDelays, clock };
}

describe('Informer', () => {
  it('resolves start() after the first list and reports every listed object as an add', async () => {
    const h = setUp();
    h.list.answer(listed('10', pipeline('a-trail', '7'), pipeline('b-trail', '9', 'team-b')));

    await h.informer.start();

    expect(h.changes).toEqual([
      ['a-trail', 'add'],
      ['b-trail', 'add'],
    ]);
    expect(h.errors).toEqual([]);
    expect(h.watch.requests).toHaveLength(1);
    expect(h.watch.last().query.resourceVersion).toBe('10');
    expect(h.informer.list().map((o) => o.metadata?.name)).toEqual(['a-trail', 'b-trail']);
    expect(h.informer.get('b-trail', 'team-b')?.metadata?.resourceVersion).toBe('9');
    expect(h.informer.get('b-trail', 'team-a')).toBeUndefined();
  });

  it('reports watch events as add, update and delete and keeps the cache current', async () => {
    const h = setUp();
    h.list.answer(listed('10', pipeline('a-trail', '7')));
    await h.informer.start();

    h.watch.last().emit('ADDED', pipeline('c-late', '11'));
    h.watch.last().emit('MODIFIED', pipeline('a-trail', '12'));
    h.watch.last().emit('DELETED', pipeline('c-late', '13'));

    expect(h.changes).toEqual([
      ['a-trail', 'add'],
      ['c-late', 'add'],
      ['a-trail', 'update'],
      ['c-late', 'delete'],
    ]);
    expect(h.informer.list().map((o) => o.metadata?.resourceVersion)).toEqual(['12']);
  });

  it('retries a failing list with doubling backoff capped at the maximum, and resolves once a list succeeds', async () => {
    const h = setUp({ baseDelayMs: 100, maxDelayMs: 500 });
    for (let i = 1; i <= 5; i++) h.list.answer(new Error(`list failed ${i}`));
    h.list.answer(listed('10', pipeline('a-trail', '7')));

    await h.informer.start();

    expect(h.delays).toEqual([100, 200, 400, 500, 500]);
    expect(h.errors).toEqual([
      ['list failed 1', 100],
      ['list failed 2', 200],
      ['list failed 3', 400],
      ['list failed 4', 500],
      ['list failed 5', 500],
    ]);
    expect(h.list.calls).toBe(6);
    expect(h.changes).toEqual([['a-trail', 'add']]);
    expect(h.watch.requests).toHaveLength(1);
  });

  it('waits 1 s doubling to 30 s between attempts by default', async () => {
    const h = setUp();
    for (let i = 0; i < 7; i++) h.list.answer(new Error('apiserver unavailable'));
    h.list.answer(listed('10'));

    await h.informer.start();

    expect(h.delays).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
  });

  it('retries a watch that cannot connect after a successful list, without listing again', async () => {
    const h = setUp({ baseDelayMs: 100, maxDelayMs: 500 });
    h.list.answer(listed('10', pipeline('a-trail', '7')));
    h.watch.failOnConnect.push(httpError(503), httpError(503));

    await h.informer.start();

    expect(h.delays).toEqual([100, 200]);
    expect(h.errors).toEqual([
      ['HTTP 503', 100],
      ['HTTP 503', 200],
    ]);
    expect(h.list.calls).toBe(1);
    expect(h.watch.requests.map((r) => r.query.resourceVersion)).toEqual(['10', '10', '10']);
  });

  it('restarts a watch that ends with an ordinary error from the last resourceVersion without relisting, and reports the error', async () => {
    const h = setUp();
    h.list.answer(listed('10', pipeline('a-trail', '7')));
    await h.informer.start();
    h.watch.last().emit('MODIFIED', pipeline('a-trail', '12'));

    h.watch.last().end(new Error('read ECONNRESET'));
    await h.watch.requested(2);

    expect(h.errors).toEqual([['read ECONNRESET', 0]]);
    expect(h.list.calls).toBe(1);
    expect(h.watch.last().query.resourceVersion).toBe('12');
    expect(h.changes).toEqual([
      ['a-trail', 'add'],
      ['a-trail', 'update'],
    ]);
    // The restarted watch delivers as before.
    h.watch.last().emit('ADDED', pipeline('b-trail', '13'));
    expect(h.changes.at(-1)).toEqual(['b-trail', 'add']);
  });

  it('backs off from the base delay again when a restarted watch cannot connect', async () => {
    const h = setUp({ baseDelayMs: 100, maxDelayMs: 500 });
    h.list.answer(new Error('list failed'));
    h.list.answer(listed('10', pipeline('a-trail', '7')));
    await h.informer.start();
    expect(h.delays).toEqual([100]);

    h.watch.failOnConnect.push(
      new Error('connect ECONNREFUSED'),
      new Error('connect ECONNREFUSED'),
    );
    // The watch held for longer than the longest back-off: the earlier failure no longer counts.
    h.clock.now += 2_000;
    h.watch.last().end(new Error('read ECONNRESET'));
    // The failed request, two refused connections, then one that holds.
    await h.watch.requested(4);

    expect(h.delays).toEqual([100, 100, 200]);
    expect(h.errors).toEqual([
      ['list failed', 100],
      ['read ECONNRESET', 0],
      ['connect ECONNREFUSED', 100],
      ['connect ECONNREFUSED', 200],
    ]);
    expect(h.list.calls).toBe(2);
    expect(h.watch.last().query.resourceVersion).toBe('10');
  });

  it('backs off when watches keep failing right after they connect, instead of spinning', async () => {
    const h = setUp({ baseDelayMs: 100, maxDelayMs: 500 });
    h.list.answer(listed('10', pipeline('a-trail', '7')));
    await h.informer.start();
    for (let i = 1; i <= 5; i++) {
      h.watch.last().end(new Error('stream reset'));
      await h.watch.requested(i + 1);
    }
    expect(h.errors.map(([, delay]) => delay)).toEqual([0, 100, 200, 400, 500]);
    expect(h.list.calls).toBe(1);
  });

  it('relists when a watch ends with 410 Gone and reports an object deleted meanwhile as a delete', async () => {
    const h = setUp();
    h.list.answer(listed('10', pipeline('a-trail', '7'), pipeline('b-trail', '9')));
    await h.informer.start();
    h.list.answer(listed('40', pipeline('a-trail', '31'), pipeline('c-late', '35')));

    h.watch.last().end(httpError(410));
    await h.watch.requested(2);

    expect(h.list.calls).toBe(2);
    expect(h.watch.last().query.resourceVersion).toBe('40');
    expect(h.changes).toEqual([
      ['a-trail', 'add'],
      ['b-trail', 'add'],
      ['b-trail', 'delete'],
      ['a-trail', 'update'],
      ['c-late', 'add'],
    ]);
    expect(h.informer.get('b-trail', 'team-a')).toBeUndefined();
    expect(h.informer.list().map((o) => o.metadata?.name)).toEqual(['a-trail', 'c-late']);
    // 410 is the apiserver's ordinary "resourceVersion too old", not a failure.
    expect(h.errors).toEqual([]);
    expect(h.delays).toEqual([]);
  });

  it('relists when the watch stream reports 410 Gone in an ERROR event and then closes', async () => {
    const h = setUp();
    h.list.answer(listed('10', pipeline('a-trail', '7'), pipeline('b-trail', '9')));
    await h.informer.start();
    h.list.answer(listed('40', pipeline('a-trail', '7')));

    h.watch.last().emit('ERROR', { kind: 'Status', code: 410, reason: 'Expired' });
    h.watch.last().end(null);
    await h.watch.requested(2);

    expect(h.list.calls).toBe(2);
    expect(h.watch.last().query.resourceVersion).toBe('40');
    expect(h.changes.slice(2)).toEqual([['b-trail', 'delete']]);
    expect(h.errors).toEqual([]);
  });

  it('resumes a watch the apiserver closed normally from the last resourceVersion, reporting nothing', async () => {
    const h = setUp();
    h.list.answer(listed('10', pipeline('a-trail', '7')));
    await h.informer.start();
    h.watch.last().emit('MODIFIED', pipeline('a-trail', '15'));

    h.watch.last().end(null);
    await h.watch.requested(2);

    expect(h.list.calls).toBe(1);
    expect(h.watch.last().query.resourceVersion).toBe('15');
    expect(h.errors).toEqual([]);
  });

  it('stops retrying a failing list once stopped during the backoff', async () => {
    let wake: () => void = () => undefined;
    const delays: number[] = [];
    const h = setUp({
      sleep: (ms) => {
        delays.push(ms);
        return new Promise<void>((resolve) => (wake = resolve));
      },
    });
    h.list.answer(new Error('list failed'));
    const started = h.informer.start();
    await expect.poll(() => delays).toEqual([1_000]);

    await h.informer.stop();
    wake();
    await started;

    expect(h.list.calls).toBe(1);
    expect(h.watch.requests).toHaveLength(0);
  });

  it('neither restarts nor reports a watch that ends after stop()', async () => {
    const h = setUp();
    h.list.answer(listed('10', pipeline('a-trail', '7')));
    await h.informer.start();
    const request = h.watch.last();

    // stop() aborts the request, which then ends with an AbortError: not a failure to report.
    await h.informer.stop();
    expect(request.controller.signal.aborted).toBe(true);
    await new Promise((resolve) => setImmediate(resolve));

    expect(h.watch.requests).toHaveLength(1);
    expect(h.errors).toEqual([]);
    expect(h.list.calls).toBe(1);
    // The cache keeps its last contents.
    expect(h.informer.get('a-trail', 'team-a')).toBeDefined();
  });

  it('does not start again once stopped', async () => {
    const h = setUp();
    await h.informer.stop();

    await h.informer.start();

    expect(h.list.calls).toBe(0);
    expect(h.watch.requests).toHaveLength(0);
  });
});
