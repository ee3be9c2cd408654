/**
 * A sink's dead-letter store: the events one of its destinations refused one by one (a 400 or 422
 * that bisection pinned on a single event) or that its output cannot encode. Each is kept durably
 * with why, so that one bad event never stops a sink nor costs the events beside it, and nothing
 * answered 200 disappears without a trace (docs/adr/0020-dead-letters.md).
 *
 * One JSON-lines file per sink, `<dataDir>/dead-letter/sinks/<name>.jsonl` or
 * `<dataDir>/dead-letter/pipelines/<namespace>/<name>.jsonl`, one record per line:
 * `{"version":1,"time":…,"sink":…,"output":…,"reason":…,"code":…,"message":…,"event":{…}}`, or,
 * for an event its sink stored as an InfluxDB point (ADR 0027), `…,"auditID":…,"point":"<line>"}`
 * in place of `"event"`.
 * Appended and fsynced before the delivery loop commits past the event; a line cut by a crash was
 * never acknowledged as kept (its event is still in the spool) and is cut when the file is next
 * opened for writing. The file is capped: what would pass the cap is not kept, and the caller
 * counts it as dropped.
 */
import { mkdir, open, readdir, readFile, rm, stat, truncate } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { dirname, join } from 'node:path';
import { jsonLines } from '../audit/lines.ts';
import { type QueuedEvent, StoredPoint } from '../audit/stored-point.ts';
import type { AuditEvent } from '../audit/types.ts';
import { syncDirectory } from '../spool/files.ts';
import type { OutputKind } from '../outputs/types.ts';
import type { SinkRef } from './types.ts';

/** Version written into each record; bump it with any change to the record's shape. */
export const DEAD_LETTER_VERSION = 1;

/**
 * Why an event is a dead letter: its destination `refused` it (HTTP 400/422 for this event
 * alone), or its output could not encode it (`unencodable`: an event that was never checked by
 * `audit/parse.ts`, e.g. spooled by an older version).
 */
export type DeadLetterReason = 'refused' | 'unencodable';

/** Every {@link DeadLetterReason}, for metrics and status. */
export const DEAD_LETTER_REASONS: readonly DeadLetterReason[] = ['refused', 'unencodable'];

/** An event one output could not deliver, and why. */
export interface DeadLetter {
  readonly output: OutputKind;
  readonly reason: DeadLetterReason;
  /** The output's error code (`REJECTED`, `UNENCODABLE`). */
  readonly code: string;
  /** The destination's or encoder's message, as status shows it; never credentials. */
  readonly message: string;
  /** The event, or the point its sink stored in its place. */
  readonly event: QueuedEvent;
}

/** A dead letter as stored: its event, or its point's line and the event's auditID. */
export interface DeadLetterRecord {
  readonly version: number;
  /** When it was stored, RFC 3339. */
  readonly time: string;
  /** The sink's label: `<name>` or `<namespace>/<name>`. */
  readonly sink: string;
  readonly output: OutputKind;
  readonly reason: DeadLetterReason;
  readonly code: string;
  readonly message: string;
  /** The event, when it was queued as one. */
  readonly event?: AuditEvent;
  /** The event's auditID, beside a point. */
  readonly auditID?: string;
  /** The point's line protocol, for an event queued as a point. */
  readonly point?: string;
}

/** The auditID of a stored dead letter, whether it holds an event or a point. */
export function deadLetterAuditId(record: DeadLetterRecord): unknown {
  return record.event === undefined ? record.auditID : record.event.auditID;
}

/** The file of a sink's dead letters under `dataDir`. */
export function deadLetterPath(dataDir: string, ref: SinkRef): string {
  return ref.kind === 'AuditSink'
    ? join(dataDir, 'dead-letter', 'sinks', `${ref.name}.jsonl`)
    : join(dataDir, 'dead-letter', 'pipelines', ref.namespace, `${ref.name}.jsonl`);
}

/** A sink's dead-letter file found under a data directory. */
export interface DeadLetterFile {
  readonly ref: SinkRef;
  readonly path: string;
}

/**
 * Every sink's dead-letter file under `dataDir`, AuditSinks first, each group sorted by name, as
 * {@link deadLetterPath} lays them out; none when the directory does not exist.
 *
 * @throws Error when a directory of the layout cannot be read (other than missing).
 */
export async function deadLetterFiles(dataDir: string): Promise<DeadLetterFile[]> {
  const root = join(dataDir, 'dead-letter');
  const files: DeadLetterFile[] = [];
  for (const name of await jsonlNames(join(root, 'sinks'))) {
    const ref: SinkRef = { kind: 'AuditSink', namespace: '', name };
    files.push({ ref, path: deadLetterPath(dataDir, ref) });
  }
  for (const namespace of await directoryNames(join(root, 'pipelines'))) {
    for (const name of await jsonlNames(join(root, 'pipelines', namespace))) {
      const ref: SinkRef = { kind: 'AuditPipeline', namespace, name };
      files.push({ ref, path: deadLetterPath(dataDir, ref) });
    }
  }
  return files;
}

async function entries(dir: string) {
  try {
    return (await readdir(dir, { withFileTypes: true })).sort((a, b) =>
      a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
    );
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

async function jsonlNames(dir: string): Promise<string[]> {
  return (await entries(dir))
    .filter((e) => e.isFile() && e.name.endsWith('.jsonl'))
    .map((e) => e.name.slice(0, -'.jsonl'.length));
}

async function directoryNames(dir: string): Promise<string[]> {
  return (await entries(dir)).filter((e) => e.isDirectory()).map((e) => e.name);
}

/** How a store is opened. */
export interface DeadLetterOptions {
  /** The file; absent: nothing is kept (every `add` keeps 0), for runs without a data directory. */
  readonly path?: string;
  /** The sink's label, written into each record. */
  readonly sink: string;
  /** Largest size of the file; records that would pass it are not kept. */
  readonly maxBytes: number;
  readonly now?: () => Date;
}

/** The dead letters of one sink. Appends are serialised; each resolves once it is durable. */
export class DeadLetterStore {
  readonly #options: DeadLetterOptions;
  // Bytes in the file, known once the first append opened it.
  #size: number | undefined;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(options: DeadLetterOptions) {
    this.#options = options;
  }

  /** Whether letters are kept at all (a data directory was given). */
  get durable(): boolean {
    return this.#options.path !== undefined;
  }

  /**
   * Stores `letters` in order, as many as fit under the cap, and resolves with how many it kept
   * (a prefix of `letters`) once they are synced to disk.
   *
   * @throws Error when the file cannot be written: nothing of this call is kept.
   */
  add(letters: readonly DeadLetter[]): Promise<number> {
    const run = this.#tail.then(() => this.#add(letters));
    this.#tail = run.catch(() => undefined);
    return run;
  }

  async #add(letters: readonly DeadLetter[]): Promise<number> {
    const path = this.#options.path;
    if (path === undefined || letters.length === 0) return 0;
    // Opened again when the file is gone: `dead-letter purge` deleted it, so the cap counts from 0.
    const size =
      this.#size === undefined || !(await exists(path)) ? await this.#open(path) : this.#size;
    const time = (this.#options.now?.() ?? new Date()).toISOString();
    const lines: string[] = [];
    let bytes = 0;
    for (const letter of letters) {
      const line = `${JSON.stringify(recordOf(letter, this.#options.sink, time))}\n`;
      const length = Buffer.byteLength(line);
      if (size + bytes + length > this.#options.maxBytes) break;
      lines.push(line);
      bytes += length;
    }
    if (lines.length === 0) return 0;
    const handle = await open(path, 'a');
    try {
      await handle.writeFile(lines.join(''));
      await handle.datasync();
    } catch (err) {
      // Cut back what was written, so that the next append starts on a clean line.
      await handle.truncate(size).catch(() => undefined);
      throw err;
    } finally {
      await handle.close();
    }
    this.#size = size + bytes;
    return lines.length;
  }

  /**
   * Makes the file and its directory exist (both synced, so a kept letter survives a power loss)
   * and cuts a line a crash left unfinished; returns the file's size.
   */
  async #open(path: string): Promise<number> {
    await mkdir(dirname(path), { recursive: true });
    const existing = await stat(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (existing === undefined) {
      await (await open(path, 'a')).close();
      await syncDirectory(dirname(path));
      this.#size = 0;
      return 0;
    }
    let size = existing.size;
    if (size > 0) {
      const text = await readFile(path);
      if (text[size - 1] !== NEWLINE) {
        size = text.lastIndexOf(NEWLINE) + 1;
        await truncate(path, size);
      }
    }
    this.#size = size;
    return size;
  }

  /** Bytes the file holds (0 before the first append or without a file). */
  get bytes(): number {
    return this.#size ?? 0;
  }
}

const NEWLINE = 0x0a;

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

function recordOf(letter: DeadLetter, sink: string, time: string): DeadLetterRecord {
  return {
    version: DEAD_LETTER_VERSION,
    time,
    sink,
    output: letter.output,
    reason: letter.reason,
    code: letter.code,
    message: letter.message,
    ...(letter.event instanceof StoredPoint
      ? { auditID: letter.event.auditID, point: letter.event.line }
      : { event: letter.event }),
  };
}

/** One line of a dead-letter file: a record, or a line that is not one (with its number). */
export type DeadLetterLine =
  | { readonly ok: true; readonly line: number; readonly record: DeadLetterRecord }
  | { readonly ok: false; readonly line: number; readonly error: string };

/**
 * The lines of a dead-letter file in order, read as a stream (the file may be large). A missing
 * file has none.
 */
export async function* readDeadLetters(path: string): AsyncGenerator<DeadLetterLine> {
  const stream = createReadStream(path, { encoding: 'utf8' });
  const opened = new Promise<boolean>((resolve, reject) => {
    stream.once('open', () => resolve(true));
    stream.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') resolve(false);
      else reject(err);
    });
  });
  if (!(await opened)) return;
  let number = 0;
  for await (const line of jsonLines(stream as AsyncIterable<string>)) {
    number++;
    if (line !== '') yield parseLine(line, number);
  }
}

function parseLine(text: string, line: number): DeadLetterLine {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, line, error: `not JSON: ${(err as Error).message}` };
  }
  const record = value as { version?: unknown; event?: unknown; point?: unknown } | null;
  if (
    typeof record !== 'object' ||
    record === null ||
    record.version !== DEAD_LETTER_VERSION ||
    !(
      (typeof record.event === 'object' && record.event !== null) ||
      typeof record.point === 'string'
    )
  ) {
    return { ok: false, line, error: `not a version ${DEAD_LETTER_VERSION} dead-letter record` };
  }
  return { ok: true, line, record: value as DeadLetterRecord };
}

/** Deletes a sink's dead-letter file (after its events were replayed); a missing file is fine. */
export async function purgeDeadLetters(path: string): Promise<void> {
  await rm(path, { force: true });
}
