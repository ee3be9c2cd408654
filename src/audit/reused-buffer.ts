/**
 * One buffer for bytes that are used up before the next batch needs it: a request body copied
 * together and decoded to text (`receiver/body.ts`), a log record written to its segment
 * (`spool/log/log.ts`). With a new buffer of a few hundred kilobytes for every batch, and another
 * for every record, one sink's process handled 12 to 16% fewer events per CPU second (ADR 0012,
 * "Later: buffers used once per batch are reused").
 *
 * Pure: no I/O.
 */

/** A growing buffer handed out again and again, up to a size. */
export class ReusedBuffer {
  readonly #maxBytes: number;
  #buffer = Buffer.alloc(0);

  /** `maxBytes`: the most it keeps; a larger request gets a buffer of its own. */
  constructor(maxBytes: number) {
    this.#maxBytes = maxBytes;
  }

  /**
   * `size` bytes to fill: a view of the reused buffer, valid until the next call (the caller
   * must be done with it by then), or a new buffer when `size` is above `maxBytes`.
   */
  take(size: number): Buffer {
    if (size > this.#maxBytes) return Buffer.allocUnsafe(size);
    if (this.#buffer.length < size) {
      // Doubling, so that batches growing a little at a time do not allocate every time.
      const grown = Math.min(this.#maxBytes, Math.max(size, 2 * this.#buffer.length));
      // Its own memory, not a slice of Node.js's shared pool, which it would keep alive.
      this.#buffer = Buffer.allocUnsafeSlow(grown);
    }
    return this.#buffer.subarray(0, size);
  }

  /** Bytes it holds now. */
  get bytes(): number {
    return this.#buffer.length;
  }
}
