/**
 * `createBucket: true`: the bucket is made (with its retention) before the first write succeeds,
 * and again if it disappears; until then writes fail with the bucket error, so status says why.
 */
import type { QueuedEvent, StoredPoint } from '../../audit/stored-point.ts';
import type { AuditEvent } from '../../audit/types.ts';
import type { InfluxDestination } from './spec.ts';
import { OutputError, type PreparedWrite, type PreparingOutput } from '../types.ts';
import type { RequestSlots } from '../server-slots.ts';
import { BucketError, ensureBucket } from './buckets.ts';

/** Wraps an InfluxDB output so that its bucket exists before it writes. */
export class BucketCreatingOutput implements PreparingOutput {
  readonly kind = 'influxdb' as const;
  readonly target: string;
  readonly #output: PreparingOutput;
  readonly #destination: InfluxDestination;
  readonly #token: () => string | undefined;
  readonly #slots: RequestSlots | undefined;
  readonly #closing = new AbortController();
  #ready = false;

  constructor(
    output: PreparingOutput,
    destination: InfluxDestination,
    token: () => string | undefined,
    /** The server's request slots, shared with the writes; absent, checks are sent at once. */
    slots?: RequestSlots,
  ) {
    this.#output = output;
    this.target = output.target;
    this.#destination = destination;
    this.#token = token;
    this.#slots = slots;
  }

  pointOf(event: AuditEvent): StoredPoint | undefined {
    return this.#output.pointOf?.(event);
  }

  async write(events: readonly QueuedEvent[], signal?: AbortSignal): Promise<void> {
    await (await this.prepare(events)).send(signal);
  }

  async prepare(events: readonly QueuedEvent[]): Promise<PreparedWrite> {
    const prepared = await this.#output.prepare(events);
    return { count: prepared.count, send: (signal) => this.#send(prepared, signal) };
  }

  /** Aborts a bucket check or creation in flight, and closes the wrapped output. */
  close(): Promise<void> {
    this.#closing.abort();
    return this.#output.close();
  }

  async #send(prepared: PreparedWrite, signal: AbortSignal | undefined): Promise<void> {
    if (!this.#ready) await this.#ensureBucket(signal);
    try {
      await prepared.send(signal);
    } catch (err) {
      // Deleted since: create it again before the next attempt.
      if (err instanceof OutputError && err.code === 'NOT_FOUND') this.#ready = false;
      throw err;
    }
  }

  async #ensureBucket(signal: AbortSignal | undefined): Promise<void> {
    const abort =
      signal === undefined ? this.#closing.signal : AbortSignal.any([this.#closing.signal, signal]);
    try {
      await ensureBucket(this.#destination, this.#token(), { signal: abort, slots: this.#slots });
    } catch (err) {
      if (!(err instanceof BucketError)) throw err;
      throw new OutputError(
        // Never REJECTED: that would skip the events, and the data is not what is wrong.
        err.code === 'UNSUPPORTED' || err.code === 'REJECTED' ? 'REFUSED' : err.code,
        `cannot create bucket ${this.#destination.bucket}: ${err.message}`,
        { retryable: err.retryable, cause: err },
      );
    }
    this.#ready = true;
  }
}
