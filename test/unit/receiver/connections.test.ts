// Connection limits as a pure table of arrivals and answers, with an injected clock and random
// source: which answer closes a connection, by count, by age with its jitter, and never one sent
// before the request's body was read. The same limits on real sockets are in
// test/integration/receiver/connections.test.ts. Starts no process.
import { describe, expect, it } from 'vitest';
import {
  CONNECTION_AGE_JITTER,
  ConnectionLimits,
  jitteredAge,
} from '../../../src/receiver/connections.ts';

function setup(maxRequests: number, maxAgeMs: number, random = 0.5) {
  const clock = { now: 5_000 };
  const limits = new ConnectionLimits({
    maxRequests,
    maxAgeMs,
    now: () => clock.now,
    random: () => random,
  });
  /** One request on `connection`, answered after its body was read (or not): does it close? */
  const request = (connection: object, bodyRead = true) => {
    limits.arrived(connection);
    return limits.closes(connection, bodyRead) !== undefined;
  };
  return { clock, limits, request };
}

describe('jitteredAge', () => {
  it.each([
    [0, 54_000],
    [0.25, 57_000],
    [0.5, 60_000],
    [0.75, 63_000],
    [0.999_999, 66_000],
  ])('varies 60 s by ±10 %%: random %d gives %d ms', (random, age) => {
    expect(CONNECTION_AGE_JITTER).toBe(0.1);
    expect(jitteredAge(60_000, random)).toBe(age);
  });
});

describe('ConnectionLimits', () => {
  it('closes with the answer to the request that reaches the count, not before', () => {
    const { request } = setup(3, 0);
    const connection = {};
    expect([request(connection), request(connection), request(connection)]).toEqual([
      false,
      false,
      true,
    ]);
  });

  it('counts each connection on its own', () => {
    const { request } = setup(2, 0);
    const [a, b] = [{}, {}];
    expect([request(a), request(b), request(a), request(b)]).toEqual([false, false, true, true]);
  });

  it('closes with the first answer once the connection is older than its jittered age', () => {
    const { clock, request } = setup(0, 1_000, 0.75);
    const connection = {};
    expect(request(connection)).toBe(false);
    // 1,000 ms + 5 %: 1,050 ms after the first request.
    clock.now += 1_049;
    expect(request(connection)).toBe(false);
    clock.now += 1;
    expect(request(connection)).toBe(true);
  });

  it('counts the age from the first request, not from when the limits were made', () => {
    const { clock, request } = setup(0, 1_000);
    clock.now += 10_000;
    const connection = {};
    expect(request(connection)).toBe(false);
    clock.now += 999;
    expect(request(connection)).toBe(false);
  });

  it('leaves the closing to the next answer when the body was not read (a refusal before the body)', () => {
    const { request } = setup(2, 0);
    const connection = {};
    expect(request(connection)).toBe(false);
    expect(request(connection, false)).toBe(false);
    expect(request(connection)).toBe(true);
  });

  it('closes nothing when both limits are 0', () => {
    const { clock, limits, request } = setup(0, 0);
    expect(limits.enabled).toBe(false);
    const connection = {};
    for (let i = 0; i < 1_000; i++) {
      clock.now += 60_000;
      expect(request(connection)).toBe(false);
    }
  });

  it('whichever limit comes first closes the connection, and says which', () => {
    const { clock, limits } = setup(100, 1_000);
    const busy = {};
    for (let i = 1; i < 100; i++) {
      limits.arrived(busy);
      expect(limits.closes(busy, true)).toBeUndefined();
    }
    limits.arrived(busy);
    expect(limits.closes(busy, true)).toBe('requests');
    const quiet = {};
    limits.arrived(quiet);
    expect(limits.closes(quiet, true)).toBeUndefined();
    clock.now += 1_000;
    limits.arrived(quiet);
    expect(limits.closes(quiet, true)).toBe('age');
  });

  it('names the count when both limits are reached by the same answer', () => {
    const { clock, limits } = setup(2, 1_000);
    const connection = {};
    limits.arrived(connection);
    clock.now += 5_000;
    limits.arrived(connection);
    expect(limits.closes(connection, true)).toBe('requests');
  });
});
