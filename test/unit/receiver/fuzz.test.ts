// Fuzzing the receiver's request bodies with fast-check through fastify's inject() (no socket):
// whatever arrives, the answer is 200, 400 or 413, never a 500, and the receiver keeps serving.
// Starts no process.
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { BATCHES, item, post, type TestReceiver, testReceiver } from './harness.ts';
import { eventList } from '../../support/events.ts';

// Just above the smaller recorded batch: some mutated batches fit, the larger one never does,
// so all three outcomes occur.
const BODY_LIMIT = 16 * 1024;
const ALLOWED = new Set([200, 400, 413]);

const receiver: TestReceiver = testReceiver({ bodyLimitBytes: BODY_LIMIT });

afterAll(async () => {
  await receiver.app.close();
});

const seen = new Map<number, number>();

async function expectHandled(body: string): Promise<void> {
  const response = await post(receiver.app, '/audit/v1/events?timeout=30s', body);
  seen.set(response.statusCode, (seen.get(response.statusCode) ?? 0) + 1);
  if (!ALLOWED.has(response.statusCode)) {
    throw new Error(
      `status ${response.statusCode} for body ${JSON.stringify(body.slice(0, 200))}: ${response.body}`,
    );
  }
  // Errors stay JSON with a code; a 200 reports what was handed on.
  const parsed = response.json<Record<string, unknown>>();
  if (response.statusCode === 200) expect(typeof parsed.accepted).toBe('number');
  else expect(typeof parsed.code).toBe('string');
}

const RECORDED_ITEMS = BATCHES.flatMap(
  (batch) => (JSON.parse(batch.text) as { items: Record<string, unknown>[] }).items,
);
const FIELDS = [
  'level',
  'auditID',
  'stage',
  'requestURI',
  'verb',
  'user',
  'impersonatedUser',
  'sourceIPs',
  'userAgent',
  'objectRef',
  'responseStatus',
  'requestObject',
  'responseObject',
  'requestReceivedTimestamp',
  'stageTimestamp',
  'annotations',
  'apiVersion',
  'kind',
  'metadata',
] as const;

/** A text edit at a random place: truncate, overwrite, insert or delete. */
type TextMutation =
  | { readonly op: 'truncate'; readonly at: number }
  | { readonly op: 'overwrite' | 'insert'; readonly at: number; readonly text: string }
  | { readonly op: 'delete'; readonly at: number; readonly length: number };

const textMutation: fc.Arbitrary<TextMutation> = fc.oneof(
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({
    op: fc.constant('overwrite' as const),
    at: fc.nat(),
    text: fc.string({ minLength: 1, maxLength: 4 }),
  }),
  fc.record({
    op: fc.constant('insert' as const),
    at: fc.nat(),
    text: fc.string({ unit: 'binary', maxLength: 8 }),
  }),
  fc.record({
    op: fc.constant('delete' as const),
    at: fc.nat(),
    length: fc.integer({ min: 1, max: 64 }),
  }),
);

function mutateText(text: string, mutations: readonly TextMutation[]): string {
  let out = text;
  for (const m of mutations) {
    const at = out.length === 0 ? 0 : m.at % out.length;
    switch (m.op) {
      case 'truncate':
        out = out.slice(0, at);
        break;
      case 'overwrite':
        out = out.slice(0, at) + m.text + out.slice(at + m.text.length);
        break;
      case 'insert':
        out = out.slice(0, at) + m.text + out.slice(at);
        break;
      case 'delete':
        out = out.slice(0, at) + out.slice(at + m.length);
        break;
    }
  }
  return out;
}

describe('fuzzed request bodies', () => {
  it('answers random strings with 400 or 413, never 500', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 256 }), expectHandled),
      { numRuns: 200 },
    );
  });

  it('answers random JSON documents with 200, 400 or 413', async () => {
    await fc.assert(fc.asyncProperty(fc.json({ maxDepth: 6 }), expectHandled), { numRuns: 200 });
  });

  it('answers EventLists of random items with 200, 400 or 413', async () => {
    const list = fc.record({
      kind: fc.constantFrom('EventList', 'Event', 'List', ''),
      apiVersion: fc.constantFrom('audit.k8s.io/v1', 'audit.k8s.io/v1beta1', 'v1'),
      items: fc.array(fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant(item())), {
        maxLength: 5,
      }),
    });
    await fc.assert(
      fc.asyncProperty(list, (doc) => expectHandled(JSON.stringify(doc))),
      {
        numRuns: 200,
      },
    );
  });

  it('answers recorded apiserver batches with random text edits with 200, 400 or 413', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...BATCHES.map((b) => b.text)),
        fc.array(textMutation, { minLength: 1, maxLength: 3 }),
        (text, mutations) => expectHandled(mutateText(text, mutations)),
      ),
      { numRuns: 300 },
    );
  });

  it('answers recorded events with random field values with 200, 400 or 413', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({
            index: fc.nat(),
            field: fc.constantFrom(...FIELDS),
            value: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant(undefined)),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        fc.constantFrom('audit.k8s.io/v1', 'audit.k8s.io/v1beta1'),
        (edits, apiVersion) => {
          const items = RECORDED_ITEMS.slice(0, 6).map((e) => structuredClone(e));
          for (const edit of edits) {
            const target = items[edit.index % items.length] as Record<string, unknown>;
            target[edit.field] = edit.value;
          }
          return expectHandled(eventList(items, apiVersion));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('met every allowed outcome and still serves a recorded batch afterwards', async () => {
    expect([...seen.keys()].sort()).toEqual([200, 400, 413]);
    const response = await post(receiver.app, '/audit/v1/events', BATCHES[1].text);
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ accepted: BATCHES[1].count });
  });
});
