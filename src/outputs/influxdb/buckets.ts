/**
 * `createBucket: true` (SPEC 2.3): makes sure a sink's bucket exists, creating it with the
 * requested retention through the v2 buckets API when it is missing. Idempotent; a bucket made by
 * someone else in the meantime counts as existing.
 */
import { InfluxDB } from '@influxdata/influxdb-client';
import type { InfluxDestination } from './spec.ts';
import type { OutputErrorCode } from '../types.ts';
import { influxRequest, InfluxRequestError } from './http.ts';
import type { RequestSlots } from '../server-slots.ts';
import { INFLUX_OUTPUT_DEFAULTS, influxTarget } from './writer.ts';

/** The bucket as ensureBucket found or made it. */
export interface BucketState {
  readonly id: string;
  /** Whether this call created it. */
  readonly created: boolean;
  /**
   * Its retention in seconds, 0 for forever. An existing bucket keeps its own, which may differ
   * from the requested one: compare to report it.
   */
  readonly retentionSeconds: number;
}

/** Why ensureBucket failed: the output codes, and UNSUPPORTED for servers without the API. */
export type BucketErrorCode = OutputErrorCode | 'UNSUPPORTED';

/** A failed bucket check or creation, typed by what should happen next. */
export class BucketError extends Error {
  override readonly name = 'BucketError';
  readonly code: BucketErrorCode;
  /** Whether trying again soon can succeed (network, 5xx); otherwise it needs a config change. */
  readonly retryable: boolean;

  constructor(code: BucketErrorCode, message: string, retryable: boolean, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.code = code;
    this.retryable = retryable;
  }
}

interface Bucket {
  readonly id: string;
  readonly retentionRules?: readonly { readonly type?: string; readonly everySeconds?: number }[];
}

/**
 * Returns the sink's bucket, creating it with `destination.retentionSeconds` when missing.
 *
 * @param token the token from the sink's Secret; it needs read and write on buckets of the org.
 * @throws BucketError UNSUPPORTED on servers without the v2 buckets API (InfluxDB 1.8 serves only
 * the v2 write and query APIs: create the database and retention policy there yourself),
 * UNAUTHORIZED, NOT_FOUND (no such org), or the retryable network and server errors.
 */
export async function ensureBucket(
  destination: InfluxDestination,
  token: string | undefined,
  options: {
    readonly timeoutMs?: number;
    /** Aborts the requests in flight (a shutdown); the result is then an UNREACHABLE error. */
    readonly signal?: AbortSignal;
    /** The server's request slots, shared with its writes; absent, requests are sent at once. */
    readonly slots?: RequestSlots | undefined;
  } = {},
): Promise<BucketState> {
  const target = influxTarget(destination);
  const client = new InfluxDB({ url: destination.url });
  const timeoutMs = options.timeoutMs ?? INFLUX_OUTPUT_DEFAULTS.timeoutMs;
  const org = encodeURIComponent(destination.org);
  const name = encodeURIComponent(destination.bucket);
  const signal = options.signal === undefined ? {} : { signal: options.signal };
  const slots = options.slots === undefined ? {} : { slots: options.slots };
  const get = async (path: string): Promise<unknown> =>
    (
      await influxRequest(client, target, {
        method: 'GET',
        path,
        token,
        timeoutMs,
        ...slots,
        ...signal,
      })
    ).body;

  // The org first: a 2.x server answers a missing bucket and a missing org both with 404.
  let orgID: string | undefined;
  try {
    const orgs = (await get(`/api/v2/orgs?org=${org}`)) as { orgs?: { id: string }[] };
    orgID = orgs.orgs?.[0]?.id;
  } catch (err) {
    throw bucketError(target, err);
  }
  if (orgID === undefined) {
    // A token without read access to the org sees an empty list rather than a 403.
    throw new BucketError(
      'NOT_FOUND',
      `${target}: organization "${destination.org}" not found, or the token may not read it`,
      false,
    );
  }
  const find = async (): Promise<Bucket | undefined> => {
    try {
      const found = (await get(`/api/v2/buckets?orgID=${orgID}&name=${name}`)) as {
        buckets?: Bucket[];
      };
      return found.buckets?.[0];
    } catch (err) {
      if (err instanceof InfluxRequestError && err.status === 404 && err.influxCode === 'not found')
        return undefined;
      throw bucketError(target, err);
    }
  };

  const existing = await find();
  if (existing !== undefined) return state(existing, false);
  try {
    const created = await influxRequest(client, target, {
      method: 'POST',
      path: '/api/v2/buckets',
      body: {
        orgID,
        name: destination.bucket,
        // No rule keeps data forever; InfluxDB refuses an expiry under one hour.
        retentionRules:
          destination.retentionSeconds === 0
            ? []
            : [{ type: 'expire', everySeconds: destination.retentionSeconds }],
      },
      token,
      timeoutMs,
      ...slots,
      ...signal,
    });
    return state(created.body as Bucket, true);
  } catch (err) {
    // Created by someone else since we looked (another replica): it exists, which is the goal.
    if (err instanceof InfluxRequestError && err.status === 422 && err.influxCode === 'conflict') {
      const raced = await find();
      if (raced !== undefined) return state(raced, false);
    }
    throw bucketError(target, err);
  }
}

function state(bucket: Bucket, created: boolean): BucketState {
  const expire = bucket.retentionRules?.find((r) => r.type === undefined || r.type === 'expire');
  return { id: bucket.id, created, retentionSeconds: expire?.everySeconds ?? 0 };
}

/** The BucketError for a failed request, recognising servers without the buckets API. */
function bucketError(target: string, err: unknown): unknown {
  if (!(err instanceof InfluxRequestError)) return err;
  // InfluxDB 1.8 (X-Influxdb-Version 1.x) and 3.x Core answer 404 without InfluxDB 2's JSON
  // error body; a 2.x server answers a missing org with {"code":"not found"}.
  const noApi =
    (err.status === 404 || err.status === 405) &&
    (err.serverVersion?.startsWith('1.') === true || err.influxCode === undefined);
  if (!noApi) return new BucketError(err.code, err.message, err.retryable, err);
  const server = err.serverVersion === undefined ? 'the server' : `InfluxDB ${err.serverVersion}`;
  return new BucketError(
    'UNSUPPORTED',
    `${target}: createBucket is unsupported: ${server} has no v2 buckets API; create the bucket ` +
      '(on 1.8: the database and retention policy) yourself and set createBucket: false',
    false,
    err,
  );
}
