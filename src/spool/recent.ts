/**
 * The events a durable store wrote last, kept in memory so that consumers who keep up (the usual
 * case) read them back without reading and decoding the segment file. What is cached is exactly
 * what was written: events are immutable once routed. Reads the cache cannot serve go to disk.
 *
 * Memory is bounded twice: per store, and across every store of the process (many sinks, each with
 * a backlog, must not add up). A write that does not fit starts the cache over after it.
 */
import type { QueuedEvent } from '../audit/stored-point.ts';
import type { EncodedEvent } from './format.ts';

/** Serialized bytes the caches of one process may hold together. */
export const PROCESS_CACHE_BYTES = 32 * 1024 * 1024;

/** Serialized bytes one store's cache may hold. */
export const STORE_CACHE_BYTES = 8 * 1024 * 1024;

// Compact the arrays once this many dropped entries sit at their head: amortised O(1) per event.
const COMPACT_AFTER = 1024;

/** Bytes held by every cache of the process. */
let processBytes = 0;

/** The cached events of one store: a contiguous run of sequence numbers ending at its end. */
export class RecentRecords {
  readonly #limit: number;
  #events: QueuedEvent[] = [];
  #sizes: number[] = [];
  #head = 0;
  // Sequence number of #events[#head].
  #start = 0;
  #bytes = 0;

  constructor(limit = STORE_CACHE_BYTES) {
    this.#limit = limit;
  }

  /** Bytes held by every cache of the process (for tests and metrics). */
  static get processBytes(): number {
    return processBytes;
  }

  /** Bytes this cache holds. */
  get bytes(): number {
    return this.#bytes;
  }

  get #end(): number {
    return this.#start + this.#events.length - this.#head;
  }

  /** Records `records`, just written as sequence numbers `first` on. */
  add(first: number, records: readonly EncodedEvent[]): void {
    let bytes = 0;
    for (const record of records) bytes += record.bytes;
    if (first !== this.#end) this.clear();
    // Make room by forgetting the oldest events, which a consumer keeping up no longer needs.
    this.#dropOldest(bytes);
    if (this.#bytes + bytes > this.#limit || processBytes + bytes > PROCESS_CACHE_BYTES) {
      // Does not fit: the cache restarts after this write, so that it stays contiguous.
      this.clear();
      this.#start = first + records.length;
      return;
    }
    if (this.#events.length === this.#head) this.#start = first;
    for (const record of records) {
      this.#events.push(record.event);
      this.#sizes.push(record.bytes);
    }
    this.#bytes += bytes;
    processBytes += bytes;
  }

  /**
   * Up to `max` events from sequence number `from` on, if the cache holds `from` and everything
   * after it up to the store's end; null otherwise (read the file).
   */
  read(from: number, max: number): QueuedEvent[] | null {
    if (from < this.#start || from >= this.#end) return null;
    const index = this.#head + from - this.#start;
    return this.#events.slice(index, index + max);
  }

  /** Forgets everything before sequence number `before`. */
  release(before: number): void {
    while (this.#head < this.#events.length && this.#start < before) this.#shift();
    this.#compact();
  }

  /** Forgets everything. */
  clear(): void {
    processBytes -= this.#bytes;
    this.#bytes = 0;
    this.#start = this.#end;
    this.#events = [];
    this.#sizes = [];
    this.#head = 0;
  }

  #dropOldest(incoming: number): void {
    while (
      this.#head < this.#events.length &&
      (this.#bytes + incoming > this.#limit || processBytes + incoming > PROCESS_CACHE_BYTES)
    ) {
      this.#shift();
    }
    this.#compact();
  }

  #shift(): void {
    const size = this.#sizes[this.#head] as number;
    this.#events[this.#head] = undefined as unknown as QueuedEvent;
    this.#head++;
    this.#start++;
    this.#bytes -= size;
    processBytes -= size;
  }

  #compact(): void {
    if (this.#head === this.#events.length) {
      this.#events = [];
      this.#sizes = [];
      this.#head = 0;
    } else if (this.#head >= COMPACT_AFTER && this.#head * 2 >= this.#events.length) {
      this.#events = this.#events.slice(this.#head);
      this.#sizes = this.#sizes.slice(this.#head);
      this.#head = 0;
    }
  }
}
