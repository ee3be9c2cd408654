/**
 * One stream's (sink's) view of the log, in memory: which records hold its events, which of their
 * events it keeps and their sizes. A stream numbers its events consecutively from 0 at open (the
 * queue's sequence numbers); these numbers live only in memory, positions on disk are
 * `[record, passed]` (see `format.ts`), so a restart can renumber freely.
 *
 * Pure: no I/O.
 */
import type { LogPosition } from './format.ts';

/** The events of one record a stream keeps. */
export interface StreamEntry {
  readonly record: number;
  /** Stream sequence number of the entry's first event. */
  readonly first: number;
  /** Indexes of the kept events among the record's events, in order. */
  readonly selection: Uint32Array;
  /**
   * The record's event sizes summed: `starts[i]` bytes of its events come before event `i`, one
   * more entry for the total. One table per record, shared by every stream's entry of it.
   */
  readonly starts: Float64Array;
  /** Bytes of the kept events. */
  readonly bytes: number;
  /** Bytes of the stream's events before this entry. */
  readonly before: number;
}

/**
 * `starts` of a record whose events take `sizes` bytes each: what {@link StreamIndex.add} takes
 * for every stream's share of it.
 */
export function eventStarts(sizes: ArrayLike<number>): Float64Array {
  const starts = new Float64Array(sizes.length + 1);
  let total = 0;
  for (let i = 0; i < sizes.length; i++) {
    starts[i] = total;
    total += sizes[i] as number;
  }
  starts[sizes.length] = total;
  return starts;
}

/**
 * Bytes of the first `k` events of `selection` in a record with `starts`. A run of consecutive
 * events (one sink's whole batch) is one subtraction; a scattered selection (a tenant's few
 * events) adds its events up.
 */
function keptBytes(selection: Uint32Array, starts: Float64Array, k: number): number {
  if (k <= 0) return 0;
  const first = selection[0] as number;
  // Increasing indexes: the first k are consecutive exactly when they span k.
  if ((selection[k - 1] as number) - first === k - 1) {
    return (starts[first + k] as number) - (starts[first] as number);
  }
  let total = 0;
  for (let j = 0; j < k; j++) {
    const i = selection[j] as number;
    total += (starts[i + 1] as number) - (starts[i] as number);
  }
  return total;
}

/**
 * The selection `[index]`, one instance per index for the whole process: most shares of a tenant
 * among hundreds hold a single event of a record, and a typed array of its own (with the buffer
 * behind it, about 200 bytes) for each of them was most of what the indexes took. Never written to.
 */
export function singleSelection(index: number): Uint32Array {
  if (index >= MAX_SINGLES) return Uint32Array.of(index);
  // Filled in order, never with holes: V8 keeps the array's elements in one flat store.
  while (SINGLES.length <= index) SINGLES.push(undefined);
  let selection = SINGLES[index];
  if (selection === undefined) {
    selection = Uint32Array.of(index);
    SINGLES[index] = selection;
  }
  return selection;
}

// A record holds the batches of one group commit: a few thousand events at most, in practice.
const MAX_SINGLES = 65_536;
const SINGLES: (Uint32Array | undefined)[] = [];

/** `selection`, or the shared instance of it when it holds one event. */
function compact(selection: Uint32Array): Uint32Array {
  return selection.length === 1 ? singleSelection(selection[0] as number) : selection;
}

// Compact the array once this many dropped entries sit at its head: amortised O(1) per entry.
const COMPACT_AFTER = 1024;

/** The records holding a stream's retained events, in order. */
export class StreamIndex {
  #entries: StreamEntry[] = [];
  #head = 0;
  #start = 0;
  #end = 0;
  #bytes = 0;
  // The last entry ever added (kept after it is released): the position of the stream's end.
  #last: LogPosition = [0, 0];

  /** Sequence number of the first retained event (`end` when none is retained). */
  get start(): number {
    return this.#start;
  }

  /** Sequence number the next event gets. */
  get end(): number {
    return this.#end;
  }

  /** The first record this stream still needs, or Infinity when it needs none. */
  get pin(): number {
    return this.#entries[this.#head]?.record ?? Number.POSITIVE_INFINITY;
  }

  /** Bytes of the retained events: what the stream's slowest consumer has yet to pass. */
  get retainedBytes(): number {
    return this.#bytes - this.offsetOf(this.#start);
  }

  /**
   * Adds the stream's share of a record written after every one added before: the indexes of the
   * events it keeps, and the record's {@link eventStarts}.
   */
  add(record: number, selection: Uint32Array, starts: Float64Array): void {
    const count = selection.length;
    if (count === 0) return;
    const entry = entryOf(record, this.#end, compact(selection), starts, this.#bytes);
    this.#entries.push(entry);
    this.#end += count;
    this.#bytes += entry.bytes;
    this.#last = [record, count];
  }

  /** The entry holding sequence number `seq`, or undefined when none is retained. */
  entryOf(seq: number): StreamEntry | undefined {
    const i = this.#find(seq);
    return i === -1 ? undefined : this.#entries[i];
  }

  /** Bytes of the stream's events before sequence number `seq` (clamped to what is retained). */
  offsetOf(seq: number): number {
    if (seq >= this.#end) return this.#bytes;
    const i = this.#find(Math.max(seq, this.#start));
    const entry = this.#entries[i];
    if (entry === undefined) return this.#bytes;
    return (
      entry.before +
      keptBytes(entry.selection, entry.starts, Math.max(seq, this.#start) - entry.first)
    );
  }

  /** Drops everything before sequence number `before` (whole entries; a partial one stays). */
  release(before: number): void {
    this.#start = Math.max(this.#start, Math.min(before, this.#end));
    while (this.#head < this.#entries.length) {
      const entry = this.#entries[this.#head] as StreamEntry;
      if (entry.first + entry.selection.length > this.#start) break;
      this.#entries[this.#head] = undefined as unknown as StreamEntry;
      this.#head++;
    }
    if (this.#head === this.#entries.length) {
      this.#entries = [];
      this.#head = 0;
    } else if (this.#head >= COMPACT_AFTER && this.#head * 2 >= this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
  }

  /** The retained entries, oldest first (a copy of the list; the entries themselves are frozen). */
  retained(): readonly StreamEntry[] {
    return this.#entries.slice(this.#head);
  }

  /**
   * Points the stream at copies of its events in other records (a relocation): `added` holds, in
   * order, every event from sequence number `from` (whose byte offset is `fromBytes`) to the end.
   * Sequence numbers and byte offsets stay as they were, so queues and budgets do not notice;
   * what consumers passed meanwhile is released again.
   */
  relocate(
    from: number,
    fromBytes: number,
    added: readonly { record: number; selection: Uint32Array; starts: Float64Array }[],
  ): void {
    const entries: StreamEntry[] = [];
    let first = from;
    let before = fromBytes;
    for (const { record, selection, starts } of added) {
      if (selection.length === 0) continue;
      const entry = entryOf(record, first, compact(selection), starts, before);
      entries.push(entry);
      first += selection.length;
      before += entry.bytes;
    }
    if (first !== this.#end || before !== this.#bytes) {
      throw new RangeError(
        `relocated events ${from}..${first} (${before} bytes) do not end where the stream does (${this.#end}, ${this.#bytes} bytes)`,
      );
    }
    const last = entries.at(-1);
    if (last !== undefined) this.#last = [last.record, last.selection.length];
    this.#entries = entries;
    this.#head = 0;
    this.release(this.#start);
  }

  /** Forgets everything (the stream was deleted). */
  clear(): void {
    this.release(this.#end);
  }

  /** The durable position of sequence number `seq`. */
  positionOf(seq: number): LogPosition {
    if (seq >= this.#end) return this.#last;
    const entry = this.entryOf(Math.max(seq, this.#start));
    if (entry === undefined) return this.#last;
    return [entry.record, Math.max(seq, this.#start) - entry.first];
  }

  /** The sequence number a durable position stands for. */
  seqOf(position: LogPosition): number {
    const [record, passed] = position;
    const entry = this.#entries[this.#firstAtOrAfter(record)];
    if (entry === undefined) return this.#end;
    return entry.record === record
      ? entry.first + Math.min(passed, entry.selection.length)
      : entry.first;
  }

  /** Whether a retained entry lies in records `[from, to)`. */
  holds(from: number, to: number): boolean {
    const entry = this.#entries[this.#firstAtOrAfter(from)];
    return entry !== undefined && entry.record < to;
  }

  /** Index in #entries of the first retained entry whose record is at or after `record`. */
  #firstAtOrAfter(record: number): number {
    let lo = this.#head;
    let hi = this.#entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#entries[mid] as StreamEntry).record < record) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index in #entries of the entry holding `seq`, or -1. */
  #find(seq: number): number {
    let lo = this.#head;
    let hi = this.#entries.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const entry = this.#entries[mid] as StreamEntry;
      if (seq < entry.first) hi = mid - 1;
      else if (seq >= entry.first + entry.selection.length) lo = mid + 1;
      else return mid;
    }
    return -1;
  }
}

function entryOf(
  record: number,
  first: number,
  selection: Uint32Array,
  starts: Float64Array,
  before: number,
): StreamEntry {
  const bytes = keptBytes(selection, starts, selection.length);
  return { record, first, selection, starts, bytes, before };
}
