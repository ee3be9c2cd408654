/**
 * A budget of work per turn of the event loop, shared by everyone who takes from it: outputs that
 * encode batches ({@link LINE_PROTOCOL_ENCODING}) take one unit per event and wait for the next
 * turn once the turn's budget is spent, so that the receiver's I/O (request bodies, the log's
 * writes and syncs, answers) runs between every few milliseconds of delivery work, however many
 * sinks deliver at once.
 *
 * A budget per output did not bound that: a hundred sinks whose flush came due together each
 * encoded a slice in the same turn, and acknowledgements waited for all of them (ADR 0022).
 */
import { setImmediate } from 'node:timers';
import { setImmediate as nextTurn } from 'node:timers/promises';

export class TurnBudget {
  /** Units each turn allows unless {@link scale}d, all users together. */
  readonly base: number;
  #perTurn: number;
  #used = 0;

  constructor(perTurn: number) {
    if (!Number.isSafeInteger(perTurn) || perTurn < 1) {
      throw new RangeError(`perTurn must be a positive integer, got ${String(perTurn)}`);
    }
    this.base = perTurn;
    this.#perTurn = perTurn;
  }

  /** Units each turn allows now, all users together. */
  get perTurn(): number {
    return this.#perTurn;
  }

  /** Allows `factor` times the base per turn from now on; 1 goes back to the base. */
  scale(factor: number): void {
    if (!Number.isSafeInteger(factor) || factor < 1) {
      throw new RangeError(`factor must be a positive integer, got ${String(factor)}`);
    }
    this.#perTurn = this.base * factor;
  }

  /**
   * Takes one unit: at once while the turn has some left (no promise, no microtask), else after
   * waiting for a turn that has.
   */
  take(): Promise<void> | undefined {
    if (this.#used < this.#perTurn) {
      this.#use();
      return undefined;
    }
    return this.#takeLater();
  }

  async #takeLater(): Promise<void> {
    while (this.#used >= this.#perTurn) await nextTurn();
    this.#use();
  }

  #use(): void {
    // The turn's first unit schedules the reset: it runs in the next turn's check phase, before
    // the waiters that queued after it.
    if (this.#used++ === 0) setImmediate(() => (this.#used = 0));
  }
}

/**
 * Events encoded as line protocol in one turn of the event loop, by every output of the process
 * together (InfluxDB and line-protocol files): about a millisecond of work. Four times that while
 * the sinks fall so far behind that the durable log grows its memory to keep their records
 * (`runtime/dataplane.ts` scales it; ADR 0022).
 */
export const LINE_PROTOCOL_ENCODING = new TurnBudget(100);

/** How many times its base {@link LINE_PROTOCOL_ENCODING} allows while sinks fall behind. */
export const LINE_PROTOCOL_CATCH_UP = 4;
