// The budget of work per turn of the event loop that every output encoding line protocol takes
// from: pure timing of the event loop, no I/O.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { TurnBudget } from '../../../src/outputs/turn-budget.ts';

/** Takes `units` from `budget`, as an output encoding a batch does. */
async function work(budget: TurnBudget, units: number): Promise<void> {
  for (let i = 0; i < units; i++) {
    const wait = budget.take();
    if (wait !== undefined) await wait;
  }
}

/** Counts the turns of the event loop after the current one until `done` settles. */
async function turnsUntil(done: Promise<unknown>): Promise<number> {
  let finished = false;
  void done.then(() => (finished = true));
  let turns = 0;
  while (!finished) {
    turns++;
    await nextTurn();
  }
  return turns;
}

describe('TurnBudget', () => {
  it('gives units at once, without a promise, while the turn has some left', () => {
    const budget = new TurnBudget(3);
    expect([budget.take(), budget.take(), budget.take()]).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
    expect(budget.take()).toBeInstanceOf(Promise);
  });

  it('shares one budget among all its users: ten users of 50 units each take ten turns of 50', async () => {
    const budget = new TurnBudget(50);
    const users = Array.from({ length: 10 }, () => work(budget, 50));
    const turns = await turnsUntil(Promise.all(users));
    // 50 in this turn and 50 in each of nine more; a budget per user would have let all 500
    // through in this one.
    expect(turns).toBeGreaterThanOrEqual(9);
  });

  it('lets one user take whole turns, and a user waiting behind it still finishes', async () => {
    const budget = new TurnBudget(100);
    const big = work(budget, 1_000);
    const small = work(budget, 1);
    // 1,001 units: this turn and ten more.
    expect(await turnsUntil(Promise.all([big, small]))).toBeGreaterThanOrEqual(10);
  });

  it('allows a multiple of its base per turn once scaled, and its base again when scaled by 1', async () => {
    const budget = new TurnBudget(100);
    budget.scale(4);
    expect(budget.perTurn).toBe(400);
    // 1,000 units: this turn and two more, where the base would take ten.
    const turns = await turnsUntil(work(budget, 1_000));
    expect(turns).toBeGreaterThanOrEqual(2);
    expect(turns).toBeLessThan(5);
    budget.scale(1);
    expect(budget.perTurn).toBe(100);
    expect(await turnsUntil(work(budget, 1_000))).toBeGreaterThanOrEqual(9);
    for (const factor of [0, -1, 1.5, Number.NaN]) {
      expect(() => budget.scale(factor)).toThrow(RangeError);
    }
  });

  it('refuses a budget that is not a positive integer', () => {
    for (const perTurn of [0, -1, 1.5, Number.NaN, Infinity]) {
      expect(() => new TurnBudget(perTurn)).toThrow(RangeError);
    }
  });
});
