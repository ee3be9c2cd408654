// Shared by the receiver unit tests: an Ingest that records what it is handed, and a receiver
// application answering through fastify's inject() (no socket). Starts no process.
import { readFileSync } from 'node:fs';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { Registry } from 'prom-client';
import { expect } from 'vitest';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { RECEIVER_ERRORS } from '../../../src/receiver/errors.ts';
import {
  type ReceiverOptionsInput,
  validateReceiverOptions,
} from '../../../src/receiver/options.ts';
import { createReceiverApp } from '../../../src/receiver/server.ts';
import type { Ingest, IngestResult, IngestTarget } from '../../../src/sinks/ingest.ts';

/** The token the fake apiserver presents. */
export const TOKEN = 'apiserver-token-5b46c944';

const FIXTURES = new URL('../../fixtures/apiserver-1.20/', import.meta.url);

/** The POST bodies recorded from a real kube-apiserver 1.20, with their event counts. */
export const BATCHES = [
  { text: readFileSync(new URL('batches/00001.json', FIXTURES), 'utf8'), count: 13 },
  { text: readFileSync(new URL('batches/00002.json', FIXTURES), 'utf8'), count: 10 },
] as const;

/** One recorded call to {@link RecordingIngest.ingest}. */
export interface IngestCall {
  readonly events: AuditEvent[];
  readonly target: IngestTarget;
}

/** An Ingest that records its calls and answers what the test tells it to. */
export class RecordingIngest implements Ingest {
  readonly calls: IngestCall[] = [];
  readonly sinks: Set<string>;
  answer: (events: AuditEvent[]) => Promise<IngestResult> = (events) =>
    Promise.resolve({ ok: true, accepted: events.length });
  /** What {@link refusing} answers: seconds to wait, or undefined to take the batch. */
  wait: number | undefined;
  /** What {@link keepsBodies} answers, and the targets it was asked for. */
  bodies = true;
  readonly bodiesAsked: IngestTarget[] = [];

  constructor(sinks: readonly string[] = []) {
    this.sinks = new Set(sinks);
  }

  ingest(events: AuditEvent[], target: IngestTarget): Promise<IngestResult> {
    this.calls.push({ events, target });
    return this.answer(events);
  }

  hasSink(key: string): boolean {
    return this.sinks.has(key);
  }

  refusing(): number | undefined {
    return this.wait;
  }

  keepsBodies(target: IngestTarget): boolean {
    this.bodiesAsked.push(target);
    return this.bodies;
  }
}

/** A receiver application under test, with what it was built from. */
export interface TestReceiver {
  readonly app: FastifyInstance;
  readonly ingest: RecordingIngest;
  readonly registry: Registry;
  readonly tokens: Set<string>;
  readonly markLeaving: () => void;
  readonly markClosing: () => void;
}

/**
 * Builds a receiver application. Its TLS files are never read: inject() has no TLS, and only
 * startReceiver loads certificates.
 */
export function testReceiver(
  overrides: Partial<ReceiverOptionsInput> = {},
  ingest = new RecordingIngest(),
): TestReceiver {
  const tokens = new Set([TOKEN]);
  const registry = new Registry();
  const options = validateReceiverOptions({
    host: '127.0.0.1',
    port: 0,
    // Insecure mode forbids a certificate.
    ...(overrides.insecure === true
      ? {}
      : { tls: { certFile: 'unused.crt', keyFile: 'unused.key' } }),
    tokens: () => tokens,
    ...overrides,
  });
  const { app, markLeaving, markClosing } = createReceiverApp(options, ingest, registry);
  return { app, ingest, registry, tokens, markLeaving, markClosing };
}

/** Headers of a request as the apiserver sends it, minus the names given in `without`. */
export function apiserverHeaders(
  extra: Record<string, string> = {},
  without: readonly string[] = [],
): Record<string, string> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    authorization: `Bearer ${TOKEN}`,
    'user-agent': 'kube-apiserver-admission',
    ...extra,
  };
  for (const name of without) delete headers[name];
  return headers;
}

/** POSTs a body with the apiserver's headers. */
export function post(
  app: FastifyInstance,
  url: string,
  body: string | object,
  extra: Record<string, string> = {},
  without: readonly string[] = [],
): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url,
    headers: apiserverHeaders(extra, without),
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Asserts a JSON error response with exactly `{code, message}` and a known code. */
export function expectError(response: LightMyRequestResponse, status: number, code: string): void {
  expect({ status: response.statusCode, body: response.body }).toMatchObject({ status });
  expect(response.headers['content-type']).toMatch(/^application\/json/);
  const body = response.json<Record<string, unknown>>();
  expect(Object.keys(body).sort()).toEqual(['code', 'message']);
  expect(body.code).toBe(code);
  expect(typeof body.message).toBe('string');
  if (code in RECEIVER_ERRORS) {
    expect(RECEIVER_ERRORS[code as keyof typeof RECEIVER_ERRORS].statusCode).toBe(status);
  }
}

/** A minimal valid audit.k8s.io/v1 event as an EventList item. */
export function item(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    level: 'Metadata',
    auditID: '5b46c944-305e-45a0-93cd-c2f87c45e9bc',
    stage: 'ResponseComplete',
    requestURI: '/api/v1/namespaces/shop/pods?limit=500',
    verb: 'list',
    user: { username: 'admin', groups: ['system:masters'] },
    stageTimestamp: '2026-11-22T04:08:57.440160Z',
    ...overrides,
  };
}
