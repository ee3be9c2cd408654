/**
 * One sink's queue storage over the process's durable log: the `EventStore` the per-sink queue
 * (`../queue.ts`) runs on, so that its byte cap (the sink's budget), consumers, cursors and
 * waiting stay exactly those of the per-sink spool, while writes go to the shared log.
 */
import type { QueuedEvent } from '../../audit/stored-point.ts';
import type { EncodedEvent } from '../format.ts';
import type { EventStore, StoreRead, StoreRecovery } from '../store.ts';
import type { DurableLog, LogStreamState } from './log.ts';

/** A stream of the log seen as one queue's store. */
export class LogStream implements EventStore {
  readonly writeLimit = Number.POSITIVE_INFINITY;
  readonly cursors: ReadonlyMap<string, number>;
  readonly recovery: StoreRecovery;
  readonly #log: DurableLog;
  readonly #stream: LogStreamState;
  #closed = false;

  constructor(log: DurableLog, stream: LogStreamState) {
    this.#log = log;
    this.#stream = stream;
    const cursors = new Map<string, number>();
    for (const [consumer, position] of stream.cursors) {
      cursors.set(consumer, Math.max(stream.index.seqOf(position), stream.index.start));
    }
    this.cursors = cursors;
    this.recovery = {
      segments: log.recovery.segments,
      events: stream.index.end - stream.index.start,
      tornBytes: log.recovery.tornBytes,
      resetCursors: stream.reset,
    };
  }

  /** The stream's key in the log. */
  get key(): string {
    return this.#stream.key;
  }

  get start(): number {
    return this.#stream.index.start;
  }

  get end(): number {
    return this.#stream.index.end;
  }

  write(records: readonly EncodedEvent[]): Promise<void> {
    if (records.length === 0) return Promise.resolve();
    return this.#log.append(this.#stream, records);
  }

  async read(from: number, max: number): Promise<StoreRead> {
    const index = this.#stream.index;
    let seq = Math.max(from, index.start);
    const last = Math.min(seq + max, index.end);
    const events: QueuedEvent[] = [];
    const corrupt: number[] = [];
    while (seq < last) {
      const entry = index.entryOf(seq);
      // Released while this read waited (every consumer passed it): nothing is lost.
      if (entry === undefined) break;
      const record = await this.#log.record(entry.record);
      // Released or relocated while this read waited, its old record deleted: look again.
      if (record === null && index.entryOf(seq) !== entry) continue;
      const stop = Math.min(last, entry.first + entry.selection.length);
      for (; seq < stop; seq++) {
        const event = record?.event(entry.selection[seq - entry.first] as number) ?? null;
        if (event === null) corrupt.push(seq);
        else events.push(event);
      }
      if (record !== null && seq === entry.first + entry.selection.length) {
        this.#log.readThrough(entry.record, record);
      }
    }
    return { events, end: Math.max(seq, from), corrupt };
  }

  count(from: number, to: number): number {
    const index = this.#stream.index;
    const clamp = (seq: number): number => Math.min(Math.max(seq, index.start), index.end);
    return Math.max(clamp(to) - clamp(from), 0);
  }

  bytes(from: number, to: number): number {
    const index = this.#stream.index;
    return Math.max(index.offsetOf(to) - index.offsetOf(from), 0);
  }

  async release(before: number): Promise<void> {
    const pin = this.#stream.index.pin;
    this.#stream.index.release(before);
    if (this.#stream.index.pin !== pin) await this.#log.released(pin, this.#stream.index.pin);
  }

  saveCursor(consumer: string, next: number): Promise<void> {
    return this.#log.saveCursor(this.#stream, consumer, this.#stream.index.positionOf(next));
  }

  deleteCursor(consumer: string): Promise<void> {
    return this.#log.deleteCursor(this.#stream, consumer);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#log.closeStream(this.#stream);
  }

  async destroy(): Promise<void> {
    this.#closed = true;
    await this.#log.dropStream(this.#stream);
  }
}
