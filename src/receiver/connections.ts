/**
 * Connection limits: a connection is closed after a bounded number of requests or a bounded age,
 * gracefully, by answering its last request with `Connection: close`. kube-proxy balances per
 * connection, and the kube-apiserver keeps its webhook connection open as long as it is allowed
 * to: without a limit one replica receives every batch (ADR 0006). Pure apart from the injected
 * clock and random source.
 */

/**
 * ±10 % per connection, as gRPC's MaxConnectionAge: connections opened together (after a
 * rollout) do not all reconnect at the same moment.
 */
export const CONNECTION_AGE_JITTER = 0.1;

/** The limit a closed connection reached. */
export type ConnectionLimit = 'requests' | 'age';

/** The limits, and the clock and random source (injected by tests). */
export interface ConnectionLimitOptions {
  /** Requests per connection; 0: no limit. */
  readonly maxRequests: number;
  /** Age of a connection in milliseconds, from its first request; 0: no limit. */
  readonly maxAgeMs: number;
  readonly now?: () => number;
  /** Uniform in [0, 1), as Math.random. */
  readonly random?: () => number;
}

interface ConnectionState {
  requests: number;
  readonly closeAt: number;
}

/** The age limit of one connection: `maxAgeMs` varied by ±{@link CONNECTION_AGE_JITTER}. */
export function jitteredAge(maxAgeMs: number, random: number): number {
  return Math.round(maxAgeMs * (1 - CONNECTION_AGE_JITTER + 2 * CONNECTION_AGE_JITTER * random));
}

/** Counts requests and age per connection and says which answer closes it. */
export class ConnectionLimits {
  readonly #maxRequests: number;
  readonly #maxAgeMs: number;
  readonly #now: () => number;
  readonly #random: () => number;
  // Weak: a connection closed by the client leaves nothing behind.
  readonly #connections = new WeakMap<object, ConnectionState>();

  constructor(options: ConnectionLimitOptions) {
    this.#maxRequests = options.maxRequests;
    this.#maxAgeMs = options.maxAgeMs;
    this.#now = options.now ?? Date.now;
    this.#random = options.random ?? Math.random;
  }

  /** Whether any limit is set. */
  get enabled(): boolean {
    return this.#maxRequests > 0 || this.#maxAgeMs > 0;
  }

  /** Notes a request arriving on `connection` (its first one starts the age). */
  arrived(connection: object): void {
    if (!this.enabled) return;
    const state = this.#connections.get(connection);
    if (state !== undefined) {
      state.requests++;
      return;
    }
    const closeAt =
      this.#maxAgeMs > 0
        ? this.#now() + jitteredAge(this.#maxAgeMs, this.#random())
        : Number.POSITIVE_INFINITY;
    this.#connections.set(connection, { requests: 1, closeAt });
  }

  /**
   * Which limit the answer to the current request on `connection` reaches, closing it: `requests`
   * or `age` (the count first when both are reached); undefined when it stays open. Only once the
   * request's body has been read completely (`bodyRead`): closing while the client is still
   * sending would make the kernel reset the connection, and the client might lose the answer. A
   * request refused before its body was read leaves the closing to the next answer.
   */
  closes(connection: object, bodyRead: boolean): ConnectionLimit | undefined {
    if (!bodyRead) return undefined;
    const state = this.#connections.get(connection);
    if (state === undefined) return undefined;
    if (this.#maxRequests > 0 && state.requests >= this.#maxRequests) return 'requests';
    return this.#now() >= state.closeAt ? 'age' : undefined;
  }
}
