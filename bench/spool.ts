/**
 * Spool benchmark (`node bench/spool.ts [--quick]`): events per second (and per CPU second)
 * appended in 400-event batches (the kube-apiserver's default webhook batch size) of the events
 * recorded from a real kube-apiserver: into the process's durable log and into per-sink spools,
 * with fsync and without, and in memory; with one appender (each append awaited, as one apiserver
 * connection does) and with eight concurrent ones (group commit); for 1 sink and for 100 sinks
 * that each keep every event; then 10-event appends, where fsync latency dominates, with 1 and 16
 * appenders. Also the rate at which one output reads and commits them back. Writes
 * `bench/results/spool.json`. Not part of `npm run bench`: it measures the disk more than the code.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '../src/audit/types.ts';
import { openQueue, type SinkQueue } from '../src/spool/index.ts';
import { openLogQueue } from '../src/spool/log/index.ts';

const BATCH_SIZE = 400;
const quick = process.argv.includes('--quick');
const ROUND_MILLIS = quick ? 500 : 2_000;

/** One measured workload. */
interface SpoolResult {
  readonly name: string;
  /** Sinks each batch is appended to (all of it, as a cluster-wide sink keeps it). */
  readonly sinks: number;
  readonly batchSize: number;
  readonly appenders: number;
  readonly eventsPerSecond: number;
  /** Received events per CPU second of the process (user and system). */
  readonly eventsPerCpuSecond: number;
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
  // Distinct batches, reused round-robin: each event is serialised on its first append only
  // (see warmUp), so the figures are of storing events, not of serialising them.
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

/** Opens the queues of one workload: one per sink, each appended every batch. */
type OpenQueues = () => Promise<SinkQueue[]>;

/** `sinks` per-sink queues: in `dir` (one spool each), or in memory when `dir` is null. */
function perSinkQueues(
  dir: string | null,
  fsync: boolean,
  sinks = 1,
  segmentBytes?: number,
): OpenQueues {
  return () =>
    Promise.all(
      Array.from({ length: sinks }, (_, i) =>
        openQueue({
          ...(dir === null ? {} : { dir: join(dir, `sink-${i}`), fsync }),
          ...(segmentBytes === undefined ? {} : { segmentBytes }),
          maxBytes: Number.MAX_SAFE_INTEGER,
        }),
      ),
    );
}

/** `sinks` streams of one durable log in `dir`. */
function logQueues(dir: string, fsync: boolean, sinks = 1): OpenQueues {
  return () =>
    Promise.all(
      Array.from({ length: sinks }, (_, i) =>
        openLogQueue({
          logDir: dir,
          key: `sinks/sink-${i}`,
          fsync,
          maxBytes: Number.MAX_SAFE_INTEGER,
        }),
      ),
    );
}

async function measureAppends(
  name: string,
  open: OpenQueues,
  appenders: number,
  batches: readonly AuditEvent[][],
): Promise<SpoolResult> {
  const batchSize = batches[0]?.length ?? 0;
  const queues = await open();
  const latencies: number[] = [];
  let events = 0;
  const deadline = performance.now() + ROUND_MILLIS;
  const started = performance.now();
  const cpu = process.cpuUsage();
  await Promise.all(
    Array.from({ length: appenders }, async (_, a) => {
      for (let n = a; performance.now() < deadline; n += appenders) {
        const batch = batches[n % batches.length] as AuditEvent[];
        const t = performance.now();
        // As the registry does: every sink's share in the same turn.
        await Promise.all(queues.map((queue) => queue.append(batch)));
        latencies.push(performance.now() - t);
        events += batch.length;
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  const stats = (queues[0] as SinkQueue).stats();
  await Promise.all(queues.map((queue) => queue.destroy()));
  latencies.sort((x, y) => x - y);
  return {
    name,
    sinks: queues.length,
    batchSize,
    appenders,
    eventsPerSecond: Math.round(events / seconds),
    eventsPerCpuSecond: Math.round(events / ((used.user + used.system) / 1e6)),
    megabytesPerSecond: Number((stats.bytes / seconds / 1e6).toFixed(1)),
    p50Millis: Number(percentile(latencies, 0.5).toFixed(2)),
    p99Millis: Number(percentile(latencies, 0.99).toFixed(2)),
    appendsPerWrite: Number((stats.appends / stats.writes).toFixed(1)),
  };
}

/** Events per second one output reads back (next + commit of 400) from a durable queue. */
async function measureReads(
  open: () => Promise<SinkQueue>,
  batches: readonly AuditEvent[][],
): Promise<number> {
  const queue = await open();
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
/** Runs one workload in a fresh temporary directory. */
async function inTemp(run: (dir: string) => Promise<SpoolResult>): Promise<void> {
  const path = await mkdtemp(join(tmpdir(), 'spool-bench-'));
  try {
    results.push(await run(path));
  } finally {
    await rm(path, { recursive: true, force: true });
  }
}
/**
 * Appends every batch a few times to each kind of durable queue before anything is measured.
 * Events are serialised once per event object and the batches are reused, so without this the
 * first workload measured (the log's) would alone pay for serialising all of them and for
 * compiling the code, at a fraction of the throughput of every workload after it. With fsync, so
 * that no dirty pages of it are left for the kernel to write back during the first workload.
 */
async function warmUp(): Promise<void> {
  for (const open of [logQueues, perSinkQueues]) {
    const dir = await mkdtemp(join(tmpdir(), 'spool-bench-'));
    try {
      const [queue] = await open(dir, true)();
      for (let n = 0; n < 4 * batches.length; n++) {
        await queue?.append(batches[n % batches.length] as AuditEvent[]);
      }
      await queue?.destroy();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
}
await warmUp();
for (const appenders of [1, 8]) {
  await inTemp((dir) => measureAppends('log, fsync', logQueues(dir, true), appenders, batches));
  await inTemp((dir) =>
    measureAppends('per-sink spool, fsync', perSinkQueues(dir, true), appenders, batches),
  );
  await inTemp((dir) => measureAppends('log, no fsync', logQueues(dir, false), appenders, batches));
  await inTemp((dir) =>
    measureAppends('per-sink spool, no fsync', perSinkQueues(dir, false), appenders, batches),
  );
  results.push(await measureAppends('in memory', perSinkQueues(null, false), appenders, batches));
}
// 100 sinks keeping every event: one record per batch in the log, 100 spool appends without it.
for (const appenders of [1, 8]) {
  await inTemp((dir) =>
    measureAppends('log, fsync', logQueues(dir, true, 100), appenders, batches),
  );
  await inTemp((dir) =>
    measureAppends(
      'per-sink spool, fsync',
      perSinkQueues(dir, true, 100, 1024 * 1024),
      appenders,
      batches,
    ),
  );
}
// Small appends (a quiet cluster: the apiserver flushes whatever arrived within its batch wait)
// are bound by fsync latency, which is where group commit pays.
const small = batches.map((batch) => batch.slice(0, 10));
for (const appenders of [1, 16]) {
  await inTemp((dir) => measureAppends('log, fsync', logQueues(dir, true), appenders, small));
  await inTemp((dir) =>
    measureAppends('per-sink spool, fsync', perSinkQueues(dir, true), appenders, small),
  );
}
const readDir = await mkdtemp(join(tmpdir(), 'spool-bench-'));
const readEventsPerSecond = await measureReads(
  () => openQueue({ dir: join(readDir, 'spool'), maxBytes: Number.MAX_SAFE_INTEGER, fsync: false }),
  batches,
);
const logReadEventsPerSecond = await measureReads(
  () =>
    openLogQueue({
      logDir: join(readDir, 'log'),
      key: 'sinks/read',
      maxBytes: Number.MAX_SAFE_INTEGER,
      fsync: false,
    }),
  batches,
);
await rm(readDir, { recursive: true, force: true });

console.log(
  `\nSpool appends (recorded events, ${Math.round(eventBytes / BATCH_SIZE)} bytes per event on average)\n`,
);
console.table(
  results.map((r) => ({
    queue: r.name,
    sinks: r.sinks,
    'events/append': r.batchSize,
    appenders: r.appenders,
    'events/s': r.eventsPerSecond.toLocaleString('en-US'),
    'events/CPU s': r.eventsPerCpuSecond.toLocaleString('en-US'),
    'MB/s': r.megabytesPerSecond,
    'p50 ms': r.p50Millis,
    'p99 ms': r.p99Millis,
    'appends/write': r.appendsPerWrite,
  })),
);
console.log(
  `\nDurable reads (next + commit of 400): ${readEventsPerSecond.toLocaleString('en-US')} events/s from a per-sink spool, ${logReadEventsPerSecond.toLocaleString('en-US')} from the log`,
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
      logReadEventsPerSecond,
    },
    null,
    2,
  )}\n`,
);
console.log('written: bench/results/spool.json');
