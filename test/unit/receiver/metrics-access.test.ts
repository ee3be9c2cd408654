// The cache of /metrics access decisions, with an injected clock and a review function that
// records what it is asked and answers what the test says: TTLs of allowed and denied decisions,
// failures never remembered, one review per token at a time, bounded size and concurrency. Starts
// no process.
import { describe, expect, it } from 'vitest';
import {
  ACCESS_CACHE_DEFAULTS,
  type AccessCacheOptions,
  type AccessDecision,
  AccessReviewUnavailable,
  CachedAccessReview,
} from '../../../src/receiver/metrics-access.ts';

const ALLOWED: AccessDecision = { allowed: true, user: 'system:serviceaccount:monitoring:prom' };
const FORBIDDEN: AccessDecision = { allowed: false, reason: 'forbidden', user: 'alice' };
const UNKNOWN: AccessDecision = { allowed: false, reason: 'unauthenticated' };

/** A review whose answers the test sets per token, and which can be held until released. */
class FakeReview {
  readonly asked: string[] = [];
  readonly answers = new Map<string, AccessDecision | Error>();
  #held: (() => void)[] | undefined;

  readonly review = async (token: string): Promise<AccessDecision> => {
    this.asked.push(token);
    if (this.#held !== undefined) await new Promise<void>((r) => this.#held?.push(r));
    const answer = this.answers.get(token) ?? UNKNOWN;
    if (answer instanceof Error) throw answer;
    return answer;
  };

  /** Reviews wait until {@link release}. */
  hold(): void {
    this.#held = [];
  }

  release(): void {
    const waiting = this.#held ?? [];
    this.#held = undefined;
    for (const resume of waiting) resume();
  }
}

function setup(options: Partial<AccessCacheOptions> = {}) {
  const clock = { now: 1_000_000 };
  const fake = new FakeReview();
  const cache = new CachedAccessReview(fake.review, {
    allowTtlMs: 60_000,
    denyTtlMs: 10_000,
    now: () => clock.now,
    ...options,
  });
  return { clock, fake, cache };
}

describe('CachedAccessReview', () => {
  it('pins its defaults: allowed 60 s, denied 10 s, 1,024 entries, 8 reviews at once', () => {
    expect({ ...ACCESS_CACHE_DEFAULTS }).toEqual({
      allowTtlMs: 60_000,
      denyTtlMs: 10_000,
      maxEntries: 1024,
      maxInFlight: 8,
    });
  });

  it('reviews a token once, then answers from the cache until the allowed TTL ends', async () => {
    const { clock, fake, cache } = setup();
    fake.answers.set('prom', ALLOWED);
    expect(await cache.decide('prom')).toEqual(ALLOWED);
    clock.now += 59_999;
    expect(await cache.decide('prom')).toEqual(ALLOWED);
    expect(fake.asked).toEqual(['prom']);
    clock.now += 1;
    expect(await cache.decide('prom')).toEqual(ALLOWED);
    expect(fake.asked).toEqual(['prom', 'prom']);
  });

  it('keeps a forbidden decision for the denied TTL only, so a new grant applies after it', async () => {
    const { clock, fake, cache } = setup();
    fake.answers.set('alice', FORBIDDEN);
    expect(await cache.decide('alice')).toEqual(FORBIDDEN);
    // Granted now: the cached denial still holds for its TTL.
    fake.answers.set('alice', { allowed: true, user: 'alice' });
    clock.now += 9_999;
    expect(await cache.decide('alice')).toEqual(FORBIDDEN);
    clock.now += 1;
    expect(await cache.decide('alice')).toEqual({ allowed: true, user: 'alice' });
    expect(fake.asked).toEqual(['alice', 'alice']);
  });

  it('keeps an unknown token for the denied TTL too', async () => {
    const { clock, fake, cache } = setup();
    expect(await cache.decide('forged')).toEqual(UNKNOWN);
    expect(await cache.decide('forged')).toEqual(UNKNOWN);
    clock.now += 10_000;
    expect(await cache.decide('forged')).toEqual(UNKNOWN);
    expect(fake.asked).toEqual(['forged', 'forged']);
  });

  it('revokes a grant once the allowed TTL ends', async () => {
    const { clock, fake, cache } = setup();
    fake.answers.set('prom', ALLOWED);
    await cache.decide('prom');
    fake.answers.set('prom', FORBIDDEN);
    clock.now += 60_000;
    expect(await cache.decide('prom')).toEqual(FORBIDDEN);
  });

  it('keeps nothing with TTLs of 0: every request is reviewed', async () => {
    const { fake, cache } = setup({ allowTtlMs: 0, denyTtlMs: 0 });
    fake.answers.set('prom', ALLOWED);
    await cache.decide('prom');
    await cache.decide('prom');
    await cache.decide('other');
    await cache.decide('other');
    expect(fake.asked).toEqual(['prom', 'prom', 'other', 'other']);
    expect(cache.size).toBe(0);
  });

  it('never remembers a failed review: the next request asks again', async () => {
    const { fake, cache } = setup();
    fake.answers.set('prom', new Error('apiserver unreachable'));
    const failure = await cache.decide('prom').catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(AccessReviewUnavailable);
    expect((failure as AccessReviewUnavailable).code).toBe('ACCESS_REVIEW_UNAVAILABLE');
    expect((failure as Error).cause).toEqual(new Error('apiserver unreachable'));
    fake.answers.set('prom', ALLOWED);
    expect(await cache.decide('prom')).toEqual(ALLOWED);
    expect(fake.asked).toEqual(['prom', 'prom']);
  });

  it('shares one review between concurrent requests with the same token', async () => {
    const { fake, cache } = setup();
    fake.answers.set('prom', ALLOWED);
    fake.hold();
    const decisions = Promise.all([
      cache.decide('prom'),
      cache.decide('prom'),
      cache.decide('prom'),
    ]);
    fake.release();
    expect(await decisions).toEqual([ALLOWED, ALLOWED, ALLOWED]);
    expect(fake.asked).toEqual(['prom']);
  });

  it('refuses a new token while the most reviews allowed are under way, and takes it afterwards', async () => {
    const { fake, cache } = setup({ maxInFlight: 2 });
    fake.hold();
    const first = cache.decide('a');
    const second = cache.decide('b');
    await expect(cache.decide('c')).rejects.toThrow(AccessReviewUnavailable);
    // A token already under review still joins its review.
    const again = cache.decide('a');
    fake.release();
    expect(await Promise.all([first, second, again])).toEqual([UNKNOWN, UNKNOWN, UNKNOWN]);
    expect(await cache.decide('c')).toEqual(UNKNOWN);
    expect(fake.asked).toEqual(['a', 'b', 'c']);
  });

  it('stays within its size, dropping the oldest decision first', async () => {
    const { fake, cache } = setup({ maxEntries: 3 });
    for (const token of ['t1', 't2', 't3', 't4']) await cache.decide(token);
    expect(cache.size).toBe(3);
    // t2 to t4 are still known; t1 was dropped and is reviewed again.
    for (const token of ['t2', 't3', 't4', 't1']) await cache.decide(token);
    expect(fake.asked).toEqual(['t1', 't2', 't3', 't4', 't1']);
    expect(cache.size).toBe(3);
  });

  it.each([
    [{ allowTtlMs: -1 }, 'allowTtlMs'],
    [{ denyTtlMs: 1.5 }, 'denyTtlMs'],
    [{ maxEntries: 0 }, 'maxEntries'],
    [{ maxInFlight: 0 }, 'maxInFlight'],
  ])('refuses %j, naming the option', (bad, name) => {
    expect(() => setup(bad)).toThrow(new RegExp(`^${name}: expected an integer`));
  });
});
