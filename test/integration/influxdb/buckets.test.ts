// ensureBucket against a real influxd 2.7 (built by scripts/build-influxd.sh, started by
// test/harness/influxd.ts, one server for the file). InfluxDB 1.8, which has no buckets API, is not
// built here: a node:http server on 127.0.0.1 answers as its HTTP handler does for an unknown
// path (404 "404 page not found", X-Influxdb-Version 1.8.10); a server that never answers is one
// that reads requests and says nothing.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BucketError, ensureBucket } from '../../../src/outputs/influxdb/buckets.ts';
import { InfluxOutput } from '../../../src/outputs/influxdb/writer.ts';
import {
  auditPointCounts,
  destinationOn,
  freePort,
  type InfluxServer,
  startInfluxd,
} from '../../harness/influxd.ts';
import { movedToNow, recordedEvents } from '../../support/recorded.ts';
import { rejectionOf } from '../../support/rejection.ts';

let server: InfluxServer;

beforeAll(async () => {
  server = await startInfluxd();
});

afterAll(async () => {
  await server?.dispose();
});

/** The bucket as the buckets API lists it. */
async function listed(name: string): Promise<{ id: string; retention: number } | undefined> {
  const res = await fetch(`${server.url}/api/v2/buckets?orgID=${server.orgID}&name=${name}`, {
    headers: { authorization: `Token ${server.token}` },
  });
  const body = (await res.json()) as {
    buckets: { id: string; retentionRules: { everySeconds: number }[] }[];
  };
  const bucket = body.buckets[0];
  return bucket && { id: bucket.id, retention: bucket.retentionRules[0]?.everySeconds ?? 0 };
}

describe('ensureBucket against a real influxd', () => {
  it('creates a missing bucket with the requested retention, which keeps recorded events moved to now', async () => {
    const destination = destinationOn(server, {
      bucket: 'created-2h',
      createBucket: true,
      retentionSeconds: 7200,
    });
    const state = await ensureBucket(destination, server.token);
    expect(state).toEqual({
      id: expect.any(String) as string,
      created: true,
      retentionSeconds: 7200,
    });
    expect(await listed('created-2h')).toEqual({ id: state.id, retention: 7200 });
    // Recorded events are older than the retention: only events moved to now are kept.
    const events = movedToNow(recordedEvents());
    await new InfluxOutput(destination, 'audit/trail', () => server.token).write(events);
    expect(await auditPointCounts(server, 'created-2h')).toEqual({
      points: events.length,
      distinct: events.length,
    });
  });

  it('creates a bucket that keeps data forever when retention is 0', async () => {
    const state = await ensureBucket(
      destinationOn(server, { bucket: 'created-forever', createBucket: true }),
      server.token,
    );
    expect(state.retentionSeconds).toBe(0);
    expect(await listed('created-forever')).toEqual({ id: state.id, retention: 0 });
  });

  it('is idempotent: an existing bucket is found, and keeps its own retention', async () => {
    const destination = destinationOn(server, {
      bucket: 'idempotent',
      createBucket: true,
      retentionSeconds: 3600,
    });
    const first = await ensureBucket(destination, server.token);
    const again = await ensureBucket({ ...destination, retentionSeconds: 86_400 }, server.token);
    expect(again).toEqual({ id: first.id, created: false, retentionSeconds: 3600 });
  });

  it('lets concurrent callers (replicas) race: one creates, all get the same bucket', async () => {
    const destination = destinationOn(server, { bucket: 'raced', createBucket: true });
    const states = await Promise.all(
      Array.from({ length: 4 }, () => ensureBucket(destination, server.token)),
    );
    expect(states.filter((s) => s.created)).toHaveLength(1);
    expect(new Set(states.map((s) => s.id)).size).toBe(1);
  });

  it('finds the onboarding bucket without creating anything', async () => {
    const state = await ensureBucket(destinationOn(server), server.token);
    expect(state.created).toBe(false);
  });

  it('answers a missing org with NOT_FOUND, not retryable', async () => {
    const err = await rejectionOf(
      ensureBucket(destinationOn(server, { org: 'no-such-org', bucket: 'b' }), server.token),
      BucketError,
    );
    expect(err.code).toBe('NOT_FOUND');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('no-such-org');
  });

  it('answers a bad token with UNAUTHORIZED, not retryable', async () => {
    const err = await rejectionOf(
      ensureBucket(destinationOn(server, { bucket: 'b' }), 'bad-token'),
      BucketError,
    );
    expect(err.code).toBe('UNAUTHORIZED');
    expect(err.retryable).toBe(false);
    expect(err.message).not.toContain('bad-token');
  });

  it('answers a token that may only write to a bucket with a clear error, not retryable', async () => {
    const token = await server.createToken([{ action: 'write', bucket: server.bucket }]);
    const err = await rejectionOf(
      ensureBucket(destinationOn(server, { bucket: 'needs-rights' }), token),
      BucketError,
    );
    // The org is invisible to such a token: influxd lists no orgs rather than answering 403.
    expect(err.code).toBe('NOT_FOUND');
    expect(err.retryable).toBe(false);
    expect(err.message).toContain('or the token may not read it');
  });

  it('reports an unreachable server as UNREACHABLE, retryable', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    const err = await rejectionOf(
      ensureBucket({ ...destinationOn(server), url }, server.token),
      BucketError,
    );
    expect(err.code).toBe('UNREACHABLE');
    expect(err.retryable).toBe(true);
  });
});

describe('ensureBucket against a server that never answers', () => {
  it('ends as soon as its signal aborts, as a retryable UNREACHABLE', async () => {
    const http = createServer((req) => {
      req.resume();
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
      const deadline = new AbortController();
      const pending = rejectionOf(
        ensureBucket({ ...destinationOn(server), url }, server.token, { signal: deadline.signal }),
        BucketError,
      );
      await new Promise((r) => setTimeout(r, 100));
      const started = performance.now();
      deadline.abort();
      const err = await pending;
      expect(performance.now() - started).toBeLessThan(100);
      expect(err.code).toBe('UNREACHABLE');
      expect(err.retryable).toBe(true);
    } finally {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    }
  });
});

describe('ensureBucket against a server without the buckets API', () => {
  it('reports createBucket as UNSUPPORTED on InfluxDB 1.8', async () => {
    const http = createServer((req, res) => {
      req.resume();
      res.writeHead(404, {
        'content-type': 'text/plain; charset=utf-8',
        'x-influxdb-version': '1.8.10',
        'x-influxdb-build': 'OSS',
      });
      res.end('404 page not found\n');
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
      const err = await rejectionOf(
        ensureBucket({ ...destinationOn(server), url, bucket: 'audit/autogen' }, 'user:password'),
        BucketError,
      );
      expect(err.code).toBe('UNSUPPORTED');
      expect(err.retryable).toBe(false);
      expect(err.message).toContain('InfluxDB 1.8.10');
      expect(err.message).toContain('createBucket');
    } finally {
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    }
  });
});
