// The in-memory copy of the last records a durable store wrote: bounded per store and per process,
// always a contiguous run ending at the store's end, and never in the way of a read from disk.
import { afterEach, describe, expect, it } from 'vitest';
import { type EncodedEvent, encodeEvent } from '../../../src/spool/format.ts';
import { openQueue } from '../../../src/spool/index.ts';
import { PROCESS_CACHE_BYTES, RecentRecords } from '../../../src/spool/recent.ts';
import { events, ids, OpenedQueues, TempDirs } from './support.ts';

const temp = new TempDirs();
const caches: RecentRecords[] = [];
const opened = new OpenedQueues();

afterEach(async () => {
  for (const cache of caches.splice(0)) cache.clear();
  await opened.closeAll();
  await temp.removeAll();
});

function cache(limit?: number): RecentRecords {
  const made = new RecentRecords(limit);
  caches.push(made);
  return made;
}

function records(prefix: string, from: number, to: number): EncodedEvent[] {
  return events(prefix, from, to).map(encodeEvent);
}

const auditIDs = (list: readonly { auditID: string }[] | null) => list?.map((e) => e.auditID);

describe('recent records', () => {
  it('serves reads from any cached position to the end, and nothing before or after', () => {
    const recent = cache();
    recent.add(10, records('e', 0, 5));
    expect(auditIDs(recent.read(10, 100))).toEqual(['e-0', 'e-1', 'e-2', 'e-3', 'e-4']);
    expect(auditIDs(recent.read(12, 2))).toEqual(['e-2', 'e-3']);
    expect(recent.read(9, 100)).toBeNull();
    expect(recent.read(15, 100)).toBeNull();
  });

  it('forgets what every consumer has passed, and counts its bytes out', () => {
    const recent = cache();
    const written = records('e', 0, 4);
    recent.add(0, written);
    const before = RecentRecords.processBytes;
    recent.release(3);
    expect(recent.read(2, 10)).toBeNull();
    expect(auditIDs(recent.read(3, 10))).toEqual(['e-3']);
    const released = written.slice(0, 3).reduce((n, r) => n + r.bytes, 0);
    expect(RecentRecords.processBytes).toBe(before - released);
  });

  it('drops its oldest events to stay within its own limit, staying contiguous', () => {
    const written = records('e', 0, 10);
    const perRecord = written[0]?.bytes ?? 0;
    const recent = cache(perRecord * 4);
    recent.add(0, written.slice(0, 3));
    recent.add(3, written.slice(3, 6));
    expect(recent.bytes).toBeLessThanOrEqual(perRecord * 4);
    expect(recent.read(1, 10)).toBeNull();
    expect(auditIDs(recent.read(2, 10))).toEqual(['e-2', 'e-3', 'e-4', 'e-5']);
  });

  it('starts over after a write larger than its limit, and after a gap', () => {
    const written = records('e', 0, 10);
    const recent = cache((written[0]?.bytes ?? 0) * 2);
    recent.add(0, written.slice(0, 2));
    recent.add(2, written.slice(2, 5));
    expect(recent.bytes).toBe(0);
    expect(recent.read(2, 10)).toBeNull();
    recent.add(5, written.slice(5, 6));
    expect(auditIDs(recent.read(5, 10))).toEqual(['e-5']);
    recent.add(8, written.slice(8, 9));
    expect(recent.read(5, 10)).toBeNull();
    expect(auditIDs(recent.read(8, 10))).toEqual(['e-8']);
  });

  it('keeps every cache of the process together within the process limit', () => {
    const big = encodeEvent({
      ...(events('big', 0, 1)[0] as ReturnType<typeof events>[number]),
      annotations: { filler: 'x'.repeat(1024 * 1024) },
    });
    const stores = Array.from({ length: 80 }, () => cache(Number.POSITIVE_INFINITY));
    stores.forEach((store, i) => store.add(i, [big]));
    expect(RecentRecords.processBytes).toBeLessThanOrEqual(PROCESS_CACHE_BYTES);
    expect(stores.filter((s) => s.bytes > 0).length).toBeLessThan(80);
    for (const store of stores) store.clear();
    expect(RecentRecords.processBytes).toBe(0);
  });
});

describe('a durable queue with its cache', () => {
  it('gives a consumer the same events from memory as from disk after a reopen', async () => {
    const dir = await temp.make();
    const first = await openQueue({ dir, maxBytes: 1024 * 1024, segmentBytes: 4096 });
    await first.append(events('a', 0, 30));
    const fromMemory = ids(await first.consumer('influxdb').next(1000, 0));
    await first.close();
    const again = await openQueue({ dir, maxBytes: 1024 * 1024, segmentBytes: 4096 });
    opened.add(again);
    const fromDisk = ids(await again.consumer('influxdb').next(1000, 0));
    expect(fromMemory).toHaveLength(30);
    expect(fromDisk).toEqual(fromMemory);
  });

  it('reads past a commit whose cursor is still being saved', async () => {
    const dir = await temp.make();
    const queue = await openQueue({ dir, maxBytes: 1024 * 1024 });
    opened.add(queue);
    await queue.append(events('a', 0, 6));
    const consumer = queue.consumer('influxdb');
    const batch = await consumer.next(4, 0);
    expect(ids(batch)).toEqual(['a-0', 'a-1', 'a-2', 'a-3']);
    if (batch === null) throw new Error('no batch');
    const saved = consumer.commit(batch);
    // Not awaited: delivery overlaps the cursor's fsync with the next read.
    expect(ids(await consumer.next(4, 0))).toEqual(['a-4', 'a-5']);
    await saved;
    expect(consumer.pending).toBe(2);
  });
});
