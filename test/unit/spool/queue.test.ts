// Queue semantics shared by the in-memory and the durable queue (segment files in temporary
// directories): order, batches, waiting, consumers, the byte cap, closing. Starts no process.
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  openQueue,
  QueueError,
  QueueFullError,
  type QueueOptions,
  type SinkQueue,
} from '../../../src/spool/index.ts';
import { eventually } from '../../support/wait.ts';
import {
  drain,
  event,
  events,
  ids,
  lineBytes,
  ManualDelay,
  OpenedQueues,
  present,
  TempDirs,
} from './support.ts';

const temp = new TempDirs();
const opened = new OpenedQueues();

afterEach(async () => {
  await opened.closeAll();
  await temp.removeAll();
});

type Mode = 'memory' | 'durable';

async function open(mode: Mode, options: Partial<QueueOptions> = {}): Promise<SinkQueue> {
  const queue = await openQueue({
    maxBytes: 1024 * 1024,
    // Small segments, so that ordinary tests cross segment boundaries.
    segmentBytes: 2048,
    ...(mode === 'durable' ? { dir: await temp.make() } : {}),
    ...options,
  });
  return opened.add(queue);
}

describe.each<Mode>(['memory', 'durable'])('%s queue', (mode) => {
  it('delivers events in append order, across appends and segments', async () => {
    const queue = await open(mode);
    for (let i = 0; i < 10; i++) await queue.append(events('e', i * 7, (i + 1) * 7));
    expect(await drain(queue.consumer('influxdb'), 9)).toEqual(
      events('e', 0, 70).map((e) => e.auditID),
    );
  });

  it('returns at most maxEvents per batch, and the next ones after a commit', async () => {
    const queue = await open(mode);
    await queue.append(events('e', 0, 5));
    const consumer = queue.consumer('influxdb');
    const first = await consumer.next(2, 0);
    expect(ids(first)).toEqual(['e-0', 'e-1']);
    await consumer.commit(present(first));
    expect(ids(await consumer.next(10, 0))).toEqual(['e-2', 'e-3', 'e-4']);
  });

  it('does not advance on next(): without a commit the same events come again', async () => {
    const queue = await open(mode);
    await queue.append(events('e', 0, 3));
    const consumer = queue.consumer('influxdb');
    expect(ids(await consumer.next(2, 0))).toEqual(['e-0', 'e-1']);
    expect(ids(await consumer.next(3, 0))).toEqual(['e-0', 'e-1', 'e-2']);
    expect(consumer.pending).toBe(3);
  });

  it('reads on from the end of a batch still being written, and from the commit again after it', async () => {
    const queue = await open(mode);
    await queue.append(events('e', 0, 5));
    const consumer = queue.consumer('influxdb');
    const first = present(await consumer.next(2, 0));
    const second = present(await consumer.next(2, 0, undefined, first));
    expect(ids(second)).toEqual(['e-2', 'e-3']);
    expect(ids(await consumer.next(5, 0, undefined, second))).toEqual(['e-4']);
    expect(await consumer.next(5, 0, undefined, present(await consumer.next(5, 0)))).toBeNull();
    // A commit past the batch given wins: reads never go back before what was delivered.
    await consumer.commit(second);
    expect(ids(await consumer.next(5, 0, undefined, first))).toEqual(['e-4']);
    await expect(queue.consumer('webhook').next(1, 0, undefined, first)).rejects.toThrow(
      /not returned by next\(\) of consumer webhook/,
    );
  });

  it('lets a batch’s events go on release, and still reads on after it and commits it', async () => {
    const queue = await open(mode);
    await queue.append(events('e', 0, 5));
    const consumer = queue.consumer('influxdb');
    const other = queue.consumer('webhook');
    const first = present(await consumer.next(3, 0));
    first.release();
    expect(first.events).toEqual([]);
    expect(ids(await consumer.next(5, 0, undefined, first))).toEqual(['e-3', 'e-4']);
    await consumer.commit(first);
    expect(consumer.pending).toBe(2);
    expect(ids(await consumer.next(5, 0))).toEqual(['e-3', 'e-4']);
    // Let go by one consumer's batch, the events are still there for the others.
    expect(ids(await other.next(2, 0))).toEqual(['e-0', 'e-1']);
  });

  it('waits in next() and wakes as soon as an append lands', async () => {
    const clock = new ManualDelay();
    const queue = await open(mode, { delay: clock.delay });
    const consumer = queue.consumer('influxdb');
    const waiting = consumer.next(10, 60_000);
    await eventually(
      'the consumer to wait on the backoff clock',
      () => clock.waiting === 1,
      5_000,
      1,
    );
    await queue.append([event('late')]);
    // The delay never ran out: the append woke the consumer.
    expect(ids(await waiting)).toEqual(['late']);
    expect(clock.waiting).toBe(0);
  });

  it('returns null when maxWaitMs passes with nothing appended', async () => {
    const clock = new ManualDelay();
    const queue = await open(mode, { delay: clock.delay });
    const consumer = queue.consumer('influxdb');
    const waiting = consumer.next(10, 1_000);
    await eventually(
      'the consumer to wait on the backoff clock',
      () => clock.waiting === 1,
      5_000,
      1,
    );
    clock.elapse();
    expect(await waiting).toBeNull();
  });

  it('returns null after a real timer of maxWaitMs', async () => {
    const queue = await open(mode);
    const started = Date.now();
    expect(await queue.consumer('influxdb').next(10, 30)).toBeNull();
    expect(Date.now() - started).toBeGreaterThanOrEqual(25);
  });

  it('returns null when the signal aborts, and at once when it is already aborted', async () => {
    const clock = new ManualDelay();
    const queue = await open(mode, { delay: clock.delay });
    const consumer = queue.consumer('influxdb');
    const controller = new AbortController();
    const waiting = consumer.next(10, 60_000, controller.signal);
    await eventually(
      'the consumer to wait on the backoff clock',
      () => clock.waiting === 1,
      5_000,
      1,
    );
    controller.abort();
    expect(await waiting).toBeNull();
    await queue.append([event('a')]);
    expect(await consumer.next(10, 60_000, controller.signal)).toBeNull();
    expect(clock.waiting).toBe(0);
  });

  it('returns null from a waiting next() when the queue closes', async () => {
    const clock = new ManualDelay();
    const queue = await open(mode, { delay: clock.delay });
    const waiting = queue.consumer('influxdb').next(10, 60_000);
    await eventually(
      'the consumer to wait on the backoff clock',
      () => clock.waiting === 1,
      5_000,
      1,
    );
    await queue.close();
    expect(await waiting).toBeNull();
  });

  it('keeps consumers independent: one waiting or behind never holds up another', async () => {
    const clock = new ManualDelay();
    const queue = await open(mode, { delay: clock.delay });
    const influx = queue.consumer('influxdb');
    const webhook = queue.consumer('webhook');
    await queue.append(events('e', 0, 3));
    const first = await influx.next(10, 0);
    await influx.commit(present(first));
    const influxWaiting = influx.next(10, 60_000);
    await eventually(
      'the consumer to wait on the backoff clock',
      () => clock.waiting === 1,
      5_000,
      1,
    );
    // The webhook output is down and never commits; it still reads at once, from its own cursor.
    expect(ids(await webhook.next(2, 60_000))).toEqual(['e-0', 'e-1']);
    await queue.append([event('e-3')]);
    expect(ids(await influxWaiting)).toEqual(['e-3']);
    expect(influx.pending).toBe(1);
    expect(webhook.pending).toBe(4);
  });

  it('frees space only after both consumers commit', async () => {
    const queue = await open(mode);
    const influx = queue.consumer('influxdb');
    const webhook = queue.consumer('webhook');
    const batch = events('e', 0, 4);
    const size = batch.reduce((n, e) => n + lineBytes(e), 0);
    await queue.append(batch);
    expect(queue.stats()).toMatchObject({ events: 4, bytes: size });
    const a = await influx.next(10, 0);
    await influx.commit(present(a));
    expect(queue.stats()).toMatchObject({ events: 4, bytes: size });
    const b = await webhook.next(3, 0);
    await webhook.commit(present(b));
    expect(queue.stats()).toMatchObject({ events: 1, bytes: lineBytes(event('e-3')) });
    const c = await webhook.next(3, 0);
    await webhook.commit(present(c));
    expect(queue.stats()).toMatchObject({ events: 0, bytes: 0 });
  });

  it('rejects an append over the cap with QueueFullError, writes none of it, and accepts again after a commit', async () => {
    const one = lineBytes(event('e-0'));
    const queue = await open(mode, { maxBytes: one * 5, retryAfterSeconds: 2 });
    const consumer = queue.consumer('influxdb');
    await queue.append(events('e', 0, 4));
    const refused = queue.append(events('e', 4, 6));
    await expect(refused).rejects.toBeInstanceOf(QueueFullError);
    await expect(refused).rejects.toMatchObject({ code: 'QUEUE_FULL', retryAfterSeconds: 2 });
    expect(queue.stats()).toMatchObject({ events: 4, bytes: one * 4, maxBytes: one * 5 });
    expect(ids(await consumer.next(10, 0))).toEqual(['e-0', 'e-1', 'e-2', 'e-3']);

    const batch = await consumer.next(2, 0);
    await consumer.commit(present(batch));
    await queue.append(events('e', 4, 6));
    expect(ids(await consumer.next(10, 0))).toEqual(['e-2', 'e-3', 'e-4', 'e-5']);
  });

  it('says it refuses while a batch like the last refused one would not fit, and stops once it would', async () => {
    const one = lineBytes(event('e-0'));
    const queue = await open(mode, { maxBytes: one * 5, retryAfterSeconds: 2 });
    const consumer = queue.consumer('influxdb');
    expect(queue.refusing()).toBeUndefined();
    await queue.append(events('e', 0, 4));
    // Room for one more event, and nothing was refused yet.
    expect(queue.refusing()).toBeUndefined();
    await expect(queue.append(events('e', 4, 7))).rejects.toBeInstanceOf(QueueFullError);
    expect(queue.refusing()).toBe(2);
    // One event freed: the refused three still do not fit.
    await consumer.commit(present(await consumer.next(1, 0)));
    expect(queue.refusing()).toBe(2);
    await consumer.commit(present(await consumer.next(1, 0)));
    expect(queue.refusing()).toBeUndefined();
    await queue.append(events('e', 4, 7));
    expect(queue.refusing()).toBeUndefined();
  });

  it('counts concurrent appends against the cap before they are written', async () => {
    const one = lineBytes(event('e-0'));
    const queue = await open(mode, { maxBytes: one * 3 });
    const results = await Promise.allSettled(
      [0, 1, 2, 3, 4].map((i) => queue.append([event(`e-${i}`)])),
    );
    expect(results.map((r) => r.status)).toEqual([
      'fulfilled',
      'fulfilled',
      'fulfilled',
      'rejected',
      'rejected',
    ]);
    expect(queue.stats().bytes).toBe(one * 3);
  });

  it('counts every retained event against the cap before any consumer exists', async () => {
    const one = lineBytes(event('e-0'));
    const queue = await open(mode, { maxBytes: one * 2 });
    await queue.append(events('e', 0, 2));
    await expect(queue.append([event('e-2')])).rejects.toBeInstanceOf(QueueFullError);
  });

  it('serialises an event once for every queue it is appended to with shared encodings', async () => {
    const [a, b] = [await open(mode), await open(mode)];
    const batch = events('s', 0, 5);
    const stringify = vi.spyOn(JSON, 'stringify');
    try {
      const shared = new Map();
      await Promise.all([a.append(batch, shared), b.append(batch, shared)]);
      expect(stringify).toHaveBeenCalledTimes(batch.length);
      stringify.mockClear();
      await Promise.all([a.append(batch), b.append(batch)]);
      expect(stringify).toHaveBeenCalledTimes(2 * batch.length);
    } finally {
      stringify.mockRestore();
    }
    const sent = batch.map((e) => e.auditID);
    for (const queue of [a, b])
      expect(await drain(queue.consumer('out'))).toEqual([...sent, ...sent]);
  });

  it('resolves an empty append without storing anything', async () => {
    const queue = await open(mode);
    await queue.append([]);
    expect(queue.stats()).toMatchObject({ events: 0, appends: 0, writes: 0 });
  });

  it('starts a consumer seen for the first time at the oldest retained event', async () => {
    const queue = await open(mode);
    await queue.append(events('e', 0, 3));
    const influx = queue.consumer('influxdb');
    const batch = await influx.next(1, 0);
    await influx.commit(present(batch));
    // The webhook was added later: it gets everything still retained, at least e-1 and e-2.
    const late = queue.consumer('webhook');
    expect(ids(await late.next(10, 0))?.slice(-2)).toEqual(['e-1', 'e-2']);
    expect(queue.consumer('webhook')).toBe(late);
  });

  it('frees what only a removed consumer held', async () => {
    const queue = await open(mode);
    const influx = queue.consumer('influxdb');
    const webhook = queue.consumer('webhook');
    await queue.append(events('e', 0, 3));
    const batch = await influx.next(10, 0);
    await influx.commit(present(batch));
    expect(queue.stats().events).toBe(3);
    await queue.removeConsumer('webhook');
    expect(queue.stats().events).toBe(0);
    expect(await webhook.next(10, 0)).toBeNull();
  });

  it('refuses to commit a batch read by another consumer', async () => {
    const queue = await open(mode);
    await queue.append([event('a')]);
    const batch = await queue.consumer('influxdb').next(1, 0);
    await expect(queue.consumer('webhook').commit(present(batch))).rejects.toThrow(
      /not returned by next\(\) of consumer webhook/,
    );
  });

  it('treats a stale commit as already done', async () => {
    const queue = await open(mode);
    await queue.append(events('e', 0, 3));
    const consumer = queue.consumer('influxdb');
    const small = await consumer.next(1, 0);
    const large = await consumer.next(3, 0);
    await consumer.commit(present(large));
    await consumer.commit(present(small));
    expect(consumer.pending).toBe(0);
  });

  it('finishes appends accepted before close and refuses later ones with QUEUE_CLOSED', async () => {
    const queue = await open(mode);
    const consumer = queue.consumer('influxdb');
    const accepted = queue.append([event('a')]);
    const closing = queue.close();
    await expect(accepted).resolves.toBeUndefined();
    await closing;
    await expect(queue.append([event('b')])).rejects.toMatchObject({ code: 'QUEUE_CLOSED' });
    await expect(queue.append([event('b')])).rejects.toBeInstanceOf(QueueError);
    expect(await consumer.next(1, 0)).toBeNull();
    expect(() => queue.consumer('webhook')).toThrow(/closed/);
  });

  it('rejects invalid consumer names and next() arguments', async () => {
    const queue = await open(mode);
    expect(() => queue.consumer('../escape')).toThrow(RangeError);
    expect(() => queue.consumer('')).toThrow(RangeError);
    await expect(queue.consumer('influxdb').next(0, 0)).rejects.toThrow(RangeError);
    await expect(queue.consumer('influxdb').next(1, -1)).rejects.toThrow(RangeError);
  });
});

describe('queue options', () => {
  it('names every invalid field at once', async () => {
    await expect(
      openQueue({ maxBytes: 0, segmentBytes: 1.5, retryAfterSeconds: -1, dir: '' }),
    ).rejects.toThrow(
      'invalid queue options: maxBytes must be a positive integer, got 0; segmentBytes must be a positive integer, got 1.5; retryAfterSeconds must be a positive integer, got -1; dir must not be empty (omit it for an in-memory queue)',
    );
  });

  it('answers a full queue with Retry-After 1 second by default', async () => {
    const queue = await open('memory', { maxBytes: 1 });
    await expect(queue.append([event('a')])).rejects.toMatchObject({ retryAfterSeconds: 1 });
  });
});
