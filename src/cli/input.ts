/**
 * Reading command inputs: whole files, and audit events from a file or standard input as either
 * JSON lines (an apiserver `--audit-log-path` file) or one JSON EventList/Event document.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { jsonLines } from '../audit/lines.ts';
import { AuditParseError, DEFAULT_PARSE_LIMITS, parseAuditPayload } from '../audit/parse.ts';
import type { AuditEvent } from '../audit/types.ts';
import { CliError } from './errors.ts';

/** Reads a whole text file, turning file-system errors into one clear message. */
export async function readTextFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw fileError(err, what, path);
  }
}

/** A file-system error as a CLI error that names the file and the reason, without a stack. */
function fileError(err: unknown, what: string, path: string): CliError {
  const code = (err as NodeJS.ErrnoException).code;
  const reason =
    code === 'ENOENT'
      ? 'no such file'
      : code === 'EISDIR'
        ? 'is a directory'
        : code === 'EACCES'
          ? 'permission denied'
          : (err as Error).message;
  return new CliError(`cannot read ${what} ${path}: ${reason}`, 1, { cause: err });
}

/** An event read from input, or the reason one record could not be read. */
export type EventRecord =
  | { readonly ok: true; readonly event: AuditEvent }
  | { readonly ok: false; readonly where: string; readonly message: string };

/**
 * Reads audit events from `path` (`-` for standard input), in input order.
 *
 * The format is detected from the first non-empty line: if it is a complete JSON value the input
 * is JSON lines, one Event (or EventList) per line, streamed; otherwise the whole input is read as
 * one JSON document, and if that is not valid JSON either, line by line after all (so one corrupt
 * first line costs one record, not the file). Bare events (no `apiVersion` and `kind`) are read as
 * `audit.k8s.io/v1` Events. Records that are not valid events are yielded as errors, and reading
 * goes on.
 */
export async function* readEvents(path: string, stdin: Readable): AsyncGenerator<EventRecord> {
  const name = path === '-' ? 'stdin' : path;
  const stream = path === '-' ? stdin : createReadStream(path, { encoding: 'utf8' });
  const lines = jsonLines(stream as AsyncIterable<string | Buffer>);
  let lineNo = 0;
  let mode: 'unknown' | 'lines' | 'document' = 'unknown';
  const buffered: { lineNo: number; line: string }[] = [];
  try {
    for await (const line of lines) {
      lineNo++;
      if (mode === 'document') {
        buffered.push({ lineNo, line });
        continue;
      }
      if (line.trim() === '') continue;
      if (mode === 'unknown') {
        mode = isJson(line) ? 'lines' : 'document';
        if (mode === 'document') {
          buffered.push({ lineNo, line });
          continue;
        }
      }
      yield* decode(line, `${name}:${lineNo}`);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === undefined) throw err;
    throw fileError(err, 'events', path);
  }
  if (mode !== 'document') return;
  const whole = decodeAll(buffered.map((b) => b.line).join('\n'));
  if (!(whole instanceof AuditParseError)) {
    for (const event of whole) yield { ok: true, event };
  } else if (whole.code !== 'MALFORMED_JSON' || buffered.length === 1) {
    yield { ok: false, where: name, message: whole.message };
  } else {
    for (const { lineNo: n, line } of buffered) {
      if (line.trim() !== '') yield* decode(line, `${name}:${n}`);
    }
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function* decode(text: string, where: string): Generator<EventRecord> {
  const events = decodeAll(text);
  if (events instanceof AuditParseError) {
    yield { ok: false, where, message: events.message };
    return;
  }
  for (const event of events) yield { ok: true, event };
}

function decodeAll(text: string): AuditEvent[] | AuditParseError {
  try {
    return parseAuditPayload(text, DEFAULT_PARSE_LIMITS, { allowBareEvent: true }).events;
  } catch (err) {
    if (err instanceof AuditParseError) return err;
    throw err;
  }
}
