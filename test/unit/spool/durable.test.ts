// The durable queue on real files in temporary directories: segment deletion, reopening, recovery
// from what a crash leaves behind, group commit, the documented format. Starts no process.
import { appendFile, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { openQueue, type QueueOptions, type SinkQueue } from '../../../src/spool/index.ts';
import {
  drain,
  event,
  events,
  filesEnding,
  lineBytes,
  OpenedQueues,
  peek,
  present,
  TempDirs,
} from './support.ts';

const temp = new TempDirs();
const opened = new OpenedQueues();

afterEach(async () => {
  await opened.closeAll();
  await temp.removeAll();
});

async function open(dir: string, options: Partial<QueueOptions> = {}): Promise<SinkQueue> {
  return opened.add(
    await openQueue({ dir, maxBytes: 1024 * 1024, segmentBytes: 2048, ...options }),
  );
}

function segmentFiles(dir: string): Promise<string[]> {
  return filesEnding(dir, '.jsonl');
}

function auditIDs(list: readonly AuditEvent[]): string[] {
  return list.map((e) => e.auditID);
}

describe('segments', () => {
  it('deletes a segment once every consumer has committed past it, keeping the one appended to', async () => {
    const dir = await temp.make();
    const queue = await open(dir);
    const influx = queue.consumer('influxdb');
    const webhook = queue.consumer('webhook');
    for (let i = 0; i < 10; i++) await queue.append(events('e', i * 5, i * 5 + 5));
    const before = await segmentFiles(dir);
    expect(before.length).toBeGreaterThan(3);

    await drain(influx);
    expect(await segmentFiles(dir)).toEqual(before);
    await drain(webhook);
    expect(await segmentFiles(dir)).toEqual(before.slice(-1));
    expect(queue.stats()).toMatchObject({ events: 0, bytes: 0 });
  });

  it('starts a new segment at segmentBytes, and lets a single larger append exceed it', async () => {
    const dir = await temp.make();
    const queue = await open(dir, { segmentBytes: lineBytes(event('e-00')) * 3 });
    await queue.append(events('e', 10, 13));
    await queue.append(events('e', 13, 14));
    await queue.append(events('e', 14, 21));
    await queue.append(events('e', 21, 22));
    expect(await segmentFiles(dir)).toEqual([
      '00000000000000000000.jsonl',
      '00000000000000000003.jsonl',
      '00000000000000000004.jsonl',
      '00000000000000000011.jsonl',
    ]);
    expect(await drain(queue.consumer('influxdb'))).toEqual(auditIDs(events('e', 10, 22)));
  });

  it('stores one JSON line per event and a small JSON cursor per consumer, as documented', async () => {
    const dir = await temp.make();
    const queue = await open(dir);
    const stored = events('e', 0, 3);
    await queue.append(stored);
    const consumer = queue.consumer('influxdb');
    const batch = await consumer.next(2, 0);
    await consumer.commit(present(batch));
    await queue.close();

    const text = await readFile(join(dir, '00000000000000000000.jsonl'), 'utf8');
    expect(text).toBe(stored.map((e) => `${JSON.stringify(e)}\n`).join(''));
    expect(JSON.parse(await readFile(join(dir, 'cursor-influxdb.json'), 'utf8'))).toEqual({
      version: 1,
      consumer: 'influxdb',
      next: 2,
    });
  });
});

describe('close and reopen', () => {
  it('resumes each consumer exactly at its cursor: nothing lost, nothing committed delivered again', async () => {
    const dir = await temp.make();
    const first = await open(dir);
    const influx = first.consumer('influxdb');
    const webhook = first.consumer('webhook');
    await first.append(events('e', 0, 30));
    let batch = await influx.next(17, 0);
    await influx.commit(present(batch));
    batch = await webhook.next(4, 0);
    await webhook.commit(present(batch));
    // Read but not committed: must come again.
    await webhook.next(10, 0);
    await first.close();

    const second = await open(dir);
    expect(second.recovery).toMatchObject({ events: 30, tornBytes: 0, resetCursors: [] });
    expect(second.consumer('influxdb').pending).toBe(13);
    expect(await drain(second.consumer('influxdb'))).toEqual(auditIDs(events('e', 17, 30)));
    await second.append(events('e', 30, 32));
    expect(await drain(second.consumer('webhook'), 7)).toEqual(auditIDs(events('e', 4, 32)));
    expect(await drain(second.consumer('influxdb'))).toEqual(['e-30', 'e-31']);
  });

  it('keeps the events of a consumer that never committed (its output is down)', async () => {
    const dir = await temp.make();
    const first = await open(dir);
    first.consumer('webhook');
    const influx = first.consumer('influxdb');
    await first.append(events('e', 0, 20));
    await drain(influx);
    await first.close();

    const second = await open(dir);
    expect(second.stats().events).toBe(20);
    expect(await peek(second.consumer('webhook'))).toEqual(auditIDs(events('e', 0, 20)));
  });

  it('refuses to open a directory that is already open in this process', async () => {
    const dir = await temp.make();
    const first = await open(dir);
    await expect(open(dir)).rejects.toMatchObject({ code: 'QUEUE_IN_USE' });
    await first.close();
    await expect(open(dir)).resolves.toBeDefined();
  });

  it('deletes every file and the directory on destroy', async () => {
    const dir = await temp.make();
    const queue = await open(dir);
    queue.consumer('influxdb');
    await queue.append(events('e', 0, 40));
    await queue.destroy();
    await expect(readdir(dir)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('recovery from a crash', () => {
  const complete = events('e', 0, 5);
  const next = `${JSON.stringify(event('e-5'))}\n`;

  it.each([
    ['half of the next line', next.slice(0, next.length >> 1)],
    ['the next line without its newline', next.slice(0, -1)],
    ['zeros, as an unsynced file extension can read back', '\0'.repeat(300)],
    ['zeros then a newline', `${'\0'.repeat(40)}\n`],
    ['a cut line followed by the start of another', `${next.slice(0, 30)}\n${next.slice(0, 20)}`],
    ['a line that is JSON but not an event record', '[1,2,3]\n'],
  ])('drops a torn tail (%s) and keeps every complete event', async (_name, tail) => {
    const dir = await temp.make();
    const first = await open(dir, { segmentBytes: 1 << 20 });
    first.consumer('influxdb');
    await first.append(complete);
    await first.close();
    await appendFile(join(dir, '00000000000000000000.jsonl'), tail);

    const second = await open(dir);
    expect(second.recovery.tornBytes).toBe(Buffer.byteLength(tail));
    expect(await peek(second.consumer('influxdb'))).toEqual(auditIDs(complete));
    // Appends continue right after the last complete event.
    await second.append([event('after')]);
    await second.close();
    const third = await open(dir);
    expect(third.recovery.tornBytes).toBe(0);
    expect(await peek(third.consumer('influxdb'))).toEqual([...auditIDs(complete), 'after']);
  });

  it('keeps complete records written after a zero-filled gap, skipping the gap', async () => {
    // A power loss can persist a later page of an unsynced write but not an earlier one.
    const dir = await temp.make();
    const first = await open(dir, { segmentBytes: 1 << 20 });
    await first.append(complete);
    await first.close();
    await appendFile(join(dir, '00000000000000000000.jsonl'), `${'\0'.repeat(50)}\n${next}`);

    const second = await open(dir);
    expect(second.recovery.tornBytes).toBe(0);
    expect(await drain(second.consumer('influxdb'))).toEqual([...auditIDs(complete), 'e-5']);
    expect(second.stats().corrupt).toBe(1);
  });

  it('deletes an interrupted cursor write and keeps the previous cursor', async () => {
    const dir = await temp.make();
    const first = await open(dir);
    await first.append(events('e', 0, 4));
    const consumer = first.consumer('influxdb');
    const batch = await consumer.next(3, 0);
    await consumer.commit(present(batch));
    await first.close();
    await writeFile(join(dir, 'cursor-influxdb.json.tmp'), '{"version":1,"consu');

    const second = await open(dir);
    expect(await peek(second.consumer('influxdb'))).toEqual(['e-3']);
    expect(await readdir(dir)).not.toContain('cursor-influxdb.json.tmp');
  });

  it('restarts a consumer whose cursor is unreadable at the oldest retained event, and says so', async () => {
    const dir = await temp.make();
    const first = await open(dir);
    await first.append(events('e', 0, 4));
    const consumer = first.consumer('influxdb');
    await consumer.commit(present(await consumer.next(3, 0)));
    await first.close();
    await writeFile(join(dir, 'cursor-influxdb.json'), 'not json');

    const second = await open(dir);
    expect(second.recovery.resetCursors).toEqual(['influxdb']);
    expect(await peek(second.consumer('influxdb'))).toEqual(auditIDs(events('e', 0, 4)));
  });

  it('never lets a cursor ahead of the data skip an event appended later', async () => {
    // With fsync off, a power loss can keep a cursor write and lose the data it passed.
    const dir = await temp.make();
    const first = await open(dir, { fsync: false });
    await first.append(events('e', 0, 3));
    first.consumer('influxdb');
    await first.close();
    await writeFile(
      join(dir, 'cursor-influxdb.json'),
      JSON.stringify({ version: 1, consumer: 'influxdb', next: 1000 }),
    );

    const second = await open(dir);
    expect(second.consumer('influxdb').pending).toBe(0);
    await second.append([event('new')]);
    expect(await peek(second.consumer('influxdb'))).toEqual(['new']);
    await second.close();
    expect(await segmentFiles(dir)).toContain('00000000000000001000.jsonl');
  });

  it.each([
    ['a sealed segment', 2048],
    ['the last segment, with acknowledged events after it', 1 << 20],
  ])(
    'skips and counts a record corrupted inside %s, delivering the rest',
    async (_name, segmentBytes) => {
      const dir = await temp.make();
      const first = await open(dir, { segmentBytes });
      for (let i = 0; i < 30; i += 3) await first.append(events('e', i, i + 3));
      await first.close();
      const [oldest] = await segmentFiles(dir);
      const path = join(dir, present(oldest));
      const text = await readFile(path, 'utf8');
      await writeFile(path, `X${text.slice(1)}`);

      const second = await open(dir, { segmentBytes });
      expect(second.recovery.tornBytes).toBe(0);
      expect(await drain(second.consumer('influxdb'), 7)).toEqual(auditIDs(events('e', 1, 30)));
      expect(second.stats().corrupt).toBe(1);
    },
  );

  it('refuses a directory whose segments overlap, which no crash can produce', async () => {
    const dir = await temp.make();
    const first = await open(dir, { segmentBytes: 1 << 20 });
    await first.append(events('e', 0, 3));
    await first.close();
    await writeFile(join(dir, '00000000000000000001.jsonl'), `${JSON.stringify(event('x'))}\n`);
    await expect(open(dir)).rejects.toMatchObject({ code: 'QUEUE_CORRUPT' });
  });
});

describe('group commit', () => {
  it('writes concurrent appends together: far fewer writes and fsyncs than appends', async () => {
    const dir = await temp.make();
    const queue = await open(dir, { segmentBytes: 8 << 20 });
    const appends = Array.from({ length: 200 }, (_, i) => queue.append([event(`e-${i}`)]));
    await Promise.all(appends);
    const { appends: stored, writes } = queue.stats();
    expect(stored).toBe(200);
    // Appends in one tick share the first write; at most a couple of writes in all.
    expect(writes).toBeLessThanOrEqual(2);
    expect(await peek(queue.consumer('influxdb'))).toEqual(
      Array.from({ length: 200 }, (_, i) => `e-${i}`),
    );
  });

  it('coalesces appends that arrive while a write is syncing into the next write', async () => {
    const dir = await temp.make();
    const queue = await open(dir, { segmentBytes: 8 << 20 });
    const first = queue.append([event('first')]);
    // Issued after the first write started, while its fsync is in flight.
    await new Promise((done) => setImmediate(done));
    const later = Array.from({ length: 50 }, (_, i) => queue.append([event(`later-${i}`)]));
    await Promise.all([first, ...later]);
    expect(queue.stats().appends).toBe(51);
    expect(queue.stats().writes).toBeLessThanOrEqual(3);
  });
});
