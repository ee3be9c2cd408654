/**
 * The audit traffic a real kube-apiserver 1.20 sent (test/fixtures/apiserver-1.20): its webhook
 * batches as posted, and its events one per line. They keep the times they were recorded at; a
 * test that needs recent events (a bucket with a retention, a query over the last hours) moves
 * them to now with {@link movedToNow} or {@link batchesMovedToNow}, the one place that shifts
 * fixture times. Reads files only.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { epochMicros } from '../../src/audit/time.ts';
import type { AuditEvent } from '../../src/audit/types.ts';

/** The fixture directory. */
export const RECORDED_DIR = fileURLToPath(new URL('../fixtures/apiserver-1.20/', import.meta.url));

/** The batch files' names, in the order the apiserver sent them. */
export const RECORDED_BATCH_FILES: readonly string[] = readdirSync(`${RECORDED_DIR}batches`)
  .filter((name) => name.endsWith('.json'))
  .sort();

/** Each recorded event as its JSON line. */
export function recordedEventLines(): string[] {
  return readFileSync(`${RECORDED_DIR}events.jsonl`, 'utf8')
    .split('\n')
    .filter((line) => line !== '');
}

/** The recorded events (a fresh copy each call), with their recorded times. */
export function recordedEvents(): AuditEvent[] {
  return recordedEventLines().map((line) => JSON.parse(line) as AuditEvent);
}

/** The webhook batches exactly as the apiserver posted them (`audit.k8s.io/v1` EventList JSON). */
export function recordedBatches(): string[] {
  return RECORDED_BATCH_FILES.map((name) => readFileSync(`${RECORDED_DIR}batches/${name}`, 'utf8'));
}

/** What a timestamp field of an event needs to be shifted. */
interface Timed {
  readonly stageTimestamp: string;
  readonly requestReceivedTimestamp?: string | undefined;
}

/** Microseconds since the epoch, as the line-protocol encoder reads the timestamp. */
function micros(timestamp: string): number {
  return Number(epochMicros(timestamp));
}

/** An RFC 3339 UTC timestamp with microseconds. */
function formatted(at: number): string {
  const seconds = Math.floor(at / 1e6);
  const fraction = String(at - seconds * 1e6).padStart(6, '0');
  return `${new Date(seconds * 1000).toISOString().slice(0, 19)}.${fraction}Z`;
}

/**
 * The events moved in time so that the newest `stageTimestamp` lands a minute before `nowMs`;
 * order and spacing stay as recorded, to the microsecond, and nothing else changes.
 */
export function movedToNow<T extends Timed>(events: readonly T[], nowMs = Date.now()): T[] {
  const newest = Math.max(...events.map((e) => micros(e.stageTimestamp)));
  const delta = (nowMs - 60_000) * 1000 - newest;
  const shift = (timestamp: string) => formatted(micros(timestamp) + delta);
  return events.map((e) => ({
    ...e,
    stageTimestamp: shift(e.stageTimestamp),
    ...(e.requestReceivedTimestamp === undefined
      ? {}
      : { requestReceivedTimestamp: shift(e.requestReceivedTimestamp) }),
  }));
}

/**
 * The recorded batches with every event moved as {@link movedToNow} moves them (one shift for all
 * batches, so events keep their order across batches), as JSON text ready to post.
 */
export function batchesMovedToNow(batches = recordedBatches(), nowMs = Date.now()): string[] {
  const lists = batches.map((text) => JSON.parse(text) as { items: Timed[] });
  const moved = movedToNow(
    lists.flatMap((list) => list.items),
    nowMs,
  );
  let next = 0;
  return lists.map((list) =>
    JSON.stringify({ ...list, items: list.items.map(() => moved[next++]) }),
  );
}
