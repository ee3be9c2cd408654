/**
 * The durable store: segment files of JSON lines and one cursor file per consumer in one
 * directory (format in `format.ts`). One process opens a directory at a time; the queue enforces
 * that within the process, and the sink registry owns one directory per sink.
 *
 * Crash safety rests on three rules: records are only appended, in order, at known offsets; a
 * write is published (readable, counted, acknowledged) only after its fsync, so no cursor can
 * point past durable data; and a failed write is cut back before anything else is written.
 */
import { type FileHandle, open, readdir, readFile, rename, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { QueueError } from './errors.ts';
import {
  createDirectory,
  errorCode,
  ioError,
  readRange,
  syncDirectory,
  truncateFile,
  writeFully,
} from './files.ts';
import {
  cursorFileName,
  decodeCursor,
  decodeRecord,
  type EncodedEvent,
  encodeCursor,
  encodeLines,
  parseCursorFileName,
  parseSegmentFileName,
  scanSegment,
  segmentFileName,
} from './format.ts';
import { RecentRecords } from './recent.ts';
import type { EventStore, StoreRead, StoreRecovery } from './store.ts';

/** Where and how a segment store keeps its files. */
export interface SegmentStoreOptions {
  readonly dir: string;
  /** Size at which the last segment is sealed and a new one started. */
  readonly segmentBytes: number;
  /** Fsync data, cursors and directory entries before reporting them stored. */
  readonly fsync: boolean;
}

/** One segment file and the end offset of each record in it. */
interface Segment {
  readonly firstSeq: number;
  readonly path: string;
  readonly ends: number[];
}

function sizeOf(segment: Segment): number {
  return segment.ends.at(-1) ?? 0;
}

function endOf(segment: Segment): number {
  return segment.firstSeq + segment.ends.length;
}

/** Byte offset of record `seq` in `segment` (its size for the sequence number after the last). */
function offsetOf(segment: Segment, seq: number): number {
  return seq <= segment.firstSeq
    ? 0
    : (segment.ends[seq - segment.firstSeq - 1] ?? sizeOf(segment));
}

function isCursorTemporary(name: string): boolean {
  return name.startsWith('cursor-') && name.endsWith('.json.tmp');
}

/** Segment files in one directory; see the module comment for the guarantees. */
export class SegmentStore implements EventStore {
  readonly cursors: ReadonlyMap<string, number>;
  readonly recovery: StoreRecovery;
  readonly #dir: string;
  readonly #segmentBytes: number;
  readonly #fsync: boolean;
  readonly #segments: Segment[];
  #end: number;
  // The segment appends go to, and its handle (opened on the first write after open).
  #active: Segment | null;
  #handle: FileHandle | null = null;
  // A segment file was created and the directory entry is not yet fsynced.
  #directoryDirty = false;
  // Set when the file can no longer be trusted to hold what a write reported (see #abandon).
  #broken: unknown = null;
  // The last records written, so that consumers who keep up skip reading and decoding the file.
  readonly #recent = new RecentRecords();
  // Consumers whose cursor file's directory entry is on disk: found at open, or synced since.
  readonly #durableCursors: Set<string>;

  private constructor(
    options: SegmentStoreOptions,
    segments: Segment[],
    end: number,
    cursors: ReadonlyMap<string, number>,
    recovery: StoreRecovery,
  ) {
    this.#dir = options.dir;
    this.#segmentBytes = options.segmentBytes;
    this.#fsync = options.fsync;
    this.#segments = segments;
    this.#end = end;
    this.cursors = cursors;
    this.#durableCursors = new Set(cursors.keys());
    this.recovery = recovery;
    const last = segments.at(-1);
    // Append to the last segment only if it ends where the next event starts: after a crash
    // with fsync off, a cursor may be ahead of the data, and sequence numbers are never reused.
    this.#active =
      last !== undefined && endOf(last) === end && sizeOf(last) < options.segmentBytes
        ? last
        : null;
  }

  /**
   * Opens (creating it if needed) the store in `options.dir`: cuts a torn tail off the last
   * segment, deletes interrupted cursor writes, and loads cursors.
   */
  static async open(options: SegmentStoreOptions): Promise<SegmentStore> {
    try {
      return await SegmentStore.#load(options);
    } catch (error) {
      throw error instanceof QueueError ? error : ioError('opening spool', options.dir, error);
    }
  }

  static async #load(options: SegmentStoreOptions): Promise<SegmentStore> {
    const { dir, fsync } = options;
    await createDirectory(dir, fsync);

    const names = await readdir(dir);
    const segmentNames: { readonly firstSeq: number; readonly path: string }[] = [];
    const consumers: string[] = [];
    for (const name of names) {
      const firstSeq = parseSegmentFileName(name);
      const consumer = parseCursorFileName(name);
      if (firstSeq !== null) {
        segmentNames.push({ firstSeq, path: join(dir, name) });
      } else if (consumer !== null) {
        consumers.push(consumer);
      } else if (isCursorTemporary(name)) {
        // A crash during a cursor write leaves its temporary file; the old cursor is intact.
        await unlink(join(dir, name));
      }
    }
    segmentNames.sort((a, b) => a.firstSeq - b.firstSeq);

    const segments: Segment[] = [];
    let tornBytes = 0;
    let events = 0;
    for (const [i, { firstSeq, path }] of segmentNames.entries()) {
      const buf = await readFile(path);
      // Only the last segment can hold an unacknowledged write: earlier ones were sealed after
      // their last write was synced. Earlier ones are only checked for a final newline.
      const scan = scanSegment(buf, i === segmentNames.length - 1);
      if (scan.validBytes < buf.length) {
        await truncateFile(path, scan.validBytes, fsync);
        tornBytes += buf.length - scan.validBytes;
      }
      const previous = segments.at(-1);
      if (previous !== undefined && endOf(previous) > firstSeq) {
        throw new QueueError(
          'QUEUE_CORRUPT',
          `${path} starts at event ${firstSeq}, inside ${previous.path}, which ends at ${endOf(previous)}`,
        );
      }
      segments.push({ firstSeq, path, ends: scan.ends });
      events += scan.ends.length;
    }

    const loaded = new Map<string, number>();
    const resetCursors: string[] = [];
    for (const consumer of consumers) {
      const next = decodeCursor(
        await readFile(join(dir, cursorFileName(consumer)), 'utf8'),
        consumer,
      );
      if (next === null) resetCursors.push(consumer);
      else loaded.set(consumer, next);
    }
    // Sequence numbers are never reused, so the next one is past both the data and every cursor.
    const last = segments.at(-1);
    let end = last === undefined ? 0 : endOf(last);
    for (const next of loaded.values()) end = Math.max(end, next);
    // An unreadable cursor (written by hand, or by a future version) restarts at the oldest
    // retained event: redelivery is harmless (writes are idempotent), a skipped event is lost.
    const start = segments[0]?.firstSeq ?? end;
    for (const consumer of resetCursors) loaded.set(consumer, start);

    return new SegmentStore(options, segments, end, loaded, {
      segments: segments.length,
      events,
      tornBytes,
      resetCursors,
    });
  }

  get start(): number {
    return this.#segments[0]?.firstSeq ?? this.#end;
  }

  get end(): number {
    return this.#end;
  }

  get writeLimit(): number {
    const size = this.#active === null ? 0 : sizeOf(this.#active);
    return size < this.#segmentBytes ? this.#segmentBytes - size : this.#segmentBytes;
  }

  async write(records: readonly EncodedEvent[]): Promise<void> {
    if (this.#broken !== null) {
      throw new QueueError(
        'QUEUE_IO',
        `spool ${this.#dir} refuses writes after a failed sync; reopen it to recover`,
        { cause: this.#broken },
      );
    }
    if (records.length === 0) return;
    let bytes = 0;
    for (const record of records) bytes += record.bytes;
    let writer: { segment: Segment; handle: FileHandle };
    try {
      writer = await this.#writer(bytes);
    } catch (error) {
      throw error instanceof QueueError ? error : ioError('opening segment in', this.#dir, error);
    }
    const { segment, handle } = writer;
    const at = sizeOf(segment);
    let syncing = false;
    try {
      await writeFully(handle, encodeLines(records, bytes), at);
      if (this.#fsync) {
        syncing = true;
        await handle.datasync();
        if (this.#directoryDirty) await syncDirectory(this.#dir);
      }
    } catch (error) {
      return this.#abandon(handle, segment.path, at, syncing, error);
    }
    this.#directoryDirty = false;
    let offset = at;
    for (const record of records) {
      offset += record.bytes;
      segment.ends.push(offset);
    }
    this.#recent.add(this.#end, records);
    this.#end += records.length;
  }

  async read(from: number, max: number): Promise<StoreRead> {
    const cached = this.#recent.read(Math.max(from, this.start), max);
    if (cached !== null) {
      return { events: cached, end: Math.max(from, this.start) + cached.length, corrupt: [] };
    }
    const events: StoreRead['events'] = [];
    const corrupt: number[] = [];
    let seq = Math.max(from, this.start);
    let remaining = max;
    // A snapshot: release() may drop segments while this read waits on the disk.
    for (const segment of [...this.#segments]) {
      if (remaining === 0) break;
      if (endOf(segment) <= seq) continue;
      const first = Math.max(seq, segment.firstSeq);
      const last = Math.min(endOf(segment), first + remaining);
      const base = offsetOf(segment, first);
      let buf: Buffer;
      try {
        const length = offsetOf(segment, last) - base;
        buf = await readRange(segment.path, base, length);
        if (buf.length < length) {
          throw new QueueError('QUEUE_IO', `${segment.path} ends before byte ${base + length}`);
        }
      } catch (error) {
        // Every consumer passed this segment while we waited: a stale read, nothing is lost.
        if (errorCode(error) === 'ENOENT' && !this.#segments.includes(segment)) break;
        throw error instanceof QueueError ? error : ioError('reading', segment.path, error);
      }
      for (let s = first; s < last; s++) {
        const event = decodeRecord(
          buf,
          offsetOf(segment, s) - base,
          offsetOf(segment, s + 1) - base,
        );
        if (event === null) corrupt.push(s);
        else events.push(event);
      }
      seq = last;
      remaining -= last - first;
    }
    return { events, end: Math.max(seq, from), corrupt };
  }

  count(from: number, to: number): number {
    let n = 0;
    for (const segment of this.#segments) {
      const a = Math.max(from, segment.firstSeq);
      const b = Math.min(to, endOf(segment));
      if (b > a) n += b - a;
    }
    return n;
  }

  bytes(from: number, to: number): number {
    let n = 0;
    for (const segment of this.#segments) {
      const a = Math.max(from, segment.firstSeq);
      const b = Math.min(to, endOf(segment));
      if (b > a) n += offsetOf(segment, b) - offsetOf(segment, a);
    }
    return n;
  }

  async release(before: number): Promise<void> {
    this.#recent.release(before);
    // Take every droppable segment out of the index at once, before awaiting anything, so that a
    // consumer registering meanwhile never starts inside a segment about to be deleted.
    const doomed: Segment[] = [];
    for (;;) {
      const first = this.#segments[0];
      if (first === undefined || first === this.#active || endOf(first) > before) break;
      doomed.push(first);
      this.#segments.shift();
    }
    const failed: Segment[] = [];
    let cause: unknown = null;
    for (const segment of doomed) {
      try {
        await unlink(segment.path);
      } catch (error) {
        if (errorCode(error) === 'ENOENT') continue;
        failed.push(segment);
        cause ??= error;
      }
    }
    if (failed.length > 0) {
      // Keep them in the index so the next release tries again.
      this.#segments.unshift(...failed);
      throw ioError('deleting delivered segment', failed[0]?.path ?? this.#dir, cause);
    }
  }

  async saveCursor(consumer: string, next: number): Promise<void> {
    const path = join(this.#dir, cursorFileName(consumer));
    const temporary = `${path}.tmp`;
    try {
      const handle = await open(temporary, 'w');
      try {
        await handle.writeFile(encodeCursor(consumer, next));
        if (this.#fsync) await handle.datasync();
      } finally {
        await handle.close();
      }
      await rename(temporary, path);
      // The directory entry of a new cursor must be durable: without it a consumer would be lost.
      // Replacing one needs no directory sync: after a power loss the rename may be undone, and
      // the older cursor only delivers again what writes overwrite (idempotent), never less.
      if (this.#fsync && !this.#durableCursors.has(consumer)) {
        await syncDirectory(this.#dir);
        this.#durableCursors.add(consumer);
      }
    } catch (error) {
      throw ioError('saving cursor', path, error);
    }
  }

  async deleteCursor(consumer: string): Promise<void> {
    const path = join(this.#dir, cursorFileName(consumer));
    this.#durableCursors.delete(consumer);
    try {
      await unlink(path);
      if (this.#fsync) await syncDirectory(this.#dir);
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw ioError('deleting cursor', path, error);
    }
  }

  async close(): Promise<void> {
    this.#recent.clear();
    const handle = this.#handle;
    this.#handle = null;
    // Appends were synced when they were acknowledged; closing only releases the descriptor.
    if (handle !== null) await handle.close();
  }

  async destroy(): Promise<void> {
    await this.close();
    // Forget the segments first, so that a read still in flight ends quietly (see read()).
    this.#segments.length = 0;
    this.#active = null;
    // Only the files this store writes: the directory may hold files it does not own.
    for (const name of await readdir(this.#dir)) {
      if (
        parseSegmentFileName(name) !== null ||
        parseCursorFileName(name) !== null ||
        isCursorTemporary(name)
      ) {
        await unlink(join(this.#dir, name));
      }
    }
    try {
      await rmdir(this.#dir);
    } catch (error) {
      // Someone else's files are still there: leave the directory to them.
      if (errorCode(error) !== 'ENOTEMPTY' && errorCode(error) !== 'EEXIST') throw error;
    }
  }

  /** The segment the next `bytes` go to, starting a new one when the current one is full. */
  async #writer(bytes: number): Promise<{ segment: Segment; handle: FileHandle }> {
    const active = this.#active;
    if (active === null || (sizeOf(active) > 0 && sizeOf(active) + bytes > this.#segmentBytes)) {
      return this.#startSegment();
    }
    this.#handle ??= await open(active.path, 'r+');
    return { segment: active, handle: this.#handle };
  }

  async #startSegment(): Promise<{ segment: Segment; handle: FileHandle }> {
    await this.close();
    const segment: Segment = {
      firstSeq: this.#end,
      path: join(this.#dir, segmentFileName(this.#end)),
      ends: [],
    };
    let handle: FileHandle;
    try {
      handle = await open(segment.path, 'wx');
    } catch (error) {
      throw ioError('creating segment', segment.path, error);
    }
    this.#segments.push(segment);
    this.#active = segment;
    this.#handle = handle;
    this.#directoryDirty = true;
    return { segment, handle };
  }

  /** Undoes a failed write so no partial line stays, and reports it. */
  async #abandon(
    handle: FileHandle,
    path: string,
    at: number,
    syncing: boolean,
    error: unknown,
  ): Promise<never> {
    try {
      await handle.truncate(at);
    } catch (truncateError) {
      this.#broken = truncateError;
    }
    // After a failed fsync Linux may have dropped the dirty pages and cleared the error, so a
    // later fsync could succeed for data that never reached the disk ("fsyncgate", 2018): stop
    // acknowledging anything until the queue is reopened and recovers from what is really there.
    if (syncing) this.#broken = error;
    throw ioError(syncing ? 'syncing' : 'writing', path, error);
  }
}
