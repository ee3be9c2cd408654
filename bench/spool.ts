/**
 * Spool benchmark (`node bench/spool.ts [--quick]`): events per second appended to one sink's
 * queue in 400-event batches (the kube-apiserver's default webhook batch size) of the events
 * recorded from a real kube-apiserver, durably with fsync, durably without, and in memory; with one
 * appender (each append awaited, as one apiserver connection does) and with eight concurrent ones
 * (group commit); then 10-event appends, where fsync latency dominates, with 1 and 16 appenders.
 * Also the rate at which one output reads and commits them back. Writes
 * `bench/results/spool.json`. Not part of `npm run bench`: it measures the disk more than the code.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '../src/audit/types.ts';
import { openQueue, type QueueOptions } from '../src/spool/index.ts';

const BATCH_SIZE = 400;
const quick = process.argv.includes('--quick');
const ROUND_MILLIS = quick ? 500 : 2_000;

/** One measured workload. */
interface SpoolResult {
  readonly name: string;
  readonly batchSize: number;
  readonly appenders: number;
  readonly eventsPerSecond: number;
  readonly megabytesPerSecond: number;
  /** Append latency percentiles, in milliseconds (the time the receiver holds a request). */
  readonly p50Millis: number;
  readonly p99Millis: number;
  /** Appends per write: how much group commit coalesced. */
  readonly appendsPerWrite: number;
}

async function recordedBatches(): Promise<AuditEvent[][]> {
  const url = new URL('../test/fixtures/apiserver-1.20/events.jsonl', import.meta.url);
  const recorded = (await readFile(url, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as AuditEvent);
  // Distinct batches, so nothing is cached between appends; reused round-robin.
  return Array.from({ length: 16 }, (_, b) =>
    Array.from({ length: BATCH_SIZE }, (_, i) => ({
      ...(recorded[(b * BATCH_SIZE + i) % recorded.length] as AuditEvent),
      auditID: `bench-${b}-${i}`,
    })),
  );
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

async function measureAppends(
  name: string,
  options: Omit<QueueOptions, 'maxBytes'>,
  appenders: number,
  batches: readonly AuditEvent[][],
): Promise<SpoolResult> {
  const batchSize = batches[0]?.length ?? 0;
  const queue = await openQueue({ ...options, maxBytes: Number.MAX_SAFE_INTEGER });
  const latencies: number[] = [];
  let events = 0;
  const deadline = performance.now() + ROUND_MILLIS;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: appenders }, async (_, a) => {
      for (let n = a; performance.now() < deadline; n += appenders) {
        const batch = batches[n % batches.length] as AuditEvent[];
        const t = performance.now();
        await queue.append(batch);
        latencies.push(performance.now() - t);
        events += batch.length;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const stats = queue.stats();
  await queue.destroy();
  latencies.sort((x, y) => x - y);
  return {
    name,
    batchSize,
    appenders,
    eventsPerSecond: Math.round(events / seconds),
    megabytesPerSecond: Number((stats.bytes / seconds / 1e6).toFixed(1)),
    p50Millis: Number(percentile(latencies, 0.5).toFixed(2)),
    p99Millis: Number(percentile(latencies, 0.99).toFixed(2)),
    appendsPerWrite: Number((stats.appends / stats.writes).toFixed(1)),
  };
}

/** Events per second one output reads back (next + commit of 400) from a durable queue. */
async function measureReads(dir: string, batches: readonly AuditEvent[][]): Promise<number> {
  const queue = await openQueue({ dir, maxBytes: Number.MAX_SAFE_INTEGER, fsync: false });
  for (let n = 0; n < 250; n++) await queue.append(batches[n % batches.length] as AuditEvent[]);
  const consumer = queue.consumer('influxdb');
  let events = 0;
  const started = performance.now();
  for (;;) {
    const batch = await consumer.next(BATCH_SIZE, 0);
    if (batch === null) break;
    await consumer.commit(batch);
    events += batch.events.length;
  }
  const seconds = (performance.now() - started) / 1000;
  await queue.destroy();
  return Math.round(events / seconds);
}

const batches = await recordedBatches();
const eventBytes = batches[0]?.reduce((n, e) => n + JSON.stringify(e).length + 1, 0) ?? 0;
const results: SpoolResult[] = [];
for (const [name, fsync, dir] of [
  ['durable, fsync', true, true],
  ['durable, no fsync', false, true],
  ['in memory', false, false],
] as const) {
  for (const appenders of [1, 8]) {
    const path = dir ? await mkdtemp(join(tmpdir(), 'spool-bench-')) : null;
    const options = path === null ? {} : { dir: path, fsync };
    results.push(await measureAppends(name, options, appenders, batches));
    if (path !== null) await rm(path, { recursive: true, force: true });
  }
}
// Small appends (a quiet cluster: the apiserver flushes whatever arrived within its batch wait)
// are bound by fsync latency, which is where group commit pays.
const small = batches.map((batch) => batch.slice(0, 10));
for (const appenders of [1, 16]) {
  const path = await mkdtemp(join(tmpdir(), 'spool-bench-'));
  results.push(await measureAppends('durable, fsync', { dir: path }, appenders, small));
  await rm(path, { recursive: true, force: true });
}
const readDir = await mkdtemp(join(tmpdir(), 'spool-bench-'));
const readEventsPerSecond = await measureReads(readDir, batches);
await rm(readDir, { recursive: true, force: true });

console.log(
  `\nSpool appends (recorded events, ${Math.round(eventBytes / BATCH_SIZE)} bytes per event on average)\n`,
);
console.table(
  results.map((r) => ({
    queue: r.name,
    'events/append': r.batchSize,
    appenders: r.appenders,
    'events/s': r.eventsPerSecond.toLocaleString('en-US'),
    'MB/s': r.megabytesPerSecond,
    'p50 ms': r.p50Millis,
    'p99 ms': r.p99Millis,
    'appends/write': r.appendsPerWrite,
  })),
);
console.log(
  `\nDurable reads (next + commit of 400): ${readEventsPerSecond.toLocaleString('en-US')} events/s`,
);

const out = new URL('./results/', import.meta.url);
mkdirSync(out, { recursive: true });
writeFileSync(
  new URL('spool.json', out),
  `${JSON.stringify(
    {
      date: new Date().toISOString(),
      node: process.version,
      cpu: cpus()[0]?.model ?? 'unknown',
      mode: quick ? 'quick' : 'full',
      appends: results,
      readEventsPerSecond,
    },
    null,
    2,
  )}\n`,
);
console.log('written: bench/results/spool.json');
