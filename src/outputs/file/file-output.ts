/**
 * The embedded default destination: line protocol appended to one file per sink, importable with
 * `influx write --file`. Lets standalone mode and `replay` run without an InfluxDB.
 */
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type QueuedEvent, StoredPoint } from '../../audit/stored-point.ts';
import type { AuditEvent } from '../../audit/types.ts';
import type { Batching } from '../destination.ts';
import { LineProtocolEncoder, type PointSchema } from '../influxdb/line-protocol.ts';
import { LINE_PROTOCOL_ENCODING } from '../turn-budget.ts';
import { type Output, OutputError } from '../types.ts';

/** Which resource a file is for: an AuditSink (namespace empty) or an AuditPipeline. */
export interface FileRef {
  readonly kind: 'AuditSink' | 'AuditPipeline';
  readonly namespace: string;
  readonly name: string;
}

/** Batches of 1,000 events, written at once: one append and sync per batch. */
export const LINE_PROTOCOL_FILE_BATCHING: Batching = Object.freeze({
  size: 1_000,
  flushIntervalMs: 0,
});

/** `<dataDir>/sinks/<name>.lp` for an AuditSink, `<dataDir>/pipelines/<ns>/<name>.lp` for a pipeline. */
export function lineProtocolPath(dataDir: string, ref: FileRef): string {
  return ref.kind === 'AuditSink'
    ? join(dataDir, 'sinks', `${ref.name}.lp`)
    : join(dataDir, 'pipelines', ref.namespace, `${ref.name}.lp`);
}

/** Appends each batch as line protocol, synced to disk before the batch counts as delivered. */
export class LineProtocolFileOutput implements Output {
  readonly kind = 'file' as const;
  readonly target: string;
  readonly #encoder: LineProtocolEncoder;
  #file: FileHandle | undefined;
  #closed = false;

  constructor(path: string, schema: PointSchema) {
    this.target = path;
    this.#encoder = new LineProtocolEncoder(schema);
  }

  /**
   * A system call in progress cannot be cancelled: `signal` is checked before each step, and the
   * delivery loop stops waiting for the rest when it aborts (so a hung network file system holds
   * up only this write, not the shutdown).
   */
  pointOf(event: AuditEvent): StoredPoint | undefined {
    return this.#encoder.point(event);
  }

  async write(events: readonly QueuedEvent[], signal?: AbortSignal): Promise<void> {
    if (this.#closed) {
      throw new OutputError('IO_ERROR', `${this.target}: the output is closed`, {
        retryable: true,
      });
    }
    if (events.length === 0) return;
    // From the process's encoding budget, as the InfluxDB outputs: many sinks whose batches fill
    // together never encode them all in one turn of the event loop.
    let text = '';
    for (const event of events) {
      if (!(event instanceof StoredPoint)) {
        const wait = LINE_PROTOCOL_ENCODING.take();
        if (wait !== undefined) await wait;
      }
      text += `${this.#encoder.lineOf(event)}\n`;
    }
    try {
      signal?.throwIfAborted();
      if (this.#file === undefined) {
        await mkdir(dirname(this.target), { recursive: true });
        signal?.throwIfAborted();
        this.#file = await open(this.target, 'a');
      }
      signal?.throwIfAborted();
      await this.#file.write(text);
      await this.#file.datasync();
    } catch (err) {
      // A full or read-only disk may recover; keep the events queued and retry.
      throw new OutputError(
        'IO_ERROR',
        `cannot append to ${this.target}: ${(err as Error).message}`,
        {
          retryable: true,
          cause: err,
        },
      );
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const file = this.#file;
    this.#file = undefined;
    await file?.close();
  }
}
