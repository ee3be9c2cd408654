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
  /** Units each turn allows, all users together. */
  readonly perTurn: number;
  #used = 0;

  constructor(perTurn: number) {
    if (!Number.isSafeInteger(perTurn) || perTurn < 1) {
      throw new RangeError(`perTurn must be a positive integer, got ${String(perTurn)}`);
    }
    this.perTurn = perTurn;
  }

  /**
   * Takes one unit: at once while the turn has some left (no promise, no microtask), else after
   * waiting for a turn that has.
   */
  take(): Promise<void> | undefined {
    if (this.#used < this.perTurn) {
      this.#use();
      return undefined;
    }
    return this.#takeLater();
  }

  async #takeLater(): Promise<void> {
    while (this.#used >= this.perTurn) await nextTurn();
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
 * together (InfluxDB and line-protocol files): about a millisecond of work.
 */
export const LINE_PROTOCOL_ENCODING = new TurnBudget(100);
