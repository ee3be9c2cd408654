// The sink registry with every sink's queue a stream of one durable log in a temporary directory,
// with in-test outputs: one record per ingested batch whatever the number of sinks, overflow that
// stays with the sink over its budget, a deleted sink's share freed, and delivery after a
// restart. Starts no process.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../../src/audit/types.ts';
import { DEFAULT_BACKOFF } from '../../../src/outputs/delivery.ts';
import { type Output, OutputError } from '../../../src/outputs/types.ts';
import { SinkRegistry } from '../../../src/sinks/registry.ts';
import { sinkFromResource } from '../../../src/sinks/spec.ts';
import type { Sink } from '../../../src/sinks/types.ts';
import { DurableLog, type LogQueueOptions, openLogQueue } from '../../../src/spool/log/index.ts';
import { recordedEvents } from '../../support/recorded.ts';
import { pipelineResource } from '../../support/resources.ts';
import { eventually } from '../../support/wait.ts';

const EVENTS: AuditEvent[] = recordedEvents();

const SETTINGS = { clusterWideNamespaces: ['kube-audit'], requireDestination: false };

function pipeline(namespace: string, name: string, level = 'Metadata'): Sink {
  return sinkFromResource(
    pipelineResource({ policy: { rules: [{ level }] } }, namespace, name),
    SETTINGS,
  );
}

/** An output that records what it got, and can be made to fail. */
class RecordingOutput implements Output {
  readonly kind = 'file' as const;
  readonly target = 'memory';
  readonly got: AuditEvent[] = [];
  failing: OutputError | undefined;
  write(events: readonly AuditEvent[]): Promise<void> {
    if (this.failing !== undefined) return Promise.reject(this.failing);
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

async function setup(
  maxBytes = 10 * 1024 * 1024,
  dir?: string,
  logOptions: Pick<LogQueueOptions, 'readCacheBytes' | 'onCacheGrowth'> = {},
) {
  const logDir = dir ?? (await mkdtemp(join(tmpdir(), 'kao-registry-log-')));
  if (dir === undefined) dirs.push(logDir);
  const outputs = new Map<string, RecordingOutput>();
  const registry = new SinkRegistry({
    routing: { allowSecretPayloads: false },
    factory: {
      openQueue: (sink) => openLogQueue({ logDir, key: sink.key, maxBytes, ...logOptions }),
      createOutputs: (sink) => {
        const output = new RecordingOutput();
        outputs.set(sink.key, output);
        return Promise.resolve([output]);
      },
    },
    idleWaitMs: 5,
    backoff: { ...DEFAULT_BACKOFF, initialMs: 5, maxMs: 5, permanentMs: 5 },
  });
  registries.push(registry);
  const output = (key: string) => outputs.get(key) as RecordingOutput;
  return { registry, output, logDir };
}

function batch(i: number): AuditEvent[] {
  return EVENTS.map((e) => ({ ...e, auditID: `${e.auditID}-${i}` }));
}

describe('sink registry over the durable log', () => {
  it('stores each ingested batch as one record whatever the number of sinks, and delivers each sink its share after a restart', async () => {
    const { registry, output, logDir } = await setup();
    const sinks = [
      pipeline('kube-audit', 'everything', 'RequestResponse'),
      pipeline('kube-audit', 'metadata'),
      ...Array.from({ length: 20 }, (_, i) => pipeline('kube-audit', `tenant-${i}`)),
      pipeline('shop', 'orders'),
    ];
    await registry.apply(sinks);
    for (const sink of sinks)
      output(sink.key).failing = new OutputError('UNREACHABLE', 'down', { retryable: true });
    for (let i = 0; i < 3; i++)
      expect((await registry.ingest(batch(i), { kind: 'all' })).ok).toBe(true);
    const depths = registry.queueDepths();
    await registry.close();
    registries.splice(0);

    const log = await DurableLog.open({ dir: logDir });
    expect(log.recovery.records).toBe(3);
    await log.close();

    const restarted = await setup(10 * 1024 * 1024, logDir);
    await restarted.registry.apply(sinks);
    for (const sink of sinks) {
      const expected = depths.get(sink.key) ?? 0;
      await eventually(
        `${sink.key} delivered`,
        () => restarted.output(sink.key).got.length === expected,
        5_000,
        5,
      );
    }
    const everything = restarted.output(sinks[0]?.key ?? '').got;
    expect(everything.map((e) => e.auditID)).toEqual(
      [0, 1, 2].flatMap((i) => batch(i).map((e) => e.auditID)),
    );
    expect(everything.some((e) => e.level === 'RequestResponse')).toBe(true);
    expect(restarted.output(sinks[1]?.key ?? '').got.every((e) => e.level === 'Metadata')).toBe(
      true,
    );
  });

  it('drops a sink’s share past its budget on the fan-in endpoint, counted as overflow, without blocking the others', async () => {
    const { registry, output } = await setup(1024 * 1024 + 1);
    const stuck = pipeline('kube-audit', 'everything', 'RequestResponse');
    const shop = pipeline('shop', 'orders');
    await registry.apply([stuck, shop]);
    output(stuck.key).failing = new OutputError('UNREACHABLE', 'down', { retryable: true });
    let overflowed = false;
    for (let i = 0; i < 200 && !overflowed; i++) {
      expect((await registry.ingest(batch(i), { kind: 'all' })).ok).toBe(true);
      overflowed = (registry.status(stuck.key)?.dropped.overflow ?? 0) > 0;
    }
    expect(overflowed).toBe(true);
    await eventually(
      'an empty shop queue',
      () => registry.queueDepths().get(shop.key) === 0,
      2_000,
      5,
    );
    expect(registry.status(shop.key)?.dropped.overflow).toBe(0);
    // Its own endpoint says "come back later"; the fan-in endpoint does not.
    const own = await registry.ingest(batch(1000), { kind: 'sink', key: stuck.key });
    expect(own).toMatchObject({ ok: false, reason: 'full', retryAfterSeconds: 1 });
    expect(registry.refusing({ kind: 'all' })).toBeUndefined();
  });

  it('tells onCacheGrowth when sinks reading the same records fall further apart than the log keeps in memory', async () => {
    const sinks = [pipeline('kube-audit', 'one'), pipeline('kube-audit', 'two')];
    const down = () => new OutputError('UNREACHABLE', 'down', { retryable: true });
    // The bytes of one record: both sinks keep the same trimmed events.
    const probe = await setup();
    await probe.registry.apply(sinks);
    for (const sink of sinks) probe.output(sink.key).failing = down();
    await probe.registry.ingest(batch(0), { kind: 'all' });
    await probe.registry.close();
    const opened = await DurableLog.open({ dir: probe.logDir });
    const record = opened.stats().bytes;
    await opened.close();

    const told: boolean[] = [];
    const { registry, output } = await setup(10 * 1024 * 1024, undefined, {
      readCacheBytes: Math.floor(record * 1.5),
      onCacheGrowth: (grown) => told.push(grown),
    });
    await registry.apply(sinks);
    for (const sink of sinks) output(sink.key).failing = down();
    // Four records where the memory holds one: three let go before either sink read them.
    for (let i = 0; i < 4; i++) await registry.ingest(batch(i), { kind: 'all' });
    expect(told).toEqual([]);
    for (const sink of sinks) output(sink.key).failing = undefined;
    for (const sink of sinks) {
      await eventually(
        `${sink.key} delivered`,
        () => output(sink.key).got.length === 4 * EVENTS.length,
        5_000,
        5,
      );
    }
    expect(told).toEqual([true]);
    await registry.close();
    // The log closed with its last stream: the growth is over.
    expect(told).toEqual([true, false]);
  });

  it('frees a deleted sink’s share of the log', async () => {
    const { registry, output, logDir } = await setup();
    const gone = pipeline('kube-audit', 'gone', 'RequestResponse');
    const kept = pipeline('kube-audit', 'kept');
    await registry.apply([gone, kept]);
    output(gone.key).failing = new OutputError('UNREACHABLE', 'down', { retryable: true });
    for (let i = 0; i < 3; i++) await registry.ingest(batch(i), { kind: 'all' });
    await registry.apply([kept]);
    await eventually('kept delivered', () => registry.queueDepths().get(kept.key) === 0, 5_000, 5);
    await registry.close();
    registries.splice(0);
    const log = await DurableLog.open({ dir: logDir });
    expect(log.streamKeys()).toEqual([kept.key]);
    await log.close();
  });
});
