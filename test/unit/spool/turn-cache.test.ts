// The one-turn cache: kept within a turn, forgotten after it, and never more than its limit.
import { describe, expect, it } from 'vitest';
import { TurnCache } from '../../../src/spool/turn-cache.ts';

describe('TurnCache', () => {
  it('keeps what is set for the rest of the turn, and forgets it after', async () => {
    const cache = new TurnCache<object, string>();
    const key = {};
    cache.set(key, 'text');
    await Promise.resolve();
    expect(cache.get(key)).toBe('text');
    await new Promise((resolve) => setImmediate(resolve));
    expect(cache.get(key)).toBeUndefined();
    // And keeps working in the next turn.
    cache.set(key, 'again');
    expect(cache.get(key)).toBe('again');
  });

  it('starts anew within a turn once it holds its limit', () => {
    const cache = new TurnCache<object, number>(3);
    const keys = [{}, {}, {}, {}];
    keys.forEach((key, i) => cache.set(key, i));
    // The fourth entry started a new cache: only it is left.
    expect(keys.map((key) => cache.get(key))).toEqual([undefined, undefined, undefined, 3]);
  });
});
