/**
 * The JSON text of request and response bodies, computed once per body object: the spool and the
 * line-protocol encoder both need it, and the bodies are most of a RequestResponse event's size.
 * Bodies are never mutated once an event is routed (enforcement copies instead), so the text stays
 * true for as long as the object lives; the cache does not keep it alive.
 */
import type { JsonValue } from './types.ts';

const texts = new WeakMap<object, string>();

/** `JSON.stringify(body)`, computed once per object. */
export function bodyJson(body: JsonValue): string {
  if (typeof body !== 'object' || body === null) return JSON.stringify(body);
  let text = texts.get(body);
  if (text === undefined) {
    text = JSON.stringify(body);
    texts.set(body, text);
  }
  return text;
}
