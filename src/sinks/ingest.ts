/** The contract between the receiver and the sinks it hands events to. */
import type { DecodedPayload } from '../audit/parse.ts';
import type { AuditEvent } from '../audit/types.ts';

/**
 * Per event, its JSON as received where that parses back to it, and its JSON at another level
 * where the event has no bodies ({@link DecodedPayload.sources}, {@link DecodedPayload.levelled}).
 */
export type ReceivedTexts = Pick<DecodedPayload, 'sources' | 'levelled'>;

/**
 * The text a sink's share of the `index`th event can be stored as instead of being serialised:
 * the event's own text when the sink keeps the event itself, its text at the copy's level when
 * the sink keeps a trimmed copy of an event without bodies (the copy then differs only in its
 * level), else undefined.
 */
export function textOf(
  texts: ReceivedTexts | undefined,
  index: number,
  event: AuditEvent,
  kept: AuditEvent,
): string | undefined {
  if (kept === event) return texts?.sources?.[index];
  if (event.requestObject !== undefined || event.responseObject !== undefined) return undefined;
  return texts?.levelled?.at(index, kept.level);
}

/** Which sinks a batch is for: every sink (fan-in endpoint) or one sink by its key. */
export type IngestTarget =
  { readonly kind: 'all' } | { readonly kind: 'sink'; readonly key: string };

/** Whether a batch was queued, or refused because a queue is full. */
export type IngestResult =
  | { readonly ok: true; readonly accepted: number }
  | { readonly ok: false; readonly reason: 'full'; readonly retryAfterSeconds: number };

/** What the receiver hands events to: routing, queueing (and spooling) happen behind it. Resolves only once events are queued durably. */
export interface Ingest {
  /**
   * `texts`, when given, are the texts the events came in, as parsed (the `DecodedPayload`): what
   * a spool stores of an event a sink keeps as it came, or at another level only, instead of
   * serialising it.
   */
  ingest(events: AuditEvent[], target: IngestTarget, texts?: ReceivedTexts): Promise<IngestResult>;
  hasSink(key: string): boolean;
  /**
   * Whether some sink of the target may keep a request or response body (its policy has a rule at
   * Request or above). When none may, the receiver leaves the bodies out as it parses. Asked in the
   * same turn as `ingest` is called, so that no sink can change in between.
   */
  keepsBodies?(target: IngestTarget): boolean;
  /**
   * Seconds to ask the sender to wait when the target cannot take a batch now (its queues are
   * full), checked before the body is read; undefined to go on.
   */
  refusing?(target: IngestTarget): number | undefined;
}
