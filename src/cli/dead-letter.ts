/**
 * `dead-letter list|export|purge`: inspect the events a sink's destination refused one by one (or
 * its output could not encode), export them for replay once the cause is fixed, then delete them.
 * Reads the files `sinks/dead-letter.ts` writes; never the operator's settings or Secrets.
 */
import type { Writable } from 'node:stream';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { AUDIT_V1 } from '../audit/types.ts';
import { DEFAULT_PARSE_LIMITS } from '../audit/parse.ts';
import { SETTINGS_DEFAULTS } from '../config/settings.ts';
import { RECEIVER_DEFAULTS } from '../receiver/options.ts';
import {
  type DeadLetterFile,
  type DeadLetterRecord,
  deadLetterAuditId,
  deadLetterFiles,
  deadLetterPath,
  purgeDeadLetters,
  readDeadLetters,
} from '../sinks/dead-letter.ts';
import { type SinkRef, sinkKey } from '../sinks/types.ts';
import { CliError } from './errors.ts';
import type { CommandIO } from './policy.ts';

/** The flags that choose a data directory and, maybe, one sink. */
interface SelectFlags {
  dataDir?: string;
  sink?: string;
  pipeline?: string;
}

/** Adds the `dead-letter` command group. */
export function registerDeadLetterCommands(program: Command, io: CommandIO): void {
  const group = program
    .command('dead-letter')
    .description("inspect, export for replay and purge sinks' dead letters (refused events)");

  withSelection(group.command('list'))
    .description('list dead letters: every sink’s, or one sink’s')
    .addOption(
      new Option('-o, --output <format>', 'table, or json: whole records as JSON lines')
        .choices(['table', 'json'])
        .default('table'),
    )
    .action(async (flags: SelectFlags & { output: 'table' | 'json' }) => {
      await listCommand(flags, io);
    });

  withSelection(group.command('export'))
    .description(
      "a sink's dead-lettered events: an EventList to POST to the sink's endpoint, JSON lines for replay --events, or the line protocol of the points an InfluxDB sink stored (for influx write)",
    )
    .addOption(
      new Option(
        '--format <format>',
        'eventlist (audit.k8s.io/v1 EventList), jsonl, or line-protocol (the records that hold points)',
      )
        .choices(['eventlist', 'jsonl', 'line-protocol'])
        .default('eventlist'),
    )
    .option('--skip <n>', 'leave out the first n records', count, 0)
    .option('--limit <n>', 'export at most n records', count)
    .action(async (flags: SelectFlags & ExportFlags) => {
      await exportCommand(flags, io);
    });

  withSelection(group.command('purge'))
    .description("delete a sink's dead-letter file, once its events were replayed")
    .action(async (flags: SelectFlags) => {
      await purgeCommand(flags, io);
    });
}

function withSelection(command: Command): Command {
  return command
    .addOption(
      new Option(
        '--data-dir <dir>',
        "the operator's data directory (default ./kube-audit-data; the image: /var/lib/kube-audit)",
      ).env('KUBE_AUDIT_DATA_DIR'),
    )
    .option('--sink <name>', 'the AuditSink')
    .option('--pipeline <namespace/name>', 'the AuditPipeline');
}

function count(value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('not a whole number');
  return Number(value);
}

/** The sink `--sink` or `--pipeline` names, if any; both at once is a usage error. */
function selectedSink(flags: SelectFlags): SinkRef | undefined {
  if (flags.sink !== undefined && flags.pipeline !== undefined) {
    throw new CliError('--sink and --pipeline name one sink each: give one of them', 2);
  }
  if (flags.sink !== undefined) {
    if (!isSubdomain(flags.sink)) {
      throw new CliError(
        `--sink ${JSON.stringify(flags.sink)}: an AuditSink name is a lowercase RFC 1123 subdomain`,
        2,
      );
    }
    return { kind: 'AuditSink', namespace: '', name: flags.sink };
  }
  if (flags.pipeline !== undefined) {
    const parts = flags.pipeline.split('/');
    const [namespace, name] = parts;
    if (
      parts.length !== 2 ||
      namespace === undefined ||
      name === undefined ||
      !DNS1123_LABEL.test(namespace) ||
      !isSubdomain(name)
    ) {
      throw new CliError(
        `--pipeline ${JSON.stringify(flags.pipeline)}: expected <namespace>/<name>, a lowercase RFC 1123 label and subdomain`,
        2,
      );
    }
    return { kind: 'AuditPipeline', namespace, name };
  }
  return undefined;
}

function requiredSink(flags: SelectFlags): SinkRef {
  const ref = selectedSink(flags);
  if (ref === undefined)
    throw new CliError('name the sink: --sink <name> or --pipeline <ns>/<name>', 2);
  return ref;
}

// apimachinery's IsDNS1123Label and IsDNS1123Subdomain: namespace and object names.
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

function isSubdomain(name: string): boolean {
  return name.length <= 253 && DNS1123_SUBDOMAIN.test(name);
}

function dataDir(flags: SelectFlags): string {
  return flags.dataDir ?? SETTINGS_DEFAULTS.dataDir;
}

/** The records of one file in order; lines that are not records are reported and skipped. */
async function* records(
  file: DeadLetterFile,
  io: CommandIO,
): AsyncGenerator<DeadLetterRecord, void, undefined> {
  try {
    for await (const line of readDeadLetters(file.path)) {
      if (line.ok) yield line.record;
      else io.stderr.write(`warning: ${file.path}:${line.line}: ${line.error}; skipped\n`);
    }
  } catch (err) {
    throw readError(err, file.path);
  }
}

function readError(err: unknown, path: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === undefined) return err;
  const reason =
    code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : code;
  return new CliError(`cannot read dead letters ${path}: ${reason}`, 1, { cause: err });
}

async function selectedFiles(flags: SelectFlags): Promise<DeadLetterFile[]> {
  const dir = dataDir(flags);
  const ref = selectedSink(flags);
  if (ref !== undefined) return [{ ref, path: deadLetterPath(dir, ref) }];
  try {
    return await deadLetterFiles(dir);
  } catch (err) {
    throw readError(err, dir);
  }
}

/** Writes `text`, waiting while the stream's buffer is full (a large file piped to jq). */
async function write(stream: Writable, text: string): Promise<void> {
  if (!stream.write(text)) await new Promise((resolve) => stream.once('drain', resolve));
}

// Longest message a table row shows; the whole message is in `-o json`.
const MESSAGE_WIDTH = 60;

async function listCommand(
  flags: SelectFlags & { output: 'table' | 'json' },
  io: CommandIO,
): Promise<void> {
  const rows: string[][] = [];
  let listed = 0;
  for (const file of await selectedFiles(flags)) {
    for await (const record of records(file, io)) {
      listed++;
      if (flags.output === 'json') {
        await write(io.stdout, `${JSON.stringify(record)}\n`);
        continue;
      }
      rows.push([
        cell(record.time),
        sinkKey(file.ref),
        cell(record.output),
        cell(record.reason),
        cell(deadLetterAuditId(record)),
        cut(cell(record.message), MESSAGE_WIDTH),
      ]);
    }
  }
  if (listed === 0) {
    // Standard output stays valid JSON lines (none) for jq.
    (flags.output === 'json' ? io.stderr : io.stdout).write('no dead letters\n');
    return;
  }
  if (flags.output === 'table') {
    await write(
      io.stdout,
      table(['TIME', 'SINK', 'OUTPUT', 'REASON', 'AUDIT-ID', 'MESSAGE'], rows),
    );
  }
}

/** A record's field as one line of text, whatever a damaged record holds there. */
function cell(value: unknown): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? '');
  // Control characters (a newline, a terminal escape) would break or hijack the table.
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
}

function cut(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return `${[header, ...rows].map(line).join('\n')}\n`;
}

interface ExportFlags {
  format: 'eventlist' | 'jsonl' | 'line-protocol';
  skip: number;
  limit?: number;
}

async function exportCommand(flags: SelectFlags & ExportFlags, io: CommandIO): Promise<void> {
  const ref = requiredSink(flags);
  const file: DeadLetterFile = { ref, path: deadLetterPath(dataDir(flags), ref) };
  const points = flags.format === 'line-protocol';
  // Records of the other kind (events for line protocol, points otherwise), left out and named.
  let other = 0;
  const chosen = async function* (quiet: boolean) {
    let index = 0;
    let taken = 0;
    other = 0;
    const silent: CommandIO = { ...io, stderr: quiet ? nowhere : io.stderr };
    for await (const record of records(file, silent)) {
      const line = points ? record.point : record.event && eventLine(record.event);
      if (line === undefined) {
        other++;
        continue;
      }
      if (index++ < flags.skip) continue;
      if (flags.limit !== undefined && taken >= flags.limit) return;
      taken++;
      yield line;
    }
  };
  if (flags.format !== 'eventlist') {
    let n = 0;
    for await (const line of chosen(false)) {
      await write(io.stdout, `${line}\n`);
      n++;
    }
    if (n === 0) io.stderr.write(`no dead letters for ${sinkKey(ref)}\n`);
    leftOut(other, points, ref, io);
    return;
  }
  // One request must fit the receiver's limits: check them before printing anything.
  let events = 0;
  let bytes = EVENT_LIST_HEAD.length + EVENT_LIST_TAIL.length;
  for await (const event of chosen(true)) {
    events++;
    bytes += Buffer.byteLength(event) + 1;
  }
  if (events > DEFAULT_PARSE_LIMITS.maxEvents || bytes > RECEIVER_DEFAULTS.bodyLimitBytes) {
    throw new CliError(
      `${events} dead letters of ${sinkKey(ref)} (${bytes} bytes) are more than the receiver takes in one request ` +
        `(${DEFAULT_PARSE_LIMITS.maxEvents} events, ${RECEIVER_DEFAULTS.bodyLimitBytes} bytes): ` +
        'export them in parts with --skip and --limit, or as --format jsonl for replay --events',
    );
  }
  await write(io.stdout, EVENT_LIST_HEAD);
  // No more than were counted: the running operator may append while this reads.
  let written = 0;
  for await (const event of chosen(false)) {
    if (written === events) break;
    await write(io.stdout, written === 0 ? event : `,${event}`);
    written++;
  }
  await write(io.stdout, EVENT_LIST_TAIL);
  if (events === 0) io.stderr.write(`no dead letters for ${sinkKey(ref)}\n`);
  leftOut(other, points, ref, io);
}

/** Names the records an export left out because they are of the other kind. */
function leftOut(count: number, points: boolean, ref: SinkRef, io: CommandIO): void {
  if (count === 0) return;
  const s = count === 1 ? '' : 's';
  io.stderr.write(
    points
      ? `left out ${count} dead letter${s} of ${sinkKey(ref)} that hold events: export them with --format eventlist or jsonl\n`
      : `left out ${count} dead letter${s} of ${sinkKey(ref)} that hold InfluxDB points: export them with --format line-protocol (for influx write)\n`,
  );
}

/**
 * An event as an `audit.k8s.io/v1` Event, as the apiserver's log writes it: stored events are in
 * v1 form without their type (`audit/parse.ts` drops it on receipt).
 */
function eventLine(event: object): string {
  const typed: Record<string, unknown> = { kind: 'Event', apiVersion: AUDIT_V1 };
  for (const [key, value] of Object.entries(event)) {
    if (key !== 'kind' && key !== 'apiVersion') typed[key] = value;
  }
  return JSON.stringify(typed);
}

const EVENT_LIST_HEAD = `{"kind":"EventList","apiVersion":"${AUDIT_V1}","metadata":{},"items":[`;
const EVENT_LIST_TAIL = ']}\n';

/** A stream for warnings already reported once. */
const nowhere = { write: () => true } as unknown as Writable;

async function purgeCommand(flags: SelectFlags, io: CommandIO): Promise<void> {
  const ref = requiredSink(flags);
  const file: DeadLetterFile = { ref, path: deadLetterPath(dataDir(flags), ref) };
  let held = 0;
  // Whether the file has any line, a record or not: an empty file is no dead letters either.
  let present = false;
  try {
    for await (const line of readDeadLetters(file.path)) {
      present = true;
      if (line.ok) held++;
    }
  } catch (err) {
    throw readError(err, file.path);
  }
  try {
    await purgeDeadLetters(file.path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new CliError(`cannot delete ${file.path}: ${code}`, 1, { cause: err });
  }
  if (!present) {
    io.stdout.write(`no dead letters for ${sinkKey(ref)}\n`);
    return;
  }
  io.stdout.write(
    `purged ${held} dead letter${held === 1 ? '' : 's'} of ${sinkKey(ref)} (${file.path})\n`,
  );
}
