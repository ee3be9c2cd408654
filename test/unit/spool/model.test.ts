// Random sequences of append / next / commit / close-and-reopen / torn tail against a model of
// the queue (a list of acknowledged events and one cursor per consumer), in memory and on real
// files in temporary directories. Starts no process.
import { appendFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  openQueue,
  type QueueBatch,
  QueueFullError,
  type SinkQueue,
} from '../../../src/spool/index.ts';
import { event, ids, lineBytes, TempDirs } from './support.ts';

const temp = new TempDirs();
afterAll(() => temp.removeAll());

const CONSUMERS = ['influxdb', 'webhook'] as const;

type Op =
  | { readonly kind: 'append'; readonly size: number }
  | { readonly kind: 'next'; readonly consumer: 0 | 1; readonly max: number }
  | { readonly kind: 'commit'; readonly consumer: 0 | 1 }
  | { readonly kind: 'deliver'; readonly consumer: 0 | 1; readonly max: number }
  | { readonly kind: 'reopen' }
  | { readonly kind: 'tear'; readonly tail: string };

const consumerIndex = fc.constantFrom<0 | 1>(0, 1);
const line = `${JSON.stringify(event('p-0'))}\n`;
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('append'), size: fc.nat(6) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('next'),
      consumer: consumerIndex,
      max: fc.integer({ min: 1, max: 8 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('commit'), consumer: consumerIndex }) },
  {
    // Often enough, and in batches large enough, that both consumers catch up and segments,
    // the last one included, are fully delivered.
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('deliver'),
      consumer: consumerIndex,
      max: fc.integer({ min: 1, max: 20 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reopen') }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('tear'),
      // What a crash can leave after the last complete line: a cut line, or zeros.
      tail: fc.oneof(
        fc.integer({ min: 1, max: line.length - 2 }).map((n) => line.slice(0, n)),
        fc.integer({ min: 1, max: 64 }).map((n) => '\0'.repeat(n)),
        fc.integer({ min: 1, max: 64 }).map((n) => `${'\0'.repeat(n)}\n`),
      ),
    }),
  },
);

/** The queue as it should be: every acknowledged event, and how far each consumer committed. */
class Model {
  readonly log: string[] = [];
  readonly bytes: number[] = [];
  readonly cursors = [0, 0];

  get low(): number {
    return Math.min(...this.cursors);
  }

  queuedBytes(): number {
    return this.bytes.slice(this.low).reduce((a, b) => a + b, 0);
  }
}

async function check(
  ops: readonly Op[],
  durable: boolean,
  maxBytes: number,
  segmentBytes: number,
): Promise<void> {
  const dir = durable ? await temp.make() : undefined;
  // fsync is irrelevant without a power loss, and makes runs slow; small segments rotate often.
  const options = { maxBytes, segmentBytes, fsync: false, ...(dir ? { dir } : {}) };
  const model = new Model();
  let queue: SinkQueue = await openQueue(options);
  let consumers = CONSUMERS.map((name) => queue.consumer(name));
  let batches: (QueueBatch | null)[] = [null, null];
  let next = 0;
  /** next() for a consumer, checked against the model. */
  const read = async (consumer: 0 | 1, max: number): Promise<QueueBatch | null> => {
    const from = model.cursors[consumer] ?? 0;
    const expected = model.log.slice(from, from + max);
    const batch = (await consumers[consumer]?.next(max, 0)) ?? null;
    expect(ids(batch)).toEqual(expected.length === 0 ? null : expected);
    return batch;
  };
  try {
    for (const step of ops) {
      switch (step.kind) {
        case 'append': {
          const batch = Array.from({ length: step.size }, () => event(`p-${next++}`));
          const size = batch.reduce((n, e) => n + lineBytes(e), 0);
          if (model.queuedBytes() + size > maxBytes) {
            await expect(queue.append(batch)).rejects.toBeInstanceOf(QueueFullError);
          } else {
            await queue.append(batch);
            model.log.push(...batch.map((e) => e.auditID));
            model.bytes.push(...batch.map(lineBytes));
          }
          break;
        }
        case 'next': {
          batches[step.consumer] =
            (await read(step.consumer, step.max)) ?? batches[step.consumer] ?? null;
          break;
        }
        case 'commit':
        case 'deliver': {
          // `deliver` is an output at work: read, then commit what it read.
          if (step.kind === 'deliver') batches[step.consumer] = await read(step.consumer, step.max);
          const batch = batches[step.consumer];
          if (!batch) break;
          await consumers[step.consumer]?.commit(batch);
          // A batch starts at the cursor it was read from, which only moves forward.
          const end = model.log.indexOf(batch.events.at(-1)?.auditID ?? '') + 1;
          model.cursors[step.consumer] = Math.max(model.cursors[step.consumer] ?? 0, end);
          break;
        }
        case 'reopen':
        case 'tear': {
          if (dir === undefined) break;
          await queue.close();
          if (step.kind === 'tear') {
            const segments = (await readdir(dir)).filter((n) => n.endsWith('.jsonl')).sort();
            const last = segments.at(-1);
            if (last !== undefined) await appendFile(join(dir, last), step.tail);
          }
          queue = await openQueue(options);
          consumers = CONSUMERS.map((name) => queue.consumer(name));
          // Batches of the closed queue cannot be committed any more.
          batches = [null, null];
          break;
        }
      }
      const stats = queue.stats();
      expect(stats.bytes).toBeLessThanOrEqual(maxBytes);
      expect(stats.events).toBe(model.log.length - model.low);
      expect(stats.bytes).toBe(model.queuedBytes());
      expect(consumers.map((c) => c.pending)).toEqual(
        model.cursors.map((c) => model.log.length - c),
      );
    }
  } finally {
    await queue.close();
  }
}

describe('against a model', () => {
  // From a few events per segment (many files created and deleted) to all in one.
  const segmentBytes = fc.integer({ min: 100, max: 8000 });
  const maxBytes = fc.integer({ min: 1, max: 30 }).map((n) => n * lineBytes(event('p-10')));

  it('never loses, duplicates or reorders an acknowledged event in memory', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 80 }), maxBytes, (ops, max) =>
        check(ops, false, max, 1),
      ),
      { numRuns: 300 },
    );
  });

  it('never loses, duplicates or reorders an acknowledged event on disk, across reopen and torn tails', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(op, { maxLength: 80 }),
        maxBytes,
        segmentBytes,
        (ops, max, segment) => check(ops, true, max, segment),
      ),
      { numRuns: 200 },
    );
  }, 60_000);
});
