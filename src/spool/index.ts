/**
 * The per-sink queue between the receiver and the outputs (SPEC 4.4): bounded (the receiver turns
 * a full queue into 429), one cursor per output, and, with a data directory, durable: an event
 * whose append resolved survives outputs being down, SIGTERM and SIGKILL. Format and recovery are
 * described in `format.ts` and `segments.ts`.
 */
export { QueueError, type QueueErrorCode, QueueFullError } from './errors.ts';
export {
  DEFAULT_RETRY_AFTER_SECONDS,
  DEFAULT_SEGMENT_BYTES,
  openQueue,
  timerDelay,
} from './queue.ts';
export { encodedAs, encodeEvent, type SharedEncodings } from './format.ts';
export type {
  Delay,
  QueueBatch,
  QueueConsumer,
  QueueOptions,
  QueueRecovery,
  QueueStats,
  SinkQueue,
} from './types.ts';
