/**
 * What every output (InfluxDB, webhook, line-protocol file) offers the delivery loop, and how it
 * says what should happen after a failure.
 */
import { type QueuedEvent, StoredPoint } from '../audit/stored-point.ts';
import type { AuditEvent } from '../audit/types.ts';
import type { DestinationName } from './kinds.ts';

/** The outputs a sink can deliver to: its destinations, or the embedded line-protocol file. */
export type OutputKind = DestinationName | 'file';

/** One destination of one sink. */
export interface Output {
  readonly kind: OutputKind;
  /** Where it writes, for status and logs; never contains credentials. */
  readonly target: string;
  /**
   * How many batches the delivery loop may write at once (1 when absent): more than one only for a
   * destination where the order of writes does not matter and a batch written twice is harmless.
   * Backlogged, the loop writes the next full batch while the last one is still in flight.
   */
  readonly writesInFlight?: number;
  /**
   * Delivers a batch. Resolves once the destination has it; a retried batch must be harmless
   * (InfluxDB overwrites identical points; webhook receivers see the same auditIDs again).
   * `signal` aborts the write and every wait inside it (the end of the shutdown grace period):
   * it then rejects promptly, and whether the destination got the batch is unknown.
   *
   * An output without {@link pointOf} refuses a point among the events (`UNENCODABLE`): one that
   * was made for the sink's InfluxDB destination before this output was added to the sink.
   *
   * @throws OutputError saying whether a retry can help.
   */
  write(events: readonly QueuedEvent[], signal?: AbortSignal): Promise<void>;
  /**
   * Encodes a batch for its destination without sending it, for outputs whose encoding is much
   * smaller than the events (InfluxDB's line protocol): the delivery loop then lets the events go
   * while the destination stores the batch, and a retry sends the same encoding again. `write` is
   * `prepare` then `send`.
   *
   * @throws OutputError `UNENCODABLE` when an event cannot be encoded.
   */
  prepare?(events: readonly QueuedEvent[]): Promise<PreparedWrite>;
  /**
   * The point this output writes for `event`, made when the event is queued, for a sink whose only
   * output this is: the sink's queue then stores the point in the event's place and the output
   * writes it as it is (ADR 0027). Undefined when the event cannot be encoded (it is stored as an
   * event, and isolated at delivery) or its line holds a line break (the log frames lines by
   * them). Outputs that send events, not points, have none.
   */
  pointOf?(event: AuditEvent): StoredPoint | undefined;
  /** Aborts writes in flight (their batches stay queued), releases connections and files. */
  close(): Promise<void>;
}

/** A batch encoded by {@link Output.prepare}, holding no events. */
export interface PreparedWrite {
  /** How many events it carries. */
  readonly count: number;
  /**
   * Delivers it, as {@link Output.write} would; may be called again after a failure.
   *
   * @throws OutputError as `write` does, `REJECTED` included (the events are not known here: the
   * caller reads them again to isolate the refused ones).
   */
  send(signal?: AbortSignal): Promise<void>;
}

/** An output that encodes before it sends. */
export interface PreparingOutput extends Output {
  prepare(events: readonly QueuedEvent[]): Promise<PreparedWrite>;
}

/**
 * The events of a batch for an output that sends events: a point among them (made for the sink's
 * InfluxDB destination before this output was added to the sink) cannot be sent, and is refused
 * as unencodable, so that the delivery loop isolates it and keeps it as a dead letter.
 *
 * @throws OutputError `UNENCODABLE` when `events` holds a point.
 */
export function eventsOnly(events: readonly QueuedEvent[], target: string): readonly AuditEvent[] {
  for (const event of events) {
    if (event instanceof StoredPoint) {
      throw new OutputError(
        'UNENCODABLE',
        `${target}: event ${JSON.stringify(event.auditID.slice(0, 100))} was queued as a line-protocol point, before this destination was added to the sink`,
        { retryable: false },
      );
    }
  }
  return events as readonly AuditEvent[];
}

/** Why an output failed; stable, for status reasons and metrics labels. */
export type OutputErrorCode =
  | 'UNREACHABLE'
  | 'TIMEOUT'
  | 'THROTTLED'
  | 'SERVER_ERROR'
  | 'UNAUTHORIZED'
  | 'NOT_FOUND'
  /** The destination refuses the data itself (400, 422). */
  | 'REJECTED'
  /** The output cannot represent an event (it was never checked on receipt). */
  | 'UNENCODABLE'
  | 'REFUSED'
  | 'IO_ERROR';

/** A failed delivery, typed by what should happen next. */
export class OutputError extends Error {
  override readonly name = 'OutputError';
  readonly code: OutputErrorCode;
  /**
   * Whether retrying soon can succeed (network errors, 429, 5xx). Permanent failures (bad token,
   * missing bucket, rejected data) wait for a configuration change instead of a hot retry loop.
   */
  readonly retryable: boolean;
  /** The server's Retry-After, when it sent one. */
  readonly retryAfterMs: number | undefined;

  constructor(
    code: OutputErrorCode,
    message: string,
    options: { retryable: boolean; retryAfterMs?: number; cause?: unknown },
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable;
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Classifies an HTTP status the way the InfluxDB and webhook outputs both need. */
export function errorForStatus(
  status: number,
  message: string,
  retryAfterMs?: number,
): OutputError {
  const options = retryAfterMs === undefined ? {} : { retryAfterMs };
  if (status === 401 || status === 403) {
    return new OutputError('UNAUTHORIZED', message, { retryable: false, ...options });
  }
  if (status === 404)
    return new OutputError('NOT_FOUND', message, { retryable: false, ...options });
  if (status === 408) return new OutputError('TIMEOUT', message, { retryable: true, ...options });
  if (status === 429) return new OutputError('THROTTLED', message, { retryable: true, ...options });
  if (status >= 500)
    return new OutputError('SERVER_ERROR', message, { retryable: true, ...options });
  // Only a refusal of the data itself (400, 422) lets delivery set events aside; anything else (a
  // redirect, 413, 405...) is a configuration problem that must keep the events queued.
  if (status === 400 || status === 422) {
    return new OutputError('REJECTED', message, { retryable: false, ...options });
  }
  return new OutputError('REFUSED', message, { retryable: false, ...options });
}
