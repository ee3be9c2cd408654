/**
 * A cache of values computed from objects that lasts one turn of the event loop: what is computed
 * for an event while a received batch is parsed and queued for every sink is reused within that
 * turn, and then forgotten, so that nothing it references (such as the request body a received
 * text is a slice of) outlives the turn through the cache.
 */
export class TurnCache<K extends object, V> {
  #map = new WeakMap<K, V>();
  #clearing = false;

  get(key: K): V | undefined {
    return this.#map.get(key);
  }

  set(key: K, value: V): void {
    this.#map.set(key, value);
    if (this.#clearing) return;
    this.#clearing = true;
    setImmediate(() => {
      this.#map = new WeakMap();
      this.#clearing = false;
    });
  }
}
