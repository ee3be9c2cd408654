// The native AuditSink endpoints (`/audit/v1/native/<signature>/...`): the signed path is the only
// credential, and it admits posts for its own sink only. Through fastify's inject() (no socket),
// with an Ingest that records what it is handed. Starts no process.
import { afterEach, describe, expect, it } from 'vitest';
import { nativeSignature, nativeSignatureMatches } from '../../../src/receiver/auth.ts';
import { ReceiverOptionsError } from '../../../src/receiver/errors.ts';
import { validateReceiverOptions } from '../../../src/receiver/options.ts';
import {
  expectError,
  item,
  post,
  RecordingIngest,
  TOKEN,
  type TestReceiver,
  testReceiver,
} from './harness.ts';
import { eventList } from '../../support/events.ts';

const KEY = 'native-key-5b46c944305e45a0';
const TRAIL = 'AuditSink/cluster-trail';
const ORDERS = 'AuditPipeline/shop/orders';
const LEDGER = 'AuditPipeline/billing/ledger';

const open: TestReceiver[] = [];

/** A receiver with three existing sinks, serving native endpoints signed with `key` unless null. */
function nativeReceiver(key: string | null = KEY): TestReceiver {
  const r = testReceiver(
    key === null ? {} : { nativeKey: key },
    new RecordingIngest([TRAIL, ORDERS, LEDGER]),
  );
  open.push(r);
  return r;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.app.close()));
});

/** The native endpoint path of a sink key, signed with `signature`. */
function nativePath(sinkKey: string, signature: string): string {
  const [kind, ...rest] = sinkKey.split('/');
  return kind === 'AuditSink'
    ? `/audit/v1/native/${signature}/sinks/${rest.join('/')}`
    : `/audit/v1/native/${signature}/pipelines/${rest.join('/')}`;
}

/** Posts one event as a native AuditSink does: no Authorization header at all. */
function postUncredentialed(r: TestReceiver, url: string) {
  return post(r.app, url, eventList([item()]), {}, ['authorization']);
}

describe('nativeSignature', () => {
  it('is the same for the same key and sink', () => {
    expect(nativeSignature(KEY, ORDERS)).toBe(nativeSignature(KEY, ORDERS));
  });

  it('differs per sink and per key', () => {
    const signatures = [
      nativeSignature(KEY, ORDERS),
      nativeSignature(KEY, LEDGER),
      nativeSignature(KEY, TRAIL),
      nativeSignature(`${KEY}-rotated`, ORDERS),
    ];
    expect(new Set(signatures).size).toBe(signatures.length);
  });

  it('fits a URL path segment without escaping (base64url of a SHA-256 HMAC)', () => {
    const signature = nativeSignature(KEY, ORDERS);
    expect(signature).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(encodeURIComponent(signature)).toBe(signature);
  });
});

describe('nativeSignatureMatches', () => {
  it.each([
    { name: "the sink's own signature", signature: () => nativeSignature(KEY, ORDERS), ok: true },
    { name: "another sink's signature", signature: () => nativeSignature(KEY, LEDGER), ok: false },
    {
      name: 'a signature made with another key',
      signature: () => nativeSignature(`${KEY}-other`, ORDERS),
      ok: false,
    },
    { name: 'garbage', signature: () => 'not-a-signature', ok: false },
    { name: 'an empty signature', signature: () => '', ok: false },
    {
      name: 'its own signature with one character changed',
      signature: () => {
        const s = nativeSignature(KEY, ORDERS);
        return `${s.slice(0, -1)}${s.endsWith('A') ? 'B' : 'A'}`;
      },
      ok: false,
    },
    {
      name: 'its own signature with more appended',
      signature: () => `${nativeSignature(KEY, ORDERS)}A`,
      ok: false,
    },
  ])('is $ok for $name', ({ signature, ok }) => {
    expect(nativeSignatureMatches(KEY, ORDERS, signature())).toBe(ok);
  });
});

describe('native endpoints with a native key', () => {
  it.each([TRAIL, ORDERS])(
    'admits a post to %s with its signature and no credentials, into exactly that sink',
    async (sinkKey) => {
      const r = nativeReceiver();
      const response = await postUncredentialed(
        r,
        nativePath(sinkKey, nativeSignature(KEY, sinkKey)),
      );
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({ accepted: 1 });
      expect(r.ingest.calls.map((c) => c.target)).toEqual([{ kind: 'sink', key: sinkKey }]);
    },
  );

  it("answers 404 SINK_NOT_FOUND to another sink's signature and ingests nothing", async () => {
    const r = nativeReceiver();
    const response = await postUncredentialed(r, nativePath(ORDERS, nativeSignature(KEY, LEDGER)));
    expectError(response, 404, 'SINK_NOT_FOUND');
    expect(r.ingest.calls).toEqual([]);
  });

  it('does not admit a pipeline with the signature of the AuditSink of the same name', async () => {
    const r = nativeReceiver();
    const signature = nativeSignature(KEY, 'AuditSink/orders');
    const response = await postUncredentialed(
      r,
      `/audit/v1/native/${signature}/pipelines/shop/orders`,
    );
    expectError(response, 404, 'SINK_NOT_FOUND');
    expect(r.ingest.calls).toEqual([]);
  });

  it.each(['garbage', 'A'.repeat(43), nativeSignature(`${KEY}-other`, ORDERS)])(
    'answers 404 SINK_NOT_FOUND to the signature %s and ingests nothing',
    async (signature) => {
      const r = nativeReceiver();
      const response = await postUncredentialed(r, nativePath(ORDERS, signature));
      expectError(response, 404, 'SINK_NOT_FOUND');
      expect(r.ingest.calls).toEqual([]);
    },
  );

  it('answers a wrong signature 404 even when a valid bearer token comes with it', async () => {
    const r = nativeReceiver();
    const response = await post(r.app, nativePath(ORDERS, 'garbage'), eventList([item()]));
    expectError(response, 404, 'SINK_NOT_FOUND');
    expect(r.ingest.calls).toEqual([]);
  });

  it('answers 404 SINK_NOT_FOUND for a correctly signed sink that does not exist', async () => {
    const r = nativeReceiver();
    const gone = 'AuditPipeline/shop/gone';
    const response = await postUncredentialed(r, nativePath(gone, nativeSignature(KEY, gone)));
    expectError(response, 404, 'SINK_NOT_FOUND');
    expect(r.ingest.calls).toEqual([]);
  });

  it('still requires the token on the fan-in and per-sink endpoints', async () => {
    const r = nativeReceiver();
    for (const url of [
      '/audit/v1/events',
      '/audit/v1/sinks/cluster-trail',
      '/audit/v1/pipelines/shop/orders',
    ]) {
      expectError(await postUncredentialed(r, url), 401, 'UNAUTHENTICATED');
    }
    expect(r.ingest.calls).toEqual([]);
    const response = await post(r.app, '/audit/v1/pipelines/shop/orders', eventList([item()]), {
      authorization: `Bearer ${TOKEN}`,
    });
    expect(response.statusCode).toBe(200);
  });

  it('labels native requests by route in the metrics, not by signature or sink', async () => {
    const r = nativeReceiver();
    await postUncredentialed(r, nativePath(TRAIL, nativeSignature(KEY, TRAIL)));
    await postUncredentialed(r, nativePath(ORDERS, nativeSignature(KEY, ORDERS)));
    const text = await r.registry.metrics();
    expect(text).toContain(
      'kube_audit_receiver_requests_total{endpoint="nativeSinks",status="200"} 1',
    );
    expect(text).toContain(
      'kube_audit_receiver_requests_total{endpoint="nativePipelines",status="200"} 1',
    );
  });
});

describe('native endpoints without a native key', () => {
  it.each([TRAIL, ORDERS])(
    'answers 404 SINK_NOT_FOUND for %s, whatever the signature, and ingests nothing',
    async (sinkKey) => {
      const r = nativeReceiver(null);
      const response = await postUncredentialed(
        r,
        nativePath(sinkKey, nativeSignature(KEY, sinkKey)),
      );
      expectError(response, 404, 'SINK_NOT_FOUND');
      expect(r.ingest.calls).toEqual([]);
    },
  );

  it('answers 404 rather than 401, even with a valid bearer token', async () => {
    const r = nativeReceiver(null);
    const response = await post(
      r.app,
      nativePath(ORDERS, nativeSignature(KEY, ORDERS)),
      eventList([item()]),
    );
    expectError(response, 404, 'SINK_NOT_FOUND');
    expect(r.ingest.calls).toEqual([]);
  });
});

describe('the nativeKey receiver option', () => {
  const valid = { host: '127.0.0.1', port: 0, insecure: true };

  function problemsOf(input: unknown): readonly string[] {
    try {
      validateReceiverOptions(input);
    } catch (err) {
      if (err instanceof ReceiverOptionsError) return err.problems;
      throw err;
    }
    throw new Error('expected the options to be rejected');
  }

  it.each(['', 'short', 'x'.repeat(15)])(
    'rejects the key %j, shorter than 16 characters',
    (key) => {
      expect(problemsOf({ ...valid, nativeKey: key })).toContain(
        'nativeKey: expected a secret of at least 16 characters',
      );
    },
  );

  it('rejects a key that is not a string', () => {
    expect(problemsOf({ ...valid, nativeKey: 1234567890123456 })).toContain(
      'nativeKey: expected a secret of at least 16 characters',
    );
  });

  it('accepts a key of 16 characters and keeps it', () => {
    expect(validateReceiverOptions({ ...valid, nativeKey: 'x'.repeat(16) }).nativeKey).toBe(
      'x'.repeat(16),
    );
  });

  it('leaves the native endpoints off when no key is given', () => {
    expect(validateReceiverOptions(valid).nativeKey).toBeUndefined();
  });
});
