/**
 * One request to an InfluxDB HTTP API through @influxdata/influxdb-client's transport, with a
 * per-request token, a deadline, and failures turned into OutputErrors that say whether a retry
 * can help. The token never appears in a message.
 */
import { HttpError, type InfluxDB, RequestTimedOutError } from '@influxdata/influxdb-client';
import { errorForStatus, OutputError } from '../types.ts';
import type { RequestSlots } from '../server-slots.ts';

/** A request, as the writer and the bucket check make it. */
export interface InfluxRequest {
  readonly method: 'GET' | 'POST';
  /** Path and query, e.g. `/api/v2/write?org=o&bucket=b&precision=ns`. */
  readonly path: string;
  /** Sent as is when a string, as JSON otherwise. */
  readonly body?: unknown;
  readonly contentType?: string;
  /** Absent or empty: no Authorization header. */
  readonly token: string | undefined;
  readonly timeoutMs: number;
  readonly gzipThreshold?: number;
  /** Aborts the request, e.g. when the output closes; reported as `aborted`. */
  readonly signal?: AbortSignal;
  /**
   * The server's slots: the request waits for one before it is sent, and its deadline starts
   * then (see `outputs/server-slots.ts`). Absent: sent at once.
   */
  readonly slots?: RequestSlots | undefined;
}

/** What a successful request returned. */
export interface InfluxResponse {
  readonly status: number;
  /** Parsed JSON, text, or undefined for 204. */
  readonly body: unknown;
  /** The server's `X-Influxdb-Version`, e.g. `v2.7.12` or `1.8.10`. */
  readonly version: string | undefined;
}

/** A failed request: the classified error, and the HTTP details when the server answered. */
export class InfluxRequestError extends OutputError {
  /** The HTTP status, when the server answered. */
  readonly status: number | undefined;
  /** InfluxDB's error code from the JSON body (`not found`, `conflict`, ...), when there is one. */
  readonly influxCode: string | undefined;
  /** The server's `X-Influxdb-Version`, when it answered. */
  readonly serverVersion: string | undefined;

  constructor(
    error: OutputError,
    details: { status?: number; influxCode?: string; serverVersion?: string } = {},
  ) {
    super(error.code, error.message, {
      retryable: error.retryable,
      ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
      ...(error.cause === undefined ? {} : { cause: error.cause }),
    });
    this.status = details.status;
    this.influxCode = details.influxCode;
    this.serverVersion = details.serverVersion;
  }
}

/**
 * Sends one request to `target` (a description for messages: host and path, no credentials).
 *
 * @throws InfluxRequestError classified by {@link errorForStatus} for HTTP errors, TIMEOUT for
 * the deadline, UNREACHABLE for connection failures and aborts.
 */
export async function influxRequest(
  client: InfluxDB,
  target: string,
  request: InfluxRequest,
): Promise<InfluxResponse> {
  if (request.slots === undefined) return exchange(client, target, request);
  let release: () => void;
  try {
    release = await request.slots.acquire(request.signal);
  } catch (err) {
    throw classify(err, target, {
      anonymous: (request.token ?? '') === '',
      timedOut: false,
      aborted: true,
      timeoutMs: request.timeoutMs,
    });
  }
  try {
    return await exchange(client, target, request);
  } finally {
    release();
  }
}

/** {@link influxRequest} once it may be sent: the deadline starts here. */
async function exchange(
  client: InfluxDB,
  target: string,
  request: InfluxRequest,
): Promise<InfluxResponse> {
  const headers: Record<string, string> = {
    'content-type': request.contentType ?? 'application/json; charset=utf-8',
    accept: 'application/json',
  };
  const token = request.token ?? '';
  const anonymous = token === '';
  if (!anonymous) headers.authorization = `Token ${token}`;
  const controller = new AbortController();
  let timedOut = false;
  const deadline = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, request.timeoutMs);
  const outer = request.signal;
  const abort = () => controller.abort();
  outer?.addEventListener('abort', abort, { once: true });
  let status = 0;
  let version: string | undefined;
  try {
    if (outer?.aborted) throw new Error('aborted before it was sent');
    const body: unknown = await client.transport.request(
      request.path,
      request.body,
      {
        method: request.method,
        headers,
        signal: controller.signal,
        ...(request.gzipThreshold === undefined ? {} : { gzipThreshold: request.gzipThreshold }),
      },
      (responseHeaders, statusCode) => {
        status = statusCode ?? 0;
        version = first(responseHeaders['x-influxdb-version']);
      },
    );
    return { status, body, version };
  } catch (err) {
    // Close the connection of a failed exchange: a timed-out request would otherwise linger.
    if (!controller.signal.aborted) controller.abort();
    throw classify(err, target, {
      anonymous,
      timedOut,
      aborted: outer?.aborted === true,
      timeoutMs: request.timeoutMs,
    });
  } finally {
    clearTimeout(deadline);
    outer?.removeEventListener('abort', abort);
  }
}

function classify(
  err: unknown,
  target: string,
  how: { anonymous: boolean; timedOut: boolean; aborted: boolean; timeoutMs: number },
): InfluxRequestError {
  if (err instanceof HttpError) {
    const hint =
      (err.statusCode === 401 || err.statusCode === 403) && how.anonymous
        ? ' (no token configured)'
        : '';
    const version = first(err.headers?.['x-influxdb-version']);
    const influxCode = jsonField(err.json, 'code');
    return new InfluxRequestError(
      errorForStatus(
        err.statusCode,
        `${target} answered ${err.statusCode}${hint}: ${serverMessage(err)}`,
        parseRetryAfter(first(err.headers?.['retry-after'])),
      ),
      {
        status: err.statusCode,
        ...(influxCode === undefined ? {} : { influxCode }),
        ...(version === undefined ? {} : { serverVersion: version }),
      },
    );
  }
  if (how.aborted) {
    return new InfluxRequestError(
      new OutputError('UNREACHABLE', `${target}: request aborted`, { retryable: true, cause: err }),
    );
  }
  if (how.timedOut || err instanceof RequestTimedOutError) {
    return new InfluxRequestError(
      new OutputError('TIMEOUT', `${target} did not answer within ${how.timeoutMs} ms`, {
        retryable: true,
        cause: err,
      }),
    );
  }
  const code = (err as { code?: unknown } | null)?.code;
  let message = err instanceof Error ? err.message : String(err);
  if (typeof code === 'string' && !message.includes(code)) message += ` (${code})`;
  // Not only refused or reset connections: a TLS or proxy problem is retried too, with backoff,
  // since it can be fixed on the other side without a restart here.
  return new InfluxRequestError(
    new OutputError('UNREACHABLE', `cannot reach ${target}: ${message}`, {
      retryable: true,
      cause: err,
    }),
  );
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function jsonField(json: unknown, key: string): string | undefined {
  if (typeof json !== 'object' || json === null) return undefined;
  const value = (json as Record<string, unknown>)[key];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** The server's own words: the JSON `message` of InfluxDB's error body, else the body's start. */
function serverMessage(err: HttpError): string {
  const message = jsonField(err.json, 'message') ?? jsonField(err.json, 'error');
  const text = message ?? err.body ?? err.statusMessage ?? '';
  return text.trim().slice(0, 500) || 'no details';
}

/** `Retry-After` in seconds or as an HTTP date, in milliseconds from now. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
