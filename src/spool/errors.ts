/**
 * Errors of the per-sink queue, typed by what the caller should do next: retry later (full),
 * stop using this queue (closed), or report and retry the request elsewhere (I/O).
 */

/** Why a queue operation failed; stable, for the receiver's status mapping and metrics. */
export type QueueErrorCode =
  /** The batch would take the queue over `maxBytes`: answer 429 and let the client retry. */
  | 'QUEUE_FULL'
  /** The queue is closing or closed (shutdown, sink deleted): answer 503. */
  | 'QUEUE_CLOSED'
  /** Reading or writing the data directory failed: answer 503; nothing of the batch was acknowledged. */
  | 'QUEUE_IO'
  /** The data directory is already open in this process: a wiring bug, never retried. */
  | 'QUEUE_IN_USE'
  /** The data directory holds files this version cannot have written (overlapping segments). */
  | 'QUEUE_CORRUPT';

/** A failed queue operation. */
export class QueueError extends Error {
  override readonly name: string = 'QueueError';
  /** Stable error code. */
  readonly code: QueueErrorCode;

  constructor(code: QueueErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
  }
}

/** An append refused because it would exceed the queue's byte cap; nothing of it was written. */
export class QueueFullError extends QueueError {
  override readonly name = 'QueueFullError';
  override readonly code = 'QUEUE_FULL';
  /** Seconds the client should wait before retrying (the receiver's `Retry-After`). */
  readonly retryAfterSeconds: number;

  constructor(message: string, retryAfterSeconds: number) {
    super('QUEUE_FULL', message);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}
