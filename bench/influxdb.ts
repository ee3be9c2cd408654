/**
 * InfluxDB output benchmark: line-protocol encoding per core, with and without the gzip a write
 * adds, on 400-event batches (the kube-apiserver's default webhook batch size) of Metadata and
 * RequestResponse events, against `JSON.parse` of the same batch in the same run; the memory of the
 * timestamp slots; and end-to-end events per second into a real influxd (test/harness/influxd.ts).
 *
 * `node bench/influxdb.ts [--quick]` runs it alone and writes bench/results/influxdb.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { gzipSync } from 'node:zlib';
import { epochMicros } from '../src/audit/time.ts';
import type { AuditEvent } from '../src/audit/types.ts';
import {
  LineProtocolEncoder,
  type PointSchema,
  PointTimestamps,
} from '../src/outputs/influxdb/line-protocol.ts';
import { InfluxOutput } from '../src/outputs/influxdb/writer.ts';
import { TAG_NAMES } from '../src/outputs/influxdb/schema.ts';
import { destinationOn, startInfluxd } from '../test/harness/influxd.ts';
import { FULL, type HarnessOptions, type Measurement, measure, QUICK, sink } from './harness.ts';

const FIXTURES = new URL('../test/fixtures/apiserver-1.20/', import.meta.url);
export const BATCH_SIZE = 400;
export type Level = 'Metadata' | 'Request' | 'RequestResponse';

/**
 * The levels of a batch's events: one level for all, or `Mix`, a realistic blend in which out of
 * every ten events seven are Metadata, two Request and one RequestResponse.
 */
export type LevelMix = Level | 'Mix';

const MIX: readonly Level[] = [
  'Metadata',
  'Request',
  'Metadata',
  'Metadata',
  'RequestResponse',
  'Metadata',
  'Request',
  'Metadata',
  'Metadata',
  'Metadata',
];

const SCHEMA: PointSchema = {
  measurement: 'kubernetes_audit',
  tags: TAG_NAMES,
  staticTags: { cluster: 'bench' },
  sink: 'bench/trail',
};

function recordedEvents(): AuditEvent[] {
  return readFileSync(new URL('events.jsonl', FIXTURES), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as AuditEvent);
}

/** RFC 3339 with microseconds, `micros` after the epoch. */
function timestamp(micros: number): string {
  const seconds = Math.floor(micros / 1e6);
  return `${new Date(seconds * 1000).toISOString().slice(0, 19)}.${String(micros % 1e6).padStart(6, '0')}Z`;
}

/**
 * `count` batches of distinct events cut from the recorded ones: each its own auditID and a
 * microsecond of its own, ending `endMicros` (as a busy apiserver produces them).
 */
export function batches(level: LevelMix, count: number, endMicros: number): AuditEvent[][] {
  const recorded = recordedEvents();
  let n = 0;
  const start = endMicros - count * BATCH_SIZE * 50;
  return Array.from({ length: count }, () =>
    Array.from({ length: BATCH_SIZE }, () => {
      const i = n++;
      const e = { ...(recorded[i % recorded.length] as AuditEvent) };
      e.auditID = `bench-${level}-${i}`;
      // 50 µs apart, latency kept as recorded.
      const latency =
        e.requestReceivedTimestamp === undefined
          ? 0
          : Number(epochMicros(e.stageTimestamp)) - Number(epochMicros(e.requestReceivedTimestamp));
      e.stageTimestamp = timestamp(start + i * 50);
      e.requestReceivedTimestamp = timestamp(start + i * 50 - latency);
      // What the apiserver records at each level: no bodies, the request body, or both.
      e.level = level === 'Mix' ? (MIX[i % MIX.length] as Level) : level;
      if (e.level !== 'RequestResponse') delete e.responseObject;
      if (e.level === 'Metadata') delete e.requestObject;
      return e;
    }),
  );
}

/** One encoding workload's result, relative to JSON.parse of the same batch. */
export interface EncodeResult extends Measurement {
  readonly batch: Level;
  readonly ratioToJsonParse: number;
  /** Mean line-protocol bytes per event (uncompressed). */
  readonly bytesPerEvent: number;
}

/** Encoding per core: JSON.parse baseline, encode, encode + gzip (what a write costs in CPU). */
export function runEncodeBench(options: HarnessOptions): EncodeResult[] {
  const results: EncodeResult[] = [];
  for (const level of ['Metadata', 'RequestResponse'] as const) {
    // More events than the slot memory holds (65,536), so every encode is of a fresh event.
    const all = batches(level, 200, Date.now() * 1000);
    const body = JSON.stringify({
      kind: 'EventList',
      apiVersion: 'audit.k8s.io/v1',
      items: all[0],
    });
    const encoder = new LineProtocolEncoder(SCHEMA);
    let next = 0;
    const encodeBatch = () => {
      const events = all[next++ % all.length] as AuditEvent[];
      let text = '';
      for (const e of events) text += `${encoder.encode(e)}\n`;
      return text;
    };
    const sample = encodeBatch();
    const bytesPerEvent = Math.round(Buffer.byteLength(sample) / BATCH_SIZE);
    const baseline = measure(
      `${level}: JSON.parse (baseline)`,
      BATCH_SIZE,
      () => JSON.parse(body),
      options,
    );
    const add = (m: Measurement) =>
      results.push({
        ...m,
        batch: level,
        bytesPerEvent,
        ratioToJsonParse: Number((m.eventsPerSecond / baseline.eventsPerSecond).toFixed(2)),
      });
    add(baseline);
    add(measure(`${level}: encode`, BATCH_SIZE, encodeBatch, options));
    add(measure(`${level}: encode + gzip`, BATCH_SIZE, () => gzipSync(encodeBatch()), options));
  }
  return results;
}

/**
 * Bytes per remembered event of {@link PointTimestamps}, when full: the heap and the typed arrays'
 * buffers (outside the heap).
 */
export function slotMemory(): { events: number; bytesPerEvent: number } | undefined {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (() => void) | undefined;
  if (typeof gc !== 'function') return undefined;
  const used = () => {
    const { heapUsed, arrayBuffers } = process.memoryUsage();
    return heapUsed + arrayBuffers;
  };
  const events = 65_536;
  gc();
  const before = used();
  const slots = new PointTimestamps(events);
  const series = 'kubernetes_audit,api_version=v1,level=Metadata,resource=pods,verb=get';
  for (let i = 0; i < events; i++) slots.slot(series, String(1_795_320_537_000_000 + i), `e${i}`);
  gc();
  const after = used();
  sink();
  return { events: slots.size, bytesPerEvent: Math.round((after - before) / slots.size) };
}

/** One end-to-end run: sinks writing batches back to back into one real influxd. */
export interface WriteResult {
  readonly name: string;
  readonly batch: Level;
  readonly sinks: number;
  readonly gzip: boolean;
  readonly events: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
  /** Milliseconds from write() to the server's 204, per 400-event batch. */
  readonly batchLatencyP50Ms: number;
  readonly batchLatencyP99Ms: number;
}

/** End to end: `sinks` delivery loops, each writing 400-event batches as fast as acknowledged. */
export async function runWriteBench(quick: boolean): Promise<WriteResult[]> {
  const server = await startInfluxd();
  const results: WriteResult[] = [];
  try {
    const seconds = quick ? 2 : 8;
    let bucket = 0;
    for (const level of ['Metadata', 'RequestResponse'] as const) {
      for (const [sinks, gzip] of [
        [1, true],
        [1, false],
        [4, true],
      ] as const) {
        const name = `${level}: ${sinks} sink${sinks > 1 ? 's' : ''}, gzip ${gzip ? 'on' : 'off'}`;
        const perSink = batches(level, quick ? 60 : 250, Date.now() * 1000);
        const latencies: number[] = [];
        let events = 0;
        const started = performance.now();
        const deadline = started + seconds * 1000;
        await Promise.all(
          Array.from({ length: sinks }, async (_, s) => {
            const name = `bench-${++bucket}`;
            await server.createBucket(name);
            const output = new InfluxOutput(
              destinationOn(server, { bucket: name }),
              `bench/sink-${s}`,
              () => server.token,
              { gzipThreshold: gzip ? 1000 : Number.MAX_SAFE_INTEGER },
            );
            for (let i = 0; performance.now() < deadline; i++) {
              const batch = perSink[i % perSink.length] as AuditEvent[];
              const t = performance.now();
              await output.write(batch);
              latencies.push(performance.now() - t);
              events += batch.length;
            }
          }),
        );
        const elapsed = (performance.now() - started) / 1000;
        latencies.sort((a, b) => a - b);
        const at = (q: number) =>
          Number((latencies[Math.floor(q * (latencies.length - 1))] ?? 0).toFixed(1));
        results.push({
          name,
          batch: level,
          sinks,
          gzip,
          events,
          seconds: Number(elapsed.toFixed(1)),
          eventsPerSecond: Math.round(events / elapsed),
          batchLatencyP50Ms: at(0.5),
          batchLatencyP99Ms: at(0.99),
        });
      }
    }
  } finally {
    await server.dispose();
  }
  return results;
}

if (import.meta.main) {
  const quick = process.argv.includes('--quick');
  const options = quick ? QUICK : FULL;
  const encode = runEncodeBench(options);
  console.log('\nLine-protocol encoding (one core, 400-event batches)\n');
  console.table(
    encode.map((r) => ({
      workload: r.name,
      'events/s': r.eventsPerSecond.toLocaleString('en-US'),
      'events/CPU-s': r.eventsPerCpuSecond.toLocaleString('en-US'),
      'µs/batch': r.microsecondsPerCall,
      'vs JSON.parse': r.ratioToJsonParse,
      'LP bytes/event': r.bytesPerEvent,
    })),
  );
  const memory = slotMemory();
  if (memory !== undefined) {
    console.log(
      `\nTimestamp slots: ${memory.bytesPerEvent} bytes per remembered event (${memory.events.toLocaleString('en-US')} events)`,
    );
  }
  const write = await runWriteBench(quick);
  console.log('\nEnd to end into a real influxd 2.7 on the same machine\n');
  console.table(
    write.map((r) => ({
      workload: r.name,
      'events/s': r.eventsPerSecond.toLocaleString('en-US'),
      'p50 ms/batch': r.batchLatencyP50Ms,
      'p99 ms/batch': r.batchLatencyP99Ms,
      events: r.events.toLocaleString('en-US'),
    })),
  );
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const report = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    mode: quick ? 'quick' : 'full',
    encode,
    slotMemory: memory,
    write,
    checksum: sink(),
  };
  writeFileSync(new URL('influxdb.json', dir), `${JSON.stringify(report, null, 2)}\n`);
  console.log('\nwritten: bench/results/influxdb.json');
}
