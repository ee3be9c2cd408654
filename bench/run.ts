/**
 * `npm run bench [-- --quick]`: the micro-benchmarks (policy engine; ingest, that is parse, route,
 * policy and encode per core; authentication decisions; receiver over loopback; overload), then the peer comparison against
 * Telegraf into a real influxd (bench/peer.ts). Prints a table per part, writes everything to
 * bench/results/bench-results.json (the peer figures at the top level, the micro-benchmarks under
 * `micro`) and draws docs/images/bench.svg from it (bench/chart.ts).
 *
 * On 2 cores the full run takes about 10 minutes, the quick one under 2.
 */
import { printAuthResults, runAuthBench } from './auth.ts';
import { type ChartInput, writeChart } from './chart.ts';
import { FULL, printPerCore, QUICK, sink } from './harness.ts';
import { runIngestBench } from './ingest.ts';
import {
  environment,
  peerReport,
  printPeerResults,
  runPeerBench,
  workloads,
  writeReport,
} from './peer.ts';
import { runPolicyBench } from './policy.ts';
import { runOverloadBench, runReceiverBench } from './receiver.ts';

const quick = process.argv.includes('--quick');
const options = quick ? QUICK : FULL;
const began = performance.now();
const env = environment(quick);

const policy = runPolicyBench(options);
printPerCore('Policy engine', policy);
const ingest = runIngestBench(options);
printPerCore('Ingest: parse, route, policy and encode', ingest);

const auth = runAuthBench(options);
printAuthResults(auth);

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

console.log('\nPeer comparison: one workload at a time, this project then Telegraf\n');
const peer = await runPeerBench(workloads(quick));
printPeerResults(peer);

const report = {
  ...env,
  seconds: Math.round((performance.now() - began) / 1000),
  ...peerReport(peer),
  micro: {
    policy,
    ingest,
    auth,
    receiver,
    overload,
    checksum: sink(),
  },
};
writeReport(report);
console.log('\nwritten: bench/results/bench-results.json');
writeChart(report as unknown as ChartInput);
console.log('written: docs/images/bench.svg');
console.log(`\n${quick ? 'quick' : 'full'} run: ${report.seconds} s`);
