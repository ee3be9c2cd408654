/**
 * The text an event was received as, kept when it is exactly the event's JSON: the spool stores
 * that text rather than serialising the object again, which was about half of the cost of an event
 * between the receiver and line protocol (bench/ingest.ts).
 *
 * The parser keeps a text only when parsing it gives the event as checked, field for field (see
 * `parseAuditPayload`), and only on a single line. The text is a slice of the request body, so it
 * is kept for the turn in which the batch is parsed and queued for every sink, no longer: an event
 * serialised later, or derived from another (a lower level, trimmed fields), is serialised anew.
 */
import { TurnCache } from './turn-cache.ts';
import type { AuditEvent } from './types.ts';

const texts = new TurnCache<AuditEvent, string>();

/** The JSON text `event` was received as in this turn, when it is exactly its JSON. */
export function receivedJson(event: AuditEvent): string | undefined {
  return texts.get(event);
}

/** Records the text an event was parsed from; only for text that parses to the event as it is. */
export function keepReceivedJson(event: AuditEvent, json: string): void {
  texts.set(event, json);
}
