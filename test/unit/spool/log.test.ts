// The process's durable log on real files in temporary directories: one write for every sink's
// share of a batch, cursors across reopening, torn tails, a damaged record in the middle, segment
// deletion, each sink's budget, deleted sinks, moving an old per-sink spool in, and the read
// handles kept on segments (seen in /proc/self/fd). Starts no process.
import {
  appendFile,
  readdir,
  readFile,
  readlink,
  realpath,
  stat,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type QueuedEvent, StoredPoint } from '../../../src/audit/stored-point.ts';
import { LineProtocolEncoder } from '../../../src/outputs/influxdb/line-protocol.ts';
import type { AuditEvent } from '../../../src/audit/types.ts';
import {
  openQueue,
  QueueFullError,
  type SharedEncodings,
  type SinkQueue,
} from '../../../src/spool/index.ts';
import { encodeEvent } from '../../../src/spool/format.ts';
import {
  encodeLogFrame,
  encodeLogRecord,
  frameAt,
  sealLogFrame,
} from '../../../src/spool/log/format.ts';
import {
  DurableLog,
  type LogOptions,
  type LogQueueOptions,
  openLogQueue,
} from '../../../src/spool/log/index.ts';
import type { LogStreamState } from '../../../src/spool/log/log.ts';
import { LogStream } from '../../../src/spool/log/stream.ts';
import { waitFor } from '../../support/wait.ts';
import {
  drain,
  events,
  filesEnding,
  ids,
  lineBytes,
  OpenedQueues,
  peek,
  present,
  TempDirs,
} from './support.ts';

const temp = new TempDirs();
const opened = new OpenedQueues();
const logs: DurableLog[] = [];

afterEach(async () => {
  await opened.closeAll();
  await Promise.all(logs.splice(0).map((log) => log.close()));
  await temp.removeAll();
});

/** A sink's points, as its line-protocol output makes them. */
const POINT_SCHEMA = {
  measurement: 'audit',
  tags: ['verb' as const],
  staticTags: {},
  sink: 'quiet',
};

async function sink(
  logDir: string,
  key: string,
  options: Partial<LogQueueOptions> = {},
): Promise<SinkQueue> {
  return opened.add(await openLogQueue({ logDir, key, maxBytes: 1024 * 1024, ...options }));
}

function closeAll(): Promise<void> {
  return opened.closeAll();
}

function segments(logDir: string): Promise<string[]> {
  return filesEnding(logDir, '.wal');
}

/**
 * The files under `dir` this process holds a descriptor on, by name (a deleted one ends in
 * ` (deleted)`), sorted.
 */
async function openFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    let target: string;
    try {
      target = await readlink(join('/proc/self/fd', fd));
    } catch {
      // Closed since it was listed (the listing's own descriptor, for one).
      continue;
    }
    if (target.startsWith(`${dir}/`)) names.push(target.slice(dir.length + 1));
  }
  return names.sort();
}

/** Waits until the open files under `dir` are `expected` (closing a handle takes a moment). */
async function expectOpenFiles(dir: string, expected: readonly string[]): Promise<void> {
  const want = [...expected].sort();
  await waitFor(
    `open files ${JSON.stringify(want)}`,
    () => openFiles(dir),
    (files) => JSON.stringify(files) === JSON.stringify(want),
    5000,
    10,
  );
}

/**
 * A log in a new directory (its real path, as /proc shows it) that keeps no record in memory,
 * with one stream and `records` records of 3 events each (`r<n>-0` .. `r<n>-2`), each in a
 * segment of its own.
 */
async function diskLog(
  records: number,
  options: Partial<LogOptions> = {},
): Promise<{ dir: string; log: DurableLog; stream: LogStreamState; files: string[] }> {
  const dir = await realpath(await temp.make());
  const log = await DurableLog.open({
    dir,
    fsync: false,
    segmentBytes: 1024,
    readCacheBytes: 0,
    ...options,
  });
  logs.push(log);
  const stream = await log.openStream('sinks/a');
  for (let r = 0; r < records; r++) {
    await log.append(stream, events(`r${r}`, 0, 3).map(encodeEvent));
  }
  const files = await segments(dir);
  expect(files).toHaveLength(records);
  return { dir, log, stream, files };
}

/** The auditID of record `record`'s `index`th event, read from the log. */
async function eventOf(log: DurableLog, record: number, index = 0): Promise<string | undefined> {
  return (await log.record(record))?.event(index)?.auditID;
}

describe('the durable log', () => {
  it('writes every sink’s share of a batch with one write, each distinct event once', async () => {
    const dir = await temp.make();
    const queues = await Promise.all(
      Array.from({ length: 100 }, (_, i) => sink(dir, `pipelines/ns-${i}/audit`)),
    );
    const batch = events('e', 0, 400);
    await Promise.all(queues.map((q) => q.append(batch)));
    // One record: 400 events of about 300 bytes, not 100 copies of them.
    const [segment] = await segments(dir);
    const size = (await stat(join(dir, segment ?? ''))).size;
    const eventBytes = batch.reduce((n, e) => n + lineBytes(e), 0);
    expect(size).toBeGreaterThan(eventBytes);
    expect(size).toBeLessThan(eventBytes + 10_000);
    for (const queue of queues) {
      expect(queue.stats()).toMatchObject({ events: 400, writes: 1 });
    }
    expect(await peek(present(queues[57]).consumer('influxdb'))).toEqual(
      batch.map((e) => e.auditID),
    );
  });

  it('keeps each sink’s own selection and order, and resumes each consumer at its cursor after reopening', async () => {
    const dir = await temp.make();
    const a = await sink(dir, 'sinks/a');
    const b = await sink(dir, 'sinks/b');
    const shared = events('s', 0, 6);
    await Promise.all([
      a.append(shared.slice(0, 4)),
      b.append([shared[5], shared[1], shared[3]] as AuditEvent[]),
    ]);
    await a.append(events('a', 0, 2));
    const influx = a.consumer('influxdb');
    const file = a.consumer('file');
    const first = await influx.next(3, 0);
    expect(ids(first)).toEqual(['s-0', 's-1', 's-2']);
    await influx.commit(present(first));
    await closeAll();

    const a2 = await sink(dir, 'sinks/a');
    const b2 = await sink(dir, 'sinks/b');
    expect(await drain(a2.consumer('influxdb'))).toEqual(['s-3', 'a-0', 'a-1']);
    expect(await drain(a2.consumer('file'))).toEqual(['s-0', 's-1', 's-2', 's-3', 'a-0', 'a-1']);
    expect(await drain(b2.consumer('influxdb'))).toEqual(['s-5', 's-1', 's-3']);
    void file;
  });

  it('cuts a torn tail and keeps every acknowledged event', async () => {
    const dir = await temp.make();
    const a = await sink(dir, 'sinks/a');
    await a.append(events('e', 0, 10));
    await a.append(events('e', 10, 20));
    await closeAll();
    const [segment] = await segments(dir);
    const path = join(dir, present(segment));
    const size = (await stat(path)).size;
    // Half a frame: what a crash in the middle of a write leaves.
    await appendFile(path, Buffer.concat([Buffer.from('KAL1'), Buffer.alloc(40, 7)]));
    const log = await DurableLog.open({ dir });
    expect(log.recovery).toMatchObject({ tornBytes: 44, corruptRecords: 0, records: 2 });
    await log.close();
    expect((await stat(path)).size).toBe(size);
    const a2 = await sink(dir, 'sinks/a');
    expect(await drain(a2.consumer('influxdb'))).toEqual(events('e', 0, 20).map((e) => e.auditID));
  });

  it('cuts a record whose events were written but not its header, as a crash between them leaves', async () => {
    const dir = await temp.make();
    const a = await sink(dir, 'sinks/a');
    await a.append(events('e', 0, 10));
    await closeAll();
    const [segment] = await segments(dir);
    const path = join(dir, present(segment));
    const size = (await stat(path)).size;
    // The payload is written while its checksum is computed, the header after both.
    const records = events('x', 0, 5).map(encodeEvent);
    const shares = [{ id: 0, key: 'sinks/a', selection: Uint32Array.from(records, (_, k) => k) }];
    const frame = encodeLogFrame(1, records, shares);
    expect(frameAt(frame, 0)).toBe(0);
    await appendFile(path, frame);
    const log = await DurableLog.open({ dir });
    expect(log.recovery).toMatchObject({ tornBytes: frame.length, corruptRecords: 0, records: 1 });
    await log.close();
    expect((await stat(path)).size).toBe(size);
    const a2 = await sink(dir, 'sinks/a');
    expect(await drain(a2.consumer('influxdb'))).toEqual(events('e', 0, 10).map((e) => e.auditID));
    // Sealed, it is the record encoded at once.
    expect(sealLogFrame(frame)).toEqual(encodeLogRecord(1, records, shares));
    expect(frameAt(frame, 0)).toBe(frame.length);
  });

  it('skips and counts a damaged record followed by good ones, never cutting there', async () => {
    const dir = await temp.make();
    const a = await sink(dir, 'sinks/a');
    for (let i = 0; i < 3; i++) await a.append(events(`r${i}`, 0, 5));
    await closeAll();
    const [segment] = await segments(dir);
    const path = join(dir, present(segment));
    const buf = await readFile(path);
    // Flip a byte inside the first record's events: its checksum no longer matches.
    const at = buf.indexOf('r0-2');
    buf[at] = 'X'.charCodeAt(0);
    await writeFile(path, buf);
    const log = await DurableLog.open({ dir });
    expect(log.recovery).toMatchObject({ tornBytes: 0, corruptRecords: 1, records: 2 });
    await log.close();
    expect((await stat(path)).size).toBe(buf.length);
    const a2 = await sink(dir, 'sinks/a');
    expect(await drain(a2.consumer('influxdb'))).toEqual([
      ...events('r1', 0, 5).map((e) => e.auditID),
      ...events('r2', 0, 5).map((e) => e.auditID),
    ]);
  });

  it('deletes a segment once every sink has passed it, and not before', async () => {
    const dir = await temp.make();
    const options = { segmentBytes: 4096 };
    const fast = await sink(dir, 'sinks/fast', options);
    const slow = await sink(dir, 'sinks/slow', options);
    const fastOut = fast.consumer('influxdb');
    const slowOut = slow.consumer('influxdb');
    for (let i = 0; i < 10; i++) {
      await Promise.all([fast.append(events(`b${i}`, 0, 5)), slow.append(events(`b${i}`, 0, 5))]);
    }
    const before = await segments(dir);
    expect(before.length).toBeGreaterThan(2);
    await drain(fastOut);
    // The slow sink holds them.
    expect(await segments(dir)).toEqual(before);
    expect(await drain(slowOut, 7)).toHaveLength(50);
    // Only the segment being written stays.
    expect(await segments(dir)).toEqual([before.at(-1)]);
    await closeAll();
    const again = await sink(dir, 'sinks/slow', options);
    expect(await peek(again.consumer('influxdb'))).toEqual([]);
  });

  it('refuses a stuck sink’s share past its budget while another sink keeps appending', async () => {
    const dir = await temp.make();
    const batch = events('e', 0, 10);
    const budget = batch.reduce((n, e) => n + lineBytes(e), 0) * 3;
    const stuck = await sink(dir, 'sinks/stuck', { maxBytes: budget });
    const healthy = await sink(dir, 'sinks/healthy', { maxBytes: budget });
    const out = healthy.consumer('influxdb');
    stuck.consumer('influxdb');
    for (let i = 0; i < 3; i++) {
      await Promise.all([stuck.append(batch), healthy.append(batch)]);
      await drain(out);
    }
    await expect(stuck.append(batch)).rejects.toBeInstanceOf(QueueFullError);
    expect(stuck.refusing()).toBe(1);
    for (let i = 0; i < 5; i++) {
      await healthy.append(batch);
      await drain(out);
    }
    expect(healthy.refusing()).toBeUndefined();
    expect(stuck.stats()).toMatchObject({ events: 30, bytes: budget });
  });

  it('deletes the segments after a stuck sink’s last accepted share once the others have them', async () => {
    const dir = await temp.make();
    const batch = events('e', 0, 10);
    const budget = batch.reduce((n, e) => n + lineBytes(e), 0) * 3;
    const options = { segmentBytes: 4096 };
    const stuck = await sink(dir, 'sinks/stuck', { ...options, maxBytes: budget });
    const healthy = await sink(dir, 'sinks/healthy', options);
    const out = healthy.consumer('influxdb');
    stuck.consumer('influxdb');
    const appended = await Promise.allSettled([stuck.append(batch), healthy.append(batch)]);
    expect(appended.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
    const held = await segments(dir);
    for (let i = 0; i < 30; i++) {
      await Promise.allSettled([stuck.append(batch), healthy.append(batch)]);
      await drain(out);
    }
    // What the stuck sink holds stays; everything only the healthy sink had is gone.
    const left = await segments(dir);
    expect(left.length).toBeLessThanOrEqual(held.length + 3);
    expect(left).toContain(held[0]);
    expect(stuck.stats().events).toBe(30);
  });

  it.each([
    ['from memory', {}, false],
    ['from disk', { readCacheBytes: 0 }, false],
    ['from disk, the quiet sink storing points', { readCacheBytes: 0 }, true],
  ])(
    'keeps disk bounded while a quiet sink’s destination is down, copying its share forward, and keeps every position (reads %s)',
    async (_, reads, points) => {
      // Points as a line-protocol output makes them (ADR 0027): copied forward as they are.
      const encoder = new LineProtocolEncoder(POINT_SCHEMA);
      const made = new Map<string, string>();
      const pointsOf = (batch: readonly AuditEvent[]): SharedEncodings | undefined => {
        if (!points) return undefined;
        const map: SharedEncodings = new Map();
        for (const e of batch) {
          const point = present(encoder.point(e));
          made.set(e.auditID, point.line);
          map.set(e, encodeEvent(point));
        }
        return map;
      };
      const dir = await realpath(await temp.make());
      const options = { segmentBytes: 8192, relocateAfterBytes: 32 * 1024, ...reads };
      const busy = await sink(dir, 'sinks/busy', options);
      const quiet = await sink(dir, 'sinks/quiet', options);
      const out = busy.consumer('influxdb');
      const down = quiet.consumer('influxdb');
      const ahead = quiet.consumer('webhook');
      let share = 0;
      let written = 0;
      for (let i = 0; i < 300; i++) {
        // A trickle in every record: without relocation the quiet sink holds every segment.
        const trickle = events(`q${i}`, 0, 1);
        const batch = events(`b${i}`, 0, 40);
        const trickled = pointsOf(trickle);
        await Promise.all([busy.append(batch), quiet.append(trickle, trickled)]);
        const trickleBytes =
          trickled?.get(trickle[0] as AuditEvent)?.bytes ?? lineBytes(trickle[0] as AuditEvent);
        share += trickleBytes;
        written += batch.reduce((n, e) => n + lineBytes(e), trickleBytes);
        await drain(out);
        if (i === 100) await ahead.commit(present(await ahead.next(40, 0)));
        const files = await segments(dir);
        let bytes = 0;
        for (const file of files) bytes += (await stat(join(dir, file))).size;
        // The log's size or twice the share (past which it is not copied), one copy under way,
        // and the segments being written and filled meanwhile: not the 4 MiB written.
        expect(bytes).toBeLessThan(Math.max(32 * 1024, 2 * share) + share + 3 * 8192);
      }
      expect(written).toBeGreaterThan(4 * 1024 * 1024);
      const expected = Array.from({ length: 300 }, (_, i) => `q${i}-0`);
      expect(await peek(down)).toEqual(expected);
      expect(await peek(ahead)).toEqual(expected.slice(40));
      await closeAll();
      const log = await DurableLog.open({ dir });
      const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as {
        streams: { key: string; base?: number }[];
      };
      expect(state.streams.find((s) => s.key === 'sinks/quiet')?.base).toBeGreaterThan(0);
      await log.close();
      const again = await sink(dir, 'sinks/quiet', options);
      expect(await peek(again.consumer('influxdb'))).toEqual(expected);
      if (points) {
        const read = present(await again.consumer('influxdb').next(1000, 0)).events;
        expect(read.every((e) => e instanceof StoredPoint)).toBe(true);
        expect(read.map((p) => (p as StoredPoint).line)).toEqual(
          expected.map((id) => made.get(id)),
        );
      }
      expect(await drain(again.consumer('webhook'))).toEqual(expected.slice(40));
      // No descriptor left on a segment, deleted or not.
      await closeAll();
      await expectOpenFiles(dir, []);
    },
  );

  it('frees a deleted sink’s share, and a sink created again under its name starts empty', async () => {
    const dir = await temp.make();
    const options = { segmentBytes: 4096 };
    const gone = await sink(dir, 'sinks/gone', options);
    const kept = await sink(dir, 'sinks/kept', options);
    const out = kept.consumer('influxdb');
    gone.consumer('influxdb');
    for (let i = 0; i < 10; i++) {
      await Promise.all([gone.append(events(`g${i}`, 0, 5)), kept.append(events(`k${i}`, 0, 5))]);
    }
    await drain(out);
    expect((await segments(dir)).length).toBeGreaterThan(1);
    opened.forget(gone);
    await gone.destroy();
    expect(await segments(dir)).toHaveLength(1);
    await closeAll();
    const log = await DurableLog.open({ dir });
    expect(log.streamKeys()).toEqual(['sinks/kept']);
    await log.close();
    const again = await sink(dir, 'sinks/gone', options);
    expect(await peek(again.consumer('influxdb'))).toEqual([]);
  });

  it('moves an old per-sink spool in from its slowest cursor and removes it', async () => {
    const dir = await temp.make();
    const legacyDir = join(dir, 'spool', 'sinks', 'audit');
    const old = await openQueue({ dir: legacyDir, maxBytes: 1024 * 1024, segmentBytes: 2048 });
    await old.append(events('old', 0, 30));
    const fast = old.consumer('influxdb');
    const slow = old.consumer('webhook');
    const file = old.consumer('file');
    await drain(fast);
    await file.commit(present(await file.next(20, 0)));
    await slow.commit(present(await slow.next(12, 0)));
    await old.close();

    const logDir = join(dir, 'log');
    const queue = await sink(logDir, 'sinks/audit', { legacyDir });
    const expected = events('old', 12, 30).map((e) => e.auditID);
    const consumers = ['influxdb', 'webhook', 'file'].map((name) => queue.consumer(name));
    for (const consumer of consumers) expect(await drain(consumer)).toEqual(expected);
    await expect(stat(legacyDir)).rejects.toMatchObject({ code: 'ENOENT' });
    // Moved once: the next start finds nothing more to move.
    await closeAll();
    const again = await sink(logDir, 'sinks/audit', { legacyDir });
    expect(await peek(again.consumer('influxdb'))).toEqual([]);
  });

  it('ignores a state file a crash left half replaced, keeping the positions saved before', async () => {
    const dir = await temp.make();
    const a = await sink(dir, 'sinks/a');
    await a.append(events('e', 0, 5));
    const out = a.consumer('influxdb');
    await out.commit(present(await out.next(2, 0)));
    await closeAll();
    await writeFile(join(dir, 'state.json.tmp'), '{"version":1,"nextId":');
    const a2 = await sink(dir, 'sinks/a');
    expect(await drain(a2.consumer('influxdb'))).toEqual(['e-2', 'e-3', 'e-4']);
    expect(await readdir(dir)).not.toContain('state.json.tmp');
  });

  it('frees what only a removed destination held', async () => {
    const dir = await temp.make();
    const a = await sink(dir, 'sinks/a', { segmentBytes: 4096 });
    const kept = a.consumer('influxdb');
    a.consumer('webhook');
    for (let i = 0; i < 10; i++) await a.append(events(`b${i}`, 0, 5));
    await drain(kept);
    expect(a.stats().events).toBe(50);
    await a.removeConsumer('webhook');
    expect(a.stats().events).toBe(0);
    expect(await segments(dir)).toHaveLength(1);
  });

  it('restarts every consumer at the oldest retained event when the state file is lost', async () => {
    const dir = await temp.make();
    const a = await sink(dir, 'sinks/a');
    await a.append(events('e', 0, 5));
    await drain(a.consumer('influxdb'));
    await closeAll();
    await writeFile(join(dir, 'state.json'), 'not json');
    const log = await DurableLog.open({ dir });
    expect(log.recovery.stateReset).toBe(true);
    expect(log.streamKeys()).toEqual(['sinks/a']);
    await log.close();
    const a2 = await sink(dir, 'sinks/a');
    expect(await drain(a2.consumer('influxdb'))).toEqual(events('e', 0, 5).map((e) => e.auditID));
  });
});

describe('reads from disk', () => {
  it('reads each segment through one handle, kept for later reads and closed with the log', async () => {
    const { dir, log, files } = await diskLog(6);
    const before = await openFiles(dir);
    // Only the segment being written is open.
    expect(before).toEqual([files.at(-1)]);
    for (let pass = 0; pass < 3; pass++) {
      for (let r = 0; r < 6; r++) expect(await eventOf(log, r, 2)).toBe(`r${r}-2`);
    }
    expect(log.stats().readHandles).toBe(6);
    await expectOpenFiles(dir, [...files, ...before]);
    await log.close();
    await expectOpenFiles(dir, []);
  });

  it('keeps at most readHandles open, closing the least recently used first', async () => {
    const { dir, log, files } = await diskLog(6, { readHandles: 2 });
    const writing = files.at(-1) as string;
    for (let r = 0; r < 6; r++) {
      expect(await eventOf(log, r)).toBe(`r${r}-0`);
      expect(log.stats().readHandles).toBeLessThanOrEqual(2);
    }
    await expectOpenFiles(dir, [files[4] as string, writing, writing]);
    // Record 4 read again is the most recent: record 0 reopens its segment in place of record 5's.
    expect(await eventOf(log, 4)).toBe('r4-0');
    expect(await eventOf(log, 0)).toBe('r0-0');
    await expectOpenFiles(dir, [files[0] as string, files[4] as string, writing]);
    await log.close();
    await expectOpenFiles(dir, []);
  });

  it('closes the handles of deleted segments and reads on from the others', async () => {
    const { dir, log, stream, files } = await diskLog(6);
    for (let r = 0; r < 6; r++) expect(await eventOf(log, r)).toBe(`r${r}-0`);
    // Records 0 to 2 (events 0 to 8) delivered: their segments go.
    stream.index.release(9);
    await log.collect();
    expect(await segments(dir)).toEqual(files.slice(3));
    const writing = files.at(-1) as string;
    await expectOpenFiles(dir, [...files.slice(3), writing]);
    expect(log.stats().readHandles).toBe(3);
    for (let r = 3; r < 6; r++) expect(await eventOf(log, r, 1)).toBe(`r${r}-1`);
    // Gone: as for any record that was deleted.
    expect(await log.record(1)).toBeNull();
  });

  it('finishes a read begun before its segment was deleted, then closes the handle', async () => {
    for (let round = 0; round < 10; round++) {
      const { dir, log, stream, files } = await diskLog(3);
      expect(await eventOf(log, 0)).toBe('r0-0');
      // The handle is open: the read under way when the segment goes still gets the record.
      const reading = eventOf(log, 0, 1);
      stream.index.release(3);
      await Promise.all([log.collect(), expect(reading).resolves.toBe('r0-1')]);
      expect(await segments(dir)).toEqual(files.slice(1));
      await expectOpenFiles(dir, [files[2] as string]);
      await log.close();
    }
  });

  it('gives nothing, and throws nothing, for a first read racing with its segment’s deletion', async () => {
    for (let round = 0; round < 50; round++) {
      const { dir, log, stream, files } = await diskLog(3);
      // No handle yet: it is opened while the file is being deleted, before or after.
      const reading = eventOf(log, 0);
      stream.index.release(3);
      const [, id] = await Promise.all([log.collect(), reading]);
      expect([undefined, 'r0-0']).toContain(id);
      await expectOpenFiles(dir, [files[2] as string]);
      await log.close();
    }
  });

  it('refuses a read handle cap that is not a positive integer', async () => {
    const dir = await temp.make();
    await expect(DurableLog.open({ dir, readHandles: 0 })).rejects.toBeInstanceOf(RangeError);
    await expect(DurableLog.open({ dir, readCacheBytes: -1 })).rejects.toBeInstanceOf(RangeError);
    await expect(DurableLog.open({ dir, decodedCacheBytes: 0.5 })).rejects.toBeInstanceOf(
      RangeError,
    );
  });
});

describe('records in memory', () => {
  /** A log in a new directory with `keys` streams, each with `consumers` registered consumers. */
  async function memoryLog(
    keys: readonly string[],
    consumers: number,
    options: Partial<LogOptions> = {},
  ): Promise<{ log: DurableLog; streams: LogStream[] }> {
    const log = await DurableLog.open({ dir: await temp.make(), fsync: false, ...options });
    logs.push(log);
    const streams: LogStream[] = [];
    for (const key of keys) {
      const state = await log.openStream(key);
      for (let c = 0; c < consumers; c++) await log.saveCursor(state, `out-${c}`, [0, 0]);
      streams.push(new LogStream(log, state));
    }
    return { log, streams };
  }

  const auditIDs = (read: { events: QueuedEvent[] }) => read.events.map((e) => e.auditID);

  it('keeps no record of a single reader in memory: it reads the segment, once per share', async () => {
    const { log, streams } = await memoryLog(['sinks/a'], 1);
    const [a] = streams as [LogStream];
    await a.write(events('e', 0, 3).map(encodeEvent));
    expect(log.stats()).toMatchObject({ cachedRecords: 0, cachedBytes: 0, segmentReads: 0 });
    // Part of the share: read from the segment, and kept for the rest of it.
    expect(auditIDs(await a.read(0, 2))).toEqual(['e-0', 'e-1']);
    expect(log.stats()).toMatchObject({ cachedRecords: 1, segmentReads: 1 });
    expect(auditIDs(await a.read(2, 10))).toEqual(['e-2']);
    expect(log.stats()).toMatchObject({ cachedRecords: 0, cachedBytes: 0, segmentReads: 1 });
    // A failed write is retried from the committed position: the same events, from the file.
    expect(auditIDs(await a.read(0, 10))).toEqual(['e-0', 'e-1', 'e-2']);
    expect(log.stats().segmentReads).toBe(2);
  });

  it('writes the frames of single-reader records through one reused buffer, never over a kept record', async () => {
    // No objects: the kept record is read from its frame, which a reused buffer would overwrite.
    const { log, streams } = await memoryLog(['sinks/a', 'sinks/b'], 1, { decodedCacheBytes: 0 });
    const [a, b] = streams as [LogStream, LogStream];
    // One reader each: the larger record first, so that the smaller ones reuse its buffer.
    await a.write(events('big', 0, 6).map(encodeEvent));
    await a.write(events('small', 0, 2).map(encodeEvent));
    // Two readers: kept in memory with a frame of its own.
    const shared = events('shared', 0, 3).map(encodeEvent);
    await Promise.all([a.write(shared), b.write(shared)]);
    await a.write(events('after', 0, 4).map(encodeEvent));
    await a.write(events('last', 0, 1).map(encodeEvent));
    expect(log.stats()).toMatchObject({ records: 5, cachedRecords: 1 });
    expect(auditIDs(await b.read(0, 10))).toEqual(['shared-0', 'shared-1', 'shared-2']);
    expect(log.stats().segmentReads).toBe(0);
    const expected = [
      ...['big', 'small', 'shared', 'after', 'last'].flatMap((prefix, r) =>
        events(prefix, 0, [6, 2, 3, 4, 1][r] as number).map((e) => e.auditID),
      ),
    ];
    expect(auditIDs(await a.read(0, 100))).toEqual(expected);
    // Every record intact on disk: reopened, each is read from its segment.
    await closeAll();
    await log.close();
    const reopened = await DurableLog.open({ dir: log.dir, fsync: false, readCacheBytes: 0 });
    logs.push(reopened);
    const stream = new LogStream(reopened, await reopened.openStream('sinks/a'));
    expect(auditIDs(await stream.read(0, 100))).toEqual(expected);
    expect(reopened.recovery).toMatchObject({ records: 5, tornBytes: 0, corruptRecords: 0 });
  });

  it('keeps a record that several consumers read after the first has read it', async () => {
    const one = await memoryLog(['sinks/a'], 2);
    const [a] = one.streams as [LogStream];
    await a.write(events('e', 0, 3).map(encodeEvent));
    expect(auditIDs(await a.read(0, 10))).toEqual(['e-0', 'e-1', 'e-2']);
    expect(one.log.stats().cachedRecords).toBe(1);

    const two = await memoryLog(['sinks/a', 'sinks/b'], 1);
    const [x, y] = two.streams as [LogStream, LogStream];
    const batch = events('s', 0, 3).map(encodeEvent);
    await Promise.all([x.write(batch), y.write(batch)]);
    expect(two.log.stats()).toMatchObject({ records: 1, cachedRecords: 1 });
    expect(auditIDs(await x.read(0, 10))).toEqual(['s-0', 's-1', 's-2']);
    expect(two.log.stats().cachedRecords).toBe(1);
    expect(auditIDs(await y.read(0, 10))).toEqual(['s-0', 's-1', 's-2']);
    expect(two.log.stats().segmentReads).toBe(0);
  });

  it('keeps events as objects only for several consumers less than the decoded window behind', async () => {
    const batch = (prefix: string) => events(prefix, 0, 3).map(encodeEvent);
    const bytes = batch('a').reduce((n, line) => n + line.bytes, 0);
    // Two consumers, the second record six events behind: it stays as bytes, decoded for each
    // read, while the first is read as the objects it was written as.
    const two = await memoryLog(['sinks/a'], 2, { decodedCacheBytes: bytes + 200 });
    const [b] = two.streams as [LogStream];
    await b.write(batch('a'));
    await b.write(batch('b'));
    expect(two.log.stats()).toMatchObject({ records: 2, cachedRecords: 2 });
    const [first, again] = [await b.read(0, 10), await b.read(0, 10)];
    expect(auditIDs(again)).toEqual(['a-0', 'a-1', 'a-2', 'b-0', 'b-1', 'b-2']);
    expect(again.events[0]).toBe(first.events[0]);
    expect(again.events[3]).not.toBe(first.events[3]);
    expect(again.events[3]).toEqual(first.events[3]);
    expect(two.log.stats().segmentReads).toBe(0);
  });

  it('keeps no objects for a record of which each stream keeps less than half: tenants read later', async () => {
    const batch = (prefix: string) => events(prefix, 0, 3).map(encodeEvent);
    const { log, streams } = await memoryLog(['sinks/a', 'sinks/b', 'sinks/c'], 1);
    const [a, b, c] = streams as [LogStream, LogStream, LogStream];
    const twice = async (stream: LogStream, from: number) => {
      const [one, two] = [await stream.read(from, 3), await stream.read(from, 3)];
      expect(two.events).toEqual(one.events);
      return one.events.map((event, i) => event === two.events[i]);
    };
    // One record, a third of it each: decoded for each read.
    await Promise.all([a.write(batch('a')), b.write(batch('b')), c.write(batch('c'))]);
    expect(log.stats().records).toBe(1);
    expect(await twice(a, 0)).toEqual([false, false, false]);
    // One record that two of them keep whole and the third not at all: its objects are read.
    const shared = batch('s');
    await Promise.all([a.write(shared), b.write(shared), c.write(batch('t').slice(0, 1))]);
    expect(log.stats().records).toBe(2);
    expect(await twice(a, 3)).toEqual([true, true, true]);
    expect(await twice(b, 3)).toEqual([true, true, true]);
  });

  describe('how much memory the records take', () => {
    /** Writes one batch of three events to every stream, as one record for all of them. */
    async function writeAll(streams: readonly LogStream[], prefix: string): Promise<void> {
      const batch = events(prefix, 0, 3).map(encodeEvent);
      await Promise.all(streams.map((s) => s.write(batch)));
    }

    /** The bytes of one record of {@link writeAll} for two streams. */
    async function recordBytes(): Promise<number> {
      const { log, streams } = await memoryLog(['sinks/a', 'sinks/b'], 1);
      await writeAll(streams, 'r00');
      return log.stats().cachedBytes;
    }

    it('grows while the readers of a record read it from its segment soon after it was let go, up to four times, and shrinks back later', async () => {
      const record = await recordBytes();
      let clock = 0;
      const growth: boolean[] = [];
      const { log, streams } = await memoryLog(['sinks/a', 'sinks/b'], 1, {
        readCacheBytes: 2 * record,
        now: () => clock,
        onCacheGrowth: (grown) => growth.push(grown),
      });
      const [a, b] = streams as [LogStream, LogStream];
      for (let r = 0; r < 4; r++) await writeAll(streams, `r0${r}`);
      // Two records fit: the first two were let go unread.
      expect(log.stats()).toMatchObject({ cachedRecords: 2, cacheLimitBytes: 2 * record });

      clock = 1_000;
      expect(auditIDs(await a.read(0, 100))).toHaveLength(12);
      // Each of the two read from its segment grew the limit by a record, so the other stream
      // reads all four from memory.
      expect(log.stats()).toMatchObject({ segmentReads: 2, cacheLimitBytes: 4 * record });
      expect(auditIDs(await b.read(0, 100))).toHaveLength(12);
      expect(log.stats().segmentReads).toBe(2);

      for (let r = 4; r < 16; r++) await writeAll(streams, `r${String(r).padStart(2, '0')}`);
      clock = 1_500;
      expect(auditIDs(await a.read(12, 100))).toHaveLength(36);
      // Never past four times readCacheBytes. Eight records behind, the stream read them all from
      // their segments; past the cap, each one it read pushed out one of the four it read next.
      expect(log.stats()).toMatchObject({ segmentReads: 14, cacheLimitBytes: 8 * record });
      // Told once when it first grew, not at every growth.
      expect(growth).toEqual([true]);

      // Half a minute without such a read: a tenth less at most every 3 s, down to the setting.
      clock = 31_499;
      await writeAll(streams, 'r16');
      expect(log.stats().cacheLimitBytes).toBe(8 * record);
      clock = 31_501;
      await writeAll(streams, 'r17');
      expect(log.stats().cacheLimitBytes).toBe(Math.floor(8 * record * 0.9));
      clock = 33_000;
      await writeAll(streams, 'r18');
      expect(log.stats().cacheLimitBytes).toBe(Math.floor(8 * record * 0.9));
      for (let r = 19; r < 60; r++) {
        clock += 3_000;
        await writeAll(streams, `r${r}`);
      }
      expect(log.stats().cacheLimitBytes).toBe(2 * record);
      expect(log.stats().cachedBytes).toBeLessThanOrEqual(2 * record);
      expect(growth).toEqual([true, false]);

      // Closed while grown: told that it is over.
      clock = 200_000;
      for (let r = 60; r < 64; r++) await writeAll(streams, `r${r}`);
      expect(auditIDs(await b.read(12, 1_000))).toHaveLength(180);
      expect(log.stats().cacheLimitBytes).toBeGreaterThan(2 * record);
      await log.close();
      expect(growth).toEqual([true, false, true, false]);
    });

    it('does not grow for a record read again by its only reader, nor for one let go long before', async () => {
      const record = await recordBytes();
      let clock = 0;
      const single = await memoryLog(['sinks/a'], 1, {
        readCacheBytes: 2 * record,
        decodedCacheBytes: 0,
        now: () => clock,
      });
      const [a] = single.streams as [LogStream];
      for (let r = 0; r < 4; r++) await a.write(events(`r${r}`, 0, 3).map(encodeEvent));
      expect(auditIDs(await a.read(0, 100))).toHaveLength(12);
      expect(auditIDs(await a.read(0, 100))).toHaveLength(12);
      expect(single.log.stats().segmentReads).toBeGreaterThan(0);
      expect(single.log.stats().cacheLimitBytes).toBe(2 * record);

      const told: boolean[] = [];
      const late = await memoryLog(['sinks/a', 'sinks/b'], 1, {
        readCacheBytes: 2 * record,
        now: () => clock,
        onCacheGrowth: (grown) => told.push(grown),
      });
      for (let r = 0; r < 4; r++) await writeAll(late.streams, `r0${r}`);
      // A destination that was down for longer than the window: its reads are no evidence.
      clock += 2_001;
      expect(auditIDs(await (late.streams[0] as LogStream).read(0, 6))).toHaveLength(6);
      expect(late.log.stats()).toMatchObject({ segmentReads: 2, cacheLimitBytes: 2 * record });
      expect(told).toEqual([]);
    });
  });

  it('reads a record that is no longer in memory once for every stream that asks meanwhile', async () => {
    const keys = Array.from({ length: 20 }, (_, i) => `pipelines/ns-${i}/audit`);
    const { log, streams } = await memoryLog(keys, 1, { readCacheBytes: 0 });
    const batch = events('s', 0, 5).map(encodeEvent);
    await Promise.all(streams.map((s) => s.write(batch)));
    expect(log.stats()).toMatchObject({ records: 1, cachedRecords: 0 });
    const reads = await Promise.all(streams.map((s) => s.read(0, 10)));
    for (const read of reads) expect(auditIDs(read)).toEqual(['s-0', 's-1', 's-2', 's-3', 's-4']);
    expect(log.stats().segmentReads).toBe(1);
    // Asked again later: read again.
    expect(auditIDs(await (streams[3] as LogStream).read(1, 2))).toEqual(['s-1', 's-2']);
    expect(log.stats().segmentReads).toBe(2);
  });
});

describe("the log's observer", () => {
  async function observed(fsync: boolean) {
    const told: { opened: unknown[]; wrote: [number, number | undefined][] } = {
      opened: [],
      wrote: [],
    };
    const log = await DurableLog.open({
      dir: await temp.make(),
      fsync,
      observer: {
        opened: (opened) => told.opened.push(opened),
        wrote: (bytes, syncSeconds) => told.wrote.push([bytes, syncSeconds]),
      },
    });
    logs.push(log);
    const stream = new LogStream(log, await log.openStream('sinks/a'));
    await stream.write(events('a', 0, 3).map(encodeEvent));
    await stream.write(events('b', 0, 5).map(encodeEvent));
    return { log, told };
  }

  it('is told the log it may read counters from, and the size and sync time of each record', async () => {
    const { log, told } = await observed(true);
    expect(told.opened).toEqual([log]);
    expect(told.wrote).toHaveLength(2);
    // The records are the whole segment: what the log reports as its size on disk.
    expect(told.wrote[0]?.[0]).toBeGreaterThan(0);
    expect(told.wrote.reduce((sum, [bytes]) => sum + bytes, 0)).toBe(log.stats().bytes);
    for (const [, syncSeconds] of told.wrote) {
      expect(syncSeconds).toBeGreaterThan(0);
      expect(syncSeconds).toBeLessThan(10);
    }
  });

  it('reports no sync time when fsync is off', async () => {
    const { told } = await observed(false);
    expect(told.wrote.map(([, syncSeconds]) => syncSeconds)).toEqual([undefined, undefined]);
  });
});
