/**
 * A cache of values computed from objects that lasts one turn of the event loop: what is computed
 * for an event while a received batch is queued for every sink is reused within that turn, then
 * forgotten. A WeakMap that lived as long as its keys held an entry for every event in a queue or
 * read cache, and made every garbage collection slower (ADR 0023). A caller that works through
 * many batches in one turn (a file replayed synchronously) starts a new cache every
 * {@link limit} entries, so that it never holds more than that.
 */
export class TurnCache<K extends object, V> {
  readonly limit: number;
  #map = new WeakMap<K, V>();
  #entries = 0;
  #clearing = false;

  /** @param limit entries after which the cache starts anew within a turn: 16,384 by default. */
  constructor(limit = 16_384) {
    this.limit = limit;
  }

  get(key: K): V | undefined {
    return this.#map.get(key);
  }

  set(key: K, value: V): void {
    if (this.#entries >= this.limit) this.#clear();
    this.#map.set(key, value);
    this.#entries++;
    if (this.#clearing) return;
    this.#clearing = true;
    setImmediate(() => {
      this.#clear();
      this.#clearing = false;
    });
  }

  #clear(): void {
    this.#map = new WeakMap();
    this.#entries = 0;
  }
}
