/**
 * Who may read `/metrics` when a Kubernetes API decides it (`run`): a bearer token is reviewed by
 * a function the caller injects (TokenReview, then SubjectAccessReview on the non-resource URL
 * `/metrics`), and its decision is cached for a short while, allowed and denied alike, as
 * controller-runtime's metrics filter and kube-rbac-proxy do (ADR 0014). The cache is keyed by a
 * SHA-256 digest of the token: the token itself is never kept. Pure apart from the injected
 * review and clock.
 */
import { createHash } from 'node:crypto';
import { SETTINGS_DEFAULTS } from '../config/settings.ts';

/** What a review decided about one bearer token. */
export type AccessDecision =
  | { readonly allowed: true; readonly user: string }
  | { readonly allowed: false; readonly reason: 'unauthenticated' }
  | { readonly allowed: false; readonly reason: 'forbidden'; readonly user: string };

/**
 * Reviews a bearer token: who it belongs to, and whether that user may read `/metrics`. Rejects
 * when no decision could be made (the API unreachable, the review itself refused).
 */
export type AccessReview = (token: string) => Promise<AccessDecision>;

/** How long decisions are kept, and how many. */
export interface AccessCacheOptions {
  /** How long an allowed token stays allowed without asking again; 0: never cached. */
  readonly allowTtlMs: number;
  /** How long a denied (unknown or forbidden) token stays denied; 0: never cached. */
  readonly denyTtlMs: number;
  /** Most decisions kept; the oldest goes first. */
  readonly maxEntries?: number;
  /** Most reviews under way at once; more tokens to review are refused until one ends. */
  readonly maxInFlight?: number;
  /** The clock, in milliseconds; `Date.now` unless a test gives another. */
  readonly now?: () => number;
}

/** Defaults of {@link AccessCacheOptions}, each with where it comes from. */
export const ACCESS_CACHE_DEFAULTS = Object.freeze({
  /** A setting of its own (`--metrics-auth-allow-ttl-seconds`); see SETTINGS_DEFAULTS for why. */
  allowTtlMs: SETTINGS_DEFAULTS.metricsAuthAllowTtlSeconds * 1000,
  /** A setting of its own (`--metrics-auth-deny-ttl-seconds`); see SETTINGS_DEFAULTS for why. */
  denyTtlMs: SETTINGS_DEFAULTS.metricsAuthDenyTtlSeconds * 1000,
  /**
   * 1,024: far above the handful of scrapers a cluster has, and at most a few hundred KiB; a flood
   * of random tokens evicts the oldest entries, never grows the cache.
   */
  maxEntries: 1024,
  /**
   * 8: a few scrapers starting at once fit; past that a flood of new tokens would queue reviews
   * in the apiserver, whose priority and fairness puts them in the operator's own flow, beside
   * its Lease renewals and status writes.
   */
  maxInFlight: 8,
});

/** No decision could be made now: the review failed or too many are under way. */
export class AccessReviewUnavailable extends Error {
  override readonly name = 'AccessReviewUnavailable';
  /** Stable error code. */
  readonly code = 'ACCESS_REVIEW_UNAVAILABLE';

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

interface Entry {
  readonly decision: AccessDecision;
  readonly expiresAt: number;
}

/**
 * Decides bearer tokens with a review, remembering each decision for its TTL. Concurrent requests
 * with one token share one review.
 */
export class CachedAccessReview {
  readonly #review: AccessReview;
  readonly #allowTtlMs: number;
  readonly #denyTtlMs: number;
  readonly #maxEntries: number;
  readonly #maxInFlight: number;
  readonly #now: () => number;
  /** By token digest; Map order is insertion order, so the first entry is the oldest. */
  readonly #entries = new Map<string, Entry>();
  readonly #inFlight = new Map<string, Promise<AccessDecision>>();

  constructor(review: AccessReview, options: AccessCacheOptions) {
    for (const [name, value, min] of [
      ['allowTtlMs', options.allowTtlMs, 0],
      ['denyTtlMs', options.denyTtlMs, 0],
      ['maxEntries', options.maxEntries ?? ACCESS_CACHE_DEFAULTS.maxEntries, 1],
      ['maxInFlight', options.maxInFlight ?? ACCESS_CACHE_DEFAULTS.maxInFlight, 1],
    ] as const) {
      if (!Number.isSafeInteger(value) || value < min) {
        throw new RangeError(`${name}: expected an integer of at least ${min}, got ${value}`);
      }
    }
    this.#review = review;
    this.#allowTtlMs = options.allowTtlMs;
    this.#denyTtlMs = options.denyTtlMs;
    this.#maxEntries = options.maxEntries ?? ACCESS_CACHE_DEFAULTS.maxEntries;
    this.#maxInFlight = options.maxInFlight ?? ACCESS_CACHE_DEFAULTS.maxInFlight;
    this.#now = options.now ?? Date.now;
  }

  /** How many decisions are kept now (expired ones included until they are looked up). */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * The decision about `token`: a remembered one while it is fresh, otherwise a new review.
   *
   * @throws AccessReviewUnavailable when the review fails (nothing is remembered then) or too
   *   many reviews are under way.
   */
  decide(token: string): Promise<AccessDecision> {
    const key = digest(token);
    const entry = this.#entries.get(key);
    if (entry !== undefined) {
      if (this.#now() < entry.expiresAt) return Promise.resolve(entry.decision);
      this.#entries.delete(key);
    }
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) return pending;
    if (this.#inFlight.size >= this.#maxInFlight) {
      return Promise.reject(
        new AccessReviewUnavailable(`${this.#maxInFlight} access reviews are already under way`),
      );
    }
    const review = this.#run(key, token);
    this.#inFlight.set(key, review);
    return review;
  }

  async #run(key: string, token: string): Promise<AccessDecision> {
    try {
      let decision: AccessDecision;
      try {
        decision = await this.#review(token);
      } catch (err) {
        // Not remembered: the next request asks again.
        throw new AccessReviewUnavailable('the access review failed', { cause: err });
      }
      this.#remember(key, decision);
      return decision;
    } finally {
      this.#inFlight.delete(key);
    }
  }

  #remember(key: string, decision: AccessDecision): void {
    const ttl = decision.allowed ? this.#allowTtlMs : this.#denyTtlMs;
    if (ttl === 0) return;
    // Re-inserted at the end, so the order stays oldest first.
    this.#entries.delete(key);
    while (this.#entries.size >= this.#maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
    this.#entries.set(key, { decision, expiresAt: this.#now() + ttl });
  }
}

// A digest, not the token: a heap dump or a debugger shows no credential.
function digest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64url');
}
