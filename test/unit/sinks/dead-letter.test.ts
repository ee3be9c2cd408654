// The dead-letter store over real files in a temporary directory: records kept in order and read
// back, the cap, a line a crash cut short, nothing kept without a file, and the file layout.
// Starts no process.
import { appendFile, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/types.ts';
import {
  type DeadLetter,
  type DeadLetterLine,
  DeadLetterStore,
  deadLetterPath,
  purgeDeadLetters,
  readDeadLetters,
} from '../../../src/sinks/dead-letter.ts';
import { recordedEvents } from '../../support/recorded.ts';

const EVENTS: AuditEvent[] = recordedEvents();
const NOW = new Date('2026-12-02T10:00:00.000Z');

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kao-dead-letter-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function letter(i: number, reason: DeadLetter['reason'] = 'refused'): DeadLetter {
  return {
    output: 'influxdb',
    reason,
    code: reason === 'refused' ? 'REJECTED' : 'UNENCODABLE',
    message: `422: partial write: field type conflict (${i})`,
    event: EVENTS[i % EVENTS.length] as AuditEvent,
  };
}

async function lines(path: string): Promise<DeadLetterLine[]> {
  const all: DeadLetterLine[] = [];
  for await (const line of readDeadLetters(path)) all.push(line);
  return all;
}

describe('dead-letter store', () => {
  it('keeps each letter with its sink, output, reason and time, and reads them back in order', async () => {
    const path = deadLetterPath(dir, { kind: 'AuditPipeline', namespace: 'shop', name: 'orders' });
    const store = new DeadLetterStore({
      path,
      sink: 'shop/orders',
      maxBytes: 1 << 20,
      now: () => NOW,
    });
    expect(await store.add([letter(0), letter(1, 'unencodable')])).toBe(2);
    expect(await store.add([letter(2)])).toBe(1);
    const read = await lines(path);
    expect(
      read.map((l) => l.ok && [l.record.sink, l.record.reason, l.record.event?.auditID]),
    ).toEqual([
      ['shop/orders', 'refused', EVENTS[0]?.auditID],
      ['shop/orders', 'unencodable', EVENTS[1]?.auditID],
      ['shop/orders', 'refused', EVENTS[2]?.auditID],
    ]);
    const first = read[0];
    expect(first?.ok && first.record).toMatchObject({
      version: 1,
      time: NOW.toISOString(),
      output: 'influxdb',
      code: 'REJECTED',
      message: '422: partial write: field type conflict (0)',
      event: EVENTS[0],
    });
    expect(store.bytes).toBe((await stat(path)).size);
  });

  it('lays files out by kind, namespace and name', () => {
    expect(deadLetterPath('/data', { kind: 'AuditSink', namespace: '', name: 'trail' })).toBe(
      '/data/dead-letter/sinks/trail.jsonl',
    );
    expect(
      deadLetterPath('/data', { kind: 'AuditPipeline', namespace: 'shop', name: 'orders' }),
    ).toBe('/data/dead-letter/pipelines/shop/orders.jsonl');
  });

  it('keeps what fits under the cap and says how many, across appends and restarts', async () => {
    const path = join(dir, 'trail.jsonl');
    const one = `${JSON.stringify({ version: 1, time: NOW.toISOString(), sink: 'trail', ...letter(0) })}\n`;
    const cap = Buffer.byteLength(one) * 2 + 10;
    const store = new DeadLetterStore({ path, sink: 'trail', maxBytes: cap, now: () => NOW });
    expect(await store.add([letter(0), letter(0), letter(0)])).toBe(2);
    expect(await store.add([letter(0)])).toBe(0);
    // A new process finds the file as full as the last one left it.
    const again = new DeadLetterStore({ path, sink: 'trail', maxBytes: cap, now: () => NOW });
    expect(await again.add([letter(0)])).toBe(0);
    expect((await lines(path)).length).toBe(2);
  });

  it('cuts a line a crash left unfinished before it appends, and reads the rest', async () => {
    const path = join(dir, 'trail.jsonl');
    await new DeadLetterStore({ path, sink: 'trail', maxBytes: 1 << 20 }).add([letter(0)]);
    await appendFile(path, '{"version":1,"time":"2026-12-02T10:00:00.000Z","sink":"tr');
    expect((await lines(path)).map((l) => l.ok)).toEqual([true, false]);
    const store = new DeadLetterStore({ path, sink: 'trail', maxBytes: 1 << 20 });
    expect(await store.add([letter(1)])).toBe(1);
    const read = await lines(path);
    expect(read.map((l) => l.ok && l.record.event?.auditID)).toEqual([
      EVENTS[0]?.auditID,
      EVENTS[1]?.auditID,
    ]);
    expect((await readFile(path, 'utf8')).endsWith('}\n')).toBe(true);
  });

  it('reports a damaged line with its number and reads the records after it', async () => {
    const path = join(dir, 'trail.jsonl');
    const store = new DeadLetterStore({ path, sink: 'trail', maxBytes: 1 << 20 });
    await store.add([letter(0)]);
    await appendFile(path, 'not json\n{"version":7,"event":{}}\n');
    await new DeadLetterStore({ path, sink: 'trail', maxBytes: 1 << 20 }).add([letter(1)]);
    const read = await lines(path);
    expect(read.map((l) => (l.ok ? `ok ${l.line}` : `bad ${l.line}: ${l.error}`))).toEqual([
      'ok 1',
      expect.stringMatching(/^bad 2: not JSON/),
      'bad 3: not a version 1 dead-letter record',
      'ok 4',
    ]);
  });

  it('keeps nothing without a file, and a missing file has no lines', async () => {
    const store = new DeadLetterStore({ sink: 'trail', maxBytes: 1 << 20 });
    expect(store.durable).toBe(false);
    expect(await store.add([letter(0)])).toBe(0);
    expect(await lines(join(dir, 'none.jsonl'))).toEqual([]);
  });

  it('fails an append it cannot write, keeping nothing of it', async () => {
    // The directory cannot be made: a file stands where it should be.
    await appendFile(join(dir, 'dead-letter'), '');
    const path = deadLetterPath(dir, { kind: 'AuditSink', namespace: '', name: 'trail' });
    const store = new DeadLetterStore({ path, sink: 'trail', maxBytes: 1 << 20 });
    await expect(store.add([letter(0)])).rejects.toThrow(/ENOTDIR|EEXIST/);
  });

  it('appends concurrent calls one after the other, whole lines only', async () => {
    const path = join(dir, 'trail.jsonl');
    const store = new DeadLetterStore({ path, sink: 'trail', maxBytes: 1 << 24 });
    const kept = await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.add([letter(i), letter(i + 1)])),
    );
    expect(kept.every((k) => k === 2)).toBe(true);
    const read = await lines(path);
    expect(read).toHaveLength(40);
    expect(read.every((l) => l.ok)).toBe(true);
  });

  it('purges a file, and a missing one', async () => {
    const path = join(dir, 'trail.jsonl');
    await new DeadLetterStore({ path, sink: 'trail', maxBytes: 1 << 20 }).add([letter(0)]);
    await purgeDeadLetters(path);
    await purgeDeadLetters(path);
    expect(await lines(path)).toEqual([]);
  });
});

describe('reading dead letters back', () => {
  function withAgent(auditID: string, userAgent: string): DeadLetter {
    const event: AuditEvent = {
      level: 'Metadata',
      auditID,
      stage: 'ResponseComplete',
      requestURI: '/api/v1/namespaces',
      verb: 'list',
      user: { username: 'admin' },
      userAgent,
      stageTimestamp: '2026-11-22T04:08:57.440160Z',
    };
    return { output: 'influxdb', reason: 'refused', code: 'REJECTED', message: 'bad', event };
  }

  it('reads back whole the events holding U+2028, U+2029, U+0085 or a carriage return', async () => {
    const path = join(dir, 'trail.jsonl');
    const store = new DeadLetterStore({ path, sink: 'trail', maxBytes: 1_000_000 });
    const agents = ['a\u2028b', 'c\u2029d', 'e\u0085f', 'g\r\nh\ri', 'plain'];
    expect(await store.add(agents.map((agent, i) => withAgent(`id-${i}`, agent)))).toBe(5);
    const read = await lines(path);
    expect(read.map((l) => (l.ok ? l.record.event?.userAgent : l.error))).toEqual(agents);
    expect(read.map((l) => l.line)).toEqual([1, 2, 3, 4, 5]);
  });

  it('numbers lines as the file has them, blank ones too', async () => {
    const path = join(dir, 'trail.jsonl');
    const store = new DeadLetterStore({ path, sink: 'trail', maxBytes: 1_000_000 });
    await store.add([withAgent('first', 'x')]);
    await appendFile(path, '\n');
    await store.add([withAgent('last', 'y')]);
    expect((await lines(path)).map((l) => [l.line, l.ok])).toEqual([
      [1, true],
      [3, true],
    ]);
  });
});
