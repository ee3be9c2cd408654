/**
 * The kube-apiserver's side of the audit webhook, for tests that put load or faults on the
 * receiver: batches of recorded events, each event made new (its own auditID and timestamp), and a
 * client that posts them as the apiserver's webhook backend does, retrying a batch on 429 (after
 * its Retry-After), 5xx and connection errors. Starts no process.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const EVENTS_FILE = fileURLToPath(
  new URL('../fixtures/apiserver-1.20/events.jsonl', import.meta.url),
);

/** The events a real kube-apiserver 1.20 recorded, as JSON text. */
const RECORDED: readonly string[] = readFileSync(EVENTS_FILE, 'utf8').split('\n').filter(Boolean);

/** One batch, as the apiserver posts it. */
export interface AuditBatch {
  /** An `audit.k8s.io/v1` EventList. */
  readonly body: string;
  readonly auditIDs: readonly string[];
}

// Every event of the process gets its own microsecond, counted from an hour ago: two events of one
// series in the same microsecond would compete for the 1,000 nanosecond slots below it, which a
// few thousand copies of one recorded request would exhaust. Real requests are spread out in time.
const EPOCH_MICROS = BigInt(Date.now() - 3_600_000) * 1000n;
let micros = 0n;

function timestamp(at: bigint): string {
  const ms = Number(at / 1000n);
  const fraction = (at % 1_000_000n).toString().padStart(6, '0');
  return `${new Date(ms).toISOString().slice(0, 19)}.${fraction}Z`;
}

/** Makes new events from the recorded ones: auditIDs `<prefix>-<n>`, each in its own microsecond. */
export class RecordedEvents {
  readonly #prefix: string;
  #next = 0;

  constructor(prefix: string) {
    this.#prefix = prefix;
  }

  /** How many events were made. */
  get count(): number {
    return this.#next;
  }

  /** A batch of `size` new events; 400 is the apiserver's default batch size. */
  batch(size = 400): AuditBatch {
    const items: unknown[] = [];
    const auditIDs: string[] = [];
    for (let i = 0; i < size; i++) {
      const n = this.#next++;
      const event = JSON.parse(RECORDED[n % RECORDED.length] as string) as Record<string, unknown>;
      const at = EPOCH_MICROS + micros++;
      event.auditID = `${this.#prefix}-${n}`;
      event.requestReceivedTimestamp = timestamp(at - 1000n);
      event.stageTimestamp = timestamp(at);
      items.push(event);
      auditIDs.push(event.auditID as string);
    }
    return {
      body: JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', items }),
      auditIDs,
    };
  }
}

/** Retry timing of {@link AuditWebhookClient}. */
export interface ClientRetry {
  /** First wait after a failure without Retry-After; grows by half at each further failure. */
  readonly initialMs: number;
  readonly maxMs: number;
  /** A batch still failing after this long fails the test instead of being dropped. */
  readonly giveUpMs: number;
}

/**
 * The apiserver's webhook backend retries with a backoff growing by 1.5 (k8s.io/apiserver
 * util/webhook); its 10 s start is scaled down so that tests finish soon.
 */
export const TEST_RETRY: ClientRetry = { initialMs: 100, maxMs: 2_000, giveUpMs: 120_000 };

/** What the client saw, counted per attempt. */
export interface ClientCounts {
  attempts: number;
  /** Batches answered 200. */
  acked: number;
  ackedEvents: number;
  throttled: number;
  serverErrors: number;
  connectionErrors: number;
  /** The shortest Retry-After of a 429, in seconds. */
  minRetryAfter: number;
}

/** An answer the apiserver does not retry. */
class ReceiverRefusal extends Error {
  override readonly name = 'ReceiverRefusal';
}

/** Posts batches to one receiver endpoint, retrying as the apiserver does, until each is answered 200. */
export class AuditWebhookClient {
  readonly counts: ClientCounts = {
    attempts: 0,
    acked: 0,
    ackedEvents: 0,
    throttled: 0,
    serverErrors: 0,
    connectionErrors: 0,
    minRetryAfter: Infinity,
  };
  readonly #url: string;
  readonly #retry: ClientRetry;

  /** `url`: the endpoint, e.g. `http://127.0.0.1:8443/audit/v1/events`. */
  constructor(url: string, retry: ClientRetry = TEST_RETRY) {
    // The apiserver appends its request timeout; the receiver ignores it.
    this.#url = `${url}?timeout=30s`;
    this.#retry = retry;
  }

  /**
   * Posts `batch` until it is answered 200.
   *
   * @throws Error on an answer that the apiserver would not retry (4xx other than 429), or when
   * the batch is still refused after `giveUpMs`.
   */
  async send(batch: AuditBatch): Promise<void> {
    const started = Date.now();
    let backoff = this.#retry.initialMs;
    for (;;) {
      this.counts.attempts++;
      let wait: number;
      try {
        const res = await fetch(this.#url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: batch.body,
          signal: AbortSignal.timeout(30_000),
        });
        const text = await res.text();
        if (res.status === 200) {
          this.counts.acked++;
          this.counts.ackedEvents += batch.auditIDs.length;
          return;
        }
        const retryAfter = Number(res.headers.get('retry-after') ?? Number.NaN);
        if (res.status === 429) {
          this.counts.throttled++;
          if (Number.isFinite(retryAfter)) {
            this.counts.minRetryAfter = Math.min(this.counts.minRetryAfter, retryAfter);
          }
        } else if (res.status >= 500) {
          this.counts.serverErrors++;
        } else {
          throw new ReceiverRefusal(`the receiver answered ${res.status}: ${text.slice(0, 500)}`);
        }
        // Retry-After is a floor: never retried sooner than the server asked.
        wait = Number.isFinite(retryAfter) ? Math.max(retryAfter * 1000, backoff) : backoff;
      } catch (err) {
        if (err instanceof ReceiverRefusal) throw err;
        // A refused, reset or cut connection, or no answer in time: the apiserver retries.
        this.counts.connectionErrors++;
        wait = backoff;
      }
      if (Date.now() - started > this.#retry.giveUpMs) {
        throw new Error(`a batch was still refused after ${this.#retry.giveUpMs} ms`);
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
      backoff = Math.min(this.#retry.maxMs, backoff * 1.5);
    }
  }
}
