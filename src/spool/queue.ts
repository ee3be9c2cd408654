/**
 * The per-sink queue: the byte cap, group commit, consumers and their cursors, waiting for
 * events. Storage is behind `EventStore` (memory or segment files).
 *
 * Invariants that make "200 means stored" hold:
 * - an event becomes visible to consumers, and its append resolves, only after the store has
 *   made it durable, so no cursor can ever point past durable data;
 * - space is freed only once every registered consumer's cursor is persisted past it;
 * - sequence numbers are never reused, so a cursor never skips a later event.
 */
import { resolve } from 'node:path';
import type { QueuedEvent } from '../audit/stored-point.ts';
import type { AuditEvent } from '../audit/types.ts';
import { QueueError, QueueFullError } from './errors.ts';
import { type EncodedEvent, encodeShared, isConsumerName, type SharedEncodings } from './format.ts';
import { SegmentStore } from './segments.ts';
import { type EventStore, MemoryStore } from './store.ts';
import type {
  Delay,
  QueueBatch,
  QueueConsumer,
  QueueOptions,
  QueueRecovery,
  QueueStats,
  SinkQueue,
} from './types.ts';

/**
 * 8 MiB segments: large enough that creating and deleting files is rare next to appends (about
 * 5,000 typical events each), small enough that a fully delivered segment is freed soon.
 */
export const DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024;

/**
 * 1 second: a full queue drains at the speed of its outputs, which deliver a batch in well under a
 * second when they are up; retrying sooner only adds load, retrying later delays the apiserver's
 * buffer, which drops events once it overflows (`--audit-webhook-batch-buffer-size`).
 */
export const DEFAULT_RETRY_AFTER_SECONDS = 1;

/** Waits with a timer; the default {@link Delay}. */
export const timerDelay: Delay = (ms, signal) =>
  new Promise((done) => {
    if (signal.aborted) {
      done();
      return;
    }
    const finish = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', finish);
      done();
    };
    const timer = setTimeout(finish, ms);
    signal.addEventListener('abort', finish, { once: true });
  });

// Directories open in this process: two queues appending to one directory would corrupt it.
const openDirectories = new Set<string>();

// Where each batch ends, kept outside the batch so its position stays opaque to outputs.
const batchEnds = new WeakMap<QueueBatch, { readonly consumer: Consumer; readonly end: number }>();

const RELEASED: readonly QueuedEvent[] = Object.freeze([]);

/** A batch as `next` returns it; its events can be let go before it is committed. */
class Batch implements QueueBatch {
  #events: readonly QueuedEvent[];

  constructor(events: readonly QueuedEvent[]) {
    this.#events = events;
  }

  get events(): readonly QueuedEvent[] {
    return this.#events;
  }

  release(): void {
    this.#events = RELEASED;
  }
}

interface PendingAppend {
  readonly records: readonly EncodedEvent[];
  readonly bytes: number;
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

interface Waiter {
  readonly consumer: Consumer;
  readonly wake: () => void;
}

function closedError(): QueueError {
  return new QueueError('QUEUE_CLOSED', 'the queue is closed');
}

/** Validated options with defaults applied. */
interface Settings {
  readonly dir: string | null;
  readonly maxBytes: number;
  readonly segmentBytes: number;
  readonly fsync: boolean;
  readonly retryAfterSeconds: number;
  readonly delay: Delay;
}

function settingsFrom(options: QueueOptions): Settings {
  const problems: string[] = [];
  const positiveInteger = (field: string, value: number): void => {
    if (!Number.isSafeInteger(value) || value <= 0) {
      problems.push(`${field} must be a positive integer, got ${String(value)}`);
    }
  };
  positiveInteger('maxBytes', options.maxBytes);
  const segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
  positiveInteger('segmentBytes', segmentBytes);
  const retryAfterSeconds = options.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS;
  positiveInteger('retryAfterSeconds', retryAfterSeconds);
  if (options.dir === '') problems.push('dir must not be empty (omit it for an in-memory queue)');
  if (problems.length > 0) throw new RangeError(`invalid queue options: ${problems.join('; ')}`);
  return Object.freeze({
    dir: options.dir === undefined ? null : resolve(options.dir),
    maxBytes: options.maxBytes,
    segmentBytes,
    fsync: options.fsync ?? true,
    retryAfterSeconds,
    delay: options.delay ?? timerDelay,
  });
}

/**
 * Opens a queue: durable in `options.dir` (replaying what a previous run left there, each
 * consumer from its cursor), or in memory when no directory is given.
 */
export async function openQueue(options: QueueOptions): Promise<SinkQueue> {
  const settings = settingsFrom(options);
  if (settings.dir === null) return new Queue(new MemoryStore(), settings);
  const dir = settings.dir;
  if (openDirectories.has(dir)) {
    throw new QueueError('QUEUE_IN_USE', `spool ${dir} is already open in this process`);
  }
  openDirectories.add(dir);
  try {
    const store = await SegmentStore.open({
      dir,
      segmentBytes: settings.segmentBytes,
      fsync: settings.fsync,
    });
    return await Queue.start(store, settings);
  } catch (error) {
    openDirectories.delete(dir);
    throw error;
  }
}

/** The records of `events` and their total size. */
function encodeBatch(
  events: readonly AuditEvent[],
  shared: SharedEncodings | undefined,
): { readonly records: readonly EncodedEvent[]; readonly bytes: number } {
  const records = events.map((event) => encodeShared(event, shared));
  let bytes = 0;
  for (const record of records) bytes += record.bytes;
  return { records, bytes };
}

/**
 * A queue over a store opened elsewhere (a stream of the process's durable log): the same byte
 * cap, group commit, consumers and cursors as {@link openQueue}, whatever the storage.
 */
export async function openQueueOn(
  store: EventStore,
  options: Omit<QueueOptions, 'dir' | 'segmentBytes' | 'fsync'>,
): Promise<SinkQueue> {
  return Queue.start(store, settingsFrom(options));
}

class Queue implements SinkQueue {
  readonly recovery: QueueRecovery;
  readonly #store: EventStore;
  readonly #settings: Settings;
  readonly #consumers = new Map<string, Consumer>();
  readonly #waiters = new Set<Waiter>();
  readonly #corrupt = new Set<number>();
  // Bytes of appends accepted but not yet stored: counted against the cap so that concurrent
  // appends cannot jointly exceed it.
  #reserved = 0;
  // Size of the last append refused as too large for the space left; 0 once one is accepted.
  #refusedBytes = 0;
  #pending: PendingAppend[] = [];
  #flushing: Promise<void> | null = null;
  #releasing: Promise<void> = Promise.resolve();
  #closing = false;
  #destroying = false;
  #closed: Promise<void> | null = null;
  #appends = 0;
  #writes = 0;

  constructor(store: EventStore, settings: Settings) {
    this.#store = store;
    this.#settings = settings;
    this.recovery = store.recovery;
    const reset = new Set(store.recovery.resetCursors);
    for (const [name, next] of store.cursors) {
      this.#consumers.set(name, new Consumer(this, name, next, !reset.has(name)));
    }
  }

  /** A queue over an opened store, with what no consumer needs any more already deleted. */
  static async start(store: EventStore, settings: Settings): Promise<Queue> {
    const queue = new Queue(store, settings);
    // A crash between persisting a cursor and deleting the segments it passed leaves them behind.
    await queue.release();
    return queue;
  }

  get store(): EventStore {
    return this.#store;
  }

  get closing(): boolean {
    return this.#closing;
  }

  append(events: readonly AuditEvent[], shared?: SharedEncodings): Promise<void> {
    // Throwing inside the executor rejects the returned promise.
    return new Promise<void>((resolveAppend, rejectAppend) => {
      if (this.#closing) throw closedError();
      if (events.length === 0) {
        resolveAppend();
        return;
      }
      const { records, bytes } = encodeBatch(events, shared);
      const queued = this.#queuedBytes() + this.#reserved;
      if (queued + bytes > this.#settings.maxBytes) {
        this.#refusedBytes = bytes;
        throw new QueueFullError(
          `queue full: ${queued} of ${this.#settings.maxBytes} bytes queued, the batch needs ${bytes}`,
          this.#settings.retryAfterSeconds,
        );
      }
      this.#refusedBytes = 0;
      this.#reserved += bytes;
      this.#pending.push({ records, bytes, resolve: resolveAppend, reject: rejectAppend });
      // Start one microtask later, so appends issued in the same tick share the first write.
      this.#flushing ??= Promise.resolve().then(() => this.#flush());
    });
  }

  refusing(): number | undefined {
    if (this.#refusedBytes === 0 || this.#closing) return undefined;
    const queued = this.#queuedBytes() + this.#reserved;
    return queued + this.#refusedBytes > this.#settings.maxBytes
      ? this.#settings.retryAfterSeconds
      : undefined;
  }

  consumer(name: string): QueueConsumer {
    const existing = this.#consumers.get(name);
    if (existing !== undefined) return existing;
    if (this.#closing) throw closedError();
    if (!isConsumerName(name)) {
      throw new RangeError(
        `invalid consumer name ${JSON.stringify(name)}: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
      );
    }
    // From now on this consumer holds everything from the oldest retained event.
    const consumer = new Consumer(this, name, this.#store.start, false);
    this.#consumers.set(name, consumer);
    return consumer;
  }

  async removeConsumer(name: string): Promise<void> {
    const consumer = this.#consumers.get(name);
    if (consumer === undefined) return;
    if (this.#closing) throw closedError();
    this.#consumers.delete(name);
    consumer.remove();
    this.wake(consumer);
    await consumer.settled();
    await this.#store.deleteCursor(name);
    await this.release();
  }

  stats(): QueueStats {
    const low = this.#low();
    return {
      events: this.#store.count(low, this.#store.end),
      bytes: this.#store.bytes(low, this.#store.end),
      maxBytes: this.#settings.maxBytes,
      appends: this.#appends,
      writes: this.#writes,
      corrupt: this.#corrupt.size,
    };
  }

  close(): Promise<void> {
    this.#closing = true;
    this.#closed ??= this.#shutdown();
    return this.#closed;
  }

  async destroy(): Promise<void> {
    // The store's destroy() releases it: closing it first would let a shared log close under it.
    this.#destroying = true;
    await this.close();
    await this.#store.destroy();
  }

  /** Waits until events are appended, `ms` pass, `signal` aborts or the queue closes. */
  async waitForEvents(consumer: Consumer, ms: number, signal?: AbortSignal): Promise<void> {
    const wake = new AbortController();
    const waiter: Waiter = { consumer, wake: () => wake.abort() };
    const onAbort = (): void => wake.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    this.#waiters.add(waiter);
    try {
      await this.#settings.delay(ms, wake.signal);
    } finally {
      this.#waiters.delete(waiter);
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Wakes the waiting `next()` calls: of one consumer, or of all. */
  wake(only?: Consumer): void {
    for (const waiter of this.#waiters) {
      if (only === undefined || waiter.consumer === only) {
        this.#waiters.delete(waiter);
        waiter.wake();
      }
    }
  }

  /** Records skipped records (counted once each, however many consumers meet them). */
  noteCorrupt(seqs: readonly number[]): void {
    for (const seq of seqs) this.#corrupt.add(seq);
  }

  /** Frees what every consumer has passed; serialised, so deletions never race. */
  release(): Promise<void> {
    const step = (): Promise<void> => this.#store.release(this.#low());
    const run = this.#releasing.then(step, step);
    this.#releasing = run;
    return run;
  }

  /** The first event some consumer still needs (the oldest retained one when there is none). */
  #low(): number {
    let low = Number.POSITIVE_INFINITY;
    for (const consumer of this.#consumers.values()) low = Math.min(low, consumer.cursor);
    return low === Number.POSITIVE_INFINITY ? this.#store.start : low;
  }

  #queuedBytes(): number {
    return this.#store.bytes(this.#low(), this.#store.end);
  }

  /**
   * Group commit: writes everything appended while the previous write was syncing in one write
   * and one fsync. Never rejects: a failed write rejects the appends it carried.
   */
  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const group = this.#takeGroup();
      const records =
        group.length === 1 ? (group[0] as PendingAppend).records : group.flatMap((a) => a.records);
      try {
        await this.#store.write(records);
      } catch (error) {
        for (const append of group) {
          this.#reserved -= append.bytes;
          append.reject(error);
        }
        continue;
      }
      this.#writes++;
      this.#appends += group.length;
      for (const append of group) {
        this.#reserved -= append.bytes;
        append.resolve();
      }
      this.wake();
    }
    // Synchronous with the last check above: an append arriving later starts a new flush.
    this.#flushing = null;
  }

  /** The next appends to write together: as many as fit the current segment, at least one. */
  #takeGroup(): PendingAppend[] {
    const limit = this.#store.writeLimit;
    let bytes = 0;
    let n = 0;
    for (const append of this.#pending) {
      if (n > 0 && bytes + append.bytes > limit) break;
      bytes += append.bytes;
      n++;
    }
    return this.#pending.splice(0, n);
  }

  async #shutdown(): Promise<void> {
    // Appends accepted before close still complete: their callers are owed an answer.
    while (this.#flushing !== null) await this.#flushing;
    this.wake();
    await Promise.allSettled([...this.#consumers.values()].map((c) => c.settled()));
    await Promise.allSettled([this.#releasing]);
    try {
      if (!this.#destroying) await this.#store.close();
    } finally {
      if (this.#settings.dir !== null) openDirectories.delete(this.#settings.dir);
    }
  }
}

class Consumer implements QueueConsumer {
  readonly name: string;
  readonly #queue: Queue;
  // Committed and persisted: reads start here, and everything from here on is held for us.
  #cursor: number;
  // The furthest commit asked for; the save loop persists up to it.
  #target: number;
  // Whether #cursor is on disk; false for a new consumer until its first save.
  #persisted: boolean;
  #saving: Promise<void> | null = null;
  #removed = false;

  constructor(queue: Queue, name: string, cursor: number, persisted: boolean) {
    this.#queue = queue;
    this.name = name;
    this.#cursor = cursor;
    this.#target = cursor;
    this.#persisted = persisted;
    // Persist a new consumer's start right away, so that a crash before its first commit cannot
    // let a restart delete events it was registered for.
    if (!persisted) void this.#persist().catch(() => undefined);
  }

  /** The committed position: the first event not yet delivered. */
  get cursor(): number {
    return this.#cursor;
  }

  get pending(): number {
    const store = this.#queue.store;
    return store.count(this.#cursor, store.end);
  }

  async next(
    maxEvents: number,
    maxWaitMs: number,
    signal?: AbortSignal,
    after?: QueueBatch,
  ): Promise<QueueBatch | null> {
    if (!Number.isSafeInteger(maxEvents) || maxEvents < 1) {
      throw new RangeError(`maxEvents must be a positive integer, got ${String(maxEvents)}`);
    }
    if (!Number.isFinite(maxWaitMs) || maxWaitMs < 0) {
      throw new RangeError(`maxWaitMs must be a finite number >= 0, got ${String(maxWaitMs)}`);
    }
    const behind = after === undefined ? undefined : batchEnds.get(after);
    if (after !== undefined && behind?.consumer !== this) {
      throw new TypeError(`next: the batch was not returned by next() of consumer ${this.name}`);
    }
    if (this.#queue.closing || this.#removed) return null;
    // Deliver nothing until this consumer's registration is on disk (the save is retried here if
    // it failed when the consumer was created).
    if (!this.#persisted) await this.#persist();
    const store = this.#queue.store;
    // From the last commit, persisted or not: what was committed was delivered. Or from the end of
    // a batch still being written.
    let from = Math.max(this.#target, behind?.end ?? 0);
    let waited = false;
    for (;;) {
      if (this.#queue.closing || this.#removed || signal?.aborted === true) return null;
      if (store.count(from, store.end) === 0) {
        if (waited) return null;
        waited = true;
        // No await between the check above and registering the waiter: no append can slip in.
        await this.#queue.waitForEvents(this, maxWaitMs, signal);
        continue;
      }
      const read = await store.read(from, maxEvents);
      this.#queue.noteCorrupt(read.corrupt);
      if (read.events.length > 0) {
        const batch = new Batch(read.events);
        batchEnds.set(batch, { consumer: this, end: read.end });
        return batch;
      }
      // Only undecodable records: look past them (the next batch's commit covers them).
      from = read.end;
    }
  }

  async commit(batch: QueueBatch): Promise<void> {
    const position = batchEnds.get(batch);
    if (position?.consumer !== this) {
      throw new TypeError(`commit: the batch was not returned by next() of consumer ${this.name}`);
    }
    if (this.#queue.closing || this.#removed) throw closedError();
    this.#target = Math.max(this.#target, position.end);
    if (this.#persisted && this.#cursor >= position.end) return;
    await this.#persist();
    await this.#queue.release();
  }

  /** Marks this consumer removed: its `next()` calls return null and commits fail. */
  remove(): void {
    this.#removed = true;
  }

  /** Resolves once no cursor save is in flight. */
  async settled(): Promise<void> {
    await Promise.allSettled([this.#saving]);
  }

  /** Persists the cursor up to #target; concurrent commits share one save loop. */
  #persist(): Promise<void> {
    // Started one microtask later, so that #saving is set before the loop can finish and clear it.
    this.#saving ??= Promise.resolve().then(() => this.#saveLoop());
    return this.#saving;
  }

  async #saveLoop(): Promise<void> {
    try {
      while (!this.#removed && (!this.#persisted || this.#cursor < this.#target)) {
        const next = this.#target;
        await this.#queue.store.saveCursor(this.name, next);
        this.#persisted = true;
        this.#cursor = Math.max(this.#cursor, next);
      }
    } finally {
      this.#saving = null;
    }
  }
}
