/**
 * An audit event as the point its sink's InfluxDB destination writes: one line of line protocol,
 * made when the event is queued and stored in its place, so that delivery sends it as it is
 * (docs/adr/0027-points-stored-for-influxdb-sinks.md). Queues, the durable log, delivery and dead
 * letters carry either events or points ({@link QueuedEvent}).
 *
 * Pure: no I/O.
 */
import type { AuditEvent } from './types.ts';

/** A point made of an event: its line protocol, one line (no line break), without a newline. */
export class StoredPoint {
  readonly line: string;
  #auditID: string | undefined;

  constructor(line: string) {
    this.line = line;
  }

  /** The event's auditID, read from the point's `audit_id` field (which every point has). */
  get auditID(): string {
    this.#auditID ??= auditIdOfLine(this.line);
    return this.#auditID;
  }
}

/** What a sink's queue holds: an event, or the point its InfluxDB destination makes of it. */
export type QueuedEvent = AuditEvent | StoredPoint;

/**
 * The value of the first field, `audit_id`, of a line of line protocol as the InfluxDB output
 * writes it: after the series key (whose spaces are escaped), quoted, with `\"` and `\\` escaped.
 * Empty when the line has no such field (it never lacks one when this project made it).
 */
export function auditIdOfLine(line: string): string {
  let at = 0;
  while (at < line.length && line[at] !== ' ') at += line[at] === '\\' ? 2 : 1;
  const field = ' audit_id="';
  if (!line.startsWith(field, at)) return '';
  let value = '';
  for (at += field.length; at < line.length; at++) {
    const c = line[at] as string;
    if (c === '"') return value;
    if (c === '\\' && at + 1 < line.length) at++;
    value += line[at] as string;
  }
  return '';
}
