// `dead-letter list|export|purge` on real files written by DeadLetterStore in a temporary data
// directory: mostly in-process through the program's `run`, once as the built binary
// (`node dist/main.js`, built first with `npm run build` if missing). Starts no other process.
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseAuditLogLine, parseAuditPayload } from '../../src/audit/parse.ts';
import { StoredPoint } from '../../src/audit/stored-point.ts';
import type { AuditEvent } from '../../src/audit/types.ts';
import { run } from '../../src/cli/program.ts';
import {
  type DeadLetter,
  DeadLetterStore,
  deadLetterPath,
  type DeadLetterRecord,
} from '../../src/sinks/dead-letter.ts';
import type { SinkRef } from '../../src/sinks/types.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const MAIN = join(ROOT, 'dist', 'main.js');

const MAIN_SINK: SinkRef = { kind: 'AuditSink', namespace: '', name: 'main' };
const ORDERS: SinkRef = { kind: 'AuditPipeline', namespace: 'shop', name: 'orders' };
const NOW = new Date('2026-03-01T10:00:00.000Z');

/** A valid v1 event as the receiver stores it: parsed, so without its kind and apiVersion. */
function event(auditID: string, extra: Record<string, unknown> = {}): AuditEvent {
  return parseAuditLogLine(
    JSON.stringify({
      kind: 'Event',
      apiVersion: 'audit.k8s.io/v1',
      level: 'RequestResponse',
      auditID,
      stage: 'ResponseComplete',
      requestURI: '/api/v1/namespaces/shop/configmaps',
      verb: 'create',
      user: { username: 'alice', groups: ['system:authenticated'] },
      objectRef: { resource: 'configmaps', namespace: 'shop', name: 'c', apiVersion: 'v1' },
      responseStatus: { metadata: {}, code: 201 },
      requestObject: { kind: 'ConfigMap', data: { a: 'b' } },
      requestReceivedTimestamp: '2026-03-01T09:59:59.000000Z',
      stageTimestamp: '2026-03-01T09:59:59.100000Z',
      ...extra,
    }),
  );
}

function letter(auditID: string, message = 'partial write: field type conflict'): DeadLetter {
  return {
    output: 'influxdb',
    reason: 'refused',
    code: 'REJECTED',
    message,
    event: event(auditID),
  };
}

/** A dead letter of an event its sink stored as an InfluxDB point (ADR 0027). */
function pointLetter(auditID: string): DeadLetter {
  return {
    ...letter(auditID),
    event: new StoredPoint(
      `kubernetes_audit,sink=main,verb=create audit_id="${auditID}",user="alice" 1772359199100000000`,
    ),
  };
}

let dir = '';

async function store(ref: SinkRef, letters: readonly DeadLetter[]): Promise<string> {
  const path = deadLetterPath(dir, ref);
  const label = ref.kind === 'AuditSink' ? ref.name : `${ref.namespace}/${ref.name}`;
  const kept = await new DeadLetterStore({
    path,
    sink: label,
    maxBytes: 64 * 1024 ** 2,
    now: () => NOW,
  }).add(letters);
  expect(kept).toBe(letters.length);
  return path;
}

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI in-process with `args`. */
async function cli(args: readonly string[]): Promise<Result> {
  let stdout = '';
  let stderr = '';
  const out = new PassThrough().on('data', (c: Buffer) => (stdout += c.toString('utf8')));
  const err = new PassThrough().on('data', (c: Buffer) => (stderr += c.toString('utf8')));
  const code = await run(args, { stdin: Readable.from([]), stdout: out, stderr: err });
  await new Promise((resolve) => setImmediate(resolve));
  return { code, stdout, stderr };
}

const lines = (text: string) => text.split('\n').filter((l) => l !== '');

beforeAll(async () => {
  if (!existsSync(MAIN)) await promisify(execFile)('npm', ['run', 'build'], { cwd: ROOT });
}, 120_000);

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dead-letter-cli-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('dead-letter list', () => {
  it('lists every sink’s dead letters as a table, AuditSinks first, messages cut to one short line', async () => {
    await store(MAIN_SINK, [letter('a-1', `field type conflict\n${'x'.repeat(200)}`)]);
    await store(ORDERS, [letter('o-1'), letter('o-2')]);
    const r = await cli(['dead-letter', 'list', '--data-dir', dir]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const [header, ...rows] = lines(r.stdout);
    expect(header?.split(/\s+/)).toEqual([
      'TIME',
      'SINK',
      'OUTPUT',
      'REASON',
      'AUDIT-ID',
      'MESSAGE',
    ]);
    expect(rows.map((row) => row.split(/\s+/).slice(0, 5))).toEqual([
      [NOW.toISOString(), 'AuditSink/main', 'influxdb', 'refused', 'a-1'],
      [NOW.toISOString(), 'AuditPipeline/shop/orders', 'influxdb', 'refused', 'o-1'],
      [NOW.toISOString(), 'AuditPipeline/shop/orders', 'influxdb', 'refused', 'o-2'],
    ]);
    expect(rows[0]).toContain('field type conflict x');
    expect(rows[0]).toMatch(/x…$/);
    expect(rows[0]?.length).toBeLessThan(200);
    // Event bodies appear only in -o json and export.
    expect(r.stdout).not.toContain('alice');
  });

  it('prints whole records as JSON lines with -o json, for one pipeline', async () => {
    await store(MAIN_SINK, [letter('a-1')]);
    await store(ORDERS, [letter('o-1'), letter('o-2')]);
    const r = await cli([
      'dead-letter',
      'list',
      '--data-dir',
      dir,
      '--pipeline',
      'shop/orders',
      '-o',
      'json',
    ]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const records = lines(r.stdout).map((l) => JSON.parse(l) as DeadLetterRecord);
    expect(records).toEqual([
      {
        version: 1,
        time: NOW.toISOString(),
        sink: 'shop/orders',
        output: 'influxdb',
        reason: 'refused',
        code: 'REJECTED',
        message: 'partial write: field type conflict',
        event: event('o-1'),
      },
      expect.objectContaining({ event: event('o-2') }),
    ]);
  });

  it('reports a torn or garbage line with its number on stderr and lists the rest', async () => {
    const path = await store(ORDERS, [letter('o-1')]);
    await appendFile(path, 'garbage\n{"version":1,"time":"2026-03-01T10:00:00Z","sink":"shop/or');
    // The store cuts the torn tail when it next opens the file; the garbage line stays.
    await store(ORDERS, [letter('o-2')]);
    await appendFile(path, '{"version":1,"time":"2026-03-01T10:00:00Z"}\n');
    const r = await cli(['dead-letter', 'list', '--data-dir', dir, '--pipeline', 'shop/orders']);
    expect(r.code).toBe(0);
    expect(lines(r.stderr)).toEqual([
      expect.stringMatching(new RegExp(`^warning: ${path}:2: not JSON: .*; skipped$`)),
      `warning: ${path}:4: not a version 1 dead-letter record; skipped`,
    ]);
    expect(
      lines(r.stdout)
        .slice(1)
        .map((row) => row.split(/\s+/)[4]),
    ).toEqual(['o-1', 'o-2']);
  });

  it('says there are none for a missing store, a missing data directory, an empty file', async () => {
    for (const args of [
      ['--data-dir', dir],
      ['--data-dir', join(dir, 'nothing-here')],
      ['--data-dir', dir, '--sink', 'main'],
    ]) {
      const r = await cli(['dead-letter', 'list', ...args]);
      expect(r).toEqual({ code: 0, stdout: 'no dead letters\n', stderr: '' });
    }
    await mkdir(join(dir, 'dead-letter', 'sinks'), { recursive: true });
    await appendFile(deadLetterPath(dir, MAIN_SINK), '');
    const json = await cli(['dead-letter', 'list', '--data-dir', dir, '-o', 'json']);
    // Standard output stays valid (empty) JSON lines.
    expect(json).toEqual({ code: 0, stdout: '', stderr: 'no dead letters\n' });
  });

  it('reads the data directory from KUBE_AUDIT_DATA_DIR', async () => {
    await store(MAIN_SINK, [letter('a-1')]);
    process.env.KUBE_AUDIT_DATA_DIR = dir;
    try {
      const r = await cli(['dead-letter', 'list', '-o', 'json']);
      expect(
        lines(r.stdout).map((l) => (JSON.parse(l) as DeadLetterRecord).event?.auditID),
      ).toEqual(['a-1']);
    } finally {
      delete process.env.KUBE_AUDIT_DATA_DIR;
    }
  });
});

describe('dead-letter export', () => {
  it('prints an EventList the receiver’s parser accepts, holding exactly the dead-lettered events', async () => {
    const letters = [letter('o-1'), letter('o-2'), letter('o-3')];
    await store(ORDERS, letters);
    const r = await cli(['dead-letter', 'export', '--data-dir', dir, '--pipeline', 'shop/orders']);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    // As the receiver parses a request body: no bare events.
    const payload = parseAuditPayload(r.stdout);
    expect(payload).toMatchObject({ apiVersion: 'audit.k8s.io/v1', kind: 'EventList' });
    expect(payload.events).toEqual(letters.map((l) => l.event));
  });

  it('exports in parts with --skip and --limit', async () => {
    await store(MAIN_SINK, [letter('a-1'), letter('a-2'), letter('a-3')]);
    const r = await cli([
      'dead-letter',
      'export',
      '--data-dir',
      dir,
      '--sink',
      'main',
      '--skip',
      '1',
      '--limit',
      '1',
    ]);
    expect(parseAuditPayload(r.stdout).events.map((e) => e.auditID)).toEqual(['a-2']);
  });

  it('refuses an EventList larger than one request may be, and exports it in parts', async () => {
    // 10,000 events: the most the receiver parses from one request (DEFAULT_PARSE_LIMITS).
    const one = letter('x');
    await store(
      MAIN_SINK,
      Array.from({ length: 10_001 }, (_, i) => ({
        ...one,
        event: { ...(one.event as AuditEvent), auditID: `x-${i}` },
      })),
    );
    const whole = await cli(['dead-letter', 'export', '--data-dir', dir, '--sink', 'main']);
    expect(whole.code).toBe(1);
    expect(whole.stdout).toBe('');
    expect(whole.stderr).toContain('10001 dead letters of AuditSink/main');
    expect(whole.stderr).toContain('--skip and --limit');
    const first = await cli([
      'dead-letter',
      'export',
      '--data-dir',
      dir,
      '--sink',
      'main',
      '--limit',
      '10000',
    ]);
    expect(parseAuditPayload(first.stdout).events).toHaveLength(10_000);
    const rest = await cli([
      'dead-letter',
      'export',
      '--data-dir',
      dir,
      '--sink',
      'main',
      '--skip',
      '10000',
    ]);
    expect(parseAuditPayload(rest.stdout).events.map((e) => e.auditID)).toEqual(['x-10000']);
  });

  it('prints JSON lines that are audit log lines, as replay --events reads them', async () => {
    const letters = [letter('a-1'), letter('a-2')];
    await store(MAIN_SINK, letters);
    const r = await cli([
      'dead-letter',
      'export',
      '--data-dir',
      dir,
      '--sink',
      'main',
      '--format',
      'jsonl',
    ]);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(lines(r.stdout).map((l) => parseAuditLogLine(l))).toEqual(letters.map((l) => l.event));
  });

  it('exports the points an InfluxDB sink stored as line protocol, and names the records each format leaves out', async () => {
    await store(MAIN_SINK, [letter('a-1'), pointLetter('p-1'), pointLetter('p-2'), letter('a-2')]);
    const listed = await cli(['dead-letter', 'list', '--data-dir', dir]);
    expect(
      lines(listed.stdout)
        .slice(1)
        .map((row) => row.split(/\s+/)[4]),
    ).toEqual(['a-1', 'p-1', 'p-2', 'a-2']);
    const lp = await cli([
      'dead-letter',
      'export',
      '--data-dir',
      dir,
      '--sink',
      'main',
      '--format',
      'line-protocol',
      '--skip',
      '1',
    ]);
    expect(lp.code).toBe(0);
    expect(lp.stdout).toBe(`${(pointLetter('p-2').event as StoredPoint).line}\n`);
    expect(lp.stderr).toBe(
      'left out 2 dead letters of AuditSink/main that hold events: export them with --format eventlist or jsonl\n',
    );
    const list = await cli(['dead-letter', 'export', '--data-dir', dir, '--sink', 'main']);
    expect(parseAuditPayload(list.stdout).events.map((e) => e.auditID)).toEqual(['a-1', 'a-2']);
    expect(list.stderr).toBe(
      'left out 2 dead letters of AuditSink/main that hold InfluxDB points: export them with --format line-protocol (for influx write)\n',
    );
    const json = await cli(['dead-letter', 'list', '--data-dir', dir, '-o', 'json']);
    expect(JSON.parse(lines(json.stdout)[1] ?? '')).toMatchObject({
      auditID: 'p-1',
      point: (pointLetter('p-1').event as StoredPoint).line,
    });
  });

  it('skips a garbage line with a warning and exports the rest', async () => {
    const path = await store(MAIN_SINK, [letter('a-1')]);
    await appendFile(path, 'not a record\n');
    await store(MAIN_SINK, [letter('a-2')]);
    const r = await cli(['dead-letter', 'export', '--data-dir', dir, '--sink', 'main']);
    expect(r.code).toBe(0);
    expect(lines(r.stderr)).toEqual([
      expect.stringMatching(new RegExp(`^warning: ${path}:2: not JSON`)),
    ]);
    expect(parseAuditPayload(r.stdout).events.map((e) => e.auditID)).toEqual(['a-1', 'a-2']);
  });

  it('prints an empty EventList when the sink has none', async () => {
    const r = await cli(['dead-letter', 'export', '--data-dir', dir, '--sink', 'main']);
    expect(r.code).toBe(0);
    expect(parseAuditPayload(r.stdout).events).toEqual([]);
    expect(r.stderr).toBe('no dead letters for AuditSink/main\n');
  });
});

describe('dead-letter purge', () => {
  it('deletes one sink’s file, says how many records it held, and leaves the others', async () => {
    const orders = await store(ORDERS, [letter('o-1'), letter('o-2')]);
    const main = await store(MAIN_SINK, [letter('a-1')]);
    const r = await cli(['dead-letter', 'purge', '--data-dir', dir, '--pipeline', 'shop/orders']);
    expect(r).toEqual({
      code: 0,
      stdout: `purged 2 dead letters of AuditPipeline/shop/orders (${orders})\n`,
      stderr: '',
    });
    expect(existsSync(orders)).toBe(false);
    expect(existsSync(main)).toBe(true);
    const again = await cli([
      'dead-letter',
      'purge',
      '--data-dir',
      dir,
      '--pipeline',
      'shop/orders',
    ]);
    expect(again).toEqual({
      code: 0,
      stdout: 'no dead letters for AuditPipeline/shop/orders\n',
      stderr: '',
    });
  });

  it('frees the cap of a full store that keeps running', async () => {
    const path = deadLetterPath(dir, MAIN_SINK);
    const one = `${JSON.stringify({ version: 1, time: NOW.toISOString(), sink: 'main', ...letter('a-1') })}\n`;
    const running = new DeadLetterStore({
      path,
      sink: 'main',
      maxBytes: Buffer.byteLength(one) + 10,
      now: () => NOW,
    });
    expect(await running.add([letter('a-1')])).toBe(1);
    expect(await running.add([letter('a-2')])).toBe(0);
    expect((await cli(['dead-letter', 'purge', '--data-dir', dir, '--sink', 'main'])).code).toBe(0);
    expect(await running.add([letter('a-3')])).toBe(1);
    const kept = lines(await readFile(path, 'utf8')).map(
      (l) => (JSON.parse(l) as DeadLetterRecord).event?.auditID,
    );
    expect(kept).toEqual(['a-3']);
  });
});

describe('dead-letter usage errors', () => {
  it.each([
    [['list', '--sink', 'main', '--pipeline', 'shop/orders'], '--sink and --pipeline'],
    [['list', '--pipeline', 'orders'], 'expected <namespace>/<name>'],
    [['list', '--pipeline', 'shop/orders/x'], 'expected <namespace>/<name>'],
    [['list', '--pipeline', 'shop/'], 'expected <namespace>/<name>'],
    [['list', '--sink', '../../etc/passwd'], 'lowercase RFC 1123 subdomain'],
    [['export'], 'name the sink'],
    [['purge'], 'name the sink'],
    [['list', '-o', 'yaml'], 'Allowed choices are table, json'],
    [['export', '--sink', 'main', '--format', 'csv'], 'Allowed choices are eventlist, jsonl'],
    [['export', '--sink', 'main', '--limit', '-1'], 'not a whole number'],
  ])('dead-letter %j exits 2 with a clear error', async (args, message) => {
    const r = await cli(['dead-letter', ...args, '--data-dir', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stdout).toBe('');
  });

  it('names the file it cannot read, without a stack trace', async () => {
    // A directory where the file should be: unreadable whoever runs the test (root reads 0000 files).
    await mkdir(deadLetterPath(dir, MAIN_SINK), { recursive: true });
    const r = await cli(['dead-letter', 'export', '--data-dir', dir, '--sink', 'main']);
    expect(r).toEqual({
      code: 1,
      stdout: '',
      stderr: `error: cannot read dead letters ${deadLetterPath(dir, MAIN_SINK)}: is a directory\n`,
    });
  });
});

describe('the built binary', () => {
  it('lists, exports and purges through node dist/main.js', async () => {
    await store(ORDERS, [letter('o-1')]);
    const bin = (args: readonly string[]) =>
      new Promise<Result>((resolve, reject) => {
        const child = spawn(process.execPath, [MAIN, 'dead-letter', ...args, '--data-dir', dir], {
          cwd: ROOT,
        });
        let stdout = '';
        let stderr = '';
        child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
        child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      });
    const list = await bin(['list']);
    expect(list).toMatchObject({ code: 0, stderr: '' });
    expect(list.stdout).toContain('AuditPipeline/shop/orders');
    const exported = await bin(['export', '--pipeline', 'shop/orders']);
    expect(parseAuditPayload(exported.stdout).events).toEqual([event('o-1')]);
    const purged = await bin(['purge', '--pipeline', 'shop/orders']);
    expect(purged.stdout).toMatch(/^purged 1 dead letter of AuditPipeline\/shop\/orders/);
    expect(await bin(['list'])).toEqual({ code: 0, stdout: 'no dead letters\n', stderr: '' });
  });
});
