/**
 * Forwarding a sink's events as `audit.k8s.io/v1` EventList POSTs, as the removed dynamic
 * AuditSink backend did: to `clientConfig.url` or the resolved service URL, verified with
 * `caBundle`, at most `qps` batches per second with bursts of `burst`.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { setTimeout as setTimeoutPromise } from 'node:timers/promises';
import type { QueuedEvent } from '../../audit/stored-point.ts';
import type { WebhookDestination } from './spec.ts';
import { errorForStatus, eventsOnly, type Output, OutputError } from '../types.ts';

/** 30 s per request: the apiserver's own webhook request timeout. */
export const WEBHOOK_TIMEOUT_MS = 30_000;

/** A token bucket: `burst` batches at once, refilled at `qps` per second. */
export class Throttle {
  #tokens: number;
  #last: number;
  readonly #qps: number;
  readonly #burst: number;
  readonly #now: () => number;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;

  constructor(
    qps: number,
    burst: number,
    now: () => number = () => performance.now(),
    sleep: (ms: number, signal?: AbortSignal) => Promise<void> = (ms, signal) =>
      setTimeoutPromise(ms, undefined, signal === undefined ? {} : { signal }),
  ) {
    this.#qps = qps;
    this.#burst = burst;
    this.#tokens = burst;
    this.#now = now;
    this.#sleep = sleep;
    this.#last = now();
  }

  /**
   * Waits until one batch may be sent, and takes its token; rejects without taking one when
   * `signal` aborts.
   */
  async take(signal?: AbortSignal): Promise<void> {
    for (;;) {
      signal?.throwIfAborted();
      const now = this.#now();
      this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#qps);
      this.#last = now;
      if (this.#tokens >= 1) {
        this.#tokens -= 1;
        return;
      }
      await this.#sleep(((1 - this.#tokens) / this.#qps) * 1000, signal);
    }
  }
}

/** POSTs each batch as one EventList; any 2xx is delivery. */
export class WebhookOutput implements Output {
  readonly kind = 'webhook' as const;
  readonly target: string;
  readonly #url: URL;
  readonly #ca: string | undefined;
  readonly #throttle: Throttle;
  readonly #timeoutMs: number;
  readonly #closing = new AbortController();

  /** `throttle` and `timeoutMs` (default {@link WEBHOOK_TIMEOUT_MS}) are injectable for tests. */
  constructor(
    destination: WebhookDestination,
    options: { readonly throttle?: Throttle; readonly timeoutMs?: number } = {},
  ) {
    this.#url = new URL(destination.url);
    // The target names host and path only: a query could carry credentials.
    this.target = `${this.#url.origin}${this.#url.pathname}`;
    this.#ca = destination.caBundle;
    this.#throttle = options.throttle ?? new Throttle(destination.qps, destination.burst);
    this.#timeoutMs = options.timeoutMs ?? WEBHOOK_TIMEOUT_MS;
  }

  async write(queued: readonly QueuedEvent[], signal?: AbortSignal): Promise<void> {
    if (this.#closing.signal.aborted) {
      throw new OutputError('UNREACHABLE', `${this.target}: the output is closed`, {
        retryable: true,
      });
    }
    if (queued.length === 0) return;
    const events = eventsOnly(queued, this.target);
    const abort =
      signal === undefined ? this.#closing.signal : AbortSignal.any([this.#closing.signal, signal]);
    await this.#throttle.take(abort);
    const body = JSON.stringify({
      kind: 'EventList',
      apiVersion: 'audit.k8s.io/v1',
      metadata: {},
      items: events,
    });
    const { status, retryAfterMs, text } = await this.#post(body, abort);
    if (status >= 200 && status < 300) return;
    throw errorForStatus(
      status,
      `${this.target} answered ${status}: ${text.slice(0, 200)}`,
      retryAfterMs,
    );
  }

  #post(
    body: string,
    signal: AbortSignal,
  ): Promise<{ status: number; retryAfterMs?: number; text: string }> {
    const https = this.#url.protocol === 'https:';
    const request = https ? httpsRequest : httpRequest;
    const unreachable = (err: Error) => {
      if (err instanceof OutputError) return err;
      if (signal.aborted) {
        return new OutputError('UNREACHABLE', `${this.target}: request aborted`, {
          retryable: true,
          cause: err,
        });
      }
      return new OutputError('UNREACHABLE', `cannot reach ${this.target}: ${err.message}`, {
        retryable: true,
        cause: err,
      });
    };
    return new Promise((resolve, reject) => {
      const req = request(
        this.#url,
        {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
          ...(https && this.#ca !== undefined ? { ca: this.#ca } : {}),
          // Aborting destroys the socket: a destination that never answers holds nothing after.
          signal,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            if (text.length < 1024) text += chunk;
          });
          res.on('end', () => {
            clearTimeout(deadline);
            const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
            resolve({
              status: res.statusCode ?? 0,
              text,
              ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
            });
          });
          res.on('error', (err) => {
            clearTimeout(deadline);
            reject(unreachable(err));
          });
        },
      );
      // A deadline for the whole exchange: a server trickling bytes must not hold a batch forever.
      const deadline = setTimeout(() => {
        req.destroy(
          new OutputError('TIMEOUT', `${this.target} did not answer within ${this.#timeoutMs} ms`, {
            retryable: true,
          }),
        );
      }, this.#timeoutMs);
      req.on('error', (err) => {
        clearTimeout(deadline);
        reject(unreachable(err));
      });
      req.end(body);
    });
  }

  /** Aborts requests in flight (their batches stay queued) and refuses further writes. */
  close(): Promise<void> {
    this.#closing.abort();
    return Promise.resolve();
  }
}

/** `Retry-After` in seconds or as an HTTP date, in milliseconds from now. */
export function parseRetryAfter(header: string | undefined, now = Date.now()): number | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
