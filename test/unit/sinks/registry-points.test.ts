// Sinks whose one output writes line protocol store points (ADR 0027): the registry over a durable
// log in a temporary directory, with the real line-protocol encoder and file output. The log holds
// the points in place of the events' JSON; what the output writes is what encoding at delivery
// would have written; points survive a restart; an event without a point (its line would hold a
// line break, or it cannot be encoded) is stored as an event; a sink with two outputs stores
// events. Starts no process.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type QueuedEvent, StoredPoint } from '../../../src/audit/stored-point.ts';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { DEFAULT_BACKOFF } from '../../../src/outputs/delivery.ts';
import { LineProtocolFileOutput } from '../../../src/outputs/file/file-output.ts';
import {
  LineProtocolEncoder,
  type PointSchema,
} from '../../../src/outputs/influxdb/line-protocol.ts';
import { type Output, OutputError } from '../../../src/outputs/types.ts';
import { DeadLetterStore, readDeadLetters } from '../../../src/sinks/dead-letter.ts';
import { SinkRegistry } from '../../../src/sinks/registry.ts';
import { sinkFromResource } from '../../../src/sinks/spec.ts';
import type { Sink } from '../../../src/sinks/types.ts';
import { openLogQueue } from '../../../src/spool/log/index.ts';
import { recordedEvents } from '../../support/recorded.ts';
import { pipelineResource } from '../../support/resources.ts';
import { eventually } from '../../support/wait.ts';

const EVENTS: AuditEvent[] = recordedEvents();
const SETTINGS = { clusterWideNamespaces: ['kube-audit'], requireDestination: false };
const SCHEMA: PointSchema = {
  measurement: 'kubernetes_audit',
  tags: ['verb', 'resource', 'namespace', 'user'],
  staticTags: {},
  sink: 'kube-audit/trail',
};

function trail(): Sink {
  return sinkFromResource(
    pipelineResource({ policy: { rules: [{ level: 'RequestResponse' }] } }, 'kube-audit', 'trail'),
    SETTINGS,
  );
}

function batch(i: number): AuditEvent[] {
  return EVENTS.map((e) => ({ ...e, auditID: `${e.auditID}-${i}` }));
}

/** An output with the real encoder that records the lines it writes, and can be made to fail. */
class LineOutput implements Output {
  readonly kind = 'influxdb' as const;
  readonly target = 'memory';
  readonly lines: string[] = [];
  readonly got: QueuedEvent[] = [];
  readonly #encoder = new LineProtocolEncoder(SCHEMA);
  failing: OutputError | undefined;
  pointOf(event: AuditEvent): StoredPoint | undefined {
    return this.#encoder.point(event);
  }
  write(events: readonly QueuedEvent[]): Promise<void> {
    if (this.failing !== undefined) return Promise.reject(this.failing);
    const lines = events.map((e) => this.#encoder.lineOf(e));
    this.got.push(...events);
    this.lines.push(...lines);
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** An output that sends events (as a webhook does), recording them. */
class EventOutput implements Output {
  readonly kind = 'webhook' as const;
  readonly target = 'memory';
  readonly got: QueuedEvent[] = [];
  write(events: readonly QueuedEvent[]): Promise<void> {
    this.got.push(...events);
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const registries: SinkRegistry[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(registries.splice(0).map((r) => r.close()));
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'kao-registry-points-'));
  dirs.push(dir);
  return dir;
}

function registryWith(logDir: string, outputs: () => Output[], deadLetterPath?: string) {
  const registry = new SinkRegistry({
    routing: { allowSecretPayloads: false },
    factory: {
      openQueue: (sink) => openLogQueue({ logDir, key: sink.key, maxBytes: 64 * 1024 * 1024 }),
      createOutputs: () => Promise.resolve(outputs()),
      openDeadLetters: (sink) =>
        new DeadLetterStore({
          ...(deadLetterPath === undefined ? {} : { path: deadLetterPath }),
          sink: sink.label,
          maxBytes: 1024 * 1024,
        }),
    },
    idleWaitMs: 5,
    backoff: { ...DEFAULT_BACKOFF, initialMs: 5, maxMs: 5, permanentMs: 5 },
  });
  registries.push(registry);
  return registry;
}

/** Every line of the log's segments: the records' header lines and their event lines. */
async function logLines(logDir: string): Promise<string[]> {
  const lines: string[] = [];
  for (const name of (await readdir(logDir)).filter((n) => n.endsWith('.wal'))) {
    lines.push(...(await readFile(join(logDir, name), 'latin1')).split('\n'));
  }
  return lines;
}

describe('a sink whose one output writes line protocol stores points', () => {
  it('stores each event as the point its output writes, which survives a restart and is written as encoding at delivery would', async () => {
    const logDir = await tempDir();
    const down = new OutputError('UNREACHABLE', 'down', { retryable: true });
    let first: LineOutput | undefined;
    const registry = registryWith(logDir, () => {
      first = new LineOutput();
      first.failing = down;
      return [first];
    });
    await registry.apply([trail()]);
    for (let i = 0; i < 3; i++)
      expect((await registry.ingest(batch(i), { kind: 'all' })).ok).toBe(true);
    await registry.close();
    registries.splice(0);

    // The log holds the points, not the events' JSON.
    const lines = await logLines(logDir);
    const points = lines.filter((l) => l.startsWith('!kubernetes_audit,'));
    expect(points).toHaveLength(3 * EVENTS.length);
    expect(lines.some((l) => l.startsWith('{"level"') || l.includes('"auditID"'))).toBe(false);

    let output: LineOutput | undefined;
    const restarted = registryWith(logDir, () => {
      output = new LineOutput();
      return [output];
    });
    await restarted.apply([trail()]);
    await eventually(
      'delivered after the restart',
      () => output?.got.length === 3 * EVENTS.length,
      5_000,
      5,
    );
    expect(output?.got.every((e) => e instanceof StoredPoint)).toBe(true);
    // The same lines as one encoder encoding the events as they were ingested.
    const encoder = new LineProtocolEncoder(SCHEMA);
    expect(output?.lines).toEqual([0, 1, 2].flatMap((i) => batch(i).map((e) => encoder.encode(e))));
    expect((output?.got as StoredPoint[]).map((p) => p.auditID)).toEqual(
      [0, 1, 2].flatMap((i) => batch(i).map((e) => e.auditID)),
    );
    expect(first?.got).toEqual([]);
  });

  it('stores as an event what has no point: a line break in a field (the user agent), an event the encoder refuses (kept as a dead letter at delivery)', async () => {
    const dir = await tempDir();
    const logDir = join(dir, 'log');
    let output: LineOutput | undefined;
    const registry = registryWith(
      logDir,
      () => {
        output = new LineOutput();
        return [output];
      },
      join(dir, 'dead-letters.jsonl'),
    );
    await registry.apply([trail()]);
    const [a, b, c] = EVENTS as [AuditEvent, AuditEvent, AuditEvent];
    const broken: AuditEvent = {
      ...b,
      auditID: 'broken-line',
      userAgent: 'first line\nsecond line',
    };
    const outOfRange: AuditEvent = {
      ...c,
      auditID: 'out-of-range',
      stageTimestamp: '1500-01-01T00:00:00.000000Z',
    };
    expect((await registry.ingest([a, broken, outOfRange], { kind: 'all' })).ok).toBe(true);
    await eventually('delivered', () => (output?.got.length ?? 0) === 2, 5_000, 5);
    const [point, event] = output?.got as [QueuedEvent, QueuedEvent];
    expect(point).toBeInstanceOf(StoredPoint);
    expect(event).not.toBeInstanceOf(StoredPoint);
    expect((event as AuditEvent).userAgent).toBe('first line\nsecond line');
    expect(output?.lines[1]).toContain('first line\nsecond line');

    const lines = await logLines(logDir);
    expect(lines.filter((l) => l.startsWith('!'))).toHaveLength(1);
    expect(lines.filter((l) => l.startsWith('{"') && l.includes('"auditID"'))).toHaveLength(2);

    await eventually(
      'the unencodable event kept',
      async () => {
        const letters = [];
        for await (const line of readDeadLetters(join(dir, 'dead-letters.jsonl')))
          letters.push(line);
        return letters.length === 1;
      },
      5_000,
      5,
    );
    for await (const line of readDeadLetters(join(dir, 'dead-letters.jsonl'))) {
      expect(line).toMatchObject({
        ok: true,
        record: { reason: 'unencodable', event: { auditID: 'out-of-range' } },
      });
    }
  });

  it('stores events for a sink with two outputs, and for one whose output sends events', async () => {
    for (const make of [() => [new LineOutput(), new EventOutput()], () => [new EventOutput()]]) {
      const logDir = await tempDir();
      let outputs: Output[] = [];
      const registry = registryWith(logDir, () => (outputs = make()));
      await registry.apply([trail()]);
      expect((await registry.ingest(batch(0), { kind: 'all' })).ok).toBe(true);
      const events = outputs.at(-1) as EventOutput;
      await eventually('delivered', () => events.got.length === EVENTS.length, 5_000, 5);
      expect(events.got.some((e) => e instanceof StoredPoint)).toBe(false);
      expect((await logLines(logDir)).some((l) => l.startsWith('!'))).toBe(false);
    }
  });

  it('writes with the line-protocol file output exactly the lines encoding at delivery writes', async () => {
    const dir = await tempDir();
    const path = join(dir, 'trail.lp');
    const registry = registryWith(join(dir, 'log'), () => [
      new LineProtocolFileOutput(path, SCHEMA),
    ]);
    await registry.apply([trail()]);
    for (let i = 0; i < 2; i++)
      expect((await registry.ingest(batch(i), { kind: 'all' })).ok).toBe(true);
    const encoder = new LineProtocolEncoder(SCHEMA);
    const expected = [0, 1].flatMap((i) => batch(i).map((e) => `${encoder.encode(e)}\n`)).join('');
    await eventually(
      'written',
      async () => (await readFile(path, 'utf8').catch(() => '')).length >= expected.length,
      5_000,
      5,
    );
    expect(await readFile(path, 'utf8')).toBe(expected);
  });
});
