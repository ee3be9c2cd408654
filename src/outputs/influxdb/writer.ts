/**
 * The InfluxDB output of one sink: encodes a batch as line protocol and POSTs it to the v2 write
 * API (`/api/v2/write`, precision ns) with @influxdata/influxdb-client's HTTP transport. Works with
 * InfluxDB 2.x, 3.x, Cloud and 1.8+ (bucket `database/retention-policy`, token `user:password`).
 *
 * The client's WriteApi is not used: it buffers lines, retries on its own timer and logs, and the
 * part of a batch that overflows its buffer is sent in the background with any error swallowed.
 * Here one `write` is one request (or a few, for a huge batch) whose outcome is the promise's: the
 * delivery loop owns retries and the durable queue (docs/adr/0008-influxdb-output.md).
 */
import { InfluxDB } from '@influxdata/influxdb-client';
import { type QueuedEvent, StoredPoint } from '../../audit/stored-point.ts';
import type { AuditEvent } from '../../audit/types.ts';
import type { InfluxDestination } from './spec.ts';
import { OutputError, type PreparedWrite, type PreparingOutput } from '../types.ts';
import { LINE_PROTOCOL_ENCODING } from '../turn-budget.ts';
import { influxRequest } from './http.ts';
import { LineProtocolEncoder, type PointTimestamps } from './line-protocol.ts';
import type { RequestSlots } from '../server-slots.ts';

/**
 * Reads the current token (from the sink's Secret) for every request, so a rotated Secret is used
 * from the next write on; undefined sends no Authorization header.
 */
export type TokenProvider = () => string | undefined;

/** Tuning of one InfluxDB output; the defaults suit production. */
export interface InfluxOutputOptions {
  /**
   * Deadline of one request, from connecting to the answer. 10 s: the client library's default,
   * and influxd's own `--http-write-timeout`.
   */
  readonly timeoutMs?: number;
  /**
   * Bodies larger than this are gzipped. 64 KiB, not the client library's 1,000 bytes: every
   * gzipped body costs a zlib stream of its own, and with a thousand tenants each writing a few
   * points a second that was a tenth of the process's CPU (profile of the 1,000-sink bench) for
   * bodies of a few KiB; a 400-event batch (hundreds of KiB) is still compressed.
   */
  readonly gzipThreshold?: number;
  /**
   * Largest request body; a larger batch is split into several requests. 50 MB: InfluxDB Cloud's
   * limit, and the client library's default.
   */
  readonly maxRequestBytes?: number;
  /** The sub-microsecond slots to use (by default the encoder's own). */
  readonly timestamps?: PointTimestamps;
  /**
   * The slots of the destination's server, shared with every output writing there (the
   * process's `ServerSlots`); absent, requests are sent at once.
   */
  readonly slots?: RequestSlots;
}

/** The defaults of {@link InfluxOutputOptions}. */
export const INFLUX_OUTPUT_DEFAULTS = Object.freeze({
  timeoutMs: 10_000,
  gzipThreshold: 64 * 1024,
  maxRequestBytes: 50_000_000,
});

/** A place for status and logs: host and path, org and bucket; never credentials. */
export function influxTarget(destination: InfluxDestination): string {
  const url = new URL(destination.url);
  // origin and pathname leave out user info, which is a credential.
  const base = `${url.origin}${url.pathname.replace(/\/$/, '')}`;
  return `${base} org=${destination.org} bucket=${destination.bucket}`;
}

/** Writes a sink's events to its InfluxDB bucket; a resolved write is stored by the server. */
export class InfluxOutput implements PreparingOutput {
  readonly kind = 'influxdb' as const;
  readonly target: string;
  /**
   * Two: points carry their own time and an identical point overwrites itself, so order does not
   * matter and a retry is harmless; a backlog then drains while the server stores the last batch
   * (ADR 0022).
   */
  readonly writesInFlight = 2;
  readonly #client: InfluxDB;
  readonly #path: string;
  readonly #encoder: LineProtocolEncoder;
  readonly #token: TokenProvider;
  readonly #timeoutMs: number;
  readonly #gzipThreshold: number;
  readonly #maxRequestBytes: number;
  readonly #slots: RequestSlots | undefined;
  readonly #closing = new AbortController();

  /** `sink` is the sink's label, the value of the `sink` tag. */
  constructor(
    destination: InfluxDestination,
    sink: string,
    token: TokenProvider,
    options: InfluxOutputOptions = {},
  ) {
    this.target = influxTarget(destination);
    this.#timeoutMs = options.timeoutMs ?? INFLUX_OUTPUT_DEFAULTS.timeoutMs;
    this.#gzipThreshold = options.gzipThreshold ?? INFLUX_OUTPUT_DEFAULTS.gzipThreshold;
    this.#maxRequestBytes = options.maxRequestBytes ?? INFLUX_OUTPUT_DEFAULTS.maxRequestBytes;
    this.#slots = options.slots;
    // No token here: the transport would keep it for its lifetime; it is sent per request.
    this.#client = new InfluxDB({ url: destination.url, timeout: this.#timeoutMs });
    this.#path =
      `/api/v2/write?org=${encodeURIComponent(destination.org)}` +
      `&bucket=${encodeURIComponent(destination.bucket)}&precision=ns`;
    this.#encoder = new LineProtocolEncoder(
      {
        measurement: destination.measurement,
        tags: destination.tags,
        staticTags: destination.staticTags,
        sink,
        ...(destination.fields === undefined ? {} : { fields: destination.fields }),
      },
      options.timestamps,
    );
    this.#token = token;
  }

  pointOf(event: AuditEvent): StoredPoint | undefined {
    return this.#encoder.point(event);
  }

  async write(events: readonly QueuedEvent[], signal?: AbortSignal): Promise<void> {
    await (await this.prepare(events)).send(signal);
  }

  /**
   * The batch as line protocol, in bodies of at most maxRequestBytes, to send once or, after a
   * failure, again: a batch's bodies are about a third of the size of its events as objects.
   */
  async prepare(events: readonly QueuedEvent[]): Promise<PreparedWrite> {
    this.#refuseIfClosed();
    const bodies = await this.#bodies(events);
    return { count: events.length, send: (signal) => this.#send(bodies, signal) };
  }

  /** Aborts requests in flight (their batches stay queued) and refuses further writes. */
  close(): Promise<void> {
    this.#closing.abort();
    return Promise.resolve();
  }

  #refuseIfClosed(): void {
    if (this.#closing.signal.aborted) {
      throw new OutputError('UNREACHABLE', `${this.target}: the output is closed`, {
        retryable: true,
      });
    }
  }

  async #send(bodies: readonly string[], signal: AbortSignal | undefined): Promise<void> {
    this.#refuseIfClosed();
    const abort =
      signal === undefined ? this.#closing.signal : AbortSignal.any([this.#closing.signal, signal]);
    for (const body of bodies) await this.#post(body, abort);
  }

  /**
   * Encodes the events into bodies of at most maxRequestBytes, points as they were made. Encoding
   * takes its events from the process's {@link LINE_PROTOCOL_ENCODING} budget, so that neither a
   * large batch nor many sinks flushing together hold up the receiver's answers for long.
   */
  async #bodies(events: readonly QueuedEvent[]): Promise<string[]> {
    const bodies: string[] = [];
    let body = '';
    let bytes = 0;
    for (const event of events) {
      if (!(event instanceof StoredPoint)) {
        const wait = LINE_PROTOCOL_ENCODING.take();
        if (wait !== undefined) await wait;
      }
      const line = this.#encoder.lineOf(event);
      const size = Buffer.byteLength(line);
      if (body !== '' && bytes + size + 1 > this.#maxRequestBytes) {
        bodies.push(body);
        body = '';
        bytes = 0;
      }
      body += body === '' ? line : `\n${line}`;
      bytes += size + 1;
    }
    if (body !== '') bodies.push(body);
    return bodies;
  }

  async #post(body: string, signal: AbortSignal): Promise<void> {
    let token: string | undefined;
    try {
      token = this.#token();
    } catch (err) {
      // A Secret that cannot be read is a configuration problem: re-checked, not retried hot.
      throw new OutputError('UNAUTHORIZED', `${this.target}: cannot read the token`, {
        retryable: false,
        cause: err,
      });
    }
    await influxRequest(this.#client, this.target, {
      method: 'POST',
      path: this.#path,
      body,
      contentType: 'text/plain; charset=utf-8',
      token,
      timeoutMs: this.#timeoutMs,
      gzipThreshold: this.#gzipThreshold,
      signal,
      slots: this.#slots,
    });
  }
}
