/**
 * `npm run bench [-- --quick]`: runs the benchmarks, prints a table and writes
 * `bench/results/<name>.json`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { FULL, QUICK, sink } from './harness.ts';
import { runPolicyBench } from './policy.ts';

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

const dir = new URL('./results/', import.meta.url);
mkdirSync(dir, { recursive: true });
const report = {
  date: new Date().toISOString(),
  node: process.version,
  cpu: cpus()[0]?.model ?? 'unknown',
  mode: quick ? 'quick' : 'full',
  policy,
  checksum: sink(),
};
writeFileSync(new URL('policy.json', dir), `${JSON.stringify(report, null, 2)}\n`);
console.log(`\nwritten: bench/results/policy.json`);
