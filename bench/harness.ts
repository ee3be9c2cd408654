/**
 * A small benchmark harness: warm up, then time several rounds of a workload and report the
 * median rate with the CPU time it cost. Rates are per core: Node runs the workload on one thread.
 */
import { cpuUsage } from 'node:process';

/** One measured workload. */
export interface Measurement {
  readonly name: string;
  /** Median events per wall-clock second across rounds. */
  readonly eventsPerSecond: number;
  /** Events per second of CPU time (user + system) over all rounds. */
  readonly eventsPerCpuSecond: number;
  /** Median wall-clock time of one call, in microseconds. */
  readonly microsecondsPerCall: number;
  readonly rounds: number;
}

/** How long to measure. */
export interface HarnessOptions {
  readonly rounds: number;
  readonly roundMillis: number;
  readonly warmupMillis: number;
}

/** Full runs: 7 rounds of 500 ms after 500 ms of warm-up. */
export const FULL: HarnessOptions = { rounds: 7, roundMillis: 500, warmupMillis: 500 };

/** Quick runs, for smoke checks: 3 rounds of 150 ms. */
export const QUICK: HarnessOptions = { rounds: 3, roundMillis: 150, warmupMillis: 150 };

// Results flow into this sink so the optimiser cannot drop the work.
let blackhole = 0;

/** Measures `fn`, which processes `eventsPerCall` events per call. */
export function measure(
  name: string,
  eventsPerCall: number,
  fn: () => unknown,
  options: HarnessOptions,
): Measurement {
  runFor(fn, options.warmupMillis);
  const rates: number[] = [];
  const perCall: number[] = [];
  let events = 0;
  const cpuStart = cpuUsage();
  for (let r = 0; r < options.rounds; r++) {
    const { calls, nanos } = runFor(fn, options.roundMillis);
    rates.push((calls * eventsPerCall * 1e9) / nanos);
    perCall.push(nanos / calls / 1e3);
    events += calls * eventsPerCall;
  }
  const cpu = cpuUsage(cpuStart);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return {
    name,
    eventsPerSecond: Math.round(median(rates)),
    eventsPerCpuSecond: Math.round(events / cpuSeconds),
    microsecondsPerCall: Number(median(perCall).toFixed(2)),
    rounds: options.rounds,
  };
}

function runFor(fn: () => unknown, millis: number): { calls: number; nanos: number } {
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(millis) * 1_000_000n;
  let calls = 0;
  let now = start;
  while (now < deadline) {
    const out = fn();
    blackhole ^= out === null ? 0 : 1;
    calls++;
    now = process.hrtime.bigint();
  }
  return { calls, nanos: Number(now - start) };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Keeps the blackhole observable. */
export function sink(): number {
  return blackhole;
}

/** Prints per-core results, each against JSON.parse of the same batch. */
export function printPerCore(
  title: string,
  results: readonly (Measurement & { ratioToJsonParse: number })[],
) {
  console.log(`\n${title} (one core, 400-event batches)\n`);
  console.table(
    results.map((r) => ({
      workload: r.name,
      'events/s': r.eventsPerSecond.toLocaleString('en-US'),
      'events/CPU-s': r.eventsPerCpuSecond.toLocaleString('en-US'),
      'µs/batch': r.microsecondsPerCall,
      'vs JSON.parse': r.ratioToJsonParse,
    })),
  );
}
