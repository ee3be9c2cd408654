/**
 * What the data path tells the log: why a destination's delivery loop retries (at warn, once when
 * a failure starts or changes and then at most once a minute while it lasts; at info when it
 * recovers), and every event set aside as a dead letter (at warn, by auditID: event contents and
 * credentials never reach the log).
 */
import type { Output } from '../outputs/types.ts';
import type { DeadLetter } from '../sinks/dead-letter.ts';
import type { SinkObserver } from '../sinks/registry.ts';
import type { Sink } from '../sinks/types.ts';
import type { Logger } from './logger.ts';

/** How often a failure that goes on is logged again. */
export const REPEAT_FAILURE_LOG_MS = 60_000;

/** Auditing IDs named in one dead-letter line; the count says how many there were. */
const IDS_PER_LINE = 20;

interface Streak {
  code: string;
  since: number;
  loggedAt: number;
  attempts: number;
}

/** Logs delivery failures, recoveries and dead letters of every sink. */
export class SinkLog implements SinkObserver {
  readonly #log: Logger;
  readonly #now: () => number;
  // The failure each output is in, by `<sink key> <output kind>`.
  readonly #streaks = new Map<string, Streak>();

  constructor(log: Logger, now: () => number = Date.now) {
    this.#log = log;
    this.#now = now;
  }

  failed(sink: Sink, output: Output, error: Error, count: number, attempt: number): void {
    const code = 'code' in error && typeof error.code === 'string' ? error.code : 'UNKNOWN';
    // A refusal of single events is logged with its dead letters, not as a failing destination.
    if (code === 'REJECTED' || code === 'UNENCODABLE') return;
    const key = `${sink.key} ${output.kind}`;
    const now = this.#now();
    const streak = this.#streaks.get(key);
    if (streak !== undefined && streak.code === code) {
      streak.attempts++;
      if (now - streak.loggedAt < REPEAT_FAILURE_LOG_MS) return;
      streak.loggedAt = now;
    } else {
      this.#streaks.set(key, { code, since: now, loggedAt: now, attempts: 1 });
    }
    const retryable = 'retryable' in error && error.retryable === true;
    this.#log.warn(
      {
        sink: sink.key,
        output: output.kind,
        target: output.target,
        code,
        attempt,
        events: count,
        failingSeconds: Math.round((now - (streak?.since ?? now)) / 1000),
        err: { message: error.message },
      },
      retryable
        ? 'destination write failed; the events stay queued and are retried with backoff'
        : 'destination refuses writes; the events stay queued and the write is re-checked every minute',
    );
  }

  delivered(sink: Sink, output: Output): void {
    const key = `${sink.key} ${output.kind}`;
    const streak = this.#streaks.get(key);
    if (streak === undefined) return;
    this.#streaks.delete(key);
    this.#log.info(
      {
        sink: sink.key,
        output: output.kind,
        target: output.target,
        code: streak.code,
        attempts: streak.attempts,
        failingSeconds: Math.round((this.#now() - streak.since) / 1000),
      },
      'destination writes again',
    );
  }

  deadLettered(
    sink: Sink,
    output: Output,
    kept: readonly DeadLetter[],
    lost: readonly DeadLetter[],
    failure: Error | undefined,
  ): void {
    const all = [...kept, ...lost];
    const first = all[0];
    if (first === undefined) return;
    const ids = all.slice(0, IDS_PER_LINE).map((l) => String(l.event.auditID));
    const context = {
      sink: sink.key,
      output: output.kind,
      target: output.target,
      reason: first.reason,
      code: first.code,
      kept: kept.length,
      lost: lost.length,
      auditIDs: ids,
      err: { message: truncate(first.message, 500) },
    };
    if (lost.length === 0) {
      this.#log.warn(context, 'events refused by the destination were set aside as dead letters');
      return;
    }
    this.#log.error(
      { ...context, ...(failure === undefined ? {} : { storeError: failure.message }) },
      failure === undefined
        ? 'events refused by the destination could not be kept as dead letters (store full or no data directory) and are dropped'
        : 'events refused by the destination could not be kept as dead letters (store failed) and are dropped',
    );
  }
}

function truncate(text: string, length: number): string {
  return text.length <= length ? text : `${text.slice(0, length)}…`;
}
