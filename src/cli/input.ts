/**
 * Reading command inputs: whole files, and audit events from a file or standard input as either
 * JSON lines (an apiserver `--audit-log-path` file) or one JSON EventList/Event document.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { AuditParseError, DEFAULT_PARSE_LIMITS, parseAuditPayload } from '../audit/parse.ts';
import type { AuditEvent } from '../audit/types.ts';
import { CliError } from './errors.ts';

/** Reads a whole text file, turning file-system errors into one clear message. */
export async function readTextFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EISDIR'
          ? 'is a directory'
          : (err as Error).message;
    throw new CliError(`cannot read ${what} ${path}: ${reason}`, 1, { cause: err });
  }
}

/** An event read from input, or the reason one record could not be read. */
export type EventRecord =
  | { readonly ok: true; readonly event: AuditEvent }
  | { readonly ok: false; readonly where: string; readonly message: string };

/**
 * Reads audit events from `path` (`-` for standard input), in input order.
 *
 * The format is detected from the first non-empty line: if it is a complete JSON value the input
 * is JSON lines, one Event (or EventList) per line, streamed; otherwise the whole input is one JSON
 * document. Bare events (no `apiVersion` and `kind`) are read as `audit.k8s.io/v1` Events. Records that are not valid events are yielded as errors, and reading goes on.
 */
export async function* readEvents(path: string, stdin: Readable): AsyncGenerator<EventRecord> {
  const name = path === '-' ? 'stdin' : path;
  const stream = path === '-' ? stdin : createReadStream(path, { encoding: 'utf8' });
  const opened = new Promise<void>((resolve, reject) => {
    if (path === '-') resolve();
    stream.once('open', () => resolve());
    stream.once('error', reject);
  });
  try {
    await opened;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(
      `cannot read events ${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
      1,
      {
        cause: err,
      },
    );
  }

  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  let lineNo = 0;
  let mode: 'unknown' | 'lines' | 'document' = 'unknown';
  const document: string[] = [];
  for await (const line of lines) {
    lineNo++;
    if (mode === 'document') {
      document.push(line);
      continue;
    }
    if (line.trim() === '') continue;
    if (mode === 'unknown') {
      try {
        JSON.parse(line);
        mode = 'lines';
      } catch {
        // Not a whole value on one line: the input is one multi-line JSON document.
        mode = 'document';
        document.push(line);
        continue;
      }
    }
    yield* decode(line, `${name}:${lineNo}`);
  }
  if (mode === 'document') yield* decode(document.join('\n'), name);
}

function* decode(text: string, where: string): Generator<EventRecord> {
  let events: AuditEvent[];
  try {
    events = parseAuditPayload(text, DEFAULT_PARSE_LIMITS, { allowBareEvent: true }).events;
  } catch (err) {
    if (!(err instanceof AuditParseError)) throw err;
    yield { ok: false, where, message: err.message };
    return;
  }
  for (const event of events) yield { ok: true, event };
}
