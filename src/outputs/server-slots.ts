/**
 * How many requests the process has in flight to one InfluxDB server, whatever the number of sinks
 * writing there. Each sink writes to its own bucket with its own token, so its requests cannot be
 * merged with another's; a thousand tenants whose flush intervals come due together sent up to a
 * thousand requests at once, and influxd left hundreds of them unanswered past the 10 s deadline:
 * each was aborted, logged as a failing destination, and sent again on a new connection. Requests
 * beyond the limit wait here, in order, and their deadline starts once they are sent (ADR 0008).
 */

/**
 * Requests in flight per server by default (`--influxdb-max-requests-per-server`): 128. Measured
 * with 1,000 sinks on one influxd (`bench:memory`, the Mix with 1,000 sinks; ADR 0008): unbounded,
 * 1,247 to 1,990 writes of each run timed out; with 128 none did in any of 5 runs, and events per
 * CPU second rose by 12% on average. 256 still let some time out; 32 or fewer made points visible
 * later (influxd syncs a write-ahead log per bucket, and more writes at once let the file system
 * commit their syncs together).
 */
export const REQUESTS_PER_SERVER = 128;

/** A counting semaphore with a queue in arrival order; a wait can be aborted. */
export class RequestSlots {
  readonly limit: number;
  #busy = 0;
  readonly #waiting: (() => void)[] = [];
  /** Milliseconds spent waiting by requests that got their slot or gave up. */
  #waitedMs = 0;

  constructor(limit: number) {
    this.limit = positiveLimit(limit);
  }

  /** Requests holding a slot now. */
  get busy(): number {
    return this.#busy;
  }

  /** Requests waiting for a slot now. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Seconds requests have spent waiting for a slot, summed, counted when each wait ends (granted or
   * aborted). Its rate is the average number of requests waiting: above zero for long, the limit
   * holds writes back.
   */
  get waitedSeconds(): number {
    return this.#waitedMs / 1000;
  }

  /**
   * Resolves with the function that gives the slot back (once; later calls do nothing) when one is
   * free. Rejects with `signal`'s reason, holding nothing, when it aborts first.
   */
  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted === true) return Promise.reject(abortReason(signal));
    if (this.#busy < this.limit) return Promise.resolve(this.#take());
    const since = performance.now();
    return new Promise((resolve, reject) => {
      const grant = () => {
        signal?.removeEventListener('abort', abandon);
        this.#waitedMs += performance.now() - since;
        resolve(this.#take());
      };
      const abandon = () => {
        const at = this.#waiting.indexOf(grant);
        if (at !== -1) this.#waiting.splice(at, 1);
        this.#waitedMs += performance.now() - since;
        reject(abortReason(signal as AbortSignal));
      };
      signal?.addEventListener('abort', abandon, { once: true });
      this.#waiting.push(grant);
    });
  }

  #take(): () => void {
    this.#busy++;
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#busy--;
      // The slot goes straight to the oldest waiter, so the count never passes the limit.
      this.#waiting.shift()?.();
    };
  }
}

/** `limit`, when it is a positive integer; throws a RangeError otherwise. */
function positiveLimit(limit: number): number {
  if (!Number.isSafeInteger(limit) || limit < 1) {
    throw new RangeError(`limit must be a positive integer, got ${String(limit)}`);
  }
  return limit;
}

/** Why `signal` aborted, as an Error (its reason when that is one, as AbortSignal's own are). */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error(`aborted: ${String(reason)}`);
}

/** Where requests to one server stand: in flight, waiting, and the seconds spent waiting so far. */
export interface ServerLoad {
  /** The server's origin: scheme, host and port (never user info). */
  readonly server: string;
  readonly inFlight: number;
  readonly waiting: number;
  readonly waitedSeconds: number;
}

/**
 * The process's request slots, one set per server origin (scheme, host and port), each allowing
 * `limit` requests in flight: every output writing to one server shares its set, whatever the
 * number of sinks. The composition root makes one from `--influxdb-max-requests-per-server`.
 */
export class ServerSlots {
  readonly limit: number;
  readonly #servers = new Map<string, RequestSlots>();

  constructor(limit: number = REQUESTS_PER_SERVER) {
    // Checked here, so that a bad limit fails at start rather than at the first write.
    this.limit = positiveLimit(limit);
  }

  /** The slots of the server at `url`, made on first use; one small entry per server, kept. */
  for(url: string): RequestSlots {
    const origin = new URL(url).origin;
    let slots = this.#servers.get(origin);
    if (slots === undefined) {
      slots = new RequestSlots(this.limit);
      this.#servers.set(origin, slots);
    }
    return slots;
  }

  /** Each server written to so far, for the metrics. */
  *load(): IterableIterator<ServerLoad> {
    for (const [server, slots] of this.#servers) {
      yield {
        server,
        inFlight: slots.busy,
        waiting: slots.waiting,
        waitedSeconds: slots.waitedSeconds,
      };
    }
  }
}
