/**
 * `npm run bench [-- --quick]`: runs the benchmarks, prints a table and writes
 * `bench/results/<name>.json`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { FULL, QUICK, sink } from './harness.ts';
import { runPolicyBench } from './policy.ts';
import { runOverloadBench, runReceiverBench } from './receiver.ts';

const quick = process.argv.includes('--quick');
const options = quick ? QUICK : FULL;

const policy = runPolicyBench(options);
console.log('\nPolicy engine (one core, 400-event batches)\n');
console.table(
  policy.map((r) => ({
    workload: r.name,
    'events/s': r.eventsPerSecond.toLocaleString('en-US'),
    'events/CPU-s': r.eventsPerCpuSecond.toLocaleString('en-US'),
    'µs/batch': r.microsecondsPerCall,
    'vs JSON.parse': r.ratioToJsonParse,
  })),
);

const receiver = await runReceiverBench(quick ? 1_000 : 5_000);
console.log('\nReceiver over loopback HTTP, 400-event batches, 2 in flight, in-memory queues\n');
console.table(
  receiver.map((r) => ({
    workload: r.name,
    'events/s': r.eventsPerSecond.toLocaleString('en-US'),
    'CPU-s per 100k': r.cpuSecondsPer100k,
    'ack p50 ms': r.ackP50Millis,
    'ack p99 ms': r.ackP99Millis,
    'peak RSS MiB': r.peakRssMiB,
  })),
);

const overload = await runOverloadBench(quick ? 3_000 : 15_000);
console.log('\nOverload: input faster than the destination\n');
console.table([overload]);

const dir = new URL('./results/', import.meta.url);
mkdirSync(dir, { recursive: true });
const report = {
  date: new Date().toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model ?? 'unknown',
  mode: quick ? 'quick' : 'full',
  policy,
  receiver,
  overload,
  checksum: sink(),
};
writeFileSync(new URL('bench.json', dir), `${JSON.stringify(report, null, 2)}\n`);
console.log(`\nwritten: bench/results/bench.json`);
