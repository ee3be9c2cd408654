/**
 * The public shape of the per-sink queue (SPEC 4.4): the receiver appends, each output consumes
 * through its own cursor, and an event acknowledged by `append()` is never lost.
 */
import type { QueuedEvent } from '../audit/stored-point.ts';
import type { AuditEvent } from '../audit/types.ts';
import type { SharedEncodings } from './format.ts';

/**
 * Waits `ms` milliseconds, or less when `signal` aborts (it must honour the signal). Injected so
 * tests control time.
 */
export type Delay = (ms: number, signal: AbortSignal) => Promise<void>;

/** How a queue is opened. */
export interface QueueOptions {
  /** Directory for a durable queue; absent = in-memory (bounded, lost on crash). */
  readonly dir?: string;
  /** Cap on queued (not yet delivered to every consumer) bytes of serialized events. */
  readonly maxBytes: number;
  /** Segment file size at which a new segment starts (default 8 MiB). */
  readonly segmentBytes?: number;
  /** fsync appended data before append() resolves (default true for durable queues). */
  readonly fsync?: boolean;
  /** `retryAfterSeconds` of a `QueueFullError` (default 1: see `DEFAULT_RETRY_AFTER_SECONDS`). */
  readonly retryAfterSeconds?: number;
  /** How `next()` waits for events (default: a timer). */
  readonly delay?: Delay;
}

/** Counters of one queue, for metrics. */
export interface QueueStats {
  /** Events not yet committed by every consumer. */
  readonly events: number;
  /** Serialized bytes of those events: what `maxBytes` caps. */
  readonly bytes: number;
  readonly maxBytes: number;
  /** Appends stored since the queue was opened. */
  readonly appends: number;
  /** Writes (each with one fsync when enabled) that stored them: group commit makes this smaller. */
  readonly writes: number;
  /** Stored records that could not be decoded and were skipped (disk corruption). */
  readonly corrupt: number;
}

/** What opening a durable queue found on disk; all zero for an in-memory queue. */
export interface QueueRecovery {
  /** Segment files found. */
  readonly segments: number;
  /** Events found in them. */
  readonly events: number;
  /** Bytes cut from the end of the last segment: a write a crash interrupted, never acknowledged. */
  readonly tornBytes: number;
  /** Consumers whose cursor file was unreadable; they restart at the oldest retained event. */
  readonly resetCursors: readonly string[];
}

/** Events read by one consumer; commit it once they are delivered. */
export interface QueueBatch {
  /**
   * Events in append order, or the points made of them for a sink that stores points (ADR 0027);
   * shared, never to be mutated. Empty once released.
   */
  readonly events: readonly QueuedEvent[];
  /**
   * Lets the events go (an output holds them encoded while its destination stores them); the
   * batch still commits, and `next` still reads after it.
   */
  release(): void;
}

/** One output's view of a queue: a cursor that only moves on commit. */
export interface QueueConsumer {
  /** The consumer's name, which keys its cursor. */
  readonly name: string;
  /**
   * Resolves with up to maxEvents events in append order once at least one is available, or null
   * when maxWaitMs passes with nothing, or when the signal aborts / queue closes. Does not advance.
   * Reads from the last commit, or from the end of `after` when it is further: a batch this
   * consumer returned and is still writing.
   */
  next(
    maxEvents: number,
    maxWaitMs: number,
    signal?: AbortSignal,
    after?: QueueBatch,
  ): Promise<QueueBatch | null>;
  /**
   * Everything up to and including the batch is delivered: advance (persisted for durable queues)
   * and free space once every consumer has passed it. Rejects if the cursor cannot be saved (it
   * did not move), or if a delivered segment cannot be deleted (it did move; deletion is retried
   * at the next commit).
   */
  commit(batch: QueueBatch): Promise<void>;
  /** Events not yet committed by this consumer. */
  readonly pending: number;
}

/** A bounded, optionally durable queue of one sink's events, with one cursor per output. */
export interface SinkQueue {
  /**
   * Stores the events, all or nothing, and resolves once they are durable (synced, for a durable
   * queue): only then may the receiver answer 200. Rejects with a QueueFullError, writing nothing,
   * if the batch would take the queue over `maxBytes`. `shared` carries the encodings of the
   * batch's other appends (the other sinks that keep its events), so that each is serialised once.
   */
  append(events: readonly AuditEvent[], shared?: SharedEncodings): Promise<void>;
  /**
   * The Retry-After, in seconds, while a batch as large as the last one refused would still be
   * refused; undefined when the queue may take the next batch. Lets a receiver refuse a batch
   * before reading and parsing it.
   */
  refusing(): number | undefined;
  /**
   * The consumer with this name (one per output: `influxdb`, `webhook`, `file`). A name seen for
   * the first time starts at the oldest retained event and holds data from then on.
   */
  consumer(name: string): QueueConsumer;
  /** Forgets a consumer (its output was removed from the sink), freeing what only it held. */
  removeConsumer(name: string): Promise<void>;
  /** Current counters. */
  stats(): QueueStats;
  /** What opening found on disk. */
  readonly recovery: QueueRecovery;
  /** Flush and release files; data stays for the next open. */
  close(): Promise<void>;
  /** Close and delete all data (sink deleted). */
  destroy(): Promise<void>;
}
