/**
 * The process's durable log (ADR 0019): one append-only run of segment files that every sink's
 * queue shares. A group commit writes the batches of every sink appended meanwhile as one record
 * (each distinct event once, and per sink the indexes of the events it keeps) with one fsync,
 * however many sinks there are. Each sink is a stream with its own consumers' positions,
 * kept together in one state file; a segment is deleted once every stream has passed it.
 *
 * Crash safety rests on the rules of the per-sink spool (ADR 0007), applied once: records are
 * only appended, in order; a write is published (readable, counted, acknowledged) only after its
 * fsync; a failed write is cut back before anything else is written; a stream's id is durable in
 * the state file before any record names it; and a segment is deleted only behind every durable
 * position.
 */
import { type FileHandle, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ReusedBuffer } from '../../audit/reused-buffer.ts';
import type { QueuedEvent } from '../../audit/stored-point.ts';
import { QueueError } from '../errors.ts';
import {
  createDirectory,
  errorCode,
  ioError,
  readAt,
  readRange,
  syncDirectory,
  truncateFile,
  writeFullySync,
} from '../files.ts';
import { type EncodedEvent, encodeEvent, POINT_MARKER_BYTE } from '../format.ts';
import {
  decodeLogEvent,
  decodeLogLines,
  decodeLogRecord,
  decodeLogState,
  encodeLogFrame,
  encodeLogState,
  encodeStreamState,
  FRAME_HEADER_BYTES,
  frameAt,
  type LogLine,
  type LogPosition,
  type LogLines,
  logSegmentFileName,
  parseLogSegmentFileName,
  scanLogSegment,
  sealLogFrame,
  type StreamShare,
} from './format.ts';
import { eventStarts, type StreamEntry, StreamIndex, singleSelection } from './stream-index.ts';

/**
 * 64 MiB segments: one group commit of 100 sinks' 400-event batches is a few MiB, and a segment
 * is only freed once every sink has passed all of it, so segments are larger than a single sink's
 * spool's (8 MiB) without holding much more back.
 */
export const DEFAULT_LOG_SEGMENT_BYTES = 64 * 1024 * 1024;

/**
 * 32 MiB of records kept in memory, as written: consumers that keep up, or fall a little behind,
 * read what was written without touching the disk. A
 * record holds every sink's share, so a tenant among a hundred that reads one from disk reads all
 * of it: the cache must cover how far behind the slowest delivering sink usually is.
 */
export const LOG_CACHE_BYTES = 32 * 1024 * 1024;

/**
 * How far the memory for records may grow past `readCacheBytes` while streams read again records
 * it had to let go: a hundred tenants each waiting a flush interval before they read hold records
 * back for that long, and at tens of thousands of events per second a second of records is more
 * than 32 MiB. Each of them would then read every record from its segment, all tenants' shares
 * included, which costs more than the memory.
 */
export const LOG_CACHE_GROWTH = 4;

/**
 * A record read from its segment within this long after the cache let it go, by a stream with a
 * share in it, says the cache is too small for how far apart its readers are. Later reads are
 * readers far behind (a destination that was down), which no cache of a few seconds would serve.
 */
const CACHE_MISS_WINDOW_MS = 2_000;

/** With no such read for this long, the cache shrinks back towards `readCacheBytes`, by a tenth. */
const CACHE_SHRINK_AFTER_MS = 30_000;

/**
 * Of those, the most recent 8 MiB keep their events as objects, what one per-sink spool kept
 * (ADR 0012): a consumer that keeps up takes them without decoding, while the rest cost their
 * bytes, not the several times more their objects take on the heap. Only records that a stream
 * within this many bytes of its end keeps: the events of streams further behind would leave the
 * window unread, after a costly stay in the heap's old generation (ADR 0021).
 */
export const LOG_DECODED_CACHE_BYTES = 8 * 1024 * 1024;

/**
 * Read handles kept open at once, the least recently used closed first: reads of records no longer
 * in memory reuse their segment's handle instead of opening and closing the file each time, while
 * a log of many segments (laggards hold old ones) takes at most this many file descriptors.
 */
export const LOG_READ_HANDLES = 64;

/**
 * The log's size past which a stream holding its oldest segment, with a share of at most half
 * the log, is relocated (its retained events copied forward) so that the segment can go.
 */
export const DEFAULT_RELOCATE_AFTER_BYTES = 4 * DEFAULT_LOG_SEGMENT_BYTES;

/**
 * The most the log keeps for writing the frames of records with one reader: a record of one
 * sink's 400-event batches is a few hundred kilobytes at Metadata, a few MiB with bodies. A
 * larger record gets a buffer of its own.
 */
export const LOG_FRAME_BUFFER_BYTES = 4 * 1024 * 1024;

/** Bytes of events per record of a relocation copy: what one step holds in memory. */
const RELOCATION_CHUNK_BYTES = 4 * 1024 * 1024;

const STATE_FILE = 'state.json';

/** How a log is opened. */
export interface LogOptions {
  readonly dir: string;
  /** Size at which a new segment starts (default {@link DEFAULT_LOG_SEGMENT_BYTES}). */
  readonly segmentBytes?: number;
  /** Fsync records, the state file and directory entries before reporting them stored. */
  readonly fsync?: boolean;
  /** Bytes of records kept in memory for reads (default {@link LOG_CACHE_BYTES}). */
  readonly readCacheBytes?: number;
  /**
   * Of those, bytes of the most recent records kept as objects (default
   * {@link LOG_DECODED_CACHE_BYTES}).
   */
  readonly decodedCacheBytes?: number;
  /** Segment files kept open for reads at most (default {@link LOG_READ_HANDLES}). */
  readonly readHandles?: number;
  /** Log size past which laggards are relocated (default {@link DEFAULT_RELOCATE_AFTER_BYTES}). */
  readonly relocateAfterBytes?: number;
  /** Milliseconds of a monotonic clock (default `performance.now`); tests pass their own. */
  readonly now?: () => number;
  /**
   * Told when the memory for records first grows past `readCacheBytes` (true: consumers reading
   * the same records fell further apart than it holds) and when it is back to it (false).
   */
  readonly onCacheGrowth?: (grown: boolean) => void;
  /** Told when the log is open and after each record it writes, for metrics. */
  readonly observer?: LogObserver;
}

/** What the log tells its observer (the process's metrics). */
export interface LogObserver {
  /** The log is open: its counters are read from `log` until the next `opened`. */
  opened(log: { stats(): LogStats }): void;
  /**
   * A record was written and, with fsync on, synced: its size, and the seconds its sync took (its
   * `fdatasync`, and the directory's when a new segment began; undefined with fsync off).
   */
  wrote(bytes: number, syncSeconds: number | undefined): void;
}

const NO_OBSERVER: LogObserver = { opened: () => undefined, wrote: () => undefined };

/** What opening the log found on disk. */
export interface LogRecovery {
  readonly segments: number;
  readonly records: number;
  /** Bytes cut from the end of the last segment: a write a crash interrupted, never acknowledged. */
  readonly tornBytes: number;
  /** Damaged stretches followed by intact records: skipped and counted, never cut. */
  readonly corruptRecords: number;
  /** Whether the state file was missing or unreadable while records existed (positions reset). */
  readonly stateReset: boolean;
}

/** What the log counts, for metrics and benchmarks. */
export interface LogStats {
  readonly segments: number;
  readonly records: number;
  /** Bytes of the retained segments. */
  readonly bytes: number;
  /** Writes (each with one fsync when enabled): one per group commit. */
  readonly writes: number;
  readonly streams: number;
  /** Relocations completed: a laggard's retained events copied forward to free old segments. */
  readonly relocations: number;
  /** Segments whose read handle is kept open (besides those closing once their reads end). */
  readonly readHandles: number;
  /** Records kept in memory for reads, and their bytes. */
  readonly cachedRecords: number;
  readonly cachedBytes: number;
  /**
   * The bytes of records kept at most now: `readCacheBytes`, grown while streams read again
   * records it let go (up to {@link LOG_CACHE_GROWTH} times).
   */
  readonly cacheLimitBytes: number;
  /** Records read from their segments (reads that several streams shared count once). */
  readonly segmentReads: number;
}

/** A stream of the log: one sink, with its consumers' durable positions. */
export interface LogStreamState {
  readonly key: string;
  readonly id: number;
  /** The first record of the stream's last completed relocation (0 when it never moved). */
  base: number;
  readonly cursors: Map<string, LogPosition>;
  readonly index: StreamIndex;
  /** Consumers whose position could not be read; they restart at the oldest retained event. */
  readonly reset: readonly string[];
  open: boolean;
}

interface Segment {
  readonly first: number;
  readonly path: string;
  size: number;
  /** Record number after its last record. */
  end: number;
}

interface Location {
  readonly segment: Segment;
  readonly offset: number;
  readonly size: number;
}

interface PendingAppend {
  readonly stream: LogStreamState;
  readonly records: readonly EncodedEvent[];
  readonly resolve: () => void;
  readonly reject: (error: unknown) => void;
}

/**
 * A relocation under way: a stream's retained events copied, entry by entry, into records of
 * their own at the log's end while its new appends wait (see {@link DurableLog}).
 */
interface Relocation {
  readonly stream: LogStreamState;
  /** The stream's retained entries when copying began; null until then. */
  entries: readonly StreamEntry[] | null;
  /** Sequence number and byte offset of the first event copied. */
  from: number;
  fromBytes: number;
  /** Next entry to copy. */
  next: number;
  /** Record of the first copy, once written. */
  base: number | null;
  readonly added: { record: number; selection: Uint32Array; starts: Float64Array }[];
}

/**
 * One record kept in memory for reads: its events as objects while it is among the most recent
 * (consumers that keep up take them as they are), then only its bytes, decoded on each read.
 */
class CachedRecord {
  #events: (QueuedEvent | null | undefined)[] | null;
  // The frame's event lines; undefined until first needed (its shares are in the streams' indexes).
  #record: LogLines | null | undefined;
  readonly #frame: Buffer | null;
  readonly bytes: number;
  /**
   * How many consumers read it: one per consumer of each stream with a share in it, as many as
   * there were when it was cached.
   */
  readonly readers: number;

  constructor(
    events: (QueuedEvent | null | undefined)[] | null,
    frame: Buffer | null,
    record: LogLines | null | undefined,
    bytes: number,
    readers: number,
  ) {
    this.#events = events;
    this.#frame = frame;
    this.#record = record;
    this.bytes = bytes;
    this.readers = readers;
  }

  /** Whether it keeps its events as objects (it counts in the decoded window). */
  get holdsEvents(): boolean {
    return this.#events !== null;
  }

  /**
   * Whether memory is worth spending on it: its objects save decoding, its bytes only a read from
   * the segment that several consumers would each make. For a single one (one sink with one
   * destination), a read from the segment decodes the same bytes, for one pread from the page
   * cache, and the sink's backlog does not sit in the heap as well.
   */
  get worthCaching(): boolean {
    return this.holdsEvents || this.readers > 1;
  }

  /** Drops the event objects: reads decode them from the record's bytes from now on. */
  demote(): void {
    this.#events = null;
  }

  #decoded(): LogLines | null {
    if (this.#record === undefined) {
      this.#record =
        this.#frame === null ? null : decodeLogLines(this.#frame.subarray(FRAME_HEADER_BYTES));
    }
    return this.#record;
  }

  /** The record's `index`th event, or null when it cannot be decoded. */
  event(index: number): QueuedEvent | null {
    const events = this.#events;
    let event = events?.[index];
    if (event === undefined) {
      const record = this.#decoded();
      event = record === null ? null : decodeLogEvent(record, index);
      if (events !== null) events[index] = event;
    }
    return event;
  }

  /** The record's `index`th event as stored, or null when it is damaged. */
  line(index: number): LogLine | null {
    const record = this.#decoded();
    if (record === null) {
      const event = this.#events?.[index];
      return event === undefined || event === null ? null : encodeEvent(event);
    }
    const start = record.lines[index];
    const end = record.lines[index + 1];
    if (start === undefined || end === undefined) return null;
    if (record.payload[start] === POINT_MARKER_BYTE) {
      return {
        json: record.payload.toString('utf8', start + 1, end - 1),
        bytes: end - start,
        point: true,
      };
    }
    return { json: record.payload.toString('utf8', start, end - 1), bytes: end - start };
  }
}

/**
 * A read-only handle on one segment, opened on its first read and shared by the reads of its
 * records. Retired (segment deleted, too many handles, log closed), it takes no new reads and
 * closes once the reads using it have ended.
 */
class SegmentReader {
  readonly #opening: Promise<FileHandle>;
  #users = 0;
  #retired = false;
  readonly #closed = Promise.withResolvers<void>();

  constructor(path: string) {
    this.#opening = open(path, 'r');
    // A failed open is reported to the reads that wait for it; a retired reader only closes it.
    this.#opening.catch(() => undefined);
  }

  /** `size` bytes at `offset`; fewer when the file ends before. */
  async read(offset: number, size: number): Promise<Buffer> {
    this.#users++;
    try {
      return await readAt(await this.#opening, offset, size);
    } finally {
      this.#users--;
      if (this.#retired && this.#users === 0) this.#close();
    }
  }

  /** Takes no more reads; resolves once the handle is closed, after the reads using it. */
  retire(): Promise<void> {
    if (!this.#retired) {
      this.#retired = true;
      if (this.#users === 0) this.#close();
    }
    return this.#closed.promise;
  }

  #close(): void {
    // Nothing was written through it, so a failed close loses nothing: the descriptor is gone.
    this.#opening
      .then(
        (handle) => handle.close(),
        () => undefined,
      )
      .then(this.#closed.resolve, this.#closed.resolve);
  }
}

// Logs open in this process, by directory: two writers on one directory would corrupt it.
const openLogs = new Set<string>();

function sameRecords(a: readonly EncodedEvent[], b: readonly EncodedEvent[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]?.event !== b[i]?.event) return false;
  return true;
}

/**
 * `selection`, or an equal one already in `seen` (which it joins otherwise): sinks keeping the same
 * events of a record share one selection, found without comparing it with every other share's.
 */
function sharedSelection(seen: Map<number, Uint32Array[]>, selection: Uint32Array): Uint32Array {
  if (selection.length === 1) return singleSelection(selection[0] as number);
  const key = (selection[0] ?? 0) * 0x10000 + (selection.length % 0x10000);
  const alike = seen.get(key);
  if (alike === undefined) {
    seen.set(key, [selection]);
    return selection;
  }
  const same = alike.find((s) => sameSelection(s, selection));
  if (same !== undefined) return same;
  alike.push(selection);
  return selection;
}

function sameSelection(a: Uint32Array, b: Uint32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The log in one directory; see the module comment for the guarantees. */
export class DurableLog {
  readonly dir: string;
  readonly recovery: LogRecovery;
  readonly #segmentBytes: number;
  readonly #fsync: boolean;
  readonly #cacheBytes: number;
  readonly #now: () => number;
  readonly #onCacheGrowth: (grown: boolean) => void;
  readonly #observer: LogObserver;
  // The current limit of #cachedBytes, from #cacheBytes up to LOG_CACHE_GROWTH times it.
  #cacheLimit: number;
  // Records of several readers the limit made the cache let go, by record: when, oldest first.
  readonly #letGo = new Map<number, number>();
  #lastMiss = Number.NEGATIVE_INFINITY;
  #lastShrink = Number.NEGATIVE_INFINITY;
  readonly #decodedCacheBytes: number;
  readonly #readHandles: number;
  readonly #relocateAfterBytes: number;
  readonly #segments: Segment[];
  readonly #locations = new Map<number, Location>();
  readonly #streams = new Map<string, LogStreamState>();
  #nextId: number;
  #nextRecord: number;
  #handle: FileHandle | null = null;
  // Read handles of the segments read from, least recently used first; none once the log closed.
  readonly #readers = new Map<Segment, SegmentReader>();
  #readersClosed = false;
  #directoryDirty = false;
  #broken: unknown = null;
  #pending: PendingAppend[] = [];
  #flushing: Promise<void> | null = null;
  #writes = 0;
  #segmentReads = 0;
  // Decoded records for reads, oldest first.
  readonly #cache = new Map<number, CachedRecord>();
  // The frames of records that nothing keeps once written (ADR 0012): one buffer, written again.
  readonly #frames = new ReusedBuffer(LOG_FRAME_BUFFER_BYTES);
  // Reads from segments under way, by record: later readers of the same record share them.
  readonly #reading = new Map<number, Promise<CachedRecord | null>>();
  #cachedBytes = 0;
  // The most recent of them, still holding their events as objects, oldest first.
  readonly #decoded = new Map<number, CachedRecord>();
  #decodedBytes = 0;
  // State file saves: #wanted counts requested versions, #saved the last one on disk.
  #wanted = 0;
  #saved = 0;
  #saving: Promise<void> | null = null;
  #dirSyncWanted = false;
  // Each stream's part of the state file, until its positions change: a save re-encodes only
  // the streams whose destinations committed since the last one.
  readonly #encoded = new WeakMap<LogStreamState, string>();
  #collecting: Promise<void> = Promise.resolve();
  // Relocation: the one under way, the appends of its stream waiting for it, the records each
  // moved stream still holds until its new base is durable, and streams that cannot be moved.
  #relocation: Relocation | null = null;
  readonly #held = new Map<LogStreamState, PendingAppend[]>();
  readonly #shadows = new Map<LogStreamState, { readonly from: number; moved: boolean }>();
  readonly #unmovable = new WeakSet<LogStreamState>();
  #relocations = 0;
  #closed = false;
  #closing: Promise<void> | null = null;

  private constructor(
    options: Required<LogOptions>,
    segments: Segment[],
    locations: Map<number, Location>,
    streams: LogStreamState[],
    nextId: number,
    nextRecord: number,
    recovery: LogRecovery,
  ) {
    this.dir = options.dir;
    this.#segmentBytes = options.segmentBytes;
    this.#fsync = options.fsync;
    this.#cacheBytes = options.readCacheBytes;
    this.#cacheLimit = options.readCacheBytes;
    this.#now = options.now;
    this.#onCacheGrowth = options.onCacheGrowth;
    this.#observer = options.observer;
    this.#decodedCacheBytes = options.decodedCacheBytes;
    this.#readHandles = options.readHandles;
    this.#relocateAfterBytes = options.relocateAfterBytes;
    this.#segments = segments;
    this.#locations = locations;
    for (const stream of streams) this.#streams.set(stream.key, stream);
    this.#nextId = nextId;
    this.#nextRecord = nextRecord;
    this.recovery = recovery;
  }

  /**
   * Opens (creating it if needed) the log in `options.dir`: cuts a torn tail off the last
   * segment, counts damaged records, loads the streams and their positions, and deletes what no
   * stream needs any more.
   */
  static async open(options: LogOptions): Promise<DurableLog> {
    const settings: Required<LogOptions> = {
      dir: resolve(options.dir),
      segmentBytes: options.segmentBytes ?? DEFAULT_LOG_SEGMENT_BYTES,
      fsync: options.fsync ?? true,
      readCacheBytes: options.readCacheBytes ?? LOG_CACHE_BYTES,
      decodedCacheBytes: options.decodedCacheBytes ?? LOG_DECODED_CACHE_BYTES,
      readHandles: options.readHandles ?? LOG_READ_HANDLES,
      relocateAfterBytes: options.relocateAfterBytes ?? DEFAULT_RELOCATE_AFTER_BYTES,
      now: options.now ?? (() => performance.now()),
      onCacheGrowth: options.onCacheGrowth ?? (() => undefined),
      observer: options.observer ?? NO_OBSERVER,
    };
    if (!Number.isSafeInteger(settings.segmentBytes) || settings.segmentBytes <= 0) {
      throw new RangeError(`segmentBytes must be a positive integer, got ${settings.segmentBytes}`);
    }
    if (!Number.isSafeInteger(settings.readHandles) || settings.readHandles <= 0) {
      throw new RangeError(`readHandles must be a positive integer, got ${settings.readHandles}`);
    }
    for (const name of ['readCacheBytes', 'decodedCacheBytes'] as const) {
      if (!Number.isSafeInteger(settings[name]) || settings[name] < 0) {
        throw new RangeError(`${name} must be a non-negative integer, got ${settings[name]}`);
      }
    }
    if (openLogs.has(settings.dir)) {
      throw new QueueError('QUEUE_IN_USE', `log ${settings.dir} is already open in this process`);
    }
    openLogs.add(settings.dir);
    try {
      const log = await DurableLog.#load(settings);
      await log.collect();
      settings.observer.opened(log);
      return log;
    } catch (error) {
      openLogs.delete(settings.dir);
      throw error instanceof QueueError ? error : ioError('opening log', settings.dir, error);
    }
  }

  static async #load(options: Required<LogOptions>): Promise<DurableLog> {
    const { dir, fsync } = options;
    await createDirectory(dir, fsync);
    const names = await readdir(dir);
    const segmentFirsts: number[] = [];
    for (const name of names) {
      const first = parseLogSegmentFileName(name);
      if (first !== null) segmentFirsts.push(first);
      // A crash while the state file was replaced leaves its temporary file; the old one is intact.
      else if (name === `${STATE_FILE}.tmp`) await unlink(join(dir, name));
    }
    segmentFirsts.sort((a, b) => a - b);

    let stateText: string | null = null;
    try {
      stateText = await readFile(join(dir, STATE_FILE), 'utf8');
    } catch (error) {
      if (errorCode(error) !== 'ENOENT') throw error;
    }
    const state = stateText === null ? null : decodeLogState(stateText);

    // Every intact record, with the shares and event sizes that build the streams' indexes.
    const segments: Segment[] = [];
    const locations = new Map<number, Location>();
    const loaded: { record: number; shares: readonly StreamShare[]; starts: Float64Array }[] = [];
    let tornBytes = 0;
    let corruptRecords = 0;
    let lastRecord = -1;
    for (const [i, first] of segmentFirsts.entries()) {
      const path = join(dir, logSegmentFileName(first));
      const buf = await readFile(path);
      const scan = scanLogSegment(buf);
      corruptRecords += scan.corrupt;
      let size = buf.length;
      if (scan.validBytes < buf.length) {
        if (i === segmentFirsts.length - 1) {
          // Only the last segment can end in a write a crash interrupted: never acknowledged.
          await truncateFile(path, scan.validBytes, fsync);
          tornBytes += buf.length - scan.validBytes;
          size = scan.validBytes;
        } else {
          // A sealed segment was synced whole: a damaged end is corruption, kept and counted.
          corruptRecords++;
        }
      }
      const segment: Segment = { first, path, size, end: first };
      for (const { offset, size: frameSize } of scan.records) {
        const record = decodeLogRecord(
          buf.subarray(offset + FRAME_HEADER_BYTES, offset + frameSize),
        );
        if (record === null || record.record <= lastRecord || record.record < first) {
          corruptRecords++;
          continue;
        }
        lastRecord = record.record;
        segment.end = record.record + 1;
        locations.set(record.record, { segment, offset, size: frameSize });
        // Where each event's line starts, counted from the first: the record's event sizes summed.
        const lineStart = record.lines[0] as number;
        const starts = Float64Array.from(record.lines, (at) => at - lineStart);
        loaded.push({ record: record.record, shares: record.shares, starts });
      }
      segments.push(segment);
    }

    // The streams: from the state file, or, when it is lost, from the records themselves (the
    // newest id of each key), every position reset to the oldest retained event.
    const stateReset = state === null && loaded.length > 0;
    const streams = new Map<number, LogStreamState>();
    let nextId = state?.nextId ?? 0;
    if (state !== null) {
      for (const s of state.streams) {
        streams.set(s.id, {
          key: s.key,
          id: s.id,
          base: s.base,
          cursors: new Map(s.cursors),
          index: new StreamIndex(),
          reset: [],
          open: false,
        });
        nextId = Math.max(nextId, s.id + 1);
      }
    } else {
      const newest = new Map<string, number>();
      // Each stream's last complete relocation: its copy stands for everything before it.
      const bases = new Map<number, number>();
      for (const { shares } of loaded) {
        for (const share of shares) {
          newest.set(share.key, Math.max(newest.get(share.key) ?? -1, share.id));
          if (share.relocation?.final === true) {
            bases.set(share.id, Math.max(bases.get(share.id) ?? 0, share.relocation.base));
          }
        }
      }
      for (const [key, id] of newest) {
        streams.set(id, {
          key,
          id,
          base: bases.get(id) ?? 0,
          cursors: new Map(),
          index: new StreamIndex(),
          reset: [],
          open: false,
        });
        nextId = Math.max(nextId, id + 1);
      }
    }
    for (const { record, shares, starts } of loaded) {
      // Streams that keep the same events share one selection.
      const built = new Map<number, Uint32Array[]>();
      for (const share of shares) {
        const stream = streams.get(share.id);
        // Not in the state: the stream was deleted, and its share freed.
        if (stream === undefined) continue;
        // Before the stream's relocation, or a copy that never completed: its events are those
        // of the relocated shares with its base and of the ordinary shares after them.
        if (
          share.relocation === undefined
            ? record < stream.base
            : share.relocation.base !== stream.base
        ) {
          continue;
        }
        stream.index.add(record, sharedSelection(built, share.selection), starts);
      }
    }
    let nextRecord = Math.max(lastRecord + 1, segmentFirsts.at(-1) ?? 0);
    for (const stream of streams.values()) {
      for (const [record] of stream.cursors.values()) nextRecord = Math.max(nextRecord, record);
      // What every consumer of the stream has passed is free (the queue does the same on open).
      let low = Number.POSITIVE_INFINITY;
      for (const position of stream.cursors.values()) {
        low = Math.min(low, stream.index.seqOf(position));
      }
      if (low !== Number.POSITIVE_INFINITY) stream.index.release(low);
    }
    return new DurableLog(options, segments, locations, [...streams.values()], nextId, nextRecord, {
      segments: segments.length,
      records: loaded.length,
      tornBytes,
      corruptRecords,
      stateReset,
    });
  }

  /** Whether the log was closed (its last stream closed); open it again to use the directory. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Keys of the streams the log holds, open or not. */
  streamKeys(): string[] {
    return [...this.#streams.keys()];
  }

  /**
   * The stream with this key, created (and its id made durable) if the log has none. Streams
   * found on disk but never opened keep holding their events.
   */
  async openStream(key: string): Promise<LogStreamState> {
    if (this.#closed) throw new QueueError('QUEUE_CLOSED', `log ${this.dir} is closed`);
    let stream = this.#streams.get(key);
    if (stream?.open === true) {
      throw new QueueError('QUEUE_IN_USE', `stream ${key} of log ${this.dir} is already open`);
    }
    if (stream === undefined) {
      stream = {
        key,
        id: this.#nextId++,
        base: 0,
        cursors: new Map(),
        index: new StreamIndex(),
        reset: [],
        open: false,
      };
      this.#streams.set(key, stream);
      // Durable before any record names it: a record of an unknown id is a deleted stream's.
      await this.#saveState(true);
    }
    stream.open = true;
    return stream;
  }

  /**
   * Closes a stream; its events stay for the next open. The log closes with its last open stream
   * (the next user opens it again).
   */
  async closeStream(stream: LogStreamState): Promise<void> {
    stream.open = false;
    if (!this.#anyOpen()) await this.close();
  }

  /** Deletes a stream: its positions go, and its share of the log is freed. */
  async dropStream(stream: LogStreamState): Promise<void> {
    stream.open = false;
    if (this.#streams.get(stream.key) === stream) this.#streams.delete(stream.key);
    stream.index.clear();
    await this.#saveState(true);
    await this.collect();
    if (!this.#anyOpen()) await this.close();
  }

  #anyOpen(): boolean {
    for (const stream of this.#streams.values()) if (stream.open) return true;
    return false;
  }

  /** Stores a stream's events; resolves once they are durable and in its index. */
  append(stream: LogStreamState, records: readonly EncodedEvent[]): Promise<void> {
    return new Promise<void>((resolveAppend, rejectAppend) => {
      if (this.#closed) throw new QueueError('QUEUE_CLOSED', `log ${this.dir} is closed`);
      const append = { stream, records, resolve: resolveAppend, reject: rejectAppend };
      // A stream being relocated appends after its copy, once that is complete.
      const held = this.#held.get(stream);
      if (held !== undefined) {
        held.push(append);
        return;
      }
      this.#pending.push(append);
      this.#kick();
    });
  }

  /**
   * Starts the writer after the current turn: every sink's share of a batch (queued in the same
   * turn) goes into one record; appends arriving during a write go into the next one.
   */
  #kick(): void {
    this.#flushing ??= new Promise<void>((started) => setImmediate(started)).then(() =>
      this.#flush(),
    );
  }

  /** Saves a consumer's position. */
  saveCursor(stream: LogStreamState, consumer: string, position: LogPosition): Promise<void> {
    stream.cursors.set(consumer, position);
    this.#encoded.delete(stream);
    return this.#saveState(false);
  }

  /** Forgets a consumer's position. */
  deleteCursor(stream: LogStreamState, consumer: string): Promise<void> {
    stream.cursors.delete(consumer);
    this.#encoded.delete(stream);
    return this.#saveState(false);
  }

  /**
   * The events of a stream's entry in `record`, decoded once for every stream that reads it: from
   * memory, or from its segment by one read that every stream asking meanwhile shares. (A hundred
   * sinks behind the memory would otherwise each read and decode the same record, and fall
   * further behind for it.)
   */
  record(record: number): Promise<CachedRecord | null> {
    const cached = this.#cache.get(record);
    if (cached !== undefined) return Promise.resolve(cached);
    let reading = this.#reading.get(record);
    if (reading === undefined) {
      reading = this.#readRecord(record).finally(() => this.#reading.delete(record));
      this.#reading.set(record, reading);
    }
    return reading;
  }

  async #readRecord(record: number): Promise<CachedRecord | null> {
    const location = this.#locations.get(record);
    if (location === undefined) return null;
    this.#segmentReads++;
    this.#missed(record, location.size);
    const { segment, offset, size: length } = location;
    let buf: Buffer;
    try {
      buf = this.#readersClosed
        ? await readRange(segment.path, offset, length)
        : await this.#reader(segment).read(offset, length);
    } catch (error) {
      // Its segment was deleted while this read was under way (every stream had passed the
      // record, or reads its relocated copy): as for a read that came after, it is gone.
      if (this.#locations.get(record) !== location) return null;
      throw ioError('reading', segment.path, error);
    }
    const size = frameAt(buf, 0);
    const decoded =
      size === 0 ? null : decodeLogRecord(buf.subarray(FRAME_HEADER_BYTES, location.size));
    const readers = this.#readersOf(decoded?.shares ?? []);
    // Only its lines are kept: the shares of every stream would sit in memory unread.
    const lines = decoded === null ? null : { payload: decoded.payload, lines: decoded.lines };
    const entry = new CachedRecord([], null, lines, location.size, readers);
    this.#cacheRecord(record, entry);
    return entry;
  }

  /** How many consumers read a record with `shares`: those of each stream still open, once. */
  #readersOf(shares: readonly StreamShare[]): number {
    const streams = new Set<LogStreamState>();
    for (const share of shares) {
      const stream = this.#streams.get(share.key);
      if (stream?.id === share.id) streams.add(stream);
    }
    let readers = 0;
    for (const stream of streams) readers += stream.cursors.size;
    return readers;
  }

  /**
   * A consumer has read its stream's whole share of `record` (`cached`, as {@link record} returned
   * it). A record with one reader then leaves the memory: only a retried write reads it again,
   * from its segment. Records of several readers stay for the others, as long as the cache holds
   * them (counting which reader read what is left out: a consumer that reads a share twice, after
   * a failed write, would make the count drop a record another one still needs).
   */
  readThrough(record: number, cached: CachedRecord): void {
    if (cached.readers <= 1 && this.#cache.get(record) === cached) this.#uncache(record);
  }

  /**
   * The segment's read handle, opened on first use; past the cap, the least recently used one
   * closes (once the reads using it end).
   */
  #reader(segment: Segment): SegmentReader {
    let reader = this.#readers.get(segment);
    if (reader === undefined) {
      reader = new SegmentReader(segment.path);
    } else {
      this.#readers.delete(segment);
    }
    this.#readers.set(segment, reader);
    for (const [oldest, idle] of this.#readers) {
      if (this.#readers.size <= this.#readHandles) break;
      void this.#retireReader(oldest, idle);
    }
    return reader;
  }

  /** Closes a segment's read handle once the reads using it have ended. */
  #retireReader(segment: Segment, reader = this.#readers.get(segment)): Promise<void> {
    if (reader === undefined) return Promise.resolve();
    this.#readers.delete(segment);
    return reader.retire();
  }

  /**
   * A stream released events, its first needed record moving from `before` to `after`: collects
   * only when that took it out of a segment, since no segment can have become free otherwise. With
   * a thousand sinks each committing its own batches, a full collection per commit would cost the
   * number of sinks times the number of segments every time.
   */
  released(before: number, after: number): Promise<void> {
    const segment = this.#segmentHolding(before);
    if (segment !== undefined && after < segment.end) return Promise.resolve();
    return this.collect();
  }

  /** The retained segment whose records include `record` (the last one takes every later). */
  #segmentHolding(record: number): Segment | undefined {
    // The first segment starting after `record`; the one before it is the candidate.
    let lo = 0;
    let hi = this.#segments.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.#segments[mid] as Segment).first <= record) lo = mid + 1;
      else hi = mid;
    }
    const segment = this.#segments[lo - 1];
    if (segment === undefined) return undefined;
    return record < segment.end || segment === this.#segments.at(-1) ? segment : undefined;
  }

  /** Deletes the segments every stream has passed; serialised, so deletions never race. */
  collect(): Promise<void> {
    const step = (): Promise<void> => this.#collect();
    const run = this.#collecting.then(step, step);
    this.#collecting = run;
    return run;
  }

  /** Current counters. */
  stats(): LogStats {
    let bytes = 0;
    for (const segment of this.#segments) bytes += segment.size;
    return {
      segments: this.#segments.length,
      records: this.#locations.size,
      bytes,
      writes: this.#writes,
      streams: this.#streams.size,
      relocations: this.#relocations,
      readHandles: this.#readers.size,
      cachedRecords: this.#cache.size,
      cachedBytes: this.#cachedBytes,
      cacheLimitBytes: this.#cacheLimit,
      segmentReads: this.#segmentReads,
    };
  }

  /** Writes what is pending, saves the state and releases the directory; idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    while (this.#flushing !== null) await this.#flushing;
    await Promise.allSettled([this.#collecting]);
    try {
      if (this.#wanted > this.#saved) await this.#saveState(false);
    } finally {
      this.#cache.clear();
      this.#cachedBytes = 0;
      this.#decoded.clear();
      this.#decodedBytes = 0;
      this.#letGo.clear();
      // Nothing is kept for readers any more: whoever was told it grew hears that it is over.
      if (this.#cacheLimit > this.#cacheBytes) {
        this.#cacheLimit = this.#cacheBytes;
        this.#onCacheGrowth(false);
      }
      const handle = this.#handle;
      this.#handle = null;
      this.#readersClosed = true;
      const readers = [...this.#readers.keys()].map((segment) => this.#retireReader(segment));
      openLogs.delete(this.dir);
      await Promise.all(readers);
      if (handle !== null) await handle.close();
    }
  }

  async #collect(): Promise<void> {
    let low = this.#nextRecord;
    for (const stream of this.#streams.values()) low = Math.min(low, stream.index.pin);
    for (const record of [...this.#cache.keys()]) if (record < low) this.#uncache(record);
    // Every segment no stream holds an undelivered event in, not only those before the oldest
    // one: a sink past its budget adds nothing to the records after it, so they go as soon as the
    // others have them. Never the segment being written.
    // A moved stream holds its old records until its new base is durable.
    const moved = [...this.#shadows].filter(([, shadow]) => shadow.moved);
    if (moved.length > 0) {
      try {
        await this.#saveState(true);
        for (const [stream, shadow] of moved) {
          if (this.#shadows.get(stream) === shadow) this.#shadows.delete(stream);
        }
      } catch {
        // Kept until a save succeeds; the next collection tries again.
      }
    }
    const streams = [...this.#streams.values()];
    const shadows = [...this.#shadows.values()];
    for (const segment of this.#segments.slice(0, -1)) {
      if (streams.some((s) => s.index.holds(segment.first, segment.end))) continue;
      if (shadows.some((shadow) => shadow.from < segment.end)) continue;
      // Forgotten before the file goes: a read that meets the file gone (its open fails while the
      // unlink completes) must find its record gone too, as a read that came after would.
      for (let record = segment.first; record < segment.end; record++) {
        this.#locations.delete(record);
      }
      try {
        await unlink(segment.path);
      } catch (error) {
        if (errorCode(error) !== 'ENOENT') throw ioError('deleting segment', segment.path, error);
      }
      this.#segments.splice(this.#segments.indexOf(segment), 1);
      // Reads under way on it finish (the file stays until its last descriptor closes).
      void this.#retireReader(segment);
    }
    this.#relocateLaggard();
  }

  /**
   * Relocation (ADR 0019): once the log passes its size, a stream that holds the oldest segment
   * with a share of at most half the log (a quiet sink whose destination is down, holding every
   * segment written since) has its retained events copied forward, so that disk use stays
   * bounded by the log's size and twice the largest share, not by the ingest over an outage.
   */
  #relocateLaggard(): void {
    if (this.#relocation !== null || this.#closed || this.#broken !== null) return;
    let total = 0;
    for (const segment of this.#segments) total += segment.size;
    const oldest = this.#segments[0];
    if (total <= this.#relocateAfterBytes || oldest === undefined) return;
    for (const stream of this.#streams.values()) {
      if (this.#unmovable.has(stream) || !stream.index.holds(oldest.first, oldest.end)) continue;
      const share = stream.index.retainedBytes;
      if (share === 0 || share * 2 > total) continue;
      this.#relocation = {
        stream,
        entries: null,
        from: 0,
        fromBytes: 0,
        next: 0,
        base: null,
        added: [],
      };
      this.#held.set(stream, []);
      this.#shadows.set(stream, { from: stream.index.pin, moved: false });
      this.#kick();
      return;
    }
  }

  /** Group commit: one record, one write and one fsync for every append pending. */
  async #flush(): Promise<void> {
    for (;;) {
      let wrote = false;
      if (this.#pending.length > 0) {
        const group = this.#pending.splice(0);
        wrote = true;
        try {
          await this.#write(group);
        } catch (error) {
          for (const append of group) append.reject(error);
        }
      }
      // A relocation step between groups, so that it delays other sinks by one record at most;
      // it starts copying once no append of its stream waits to be written before the copy.
      const job = this.#relocation;
      if (job !== null && !this.#pending.some((append) => append.stream === job.stream)) {
        wrote = true;
        await this.#relocateStep(job);
      }
      if (!wrote) break;
    }
    this.#flushing = null;
  }

  /** Writes the next record of a relocation's copy; completes it after the last one. */
  async #relocateStep(job: Relocation): Promise<void> {
    const { stream } = job;
    if (this.#closed || this.#broken !== null || this.#streams.get(stream.key) !== stream) {
      this.#endRelocation(job);
      return;
    }
    if (job.entries === null) {
      // Nothing of the stream is waiting to be written: its retained events are all there is.
      job.entries = stream.index.retained();
      job.from = stream.index.start;
      job.fromBytes = stream.index.offsetOf(job.from);
      this.#shadows.set(stream, { from: stream.index.pin, moved: false });
    }
    const lines: LogLine[] = [];
    let bytes = 0;
    try {
      while (
        job.next < job.entries.length &&
        (lines.length === 0 || bytes < RELOCATION_CHUNK_BYTES)
      ) {
        const entry = job.entries[job.next] as StreamEntry;
        const record = await this.record(entry.record);
        for (let k = Math.max(job.from - entry.first, 0); k < entry.selection.length; k++) {
          const line = record?.line(entry.selection[k] as number) ?? null;
          // A damaged record cannot be copied: the stream stays where it is.
          if (line === null) throw new Error(`record ${entry.record} is damaged`);
          lines.push(line);
          bytes += line.bytes;
        }
        job.next++;
      }
    } catch {
      this.#unmovable.add(stream);
      this.#endRelocation(job);
      return;
    }
    const final = job.next >= job.entries.length;
    if (lines.length > 0) {
      const record = this.#nextRecord;
      const base = job.base ?? record;
      const selection = new Uint32Array(lines.length);
      for (let k = 0; k < lines.length; k++) selection[k] = k;
      const buf = encodeLogFrame(record, lines, [
        { id: stream.id, key: stream.key, selection, relocation: { base, final } },
      ]);
      try {
        await this.#writeRecord(record, buf);
      } catch {
        this.#endRelocation(job);
        return;
      }
      job.base = base;
      job.added.push({
        record,
        selection,
        starts: eventStarts(lines.map((line) => line.bytes)),
      });
    }
    if (!final) return;
    if (job.base === null) {
      // Nothing was retained after all.
      this.#endRelocation(job);
      return;
    }
    // The switch, in one turn: positions keep their sequence numbers and take the copies' records.
    const seqs = new Map<string, number>();
    for (const [consumer, position] of stream.cursors) {
      seqs.set(consumer, stream.index.seqOf(position));
    }
    try {
      stream.index.relocate(job.from, job.fromBytes, job.added);
    } catch {
      // The copy does not match the stream (it cannot, with its appends held): leave it be.
      this.#unmovable.add(stream);
      this.#endRelocation(job);
      return;
    }
    for (const [consumer, seq] of seqs) stream.cursors.set(consumer, stream.index.positionOf(seq));
    stream.base = job.base;
    this.#encoded.delete(stream);
    this.#relocations++;
    const shadow = this.#shadows.get(stream);
    if (shadow !== undefined) shadow.moved = true;
    this.#endRelocation(job, false);
    // The old records go once the new base is durable; #collect saves it (retrying on failure).
    void this.collect().catch(() => undefined);
  }

  /** Ends a relocation; its stream's waiting appends go to the writer. */
  #endRelocation(job: Relocation, abandoned = true): void {
    if (this.#relocation === job) this.#relocation = null;
    if (abandoned) this.#shadows.delete(job.stream);
    const held = this.#held.get(job.stream);
    this.#held.delete(job.stream);
    if (held !== undefined && held.length > 0) {
      this.#pending.push(...held);
      this.#kick();
    }
  }

  async #write(group: readonly PendingAppend[]): Promise<void> {
    if (this.#broken !== null) {
      throw new QueueError(
        'QUEUE_IO',
        `log ${this.dir} refuses writes after a failed sync; reopen it to recover`,
        { cause: this.#broken },
      );
    }
    // Each event object once: sinks keeping an event at the same level share one trimmed copy.
    const variants: EncodedEvent[] = [];
    // Which variant each event object is; built only when a second, different share comes.
    let numbers: Map<QueuedEvent, number> | null = null;
    const shares: StreamShare[] = [];
    // Distinct selections by their first index and length, so that equal ones are one instance.
    const selections = new Map<number, Uint32Array[]>();
    let previous: { records: readonly EncodedEvent[]; selection: Uint32Array } | null = null;
    for (const { stream, records } of group) {
      // Sinks that keep the same events (the usual case) share the previous one's selection.
      if (previous !== null && sameRecords(previous.records, records)) {
        shares.push({ id: stream.id, key: stream.key, selection: previous.selection });
        continue;
      }
      let selection: Uint32Array = new Uint32Array(records.length);
      if (variants.length === 0) {
        // The first share: its events are the record's first variants, in order.
        for (let k = 0; k < records.length; k++) {
          variants.push(records[k] as EncodedEvent);
          selection[k] = k;
        }
        selection = sharedSelection(selections, selection);
        shares.push({ id: stream.id, key: stream.key, selection });
        previous = { records, selection };
        continue;
      }
      if (numbers === null) {
        numbers = new Map();
        for (let n = variants.length - 1; n >= 0; n--) {
          numbers.set((variants[n] as EncodedEvent).event, n);
        }
      }
      for (let k = 0; k < records.length; k++) {
        const record = records[k] as EncodedEvent;
        let n = numbers.get(record.event);
        if (n === undefined) {
          n = variants.length;
          variants.push(record);
          numbers.set(record.event, n);
        }
        selection[k] = n;
      }
      selection = sharedSelection(selections, selection);
      shares.push({ id: stream.id, key: stream.key, selection });
      previous = { records, selection };
    }
    const record = this.#nextRecord;
    // A record with one consumer is not kept in memory once written (below: that consumer decodes
    // it from its segment), so its frame goes into the log's reused buffer rather than a new one
    // of a few hundred kilobytes (ADR 0012). A consumer added meanwhile reads it from its segment.
    const readers = this.#readersOf(shares);
    const buf = encodeLogFrame(record, variants, shares, readers > 1 ? undefined : this.#frames);
    await this.#writeRecord(record, buf);
    const starts = eventStarts(variants.map((v) => v.bytes));
    for (const [i, { stream }] of group.entries()) {
      const selection = (shares[i] as StreamShare).selection;
      // A stream dropped while its batch was written: nothing of it is kept.
      if (this.#streams.get(stream.key) === stream) stream.index.add(record, selection, starts);
    }
    // Its events stay objects only for several consumers (tenants reading their shares of it),
    // and only for a stream whose consumers may read them before they leave the decoded window:
    // behind that by more than the window, they would only be promoted to the old generation and
    // dropped unread. A single consumer decodes its events from the bytes for about what the
    // objects saved it, without them sitting in the heap meanwhile (ADR 0021). That stream must
    // also keep at least half of the record: one with a small share (a tenant among many) fills
    // its batch slowly and reads a flush interval later, after its objects were promoted to the
    // old generation, which costs more than decoding them (ADR 0012).
    if (readers > 1) {
      const soon = group.some(
        ({ stream }, i) =>
          (shares[i] as StreamShare).selection.length * 2 >= variants.length &&
          stream.index.retainedBytes <= this.#decodedCacheBytes,
      );
      const events = soon ? variants.map((v) => v.event) : null;
      this.#cacheRecord(record, new CachedRecord(events, buf, undefined, buf.length, readers));
    }
    for (const append of group) append.resolve();
  }

  /**
   * Appends one framed record at the log's end and makes it durable; on failure nothing of it
   * stays (or the log refuses further writes when it cannot be sure). The frame is sealed here
   * (one from `encodeLogFrame`; sealing a sealed one changes nothing).
   */
  async #writeRecord(record: number, buf: Buffer): Promise<void> {
    const { segment, handle } = await this.#writer(buf.length);
    const at = segment.size;
    let syncing = false;
    let syncSeconds: number | undefined;
    try {
      // The payload goes to the file first; the frame's header (marker, length, checksum), which
      // makes it a record, follows. Neither is acknowledged before the sync, and a crash between
      // them leaves a tail without a marker, cut as a torn write. Both are written on this thread:
      // into the page cache they take a fraction of a millisecond, where the thread pool's queue
      // (gzip of InfluxDB bodies, reads, other syncs) made every acknowledgement wait (ADR 0019).
      sealLogFrame(buf);
      writeFullySync(handle.fd, buf.subarray(FRAME_HEADER_BYTES), at + FRAME_HEADER_BYTES);
      writeFullySync(handle.fd, buf.subarray(0, FRAME_HEADER_BYTES), at);
      if (this.#fsync) {
        syncing = true;
        const since = this.#now();
        await handle.datasync();
        if (this.#directoryDirty) await syncDirectory(this.dir);
        syncSeconds = (this.#now() - since) / 1000;
      }
    } catch (error) {
      try {
        await handle.truncate(at);
      } catch (truncateError) {
        this.#broken = truncateError;
      }
      // After a failed fsync Linux may have dropped the dirty pages (see segments.ts).
      if (syncing) this.#broken = error;
      throw ioError(syncing ? 'syncing' : 'writing', segment.path, error);
    }
    this.#directoryDirty = false;
    this.#writes++;
    this.#nextRecord = record + 1;
    segment.size = at + buf.length;
    segment.end = record + 1;
    this.#locations.set(record, { segment, offset: at, size: buf.length });
    this.#observer.wrote(buf.length, syncSeconds);
  }

  async #writer(bytes: number): Promise<{ segment: Segment; handle: FileHandle }> {
    let segment = this.#segments.at(-1);
    if (segment === undefined || (segment.size > 0 && segment.size + bytes > this.#segmentBytes)) {
      const handle = this.#handle;
      this.#handle = null;
      if (handle !== null) await handle.close();
      const first = this.#nextRecord;
      segment = { first, path: join(this.dir, logSegmentFileName(first)), size: 0, end: first };
      try {
        this.#handle = await open(segment.path, 'wx');
      } catch (error) {
        throw ioError('creating segment', segment.path, error);
      }
      this.#segments.push(segment);
      this.#directoryDirty = true;
    }
    try {
      this.#handle ??= await open(segment.path, 'r+');
    } catch (error) {
      throw ioError('opening segment', segment.path, error);
    }
    return { segment, handle: this.#handle };
  }

  #cacheRecord(record: number, entry: CachedRecord): void {
    this.#shrink();
    if (entry.bytes > this.#cacheLimit || !entry.worthCaching) return;
    this.#uncache(record);
    // Read once, and expired let-go records forgotten once, for however many records go now.
    let now: number | undefined;
    while (this.#cachedBytes + entry.bytes > this.#cacheLimit) {
      const oldest = this.#cache.entries().next();
      if (oldest.done === true) break;
      const [number, dropped] = oldest.value;
      this.#uncache(number);
      if (dropped.readers > 1) {
        if (now === undefined) {
          now = this.#now();
          this.#forgetLetGo(now);
        }
        this.#letGo.set(number, now);
      }
    }
    this.#cache.set(record, entry);
    this.#cachedBytes += entry.bytes;
    if (!entry.holdsEvents) return;
    this.#decoded.set(record, entry);
    this.#decodedBytes += entry.bytes;
    while (this.#decodedBytes > this.#decodedCacheBytes) {
      const oldest = this.#decoded.entries().next();
      if (oldest.done === true) break;
      const [number, demoted] = oldest.value;
      demoted.demote();
      this.#decoded.delete(number);
      this.#decodedBytes -= demoted.bytes;
      // Kept as bytes by the rule of any record without objects.
      if (!demoted.worthCaching) this.#uncache(number);
    }
  }

  /**
   * A record is read from its segment: when the cache let it go moments ago while several
   * consumers read it, those readers are further apart than the cache holds, and each of them
   * would read every record from its segment. The limit grows by a quarter (and at least by the
   * record), up to {@link LOG_CACHE_GROWTH} times `readCacheBytes`.
   */
  #missed(record: number, bytes: number): void {
    const now = this.#now();
    this.#forgetLetGo(now);
    if (!this.#letGo.delete(record)) return;
    this.#lastMiss = now;
    const before = this.#cacheLimit;
    const grown = before + Math.max(Math.floor(before / 4), bytes);
    this.#cacheLimit = Math.min(this.#cacheBytes * LOG_CACHE_GROWTH, grown);
    if (before === this.#cacheBytes && this.#cacheLimit > before) this.#onCacheGrowth(true);
  }

  /** Forgets the records let go before the window: reads of them are no longer evidence. */
  #forgetLetGo(now: number): void {
    // In the order they were let go, so the oldest come first.
    for (const [number, at] of this.#letGo) {
      if (now - at <= CACHE_MISS_WINDOW_MS) break;
      this.#letGo.delete(number);
    }
  }

  /** Without a miss for a while, takes the limit back by a tenth (at most every few seconds). */
  #shrink(): void {
    if (this.#cacheLimit <= this.#cacheBytes) return;
    const now = this.#now();
    if (now - this.#lastMiss < CACHE_SHRINK_AFTER_MS) return;
    if (now - this.#lastShrink < CACHE_SHRINK_AFTER_MS / 10) return;
    this.#lastShrink = now;
    this.#cacheLimit = Math.max(this.#cacheBytes, Math.floor(this.#cacheLimit * 0.9));
    if (this.#cacheLimit === this.#cacheBytes) this.#onCacheGrowth(false);
  }

  #uncache(record: number): void {
    const entry = this.#cache.get(record);
    if (entry === undefined) return;
    this.#cache.delete(record);
    this.#cachedBytes -= entry.bytes;
    if (this.#decoded.delete(record)) this.#decodedBytes -= entry.bytes;
  }

  /**
   * Saves the state file (every stream and position) atomically; concurrent saves share one
   * write. With `dirSync` the directory is synced too, so a stream's creation or deletion
   * survives a power loss; a position replaced without it may come back older, which only
   * delivers again what idempotent writes overwrite.
   */
  async #saveState(dirSync: boolean): Promise<void> {
    const target = ++this.#wanted;
    if (dirSync) this.#dirSyncWanted = true;
    while (this.#saved < target) {
      this.#saving ??= this.#saveRound().finally(() => {
        this.#saving = null;
      });
      await this.#saving;
    }
  }

  async #saveRound(): Promise<void> {
    const version = this.#wanted;
    const dirSync = this.#dirSyncWanted;
    this.#dirSyncWanted = false;
    const parts: string[] = [];
    for (const stream of this.#streams.values()) {
      let part = this.#encoded.get(stream);
      if (part === undefined) {
        part = encodeStreamState(stream);
        this.#encoded.set(stream, part);
      }
      parts.push(part);
    }
    const text = encodeLogState(this.#nextId, parts);
    const path = join(this.dir, STATE_FILE);
    const temporary = `${path}.tmp`;
    try {
      const handle = await open(temporary, 'w');
      try {
        await handle.writeFile(text);
        if (this.#fsync) await handle.datasync();
      } finally {
        await handle.close();
      }
      await rename(temporary, path);
      if (this.#fsync && dirSync) await syncDirectory(this.dir);
    } catch (error) {
      if (dirSync) this.#dirSyncWanted = true;
      throw ioError('saving log state', path, error);
    }
    this.#saved = Math.max(this.#saved, version);
  }
}
