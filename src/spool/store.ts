/**
 * Where a queue keeps its events: the storage half of the queue, behind one interface with an
 * in-memory and a segment-file implementation. Stores know sequence numbers, bytes and cursors;
 * the queue (`queue.ts`) owns consumers, waiting, group commit and the byte cap.
 *
 * Every event gets a sequence number, in append order, never reused: a cursor that has passed a
 * number can never skip a later event.
 */
import type { QueuedEvent } from '../audit/stored-point.ts';
import type { EncodedEvent } from './format.ts';

/** Events read from a store. */
export interface StoreRead {
  readonly events: QueuedEvent[];
  /** Sequence number after the last record read (the position to commit). */
  readonly end: number;
  /** Sequence numbers of records that could not be decoded and were skipped. */
  readonly corrupt: readonly number[];
}

/** What opening a store found. */
export interface StoreRecovery {
  /** Segment files found. */
  readonly segments: number;
  /** Events found in them. */
  readonly events: number;
  /** Bytes cut from segment tails: an unacknowledged write a crash interrupted. */
  readonly tornBytes: number;
  /** Consumers whose cursor file was unreadable; they restart at the oldest retained event. */
  readonly resetCursors: readonly string[];
}

/** Storage of one queue's events and cursors. Writes are never concurrent (the queue serialises them). */
export interface EventStore {
  /** Sequence number of the oldest retained event (`end` when none is retained). */
  readonly start: number;
  /** Sequence number the next written event gets. */
  readonly end: number;
  /** Largest write that still fits the current segment; the queue sizes its groups by it. */
  readonly writeLimit: number;
  /** Cursors found when the store was opened, by consumer. */
  readonly cursors: ReadonlyMap<string, number>;
  /** What opening found. */
  readonly recovery: StoreRecovery;
  /** Stores `records` after the retained ones; resolves once they are durable. All or nothing. */
  write(records: readonly EncodedEvent[]): Promise<void>;
  /** Up to `max` records from the first retained one at or after `from`. */
  read(from: number, max: number): Promise<StoreRead>;
  /** Retained events with sequence numbers in `[from, to)`. */
  count(from: number, to: number): number;
  /** Bytes of the retained events with sequence numbers in `[from, to)`. */
  bytes(from: number, to: number): number;
  /** Drops what no consumer needs any more: events before `before` (whole segments, for files). */
  release(before: number): Promise<void>;
  /** Persists a consumer's cursor. */
  saveCursor(consumer: string, next: number): Promise<void>;
  /** Forgets a consumer's cursor. */
  deleteCursor(consumer: string): Promise<void>;
  /** Releases files; the data stays. */
  close(): Promise<void>;
  /** Deletes every file of the store (after `close`). */
  destroy(): Promise<void>;
}

// Compact the arrays once this many dropped entries sit at their head: amortised O(1) per event.
const COMPACT_AFTER = 4096;

/** Events kept in memory: bounded by the queue's cap, lost with the process. */
export class MemoryStore implements EventStore {
  readonly writeLimit = Number.POSITIVE_INFINITY;
  readonly cursors: ReadonlyMap<string, number> = new Map();
  readonly recovery: StoreRecovery = { segments: 0, events: 0, tornBytes: 0, resetCursors: [] };
  #events: QueuedEvent[] = [];
  // #offsets[i]: bytes appended before #events[i], so any range's size is one subtraction.
  #offsets: number[] = [];
  #head = 0;
  #start = 0;
  #totalBytes = 0;

  get start(): number {
    return this.#start;
  }

  get end(): number {
    return this.#start + this.#events.length - this.#head;
  }

  write(records: readonly EncodedEvent[]): Promise<void> {
    for (const record of records) {
      this.#events.push(record.event);
      this.#offsets.push(this.#totalBytes);
      this.#totalBytes += record.bytes;
    }
    return Promise.resolve();
  }

  read(from: number, max: number): Promise<StoreRead> {
    const first = Math.max(from, this.#start);
    const last = Math.min(first + max, this.end);
    const index = this.#head + first - this.#start;
    const events = this.#events.slice(index, index + Math.max(last - first, 0));
    return Promise.resolve({ events, end: Math.max(last, from), corrupt: [] });
  }

  count(from: number, to: number): number {
    return Math.max(this.#clamp(to) - this.#clamp(from), 0);
  }

  bytes(from: number, to: number): number {
    return Math.max(this.#offsetOf(this.#clamp(to)) - this.#offsetOf(this.#clamp(from)), 0);
  }

  release(before: number): Promise<void> {
    const drop = this.#clamp(before) - this.#start;
    this.#head += drop;
    this.#start += drop;
    if (this.#head >= COMPACT_AFTER && this.#head * 2 >= this.#events.length) {
      this.#events = this.#events.slice(this.#head);
      this.#offsets = this.#offsets.slice(this.#head);
      this.#head = 0;
    }
    return Promise.resolve();
  }

  saveCursor(): Promise<void> {
    return Promise.resolve();
  }

  deleteCursor(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  destroy(): Promise<void> {
    const end = this.end;
    this.#events = [];
    this.#offsets = [];
    this.#head = 0;
    this.#start = end;
    return Promise.resolve();
  }

  #clamp(seq: number): number {
    return Math.min(Math.max(seq, this.#start), this.end);
  }

  #offsetOf(seq: number): number {
    return seq >= this.end
      ? this.#totalBytes
      : (this.#offsets[this.#head + seq - this.#start] ?? this.#totalBytes);
  }
}
