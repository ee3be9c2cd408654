/**
 * Sink queues over the process's durable log (ADR 0019): {@link openLogQueue} gives a sink the
 * same `SinkQueue` as a per-sink spool, stored as a stream of the one log under the data
 * directory, and moves what an older version left in the sink's own spool into it.
 */
import { readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { QueueError } from '../errors.ts';
import { encodeEvent, parseCursorFileName, parseSegmentFileName } from '../format.ts';
import { DEFAULT_RETRY_AFTER_SECONDS, DEFAULT_SEGMENT_BYTES, openQueueOn } from '../queue.ts';
import { SegmentStore } from '../segments.ts';
import type { Delay, SinkQueue } from '../types.ts';
import { DurableLog, type LogObserver } from './log.ts';
import { LogStream } from './stream.ts';

export {
  DEFAULT_LOG_SEGMENT_BYTES,
  DEFAULT_RELOCATE_AFTER_BYTES,
  DurableLog,
  LOG_CACHE_BYTES,
  LOG_READ_HANDLES,
  type LogObserver,
  type LogOptions,
  type LogRecovery,
  type LogStats,
} from './log.ts';
export { LogStream } from './stream.ts';

/** How a sink's queue over the log is opened. */
export interface LogQueueOptions {
  /** The log's directory (`<data-dir>/log`), shared by every sink of the process. */
  readonly logDir: string;
  /** The sink's stream in the log. */
  readonly key: string;
  /** The sink's budget: bytes of its events not yet delivered to every destination. */
  readonly maxBytes: number;
  /** The sink's per-sink spool of an older version, moved into the log and then removed. */
  readonly legacyDir?: string;
  /** Fsync before acknowledging (default true). */
  readonly fsync?: boolean;
  readonly segmentBytes?: number;
  /** Log size past which laggards are relocated (ADR 0019); the log's default otherwise. */
  readonly relocateAfterBytes?: number;
  /** Bytes of records the log keeps in memory for reads; the log's default otherwise. */
  readonly readCacheBytes?: number;
  /**
   * The log's `onCacheGrowth`: the process's log is shared, so the first sink to open it sets
   * it; every sink of a process passes the same.
   */
  readonly onCacheGrowth?: (grown: boolean) => void;
  /** The log's observer (metrics); set by the first sink to open the log, as `onCacheGrowth`. */
  readonly observer?: LogObserver;
  readonly retryAfterSeconds?: number;
  readonly delay?: Delay;
}

// The open log of each directory: every sink of the process shares it.
const logs = new Map<string, Promise<DurableLog>>();

function sharedLog(options: LogQueueOptions): Promise<DurableLog> {
  const dir = resolve(options.logDir);
  const previous = logs.get(dir);
  // Chained on the previous opening, so that concurrent callers share one log.
  const opening = (async () => {
    const current = await previous?.catch(() => null);
    if (current !== undefined && current !== null) {
      if (!current.closed) return current;
      // Closed with its last stream: let it finish before opening the directory again.
      await current.close();
    }
    return DurableLog.open({
      dir,
      ...(options.fsync === undefined ? {} : { fsync: options.fsync }),
      ...(options.segmentBytes === undefined ? {} : { segmentBytes: options.segmentBytes }),
      ...(options.relocateAfterBytes === undefined
        ? {}
        : { relocateAfterBytes: options.relocateAfterBytes }),
      ...(options.readCacheBytes === undefined ? {} : { readCacheBytes: options.readCacheBytes }),
      ...(options.onCacheGrowth === undefined ? {} : { onCacheGrowth: options.onCacheGrowth }),
      ...(options.observer === undefined ? {} : { observer: options.observer }),
    });
  })();
  logs.set(dir, opening);
  opening.catch(() => {
    if (logs.get(dir) === opening) logs.delete(dir);
  });
  return opening;
}

/**
 * Opens a sink's queue as a stream of the log in `options.logDir` (opening the log on first use;
 * it closes with its last stream). An older per-sink spool in `options.legacyDir` is moved in
 * first: every event some destination has not committed, then the old directory is removed.
 */
export async function openLogQueue(options: LogQueueOptions): Promise<SinkQueue> {
  for (;;) {
    const log = await sharedLog(options);
    let stream: LogStream;
    try {
      stream = new LogStream(log, await log.openStream(options.key));
    } catch (error) {
      // The log closed with its last stream meanwhile: open it again.
      if (error instanceof QueueError && error.code === 'QUEUE_CLOSED') continue;
      throw error;
    }
    try {
      if (options.legacyDir !== undefined) {
        await migrateSpool(options.legacyDir, stream, options.fsync ?? true);
      }
      return await openQueueOn(stream, {
        maxBytes: options.maxBytes,
        retryAfterSeconds: options.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS,
        ...(options.delay === undefined ? {} : { delay: options.delay }),
      });
    } catch (error) {
      await stream.close();
      throw error;
    }
  }
}

/** Events read from an old spool per write into the log. */
const MIGRATION_CHUNK = 1_000;

/**
 * Moves a per-sink spool (ADR 0007) into a stream: from its slowest consumer's cursor (the oldest
 * retained event when it has none) to its end, appended durably, then the old files are deleted.
 * A crash before the deletion finishes moves the rest again at the next start: duplicates, which
 * idempotent writes overwrite, never loss. Returns the number of events moved.
 */
export async function migrateSpool(
  legacyDir: string,
  stream: LogStream,
  fsync: boolean,
): Promise<number> {
  let names: string[];
  try {
    names = await readdir(legacyDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw new QueueError('QUEUE_IO', `reading old spool ${legacyDir}`, { cause: error });
  }
  const spooled = names.some(
    (name) => parseSegmentFileName(name) !== null || parseCursorFileName(name) !== null,
  );
  if (!spooled) return 0;
  const store = await SegmentStore.open({
    dir: legacyDir,
    segmentBytes: DEFAULT_SEGMENT_BYTES,
    fsync,
  });
  let from = store.start;
  if (store.cursors.size > 0) from = Math.min(...store.cursors.values());
  let moved = 0;
  try {
    while (from < store.end) {
      const read = await store.read(from, MIGRATION_CHUNK);
      if (read.events.length > 0) await stream.write(read.events.map(encodeEvent));
      moved += read.events.length;
      if (read.end <= from) break;
      from = read.end;
    }
  } catch (error) {
    await store.close();
    throw error;
  }
  await store.destroy();
  return moved;
}
